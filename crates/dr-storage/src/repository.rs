//! The repository: content-defined chunks, deduplicated by id across every
//! snapshot, compressed, sealed and packed, with the snapshot file as the
//! commit point. It implements dr-core's sink and source traits.
//!
//! Layout on the backend (every object write-once but `config`'s probe):
//!
//! ```text
//! config                       plaintext JSON: format, id, encrypted?, chunker, compression
//! keys/<id>                    the master key wrapped by a password- or key-file-derived key
//! data/<2 hex>/<sha256>        packs (see `pack`), named by the SHA-256 of their bytes
//! index/<sha256>               sealed zstd JSON: which blobs are in which packs
//! snapshots/<snapshot id>      sealed zstd JSON: the manifest and each stream's chunk ids
//! archive/<component>/<name>   sealed, compressed archive segments (WAL)
//! ```
//!
//! Write order: packs, then index, then snapshot. A backup that dies before
//! its snapshot file is written leaves only unreferenced packs, which no
//! listing shows.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use dr_core::{
    ArchiveSink, ArchiveSource, ByteStream, ComponentId, MANIFEST_FORMAT, Manifest, SegmentInfo,
    SegmentName, Sha256Digest, SnapshotCommit, SnapshotId, SnapshotSink, SnapshotSource,
    SnapshotWriter, StreamEntry, StreamName,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backend::{PutOptions, ReadBackendExt, WriteBackend};
use crate::crypto::{
    Crypter, Id, KdfParams, MasterKey, Secret, WrappedKey, fill_random, hex, parse_hex_id,
};
use crate::error::{Error, Result};
use crate::pack::{BlobEntry, PackBuilder, SealedBlob, open_blob, read_header, seal_blob};

/// The repository format version this build writes and reads.
pub const REPOSITORY_FORMAT: u32 = 1;

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
    /// zstd level, 1 to 19.
    pub compression_level: i32,
    /// Chunk sizes.
    pub chunker: ChunkerParams,
    /// Target pack size in bytes.
    pub pack_size: u32,
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
            compression_level: 3,
            chunker: ChunkerParams::DEFAULT,
            pack_size: 32 * 1024 * 1024,
        }
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    format: u32,
    id: String,
    encrypted: bool,
    chunker: ChunkerParams,
    compression_level: i32,
    pack_size: u32,
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
    index: RwLock<HashMap<Id, Location>>,
    /// Chunk-processing jobs in flight per stream.
    concurrency: usize,
}

/// A backup repository on a backend. Cheap to clone; clones share the index.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use dr_core::SnapshotSink;
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
}

fn pack_key(id: &str) -> String {
    format!("data/{}/{id}", &id[..2])
}

fn snapshot_key(id: &SnapshotId) -> String {
    format!("snapshots/{id}")
}

fn segment_key(component: &ComponentId, name: &SegmentName) -> String {
    format!("archive/{component}/{name}")
}

impl Repository {
    /// Creates a repository on an empty store.
    ///
    /// # Errors
    /// `AlreadyExists` if the store holds a repository; `Unsupported` if it does
    /// not honour create-only writes; `Backend` if it failed.
    pub async fn init(backend: Arc<dyn WriteBackend>, options: InitOptions) -> Result<Self> {
        check_create_only(backend.as_ref()).await?;
        let mut id = [0u8; 16];
        fill_random(&mut id)?;
        let (crypter, encrypted) = match &options.encryption {
            Encryption::None => (Crypter::Plain, false),
            Encryption::Secret(secret, kdf) => {
                let master = MasterKey::generate()?;
                let wrapped = WrappedKey::wrap(&master, secret, *kdf)?;
                let bytes = serde_json::to_vec(&wrapped)
                    .map_err(|e| Error::io("encoding key", e.into()))?;
                let key_id = hex(&Sha256::digest(&bytes));
                backend
                    .put(&format!("keys/{key_id}"), bytes.into(), PutOptions::CREATE)
                    .await?;
                (Crypter::Keyed(master), true)
            }
        };
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
        let config = Config {
            format: REPOSITORY_FORMAT,
            id: hex(&id),
            encrypted,
            chunker: options.chunker,
            compression_level: options.compression_level,
            pack_size: options.pack_size,
        };
        let bytes = serde_json::to_vec_pretty(&config)
            .map_err(|e| Error::io("encoding config", e.into()))?;
        backend
            .put("config", bytes.into(), PutOptions::CREATE)
            .await?;
        Ok(Self::assemble(backend, crypter, config))
    }

