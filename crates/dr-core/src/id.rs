//! Identities: components, snapshots, streams, archive segments and content digests.
//! Each is parsed once, checked, and printed back exactly as parsed.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest id or name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

fn parse_error(what: &'static str, input: &str, reason: &'static str) -> Error {
    Error::Parse {
        what,
        input: input.to_owned(),
        reason,
    }
}

/// Checks one path segment: `[A-Za-z0-9][A-Za-z0-9._-]*`.
fn check_segment(what: &'static str, input: &str, segment: &str) -> Result<()> {
    let mut bytes = segment.bytes();
    match bytes.next() {
        None => return Err(parse_error(what, input, "empty segment")),
        Some(b) if !b.is_ascii_alphanumeric() => {
            return Err(parse_error(
                what,
                input,
                "a segment must start with a letter or digit",
            ));
        }
        Some(_) => {}
    }
    if bytes.any(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))) {
        return Err(parse_error(
            what,
            input,
            "only letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}

fn check_len(what: &'static str, input: &str) -> Result<()> {
    if input.len() > MAX_NAME_LEN {
        return Err(parse_error(what, input, "longer than 255 bytes"));
    }
    Ok(())
}

macro_rules! string_id {
    ($name:ident) => {
        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;

            fn try_from(s: String) -> Result<Self> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A component of a DR plan: `postgres/gomeet_primary`, `redis/master-0`,
/// `k8s/production/api`. The first segment is the kind of system (lowercase),
/// the rest names the instance.
///
/// ```
/// # use dr_core::ComponentId;
/// let id: ComponentId = "postgres/gomeet_primary".parse()?;
/// assert_eq!(id.kind(), "postgres");
/// assert_eq!(id.name(), "gomeet_primary");
/// assert!("postgres".parse::<ComponentId>().is_err());
/// # Ok::<(), dr_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ComponentId(String);

impl ComponentId {
    /// The kind of system: `postgres`, `redis`, `k8s`, `livekit`, ...
    pub fn kind(&self) -> &str {
        self.0.split_once('/').map_or(&self.0, |(kind, _)| kind)
    }

    /// The instance name, everything after the kind.
    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, name)| name)
    }
}

impl FromStr for ComponentId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "component id";
        check_len(WHAT, s)?;
        let Some((kind, name)) = s.split_once('/') else {
            return Err(parse_error(
                WHAT,
                s,
                "expected kind/name, such as postgres/main",
            ));
        };
        let mut kind_bytes = kind.bytes();
        let kind_ok = kind_bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && kind_bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !kind_ok {
            return Err(parse_error(
                WHAT,
                s,
                "the kind must be lowercase letters, digits and '-'",
            ));
        }
        for segment in name.split('/') {
            check_segment(WHAT, s, segment)?;
        }
        Ok(Self(s.to_owned()))
    }
}

string_id!(ComponentId);

/// The name of one byte stream in a snapshot: `base.tar`, `pg_tblspc/16385.tar`,
/// `dump.rdb`, `backup_manifest`. Slash-separated segments, no `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamName(String);

impl FromStr for StreamName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "stream name";
        check_len(WHAT, s)?;
        for segment in s.split('/') {
            check_segment(WHAT, s, segment)?;
        }
        Ok(Self(s.to_owned()))
    }
}

string_id!(StreamName);

/// The name of one segment of a continuous archive, such as a WAL segment
/// `000000010000000000000003` or a history file `00000002.history`. Names sort
/// the way the archive is read: lexicographically.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SegmentName(String);

impl FromStr for SegmentName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "segment name";
        check_len(WHAT, s)?;
        check_segment(WHAT, s, s)?;
        Ok(Self(s.to_owned()))
    }
}

string_id!(SegmentName);

/// The id of a snapshot: its UTC start time to the millisecond and a random
/// suffix, `20261121T080553.123Z-1a2b3c4d`. Ids sort by time, both as values and
/// as text, so a listing of stored objects is already in time order.
///
/// ```
/// # use dr_core::SnapshotId;
/// let at: jiff::Timestamp = "2026-11-21T08:05:53.123Z".parse().unwrap();
/// let id = SnapshotId::from_parts(at, 0x1a2b3c4d)?;
/// assert_eq!(id.to_string(), "20261121T080553.123Z-1a2b3c4d");
/// assert_eq!(id.to_string().parse::<SnapshotId>()?, id);
/// assert_eq!(id.timestamp(), at);
/// # Ok::<(), dr_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SnapshotId {
    millis: i64,
    nonce: u32,
}

