//! The one error type of the crate.

use std::path::PathBuf;

/// What can go wrong starting the server, writing its kubeconfig, or writing a container's
/// log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No port on 127.0.0.1 could be bound.
    #[error("binding a port on 127.0.0.1")]
    Bind {
        /// Why the bind failed.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig file could not be written.
    #[error("writing the kubeconfig {}", path.display())]
    WriteKubeconfig {
        /// The file that was being written.
        path: PathBuf,
        /// Why the write failed.
        #[source]
        source: std::io::Error,
    },
    /// No pod of that name in that namespace.
    #[error("no pod {namespace}/{pod}")]
    NoSuchPod {
        /// The namespace looked in.
        namespace: String,
        /// The pod's name.
        pod: String,
    },
    /// The pod has no container (nor init container) of that name.
    #[error("pod {namespace}/{pod} has no container {container:?}")]
    NoSuchContainer {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        pod: String,
        /// The container asked for.
        container: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