    /// Opens an existing repository. `secret` is needed if it is encrypted.
    ///
    /// # Errors
    /// `NotFound` if there is no repository; `WrongPassword`;
    /// `UnsupportedVersion` for a newer format; `Unsupported` if the store does
    /// not honour create-only writes; `Corrupt` for a damaged index.
    pub async fn open(backend: Arc<dyn WriteBackend>, secret: Option<&Secret>) -> Result<Self> {
        let raw = backend.get_all("config").await?;
        let config: Config = serde_json::from_slice(&raw).map_err(|e| {
            // An unknown format version is reported as such, not as damage.
            match serde_json::from_slice::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| v.get("format").and_then(serde_json::Value::as_u64))
            {
                Some(found) if found != u64::from(REPOSITORY_FORMAT) => Error::UnsupportedVersion {
                    object: format!("{}: config", backend.location()),
                    found: found as u32,
                    supported: REPOSITORY_FORMAT.to_string(),
                },
                _ => Error::corrupt("config", e.to_string()),
            }
        })?;
        if config.format != REPOSITORY_FORMAT {
            return Err(Error::UnsupportedVersion {
                object: format!("{}: config", backend.location()),
                found: config.format,
                supported: REPOSITORY_FORMAT.to_string(),
            });
        }
        check_create_only(backend.as_ref()).await?;
        let crypter = if config.encrypted {
            let secret = secret.ok_or_else(|| Error::InvalidInput {
                what: "secret".into(),
                reason: format!(
                    "the repository at {} is encrypted: give its password or key file",
                    backend.location()
                ),
            })?;
            unlock(backend.as_ref(), secret).await?
        } else {
            Crypter::Plain
        };
        let repo = Self::assemble(backend, crypter, config);
        repo.load_index().await?;
        Ok(repo)
    }

    fn assemble(backend: Arc<dyn WriteBackend>, crypter: Crypter, config: Config) -> Self {
        let concurrency = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        Self {
            inner: Arc::new(Inner {
                backend,
                crypter,
                config,
                index: RwLock::new(HashMap::new()),
                concurrency,
            }),
        }
    }

    /// The store the repository is on.
    pub fn backend(&self) -> &Arc<dyn WriteBackend> {
        &self.inner.backend
    }

    /// Reads every index file, adding what other writers stored since the last load.
    ///
    /// # Errors
    /// The store failed or an index file is damaged.
    pub async fn load_index(&self) -> Result<()> {
        for object in self.inner.backend.list("index/").await? {
            let raw = self.inner.backend.get_all(&object.key).await?;
            let file: IndexFile = self.decode(&raw, INDEX_CONTEXT, &object.key)?;
            self.add_to_index(&file.packs);
        }
        Ok(())
    }

    fn add_to_index(&self, packs: &[IndexedPack]) {
        let mut index = self.inner.index.write().unwrap_or_else(|p| p.into_inner());
        for pack in packs {
            let name: Arc<str> = Arc::from(pack.id.as_str());
            for entry in &pack.blobs {
                index.entry(entry.id).or_insert_with(|| Location {
                    pack: name.clone(),
                    entry: *entry,
                });
            }
        }
    }

    fn lookup(&self, id: &Id) -> Option<Location> {
        self.inner
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn knows(&self, id: &Id) -> bool {
        self.inner
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    fn encode<T: Serialize>(&self, value: &T, context: &[u8]) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(value).map_err(|e| Error::io("encoding", e.into()))?;
        let packed = zstd::bulk::compress(&json, 3).map_err(|e| Error::io("compressing", e))?;
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

/// One damaged object found by [`Repository::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The object (a pack key, or a blob within one).
    pub object: String,
    /// What check failed.
    pub reason: String,
}

/// What [`Repository::verify`] read and what it found damaged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Packs read in full.
    pub packs: usize,
    /// Blobs decrypted, decompressed and re-hashed.
    pub blobs: usize,
    /// Every damaged object, by name.
    pub damaged: Vec<Damage>,
}

