//! How WAL is named in an archive, and how PostgreSQL's `restore_command`
//! reads it back.
//!
//! One convention, shared by the archiver and the restore code:
//!
//! - a complete segment is stored under its WAL file name,
//!   `000000010000000000000003`;
//! - a timeline history file under its name, `00000002.history`;
//! - a *piece* of a segment that is not complete yet under
//!   `<segment>.partial.<start>-<end>`, the byte range within the segment as
//!   8 upper-case hex digits each: `000000010000000000000003.partial.00000000-0000A000`,
//!   then `....partial.0000A000-00013000`. Pieces are write-once and follow
//!   each other without gaps from offset 0; once the complete segment is
//!   stored they are redundant.
//!
//! Where the store can append in place (a repository in a local directory,
//! which offers dr-core's [`JournalSink`](dr_core::JournalSink) and
//! [`JournalSource`]), the archiver in synchronous mode keeps a segment's
//! pieces as the records of the segment's *journal* instead: one write and
//! one data sync per piece, where a new object costs two syncs and a
//! directory update. Readers handed the journals take their records exactly
//! like pieces; every reader of such an archive must be handed them, since
//! the newest WAL may be there only.
//!
//! A segment whose pieces reach its end is complete as well: the archiver
//! stores the end of a segment as its last piece, so that the flush it
//! reports does not wait for 16 MiB to be stored, and the whole segment
//! after that. Readers take the whole segment where there is one, else the
//! pieces, which hold the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use dr_core::{ArchiveSource, ComponentId, Error, JournalSource, Lsn, SegmentName};
use tokio::io::AsyncReadExt;

use crate::wal::{WalSegment, WalSegmentSize, history_file_name, history_file_timeline};
use crate::wal_records::{WalRecordEvent, WalRecordReader};

/// What separates a segment's file name from a piece's byte range.
const PIECE_INFIX: &str = ".partial.";

/// One WAL object in an archive, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArchivedWal {
    /// A complete segment.
    Segment(WalSegment),
    /// The bytes `start..end` of a segment not yet complete.
    Piece {
        /// The segment the bytes belong to.
        segment: WalSegment,
        /// The offset of the first byte within the segment.
        start: u32,
        /// The offset just after the last byte.
        end: u32,
    },
    /// A timeline's history file.
    History(u32),
}

impl ArchivedWal {
    /// The object's name in the archive.
    pub fn name(&self, size: WalSegmentSize) -> SegmentName {
        let name = match *self {
            ArchivedWal::Segment(segment) => segment.file_name(size),
            ArchivedWal::Piece {
                segment,
                start,
                end,
            } => format!(
                "{}{PIECE_INFIX}{start:08X}-{end:08X}",
                segment.file_name(size)
            ),
            ArchivedWal::History(timeline) => history_file_name(timeline),
        };
        // Hex digits and '.' or '-', starting with a digit, at most 42 bytes.
        name.parse()
            .expect("WAL file names are valid segment names")
    }

    /// Reads a name back; `None` for anything that is not exactly a name
    /// [`ArchivedWal::name`] gives (another file, lower-case hex, a piece that
    /// is empty or reaches past the segment's end).
    pub fn parse(name: &str, size: WalSegmentSize) -> Option<Self> {
        let parsed = if let Some(timeline) = history_file_timeline(name) {
            ArchivedWal::History(timeline)
        } else if let Some((file, range)) = name.split_once(PIECE_INFIX) {
            let segment = WalSegment::parse(file, size).ok()?;
            let (start, end) = range.split_once('-')?;
            let offset = |hex: &str| {
                (hex.len() == 8)
                    .then(|| u32::from_str_radix(hex, 16).ok())
                    .flatten()
            };
            let (start, end) = (offset(start)?, offset(end)?);
            if start >= end || u64::from(end) > size.bytes() {
                return None;
            }
            ArchivedWal::Piece {
                segment,
                start,
                end,
            }
        } else {
            ArchivedWal::Segment(WalSegment::parse(name, size).ok()?)
        };
        // One spelling per object: upper-case hex, as written.
        (parsed.name(size).as_str() == name).then_some(parsed)
    }
}

/// How much of a segment an archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// The complete segment: stored whole, or in pieces that reach its end
    /// (see [`ArchiveListing::complete_in_pieces`]).
    Complete,
    /// Pieces only: `end` is where the contiguous run of pieces from offset 0
    /// ends (0 if the first piece is missing).
    Partial {
        /// The offset just after the run's last byte.
        end: u32,
    },
}

/// What an archive holds for a component: for each segment, whether it is
/// complete or how far its contiguous pieces from offset 0 reach; and which
/// history files exist. Names that are not WAL objects (`.backup` files,
/// anything else stored beside them) are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveListing {
    /// Each segment with anything stored, by timeline then number.
    pub segments: BTreeMap<WalSegment, Coverage>,
    /// The timelines whose history files are stored.
    pub histories: BTreeSet<u32>,
    /// The complete segments held only as pieces, not (yet) stored whole:
    /// the archiver is storing them whole, or it stored their last piece and
    /// then failed or was stopped before that. They read back all the same.
    pub complete_in_pieces: BTreeSet<WalSegment>,
    /// The segments with a journal (see the module docs), whatever it
    /// holds; none where the listing was not handed the journals.
    pub journals: BTreeSet<WalSegment>,
}

