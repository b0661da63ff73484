//! [`FileSnapshot`] (dr-core `Backup`): Redis's own files from a path, for
//! a sidecar that mounts the data volume — an RDB file, or a Redis 7
//! `appendonlydir` (its manifest, its base and its incremental files) — as
//! the seed's `kubectl exec … cat appendonly.aof` does by hand.
//!
//! An RDB (and an append-only directory's RDB base) is framed and its
//! checksum checked as it is stored; incremental AOF files are stored as
//! they are. Redis writes new files and renames them over the old, so a
//! file once opened is one whole version of it; the manifest is read first,
//! and a file it lists that is gone by the time it is opened fails the
//! backup (Redis rewrote its AOF meanwhile: take the backup again).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use dr_core::{
    Backup, BackupReport, BackupRequest, Capabilities, ComponentId, RecoveryPoint, SnapshotWriter,
    StreamName, Timeline, async_trait,
};
use jiff::Timestamp;
use tokio::io::AsyncReadExt;

use crate::error::Error;
use crate::rdb::verify::RdbSummary;
use crate::snapshot::{Chunks, RDB_STREAM, RdbSnapshotDetails, commit, store_checked};

/// The prefix of an append-only directory's streams: the manifest and each
/// file it lists keep their names under it.
pub const AOF_STREAM_PREFIX: &str = "appendonlydir/";

/// Backs up Redis's files at a path: an RDB file, or an `appendonlydir`.
///
/// ```no_run
/// # async fn demo(repo: &dr_storage::Repository) -> dr_core::Result<()> {
/// use dr_core::BackupExt;
/// use dr_redis::{FileSnapshot, RdbSnapshotDetails};
///
/// let files = FileSnapshot::new("redis/sessions".parse()?, "/data/appendonlydir");
/// let report = files.backup_to(repo).await?;
/// let details = RdbSnapshotDetails::of(&report.manifest)?;
/// println!("{} streams, {} keys in the base", report.manifest.streams.len(), details.counts.keys());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileSnapshot {
    component: ComponentId,
    path: PathBuf,
}

impl FileSnapshot {
    /// Snapshots of the RDB file or append-only directory at `path`.
    pub fn new(component: ComponentId, path: impl Into<PathBuf>) -> Self {
        Self {
            component,
            path: path.into(),
        }
    }
}

/// What was stored: the RDB's summary (an append-only directory's base),
/// the newest file's time, and the framing's name for the details.
type Stored = (RdbSummary, Timestamp, &'static str);

#[async_trait]
impl Backup for FileSnapshot {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    async fn backup(&self, request: BackupRequest<'_>) -> dr_core::Result<BackupReport> {
        let mut timeline = Timeline::start_now();
        let meta = tokio::fs::metadata(&self.path)
            .await
            .map_err(|e| dr_core::Error::io(format!("reading {}", self.path.display()), e))?;
        let mut writer = request
            .sink
            .begin(&self.component, Timestamp::now())
            .await?;
        let step = format!("store {}", self.path.display());
        let stored = if meta.is_dir() {
            timeline
                .step(step, store_aof_dir(writer.as_mut(), &self.path))
                .await
        } else {
            timeline
                .step(step, store_rdb_file(writer.as_mut(), &self.path))
                .await
        };
        let (summary, at, framing) = match stored {
            Ok(stored) => stored,
            Err(error) => {
                writer.abort().await.ok();
                return Err(error);
            }
        };
        let server_version = summary.redis_version.clone().unwrap_or_default();
        let details = RdbSnapshotDetails::of_summary(summary, server_version, framing);
        commit(writer, timeline, &request, RecoveryPoint::new(at), &details).await
    }
}

/// An RDB file, as the stream `rdb`.
async fn store_rdb_file(writer: &mut dyn SnapshotWriter, path: &Path) -> dr_core::Result<Stored> {
    let mut file = FileChunks::open(path).await?;
    let name = RDB_STREAM.parse::<StreamName>()?;
    let summary = store_checked(writer, &name, &mut file).await?;
    Ok((summary, modified(path).await?, "file"))
}

/// An append-only directory: its manifest as read, then the files it
/// lists (history files, about to be deleted, left out), the base checked.
async fn store_aof_dir(writer: &mut dyn SnapshotWriter, dir: &Path) -> dr_core::Result<Stored> {
    let (manifest_path, text) = read_manifest(dir).await?;
    let not_aof = |reason: String| {
        dr_core::Error::from(Error::NotRedisFiles {
            path: manifest_path.display().to_string(),
            reason,
        })
    };
    let listed = parse_manifest(&text).map_err(not_aof)?;
    let manifest_name = file_name(&manifest_path);
    writer
        .add_stream(&stream_name(&manifest_name)?, &mut text.as_bytes())
        .await?;
    let mut newest = modified(&manifest_path).await?;
    let mut base = None;
    for (name, kind) in listed.iter().filter(|(_, kind)| *kind != 'h') {
        let path = dir.join(name);
        let stream = stream_name(name)?;
        if *kind == 'b' {
            if !name.ends_with(".rdb") {
                return Err(not_aof(format!(
                    "its base {name} is an AOF, not an RDB (aof-use-rdb-preamble no): not supported"
                )));
            }
            let mut file = FileChunks::open(&path).await?;
            base = Some(store_checked(writer, &stream, &mut file).await?);
        } else {
            let mut file = open(&path).await?;
            writer.add_stream(&stream, &mut file).await?;
        }
        newest = newest.max(modified(&path).await?);
    }
    let base = base.ok_or_else(|| not_aof("it lists no base file".to_owned()))?;
    Ok((base, newest, crate::restore::APPENDONLYDIR))
}

/// The directory's `*.manifest` file and its text.
async fn read_manifest(dir: &Path) -> dr_core::Result<(PathBuf, String)> {
    let io = |e| dr_core::Error::io(format!("reading {}", dir.display()), e);
    let mut entries = tokio::fs::read_dir(dir).await.map_err(io)?;
    let mut manifests = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(io)? {
        if entry.file_name().to_string_lossy().ends_with(".manifest") {
            manifests.push(entry.path());
        }
    }
    let [manifest] = &manifests[..] else {
        return Err(Error::NotRedisFiles {
            path: dir.display().to_string(),
            reason: format!(
                "{} *.manifest files; expected an RDB file or one appendonlydir",
                manifests.len()
            ),
        }
        .into());
    };
    let text = tokio::fs::read_to_string(manifest)
        .await
        .map_err(|e| dr_core::Error::io(format!("reading {}", manifest.display()), e))?;
    Ok((manifest.clone(), text))
}

/// The files an append-only manifest lists, in order, with their type:
/// `b` (base), `h` (history) or `i` (incremental). Lines are `file <name>
/// seq <n> type <t>`, in any order of the pairs after `file`.
fn parse_manifest(text: &str) -> Result<Vec<(String, char)>, String> {
    let mut files = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let pairs: Vec<(&str, &str)> = words
            .chunks(2)
            .filter_map(|p| Some((p[0], *p.get(1)?)))
            .collect();
        let get = |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let (Some(name), Some(kind)) = (get("file"), get("type")) else {
            return Err(format!(
                "line {}: {line:?} names no file and type",
                number + 1
            ));
        };
        let kind = match kind {
            "b" => 'b',
            "h" => 'h',
            "i" => 'i',
            other => return Err(format!("line {}: unknown file type {other:?}", number + 1)),
        };
        // Only names inside the directory.
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(format!("line {}: file name {name:?}", number + 1));
        }
        files.push((name.to_owned(), kind));
    }
    Ok(files)
}

