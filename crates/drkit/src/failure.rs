//! How a command fails, and the exit status that says so.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | the operation failed (unreachable server, wrong password, damaged data, a WAL file not archived) |
//! | 2 | the command line or the config file is wrong |
//! | 3 | the operation succeeded but missed its objective (RTO or RPO) |

use std::fmt;
use std::process::ExitCode;

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Exit 1: the operation failed.
    Failed(String),
    /// Exit 2: the command line or the config file is wrong.
    Usage(String),
    /// Exit 3: done, but an objective was missed; what was missed.
    MissedObjective(String),
}

impl Failure {
    /// A failure of `what`, with the error and its causes.
    pub(crate) fn of(what: impl fmt::Display, error: &(dyn std::error::Error + 'static)) -> Self {
        Self::Failed(format!("{what}: {}", chain(error)))
    }

    /// The exit status.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Failed(_) => 1,
            Self::Usage(_) => 2,
            Self::MissedObjective(_) => 3,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(m) | Self::Usage(m) | Self::MissedObjective(m) => f.write_str(m),
        }
    }
}

/// An error and its causes, `: `-separated.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Errors that print their source's text already add nothing here.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The result of a command.
pub(crate) type Outcome = Result<(), Failure>;
