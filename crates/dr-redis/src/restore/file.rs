//! [`RdbFileRestore`] (dr-core `Restore`): a cold restore, the snapshot's
//! RDB written as a file where a stopped server loads it at start.

use std::path::{Path, PathBuf};

use dr_core::{
    Capabilities, ComponentId, RecoveryReport, Restore, RestoreRequest, SnapshotSourceExt,
    Timeline, async_trait,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{APPENDONLYDIR, StoredRdb, choose, rdb_streams, report_of};
use crate::cluster::snapshot::ClusterSnapshotDetails;
use crate::fetch::{Framing, RedisServer};
use crate::files::AOF_STREAM_PREFIX;
use crate::rdb::verify::Verifier;
use crate::snapshot::RdbSnapshotDetails;

/// Writes a snapshot's RDB to a file: for a server that is stopped, whose
/// `dir`/`dbfilename` the path is, to load at its next start.
///
/// The file appears only whole: the RDB is written beside it under a
/// temporary name, framed and its checksum checked on the way, synced, and
/// renamed into place; a damaged snapshot leaves the path as it was. For a
/// cluster snapshot, [`RdbFileRestore::shard`] names the master whose RDB
/// to write; the node that loads it must serve that master's slots (keep
/// its `nodes.conf`, or assign them before it takes traffic). A file-mode
/// snapshot of an append-only directory is written back as that directory
/// (the path absent or empty): its manifest, base RDB (checked) and
/// incremental files, renamed into place once all are synced.
///
/// ```no_run
/// # async fn demo(repo: &dr_storage::Repository) -> dr_core::Result<()> {
/// use dr_core::{Objectives, RecoveryTarget, Restore, RestoreRequest};
/// use dr_redis::RdbFileRestore;
///
/// let restore = RdbFileRestore::new("redis/sessions".parse()?, "/var/lib/redis/dump.rdb");
/// let target = RecoveryTarget::Latest;
/// let objectives = Objectives::new("5m".parse()?, "1m".parse()?);
/// restore.restore(RestoreRequest::new(repo, &target, objectives)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RdbFileRestore {
    component: ComponentId,
    path: PathBuf,
    shard: Option<String>,
}

impl RdbFileRestore {
    /// Writes snapshots of `component` to `path`.
    pub fn new(component: ComponentId, path: impl Into<PathBuf>) -> Self {
        Self {
            component,
            path: path.into(),
            shard: None,
        }
    }

    /// For a cluster snapshot: the shard of the master with node id
    /// `master_id` (or at address `host:port`, as the snapshot's layout has it).
    #[must_use]
    pub fn shard(mut self, master: impl Into<String>) -> Self {
        self.shard = Some(master.into());
        self
    }

    /// The RDB of the chosen snapshot to write.
    fn pick(&self, manifest: &dr_core::Manifest) -> dr_core::Result<StoredRdb> {
        let mut rdbs = rdb_streams(manifest)?;
        let Some(shard) = &self.shard else {
            if rdbs.len() == 1 {
                return Ok(rdbs.remove(0));
            }
            return Err(dr_core::Error::invalid(
                format!("restore of {} to a file", self.component),
                format!(
                    "snapshot {} is a cluster's, with {} shards: name the shard's master",
                    manifest.id,
                    rdbs.len()
                ),
            ));
        };
        let cluster = ClusterSnapshotDetails::of(manifest)?;
        let found = cluster
            .shards
            .iter()
            .zip(rdbs)
            .find(|(s, _)| {
                s.master_id == *shard
                    || cluster
                        .layout
                        .nodes
                        .iter()
                        .any(|n| n.id == s.master_id && n.addr == *shard)
            })
            .map(|(_, rdb)| rdb);
        found.ok_or_else(|| {
            dr_core::Error::not_found(format!(
                "a shard of master {shard} in snapshot {}",
                manifest.id
            ))
        })
    }
}

