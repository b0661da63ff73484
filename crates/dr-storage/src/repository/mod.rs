//! The repository: content-defined chunks, deduplicated by id across every
//! snapshot, compressed, sealed and packed, with the snapshot file as the
//! commit point. It implements dr-core's sink and source traits.
//!
//! Layout on the backend (every object write-once but `config`'s probe and
//! the archive coverage records):
//!
//! ```text
//! config                       plaintext JSON: format, id, encrypted?, chunker, compression
//! keys/<id>                    the master key wrapped by a password- or key-file-derived key
//! data/<2 hex>/<blake3>        packs (see `pack`), named by the BLAKE3 of their bytes
//! index/<blake3>               sealed zstd JSON: which blobs are in which packs
//! snapshots/<snapshot id>      sealed zstd JSON: the manifest and each stream's chunk ids
//! archive/<component>/<name>   sealed, compressed archive segments (WAL)
//! journal/<component>/<name>   a segment in progress, appended in place (see `journal`;
//!                              local directories only)
//! locks/lock-<random>          sealed: who holds a shared or exclusive lock (see `lock`)
//! leases/<component>/.<term>   sealed, create-only: a failover lease's grants (see `lease`)
//! coverage/<component>/.latest sealed, overwritten: how far the archive held all its source wrote
//! ```
//!
//! Write order: packs, then index, then snapshot. A backup that dies before
//! its snapshot file is written leaves only unreferenced packs, which no
//! listing shows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use dr_core::{ComponentId, MANIFEST_FORMAT, Manifest, SegmentName, SnapshotId, StreamName};
use serde::{Deserialize, Serialize};

use jiff::Timestamp;

use crate::backend::read_only::ReadOnly;
use crate::backend::{
    ObjectRetention, PutOptions, ReadBackend, ReadBackendExt, RetentionMode, WriteBackend,
};
use crate::crypto::{
    Cipher, Crypter, Id, IdMap, KdfParams, MasterKey, Secret, WrappedKey, content_name,
    fill_random, hex,
};
use crate::error::{Error, Result};
use crate::key_cache::{CacheEntry, KeyCache, Lookup};
use crate::pack::BlobEntry;

mod archive;
mod check;
mod forget;
mod journal;
mod lease;
mod lock;
mod prune;
mod read;
mod record_cuts;
mod tar_cuts;
mod usage;
mod verify;
mod write;

pub use self::archive::SegmentForgetReport;
pub use self::check::CheckReport;
pub use self::forget::{ForgetPlan, ForgetReport, SnapshotFilter};
pub use self::journal::RepositoryJournals;
pub use self::lock::{LockInfo, Unlock};
pub use self::prune::{PruneOptions, PruneReport};
pub use self::usage::Usage;
pub use self::verify::{Damage, VerifyOptions, VerifyReport};
pub use self::write::RepositoryWriter;

/// The repository format version this build writes: 3, whose config names
/// its [`Cipher`].
pub const REPOSITORY_FORMAT: u32 = 3;

/// The oldest format this build reads: 2, whose objects are all sealed
/// with XChaCha20-Poly1305 (and whose config names no cipher).
pub const OLDEST_READABLE_FORMAT: u32 = 2;

/// The formats this build reads, for messages.
fn readable_formats() -> String {
    format!("{OLDEST_READABLE_FORMAT} to {REPOSITORY_FORMAT}")
}

/// Whether this build reads objects of `format`.
fn readable(format: u32) -> bool {
    (OLDEST_READABLE_FORMAT..=REPOSITORY_FORMAT).contains(&format)
}

const SNAPSHOT_CONTEXT: &[u8] = b"drkit snapshot";
const INDEX_CONTEXT: &[u8] = b"drkit index";
const SEGMENT_CONTEXT: &[u8] = b"drkit archive segment";
/// The largest archive segment accepted (segments are held in memory whole).
const MAX_SEGMENT: u64 = 1 << 30;

/// Content-defined chunk sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    /// No chunk is smaller, but the last.
    pub min: u32,
    /// The average.
    pub avg: u32,
    /// No chunk is larger.
    pub max: u32,
}

impl ChunkerParams {
    /// 512 KiB / 1 MiB / 8 MiB, restic's sizes.
    pub const DEFAULT: ChunkerParams = ChunkerParams {
        min: 512 * 1024,
        avg: 1024 * 1024,
        max: 8 * 1024 * 1024,
    };
}

