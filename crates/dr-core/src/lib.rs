//! drkit's vocabulary: the types and traits every other drkit crate speaks.
//!
//! - **Objectives**: [`Rto`], [`Rpo`] and [`Objectives`], parsed and printed the
//!   way DR plans write them (`30m`, `1h30m`, `< 15 minutes`), and the business
//!   impact [`Tier`].
//! - **Identities**: [`ComponentId`] (`postgres/gomeet_primary`), [`SnapshotId`]
//!   (sorts by time), [`StreamName`], [`SegmentName`], [`Sha256Digest`].
//! - **Recovery points**: [`RecoveryPoint`], the instant a backup covers plus the
//!   system's own [`Position`] (PostgreSQL [`Lsn`] and timeline, Redis
//!   [`ReplicationId`] and offset).
//! - **The snapshot model**: [`SnapshotSink`] / [`SnapshotWriter`] /
//!   [`SnapshotSource`] for snapshots of named byte streams committed by a
//!   [`Manifest`] (with each kind's typed [`SnapshotDetails`]), and [`ArchiveSink`] / [`ArchiveSource`] for continuous
//!   segments such as WAL. Storage crates implement them; system crates write to them.
//!   A store that can append in place also offers [`JournalSink`] /
//!   [`JournalSource`]: segment journals, a segment's in-progress form.
//! - **Operations**: the [`Backup`], [`Restore`] and [`Failover`] traits, their
//!   optional [`Capabilities`], and the [`RecoveryReport`] every restore and
//!   failover returns: a [`Timeline`] of steps, the achieved RTO and RPO, and an
//!   [`Assessment`] against the objectives. Requests carry an optional
//!   [`ProgressSink`] that long operations report [`Progress`] to.
//! - **Failover** as a typed sequence: [`Failover::assess`] gives a
//!   [`ClusterAssessment`], [`Failover::plan`] a [`FailoverPlan`] (a dry run
//!   is this step alone: [`dry_run`]), and [`execute`] runs it between the
//!   hooks every failover needs, [`FailoverLease`], [`Fence`] and [`Rewire`].
//!   A [`Monitor`] probes any [`Failover`]'s members every interval and runs
//!   that sequence by itself once no primary takes writes, fencing a former
//!   primary that comes back.
//! - **Errors**: one [`Error`] with a [`ErrorKind`] and [`Error::is_retryable`].
//!
//! dr-core does no I/O: no network, no processes, no global state. (The
//! monitor's probes are the [`Failover`]'s own.)
//!
//! # Example
//!
//! Objectives from a DR plan's table, a recovery's timeline, and the verdict:
//!
//! ```
//! use dr_core::{Objectives, Operation, RecoveryReport, Tier, Timeline};
//!
//! // | PostgreSQL | 30 minutes | 15 minutes | Critical - Data integrity |
//! let objectives = Objectives::new("30 minutes".parse()?, "15 minutes".parse()?);
//! let tier: Tier = "Critical - Data integrity".parse()?;
//! assert_eq!(tier, Tier::Critical);
//!
//! let incident: jiff::Timestamp = "2026-11-21T14:30:00Z".parse().unwrap();
//! let mut timeline = Timeline::new("2026-11-21T14:32:00Z".parse().unwrap());
//! timeline.record(
//!     "restore base backup",
//!     "2026-11-21T14:32:00Z".parse().unwrap(),
//!     "2026-11-21T14:41:00Z".parse().unwrap(),
//! )?;
//! timeline.record(
//!     "replay WAL to latest",
//!     "2026-11-21T14:41:00Z".parse().unwrap(),
//!     "2026-11-21T14:44:30Z".parse().unwrap(),
//! )?;
//!
//! let last_replayed: jiff::Timestamp = "2026-11-21T14:29:58Z".parse().unwrap();
//! let report = RecoveryReport::new("postgres/gomeet_primary".parse()?, Operation::Restore, objectives, timeline)
//!     .with_incident_at(incident)
//!     .with_data_loss_between(last_replayed, incident);
//!
//! assert_eq!(report.achieved_rto().to_string(), "14m30s");
//! assert_eq!(report.achieved_rpo().unwrap().to_string(), "2s");
//! assert!(report.objectives_met());
//! println!("{report}");
//! # Ok::<(), dr_core::Error>(())
//! ```

