//! The archive's segments: a master's replication stream as it arrived,
//! in records of whole commands, each with the replication offset it
//! starts at and the wall-clock time it arrived.
//!
//! A segment is a header (magic, the history's replication id, the offset
//! it starts at) and records back to back: `start` (u64), `arrived_ms`
//! (i64), `len` (u32), the CRC-32C of those sixteen bytes and the data
//! (u32), then the data: whole commands, so that a restore can stop
//! between any two of them. All integers little-endian. The same bytes are
//! a segment's journal while it is written and the sealed segment after.
//! Segment names carry the history and the start: `<id>-<offset>`, the
//! offset in 20 digits so that names of one history sort by offset.

use std::ops::Range;

use bytes::{Buf, Bytes};
use crc_fast::CrcAlgorithm;
use dr_core::SegmentName;

use crate::error::{Error, Place, Result};

/// A segment starts with these eight bytes.
pub const SEGMENT_MAGIC: &[u8; 8] = b"DRKRSEG1";
/// The header: magic, replication id, start offset.
pub const HEADER_LEN: usize = 8 + 40 + 8;
/// A record's fixed part: start, arrival, length, CRC.
const RECORD_HEAD: usize = 8 + 8 + 4 + 4;

/// One record: commands that arrived together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The replication offset of its first byte (the bytes before it).
    pub start: u64,
    /// When it arrived, in milliseconds since the epoch (the archiver's clock).
    pub arrived_ms: i64,
    /// Whole commands of the stream.
    pub data: Bytes,
}

impl Record {
    /// Its offsets.
    pub fn offsets(&self) -> Range<u64> {
        self.start..self.start + self.data.len() as u64
    }
}

/// A segment's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The history (40 hex characters).
    pub replication_id: String,
    /// The offset its first record starts at.
    pub start: u64,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(SEGMENT_MAGIC);
        out.extend_from_slice(self.replication_id.as_bytes());
        out.extend_from_slice(&self.start.to_le_bytes());
        out
    }

    /// The segment's name.
    ///
    /// # Errors
    /// Never for a header with a 40-character id; the name's own check
    /// otherwise.
    pub fn name(&self) -> dr_core::Result<SegmentName> {
        format!("{}-{:020}", self.replication_id, self.start).parse()
    }

    /// The name of a roll-up of this history's records from its start up
    /// to offset `end`: `<id>-<start>-<end>`, each offset in 20 digits.
    ///
    /// # Errors
    /// As [`SegmentHeader::name`].
    pub fn rollup_name(&self, end: u64) -> dr_core::Result<SegmentName> {
        format!("{}-{:020}-{end:020}", self.replication_id, self.start).parse()
    }
}

/// The history and start offset a segment name says, if it is one of ours.
pub fn parse_name(name: &SegmentName) -> Option<SegmentHeader> {
    let (id, start) = name.as_str().split_once('-')?;
    if id.len() != 40 || !id.bytes().all(|b| b.is_ascii_hexdigit()) || start.len() != 20 {
        return None;
    }
    Some(SegmentHeader {
        replication_id: id.to_owned(),
        start: start.parse().ok()?,
    })
}

/// The history and start a segment's name says, and for a roll-up
/// ([`SegmentHeader::rollup_name`]) the offset it ends at; `None` for a
/// name that is neither.
pub fn parse_any_name(name: &SegmentName) -> Option<(SegmentHeader, Option<u64>)> {
    if let Some(header) = parse_name(name) {
        return Some((header, None));
    }
    let (first, end) = name.as_str().rsplit_once('-')?;
    if end.len() != 20 {
        return None;
    }
    let header = parse_name(&first.parse().ok()?)?;
    Some((header, Some(end.parse().ok()?)))
}

/// The name of the marker that says history `replication_id` forked at
/// `offset`: a failover's new master took it over only up to there, and
/// what the archive holds of it past there was lost with the old master.
///
/// # Errors
/// Never for a 40-character id; the name's own check otherwise.
pub(crate) fn fork_marker_name(replication_id: &str, offset: u64) -> dr_core::Result<SegmentName> {
    format!("{FORK_PREFIX}{replication_id}-{offset:020}").parse()
}

/// The history and offset a fork marker's name says, if it is one.
pub(crate) fn parse_fork_marker(name: &SegmentName) -> Option<(String, u64)> {
    let header = name
        .as_str()
        .strip_prefix(FORK_PREFIX)
        .and_then(|rest| rest.parse::<SegmentName>().ok())
        .as_ref()
        .and_then(parse_name)?;
    Some((header.replication_id, header.start))
}

/// What a fork marker's name starts with (a segment's never does).
const FORK_PREFIX: &str = "fork-";

/// A record's bytes.
pub fn encode_record(start: u64, arrived_ms: i64, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEAD + data.len());
    out.extend_from_slice(&start.to_le_bytes());
    out.extend_from_slice(&arrived_ms.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    let crc = record_crc(&out, data);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(data);
    out
}

