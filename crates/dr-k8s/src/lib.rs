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
//! - [`Error`]: one error type, naming the cluster, the request and the
//!   server's `Status` (code, reason, message); it converts into
//!   [`dr_core::Error`] with a kind a caller can act on (404 NotFound,
//!   401/403 Auth, 429 and 5xx Unavailable).
//!
//! The library picks no Kubernetes version for `k8s-openapi`: the binary
//! that links it does.
//!
//! Not yet (they come with the rest of its issue): rollouts (restart,
//! status, undo), pod deletion waiting for the replacement, patches of
//! Services and env, server-side apply, logs, cordon and drain, network
//! policies, namespaces, the health-gated rollout, the Lease, the failover
//! hooks, and resource backup and restore.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dr_k8s::Error> {
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
//! # Ok(()) }
//! ```

mod cluster;
mod error;
mod pods;
mod rollout;
mod workload;

pub use cluster::Cluster;
pub use error::{Error, Result};
pub use pods::{PodQuery, PodState};
pub use rollout::{RESTARTED_AT, Replaced, Restarted, RolloutStatus, Undone};
pub use workload::{Scaled, Workload, WorkloadKind};