pub(crate) mod error;
pub(crate) mod failover;
pub(crate) mod health;
pub(crate) mod id;
pub(crate) mod journal;
pub(crate) mod monitor;
pub(crate) mod objectives;
pub(crate) mod ops;
pub(crate) mod point;
pub(crate) mod progress;
pub(crate) mod report;
pub(crate) mod retention;
pub(crate) mod snapshot;

pub use crate::error::{BoxError, Error, ErrorKind, Result};
pub use crate::failover::{
    ClusterAssessment, Failover, FailoverHooks, FailoverLease, FailoverMode, FailoverOutcome,
    FailoverPlan, FailoverRequest, Fence, Lag, LeaseGrant, LossLimit, Member, PassedOver,
    Promotion, Rewire, Role, dry_run, execute,
};
pub use crate::health::{Health, HealthState, Probe};
pub use crate::id::{ComponentId, MAX_NAME_LEN, SegmentName, Sha256Digest, SnapshotId, StreamName};
pub use crate::journal::{JournalRecord, JournalSink, JournalSource, SegmentJournal};
pub use crate::monitor::{Monitor, MonitorEvent, MonitorHandle, MonitorOptions};
pub use crate::objectives::{Objectives, Rpo, Rto, Tier};
pub use crate::ops::{
    Backup, BackupBase, BackupExt, BackupReport, BackupRequest, Capabilities, Capability, Finding,
    Problem, RecoveryTarget, Restore, RestoreRequest, VerificationReport, Verify,
};
pub use crate::point::{Lsn, Position, RecoveryPoint, ReplicationId};
pub use crate::progress::{Progress, ProgressSink};
pub use crate::report::{Assessment, Compliance, Operation, RecoveryReport, Step, Timeline};
pub use crate::retention::{Candidate, Decision, KeepReason, RetentionPolicy};
pub use crate::snapshot::{
    ArchiveCoverage, ArchiveSink, ArchiveSource, ByteStream, CutHints, CutHintsPublisher, Labels,
    MANIFEST_FORMAT, Manifest, SegmentInfo, SnapshotCommit, SnapshotDetails, SnapshotSink,
    SnapshotSource, SnapshotSourceExt, SnapshotWriter, StreamCheck, StreamEntry, StreamLayout,
};

// The re-exported types name these crates in their APIs.
pub use async_trait::async_trait;
pub use jiff;

/// The traits whose methods the common calls are: one glob import brings
/// `begin`, `add_stream`, `commit`, `snapshots`, `open_stream`, `put_segment`,
/// `backup`, `restore` and `failover` into scope.
///
/// ```
/// use dr_core::prelude::*;
///
/// // Any sink, any source: their methods need no other import.
/// async fn copy_one(
///     from: &dyn SnapshotSource,
///     to: &dyn SnapshotSink,
///     component: &dr_core::ComponentId,
/// ) -> dr_core::Result<()> {
///     let Some(latest) = from.snapshots(component).await?.pop() else { return Ok(()) };
///     let mut writer = to.begin(component, latest.started_at).await?;
///     for stream in &latest.streams {
///         let mut reader = from.open_stream(&latest.id, &stream.name).await?;
///         writer.add_stream(&stream.name, &mut reader).await?;
///     }
///     writer
///         .commit(dr_core::SnapshotCommit::new(latest.recovery_point.clone()))
///         .await?;
///     Ok(())
/// }
/// ```
pub mod prelude {
    pub use crate::{
        ArchiveSink, ArchiveSource, Backup, BackupExt, Failover, FailoverLease, Fence, Restore,
        Rewire, SnapshotSink, SnapshotSource, SnapshotSourceExt, SnapshotWriter, Verify,
    };
}
