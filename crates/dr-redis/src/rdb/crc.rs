//! CRC-64/Redis (Jones polynomial, reflected, initial value 0, as Redis
//! calls `crc64(0, …)`), through crc-fast's SIMD implementation.

use crc_fast::{CrcAlgorithm, Digest};

/// A running CRC-64/Redis.
#[derive(Clone)]
pub(crate) struct Crc64(Digest);

impl Crc64 {
    pub(crate) fn new() -> Self {
        Self(Digest::new(CrcAlgorithm::Crc64Redis))
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn value(&self) -> u64 {
        self.0.finalize()
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
    }
}