/// How a new repository protects its data.
#[derive(Debug, Clone)]
pub enum Encryption {
    /// Sealed with a master key wrapped by this secret (Argon2id with these costs).
    Secret(Secret, KdfParams),
    /// Stored in the clear, for stores that encrypt themselves. Chunk ids are plain SHA-256.
    None,
}

/// How to create a repository.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InitOptions {
    /// Encryption (on unless the caller says otherwise).
    pub encryption: Encryption,
    /// zstd level, 1 to 19; the default is 1. On this project's benchmark
    /// data, level 3 (zstd's own default) took about 40% more compression
    /// time to store 1.2% less of text-like data and 1% less of a pgbench
    /// cluster's base backup; after a pgbench run, whole changed pages
    /// stored 15% less at level 3, but PostgreSQL delta backups store
    /// their changed bytes only, which compress alike at either level.
    pub compression_level: i32,
    /// Chunk sizes.
    pub chunker: ChunkerParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// S3 Object Lock retention for every object the repository writes.
    pub object_lock: Option<ObjectLock>,
    /// The AEAD its objects are sealed with, when encrypted: AES-256-GCM
    /// with a key per object by default.
    pub cipher: Cipher,
}

/// Object Lock retention the repository applies to what it writes (all but
/// its transient lock objects), so that stolen credentials cannot delete
/// backups younger than `period`. Choose a period longer than the backups
/// are kept: an object is protected for `period` after it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLock {
    /// Compliance mode (nobody may delete) rather than governance mode.
    pub compliance: bool,
    /// How long each written object is retained, in seconds.
    pub period_secs: u64,
}

impl ObjectLock {
    /// ObjectRetention in `mode` for `period` after each write.
    pub fn new(mode: RetentionMode, period: Duration) -> Self {
        Self {
            compliance: mode == RetentionMode::Compliance,
            period_secs: period.as_secs(),
        }
    }

    fn retention(self, now: Timestamp) -> Result<ObjectRetention> {
        let until = i64::try_from(self.period_secs)
            .ok()
            .and_then(|secs| now.checked_add(jiff::SignedDuration::from_secs(secs)).ok())
            .ok_or_else(|| Error::InvalidInput {
                what: "object lock period".into(),
                reason: "too long".into(),
            })?;
        Ok(ObjectRetention {
            mode: if self.compliance {
                RetentionMode::Compliance
            } else {
                RetentionMode::Governance
            },
            until,
        })
    }
}

impl InitOptions {
    /// An encrypted repository unlocked by `secret`, with recommended key-derivation costs.
    pub fn encrypted(secret: Secret) -> Self {
        Self::with_encryption(Encryption::Secret(secret, KdfParams::RECOMMENDED))
    }

    /// A repository stored in the clear.
    pub fn unencrypted() -> Self {
        Self::with_encryption(Encryption::None)
    }

    fn with_encryption(encryption: Encryption) -> Self {
        Self {
            encryption,
            compression_level: 1,
            chunker: ChunkerParams::DEFAULT,
            pack_size: 16 * 1024 * 1024,
            object_lock: None,
            cipher: Cipher::Aes256GcmDerived,
        }
    }

    /// Seals the objects with `cipher` (for encrypted repositories).
    pub fn cipher(mut self, cipher: Cipher) -> Self {
        self.cipher = cipher;
        self
    }

    /// Retains every written object with S3 Object Lock (the store must support it).
    pub fn object_lock(mut self, lock: ObjectLock) -> Self {
        self.object_lock = Some(lock);
        self
    }

    /// Sets the key-derivation costs (for encrypted repositories).
    pub fn kdf(mut self, params: KdfParams) -> Self {
        if let Encryption::Secret(_, kdf) = &mut self.encryption {
            *kdf = params;
        }
        self
    }

    /// Sets the chunk sizes.
    pub fn chunker(mut self, chunker: ChunkerParams) -> Self {
        self.chunker = chunker;
        self
    }

    /// Sets the target pack size.
    pub fn pack_size(mut self, bytes: u32) -> Self {
        self.pack_size = bytes;
        self
    }

    /// Sets the zstd level.
    pub fn compression_level(mut self, level: i32) -> Self {
        self.compression_level = level;
        self
    }
}

