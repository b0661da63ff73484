//! Measuring what a restore to the latest point lost.

use std::time::Duration;

use dr_core::{
    ArchiveCoverage, Manifest, Position, RecoveryReport, RecoveryTarget, RestoreRequest,
};

use super::recovery::Promoted;

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
pub(super) fn data_loss(
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
