//! The one error type of dr-core, shared by the sink and source traits.

use std::time::Duration;

use crate::ops::Capability;

/// A boxed error from a lower layer, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of dr-core and of the traits it defines.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in a form a caller can act on: see [`Error::kind`] and
/// [`Error::is_retryable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Text that should name a value (a duration, an id, a position) does not.
    #[error("invalid {what} {input:?}: {reason}")]
    Parse {
        /// What was being parsed, such as "RTO" or "component id".
        what: &'static str,
        /// The text as given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A value is outside the range the operation accepts.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// The value that was rejected.
        what: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The named thing does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, such as "snapshot 20261121T080553.123Z-1a2b3c4d".
        what: String,
    },
    /// A write-once thing already exists with other content.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What exists already.
        what: String,
    },
    /// Stored bytes do not match what was written: damaged, truncated or tampered with.
    #[error("{what} is corrupt: {reason}")]
    Corrupt {
        /// The damaged object.
        what: String,
        /// What check failed.
        reason: String,
    },
    /// A stored object was written in a format version this build cannot read.
    #[error("{what} has format version {found}, this build reads {supported}")]
    UnsupportedVersion {
        /// The object, such as "snapshot manifest".
        what: String,
        /// The version found.
        found: u32,
        /// The versions this build reads, as text ("1" or "1-2").
        supported: String,
    },
    /// The component cannot do what was asked (see its `Capabilities`).
    #[error("{component} does not support {capability:?}")]
    Unsupported {
        /// The component asked.
        component: String,
        /// The ability it lacks.
        capability: Capability,
    },
    /// The peer refused our credentials.
    #[error("authentication to {target} failed")]
    Auth {
        /// The server or store that refused.
        target: String,
        /// The peer's own words, where it gave any.
        #[source]
        source: Option<BoxError>,
    },
    /// The peer could not be reached or went away: worth retrying.
    #[error("{target} is unavailable")]
    Unavailable {
        /// The server or store.
        target: String,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// An operation took longer than the caller allowed.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What was being waited for.
        operation: String,
        /// How long was waited.
        after: Duration,
    },
    /// A safety guard refused the operation: a failover that would lose more
    /// than allowed, a lease another holds, a fence that did not hold. Not
    /// retryable as it is; the reason says what would change the answer.
    #[error("{operation} refused: {reason}")]
    Refused {
        /// What was refused, such as "failover of postgres/main".
        operation: String,
        /// Why, and what to do about it.
        reason: String,
    },
    /// A local I/O operation failed.
    #[error("{context}")]
    Io {
        /// What was being done, such as "writing /backups/config".
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An error from a component crate's own layer, classified by `kind`.
    #[error("{context}")]
    Other {
        /// How a caller should treat it.
        kind: ErrorKind,
        /// What was being done.
        context: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

/// The [`Error`] an `io::Error` carries, or the `io::Error` as it was.
fn carried(source: std::io::Error) -> std::result::Result<Error, std::io::Error> {
    if !source.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return Err(source);
    }
    let kind = source.kind();
    match source.into_inner() {
        Some(inner) => inner
            .downcast::<Error>()
            .map(|carried| *carried)
            .map_err(|other| std::io::Error::new(kind, other)),
        None => Err(std::io::Error::from(kind)),
    }
}

/// The class of an [`Error`], for deciding between retrying, failing over and paging.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input from the caller; retrying the same call fails again.
    InvalidInput,
    /// Something looked up does not exist.
    NotFound,
    /// A write-once object exists already.
    AlreadyExists,
    /// Stored data is damaged.
    Corrupt,
    /// A stored format version is unknown to this build.
    UnsupportedVersion,
    /// The component lacks the ability asked for.
    Unsupported,
    /// Credentials were refused.
    Auth,
    /// A peer was unreachable or failed transiently.
    Unavailable,
    /// An operation ran out of time.
    Timeout,
    /// Local I/O failed.
    Io,
    /// A bug or an impossible state in the peer or in drkit.
    Internal,
    /// A safety guard refused the operation (see [`Error::Refused`]).
    Refused,
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Parse { .. } | Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Auth { .. } => ErrorKind::Auth,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Io { .. } => ErrorKind::Io,
            Error::Refused { .. } => ErrorKind::Refused,
            Error::Other { kind, .. } => *kind,
        }
    }

    /// Whether the same call may succeed if tried again later: unreachable peers,
    /// timeouts and transient I/O failures. Corruption, bad input and refused
    /// credentials are never retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io { source, .. } => is_transient_io(source.kind()),
            _ => matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        }
    }

    /// An [`Error::Io`] with what was being done; but an `Error` that a
    /// stream carried through an `io::Error` ([`Error::into_io`]) comes back
    /// out as itself: damage met while reading a stored stream stays
    /// [`ErrorKind::Corrupt`], naming the damaged object, rather than
    /// becoming local I/O trouble with the cause out of sight.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        match carried(source) {
            Ok(carried) => carried,
            Err(source) => Error::Io {
                context: context.into(),
                source,
            },
        }
    }

    /// This error as an `io::Error`, for an `AsyncRead` to fail with:
    /// [`ErrorKind::Corrupt`] as `InvalidData`, [`ErrorKind::NotFound`] as
    /// `NotFound`, anything else as `Other`. [`Error::io`] unwraps it again.
    pub fn into_io(self) -> std::io::Error {
        let kind = match self.kind() {
            ErrorKind::Corrupt => std::io::ErrorKind::InvalidData,
            ErrorKind::NotFound => std::io::ErrorKind::NotFound,
            ErrorKind::Timeout => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }

    /// An [`Error::NotFound`].
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// An [`Error::Corrupt`].
    pub fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::InvalidInput`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Other`] of the given kind wrapping a lower layer's error.
    pub fn other(kind: ErrorKind, context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Other {
            kind,
            context: context.into(),
            source: Some(source.into()),
        }
    }
}

