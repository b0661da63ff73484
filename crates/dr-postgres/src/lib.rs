//! drkit for PostgreSQL: base and delta backups, continuous WAL archiving
//! with an RPO of zero, point-in-time recovery and verification, over
//! PostgreSQL's own streaming replication protocol. The crate hands bytes to
//! dr-core's sinks and reads them from its sources; where they are stored
//! is the caller's choice.
//!
//! - [`BaseBackup`] ([`dr_core::Backup`]): `BASE_BACKUP` streamed into a
//!   snapshot, one stream per tablespace plus the backup manifest, with no
//!   temporary copy; a delta backup against an earlier one stores only the
//!   changed bytes of changed pages.
//! - [`WalArchiver`]: `pg_receivewal` as a task a service embeds, into an
//!   archive, with a replication slot; in synchronous mode a commit waits
//!   until its WAL is in the archive. Its [`ArchiverHandle::status`] is the
//!   RPO exposure.
//! - [`PitrRestore`] ([`dr_core::Restore`]): a new data directory at the
//!   latest point, a time, an LSN or a named restore point, checked against
//!   the archive before anything is written; optionally started
//!   ([`PgCtl`]) and measured.
//! - [`verify_base_backup`] and [`BaseBackupVerifier`] ([`dr_core::Verify`]):
//!   a stored base backup checked against its backup manifest, without
//!   restoring it.
//! - [`LogicalBackup`] ([`dr_core::Backup`]): `pg_dump` of every or chosen
//!   database streamed into one snapshot (uncompressed, so the repository
//!   deduplicates across dumps), with each table's row count and schema
//!   fingerprint read in the dump's own snapshot, and the globals.
//!   [`verify_logical_backup`] lists each stored dump with `pg_restore`;
//!   [`LogicalRestore`] ([`dr_core::Restore`]) restores a database into a
//!   new one or over one, whole, a schema or one table, then runs the
//!   [`SmokeCheck`]s. [`PgTools`] says where PostgreSQL's programs are,
//!   [`LibpqTls`] how they connect.
//! - [`RestoreTest`]: a backup of either kind restored into a
//!   [`ScratchServer`] made for it, checked, timed against the objectives
//!   and removed.
//! - [`PgFailover`] ([`dr_core::Failover`]): a [`PgCluster`]'s primary
//!   failed over to its most advanced healthy replica, refused beyond the
//!   caller's loss limit, the other replicas made to follow;
//!   [`ClusterState`] is the cluster looked at now (roles, timelines,
//!   positions, each replica's lag).
//! - The archive: [`list_archive`], [`fetch_wal`] (PostgreSQL's
//!   `restore_command`), [`unneeded_wal`] for retention, WAL names
//!   ([`WalSegment`], [`TimelinePath`]) and [`WalRecordReader`], which
//!   finds commits and restore points in archived WAL.
//! - [`replication`]: the protocol client beneath them all, for callers
//!   that need their own: [`ReplicationClient`](replication::ReplicationClient)
//!   and its streams.
//! - [`Error`]: one error type, with the server's SQLSTATE where it sent
//!   one; it converts into [`dr_core::Error`] with a kind a caller can act on.
//!
//! # Example
//!
//! A full backup, WAL archived continuously, and a restore to the latest
//! point, all in one repository:
//!
//! ```no_run
//! use std::sync::Arc;
//! use dr_core::{BackupExt, Objectives, RecoveryTarget, Restore, RestoreRequest};
//! use dr_postgres::{ArchiverOptions, BaseBackup, PgCtl, PitrRestore, Tls, WalArchiver};
//! # use std::time::Duration;
//!
//! # async fn demo(repo: Arc<dr_storage::Repository>) -> Result<(), dr_core::Error> {
//! let config: tokio_postgres::Config = "host=db1 user=replicator password=secret"
//!     .parse()
//!     .map_err(|e| dr_core::Error::invalid("connection settings", format!("{e}")))?;
//! let component: dr_core::ComponentId = "postgres/main".parse()?;
//!
//! let archiver = WalArchiver::new(
//!     config.clone(),
//!     Tls::none(),
//!     repo.clone(),
//!     component.clone(),
//!     ArchiverOptions::new(),
//! )
//! .spawn();
//! let backup = BaseBackup::new(component.clone(), config.clone(), Tls::none());
//! let report = backup.backup_to(repo.as_ref()).await?;
//! println!("base backup {} in {:?}", report.manifest.id, report.timeline.elapsed());
//! println!("archive lags by {} bytes", archiver.status().lag_bytes());
//!
//! // Later, on another host: the latest point, started and measured. How
//! // long to wait is the caller's to say.
//! let server = PgCtl::new("/usr/lib/postgresql/15/bin", 5432, "/run/postgresql", config);
//! let restore = PitrRestore::new(component, "/var/lib/postgresql/15/restored").start_with(server);
//! let journals = repo.segment_journals();
//! let target = RecoveryTarget::Latest;
//! let objectives = Objectives::new("15 minutes".parse()?, "0 seconds".parse()?);
//! let mut request = RestoreRequest::new(repo.as_ref(), &target, objectives).archive(repo.as_ref());
//! if let Some(journals) = &journals {
//!     request = request.journals(journals);
//! }
//! let report = tokio::time::timeout(Duration::from_secs(1800), restore.restore(request))
//!     .await
//!     .map_err(|_| dr_core::Error::Timeout {
//!         operation: "restore".into(),
//!         after: Duration::from_secs(1800),
//!     })??;
//! println!("RTO met: {}", report.rto_assessment().is_met());
//! # Ok(()) }
//! ```

