//! Where drkit's backups live.
//!
//! - **Backends**: the [`ReadBackend`] / [`WriteBackend`] traits, with local
//!   filesystem ([`FsBackend`]), in-memory ([`MemoryBackend`]) and S3
//!   ([`S3Backend`]) implementations, and the [`Retry`] and [`FaultInjection`]
//!   wrappers.
//! - **The repository**: [`Repository`] chunks streams by content (FastCDC),
//!   stores each distinct chunk once across all snapshots, compresses it
//!   (zstd), seals it (a [`Cipher`]: AES-256-GCM under a key of each
//!   object's own, or XChaCha20-Poly1305 in repositories of format 2; keys
//!   from a master key wrapped by a password or key file) and packs it. It implements dr-core's
//!   [`SnapshotSink`](dr_core::SnapshotSink), [`SnapshotSource`](dr_core::SnapshotSource),
//!   [`ArchiveSink`](dr_core::ArchiveSink) and [`ArchiveSource`](dr_core::ArchiveSource).
//!   A snapshot becomes visible when its snapshot file is written, and not before.
//! - **Checks**: [`Repository::verify`] re-reads every pack and names every damaged object.
//! - **Maintenance**: forget and prune, [`Repository::locks`] and
//!   [`Repository::unlock`]; [`Repository::open_read_only`] for restores and
//!   verifies with credentials that may only read.
//! - **Opening often**: [`OpenOptions`] with a [`KeyCache`], a private local
//!   directory where a process that opens the same repository again with
//!   the same secret finds its key without Argon2id
//!   ([`Repository::open_with`], [`Repository::key_origin`]), as a command
//!   run once per WAL segment must.
//!
//! - **Locations**: a [`Location`] (`/path`, `file:///path`,
//!   `s3://bucket/prefix`) and its [`LocationOptions`] open a store
//!   ([`Location::backend`]) or a repository ([`Repository::init_at`],
//!   [`Repository::open_at`], [`Repository::open_read_only_at`]): the one way
//!   a command line or a config file names where a repository is.
//!
//! [`prelude`] brings the traits behind the common calls into scope
//! (dr-core's sink and source traits, the backend traits).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use dr_core::{RecoveryPoint, SnapshotCommit};
//! use dr_storage::prelude::*;
//! use dr_storage::{InitOptions, KdfParams, MemoryBackend, Repository, Secret};
//! use tokio::io::AsyncReadExt;
//!
//! let options = InitOptions::encrypted(Secret::password("correct horse")).kdf(KdfParams::INSECURE_FAST);
//! let repo = Repository::init(Arc::new(MemoryBackend::new()), options).await?;
//!
//! let mut writer = repo.begin(&"redis/master-0".parse()?, jiff::Timestamp::now()).await?;
//! writer.add_stream(&"dump.rdb".parse()?, &mut &b"REDIS0011..."[..]).await?;
//! let manifest = writer.commit(SnapshotCommit::new(RecoveryPoint::new(jiff::Timestamp::now()))).await?;
//!
//! let mut restored = Vec::new();
//! repo.open_stream(&manifest.id, &"dump.rdb".parse()?).await?.read_to_end(&mut restored).await?;
//! assert_eq!(restored, b"REDIS0011...");
//! # Ok(()) }
//! ```

pub(crate) mod backend;
pub(crate) mod crypto;
pub(crate) mod error;
pub(crate) mod key_cache;
pub(crate) mod location;
pub(crate) mod pack;
pub(crate) mod repository;

pub use crate::backend::{
    BackendCapabilities, BackendOperation, FaultInjection, FaultOptions, FaultSchedule, FsBackend,
    ListPage, MemoryBackend, ObjectMeta, ObjectRetention, PutMode, PutOptions, ReadBackend,
    ReadBackendExt, RetentionMode, Retry, RetryOptions, S3Backend, S3Credentials, S3Options,
    UnfinishedWrite, WriteBackend, check_key, check_prefix,
};
pub use crate::crypto::{Cipher, KdfParams, Secret};
pub use crate::error::{BoxError, Error, Result};
pub use crate::key_cache::KeyCache;
pub use crate::location::{LocalPath, Location, LocationOptions, S3Location};
pub use crate::repository::{
    CheckReport, ChunkerParams, DEFAULT_LOCK_WAIT, Damage, Encryption, ForgetPlan, ForgetReport,
    InitOptions, KeyOrigin, LockInfo, OLDEST_READABLE_FORMAT, ObjectLock, OpenOptions,
    PruneOptions, PruneReport, REPOSITORY_FORMAT, Repository, RepositoryJournals, RepositoryWriter,
    SegmentForgetReport, SnapshotFilter, Unlock, Usage, VerifyOptions, VerifyReport,
};

/// The traits behind the common calls, in one glob import: dr-core's
/// snapshot, archive and operation traits ([`dr_core::prelude`]) and the
/// backend traits.
pub mod prelude {
    pub use crate::backend::{ReadBackend, ReadBackendExt, WriteBackend};
    pub use dr_core::prelude::*;
}