/// How to open an existing repository: the secret that unlocks an encrypted
/// one and, optionally, a [`KeyCache`] that saves the key derivation on the
/// next open.
///
/// ```
/// use dr_storage::{KeyCache, OpenOptions, Secret};
///
/// let options = OpenOptions::new()
///     .secret(Secret::password("correct horse"))
///     .key_cache(KeyCache::new("/var/lib/postgresql/.cache/drkit/keys")?);
/// assert!(options.key_cache.is_some());
/// # Ok::<(), dr_storage::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OpenOptions {
    /// The password or key file; needed if the repository is encrypted.
    pub secret: Option<Secret>,
    /// Where unlocked keys are cached; none if not given.
    pub key_cache: Option<KeyCache>,
}

impl OpenOptions {
    /// No secret and no key cache: enough for an unencrypted repository.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`OpenOptions::secret`].
    #[must_use]
    pub fn secret(mut self, secret: Secret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Sets [`OpenOptions::key_cache`].
    #[must_use]
    pub fn key_cache(mut self, cache: KeyCache) -> Self {
        self.key_cache = Some(cache);
        self
    }
}

/// Where an open repository's key came from ([`Repository::key_origin`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyOrigin {
    /// The repository is not encrypted: it has no key.
    Unencrypted,
    /// Derived from the secret with Argon2id and unwrapped from a key file
    /// (by [`Repository::init`] or an open that found no cached key).
    Derived,
    /// From a [`KeyCache`] entry the secret opened: no key derivation ran.
    Cache,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    format: u32,
    id: String,
    encrypted: bool,
    chunker: ChunkerParams,
    compression_level: i32,
    pack_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    object_lock: Option<ObjectLock>,
    /// The AEAD of an encrypted repository; format 2 names none (it is
    /// XChaCha20-Poly1305).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cipher: Option<Cipher>,
}

