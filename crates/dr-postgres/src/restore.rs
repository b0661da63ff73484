//! [`PitrRestore`]: point-in-time recovery from a base backup and the WAL
//! archive, into a new data directory.
//!
//! 1. **Choose** the newest base backup that can reach the target; for a
//!    named restore point, the newest that is consistent before the first
//!    restore point of that name after it, found by reading the WAL's
//!    records back from the newest backup.
//! 2. **Check the WAL** from that backup's start along the timeline path to
//!    the target, in the archive, before anything is written: a missing
//!    segment fails the restore here, by name, with the target untouched.
//! 3. **Stage** the WAL beside the target, checking each segment; for a
//!    target time, read its records too: a time the archived WAL does not
//!    reach (no transaction after it, or the first one before the backup is
//!    consistent) fails the restore here, where PostgreSQL would fail only
//!    at the end of recovery. (A restore point name missing from the WAL
//!    already failed step 1.)
//! 4. **Extract** every tablespace's tar (tablespaces optionally moved),
//!    move the staged WAL in and write the recovery settings
//!    (`recovery.signal`, `restore_command`, the target,
//!    `recovery_target_action = promote`).
//! 5. Optionally **start** the server, wait for it to promote, and measure
//!    what was recovered: the last transaction replayed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use dr_core::{
    ArchiveCoverage, ArchiveSource, Capabilities, Capability, ComponentId, JournalSource, Lsn,
    Manifest, Operation, Position, RecoveryReport, RecoveryTarget, Restore, RestoreRequest,
    SnapshotSource, StreamCheck, Timeline, async_trait,
};
use futures_util::StreamExt;
use jiff::Timestamp;

use crate::archive::{ArchiveListing, Coverage, fetch_wal, fetch_wal_noting, list_archive};
use crate::backup::{KIND_LABEL, MANIFEST_STREAM, meta};
use crate::delta::{DELTA_STREAM, DeltaBase, open_archive};
use crate::reach::{TargetReach, read_records};
use crate::replication::TimelineHistory;
use crate::tar::{EntryKind, TarReader};
use crate::verify::ManifestFiles;
use crate::wal::{TimelinePath, WalSegment, WalSegmentSize, history_file_name};
use crate::wal_records::{WalRecordEvent, WalRecordReader};

/// Starts PostgreSQL on a restored data directory.
#[async_trait]
pub trait StartServer: Send + Sync {
    /// Starts the server on `data_dir` and returns how to connect to it as a
    /// superuser. It may return while the server is still recovering.
    async fn start(&self, data_dir: &Path) -> dr_core::Result<tokio_postgres::Config>;
}

/// Restores one PostgreSQL cluster to a point in time.
pub struct PitrRestore {
    component: ComponentId,
    data_dir: PathBuf,
    tablespaces: BTreeMap<String, PathBuf>,
    owner: Option<(u32, u32)>,
    server: Option<Box<dyn StartServer>>,
    promote_timeout: Duration,
}

impl std::fmt::Debug for PitrRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PitrRestore")
            .field("component", &self.component)
            .field("data_dir", &self.data_dir)
            .field("tablespaces", &self.tablespaces)
            .field("owner", &self.owner)
            .field("starts_server", &self.server.is_some())
            .finish()
    }
}

impl PitrRestore {
    /// Restores `component`'s backups into `data_dir`, which must not exist
    /// or be empty.
    pub fn new(component: ComponentId, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            component,
            data_dir: data_dir.into(),
            tablespaces: BTreeMap::new(),
            owner: None,
            server: None,
            promote_timeout: Duration::from_secs(600),
        }
    }

    /// Restores the tablespace that lived at `from` on the backed-up server
    /// into `to` instead (which must not exist or be empty).
    #[must_use]
    pub fn map_tablespace(mut self, from: impl Into<String>, to: impl Into<PathBuf>) -> Self {
        self.tablespaces.insert(from.into(), to.into());
        self
    }

    /// Gives the restored files to this user and group (the server's OS
    /// user, when restoring as root).
    #[must_use]
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }

    /// Starts the server after the restore and waits (up to `timeout`) until
    /// it has replayed to the target and promoted.
    #[must_use]
    pub fn start_with(mut self, server: impl StartServer + 'static, timeout: Duration) -> Self {
        self.server = Some(Box::new(server));
        self.promote_timeout = timeout;
        self
    }
}

/// The WAL archive a restore reads: its segments, and its segment journals
/// where the store keeps them.
#[derive(Clone, Copy)]
struct Wal<'a> {
    segments: &'a dyn ArchiveSource,
    journals: Option<&'a dyn JournalSource>,
}

/// What a base backup snapshot records about itself.
#[derive(Debug, Clone)]
struct BackupFacts {
    start: Lsn,
    end: Lsn,
    start_timeline: u32,
    system_identifier: u64,
    segment_size: WalSegmentSize,
    /// Archive name (`<oid>.tar`) → location on the backed-up server.
    tablespaces: BTreeMap<String, String>,
}

impl BackupFacts {
    fn read(manifest: &Manifest) -> dr_core::Result<Self> {
        let get = |key: &str| {
            manifest.metadata.get(key).ok_or_else(|| {
                dr_core::Error::corrupt(
                    format!("snapshot {}", manifest.id),
                    format!("not a base backup: no {key}"),
                )
            })
        };
        let bad = |key: &str| {
            dr_core::Error::corrupt(format!("snapshot {}", manifest.id), format!("bad {key}"))
        };
        let size: u64 = get(meta::WAL_SEGMENT_SIZE)?
            .parse()
            .map_err(|_| bad(meta::WAL_SEGMENT_SIZE))?;
        Ok(Self {
            start: get(meta::START_LSN)?.parse()?,
            end: get(meta::END_LSN)?.parse()?,
            start_timeline: get(meta::START_TIMELINE)?
                .parse()
                .map_err(|_| bad(meta::START_TIMELINE))?,
            system_identifier: get(meta::SYSTEM_IDENTIFIER)?
                .parse()
                .map_err(|_| bad(meta::SYSTEM_IDENTIFIER))?,
            segment_size: WalSegmentSize::new(size).map_err(|_| bad(meta::WAL_SEGMENT_SIZE))?,
            tablespaces: serde_json::from_str(get(meta::TABLESPACES)?)
                .map_err(|_| bad(meta::TABLESPACES))?,
        })
    }
}

