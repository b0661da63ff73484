//! Rollouts as kubectl drives them: [`Cluster::rollout_restart`],
//! [`Cluster::rollout_status`], [`Cluster::rollout_undo`]; and
//! [`Cluster::delete_pod_and_wait`], the runbooks' "delete the failed pod"
//! step, waiting for the replacement to be ready.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::Selector;
use serde_json::json;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::workload::{Workload, WorkloadKind};

/// The pod template annotation `kubectl rollout restart` sets (kube's own
/// `Api::restart` sets `kube.kubernetes.io/restartedAt`; drkit does as
/// kubectl does, so a restart by either reads the same).
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// A Deployment's and its ReplicaSets' revision annotation.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// The label the Deployment controller adds to its ReplicaSets' templates.
const HASH_LABEL: &str = "pod-template-hash";
/// The Deployment's own annotations that `rollout undo` keeps (kubectl's
/// `annotationsToSkip` in `rollback.go`); every other one comes from the
/// ReplicaSet gone back to.
const KEPT_ANNOTATIONS: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// What [`Cluster::rollout_restart`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restarted {
    /// The workload.
    pub workload: Workload,
    /// The [`RESTARTED_AT`] value it set (RFC 3339, UTC, in seconds as
    /// kubectl writes it).
    pub at: String,
}

/// A rollout that finished, as [`Cluster::rollout_status`] saw it last.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RolloutStatus {
    /// The workload.
    pub workload: Workload,
    /// A Deployment's revision (its `deployment.kubernetes.io/revision`);
    /// `None` for a StatefulSet, whose revisions are named, not numbered.
    pub revision: Option<i64>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Pods of the current template.
    pub updated: i32,
    /// Pods of the current template that are available (a StatefulSet's
    /// ready ones).
    pub available: i32,
    /// kubectl's words for it (`deployment "web" successfully rolled out`).
    pub message: String,
    /// How long it waited.
    pub waited: Duration,
}

/// What [`Cluster::rollout_undo`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Undone {
    /// The workload.
    pub workload: Workload,
    /// The revision it had (the highest of its ReplicaSets').
    pub from_revision: i64,
    /// The revision whose pod template it went back to; the Deployment
    /// controller makes that ReplicaSet the newest, with the next revision.
    pub to_revision: i64,
    /// Whether nothing was sent because the template already was that
    /// revision's (kubectl's "skipped rollback").
    pub skipped: bool,
}

/// What [`Cluster::delete_pod_and_wait`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Replaced {
    /// The namespace.
    pub namespace: String,
    /// The pod deleted.
    pub deleted: String,
    /// The ready pod that took its place (a StatefulSet's has the same
    /// name and another uid).
    pub replacement: String,
    /// From the delete to the replacement being ready.
    pub took: Duration,
}

/// Where a rollout is, in kubectl's words.
pub(crate) enum Progress {
    Done(String),
    Waiting(String),
    Failed { reason: String, message: String },
}

impl Cluster {
    /// `kubectl rollout restart`: a strategic merge patch setting the pod
    /// template's annotation [`RESTARTED_AT`] to now, so that the
    /// controller replaces every pod. Deployments and StatefulSets.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a ReplicaSet (kubectl refuses it too:
    /// nothing would replace its pods); [`Error::Api`] (404 for a workload
    /// that does not exist), [`Error::Client`].
    pub async fn rollout_restart(&self, workload: &Workload) -> Result<Restarted> {
        let what = format!("restarting {workload}");
        let at = k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let patch = Patch::Strategic(json!({
            "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT: at } } } }
        }));
        let params = PatchParams::default();
        match workload.kind {
            WorkloadKind::Deployment => self
                .apps::<Deployment>(workload)
                .patch(&workload.name, &params, &patch)
                .await
                .map(drop),
            WorkloadKind::StatefulSet => self
                .apps::<StatefulSet>(workload)
                .patch(&workload.name, &params, &patch)
                .await
                .map(drop),
            _ => {
                return Err(unsupported(
                    &what,
                    "only Deployments and StatefulSets restart",
                ));
            }
        }
        .map_err(|e| self.failed(&what, e))?;
        Ok(Restarted {
            workload: workload.clone(),
            at,
        })
    }

