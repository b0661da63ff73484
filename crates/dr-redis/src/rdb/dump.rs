//! DUMP / RESTORE payloads: a value's type byte and raw bytes, the RDB
//! version as two little-endian bytes, and the CRC-64 of all that as eight.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::rdb::crc::crc64;
use crate::rdb::decode::{Value, decode_value};
use crate::rdb::frame::KeyEntry;
use crate::rdb::{MAX_RDB_VERSION, ValueType};

/// The bytes after the value: version and checksum.
const TRAILER: usize = 10;

/// A `DUMP` payload, what `RESTORE` takes: built from a framed key, or
/// checked when received.
///
/// ```
/// use bytes::Bytes;
/// use dr_redis::{DumpPayload, Value};
///
/// // redis-doc's example: DUMP of the integer 10 written by RDB version 10.
/// let payload = DumpPayload::parse(Bytes::from_static(b"\x00\xc0\n\n\x00n\x9fWE\x0e\xaec\xbb"))?;
/// assert_eq!(payload.rdb_version(), 10);
/// assert_eq!(payload.decode()?, Value::String(Bytes::from_static(b"10")));
/// # Ok::<(), dr_redis::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpPayload(Bytes);

impl DumpPayload {
    /// The payload of a value of `value_type` with the `raw` bytes that
    /// follow its key in an RDB of `rdb_version`.
    pub fn new(value_type: ValueType, raw: &[u8], rdb_version: u16) -> Self {
        let mut out = BytesMut::with_capacity(1 + raw.len() + TRAILER);
        out.put_u8(value_type.0);
        out.put_slice(raw);
        out.put_u16_le(rdb_version);
        let crc = crc64(&out);
        out.put_u64_le(crc);
        Self(out.freeze())
    }

    /// The payload of a framed key, for a server that reads `rdb_version`
    /// (the version of the RDB the key came from).
    pub fn from_key(key: &KeyEntry, rdb_version: u16) -> Self {
        Self::new(key.value_type, &key.value, rdb_version)
    }

    /// Checks a payload (as `DUMP` returned it): at least ten bytes, a
    /// version this build reads, a matching checksum (0 means none, as Redis
    /// accepts with `skip_checksum_validation` only).
    ///
    /// # Errors
    /// [`Error::InvalidPayload`] if too short, [`Error::UnsupportedVersion`] for a
    /// newer version, [`Error::Checksum`] on a mismatch.
    pub fn parse(bytes: Bytes) -> Result<Self> {
        if bytes.len() < 1 + TRAILER {
            return Err(Error::InvalidPayload {
                reason: format!(
                    "{} bytes, fewer than a type byte, a version and a checksum",
                    bytes.len()
                ),
            });
        }
        let payload = Self(bytes);
        let version = payload.rdb_version();
        if version == 0 || version > MAX_RDB_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "DUMP payload",
                version: u32::from(version),
            });
        }
        let body = &payload.0[..payload.0.len() - 8];
        let expected = u64::from_le_bytes(
            payload.0[payload.0.len() - 8..]
                .try_into()
                .expect("eight bytes"),
        );
        let computed = crc64(body);
        if expected != computed {
            return Err(Error::Checksum {
                what: "DUMP payload",
                expected,
                computed,
            });
        }
        Ok(payload)
    }

    /// The value's type byte.
    pub fn value_type(&self) -> ValueType {
        ValueType(self.0[0])
    }

    /// The value's raw bytes.
    pub fn raw_value(&self) -> Bytes {
        self.0.slice(1..self.0.len() - TRAILER)
    }

    /// The RDB version that wrote it.
    pub fn rdb_version(&self) -> u16 {
        let at = self.0.len() - TRAILER;
        u16::from_le_bytes([self.0[at], self.0[at + 1]])
    }

    /// The whole payload.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The whole payload.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The decoded value.
    ///
    /// # Errors
    /// As [`decode_value`].
    pub fn decode(&self) -> Result<Value> {
        decode_value(self.value_type(), &self.raw_value(), self.rdb_version())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// redis-doc's `DUMP mykey` of the value 10, from RDB version 10.
    const EXAMPLE: &[u8] = b"\x00\xc0\n\n\x00n\x9fWE\x0e\xaec\xbb";

    #[test]
    fn the_documented_example() {
        let payload = DumpPayload::parse(Bytes::from_static(EXAMPLE)).unwrap();
        assert_eq!(payload.value_type(), ValueType::STRING);
        assert_eq!(payload.raw_value(), &b"\xc0\n"[..]);
        assert_eq!(payload.rdb_version(), 10);
        assert_eq!(
            u64::from_le_bytes(EXAMPLE[EXAMPLE.len() - 8..].try_into().unwrap()),
            0xbb63ae0e45579f6e
        );
        assert_eq!(
            DumpPayload::new(ValueType::STRING, b"\xc0\n", 10).as_bytes(),
            EXAMPLE
        );
    }

    #[test]
    fn damage_is_refused() {
        let mut bad = EXAMPLE.to_vec();
        bad[1] ^= 1;
        assert!(matches!(
            DumpPayload::parse(Bytes::from(bad)),
            Err(Error::Checksum { .. })
        ));
        assert!(DumpPayload::parse(Bytes::from_static(&EXAMPLE[..9])).is_err());
        let newer = DumpPayload::new(ValueType::STRING, b"\xc0\n", 13);
        assert!(matches!(
            DumpPayload::parse(newer.into_bytes()),
            Err(Error::UnsupportedVersion { version: 13, .. })
        ));
    }
}