impl ArchiveListing {
    /// The highest timeline with a stored segment or piece.
    pub fn latest_timeline(&self) -> Option<u32> {
        self.segments.keys().map(|s| s.timeline).max()
    }

    /// Where the archived WAL of `timeline` ends: the end of its newest
    /// segment's coverage (the segment's end if complete, else the end of its
    /// contiguous pieces). Earlier segments may still be missing.
    pub fn end_of(&self, timeline: u32, size: WalSegmentSize) -> Option<Lsn> {
        let (segment, coverage) = self
            .segments
            .range(
                WalSegment {
                    timeline,
                    number: 0,
                }..=WalSegment {
                    timeline,
                    number: u64::MAX,
                },
            )
            .next_back()?;
        Some(match coverage {
            Coverage::Complete => segment.end(size),
            Coverage::Partial { end } => Lsn::new(segment.start(size).as_u64() + u64::from(*end)),
        })
    }
}

/// Lists what the archive holds for `component`: its segments in `source`,
/// and their journals in `journals` where the store keeps them (see the
/// module docs).
///
/// # Errors
/// The store failed; a journal is damaged.
pub async fn list_archive(
    source: &dyn ArchiveSource,
    journals: Option<&dyn JournalSource>,
    component: &ComponentId,
    size: WalSegmentSize,
) -> dr_core::Result<ArchiveListing> {
    let mut listing = ArchiveListing::default();
    let mut pieces: BTreeMap<WalSegment, Vec<(u32, u32)>> = BTreeMap::new();
    // Journals first: one is removed only after its segment is stored whole,
    // so a journal listed here is either read below or its segment is listed.
    let journal_source = journals;
    let journals = match journal_source {
        Some(journals) => journals.journals(component, "").await?,
        None => Vec::new(),
    };
    for name in source.segments(component, "").await? {
        match ArchivedWal::parse(name.as_str(), size) {
            Some(ArchivedWal::Segment(segment)) => {
                listing.segments.insert(segment, Coverage::Complete);
            }
            Some(ArchivedWal::Piece {
                segment,
                start,
                end,
            }) => pieces.entry(segment).or_default().push((start, end)),
            Some(ArchivedWal::History(timeline)) => {
                listing.histories.insert(timeline);
            }
            None => {}
        }
    }
    for name in journals {
        let Some(ArchivedWal::Segment(segment)) = ArchivedWal::parse(name.as_str(), size) else {
            continue;
        };
        listing.journals.insert(segment);
        if let Some(journal_source) = journal_source
            && !listing.segments.contains_key(&segment)
        {
            let spans = journal_spans(journal_source, component, &name, size)
                .await?
                .unwrap_or_default();
            if !spans.is_empty() {
                let ranges = pieces.entry(segment).or_default();
                ranges.extend(spans.iter().map(|&(start, end, _)| (start, end)));
            }
        }
    }
    for (segment, ranges) in pieces {
        if listing.segments.contains_key(&segment) {
            // Stored whole: the pieces are redundant.
            continue;
        }
        let end = chain(&ranges).last().map_or(0, |&(_, end)| end);
        let coverage = if u64::from(end) == size.bytes() {
            listing.complete_in_pieces.insert(segment);
            Coverage::Complete
        } else {
            Coverage::Partial { end }
        };
        listing.segments.insert(segment, coverage);
    }
    Ok(listing)
}

/// The pieces that cover a segment from offset 0 as far as possible: each
/// next piece starts at or before the end so far and reaches furthest. More
/// than one piece can start at the same offset when a store reported failure
/// after writing; their bytes are the same WAL.
fn chain(ranges: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut chosen = Vec::new();
    let mut reach = 0;
    loop {
        let next = ranges
            .iter()
            .filter(|&&(start, end)| start <= reach && end > reach)
            .max_by_key(|&&(_, end)| end);
        match next {
            Some(&piece) => {
                chosen.push(piece);
                reach = piece.1;
            }
            None => return chosen,
        }
    }
}

/// PostgreSQL's `restore_command` view of the archive: the file named
/// `file` (`%f`: a segment or a history file), from the segments in
/// `source` and the journals in `journals` where the store keeps them (see
/// the module docs). A complete segment is
/// returned as stored; otherwise the contiguous pieces from offset 0 are
/// assembled and padded with zeros to the segment size, so recovery replays
/// what was streamed and stops at the zeros. `None` if the archive has
/// neither. Other names that are valid segment names (`.backup` files) are
/// returned as stored.
///
/// A segment stored whole whose object cannot be read back (damaged,
/// truncated) is read from its pieces instead where they still cover all
/// of it: they hold the same bytes. (A restore reports when it does so.)
///
/// # Errors
/// [`Error::InvalidInput`] if `file` cannot be a stored name;
/// [`Error::Corrupt`] if a stored segment or piece does not have its size
/// (a whole segment only when its pieces cannot stand in for it);
/// the store failed.
pub async fn fetch_wal(
    source: &dyn ArchiveSource,
    journals: Option<&dyn JournalSource>,
    component: &ComponentId,
    file: &str,
    size: WalSegmentSize,
) -> dr_core::Result<Option<Bytes>> {
    Ok(fetch_wal_noting(source, journals, component, file, size)
        .await?
        .map(|fetched| fetched.bytes))
}

