//! [`RdbFileRestore`] (dr-core `Restore`): a cold restore, the snapshot's
//! RDB written as a file where a stopped server loads it at start.

use std::path::{Path, PathBuf};

use dr_core::{
    Capabilities, ComponentId, Operation, RecoveryReport, Restore, RestoreRequest,
    SnapshotSourceExt, Timeline, async_trait,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{StoredRdb, choose, rdb_streams};
use crate::cluster::snapshot::ClusterSnapshotDetails;
use crate::rdb::verify::Verifier;

/// Writes a snapshot's RDB to a file: for a server that is stopped, whose
/// `dir`/`dbfilename` the path is, to load at its next start.
///
/// The file appears only whole: the RDB is written beside it under a
/// temporary name, framed and its checksum checked on the way, synced, and
/// renamed into place; a damaged snapshot leaves the path as it was. For a
/// cluster snapshot, [`RdbFileRestore::shard`] names the master whose RDB
/// to write; the node that loads it must serve that master's slots (keep
/// its `nodes.conf`, or assign them before it takes traffic).
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
        let rdb = self.pick(&manifest)?;
        timeline
            .step(
                "write the RDB file",
                write_file(request.snapshots, &manifest, &rdb, &self.path),
            )
            .await?;
        let mut report = RecoveryReport::new(
            self.component.clone(),
            Operation::Restore,
            request.objectives,
            timeline,
        );
        let wanted = request.incident_at.unwrap_or(report.timeline.started_at());
        if let Some(at) = request.incident_at {
            report = report.with_incident_at(at);
        }
        Ok(report.with_data_loss_between(manifest.recovery_point.at, wanted))
    }
}

/// Writes `rdb` of `manifest` to `path` through a temporary file beside it.
async fn write_file(
    source: &dyn dr_core::SnapshotSource,
    manifest: &dr_core::Manifest,
    rdb: &StoredRdb,
    path: &Path,
) -> dr_core::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        dr_core::Error::invalid("RDB file", format!("{} names no file", path.display()))
    })?;
    let mut temporary = name.to_os_string();
    temporary.push(".drkit-partial");
    let partial = path.with_file_name(temporary);
    let io = |what: &str, e: std::io::Error| {
        dr_core::Error::io(format!("{what} {}", partial.display()), e)
    };
    let written = async {
        let mut stream = source.open_stream(&manifest.id, &rdb.stream).await?;
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| io("creating", e))?;
        let mut checker = Verifier::framing_only();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = stream.read(&mut buf).await.map_err(|e| {
                dr_core::Error::corrupt(
                    format!("snapshot {}: {}", manifest.id, rdb.stream),
                    format!("the stored RDB does not read back: {e}"),
                )
            })?;
            if n == 0 {
                break;
            }
            checker.feed(&buf[..n])?;
            file.write_all(&buf[..n])
                .await
                .map_err(|e| io("writing", e))?;
        }
        let summary = checker.finish()?;
        let differences = summary.counts.differences(&rdb.details.counts);
        if !differences.is_empty() {
            return Err(dr_core::Error::corrupt(
                format!("snapshot {}: {}", manifest.id, rdb.stream),
                format!(
                    "its keys differ from those counted at backup time: {}",
                    differences.join("; ")
                ),
            ));
        }
        file.sync_all().await.map_err(|e| io("syncing", e))?;
        Ok(())
    }
    .await;
    if let Err(e) = written {
        tokio::fs::remove_file(&partial).await.ok();
        return Err(e);
    }
    tokio::fs::rename(&partial, path)
        .await
        .map_err(|e| io("renaming into place", e))?;
    Ok(())
}
