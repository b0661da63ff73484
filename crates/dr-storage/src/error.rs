//! dr-storage's error: which object, which store, and whether a retry can help.

use dr_core::ErrorKind;

/// A boxed error from a lower layer (the S3 SDK, the OS).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of dr-storage.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the store or the repository.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No object under this key, or (with an empty key) no store at all:
    /// a local directory that does not exist.
    #[error("{location}{}", MissingKey(key))]
    NotFound {
        /// The store ("/backups", "s3://bucket/prefix").
        location: String,
        /// The object key; empty when the store itself is missing.
        key: String,
    },
    /// A create-only write found the key taken.
    #[error("{location}: {key} already exists")]
    AlreadyExists {
        /// The store.
        location: String,
        /// The object key.
        key: String,
    },
    /// A key is not acceptable to the store (empty, `..`, leading `/`).
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The store refused our credentials or lacks a permission.
    #[error("{location}: access denied during {operation} of {key}")]
    AccessDenied {
        /// The store.
        location: String,
        /// What was being done (get, put, delete, ...).
        operation: &'static str,
        /// The object key, or the prefix listed.
        key: String,
        /// The store's own words.
        #[source]
        source: Option<BoxError>,
    },
    /// An object is retained by S3 Object Lock and may not be deleted yet.
    #[error("{location}: {key} is retained by object lock")]
    Retained {
        /// The store.
        location: String,
        /// The object key.
        key: String,
    },
    /// The store failed; `transient` says whether trying again may help.
    #[error("{location}: {operation} of {key} failed")]
    Backend {
        /// The store.
        location: String,
        /// What was being done.
        operation: &'static str,
        /// The object key, or the prefix listed.
        key: String,
        /// A timeout, throttling, a dropped connection or a 5xx: worth retrying.
        transient: bool,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// Stored bytes fail a check: damaged, truncated or tampered with.
    #[error("{object} is corrupt: {reason}")]
    Corrupt {
        /// The damaged object (a key, or a blob within a pack).
        object: String,
        /// Which check failed.
        reason: String,
    },
    /// The repository's key could not be unlocked with the password or key file given.
    #[error("wrong password or key file for the repository at {location}")]
    WrongPassword {
        /// The store.
        location: String,
    },
    /// A stored object has a format version this build cannot read.
    #[error("{object} has format version {found}; this build reads {supported}")]
    UnsupportedVersion {
        /// The object.
        object: String,
        /// The version found.
        found: u32,
        /// The versions this build reads.
        supported: String,
    },
    /// The store does not honour something the repository relies on.
    #[error("{location}: {reason}")]
    Unsupported {
        /// The store.
        location: String,
        /// What is missing, and what to do about it.
        reason: String,
    },
    /// A local I/O operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A repository lock is held by another process, or was lost.
    #[error("{location}: {reason}")]
    Locked {
        /// The store.
        location: String,
        /// Who holds the lock (its kind, host, process and age), or how ours was lost.
        reason: String,
    },
    /// The caller passed something the operation cannot accept.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was rejected.
        what: String,
        /// Why.
        reason: String,
    },
}

/// The end of a `NotFound` message: the key, or that the store itself is missing.
struct MissingKey<'a>(&'a str);

impl std::fmt::Display for MissingKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str(" does not exist")
        } else {
            write!(f, ": {} not found", self.0)
        }
    }
}

impl Error {
    /// The class of this error, in dr-core's terms.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::InvalidKey { .. } | Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::AccessDenied { .. } | Error::WrongPassword { .. } => ErrorKind::Auth,
            Error::Retained { .. } => ErrorKind::AlreadyExists,
            Error::Backend {
                transient: true, ..
            } => ErrorKind::Unavailable,
            Error::Backend {
                transient: false, ..
            } => ErrorKind::Internal,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::UnsupportedVersion { .. } => ErrorKind::UnsupportedVersion,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Io { .. } => ErrorKind::Io,
            Error::Locked { .. } => ErrorKind::Unavailable,
        }
    }

    /// Whether the same call may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Backend { transient, .. } => *transient,
            Error::Locked { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn corrupt(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            object: object.into(),
            reason: reason.into(),
        }
    }
}

impl From<Error> for dr_core::Error {
    fn from(err: Error) -> Self {
        match err {
            Error::NotFound { location, key } if key.is_empty() => {
                dr_core::Error::not_found(location)
            }
            Error::NotFound { location, key } => {
                dr_core::Error::not_found(format!("{location}: {key}"))
            }
            Error::Corrupt { object, reason } => dr_core::Error::corrupt(object, reason),
            Error::UnsupportedVersion {
                object,
                found,
                supported,
            } => dr_core::Error::UnsupportedVersion {
                what: object,
                found,
                supported,
            },
            other => {
                let kind = other.kind();
                dr_core::Error::other(kind, other.to_string(), other)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_backend_errors_are_retryable() {
        let err = Error::Backend {
            location: "s3://b".into(),
            operation: "put",
            key: "data/ab".into(),
            transient: true,
            source: "503 SlowDown".into(),
        };
        assert!(err.is_retryable());
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        let core: dr_core::Error = err.into();
        assert!(core.is_retryable());

        let corrupt = Error::corrupt("data/ab", "SHA-256 mismatch");
        assert!(!corrupt.is_retryable());
        let core: dr_core::Error = corrupt.into();
        assert_eq!(core.kind(), ErrorKind::Corrupt);
        assert!(
            !Error::WrongPassword {
                location: "/r".into()
            }
            .is_retryable()
        );
    }
}
