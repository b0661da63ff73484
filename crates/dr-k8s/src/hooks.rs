//! The hooks a failover takes, done the Kubernetes way: [`WorkloadFence`]
//! (dr-core's `Fence`) scales a failed primary's workload to zero, or
//! deletes its bare pod; [`ServiceRewire`] (dr-core's `Rewire`) points a
//! Service's selector at the new primary, as the runbooks'
//! `kubectl patch svc` does.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use dr_core::{ComponentId, Fence, Member, Rewire, async_trait};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams};

use crate::cluster::Cluster;
use crate::error::Error;
use crate::pods::PodQuery;
use crate::workload::{Scaled, Workload};

/// How a member is fenced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FenceTarget {
    /// Its own workload, scaled to zero (its pods gone before the fence
    /// returns).
    Scale(Workload),
    /// A pod nothing recreates, deleted (gone before the fence returns).
    DeletePod {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// Fences failover members on Kubernetes: each member named with its
/// [`FenceTarget`]. What it scaled is kept ([`WorkloadFence::scaled`]) so
/// that the workload can be scaled back once the member has been rebuilt.
#[derive(Debug)]
pub struct WorkloadFence {
    cluster: Cluster,
    targets: BTreeMap<String, FenceTarget>,
    wait: Duration,
    scaled: Mutex<Vec<Scaled>>,
}

impl WorkloadFence {
    /// A fence on `cluster` with no member yet; it waits up to a minute for
    /// a fenced member's pods to be gone.
    pub fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            targets: BTreeMap::new(),
            wait: Duration::from_secs(60),
            scaled: Mutex::new(Vec::new()),
        }
    }

    /// Fences the member `name` (as the failover names it) through `target`.
    #[must_use]
    pub fn member(mut self, name: impl Into<String>, target: FenceTarget) -> Self {
        self.targets.insert(name.into(), target);
        self
    }

    /// How long a fence waits for the member's pods to be gone.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The workloads it scaled to zero, with the counts they had.
    pub fn scaled(&self) -> Vec<Scaled> {
        self.scaled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Cluster {
    /// Fences `workload`: scales it to zero (the count it had in the
    /// returned [`Scaled`], to scale back to) and waits, up to `wait`,
    /// until the pods its selector selects are gone.
    ///
    /// # Errors
    /// [`Error::TimedOut`] naming the pods still there; as
    /// [`Cluster::scale`].
    pub async fn fence(&self, workload: &Workload, wait: Duration) -> crate::Result<Scaled> {
        let selector = self.selector_of(workload).await?;
        let scaled = self.scale(workload, 0).await?;
        let query = PodQuery::in_namespace(&workload.namespace).labels(selector);
        self.pods_gone(&workload.to_string(), &query, wait).await?;
        Ok(scaled)
    }

    /// Waits, up to `wait`, until `query` selects no pod.
    async fn pods_gone(&self, what: &str, query: &PodQuery, wait: Duration) -> crate::Result<()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let pods = self.pods(query).await?;
            if pods.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
                return Err(Error::TimedOut {
                    what: format!("fencing {what}"),
                    cluster: self.name().to_owned(),
                    timeout: wait,
                    waited_for: "its pods to be gone".to_owned(),
                    saw: format!("pods still there: {}", names.join(", ")),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[async_trait]
impl Fence for WorkloadFence {
    async fn fence(&self, member: &Member) -> dr_core::Result<()> {
        let target = self.targets.get(&member.name).ok_or_else(|| {
            dr_core::Error::invalid(
                format!("fencing {} on {}", member.name, self.cluster.name()),
                format!(
                    "no fence target is named for it (members with one: {})",
                    self.targets.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        match target {
            FenceTarget::Scale(workload) => {
                let scaled = self.cluster.fence(workload, self.wait).await?;
                self.scaled
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(scaled);
                Ok(())
            }
            FenceTarget::DeletePod { namespace, name } => {
                let pods: Api<Pod> = Api::namespaced(self.cluster.client().clone(), namespace);
                let what = format!("deleting pod {name} in namespace {namespace}");
                match pods.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    // Gone already: fenced.
                    Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
                    Err(e) => return Err(self.cluster.failed(&what, e).into()),
                }
                let query =
                    PodQuery::in_namespace(namespace).fields(format!("metadata.name={name}"));
                let what = format!("pod {name} in namespace {namespace}");
                Ok(self.cluster.pods_gone(&what, &query, self.wait).await?)
            }
        }
    }
}

/// Points a Service at the new primary: its whole selector replaced by the
/// labels named for that member (what `kubectl patch svc` does in the
/// runbooks), and read back.
#[derive(Debug)]
pub struct ServiceRewire {
    cluster: Cluster,
    namespace: String,
    service: String,
    selectors: BTreeMap<String, BTreeMap<String, String>>,
}

impl ServiceRewire {
    /// Rewires the Service `service` in `namespace`; no member yet.
    pub fn new(cluster: Cluster, namespace: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            cluster,
            namespace: namespace.into(),
            service: service.into(),
            selectors: BTreeMap::new(),
        }
    }

    /// When `name` is the primary, the Service selects `labels`.
    #[must_use]
    pub fn member<K: Into<String>, V: Into<String>>(
        mut self,
        name: impl Into<String>,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let labels = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.selectors.insert(name.into(), labels);
        self
    }
}

#[async_trait]
impl Rewire for ServiceRewire {
    async fn rewire(&self, component: &ComponentId, primary: &Member) -> dr_core::Result<()> {
        let what = format!(
            "pointing service {} in namespace {} at {} ({component})",
            self.service, self.namespace, primary.name
        );
        let labels = self.selectors.get(&primary.name).ok_or_else(|| {
            dr_core::Error::invalid(&what, "no selector is named for that member")
        })?;
        self.cluster
            .set_service_selector(&self.namespace, &self.service, labels)
            .await?;
        Ok(())
    }
}