#[async_trait]
impl Restore for PitrRestore {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .with(Capability::PointInTime)
            .with(Capability::PositionTarget)
            .with(Capability::NamedRestorePoint)
    }

    async fn restore(&self, request: RestoreRequest<'_>) -> dr_core::Result<RecoveryReport> {
        let mut timeline = Timeline::start_now();
        let archive = Wal {
            segments: request.archive.ok_or_else(|| {
                dr_core::Error::invalid(
                    "restore request",
                    "a base backup needs the WAL archive to become consistent",
                )
            })?,
            journals: request.journals,
        };

        let t = Timestamp::now();
        // Read before the archive is listed: what it covers is then listed.
        // Only the latest point needs it; a damaged record costs only the
        // measurement, and says so.
        let coverage = match request.target {
            RecoveryTarget::Latest if request.incident_at.is_some() => {
                match archive.segments.coverage(&self.component).await {
                    Ok(coverage) => coverage,
                    Err(e) => {
                        timeline.record_until_now(
                            format!("warning: the archive's coverage record is unreadable ({e}); the data lost is bounded from the last transaction"),
                            t,
                        )?;
                        None
                    }
                }
            }
            _ => None,
        };
        // Choosing for a restore point reads the archive's listing already.
        let (manifest, listed) = match request.target {
            RecoveryTarget::RestorePoint(name) => {
                let (manifest, listing) = self
                    .choose_for_restore_point(request.snapshots, archive, name)
                    .await?;
                (manifest, Some(listing))
            }
            target => (self.choose(request.snapshots, target).await?, None),
        };
        let facts = BackupFacts::read(&manifest)?;
        timeline.record_until_now(format!("choose base backup {}", manifest.id), t)?;

        let t = Timestamp::now();
        let listing = match listed {
            Some(listing) => listing,
            None => {
                list_archive(
                    archive.segments,
                    archive.journals,
                    &self.component,
                    facts.segment_size,
                )
                .await?
            }
        };
        let plan = self
            .plan_wal(archive, &listing, &facts, request.target)
            .await?;
        self.check_destinations(&facts)?;
        timeline.record_until_now(format!("check WAL ({} segments)", plan.segments.len()), t)?;

        // The WAL first, beside the target: a damaged segment fails the
        // restore before the target directory is touched.
        let t = Timestamp::now();
        let staging = self.staging_dir();
        let staged = match self
            .stage_wal(archive, &facts, &plan, request.target, &staging)
            .await
        {
            Ok(staged) => staged,
            Err(e) => {
                std::fs::remove_dir_all(&staging).ok();
                return Err(e);
            }
        };
        timeline.record_until_now(
            format!("fetch and check WAL ({} segments)", staged.segments),
            t,
        )?;
        for (name, why) in &staged.read_from_pieces {
            let now = Timestamp::now();
            timeline.record(
                format!(
                    "warning: WAL segment {name}'s whole object is unreadable ({why}); \
                     its pieces, which hold the same bytes, were used"
                ),
                now,
                now,
            )?;
        }

        let t = Timestamp::now();
        if let Err(e) = self.extract(request.snapshots, &manifest, &facts).await {
            // Leave nothing half-restored: the destinations were empty.
            std::fs::remove_dir_all(&staging).ok();
            std::fs::remove_dir_all(&self.data_dir).ok();
            for dir in self.tablespace_targets(&facts).into_values() {
                std::fs::remove_dir_all(dir).ok();
            }
            return Err(e);
        }
        timeline.record_until_now("extract base backup", t)?;

        let t = Timestamp::now();
        self.write_recovery_settings(request.target, &plan)?;
        let dirs: Vec<PathBuf> = [self.data_dir.clone(), staging.clone()]
            .into_iter()
            .chain(self.tablespace_targets(&facts).into_values())
            .collect();
        let owner = self.owner;
        tokio::task::spawn_blocking(move || {
            if let Some((uid, gid)) = owner {
                dirs.iter()
                    .try_for_each(|d| chown_tree(d, uid, gid))
                    .map_err(|e| dr_core::Error::io("changing owners", e))?;
            }
            // Durable before anything reports it restored or starts on it.
            sync_filesystems(&dirs)
        })
        .await
        .map_err(|e| dr_core::Error::io("finishing the restore", std::io::Error::other(e)))??;
        timeline.record_until_now("recovery settings and sync to disk", t)?;

        let mut report = RecoveryReport::new(
            self.component.clone(),
            Operation::Restore,
            request.objectives,
            timeline.clone(),
        );
        let Some(server) = &self.server else {
            if let Some(at) = request.incident_at {
                report = report.with_incident_at(at);
            }
            return Ok(report);
        };

        let t = Timestamp::now();
        let config = server.start(&self.data_dir).await?;
        let promoted = wait_for_promotion(&config, self.promote_timeout).await?;
        // Recovery is over: the staged WAL is needed no more.
        std::fs::remove_dir_all(&staging).ok();
        timeline.record_until_now("replay WAL and promote", t)?;

        let mut report = RecoveryReport::new(
            self.component.clone(),
            Operation::Restore,
            request.objectives,
            timeline,
        );
        if let Some(at) = request.incident_at {
            report = report.with_incident_at(at);
        }
        Ok(data_loss(
            report,
            &request,
            &manifest,
            &promoted,
            coverage.as_ref(),
        ))
    }
}

/// How long before the incident a synchronous archiver's last coverage
/// record may be for the archive to be taken to hold every acknowledged
/// commit: the archiver was still confirming it, at its default interval of
/// 5 s, with room for a slow store.
const SYNCHRONOUS_COVERAGE_FRESH: Duration = Duration::from_secs(60);

