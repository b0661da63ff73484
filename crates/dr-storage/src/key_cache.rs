//! A local cache of unlocked repository keys, so that a process that opens
//! the same repository again with the same secret skips Argon2id: the key
//! derivation is built to cost about a tenth of a second and 64 MiB, which a
//! command run once per WAL segment (PostgreSQL's `archive_command`) cannot
//! pay every time.
//!
//! An entry stands for one repository (the id in its `config`) and one key
//! file (`keys/<id>`, named here by the BLAKE3 of its bytes, so a key file
//! replaced under the same name is another entry). It holds the master key
//! sealed with XChaCha20-Poly1305 under a key derived with BLAKE3 from the
//! secret and that key file's salt, the entry's address authenticated with
//! it: only the secret that unwraps the key file opens the entry. A wrong
//! secret does not open it and goes on to Argon2id, which fails as it
//! always did; an entry that does not open, is damaged, or belongs to a key
//! file no longer in the repository is never used, and is written afresh
//! after the next successful unlock. A cache never turns an open into an
//! error: whatever goes wrong with it, the open derives the key as it would
//! without one.
//!
//! The trade: an entry can be tested against guessed secrets at BLAKE3's
//! speed rather than Argon2id's. A cache therefore belongs only where the
//! secret itself is readable by the same user (a password file beside an
//! `archive_command` is), and it is readable by its owner only: the
//! directory is created `0700` and entries are written `0600` (a temporary
//! file, fsynced, renamed into place, the directory fsynced). A directory or
//! entry owned by another user, or open to its group or others, is not used
//! (a warning says so), and the open derives the key.
//!
//! Entries also remember the store on which the repository's create-only
//! check passed (see [`Repository::open`](crate::Repository::open)), so a
//! read-write open through the cache makes that check once per store, not
//! on every open. The note is sealed with the key, so it cannot be forged
//! without the secret.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::crypto::{CacheSeal, MasterKey, Secret, WrappedKey, fill_random, hex};
use crate::error::{Error, Result};

/// No entry is larger (one is about 130 bytes and a store's location).
const MAX_ENTRY: u64 = 64 * 1024;

/// A directory of cached repository keys, for
/// [`OpenOptions::key_cache`](crate::OpenOptions::key_cache). Nothing is
/// read, created or checked until a repository is opened with it; the
/// directory is created then (mode `0700`, with its missing parents) if it
/// does not exist.
///
/// The library reads no environment variable to choose the directory: the
/// caller passes it (the `drkit` binary uses `$XDG_CACHE_HOME/drkit/keys`).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use dr_storage::{KeyCache, KeyOrigin, Location, LocationOptions, OpenOptions, Repository, Secret};
///
/// let location: Location = "/var/lib/drkit/repo".parse()?;
/// let options = OpenOptions::new()
///     .secret(Secret::password("correct horse"))
///     .key_cache(KeyCache::new("/var/lib/postgresql/.cache/drkit/keys")?);
/// let repo = Repository::open_at_with(&location, &LocationOptions::default(), options.clone()).await?;
/// // The second open finds the key in the cache: no key derivation.
/// let again = Repository::open_at_with(&location, &LocationOptions::default(), options).await?;
/// assert_eq!(again.key_origin(), KeyOrigin::Cache);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCache {
    dir: PathBuf,
}

