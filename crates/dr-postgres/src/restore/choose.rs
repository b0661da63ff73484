//! Step 1: choosing the base backup that can reach the target.

use dr_core::{Lsn, Manifest, Position, RecoveryTarget, SnapshotSource};

use crate::archive::{ArchiveListing, fetch_wal, list_archive};
use crate::backup::base_backups;
use crate::details::BaseBackupDetails;
use crate::reach::read_records;
use crate::wal::{WalSegment, WalSegmentSize};
use crate::wal_records::{WalRecordEvent, WalRecordReader};

use super::{PitrRestore, Wal};

impl PitrRestore {
    pub(super) async fn choose(
        &self,
        source: &dyn SnapshotSource,
        target: &RecoveryTarget,
    ) -> dr_core::Result<Manifest> {
        let mut bases = base_backups(source, &self.component).await?;
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
                    let facts = BaseBackupDetails::of(&m)?;
                    if facts.system_identifier == *system_identifier && facts.end_lsn <= *lsn {
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
    pub(super) async fn choose_for_restore_point(
        &self,
        source: &dyn SnapshotSource,
        archive: Wal<'_>,
        name: &str,
    ) -> dr_core::Result<(Manifest, ArchiveListing)> {
        let bases = base_backups(source, &self.component).await?;
        // Listed once (again only for a backup of another segment size).
        let mut listed: Option<(WalSegmentSize, ArchiveListing)> = None;
        // The first restore point of the name at or after `read_from`, the
        // start of the WAL read so far (which runs to the archive's end).
        let mut first: Option<Lsn> = None;
        let mut read_from: Option<Lsn> = None;
        for base in bases.into_iter().rev() {
            let facts = BaseBackupDetails::of(&base)?;
            let listing = match listed.take() {
                Some((size, listing)) if size == facts.wal_segment_size => listing,
                _ => {
                    list_archive(
                        archive.segments,
                        archive.journals,
                        &self.component,
                        facts.wal_segment_size,
                    )
                    .await?
                }
            };
            let plan = self
                .plan_wal(archive, &listing, &facts, &RecoveryTarget::Latest)
                .await?;
            listed = Some((facts.wal_segment_size, listing));
            let segments: Vec<WalSegment> = plan
                .segments
                .into_iter()
                .take_while(|s| read_from.is_none_or(|to| s.start(facts.wal_segment_size) < to))
                .collect();
            let until = read_from;
            if let Some(found) = self
                .first_restore_point(archive, &facts, &segments, until, name)
                .await?
            {
                first = Some(found);
            }
            read_from = Some(facts.start_lsn);
            if first.is_some_and(|end| end > facts.end_lsn)
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
        facts: &BaseBackupDetails,
        segments: &[WalSegment],
        until: Option<Lsn>,
        name: &str,
    ) -> dr_core::Result<Option<Lsn>> {
        let size = facts.wal_segment_size;
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
                    && start >= facts.start_lsn
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
}
