//! How the binary reaches a Kubernetes cluster: a kubeconfig and one of its
//! contexts, or the cluster it runs in.

use std::path::{Path, PathBuf};

use dr_k8s::Cluster;

use crate::failure::Failure;

/// The cluster of `context` in the kubeconfig at `kubeconfig` (its current
/// context where `context` is `None`), or, without a kubeconfig, the
/// cluster this process runs in. A kubeconfig that does not read, a
/// context it does not have, or no pod to run in is exit 2: what names the
/// cluster is wrong.
pub(crate) async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Cluster, Failure> {
    let connected = match kubeconfig {
        Some(path) => Cluster::from_kubeconfig(path, context).await,
        None if context.is_some() => {
            return Err(Failure::Usage(format!(
                "context {:?} of which kubeconfig? Without one drkit reaches the cluster it \
                 runs in, which has no contexts: name the file with --kubeconfig",
                context.unwrap_or_default()
            )));
        }
        None => Cluster::in_cluster(),
    };
    connected.map_err(|e| match e {
        dr_k8s::Error::Kubeconfig { .. }
        | dr_k8s::Error::UnknownContext { .. }
        | dr_k8s::Error::NotInCluster { .. } => Failure::Usage(e.to_string()),
        other => Failure::of("reaching the cluster", &other),
    })
}

/// The kubeconfig a command uses where `--kubeconfig` names none, as
/// kubectl finds it (`dr_k8s::Cluster::default_kubeconfig`); `None`: the
/// cluster it runs in. A `$KUBECONFIG` of several files is exit 2.
pub(crate) fn default_kubeconfig() -> Result<Option<PathBuf>, Failure> {
    Cluster::default_kubeconfig().map_err(|e| Failure::Usage(e.to_string()))
}