impl Repository {
    /// Reads every pack in full and checks it: its name is the SHA-256 of its
    /// bytes, its header opens, and every blob decrypts, decompresses and
    /// hashes to its id. Damage is collected, not fatal, so the report names
    /// every damaged object.
    ///
    /// # Errors
    /// Only when the store itself fails (listing or reading).
    pub async fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for object in self.inner.backend.list("data/").await? {
            let bytes = self.inner.backend.get_all(&object.key).await?;
            let crypter = self.inner.crypter.clone();
            let key = object.key.clone();
            let (blobs, damaged) =
                tokio::task::spawn_blocking(move || verify_pack(&crypter, &key, &bytes))
                    .await
                    .map_err(join_error)?;
            report.packs += 1;
            report.blobs += blobs;
            report.damaged.extend(damaged);
        }
        Ok(report)
    }
}

fn verify_pack(crypter: &Crypter, key: &str, bytes: &[u8]) -> (usize, Vec<Damage>) {
    let damage = |object: &str, reason: String| Damage {
        object: object.to_owned(),
        reason,
    };
    let name = key.rsplit('/').next().unwrap_or(key);
    let mut found = Vec::new();
    if hex(&Sha256::digest(bytes)) != name {
        found.push(damage(
            key,
            "SHA-256 of the pack differs from its name".into(),
        ));
    }
    let entries = match read_header(crypter, bytes, name) {
        Ok(entries) => entries,
        Err(e) => {
            found.push(damage(key, e.to_string()));
            return (0, found);
        }
    };
    for entry in &entries {
        let start = entry.offset as usize;
        let end = start + entry.length as usize;
        if let Err(e) = open_blob(crypter, entry, &bytes[start..end], name) {
            found.push(damage(&format!("{key}#{}", hex(&entry.id)), e.to_string()));
        }
    }
    (entries.len(), found)
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

async fn unlock(backend: &dyn WriteBackend, secret: &Secret) -> Result<Crypter> {
    let keys = backend.list("keys/").await?;
    for object in keys {
        let raw = backend.get_all(&object.key).await?;
        let wrapped: WrappedKey =
            serde_json::from_slice(&raw).map_err(|e| Error::corrupt(&object.key, e.to_string()))?;
        let secret = secret.clone();
        let opened = tokio::task::spawn_blocking(move || wrapped.unwrap_with(&secret))
            .await
            .map_err(|e| Error::io("deriving the key", io::Error::other(e)))??;
        if let Some(master) = opened {
            return Ok(Crypter::Keyed(master));
        }
    }
    Err(Error::WrongPassword {
        location: backend.location(),
    })
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::io("a worker task failed", io::Error::other(e))
}

/// Chunks that went through hashing, and sealing if they were new.
struct Processed {
    id: Id,
    blob: Option<SealedBlob>,
}

/// Collects sealed blobs into packs and uploads full packs in the background.
struct Packer {
    repo: Repository,
    current: PackBuilder,
    /// Blobs already packed by this writer.
    packed: HashSet<Id>,
    uploads: VecDeque<JoinHandle<Result<IndexedPack>>>,
    done: Vec<IndexedPack>,
}

impl Packer {
    fn new(repo: Repository) -> Self {
        Self {
            repo,
            current: PackBuilder::default(),
            packed: HashSet::new(),
            uploads: VecDeque::new(),
            done: Vec::new(),
        }
    }

    async fn add(&mut self, blob: SealedBlob) -> Result<()> {
        if !self.packed.insert(blob.id) || self.repo.knows(&blob.id) {
            return Ok(());
        }
        self.current.add(&blob)?;
        if self.current.len() >= self.repo.inner.config.pack_size as usize {
            self.flush().await?;
        }
        Ok(())
    }

    /// Starts uploading the current pack; waits while too many uploads are in flight.
    async fn flush(&mut self) -> Result<()> {
        if self.current.is_empty() {
            return Ok(());
        }
        let builder = std::mem::take(&mut self.current);
        let repo = self.repo.clone();
        self.uploads.push_back(tokio::spawn(async move {
            let crypter = repo.inner.crypter.clone();
            let (bytes, blobs) = tokio::task::spawn_blocking(move || {
                let (bytes, blobs) = builder.finish(&crypter)?;
                Ok::<_, Error>((bytes, blobs))
            })
            .await
            .map_err(join_error)??;
            let id = hex(&Sha256::digest(&bytes));
            match repo
                .inner
                .backend
                .put(&pack_key(&id), bytes, PutOptions::CREATE)
                .await
            {
                // Named by its content: an existing pack of that name is this pack.
                Ok(()) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            Ok(IndexedPack { id, blobs })
        }));
        while self.uploads.len() > 2 {
            self.finish_one().await?;
        }
        Ok(())
    }

    async fn finish_one(&mut self) -> Result<()> {
        if let Some(upload) = self.uploads.pop_front() {
            let pack = upload.await.map_err(join_error)??;
            self.done.push(pack);
        }
        Ok(())
    }

    /// Uploads what is left and returns every pack this writer stored.
    async fn finish(mut self) -> Result<Vec<IndexedPack>> {
        self.flush().await?;
        while !self.uploads.is_empty() {
            self.finish_one().await?;
        }
        Ok(self.done)
    }
}

/// A snapshot being written to a [`Repository`].
pub struct RepositoryWriter {
    repo: Repository,
    id: SnapshotId,
    component: ComponentId,
    started_at: Timestamp,
    streams: Vec<StreamEntry>,
    chunks: BTreeMap<StreamName, Vec<String>>,
    packer: Packer,
}

impl std::fmt::Debug for RepositoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryWriter")
            .field("id", &self.id)
            .field("component", &self.component)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl RepositoryWriter {
    /// Cuts the next chunk off `buf`: `buf` holds at least `max` bytes or the rest of the stream.
    fn cut(&self, buf: &[u8]) -> usize {
        let c = self.repo.inner.config.chunker;
        if buf.len() <= c.min as usize {
            return buf.len();
        }
        let seed = self.repo.inner.crypter.chunker_seed();
        fastcdc::v2020::FastCDC::with_level_and_seed(
            buf,
            c.min as usize,
            c.avg as usize,
            c.max as usize,
            fastcdc::v2020::Normalization::Level1,
            seed,
        )
        .next()
        .map_or(buf.len(), |chunk| chunk.length)
    }
}

#[async_trait]
impl SnapshotWriter for RepositoryWriter {
    fn id(&self) -> SnapshotId {
        self.id
    }

    async fn add_stream(
        &mut self,
        name: &StreamName,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> dr_core::Result<StreamEntry> {
        if self.chunks.contains_key(name) {
            return Err(dr_core::Error::invalid(
                format!("stream {name}"),
                "already added to this snapshot",
            ));
        }
        let max = self.repo.inner.config.chunker.max as usize;
        let level = self.repo.inner.config.compression_level;
        let mut buf = BytesMut::with_capacity(2 * max);
        let mut eof = false;
        let mut stream_hash = Sha256::new();
        let mut size = 0u64;
        let mut ids = Vec::new();
        let mut in_flight: VecDeque<JoinHandle<Result<Processed>>> = VecDeque::new();
        loop {
            while !eof && buf.len() < max {
                buf.reserve(max);
                let n = data
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| dr_core::Error::io(format!("reading stream {name}"), e))?;
                eof = n == 0;
            }
            if buf.is_empty() {
                break;
            }
            let len = self.cut(&buf);
            let chunk = buf.split_to(len).freeze();
            stream_hash.update(&chunk);
            size += chunk.len() as u64;
            let repo = self.repo.clone();
            in_flight.push_back(tokio::task::spawn_blocking(move || {
                let id = repo.inner.crypter.id(&chunk);
                let blob = if repo.knows(&id) {
                    None
                } else {
                    Some(seal_blob(&repo.inner.crypter, id, &chunk, level)?)
                };
                Ok(Processed { id, blob })
            }));
            while in_flight.len() >= 2 * self.repo.inner.concurrency {
                self.take_processed(&mut in_flight, &mut ids).await?;
            }
        }
        while !in_flight.is_empty() {
            self.take_processed(&mut in_flight, &mut ids).await?;
        }
        let entry = StreamEntry {
            name: name.clone(),
            size,
            sha256: Sha256Digest::from_bytes(stream_hash.finalize().into()),
        };
        self.chunks.insert(name.clone(), ids);
        self.streams.push(entry.clone());
        Ok(entry)
    }

    async fn commit(self: Box<Self>, commit: SnapshotCommit) -> dr_core::Result<Manifest> {
        let this = *self;
        let repo = this.repo.clone();
        let packs = this.packer.finish().await?;
        if !packs.is_empty() {
            let index = IndexFile {
                format: REPOSITORY_FORMAT,
                packs: packs.clone(),
            };
            let bytes = repo.encode(&index, INDEX_CONTEXT)?;
            let key = format!("index/{}", hex(&Sha256::digest(&bytes)));
            repo.inner
                .backend
                .put(&key, bytes.into(), PutOptions::CREATE)
                .await?;
            repo.add_to_index(&packs);
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            id: this.id,
            component: this.component,
            started_at: this.started_at,
            committed_at: Timestamp::now(),
            recovery_point: commit.recovery_point,
            streams: this.streams,
            labels: commit.labels,
            metadata: commit.metadata,
        };
        let file = SnapshotFile {
            manifest,
            chunks: this.chunks,
        };
        let bytes = repo.encode(&file, SNAPSHOT_CONTEXT)?;
        // The commit point: from here on the snapshot exists.
        repo.inner
            .backend
            .put(
                &snapshot_key(&file.manifest.id),
                bytes.into(),
                PutOptions::CREATE,
            )
            .await?;
        Ok(file.manifest)
    }

    async fn abort(self: Box<Self>) -> dr_core::Result<()> {
        // Packs already uploaded stay unreferenced until a prune; nothing is visible.
        for upload in self.packer.uploads {
            upload.abort();
        }
        Ok(())
    }
}

impl RepositoryWriter {
    async fn take_processed(
        &mut self,
        in_flight: &mut VecDeque<JoinHandle<Result<Processed>>>,
        ids: &mut Vec<String>,
    ) -> Result<()> {
        let Some(job) = in_flight.pop_front() else {
            return Ok(());
        };
        let processed = job.await.map_err(join_error)??;
        ids.push(hex(&processed.id));
        if let Some(blob) = processed.blob {
            self.packer.add(blob).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl SnapshotSink for Repository {
    async fn begin(
        &self,
        component: &ComponentId,
        started_at: Timestamp,
    ) -> dr_core::Result<Box<dyn SnapshotWriter>> {
        // Pick up what other writers stored, so it is not stored again.
        self.load_index().await?;
        Ok(Box::new(RepositoryWriter {
            repo: self.clone(),
            id: SnapshotId::new(started_at)?,
            component: component.clone(),
            started_at,
            streams: Vec::new(),
            chunks: BTreeMap::new(),
            packer: Packer::new(self.clone()),
        }))
    }
}

#[async_trait]
impl SnapshotSource for Repository {
    async fn snapshots(&self, component: &ComponentId) -> dr_core::Result<Vec<Manifest>> {
        let mut all = self.all_snapshots().await?;
        all.retain(|m| &m.component == component);
        Ok(all)
    }

    async fn manifest(&self, id: &SnapshotId) -> dr_core::Result<Manifest> {
        match self.snapshot_file(id).await {
            Ok(file) => Ok(file.manifest),
            Err(Error::NotFound { .. }) => Err(dr_core::Error::not_found(format!("snapshot {id}"))),
            Err(e) => Err(e.into()),
        }
    }

    async fn open_stream(&self, id: &SnapshotId, name: &StreamName) -> dr_core::Result<ByteStream> {
        let mut file = match self.snapshot_file(id).await {
            Ok(file) => file,
            Err(Error::NotFound { .. }) => {
                return Err(dr_core::Error::not_found(format!("snapshot {id}")));
            }
            Err(e) => return Err(e.into()),
        };
        let entry =
            file.manifest.stream(name).cloned().ok_or_else(|| {
                dr_core::Error::not_found(format!("stream {name} of snapshot {id}"))
            })?;
        let chunk_ids = file.chunks.remove(name).unwrap_or_default();
        let mut locations = Vec::with_capacity(chunk_ids.len());
        for text in chunk_ids {
            let chunk = parse_hex_id(&text).ok_or_else(|| {
                Error::corrupt(snapshot_key(id), format!("bad chunk id {text:?}"))
            })?;
            let location = self.lookup(&chunk).ok_or_else(|| {
                Error::corrupt(
                    format!("stream {name} of snapshot {id}"),
                    format!("chunk {text} is in no index"),
                )
            })?;
            locations.push(location);
        }
        let (tx, rx) = mpsc::channel(4);
        let repo = self.clone();
        tokio::spawn(async move { repo.produce(locations, tx).await });
        Ok(Box::new(VerifyingReader::new(
            rx,
            entry,
            format!("stream {name} of snapshot {id}"),
        )))
    }
}

impl Repository {
    /// Reads blobs in order, a few in parallel, into `tx`.
    async fn produce(self, locations: Vec<Location>, tx: mpsc::Sender<io::Result<Bytes>>) {
        let mut in_flight: VecDeque<JoinHandle<Result<Bytes>>> = VecDeque::new();
        let mut pending = locations.into_iter();
        loop {
            while in_flight.len() < 2 * self.inner.concurrency {
                let Some(location) = pending.next() else {
                    break;
                };
                let repo = self.clone();
                in_flight.push_back(tokio::spawn(async move { repo.read_blob(&location).await }));
            }
            let Some(next) = in_flight.pop_front() else {
                break;
            };
            let result =
                next.await.map_err(join_error).and_then(|r| r).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, dr_core::Error::from(e))
                });
            let failed = result.is_err();
            if tx.send(result).await.is_err() || failed {
                break;
            }
        }
        for job in in_flight {
            job.abort();
        }
    }

    async fn read_blob(&self, location: &Location) -> Result<Bytes> {
        let entry = location.entry;
        let range = entry.offset..entry.offset + u64::from(entry.length);
        let sealed = self
            .inner
            .backend
            .get(&pack_key(&location.pack), Some(range))
            .await?;
        if sealed.len() != entry.length as usize {
            return Err(Error::corrupt(
                format!("pack {}", location.pack),
                "truncated: a blob extends past its end",
            ));
        }
        let crypter = self.inner.crypter.clone();
        let pack = location.pack.clone();
        let raw = tokio::task::spawn_blocking(move || open_blob(&crypter, &entry, &sealed, &pack))
            .await
            .map_err(join_error)??;
        Ok(Bytes::from(raw))
    }
}

/// Reads a stream from its producer task and checks its length and SHA-256
/// against the manifest before reporting the end: a damaged stream ends in an
/// `InvalidData` error, never in silently wrong bytes.
struct VerifyingReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    hash: Sha256,
    seen: u64,
    expected: StreamEntry,
    what: String,
    finished: bool,
}

impl VerifyingReader {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>, expected: StreamEntry, what: String) -> Self {
        Self {
            rx,
            current: Bytes::new(),
            hash: Sha256::new(),
            seen: 0,
            expected,
            what,
            finished: false,
        }
    }
}