fn record_crc(head: &[u8], data: &[u8]) -> u32 {
    let mut digest = crc_fast::Digest::new(CrcAlgorithm::Crc32Iscsi);
    digest.update(head);
    digest.update(data);
    digest.finalize() as u32
}

/// Reads a whole segment: its header, and its records, each checked (CRC,
/// offsets running on from the header's start without a gap).
///
/// # Errors
/// [`Error::Corrupt`] naming the byte where the segment goes wrong (a
/// segment that ends inside a record included).
pub fn read_segment(mut bytes: Bytes) -> Result<(SegmentHeader, Vec<Record>)> {
    let corrupt = |at: usize, reason: String| Error::corrupt(Place::at(at as u64), reason);
    if bytes.len() < HEADER_LEN || &bytes[..8] != SEGMENT_MAGIC {
        return Err(corrupt(0, "not a drkit Redis archive segment".into()));
    }
    let id = std::str::from_utf8(&bytes[8..48])
        .ok()
        .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| corrupt(8, "its replication id is not 40 hex characters".into()))?
        .to_owned();
    let start = u64::from_le_bytes(bytes[48..56].try_into().unwrap_or_default());
    let header = SegmentHeader {
        replication_id: id,
        start,
    };
    let mut at = HEADER_LEN;
    bytes.advance(HEADER_LEN);
    let mut records = Vec::new();
    let mut next = start;
    while !bytes.is_empty() {
        if bytes.len() < RECORD_HEAD {
            return Err(corrupt(
                at,
                "the segment ends inside a record's head".into(),
            ));
        }
        let head = bytes.split_to(RECORD_HEAD);
        let field = |r: Range<usize>| -> [u8; 8] {
            let mut b = [0u8; 8];
            b[..r.len()].copy_from_slice(&head[r]);
            b
        };
        let record_start = u64::from_le_bytes(field(0..8));
        let arrived_ms = i64::from_le_bytes(field(8..16));
        let len = u32::from_le_bytes(field(16..20)[..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(field(20..24)[..4].try_into().unwrap_or_default());
        if bytes.len() < len {
            return Err(corrupt(
                at,
                format!(
                    "the segment ends inside a record of {len} bytes ({} left)",
                    bytes.len()
                ),
            ));
        }
        let data = bytes.split_to(len);
        if record_crc(&head[..20], &data) != crc {
            return Err(corrupt(at, "a record's CRC-32C does not match".into()));
        }
        if record_start != next {
            return Err(corrupt(
                at,
                format!("a record starts at offset {record_start}, the one before ended at {next}"),
            ));
        }
        next = record_start + len as u64;
        at += RECORD_HEAD + len;
        records.push(Record {
            start: record_start,
            arrived_ms,
            data,
        });
    }
    Ok((header, records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[(u64, i64, &[u8])]) -> Vec<u8> {
        let header = SegmentHeader {
            replication_id: "a".repeat(40),
            start: records.first().map_or(0, |r| r.0),
        };
        let mut out = header.encode();
        for (start, at, data) in records {
            out.extend(encode_record(*start, *at, data));
        }
        out
    }

    #[test]
    fn segments_read_back_and_names_parse() {
        let bytes = segment(&[(100, 5, b"*1\r\n$4\r\nPING\r\n"), (114, 9, b"")]);
        let (header, records) = read_segment(Bytes::from(bytes)).unwrap();
        assert_eq!(header.start, 100);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].offsets(), 100..114);
        assert_eq!(records[1].arrived_ms, 9);
        let name = header.name().unwrap();
        assert_eq!(
            name.as_str(),
            format!("{}-00000000000000000100", "a".repeat(40))
        );
        assert_eq!(parse_name(&name), Some(header.clone()));
        assert_eq!(parse_any_name(&name), Some((header.clone(), None)));
        let rollup = header.rollup_name(114).unwrap();
        assert_eq!(parse_name(&rollup), None, "older readers skip roll-ups");
        assert_eq!(parse_any_name(&rollup), Some((header.clone(), Some(114))));
        let fork = fork_marker_name(&header.replication_id, 100).unwrap();
        assert_eq!(parse_any_name(&fork), None);
        assert_eq!(
            parse_name(&"000000010000000000000003".parse().unwrap()),
            None
        );
    }

    #[test]
    fn damage_gap_and_truncation_are_errors() {
        let good = segment(&[(100, 5, b"abcdef"), (106, 6, b"ghij")]);
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            // A flip in a record's start that breaks the chain, or any
            // other byte: refused.
            assert!(read_segment(Bytes::from(bad)).is_err(), "byte {at}");
        }
        for len in HEADER_LEN + 1..good.len() {
            let cut = good[..len].to_vec();
            let cut_at_record = len == HEADER_LEN + RECORD_HEAD + 6;
            assert_eq!(
                read_segment(Bytes::from(cut)).is_ok(),
                cut_at_record,
                "{len}"
            );
        }
        let gap = segment(&[(100, 5, b"abcdef"), (107, 6, b"ghij")]);
        let err = read_segment(Bytes::from(gap)).unwrap_err();
        assert!(err.to_string().contains("ended at 106"), "{err}");
    }
}
