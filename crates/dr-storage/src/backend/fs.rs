//! A backend in a local directory.
//!
//! Key `data/ab/abcd` is the file `<root>/data/ab/abcd`. Writes go to a
//! temporary file in the target's directory, are fsynced, and are then moved
//! into place: `rename` for [`PutMode::Overwrite`], `link` (which fails
//! atomically if the name is taken) for [`PutMode::Create`]; the directory is
//! fsynced afterwards. Objects of 1 MiB and more (packs) are written
//! around the page cache (`O_DIRECT`, where the filesystem allows it):
//! a backup's data is not read again soon, and copying it into fresh page
//! cache was the largest single cost of a first backup on a virtual
//! machine whose host hands the guest's free memory back.
//!
//! Temporary files are named `~tmp.<pid>.<counter>.<nanos>`. `~` is not a key
//! character ([`check_key`]), so such a name can never be a key, and listings
//! skip every file or directory whose name is not a valid key segment: a
//! temporary file left behind by a crash is never listed (and is harmless;
//! it may be removed by hand).
//!
//! [`WriteBackend::open_in_place`] is offered: the object is created like any
//! other (zeros, fsynced, linked into place, directory fsynced), so every
//! block is allocated and written before it is used, and each later write is
//! one `pwrite` and one `fdatasync` that touches no metadata, the way
//! `pg_receivewal` preallocates its segments.
//!
//! Filesystem limits: a key cannot also be the "directory" of another key
//! (`a` and `a/b` cannot both exist); such a put fails with `Io`. Empty
//! directories left by `delete` are kept (removing them would race with a
//! concurrent `put` into the same directory).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::common::{check_limit, clamp_range, page_of};
use crate::backend::{
    BackendCapabilities, InPlaceObject, ListPage, ObjectMeta, PutMode, PutOptions, ReadBackend,
    UnfinishedWrite, WriteBackend, check_key, check_prefix,
};
use crate::error::{Error, Result};

/// The prefix of temporary file names; `~` never occurs in a key.
const TMP_PREFIX: &str = "~tmp.";

/// Objects as files under a root directory.
///
/// ```
/// use dr_storage::{FsBackend, PutOptions, ReadBackend, WriteBackend};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> dr_storage::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = FsBackend::new(dir.path().join("repo"))?;
/// store.put("data/ab/abcd", "blob".into(), PutOptions::CREATE).await?;
/// assert_eq!(store.get("data/ab/abcd", Some(1..3)).await?, "lo");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FsBackend {
    root: Arc<PathBuf>,
}

impl FsBackend {
    /// A store rooted at `root`, which is created if missing.
    ///
    /// # Errors
    /// `Io` if the directory cannot be created or is not a directory.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        let meta =
            fs::metadata(&root).map_err(|e| Error::io(format!("reading {}", root.display()), e))?;
        if !meta.is_dir() {
            return Err(Error::io(
                format!("{} is not a directory", root.display()),
                io::Error::from(io::ErrorKind::NotADirectory),
            ));
        }
        Ok(Self {
            root: Arc::new(root),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        let mut path = self.root.to_path_buf();
        path.extend(key.split('/'));
        path
    }

    fn not_found(&self, key: &str) -> Error {
        Error::NotFound {
            location: self.location(),
            key: key.to_owned(),
        }
    }

    /// Runs blocking file work off the async runtime.
    async fn blocking<T, F>(&self, what: &'static str, key: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        match tokio::task::spawn_blocking(f).await {
            Ok(result) => result,
            Err(join) => Err(Error::Backend {
                location: self.location(),
                operation: what,
                key: key.to_owned(),
                transient: false,
                source: Box::new(join),
            }),
        }
    }
}

/// The object is not there: no file, a directory, or a path through a file.
fn is_missing(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory
    )
}

fn read_range(path: &Path, range: Option<Range<u64>>) -> io::Result<Option<Vec<u8>>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let range = clamp_range(range.unwrap_or(0..u64::MAX), meta.len());
    let len = usize::try_from(range.end - range.start)
        .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    let mut buf = Vec::with_capacity(len);
    file.seek(SeekFrom::Start(range.start))?;
    file.take(range.end - range.start).read_to_end(&mut buf)?;
    Ok(Some(buf))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing ancestors, fsyncing the parent of each one
/// created so the new entries survive a crash.
fn create_dirs(root: &Path, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while cur != root && !cur.is_dir() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(parent) => cur = parent,
            None => break,
        }
    }
    fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