mod archive;
mod archiver;
mod backup;
mod chunks;
mod delta;
mod details;
mod error;
mod failover;
mod logical;
mod metered;
mod pg_ctl;
mod reach;
pub mod replication;
mod restore;
mod restore_test;
mod retention;
mod scratch;
mod tar;
mod verify;
mod wal;
mod wal_records;

pub use crate::archive::{
    ArchiveListing, ArchivedWal, Coverage, fetch_wal, list_archive, newest_archived_transaction,
};
pub use crate::archiver::{
    ArchiverHandle, ArchiverOptions, ArchiverState, ArchiverStatus, ErrorSummary, StandbySlot,
    StandbySlotState, WalArchiver,
};
pub use crate::backup::{BaseBackup, KIND_LABEL, MANIFEST_STREAM, base_backups, is_base_backup};
pub use crate::delta::DELTA_STREAM;
pub use crate::details::BaseBackupDetails;
pub use crate::error::{BoxError, Error, Result, ServerError, SqlState, ToolProblem};
pub use crate::failover::PgFailover;
pub use crate::failover::cluster::{PgCluster, PgMember};
pub use crate::failover::fence::SqlFence;
pub use crate::failover::rejoin::{Rejoin, RejoinMethod, RejoinReport};
pub use crate::failover::state::{
    ClusterState, MemberState, MemberStatus, PrimaryState, ReplicaLag, ReplicaState, StandbyView,
};
pub use crate::logical::{
    CheckOutcome, Databases, DumpedDatabase, DumpedTable, GLOBALS_STREAM, LOGICAL_KIND_LABEL,
    LibpqTls, LogicalBackup, LogicalBackupDetails, LogicalBackupVerifier, LogicalRestore, PgTools,
    RestoreInto, Selection, SmokeCheck, SmokeReport, is_logical_backup, logical_backups,
    smoke_check, verify_logical_backup,
};
pub use crate::pg_ctl::PgCtl;
pub use crate::replication::{ClientCertificate, ServerCheck, Tls};
pub use crate::restore::{PitrRestore, StartServer};
pub use crate::restore_test::{RestoreTest, RestoreTestKind, RestoreTestReport};
pub use crate::retention::unneeded_wal;
pub use crate::scratch::{ScratchOptions, ScratchServer};
pub use crate::verify::{BaseBackupVerifier, verify_base_backup};
pub use crate::wal::{
    DEFAULT_SEGMENT_SIZE, TimelinePath, WalSegment, WalSegmentSize, history_file_name,
    history_file_timeline,
};
pub use crate::wal_records::{WalReadError, WalRecordEvent, WalRecordReader};