/// Records in `report` the data the restore lost, where it can be measured
/// (an RPO left unmeasured makes [`RecoveryReport::objectives_met`] false):
///
/// - **a time**: zero when the last transaction replayed is at or before the
///   target. A time restore succeeds only once the archived WAL was read to
///   a transaction after the target (see `reach`), and recovery replays
///   every transaction before that one: nothing the target asked for is
///   missing, however long before it the last one was.
/// - **a position (LSN)**: zero when recovery replayed to the position or
///   past it (`pg_last_wal_replay_lsn()`): everything the target asked for
///   is there. PostgreSQL does not promote a recovery that ended before its
///   target LSN, so the restore has failed before this otherwise; a server
///   that reports an earlier position leaves the RPO unmeasured.
/// - **the latest WAL**, with an incident time, measured from the archive's
///   coverage ([`dr_core::ArchiveCoverage`]: how far the archive held
///   everything the server had written, and when the archiver last saw
///   that), where recovery replayed at least that far:
///   - zero, if the server then waited for the archiver on every commit
///     and the archiver confirmed it within a minute of the incident:
///     nothing acknowledged was missing from the archive;
///   - otherwise what the server may have written between the later of
///     that moment and the last transaction replayed, and the incident;
///   - without a coverage record (an archive filled by `archive_command`,
///     or by an archiver with none configured), from the last transaction
///     replayed to the incident: an upper bound in which an idle server's
///     quiet time counts as lost.
///
///   Without an incident time there is nothing to measure against.
/// - a base backup or a named restore point: unmeasured.
fn data_loss(
    report: RecoveryReport,
    request: &RestoreRequest<'_>,
    manifest: &Manifest,
    promoted: &Promoted,
    coverage: Option<&ArchiveCoverage>,
) -> RecoveryReport {
    let replayed = promoted
        .last_transaction
        .unwrap_or(manifest.recovery_point.at);
    match request.target {
        RecoveryTarget::Time(at) => {
            if promoted.last_transaction.is_none_or(|last| last <= *at) {
                report.with_data_loss(dr_core::Rpo::new(Duration::ZERO))
            } else {
                report
            }
        }
        RecoveryTarget::Latest => {
            let Some(incident) = request.incident_at else {
                return report;
            };
            let covered = coverage.filter(|c| match c.position {
                Position::Postgres { lsn, .. } => promoted.replayed.is_some_and(|r| r >= lsn),
                _ => false,
            });
            match covered {
                Some(c)
                    if c.synchronous
                        && incident.duration_since(c.seen_at).unsigned_abs()
                            <= SYNCHRONOUS_COVERAGE_FRESH =>
                {
                    report.with_data_loss(dr_core::Rpo::new(Duration::ZERO))
                }
                Some(c) => {
                    let known = c.seen_at.max(replayed).min(incident);
                    report.with_data_loss_between(known, incident)
                }
                None => report.with_data_loss_between(replayed.min(incident), incident),
            }
        }
        RecoveryTarget::Position(Position::Postgres { lsn, .. }) => {
            if promoted.replayed.is_some_and(|replayed| replayed >= *lsn) {
                report.with_data_loss(dr_core::Rpo::new(Duration::ZERO))
            } else {
                report
            }
        }
        _ => report,
    }
}

/// Writes a staged WAL file.
async fn write_staged(path: PathBuf, bytes: Bytes) -> dr_core::Result<()> {
    tokio::task::spawn_blocking(move || {
        std::fs::write(&path, &bytes)
            .map_err(|e| dr_core::Error::io(format!("writing {}", path.display()), e))
    })
    .await
    .map_err(|e| dr_core::Error::io("staging WAL", std::io::Error::other(e)))?
}

/// The WAL a restore needs, as checked in the archive.
#[derive(Debug, Clone)]
struct WalPlan {
    path: TimelinePath,
    /// History files of the path's timelines, to stage too.
    histories: Vec<u32>,
    segments: Vec<WalSegment>,
    /// For a target time: where the contiguous WAL from the backup's start
    /// ends, when the archive holds more WAL after a missing segment. Only
    /// the WAL's records can tell whether the target lies beyond it.
    gap: Option<Lsn>,
}

/// What [`PitrRestore::stage_wal`] staged.
#[derive(Debug)]
struct StagedWal {
    /// WAL segments staged.
    segments: usize,
    /// Segments whose whole object was unreadable, read from their pieces:
    /// the name and why.
    read_from_pieces: Vec<(String, dr_core::Error)>,
}

impl PitrRestore {
    /// The committed base backups of the component, oldest first.
    async fn base_backups(&self, source: &dyn SnapshotSource) -> dr_core::Result<Vec<Manifest>> {
        let mut bases: Vec<Manifest> = source
            .snapshots(&self.component)
            .await?
            .into_iter()
            .filter(|m| m.labels.get(KIND_LABEL.0).map(String::as_str) == Some(KIND_LABEL.1))
            .collect();
        bases.sort_by_key(|m| m.id);
        Ok(bases)
    }

    async fn choose(
        &self,
        source: &dyn SnapshotSource,
        target: &RecoveryTarget,
    ) -> dr_core::Result<Manifest> {
        let mut bases = self.base_backups(source).await?;
        let none = |why: String| {
            dr_core::Error::not_found(format!("a base backup of {} {why}", self.component))
        };
        match target {
            RecoveryTarget::Snapshot(id) => bases
                .into_iter()
                .find(|m| m.id == *id)
                .ok_or_else(|| none(format!("with id {id}"))),
            RecoveryTarget::Latest => bases.pop().ok_or_else(|| none("at all".into())),
            RecoveryTarget::Time(at) => bases
                .into_iter()
                .rev()
                .find(|m| m.recovery_point.at <= *at)
                .ok_or_else(|| none(format!("that finished before {at}"))),
            RecoveryTarget::Position(Position::Postgres {
                system_identifier,
                lsn,
                ..
            }) => {
                let mut fitting = Vec::new();
                for m in bases {
                    let facts = BackupFacts::read(&m)?;
                    if facts.system_identifier == *system_identifier && facts.end <= *lsn {
                        fitting.push(m);
                    }
                }
                fitting.pop().ok_or_else(|| {
                    none(format!("of system {system_identifier} ending before {lsn}"))
                })
            }
            RecoveryTarget::Position(other) => Err(dr_core::Error::invalid(
                "recovery target",
                format!("{other:?} is not a PostgreSQL position"),
            )),
            other => Err(dr_core::Error::invalid(
                "recovery target",
                format!("{other:?} is not supported"),
            )),
        }
    }