fn tmp_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{TMP_PREFIX}{}.{}.{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Outcome of a blocking write.
#[derive(PartialEq, Eq)]
enum Written {
    Done,
    Exists,
}

/// Objects at least this large are written with `O_DIRECT`.
const DIRECT_MIN: usize = 1 << 20;
/// The alignment `O_DIRECT` needs of memory, lengths and offsets (the
/// largest logical block size in common use).
const DIRECT_ALIGN: usize = 4096;
/// How much is written per `O_DIRECT` call.
const DIRECT_PIECE: usize = 1 << 20;

fn write_atomic(root: &Path, path: &Path, data: &[u8], mode: PutMode) -> io::Result<Written> {
    if data.len() >= DIRECT_MIN {
        match write_atomic_with(root, path, data, mode, true) {
            // The filesystem or device does not take O_DIRECT as we use it.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            other => return other,
        }
    }
    write_atomic_with(root, path, data, mode, false)
}

fn write_atomic_with(
    root: &Path,
    path: &Path,
    data: &[u8],
    mode: PutMode,
    direct: bool,
) -> io::Result<Written> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    create_dirs(root, dir)?;
    let (tmp, mut file) = loop {
        let tmp = dir.join(tmp_name());
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        match options.open(&tmp) {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    let result = (|| {
        if direct {
            write_direct(&mut file, data)?;
        } else {
            file.write_all(data)?;
        }
        file.sync_all()?;
        drop(file);
        match mode {
            PutMode::Overwrite => fs::rename(&tmp, path).map(|()| Written::Done),
            PutMode::Create => match fs::hard_link(&tmp, path) {
                Ok(()) => Ok(Written::Done),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Written::Exists),
                Err(e) => Err(e),
            },
        }
    })();
    if mode == PutMode::Create || result.is_err() {
        // The temporary name is still there (after a rename it is not). If
        // removing it fails, the leftover is harmless: it is never listed.
        let _ignored = fs::remove_file(&tmp);
    }
    if matches!(result, Ok(Written::Done)) {
        sync_dir(dir)?;
    }
    result
}

/// Writes `data` to `file`, opened with `O_DIRECT`: straight from `data`
/// where its memory is aligned (a pack buffer's is), the rest through an
/// aligned buffer, its last piece padded to the alignment and the file then
/// cut to its length. `EINVAL` if the filesystem refuses.
fn write_direct(file: &mut File, data: &[u8]) -> io::Result<()> {
    let whole = if data.as_ptr().align_offset(DIRECT_ALIGN) == 0 {
        data.len() - data.len() % DIRECT_ALIGN
    } else {
        0
    };
    let (direct, rest) = data.split_at(whole);
    for piece in direct.chunks(DIRECT_PIECE) {
        file.write_all(piece)?;
    }
    if !rest.is_empty() {
        let size = rest.len().next_multiple_of(DIRECT_ALIGN).min(DIRECT_PIECE);
        let mut scratch = vec![0u8; size + DIRECT_ALIGN];
        let start = scratch.as_ptr().align_offset(DIRECT_ALIGN);
        let aligned = scratch
            .get_mut(start..start + size)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        for piece in rest.chunks(size) {
            let padded = piece.len().next_multiple_of(DIRECT_ALIGN);
            aligned[..piece.len()].copy_from_slice(piece);
            aligned[piece.len()..padded].fill(0);
            file.write_all(&aligned[..padded])?;
        }
    }
    file.set_len(data.len() as u64)
}

/// Opens `path` for writing, first creating it as `capacity` zero bytes if
/// it does not exist (as a put would, so a half-created file is never seen);
/// whether it did.
fn open_in_place(root: &Path, path: &Path, capacity: usize) -> io::Result<(File, bool)> {
    let created = !path.is_file()
        // Else taken by a racing open, which may have written to it since.
        && write_atomic(root, path, &vec![0; capacity], PutMode::Create)? == Written::Done;
    Ok((OpenOptions::new().write(true).open(path)?, created))
}

/// A file open for durable writes in place.
#[derive(Debug)]
struct FsInPlace {
    file: Arc<File>,
    created: bool,
    location: String,
    key: String,
}

#[async_trait]
impl InPlaceObject for FsInPlace {
    fn created(&self) -> bool {
        self.created
    }

    async fn write_durably(&self, offset: u64, data: Bytes) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let file = Arc::clone(&self.file);
        let written = tokio::task::spawn_blocking(move || {
            file.write_all_at(&data, offset)?;
            file.sync_data()
        })
        .await;
        match written {
            Ok(result) => result.map_err(|e| {
                Error::io(
                    format!("writing {} of {} in place", self.key, self.location),
                    e,
                )
            }),
            Err(join) => Err(Error::Backend {
                location: self.location.clone(),
                operation: "write in place",
                key: self.key.clone(),
                transient: false,
                source: Box::new(join),
            }),
        }
    }
}