impl Config {
    /// The AEAD its objects are sealed with.
    fn cipher(&self) -> Cipher {
        self.cipher.unwrap_or(Cipher::XChaCha20Poly1305)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotFile {
    manifest: Manifest,
    /// Each stream's chunk ids, in order.
    chunks: BTreeMap<StreamName, Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexFile {
    format: u32,
    packs: Vec<IndexedPack>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexedPack {
    id: String,
    blobs: Vec<BlobEntry>,
}

/// A blob's location.
#[derive(Debug, Clone)]
struct Location {
    pack: Arc<str>,
    entry: BlobEntry,
}

#[derive(Debug)]
struct Inner {
    backend: Arc<dyn WriteBackend>,
    crypter: Crypter,
    config: Config,
    index: RwLock<Index>,
    /// Chunk-processing jobs in flight per stream.
    concurrency: usize,
    /// Opened with [`Repository::open_read_only`]: no locks, no writes.
    read_only: bool,
    /// Where the key came from.
    key_origin: KeyOrigin,
}

/// Where every known blob is, and which index files that came from.
#[derive(Debug, Default)]
struct Index {
    blobs: IdMap<Location>,
    files: HashSet<String>,
}

impl Index {
    fn add(&mut self, file: String, packs: &[IndexedPack]) {
        self.files.insert(file);
        // One allocation for a large snapshot's hundreds of thousands of
        // blobs, rather than a rehash at every doubling.
        self.blobs
            .reserve(packs.iter().map(|pack| pack.blobs.len()).sum());
        for pack in packs {
            let name: Arc<str> = Arc::from(pack.id.as_str());
            for entry in &pack.blobs {
                self.blobs.entry(entry.id).or_insert_with(|| Location {
                    pack: name.clone(),
                    entry: *entry,
                });
            }
        }
    }
}

/// A backup repository on a backend. Cheap to clone; clones share the index.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use dr_storage::prelude::*;
/// use dr_storage::{FsBackend, InitOptions, Repository, Secret};
///
/// let backend = Arc::new(FsBackend::new("/var/backups/drkit")?);
/// let repo = Repository::init(backend, InitOptions::encrypted(Secret::password("correct horse"))).await?;
/// let mut writer = repo.begin(&"postgres/main".parse()?, jiff::Timestamp::now()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Repository {
    inner: Arc<Inner>,
    /// How long to wait for a conflicting lock before giving up.
    lock_wait: Duration,
}

/// How long [`Repository`] operations wait for a conflicting lock by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(15 * 60);

fn pack_key(id: &str) -> String {
    format!("data/{}/{id}", &id[..2])
}

fn snapshot_key(id: &SnapshotId) -> String {
    format!("snapshots/{id}")
}

fn segment_key(component: &ComponentId, name: &SegmentName) -> String {
    format!("archive/{}/{name}", component.storage_path())
}

impl Repository {
    /// Creates a repository on an empty store.
    ///
    /// # Errors
    /// `AlreadyExists` if the store holds a repository; `Unsupported` if it does
    /// not honour create-only writes; `Backend` if it failed.
    pub async fn init(backend: Arc<dyn WriteBackend>, options: InitOptions) -> Result<Self> {
        if !(1..=19).contains(&options.compression_level) {
            return Err(Error::InvalidInput {
                what: "compression level".into(),
                reason: "must be 1 to 19".into(),
            });
        }
        let c = options.chunker;
        if !(c.min <= c.avg && c.avg <= c.max && c.min >= 64 && c.max <= 16 << 20) {
            return Err(Error::InvalidInput {
                what: "chunker sizes".into(),
                reason: "need 64 <= min <= avg <= max <= 16 MiB".into(),
            });
        }
        if let Some(lock) = options.object_lock {
            lock.retention(Timestamp::now())?;
            if !backend.capabilities().object_lock {
                return Err(Error::Unsupported {
                    location: backend.location(),
                    reason: "this store does not support Object Lock retention \
                             (an S3 bucket created with Object Lock enabled does)"
                        .into(),
                });
            }
        }
        check_create_only(backend.as_ref()).await?;
        let mut id = [0u8; 16];
        fill_random(&mut id)?;
        let (crypter, wrapped) = match &options.encryption {
            Encryption::None => (Crypter::Plain, None),
            Encryption::Secret(secret, kdf) => {
                let master = MasterKey::generate()?;
                let wrapped = WrappedKey::wrap(&master, secret, *kdf)?;
                (Crypter::Keyed(master, options.cipher), Some(wrapped))
            }
        };
        let config = Config {
            format: REPOSITORY_FORMAT,
            id: hex(&id),
            encrypted: wrapped.is_some(),
            chunker: options.chunker,
            compression_level: options.compression_level,
            pack_size: options.pack_size,
            object_lock: options.object_lock,
            cipher: wrapped.is_some().then_some(options.cipher),
        };
        let origin = match crypter {
            Crypter::Plain => KeyOrigin::Unencrypted,
            Crypter::Keyed(..) => KeyOrigin::Derived,
        };
        let repo = Self::assemble(backend, crypter, origin, config, false);
        let backend = &repo.inner.backend;
        if let Some(wrapped) = wrapped {
            let bytes =
                serde_json::to_vec(&wrapped).map_err(|e| Error::io("encoding key", e.into()))?;
            let key_id = content_name(&bytes);
            backend
                .put(&format!("keys/{key_id}"), bytes.into(), repo.put_options()?)
                .await?;
        }
        let bytes = serde_json::to_vec_pretty(&repo.inner.config)
            .map_err(|e| Error::io("encoding config", e.into()))?;
        // Written last: a store holds a repository once it has a config.
        backend
            .put("config", bytes.into(), repo.put_options()?)
            .await?;
        Ok(repo)
    }

    /// How the repository writes its objects: create-only, and retained
    /// under Object Lock if the repository was set up with it.
    fn put_options(&self) -> Result<PutOptions> {
        Ok(match self.inner.config.object_lock {
            Some(lock) => PutOptions::CREATE.retain(lock.retention(Timestamp::now())?),
            None => PutOptions::CREATE,
        })
    }

    /// Opens an existing repository. `secret` is needed if it is encrypted.
    ///
    /// Every read-write open also checks that the store honours create-only
    /// writes (a write, a second create-only write of the same key that
    /// must fail, a delete): concurrent backups, prune and leases rely on it.
    /// [`Repository::open_with`] with a [`KeyCache`] makes that check once
    /// per store.
    ///
    /// # Errors
    /// `NotFound` if there is no repository; `WrongPassword`;
    /// `UnsupportedVersion` for a newer format; `Unsupported` if the store does
    /// not honour create-only writes; `Corrupt` for a damaged config.
    pub async fn open(backend: Arc<dyn WriteBackend>, secret: Option<&Secret>) -> Result<Self> {
        Self::open_with(backend, open_options(secret)).await
    }

    /// Opens an existing repository as [`Repository::open`] does, with the
    /// secret and key cache of `options`.
    ///
    /// With a key cache, the key is taken from the cache entry the secret
    /// opens, without Argon2id ([`Repository::key_origin`] says
    /// [`KeyOrigin::Cache`]); without one that opens, it is derived as
    /// always and the entry written afterwards. The create-only check is
    /// made once per store: the entry remembers the store it passed on.
    /// See [`KeyCache`] for what the cache holds and when it is not used.
    ///
    /// # Errors
    /// As [`Repository::open`]. A key cache never adds one: an entry that
    /// cannot be read, opened or written is passed over (and logged).
    pub async fn open_with(backend: Arc<dyn WriteBackend>, options: OpenOptions) -> Result<Self> {
        let config = read_config(backend.as_ref()).await?;
        let unlocked = crypter_for(backend.as_ref(), &config, &options).await?;
        let store = backend.location();
        if unlocked.checked_store() == Some(store.as_str()) {
            tracing::debug!(
                store,
                "create-only check skipped: the key cache says it passed on this store"
            );
        } else {
            check_create_only(backend.as_ref()).await?;
            // A derived key is cached here, and a cached one learns the store.
            unlocked.remember(Some(&store)).await;
        }
        // The index is read when it is first needed (a backup or a read),
        // not here: archive segments (WAL) never need it.
        let (crypter, origin) = (unlocked.crypter, unlocked.origin);
        Ok(Self::assemble(backend, crypter, origin, config, false))
    }

    /// Opens an existing repository for reading only, with credentials that
    /// may only read (the right ones for a restore or a verify in an
    /// incident): nothing is written to the store, not even a lock or a
    /// probe. Snapshots and archive segments read, restore and verify as
    /// from [`Repository::open`]; every write (a backup, forget, prune,
    /// unlock) fails with `Unsupported`, saying the repository is read-only.
    ///
    /// Without a lock, a prune that runs meanwhile may delete what a
    /// [`check`](Repository::check) or [`verify`](Repository::verify) is
    /// reading: they then report it missing.
    ///
    /// # Errors
    /// As [`Repository::open`], but for the create-only check, which is not made.
    pub async fn open_read_only(
        backend: Arc<dyn ReadBackend>,
        secret: Option<&Secret>,
    ) -> Result<Self> {
        Self::open_read_only_with(backend, open_options(secret)).await
    }

    /// Opens an existing repository for reading only, as
    /// [`Repository::open_read_only`] does, with the secret and key cache
    /// of `options` (see [`Repository::open_with`]). Nothing is written to
    /// the store; a key derived here is written to the key cache, a local
    /// directory.
    ///
    /// # Errors
    /// As [`Repository::open_read_only`].
    pub async fn open_read_only_with(
        backend: Arc<dyn ReadBackend>,
        options: OpenOptions,
    ) -> Result<Self> {
        let backend: Arc<dyn WriteBackend> = Arc::new(ReadOnly::new(backend));
        let config = read_config(backend.as_ref()).await?;
        let unlocked = crypter_for(backend.as_ref(), &config, &options).await?;
        if unlocked.origin == KeyOrigin::Derived {
            unlocked.remember(None).await;
        }
        let (crypter, origin) = (unlocked.crypter, unlocked.origin);
        Ok(Self::assemble(backend, crypter, origin, config, true))
    }

    /// Where the key this repository was opened with came from: none
    /// (unencrypted), derived from the secret, or a [`KeyCache`].
    pub fn key_origin(&self) -> KeyOrigin {
        self.inner.key_origin
    }

    /// Whether the repository was opened with [`Repository::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// Fails, saying what was attempted, if the repository is read-only.
    pub(crate) fn writable(&self, what: &str) -> Result<()> {
        if self.inner.read_only {
            return Err(Error::Unsupported {
                location: self.inner.backend.location(),
                reason: format!(
                    "the repository was opened read-only: {what} is not allowed \
                     (open it with write access)"
                ),
            });
        }
        Ok(())
    }
}

/// The config, checked: a format this build reads.
async fn read_config(backend: &dyn WriteBackend) -> Result<Config> {
    let raw = backend.get_all("config").await?;
    let config: Config = serde_json::from_slice(&raw).map_err(|e| {
        // An unknown format version is reported as such, not as damage.
        match serde_json::from_slice::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v.get("format").and_then(serde_json::Value::as_u64))
        {
            Some(found) if !readable(found.min(u64::from(u32::MAX)) as u32) => {
                Error::UnsupportedVersion {
                    object: format!("{}: config", backend.location()),
                    found: found.min(u64::from(u32::MAX)) as u32,
                    supported: readable_formats(),
                }
            }
            _ => Error::corrupt("config", e.to_string()),
        }
    })?;
    if !readable(config.format) {
        return Err(Error::UnsupportedVersion {
            object: format!("{}: config", backend.location()),
            found: config.format,
            supported: readable_formats(),
        });
    }
    // Format 3 names the cipher of an encrypted repository; format 2 knew one.
    let named = config.cipher.is_some();
    let expected = config.format >= 3 && config.encrypted;
    if named != expected {
        return Err(Error::corrupt(
            "config",
            format!(
                "a format {} config of {} repository {} a cipher",
                config.format,
                if config.encrypted {
                    "an encrypted"
                } else {
                    "a plain"
                },
                if named { "names" } else { "does not name" }
            ),
        ));
    }
    Ok(config)
}

/// The options of [`Repository::open`]: the secret, no key cache.
fn open_options(secret: Option<&Secret>) -> OpenOptions {
    OpenOptions {
        secret: secret.cloned(),
        key_cache: None,
    }
}

/// The key that opens the repository's objects.
async fn crypter_for(
    backend: &dyn WriteBackend,
    config: &Config,
    options: &OpenOptions,
) -> Result<Unlocked> {
    if !config.encrypted {
        return Ok(Unlocked {
            crypter: Crypter::Plain,
            origin: KeyOrigin::Unencrypted,
            cached: None,
        });
    }
    let secret = options.secret.as_ref().ok_or_else(|| Error::InvalidInput {
        what: "secret".into(),
        reason: format!(
            "the repository at {} is encrypted: give its password or key file",
            backend.location()
        ),
    })?;
    unlock(
        backend,
        &config.id,
        config.cipher(),
        secret,
        options.key_cache.as_ref(),
    )
    .await
}

/// A repository's key, where it came from, and its key cache entry.
struct Unlocked {
    crypter: Crypter,
    origin: KeyOrigin,
    cached: Option<Cached>,
}

/// The key cache entry of an unlocked key.
struct Cached {
    cache: KeyCache,
    entry: CacheEntry,
    master: MasterKey,
    /// The store the create-only check passed on, as the entry remembers it.
    checked: Option<String>,
}

impl Unlocked {
    /// The store on which the key cache says the create-only check passed.
    fn checked_store(&self) -> Option<&str> {
        self.cached.as_ref()?.checked.as_deref()
    }

    /// Writes the key cache entry, remembering `checked` (the store on which
    /// the create-only check just passed), if there is a cache. Failures
    /// are logged, not returned.
    async fn remember(&self, checked: Option<&str>) {
        let Some(cached) = &self.cached else {
            return;
        };
        let cache = cached.cache.clone();
        let entry = cached.entry.clone();
        let master = cached.master.clone();
        let note = checked.unwrap_or_default().as_bytes().to_vec();
        if let Err(e) =
            tokio::task::spawn_blocking(move || cache.store(&entry, &master, &note)).await
        {
            tracing::warn!(error = %e, "key cache entry not written");
        }
    }
}

impl Repository {
    fn assemble(
        backend: Arc<dyn WriteBackend>,
        crypter: Crypter,
        key_origin: KeyOrigin,
        config: Config,
        read_only: bool,
    ) -> Self {
        let concurrency = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        Self {
            inner: Arc::new(Inner {
                backend,
                crypter,
                config,
                index: RwLock::new(Index::default()),
                concurrency,
                read_only,
                key_origin,
            }),
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }

    /// The same repository, waiting at most `wait` for a conflicting lock (a
    /// backup waits for a running prune, a prune for running backups) before
    /// failing with [`Error::Locked`].
    #[must_use]
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// How blobs are sealed and named: what tests compare to tell keys apart.
    #[cfg(test)]
    pub(crate) fn crypter(&self) -> &Crypter {
        &self.inner.crypter
    }

    /// The store the repository is on.
    pub fn backend(&self) -> &Arc<dyn WriteBackend> {
        &self.inner.backend
    }

    /// Brings the in-memory index up to date: reads the index files other
    /// writers added since the last load, or all of them again if a prune
    /// replaced some (so no blob is believed stored in a pack that is gone).
    ///
    /// # Errors
    /// The store failed or an index file is damaged.
    pub async fn load_index(&self) -> Result<()> {
        let listed = self.index_keys().await?;
        let (rebuild, known) = {
            let index = self.inner.index.read().unwrap_or_else(|p| p.into_inner());
            let current: HashSet<&String> = listed.iter().collect();
            let rebuild = index.files.iter().any(|f| !current.contains(f));
            (
                rebuild,
                if rebuild {
                    HashSet::new()
                } else {
                    index.files.clone()
                },
            )
        };
        let mut fresh = Index::default();
        for key in listed.into_iter().filter(|k| !known.contains(k)) {
            let file = self.index_file(&key).await?;
            fresh.add(key, &file.packs);
        }
        let mut index = self.inner.index.write().unwrap_or_else(|p| p.into_inner());
        if rebuild {
            *index = fresh;
        } else {
            for (id, location) in fresh.blobs {
                index.blobs.entry(id).or_insert(location);
            }
            index.files.extend(fresh.files);
        }
        Ok(())
    }

    /// The keys of every index file.
    async fn index_keys(&self) -> Result<Vec<String>> {
        Ok(self
            .inner
            .backend
            .list("index/")
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect())
    }

    /// Every stored pack by name (its SHA-256), with its size.
    async fn stored_packs(&self) -> Result<HashMap<String, u64>> {
        Ok(self
            .inner
            .backend
            .list("data/")
            .await?
            .into_iter()
            .filter_map(|o| Some((o.key.rsplit('/').next()?.to_owned(), o.size)))
            .collect())
    }

    async fn index_file(&self, key: &str) -> Result<IndexFile> {
        let raw = self.inner.backend.get_all(key).await?;
        let file: IndexFile = self.decode(&raw, INDEX_CONTEXT, key)?;
        if !readable(file.format) {
            return Err(Error::UnsupportedVersion {
                object: key.to_owned(),
                found: file.format,
                supported: readable_formats(),
            });
        }
        Ok(file)
    }

    fn add_to_index(&self, file: String, packs: &[IndexedPack]) {
        self.inner
            .index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add(file, packs);
    }

    fn lookup(&self, id: &Id) -> Option<Location> {
        self.inner
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .blobs
            .get(id)
            .cloned()
    }

    fn knows(&self, id: &Id) -> bool {
        self.inner
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .blobs
            .contains_key(id)
    }

    fn encode<T: Serialize>(&self, value: &T, context: &[u8]) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(value).map_err(|e| Error::io("encoding", e.into()))?;
        // Level 1: an index or a chunk list is mostly hex ids, which only
        // entropy coding shrinks, and higher levels shrink them no further.
        let packed = zstd::bulk::compress(&json, 1).map_err(|e| Error::io("compressing", e))?;
        self.inner.crypter.seal(&packed, context)
    }

    fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        raw: &[u8],
        context: &[u8],
        what: &str,
    ) -> Result<T> {
        let packed = self.inner.crypter.open(raw, context, what)?;
        let json = zstd::stream::decode_all(packed.as_slice())
            .map_err(|e| Error::corrupt(what, format!("does not decompress: {e}")))?;
        serde_json::from_slice(&json).map_err(|e| Error::corrupt(what, e.to_string()))
    }

    async fn snapshot_file(&self, id: &SnapshotId) -> Result<SnapshotFile> {
        let key = snapshot_key(id);
        let raw = self.inner.backend.get_all(&key).await?;
        let file: SnapshotFile = self.decode(&raw, SNAPSHOT_CONTEXT, &key)?;
        file.manifest
            .check_format()
            .map_err(|_| Error::UnsupportedVersion {
                object: key.clone(),
                found: file.manifest.format,
                supported: MANIFEST_FORMAT.to_string(),
            })?;
        if file.manifest.id != *id {
            return Err(Error::corrupt(
                &key,
                "holds the manifest of another snapshot",
            ));
        }
        Ok(file)
    }

    /// Every committed snapshot, oldest first.
    ///
    /// # Errors
    /// The store failed or a snapshot file is damaged.
    pub async fn all_snapshots(&self) -> Result<Vec<Manifest>> {
        let mut out = Vec::new();
        for object in self.inner.backend.list("snapshots/").await? {
            let Some(id) = object
                .key
                .strip_prefix("snapshots/")
                .and_then(|s| s.parse::<SnapshotId>().ok())
            else {
                continue;
            };
            out.push(self.snapshot_file(&id).await?.manifest);
        }
        out.sort_by_key(|m| m.id);
        Ok(out)
    }
}

async fn check_create_only(backend: &dyn WriteBackend) -> Result<()> {
    let mut nonce = [0u8; 8];
    fill_random(&mut nonce)?;
    let key = format!("locks/create-probe-{}", hex(&nonce));
    backend
        .put(&key, Bytes::from_static(b"1"), PutOptions::CREATE)
        .await?;
    let second = backend
        .put(&key, Bytes::from_static(b"2"), PutOptions::CREATE)
        .await;
    backend.delete(&key).await?;
    match second {
        Err(Error::AlreadyExists { .. }) => Ok(()),
        Err(other) => Err(other),
        Ok(()) => Err(Error::Unsupported {
            location: backend.location(),
            reason:
                "the store overwrote an object on a create-only write (If-None-Match ignored); \
                     concurrent backups and prune would not be safe on it"
                    .into(),
        }),
    }
}

/// Unlocks the repository `id`: from the first key cache entry `secret`
/// opens, else by deriving the key of each key file in turn.
async fn unlock(
    backend: &dyn WriteBackend,
    id: &str,
    cipher: Cipher,
    secret: &Secret,
    cache: Option<&KeyCache>,
) -> Result<Unlocked> {
    let mut keys = Vec::new();
    for object in backend.list("keys/").await? {
        let raw = backend.get_all(&object.key).await?;
        keys.push((object.key, raw));
    }
    // Each key file that parses, by the content name of its bytes: the
    // address of its cache entries. One that does not parse fails below.
    let parsed: Vec<(usize, String, WrappedKey)> = keys
        .iter()
        .enumerate()
        .filter_map(|(i, (_, raw))| {
            let wrapped = serde_json::from_slice(raw).ok()?;
            Some((i, content_name(raw), wrapped))
        })
        .collect();
    let mut entries: Vec<(usize, CacheEntry)> = Vec::new();
    if let Some(cache) = cache
        && let Some(found) = cache.entries(
            id,
            parsed.iter().map(|(_, name, w)| (name.as_str(), w)),
            secret,
        )
    {
        entries = parsed.iter().map(|(i, ..)| *i).zip(found).collect();
        let lookup = {
            let cache = cache.clone();
            let all: Vec<CacheEntry> = entries.iter().map(|(_, e)| e.clone()).collect();
            tokio::task::spawn_blocking(move || cache.find(&all))
                .await
                .map_err(join_error)?
        };
        match lookup {
            Lookup::Hit {
                index,
                master,
                note,
            } => {
                let checked = String::from_utf8(note).ok().filter(|s| !s.is_empty());
                return Ok(Unlocked {
                    crypter: Crypter::Keyed(master.clone(), cipher),
                    origin: KeyOrigin::Cache,
                    cached: Some(Cached {
                        cache: cache.clone(),
                        entry: entries.swap_remove(index).1,
                        master,
                        checked,
                    }),
                });
            }
            Lookup::Refused => entries.clear(),
            Lookup::Miss => {}
        }
    }
    for (i, (key, raw)) in keys.iter().enumerate() {
        let wrapped: WrappedKey =
            serde_json::from_slice(raw).map_err(|e| Error::corrupt(key, e.to_string()))?;
        let owned = secret.clone();
        let opened = tokio::task::spawn_blocking(move || wrapped.unwrap_with(&owned))
            .await
            .map_err(|e| Error::io("deriving the key", io::Error::other(e)))??;
        if let Some(master) = opened {
            let cached = match (cache, entries.iter().position(|(k, _)| *k == i)) {
                (Some(cache), Some(at)) => Some(Cached {
                    cache: cache.clone(),
                    entry: entries.swap_remove(at).1,
                    master: master.clone(),
                    checked: None,
                }),
                _ => None,
            };
            return Ok(Unlocked {
                crypter: Crypter::Keyed(master, cipher),
                origin: KeyOrigin::Derived,
                cached,
            });
        }
    }
    Err(Error::WrongPassword {
        location: backend.location(),
    })
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::io("a worker task failed", io::Error::other(e))
}