#[async_trait]
impl Restore for RdbFileRestore {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    async fn restore(&self, request: RestoreRequest<'_>) -> dr_core::Result<RecoveryReport> {
        let mut timeline = Timeline::start_now();
        let manifest = choose(request.snapshots, &self.component, request.target).await?;
        match RdbSnapshotDetails::of(&manifest) {
            Ok(details) if details.framing == APPENDONLYDIR => {
                timeline
                    .step(
                        "write the append-only directory",
                        write_aof_dir(request.snapshots, &manifest, &details, &self.path),
                    )
                    .await?;
            }
            _ => {
                let rdb = self.pick(&manifest)?;
                timeline
                    .step(
                        "write the RDB file",
                        write_file(request.snapshots, &manifest, &rdb, &self.path),
                    )
                    .await?;
            }
        }
        Ok(report_of(&self.component, &request, timeline, &manifest))
    }
}

/// Writes the append-only directory snapshot `manifest` holds as the
/// directory `path` (absent, or empty): its files written into a temporary
/// directory beside it, the base RDB checked (framing, CRC-64, key counts),
/// every file synced, then the directory renamed into place.
async fn write_aof_dir(
    source: &dyn dr_core::SnapshotSource,
    manifest: &dr_core::Manifest,
    details: &RdbSnapshotDetails,
    path: &Path,
) -> dr_core::Result<()> {
    let io = |what: String, e: std::io::Error| dr_core::Error::io(what, e);
    if let Ok(mut entries) = tokio::fs::read_dir(path).await
        && entries
            .next_entry()
            .await
            .map_err(|e| io(format!("reading {}", path.display()), e))?
            .is_some()
    {
        return Err(dr_core::Error::invalid(
            format!("restore to {}", path.display()),
            "the directory is not empty: the append-only directory is written only where none is",
        ));
    }
    let name = path.file_name().ok_or_else(|| {
        dr_core::Error::invalid(
            "append-only directory",
            format!("{} names no directory", path.display()),
        )
    })?;
    let mut temporary = name.to_os_string();
    temporary.push(".drkit-partial");
    let partial = path.with_file_name(temporary);
    let written = async {
        tokio::fs::create_dir(&partial)
            .await
            .map_err(|e| io(format!("creating {}", partial.display()), e))?;
        for entry in &manifest.streams {
            let Some(file_name) = entry.name.as_str().strip_prefix(AOF_STREAM_PREFIX) else {
                continue;
            };
            let file = partial.join(file_name);
            let rdb = StoredRdb {
                stream: entry.name.clone(),
                details: details.clone(),
            };
            if file_name.ends_with(".rdb") {
                write_checked(source, manifest, &rdb, &file).await?;
            } else {
                copy_stream(source, manifest, &entry.name, &file).await?;
            }
        }
        Ok::<_, dr_core::Error>(())
    }
    .await;
    if let Err(e) = written {
        tokio::fs::remove_dir_all(&partial).await.ok();
        return Err(e);
    }
    // An empty directory in place gives way; a non-empty one was refused.
    tokio::fs::remove_dir(path).await.ok();
    tokio::fs::rename(&partial, path)
        .await
        .map_err(|e| io(format!("renaming {} into place", partial.display()), e))
}

/// One stream written as `file`, synced, unchecked beyond the store's own
/// checks (an incremental AOF has no checksum of its own).
async fn copy_stream(
    source: &dyn dr_core::SnapshotSource,
    manifest: &dr_core::Manifest,
    stream: &dr_core::StreamName,
    file: &Path,
) -> dr_core::Result<()> {
    let mut reader = source.open_stream(&manifest.id, stream).await?;
    let mut out = tokio::fs::File::create(file)
        .await
        .map_err(|e| dr_core::Error::io(format!("creating {}", file.display()), e))?;
    tokio::io::copy(&mut reader, &mut out).await.map_err(|e| {
        dr_core::Error::corrupt(
            format!("snapshot {}: {stream}", manifest.id),
            format!("the stored file does not read back: {e}"),
        )
    })?;
    out.sync_all()
        .await
        .map_err(|e| dr_core::Error::io(format!("syncing {}", file.display()), e))
}

/// Writes `rdb` of `manifest` to `path` through a temporary file beside it.
async fn write_file(
    source: &dyn dr_core::SnapshotSource,
    manifest: &dr_core::Manifest,
    rdb: &StoredRdb,
    path: &Path,
) -> dr_core::Result<()> {
    let partial = partial_path(path)?;
    if let Err(e) = write_checked(source, manifest, rdb, &partial).await {
        tokio::fs::remove_file(&partial).await.ok();
        return Err(e);
    }
    into_place(&partial, path).await
}