    /// `kubectl rollout status`: waits until `workload`'s rollout is
    /// complete, looking every 100 ms. A Deployment is complete when its
    /// controller has seen its spec (`observedGeneration` ≥ `generation`),
    /// every replica is of the new template, no old one is left and every
    /// new one is available; a StatefulSet (RollingUpdate) when its spec is
    /// seen, every replica is ready and its current revision is its update
    /// revision (with a partition: the pods above it updated).
    ///
    /// # Errors
    /// [`Error::TimedOut`] after `timeout`, saying what it waited for and
    /// what it saw last; [`Error::RolloutFailed`] for a Deployment whose
    /// `Progressing` condition says `ProgressDeadlineExceeded`;
    /// [`Error::Unsupported`] for a ReplicaSet or an OnDelete StatefulSet;
    /// [`Error::Api`], [`Error::Client`].
    pub async fn rollout_status(
        &self,
        workload: &Workload,
        timeout: Duration,
    ) -> Result<RolloutStatus> {
        let what = format!("the rollout of {workload}");
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let (progress, status) = self.progress(workload, &what).await?;
            match progress {
                Progress::Done(message) => {
                    return Ok(RolloutStatus {
                        message,
                        waited: started.elapsed(),
                        ..status
                    });
                }
                Progress::Failed { reason, message } => {
                    return Err(Error::RolloutFailed {
                        workload: workload.to_string(),
                        cluster: self.name().to_owned(),
                        reason,
                        message,
                    });
                }
                Progress::Waiting(saw) if Instant::now() >= deadline => {
                    let waited_for = match workload.kind {
                        WorkloadKind::StatefulSet => {
                            "its spec observed, every replica ready and its current revision its update revision"
                        }
                        _ => {
                            "its spec observed, every replica updated, no old replica left and every updated replica available"
                        }
                    };
                    return Err(Error::TimedOut {
                        what,
                        cluster: self.name().to_owned(),
                        timeout,
                        waited_for: waited_for.to_owned(),
                        saw: format!(
                            "{saw} (replicas {}, updated {}, available {})",
                            status.replicas, status.updated, status.available
                        ),
                    });
                }
                Progress::Waiting(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Where `workload`'s rollout is, and its counts.
    pub(crate) async fn progress(
        &self,
        workload: &Workload,
        what: &str,
    ) -> Result<(Progress, RolloutStatus)> {
        let read = format!("reading {workload}");
        match workload.kind {
            WorkloadKind::Deployment => {
                let deployment = self
                    .apps::<Deployment>(workload)
                    .get(&workload.name)
                    .await
                    .map_err(|e| self.failed(&read, e))?;
                Ok(deployment_progress(workload, &deployment))
            }
            WorkloadKind::StatefulSet => {
                let set = self
                    .apps::<StatefulSet>(workload)
                    .get(&workload.name)
                    .await
                    .map_err(|e| self.failed(&read, e))?;
                stateful_set_progress(workload, &set).ok_or_else(|| {
                    unsupported(
                        what,
                        "rollout status is only available for the RollingUpdate strategy",
                    )
                })
            }
            _ => Err(unsupported(
                what,
                "only Deployments and StatefulSets roll out",
            )),
        }
    }

    /// `kubectl rollout undo` of a Deployment, by kubectl's algorithm
    /// (`DeploymentRollbacker` in `rollback.go`): the ReplicaSets its
    /// selector selects and it controls (by ownerReference uid); the one of
    /// `to_revision`, or where `None` of the previous revision (the highest
    /// below the current); its pod template without the `pod-template-hash`
    /// label sent back in one JSON patch that replaces `/spec/template` and
    /// `/metadata/annotations` (the Deployment's own revision annotations
    /// kept, every other one the ReplicaSet's). A template that already is
    /// that revision's is left alone ([`Undone::skipped`]).
    ///
    /// # Errors
    /// [`Error::NoRevision`] where there is no previous revision or none
    /// numbered `to_revision`, naming the revisions there are;
    /// [`Error::Unsupported`] for a paused Deployment, and for
    /// StatefulSets and ReplicaSets (a StatefulSet's history is in
    /// ControllerRevisions; not yet); [`Error::Api`], [`Error::Client`].
    pub async fn rollout_undo(
        &self,
        workload: &Workload,
        to_revision: Option<i64>,
    ) -> Result<Undone> {
        let what = format!("undoing the rollout of {workload}");
        if workload.kind != WorkloadKind::Deployment {
            return Err(unsupported(
                &what,
                "only a Deployment's rollout undoes here",
            ));
        }
        let api = self.apps::<Deployment>(workload);
        let deployment = api
            .get(&workload.name)
            .await
            .map_err(|e| self.failed(format!("reading {workload}"), e))?;
        let spec = &deployment.spec;
        if spec.paused == Some(true) {
            return Err(unsupported(&what, "it is paused; resume it first"));
        }
        let selector = selector_of(&spec.selector, &what)?;
        let uid = deployment.metadata.uid.clone().unwrap_or_default();
        let replica_sets = self
            .apps::<ReplicaSet>(workload)
            .list(&ListParams::default().labels_from(&selector))
            .await
            .map_err(|e| self.failed(format!("listing the replica sets of {workload}"), e))?
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.controller == Some(true) && o.uid == uid)
            })
            .collect::<Vec<_>>();
        // kubectl's previousRevision: the highest and the one below it.
        let (mut current, mut previous) = (0, 0);
        for rs in &replica_sets {
            let revision = revision_of(&rs.metadata.annotations);
            if revision > current {
                previous = current;
                current = revision;
            } else if revision > previous {
                previous = revision;
            }
        }
        let wanted = match to_revision {
            None if previous > 0 => previous,
            Some(revision) if revision > 0 => revision,
            _ => 0,
        };
        let chosen = replica_sets
            .iter()
            .find(|rs| wanted > 0 && revision_of(&rs.metadata.annotations) == wanted);
        let Some(chosen) = chosen else {
            let mut known: Vec<i64> = replica_sets
                .iter()
                .map(|rs| revision_of(&rs.metadata.annotations))
                .collect();
            known.sort_unstable();
            return Err(Error::NoRevision {
                workload: workload.to_string(),
                cluster: self.name().to_owned(),
                wanted: to_revision
                    .map_or("previous revision".to_owned(), |r| format!("revision {r}")),
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            });
        };
        let template = chosen.spec.template.as_ref().ok_or(Error::Incomplete {
            what: format!("the replica set of revision {wanted} of {workload}"),
            field: "spec.template",
        })?;
        let template = without_hash(template);
        let undone = |skipped| Undone {
            workload: workload.clone(),
            from_revision: current,
            to_revision: wanted,
            skipped,
        };
        if without_hash(&spec.template) == template {
            return Ok(undone(true));
        }
        let own = deployment.metadata.annotations.clone().unwrap_or_default();
        let mut annotations: BTreeMap<String, String> = KEPT_ANNOTATIONS
            .iter()
            .filter_map(|k| own.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect();
        for (k, v) in chosen.metadata.annotations.iter().flatten() {
            if !KEPT_ANNOTATIONS.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
        let operations = json!([
            { "op": "replace", "path": "/spec/template", "value": template },
            { "op": "replace", "path": "/metadata/annotations", "value": annotations },
        ]);
        self.json_patch(workload, &operations)
            .await
            .map_err(|e| self.failed(&what, e))?;
        Ok(undone(false))
    }

    /// Sends `operations` as a JSON patch (RFC 6902) to `workload`.
    async fn json_patch(
        &self,
        workload: &Workload,
        operations: &serde_json::Value,
    ) -> kube::Result<Deployment> {
        let patch: json_patch::Patch =
            serde_json::from_value(operations.clone()).map_err(kube::Error::SerdeError)?;
        Api::<Deployment>::namespaced(self.client().clone(), &workload.namespace)
            .patch(
                &workload.name,
                &PatchParams::default(),
                &Patch::Json::<()>(patch),
            )
            .await
    }

    /// Deletes the pod `name` and waits until its controller (a ReplicaSet,
    /// StatefulSet or DaemonSet) has a ready replacement: the pod gone (by
    /// uid), a ready pod that was not there before, and as many ready pods
    /// under the controller's selector as before the delete (counting the
    /// deleted one as ready). The runbooks' "delete the failed pod" step.
    ///
    /// # Errors
    /// [`Error::TimedOut`] after `timeout`, saying what it saw (a
    /// replacement that never becomes ready: a template that fails);
    /// [`Error::Unsupported`] for a pod that no controller would replace;
    /// [`Error::Api`] (404 for a pod that does not exist), [`Error::Client`].
    pub async fn delete_pod_and_wait(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<Replaced> {
        let what =
            format!("deleting pod {name} in namespace {namespace} and waiting for its replacement");
        let pods: Api<Pod> = Api::namespaced(self.client().clone(), namespace);
        let pod = pods
            .get(name)
            .await
            .map_err(|e| self.failed(format!("reading pod {name} in namespace {namespace}"), e))?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .ok_or_else(|| {
                unsupported(&what, "no controller owns it, so nothing would replace it")
            })?;
        let selector = self
            .owner_selector(namespace, &owner.kind, &owner.name, &what)
            .await?;
        let params = ListParams::default().labels_from(&selector);
        let list = |what: String| {
            let pods = pods.clone();
            let params = params.clone();
            async move {
                pods.list(&params)
                    .await
                    .map(|l| l.items)
                    .map_err(|e| self.failed(what, e))
            }
        };
        let listing = format!(
            "listing the pods of {} {} in namespace {namespace}",
            owner.kind, owner.name
        );
        let before = list(listing.clone()).await?;
        let known: HashSet<String> = before
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        let ready_others = before
            .iter()
            .filter(|p| is_ready(p) && p.metadata.uid.as_deref() != Some(&uid))
            .count();
        let wanted = ready_others + 1;

        let started = Instant::now();
        let deadline = started + timeout;
        pods.delete(name, &DeleteParams::default())
            .await
            .map_err(|e| self.failed(format!("deleting pod {name} in namespace {namespace}"), e))?;
        loop {
            let now = list(listing.clone()).await?;
            let gone = !now.iter().any(|p| p.metadata.uid.as_deref() == Some(&uid));
            let ready = now.iter().filter(|p| is_ready(p)).count();
            let replacement = now
                .iter()
                .filter(|p| {
                    is_ready(p) && p.metadata.uid.as_ref().is_some_and(|u| !known.contains(u))
                })
                .filter_map(|p| p.metadata.name.clone())
                .next();
            if let (true, true, Some(replacement)) = (gone, ready >= wanted, &replacement) {
                return Ok(Replaced {
                    namespace: namespace.to_owned(),
                    deleted: name.to_owned(),
                    replacement: replacement.clone(),
                    took: started.elapsed(),
                });
            }
            if Instant::now() >= deadline {
                let new: Vec<String> = now
                    .iter()
                    .filter(|p| p.metadata.uid.as_ref().is_some_and(|u| !known.contains(u)))
                    .map(|p| {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        if is_ready(p) {
                            format!("{name} (ready)")
                        } else {
                            format!("{name} (not ready)")
                        }
                    })
                    .collect();
                return Err(Error::TimedOut {
                    what,
                    cluster: self.name().to_owned(),
                    timeout,
                    waited_for: format!(
                        "pod {name} gone and {wanted} ready pods of {} {}, one of them new",
                        owner.kind, owner.name
                    ),
                    saw: format!(
                        "pod {name} {}, {ready} ready of {} pods, new pods: {}",
                        if gone { "gone" } else { "still there" },
                        now.len(),
                        if new.is_empty() {
                            "none".to_owned()
                        } else {
                            new.join(", ")
                        }
                    ),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The pod selector of the controller `kind`/`name`.
    async fn owner_selector(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        what: &str,
    ) -> Result<Selector> {
        let read = format!("reading {kind} {name} in namespace {namespace}");
        let client = self.client().clone();
        let selector = match kind {
            "ReplicaSet" => Api::<ReplicaSet>::namespaced(client, namespace)
                .get(name)
                .await
                .map(|o| Some(o.spec.selector)),
            "StatefulSet" => Api::<StatefulSet>::namespaced(client, namespace)
                .get(name)
                .await
                .map(|o| Some(o.spec.selector)),
            "DaemonSet" => Api::<DaemonSet>::namespaced(client, namespace)
                .get(name)
                .await
                .map(|o| Some(o.spec.selector)),
            other => {
                return Err(unsupported(
                    what,
                    &format!(
                        "its controller is a {other}, not a ReplicaSet, StatefulSet or DaemonSet"
                    ),
                ));
            }
        }
        .map_err(|e| self.failed(&read, e))?
        .ok_or(Error::Incomplete {
            what: format!("{kind} {name} in namespace {namespace}"),
            field: "spec.selector",
        })?;
        selector_of(&selector, what)
    }
}

impl Cluster {
    /// The pod selector of `workload`, as `kubectl -l` takes it.
    pub(crate) async fn selector_of(&self, workload: &Workload) -> Result<String> {
        let what = format!("reading the selector of {workload}");
        let client = self.client().clone();
        let namespace = &workload.namespace;
        let selector = match workload.kind {
            WorkloadKind::Deployment => Api::<Deployment>::namespaced(client, namespace)
                .get(&workload.name)
                .await
                .map(|o| o.spec.selector),
            WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client, namespace)
                .get(&workload.name)
                .await
                .map(|o| o.spec.selector),
            WorkloadKind::ReplicaSet => Api::<ReplicaSet>::namespaced(client, namespace)
                .get(&workload.name)
                .await
                .map(|o| o.spec.selector),
        }
        .map_err(|e| self.failed(&what, e))?;
        Ok(selector_of(&selector, &what)?.to_string())
    }
}

fn unsupported(what: &str, reason: &str) -> Error {
    Error::Unsupported {
        what: what.to_owned(),
        reason: reason.to_owned(),
    }
}

/// `selector` as a list selector; one that selects everything is refused,
/// as Kubernetes refuses it for a workload.
fn selector_of(selector: &LabelSelector, what: &str) -> Result<Selector> {
    let parsed = Selector::try_from(selector.clone())
        .map_err(|e| unsupported(what, &format!("its selector does not read: {e}")))?;
    if parsed.selects_all() {
        return Err(unsupported(
            what,
            "its selector is empty and would select every pod",
        ));
    }
    Ok(parsed)
}

fn revision_of(annotations: &Option<BTreeMap<String, String>>) -> i64 {
    annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// A template without the `pod-template-hash` label, to compare as
/// kubectl's `equalIgnoreHash` does.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    if let Some(metadata) = template.metadata.as_mut()
        && metadata.labels.as_ref().is_some_and(BTreeMap::is_empty)
    {
        metadata.labels = None;
    }
    template
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// kubectl's `DeploymentStatusViewer`.
fn deployment_progress(workload: &Workload, deployment: &Deployment) -> (Progress, RolloutStatus) {
    let name = &workload.name;
    let status = deployment.status.clone().unwrap_or_default();
    let replicas = deployment.spec.replicas.unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let counts = RolloutStatus {
        workload: workload.clone(),
        revision: Some(revision_of(&deployment.metadata.annotations)).filter(|r| *r > 0),
        replicas,
        updated,
        available,
        message: String::new(),
        waited: Duration::ZERO,
    };
    let generation = deployment.metadata.generation.unwrap_or(0);
    if generation > status.observed_generation.unwrap_or(0) {
        return (
            Progress::Waiting("Waiting for deployment spec update to be observed...".to_owned()),
            counts,
        );
    }
    let deadline = status.conditions.iter().flatten().find(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(condition) = deadline {
        return (
            Progress::Failed {
                reason: "ProgressDeadlineExceeded".to_owned(),
                message: condition.message.clone().unwrap_or_else(|| {
                    format!("deployment {name:?} exceeded its progress deadline")
                }),
            },
            counts,
        );
    }
    let total = status.replicas.unwrap_or(0);
    let progress = if updated < replicas {
        Progress::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {replicas} new replicas have been updated..."
        ))
    } else if total > updated {
        Progress::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            total - updated
        ))
    } else if available < updated {
        Progress::Waiting(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ))
    } else {
        Progress::Done(format!("deployment {name:?} successfully rolled out"))
    };
    (progress, counts)
}

/// kubectl's `StatefulSetStatusViewer`; `None` for an OnDelete one.
fn stateful_set_progress(
    workload: &Workload,
    set: &StatefulSet,
) -> Option<(Progress, RolloutStatus)> {
    let spec = &set.spec;
    let strategy = spec.update_strategy.as_ref();
    if strategy
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        != "RollingUpdate"
    {
        return None;
    }
    let status = set.status.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let counts = RolloutStatus {
        workload: workload.clone(),
        revision: None,
        replicas,
        updated,
        available: ready,
        message: String::new(),
        waited: Duration::ZERO,
    };
    let observed = status.observed_generation.unwrap_or(0);
    if observed == 0 || set.metadata.generation.unwrap_or(0) > observed {
        return Some((
            Progress::Waiting("Waiting for statefulset spec update to be observed...".to_owned()),
            counts,
        ));
    }
    if ready < replicas {
        return Some((
            Progress::Waiting(format!(
                "Waiting for {} pods to be ready...",
                replicas - ready
            )),
            counts,
        ));
    }
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition);
    if let Some(partition) = partition.filter(|p| *p > 0) {
        let progress = if updated < replicas - partition {
            Progress::Waiting(format!(
                "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                replicas - partition
            ))
        } else {
            Progress::Done(format!(
                "partitioned roll out complete: {updated} new pods have been updated..."
            ))
        };
        return Some((progress, counts));
    }
    let update = status.update_revision.clone().unwrap_or_default();
    let progress = if status.current_revision.as_deref() != Some(update.as_str()) {
        Progress::Waiting(format!(
            "waiting for statefulset rolling update to complete {updated} pods at revision {update}..."
        ))
    } else {
        Progress::Done(format!(
            "statefulset rolling update complete {} pods at revision {update}...",
            status.current_replicas.unwrap_or(ready)
        ))
    };
    Some((progress, counts))
}
