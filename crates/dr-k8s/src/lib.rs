//! drkit for Kubernetes: the steps of the DR plans' runbooks that are
//! `kubectl` commands, as library calls on a [`Cluster`].
//!
//! - [`Cluster`]: a client of one cluster, from a kubeconfig and a named
//!   context (several at once, as a DR region is another context) or from
//!   inside a pod.
//! - [`Cluster::scale`]: `kubectl scale` through the `scale` subresource of
//!   a [`Workload`] (Deployment, StatefulSet, ReplicaSet), saying the count
//!   it had ([`Scaled`]) so that a drill, or a fence that scaled a failed
//!   primary to zero, can scale back.
//! - [`Cluster::pods`]: `kubectl get pods -l … --field-selector …` as
//!   [`PodState`]s: phase, readiness, restarts, node.
//! - Rollouts, as kubectl does them: [`Cluster::rollout_restart`] (the pod
//!   template annotation [`RESTARTED_AT`]), [`Cluster::rollout_status`]
//!   (waits as `kubectl rollout status` does; [`RolloutStatus`], or
//!   [`Error::TimedOut`] saying what it waited for and saw),
//!   [`Cluster::rollout_undo`] (kubectl's algorithm for Deployments:
//!   [`Undone`] says which revision it went back to).
//! - [`Cluster::delete_pod_and_wait`]: the runbooks' "delete the failed
//!   pod", waiting for a ready replacement ([`Replaced`]).
//! - Patches, read back: [`Cluster::set_service_selector`],
//!   [`Cluster::set_env`] ([`EnvChange`]s, strategic merge by name) and
//!   [`Cluster::set_image`] (`kubectl set image`).
//! - [`Cluster::cordon`], [`Cluster::uncordon`] and [`Cluster::drain`]
//!   (kubectl's filters and evictions, a disruption budget's 429 waited
//!   out within [`DrainOptions::timeout`]; [`Drained`]).
//! - [`Cluster::logs`]: a workload's logs in a window of time or tailed
//!   ([`LogQuery`], [`PodLog`] of timed [`LogLine`]s), for the RCA.
//! - [`Cluster::apply`] and [`Cluster::apply_yaml`]: manifests by
//!   server-side apply as `drkit` ([`Applied`]), CRDs and their objects in
//!   one go.
//! - [`Cluster::guard_rollout`]: the health-gated rollout. A rollout
//!   watched with a [`HealthCheck`] ([`HttpHealth`]: a GET wanting 2xx or
//!   3xx) under a [`RolloutGuard`] (deadline, failures in a row, settling
//!   time) and undone where it fails; [`GuardedRollout`] gives the time to
//!   rollback.
//! - [`LeaseLock`]: a coordination.k8s.io Lease held by one holder at a
//!   time (client-go's algorithm: writes against the resourceVersion read,
//!   another's lease taken only after a whole duration unrenewed as this
//!   process saw).
//! - [`Cluster::create_namespace`] and [`Cluster::delete_namespace`] (the
//!   incident namespace), [`Cluster::isolate`] and
//!   [`Cluster::remove_isolation`] (the network-partition drill's
//!   NetworkPolicy, nothing in or out).
//! - The hooks a PostgreSQL or Redis failover takes: [`WorkloadFence`]
//!   (dr-core's `Fence`: the failed primary's workload scaled to zero, its
//!   pods gone before it returns, or its bare pod deleted) and
//!   [`ServiceRewire`] (dr-core's `Rewire`: a Service's selector replaced
//!   by the new primary's labels, read back).
//! - Resource backup and restore, as Velero's core: [`Cluster::discover`]
//!   (every served resource, custom ones included), [`ResourceBackup`]
//!   (dr-core's `Backup`: what a [`ResourceFilter`] selects, an object per
//!   file of one snapshot, with [`BackupContents`] saying what was left
//!   out and why) and [`ResourceRestore`] (dr-core's `Restore`: Velero's
//!   order, CRDs waited established, objects cleaned by
//!   [`clean_object`], namespaces mapped, an [`ExistingPolicy`], dry runs,
//!   an [`Outcome`] per object).
//! - [`Error`]: one error type, naming the cluster, the request and the
//!   server's `Status` (code, reason, message); it converts into
//!   [`dr_core::Error`] with a kind a caller can act on (404 NotFound,
//!   401/403 Auth, 429 and 5xx Unavailable, a wait that ran out Timeout).
//!
//! The library picks no Kubernetes version for `k8s-openapi`: the binary
//! that links it does.
//!
//! Not yet: undo of StatefulSets and DaemonSets (their history is in
//! ControllerRevisions), following logs as they are written.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dr_k8s::Error> {
//! use std::time::Duration;
//! use dr_k8s::{Cluster, PodQuery, Workload};
//!
//! let dr = Cluster::from_kubeconfig("/etc/drkit/kubeconfig", Some("dr-cluster")).await?;
//! let failed = dr
//!     .pods(&PodQuery::in_namespace("livekit").labels("app=livekit").fields("status.phase=Failed"))
//!     .await?;
//! println!("{} failed pods", failed.len());
//! let fenced = dr.scale(&Workload::stateful_set("db", "postgres-primary"), 0).await?;
//! // ... later, the drill over:
//! dr.scale(&fenced.workload, fenced.previous).await?;
//!
//! let web = Workload::deployment("livekit", "ingress");
//! dr.rollout_restart(&web).await?;
//! match dr.rollout_status(&web, Duration::from_secs(300)).await {
//!     Ok(done) => println!("{} (revision {:?})", done.message, done.revision),
//!     Err(failed) => {
//!         eprintln!("{failed}");
//!         let undone = dr.rollout_undo(&web, None).await?;
//!         println!("back to revision {}", undone.to_revision);
//!     }
//! }
//! # Ok(()) }
//! ```

mod apply;
mod cluster;
mod drain;
mod error;
mod guard;
mod health;
mod hooks;
mod lease;
mod logs;
mod namespace;
mod patch;
mod pods;
mod resources;
mod retry;
mod rollout;
mod workload;

pub use apply::Applied;
pub use cluster::Cluster;
pub use drain::{DrainOptions, Drained};
pub use error::{Error, Result};
pub use guard::{GuardVerdict, GuardedRollout, RolloutGuard};
pub use health::{HealthCheck, HttpHealth};
pub use hooks::{FenceTarget, ServiceRewire, WorkloadFence};
pub use lease::{Acquired, LeaseLock, LeaseRecord};
pub use logs::{LogLine, LogQuery, PodLog};
pub use namespace::{Isolation, MANAGED_BY};
pub use patch::EnvChange;
pub use pods::{PodQuery, PodState};
pub use resources::{
    BackupContents, ClusterScoped, Discovered, ExistingPolicy, FIELD_MANAGER, LeftOut,
    ObjectOutcome, Outcome, ResourceBackup, ResourceBackupDetails, ResourceFilter, ResourceRestore,
    ResourceRestoreReport, ResourceType, StoredObject, TakenResource, clean_object,
    is_resource_backup, read_backup, resource_backups,
};
pub use rollout::{RESTARTED_AT, Replaced, Restarted, RolloutStatus, Undone};
pub use workload::{Scaled, Workload, WorkloadKind};