    /// The newest base backup that recovery to the restore point `name` can
    /// start from, and the archive's listing: recovery stops after the first
    /// restore point of that name it replays, which must come after the
    /// backup is consistent. The WAL's records are read from the newest
    /// backup's start to the archive's end, then back to each older backup's
    /// start in turn, each segment once, until such a backup is found.
    ///
    /// # Errors
    /// [`dr_core::ErrorKind::NotFound`] if no base backup has the restore
    /// point after its end, or the WAL to look in is not all archived.
    async fn choose_for_restore_point(
        &self,
        source: &dyn SnapshotSource,
        archive: Wal<'_>,
        name: &str,
    ) -> dr_core::Result<(Manifest, ArchiveListing)> {
        let bases = self.base_backups(source).await?;
        // Listed once (again only for a backup of another segment size).
        let mut listed: Option<(WalSegmentSize, ArchiveListing)> = None;
        // The first restore point of the name at or after `read_from`, the
        // start of the WAL read so far (which runs to the archive's end).
        let mut first: Option<Lsn> = None;
        let mut read_from: Option<Lsn> = None;
        for base in bases.into_iter().rev() {
            let facts = BackupFacts::read(&base)?;
            let listing = match listed.take() {
                Some((size, listing)) if size == facts.segment_size => listing,
                _ => {
                    list_archive(
                        archive.segments,
                        archive.journals,
                        &self.component,
                        facts.segment_size,
                    )
                    .await?
                }
            };
            let plan = self
                .plan_wal(archive, &listing, &facts, &RecoveryTarget::Latest)
                .await?;
            listed = Some((facts.segment_size, listing));
            let segments: Vec<WalSegment> = plan
                .segments
                .into_iter()
                .take_while(|s| read_from.is_none_or(|to| s.start(facts.segment_size) < to))
                .collect();
            let until = read_from;
            if let Some(found) = self
                .first_restore_point(archive, &facts, &segments, until, name)
                .await?
            {
                first = Some(found);
            }
            read_from = Some(facts.start);
            if first.is_some_and(|end| end > facts.end)
                && let Some((_, listing)) = listed
            {
                return Ok((base, listing));
            }
        }
        Err(dr_core::Error::not_found(match first {
            Some(end) => format!(
                "a base backup of {} that is consistent before the restore point {name:?} \
                 (which ends at {end})",
                self.component
            ),
            None => format!(
                "the restore point {name:?} in the archived WAL of {} after any base backup",
                self.component
            ),
        }))
    }

    /// Where the first restore point named `name` ends, among the records
    /// that start at or after the backup's start and before `until`, in
    /// `segments` (consecutive, from the one the backup starts in).
    async fn first_restore_point(
        &self,
        archive: Wal<'_>,
        facts: &BackupFacts,
        segments: &[WalSegment],
        until: Option<Lsn>,
        name: &str,
    ) -> dr_core::Result<Option<Lsn>> {
        let size = facts.segment_size;
        let mut reader = WalRecordReader::new(size);
        for segment in segments {
            let file = segment.file_name(size);
            let bytes = fetch_wal(
                archive.segments,
                archive.journals,
                &self.component,
                &file,
                size,
            )
            .await?
            .ok_or_else(|| dr_core::Error::not_found(format!("{file} of {}", self.component)))?;
            let events;
            (reader, events) = read_records(reader, segment.start(size), bytes).await?;
            for event in events {
                if let WalRecordEvent::RestorePoint {
                    start,
                    end,
                    name: found,
                    ..
                } = event
                    && found == name
                    && start >= facts.start
                    && until.is_none_or(|until| start < until)
                {
                    return Ok(Some(end));
                }
            }
            if reader.end_reason().is_some() {
                break;
            }
        }
        Ok(None)
    }

