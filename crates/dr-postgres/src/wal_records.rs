//! The records in PostgreSQL 15 WAL that recovery targets stop at.
//!
//! A point-in-time restore asks PostgreSQL to replay archived WAL up to a
//! time or a named restore point; when the archive ends before the target,
//! PostgreSQL only says so at the end of recovery. [`WalRecordReader`]
//! reads the archived segments first and reports the transaction commits
//! and aborts (with their times) and the restore points (with their names)
//! in them, and where the valid WAL ends, so a restore can be refused before
//! it writes anything.
//!
//! The reader does no I/O: it is fed the bytes of consecutive segments and
//! walks every record the way PostgreSQL's `xlogreader.c` does. The layout
//! in brief:
//!
//! - WAL is split into pages (`XLOG_BLCKSZ`, 8 KiB by default), each with a
//!   header: 24 bytes, or 40 on the first page of a segment, which also holds
//!   the system identifier, the segment size and the page size.
//! - Records start on 8-byte boundaries and may continue over any number of
//!   pages and segments; a page that begins with the rest of a record says so
//!   (`XLP_FIRST_IS_CONTRECORD`) and how much of it is left (`xlp_rem_len`).
//! - A record is a 24-byte header (`XLogRecord`: total length, transaction
//!   id, the previous record's position, info bits, resource manager, CRC),
//!   then block-reference headers, then the block data and last the record's
//!   "main data".
//!
//! Valid WAL ends, as in PostgreSQL, at the first page or record that does
//! not check out (zeros, a recycled page, a checksum mismatch, a broken link
//! to the previous record); that is not an error. Pages of another cluster,
//! and records whose checksum is right but whose layout is not, are errors.
//!
//! WAL is read in little-endian byte order, the order of every platform
//! drkit runs on.

use dr_core::Lsn;
use jiff::Timestamp;

use crate::wal::WalSegmentSize;

/// `XLOG_PAGE_MAGIC` of PostgreSQL 15.
const PAGE_MAGIC: u16 = 0xD110;
/// The page continues a record from the previous page.
const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// The page has the long header (the first page of a segment).
const XLP_LONG_HEADER: u16 = 0x0002;
/// The record the previous page left unfinished was abandoned (a crash);
/// the page starts a new record instead.
const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
const XLP_ALL_FLAGS: u16 = 0x000F;
/// `SizeOfXLogShortPHD` and `SizeOfXLogLongPHD`, both MAXALIGNed.
const SHORT_PAGE_HEADER: usize = 24;
const LONG_PAGE_HEADER: usize = 40;

/// `SizeOfXLogRecord`, and where `xl_crc` sits in it.
const RECORD_HEADER: usize = 24;
const CRC_OFFSET: usize = 20;
/// PostgreSQL 15 cannot allocate a record buffer larger than `MaxAllocSize`.
const MAX_RECORD_LEN: usize = 0x3FFF_FFFF;

const RM_XLOG_ID: u8 = 0;
const RM_XACT_ID: u8 = 1;
/// The built-in resource managers of PostgreSQL 15 end at `RM_LOGICALMSG_ID`;
/// custom ones start at `RM_MIN_CUSTOM_ID`.
const RM_MAX_BUILTIN_ID: u8 = 21;
const RM_MIN_CUSTOM_ID: u8 = 128;

const XLOG_SWITCH: u8 = 0x40;
const XLOG_RESTORE_POINT: u8 = 0x70;
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_COMMIT: u8 = 0x00;
const XLOG_XACT_ABORT: u8 = 0x20;
const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;

const XLR_MAX_BLOCK_ID: u8 = 32;
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
const BKPBLOCK_HAS_DATA: u8 = 0x20;
const BKPBLOCK_SAME_REL: u8 = 0x80;
const BKPIMAGE_HAS_HOLE: u8 = 0x01;
/// `BKPIMAGE_COMPRESS_PGLZ | _LZ4 | _ZSTD` (PostgreSQL 15's values).
const BKPIMAGE_COMPRESSED: u8 = 0x04 | 0x08 | 0x10;
/// `sizeof(RelFileNode)`.
const REL_FILE_NODE: usize = 12;

/// `xl_restore_point`: a `TimestampTz` and a 64-byte name.
const RESTORE_POINT_NAME: usize = 64;
/// PostgreSQL's epoch, 2000-01-01 00:00 UTC, in Unix microseconds.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A record that recovery targets stop at, with where it is in the WAL.
///
/// `start` is the record's position (what `pg_waldump` prints as `lsn`),
/// `end` the position after it, rounded up to the next record's 8-byte
/// boundary, as PostgreSQL reports record ends (`pg_create_restore_point`
/// returns its record's `end`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalRecordEvent {
    /// A transaction committed (`XLOG_XACT_COMMIT`, `XLOG_XACT_COMMIT_PREPARED`).
    Commit {
        /// The record's position.
        start: Lsn,
        /// The position after the record.
        end: Lsn,
        /// The record's transaction id (`xl_xid`). For `COMMIT PREPARED` this
        /// is the committing session's, not the prepared transaction's.
        xid: u32,
        /// Whether this finished a prepared transaction (`COMMIT PREPARED`).
        prepared: bool,
        /// When it committed (`xact_time`).
        time: Timestamp,
    },
    /// A transaction rolled back (`XLOG_XACT_ABORT`, `XLOG_XACT_ABORT_PREPARED`).
    Abort {
        /// The record's position.
        start: Lsn,
        /// The position after the record.
        end: Lsn,
        /// The record's transaction id (`xl_xid`), as for [`WalRecordEvent::Commit`].
        xid: u32,
        /// Whether this finished a prepared transaction (`ROLLBACK PREPARED`).
        prepared: bool,
        /// When it rolled back (`xact_time`).
        time: Timestamp,
    },
    /// A named restore point (`pg_create_restore_point`, `XLOG_RESTORE_POINT`).
    RestorePoint {
        /// The record's position.
        start: Lsn,
        /// The position after the record: what `pg_create_restore_point` returned.
        end: Lsn,
        /// Its name (`recovery_target_name`); bytes that are not UTF-8 are replaced.
        name: String,
        /// When it was created.
        time: Timestamp,
    },
}

impl WalRecordEvent {
    /// The record's position.
    pub fn start(&self) -> Lsn {
        match self {
            Self::Commit { start, .. }
            | Self::Abort { start, .. }
            | Self::RestorePoint { start, .. } => *start,
        }
    }

    /// The position after the record.
    pub fn end(&self) -> Lsn {
        match self {
            Self::Commit { end, .. } | Self::Abort { end, .. } | Self::RestorePoint { end, .. } => {
                *end
            }
        }
    }

    /// The time the record carries.
    pub fn time(&self) -> Timestamp {
        match self {
            Self::Commit { time, .. }
            | Self::Abort { time, .. }
            | Self::RestorePoint { time, .. } => *time,
        }
    }
}

