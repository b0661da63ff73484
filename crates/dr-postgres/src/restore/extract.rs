//! Step 4: extracting the base backup's tar archives, with a pool of writers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dr_core::{Manifest, ProgressSink, SnapshotSource, StreamCheck};

use crate::backup::MANIFEST_STREAM;
use crate::delta::{DELTA_STREAM, DeltaBase, open_archive};
use crate::tar::{EntryKind, TarReader};
use crate::verify::ManifestFiles;

use super::{PitrRestore, create_private_dir};
use crate::details::BaseBackupDetails;
use crate::metered::Meter;

/// The restore's step that extracts, as its timeline names it.
pub(super) const EXTRACT_STEP: &str = "extract base backup";

impl PitrRestore {
    pub(super) async fn extract(
        &self,
        source: &dyn SnapshotSource,
        manifest: &Manifest,
        facts: &BaseBackupDetails,
        progress: Option<&dyn ProgressSink>,
    ) -> dr_core::Result<()> {
        let targets = self.tablespace_targets(facts);
        // Tablespace links point where their archives are extracted.
        let links: BTreeMap<String, PathBuf> = targets
            .iter()
            .filter_map(|(archive, to)| {
                Some((
                    format!("pg_tblspc/{}", archive.strip_suffix(".tar")?),
                    to.clone(),
                ))
            })
            .collect();
        let delta = DeltaBase::of(source, manifest).await?;
        // Every file is checked against the server's backup manifest as it
        // is written, which covers every byte where each file has a
        // checksum: then the streams need not be hashed whole as well.
        let (mut files, backup_manifest) = ManifestFiles::read(source, &manifest.id).await?;
        let check = if files.checks_every_byte() {
            StreamCheck::Pieces
        } else {
            StreamCheck::Digest
        };
        // A delta's stored streams are smaller than the archives they make.
        let total = delta.is_none().then(|| {
            manifest
                .streams
                .iter()
                .filter(|s| s.name.as_str() != MANIFEST_STREAM)
                .map(|s| s.size)
                .sum()
        });
        let meter = Meter::new(progress, EXTRACT_STEP, total);
        for entry in &manifest.streams {
            let name = entry.name.as_str();
            if name == MANIFEST_STREAM || name == DELTA_STREAM {
                continue;
            }
            let not_described = || {
                dr_core::Error::corrupt(
                    format!("snapshot {}", manifest.id),
                    format!("archive {name} is not a known tablespace"),
                )
            };
            let (dir, links) = if name == "base.tar" {
                (self.data_dir.clone(), &links)
            } else {
                let dir = targets.get(name).cloned().ok_or_else(not_described)?;
                (dir, &BTreeMap::new())
            };
            let prefix = ManifestFiles::prefix_of(manifest, name).ok_or_else(not_described)?;
            create_private_dir(&dir)?;
            let stream = open_archive(source, manifest, delta.as_ref(), &entry.name, check).await?;
            let archive = Archive {
                name,
                prefix: &prefix,
                dir: &dir,
                links,
            };
            extract_tar(meter.reader(stream), &archive, &mut files).await?;
        }
        meter.finish();
        files.finish_all();
        if !files.problems.is_empty() {
            const SHOWN: usize = 5;
            let more = files.problems.len().saturating_sub(SHOWN);
            let mut reason = files.problems[..files.problems.len().min(SHOWN)]
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            if more > 0 {
                reason.push_str(&format!("; and {more} more"));
            }
            return Err(dr_core::Error::corrupt(
                format!("base backup {} against its backup manifest", manifest.id),
                reason,
            ));
        }
        // The backup manifest rides along, as pg_basebackup leaves it.
        let path = self.data_dir.join(MANIFEST_STREAM);
        tokio::fs::write(&path, backup_manifest)
            .await
            .map_err(|e| dr_core::Error::io(format!("writing {}", path.display()), e))?;
        Ok(())
    }
}

/// One archive of a base backup, and where its files go.
pub(super) struct Archive<'a> {
    name: &'a str,
    /// Where its files sit in the backed-up data directory (see
    /// [`ManifestFiles::prefix_of`]).
    prefix: &'a str,
    dir: &'a Path,
    links: &'a BTreeMap<String, PathBuf>,
}