/// How many of the newest segments [`newest_archived_transaction`] reads at
/// most, looking for a commit or an abort.
const NEWEST_SEGMENTS_READ: u64 = 4;

/// The newest commit or abort in `component`'s archive, on its newest
/// timeline: the last transaction a restore to the latest point recovers,
/// and so, for monitoring, how much a failure now would lose. It reads the
/// newest segments back (at most four), newest first, until one holds a
/// transaction's end; `None` if none does (an idle cluster, or an empty
/// archive).
///
/// # Errors
/// The archive cannot be listed or read, or its newest WAL is damaged.
pub async fn newest_archived_transaction(
    source: &dyn ArchiveSource,
    journals: Option<&dyn JournalSource>,
    component: &ComponentId,
    size: WalSegmentSize,
) -> dr_core::Result<Option<WalRecordEvent>> {
    let listing = list_archive(source, journals, component, size).await?;
    let Some(timeline) = listing.latest_timeline() else {
        return Ok(None);
    };
    let Some(newest) = listing
        .segments
        .keys()
        .filter(|s| s.timeline == timeline)
        .max()
        .copied()
    else {
        return Ok(None);
    };
    let mut bytes = std::collections::VecDeque::new();
    for back in 0..NEWEST_SEGMENTS_READ.min(newest.number + 1) {
        let segment = WalSegment {
            timeline,
            number: newest.number - back,
        };
        if !listing.segments.contains_key(&segment) {
            break;
        }
        let Some(read) =
            fetch_wal(source, journals, component, &segment.file_name(size), size).await?
        else {
            break;
        };
        bytes.push_front((segment, read));
        // Read forwards from the oldest segment fetched so far: a record
        // begun in the segment before is skipped, as recovery would not
        // stop in it either.
        let mut reader = WalRecordReader::new(size);
        let mut last = None;
        for (segment, read) in &bytes {
            for event in reader.feed_segment(segment.start(size), read)? {
                if matches!(
                    event,
                    WalRecordEvent::Commit { .. } | WalRecordEvent::Abort { .. }
                ) {
                    last = Some(event);
                }
            }
        }
        if last.is_some() {
            return Ok(last);
        }
    }
    Ok(None)
}

/// A WAL file as [`fetch_wal_noting`] read it.
#[derive(Debug)]
pub(crate) struct FetchedWal {
    pub(crate) bytes: Bytes,
    /// Why the segment's whole object could not be used, where its pieces
    /// were read instead.
    pub(crate) whole_unreadable: Option<Error>,
}

/// [`fetch_wal`], saying when a whole segment's object was unreadable and
/// its pieces were read instead.
///
/// # Errors
/// As [`fetch_wal`].
pub(crate) async fn fetch_wal_noting(
    source: &dyn ArchiveSource,
    journals: Option<&dyn JournalSource>,
    component: &ComponentId,
    file: &str,
    size: WalSegmentSize,
) -> dr_core::Result<Option<FetchedWal>> {
    let name: SegmentName = file.parse()?;
    let as_read = |bytes: Option<Bytes>| {
        bytes.map(|bytes| FetchedWal {
            bytes,
            whole_unreadable: None,
        })
    };
    let Some(ArchivedWal::Segment(segment)) = ArchivedWal::parse(file, size) else {
        // A history file or anything else: as stored.
        return read_if_listed(source, component, &name, None)
            .await
            .map(as_read);
    };
    let segment_len = size.bytes();
    let mut ranges = Vec::new();
    let mut complete = false;
    // Journals first, as in `list_archive`.
    let journaled = match journals {
        Some(journals) => journals
            .journals(component, file)
            .await?
            .contains(&name)
            .then_some(journals),
        None => None,
    };
    for stored in source.segments(component, file).await? {
        if stored == name {
            complete = true;
        } else if let Some(ArchivedWal::Piece {
            segment: of,
            start,
            end,
        }) = ArchivedWal::parse(stored.as_str(), size)
            && of == segment
        {
            ranges.push((start, end));
        }
    }
    if complete {
        let unreadable = match read_whole(source, component, &name, segment_len).await {
            Ok(bytes) => return Ok(as_read(Some(bytes))),
            Err(e) => e,
        };
        // The pieces (and a journal not yet removed) hold the same bytes:
        // where they reach the segment's end, they stand in for it.
        let journal = match journaled {
            Some(journals) => journal_spans(journals, component, &name, size)
                .await
                .ok()
                .flatten()
                .unwrap_or_default(),
            None => Vec::new(),
        };
        ranges.extend(journal.iter().map(|&(start, end, _)| (start, end)));
        let pieces = chain(&ranges);
        if pieces
            .last()
            .is_some_and(|&(_, end)| u64::from(end) == segment_len)
            && let Ok(bytes) = assemble(source, component, segment, &pieces, &journal, size).await
        {
            tracing::warn!(
                %component,
                segment = file,
                error = %unreadable,
                "a WAL segment's whole object is unreadable; its pieces, which hold the same \
                 bytes, were read instead"
            );
            return Ok(Some(FetchedWal {
                bytes,
                whole_unreadable: Some(unreadable),
            }));
        }
        return Err(unreadable);
    }
    let journal = match journaled {
        Some(journals) => match journal_spans(journals, component, &name, size).await? {
            Some(spans) => spans,
            // Removed since it was listed: the segment was stored whole.
            None => {
                return read_whole(source, component, &name, segment_len)
                    .await
                    .map(|bytes| as_read(Some(bytes)));
            }
        },
        None => Vec::new(),
    };
    ranges.extend(journal.iter().map(|&(start, end, _)| (start, end)));
    let pieces = chain(&ranges);
    if pieces.is_empty() {
        return Ok(None);
    }
    assemble(source, component, segment, &pieces, &journal, size)
        .await
        .map(|bytes| as_read(Some(bytes)))
}

