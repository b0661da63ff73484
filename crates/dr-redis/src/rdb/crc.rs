//! CRC-64/Redis (Jones polynomial, reflected, initial value 0, as Redis
//! calls `crc64(0, …)`), through crc-fast's SIMD implementation.

use crc_fast::{CrcAlgorithm, Digest};

/// A running CRC-64/Redis. Small updates are gathered and checksummed
/// together: the SIMD code is fast over long slices, and a call per key
/// name would cost more than the bytes.
#[derive(Clone)]
pub(crate) struct Crc64 {
    digest: Digest,
    /// Bytes given and not yet in `digest`.
    staged: Vec<u8>,
}

/// Updates shorter than this are staged.
const SMALL: usize = 512;
/// How much is staged before it goes into the digest.
const STAGE: usize = 16 * 1024;

impl Crc64 {
    pub(crate) fn new() -> Self {
        Self {
            digest: Digest::new(CrcAlgorithm::Crc64Redis),
            staged: Vec::with_capacity(STAGE),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        if bytes.len() < SMALL {
            self.staged.extend_from_slice(bytes);
            if self.staged.len() >= STAGE - SMALL {
                self.flush();
            }
        } else {
            self.flush();
            self.digest.update(bytes);
        }
    }

    fn flush(&mut self) {
        if !self.staged.is_empty() {
            self.digest.update(&self.staged);
            self.staged.clear();
        }
    }

    pub(crate) fn value(&self) -> u64 {
        let mut digest = self.digest;
        digest.update(&self.staged);
        digest.finalize()
    }
}

impl std::fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crc64({:#018x})", self.value())
    }
}

/// The CRC-64/Redis of `bytes`.
pub(crate) fn crc64(bytes: &[u8]) -> u64 {
    crc_fast::checksum(CrcAlgorithm::Crc64Redis, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        // crc64.c's own test vector.
        assert_eq!(crc64(b"123456789"), 0xe9c6d914c4b8d9ca);
        let mut running = Crc64::new();
        running.update(b"1234");
        running.update(b"56789");
        assert_eq!(running.value(), 0xe9c6d914c4b8d9ca);
        // Small and large updates, in any mix, give the checksum of them all.
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut mixed = Crc64::new();
        let mut at = 0;
        for (i, len) in [3usize, 700, 1, 511, 512, 20_000, 9, 40_000]
            .iter()
            .cycle()
            .enumerate()
        {
            let end = (at + len).min(bytes.len());
            mixed.update(&bytes[at..end]);
            at = end;
            if at == bytes.len() {
                break;
            }
            if i == 5 {
                assert_eq!(mixed.value(), crc64(&bytes[..at]));
            }
        }
        assert_eq!(mixed.value(), crc64(&bytes));
    }
}