    /// Works out the timeline path and the segments from the backup's start
    /// to the target, and checks that the archive has every one.
    async fn plan_wal(
        &self,
        archive: Wal<'_>,
        listing: &ArchiveListing,
        facts: &BackupFacts,
        target: &RecoveryTarget,
    ) -> dr_core::Result<WalPlan> {
        let size = facts.segment_size;
        let wanted_timeline = match target {
            RecoveryTarget::Position(Position::Postgres { timeline, .. }) => Some(*timeline),
            _ => None,
        };
        let path = self
            .timeline_path(archive, listing, facts, wanted_timeline)
            .await?;
        let histories: Vec<u32> = path
            .switches
            .iter()
            .map(|s| s.timeline)
            .chain(std::iter::once(path.current))
            .filter(|t| listing.histories.contains(t))
            .collect();

        // Walk from the backup's start segment along the path while the
        // archive has each segment; a partial one is the end of the WAL.
        let first = WalSegment::containing(path.timeline_at(facts.start), facts.start, size);
        let limit = match target {
            RecoveryTarget::Position(Position::Postgres { lsn, .. }) => Some(*lsn),
            _ => None,
        };
        let mut segments = Vec::new();
        let mut number = first.number;
        let mut reached = Lsn::ZERO;
        loop {
            let end = Lsn::from((number + 1) * size.bytes() - 1);
            let segment = WalSegment {
                timeline: path.timeline_at(end),
                number,
            };
            match listing.segments.get(&segment) {
                Some(Coverage::Complete) => {
                    segments.push(segment);
                    reached = segment.end(size);
                }
                Some(Coverage::Partial { end }) if *end > 0 => {
                    segments.push(segment);
                    reached = Lsn::from(u64::from(segment.start(size)) + u64::from(*end));
                    break;
                }
                _ => break,
            }
            if limit.is_some_and(|l| reached > l) {
                break;
            }
            number += 1;
        }
        let missing = |needed: Lsn| {
            let segment = WalSegment::containing(path.timeline_at(needed), needed, size);
            dr_core::Error::not_found(format!(
                "WAL segment {} of {} (needed to reach {needed}; the archive's WAL from the \
                 base backup's start {} ends at {reached})",
                segment.file_name(size),
                self.component,
                facts.start
            ))
        };
        if reached <= facts.end {
            return Err(missing(reached.max(facts.start)));
        }
        if limit.is_some_and(|l| reached <= l) {
            return Err(missing(reached));
        }
        // WAL archived beyond a hole would be silently skipped: refuse,
        // unless the target is a time, which the WAL before the hole may
        // reach (its records, read while staging, tell).
        let mut gap = None;
        if limit.is_none() && reached < path_end(listing, &path, size) {
            if matches!(target, RecoveryTarget::Time(_)) {
                gap = Some(reached);
            } else {
                return Err(missing(reached));
            }
        }
        Ok(WalPlan {
            path,
            histories,
            segments,
            gap,
        })
    }

    async fn timeline_path(
        &self,
        archive: Wal<'_>,
        listing: &ArchiveListing,
        facts: &BackupFacts,
        wanted: Option<u32>,
    ) -> dr_core::Result<TimelinePath> {
        let newest = wanted.unwrap_or_else(|| {
            listing
                .histories
                .iter()
                .copied()
                .max()
                .unwrap_or(facts.start_timeline)
                .max(facts.start_timeline)
        });
        if newest == facts.start_timeline || newest == 1 {
            return Ok(TimelinePath::root(newest));
        }
        let name = history_file_name(newest);
        let content = fetch_wal(
            archive.segments,
            archive.journals,
            &self.component,
            &name,
            facts.segment_size,
        )
        .await?
        .ok_or_else(|| {
            dr_core::Error::not_found(format!(
                "timeline history {name} of {} in the archive",
                self.component
            ))
        })?;
        let history = TimelineHistory {
            filename: name,
            content,
        };
        let path = TimelinePath::from_history(&history)?;
        if path.timeline_at(facts.start) != facts.start_timeline {
            return Err(dr_core::Error::invalid(
                "recovery target",
                format!(
                    "timeline {newest} did not descend from the base backup's timeline {} at {}",
                    facts.start_timeline, facts.start
                ),
            ));
        }
        Ok(path)
    }

    /// Where the restore stages the WAL that recovery replays: a private
    /// directory beside the data directory (`<parent>/.<name>.drkit-wal`),
    /// never inside it, so that the restored data directory holds exactly
    /// what the base backup's manifest lists (`pg_verifybackup` checks it
    /// as it is, given this directory with `--wal-directory`). The recovery
    /// settings' `restore_command` reads from it. A restore that starts the
    /// server ([`PitrRestore::start_with`]) removes it once the server has
    /// promoted; otherwise it stays until the caller has started the server,
    /// seen it promote, and removes it. It must be absent or empty when the
    /// restore begins, like the data directory.
    pub fn staging_dir(&self) -> PathBuf {
        let name = self
            .data_dir
            .file_name()
            .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
        self.data_dir.with_file_name(format!(".{name}.drkit-wal"))
    }

    fn tablespace_targets(&self, facts: &BackupFacts) -> BTreeMap<String, PathBuf> {
        facts
            .tablespaces
            .iter()
            .map(|(archive, location)| {
                let to = self
                    .tablespaces
                    .get(location)
                    .cloned()
                    .unwrap_or_else(|| PathBuf::from(location));
                (archive.clone(), to)
            })
            .collect()
    }