/// Why WAL bytes could not be read. Running into the end of the valid WAL
/// is not one of them: see [`WalRecordReader::end_reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalReadError {
    /// The bytes are not the next segment: the caller skipped or repeated
    /// one, started off a segment boundary, or passed more than a segment.
    #[error("WAL bytes at {start}: {reason}")]
    Input {
        /// Where the caller said the bytes start.
        start: Lsn,
        /// What is wrong with them.
        reason: String,
    },
    /// A segment from another cluster, another segment or page size, or
    /// another PostgreSQL version than the WAL read so far.
    #[error("WAL page at {page}: {reason}")]
    ForeignPage {
        /// The page's position.
        page: Lsn,
        /// What does not match.
        reason: String,
    },
    /// A record whose checksum is right but whose layout is not, such as
    /// block data running past its end.
    #[error("WAL record at {record}: {reason}")]
    Malformed {
        /// The record's position.
        record: Lsn,
        /// What is wrong with it.
        reason: String,
    },
}

impl WalReadError {
    /// The class of this error: the caller's mistake ([`Input`](Self::Input))
    /// or damaged WAL.
    pub fn kind(&self) -> dr_core::ErrorKind {
        match self {
            Self::Input { .. } => dr_core::ErrorKind::InvalidInput,
            Self::ForeignPage { .. } | Self::Malformed { .. } => dr_core::ErrorKind::Corrupt,
        }
    }
}

/// Reads the commits, aborts and restore points out of consecutive WAL
/// segments, checking every record on the way.
///
/// Feed it whole segments in order with [`feed_segment`](Self::feed_segment);
/// the last may be cut short (a `.partial` file, or one still being written
/// whose tail is zeros). Reading may start at any segment: a record begun in
/// the segment before is skipped. A record that continues into the next
/// segment is reported when that segment is fed.
///
/// ```
/// use dr_postgres::{DEFAULT_SEGMENT_SIZE, WalRecordEvent, WalRecordReader};
///
/// # fn demo(segments: Vec<(dr_core::Lsn, Vec<u8>)>) -> Result<(), dr_postgres::Error> {
/// let mut reader = WalRecordReader::new(DEFAULT_SEGMENT_SIZE);
/// for (start, bytes) in &segments {
///     for event in reader.feed_segment(*start, bytes)? {
///         if let WalRecordEvent::RestorePoint { name, end, .. } = event {
///             println!("restore point {name} ends at {end}");
///         }
///     }
/// }
/// println!("valid WAL ends at {:?}", reader.last_record_end());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct WalRecordReader {
    segment_size: WalSegmentSize,
    /// Learned from the first segment's long page header.
    cluster: Option<Cluster>,
    /// Where the next fed segment must start.
    next_segment: Option<Lsn>,
    cursor: Cursor,
    /// The timeline of the last page read; timelines never go back.
    timeline: u32,
    /// The last valid record's position, which the next one must link to.
    last_record: Option<Lsn>,
    last_record_end: Option<Lsn>,
    /// Why the valid WAL ended, once it has.
    end: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cluster {
    system_id: u64,
    page_size: usize,
}

/// Where the next page's bytes belong.
#[derive(Debug)]
enum Cursor {
    /// Reading started at a segment boundary, possibly inside a record:
    /// skip whatever continues on this page.
    SkipContinuation,
    /// Nothing before this position is read: the rest of a page after a
    /// record that ends it, or the rest of a segment after a WAL switch.
    /// The next record starts after the header of the page at this position.
    SkipTo(Lsn),
    /// A record whose first pages were read.
    Partial(PartialRecord),
}

#[derive(Debug)]
struct PartialRecord {
    start: Lsn,
    total: usize,
    bytes: Vec<u8>,
}

/// How reading a page stops early.
enum Stop {
    /// The valid WAL ends here, for the reason given.
    EndOfWal(String),
    Error(WalReadError),
}

impl From<WalReadError> for Stop {
    fn from(err: WalReadError) -> Self {
        Stop::Error(err)
    }
}

type Step<T> = Result<T, Stop>;

fn end_of_wal<T>(why: String) -> Step<T> {
    Err(Stop::EndOfWal(why))
}

impl WalRecordReader {
    /// A reader of WAL of a cluster whose segments are `segment_size` bytes.
    pub fn new(segment_size: WalSegmentSize) -> Self {
        Self {
            segment_size,
            cluster: None,
            next_segment: None,
            cursor: Cursor::SkipContinuation,
            timeline: 0,
            last_record: None,
            last_record_end: None,
            end: None,
        }
    }

    /// Reads the segment starting at `start`, returning the commits, aborts
    /// and restore points that end in it, in WAL order. `bytes` may be
    /// shorter than a segment only for the last segment read: the WAL ends
    /// where they do.
    ///
    /// Once the valid WAL has ended ([`end_reason`](Self::end_reason)),
    /// further segments are accepted and yield nothing, as PostgreSQL's
    /// recovery would not replay them either.
    ///
    /// # Errors
    /// [`Error::Wal`](crate::Error::Wal) with [`WalReadError::Input`] if `start` is not the start of a segment, not
    /// the segment after the one fed before, or `bytes` are longer than a
    /// segment; [`WalReadError::ForeignPage`] for a segment of another cluster
    /// or PostgreSQL version; [`WalReadError::Malformed`] for a record whose
    /// checksum is right but whose layout is not. After an error the reader
    /// reads nothing more.
    pub fn feed_segment(&mut self, start: Lsn, bytes: &[u8]) -> crate::Result<Vec<WalRecordEvent>> {
        Ok(self.feed(start, bytes)?)
    }

    fn feed(&mut self, start: Lsn, bytes: &[u8]) -> Result<Vec<WalRecordEvent>, WalReadError> {
        self.check_segment(start, bytes.len())?;
        let mut events = Vec::new();
        if self.end.is_some() {
            return Ok(events);
        }
        match self.read_segment(start, bytes, &mut events) {
            Ok(()) => Ok(events),
            Err(Stop::EndOfWal(why)) => {
                self.end = Some(why);
                Ok(events)
            }
            Err(Stop::Error(err)) => {
                self.end = Some(err.to_string());
                Err(err)
            }
        }
    }

    /// The position after the last valid record read (PostgreSQL's
    /// `EndRecPtr`); after a WAL switch, the end of its segment.
    pub fn last_record_end(&self) -> Option<Lsn> {
        self.last_record_end
    }

    /// Why the valid WAL ended, and where, once it has: zeros or a recycled
    /// page where the next page should be, a checksum mismatch, the fed
    /// bytes running out inside a record.
    pub fn end_reason(&self) -> Option<&str> {
        self.end.as_deref()
    }

    fn check_segment(&mut self, start: Lsn, len: usize) -> Result<(), WalReadError> {
        let size = self.segment_size.bytes();
        let input = |reason: String| WalReadError::Input { start, reason };
        if !u64::from(start).is_multiple_of(size) {
            return Err(input(format!("not the start of a {size}-byte segment")));
        }
        if len as u64 > size {
            return Err(input(format!(
                "{len} bytes are more than a segment ({size})"
            )));
        }
        if let Some(expected) = self.next_segment.filter(|next| *next != start) {
            return Err(input(format!(
                "expected the segment starting at {expected}"
            )));
        }
        let next = u64::from(start)
            .checked_add(size)
            .ok_or_else(|| input("the segment ends past the last LSN".into()))?;
        self.next_segment = Some(Lsn::from(next));
        Ok(())
    }

