//! Keeping the WAL archive consistent with the base backups kept: after old
//! base backups are forgotten, the WAL only they needed can go, and never
//! WAL a kept backup needs to become consistent or to roll forward.

use dr_core::{ArchiveSource, ComponentId, JournalSource, Manifest, SegmentName};

use crate::archive::ArchivedWal;
use crate::details::BaseBackupDetails;
use crate::wal::{WalSegment, WalSegmentSize};

/// The archived WAL of `component` that none of the `kept` base backups
/// needs: every segment, piece and journal (of `journals`, where the store
/// keeps them) before the oldest kept backup's start segment, and the
/// pieces and journals of segments that are stored complete. History
/// files are always kept (they are tiny and describe every timeline).
/// Pass the result to the repository's `forget_segments`.
///
/// With no kept base backup nothing is returned: without one there is no
/// telling which WAL matters.
///
/// # Errors
/// A kept manifest is not a base backup, or the archive cannot be listed.
pub async fn unneeded_wal(
    archive: &dyn ArchiveSource,
    journals: Option<&dyn JournalSource>,
    component: &ComponentId,
    kept: &[Manifest],
) -> dr_core::Result<Vec<SegmentName>> {
    let mut oldest: Option<(u64, WalSegmentSize)> = None;
    for manifest in kept {
        let details = BaseBackupDetails::of(manifest)?;
        let (start, size) = (details.start_lsn, details.wal_segment_size);
        let number = start.as_u64() / size.bytes();
        if oldest.is_none_or(|(n, _)| number < n) {
            oldest = Some((number, size));
        }
    }
    let Some((first_needed, size)) = oldest else {
        return Ok(Vec::new());
    };
    let journals = match journals {
        Some(journals) => journals.journals(component, "").await?,
        None => Vec::new(),
    };
    let names = archive.segments(component, "").await?;
    let complete: std::collections::BTreeSet<WalSegment> = names
        .iter()
        .filter_map(|n| match ArchivedWal::parse(n.as_str(), size) {
            Some(ArchivedWal::Segment(s)) => Some(s),
            _ => None,
        })
        .collect();
    Ok(names
        .into_iter()
        .filter(|name| match ArchivedWal::parse(name.as_str(), size) {
            Some(ArchivedWal::Segment(s)) => s.number < first_needed,
            Some(ArchivedWal::Piece { segment, .. }) => {
                segment.number < first_needed || complete.contains(&segment)
            }
            Some(ArchivedWal::History(_)) | None => false,
        })
        .chain(journals.into_iter().filter(|name| {
            // Forgetting a segment's name takes its journal along.
            matches!(
                ArchivedWal::parse(name.as_str(), size),
                Some(ArchivedWal::Segment(s)) if s.number < first_needed || complete.contains(&s)
            )
        }))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect())
}