impl SnapshotId {
    /// A new id for a snapshot started at `at`, with a random suffix.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if `at` is before 1970 or after 9999 (the text
    /// form has four-digit years), or if the system has no randomness source.
    pub fn new(at: Timestamp) -> Result<Self> {
        let nonce = getrandom::u32().map_err(|e| Error::invalid("random source", e.to_string()))?;
        Self::from_parts(at, nonce)
    }

    /// The id for a given start time and suffix.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if `at` is before 1970 or after year 9999.
    pub fn from_parts(at: Timestamp, nonce: u32) -> Result<Self> {
        let millis = at.as_millisecond();
        if !(0..=MAX_MILLIS).contains(&millis) {
            return Err(Error::invalid(
                format!("snapshot time {at}"),
                "must lie between 1970 and 9999",
            ));
        }
        Ok(Self { millis, nonce })
    }

    /// The start time, to the millisecond.
    pub fn timestamp(&self) -> Timestamp {
        // In range by construction.
        Timestamp::from_millisecond(self.millis).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// The random suffix.
    pub fn nonce(&self) -> u32 {
        self.nonce
    }
}

/// 9999-12-31T23:59:59.999Z in milliseconds since the epoch.
const MAX_MILLIS: i64 = 253_402_300_799_999;

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = self.timestamp().to_zoned(TimeZone::UTC).datetime();
        write!(
            f,
            "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z-{:08x}",
            dt.year(),
            dt.month(),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second(),
            dt.subsec_nanosecond() / 1_000_000,
            self.nonce
        )
    }
}

impl FromStr for SnapshotId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "snapshot id";
        let err = |reason| parse_error(WHAT, s, reason);
        let b = s.as_bytes();
        // YYYYMMDDTHHMMSS.mmmZ-xxxxxxxx
        let shape_ok = b.len() == 29
            && b[8] == b'T'
            && b[15] == b'.'
            && b[19] == b'Z'
            && b[20] == b'-'
            && [0..8, 9..15, 16..19]
                .iter()
                .all(|r| b[r.clone()].iter().all(u8::is_ascii_digit))
            && b[21..]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
        if !shape_ok {
            return Err(err("expected YYYYMMDDTHHMMSS.mmmZ-xxxxxxxx"));
        }
        let num = |r: std::ops::Range<usize>| s[r].parse::<i16>().map_err(|_| err("bad number"));
        let dt = DateTime::new(
            num(0..4)?,
            num(4..6)? as i8,
            num(6..8)? as i8,
            num(9..11)? as i8,
            num(11..13)? as i8,
            num(13..15)? as i8,
            i32::from(num(16..19)?) * 1_000_000,
        )
        .map_err(|_| err("not a valid date and time"))?;
        let at = dt
            .to_zoned(TimeZone::UTC)
            .map_err(|_| err("not a valid date and time"))?
            .timestamp();
        let nonce = u32::from_str_radix(&s[21..], 16).map_err(|_| err("bad suffix"))?;
        Self::from_parts(at, nonce).map_err(|_| err("must lie between 1970 and 9999"))
    }
}

