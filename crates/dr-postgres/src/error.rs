//! dr-postgres's error: which server, what it said, and whether a retry can help.

use std::fmt;
use std::time::Duration;

use dr_core::ErrorKind;

use crate::wal_records::WalReadError;
pub use tokio_postgres::error::SqlState;

/// A boxed error from a lower layer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of dr-postgres.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection settings cannot be used (no host, no user, a mismatched
    /// number of ports).
    #[error("invalid connection settings: {reason}")]
    Config {
        /// What is wrong with them.
        reason: String,
    },
    /// An argument cannot be used: it cannot be sent to the server (a NUL
    /// byte in a name, a rate out of range), or it is not what it should be
    /// (a WAL file name that is not one).
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// The argument.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// The call does not fit the state of the connection or stream, such as
    /// taking the client back from a base backup that has not ended.
    #[error("{reason}")]
    InvalidState {
        /// What was wrong.
        reason: &'static str,
    },
    /// No connection could be opened to the server: refused, unreachable, or
    /// the name did not resolve.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The host and port, or the socket path, tried last.
        addr: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting took longer than the configured `connect_timeout`.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What was being waited for.
        operation: String,
        /// How long was waited.
        after: Duration,
    },
    /// TLS could not be set up: the server refused it where it was required,
    /// or the handshake failed (an untrusted or mismatched certificate, a lost
    /// connection).
    #[error("TLS with {addr}: {reason}")]
    Tls {
        /// The server.
        addr: String,
        /// What failed.
        reason: String,
        /// The handshake's error, when there was a handshake.
        #[source]
        source: Option<std::io::Error>,
    },
    /// Authentication failed on our side: the server asked for a password and
    /// none was configured, asked for a method this client does not speak, or
    /// failed to prove it knows the SCRAM password. A password the server
    /// rejects is an [`Error::Server`] with SQLSTATE `28P01`.
    #[error("authentication with {addr} failed: {reason}")]
    Auth {
        /// The server.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The server answered with an error. [`Error::code`] gives its SQLSTATE.
    #[error("{addr}: {error}")]
    Server {
        /// The server.
        addr: String,
        /// What the server said.
        #[source]
        error: Box<ServerError>,
    },
    /// The server sent something the protocol does not allow at this point.
    /// The connection is unusable afterwards.
    #[error("protocol violation from {addr}: {reason}")]
    Protocol {
        /// The server.
        addr: String,
        /// What was unexpected.
        reason: String,
    },
    /// The server needs to be newer for this command.
    #[error("{feature} needs PostgreSQL {needs} or later; {addr} runs {server_version}")]
    Unsupported {
        /// The server.
        addr: String,
        /// The command or option.
        feature: &'static str,
        /// The first major version that has it.
        needs: u32,
        /// The server's `server_version`.
        server_version: String,
    },
    /// WAL bytes could not be read: the caller fed the wrong bytes, or the
    /// One of PostgreSQL's programs (`pg_dump`, `pg_dumpall`, `pg_restore`)
    /// is missing, of a version that cannot serve, or failed.
    #[error("{program}: {reason}")]
    Tool {
        /// The program.
        program: String,
        /// Which of the three.
        problem: ToolProblem,
        /// What happened, with what the program said.
        reason: String,
    },
    /// WAL is damaged. [`WalReadError::kind`] tells which.
    #[error(transparent)]
    Wal(#[from] WalReadError),
    /// Reading from or writing to the connection failed: the server went away.
    #[error("connection to {addr} failed while {context}")]
    Io {
        /// The server.
        addr: String,
        /// What was being done.
        context: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// How one of PostgreSQL's programs let a caller down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolProblem {
    /// Not installed where it was looked for.
    Missing,
    /// Its version cannot serve this server (a `pg_dump` older than it).
    Version,
    /// It ran and failed.
    Failed,
}

/// An error the server reported, in its own words.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerError {
    /// `ERROR`, `FATAL` or `PANIC` (the untranslated severity where the server sends it).
    pub severity: String,
    /// The SQLSTATE, such as `28P01` (`SqlState::INVALID_PASSWORD`).
    pub code: SqlState,
    /// The primary message.
    pub message: String,
    /// The optional detail.
    pub detail: Option<String>,
    /// The optional hint.
    pub hint: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.severity,
            self.message,
            self.code.code()
        )?;
        if let Some(detail) = &self.detail {
            write!(f, "; detail: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

impl ServerError {
    /// Whether the server ends the session after this error (`FATAL`, `PANIC`).
    pub fn is_fatal(&self) -> bool {
        matches!(self.severity.as_str(), "FATAL" | "PANIC")
    }
}

impl Error {
    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&SqlState> {
        self.server_error().map(|e| &e.code)
    }

    /// The server's error, if the server reported one.
    pub fn server_error(&self) -> Option<&ServerError> {
        match self {
            Error::Server { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The class of this error, in dr-core's terms.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } | Error::InvalidInput { .. } | Error::InvalidState { .. } => {
                ErrorKind::InvalidInput
            }
            Error::Connect { .. } | Error::Io { .. } => ErrorKind::Unavailable,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Tls { source: None, .. } => ErrorKind::Unsupported,
            Error::Tls {
                source: Some(source),
                ..
            } => {
                // rustls reports certificate and protocol failures as InvalidData;
                // anything else is the connection going away mid-handshake.
                if source.kind() == std::io::ErrorKind::InvalidData {
                    ErrorKind::Auth
                } else {
                    ErrorKind::Unavailable
                }
            }
            Error::Auth { .. } => ErrorKind::Auth,
            Error::Server { error, .. } => sqlstate_kind(error.code.code()),
            Error::Protocol { .. } => ErrorKind::Internal,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Wal(error) => error.kind(),
            Error::Tool { problem, .. } => match problem {
                ToolProblem::Missing => ErrorKind::NotFound,
                ToolProblem::Version => ErrorKind::Unsupported,
                ToolProblem::Failed => ErrorKind::Internal,
            },
        }
    }

    /// Whether the same call may succeed if tried again later (on a new
    /// connection): unreachable servers, lost connections, timeouts, a server
    /// starting up or shutting down, too many connections, a slot in use.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    /// The server or socket the error concerns, when there is one.
    pub fn addr(&self) -> Option<&str> {
        match self {
            Error::Connect { addr, .. }
            | Error::Tls { addr, .. }
            | Error::Auth { addr, .. }
            | Error::Server { addr, .. }
            | Error::Protocol { addr, .. }
            | Error::Unsupported { addr, .. }
            | Error::Io { addr, .. } => Some(addr),
            Error::Config { .. }
            | Error::InvalidInput { .. }
            | Error::InvalidState { .. }
            | Error::Timeout { .. }
            | Error::Tool { .. }
            | Error::Wal(_) => None,
        }
    }
}

/// How a caller should treat a server error, by its SQLSTATE.
fn sqlstate_kind(code: &str) -> ErrorKind {
    match code {
        // invalid_authorization_specification, invalid_password, insufficient_privilege
        "28000" | "28P01" | "42501" => ErrorKind::Auth,
        // admin_shutdown, crash_shutdown, cannot_connect_now, object_in_use (an
        // active slot), lock_not_available
        "57P01" | "57P02" | "57P03" | "55006" | "55P03" => ErrorKind::Unavailable,
        // undefined_object (no such slot), undefined_file (WAL already removed)
        "42704" | "58P01" => ErrorKind::NotFound,
        // duplicate_object (the slot exists)
        "42710" => ErrorKind::AlreadyExists,
        // data_corrupted (a page checksum failure during BASE_BACKUP), index_corrupted
        "XX001" | "XX002" => ErrorKind::Corrupt,
        // feature_not_supported
        "0A000" => ErrorKind::Unsupported,
        // connection_exception and insufficient_resources (too many connections)
        c if c.starts_with("08") || c.starts_with("53") => ErrorKind::Unavailable,
        // data_exception, syntax_error_or_access_rule_violation (bad names, syntax)
        c if c.starts_with("22") || c.starts_with("42") => ErrorKind::InvalidInput,
        _ => ErrorKind::Internal,
    }
}

impl From<Error> for dr_core::Error {
    fn from(err: Error) -> Self {
        let target = err.addr().unwrap_or("PostgreSQL").to_owned();
        if let Error::Wal(wal) = err {
            return match wal.kind() {
                ErrorKind::InvalidInput => dr_core::Error::invalid("WAL", wal.to_string()),
                _ => dr_core::Error::corrupt("archived WAL", wal.to_string()),
            };
        }
        match err.kind() {
            ErrorKind::Auth => dr_core::Error::Auth {
                target,
                source: Some(Box::new(err)),
            },
            ErrorKind::Unavailable => dr_core::Error::Unavailable {
                target,
                source: Box::new(err),
            },
            ErrorKind::Timeout => match err {
                Error::Timeout { operation, after } => dr_core::Error::Timeout { operation, after },
                other => dr_core::Error::other(ErrorKind::Timeout, other.to_string(), other),
            },
            kind => dr_core::Error::other(kind, err.to_string(), err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str, severity: &str) -> Error {
        Error::Server {
            addr: "127.0.0.1:5432".into(),
            error: Box::new(ServerError {
                severity: severity.into(),
                code: SqlState::from_code(code),
                message: "m".into(),
                detail: None,
                hint: Some("h".into()),
            }),
        }
    }

    #[test]
    fn sqlstates_decide_kinds() {
        let wrong_password = server("28P01", "FATAL");
        assert_eq!(wrong_password.kind(), ErrorKind::Auth);
        assert!(!wrong_password.is_retryable());
        assert_eq!(wrong_password.code(), Some(&SqlState::INVALID_PASSWORD));
        assert_eq!(
            wrong_password.to_string(),
            "127.0.0.1:5432: FATAL: m (SQLSTATE 28P01); hint: h"
        );
        assert_eq!(dr_core::Error::from(wrong_password).kind(), ErrorKind::Auth);

        assert_eq!(server("42704", "ERROR").kind(), ErrorKind::NotFound);
        assert_eq!(server("42710", "ERROR").kind(), ErrorKind::AlreadyExists);
        assert_eq!(server("42601", "ERROR").kind(), ErrorKind::InvalidInput);
        assert_eq!(server("XX001", "ERROR").kind(), ErrorKind::Corrupt);
        assert!(server("53300", "FATAL").is_retryable());
        assert!(server("57P03", "FATAL").is_retryable());
        assert_eq!(server("XX000", "ERROR").kind(), ErrorKind::Internal);
    }

    #[test]
    fn refused_connections_are_unavailable() {
        let err = Error::Connect {
            addr: "127.0.0.1:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert!(err.is_retryable());
        let core = dr_core::Error::from(err);
        assert_eq!(core.kind(), ErrorKind::Unavailable);
        assert!(core.is_retryable());
        assert_eq!(core.to_string(), "127.0.0.1:1 is unavailable");
    }
}
