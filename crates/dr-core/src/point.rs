//! Recovery points: the instant a backup or archive position covers, and the
//! system's own position at that instant.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A PostgreSQL write-ahead-log position, printed as PostgreSQL prints it: `16/B374D848`.
///
/// ```
/// # use dr_core::Lsn;
/// let lsn: Lsn = "16/B374D848".parse()?;
/// assert_eq!(u64::from(lsn), 0x16_B374_D848);
/// assert_eq!(lsn.to_string(), "16/B374D848");
/// # Ok::<(), dr_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Lsn(u64);

impl Lsn {
    /// The invalid position `0/0`.
    pub const ZERO: Lsn = Lsn(0);

    /// The position as a byte offset into the WAL.
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The byte offset into the WAL.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for Lsn {
    fn from(value: u64) -> Self {
        Self(value)
    }
}

impl From<Lsn> for u64 {
    fn from(value: Lsn) -> u64 {
        value.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let err = |reason| Error::Parse {
            what: "LSN",
            input: s.to_owned(),
            reason,
        };
        let (hi, lo) = s.split_once('/').ok_or(err("expected HI/LO in hex"))?;
        let half = |part: &str| {
            if part.is_empty() || part.len() > 8 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err("each half must be 1 to 8 hex digits"));
            }
            u32::from_str_radix(part, 16).map_err(|_| err("each half must be 1 to 8 hex digits"))
        };
        Ok(Self((u64::from(half(hi)?) << 32) | u64::from(half(lo)?)))
    }
}

impl TryFrom<String> for Lsn {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Lsn> for String {
    fn from(value: Lsn) -> String {
        value.to_string()
    }
}

/// A Redis replication id: 40 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReplicationId(String);

impl ReplicationId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ReplicationId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s.len() != 40
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::Parse {
                what: "replication id",
                input: s.to_owned(),
                reason: "expected 40 lowercase hex digits",
            });
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for ReplicationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ReplicationId {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<ReplicationId> for String {
    fn from(value: ReplicationId) -> String {
        value.0
    }
}

/// A system's own notion of where its history stands.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "system", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Position {
    /// A PostgreSQL cluster's position: which cluster, which timeline, where in the WAL.
    Postgres {
        /// `pg_control`'s database system identifier; two clusters never share one.
        system_identifier: u64,
        /// The timeline the position is on.
        timeline: u32,
        /// The WAL position.
        lsn: Lsn,
    },
    /// A Redis instance's replication position.
    Redis {
        /// The replication id of the history.
        replication_id: ReplicationId,
        /// The byte offset into that history.
        offset: u64,
    },
    /// A position in a system drkit does not interpret (a resourceVersion, a room epoch).
    Opaque {
        /// The system's text for it.
        value: String,
    },
}

/// What a backup or an archive position covers: every change made up to `at`
/// (wall clock, UTC) and, where the system has one, its own position then.
///
/// ```
/// # use dr_core::{Lsn, Position, RecoveryPoint};
/// let point = RecoveryPoint::new("2026-11-21T14:30:00Z".parse().unwrap())
///     .with_position(Position::Postgres {
///         system_identifier: 7_311_234_567_890_123_456,
///         timeline: 2,
///         lsn: "0/3000148".parse::<Lsn>()?,
///     });
/// assert_eq!(point.at.to_string(), "2026-11-21T14:30:00Z");
/// # Ok::<(), dr_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryPoint {
    /// The wall-clock instant covered.
    pub at: Timestamp,
    /// The system's own position, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

impl RecoveryPoint {
    /// A point covering everything up to `at`, with no system position.
    pub const fn new(at: Timestamp) -> Self {
        Self { at, position: None }
    }

    /// The same point with the system's own position.
    pub fn with_position(mut self, position: Position) -> Self {
        self.position = Some(position);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lsn_text() {
        assert_eq!(Lsn::new(0x0300_0148).to_string(), "0/3000148");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn::ZERO);
        for bad in ["", "0", "/1", "1/", "G/1", "123456789/0", "+1/0", "0/-1"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad}");
        }
    }

    #[test]
    fn replication_ids() {
        let id = "8c5e1c3f4e1a2b3c4d5e6f708192a3b4c5d6e7f8";
        assert_eq!(id.parse::<ReplicationId>().unwrap().as_str(), id);
        assert!(id.to_uppercase().parse::<ReplicationId>().is_err());
        assert!(id[1..].parse::<ReplicationId>().is_err());
    }

    #[test]
    fn positions_serialize_tagged() {
        let p = Position::Redis {
            replication_id: "8c5e1c3f4e1a2b3c4d5e6f708192a3b4c5d6e7f8".parse().unwrap(),
            offset: 42,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"system":"redis","replication_id":"8c5e1c3f4e1a2b3c4d5e6f708192a3b4c5d6e7f8","offset":42}"#
        );
        assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), p);
        assert!(serde_json::from_str::<Position>(r#"{"system":"mysql"}"#).is_err());
    }

    proptest! {
        #[test]
        fn lsns_round_trip(v in any::<u64>()) {
            let lsn = Lsn::new(v);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>().unwrap(), lsn);
            let json = serde_json::to_string(&lsn).unwrap();
            prop_assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), lsn);
        }

        #[test]
        fn recovery_points_round_trip(secs in 0i64..253_402_300_799, sysid in any::<u64>(), tli in 1u32.., lsn in any::<u64>()) {
            let point = RecoveryPoint::new(Timestamp::from_second(secs).unwrap())
                .with_position(Position::Postgres { system_identifier: sysid, timeline: tli, lsn: Lsn::new(lsn) });
            let json = serde_json::to_string(&point).unwrap();
            prop_assert_eq!(serde_json::from_str::<RecoveryPoint>(&json).unwrap(), point);
        }
    }
}