/// Extracts one archive into its `dir`, checking each file against the backup
/// manifest (`files`); symlinks named in `links` point at their
/// mapped targets instead of where the archive says. Files are written by
/// blocking threads of their own, straight from the buffers read here, each
/// new file by the least busy one (creating files is much of a restore's
/// cost on ext4, and it runs in parallel); they are made durable together
/// afterwards ([`sync_filesystems`]).
async fn extract_tar(
    stream: impl tokio::io::AsyncRead + Unpin,
    archive: &Archive<'_>,
    files: &mut ManifestFiles,
) -> dr_core::Result<()> {
    let count = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    let (writers, threads): (Vec<_>, Vec<_>) = (0..count)
        .map(|_| {
            let (ops, received) = tokio::sync::mpsc::channel(WRITER_QUEUE);
            (
                ops,
                tokio::task::spawn_blocking(move || write_files(received)),
            )
        })
        .unzip();
    let read = read_tar(stream, archive, files, &writers).await;
    drop(writers);
    for thread in threads {
        // Reading stops when a writer failed: its error is the cause.
        thread
            .await
            .map_err(|e| dr_core::Error::io("writing files", std::io::Error::other(e)))??;
    }
    read
}

/// Operations queued for each writing thread.
const WRITER_QUEUE: usize = 8;

/// What the file-writing thread does next.
enum WriteOp {
    Directory {
        path: PathBuf,
        mode: u32,
    },
    /// Creates a file; the `Data` that follow are its content.
    File {
        path: PathBuf,
        mode: u32,
    },
    Data(bytes::Bytes),
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
}

/// Reads the tar and hands every entry to the writer.
async fn read_tar(
    stream: impl tokio::io::AsyncRead + Unpin,
    archive: &Archive<'_>,
    files: &mut ManifestFiles,
    writers: &[tokio::sync::mpsc::Sender<WriteOp>],
) -> dr_core::Result<()> {
    use tokio::io::AsyncReadExt;
    let Archive {
        name,
        prefix,
        dir,
        links,
    } = *archive;
    const WRITE: usize = 1 << 20;
    // An entry and a file's content go to the writer chosen at its start.
    let mut ops = &writers[0];
    let mut tar = TarReader::new(stream, name);
    while let Some(entry) = tar
        .next_entry()
        .await
        .map_err(|e| dr_core::Error::io(format!("reading {name}"), e))?
    {
        let path = dir.join(&entry.path);
        if let Some(idlest) = writers.iter().max_by_key(|w| w.capacity()) {
            ops = idlest;
        }
        match &entry.kind {
            EntryKind::Directory => {
                send(
                    ops,
                    WriteOp::Directory {
                        path,
                        mode: entry.mode.max(0o700),
                    },
                )
                .await?;
            }
            EntryKind::File => {
                send(
                    ops,
                    WriteOp::File {
                        path: path.clone(),
                        mode: entry.mode,
                    },
                )
                .await?;
                let mut check = files.start(format!("{prefix}{}", entry.path), entry.size, name);
                let mut content = tar.content();
                loop {
                    let mut buf = bytes::BytesMut::with_capacity(WRITE);
                    while buf.len() < WRITE {
                        let n = content
                            .read_buf(&mut buf)
                            .await
                            .map_err(|e| dr_core::Error::io(format!("reading {name}"), e))?;
                        if n == 0 {
                            break;
                        }
                    }
                    if buf.is_empty() {
                        break;
                    }
                    check.update(&buf);
                    send(ops, WriteOp::Data(buf.freeze())).await?;
                }
                files.finish(check);
            }
            EntryKind::Symlink(target) => {
                let target = links
                    .get(&entry.path)
                    .cloned()
                    .unwrap_or_else(|| PathBuf::from(target));
                send(ops, WriteOp::Symlink { path, target }).await?;
            }
        }
    }
    tar.finish()
        .await
        .map_err(|e| dr_core::Error::io(format!("reading {name}"), e))
}

/// Queues `op` for a writing thread; fails if the thread stopped.
async fn send(ops: &tokio::sync::mpsc::Sender<WriteOp>, op: WriteOp) -> dr_core::Result<()> {
    ops.send(op)
        .await
        .map_err(|_| dr_core::Error::io("writing files", std::io::Error::other("stopped")))
}