    /// The data directory and every tablespace target must be absent or empty.
    fn check_destinations(&self, facts: &BackupFacts) -> dr_core::Result<()> {
        let targets = [self.data_dir.clone(), self.staging_dir()]
            .into_iter()
            .chain(self.tablespace_targets(facts).into_values());
        for dir in targets {
            match std::fs::read_dir(&dir) {
                Ok(mut entries) => {
                    if entries.next().is_some() {
                        return Err(dr_core::Error::AlreadyExists {
                            what: format!("{} (a restore needs it absent or empty)", dir.display()),
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(dr_core::Error::io(format!("checking {}", dir.display()), e)),
            }
        }
        Ok(())
    }

    async fn extract(
        &self,
        source: &dyn SnapshotSource,
        manifest: &Manifest,
        facts: &BackupFacts,
    ) -> dr_core::Result<()> {
        let targets = self.tablespace_targets(facts);
        // Tablespace links point where their archives are extracted.
        let links: BTreeMap<String, PathBuf> = targets
            .iter()
            .filter_map(|(archive, to)| {
                Some((
                    format!("pg_tblspc/{}", archive.strip_suffix(".tar")?),
                    to.clone(),
                ))
            })
            .collect();
        let delta = DeltaBase::of(source, manifest).await?;
        // Every file is checked against the server's backup manifest as it
        // is written, which covers every byte where each file has a
        // checksum: then the streams need not be hashed whole as well.
        let (mut files, backup_manifest) = ManifestFiles::read(source, &manifest.id).await?;
        let check = if files.checks_every_byte() {
            StreamCheck::Pieces
        } else {
            StreamCheck::Digest
        };
        for entry in &manifest.streams {
            let name = entry.name.as_str();
            if name == MANIFEST_STREAM || name == DELTA_STREAM {
                continue;
            }
            let not_described = || {
                dr_core::Error::corrupt(
                    format!("snapshot {}", manifest.id),
                    format!("archive {name} is not a known tablespace"),
                )
            };
            let (dir, links) = if name == "base.tar" {
                (self.data_dir.clone(), &links)
            } else {
                let dir = targets.get(name).cloned().ok_or_else(not_described)?;
                (dir, &BTreeMap::new())
            };
            let prefix = ManifestFiles::prefix_of(manifest, name).ok_or_else(not_described)?;
            create_private_dir(&dir)?;
            let stream = open_archive(source, manifest, delta.as_ref(), &entry.name, check).await?;
            let archive = Archive {
                name,
                prefix: &prefix,
                dir: &dir,
                links,
            };
            extract_tar(stream, &archive, &mut files).await?;
        }
        files.finish_all();
        if !files.problems.is_empty() {
            const SHOWN: usize = 5;
            let more = files.problems.len().saturating_sub(SHOWN);
            let mut reason = files.problems[..files.problems.len().min(SHOWN)]
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            if more > 0 {
                reason.push_str(&format!("; and {more} more"));
            }
            return Err(dr_core::Error::corrupt(
                format!("base backup {} against its backup manifest", manifest.id),
                reason,
            ));
        }
        // The backup manifest rides along, as pg_basebackup leaves it.
        let path = self.data_dir.join(MANIFEST_STREAM);
        tokio::fs::write(&path, backup_manifest)
            .await
            .map_err(|e| dr_core::Error::io(format!("writing {}", path.display()), e))?;
        Ok(())
    }

    /// Fetches the WAL recovery replays into `dir`, checking each file,
    /// in order. For a target time, its records are read as they come, and
    /// only the WAL up to where recovery stops is staged (and needs to be
    /// readable): a segment missing or damaged after that point does not
    /// matter to this restore.
    ///
    /// # Errors
    /// A file missing or damaged; for a time, one the archived WAL does not
    /// reach ([`TargetReach::verdict`]), or that lies beyond a missing
    /// segment (named).
    async fn stage_wal(
        &self,
        archive: Wal<'_>,
        facts: &BackupFacts,
        plan: &WalPlan,
        target: &RecoveryTarget,
        dir: &Path,
    ) -> dr_core::Result<StagedWal> {
        create_private_dir(dir)?;
        let size = facts.segment_size;
        let names: Vec<(String, Option<Lsn>)> = plan
            .histories
            .iter()
            .map(|t| (history_file_name(*t), None))
            .chain(
                plan.segments
                    .iter()
                    .map(|s| (s.file_name(size), Some(s.start(size)))),
            )
            .collect();
        let mut reach = TargetReach::for_target(target, facts.end, size);
        let mut staged = StagedWal {
            segments: 0,
            read_from_pieces: Vec::new(),
        };
        // A few fetched at once: each is a read, a decryption, a
        // decompression and a SHA-256 check. Taken in order, so that the
        // segments' records are read in order and the fetching can stop
        // where recovery will.
        let mut fetched = futures_util::stream::iter(names)
            .map(|(name, start)| async move {
                let fetched = fetch_wal_noting(
                    archive.segments,
                    archive.journals,
                    &self.component,
                    &name,
                    size,
                )
                .await?
                .ok_or_else(|| {
                    dr_core::Error::not_found(format!(
                        "{name} of {} (it went missing from the archive during the restore)",
                        self.component
                    ))
                })?;
                Ok::<_, dr_core::Error>((name, start, fetched))
            })
            .buffered(WAL_FETCHES);
        while let Some(done) = fetched.next().await {
            let (name, start, fetched) = done?;
            write_staged(dir.join(&name), fetched.bytes.clone()).await?;
            if let Some(why) = fetched.whole_unreadable {
                staged.read_from_pieces.push((name, why));
            }
            let Some(start) = start else { continue };
            staged.segments += 1;
            if let Some(reading) = reach.take() {
                let reading = reading.read_segment(start, fetched.bytes).await?;
                let settled = !reading.needs_more();
                reach = Some(reading);
                if settled {
                    break;
                }
            }
        }
        if let Some(reach) = &reach {
            match (reach.verdict(&self.component), plan.gap) {
                (Err(e), Some(gap)) if e.kind() == dr_core::ErrorKind::NotFound => {
                    let segment = WalSegment::containing(plan.path.timeline_at(gap), gap, size);
                    return Err(dr_core::Error::not_found(format!(
                        "WAL segment {} of {} in the archive, which the target time {} lies \
                         beyond: the archived WAL from the base backup's start {} holds no \
                         transaction after that time before it ends at {gap}, and resumes only \
                         after the missing segment",
                        segment.file_name(size),
                        self.component,
                        reach.target_time(),
                        facts.start,
                    )));
                }
                (verdict, _) => {
                    verdict?;
                }
            }
        }
        Ok(staged)
    }

    fn write_recovery_settings(
        &self,
        target: &RecoveryTarget,
        plan: &WalPlan,
    ) -> dr_core::Result<()> {
        let staging = self.staging_dir();
        let quote = |s: &str| s.replace('\'', "''");
        let mut conf = format!(
            "\n# Written by drkit's point-in-time restore.\n\
             restore_command = 'cp \"{}/%f\" \"%p\"'\n\
             recovery_target_timeline = '{}'\n",
            quote(&staging.display().to_string()),
            plan.path.current
        );
        match target {
            RecoveryTarget::Latest => {}
            RecoveryTarget::Snapshot(_) => conf.push_str("recovery_target = 'immediate'\n"),
            RecoveryTarget::Time(at) => conf.push_str(&format!(
                "recovery_target_time = '{}'\n",
                at.strftime("%Y-%m-%d %H:%M:%S%.6f+00")
            )),
            RecoveryTarget::Position(Position::Postgres { lsn, .. }) => {
                conf.push_str(&format!("recovery_target_lsn = '{lsn}'\n"));
            }
            RecoveryTarget::RestorePoint(name) => {
                conf.push_str(&format!("recovery_target_name = '{}'\n", quote(name)));
            }
            other => {
                return Err(dr_core::Error::invalid(
                    "recovery target",
                    format!("{other:?} is not supported"),
                ));
            }
        }
        conf.push_str("recovery_target_action = 'promote'\n");
        let auto = self.data_dir.join("postgresql.auto.conf");
        let mut existing = std::fs::read_to_string(&auto).unwrap_or_default();
        existing.push_str(&conf);
        std::fs::write(&auto, existing)
            .map_err(|e| dr_core::Error::io(format!("writing {}", auto.display()), e))?;
        std::fs::remove_file(self.data_dir.join("standby.signal")).ok();
        let signal = self.data_dir.join("recovery.signal");
        std::fs::write(&signal, b"")
            .map_err(|e| dr_core::Error::io(format!("writing {}", signal.display()), e))?;
        Ok(())
    }
}

/// Where the archive's WAL along `path` ends (the end of its last segment or piece).
fn path_end(listing: &ArchiveListing, path: &TimelinePath, size: WalSegmentSize) -> Lsn {
    listing
        .segments
        .iter()
        .filter(|(s, _)| path.timeline_at(s.end(size)) == s.timeline)
        .map(|(s, coverage)| match coverage {
            Coverage::Complete => s.end(size),
            Coverage::Partial { end } => Lsn::from(u64::from(s.start(size)) + u64::from(*end)),
        })
        .max()
        .unwrap_or(Lsn::ZERO)
}

fn create_private_dir(dir: &Path) -> dr_core::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| dr_core::Error::io(format!("creating {}", dir.display()), e))
}

/// One archive of a base backup, and where its files go.
struct Archive<'a> {
    name: &'a str,
    /// Where its files sit in the backed-up data directory (see
    /// [`ManifestFiles::prefix_of`]).
    prefix: &'a str,
    dir: &'a Path,
    links: &'a BTreeMap<String, PathBuf>,
}

/// Extracts one archive into its `dir`, checking each file against the backup
/// manifest (`files`); symlinks named in `links` point at their
/// mapped targets instead of where the archive says. Files are written by
/// blocking threads of their own, straight from the buffers read here, each
/// new file by the least busy one (creating files is much of a restore's
/// cost on ext4, and it runs in parallel); they are made durable together
/// afterwards ([`sync_filesystems`]).
async fn extract_tar(
    stream: impl tokio::io::AsyncRead + Unpin,
    archive: &Archive<'_>,
    files: &mut ManifestFiles,
) -> dr_core::Result<()> {
    let count = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    let (writers, threads): (Vec<_>, Vec<_>) = (0..count)
        .map(|_| {
            let (ops, received) = tokio::sync::mpsc::channel(WRITER_QUEUE);
            (
                ops,
                tokio::task::spawn_blocking(move || write_files(received)),
            )
        })
        .unzip();
    let read = read_tar(stream, archive, files, &writers).await;
    drop(writers);
    for thread in threads {
        // Reading stops when a writer failed: its error is the cause.
        thread
            .await
            .map_err(|e| dr_core::Error::io("writing files", std::io::Error::other(e)))??;
    }
    read
}

/// WAL files a restore fetches at once.
const WAL_FETCHES: usize = 4;

/// Operations queued for each writing thread.
const WRITER_QUEUE: usize = 8;

/// What the file-writing thread does next.
enum WriteOp {
    Directory {
        path: PathBuf,
        mode: u32,
    },
    /// Creates a file; the `Data` that follow are its content.
    File {
        path: PathBuf,
        mode: u32,
    },
    Data(bytes::Bytes),
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
}

/// Reads the tar and hands every entry to the writer.
async fn read_tar(
    stream: impl tokio::io::AsyncRead + Unpin,
    archive: &Archive<'_>,
    files: &mut ManifestFiles,
    writers: &[tokio::sync::mpsc::Sender<WriteOp>],
) -> dr_core::Result<()> {
    use tokio::io::AsyncReadExt;
    let Archive {
        name,
        prefix,
        dir,
        links,
    } = *archive;
    const WRITE: usize = 1 << 20;
    // An entry and a file's content go to the writer chosen at its start.
    let mut ops = &writers[0];
    let mut tar = TarReader::new(stream, name);
    while let Some(entry) = tar
        .next_entry()
        .await
        .map_err(|e| dr_core::Error::io(format!("reading {name}"), e))?
    {
        let path = dir.join(&entry.path);
        if let Some(idlest) = writers.iter().max_by_key(|w| w.capacity()) {
            ops = idlest;
        }
        match &entry.kind {
            EntryKind::Directory => {
                send(
                    ops,
                    WriteOp::Directory {
                        path,
                        mode: entry.mode.max(0o700),
                    },
                )
                .await?;
            }
            EntryKind::File => {
                send(
                    ops,
                    WriteOp::File {
                        path: path.clone(),
                        mode: entry.mode,
                    },
                )
                .await?;
                let mut check = files.start(format!("{prefix}{}", entry.path), entry.size, name);
                let mut content = tar.content();
                loop {
                    let mut buf = bytes::BytesMut::with_capacity(WRITE);
                    while buf.len() < WRITE {
                        let n = content
                            .read_buf(&mut buf)
                            .await
                            .map_err(|e| dr_core::Error::io(format!("reading {name}"), e))?;
                        if n == 0 {
                            break;
                        }
                    }
                    if buf.is_empty() {
                        break;
                    }
                    check.update(&buf);
                    send(ops, WriteOp::Data(buf.freeze())).await?;
                }
                files.finish(check);
            }
            EntryKind::Symlink(target) => {
                let target = links
                    .get(&entry.path)
                    .cloned()
                    .unwrap_or_else(|| PathBuf::from(target));
                send(ops, WriteOp::Symlink { path, target }).await?;
            }
        }
    }
    tar.finish()
        .await
        .map_err(|e| dr_core::Error::io(format!("reading {name}"), e))
}

/// Queues `op` for a writing thread; fails if the thread stopped.
async fn send(ops: &tokio::sync::mpsc::Sender<WriteOp>, op: WriteOp) -> dr_core::Result<()> {
    ops.send(op)
        .await
        .map_err(|_| dr_core::Error::io("writing files", std::io::Error::other("stopped")))
}

/// The writing thread: carries out `ops` in order with plain blocking calls.
fn write_files(mut ops: tokio::sync::mpsc::Receiver<WriteOp>) -> dr_core::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let io = |what: &str, path: &Path| {
        let what = format!("{what} {}", path.display());
        move |e: std::io::Error| dr_core::Error::io(what, e)
    };
    let parent_of = |path: &Path| match path.parent() {
        Some(parent) => create_private_dir(parent),
        None => Ok(()),
    };
    let mut current: Option<Writing> = None;
    while let Some(op) = ops.blocking_recv() {
        match op {
            WriteOp::Data(bytes) => {
                let writing = current.as_mut().ok_or_else(|| {
                    dr_core::Error::io(
                        "writing files",
                        std::io::Error::other("data outside a file"),
                    )
                })?;
                writing
                    .file
                    .write_all(&bytes)
                    .map_err(io("writing", &writing.path))?;
                writing.written += bytes.len() as u64;
                if writing.written - writing.flushing >= FLUSH_AHEAD {
                    writing.start_writeback();
                }
            }
            WriteOp::File { path, mode } => {
                parent_of(&path)?;
                let file = std::fs::File::create(&path).map_err(io("creating", &path))?;
                file.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(io("setting the mode of", &path))?;
                if let Some(done) = current.replace(Writing::new(file, path)) {
                    done.finish();
                }
            }
            WriteOp::Directory { path, mode } => {
                create_private_dir(&path)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(io("setting the mode of", &path))?;
            }
            WriteOp::Symlink { path, target } => {
                parent_of(&path)?;
                std::os::unix::fs::symlink(&target, &path).map_err(io("linking", &path))?;
            }
        }
    }
    if let Some(done) = current {
        done.finish();
    }
    Ok(())
}

