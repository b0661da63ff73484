//! [`Error`]: what went wrong, saying which cluster, object or file.

use std::path::PathBuf;

/// A dr-k8s failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kubeconfig could not be read or used.
    #[error("the kubeconfig {path}: {reason}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The kubeconfig has no context of that name.
    #[error("the kubeconfig {path} has no context {context:?} (it has: {known})")]
    UnknownContext {
        /// The file.
        path: PathBuf,
        /// The context asked for.
        context: String,
        /// The contexts it has, comma-separated.
        known: String,
    },
    /// This process does not run in a pod (no service account token or
    /// `KUBERNETES_SERVICE_HOST`).
    #[error("not running in a Kubernetes pod: {reason}")]
    NotInCluster {
        /// Why.
        reason: String,
    },
    /// The API server refused the request (a `Status` answer).
    #[error("{what}: the API server of {cluster} answered {code} {reason}: {message}")]
    Api {
        /// The request, in words.
        what: String,
        /// The cluster (its kubeconfig context).
        cluster: String,
        /// The HTTP status code.
        code: u16,
        /// The `Status`'s reason (`NotFound`, `Conflict`, `Forbidden`, ...).
        reason: String,
        /// The `Status`'s message.
        message: String,
    },
    /// The API server could not be reached, or answered what does not read.
    #[error("{what}: {cluster}: {source}")]
    Client {
        /// The request, in words.
        what: String,
        /// The cluster (its kubeconfig context).
        cluster: String,
        /// kube's error.
        #[source]
        source: kube::Error,
    },
    /// An object lacks a field the operation reads.
    #[error("{what} has no {field}")]
    Incomplete {
        /// The object.
        what: String,
        /// The field.
        field: &'static str,
    },
}

/// dr-k8s's results.
pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for dr_core::Error {
    fn from(error: Error) -> Self {
        use dr_core::ErrorKind;
        let kind = match &error {
            Error::Kubeconfig { .. }
            | Error::UnknownContext { .. }
            | Error::NotInCluster { .. } => ErrorKind::InvalidInput,
            Error::Api { code: 404, .. } => ErrorKind::NotFound,
            Error::Api { code: 409, .. } => ErrorKind::Refused,
            Error::Api {
                code: 401 | 403, ..
            } => ErrorKind::Auth,
            Error::Api {
                code: 429 | 500.., ..
            }
            | Error::Client { .. } => ErrorKind::Unavailable,
            Error::Api { .. } => ErrorKind::Refused,
            Error::Incomplete { .. } => ErrorKind::Corrupt,
        };
        dr_core::Error::other(kind, error.to_string(), error)
    }
}