impl AsyncRead for VerifyingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.current.is_empty() {
                let n = self.current.len().min(out.remaining());
                let piece = self.current.split_to(n);
                out.put_slice(&piece);
                return Poll::Ready(Ok(()));
            }
            if self.finished {
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Some(Ok(bytes))) => {
                    self.hash.update(&bytes);
                    self.seen += bytes.len() as u64;
                    if self.seen > self.expected.size {
                        return Poll::Ready(Err(corrupt_io(
                            &self.what,
                            "longer than its manifest says",
                        )));
                    }
                    self.current = bytes;
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    let digest: [u8; 32] = std::mem::take(&mut self.hash).finalize().into();
                    if self.seen != self.expected.size {
                        return Poll::Ready(Err(corrupt_io(
                            &self.what,
                            "shorter than its manifest says",
                        )));
                    }
                    if Sha256Digest::from_bytes(digest) != self.expected.sha256 {
                        return Poll::Ready(Err(corrupt_io(
                            &self.what,
                            "SHA-256 differs from its manifest",
                        )));
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

fn corrupt_io(what: &str, reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        dr_core::Error::corrupt(what, reason),
    )
}

#[async_trait]
impl ArchiveSink for Repository {
    async fn put_segment(
        &self,
        component: &ComponentId,
        name: &SegmentName,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> dr_core::Result<SegmentInfo> {
        let mut raw = Vec::new();
        let read = data
            .take(MAX_SEGMENT + 1)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| dr_core::Error::io(format!("reading segment {name}"), e))?;
        if read as u64 > MAX_SEGMENT {
            return Err(dr_core::Error::invalid(
                format!("segment {name}"),
                "larger than 1 GiB",
            ));
        }
        let crypter = self.inner.crypter.clone();
        let level = self.inner.config.compression_level;
        let (info, stored) =
            tokio::task::spawn_blocking(move || encode_segment(&crypter, &raw, level))
                .await
                .map_err(join_error)??;
        let info = SegmentInfo {
            name: name.clone(),
            ..info
        };
        let key = segment_key(component, name);
        match self
            .inner
            .backend
            .put(&key, stored.into(), PutOptions::CREATE)
            .await
        {
            Ok(()) => Ok(info),
            Err(Error::AlreadyExists { .. }) => {
                // Write-once: the same bytes again are fine, other bytes are not.
                let existing = self.inner.backend.get_all(&key).await?;
                let crypter = self.inner.crypter.clone();
                let what = key.clone();
                let (_, old) =
                    tokio::task::spawn_blocking(move || decode_segment(&crypter, &existing, &what))
                        .await
                        .map_err(join_error)??;
                if old == info.sha256 {
                    Ok(info)
                } else {
                    Err(dr_core::Error::AlreadyExists {
                        what: format!("segment {name} of {component} (with other content)"),
                    })
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl ArchiveSource for Repository {
    async fn segments(
        &self,
        component: &ComponentId,
        prefix: &str,
    ) -> dr_core::Result<Vec<SegmentName>> {
        let base = format!("archive/{component}/");
        let mut names = Vec::new();
        for object in self.inner.backend.list(&format!("{base}{prefix}")).await? {
            let Some(rest) = object.key.strip_prefix(&base) else {
                continue;
            };
            if let Ok(name) = rest.parse::<SegmentName>() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn open_segment(
        &self,
        component: &ComponentId,
        name: &SegmentName,
    ) -> dr_core::Result<ByteStream> {
        let key = segment_key(component, name);
        let stored = match self.inner.backend.get_all(&key).await {
            Ok(bytes) => bytes,
            Err(Error::NotFound { .. }) => {
                return Err(dr_core::Error::not_found(format!(
                    "segment {name} of {component}"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let crypter = self.inner.crypter.clone();
        let (raw, _) = tokio::task::spawn_blocking(move || decode_segment(&crypter, &stored, &key))
            .await
            .map_err(join_error)??;
        Ok(Box::new(io::Cursor::new(raw)))
    }
}

/// A segment object: sealed `sha256 (32) | raw length (u64 LE) | compression (u8) | body`.
fn encode_segment(crypter: &Crypter, raw: &[u8], level: i32) -> Result<(SegmentInfo, Vec<u8>)> {
    let digest: [u8; 32] = Sha256::digest(raw).into();
    let compressed =
        zstd::bulk::compress(raw, level).map_err(|e| Error::io("compressing a segment", e))?;
    let (flag, body) = if compressed.len() < raw.len() {
        (1u8, compressed.as_slice())
    } else {
        (0u8, raw)
    };
    let mut plain = Vec::with_capacity(41 + body.len());
    plain.extend_from_slice(&digest);
    plain.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    plain.push(flag);
    plain.extend_from_slice(body);
    let info = SegmentInfo {
        // The caller sets the real name.
        name: "segment"
            .parse()
            .map_err(|_| Error::corrupt("segment", "name"))?,
        size: raw.len() as u64,
        sha256: Sha256Digest::from_bytes(digest),
    };
    Ok((info, crypter.seal(&plain, SEGMENT_CONTEXT)?))
}

fn decode_segment(crypter: &Crypter, stored: &[u8], what: &str) -> Result<(Vec<u8>, Sha256Digest)> {
    let plain = crypter.open(stored, SEGMENT_CONTEXT, what)?;
    if plain.len() < 41 {
        return Err(Error::corrupt(what, "truncated segment header"));
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&plain[..32]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&plain[32..40]);
    let len = u64::from_le_bytes(len);
    if len > MAX_SEGMENT {
        return Err(Error::corrupt(what, "impossible segment length"));
    }
    let body = &plain[41..];
    let raw = match plain[40] {
        0 => body.to_vec(),
        1 => zstd::bulk::decompress(body, len as usize)
            .map_err(|e| Error::corrupt(what, format!("does not decompress: {e}")))?,
        other => return Err(Error::corrupt(what, format!("unknown compression {other}"))),
    };
    if raw.len() as u64 != len || Sha256::digest(&raw).as_slice() != digest {
        return Err(Error::corrupt(what, "content does not match its SHA-256"));
    }
    Ok((raw, Sha256Digest::from_bytes(digest)))
}