fn is_transient_io(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        kind,
        K::Interrupted
            | K::TimedOut
            | K::WouldBlock
            | K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_decide_retries() {
        let unavailable = Error::Unavailable {
            target: "127.0.0.1:5432".into(),
            source: "connection refused".into(),
        };
        assert_eq!(unavailable.kind(), ErrorKind::Unavailable);
        assert!(unavailable.is_retryable());

        let corrupt = Error::corrupt("pack 3f2a", "checksum mismatch");
        assert_eq!(corrupt.kind(), ErrorKind::Corrupt);
        assert!(!corrupt.is_retryable());

        let reset = Error::io(
            "reading",
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        );
        assert!(reset.is_retryable());
        let denied = Error::io(
            "writing",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        assert!(!denied.is_retryable());

        let auth = Error::Auth {
            target: "postgres".into(),
            source: None,
        };
        assert!(!auth.is_retryable());
        let timeout = Error::other(ErrorKind::Timeout, "waiting for promotion", "deadline");
        assert!(timeout.is_retryable());
    }

    #[test]
    fn messages_name_the_thing() {
        let err = Error::UnsupportedVersion {
            what: "snapshot manifest".into(),
            found: 9,
            supported: "1".into(),
        };
        assert_eq!(
            err.to_string(),
            "snapshot manifest has format version 9, this build reads 1"
        );
    }

    #[test]
    fn an_error_carried_through_io_comes_back_as_itself() {
        let damage = Error::corrupt("pack 3f2a", "a blob fails authentication");
        let io = damage.into_io();
        assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
        let back = Error::io("reading base.tar", io);
        assert_eq!(back.kind(), ErrorKind::Corrupt);
        assert_eq!(
            back.to_string(),
            "pack 3f2a is corrupt: a blob fails authentication"
        );
        // Any other io::Error keeps its context.
        let plain = Error::io(
            "reading base.tar",
            std::io::Error::new(std::io::ErrorKind::InvalidData, "bad header"),
        );
        assert_eq!(plain.kind(), ErrorKind::Io);
        assert_eq!(plain.to_string(), "reading base.tar");
    }
}
