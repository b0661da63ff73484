//! WAL file names and timeline history files, as PostgreSQL writes them.
//!
//! A segment file is named `TTTTTTTTXXXXXXXXYYYYYYYY`: the timeline, then the
//! segment number split into "xlog id" and the segment within it, each as 8
//! upper-case hex digits. A timeline's history file, `TTTTTTTT.history`,
//! lists the timelines it branched from and where.

use dr_core::Lsn;

use crate::error::Error;
use crate::replication::{HistoryEntry, TimelineHistory};

/// The default WAL segment size (16 MiB).
pub const DEFAULT_SEGMENT_SIZE: WalSegmentSize = WalSegmentSize(16 * 1024 * 1024);

/// A cluster's WAL segment size: a power of two from 1 MiB to 1 GiB
/// (`initdb --wal-segsize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct WalSegmentSize(u64);

impl WalSegmentSize {
    /// Checks `bytes` is a size PostgreSQL allows.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] saying which sizes are allowed.
    pub fn new(bytes: u64) -> Result<Self, Error> {
        if bytes.is_power_of_two() && (1 << 20..=1 << 30).contains(&bytes) {
            Ok(Self(bytes))
        } else {
            Err(Error::InvalidInput {
                what: "WAL segment size",
                reason: format!("{bytes} bytes is not a power of two from 1 MiB to 1 GiB"),
            })
        }
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    fn per_xlog_id(self) -> u64 {
        0x1_0000_0000 / self.0
    }
}

/// A size as PostgreSQL's settings write it: `16MB` (as `SHOW` prints it),
/// `16 MB`, `64kB`, `1GB`, or bytes alone; `K`, `M`, `G` and `T` too.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" | "K" => 1 << 10,
        "MB" | "M" => 1 << 20,
        "GB" | "G" => 1 << 30,
        "TB" | "T" => 1 << 40,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(factor)
}

impl TryFrom<u64> for WalSegmentSize {
    type Error = Error;

    fn try_from(bytes: u64) -> Result<Self, Error> {
        Self::new(bytes)
    }
}

impl From<WalSegmentSize> for u64 {
    fn from(size: WalSegmentSize) -> u64 {
        size.bytes()
    }
}

impl std::str::FromStr for WalSegmentSize {
    type Err = Error;

    /// `16MB`, `16777216`, `64kB`: as `wal_segment_size` or `initdb --wal-segsize` write it.
    fn from_str(text: &str) -> Result<Self, Error> {
        let bytes = parse_size(text).ok_or_else(|| Error::InvalidInput {
            what: "WAL segment size",
            reason: format!("{text:?} is not a size (such as 16MB)"),
        })?;
        Self::new(bytes)
    }
}

/// One WAL segment file: a timeline and a segment number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WalSegment {
    /// The timeline it belongs to.
    pub timeline: u32,
    /// Its number: its start LSN divided by the segment size.
    pub number: u64,
}

impl WalSegment {
    /// The segment of `timeline` holding the byte at `lsn`.
    pub fn containing(timeline: u32, lsn: Lsn, size: WalSegmentSize) -> Self {
        Self {
            timeline,
            number: u64::from(lsn) / size.bytes(),
        }
    }

    /// Where the segment starts.
    pub fn start(self, size: WalSegmentSize) -> Lsn {
        Lsn::from(self.number * size.bytes())
    }

    /// Where the next segment starts.
    pub fn end(self, size: WalSegmentSize) -> Lsn {
        Lsn::from((self.number + 1) * size.bytes())
    }

    /// The segment after this one, on the same timeline.
    #[must_use]
    pub fn next(self) -> Self {
        Self {
            number: self.number + 1,
            ..self
        }
    }

    /// The file name PostgreSQL gives it.
    pub fn file_name(self, size: WalSegmentSize) -> String {
        let per = size.per_xlog_id();
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.number / per,
            self.number % per
        )
    }

    /// Reads a segment file name (24 hex digits, nothing else).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if `name` is not one.
    pub fn parse(name: &str, size: WalSegmentSize) -> Result<Self, Error> {
        let bad = || Error::InvalidInput {
            what: "WAL segment file name",
            reason: format!("{name:?} is not one"),
        };
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let field = |range: std::ops::Range<usize>| {
            u32::from_str_radix(&name[range], 16).map_err(|_| bad())
        };
        let (timeline, high, low) = (field(0..8)?, field(8..16)?, field(16..24)?);
        let per = size.per_xlog_id();
        if u64::from(low) >= per || timeline == 0 {
            return Err(bad());
        }
        Ok(Self {
            timeline,
            number: u64::from(high) * per + u64::from(low),
        })
    }
}

/// The name of `timeline`'s history file.
pub fn history_file_name(timeline: u32) -> String {
    format!("{timeline:08X}.history")
}

/// Reads a history file name (`TTTTTTTT.history`) back to its timeline.
pub fn history_file_timeline(name: &str) -> Option<u32> {
    let hex = name.strip_suffix(".history")?;
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok().filter(|t| *t > 0)
}

/// The way to a timeline: the switches that led to it, oldest first (from
/// its history file), so each WAL position can be placed on the timeline
/// that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelinePath {
    /// The timeline the path leads to.
    pub current: u32,
    /// Its history file's entries, oldest first; empty for timeline 1.
    pub switches: Vec<HistoryEntry>,
}

