//! dr-redis's error: what is wrong with an RDB or a DUMP payload, and where.

use std::fmt;

use dr_core::ErrorKind;

/// The result type of dr-redis.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where in an RDB (or in one value) a problem was found. Every part is
/// optional: a DUMP payload has no key and no database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Place {
    /// The byte offset from the start of the RDB.
    pub offset: Option<u64>,
    /// The byte offset from the start of the value's raw bytes, when the
    /// value was decoded on its own (a DUMP payload, [`decode_value`](crate::decode_value)).
    pub value_offset: Option<u64>,
    /// The database of the key.
    pub db: Option<u64>,
    /// The key, printable (non-printable bytes escaped, long keys cut).
    pub key: Option<String>,
    /// The value's type byte.
    pub value_type: Option<u8>,
}

impl Place {
    /// A place in the RDB at `offset`.
    pub(crate) fn at(offset: u64) -> Self {
        Self {
            offset: Some(offset),
            ..Self::default()
        }
    }

    /// A place inside a value at `offset` from its start.
    pub(crate) fn in_value(offset: u64) -> Self {
        Self {
            value_offset: Some(offset),
            ..Self::default()
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        match (self.offset, self.value_offset) {
            (Some(offset), _) => parts.push(format!("at byte {offset}")),
            (None, Some(offset)) => parts.push(format!("at byte {offset} of the value")),
            (None, None) => {}
        }
        if let Some(db) = self.db {
            parts.push(format!("db {db}"));
        }
        if let Some(key) = &self.key {
            parts.push(format!("key {key}"));
        }
        if let Some(value_type) = self.value_type {
            parts.push(format!(
                "type {value_type} ({})",
                crate::rdb::ValueType(value_type).name()
            ));
        }
        f.write_str(&parts.join(", "))
    }
}

/// A key as printable text for error messages: UTF-8 shown as it is, other
/// bytes escaped, cut after 64 bytes.
pub(crate) fn printable(key: &[u8]) -> String {
    const MAX: usize = 64;
    let shown = &key[..key.len().min(MAX)];
    let mut text = format!("\"{}\"", shown.escape_ascii());
    if key.len() > MAX {
        text.push_str(&format!("… ({} bytes)", key.len()));
    }
    text
}

/// What is wrong with an RDB or a DUMP payload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes break the format: a bad length, an unknown opcode, a
    /// listpack that does not add up, a value that ends before it should.
    #[error("RDB is corrupt ({place}): {reason}")]
    Corrupt {
        /// Where.
        place: Box<Place>,
        /// What check failed.
        reason: String,
    },
    /// The input ended before the RDB did (before its EOF opcode and checksum).
    #[error("RDB ends early ({place}): {reason}")]
    Truncated {
        /// Where the input ended.
        place: Box<Place>,
        /// What was being read.
        reason: &'static str,
    },
    /// The CRC-64 at the end of the RDB (or of a DUMP payload) does not match
    /// its contents.
    #[error(
        "{what} checksum mismatch: it says {expected:#018x}, its contents give {computed:#018x}"
    )]
    Checksum {
        /// "RDB" or "DUMP payload".
        what: &'static str,
        /// The checksum written in the data.
        expected: u64,
        /// The checksum of the contents.
        computed: u64,
    },
    /// A DUMP payload too short to hold a value and its trailer.
    #[error("invalid DUMP payload: {reason}")]
    InvalidPayload {
        /// What is wrong.
        reason: String,
    },
    /// The RDB version is one this build does not read (it reads 1 to 12;
    /// Redis 8.6's version 13 is refused).
    #[error("{what} has RDB version {version}; this build reads versions {SUPPORTED_VERSIONS}")]
    UnsupportedVersion {
        /// "RDB" or "DUMP payload".
        what: &'static str,
        /// The version found.
        version: u32,
    },
    /// The file is not a Redis RDB this build reads: another magic, such as
    /// Valkey 9's `VALKEY080`.
    #[error("unsupported RDB format \"{magic}\": {reason}")]
    UnsupportedFormat {
        /// The first bytes, printable.
        magic: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A value type byte this build does not read (a newer Redis, a module
    /// from Redis 4.0's release candidates).
    #[error("unsupported value type {value_type} ({place})")]
    UnsupportedType {
        /// The type byte.
        value_type: u8,
        /// Where.
        place: Box<Place>,
    },
    /// The parser was used after it failed, or fed after its input ended.
    #[error("RDB parser misused: {reason}")]
    InvalidState {
        /// What was wrong.
        reason: &'static str,
    },
    /// Reading the RDB from its reader failed.
    #[error("reading the RDB failed at byte {offset}")]
    Io {
        /// How many bytes had been read.
        offset: u64,
        /// The reader's error.
        #[source]
        source: std::io::Error,
    },
    /// A Redis server could not be connected to.
    #[error("Redis server {addr} cannot be reached")]
    Unreachable {
        /// `host:port`.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection to a Redis server broke.
    #[error("the connection to Redis server {addr} broke while {what}")]
    Connection {
        /// `host:port`.
        addr: String,
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A Redis server closed the connection before answering.
    #[error("Redis server {addr} closed the connection while {what}")]
    Closed {
        /// `host:port`.
        addr: String,
        /// What was being done.
        what: &'static str,
    },
    /// A Redis server closed the connection before the RDB it was sending
    /// ended.
    #[error(
        "Redis server {addr} closed the connection after {received} bytes of the RDB{}",
        expected.map(|n| format!(" of {n}")).unwrap_or_default()
    )]
    EndedEarly {
        /// `host:port`.
        addr: String,
        /// RDB bytes received.
        received: u64,
        /// The RDB's announced length, if it was announced.
        expected: Option<u64>,
    },
    /// Nothing arrived from a Redis server for too long.
    #[error("Redis server {addr} sent nothing for {} s while {what}", after.as_secs_f64())]
    Idle {
        /// `host:port`.
        addr: String,
        /// What was being done.
        what: &'static str,
        /// How long.
        after: std::time::Duration,
    },
    /// A Redis server answered a command with an error: a refused password
    /// (`WRONGPASS`), a user without the permission (`NOPERM`), a command a
    /// managed service disabled, a replica whose master link is down.
    #[error("Redis server {addr} refused {command}: {message}")]
    ServerRefused {
        /// `host:port`.
        addr: String,
        /// The command.
        command: &'static str,
        /// The server's error line, without its `-`.
        message: String,
    },
    /// The TLS handshake with a Redis server failed: a certificate that
    /// does not check, or a server that does not speak TLS.
    #[error("TLS with Redis server {addr} failed")]
    Tls {
        /// `host:port`.
        addr: String,
        /// The handshake's error.
        #[source]
        source: std::io::Error,
    },
    /// A path given as Redis's files is neither an RDB file nor an
    /// append-only directory this build reads.
    #[error("{path} is not Redis's files: {reason}")]
    NotRedisFiles {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The peer does not speak Redis's protocol as expected.
    #[error("{addr} does not answer as a Redis server: {reason}")]
    NotRedis {
        /// `host:port`.
        addr: String,
        /// What it said.
        reason: String,
    },
    /// A restore's target cannot take a key of the snapshot: a server older
    /// than the snapshot's RDB version rebuilds values from plain commands,
    /// and some values have none.
    #[error("key {key} cannot be restored into this server: it holds {what}")]
    CannotCarry {
        /// The key, printable.
        key: String,
        /// What the server lacks.
        what: String,
    },
    /// Keys (or function libraries) of the snapshot already exist in the
    /// restore's target, and the restore was asked to fail on conflicts.
    #[error(
        "{count} {what} of the snapshot already exist on {addr} (such as {examples}); \
         nothing was written: restore with conflicts replaced or skipped, or into an empty server"
    )]
    Conflicts {
        /// `host:port`.
        addr: String,
        /// `keys` or `function libraries`.
        what: &'static str,
        /// How many.
        count: u64,
        /// A few of them, printable.
        examples: String,
    },
    /// The restore's target cannot take this restore at all.
    #[error("Redis server {addr} cannot take this restore: {reason}")]
    WrongTarget {
        /// `host:port`.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// The kind of a server's error reply, by its code.
fn refusal_kind(message: &str) -> ErrorKind {
    let code = message.split(' ').next().unwrap_or_default();
    match code {
        "WRONGPASS" | "NOAUTH" | "NOPERM" => ErrorKind::Auth,
        "LOADING" | "BUSY" | "MASTERDOWN" | "NOMASTERLINK" | "TRYAGAIN" | "CLUSTERDOWN" => {
            ErrorKind::Unavailable
        }
        // An unknown or disabled command: a managed service without SYNC.
        _ if message.contains("unknown command") => ErrorKind::Unsupported,
        _ => ErrorKind::Refused,
    }
}

/// The RDB versions this build reads, as text.
pub const SUPPORTED_VERSIONS: &str = "1-12";

impl Error {
    /// The class of this error: [`ErrorKind::Corrupt`] for damaged or
    /// truncated data and checksum mismatches, [`ErrorKind::UnsupportedVersion`]
    /// for versions, formats and types this build does not read.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Corrupt { .. }
            | Error::Truncated { .. }
            | Error::Checksum { .. }
            | Error::InvalidPayload { .. } => ErrorKind::Corrupt,
            Error::UnsupportedVersion { .. }
            | Error::UnsupportedFormat { .. }
            | Error::UnsupportedType { .. } => ErrorKind::UnsupportedVersion,
            Error::InvalidState { .. }
            | Error::NotRedis { .. }
            | Error::NotRedisFiles { .. }
            | Error::WrongTarget { .. } => ErrorKind::InvalidInput,
            Error::CannotCarry { .. } => ErrorKind::Unsupported,
            Error::Conflicts { .. } => ErrorKind::AlreadyExists,
            Error::Io { .. } => ErrorKind::Io,
            Error::Unreachable { .. }
            | Error::Connection { .. }
            | Error::Closed { .. }
            | Error::EndedEarly { .. } => ErrorKind::Unavailable,
            Error::Idle { .. } => ErrorKind::Timeout,
            // rustls reports certificate and protocol failures as InvalidData;
            // anything else is the connection going away mid-handshake.
            Error::Tls { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
                ErrorKind::Auth
            }
            Error::Tls { .. } => ErrorKind::Unavailable,
            Error::ServerRefused { message, .. } => refusal_kind(message),
        }
    }

    /// Whether reading again may succeed: only for I/O errors that are
    /// transient. Damaged data stays damaged.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            ),
            Error::Unreachable { .. }
            | Error::Connection { .. }
            | Error::Closed { .. }
            | Error::EndedEarly { .. }
            | Error::Idle { .. } => true,
            Error::ServerRefused { .. } => self.kind() == ErrorKind::Unavailable,
            _ => false,
        }
    }

    /// Where the problem is, when the error has a place.
    pub fn place(&self) -> Option<&Place> {
        match self {
            Error::Corrupt { place, .. }
            | Error::Truncated { place, .. }
            | Error::UnsupportedType { place, .. } => Some(place),
            _ => None,
        }
    }

    pub(crate) fn corrupt(place: Place, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            place: Box::new(place),
            reason: reason.into(),
        }
    }

    /// This error with its place completed by `locate`.
    pub(crate) fn locate(mut self, locate: impl FnOnce(&mut Place)) -> Self {
        if let Error::Corrupt { place, .. }
        | Error::Truncated { place, .. }
        | Error::UnsupportedType { place, .. } = &mut self
        {
            locate(place);
        }
        self
    }

    /// This error placed at a key: its database, printable name, type, and
    /// the RDB offset where its value starts (to which an offset inside the
    /// value is added).
    pub(crate) fn at_key(
        self,
        db: u64,
        key: &[u8],
        value_type: u8,
        value_start: Option<u64>,
    ) -> Self {
        self.locate(|place| {
            place.db = Some(db);
            place.key = Some(printable(key));
            place.value_type = Some(value_type);
            if let (Some(start), Some(inner), None) =
                (value_start, place.value_offset, place.offset)
            {
                place.offset = start.checked_add(inner);
            }
        })
    }
}

