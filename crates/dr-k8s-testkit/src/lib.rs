//! A Kubernetes API server for tests: the real wire protocol (JSON over HTTP/1.1) on
//! 127.0.0.1, objects in memory. No kube-apiserver can be installed where drkit is tested, so
//! the tests of the Kubernetes crates run against this one; its fidelity is checked by a real
//! client nobody here wrote, `kubectl`.
//!
//! [`KubeApiServer::start`] binds a free port; [`KubeApiServer::url`] is its base URL and
//! [`KubeApiServer::kubeconfig`] writes a kubeconfig for `kubectl --kubeconfig`. Dropping the
//! handle stops the server. [`KubeApiServer::start_with`] takes [`KubeApiServerOptions`]:
//! controllers on or off, how much watch history is kept, how often bookmarks go out,
//! aggregated discovery served or not.
//! [`KubeApiServer::inject`] makes requests fail as a [`Fault`] says, and
//! [`KubeApiServer::set_group_unavailable`] takes an API group down.
//! [`KubeApiServer::append_log`] (or [`KubeApiServer::append_log_at`]) writes a line to a
//! pod's container's log and [`KubeApiServer::restart_container`] restarts it, for `kubectl
//! logs` and `pods/log` to read.
//!
//! ```no_run
//! # async fn demo() -> dr_k8s_testkit::Result<()> {
//! let server = dr_k8s_testkit::KubeApiServer::start().await?;
//! let dir = std::env::temp_dir();
//! let kubeconfig = server.kubeconfig(&dir).await?;
//! // kubectl --kubeconfig <kubeconfig> apply -f manifest.yaml
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
//!   `poddisruptionbudgets`; networking.k8s.io/v1 `networkpolicies`;
//!   apiextensions.k8s.io/v1 `customresourcedefinitions`; batch/v1 `jobs` and `cronjobs`
//!   and rbac.authorization.k8s.io/v1 `roles`, `rolebindings`, `clusterroles` and
//!   `clusterrolebindings`, stored as given (no controller runs jobs, nothing is
//!   authorized by the roles; their documents' specs are open). Short names as Kubernetes
//!   has them (`deploy`, `cm`, `ns`, `crd`, ...).
//! - **Custom resources**: a CustomResourceDefinition (checked as the real server checks
//!   what matters here: the name `<plural>.<group>`, group, plural, kind, a scope of
//!   `Namespaced` or `Cluster`, versions each with a schema and exactly one stored; else 422)
//!   gets its `status` at once: `NamesAccepted` and `Established` `True`, `acceptedNames`
//!   (with `singular` and `listKind` defaulted), `storedVersions`. Each version it serves is
//!   then in discovery (`/apis` lists the group, its versions in Kubernetes' order, the
//!   preferred first; `/apis/{group}/{version}` the resource with its short names and
//!   `{plural}/status` if `subresources.status` is declared) and served as the built-in
//!   resources are: get, list, watch, create, update, merge and JSON patch, delete, the
//!   `status` subresource (then `status` is dropped on create and changes only through it).
//!   A strategic merge patch is 415, as for any custom resource. An object of a kind not yet
//!   defined is 404. Deleting the definition deletes its objects (each a `DELETED` event) and
//!   its discovery entries at once. Not done: validation by the schema other than of
//!   unknown fields (see `fieldValidation`), pruning and defaulting, conversion (every served version reads the same stored objects, which keep the
//!   `apiVersion` they were written with), the `scale` subresource,
//!   `additionalPrinterColumns`, and `generation` bumps for changes outside `spec`. Its
//!   `categories` are in aggregated discovery (not in the legacy documents).
//! - **Discovery**: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}`,
//!   `/apis/{group}/{version}` (with the `*/status` and `*/scale` entries, `pods/eviction`
//!   and `pods/log`, and the groups and resources of custom resources), as
//!   `application/json`. **Aggregated discovery** as a server of 1.30 or later: `GET /api`
//!   and `GET /apis` whose `Accept` prefers (by `q`, then order)
//!   `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList` answer an
//!   `apidiscovery.k8s.io/v2` `APIGroupDiscoveryList` with that `Content-Type`: for `/api`
//!   the core group (no name), for `/apis` the other groups in `/apis`' order, custom ones
//!   included; each group's versions, preferred first, `freshness: Current`, each with its
//!   resources (`resource`, `responseKind` (group and version empty for the resource's own,
//!   as the real server has them), `scope` `Namespaced` or `Cluster`, `singularResource`,
//!   `verbs`, `shortNames`, `categories` (`all` for pods, services, the workloads and
//!   jobs; `api-extensions` for definitions; a definition's own), and `subresources`:
//!   `status`, `scale` (`autoscaling/v1` `Scale`), `eviction` (`policy/v1` `Eviction`),
//!   `log`, each with its `responseKind` and verbs). Asked for `v=v2beta1` (client-go 1.26
//!   to 1.29), the same document as `apidiscovery.k8s.io/v2beta1`. The answer has the real
//!   server's `ETag` (a hash of the document; not its SHA-512), `Vary: Accept` and
//!   `Cache-Control: public`; an `If-None-Match` naming the current ETag is a 304 without a
//!   body. A group made unavailable is listed with its versions `Stale` and no resources, as
//!   the aggregator lists an API service it cannot reach. kubectl 1.32 and client-go take
//!   it, so they make no request per group version (`kubectl api-resources`, `kubectl get`
//!   with nothing cached: `/api` and `/apis` only). Any other `Accept` (`application/json`,
//!   `*/*`, none, the aggregated type weighed below plain JSON) gets the legacy documents, as
//!   does everyone when [`KubeApiServerOptions::aggregated_discovery`] is off (a server
//!   before 1.26, for clients' fallback).
//! - **Verbs**: get; list with label selectors (equality and set-based), field selectors on
//!   the fields a real server indexes (`metadata.name` and `metadata.namespace` of every
//!   resource; a pod's `spec.nodeName`, `spec.restartPolicy`, `spec.schedulerName`,
//!   `spec.serviceAccountName`, `status.phase`, `status.podIP`, `status.nominatedNodeName`; a
//!   node's `spec.unschedulable`; any other field is 400), `limit` and `continue`; create (with
//!   `generateName` and `dryRun=All`); update with a resourceVersion precondition (409
//!   Conflict); patch as merge patch (RFC 7386), JSON patch (RFC 6902) or strategic merge
//!   patch (lists merged by key for `containers`, `initContainers`, `ephemeralContainers`,
//!   `volumes`, `env`, `imagePullSecrets` by `name`, `volumeMounts` by `mountPath`, `ports` by
//!   `containerPort` (a Service's by `port`), with `$patch: replace`, `$patch: delete` and
//!   `$setElementOrder` (the items it names in its order, any others after them; Kubernetes
//!   leaves those where they were); `$retainKeys` and `$deleteFromPrimitiveList` are
//!   ignored); delete, with `DeleteOptions` in the body (`preconditions` on uid and
//!   resourceVersion, 409 when they fail; `dryRun`; `gracePeriodSeconds` and
//!   `propagationPolicy` taken but changing nothing: **deletion is immediate**, as with a
//!   grace period of 0, so a pod is gone, not `Terminating`, when the DELETE answers; a
//!   namespace takes its objects with it, at once).
//! - **Server-side apply** (PATCH with `application/apply-patch+yaml`; the body must be
//!   JSON, which is YAML, as kubectl and kube send it; YAML in block form is a 400):
//!   `fieldManager` is required (400 without), the object is created if missing (201), and
//!   `metadata.managedFields` is kept per manager and operation (`Apply`, `Update`) with
//!   `fieldsV1`. Approximations, exactly: a field set is the set of paths to leaves
//!   (scalars, atomic lists, empty objects); the lists of the built-in types that strategic
//!   merge patches merge by key (as above) are
//!   merged item by item (`k:{"name":"web"}`, new items at the end) and every other list,
//!   and every list of a custom resource, is one atomic value. An apply conflicts (409
//!   `Conflict`, "Apply failed with 1 conflict: conflict with \"kubectl-patch\" using v1:
//!   .data.x", each field a `FieldManagerConflict` cause) on a leaf another manager owns when
//!   its value differs; `force=true` takes such leaves over. The leaves a manager applied
//!   before and applies no more are removed unless another manager owns them (or something
//!   under them), and the objects and keyed items they leave empty with them. Other writes
//!   (create, update, patch) give the leaves whose values they change to their manager
//!   (`fieldManager`, else the User-Agent up to its first `/`), taken from everyone else,
//!   unless they set `managedFields` themselves, which are then taken as given. Not done:
//!   managed fields of the controllers' writes and of subresources (an apply to a
//!   subresource is 415), `x-kubernetes-list-type` of custom resources, sets (`v:`
//!   elements), reordering a list as applied, and `metadata.managedFields` timestamps finer
//!   than a second.
//! - **Subresources**: `status` (get, update and patch change `status` only, and an update of
//!   the object leaves `status` alone) for pods, nodes, namespaces, deployments, replica sets,
//!   stateful sets, daemon sets and pod disruption budgets; `scale` (autoscaling/v1 `Scale`)
//!   for deployments, replica sets and stateful sets; `pods/eviction` (POST of a policy/v1
//!   `Eviction`, listed in `/api/v1` as kubectl drain looks for it): the `deleteOptions`
//!   checked as a DELETE's, then the one PodDisruptionBudget of the pod's namespace whose
//!   selector matches the pod (more than one is a 500, as in Kubernetes) is figured over its
//!   pods as the disruption controller does (expected pods: the pods selected with an integer
//!   `minAvailable`, else their controllers' `spec.replicas`; healthy: `Ready`; percentages
//!   rounded up). A ready pod goes while `currentHealthy - desiredHealthy > 0`, an unready
//!   one while `currentHealthy >= desiredHealthy` (or with `unhealthyPodEvictionPolicy:
//!   AlwaysAllow`), a `Pending`, `Succeeded` or `Failed` one always; else **429
//!   `TooManyRequests`**, "Cannot evict pod as it would violate the pod's disruption
//!   budget.", with a `DisruptionBudget` cause naming the budget and its counts. An eviction
//!   deletes the pod (its controller replaces it) and answers 201 with a `Success` Status.
//!   `pods/log` (GET, `text/plain`): the lines the test appended, in order, with the
//!   kubelet's options and refusals (each a 400): `container` (needed when the pod has
//!   several: "a container name must be specified for pod p, choose one of: [a b]"; one it
//!   does not have is refused), `previous` (the log before [`KubeApiServer::restart_container`],
//!   else "previous terminated container ... not found"), `sinceSeconds` or `sinceTime` (RFC
//!   3339; not both), then `tailLines`, then `timestamps=true` (each line prefixed by its time
//!   in RFC 3339 with nine digits of nanoseconds, in UTC, and a space), then `limitBytes`
//!   (cut at that byte). A container that has not started (or is crash-looping) answers "is
//!   waiting to start: ContainerCreating" (or its waiting reason). `follow` is answered as
//!   without it: the lines so far, then the end of the response. A pod's logs go with it.
//! - **Watch**: `?watch=1` (or `true`) on a collection's URL (in a namespace, across
//!   namespaces, cluster-scoped) streams newline-delimited `{"type": ..., "object": ...}`
//!   events (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`) over a chunked response that
//!   stays open, filtered by `labelSelector` and `fieldSelector` (an object that enters or
//!   leaves the selection is `ADDED` or `DELETED`, as a real server does). Without a
//!   `resourceVersion` (or with `0`, or `sendInitialEvents=true`) the objects there are come
//!   first as `ADDED`; from a resourceVersion, the changes after it, replayed from a bounded
//!   history (10 000 changes by default); from one older than the history, or a watcher that
//!   falls 4096 changes behind, an `ERROR` event whose object is a `Status` 410 `Expired`,
//!   and the end of the response. `allowWatchBookmarks=true` adds a `BOOKMARK` (only
//!   `metadata.resourceVersion`) every second by default; `timeoutSeconds` ends the response.
//! - **Controllers** (on by default, like a cluster's controller manager and kubelets): a
//!   Deployment makes a ReplicaSet `<deployment>-<hash of its pod template>` with the label
//!   `pod-template-hash`, a controller ownerReference and the annotation
//!   `deployment.kubernetes.io/revision` (the next revision for a new template; a replica set
//!   whose template matches, ignoring the hash label, is reused and gets the next revision,
//!   with `revision-history`), scales it to `spec.replicas` and the older ones to 0 at once,
//!   and keeps the deployment's revision annotation and `status` (`observedGeneration`,
//!   replica counts, `Available` and `Progressing` conditions, `NewReplicaSetAvailable` once
//!   rolled out). ReplicaSets make Pods `<name>-<suffix>`; StatefulSets make `<name>-0`,
//!   `-1`, ... in order (one at a time unless `podManagementPolicy: Parallel`) and scale down
//!   from the highest ordinal; both keep their `status`. **The scheduler**: if Node objects
//!   exist, a pod without `spec.nodeName` (made by a controller or not) is bound to the node
//!   with the fewest unfinished pods among those not cordoned (`spec.unschedulable`), not
//!   reporting a `Ready` condition other than `True`, and whose labels hold the pod's
//!   `nodeSelector` (ties by name); when none fits it stays `Pending` with a `PodScheduled`
//!   `False` condition in the scheduler's words (`0/2 nodes are available: 2 node(s) were
//!   unschedulable.`) until one does. With no nodes at all pods run unassigned. A pod that
//!   has not started becomes `Running` and `Ready` at once (`status.hostIP` its node's
//!   `InternalIP`); **one whose annotation `drkit.test/fail` is `"true"`
//!   becomes `Running` but never ready**, its containers waiting in `CrashLoopBackOff`. A
//!   ReplicaSet or Pod whose controller is gone is deleted (background propagation). A
//!   PodDisruptionBudget keeps its `status` (`expectedPods`, `currentHealthy`,
//!   `desiredHealthy`, `disruptionsAllowed`, `observedGeneration`, the `DisruptionAllowed`
//!   condition), figured as an eviction figures it. Each
//!   change is an ordinary write, seen by watches. So `kubectl rollout status`, `rollout
//!   restart`, `rollout undo`, `rollout history`, `set image` and `scale` behave as against a
//!   cluster.
//! - **Defaults**: the `spec` fields of deployments, replica sets and stateful sets that
//!   kubectl and the controllers read (`replicas`, `strategy`, `updateStrategy`,
//!   `podManagementPolicy`, `revisionHistoryLimit`, `progressDeadlineSeconds`), where absent.
//! - **Faults**: a [`Fault`] answers the next N requests that match a method and a path
//!   (prefix or substring) with a status code and a `Status` with Kubernetes' reason for it
//!   (`InternalError`, `TooManyRequests`, `Conflict`, `ServiceUnavailable`, ...), optionally
//!   after a delay and with `Retry-After` (client-go, so kubectl, then retries by itself);
//!   [`Fault::latency`] only delays. An API group made unavailable answers 503
//!   `ServiceUnavailable` on every path under `/apis/{group}` while `/apis` still lists it, as
//!   the aggregator does for an API service that is down; aggregated discovery lists its
//!   versions `Stale`, which `kubectl api-resources` passes over without a word, listing the
//!   others (from the legacy documents it reports the group's 503, and lists the others).
//! - **OpenAPI v3**: `GET /openapi/v3`, the index (`paths`: `api/v1`, `apis/{group}/{version}`
//!   for every group version served, custom ones included, each with its `serverRelativeURL`
//!   `/openapi/v3/{path}?hash={hash}`), and `GET /openapi/v3/{path}`, a group version's
//!   document (JSON only; OpenAPI `3.0.0`). A document has, for each resource, the paths of its
//!   collection (and, if namespaced, of the all-namespaces list), of an object and of its
//!   `status` subresource, with operations `list`, `post`, `get`, `put`, `patch`, `delete`,
//!   each with `x-kubernetes-action`, `x-kubernetes-group-version-kind` and the query
//!   parameters served (`fieldValidation`, `fieldManager`, `dryRun` on writes, `force` on
//!   patches); a PATCH's `requestBody` lists the patch types taken (no strategic merge patch
//!   for a custom resource). `components.schemas` has each kind's schema
//!   (`io.k8s.api.apps.v1.Deployment`, `io.livekit.v1.Room`) with
//!   `x-kubernetes-group-version-kind`, every type inline (no `$ref` but the patch body's).
//!   A built-in kind's schema names the fields of `metadata` and of its `spec` (or `data`)
//!   down through pod templates, containers, probes, security contexts, volumes and their
//!   common sources, with a type each; the lists strategic merge patches merge carry
//!   `x-kubernetes-patch-merge-key`, `x-kubernetes-patch-strategy: merge` and
//!   `x-kubernetes-list-type: map` with the same key, the others `x-kubernetes-list-type:
//!   atomic`. Left open (`x-kubernetes-preserve-unknown-fields`, nothing under them
//!   described): every `status`, a definition's `versions`, the items of `affinity` terms,
//!   `topologySpreadConstraints`, `volumeClaimTemplates`, `resourceClaims`, `ephemeralContainers`, network
//!   policy rules, projected and downward-API volume items and the rarer volume sources. No
//!   descriptions, formats, enums, defaults or `required`. A custom resource's schema is its
//!   definition's `openAPIV3Schema` for that version, with `apiVersion`, `kind` and
//!   `metadata` added. The hash (also the `ETag`) changes when the document does; asked for
//!   by its current hash a document comes with `Cache-Control: public, immutable`, by an
//!   older one it is a 301 to the current URL. `/openapi/v2` is 404.
//! - **`fieldValidation`** on create, update and patch (the object as the patch leaves it)
//!   and server-side apply, by the schemas above: a field is unknown where its object's
//!   schema is closed (has `properties`, or is `type: object`, with neither
//!   `additionalProperties` nor `x-kubernetes-preserve-unknown-fields`), so within open
//!   parts nothing is checked. `Strict` refuses unknown fields: 400 `BadRequest`
//!   "ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error:
//!   unknown field "metadata.colour", unknown field "shape"" for a create or an update,
//!   "strict decoding error: unknown field "spec.foo"" for a patch, and for an apply, as
//!   the real server, a 500 without a reason, "failed to create typed patch object
//!   (default/bad; /v1, Kind=ConfigMap): .shape: field not declared in schema". `Warn`, the
//!   default, takes the object with a `Warning: 299 - "unknown field "shape""` header each;
//!   `Ignore` takes it silently. Another value is 400. Unknown fields are kept, not dropped
//!   as a real server drops them; duplicate keys, types and values are not checked, nor are
//!   writes to subresources.
//! - **Storage**: one resourceVersion counter for every object; `uid`, `creationTimestamp`;
//!   `generation` bumped when `spec` changes; a write that changes nothing keeps the
//!   resourceVersion. Namespaced objects need their namespace. Errors are `meta/v1` `Status`
//!   objects with the code, reason and message a real server gives.
//!
//! # What is not served (yet)
//!
//! `/openapi/v2` (it would be protobuf), finalizers and graceful deletion (no `deletionTimestamp`, no
//! `Terminating`), `propagationPolicy` (deletion is always background), delete-collection, authentication and TLS, protobuf, and `Table`
//! responses (kubectl falls back to its own columns: `get pods` prints NAME and AGE). Watch
//! of one object by its own URL and the legacy `/watch/` paths are not served (clients watch
//! a collection with `fieldSelector=metadata.name=...`); `resourceVersionMatch` is ignored.
//! Controllers not served: rolling updates paced by `maxSurge`/`maxUnavailable` (the new
//! replica set takes all replicas at once), `minReadySeconds`, `paused`, progress deadlines
//! (`ProgressDeadlineExceeded`), `revisionHistoryLimit` pruning, hash collisions
//! (`collisionCount`), ControllerRevisions (so `rollout undo` and `rollout history` of
//! stateful sets and daemon sets), stateful set template updates (existing pods keep their
//! template) and volume claim templates, daemon sets, jobs, services' endpoints, the node
//! lifecycle (heartbeats, taints; the scheduler reads no taints, tolerations, affinities or
//! resources), and adoption of orphans by selector. Pod template hashes have Kubernetes'
//! form but not its values. Those are later slices; a request for one gets an error, not a
//! pretence. Of discovery: the aggregated documents in protobuf, `categories` in the legacy
//! documents, a peer-aggregated (`/apis` of several servers) view, and 406 for an `Accept`
//! of only the aggregated types on other paths (they get the legacy documents).
//!
//! # kubectl
//!
//! kubectl discovers everything with two requests, `/api` and `/apis`, answered with
//! aggregated discovery (its `-v=8` log shows the `Content-Type`); `kubectl api-resources`
//! lists the same table as from the legacy documents, and `--categories=all` (what `get
//! all` reads) pods, services, the workloads and jobs.
//!
//! `kubectl apply`, `create -f` and `replace -f` validate without `--validate=false`: kubectl
//! reads `/openapi/v3`, then the document of the object's group version, finds
//! `fieldValidation` among the parameters of the kind's PATCH and so leaves validation to
//! the server, sending `fieldValidation=Strict` (`Warn` with `--validate=warn`, `Ignore` with
//! `--validate=false`); an unknown field is reported as "Error from server (BadRequest):
//! error when creating "bad.yaml": ConfigMap in version "v1" cannot be handled as a
//! ConfigMap: strict decoding error: unknown field "shape"". A second client-side apply is
//! a strategic merge patch kubectl computes from the document's schema (its merge keys and
//! `$setElementOrder`); for a custom resource, whose PATCH takes no strategic merge patch, a
//! merge patch. A field kubectl must descend into that a schema leaves open makes kubectl
//! print "warning: error calculating patch from openapi v3 spec" and compute the patch from
//! its built-in types instead. Still needing `--validate=false`: a file whose kind is `List`
//! and a custom resource whose definition is not there yet, which kubectl validates itself
//! with `/openapi/v2`. kubectl's typed `create` commands (`kubectl create
//! namespace`, `create configmap`, `create deployment`, ...) send protobuf and are answered
//! 415 Unsupported Media Type: use `kubectl apply -f` instead. The commands the tests drive,
//! all JSON: `get` (`-o json`, `-l`, `-w`), `apply` (`--validate=false|warn`), `scale`, `patch --type
//! merge|json|strategic`, `label`, `replace`, `delete`, `set image`, `rollout status`,
//! `rollout restart`, `rollout undo` (a JSON patch replacing `/spec/template` and
//! `/metadata/annotations`, the template with `"creationTimestamp": null` and
//! `"resources": {}`, which the controller compares as a typed server does), `rollout
//! history`, `drain` (it cordons, lists the node's pods by `spec.nodeName`, leaves
//! DaemonSet-owned pods with `--ignore-daemonsets` and mirror pods, refuses emptyDir pods
//! without `--delete-emptydir-data`, evicts, and polls each pod until it is gone; a budget's
//! 429 is retried every 5 s until `--timeout`), `uncordon`, and `logs` (`-c`, `--tail`,
//! `--since-time`, `--timestamps`, `-p`; kubectl picks a pod's first container itself),
//! `wait --for=condition=Established` of a definition, `apply`, `get` (by plural, singular
//! and short name) and `patch --type=merge` of custom resources (kubectl reports a
//! strategic patch's 415 in its own words: "application/strategic-merge-patch+json is not
//! supported by livekit.io/v1, Kind=Room"), `delete crd`, `api-resources`, and `apply --server-side` (a
//! JSON body sent as `application/apply-patch+yaml` with
//! `fieldManager=kubectl&fieldValidation=Strict&force=false`; a conflict with `kubectl-patch`
//! is reported and `--force-conflicts` takes the field; a key dropped from the file is
//! removed).

pub(crate) mod api;
pub(crate) mod apply;
pub(crate) mod controller;
pub(crate) mod crd;
pub(crate) mod discovery;
pub(crate) mod error;
pub(crate) mod eviction;
pub(crate) mod fault;
pub(crate) mod logs;
pub(crate) mod openapi;
pub(crate) mod patch;
pub(crate) mod registry;
pub(crate) mod schema;
pub(crate) mod selector;
pub(crate) mod server;
pub(crate) mod status;
pub(crate) mod store;
pub(crate) mod watch;

pub use crate::error::{Error, Result};
pub use crate::fault::Fault;
pub use crate::server::{KubeApiServer, KubeApiServerOptions};
