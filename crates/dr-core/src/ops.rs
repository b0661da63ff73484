//! The operations a component crate implements: `Backup` and `Restore` (and,
//! in `failover`, `Failover`), each small, with optional abilities declared in a [`Capabilities`] value.

use std::fmt;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::id::{ComponentId, SnapshotId};
use crate::journal::JournalSource;
use crate::objectives::Objectives;
use crate::point::Position;
use crate::progress::ProgressSink;
use crate::report::{RecoveryReport, Timeline};
use crate::snapshot::{ArchiveSource, Labels, Manifest, SnapshotSink, SnapshotSource};

/// An optional ability of a backup, restore or failover implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Capability {
    /// Restores to any instant covered by the archive, not only to snapshots.
    PointInTime,
    /// Restores to a system position ([`RecoveryTarget::Position`]).
    PositionTarget,
    /// Restores to a named restore point.
    NamedRestorePoint,
    /// Archives changes continuously between snapshots.
    ContinuousArchive,
    /// Acknowledges changes only once archived (RPO zero).
    SynchronousArchive,
    /// Backs up only what changed since an earlier snapshot.
    Incremental,
    /// Fences the old primary before promoting a new one.
    Fencing,
    /// Switches over without data loss when the primary is healthy.
    PlannedSwitchover,
}

impl Capability {
    const ALL: [Capability; 8] = [
        Capability::PointInTime,
        Capability::PositionTarget,
        Capability::NamedRestorePoint,
        Capability::ContinuousArchive,
        Capability::SynchronousArchive,
        Capability::Incremental,
        Capability::Fencing,
        Capability::PlannedSwitchover,
    ];

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// A set of [`Capability`] values.
///
/// ```
/// # use dr_core::{Capabilities, Capability};
/// let caps = Capabilities::NONE.with(Capability::PointInTime).with(Capability::ContinuousArchive);
/// assert!(caps.contains(Capability::PointInTime));
/// assert!(!caps.contains(Capability::Fencing));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u32);

impl Capabilities {
    /// No optional abilities.
    pub const NONE: Capabilities = Capabilities(0);

    /// The set with `capability` added.
    pub const fn with(self, capability: Capability) -> Self {
        Self(self.0 | capability.bit())
    }

    /// Whether the set holds `capability`.
    pub const fn contains(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }

    /// The capabilities in the set.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        iter.into_iter().fold(Self::NONE, Self::with)
    }
}

/// What to restore to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RecoveryTarget {
    /// As far as the stored data reaches.
    Latest,
    /// Exactly one snapshot, without replaying any archive.
    Snapshot(SnapshotId),
    /// Every change committed up to this instant, none after
    /// (needs [`Capability::PointInTime`]).
    Time(Timestamp),
    /// Up to a system position (needs [`Capability::PositionTarget`]).
    Position(Position),
    /// Up to a named restore point (needs [`Capability::NamedRestorePoint`]).
    RestorePoint(String),
}

impl RecoveryTarget {
    /// The capability an implementation needs to honour this target, if any.
    pub fn required_capability(&self) -> Option<Capability> {
        match self {
            RecoveryTarget::Latest | RecoveryTarget::Snapshot(_) => None,
            RecoveryTarget::Time(_) => Some(Capability::PointInTime),
            RecoveryTarget::Position(_) => Some(Capability::PositionTarget),
            RecoveryTarget::RestorePoint(_) => Some(Capability::NamedRestorePoint),
        }
    }

    /// The snapshot this target names among `snapshots` (oldest first),
    /// for a restore that puts a snapshot back as it was taken: `Latest`
    /// the last, `Snapshot` by id, `Time` the last taken at or before it.
    /// `None` where there is no such snapshot, and for the targets that
    /// name none (a position, a named restore point: those need an
    /// archive), which a caller tells apart with `matches!`.
    ///
    /// ```
    /// # use dr_core::RecoveryTarget;
    /// assert!(RecoveryTarget::Latest.snapshot_among(&[]).is_none());
    /// ```
    pub fn snapshot_among<'m>(&self, snapshots: &'m [Manifest]) -> Option<&'m Manifest> {
        match self {
            RecoveryTarget::Latest => snapshots.last(),
            RecoveryTarget::Snapshot(id) => snapshots.iter().find(|m| m.id == *id),
            RecoveryTarget::Time(at) => snapshots.iter().rfind(|m| m.recovery_point.at <= *at),
            RecoveryTarget::Position(_) | RecoveryTarget::RestorePoint(_) => None,
        }
    }
}