impl TimelinePath {
    /// The path of a timeline with no history (timeline 1, or a history not needed).
    pub fn root(timeline: u32) -> Self {
        Self {
            current: timeline,
            switches: Vec::new(),
        }
    }

    /// The path to `history`'s timeline.
    ///
    /// # Errors
    /// A malformed history file, or one whose timelines or switch points go backwards.
    pub fn from_history(history: &TimelineHistory) -> crate::Result<Self> {
        let current =
            history_file_timeline(&history.filename).ok_or_else(|| crate::Error::InvalidInput {
                what: "timeline history",
                reason: format!("{:?} is not a history file name", history.filename),
            })?;
        let switches = history.entries()?;
        let ordered = switches
            .windows(2)
            .all(|w| w[0].timeline < w[1].timeline && w[0].switch_point <= w[1].switch_point)
            && switches.last().is_none_or(|s| s.timeline < current);
        if !ordered {
            return Err(crate::Error::InvalidInput {
                what: "timeline history",
                reason: format!("{}: timelines out of order", history.filename),
            });
        }
        Ok(Self { current, switches })
    }

    /// The timeline that wrote the WAL at `lsn` on the way to [`Self::current`].
    pub fn timeline_at(&self, lsn: Lsn) -> u32 {
        self.switches
            .iter()
            .find(|s| lsn < s.switch_point)
            .map_or(self.current, |s| s.timeline)
    }

    /// The segments holding the WAL from `from` to `to` (exclusive), each
    /// under the timeline PostgreSQL reads it from: a segment in which a
    /// timeline switch happens is read from the newer timeline.
    pub fn segments(&self, from: Lsn, to: Lsn, size: WalSegmentSize) -> Vec<WalSegment> {
        if to <= from {
            return Vec::new();
        }
        let first = u64::from(from) / size.bytes();
        let last = (u64::from(to) - 1) / size.bytes();
        (first..=last)
            .map(|number| {
                let end = Lsn::from((number + 1) * size.bytes() - 1);
                WalSegment {
                    timeline: self.timeline_at(end),
                    number,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    #[test]
    fn segment_names_match_postgres() {
        let size = DEFAULT_SEGMENT_SIZE;
        let seg = WalSegment::containing(1, lsn("0/3000028"), size);
        assert_eq!(seg.file_name(size), "000000010000000000000003");
        assert_eq!(seg.start(size), lsn("0/3000000"));
        let high = WalSegment::containing(2, lsn("1/FF000000"), size);
        assert_eq!(high.file_name(size), "0000000200000001000000FF");
        assert_eq!(high.next().file_name(size), "000000020000000200000000");
        assert_eq!(
            WalSegment::parse("0000000200000001000000FF", size).ok(),
            Some(high)
        );
        // 64 MiB segments: four per "xlog id".
        let big = WalSegmentSize::new(64 << 20).unwrap();
        let seg = WalSegment::containing(1, lsn("1/C0000000"), big);
        assert_eq!(seg.file_name(big), "000000010000000100000030");
        assert!(WalSegment::parse("00000001000000010000003F", big).is_ok());
        assert!(WalSegment::parse("000000010000000100000040", big).is_err());
        assert!(WalSegment::parse("00000001000000010000000", size).is_err());
        assert!(WalSegment::parse("00000000000000010000000A", size).is_err());
        assert!(WalSegment::parse("0000000100000001000000XY", size).is_err());
        assert!(WalSegmentSize::new(3 << 20).is_err());
        assert!(WalSegmentSize::new(2 << 30).is_err());
    }

    fn history(timeline: u32, text: &str) -> TimelineHistory {
        TimelineHistory {
            filename: history_file_name(timeline),
            content: text.as_bytes().to_vec().into(),
        }
    }

    #[test]
    fn history_files_map_positions_to_timelines() {
        let text =
            "1\t0/3000000\tno recovery target specified\n\n2\t0/5000120\tbefore 2026-11-21\n";
        let path = TimelinePath::from_history(&history(3, text)).unwrap();
        assert_eq!(path.current, 3);
        assert_eq!(path.switches[1].reason, "before 2026-11-21");
        assert_eq!(path.timeline_at(lsn("0/2FFFFFF")), 1);
        assert_eq!(path.timeline_at(lsn("0/3000000")), 2);
        assert_eq!(path.timeline_at(lsn("0/6000000")), 3);
        assert_eq!(history_file_name(3), "00000003.history");
        assert_eq!(history_file_timeline("0000000A.history"), Some(10));
        assert_eq!(history_file_timeline("0000000A.partial"), None);
        assert!(TimelinePath::from_history(&history(2, "x\t0/1\n")).is_err());
        assert!(TimelinePath::from_history(&history(3, "2\t0/5\n1\t0/6\n")).is_err());
        assert!(TimelinePath::from_history(&history(2, "2\t0/5\n")).is_err());
    }

    #[test]
    fn segments_follow_timeline_switches() {
        let size = DEFAULT_SEGMENT_SIZE;
        let path = TimelinePath::from_history(&history(2, "1\t0/3800000\tpromoted\n")).unwrap();
        let names: Vec<String> = path
            .segments(lsn("0/2000028"), lsn("0/5000000"), size)
            .into_iter()
            .map(|s| s.file_name(size))
            .collect();
        assert_eq!(
            names,
            [
                "000000010000000000000002",
                "000000020000000000000003",
                "000000020000000000000004",
            ]
        );
        assert!(path.segments(lsn("0/5"), lsn("0/5"), size).is_empty());
    }
}
