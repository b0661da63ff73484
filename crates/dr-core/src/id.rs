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

/// Checks one segment of a name as real systems name things (a LiveKit
/// room "Team Standup", a Kubernetes `api.v1`, a Redis-like `user:1000`):
/// any characters but `/` and control characters, not empty, not `.` or `..`.
fn check_name_segment(what: &'static str, input: &str, segment: &str) -> Result<()> {
    if segment.is_empty() {
        return Err(parse_error(what, input, "empty segment"));
    }
    if segment == "." || segment == ".." {
        return Err(parse_error(what, input, "a segment may not be '.' or '..'"));
    }
    if segment.chars().any(char::is_control) {
        return Err(parse_error(
            what,
            input,
            "control characters are not allowed",
        ));
    }
    Ok(())
}

/// Whether `byte` stands for itself in a segment's storage form.
fn is_plain(byte: u8, first: bool) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || (byte == b'.' && !first)
}

/// A segment's storage form: bytes outside `[A-Za-z0-9._-]`, `%` itself
/// and a leading `.` as `%XX`. Names of those characters alone are their
/// own storage form.
fn escape_segment(segment: &str, out: &mut String) {
    for (i, byte) in segment.bytes().enumerate() {
        if is_plain(byte, i == 0) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// The segment a storage form stands for, or `None` if it is not one.
fn unescape_segment(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = escaped.get(i + 1..i + 3)?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            // Only the one form escape_segment writes.
            if is_plain(byte, out.is_empty()) || hex != format!("{byte:02X}") {
                return None;
            }
            out.push(byte);
            i += 3;
        } else if is_plain(bytes[i], out.is_empty()) {
            out.push(bytes[i]);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
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
/// `k8s/production/api.v1`, `livekit/rooms/Team Standup`. The first segment
/// is the kind of system (lowercase letters, digits, `-`), the rest names
/// the instance the way its system does: `/`-separated segments of any
/// characters but control characters, none empty, `.` or `..`; 255 bytes
/// at most.
///
/// Where it names stored objects, it is written in its
/// [storage form](ComponentId::storage_path), in which every character
/// outside `[A-Za-z0-9._-]` is escaped.
///
/// ```
/// # use dr_core::ComponentId;
/// let id: ComponentId = "postgres/gomeet_primary".parse()?;
/// assert_eq!(id.kind(), "postgres");
/// assert_eq!(id.name(), "gomeet_primary");
/// assert_eq!(id.storage_path(), "postgres/gomeet_primary");
/// let room: ComponentId = "livekit/Team Standup: 100%".parse()?;
/// assert_eq!(room.storage_path(), "livekit/Team%20Standup%3A%20100%25");
/// assert_eq!(ComponentId::from_storage_path(&room.storage_path())?, room);
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

    /// The id as it names stored objects: `/`-separated segments of
    /// `[A-Za-z0-9._-]` and `%XX` escapes (of every other byte, of `%`, and
    /// of a leading `.`), none empty. An id of those characters alone is
    /// its own storage form; different ids never share one.
    pub fn storage_path(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        out.push_str(self.kind());
        for segment in self.name().split('/') {
            out.push('/');
            escape_segment(segment, &mut out);
        }
        out
    }

    /// The id whose [`storage_path`](ComponentId::storage_path) is `path`.
    ///
    /// # Errors
    /// [`Error::Parse`] if `path` is not the storage form of an id.
    pub fn from_storage_path(path: &str) -> Result<Self> {
        let err = || {
            parse_error(
                "component storage path",
                path,
                "not a component's storage form",
            )
        };
        let (kind, name) = path.split_once('/').ok_or_else(err)?;
        let segments = name
            .split('/')
            .map(|segment| unescape_segment(segment).ok_or_else(err))
            .collect::<Result<Vec<_>>>()?;
        format!("{kind}/{}", segments.join("/")).parse()
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
            check_name_segment(WHAT, s, segment)?;
        }
        Ok(Self(s.to_owned()))
    }
}

string_id!(ComponentId);

/// The name of one byte stream in a snapshot: `base.tar`, `pg_tblspc/16385.tar`,
/// `dump.rdb`, `rooms/Team Standup.json`. Slash-separated segments as in a
/// [`ComponentId`]'s name: no empty, `.` or `..` segment, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamName(String);

impl FromStr for StreamName {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "stream name";
        check_len(WHAT, s)?;
        for segment in s.split('/') {
            check_name_segment(WHAT, s, segment)?;
        }
        Ok(Self(s.to_owned()))
    }
}

string_id!(StreamName);

/// The name of one segment of a continuous archive, such as a WAL segment
/// `000000010000000000000003`, a history file `00000002.history` or a Redis
/// AOF file `appendonly.aof.10.incr.aof`. Its order as text says nothing of
/// the archive's order: the component that wrote the names reads their
/// positions or sequence numbers out of them (`appendonly.aof.9` comes before
/// `appendonly.aof.10`).
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
        for ok in [
            "livekit/Team Standup",
            "redis/user:1000",
            "k8s/prod/api.v1",
            "pg/-x",
            "livekit/Réunion 🎥",
        ] {
            let id: ComponentId = ok.parse().unwrap();
            assert_eq!(id.to_string(), ok);
        }
        for bad in [
            "",
            "postgres",
            "Postgres/x",
            "postgres/",
            "/x",
            "postgres/a//b",
            "postgres/../x",
            "pg/./x",
            "pg/a\nb",
            "pg/tab\there",
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

    /// Names as systems write them: any printable characters but '/'.
    fn any_component_id() -> impl Strategy<Value = String> {
        (
            "[a-z][a-z0-9-]{0,10}",
            prop::collection::vec("[^/\\p{Cc}]{1,12}", 1..4),
        )
            .prop_filter_map("not '.' or '..'", |(kind, segs)| {
                segs.iter()
                    .all(|s| s != "." && s != "..")
                    .then(|| format!("{kind}/{}", segs.join("/")))
            })
    }

    #[test]
    fn storage_paths_escape_what_keys_cannot_hold() {
        let id: ComponentId = "livekit/rooms/.hidden %/a.b".parse().unwrap();
        assert_eq!(id.storage_path(), "livekit/rooms/%2Ehidden%20%25/a.b");
        for bad in [
            "livekit",
            "livekit/a%2",
            "livekit/a%2e",
            "livekit/%61",
            "livekit/.x",
            "livekit/a b",
        ] {
            assert!(ComponentId::from_storage_path(bad).is_err(), "{bad}");
        }
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
        fn any_names_have_one_storage_form_of_key_characters(text in any_component_id()) {
            let Ok(id) = text.parse::<ComponentId>() else {
                // Only an over-long name may be refused.
                prop_assert!(text.len() > MAX_NAME_LEN);
                return Ok(());
            };
            let path = id.storage_path();
            for segment in path.split('/') {
                prop_assert!(!segment.is_empty() && !segment.starts_with('.'), "{}", path);
                prop_assert!(
                    segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-%".contains(&b)),
                    "{}", path
                );
            }
            prop_assert_eq!(ComponentId::from_storage_path(&path).unwrap(), id);
        }

        #[test]
        fn plain_names_are_their_own_storage_form(text in component_id()) {
            let id: ComponentId = text.parse().unwrap();
            prop_assert_eq!(id.storage_path(), text);
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
