//! [`Error`]: what went wrong, saying which cluster, object or file.

use std::path::PathBuf;
use std::time::Duration;

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
    /// A wait ran out of time: what it waited for and what it saw last.
    #[error("{what} on {cluster}: not done after {timeout:?}: waited for {waited_for}; saw {saw}")]
    TimedOut {
        /// The operation (`the rollout of deployment/web in namespace default`).
        what: String,
        /// The cluster (its kubeconfig context).
        cluster: String,
        /// How long it waited.
        timeout: Duration,
        /// The condition it waited for.
        waited_for: String,
        /// What it saw last, in kubectl's words where kubectl has some.
        saw: String,
    },
    /// A rollout that cannot finish: the Deployment's `Progressing`
    /// condition says `ProgressDeadlineExceeded`.
    #[error("the rollout of {workload} on {cluster} failed: {reason}: {message}")]
    RolloutFailed {
        /// The workload, in words.
        workload: String,
        /// The cluster (its kubeconfig context).
        cluster: String,
        /// The condition's reason.
        reason: String,
        /// The condition's message.
        message: String,
    },
    /// `rollout undo` found no revision to go back to.
    #[error("{workload} on {cluster} has no {wanted} to go back to (its revisions: {known})")]
    NoRevision {
        /// The workload, in words.
        workload: String,
        /// The cluster (its kubeconfig context).
        cluster: String,
        /// `previous revision`, or `revision 7`.
        wanted: String,
        /// The revisions its replica sets have, comma-separated, or `none`.
        known: String,
    },
    /// A step could not be recorded in its timeline (the clock went back).
    #[error("timing the steps: {0}")]
    Timing(#[source] dr_core::Error),
    /// A resource named (in a filter, a manifest) that the cluster does
    /// not serve.
    #[error("{cluster} serves no resource called {resource:?} (it serves: {served})")]
    UnknownResource {
        /// The cluster (its kubeconfig context).
        cluster: String,
        /// The name asked for.
        resource: String,
        /// What it serves, comma-separated.
        served: String,
    },
    /// The operation does not apply to this object (a kind it does not
    /// handle, a paused Deployment, a pod that nothing would replace).
    #[error("{what}: {reason}")]
    Unsupported {
        /// The operation, in words.
        what: String,
        /// Why not.
        reason: String,
    },
}

/// dr-k8s's results.
pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for dr_core::Error {
    fn from(error: Error) -> Self {
        use dr_core::ErrorKind;
        if let Error::Timing(error) = error {
            return error;
        }
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
            Error::TimedOut { .. } => ErrorKind::Timeout,
            // The cluster gave up on the rollout (its progress deadline
            // passed): waiting longer or retrying does not help, so not
            // Timeout (which is retryable); a person or an undo must act.
            Error::RolloutFailed { .. } => ErrorKind::Refused,
            Error::NoRevision { .. } => ErrorKind::NotFound,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::UnknownResource { .. } => ErrorKind::InvalidInput,
            Error::Timing(_) => ErrorKind::InvalidInput,
        };
        dr_core::Error::other(kind, error.to_string(), error)
    }
}
