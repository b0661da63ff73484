//! Workloads by kind and name, and [`Cluster::scale`]: `kubectl scale`
//! through the `scale` subresource, remembering the count it had.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::cluster::Cluster;
use crate::error::{Error, Result};

/// A kind of workload that scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
}

impl WorkloadKind {
    /// Its name as kubectl writes it (`deployment`, `statefulset`, `replicaset`).
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
            WorkloadKind::ReplicaSet => "replicaset",
        }
    }
}

/// One workload: its kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Workload {
    /// What it is.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl Workload {
    /// The Deployment `name` in `namespace`.
    pub fn deployment(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self::new(WorkloadKind::Deployment, namespace, name)
    }

    /// The StatefulSet `name` in `namespace`.
    pub fn stateful_set(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self::new(WorkloadKind::StatefulSet, namespace, name)
    }

    /// The workload of `kind` called `name` in `namespace`.
    pub fn new(kind: WorkloadKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `kind/name` in `namespace`, as kubectl names it (`deployment/web`,
    /// `deploy/web`, `sts/db`, `statefulset.apps/db`, `rs/web-5d4f`).
    ///
    /// # Errors
    /// A name without a kind, or a kind that does not scale.
    pub fn parse(text: &str, namespace: impl Into<String>) -> std::result::Result<Self, String> {
        let (kind, name) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not kind/name, such as deployment/web"))?;
        let kind = kind.parse()?;
        if name.is_empty() || name.contains('/') {
            return Err(format!("{text:?} does not name one object"));
        }
        Ok(Self::new(kind, namespace, name))
    }
}

impl FromStr for WorkloadKind {
    type Err = String;

    fn from_str(kind: &str) -> std::result::Result<Self, String> {
        match kind.strip_suffix(".apps").unwrap_or(kind) {
            "deployment" | "deployments" | "deploy" => Ok(WorkloadKind::Deployment),
            "statefulset" | "statefulsets" | "sts" => Ok(WorkloadKind::StatefulSet),
            "replicaset" | "replicasets" | "rs" => Ok(WorkloadKind::ReplicaSet),
            other => Err(format!(
                "{other:?} is not a kind that scales: deployment, statefulset or replicaset"
            )),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} in namespace {}",
            self.kind.name(),
            self.name,
            self.namespace
        )
    }
}

/// What [`Cluster::scale`] did: the count the workload had, to scale back
/// to after a drill or a fence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scaled {
    /// The workload.
    pub workload: Workload,
    /// `spec.replicas` before.
    pub previous: i32,
    /// `spec.replicas` now.
    pub replicas: i32,
}

impl Cluster {
    /// `workload`'s `spec.replicas`, read through its `scale` subresource.
    ///
    /// # Errors
    /// [`Error::Api`] (404 for a workload that does not exist, 403 for a
    /// user who may not read it), [`Error::Client`].
    pub async fn replicas(&self, workload: &Workload) -> Result<i32> {
        let what = format!("reading the scale of {workload}");
        let scale = match workload.kind {
            WorkloadKind::Deployment => {
                self.apps::<Deployment>(workload)
                    .get_scale(&workload.name)
                    .await
            }
            WorkloadKind::StatefulSet => {
                self.apps::<StatefulSet>(workload)
                    .get_scale(&workload.name)
                    .await
            }
            WorkloadKind::ReplicaSet => {
                self.apps::<ReplicaSet>(workload)
                    .get_scale(&workload.name)
                    .await
            }
        }
        .map_err(|e| self.failed(&what, e))?;
        scale
            .spec
            .and_then(|s| s.replicas)
            .ok_or(Error::Incomplete {
                what: format!("the scale of {workload}"),
                field: "spec.replicas",
            })
    }

    /// Scales `workload` to `replicas` through its `scale` subresource, as
    /// `kubectl scale` does, and says what it had: what a drill scales
    /// back to, and what a fence that scales a failed primary to zero
    /// restores.
    ///
    /// # Errors
    /// As [`Cluster::replicas`]; a negative count is refused by the server
    /// (422).
    pub async fn scale(&self, workload: &Workload, replicas: i32) -> Result<Scaled> {
        let previous = self.replicas(workload).await?;
        let what = format!("scaling {workload} from {previous} to {replicas}");
        let patch = Patch::Merge(json!({ "spec": { "replicas": replicas } }));
        let params = PatchParams::default();
        let name = &workload.name;
        let scale = match workload.kind {
            WorkloadKind::Deployment => {
                self.apps::<Deployment>(workload)
                    .patch_scale(name, &params, &patch)
                    .await
            }
            WorkloadKind::StatefulSet => {
                self.apps::<StatefulSet>(workload)
                    .patch_scale(name, &params, &patch)
                    .await
            }
            WorkloadKind::ReplicaSet => {
                self.apps::<ReplicaSet>(workload)
                    .patch_scale(name, &params, &patch)
                    .await
            }
        }
        .map_err(|e| self.failed(&what, e))?;
        let now = scale.spec.and_then(|s| s.replicas).unwrap_or(replicas);
        Ok(Scaled {
            workload: workload.clone(),
            previous,
            replicas: now,
        })
    }

    /// The API of `workload`'s kind `K` in its namespace.
    pub(crate) fn apps<K>(&self, workload: &Workload) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client().clone(), &workload.namespace)
    }
}
