//! Chunk boundaries for a stream of records whose starts its producer
//! publishes ([`dr_core::CutHints`]): the keys of a Redis RDB.
//!
//! A chunk ends at the first record start that finds it `min` long, or at
//! a fixed cut inside a large record: every `step` bytes counted from the
//! record's start. Small records are gathered; a record rewritten between
//! two backups changes the chunks it lies in, and the chunks after it only
//! until a record start finds the cuts of both backups again, which is the
//! first or second record start after it in practice.
//!
//! Every decision depends on record offsets alone (all those below the
//! bytes read, which the producer published before writing those bytes),
//! never on the bytes themselves or on how the stream was split into reads.
//! Before the first record start the stream's start counts as one.

use std::collections::VecDeque;

/// Where the records of a stream start, as far as they are known.
#[derive(Debug, Clone)]
pub(super) struct RecordCuts {
    min: u64,
    step: u64,
    /// The start of the record the current chunk starts in.
    record: u64,
    /// Record starts after it, in order.
    starts: VecDeque<u64>,
}

impl RecordCuts {
    /// Cuts at record starts once a chunk holds `min` bytes, and every
    /// `step` bytes inside a record.
    pub(super) fn new(min: u64, step: u64) -> Self {
        Self {
            min: min.max(1),
            step: step.max(1),
            record: 0,
            starts: VecDeque::new(),
        }
    }

    /// Takes record starts, in order: every start below the bytes the next
    /// [`RecordCuts::next_cut`] is given. Starts not after the last one are
    /// left out.
    pub(super) fn add(&mut self, starts: impl IntoIterator<Item = u64>) {
        for start in starts {
            let last = self.starts.back().copied().unwrap_or(self.record);
            if start > last {
                self.starts.push_back(start);
            }
        }
    }

    /// The first fixed cut after `start` in the record that starts at
    /// `record` (before or after `start`).
    fn fixed_after(&self, record: u64, start: u64) -> u64 {
        record + self.step * (start.saturating_sub(record) / self.step + 1)
    }

    /// The first boundary after `start` (where the current chunk starts),
    /// with the stream read up to `end`; `None` when more bytes are needed.
    pub(super) fn next_cut(&mut self, start: u64, end: u64) -> Option<u64> {
        while let Some(&first) = self.starts.front()
            && first <= start
        {
            self.record = first;
            self.starts.pop_front();
        }
        let mut record = self.record;
        for &next in &self.starts {
            if next >= end {
                break;
            }
            let fixed = self.fixed_after(record, start);
            if fixed < next {
                return Some(fixed);
            }
            if next - start >= self.min {
                return Some(next);
            }
            record = next;
        }
        // Inside the last record known: only a fixed cut, once no record
        // can start before it (every start below `end` is known).
        let fixed = self.fixed_after(record, start);
        (fixed <= end).then_some(fixed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every cut of a stream of `len` bytes with records starting at
    /// `starts`, read `read` bytes at a time, each read's starts added
    /// before it is cut, as the writer does; the tail after the last cut is
    /// not a cut.
    fn cuts(starts: &[u64], len: u64, min: u64, step: u64, read: u64) -> Vec<u64> {
        let mut cutter = RecordCuts::new(min, step);
        let mut cuts = Vec::new();
        let mut start = 0;
        let mut end = 0;
        while end < len {
            end = (end + read).min(len);
            cutter.add(starts.iter().copied().filter(|&s| s < end));
            while let Some(cut) = cutter.next_cut(start, end) {
                assert!(cut > start && cut <= end, "{cut} outside {start}..={end}");
                cuts.push(cut);
                start = cut;
            }
        }
        cuts
    }

    #[test]
    fn small_records_are_gathered_and_large_ones_cut_at_fixed_offsets() {
        // Records of 100, 300, 700, 5000, 200, 9000 and 50 bytes.
        let starts = [0, 100, 400, 1100, 6100, 6300, 15_300];
        let got = cuts(&starts, 15_350, 1000, 4096, 15_350);
        assert_eq!(
            got,
            [
                // 100 + 300 + 700: at least 1000 at the fourth record's start.
                1100,
                // Inside the 5000-byte record, 4096 from its start.
                1100 + 4096,
                // Its tail (904) and the 200-byte record reach 1000 at the
                // next record's start.
                6300,
                6300 + 4096,
                6300 + 8192,
            ]
        );
    }

    #[test]
    fn a_record_rewritten_changes_its_own_chunks_only() {
        // 60 records of 100 to 3000 bytes; the 20th grows by 1234 bytes.
        let sizes: Vec<u64> = (0..60u64).map(|i| 100 + (i * 733) % 2900).collect();
        let mut grown = sizes.clone();
        grown[20] += 1234;
        let layout = |sizes: &[u64]| {
            let mut starts = Vec::new();
            let mut at = 0;
            for size in sizes {
                starts.push(at);
                at += size;
            }
            (starts, at)
        };
        let (before, len) = layout(&sizes);
        let (after, len_after) = layout(&grown);
        // Chunks as (first record, last record) ranges.
        let chunks = |starts: &[u64], len: u64| {
            let mut out = Vec::new();
            let mut from = 0;
            for cut in cuts(starts, len, 2048, 1 << 20, 999) {
                let to = starts
                    .iter()
                    .position(|&s| s == cut)
                    .expect("cut at a record start");
                out.push((from, to));
                from = to;
            }
            out
        };
        let (a, b) = (chunks(&before, len), chunks(&after, len_after));
        let changed: Vec<_> = b.iter().filter(|chunk| !a.contains(chunk)).collect();
        assert!(!changed.is_empty() && changed.len() <= 2, "{changed:?}");
        assert!(changed.iter().any(|(from, to)| (*from..*to).contains(&20)));
    }

    proptest! {
        #[test]
        fn cuts_do_not_depend_on_how_the_stream_is_read(
            sizes in prop::collection::vec(1u64..20_000, 1..40),
            read in 1u64..9000,
        ) {
            let mut starts = Vec::new();
            let mut at = 0;
            for size in &sizes {
                starts.push(at);
                at += size;
            }
            prop_assert_eq!(cuts(&starts, at, 2048, 4096, read), cuts(&starts, at, 2048, 4096, at));
        }
    }
}