impl TryFrom<String> for SnapshotId {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<SnapshotId> for String {
    fn from(value: SnapshotId) -> String {
        value.to_string()
    }
}

/// A SHA-256 digest, printed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest of given bytes, computed elsewhere.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl FromStr for Sha256Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let err = |reason| parse_error("SHA-256 digest", s, reason);
        if s.len() != 64 {
            return Err(err("expected 64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            let pair = s.get(2 * i..2 * i + 2).ok_or(err("expected hex digits"))?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| err("expected hex digits"))?;
        }
        Ok(Self(out))
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Sha256Digest> for String {
    fn from(value: Sha256Digest) -> String {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn component_ids() {
        for ok in [
            "postgres/gomeet_primary",
            "redis/master-0",
            "k8s/production/api",
            "livekit/sfu.eu-1",
        ] {
            let id: ComponentId = ok.parse().unwrap();
            assert_eq!(id.to_string(), ok);
        }
        let id: ComponentId = "k8s/production/api".parse().unwrap();
        assert_eq!((id.kind(), id.name()), ("k8s", "production/api"));
        for bad in [
            "",
            "postgres",
            "Postgres/x",
            "postgres/",
            "/x",
            "postgres/a//b",
            "postgres/../x",
            "pg/a b",
            "pg/-x",
        ] {
            assert!(bad.parse::<ComponentId>().is_err(), "{bad}");
        }
        assert!(
            format!("pg/{}", "x".repeat(300))
                .parse::<ComponentId>()
                .is_err()
        );
    }

    #[test]
    fn stream_and_segment_names() {
        assert!("pg_tblspc/16385.tar".parse::<StreamName>().is_ok());
        assert!("../etc/passwd".parse::<StreamName>().is_err());
        assert!("a/./b".parse::<StreamName>().is_err());
        assert!("000000010000000000000003".parse::<SegmentName>().is_ok());
        assert!("00000002.history".parse::<SegmentName>().is_ok());
        assert!("a/b".parse::<SegmentName>().is_err());
    }

    #[test]
    fn snapshot_ids_reject_bad_text() {
        for bad in [
            "",
            "20261121T080553.123Z",
            "20261121T080553.123Z-1A2B3C4D",
            "20261321T080553.123Z-1a2b3c4d",
            "20261121T250553.123Z-1a2b3c4d",
            "19691231T235959.999Z-00000000",
            "2026112xT080553.123Z-1a2b3c4d",
        ] {
            assert!(bad.parse::<SnapshotId>().is_err(), "{bad}");
        }
        let before_epoch = Timestamp::from_second(-1).unwrap();
        assert!(SnapshotId::from_parts(before_epoch, 0).is_err());
    }

    #[test]
    fn new_snapshot_ids_differ() {
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let a = SnapshotId::new(at).unwrap();
        let b = SnapshotId::new(at).unwrap();
        assert_eq!(a.timestamp(), at);
        assert_ne!(a, b);
    }

    #[test]
    fn digests() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d: Sha256Digest = hex.parse().unwrap();
        assert_eq!(d.to_string(), hex);
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{hex}\""));
        assert!(hex[..63].parse::<Sha256Digest>().is_err());
        assert!(hex.replace('e', "g").parse::<Sha256Digest>().is_err());
        assert!("é".repeat(32).parse::<Sha256Digest>().is_err());
    }

    fn component_id() -> impl Strategy<Value = String> {
        (
            "[a-z][a-z0-9-]{0,10}",
            prop::collection::vec("[A-Za-z0-9][A-Za-z0-9._-]{0,12}", 1..4),
        )
            .prop_map(|(kind, segs)| format!("{kind}/{}", segs.join("/")))
    }

    proptest! {
        #[test]
        fn component_ids_round_trip(text in component_id()) {
            let id: ComponentId = text.parse().unwrap();
            prop_assert_eq!(id.to_string(), text.clone());
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<ComponentId>(&json).unwrap(), id);
        }

        #[test]
        fn snapshot_ids_round_trip_and_sort_by_time(
            a in 0i64..=MAX_MILLIS, b in 0i64..=MAX_MILLIS, na in any::<u32>(), nb in any::<u32>()
        ) {
            let ia = SnapshotId::from_parts(Timestamp::from_millisecond(a).unwrap(), na).unwrap();
            let ib = SnapshotId::from_parts(Timestamp::from_millisecond(b).unwrap(), nb).unwrap();
            prop_assert_eq!(ia.to_string().parse::<SnapshotId>().unwrap(), ia);
            prop_assert_eq!(ia.cmp(&ib), ia.to_string().cmp(&ib.to_string()));
            prop_assert_eq!(a.cmp(&b).then(na.cmp(&nb)), ia.cmp(&ib));
        }

        #[test]
        fn id_parsers_never_panic(text in "\\PC{0,40}") {
            let _ = text.parse::<ComponentId>();
            let _ = text.parse::<SnapshotId>();
            let _ = text.parse::<StreamName>();
            let _ = text.parse::<Sha256Digest>();
        }
    }
}