/// What a backup produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupReport {
    /// The committed snapshot.
    pub manifest: Manifest,
    /// The steps taken.
    pub timeline: Timeline,
}

/// The snapshot a backup builds on, storing only what differs from it (a
/// delta or incremental backup; see [`Capability::Incremental`]).
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum BackupBase<'a> {
    /// The latest full backup in this source that the component can build
    /// on (for PostgreSQL, the latest full base backup of the same cluster);
    /// a full backup if there is none.
    LatestFull(&'a dyn SnapshotSource),
    /// This snapshot, in this source.
    Snapshot(&'a dyn SnapshotSource, SnapshotId),
}

impl fmt::Debug for BackupBase<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackupBase::LatestFull(_) => f.write_str("LatestFull"),
            BackupBase::Snapshot(_, id) => write!(f, "Snapshot({id})"),
        }
    }
}

/// A backup request: where the snapshot goes, what it builds on, and the
/// labels it carries.
#[derive(Clone)]
#[non_exhaustive]
pub struct BackupRequest<'a> {
    /// Where the snapshot is committed.
    pub sink: &'a dyn SnapshotSink,
    /// What it builds on; `None` for a full backup.
    pub base: Option<BackupBase<'a>>,
    /// Labels for selection and retention, besides the component's own.
    pub labels: Labels,
    /// Where the backup reports how far it has come.
    pub progress: Option<&'a dyn ProgressSink>,
}

impl<'a> BackupRequest<'a> {
    /// A full backup into `sink`, without labels.
    pub fn new(sink: &'a dyn SnapshotSink) -> Self {
        Self {
            sink,
            base: None,
            labels: Labels::new(),
            progress: None,
        }
    }