/// The segment's bytes from its chained `pieces` (read from the journal
/// where it holds them, else from the stored piece objects), padded with
/// zeros to the segment's size.
async fn assemble(
    source: &dyn ArchiveSource,
    component: &ComponentId,
    segment: WalSegment,
    pieces: &[(u32, u32)],
    journal: &[(u32, u32, Vec<u8>)],
    size: WalSegmentSize,
) -> dr_core::Result<Bytes> {
    let segment_len = size.bytes();
    let mut out = BytesMut::with_capacity(segment_len as usize);
    for &(start, end) in pieces {
        let from_journal = journal
            .iter()
            .find(|&&(s, e, _)| (s, e) == (start, end))
            .map(|(_, _, data)| Bytes::copy_from_slice(data));
        let data = match from_journal {
            Some(data) => data,
            None => {
                let piece = ArchivedWal::Piece {
                    segment,
                    start,
                    end,
                }
                .name(size);
                let len = end - start;
                let data =
                    read_all(source, component, &piece, u64::from(len), len as usize).await?;
                if data.len() as u64 != u64::from(len) {
                    return Err(Error::corrupt(
                        format!("WAL piece {piece} of {component}"),
                        format!("{} bytes, its name says {len}", data.len()),
                    ));
                }
                data
            }
        };
        // Pieces may overlap; the overlap is the same WAL.
        let skip = out.len() - start as usize;
        out.extend_from_slice(&data[skip..]);
    }
    out.resize(segment_len as usize, 0);
    if out.len() as u64 != segment_len {
        return Err(Error::corrupt(
            format!("WAL segment {} of {component}", segment.file_name(size)),
            "its pieces assemble to the wrong size",
        ));
    }
    Ok(out.freeze())
}

/// A complete segment, stored whole.
async fn read_whole(
    source: &dyn ArchiveSource,
    component: &ComponentId,
    name: &SegmentName,
    segment_len: u64,
) -> dr_core::Result<Bytes> {
    let data = read_all(source, component, name, segment_len, segment_len as usize).await?;
    if data.len() as u64 != segment_len {
        return Err(Error::corrupt(
            format!("WAL segment {name} of {component}"),
            format!("{} bytes, a segment has {segment_len}", data.len()),
        ));
    }
    Ok(data)
}

/// The records of segment `name`'s journal as pieces: `(start, end, bytes)`;
/// `None` if the journal is gone (removed once the segment was stored whole).
///
/// # Errors
/// [`Error::Corrupt`] if a record reaches past the segment's end; reading
/// the journal failed.
async fn journal_spans(
    journals: &dyn JournalSource,
    component: &ComponentId,
    name: &SegmentName,
    size: WalSegmentSize,
) -> dr_core::Result<Option<Vec<(u32, u32, Vec<u8>)>>> {
    let records = match journals.read_journal(component, name).await {
        Ok(records) => records,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut spans = Vec::with_capacity(records.len());
    for record in records {
        let end = record.end();
        if end > size.bytes() {
            return Err(Error::corrupt(
                format!("the journal of WAL segment {name} of {component}"),
                format!("a record ends at {end}, past the segment's end"),
            ));
        }
        if !record.data.is_empty() {
            spans.push((record.start as u32, end as u32, record.data));
        }
    }
    Ok(Some(spans))
}

/// Reads `name` if the archive lists it, else `None`.
async fn read_if_listed(
    source: &dyn ArchiveSource,
    component: &ComponentId,
    name: &SegmentName,
    limit: Option<u64>,
) -> dr_core::Result<Option<Bytes>> {
    let listed = source.segments(component, name.as_str()).await?;
    if !listed.contains(name) {
        return Ok(None);
    }
    // Files beside WAL segments (history, .backup) are small; no more than a
    // segment's maximum is read.
    let limit = limit.unwrap_or(1 << 30);
    read_all(source, component, name, limit, 0).await.map(Some)
}

/// Reads a stored object, at most `expected + 1` bytes so a wrong size
/// shows, into a buffer of `capacity` to start with.
async fn read_all(
    source: &dyn ArchiveSource,
    component: &ComponentId,
    name: &SegmentName,
    expected: u64,
    capacity: usize,
) -> dr_core::Result<Bytes> {
    let mut reader = source.open_segment(component, name).await?;
    let mut data = Vec::with_capacity(capacity);
    (&mut reader)
        .take(expected + 1)
        .read_to_end(&mut data)
        .await
        .map_err(|e| Error::io(format!("reading {name} of {component}"), e))?;
    Ok(data.into())
}

/// The header PostgreSQL writes at the start of every WAL segment (an
/// `XLogLongPageHeaderData`): read in the byte order of the server that
/// wrote it, recognised by the magic number's high byte `0xD1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The database system identifier from `pg_control`.
    pub(crate) system_id: u64,
    /// The cluster's segment size.
    pub(crate) segment_size: u32,
}

