//! `drkit wal push` and `drkit wal fetch`: PostgreSQL's `archive_command`
//! and `restore_command` for a component's archive in the repository.
//!
//! ```text
//! archive_command = 'drkit --config /etc/drkit/drkit.toml wal push %p'
//! restore_command = 'drkit --config /etc/drkit/drkit.toml wal fetch %f %p'
//! ```
//!
//! A push runs once per segment, so it must be cheap: the repository is
//! opened through the user's key cache (the config's `key_cache`), so only
//! the first push derives the key and checks the store's create-only
//! writes; the file is read whole and handed to the repository without a
//! copy. It still exits 0 only once the segment is durable in the store
//! (on a local directory: written, fsynced, linked into place and the
//! directory fsynced).

use std::ffi::OsString;
use std::path::Path;

use dr_core::{ComponentId, ErrorKind, JournalSource, SegmentName};
use dr_postgres::{ArchivedWal, WalSegmentSize, fetch_wal};
use dr_storage::Repository;
use tokio::io::AsyncWriteExt;

use crate::failure::{Failure, Outcome};

/// Stores the WAL file at `path` (a segment, or a `.history`, `.backup` or
/// `.partial` file) in `component`'s archive under its file name. Pushing
/// the same file again succeeds; different content under an archived name
/// fails. It returns once the file is durable in the repository.
pub(crate) async fn push(
    repo: &Repository,
    component: &ComponentId,
    size: WalSegmentSize,
    path: &Path,
) -> Outcome {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Failure::Usage(format!("{} has no file name", path.display())))?;
    let name: SegmentName = file_name.parse().map_err(|e| {
        Failure::Usage(format!(
            "{file_name:?} cannot be stored in the archive: {e}"
        ))
    })?;
    let expected = match ArchivedWal::parse(file_name, size) {
        Some(ArchivedWal::Segment(_)) => Some(size.bytes()),
        _ => None,
    };
    // Read whole, in one go off the runtime: the segment is handed to the
    // repository as it is, without a copy.
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || read_whole(&owned, expected))
        .await
        .map_err(|e| Failure::of(format_args!("reading {}", path.display()), &e))?
        .map_err(|e| Failure::of(format_args!("reading {}", path.display()), &e))?;
    let data = read.map_err(|len| {
        Failure::Failed(format!(
            "{} has {len} bytes, but this cluster's WAL segments have {} \
             (the component's wal_segment_size)",
            path.display(),
            size.bytes()
        ))
    })?;
    match repo.put_segment_bytes(component, &name, data).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(Failure::Failed(format!(
            "{name} is already archived for {component} with different content; not overwriting it"
        ))),
        Err(e) => Err(Failure::of(format_args!("archiving {name}"), &e)),
    }
}

/// The bytes of the file at `path`, or its length if it is not `expected`.
fn read_whole(path: &Path, expected: Option<u64>) -> std::io::Result<Result<Vec<u8>, u64>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if expected.is_some_and(|bytes| bytes != len) {
        return Ok(Err(len));
    }
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_end(&mut data)?;
    Ok(Ok(data))
}

/// Writes the archived file `file` of `component` to `dest`, atomically
/// (a temporary file beside it, then a rename). A segment streamed but not
/// completed is assembled from its pieces and padded with zeros. A file not
/// in the archive is a failure (exit 1), which PostgreSQL reads as "not
/// available".
pub(crate) async fn fetch(
    repo: &Repository,
    component: &ComponentId,
    size: WalSegmentSize,
    file: &str,
    dest: &Path,
) -> Outcome {
    // A directory's archive may hold its newest WAL in segment journals.
    let journals = repo.segment_journals();
    let journals = journals.as_ref().map(|j| j as &dyn JournalSource);
    let data = match fetch_wal(repo, journals, component, file, size).await {
        Ok(Some(data)) => data,
        Ok(None) => {
            return Err(Failure::Failed(format!(
                "{file} is not in the archive of {component}"
            )));
        }
        Err(e) if e.kind() == ErrorKind::InvalidInput => {
            return Err(Failure::Usage(format!("{file:?}: {e}")));
        }
        Err(e) => return Err(Failure::of(format_args!("fetching {file}"), &e)),
    };
    write_atomically(dest, &data)
        .await
        .map_err(|e| Failure::of(format_args!("writing {}", dest.display()), &e))
}

/// Writes `data` to a temporary file beside `dest`, then renames it over
/// `dest`: PostgreSQL sees the whole file or none.
async fn write_atomically(dest: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = dest
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".drkit-{}.tmp", std::process::id()));
    let temp = dest.with_file_name(temp_name);
    let result = async {
        let mut file = tokio::fs::File::create(&temp).await?;
        file.write_all(data).await?;
        file.flush().await?;
        drop(file);
        tokio::fs::rename(&temp, dest).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result
}