    /// Reports progress to `sink` as the backup goes.
    #[must_use]
    pub fn progress(mut self, sink: &'a dyn ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }

    /// Builds on `base`.
    #[must_use]
    pub fn base(mut self, base: BackupBase<'a>) -> Self {
        self.base = Some(base);
        self
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
}

impl fmt::Debug for BackupRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupRequest")
            .field("base", &self.base)
            .field("labels", &self.labels)
            .field("progress", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}

/// Takes a snapshot of one component into a sink.
#[async_trait]
pub trait Backup: Send + Sync {
    /// The component backed up.
    fn component(&self) -> &ComponentId;

    /// Optional abilities of this backup (incremental).
    fn capabilities(&self) -> Capabilities;

    /// Takes one snapshot as `request` asks and commits it. If it fails, no
    /// snapshot is visible.
    ///
    /// # Errors
    /// The component could not be read, the base asked for does not fit
    /// (not found, or of another cluster), or the sink refused the data.
    async fn backup(&self, request: BackupRequest<'_>) -> Result<BackupReport>;
}

/// Conveniences over any [`Backup`].
#[async_trait]
pub trait BackupExt: Backup {
    /// A full backup into `sink`, without labels.
    ///
    /// # Errors
    /// As [`Backup::backup`].
    async fn backup_to(&self, sink: &dyn SnapshotSink) -> Result<BackupReport> {
        self.backup(BackupRequest::new(sink)).await
    }
}

impl<T: Backup + ?Sized> BackupExt for T {}

/// A restore request: where the data is, what to restore to, and the
/// objectives to report against.
///
/// ```
/// # fn demo(repo: &(impl dr_core::SnapshotSource + dr_core::ArchiveSource + dr_core::JournalSource)) -> dr_core::Result<()> {
/// use dr_core::{Objectives, RecoveryTarget, RestoreRequest};
///
/// let target = RecoveryTarget::Latest;
/// let objectives = Objectives::new("15 minutes".parse()?, "0 seconds".parse()?);
/// let request = RestoreRequest::new(repo, &target, objectives)
///     .archive(repo)
///     .journals(repo)
///     .progress(&|p: &dr_core::Progress| eprintln!("{p}"));
/// # let _ = request; Ok(()) }
/// ```
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct RestoreRequest<'a> {
    /// The stored snapshots.
    pub snapshots: &'a dyn SnapshotSource,
    /// The continuous archive, for point-in-time targets.
    pub archive: Option<&'a dyn ArchiveSource>,
    /// The archive's segment journals, where its store keeps them (see
    /// [`JournalSource`]): segments still being written when the data was
    /// lost may be there only.
    pub journals: Option<&'a dyn JournalSource>,
    /// What to restore to.
    pub target: &'a RecoveryTarget,
    /// The objectives the report is held against.
    pub objectives: Objectives,
    /// When the incident happened, if the RTO clock started before the restore.
    pub incident_at: Option<Timestamp>,
    /// Where the restore reports how far it has come.
    pub progress: Option<&'a dyn ProgressSink>,
}

impl<'a> RestoreRequest<'a> {
    /// A restore of `target` from `snapshots`, without an archive.
    pub fn new(
        snapshots: &'a dyn SnapshotSource,
        target: &'a RecoveryTarget,
        objectives: Objectives,
    ) -> Self {
        Self {
            snapshots,
            archive: None,
            journals: None,
            target,
            objectives,
            incident_at: None,
            progress: None,
        }
    }

    /// Reads the continuous archive from `archive`.
    #[must_use]
    pub fn archive(mut self, archive: &'a dyn ArchiveSource) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Reads the archive's segment journals from `journals`.
    #[must_use]
    pub fn journals(mut self, journals: &'a dyn JournalSource) -> Self {
        self.journals = Some(journals);
        self
    }

    /// Starts the RTO clock at `at`, when the incident happened.
    #[must_use]
    pub fn incident_at(mut self, at: Timestamp) -> Self {
        self.incident_at = Some(at);
        self
    }

    /// Reports progress to `sink` as the restore goes.
    #[must_use]
    pub fn progress(mut self, sink: &'a dyn ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }
}

impl fmt::Debug for RestoreRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestoreRequest")
            .field("archive", &self.archive.is_some())
            .field("journals", &self.journals.is_some())
            .field("target", self.target)
            .field("objectives", &self.objectives)
            .field("incident_at", &self.incident_at)
            .field("progress", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}

/// Brings one component back from stored data.
#[async_trait]
pub trait Restore: Send + Sync {
    /// The component restored.
    fn component(&self) -> &ComponentId;

    /// Optional abilities (point in time, position and named targets).
    fn capabilities(&self) -> Capabilities;

    /// Restores as `request` asks and reports the RTO and RPO achieved.
    ///
    /// # Errors
    /// The target cannot be reached with the stored data (checked before the
    /// target is touched where the component allows), the data is corrupt, or
    /// the component refused it.
    async fn restore(&self, request: RestoreRequest<'_>) -> Result<RecoveryReport>;
}

/// One thing a verification found wrong: the object (a file, a key, a
/// stream) and the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// What is wrong: a file of the backup, a key, a stream.
    pub object: String,
    /// How.
    pub problem: Problem,
}

impl Finding {
    /// `problem` with `object`.
    pub fn new(object: impl Into<String>, problem: Problem) -> Self {
        Self {
            object: object.into(),
            problem,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.problem)
    }
}

/// What is wrong with one object, against the snapshot's own record of it
/// (a PostgreSQL backup manifest, a Redis RDB's checksum).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Problem {
    /// The record lists it; the stored data does not hold it.
    Missing,
    /// The stored data holds it; the record does not list it.
    Unrecorded {
        /// Where it was found (an archive of the snapshot), if inside one.
        within: Option<String>,
    },
    /// Its size is not the recorded one.
    WrongSize {
        /// The recorded size in bytes.
        expected: u64,
        /// The size found.
        found: u64,
    },
    /// Its checksum is not the recorded one.
    ChecksumMismatch {
        /// The checksum's algorithm, as the record names it.
        algorithm: String,
    },
    /// The record says how to check it in a way this check does not know
    /// (an unknown checksum algorithm): it was not checked.
    Unchecked {
        /// Why.
        reason: String,
    },
    /// The record itself is damaged where it describes this object.
    Malformed {
        /// How.
        reason: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => write!(f, "recorded, missing from the stored data"),
            Problem::Unrecorded {
                within: Some(within),
            } => {
                write!(f, "in {within} but not recorded")
            }
            Problem::Unrecorded { within: None } => write!(f, "stored but not recorded"),
            Problem::WrongSize { expected, found } => {
                write!(f, "{found} bytes, the record says {expected}")
            }
            Problem::ChecksumMismatch { algorithm } => {
                write!(f, "{algorithm} checksum differs from the record")
            }
            Problem::Unchecked { reason } => write!(f, "not checked: {reason}"),
            Problem::Malformed { reason } => write!(f, "malformed record: {reason}"),
        }
    }
}

/// What checking a stored snapshot without restoring it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationReport {
    /// The snapshot checked.
    pub snapshot: SnapshotId,
    /// The items (files, keys) found as the snapshot's own record says.
    pub checked: u64,
    /// Bytes read and checked.
    pub bytes: u64,
    /// Everything found wrong. Empty: the snapshot is sound.
    pub findings: Vec<Finding>,
    /// The check's steps, timed.
    pub timeline: Timeline,
}

impl VerificationReport {
    /// Whether nothing was found wrong.
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Checks a stored snapshot against its own checksums and records without
/// restoring it: a component that can is one that implements this.
#[async_trait]
pub trait Verify: Send + Sync {
    /// The component whose snapshots are checked.
    fn component(&self) -> &ComponentId;