/// The writing thread: carries out `ops` in order with plain blocking calls.
fn write_files(mut ops: tokio::sync::mpsc::Receiver<WriteOp>) -> dr_core::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let io = |what: &str, path: &Path| {
        let what = format!("{what} {}", path.display());
        move |e: std::io::Error| dr_core::Error::io(what, e)
    };
    let parent_of = |path: &Path| match path.parent() {
        Some(parent) => create_private_dir(parent),
        None => Ok(()),
    };
    let mut current: Option<Writing> = None;
    while let Some(op) = ops.blocking_recv() {
        match op {
            WriteOp::Data(bytes) => {
                let writing = current.as_mut().ok_or_else(|| {
                    dr_core::Error::io(
                        "writing files",
                        std::io::Error::other("data outside a file"),
                    )
                })?;
                writing
                    .file
                    .write_all(&bytes)
                    .map_err(io("writing", &writing.path))?;
                writing.written += bytes.len() as u64;
                if writing.written - writing.flushing >= FLUSH_AHEAD {
                    writing.start_writeback();
                }
            }
            WriteOp::File { path, mode } => {
                parent_of(&path)?;
                let file = std::fs::File::create(&path).map_err(io("creating", &path))?;
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(io("setting the mode of", &path))?;
                if let Some(done) = current.replace(Writing::new(file, path)) {
                    done.finish();
                }
            }
            WriteOp::Directory { path, mode } => {
                create_private_dir(&path)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(io("setting the mode of", &path))?;
            }
            WriteOp::Symlink { path, target } => {
                parent_of(&path)?;
                std::os::unix::fs::symlink(&target, &path).map_err(io("linking", &path))?;
            }
        }
    }
    if let Some(done) = current {
        done.finish();
    }
    Ok(())
}

/// Bytes of a file written before its write-back is started.
const FLUSH_AHEAD: u64 = 8 << 20;

/// The file a writing thread is filling.
struct Writing {
    file: std::fs::File,
    path: PathBuf,
    written: u64,
    /// Where the write-back started so far ends.
    flushing: u64,
}

impl Writing {
    fn new(file: std::fs::File, path: PathBuf) -> Self {
        Self {
            file,
            path,
            written: 0,
            flushing: 0,
        }
    }

    /// Starts writing what was written since the last call to the disk,
    /// without waiting (POSIX_FADV_DONTNEED starts write-back of dirty
    /// pages on Linux, as PostgreSQL's `pg_flush_data` uses it), so that the
    /// final sync finds little left to do. Only a hint: durability comes
    /// from [`sync_filesystems`], so a failure here changes nothing.
    fn start_writeback(&mut self) {
        let (Ok(start), Ok(len)) = (
            i64::try_from(self.flushing),
            i64::try_from(self.written - self.flushing),
        ) else {
            return;
        };
        let advice = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED;
        nix::fcntl::posix_fadvise(&self.file, start, len, advice).ok();
        self.flushing = self.written;
    }

    fn finish(mut self) {
        if self.written > self.flushing {
            self.start_writeback();
        }
    }
}

/// Makes everything written under `dirs` durable: one `syncfs(2)` per
/// filesystem (file data, inodes and directory entries alike), as
/// PostgreSQL's own `recovery_init_sync_method = syncfs` does, instead of an
/// fsync per file. Linux reports write-back errors through it.
pub(super) fn sync_filesystems(dirs: &[PathBuf]) -> dr_core::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut synced = std::collections::BTreeSet::new();
    for dir in dirs {
        let handle = std::fs::File::open(dir)
            .map_err(|e| dr_core::Error::io(format!("opening {}", dir.display()), e))?;
        let device = handle
            .metadata()
            .map_err(|e| dr_core::Error::io(format!("reading {}", dir.display()), e))?
            .dev();
        if synced.insert(device) {
            nix::unistd::syncfs(&handle).map_err(|e| {
                dr_core::Error::io(
                    format!("syncing the filesystem of {}", dir.display()),
                    e.into(),
                )
            })?;
        }
    }
    Ok(())
}

pub(super) fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(dir)?.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}
