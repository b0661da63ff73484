//! The test kit's error: what failed, and the server's own log where there is one.

use std::path::PathBuf;

/// The result type of the kit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a server could not be provided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A program the kit needs is not installed.
    #[error("`{binary}` not found: {hint}")]
    MissingBinary {
        /// The program looked for.
        binary: String,
        /// What to install, and how.
        hint: String,
    },
    /// The kit must run a server as another OS user and cannot.
    #[error("{0}")]
    User(String),
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A set-up command (initdb, pg_basebackup, ...) failed.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// What it printed.
        output: String,
    },
    /// A server did not become ready.
    #[error("{server} did not start: {reason}\n--- last lines of {log} ---\n{log_tail}")]
    Startup {
        /// Which server.
        server: String,
        /// What went wrong.
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// A server answered, but not as expected.
    #[error("{server}: {reason}")]
    Server {
        /// Which server.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// A PostgreSQL client error.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A Redis client error.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
