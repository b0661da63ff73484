//! [`Error`]: what went wrong, saying which server and which call.

use std::time::Duration;

/// A dr-livekit failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The settings cannot be used (an empty key, a URL that is not one).
    #[error("LiveKit settings: {reason}")]
    InvalidConfig {
        /// Why.
        reason: String,
    },
    /// The server did not take the API key and secret (Twirp
    /// `unauthenticated`, HTTP 401).
    #[error("{call} on {url}: the server refused the API key or secret: {message}")]
    Unauthenticated {
        /// The server.
        url: String,
        /// The call, `Service.Method`.
        call: String,
        /// What the server said.
        message: String,
    },
    /// The token lacks a grant the call needs (Twirp `permission_denied`,
    /// HTTP 403).
    #[error("{call} on {url}: permission denied ({message}); the key needs the {grant} grant")]
    PermissionDenied {
        /// The server.
        url: String,
        /// The call, `Service.Method`.
        call: String,
        /// The grant LiveKit wants for it.
        grant: &'static str,
        /// What the server said.
        message: String,
    },
    /// The server could not be reached, or did not answer in time.
    #[error("{call} on {url}: unreachable: {reason}")]
    Unreachable {
        /// The server.
        url: String,
        /// The call, `Service.Method`, or the probe.
        call: String,
        /// Why (connection refused, timed out, ...).
        reason: String,
    },
    /// Something answered that is not a LiveKit server (an HTML page, a
    /// body that is not Twirp's protobuf or JSON).
    #[error(
        "{call} on {url}: the answer is not LiveKit's ({reason}); is the URL a LiveKit server?"
    )]
    NotLiveKit {
        /// The server.
        url: String,
        /// The call, `Service.Method`, or the probe.
        call: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// The server answered with a Twirp error other than the above.
    #[error("{call} on {url}: the server answered {code}: {message}")]
    Server {
        /// The server.
        url: String,
        /// The call, `Service.Method`.
        call: String,
        /// The Twirp error code (`not_found`, `unavailable`, ...).
        code: String,
        /// What the server said.
        message: String,
    },
    /// A stored LiveKit snapshot does not read as one.
    #[error("LiveKit snapshot {snapshot}: {reason}")]
    Corrupt {
        /// The snapshot.
        snapshot: String,
        /// What is wrong.
        reason: String,
    },
    /// A stored snapshot was written by a newer drkit (its format is
    /// unknown to this one).
    #[error("LiveKit snapshot {snapshot} is of format {found}; this drkit reads format {known}")]
    UnknownFormat {
        /// The snapshot.
        snapshot: String,
        /// The format it has.
        found: u32,
        /// The format this drkit reads.
        known: u32,
    },
    /// A webhook that did not verify (bad signature, wrong key, body
    /// changed) or did not read.
    #[error("webhook refused: {reason}")]
    Webhook {
        /// Why.
        reason: String,
    },
    /// A wait ran out.
    #[error("{what}: not done within {after:?}")]
    TimedOut {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
    },
}

impl Error {
    /// Whether trying the same again later may succeed (the server was
    /// unreachable or unavailable).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::TimedOut { .. } => true,
            Error::Server { code, .. } => {
                matches!(
                    code.as_str(),
                    "unavailable" | "resource_exhausted" | "internal"
                )
            }
            _ => false,
        }
    }

    /// Whether the server answered that the thing asked for is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Server { code, .. } if code == "not_found")
    }

    /// Whether the server does not offer the call (Twirp `unimplemented`
    /// or `bad_route`: a server without SIP, an older version).
    pub fn is_unimplemented(&self) -> bool {
        matches!(self, Error::Server { code, .. } if code == "unimplemented" || code == "bad_route")
    }
}

/// A dr-livekit result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for dr_core::Error {
    fn from(error: Error) -> Self {
        use dr_core::ErrorKind;
        let kind = match &error {
            Error::InvalidConfig { .. } => ErrorKind::InvalidInput,
            Error::Unauthenticated { .. } | Error::PermissionDenied { .. } => ErrorKind::Auth,
            Error::Unreachable { .. } => ErrorKind::Unavailable,
            Error::NotLiveKit { .. } => ErrorKind::Refused,
            Error::Server { code, .. } => match code.as_str() {
                "not_found" | "bad_route" => ErrorKind::NotFound,
                "already_exists" => ErrorKind::AlreadyExists,
                "unavailable" | "resource_exhausted" | "internal" => ErrorKind::Unavailable,
                "invalid_argument" | "malformed" | "out_of_range" => ErrorKind::InvalidInput,
                "unimplemented" => ErrorKind::Unsupported,
                "deadline_exceeded" => ErrorKind::Timeout,
                _ => ErrorKind::Refused,
            },
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::UnknownFormat { .. } => ErrorKind::UnsupportedVersion,
            Error::Webhook { .. } => ErrorKind::Auth,
            Error::TimedOut { .. } => ErrorKind::Timeout,
        };
        dr_core::Error::other(kind, error.to_string(), error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_let_a_caller_decide() {
        let server = |code: &str| Error::Server {
            url: "http://sfu:7880".into(),
            call: "RoomService.ListRooms".into(),
            code: code.into(),
            message: "x".into(),
        };
        assert!(server("unavailable").is_retryable());
        assert!(!server("not_found").is_retryable());
        assert!(server("not_found").is_not_found());
        assert!(server("unimplemented").is_unimplemented());
        let core: dr_core::Error = server("not_found").into();
        assert_eq!(core.kind(), dr_core::ErrorKind::NotFound);
        let core: dr_core::Error = Error::Unauthenticated {
            url: "u".into(),
            call: "c".into(),
            message: "m".into(),
        }
        .into();
        assert_eq!(core.kind(), dr_core::ErrorKind::Auth);
    }
}