/// Lists keys under `prefix` in ascending order, after `after`, at most `limit + 1`.
fn list_keys(
    root: &Path,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> io::Result<Vec<ObjectMeta>> {
    // Walk from the deepest directory that the prefix names completely.
    let (dir_key, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    let mut start = root.to_path_buf();
    if !dir_key.is_empty() {
        start.extend(dir_key.split('/'));
    }
    let mut out = Vec::new();
    let base = if dir_key.is_empty() {
        String::new()
    } else {
        format!("{dir_key}/")
    };
    walk(
        &start,
        &base,
        prefix,
        after,
        limit.saturating_add(1),
        &mut out,
    )?;
    Ok(out)
}

/// In-order walk of `dir` (whose keys start with `base`): entries are sorted
/// by name, directories as `name/`, which is exactly the byte order of the
/// full keys. Subtrees entirely at or before `after`, or outside `prefix`,
/// are skipped.
fn walk(
    dir: &Path,
    base: &str,
    prefix: &str,
    after: Option<&str>,
    want: usize,
    out: &mut Vec<ObjectMeta>,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_missing(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut items = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if check_key(&name).is_err() {
            // Temporary files and anything else that cannot be a key segment.
            continue;
        }
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            items.push((format!("{base}{name}/"), true, entry.path()));
        } else if file_type.is_file() {
            items.push((format!("{base}{name}"), false, entry.path()));
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, is_dir, path) in items {
        if out.len() >= want {
            return Ok(());
        }
        // Every key in this entry starts with `key`.
        let shares_prefix = key.starts_with(prefix) || (is_dir && prefix.starts_with(key.as_str()));
        if !shares_prefix {
            continue;
        }
        if let Some(after) = after {
            let all_before = key.as_str() <= after && !(is_dir && after.starts_with(key.as_str()));
            if all_before {
                continue;
            }
        }
        if is_dir {
            walk(&path, &key, prefix, after, want, out)?;
        } else {
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                // Deleted since we read the directory.
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(e),
            };
            out.push(ObjectMeta {
                key,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

/// Every temporary file under `dir` (a write that was never renamed into
/// place), named by its path under `root`, with its last write as its start.
fn temporary_files(root: &Path, dir: &Path, out: &mut Vec<UnfinishedWrite>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_missing(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            temporary_files(root, &path, out)?;
        } else if meta.is_file() && entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            let written = meta
                .modified()
                .ok()
                .and_then(|t| jiff::Timestamp::try_from(t).ok())
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            let name = path.strip_prefix(root).unwrap_or(&path);
            out.push(UnfinishedWrite::new(name.display().to_string(), written));
        }
    }
    Ok(())
}

#[async_trait]
impl ReadBackend for FsBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        check_key(key)?;
        let path = self.path(key);
        let context = format!("reading {}", path.display());
        let data = self
            .blocking("get", key, move || {
                read_range(&path, range).map_err(|e| Error::io(context, e))
            })
            .await?;
        data.map(Bytes::from).ok_or_else(|| self.not_found(key))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        check_key(key)?;
        let path = self.path(key);
        let owned = key.to_owned();
        self.blocking("head", key, move || match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta {
                key: owned,
                size: meta.len(),
            })),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        })
        .await
    }

    async fn list_page(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<ListPage> {
        check_prefix(prefix)?;
        check_limit(limit)?;
        let root = Arc::clone(&self.root);
        let (owned_prefix, owned_token) = (prefix.to_owned(), token.map(str::to_owned));
        let context = format!("listing {prefix:?} under {}", root.display());
        let objects = self
            .blocking("list", prefix, move || {
                list_keys(&root, &owned_prefix, owned_token.as_deref(), limit)
                    .map_err(|e| Error::io(context, e))
            })
            .await?;
        Ok(page_of(objects, limit))
    }
}

#[async_trait]
impl WriteBackend for FsBackend {
    fn capabilities(&self) -> BackendCapabilities {
        BackendCapabilities {
            atomic_create: true,
            object_lock: false,
            in_place_writes: true,
        }
    }

