//! `kubectl cordon`, `uncordon` and `drain` ([`Cluster::cordon`],
//! [`Cluster::uncordon`], [`Cluster::drain`]), by kubectl's algorithm
//! (`drain.go`): the node cordoned, its pods filtered as kubectl filters
//! them, evicted through the `eviction` subresource (a 429 from a
//! PodDisruptionBudget retried every five seconds), and waited gone, all
//! within one timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use dr_core::Timeline;
use futures_util::{StreamExt, stream};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::{Error, Result};

/// How long kubectl waits before evicting a pod again that a disruption
/// budget protected.
const EVICTION_RETRY: Duration = Duration::from_secs(5);
/// How often the wait for evicted pods looks again.
const POLL: Duration = Duration::from_millis(100);
/// The annotation of a mirror pod (a static pod's copy in the API).
const MIRROR: &str = "kubernetes.io/config.mirror";

/// How [`Cluster::drain`] treats the pods kubectl would refuse to drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainOptions {
    /// The whole drain's time: evictions, retries and the wait for the
    /// pods to be gone (kubectl's `--timeout`; it has none by default).
    pub timeout: Duration,
    /// Leaves DaemonSet pods in place (`--ignore-daemonsets`); without it
    /// a node with one is refused.
    pub ignore_daemonsets: bool,
    /// Evicts pods with `emptyDir` volumes, whose data goes
    /// (`--delete-emptydir-data`); without it such a node is refused.
    pub delete_emptydir_data: bool,
    /// Evicts pods that no controller will replace (`--force`); without
    /// it such a node is refused.
    pub force: bool,
    /// The grace period each pod is given; `None`: its own
    /// `terminationGracePeriodSeconds` (LiveKit's long ones respected).
    pub grace_period: Option<u32>,
    /// Pods evicted at once.
    pub parallel: usize,
}

impl Default for DrainOptions {
    /// Five minutes, DaemonSet pods left in place, nothing else forced,
    /// each pod its own grace period, eight at once.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            ignore_daemonsets: true,
            delete_emptydir_data: false,
            force: false,
            grace_period: None,
            parallel: 8,
        }
    }
}

/// What [`Cluster::drain`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drained {
    /// The node.
    pub node: String,
    /// The pods evicted and gone, `namespace/name`.
    pub evicted: Vec<String>,
    /// The pods left in place, `namespace/name`, and why (a DaemonSet's,
    /// a mirror pod, one that has finished).
    pub left: Vec<(String, String)>,
    /// How many evictions a disruption budget refused before it allowed
    /// them.
    pub refusals: u32,
    /// The steps, timed.
    pub timeline: Timeline,
}

/// What the filters made of one pod.
enum Verdict {
    Evict,
    Leave(String),
    Refuse(String),
}

impl Cluster {
    /// `kubectl cordon`: marks `node` unschedulable; whether it changed
    /// anything.
    ///
    /// # Errors
    /// [`Error::Api`] (404 for a node that does not exist),
    /// [`Error::Client`].
    pub async fn cordon(&self, node: &str) -> Result<bool> {
        self.set_unschedulable(node, true).await
    }

    /// `kubectl uncordon`: marks `node` schedulable again; whether it
    /// changed anything.
    ///
    /// # Errors
    /// As [`Cluster::cordon`].
    pub async fn uncordon(&self, node: &str) -> Result<bool> {
        self.set_unschedulable(node, false).await
    }

    async fn set_unschedulable(&self, node: &str, unschedulable: bool) -> Result<bool> {
        let verb = if unschedulable {
            "cordoning"
        } else {
            "uncordoning"
        };
        let what = format!("{verb} node {node}");
        let nodes: Api<Node> = Api::all(self.client().clone());
        let before = nodes.get(node).await.map_err(|e| self.failed(&what, e))?;
        let was = before.spec.and_then(|s| s.unschedulable).unwrap_or(false);
        if was == unschedulable {
            return Ok(false);
        }
        let patch = Patch::Merge(json!({ "spec": { "unschedulable": unschedulable } }));
        nodes
            .patch(node, &PatchParams::default(), &patch)
            .await
            .map_err(|e| self.failed(&what, e))?;
        Ok(true)
    }