impl KeyCache {
    /// A cache in the directory `dir`.
    ///
    /// # Errors
    /// `InvalidInput` if `dir` is not an absolute path: a cache is shared by
    /// processes started from anywhere (PostgreSQL runs `archive_command` in
    /// its data directory).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        if !dir.is_absolute() {
            return Err(Error::InvalidInput {
                what: format!("key cache directory {:?}", dir.display().to_string()),
                reason: "it must be an absolute path".into(),
            });
        }
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entries for `repository` (its config's id) and each of its key
    /// files (their bytes' content names, which are hexadecimal, and the
    /// keys they hold), one per key file in order, opened with `secret`;
    /// `None` if the id cannot name a file.
    pub(crate) fn entries<'a>(
        &self,
        repository: &str,
        keys: impl IntoIterator<Item = (&'a str, &'a WrappedKey)>,
        secret: &Secret,
    ) -> Option<Vec<CacheEntry>> {
        let plain_name =
            |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !plain_name(repository) {
            tracing::debug!(
                repository,
                "no key cache: the repository's id is not a hexadecimal name"
            );
            return None;
        }
        Some(
            keys.into_iter()
                .map(|(name, wrapped)| {
                    let address = format!("{repository}.{name}");
                    CacheEntry {
                        seal: CacheSeal::new(secret, wrapped, &address),
                        name: address,
                    }
                })
                .collect(),
        )
    }

    /// Looks for the first of `entries` that opens. Blocking.
    pub(crate) fn find(&self, entries: &[CacheEntry]) -> Lookup {
        match self.check_dir() {
            DirState::Missing => return Lookup::Miss,
            DirState::Refused => return Lookup::Refused,
            DirState::Usable => {}
        }
        for (index, entry) in entries.iter().enumerate() {
            let path = self.dir.join(&entry.name);
            let Some(sealed) = read_entry(&path) else {
                continue;
            };
            match entry.seal.open(&sealed) {
                Some((master, note)) => {
                    tracing::debug!(entry = %path.display(), "repository key from the key cache");
                    return Lookup::Hit {
                        index,
                        master,
                        note,
                    };
                }
                None => tracing::debug!(
                    entry = %path.display(),
                    "key cache entry not used: it does not open with this secret or is damaged"
                ),
            }
        }
        Lookup::Miss
    }

    /// Writes `entry`: `master` and `note`, sealed. A failure is logged,
    /// never returned: the cache only saves time. Blocking.
    pub(crate) fn store(&self, entry: &CacheEntry, master: &MasterKey, note: &[u8]) {
        let sealed = match entry.seal.seal(master, note) {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::warn!(error = %e, "not caching the repository key");
                return;
            }
        };
        if let Err(e) = DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
        {
            tracing::warn!(
                dir = %self.dir.display(), error = %e,
                "key cache not written: the directory cannot be created"
            );
            return;
        }
        if self.check_dir() != DirState::Usable {
            return;
        }
        let path = self.dir.join(&entry.name);
        match write_entry(&self.dir, &path, &sealed) {
            Ok(()) => tracing::debug!(entry = %path.display(), "repository key cached"),
            Err(e) => tracing::warn!(
                entry = %path.display(), error = %e,
                "key cache entry not written"
            ),
        }
    }

    /// Whether the directory exists and is its user's alone; a warning
    /// says why not.
    fn check_dir(&self) -> DirState {
        let meta = match fs::metadata(&self.dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return DirState::Missing,
            Err(e) => {
                tracing::warn!(
                    dir = %self.dir.display(), error = %e,
                    "key cache not used: the directory cannot be read"
                );
                return DirState::Refused;
            }
        };
        if !meta.is_dir() {
            tracing::warn!(
                dir = %self.dir.display(),
                "key cache not used: it is not a directory"
            );
            return DirState::Refused;
        }
        match private(&meta) {
            Ok(()) => DirState::Usable,
            Err(why) => {
                tracing::warn!(
                    dir = %self.dir.display(),
                    "key cache not used: the directory {why}; \
                     it must belong to this user with mode 0700"
                );
                DirState::Refused
            }
        }
    }
}

/// One entry of a [`KeyCache`]: its file name and what seals it.
#[derive(Clone)]
pub(crate) struct CacheEntry {
    name: String,
    seal: CacheSeal,
}

/// What a [`KeyCache::find`] found.
pub(crate) enum Lookup {
    /// The cache is not used (a warning said why): nothing is written to it.
    Refused,
    /// No entry opened.
    Miss,
    /// Entry `index` opened.
    Hit {
        index: usize,
        master: MasterKey,
        note: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DirState {
    Missing,
    Usable,
    Refused,
}

/// Why a file or directory is not private to this user, if it is not.
fn private(meta: &fs::Metadata) -> std::result::Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "belongs to user {} (this is user {me})",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!("has mode {mode:04o}, open to its group or others"));
    }
    Ok(())
}