    /// Checks snapshot `snapshot` in `source`. What is wrong with the data
    /// is in the report; an error is a snapshot that cannot be checked.
    ///
    /// # Errors
    /// The snapshot is not found, is not one of this component's, or its
    /// streams cannot be read (damaged in the store).
    async fn verify(
        &self,
        source: &dyn SnapshotSource,
        snapshot: &SnapshotId,
    ) -> Result<VerificationReport>;
}

/// The traits are used as `dyn`: this fails to compile if one stops being object-safe.
fn _assert_object_safe(_: &dyn Backup, _: &dyn Restore, _: &dyn Verify) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_sets() {
        let caps: Capabilities = [Capability::PointInTime, Capability::Fencing]
            .into_iter()
            .collect();
        assert!(caps.contains(Capability::PointInTime));
        assert!(caps.contains(Capability::Fencing));
        assert!(!caps.contains(Capability::Incremental));
        assert_eq!(caps.iter().count(), 2);
        assert_eq!(format!("{caps:?}"), "{PointInTime, Fencing}");
        assert_eq!(Capabilities::NONE.iter().count(), 0);
        for c in Capability::ALL {
            assert!(Capabilities::NONE.with(c).contains(c));
        }
    }

    #[test]
    fn findings_are_typed_and_read_back() {
        let findings = vec![
            Finding::new("base/1/1259", Problem::Missing),
            Finding::new(
                "PG_VERSION",
                Problem::WrongSize {
                    expected: 3,
                    found: 4,
                },
            ),
            Finding::new(
                "global/pg_control",
                Problem::ChecksumMismatch {
                    algorithm: "CRC32C".into(),
                },
            ),
            Finding::new("stray", Problem::Unrecorded { within: None }),
        ];
        let json = serde_json::to_string(&findings).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<Finding>>(&json).unwrap(),
            findings
        );
        assert_eq!(
            findings[1].to_string(),
            "PG_VERSION: 4 bytes, the record says 3"
        );
        assert!(json.contains(r#""problem":"missing""#), "{json}");
    }

    #[test]
    fn targets_name_what_they_need() {
        let t = RecoveryTarget::Time("2026-11-21T14:30:00Z".parse().unwrap());
        assert_eq!(t.required_capability(), Some(Capability::PointInTime));
        assert_eq!(RecoveryTarget::Latest.required_capability(), None);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"time":"2026-11-21T14:30:00Z"}"#);
        assert_eq!(serde_json::from_str::<RecoveryTarget>(&json).unwrap(), t);
    }
}
