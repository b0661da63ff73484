//! Small helpers shared by the backends and wrappers.

use std::ops::Range;

use crate::error::{Error, Result};

/// `range` clamped to an object of `len` bytes: the end is cut at `len`, and
/// a range starting at or past the end (or with `start > end`) is empty.
pub(crate) fn clamp_range(range: Range<u64>, len: u64) -> Range<u64> {
    let end = range.end.min(len);
    let start = range.start.min(end);
    start..end
}

/// A listing page must be allowed to hold at least one key, or paging never ends.
/// A page from up to `limit + 1` listed objects: the extra one only says
/// that another page follows, which starts after the last key kept.
pub(crate) fn page_of(mut objects: Vec<super::ObjectMeta>, limit: usize) -> super::ListPage {
    let next = if objects.len() > limit {
        objects.truncate(limit);
        objects.last().map(|o| o.key.clone())
    } else {
        None
    };
    super::ListPage { objects, next }
}

pub(crate) fn check_limit(limit: usize) -> Result<()> {
    if limit == 0 {
        return Err(Error::InvalidInput {
            what: "listing limit".to_owned(),
            reason: "must be at least 1".to_owned(),
        });
    }
    Ok(())
}

/// A tiny seeded PRNG (SplitMix64) for fault injection and retry jitter:
/// reproducible from its seed, not for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamping() {
        assert_eq!(clamp_range(0..5, 10), 0..5);
        assert_eq!(clamp_range(5..50, 10), 5..10);
        assert_eq!(clamp_range(10..20, 10), 10..10);
        assert_eq!(clamp_range(15..20, 10), 10..10);
        let (start, end) = (7, 3);
        assert_eq!(clamp_range(start..end, 10), 3..3);
    }

    #[test]
    fn prng_is_reproducible_and_in_range() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let f = a.next_f64();
            assert!((0.0..1.0).contains(&f));
            b.next_f64();
        }
        assert_ne!(SplitMix64::new(1).next_u64(), SplitMix64::new(2).next_u64());
    }
}