/// Bytes of a file written before its write-back is started.
const FLUSH_AHEAD: u64 = 8 << 20;

/// The file a writing thread is filling.
struct Writing {
    file: std::fs::File,
    path: PathBuf,
    written: u64,
    /// Where the write-back started so far ends.
    flushing: u64,
}

impl Writing {
    fn new(file: std::fs::File, path: PathBuf) -> Self {
        Self {
            file,
            path,
            written: 0,
            flushing: 0,
        }
    }

    /// Starts writing what was written since the last call to the disk,
    /// without waiting (POSIX_FADV_DONTNEED starts write-back of dirty
    /// pages on Linux, as PostgreSQL's `pg_flush_data` uses it), so that the
    /// final sync finds little left to do. Only a hint: durability comes
    /// from [`sync_filesystems`], so a failure here changes nothing.
    fn start_writeback(&mut self) {
        let (Ok(start), Ok(len)) = (
            i64::try_from(self.flushing),
            i64::try_from(self.written - self.flushing),
        ) else {
            return;
        };
        let advice = nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED;
        nix::fcntl::posix_fadvise(&self.file, start, len, advice).ok();
        self.flushing = self.written;
    }

    fn finish(mut self) {
        if self.written > self.flushing {
            self.start_writeback();
        }
    }
}

