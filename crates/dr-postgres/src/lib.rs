//! drkit for PostgreSQL: a client for PostgreSQL's streaming replication
//! protocol, the ground that base backups, WAL archiving and point-in-time
//! recovery are built on.
//!
//! tokio-postgres cannot open replication connections, so this crate speaks
//! the protocol itself, with postgres-protocol's message encoders and
//! authentication (md5, SCRAM-SHA-256) and rustls for TLS. Control SQL
//! (`pg_switch_wal()`, `pg_replication_slots`) goes through tokio-postgres,
//! with the same [`tokio_postgres::Config`] the replication client is built from.
//!
//! - [`ReplicationClient`]: one physical replication connection
//!   (`replication=true`), opened with [`ReplicationClient::connect`] from a
//!   `tokio_postgres::Config` and a [`Tls`] choice. Its commands:
//!   [`identify_system`](ReplicationClient::identify_system) →
//!   [`SystemIdentity`], [`timeline_history`](ReplicationClient::timeline_history)
//!   → [`TimelineHistory`], [`create_physical_slot`](ReplicationClient::create_physical_slot)
//!   / [`drop_slot`](ReplicationClient::drop_slot) /
//!   [`read_replication_slot`](ReplicationClient::read_replication_slot),
//!   [`show`](ReplicationClient::show).
//! - [`BaseBackupStream`]: `BASE_BACKUP` (PostgreSQL 15 protocol) as a pull
//!   stream of [`BaseBackupEvent`]s, one tar archive per tablespace then the
//!   backup manifest, each readable as an `AsyncRead` ([`BaseBackupReader`]).
//! - [`WalStream`]: `START_REPLICATION` as a pull stream of [`WalEvent`]s
//!   ([`XLogData`], [`Keepalive`]), with [`StandbyStatus`] updates whose
//!   positions the caller chooses, and the end of a timeline
//!   ([`TimelineEnded`]).
//! - [`Error`]: the server's errors with their SQLSTATE ([`ServerError`],
//!   [`SqlState`]), connection and protocol failures; it converts into
//!   [`dr_core::Error`] with a kind a caller can act on.
//!
//! Everything streams: no archive or WAL segment is held in memory, and
//! each `next()` is cancellation-safe.
//!
//! # Example
//!
//! A base backup, archive by archive, then WAL from its start:
//!
//! ```no_run
//! use dr_postgres::{BaseBackupEvent, BaseBackupOptions, ReplicationClient, StandbyStatus, Tls, WalEvent};
//! use tokio::io::AsyncReadExt;
//!
//! # async fn demo() -> Result<(), dr_postgres::Error> {
//! let config: tokio_postgres::Config = "host=127.0.0.1 user=postgres password=secret"
//!     .parse()
//!     .expect("a valid connection string");
//! let client = ReplicationClient::connect(&config, &Tls::none()).await?;
//!
//! let mut backup = client
//!     .base_backup(&BaseBackupOptions::new("nightly").fast_checkpoint(true))
//!     .await?;
//! let (start, timeline) = (backup.start_lsn(), backup.timeline());
//! while let Some(event) = backup.next().await? {
//!     match event {
//!         BaseBackupEvent::ArchiveStart { name, .. } => {
//!             let mut tar = Vec::new(); // a real caller streams into a snapshot sink
//!             backup.reader().read_to_end(&mut tar).await.expect("archive read");
//!             println!("{name}: {} bytes", tar.len());
//!         }
//!         BaseBackupEvent::End { end, .. } => println!("WAL needed up to {end}"),
//!         _ => {}
//!     }
//! }
//!
//! let client = backup.into_client().await?;
//! let mut wal = client.start_replication(None, start, Some(timeline)).await?;
//! while let Some(event) = wal.next().await? {
//!     if let WalEvent::XLogData(data) = event {
//!         // ... make data.data durable, then:
//!         let done = data.end();
//!         wal.send_status(StandbyStatus::new(done, done, dr_core::Lsn::ZERO)).await?;
//!     }
//! }
//! # Ok(()) }
//! ```

pub(crate) mod archive;
pub(crate) mod archiver;
pub(crate) mod backup;
pub(crate) mod delta;
pub(crate) mod error;
pub(crate) mod pg_ctl;
pub(crate) mod reach;
pub(crate) mod replication;
pub(crate) mod restore;
pub(crate) mod retention;
pub(crate) mod tar;
pub(crate) mod verify;

pub(crate) mod wal;
pub(crate) mod wal_records;

pub use crate::archive::{ArchiveListing, ArchivedWal, Coverage, fetch_wal, list_archive};
pub use crate::archiver::{
    ArchiverHandle, ArchiverOptions, ArchiverState, ArchiverStatus, ErrorSummary, WalArchiver,
};
pub use crate::backup::{BaseBackup, KIND_LABEL, MANIFEST_STREAM, meta};
pub use crate::delta::DELTA_STREAM;
pub use crate::error::{BoxError, Error, Result, ServerError, SqlState};
pub use crate::pg_ctl::PgCtl;
pub use crate::replication::{
    BaseBackupEvent, BaseBackupOptions, BaseBackupReader, BaseBackupStream, CreateSlotOptions,
    HistoryEntry, Keepalive, ManifestChecksums, ReplicationClient, Row, SlotInfo, SlotPosition,
    StandbyStatus, SystemIdentity, Tablespace, TimelineEnded, TimelineHistory, Tls, WalEvent,
    WalStream, XLogData,
};
pub use crate::restore::{PitrRestore, StartServer};
pub use crate::retention::unneeded_wal;
pub use crate::verify::{BaseBackupVerifier, verify_base_backup};
pub use crate::wal::{
    DEFAULT_SEGMENT_SIZE, TimelinePath, WalSegment, WalSegmentSize, history_file_name,
    history_file_timeline,
};
pub use crate::wal_records::{WalReadError, WalRecordEvent, WalRecordReader};