/// The temporary name a file is written under before it is renamed to
/// `path`.
fn partial_path(path: &Path) -> dr_core::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        dr_core::Error::invalid("RDB file", format!("{} names no file", path.display()))
    })?;
    let mut temporary = name.to_os_string();
    temporary.push(".drkit-partial");
    Ok(path.with_file_name(temporary))
}

async fn into_place(partial: &Path, path: &Path) -> dr_core::Result<()> {
    tokio::fs::rename(partial, path)
        .await
        .map_err(|e| dr_core::Error::io(format!("renaming {} into place", partial.display()), e))
}

/// Fetches `server`'s whole data set as an RDB (a full synchronization, as
/// `redis-cli --rdb` takes it) into the file `path`: written under a
/// temporary name beside it, framed and its CRC-64 checked on the way,
/// synced, then renamed into place. Its details (key counts, versions).
pub(crate) async fn fetch_to_file(
    server: &RedisServer,
    path: &Path,
) -> dr_core::Result<RdbSnapshotDetails> {
    let partial = partial_path(path)?;
    let fetched = async {
        let io = |what: &str, e: std::io::Error| {
            dr_core::Error::io(format!("{what} {}", partial.display()), e)
        };
        let mut transfer = server.begin_rdb().await?;
        let mut out = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| io("creating", e))?;
        let mut checker = Verifier::framing_only();
        while let Some(chunk) = transfer.next_chunk().await? {
            checker.feed(&chunk)?;
            out.write_all(&chunk).await.map_err(|e| io("writing", e))?;
        }
        out.sync_all().await.map_err(|e| io("syncing", e))?;
        let framing = match transfer.framing() {
            Some(Framing::EofMark(_)) => "diskless",
            _ => "length",
        };
        Ok::<_, dr_core::Error>(RdbSnapshotDetails::of_summary(
            checker.finish()?,
            transfer.server_version().to_owned(),
            framing,
        ))
    }
    .await;
    match fetched {
        Ok(details) => {
            into_place(&partial, path).await?;
            Ok(details)
        }
        Err(e) => {
            tokio::fs::remove_file(&partial).await.ok();
            Err(e)
        }
    }
}

/// Writes `rdb` of `manifest` as `file`, framing it and checking its
/// CRC-64 and key counts on the way, and syncs it.
async fn write_checked(
    source: &dyn dr_core::SnapshotSource,
    manifest: &dr_core::Manifest,
    rdb: &StoredRdb,
    file: &Path,
) -> dr_core::Result<()> {
    let io =
        |what: &str, e: std::io::Error| dr_core::Error::io(format!("{what} {}", file.display()), e);
    let mut out = tokio::fs::File::create(file)
        .await
        .map_err(|e| io("creating", e))?;
    copy_checked(source, manifest, rdb, &mut out).await?;
    out.sync_all().await.map_err(|e| io("syncing", e))
}

/// Reads `rdb` of `manifest` whole into `out` (a file, or
/// `tokio::io::sink()` for a check alone), framing it and checking its
/// CRC-64 and key counts on the way.
pub(crate) async fn copy_checked(
    source: &dyn dr_core::SnapshotSource,
    manifest: &dr_core::Manifest,
    rdb: &StoredRdb,
    out: &mut (dyn tokio::io::AsyncWrite + Send + Unpin),
) -> dr_core::Result<()> {
    let what = format!("snapshot {}: {}", manifest.id, rdb.stream);
    let mut stream = source.open_stream(&manifest.id, &rdb.stream).await?;
    let mut checker = Verifier::framing_only();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| {
            dr_core::Error::corrupt(&what, format!("the stored RDB does not read back: {e}"))
        })?;
        if n == 0 {
            break;
        }
        checker.feed(&buf[..n])?;
        out.write_all(&buf[..n])
            .await
            .map_err(|e| dr_core::Error::io(format!("writing {what}"), e))?;
    }
    let summary = checker.finish()?;
    let differences = summary.counts.differences(&rdb.details.counts);
    if !differences.is_empty() {
        return Err(dr_core::Error::corrupt(
            &what,
            format!(
                "its keys differ from those counted at backup time: {}",
                differences.join("; ")
            ),
        ));
    }
    Ok(())
}