/// The long page header is 40 bytes: the 24-byte page header, then the
/// system identifier (u64), the segment size and the block size (u32 each).
pub(crate) const SEGMENT_HEADER_LEN: usize = 40;

impl SegmentHeader {
    /// Reads the header from a segment's first bytes; `None` if they do not
    /// start with a long page header.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Self> {
        const XLP_LONG_HEADER: u16 = 0x0002;
        let bytes = bytes.get(..SEGMENT_HEADER_LEN)?;
        let u16_at = |at: usize, le: bool| {
            let b = [bytes[at], bytes[at + 1]];
            if le {
                u16::from_le_bytes(b)
            } else {
                u16::from_be_bytes(b)
            }
        };
        let le = match (bytes[0], bytes[1]) {
            (_, 0xD1) => true,
            (0xD1, _) => false,
            _ => return None,
        };
        if u16_at(2, le) & XLP_LONG_HEADER == 0 {
            return None;
        }
        let mut sysid = [0u8; 8];
        sysid.copy_from_slice(&bytes[24..32]);
        let mut seg = [0u8; 4];
        seg.copy_from_slice(&bytes[32..36]);
        Some(if le {
            Self {
                system_id: u64::from_le_bytes(sysid),
                segment_size: u32::from_le_bytes(seg),
            }
        } else {
            Self {
                system_id: u64::from_be_bytes(sysid),
                segment_size: u32::from_be_bytes(seg),
            }
        })
    }
}