    /// `kubectl drain`: cordons `node`, then evicts its pods and waits
    /// until they are gone, as kubectl does. Pods are filtered first, and
    /// nothing is evicted where any is refused: a DaemonSet's (left with
    /// [`DrainOptions::ignore_daemonsets`]), one with `emptyDir` data
    /// (evicted with [`DrainOptions::delete_emptydir_data`]), one no
    /// controller replaces (evicted with [`DrainOptions::force`]); mirror
    /// pods and pods that have finished are left. An eviction a
    /// PodDisruptionBudget refuses (429) is tried again every five seconds
    /// until the timeout.
    ///
    /// # Errors
    /// [`Error::Unsupported`] naming the pods refused (the node stays
    /// cordoned, as kubectl leaves it); [`Error::TimedOut`] where pods are
    /// still there at the timeout (a budget that never allows it);
    /// [`Error::Api`], [`Error::Client`].
    pub async fn drain(&self, node: &str, options: &DrainOptions) -> Result<Drained> {
        let what = format!("draining node {node}");
        let mut timeline = Timeline::start_now();
        let started = Instant::now();
        let deadline = started + options.timeout;
        let since = Timestamp::now();
        self.cordon(node).await?;
        timeline
            .record_until_now("cordon", since)
            .map_err(Error::Timing)?;

        let pods: Api<Pod> = Api::all(self.client().clone());
        let listed = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .map_err(|e| self.failed(format!("listing the pods of node {node}"), e))?
            .items;
        let mut evict = Vec::new();
        let mut left = Vec::new();
        let mut refused = Vec::new();
        for pod in listed {
            let name = pod_name(&pod);
            match verdict(&pod, options) {
                Verdict::Evict => evict.push(pod),
                Verdict::Leave(why) => left.push((name, why)),
                Verdict::Refuse(why) => refused.push(format!("{name} ({why})")),
            }
        }
        if !refused.is_empty() {
            return Err(Error::Unsupported {
                what,
                reason: format!("cannot evict {}", refused.join(", ")),
            });
        }

        let since = Timestamp::now();
        let evicted: Vec<Result<u32>> = stream::iter(
            evict
                .iter()
                .map(|pod| self.evict_until(pod, options, deadline))
                .collect::<Vec<_>>(),
        )
        .buffer_unordered(options.parallel.max(1))
        .collect()
        .await;
        let mut refusals = 0;
        for result in evicted {
            refusals += result?;
        }
        timeline
            .record_until_now(format!("evict {} pods", evict.len()), since)
            .map_err(Error::Timing)?;

        let since = Timestamp::now();
        for pod in &evict {
            self.wait_gone(pod, deadline, options.timeout).await?;
        }
        timeline
            .record_until_now("wait for the pods to be gone", since)
            .map_err(Error::Timing)?;
        Ok(Drained {
            node: node.to_owned(),
            evicted: evict.iter().map(pod_name).collect(),
            left,
            refusals,
            timeline,
        })
    }

    /// Evicts `pod`, again every five seconds while a disruption budget
    /// refuses, until `deadline`; how many times it was refused.
    async fn evict_until(
        &self,
        pod: &Pod,
        options: &DrainOptions,
        deadline: Instant,
    ) -> Result<u32> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client().clone(), &namespace);
        let params = EvictParams {
            delete_options: Some(DeleteParams {
                grace_period_seconds: options.grace_period,
                ..DeleteParams::default()
            }),
            ..EvictParams::default()
        };
        let what = format!("evicting pod {name} in namespace {namespace}");
        let mut refusals = 0;
        loop {
            match api.evict(&name, &params).await {
                Ok(_) => return Ok(refusals),
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(refusals),
                Err(kube::Error::Api(s)) if s.code == 429 => {
                    refusals += 1;
                    if Instant::now() >= deadline {
                        return Err(Error::TimedOut {
                            what,
                            cluster: self.name().to_owned(),
                            timeout: options.timeout,
                            waited_for: "a disruption budget to allow the eviction".to_owned(),
                            saw: format!("refused {refusals} times: {}", s.message),
                        });
                    }
                    tokio::time::sleep_until(deadline.min(Instant::now() + EVICTION_RETRY)).await;
                }
                Err(e) => return Err(self.failed(&what, e)),
            }
        }
    }

    /// Waits until `pod` is gone (404, or another pod of its name).
    async fn wait_gone(&self, pod: &Pod, deadline: Instant, timeout: Duration) -> Result<()> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client().clone(), &namespace);
        let what = format!("waiting for pod {name} in namespace {namespace} to be gone");
        loop {
            let now = api
                .get_opt(&name)
                .await
                .map_err(|e| self.failed(&what, e))?;
            match now {
                Some(p) if p.metadata.uid == pod.metadata.uid => {}
                _ => return Ok(()),
            }
            if Instant::now() >= deadline {
                return Err(Error::TimedOut {
                    what,
                    cluster: self.name().to_owned(),
                    timeout,
                    waited_for: "the evicted pod to be deleted".to_owned(),
                    saw: "it is still there (its grace period, or a finalizer)".to_owned(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// kubectl's filters, in its order: finished pods go without question;
/// mirror pods stay; DaemonSet pods stay or refuse; pods without a
/// controller need force; `emptyDir` data needs its flag.
fn verdict(pod: &Pod, options: &DrainOptions) -> Verdict {
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default();
    let finished = matches!(phase, "Succeeded" | "Failed");
    let annotations: BTreeMap<String, String> =
        pod.metadata.annotations.clone().unwrap_or_default();
    if annotations.contains_key(MIRROR) {
        return Verdict::Leave("a mirror pod: its node's kubelet runs it".to_owned());
    }
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    if let Some(owner) = controller
        && owner.kind == "DaemonSet"
        && !finished
    {
        return if options.ignore_daemonsets {
            Verdict::Leave(format!("DaemonSet {}'s pod", owner.name))
        } else {
            Verdict::Refuse(format!(
                "DaemonSet {}'s pod; ignore DaemonSets to leave it",
                owner.name
            ))
        };
    }
    if controller.is_none() && !finished && !options.force {
        return Verdict::Refuse("no controller replaces it; force to evict it".to_owned());
    }
    let empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .any(|v| v.empty_dir.is_some());
    if empty_dir && !finished && !options.delete_emptydir_data {
        return Verdict::Refuse(
            "its emptyDir data would go; allow deleting emptyDir data to evict it".to_owned(),
        );
    }
    Verdict::Evict
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}