/// `appendonlydir/<name>`.
fn stream_name(name: &str) -> dr_core::Result<StreamName> {
    format!("{AOF_STREAM_PREFIX}{name}").parse()
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn open(path: &Path) -> dr_core::Result<tokio::fs::File> {
    tokio::fs::File::open(path)
        .await
        .map_err(|e| dr_core::Error::io(format!("opening {}", path.display()), e))
}

/// When the file at `path` was last written.
async fn modified(path: &Path) -> dr_core::Result<Timestamp> {
    let io = |e| dr_core::Error::io(format!("reading {}", path.display()), e);
    let time = tokio::fs::metadata(path)
        .await
        .map_err(io)?
        .modified()
        .map_err(io)?;
    Timestamp::try_from(time)
        .map_err(|e| dr_core::Error::invalid(format!("{}'s time", path.display()), e.to_string()))
}

/// A file read a MiB at a time.
struct FileChunks {
    file: tokio::fs::File,
    read: u64,
}

impl FileChunks {
    async fn open(path: &Path) -> dr_core::Result<Self> {
        Ok(Self {
            file: open(path).await?,
            read: 0,
        })
    }
}

#[async_trait]
impl Chunks for FileChunks {
    async fn next_chunk(&mut self) -> crate::Result<Option<Bytes>> {
        let mut buf = Vec::with_capacity(1 << 20);
        let n = (&mut self.file)
            .take(1 << 20)
            .read_to_end(&mut buf)
            .await
            .map_err(|source| Error::Io {
                offset: self.read,
                source,
            })?;
        self.read += n as u64;
        Ok((n > 0).then(|| Bytes::from(buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_manifest;

    #[test]
    fn manifests_list_their_files_and_refuse_paths() {
        let text = "file appendonly.aof.2.base.rdb seq 2 type b\n\
                    file appendonly.aof.1.incr.aof seq 1 type h\n\
                    file appendonly.aof.2.incr.aof seq 2 type i\n";
        assert_eq!(
            parse_manifest(text).unwrap(),
            [
                ("appendonly.aof.2.base.rdb".to_owned(), 'b'),
                ("appendonly.aof.1.incr.aof".to_owned(), 'h'),
                ("appendonly.aof.2.incr.aof".to_owned(), 'i'),
            ]
        );
        for bad in [
            "file ../etc/passwd seq 1 type b",
            "file x seq 1 type z",
            "seq 1 type b",
        ] {
            assert!(parse_manifest(bad).is_err(), "{bad}");
        }
    }
}