impl From<Error> for dr_core::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::UnsupportedVersion { what, version } => dr_core::Error::UnsupportedVersion {
                what: what.to_owned(),
                found: version,
                supported: SUPPORTED_VERSIONS.to_owned(),
            },
            Error::Io { offset, source } => {
                dr_core::Error::io(format!("reading an RDB at byte {offset}"), source)
            }
            other => dr_core::Error::other(other.kind(), other.to_string(), other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_places() {
        let err = Error::corrupt(Place::in_value(7), "bad listpack").at_key(
            2,
            b"user:\x01",
            16,
            Some(100),
        );
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert_eq!(
            err.to_string(),
            "RDB is corrupt (at byte 107, db 2, key \"user:\\x01\", type 16 (hash listpack)): bad listpack"
        );
        let core: dr_core::Error = err.into();
        assert_eq!(core.kind(), ErrorKind::Corrupt);

        let version = Error::UnsupportedVersion {
            what: "RDB",
            version: 13,
        };
        assert_eq!(
            version.to_string(),
            "RDB has RDB version 13; this build reads versions 1-12"
        );
        assert_eq!(
            dr_core::Error::from(version).kind(),
            ErrorKind::UnsupportedVersion
        );
        assert!(
            !Error::Checksum {
                what: "RDB",
                expected: 1,
                computed: 2
            }
            .is_retryable()
        );
    }

    #[test]
    fn long_keys_are_cut() {
        let key = vec![b'a'; 100];
        assert_eq!(
            printable(&key),
            format!("\"{}\"… (100 bytes)", "a".repeat(64))
        );
    }
}