/// An entry's bytes, if it is a private regular file of a plausible size;
/// a warning says why one is not used.
fn read_entry(path: &Path) -> Option<Vec<u8>> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(
                entry = %path.display(), error = %e,
                "key cache entry not used: it cannot be opened (a symbolic link is not followed)"
            );
            return None;
        }
    };
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_ENTRY {
        tracing::warn!(
            entry = %path.display(),
            "key cache entry not used: it is not a small regular file"
        );
        return None;
    }
    if let Err(why) = private(&meta) {
        tracing::warn!(
            entry = %path.display(),
            "key cache entry not used: it {why}; it must belong to this user with mode 0600"
        );
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_ENTRY).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Writes `bytes` to `path` in `dir` atomically: a new `0600` file beside
/// it, fsynced, renamed over it, the directory fsynced.
fn write_entry(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut nonce = [0u8; 8];
    fill_random(&mut nonce).map_err(io::Error::other)?;
    // Entries' names never start with '.': a temporary file is never read.
    let temp = dir.join(format!(".tmp.{}.{}", std::process::id(), hex(&nonce)));
    let result = (|| {
        let mut file: File = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ignored = fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::crypto::{Crypter, Id, KdfParams, content_name, derivations};
    use crate::{
        BackendOperation, FaultInjection, FaultOptions, FaultSchedule, FsBackend, InitOptions,
        KeyOrigin, MemoryBackend, OpenOptions, PutOptions, ReadBackendExt, Repository,
        WriteBackend,
    };

    /// A secret no other test uses, so that its derivations are this test's.
    fn secret(test: &str) -> Secret {
        Secret::password(format!("key cache test: {test}"))
    }

    async fn repository(secret: &Secret) -> Arc<MemoryBackend> {
        let backend = Arc::new(MemoryBackend::new());
        let options = InitOptions::encrypted(secret.clone()).kdf(KdfParams::INSECURE_FAST);
        Repository::init(backend.clone(), options).await.unwrap();
        backend
    }

    fn options(secret: &Secret, cache: &Path) -> OpenOptions {
        OpenOptions::new()
            .secret(secret.clone())
            .key_cache(KeyCache::new(cache).unwrap())
    }

    /// The entries in `dir` (not temporary files).
    fn entries(dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
            .collect();
        found.sort();
        found
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    /// A chunk id under the repository's key: equal only for the same key.
    fn key_of(repo: &Repository) -> Id {
        repo.crypter().id(b"which key")
    }

    #[tokio::test]
    async fn a_second_open_takes_the_key_from_the_cache_without_deriving() {
        let secret = secret("second open");
        let backend = repository(&secret).await;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache/keys");
        assert_eq!(derivations::of(&secret), 1, "the init's");

        let first = Repository::open_with(backend.clone(), options(&secret, &dir))
            .await
            .unwrap();
        assert_eq!(first.key_origin(), KeyOrigin::Derived);
        assert_eq!(derivations::of(&secret), 2);
        assert_eq!(mode(&dir), 0o700);
        let cached = entries(&dir);
        assert_eq!(cached.len(), 1, "{cached:?}");
        assert_eq!(mode(&cached[0]), 0o600);

        let second = Repository::open_with(backend.clone(), options(&secret, &dir))
            .await
            .unwrap();
        assert_eq!(second.key_origin(), KeyOrigin::Cache);
        let read_only = Repository::open_read_only_with(backend.clone(), options(&secret, &dir))
            .await
            .unwrap();
        assert_eq!(read_only.key_origin(), KeyOrigin::Cache);
        assert_eq!(derivations::of(&secret), 2, "no derivation since");
        assert_eq!(key_of(&second), key_of(&first));
        assert_eq!(key_of(&read_only), key_of(&first));
        assert_eq!(entries(&dir), cached);

        // Without a cache, the same repository derives as always.
        let plain = Repository::open(backend, Some(&secret)).await.unwrap();
        assert_eq!(plain.key_origin(), KeyOrigin::Derived);
        assert_eq!(derivations::of(&secret), 3);
    }

    #[tokio::test]
    async fn a_wrong_secret_fails_as_without_a_cache() {
        let secret = secret("right");
        let wrong = self::secret("wrong");
        let backend = repository(&secret).await;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        Repository::open_with(backend.clone(), options(&secret, &dir))
            .await
            .unwrap();
        let entry = entries(&dir).remove(0);
        let before = fs::read(&entry).unwrap();

        let err = Repository::open_with(backend.clone(), options(&wrong, &dir))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::WrongPassword { .. }), "{err}");
        let err = Repository::open_read_only_with(backend, options(&wrong, &dir))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::WrongPassword { .. }), "{err}");
        assert_eq!(derivations::of(&wrong), 2, "each went on to Argon2id");
        assert_eq!(fs::read(&entry).unwrap(), before, "the entry is kept");
        assert_eq!(entries(&dir), [entry]);
    }

    #[tokio::test]
    async fn a_damaged_entry_is_passed_over_and_written_afresh() {
        let secret = secret("damaged");
        let backend = repository(&secret).await;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let first = Repository::open_with(backend.clone(), options(&secret, &dir))
            .await
            .unwrap();
        let entry = entries(&dir).remove(0);
        let good = fs::read(&entry).unwrap();
        let mut flipped = good.clone();
        flipped[40] ^= 1;
        for damage in [flipped, good[..good.len() - 1].to_vec(), Vec::new()] {
            fs::write(&entry, &damage).unwrap();
            let before = derivations::of(&secret);
            let repo = Repository::open_with(backend.clone(), options(&secret, &dir))
                .await
                .unwrap();
            assert_eq!(repo.key_origin(), KeyOrigin::Derived);
            assert_eq!(derivations::of(&secret), before + 1);
            assert_eq!(key_of(&repo), key_of(&first));
            // Written afresh: the next open takes it.
            let again = Repository::open_with(backend.clone(), options(&secret, &dir))
                .await
                .unwrap();
            assert_eq!(again.key_origin(), KeyOrigin::Cache);
            assert_eq!(key_of(&again), key_of(&first));
        }
    }

    #[tokio::test]
    async fn an_entry_of_a_key_file_no_longer_there_is_not_used() {
        let secret = secret("stale");
        let backend = repository(&secret).await;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let old = Repository::open_with(backend.clone(), options(&secret, &dir))
            .await
            .unwrap();

        // The key file replaced by one of another master key, same secret.
        let fresh = MasterKey::generate().unwrap();
        let wrapped = WrappedKey::wrap(&fresh, &secret, KdfParams::INSECURE_FAST).unwrap();
        let bytes = serde_json::to_vec(&wrapped).unwrap();
        for object in backend.list("keys/").await.unwrap() {
            backend.delete(&object.key).await.unwrap();
        }
        backend
            .put(
                &format!("keys/{}", content_name(&bytes)),
                Bytes::from(bytes),
                PutOptions::CREATE,
            )
            .await
            .unwrap();

        let repo = Repository::open_with(backend.clone(), options(&secret, &dir))
            .await
            .unwrap();
        assert_eq!(repo.key_origin(), KeyOrigin::Derived);
        assert_eq!(
            key_of(&repo),
            Crypter::Keyed(fresh, crate::Cipher::Aes256GcmDerived).id(b"which key")
        );
        assert_ne!(key_of(&repo), key_of(&old));
        let again = Repository::open_with(backend, options(&secret, &dir))
            .await
            .unwrap();
        assert_eq!(again.key_origin(), KeyOrigin::Cache);
        assert_eq!(key_of(&again), key_of(&repo));
        assert_eq!(entries(&dir).len(), 2, "the old entry stays, unused");
    }

    #[tokio::test]
    async fn a_cache_open_to_others_is_not_used() {
        let secret = secret("open to others");
        let backend = repository(&secret).await;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        for _ in 0..2 {
            let repo = Repository::open_with(backend.clone(), options(&secret, &dir))
                .await
                .unwrap();
            assert_eq!(repo.key_origin(), KeyOrigin::Derived);
        }
        assert!(entries(&dir).is_empty(), "nothing written to it");
        assert_eq!(derivations::of(&secret), 3);

        // A private directory, but an entry readable by others.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        Repository::open_with(backend.clone(), options(&secret, &dir))
            .await
            .unwrap();
        let entry = entries(&dir).remove(0);
        fs::set_permissions(&entry, fs::Permissions::from_mode(0o644)).unwrap();
        let repo = Repository::open_with(backend.clone(), options(&secret, &dir))
            .await
            .unwrap();
        assert_eq!(repo.key_origin(), KeyOrigin::Derived);
        assert_eq!(mode(&entry), 0o600, "written afresh, private");

        // A directory of another user (only root can make one here).
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
            let before = derivations::of(&secret);
            let repo = Repository::open_with(backend.clone(), options(&secret, &dir))
                .await
                .unwrap();
            assert_eq!(repo.key_origin(), KeyOrigin::Derived);
            assert_eq!(derivations::of(&secret), before + 1);
        }

        // A symbolic link in place of an entry is not followed.
        let other = tempfile::tempdir().unwrap();
        let dir = other.path().join("keys");
        Repository::open_with(backend.clone(), options(&secret, &dir))
            .await
            .unwrap();
        let entry = entries(&dir).remove(0);
        let target = other.path().join("elsewhere");
        fs::rename(&entry, &target).unwrap();
        std::os::unix::fs::symlink(&target, &entry).unwrap();
        let repo = Repository::open_with(backend, options(&secret, &dir))
            .await
            .unwrap();
        assert_eq!(repo.key_origin(), KeyOrigin::Derived);
    }

    #[tokio::test]
    async fn the_create_only_check_is_made_once_per_store() {
        let secret = secret("create-only check");
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        let options_init = InitOptions::encrypted(secret.clone()).kdf(KdfParams::INSECURE_FAST);
        Repository::init(Arc::new(FsBackend::new(&root).unwrap()), options_init)
            .await
            .unwrap();
        let dir = tmp.path().join("keys");
        // The same store, every write refused: an open that makes the
        // check (a write) fails, one that skips it does not.
        let no_writes = || -> Arc<dyn WriteBackend> {
            let faults =
                FaultOptions::new(1).operation(BackendOperation::Put, FaultSchedule::EveryNth(1));
            Arc::new(FaultInjection::new(FsBackend::new(&root).unwrap(), faults))
        };

        // A read-only open caches the key, but no check was made.
        let read_only = Repository::open_read_only_with(
            Arc::new(FsBackend::new(&root).unwrap()),
            options(&secret, &dir),
        )
        .await
        .unwrap();
        assert_eq!(read_only.key_origin(), KeyOrigin::Derived);
        let err = Repository::open_with(no_writes(), options(&secret, &dir))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("create-probe"), "{err}");

        let checked = Repository::open_with(
            Arc::new(FsBackend::new(&root).unwrap()),
            options(&secret, &dir),
        )
        .await
        .unwrap();
        assert_eq!(checked.key_origin(), KeyOrigin::Cache);
        let skipped = Repository::open_with(no_writes(), options(&secret, &dir))
            .await
            .unwrap();
        assert_eq!(skipped.key_origin(), KeyOrigin::Cache);
        assert!(
            Repository::open(no_writes(), Some(&secret)).await.is_err(),
            "without the cache, the check is made"
        );

        // The same repository in another place is another store: checked.
        let copy = tmp.path().join("copy");
        copy_tree(&root, &copy);
        let faults =
            FaultOptions::new(1).operation(BackendOperation::Put, FaultSchedule::EveryNth(1));
        let elsewhere = Arc::new(FaultInjection::new(FsBackend::new(&copy).unwrap(), faults));
        assert!(
            Repository::open_with(elsewhere, options(&secret, &dir))
                .await
                .is_err()
        );
        assert_eq!(
            derivations::of(&secret),
            3,
            "the init's, the first open's and the open without a cache"
        );
    }

    fn copy_tree(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let dest = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &dest);
            } else {
                fs::copy(entry.path(), dest).unwrap();
            }
        }
    }

    #[test]
    fn what_is_not_used_is_named_in_a_warning() {
        let secret = secret("warnings");
        let tmp = tempfile::tempdir().unwrap();
        let cache = KeyCache::new(tmp.path().join("keys")).unwrap();
        let master = MasterKey::generate().unwrap();
        let wrapped = WrappedKey::wrap(&master, &secret, KdfParams::INSECURE_FAST).unwrap();
        let entries = cache
            .entries("0a1b", [("2c3d", &wrapped)], &secret)
            .unwrap();
        assert!(
            cache
                .entries("../x", [("2c3d", &wrapped)], &secret)
                .is_none()
        );
        assert!(matches!(cache.find(&entries), Lookup::Miss));
        cache.store(&entries[0], &master, b"/srv/repo");
        let path = cache.dir().join("0a1b.2c3d");
        assert_eq!(mode(&path), 0o600);
        let Lookup::Hit { index, note, .. } = cache.find(&entries) else {
            panic!("the entry just written is found");
        };
        assert_eq!((index, note.as_slice()), (0, &b"/srv/repo"[..]));
        let other = cache
            .entries("0a1b", [("2c3d", &wrapped)], &self::secret("other"))
            .unwrap();
        assert!(matches!(cache.find(&other), Lookup::Miss));

        let events = dr_testkit::CapturedEvents::new();
        let guard = events.capture();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(cache.find(&entries), Lookup::Miss));
        fs::set_permissions(cache.dir(), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(cache.find(&entries), Lookup::Refused));
        drop(guard);
        let warned =
            |what: &str| events.any(|line| line.starts_with("WARN") && line.contains(what));
        assert!(warned("has mode 0640"), "{events:?}");
        assert!(warned("has mode 0777"), "{events:?}");
    }

    #[test]
    fn a_relative_directory_is_refused() {
        assert!(KeyCache::new("keys").is_err());
        assert!(KeyCache::new("").is_err());
        assert_eq!(KeyCache::new("/k").unwrap().dir(), Path::new("/k"));
    }
}