    fn read_segment(
        &mut self,
        start: Lsn,
        bytes: &[u8],
        events: &mut Vec<WalRecordEvent>,
    ) -> Step<()> {
        let page_size = self.check_segment_header(start, bytes)?;
        for (index, page) in bytes.chunks(page_size).enumerate() {
            self.read_page(offset(start, index * page_size), page, events)?;
        }
        if (bytes.len() as u64) < self.segment_size.bytes() {
            return end_of_wal(format!(
                "the WAL bytes end at {}",
                offset(start, bytes.len())
            ));
        }
        Ok(())
    }

    /// Checks the long header on a segment's first page against the cluster
    /// read so far (or learns the cluster from it) and returns the page size.
    fn check_segment_header(&mut self, start: Lsn, bytes: &[u8]) -> Step<usize> {
        let Some(header) = bytes.get(..LONG_PAGE_HEADER) else {
            return end_of_wal(format!(
                "the WAL bytes end at {}",
                offset(start, bytes.len())
            ));
        };
        let magic = le_u16(header, 0);
        if magic != PAGE_MAGIC {
            if self.cluster.is_none() && header.iter().any(|b| *b != 0) {
                return Err(foreign(
                    start,
                    format!("magic {magic:#06X} is not PostgreSQL 15's ({PAGE_MAGIC:#06X})"),
                ));
            }
            return end_of_wal(format!("no WAL page at {start}"));
        }
        if le_u16(header, 2) & XLP_LONG_HEADER == 0 {
            return end_of_wal(format!("no long page header at {start}"));
        }
        let found = Cluster {
            system_id: le_u64(header, 24),
            page_size: le_u32(header, 36) as usize,
        };
        let seg_size = u64::from(le_u32(header, 32));
        if seg_size != self.segment_size.bytes() {
            return Err(foreign(
                start,
                format!(
                    "segment size {seg_size}, expected {}",
                    self.segment_size.bytes()
                ),
            ));
        }
        match self.cluster {
            None => {
                let size = found.page_size;
                if !(size.is_power_of_two() && (1024..=65536).contains(&size)) {
                    return Err(foreign(
                        start,
                        format!("page size {size} is not a valid XLOG_BLCKSZ"),
                    ));
                }
                self.cluster = Some(found);
            }
            Some(cluster) if cluster.system_id != found.system_id => {
                return Err(foreign(
                    start,
                    format!(
                        "system identifier {}, expected {}",
                        found.system_id, cluster.system_id
                    ),
                ));
            }
            Some(cluster) if cluster.page_size != found.page_size => {
                return Err(foreign(
                    start,
                    format!(
                        "page size {}, expected {}",
                        found.page_size, cluster.page_size
                    ),
                ));
            }
            Some(_) => {}
        }
        Ok(found.page_size)
    }

    fn read_page(
        &mut self,
        page_lsn: Lsn,
        page: &[u8],
        events: &mut Vec<WalRecordEvent>,
    ) -> Step<()> {
        if let Cursor::SkipTo(next) = self.cursor
            && page_lsn < next
        {
            return Ok(());
        }
        let header = self.page_header(page_lsn, page)?;
        let page_size = page_size(self.cluster);
        let mut at = header.len;
        match std::mem::replace(&mut self.cursor, Cursor::SkipTo(page_lsn)) {
            Cursor::SkipContinuation if header.continues() => {
                let rest = align(header.rem_len as usize);
                if rest >= page_size - header.len {
                    self.cursor = Cursor::SkipContinuation;
                    return Ok(());
                }
                at += rest;
            }
            Cursor::Partial(partial) if header.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD == 0 => {
                match self.continue_record(partial, page_lsn, page, &header, events)? {
                    Some(next) => at = next,
                    None => return Ok(()),
                }
            }
            // A crash cut the record short; this page starts anew.
            Cursor::Partial(_) => {}
            Cursor::SkipContinuation | Cursor::SkipTo(_) if header.continues() => {
                return end_of_wal(format!(
                    "the page at {page_lsn} continues a record where a new one should start"
                ));
            }
            Cursor::SkipContinuation | Cursor::SkipTo(_) => {}
        }
        self.read_records(page_lsn, page, at, events)
    }

    /// Validates a page's header as `XLogReaderValidatePageHeader` does.
    fn page_header(&mut self, page_lsn: Lsn, page: &[u8]) -> Step<PageHeader> {
        let Some(short) = page.get(..SHORT_PAGE_HEADER) else {
            return end_of_wal(format!(
                "the WAL bytes end at {}",
                offset(page_lsn, page.len())
            ));
        };
        let header = PageHeader {
            info: le_u16(short, 2),
            rem_len: le_u32(short, 16),
            len: if le_u16(short, 2) & XLP_LONG_HEADER != 0 {
                LONG_PAGE_HEADER
            } else {
                SHORT_PAGE_HEADER
            },
        };
        let timeline = le_u32(short, 4);
        let invalid = if short.iter().all(|b| *b == 0) {
            Some("zeros")
        } else if le_u16(short, 0) != PAGE_MAGIC {
            Some("a wrong magic number")
        } else if header.info & !XLP_ALL_FLAGS != 0 {
            Some("invalid flags")
        } else if le_u64(short, 8) != u64::from(page_lsn) {
            Some("another page's address (a recycled segment)")
        } else if timeline < self.timeline {
            Some("an earlier timeline than the page before")
        } else if page.len() < header.len {
            Some("a cut-off header")
        } else {
            None
        };
        if let Some(what) = invalid {
            return end_of_wal(format!("the page at {page_lsn} has {what}"));
        }
        self.timeline = timeline;
        Ok(header)
    }

    /// Adds a page's part of a record begun on an earlier page; returns where
    /// the next record starts on this page, if the record ended on it.
    fn continue_record(
        &mut self,
        mut partial: PartialRecord,
        page_lsn: Lsn,
        page: &[u8],
        header: &PageHeader,
        events: &mut Vec<WalRecordEvent>,
    ) -> Step<Option<usize>> {
        let left = partial.total - partial.bytes.len();
        if !header.continues() || header.rem_len as usize != left {
            return end_of_wal(format!(
                "the page at {page_lsn} does not continue the record at {}",
                partial.start
            ));
        }
        let on_page = left.min(page_size(self.cluster) - header.len);
        let Some(piece) = page.get(header.len..header.len + on_page) else {
            return end_of_wal(format!(
                "the WAL bytes end inside the record at {}",
                partial.start
            ));
        };
        let had_header = partial.bytes.len() >= RECORD_HEADER;
        partial.bytes.extend_from_slice(piece);
        if !had_header && partial.bytes.len() >= RECORD_HEADER {
            self.check_record_header(partial.start, &partial.bytes)?;
        }
        if partial.bytes.len() < partial.total {
            self.cursor = Cursor::Partial(partial);
            return Ok(None);
        }
        let end = offset(page_lsn, header.len + on_page);
        let next = self.finish_record(partial.start, &partial.bytes, end, events)?;
        Ok(self.next_on_page(page_lsn, next))
    }