    async fn put(&self, key: &str, data: Bytes, options: PutOptions) -> Result<()> {
        check_key(key)?;
        let root = Arc::clone(&self.root);
        let path = self.path(key);
        let context = format!("writing {}", path.display());
        let written = self
            .blocking("put", key, move || {
                write_atomic(&root, &path, &data, options.mode).map_err(|e| Error::io(context, e))
            })
            .await?;
        match written {
            Written::Done => Ok(()),
            Written::Exists => Err(Error::AlreadyExists {
                location: self.location(),
                key: key.to_owned(),
            }),
        }
    }

    async fn open_in_place(
        &self,
        key: &str,
        capacity: u64,
    ) -> Result<Option<Box<dyn InPlaceObject>>> {
        check_key(key)?;
        let capacity = usize::try_from(capacity).map_err(|_| Error::InvalidInput {
            what: format!("in-place object {key}"),
            reason: format!("{capacity} bytes do not fit in memory"),
        })?;
        let root = Arc::clone(&self.root);
        let path = self.path(key);
        let context = format!("creating {}", path.display());
        let (file, created) = self
            .blocking("open in place", key, move || {
                open_in_place(&root, &path, capacity).map_err(|e| Error::io(context, e))
            })
            .await?;
        Ok(Some(Box::new(FsInPlace {
            file: Arc::new(file),
            created,
            location: self.location(),
            key: key.to_owned(),
        })))
    }

    async fn unfinished_writes(&self) -> Result<Vec<UnfinishedWrite>> {
        let root = Arc::clone(&self.root);
        let context = format!("looking for temporary files under {}", root.display());
        self.blocking("list", "", move || {
            let mut found = Vec::new();
            temporary_files(&root, &root, &mut found).map_err(|e| Error::io(context, e))?;
            Ok(found)
        })
        .await
    }

    async fn remove_unfinished(&self, write: &UnfinishedWrite) -> Result<()> {
        // Only a temporary file's name under the root, as listed: never a key.
        let is_tmp = Path::new(&write.name)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(TMP_PREFIX));
        let parent_ok = Path::new(&write.name)
            .parent()
            .is_some_and(|p| p.as_os_str().is_empty() || check_key(&p.to_string_lossy()).is_ok());
        if !is_tmp || !parent_ok {
            return Err(Error::InvalidInput {
                what: format!("unfinished write {:?}", write.name),
                reason: "not a temporary file of this store".into(),
            });
        }
        let path = self.root.join(&write.name);
        self.blocking("delete", &write.name, move || {
            match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if is_missing(&e) => Ok(()),
                Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
            }
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let path = self.path(key);
        self.blocking("delete", key, move || match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    sync_dir(dir)
                        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
                }
                Ok(())
            }
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_names_are_never_keys() {
        let name = tmp_name();
        assert!(name.starts_with(TMP_PREFIX));
        assert!(check_key(&name).is_err());
    }

    #[test]
    fn large_objects_are_written_exactly_around_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (i, len) in [
            DIRECT_MIN - 1,
            DIRECT_MIN,
            DIRECT_MIN + 1,
            3 * DIRECT_PIECE + DIRECT_ALIGN,
            3 * DIRECT_PIECE + 12_345,
        ]
        .into_iter()
        .enumerate()
        {
            let data: Vec<u8> = (0..len).map(|b| (b * 31 + i) as u8).collect();
            let path = root.join(format!("data/{i}"));
            assert!(matches!(
                write_atomic(root, &path, &data, PutMode::Create).unwrap(),
                Written::Done
            ));
            assert_eq!(fs::read(&path).unwrap(), data, "{len} bytes");
            // Create-only still refuses a taken name, and overwrite replaces.
            assert!(matches!(
                write_atomic(root, &path, &data[1..], PutMode::Create).unwrap(),
                Written::Exists
            ));
            write_atomic(root, &path, &data[1..], PutMode::Overwrite).unwrap();
            assert_eq!(fs::read(&path).unwrap(), data[1..], "{len} bytes");
            // From page-aligned memory (a pack buffer's): written from it
            // directly, the unaligned tail through the scratch buffer.
            let mut aligned = crate::pack::pack_buffer(len);
            aligned.extend_from_slice(&data);
            assert_eq!(aligned.as_ptr().align_offset(DIRECT_ALIGN), 0);
            write_atomic(root, &path, &aligned, PutMode::Overwrite).unwrap();
            assert_eq!(fs::read(&path).unwrap(), data, "{len} bytes, aligned");
        }
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(root.join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 5, "{names:?}");
    }
}