/// The header of the newest segment in `listing` that has its first bytes
/// stored (complete, or pieces from offset 0): which cluster the archive's
/// WAL came from. `None` if there is none.
///
/// # Errors
/// The store failed.
pub(crate) async fn archived_header(
    source: &dyn ArchiveSource,
    journals: Option<&dyn JournalSource>,
    component: &ComponentId,
    listing: &ArchiveListing,
    size: WalSegmentSize,
) -> dr_core::Result<Option<SegmentHeader>> {
    let newest = listing
        .segments
        .iter()
        .rev()
        .find(|(_, coverage)| match coverage {
            Coverage::Complete => true,
            Coverage::Partial { end } => *end as usize >= SEGMENT_HEADER_LEN,
        });
    let Some((segment, _)) = newest else {
        return Ok(None);
    };
    let Some(bytes) =
        fetch_wal(source, journals, component, &segment.file_name(size), size).await?
    else {
        return Ok(None);
    };
    Ok(SegmentHeader::parse(&bytes))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dr_core::{ArchiveSink, JournalSink};
    use dr_storage::{InitOptions, MemoryBackend, Repository};

    use super::*;
    use crate::wal::DEFAULT_SEGMENT_SIZE;

    const SIZE: WalSegmentSize = DEFAULT_SEGMENT_SIZE;

    fn seg(timeline: u32, number: u64) -> WalSegment {
        WalSegment { timeline, number }
    }

    #[test]
    fn names_follow_the_convention() {
        let cases = [
            (ArchivedWal::Segment(seg(1, 3)), "000000010000000000000003"),
            (ArchivedWal::History(2), "00000002.history"),
            (
                ArchivedWal::Piece {
                    segment: seg(1, 3),
                    start: 0,
                    end: 0xA000,
                },
                "000000010000000000000003.partial.00000000-0000A000",
            ),
            (
                ArchivedWal::Piece {
                    segment: seg(0x1A, 0x1FF),
                    start: 0xA000,
                    end: 0x0100_0000,
                },
                "0000001A00000001000000FF.partial.0000A000-01000000",
            ),
        ];
        for (wal, name) in cases {
            assert_eq!(wal.name(SIZE).as_str(), name);
            assert_eq!(ArchivedWal::parse(name, SIZE), Some(wal), "{name}");
        }
        for bad in [
            "000000010000000000000003.partial",
            "000000010000000000000003.partial.0000a000-0000B000",
            "000000010000000000000003.partial.0000B000-0000A000",
            "000000010000000000000003.partial.00000000-01000001",
            "000000010000000000000003.partial.0000000-0000A000",
            "000000010000000000000003.00000028.backup",
            "00000001000000000000000a",
            "0000000a.history",
            "README",
        ] {
            assert_eq!(ArchivedWal::parse(bad, SIZE), None, "{bad}");
        }
    }

    #[test]
    fn chains_follow_contiguous_pieces() {
        assert_eq!(chain(&[]), vec![]);
        assert_eq!(chain(&[(10, 20)]), vec![]);
        assert_eq!(
            chain(&[(20, 30), (0, 10), (10, 20), (40, 50)]),
            vec![(0, 10), (10, 20), (20, 30)]
        );
        // Overlaps left by a retried store: the furthest reach wins.
        assert_eq!(
            chain(&[(0, 10), (0, 15), (10, 18), (15, 16), (18, 20)]),
            vec![(0, 15), (10, 18), (18, 20)]
        );
    }

    async fn repo() -> Repository {
        let options = InitOptions::unencrypted();
        Repository::init(Arc::new(MemoryBackend::new()), options)
            .await
            .unwrap()
    }

    async fn put(repo: &Repository, component: &ComponentId, wal: ArchivedWal, data: &[u8]) {
        repo.put_segment(component, &wal.name(SIZE), &mut &data[..])
            .await
            .unwrap();
    }

    /// Each listed segment and its coverage, in order.
    fn coverage(listing: &ArchiveListing) -> Vec<(WalSegment, Coverage)> {
        listing.segments.iter().map(|(s, c)| (*s, *c)).collect()
    }

    /// A segment's bytes: a long page header, then a pattern.
    fn segment_bytes(system_id: u64) -> Vec<u8> {
        let mut data: Vec<u8> = (0..SIZE.bytes()).map(|i| (i % 251) as u8 + 1).collect();
        data[..2].copy_from_slice(&0xD110u16.to_le_bytes());
        data[2..4].copy_from_slice(&0x0006u16.to_le_bytes());
        data[24..32].copy_from_slice(&system_id.to_le_bytes());
        data[32..36].copy_from_slice(&(SIZE.bytes() as u32).to_le_bytes());
        data
    }

    #[tokio::test]
    async fn listing_and_fetching_assemble_pieces() {
        let repo = repo().await;
        let component: ComponentId = "postgres/main".parse().unwrap();
        let data = segment_bytes(7);
        let piece = |segment, start: u32, end: u32| ArchivedWal::Piece {
            segment,
            start,
            end,
        };
        // Segment 1 complete in pieces, segment 2 complete (with its
        // redundant pieces), segment 3 in pieces with an overlap, segment 4
        // missing its first piece.
        let half = (SIZE.bytes() / 2) as u32;
        let end = SIZE.bytes() as u32;
        put(
            &repo,
            &component,
            piece(seg(1, 1), 0, half),
            &data[..half as usize],
        )
        .await;
        put(
            &repo,
            &component,
            piece(seg(1, 1), half, end),
            &data[half as usize..],
        )
        .await;
        put(&repo, &component, ArchivedWal::Segment(seg(1, 2)), &data).await;
        put(&repo, &component, piece(seg(1, 2), 0, 100), &data[..100]).await;
        put(
            &repo,
            &component,
            piece(seg(1, 3), 0, 0x2000),
            &data[..0x2000],
        )
        .await;
        put(
            &repo,
            &component,
            piece(seg(1, 3), 0x1000, 0x3000),
            &data[0x1000..0x3000],
        )
        .await;
        put(
            &repo,
            &component,
            piece(seg(1, 3), 0x2000, 0x2800),
            &data[0x2000..0x2800],
        )
        .await;
        put(
            &repo,
            &component,
            piece(seg(1, 3), 0x4000, 0x5000),
            &data[0x4000..0x5000],
        )
        .await;
        put(
            &repo,
            &component,
            piece(seg(1, 4), 0x10, 0x20),
            &data[0x10..0x20],
        )
        .await;
        put(
            &repo,
            &component,
            ArchivedWal::History(2),
            b"1\t0/3000000\tpromoted\n",
        )
        .await;
        repo.put_segment(
            &component,
            &"000000010000000000000002.00000028.backup".parse().unwrap(),
            &mut &b"START WAL LOCATION"[..],
        )
        .await
        .unwrap();

        let listing = list_archive(&repo, None, &component, SIZE).await.unwrap();
        assert_eq!(
            coverage(&listing),
            [
                (seg(1, 1), Coverage::Complete),
                (seg(1, 2), Coverage::Complete),
                (seg(1, 3), Coverage::Partial { end: 0x3000 }),
                (seg(1, 4), Coverage::Partial { end: 0 }),
            ]
        );
        assert_eq!(listing.complete_in_pieces, BTreeSet::from([seg(1, 1)]));
        assert_eq!(listing.histories, BTreeSet::from([2]));
        assert_eq!(listing.latest_timeline(), Some(1));
        assert_eq!(listing.end_of(1, SIZE), Some(seg(1, 4).start(SIZE)));
        assert_eq!(listing.end_of(2, SIZE), None);

        for complete in ["000000010000000000000001", "000000010000000000000002"] {
            let fetched = fetch_wal(&repo, None, &component, complete, SIZE)
                .await
                .unwrap()
                .unwrap();
            assert!(fetched == data, "{complete} differs");
        }
        let partial = fetch_wal(&repo, None, &component, "000000010000000000000003", SIZE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(partial.len() as u64, SIZE.bytes());
        assert_eq!(&partial[..0x3000], &data[..0x3000]);
        assert!(partial[0x3000..].iter().all(|&b| b == 0));
        for missing in [
            "000000010000000000000004",
            "000000010000000000000005",
            "00000003.history",
        ] {
            assert_eq!(
                fetch_wal(&repo, None, &component, missing, SIZE)
                    .await
                    .unwrap(),
                None,
                "{missing}"
            );
        }
        let history = fetch_wal(&repo, None, &component, "00000002.history", SIZE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&history[..], b"1\t0/3000000\tpromoted\n");
        let backup = fetch_wal(
            &repo,
            None,
            &component,
            "000000010000000000000002.00000028.backup",
            SIZE,
        )
        .await
        .unwrap();
        assert_eq!(backup.as_deref(), Some(&b"START WAL LOCATION"[..]));
        let err = fetch_wal(&repo, None, &component, "../etc/passwd", SIZE)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), dr_core::ErrorKind::InvalidInput);

        let header = archived_header(&repo, None, &component, &listing, SIZE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            header,
            SegmentHeader {
                system_id: 7,
                segment_size: SIZE.bytes() as u32
            }
        );
    }

    #[tokio::test]
    async fn journal_records_are_read_like_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(dr_storage::FsBackend::new(dir.path()).unwrap());
        let repo = Repository::init(backend, InitOptions::unencrypted())
            .await
            .unwrap();
        let journals = repo.segment_journals().unwrap();
        let with = Some(&journals as &dyn JournalSource);
        let component: ComponentId = "postgres/main".parse().unwrap();
        let data = segment_bytes(7);
        let name = |segment| ArchivedWal::Segment(segment).name(SIZE);
        let capacity = SIZE.bytes() + SIZE.bytes() / 8;
        let open = |segment| {
            let (journals, component) = (&journals, &component);
            async move {
                journals
                    .open_journal(component, &name(segment), capacity)
                    .await
                    .unwrap()
            }
        };
        // Segment 1: a piece object, then journal records (one overlapping
        // it, as after a restart), to the end. Segment 2: records up to
        // 0x5000; segment 3 stored whole, its journal left behind; segment
        // 4: an empty journal, opened ahead of need.
        let end = SIZE.bytes();
        put(
            &repo,
            &component,
            ArchivedWal::Piece {
                segment: seg(1, 1),
                start: 0,
                end: 0x2000,
            },
            &data[..0x2000],
        )
        .await;
        let mut journal = open(seg(1, 1)).await;
        journal.append(0x1000, &data[0x1000..0x8000]).await.unwrap();
        journal
            .append(0x8000, &data[0x8000..end as usize])
            .await
            .unwrap();
        let mut journal = open(seg(1, 2)).await;
        journal.append(0, &data[..0x3000]).await.unwrap();
        journal.append(0x3000, &data[0x3000..0x5000]).await.unwrap();
        put(&repo, &component, ArchivedWal::Segment(seg(1, 3)), &data).await;
        let mut journal = open(seg(1, 3)).await;
        journal.append(0, &data[..0x100]).await.unwrap();
        drop(open(seg(1, 4)).await);

        // Not handed the journals, a listing sees only what is stored as
        // segments: segment 1's first piece, and segment 3.
        let without = list_archive(&repo, None, &component, SIZE).await.unwrap();
        assert_eq!(
            coverage(&without),
            [
                (seg(1, 1), Coverage::Partial { end: 0x2000 }),
                (seg(1, 3), Coverage::Complete),
            ]
        );
        assert!(without.journals.is_empty());

        let listing = list_archive(&repo, with, &component, SIZE).await.unwrap();
        assert_eq!(
            coverage(&listing),
            [
                (seg(1, 1), Coverage::Complete),
                (seg(1, 2), Coverage::Partial { end: 0x5000 }),
                (seg(1, 3), Coverage::Complete),
            ]
        );
        assert_eq!(listing.complete_in_pieces, BTreeSet::from([seg(1, 1)]));
        assert_eq!(
            listing.journals,
            BTreeSet::from([seg(1, 1), seg(1, 2), seg(1, 3), seg(1, 4)])
        );
        assert_eq!(listing.end_of(1, SIZE), Some(seg(1, 3).end(SIZE)));

        let first = fetch_wal(&repo, with, &component, "000000010000000000000001", SIZE)
            .await
            .unwrap()
            .unwrap();
        assert!(first == data, "segment 1 differs");
        let second = fetch_wal(&repo, with, &component, "000000010000000000000002", SIZE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&second[..0x5000], &data[..0x5000]);
        assert!(second[0x5000..].iter().all(|&b| b == 0));
        assert_eq!(
            fetch_wal(&repo, with, &component, "000000010000000000000004", SIZE)
                .await
                .unwrap(),
            None
        );

        // A journal damaged before a whole record is an error, not less WAL.
        let path = dir
            .path()
            .join("journal/postgres/main/000000010000000000000002");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = list_archive(&repo, with, &component, SIZE)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), dr_core::ErrorKind::Corrupt, "{err}");
        let err = fetch_wal(&repo, with, &component, "000000010000000000000002", SIZE)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), dr_core::ErrorKind::Corrupt, "{err}");
    }

    #[tokio::test]
    async fn wrong_sizes_are_corrupt() {
        let repo = repo().await;
        let component: ComponentId = "postgres/main".parse().unwrap();
        put(&repo, &component, ArchivedWal::Segment(seg(1, 2)), b"short").await;
        let err = fetch_wal(&repo, None, &component, "000000010000000000000002", SIZE)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), dr_core::ErrorKind::Corrupt);
        let piece = ArchivedWal::Piece {
            segment: seg(1, 3),
            start: 0,
            end: 10,
        };
        put(&repo, &component, piece, b"0123").await;
        let err = fetch_wal(&repo, None, &component, "000000010000000000000003", SIZE)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), dr_core::ErrorKind::Corrupt);
    }

    #[test]
    fn segment_headers_are_read_in_either_byte_order() {
        let le = segment_bytes(0x0102_0304_0506_0708);
        assert_eq!(
            SegmentHeader::parse(&le),
            Some(SegmentHeader {
                system_id: 0x0102_0304_0506_0708,
                segment_size: 16 << 20
            })
        );
        let mut be = vec![0u8; 40];
        be[..2].copy_from_slice(&0xD110u16.to_be_bytes());
        be[2..4].copy_from_slice(&0x0002u16.to_be_bytes());
        be[24..32].copy_from_slice(&9u64.to_be_bytes());
        be[32..36].copy_from_slice(&(1u32 << 24).to_be_bytes());
        assert_eq!(SegmentHeader::parse(&be).map(|h| h.system_id), Some(9));
        assert_eq!(SegmentHeader::parse(&[0u8; 40]), None);
        assert_eq!(SegmentHeader::parse(&le[..39]), None);
        let mut short_header = le.clone();
        short_header[2..4].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(SegmentHeader::parse(&short_header), None);
    }

    /// The same archive, its segments listed in reverse: the archive
    /// promises no order.
    struct Reversed(Repository);

    #[dr_core::async_trait]
    impl ArchiveSource for Reversed {
        async fn segments(
            &self,
            component: &ComponentId,
            prefix: &str,
        ) -> dr_core::Result<Vec<SegmentName>> {
            let mut names = self.0.segments(component, prefix).await?;
            names.reverse();
            Ok(names)
        }

        async fn open_segment(
            &self,
            component: &ComponentId,
            name: &SegmentName,
        ) -> dr_core::Result<dr_core::ByteStream> {
            self.0.open_segment(component, name).await
        }

        async fn coverage(
            &self,
            component: &ComponentId,
        ) -> dr_core::Result<Option<dr_core::ArchiveCoverage>> {
            self.0.coverage(component).await
        }
    }

    #[tokio::test]
    async fn listings_and_fetches_go_by_position_not_by_listing_order() {
        let repo = repo().await;
        let pg: ComponentId = "postgres/main".parse().unwrap();
        let whole = segment_bytes(7);
        put(&repo, &pg, ArchivedWal::Segment(seg(1, 1)), &whole).await;
        // Segment 2 in three pieces, stored out of order; segment 3 begun.
        let cuts = [0u32, 0x4000, 0x9000, SIZE.bytes() as u32];
        for i in [2, 0, 1] {
            let (start, end) = (cuts[i], cuts[i + 1]);
            let piece = ArchivedWal::Piece {
                segment: seg(1, 2),
                start,
                end,
            };
            put(&repo, &pg, piece, &whole[start as usize..end as usize]).await;
        }
        let begun = ArchivedWal::Piece {
            segment: seg(2, 3),
            start: 0,
            end: 0x2000,
        };
        put(&repo, &pg, begun, &whole[..0x2000]).await;
        put(
            &repo,
            &pg,
            ArchivedWal::History(2),
            b"1\t0/3000000\tno recovery target\n",
        )
        .await;

        let reversed = Reversed(repo.clone());
        let listed = list_archive(&repo, None, &pg, SIZE).await.unwrap();
        assert_eq!(
            list_archive(&reversed, None, &pg, SIZE).await.unwrap(),
            listed
        );
        assert_eq!(
            coverage(&listed),
            vec![
                (seg(1, 1), Coverage::Complete),
                (seg(1, 2), Coverage::Complete),
                (seg(2, 3), Coverage::Partial { end: 0x2000 }),
            ]
        );
        let name = ArchivedWal::Segment(seg(1, 2)).name(SIZE);
        let fetched = fetch_wal(&reversed, None, &pg, name.as_str(), SIZE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&fetched[..], &whole[..]);
    }
}
