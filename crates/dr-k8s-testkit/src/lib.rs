//! A Kubernetes API server for tests: the real wire protocol (JSON over HTTP/1.1) on
//! 127.0.0.1, objects in memory. No kube-apiserver can be installed where drkit is tested, so
//! the tests of the Kubernetes crates run against this one; its fidelity is checked by a real
//! client nobody here wrote, `kubectl`.
//!
//! [`KubeApiServer::start`] binds a free port; [`KubeApiServer::url`] is its base URL and
//! [`KubeApiServer::kubeconfig`] writes a kubeconfig for `kubectl --kubeconfig`. Dropping the
//! handle stops the server.
//!
//! ```no_run
//! # async fn demo() -> dr_k8s_testkit::Result<()> {
//! let server = dr_k8s_testkit::KubeApiServer::start().await?;
//! let dir = std::env::temp_dir();
//! let kubeconfig = server.kubeconfig(&dir).await?;
//! // kubectl --kubeconfig <kubeconfig> apply --validate=false -f manifest.yaml
//! println!("{} {}", server.url(), kubeconfig.display());
//! drop(server); // stopped
//! # Ok(()) }
//! ```
//!
//! # What is served
//!
//! - **Resources**: core v1 `namespaces`, `pods`, `configmaps`, `secrets`, `services`,
//!   `serviceaccounts`, `nodes`, `persistentvolumeclaims`; apps/v1 `deployments`,
//!   `replicasets`, `statefulsets`, `daemonsets`; coordination.k8s.io/v1 `leases`; policy/v1
//!   `poddisruptionbudgets`; networking.k8s.io/v1 `networkpolicies`. Short names as
//!   Kubernetes has them (`deploy`, `cm`, `ns`, ...).
//! - **Discovery**: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}`,
//!   `/apis/{group}/{version}` (with the `*/status` and `*/scale` entries). Aggregated
//!   discovery is not served: the legacy documents come back as plain `application/json`,
//!   which clients (kubectl 1.32 among them) take as the signal to fall back.
//! - **Verbs**: get; list with label selectors (equality and set-based), field selectors on
//!   `metadata.name` and `metadata.namespace`, `limit` and `continue`; create (with
//!   `generateName` and `dryRun=All`); update with a resourceVersion precondition (409
//!   Conflict); patch as merge patch (RFC 7386), JSON patch (RFC 6902) or strategic merge
//!   patch (lists merged by key for `containers`, `initContainers`, `volumes`, `env`,
//!   `volumeMounts` by `name`, `ports` by `containerPort`, with `$patch: replace` and
//!   `$patch: delete`); delete (a namespace takes its objects with it, at once).
//! - **Subresources**: `status` (get, update and patch change `status` only, and an update of
//!   the object leaves `status` alone) for pods, nodes, namespaces, deployments, replica sets,
//!   stateful sets and daemon sets; `scale` (autoscaling/v1 `Scale`) for deployments, replica
//!   sets and stateful sets.
//! - **Storage**: one resourceVersion counter for every object; `uid`, `creationTimestamp`;
//!   `generation` bumped when `spec` changes; a write that changes nothing keeps the
//!   resourceVersion. Namespaced objects need their namespace. Errors are `meta/v1` `Status`
//!   objects with the code, reason and message a real server gives.
//!
//! # What is not served (yet)
//!
//! Watch, the OpenAPI documents (`/openapi/v2`, `/openapi/v3`), server-side apply,
//! custom resources (CRDs), controllers (a deployment makes no replica sets or pods),
//! eviction, finalizers and graceful deletion, delete-collection, authentication and TLS,
//! and protobuf. Those are later slices; a request for one gets an error, not a pretence.
//!
//! # kubectl
//!
//! Without the OpenAPI document, `kubectl apply` needs `--validate=false` (and
//! `--server-side=false`, its default). kubectl's typed `create` commands (`kubectl create
//! namespace`, `create configmap`, `create deployment`, ...) send protobuf and are answered
//! 415 Unsupported Media Type: use `kubectl apply -f` instead. The commands the tests drive,
//! all JSON: `get` (`-o json`, `-l`), `apply --validate=false`, `scale`, `patch --type
//! merge|json|strategic`, `label`, `replace`, `delete`.

pub(crate) mod api;
pub(crate) mod controller;
pub(crate) mod error;
pub(crate) mod patch;
pub(crate) mod registry;
pub(crate) mod selector;
pub(crate) mod server;
pub(crate) mod status;
pub(crate) mod store;
pub(crate) mod watch;

pub use crate::error::{Error, Result};
pub use crate::server::{KubeApiServer, KubeApiServerOptions};
