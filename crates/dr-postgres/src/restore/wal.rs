//! Steps 2 and 3: the WAL from the base backup to the target, checked in the archive and staged beside the data directory.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use dr_core::{Lsn, Position, RecoveryTarget};
use futures_util::StreamExt;

use crate::archive::{ArchiveListing, Coverage, fetch_wal, fetch_wal_noting};
use crate::reach::TargetReach;
use crate::replication::TimelineHistory;
use crate::wal::{TimelinePath, WalSegment, WalSegmentSize, history_file_name};

use super::{PitrRestore, Wal, create_private_dir};
use crate::details::BaseBackupDetails;

/// The WAL a restore needs, as checked in the archive.
#[derive(Debug, Clone)]
pub(super) struct WalPlan {
    pub(super) path: TimelinePath,
    /// History files of the path's timelines, to stage too.
    pub(super) histories: Vec<u32>,
    pub(super) segments: Vec<WalSegment>,
    /// For a target time: where the contiguous WAL from the backup's start
    /// ends, when the archive holds more WAL after a missing segment. Only
    /// the WAL's records can tell whether the target lies beyond it.
    pub(super) gap: Option<Lsn>,
}

/// What [`PitrRestore::stage_wal`] staged.
#[derive(Debug)]
pub(super) struct StagedWal {
    /// WAL segments staged.
    pub(super) segments: usize,
    /// Segments whose whole object was unreadable, read from their pieces:
    /// the name and why.
    pub(super) read_from_pieces: Vec<(String, dr_core::Error)>,
}

impl PitrRestore {
    /// Works out the timeline path and the segments from the backup's start
    /// to the target, and checks that the archive has every one.
    pub(super) async fn plan_wal(
        &self,
        archive: Wal<'_>,
        listing: &ArchiveListing,
        facts: &BaseBackupDetails,
        target: &RecoveryTarget,
    ) -> dr_core::Result<WalPlan> {
        let size = facts.wal_segment_size;
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
        let first =
            WalSegment::containing(path.timeline_at(facts.start_lsn), facts.start_lsn, size);
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
                facts.start_lsn
            ))
        };
        if reached <= facts.end_lsn {
            return Err(missing(reached.max(facts.start_lsn)));
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
        facts: &BaseBackupDetails,
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
            facts.wal_segment_size,
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
        if path.timeline_at(facts.start_lsn) != facts.start_timeline {
            return Err(dr_core::Error::invalid(
                "recovery target",
                format!(
                    "timeline {newest} did not descend from the base backup's timeline {} at {}",
                    facts.start_timeline, facts.start_lsn
                ),
            ));
        }
        Ok(path)
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
    pub(super) async fn stage_wal(
        &self,
        archive: Wal<'_>,
        facts: &BaseBackupDetails,
        plan: &WalPlan,
        target: &RecoveryTarget,
        dir: &Path,
    ) -> dr_core::Result<StagedWal> {
        create_private_dir(dir)?;
        let size = facts.wal_segment_size;
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
        let mut reach = TargetReach::for_target(target, facts.end_lsn, size);
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
                        facts.start_lsn,
                    )));
                }
                (verdict, _) => {
                    verdict?;
                }
            }
        }
        Ok(staged)
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

/// Writes a staged WAL file.
async fn write_staged(path: PathBuf, bytes: Bytes) -> dr_core::Result<()> {
    tokio::task::spawn_blocking(move || {
        std::fs::write(&path, &bytes)
            .map_err(|e| dr_core::Error::io(format!("writing {}", path.display()), e))
    })
    .await
    .map_err(|e| dr_core::Error::io("staging WAL", std::io::Error::other(e)))?
}

/// WAL files a restore fetches at once.
const WAL_FETCHES: usize = 4;