/// Makes everything written under `dirs` durable: one `syncfs(2)` per
/// filesystem (file data, inodes and directory entries alike), as
/// PostgreSQL's own `recovery_init_sync_method = syncfs` does, instead of an
/// fsync per file. Linux reports write-back errors through it.
fn sync_filesystems(dirs: &[PathBuf]) -> dr_core::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut synced = std::collections::BTreeSet::new();
    for dir in dirs {
        let handle = std::fs::File::open(dir)
            .map_err(|e| dr_core::Error::io(format!("opening {}", dir.display()), e))?;
        let device = handle
            .metadata()
            .map_err(|e| dr_core::Error::io(format!("reading {}", dir.display()), e))?
            .dev();
        if synced.insert(device) {
            nix::unistd::syncfs(&handle).map_err(|e| {
                dr_core::Error::io(
                    format!("syncing the filesystem of {}", dir.display()),
                    e.into(),
                )
            })?;
        }
    }
    Ok(())
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    if std::fs::symlink_metadata(dir)?.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// What the restored server reports once promoted.
#[derive(Debug, Clone, Copy)]
struct Promoted {
    /// The time of the last transaction it replayed.
    last_transaction: Option<Timestamp>,
    /// Where the last WAL record it replayed ends.
    replayed: Option<Lsn>,
}

/// Polls the restored server until it has left recovery.
async fn wait_for_promotion(
    config: &tokio_postgres::Config,
    timeout: Duration,
) -> dr_core::Result<Promoted> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last_error = match query_promotion(config).await {
            Ok(Some(promoted)) => return Ok(promoted),
            Ok(None) => "it was still recovering".to_owned(),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(dr_core::Error::Timeout {
                operation: format!("waiting for the restored server to promote ({last_error})"),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `None` while in recovery; else what was replayed.
async fn query_promotion(
    config: &tokio_postgres::Config,
) -> Result<Option<Promoted>, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let task = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), \
             extract(epoch FROM pg_last_xact_replay_timestamp())::float8, \
             pg_last_wal_replay_lsn()::text",
            &[],
        )
        .await;
    drop(client);
    task.abort();
    let row = row?;
    if row.get::<_, bool>(0) {
        return Ok(None);
    }
    let last_transaction: Option<f64> = row.get(1);
    let replayed: Option<String> = row.get(2);
    Ok(Some(Promoted {
        last_transaction: last_transaction
            .and_then(|secs| Timestamp::from_microsecond((secs * 1e6) as i64).ok()),
        replayed: replayed.and_then(|text| text.parse().ok()),
    }))
}