    /// Reads the records that start on a page from `at` on.
    fn read_records(
        &mut self,
        page_lsn: Lsn,
        page: &[u8],
        mut at: usize,
        events: &mut Vec<WalRecordEvent>,
    ) -> Step<()> {
        let page_size = page_size(self.cluster);
        while at < page_size {
            let start = offset(page_lsn, at);
            let cut_off = || format!("the WAL bytes end inside the record at {start}");
            let Some(len) = page.get(at..at + 4) else {
                return end_of_wal(cut_off());
            };
            let total = le_u32(len, 0) as usize;
            if !(RECORD_HEADER..=MAX_RECORD_LEN).contains(&total) {
                return end_of_wal(format!("no record at {start} (length {total})"));
            }
            if at + RECORD_HEADER <= page_size {
                let Some(header) = page.get(at..at + RECORD_HEADER) else {
                    return end_of_wal(cut_off());
                };
                self.check_record_header(start, header)?;
            }
            if total > page_size - at {
                let Some(first) = page.get(at..page_size) else {
                    return end_of_wal(cut_off());
                };
                self.cursor = Cursor::Partial(PartialRecord {
                    start,
                    total,
                    bytes: first.to_vec(),
                });
                return Ok(());
            }
            let Some(record) = page.get(at..at + total) else {
                return end_of_wal(cut_off());
            };
            let next = self.finish_record(start, record, offset(start, total), events)?;
            match self.next_on_page(page_lsn, next) {
                Some(next) => at = next,
                None => return Ok(()),
            }
        }
        self.cursor = Cursor::SkipTo(offset(page_lsn, page_size));
        Ok(())
    }

    /// The page offset of `next` if it is on the page at `page_lsn`;
    /// otherwise the reader skips to it.
    fn next_on_page(&mut self, page_lsn: Lsn, next: Lsn) -> Option<usize> {
        let at = (u64::from(next) - u64::from(page_lsn)) as usize;
        if at < page_size(self.cluster) {
            Some(at)
        } else {
            self.cursor = Cursor::SkipTo(next);
            None
        }
    }

    /// Checks a record header as `ValidXLogRecordHeader` does: a known
    /// resource manager and a link to the record before.
    fn check_record_header(&self, start: Lsn, header: &[u8]) -> Step<()> {
        let rmid = header[17];
        if rmid > RM_MAX_BUILTIN_ID && rmid < RM_MIN_CUSTOM_ID {
            return end_of_wal(format!("the record at {start} has resource manager {rmid}"));
        }
        let prev = Lsn::from(le_u64(header, 8));
        let linked = match self.last_record {
            Some(last) => prev == last,
            // The first record read: all that is known is that it is later.
            None => prev < start,
        };
        if !linked {
            return end_of_wal(format!(
                "the record at {start} links to {prev}, not to the record before"
            ));
        }
        Ok(())
    }

    /// Checks a whole record's CRC and layout, reports it if it is an event,
    /// and returns where the next record starts. `end` is the position after
    /// its last byte.
    fn finish_record(
        &mut self,
        start: Lsn,
        record: &[u8],
        end: Lsn,
        events: &mut Vec<WalRecordEvent>,
    ) -> Step<Lsn> {
        let stored = le_u32(record, CRC_OFFSET);
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&record[RECORD_HEADER..]),
            &record[..CRC_OFFSET],
        );
        if crc != stored {
            return end_of_wal(format!("checksum mismatch in the record at {start}"));
        }
        let end = Lsn::from(align_u64(u64::from(end)));
        let main = main_data(start, record)?;
        let (xid, info, rmid) = (le_u32(record, 4), record[16], record[17]);
        if let Some(event) = event(start, end, xid, info, rmid, main)? {
            events.push(event);
        }
        let next = if rmid == RM_XLOG_ID && info & 0xF0 == XLOG_SWITCH {
            // The rest of the segment is unused: the next record starts the next one.
            let size = self.segment_size.bytes();
            Lsn::from(u64::from(end).div_ceil(size) * size)
        } else {
            end
        };
        self.last_record = Some(start);
        self.last_record_end = Some(next);
        Ok(next)
    }
}

struct PageHeader {
    info: u16,
    rem_len: u32,
    len: usize,
}

impl PageHeader {
    fn continues(&self) -> bool {
        self.info & XLP_FIRST_IS_CONTRECORD != 0
    }
}

/// The record's main data, after walking its block headers as
/// `DecodeXLogRecord` does.
fn main_data(start: Lsn, record: &[u8]) -> Result<&[u8], WalReadError> {
    let malformed = |reason: String| WalReadError::Malformed {
        record: start,
        reason,
    };
    let short = || malformed("its headers run past its end".into());
    let mut fields = Fields(&record[RECORD_HEADER..]);
    let mut blocks = BlockWalk::default();
    // Bytes of block data, page images and main data the headers announce.
    let mut payload = 0u64;
    let mut main_len = 0usize;
    while fields.0.len() as u64 > payload {
        let id = fields.u8().ok_or_else(short)?;
        match id {
            XLR_BLOCK_ID_DATA_SHORT => {
                main_len = usize::from(fields.u8().ok_or_else(short)?);
                payload += main_len as u64;
                break;
            }
            XLR_BLOCK_ID_DATA_LONG => {
                main_len = fields.u32().ok_or_else(short)? as usize;
                payload += main_len as u64;
                break;
            }
            XLR_BLOCK_ID_ORIGIN => {
                fields.take(2).ok_or_else(short)?;
            }
            XLR_BLOCK_ID_TOPLEVEL_XID => {
                fields.take(4).ok_or_else(short)?;
            }
            0..=XLR_MAX_BLOCK_ID => {
                payload += blocks
                    .next(id, &mut fields)
                    .map_err(|why| malformed(why.into()))?;
            }
            other => return Err(malformed(format!("invalid block id {other}"))),
        }
    }
    let left = fields.0.len();
    if left as u64 != payload {
        return Err(malformed(format!(
            "its headers announce {payload} bytes of data, {left} follow them"
        )));
    }
    Ok(&record[record.len() - main_len..])
}

/// The block references of one record, in order.
#[derive(Default)]
struct BlockWalk {
    last_id: Option<u8>,
    has_rel: bool,
}

