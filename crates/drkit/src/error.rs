//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// The result type of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong; [`Error::kind`] classifies it for a caller that decides
/// between fixing the file, fixing the machine and retrying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config file could not be read.
    #[error("reading the config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The config file is not valid: bad TOML, an unknown or missing field,
    /// a value that does not parse, or settings that contradict each other.
    #[error("{origin}:{line}:{column}: {}{message}", field_prefix(field))]
    Config {
        /// Where the text came from: the file's path, or the name the caller gave.
        origin: String,
        /// The line, from 1.
        line: usize,
        /// The column in characters, from 1.
        column: usize,
        /// The field, as a path from the top of the file such as
        /// `component[1].objectives.rpo`; empty for a TOML syntax error
        /// outside any field.
        field: String,
        /// What is wrong and what is expected instead.
        message: String,
    },
    /// A value given outside a config file (a cron expression, a time zone
    /// name) does not parse.
    #[error("invalid {what} {input:?}: {reason}")]
    Invalid {
        /// What was parsed, such as "cron expression".
        what: &'static str,
        /// The text as given.
        input: String,
        /// Why it was rejected, and what is expected.
        reason: String,
    },
    /// A secret (a password) could not be obtained from its source.
    #[error("password from {from}: {reason}")]
    Secret {
        /// The source as the config names it, such as `file /etc/drkit/pg.pass`.
        from: String,
        /// What went wrong.
        reason: String,
        /// The underlying failure, if any.
        #[source]
        source: Option<io::Error>,
    },
    /// The TLS settings of a connection could not be loaded: a certificate or
    /// key file is missing, unreadable or not PEM, or rustls refused them.
    #[error("TLS for {component}: {reason}")]
    Tls {
        /// The component whose connection it is.
        component: String,
        /// What went wrong.
        reason: String,
        /// The underlying failure, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// The class of an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The config file is missing or unreadable: fix the path or permissions.
    Read,
    /// The config file's content is wrong: fix the file.
    Config,
    /// A value given in code does not parse: fix the caller.
    Invalid,
    /// A secret's source failed: a missing file, a failing command, an unset
    /// variable. Fix the machine; worth retrying once it is fixed.
    Secret,
    /// Certificates or keys could not be loaded.
    Tls,
}

impl Error {
    /// The class of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Read { .. } => ErrorKind::Read,
            Error::Config { .. } => ErrorKind::Config,
            Error::Invalid { .. } => ErrorKind::Invalid,
            Error::Secret { .. } => ErrorKind::Secret,
            Error::Tls { .. } => ErrorKind::Tls,
        }
    }

    /// The field path of a [`Error::Config`], such as `component[1].objectives.rpo`.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Config { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The line and column of a [`Error::Config`], both from 1.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        match self {
            Error::Config { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }
}