impl BlockWalk {
    /// Walks one `XLogRecordBlockHeader` after its id; returns the bytes of
    /// data and page image it announces.
    fn next(&mut self, id: u8, fields: &mut Fields<'_>) -> Result<u64, &'static str> {
        const SHORT: &str = "its headers run past its end";
        if self.last_id.is_some_and(|last| id <= last) {
            return Err("its block ids are out of order");
        }
        self.last_id = Some(id);
        let flags = fields.u8().ok_or(SHORT)?;
        let data_len = fields.u16().ok_or(SHORT)?;
        if (flags & BKPBLOCK_HAS_DATA != 0) != (data_len != 0) {
            return Err("a block's data length disagrees with its flags");
        }
        let mut bytes = u64::from(data_len);
        if flags & BKPBLOCK_HAS_IMAGE != 0 {
            let image_len = fields.u16().ok_or(SHORT)?;
            let _hole_offset = fields.u16().ok_or(SHORT)?;
            let image_info = fields.u8().ok_or(SHORT)?;
            if image_info & BKPIMAGE_HAS_HOLE != 0 && image_info & BKPIMAGE_COMPRESSED != 0 {
                let _hole_length = fields.u16().ok_or(SHORT)?;
            }
            bytes += u64::from(image_len);
        }
        if flags & BKPBLOCK_SAME_REL == 0 {
            fields.take(REL_FILE_NODE).ok_or(SHORT)?;
            self.has_rel = true;
        } else if !self.has_rel {
            return Err("a block refers to the previous relation, but there is none");
        }
        let _block_number = fields.u32().ok_or(SHORT)?;
        Ok(bytes)
    }
}

/// The event a valid record is, if it is one.
fn event(
    start: Lsn,
    end: Lsn,
    xid: u32,
    info: u8,
    rmid: u8,
    main: &[u8],
) -> Result<Option<WalRecordEvent>, WalReadError> {
    let malformed = |reason: &str| WalReadError::Malformed {
        record: start,
        reason: reason.into(),
    };
    let time = || {
        let micros = main.get(..8).map(|b| le_i64(b, 0));
        micros
            .and_then(pg_timestamp)
            .ok_or_else(|| malformed("its main data holds no valid time"))
    };
    let event = match (rmid, info) {
        (RM_XACT_ID, info) => {
            let op = info & XLOG_XACT_OPMASK;
            let prepared = matches!(op, XLOG_XACT_COMMIT_PREPARED | XLOG_XACT_ABORT_PREPARED);
            match op {
                XLOG_XACT_COMMIT | XLOG_XACT_COMMIT_PREPARED => WalRecordEvent::Commit {
                    start,
                    end,
                    xid,
                    prepared,
                    time: time()?,
                },
                XLOG_XACT_ABORT | XLOG_XACT_ABORT_PREPARED => WalRecordEvent::Abort {
                    start,
                    end,
                    xid,
                    prepared,
                    time: time()?,
                },
                _ => return Ok(None),
            }
        }
        (RM_XLOG_ID, info) if info & 0xF0 == XLOG_RESTORE_POINT => {
            let name = main
                .get(8..8 + RESTORE_POINT_NAME)
                .and_then(|name| {
                    name.split(|b| *b == 0)
                        .next()
                        .filter(|n| n.len() < name.len())
                })
                .ok_or_else(|| malformed("its main data holds no NUL-terminated name"))?;
            WalRecordEvent::RestorePoint {
                start,
                end,
                name: String::from_utf8_lossy(name).into_owned(),
                time: time()?,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(event))
}

/// A `TimestampTz` (microseconds since 2000-01-01 UTC) as a timestamp, if
/// it is in jiff's range (PostgreSQL's `infinity` is not).
fn pg_timestamp(micros: i64) -> Option<Timestamp> {
    let unix = micros.checked_add(PG_EPOCH_UNIX_MICROS)?;
    Timestamp::from_microsecond(unix).ok()
}

/// Unaligned little-endian fields, front to back.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| le_u16(b, 0))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| le_u32(b, 0))
    }
}

fn foreign(page: Lsn, reason: String) -> Stop {
    Stop::Error(WalReadError::ForeignPage { page, reason })
}

fn page_size(cluster: Option<Cluster>) -> usize {
    // Pages are only read after the segment's long header set the cluster.
    cluster.map_or(usize::MAX, |c| c.page_size)
}

fn offset(lsn: Lsn, by: usize) -> Lsn {
    Lsn::from(u64::from(lsn) + by as u64)
}

/// MAXALIGN: records start on 8-byte boundaries.
fn align(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn align_u64(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

// The callers slice first; these read fixed offsets inside those slices.
fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn le_i64(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SEG: u64 = 1 << 20;
    const PAGE: u64 = 8192;
    const SYSTEM_ID: u64 = 7_345_012_345_678_901_234;

    fn segment_size() -> WalSegmentSize {
        WalSegmentSize::new(SEG).unwrap()
    }

    fn lsn(value: u64) -> Lsn {
        Lsn::from(value)
    }

    /// Writes WAL as PostgreSQL lays it out: page headers (long ones at
    /// segment starts), records on 8-byte boundaries linked to the record
    /// before and CRC'd, continuations flagged with their remaining length.
    struct WalWriter {
        base: u64,
        wal: Vec<u8>,
        pos: u64,
        prev: u64,
        system_id: u64,
    }

    impl WalWriter {
        fn new(base: u64) -> Self {
            Self {
                base,
                wal: Vec::new(),
                pos: base,
                prev: 0,
                system_id: SYSTEM_ID,
            }
        }

        /// Writes a record; returns its start and (aligned) end.
        fn record(&mut self, rmid: u8, info: u8, xid: u32, body: &[u8]) -> (Lsn, Lsn) {
            let prev = self.prev;
            self.record_linked(prev, rmid, info, xid, body)
        }

        fn record_linked(
            &mut self,
            prev: u64,
            rmid: u8,
            info: u8,
            xid: u32,
            body: &[u8],
        ) -> (Lsn, Lsn) {
            self.pos = align_u64(self.pos);
            if self.pos.is_multiple_of(PAGE) {
                self.page_header(0);
            }
            let start = self.pos;
            let mut record = Vec::new();
            record.extend(((RECORD_HEADER + body.len()) as u32).to_le_bytes());
            record.extend(xid.to_le_bytes());
            record.extend(prev.to_le_bytes());
            record.extend([info, rmid, 0, 0, 0, 0, 0, 0]);
            record.extend_from_slice(body);
            let crc =
                crc32c::crc32c_append(crc32c::crc32c(&record[RECORD_HEADER..]), &record[..20]);
            record[CRC_OFFSET..RECORD_HEADER].copy_from_slice(&crc.to_le_bytes());
            let mut rest = &record[..];
            while !rest.is_empty() {
                if self.pos.is_multiple_of(PAGE) {
                    self.page_header(rest.len() as u32);
                }
                let n = rest.len().min((PAGE - self.pos % PAGE) as usize);
                self.put(&rest[..n]);
                rest = &rest[n..];
            }
            self.prev = start;
            (lsn(start), lsn(align_u64(self.pos)))
        }

        fn page_header(&mut self, rem_len: u32) {
            let long = self.pos.is_multiple_of(SEG);
            let mut info = 0;
            if rem_len > 0 {
                info |= XLP_FIRST_IS_CONTRECORD;
            }
            if long {
                info |= XLP_LONG_HEADER;
            }
            let mut header = Vec::new();
            header.extend(PAGE_MAGIC.to_le_bytes());
            header.extend(info.to_le_bytes());
            header.extend(1u32.to_le_bytes());
            header.extend(self.pos.to_le_bytes());
            header.extend(rem_len.to_le_bytes());
            header.extend([0; 4]);
            if long {
                header.extend(self.system_id.to_le_bytes());
                header.extend((SEG as u32).to_le_bytes());
                header.extend((PAGE as u32).to_le_bytes());
            }
            self.put(&header);
        }

        fn put(&mut self, bytes: &[u8]) {
            let at = (self.pos - self.base) as usize;
            if self.wal.len() < at + bytes.len() {
                self.wal.resize(at + bytes.len(), 0);
            }
            self.wal[at..at + bytes.len()].copy_from_slice(bytes);
            self.pos += bytes.len() as u64;
        }

        /// A heap-like record: one block reference with data, then main data.
        fn filler(&mut self, main_len: usize) -> (Lsn, Lsn) {
            let block_data = [7u8; 10];
            let mut body = vec![0, BKPBLOCK_HAS_DATA];
            body.extend(10u16.to_le_bytes());
            body.extend([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]);
            body.extend(42u32.to_le_bytes());
            body.extend(main_header(main_len));
            body.extend(block_data);
            body.extend(vec![9u8; main_len]);
            self.record(10, 0, 0, &body)
        }

        /// A record with only main data, of exactly `total` bytes.
        fn filler_of(&mut self, total: usize) -> (Lsn, Lsn) {
            let short = total - RECORD_HEADER - 2;
            let body = if short <= 255 {
                with_main(&vec![5; short])
            } else {
                let n = total - RECORD_HEADER - 5;
                let mut body = vec![XLR_BLOCK_ID_DATA_LONG];
                body.extend((n as u32).to_le_bytes());
                body.extend(vec![5; n]);
                body
            };
            self.record(21, 0, 0, &body)
        }

        /// Writes fillers until the next record starts `offset` bytes into a page.
        fn move_to_page_offset(&mut self, offset: u64) {
            loop {
                let mut p = align_u64(self.pos);
                if p.is_multiple_of(PAGE) {
                    p += if p.is_multiple_of(SEG) { 40 } else { 24 };
                }
                let here = p % PAGE;
                if here + 32 <= offset {
                    self.filler_of((offset - here) as usize);
                    return;
                }
                if here == offset {
                    return;
                }
                self.filler_of(((PAGE - here) as usize).max(32));
            }
        }

        /// Writes fillers until the position is in the last page of its segment.
        fn move_to_last_page(&mut self) {
            while self.pos % SEG < SEG - PAGE {
                self.filler(4000);
            }
        }

        fn commit(&mut self, xid: u32, time: Timestamp, extra: usize) -> (Lsn, Lsn) {
            let mut main = pg_micros(time).to_le_bytes().to_vec();
            main.extend(vec![0xAB; extra]);
            self.record(RM_XACT_ID, XLOG_XACT_COMMIT, xid, &with_main(&main))
        }

        fn abort(&mut self, xid: u32, time: Timestamp) -> (Lsn, Lsn) {
            let main = pg_micros(time).to_le_bytes();
            self.record(RM_XACT_ID, XLOG_XACT_ABORT, xid, &with_main(&main))
        }

        fn restore_point(&mut self, name: &str, time: Timestamp) -> (Lsn, Lsn) {
            let mut main = pg_micros(time).to_le_bytes().to_vec();
            let mut field = [0u8; RESTORE_POINT_NAME];
            field[..name.len()].copy_from_slice(name.as_bytes());
            main.extend(field);
            self.record(RM_XLOG_ID, XLOG_RESTORE_POINT, 0, &with_main(&main))
        }

        fn switch(&mut self) -> (Lsn, Lsn) {
            let written = self.record(RM_XLOG_ID, XLOG_SWITCH, 0, &[]);
            self.pos = self.pos.div_ceil(SEG) * SEG;
            written
        }

        /// The WAL as whole segments, zeros after the last record.
        fn segments(&self) -> Vec<(Lsn, Vec<u8>)> {
            self.wal
                .chunks(SEG as usize)
                .enumerate()
                .map(|(i, chunk)| {
                    let mut bytes = chunk.to_vec();
                    bytes.resize(SEG as usize, 0);
                    (lsn(self.base + i as u64 * SEG), bytes)
                })
                .collect()
        }
    }

    fn main_header(len: usize) -> Vec<u8> {
        if len < 256 {
            vec![XLR_BLOCK_ID_DATA_SHORT, len as u8]
        } else {
            let mut header = vec![XLR_BLOCK_ID_DATA_LONG];
            header.extend((len as u32).to_le_bytes());
            header
        }
    }

    fn with_main(main: &[u8]) -> Vec<u8> {
        let mut body = main_header(main.len());
        body.extend_from_slice(main);
        body
    }

    fn pg_micros(time: Timestamp) -> i64 {
        time.as_microsecond() - PG_EPOCH_UNIX_MICROS
    }

    fn time(seconds: i64) -> Timestamp {
        Timestamp::from_microsecond(1_780_000_000_000_000 + seconds * 1_000_001).unwrap()
    }

    fn commit(start: Lsn, end: Lsn, xid: u32, at: Timestamp) -> WalRecordEvent {
        WalRecordEvent::Commit {
            start,
            end,
            xid,
            prepared: false,
            time: at,
        }
    }

    /// Feeds every segment to a new reader; returns the events and the reader.
    fn read_all(segments: &[(Lsn, Vec<u8>)]) -> (Vec<WalRecordEvent>, WalRecordReader) {
        let mut reader = WalRecordReader::new(segment_size());
        let mut events = Vec::new();
        for (start, bytes) in segments {
            events.extend(reader.feed_segment(*start, bytes).unwrap());
        }
        (events, reader)
    }

    #[test]
    fn reports_commits_aborts_and_restore_points() {
        let mut w = WalWriter::new(3 * SEG);
        w.filler(100);
        let (c1, c1_end) = w.commit(700, time(1), 0);
        w.filler(300);
        let (a, a_end) = w.abort(701, time(2));
        let (rp, rp_end) = w.restore_point("before-drop", time(3));
        let (c2, c2_end) = w.commit(702, time(4), 40);
        let (events, reader) = read_all(&w.segments());
        assert_eq!(
            events,
            [
                commit(c1, c1_end, 700, time(1)),
                WalRecordEvent::Abort {
                    start: a,
                    end: a_end,
                    xid: 701,
                    prepared: false,
                    time: time(2),
                },
                WalRecordEvent::RestorePoint {
                    start: rp,
                    end: rp_end,
                    name: "before-drop".into(),
                    time: time(3),
                },
                commit(c2, c2_end, 702, time(4)),
            ]
        );
        assert_eq!(events[2].end(), rp_end);
        assert_eq!(events[3].time(), time(4));
        // The zeros after the last record end the WAL cleanly.
        assert_eq!(reader.last_record_end(), Some(c2_end));
        let why = reader.end_reason().unwrap();
        assert!(why.contains(&format!("no record at {c2_end}")), "{why}");
    }

    #[test]
    fn prepared_transactions_are_flagged() {
        let mut w = WalWriter::new(0);
        let main = pg_micros(time(5)).to_le_bytes();
        w.record(RM_XACT_ID, XLOG_XACT_COMMIT_PREPARED, 0, &with_main(&main));
        w.record(RM_XACT_ID, XLOG_XACT_ABORT_PREPARED, 0, &with_main(&main));
        // XLOG_XACT_PREPARE and XLOG_XACT_ASSIGNMENT are not events.
        w.record(RM_XACT_ID, 0x10, 9, &with_main(&main));
        w.record(RM_XACT_ID, 0x50, 9, &with_main(&main));
        let (events, _) = read_all(&w.segments());
        assert!(matches!(
            events[..],
            [
                WalRecordEvent::Commit { prepared: true, .. },
                WalRecordEvent::Abort { prepared: true, .. }
            ]
        ));
    }

    #[test]
    fn records_span_pages() {
        let mut w = WalWriter::new(SEG);
        // A header split over two pages: 8 bytes here, 16 on the next.
        w.move_to_page_offset(PAGE - 8);
        let (split, split_end) = w.commit(800, time(1), 0);
        assert_eq!(u64::from(split) % PAGE, PAGE - 8);
        // A record over three pages.
        let (long, long_end) = w.commit(801, time(2), 20_000);
        assert!(u64::from(long_end) - u64::from(long) > 2 * PAGE);
        // A record ending exactly at a page end; the next starts after the header.
        w.move_to_page_offset(PAGE - 48);
        let (exact, exact_end) = w.commit(802, time(3), 8);
        assert_eq!(u64::from(exact_end) % PAGE, 0);
        let (after, after_end) = w.commit(803, time(4), 0);
        assert_eq!(u64::from(after), u64::from(exact_end) + 24);
        let (events, reader) = read_all(&w.segments());
        assert_eq!(
            events,
            [
                commit(split, split_end, 800, time(1)),
                commit(long, long_end, 801, time(2)),
                commit(exact, exact_end, 802, time(3)),
                commit(after, after_end, 803, time(4)),
            ]
        );
        assert_eq!(reader.last_record_end(), Some(after_end));
    }

    /// WAL whose second segment starts with the rest of a three-page commit.
    fn across_segments() -> (WalWriter, Vec<WalRecordEvent>) {
        let mut w = WalWriter::new(4 * SEG);
        let first = w.commit(900, time(1), 0);
        w.move_to_last_page();
        let spanning = w.commit(901, time(2), 40_000);
        assert!(u64::from(spanning.0) < 5 * SEG && u64::from(spanning.1) > 5 * SEG + 2 * PAGE);
        let rp = w.restore_point("after", time(3));
        let last = w.commit(902, time(4), 0);
        let events = vec![
            commit(first.0, first.1, 900, time(1)),
            commit(spanning.0, spanning.1, 901, time(2)),
            WalRecordEvent::RestorePoint {
                start: rp.0,
                end: rp.1,
                name: "after".into(),
                time: time(3),
            },
            commit(last.0, last.1, 902, time(4)),
        ];
        (w, events)
    }

    #[test]
    fn records_span_segments() {
        let (w, expected) = across_segments();
        let segments = w.segments();
        assert_eq!(segments.len(), 2);
        let mut reader = WalRecordReader::new(segment_size());
        let first = reader.feed_segment(segments[0].0, &segments[0].1).unwrap();
        // The spanning commit is only reported once its end is read.
        assert_eq!(first, expected[..1]);
        let second = reader.feed_segment(segments[1].0, &segments[1].1).unwrap();
        assert_eq!(second, expected[1..]);
    }

    #[test]
    fn reading_from_a_middle_segment_skips_the_continuation() {
        let (w, expected) = across_segments();
        let segments = w.segments();
        let mut reader = WalRecordReader::new(segment_size());
        let events = reader.feed_segment(segments[1].0, &segments[1].1).unwrap();
        assert_eq!(events, expected[2..]);
        assert_eq!(reader.last_record_end(), Some(expected[3].end()));
    }

    #[test]
    fn a_switch_skips_to_the_next_segment() {
        let mut w = WalWriter::new(0);
        w.commit(1, time(1), 0);
        let (_, switch_end) = w.switch();
        let (c, c_end) = w.commit(2, time(2), 0);
        assert_eq!(u64::from(c), SEG + 40);
        let segments = w.segments();
        // Garbage after the switch is not read.
        let mut first = segments[0].clone();
        let at = (u64::from(switch_end) + 100) as usize;
        first.1[at..at + 100].fill(0xEE);
        let mut reader = WalRecordReader::new(segment_size());
        assert_eq!(reader.feed_segment(first.0, &first.1).unwrap().len(), 1);
        assert_eq!(reader.last_record_end(), Some(lsn(SEG)));
        assert_eq!(
            reader.feed_segment(segments[1].0, &segments[1].1).unwrap(),
            [commit(c, c_end, 2, time(2))]
        );
    }

    #[test]
    fn a_bad_checksum_ends_the_wal() {
        let mut w = WalWriter::new(0);
        let (c, c_end) = w.commit(1, time(1), 0);
        let (a, _) = w.abort(2, time(2));
        w.commit(3, time(3), 0);
        let mut segments = w.segments();
        segments[0].1[u64::from(a) as usize + RECORD_HEADER + 3] ^= 1;
        let (events, reader) = read_all(&segments);
        assert_eq!(events, [commit(c, c_end, 1, time(1))]);
        assert_eq!(reader.last_record_end(), Some(c_end));
        let why = reader.end_reason().unwrap();
        assert!(
            why.contains(&format!("checksum mismatch in the record at {a}")),
            "{why}"
        );
    }

    #[test]
    fn a_broken_link_ends_the_wal() {
        let mut w = WalWriter::new(0);
        let (c, c_end) = w.commit(1, time(1), 0);
        let main = pg_micros(time(2)).to_le_bytes();
        let (bad, _) = w.record_linked(12345, RM_XACT_ID, 0, 2, &with_main(&main));
        let (events, reader) = read_all(&w.segments());
        assert_eq!(events, [commit(c, c_end, 1, time(1))]);
        let why = reader.end_reason().unwrap();
        assert!(
            why.contains(&format!("the record at {bad} links to 0/3039")),
            "{why}"
        );
    }

    #[test]
    fn a_cut_off_segment_ends_the_wal() {
        let (w, expected) = across_segments();
        let segments = w.segments();
        let rp = u64::from(expected[2].start()) - 5 * SEG;
        // Cut inside the restore point, inside a page header, and at zero bytes.
        for cut in [rp as usize + 30, PAGE as usize + 10, 0] {
            let mut reader = WalRecordReader::new(segment_size());
            let mut events = reader.feed_segment(segments[0].0, &segments[0].1).unwrap();
            events.extend(
                reader
                    .feed_segment(segments[1].0, &segments[1].1[..cut])
                    .unwrap(),
            );
            let spanning_end = (u64::from(expected[1].end()) - 5 * SEG) as usize;
            let reported = if cut >= spanning_end { 2 } else { 1 };
            assert_eq!(events, expected[..reported], "cut at {cut}");
            // Valid WAL ends where the first record not reported starts.
            assert_eq!(reader.last_record_end(), Some(expected[reported].start()));
            assert!(reader.end_reason().unwrap().contains("end"), "cut at {cut}");
            // The WAL has ended: later segments add nothing.
            let next = reader.feed_segment(lsn(6 * SEG), &segments[1].1).unwrap();
            assert!(next.is_empty());
        }
    }

    #[test]
    fn a_recycled_page_ends_the_wal() {
        let mut w = WalWriter::new(0);
        w.move_to_page_offset(PAGE - 48);
        let (c, c_end) = w.commit(1, time(1), 8);
        assert_eq!(u64::from(c_end), PAGE);
        w.commit(2, time(2), 0);
        let mut segments = w.segments();
        // The second page still holds what an earlier use of the file left.
        let page = &mut segments[0].1[PAGE as usize..];
        page[8..16].copy_from_slice(&(17 * SEG + PAGE).to_le_bytes());
        let (events, reader) = read_all(&segments);
        assert_eq!(events, [commit(c, c_end, 1, time(1))]);
        assert_eq!(reader.last_record_end(), Some(c_end));
        let why = reader.end_reason().unwrap();
        assert!(why.contains("another page's address"), "{why}");
    }

    #[test]
    fn misfed_segments_are_errors() {
        let (w, _) = across_segments();
        let segments = w.segments();
        let mut reader = WalRecordReader::new(segment_size());
        reader.feed_segment(segments[0].0, &segments[0].1).unwrap();
        let err = reader
            .feed_segment(lsn(7 * SEG), &segments[1].1)
            .unwrap_err();
        assert_eq!(err.kind(), dr_core::ErrorKind::InvalidInput);
        assert!(
            err.to_string()
                .contains("expected the segment starting at 0/500000")
        );

        let mut reader = WalRecordReader::new(segment_size());
        assert!(reader.feed_segment(lsn(SEG + 8), &[]).is_err());
        let too_long = vec![0; SEG as usize + 1];
        assert!(reader.feed_segment(lsn(SEG), &too_long).is_err());
        let core = dr_core::Error::from(reader.feed_segment(lsn(3), &[]).unwrap_err());
        assert_eq!(core.kind(), dr_core::ErrorKind::InvalidInput);
    }

    #[test]
    fn another_cluster_is_an_error() {
        let mut w = WalWriter::new(0);
        w.commit(1, time(1), 0);
        w.switch();
        let mut other = WalWriter::new(SEG);
        other.system_id = SYSTEM_ID + 1;
        other.commit(2, time(2), 0);
        let mut reader = WalRecordReader::new(segment_size());
        reader.feed_segment(lsn(0), &w.segments()[0].1).unwrap();
        let err = reader
            .feed_segment(lsn(SEG), &other.segments()[0].1)
            .unwrap_err();
        assert!(
            matches!(err, crate::Error::Wal(WalReadError::ForeignPage { page, .. }) if page == lsn(SEG))
        );
        assert!(err.to_string().contains("system identifier"), "{err}");
        assert_eq!(
            dr_core::Error::from(err).kind(),
            dr_core::ErrorKind::Corrupt
        );

        // PostgreSQL 16's WAL, and WAL of 16 MiB segments read as 1 MiB ones.
        let mut pg16 = w.segments()[0].1.clone();
        pg16[..2].copy_from_slice(&0xD113u16.to_le_bytes());
        let mut reader = WalRecordReader::new(segment_size());
        let err = reader.feed_segment(lsn(0), &pg16).unwrap_err();
        assert!(err.to_string().contains("0xD113"), "{err}");
        let mut reader = WalRecordReader::new(crate::wal::DEFAULT_SEGMENT_SIZE);
        let err = reader.feed_segment(lsn(0), &w.segments()[0].1).unwrap_err();
        assert!(err.to_string().contains("segment size 1048576"), "{err}");
    }

    #[test]
    fn a_malformed_record_with_a_good_checksum_is_an_error() {
        let mut w = WalWriter::new(0);
        w.commit(1, time(1), 0);
        // Main data announced as 200 bytes, 10 present.
        let mut body = vec![XLR_BLOCK_ID_DATA_SHORT, 200];
        body.extend([0; 10]);
        let (bad, _) = w.record(RM_XACT_ID, 0, 2, &body);
        let mut reader = WalRecordReader::new(segment_size());
        let err = reader.feed_segment(lsn(0), &w.segments()[0].1).unwrap_err();
        assert!(
            matches!(err, crate::Error::Wal(WalReadError::Malformed { record, .. }) if record == bad)
        );
        assert!(err.to_string().contains(&bad.to_string()), "{err}");

        for body in [
            // A block id above XLR_MAX_BLOCK_ID.
            vec![40, 0, 0, 0],
            // The same relation as a previous block, with none before.
            vec![0, BKPBLOCK_SAME_REL, 0, 0, 1, 0, 0, 0],
            // Data flagged but none announced.
            vec![0, BKPBLOCK_HAS_DATA, 0, 0],
            // A commit without its time.
            with_main(&[1, 2, 3]),
        ] {
            let mut w = WalWriter::new(0);
            w.record(RM_XACT_ID, 0, 2, &body);
            let mut reader = WalRecordReader::new(segment_size());
            let err = reader.feed_segment(lsn(0), &w.segments()[0].1);
            assert!(
                matches!(err, Err(crate::Error::Wal(WalReadError::Malformed { .. }))),
                "{body:?}: {err:?}"
            );
        }
    }

    #[test]
    fn full_page_images_are_walked() {
        let mut w = WalWriter::new(0);
        // A compressed image with a hole (hole length present), then one
        // without a hole on the same relation, then main data.
        let mut body = vec![0, BKPBLOCK_HAS_IMAGE];
        body.extend(0u16.to_le_bytes());
        body.extend(100u16.to_le_bytes()); // image length
        body.extend(10u16.to_le_bytes()); // hole offset
        body.push(BKPIMAGE_HAS_HOLE | 0x04);
        body.extend(5000u16.to_le_bytes()); // hole length
        body.extend([1; REL_FILE_NODE]);
        body.extend(1u32.to_le_bytes());
        body.extend([1, BKPBLOCK_HAS_IMAGE | BKPBLOCK_SAME_REL]);
        body.extend(0u16.to_le_bytes());
        body.extend((PAGE as u16).to_le_bytes());
        body.extend(0u16.to_le_bytes());
        body.push(0);
        body.extend(2u32.to_le_bytes());
        body.extend([
            XLR_BLOCK_ID_ORIGIN,
            1,
            0,
            XLR_BLOCK_ID_TOPLEVEL_XID,
            1,
            0,
            0,
            0,
        ]);
        let main = pg_micros(time(1)).to_le_bytes();
        body.extend(main_header(main.len()));
        body.extend(vec![3; 100 + PAGE as usize]);
        body.extend(main);
        let (start, end) = w.record(RM_XACT_ID, 0, 77, &body);
        let (events, _) = read_all(&w.segments());
        assert_eq!(events, [commit(start, end, 77, time(1))]);
    }

    /// Two segments of mixed records, and the events in them.
    fn sample() -> (Vec<(Lsn, Vec<u8>)>, Vec<WalRecordEvent>) {
        let (w, events) = across_segments();
        (w.segments(), events)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..3 * PAGE as usize),
            with_header in any::<bool>(),
            segment in 0u64..4,
        ) {
            let mut bytes = bytes;
            if with_header && bytes.len() >= LONG_PAGE_HEADER {
                // A valid first page header, so the pages behind it are read.
                let mut w = WalWriter::new(segment * SEG);
                w.page_header(0);
                bytes[..LONG_PAGE_HEADER].copy_from_slice(&w.wal);
            }
            let mut reader = WalRecordReader::new(segment_size());
            let _ = reader.feed_segment(lsn(segment * SEG), &bytes);
            let _ = reader.feed_segment(lsn((segment + 1) * SEG), &bytes);
        }

        #[test]
        fn corrupted_wal_never_panics_nor_invents_events(
            flips in proptest::collection::vec((0..2 * SEG as usize, any::<u8>()), 1..8),
            cut in proptest::option::of(0..SEG as usize),
            from_second in any::<bool>(),
        ) {
            let (mut segments, expected) = sample();
            for (at, value) in flips {
                let (segment, offset) = (at / SEG as usize, at % SEG as usize);
                // Mostly where records are: the start of each segment.
                segments[segment].1[offset % (4 * PAGE as usize)] = value;
            }
            if let Some(cut) = cut {
                segments[1].1.truncate(cut);
            }
            let mut reader = WalRecordReader::new(segment_size());
            let skip = usize::from(from_second);
            for (start, bytes) in &segments[skip..] {
                if let Ok(events) = reader.feed_segment(*start, bytes) {
                    for event in events {
                        prop_assert!(expected.contains(&event), "{event:?}");
                    }
                }
            }
        }
    }
}
