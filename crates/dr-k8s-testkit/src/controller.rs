//! The small controller loop: what kube-controller-manager and the kubelets do, just enough
//! for deployments, replica sets and stateful sets to behave.
//!
//! - **Deployments** make a ReplicaSet `<deployment>-<hash of the pod template>` (label
//!   `pod-template-hash`, a controller ownerReference, the annotation
//!   `deployment.kubernetes.io/revision`), scale it to `spec.replicas` and the older ones to 0
//!   at once (no surge, no pacing), and keep their `status` and revision annotation.
//! - **ReplicaSets** make and delete Pods `<name>-<suffix>`; **StatefulSets** Pods
//!   `<name>-0`, `-1`, ... in order, deleting from the highest ordinal.
//! - **The scheduler**: a pod without `spec.nodeName` goes to the node with the fewest pods
//!   of those not cordoned, not reporting themselves not ready and matching its
//!   `nodeSelector`; if nodes exist and none fits, it stays `Pending` with a `PodScheduled`
//!   condition that says why; with no nodes at all it runs unassigned.
//! - **Pods** start at once: `Running` and `Ready`, unless their annotation
//!   `drkit.test/fail` is `"true"`: then `Running`, not ready, the container waiting in
//!   `CrashLoopBackOff`.
//! - **PodDisruptionBudgets** keep their `status` (expected, healthy and desired pods, the
//!   disruptions allowed, the `DisruptionAllowed` condition), figured as eviction does.
//! - **Garbage collection**: a ReplicaSet or Pod whose controller owner is gone is deleted.
//!
//! Each pass runs under the store's lock and writes through the store, so every change is a
//! watch event; passes repeat until one changes nothing, and a new pass follows every change.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::registry::{self, ResourceType};
use crate::store::{Part, Store};

/// The annotation that makes a pod fail to become ready.
pub(crate) const FAIL_ANNOTATION: &str = "drkit.test/fail";
const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";
/// The deployment annotations not copied to its replica sets, as the deployment controller
/// and `kubectl rollout undo` skip them.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// At most this many passes in a row; a pass that keeps changing things would be a bug.
const MAX_PASSES: usize = 16;

/// Runs until aborted: a pass at once, then one after every batch of changes.
pub(crate) async fn run(store: Arc<Mutex<Store>>) {
    let mut changes = lock(&store).subscribe();
    loop {
        {
            let mut store = lock(&store);
            for _ in 0..MAX_PASSES {
                if !pass(&mut store) {
                    break;
                }
            }
        }
        match changes.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
        // The changes that came meanwhile are seen by the next pass.
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = changes.try_recv() {}
    }
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

fn kind(group: &str, plural: &str) -> &'static ResourceType {
    registry::find(group, "v1", plural).expect("the controllers' resources are served")
}

/// One pass of every controller; whether it changed anything.
fn pass(store: &mut Store) -> bool {
    let mut changed = collect_garbage(store);
    for deployment in store.objects(kind("apps", "deployments")) {
        changed |= sync_deployment(store, &deployment);
    }
    for replica_set in store.objects(kind("apps", "replicasets")) {
        changed |= sync_replica_set(store, &replica_set);
    }
    for stateful_set in store.objects(kind("apps", "statefulsets")) {
        changed |= sync_stateful_set(store, &stateful_set);
    }
    for pod in store.objects(kind("", "pods")) {
        changed |= start_pod(store, &pod);
    }
    for budget in store.objects(kind("policy", "poddisruptionbudgets")) {
        changed |= sync_budget(store, &budget);
    }
    changed
}

/// The disruption controller's part: a budget's `status` from the pods it selects now.
fn sync_budget(store: &mut Store, budget: &Value) -> bool {
    let status = crate::eviction::status(store, budget, &now());
    if budget["status"] == status {
        return false;
    }
    let mut next = budget.clone();
    next["status"] = status;
    write(
        store,
        kind("policy", "poddisruptionbudgets"),
        next,
        Part::Status,
    )
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn name_of(object: &Value) -> &str {
    text(object, "/metadata/name")
}

fn namespace_of(object: &Value) -> &str {
    text(object, "/metadata/namespace")
}

fn uid_of(object: &Value) -> &str {
    text(object, "/metadata/uid")
}

fn replicas_of(object: &Value) -> i64 {
    object["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// The uid of an object's controller (the ownerReference with `controller: true`).
fn controller_uid(object: &Value) -> Option<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .and_then(|r| r["uid"].as_str())
}

fn owner_reference(kind: &str, owner: &Value) -> Value {
    json!([{
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

/// The objects in `namespace` that `owner` controls.
fn owned(store: &Store, kind: &'static ResourceType, owner: &Value) -> Vec<Value> {
    let (namespace, uid) = (namespace_of(owner), uid_of(owner));
    store
        .objects(kind)
        .into_iter()
        .filter(|o| namespace_of(o) == namespace && controller_uid(o) == Some(uid))
        .collect()
}

/// Writes `object` if it differs from what is stored; whether it did.
fn write(store: &mut Store, kind: &'static ResourceType, object: Value, part: Part) -> bool {
    let before = object["metadata"]["resourceVersion"].clone();
    let (namespace, name) = (
        namespace_of(&object).to_owned(),
        name_of(&object).to_owned(),
    );
    match store.update(kind, Some(&namespace), &name, object, part, false) {
        Ok(after) => after["metadata"]["resourceVersion"] != before,
        Err(_) => false,
    }
}

fn delete(store: &mut Store, kind: &'static ResourceType, object: &Value) -> bool {
    store
        .delete(kind, Some(namespace_of(object)), name_of(object), false)
        .is_ok()
}

/// Deletes the replica sets and pods whose controller is gone (background propagation).
fn collect_garbage(store: &mut Store) -> bool {
    let mut changed = false;
    let owners = [
        kind("apps", "deployments"),
        kind("apps", "replicasets"),
        kind("apps", "statefulsets"),
    ];
    let alive: std::collections::BTreeSet<String> = owners
        .iter()
        .flat_map(|k| store.objects(k))
        .map(|o| uid_of(&o).to_owned())
        .collect();
    for dependents in [kind("apps", "replicasets"), kind("", "pods")] {
        for object in store.objects(dependents) {
            let orphaned = object["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["controller"] == true)
                .filter(|r| {
                    matches!(
                        r["kind"].as_str(),
                        Some("Deployment" | "ReplicaSet" | "StatefulSet")
                    )
                })
                .any(|r| !alive.contains(r["uid"].as_str().unwrap_or("")));
            if orphaned {
                changed |= delete(store, dependents, &object);
            }
        }
    }
    changed
}

/// JSON with its object keys sorted, whatever order the map keeps them in.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(members) => {
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                canonical(&members[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// The pod template's hash as Kubernetes spells it: FNV-1a (32 bits) of the template, its
/// decimal digits mapped through `rand.SafeEncodeString`'s alphabet. (Kubernetes hashes Go's
/// dump of the typed template, so the values differ from a real cluster's; the form is the
/// same.)
fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut text = String::new();
    canonical(template, &mut text);
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// A template without the `pod-template-hash` label, to compare as Kubernetes'
/// `EqualIgnoreHash` does.
fn without_hash(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            template["metadata"]
                .as_object_mut()
                .map(|m| m.remove("labels"));
        }
    }
    normalize(&mut template);
    template
}

/// Drops nulls, empty objects and empty arrays, as a typed round trip does: kubectl sends a
/// template back with `"creationTimestamp": null` and `"resources": {}`, which a real
/// server's typed comparison does not see.
fn normalize(value: &mut Value) {
    match value {
        Value::Object(members) => {
            for member in members.values_mut() {
                normalize(member);
            }
            members.retain(|_, v| !is_empty(v));
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(members) => members.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn revision_of(object: &Value) -> u64 {
    object["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// `maxSurge` or `maxUnavailable` of a rolling update, an integer or a percentage of
/// `replicas` (rounded up for the surge, down for unavailability, as Kubernetes does).
fn rolling(deployment: &Value, field: &str, replicas: i64, round_up: bool) -> i64 {
    let value = &deployment["spec"]["strategy"]["rollingUpdate"][field];
    if deployment["spec"]["strategy"]["type"] == "Recreate" {
        return if field == "maxUnavailable" {
            replicas
        } else {
            0
        };
    }
    let percent = match value {
        Value::Number(n) => return n.as_i64().unwrap_or(0),
        Value::String(s) => s.trim_end_matches('%').parse::<i64>().unwrap_or(25),
        _ => 25,
    };
    let scaled = replicas * percent;
    if round_up {
        (scaled + 99) / 100
    } else {
        scaled / 100
    }
}

/// The deployment's annotations a replica set of it carries.
fn copied_annotations(deployment: &Value) -> Map<String, Value> {
    deployment["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn sync_deployment(store: &mut Store, deployment: &Value) -> bool {
    let replica_sets_kind = kind("apps", "replicasets");
    let deployments_kind = kind("apps", "deployments");
    let namespace = namespace_of(deployment).to_owned();
    let name = name_of(deployment).to_owned();
    let replicas = replicas_of(deployment);
    let template = deployment["spec"]["template"].clone();
    let mut changed = false;
    if deployment["spec"]["paused"] == true {
        return false;
    }
    let replica_sets = owned(store, replica_sets_kind, deployment);
    let wanted = without_hash(&template);
    let (new, old): (Vec<Value>, Vec<Value>) = replica_sets
        .into_iter()
        .partition(|rs| without_hash(&rs["spec"]["template"]) == wanted);
    let new = new.into_iter().next();
    let max_old = old.iter().map(revision_of).max().unwrap_or(0);
    let next_revision = max_old + 1;
    let max_replicas = replicas + rolling(deployment, "maxSurge", replicas, true);
    let mut annotations = copied_annotations(deployment);
    annotations.insert(DESIRED_REPLICAS.into(), replicas.to_string().into());
    annotations.insert(MAX_REPLICAS.into(), max_replicas.to_string().into());
    let new = match new {
        Some(mut rs) => {
            let revision = revision_of(&rs);
            let mut wanted_annotations = annotations.clone();
            if revision < next_revision {
                wanted_annotations.insert(REVISION.into(), next_revision.to_string().into());
                if revision > 0 {
                    let history = rs["metadata"]["annotations"][REVISION_HISTORY]
                        .as_str()
                        .map(|h| format!("{h},{revision}"))
                        .unwrap_or_else(|| revision.to_string());
                    wanted_annotations.insert(REVISION_HISTORY.into(), history.into());
                }
            } else {
                wanted_annotations.insert(REVISION.into(), revision.to_string().into());
                if let Some(history) = rs["metadata"]["annotations"].get(REVISION_HISTORY) {
                    wanted_annotations.insert(REVISION_HISTORY.into(), history.clone());
                }
            }
            rs["metadata"]["annotations"] = Value::Object(wanted_annotations);
            rs["spec"]["replicas"] = replicas.into();
            changed |= write(store, replica_sets_kind, rs.clone(), Part::Main);
            store
                .get(replica_sets_kind, Some(&namespace), name_of(&rs))
                .unwrap_or(rs)
        }
        None => {
            let hash = template_hash(&wanted);
            // The template as given: normalizing is for comparing only (an `emptyDir: {}`
            // is a volume, not nothing).
            let mut template = template.clone();
            template["metadata"]["labels"][HASH_LABEL] = hash.clone().into();
            let mut selector = deployment["spec"]["selector"].clone();
            selector["matchLabels"][HASH_LABEL] = hash.clone().into();
            annotations.insert(REVISION.into(), next_revision.to_string().into());
            let mut spec = json!({
                "replicas": replicas,
                "selector": selector,
                "template": template,
            });
            if let Some(seconds) = deployment["spec"].get("minReadySeconds") {
                spec["minReadySeconds"] = seconds.clone();
            }
            let replica_set = json!({
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": format!("{name}-{hash}"),
                    "namespace": namespace,
                    "labels": template["metadata"]["labels"].clone(),
                    "annotations": annotations,
                    "ownerReferences": owner_reference("Deployment", deployment),
                },
                "spec": spec,
            });
            match store.create(replica_sets_kind, Some(&namespace), replica_set, false) {
                Ok(created) => {
                    changed = true;
                    created
                }
                // A replica set of that name not owned by the deployment: a hash collision,
                // which Kubernetes resolves with collisionCount; not here.
                Err(_) => return changed,
            }
        }
    };
    for mut rs in old {
        if replicas_of(&rs) != 0 {
            rs["spec"]["replicas"] = 0.into();
            changed |= write(store, replica_sets_kind, rs, Part::Main);
        }
    }
    // The deployment's revision is its new replica set's.
    let revision = revision_of(&new).to_string();
    if deployment["metadata"]["annotations"][REVISION].as_str() != Some(revision.as_str()) {
        let mut updated = deployment.clone();
        updated["metadata"]["annotations"][REVISION] = revision.into();
        changed |= write(store, deployments_kind, updated, Part::Main);
    }
    // The status, from every replica set it owns as they are now.
    let replica_sets = owned(store, replica_sets_kind, deployment);
    let sum = |field: &str| -> i64 {
        replica_sets
            .iter()
            .map(|rs| rs["status"][field].as_i64().unwrap_or(0))
            .sum()
    };
    let (total, ready, available) = (
        sum("replicas"),
        sum("readyReplicas"),
        sum("availableReplicas"),
    );
    let new_rs = replica_sets
        .iter()
        .find(|rs| name_of(rs) == name_of(&new))
        .unwrap_or(&new);
    let updated = new_rs["status"]["replicas"].as_i64().unwrap_or(0);
    let new_available = new_rs["status"]["availableReplicas"].as_i64().unwrap_or(0);
    let Ok(current) = store.get(deployments_kind, Some(&namespace), &name) else {
        return changed;
    };
    let old_conditions = current["status"]["conditions"].clone();
    let min_available = replicas - rolling(deployment, "maxUnavailable", replicas, false);
    let available_condition = if available >= min_available {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".to_owned(),
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".to_owned(),
        )
    };
    let new_name = name_of(new_rs);
    let progressing = if updated == replicas && total == updated && new_available == replicas {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
        )
    } else {
        (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{new_name}\" is progressing."),
        )
    };
    let mut status = json!({
        "observedGeneration": current["metadata"]["generation"].clone(),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": [
            condition(&old_conditions, "Available", available_condition),
            condition(&old_conditions, "Progressing", progressing),
        ],
    });
    let unavailable = (replicas - available).max(0);
    if unavailable > 0 {
        status["unavailableReplicas"] = unavailable.into();
    }
    for field in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        // Kubernetes leaves zero counts out (omitempty).
        if status[field] == 0 {
            status.as_object_mut().map(|s| s.remove(field));
        }
    }
    if current["status"] != status {
        let mut next = current;
        next["status"] = status;
        changed |= write(store, deployments_kind, next, Part::Status);
    }
    changed
}

/// A deployment condition, keeping the old one's times when nothing about it changed.
fn condition(old: &Value, kind: &str, (status, reason, message): (&str, &str, String)) -> Value {
    let previous = old
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind);
    let now = now();
    let (updated, transitioned) = match previous {
        Some(p) if p["status"] == status && p["reason"] == reason && p["message"] == message => {
            (p["lastUpdateTime"].clone(), p["lastTransitionTime"].clone())
        }
        Some(p) if p["status"] == status => (now.clone().into(), p["lastTransitionTime"].clone()),
        _ => (now.clone().into(), now.into()),
    };
    json!({
        "type": kind,
        "status": status,
        "lastUpdateTime": updated,
        "lastTransitionTime": transitioned,
        "reason": reason,
        "message": message,
    })
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// A pod made from a template, owned by `owner`.
fn pod_from(template: &Value, namespace: &str, owner_kind: &str, owner: &Value) -> Value {
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["namespace"] = namespace.into();
    metadata["ownerReferences"] = owner_reference(owner_kind, owner);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template["spec"].clone(),
    })
}

fn sync_replica_set(store: &mut Store, replica_set: &Value) -> bool {
    let pods_kind = kind("", "pods");
    let namespace = namespace_of(replica_set).to_owned();
    let wanted = usize::try_from(replicas_of(replica_set)).unwrap_or(0);
    let mut pods = owned(store, pods_kind, replica_set);
    let mut changed = false;
    while pods.len() < wanted {
        let mut pod = pod_from(
            &replica_set["spec"]["template"],
            &namespace,
            "ReplicaSet",
            replica_set,
        );
        pod["metadata"]["generateName"] = format!("{}-", name_of(replica_set)).into();
        match store.create(pods_kind, Some(&namespace), pod, false) {
            Ok(created) => {
                changed = true;
                pods.push(created);
            }
            Err(_) => break,
        }
    }
    if pods.len() > wanted {
        // Not-ready pods go first, then the newest, as the replica set controller prefers.
        pods.sort_by_key(|p| {
            (
                is_ready(p),
                std::cmp::Reverse(
                    p["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|r| r.parse::<u64>().ok())
                        .unwrap_or(0),
                ),
            )
        });
        for pod in pods.drain(..pods.len() - wanted) {
            changed |= delete(store, pods_kind, &pod);
        }
    }
    changed | set_status(store, kind("apps", "replicasets"), replica_set, &pods, None)
}

/// A replica set's or stateful set's status from its pods as they are now.
fn set_status(
    store: &mut Store,
    kind: &'static ResourceType,
    owner: &Value,
    pods: &[Value],
    revision: Option<&str>,
) -> bool {
    let pods_kind = crate::controller::kind("", "pods");
    let namespace = namespace_of(owner);
    let pods: Vec<Value> = pods
        .iter()
        .filter_map(|p| store.get(pods_kind, Some(namespace), name_of(p)).ok())
        .collect();
    let ready = pods.iter().filter(|p| is_ready(p)).count();
    let mut status = json!({
        "observedGeneration": owner["metadata"]["generation"].clone(),
        "replicas": pods.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
    });
    match revision {
        None => status["fullyLabeledReplicas"] = pods.len().into(),
        Some(revision) => {
            status["currentReplicas"] = pods.len().into();
            status["updatedReplicas"] = pods.len().into();
            status["currentRevision"] = revision.into();
            status["updateRevision"] = revision.into();
            status["collisionCount"] = 0.into();
        }
    }
    for field in [
        "readyReplicas",
        "availableReplicas",
        "fullyLabeledReplicas",
        "currentReplicas",
        "updatedReplicas",
    ] {
        if status[field] == 0 {
            status.as_object_mut().map(|s| s.remove(field));
        }
    }
    let Ok(current) = store.get(kind, Some(namespace), name_of(owner)) else {
        return false;
    };
    if current["status"] == status {
        return false;
    }
    let mut next = current;
    next["status"] = status;
    write(store, kind, next, Part::Status)
}

fn sync_stateful_set(store: &mut Store, stateful_set: &Value) -> bool {
    let pods_kind = kind("", "pods");
    let namespace = namespace_of(stateful_set).to_owned();
    let name = name_of(stateful_set).to_owned();
    let wanted = replicas_of(stateful_set).max(0);
    let parallel = stateful_set["spec"]["podManagementPolicy"] == "Parallel";
    let template = &stateful_set["spec"]["template"];
    let revision = format!("{name}-{}", template_hash(&without_hash(template)));
    let mut changed = false;
    let ordinal = |pod: &Value| -> Option<i64> {
        name_of(pod)
            .strip_prefix(&format!("{name}-"))
            .and_then(|n| n.parse().ok())
    };
    let mut pods = owned(store, pods_kind, stateful_set);
    // Scale down from the highest ordinal.
    pods.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
    pods.retain(|pod| {
        if ordinal(pod).is_some_and(|i| i < wanted) {
            true
        } else {
            changed |= delete(store, pods_kind, pod);
            false
        }
    });
    // Scale up in order; with OrderedReady, each waits for the one before to be ready.
    for i in 0..wanted {
        let pod_name = format!("{name}-{i}");
        if let Ok(existing) = store.get(pods_kind, Some(&namespace), &pod_name) {
            if !parallel && !is_ready(&existing) {
                break;
            }
            continue;
        }
        let mut pod = pod_from(template, &namespace, "StatefulSet", stateful_set);
        pod["metadata"]["name"] = pod_name.clone().into();
        let labels = &mut pod["metadata"]["labels"];
        labels["statefulset.kubernetes.io/pod-name"] = pod_name.clone().into();
        labels["apps.kubernetes.io/pod-index"] = i.to_string().into();
        labels["controller-revision-hash"] = revision.clone().into();
        pod["spec"]["hostname"] = pod_name.clone().into();
        if let Some(service) = stateful_set["spec"]["serviceName"].as_str() {
            pod["spec"]["subdomain"] = service.into();
        }
        let Ok(created) = store.create(pods_kind, Some(&namespace), pod, false) else {
            break;
        };
        changed = true;
        changed |= start_pod(store, &created);
        pods.push(created);
        let started = store.get(pods_kind, Some(&namespace), &pod_name);
        if !parallel && !started.as_ref().is_ok_and(is_ready) {
            break;
        }
    }
    changed
        | set_status(
            store,
            kind("apps", "statefulsets"),
            stateful_set,
            &pods,
            Some(&revision),
        )
}

/// Where the scheduler puts a pod.
enum Placement {
    /// No Node objects at all: the pod runs unassigned, as on a cluster of one imagined node.
    Anywhere,
    /// The least-loaded node it fits, by name among equals.
    Node(Value),
    /// Nodes exist but none takes the pod: the scheduler's message.
    Nowhere(String),
}

/// Whether a node reports itself not ready (a node without a `Ready` condition is taken as
/// ready: tests make nodes without a kubelet).
fn node_not_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] != "True")
}

/// The scheduler's choice for a pod without `spec.nodeName`: a node that is not cordoned
/// (`spec.unschedulable`), not reporting itself not ready, and whose labels hold the pod's
/// `spec.nodeSelector`; of those, the one with the fewest pods not yet finished.
fn place(store: &Store, pod: &Value) -> Placement {
    let nodes = store.objects(kind("", "nodes"));
    if nodes.is_empty() {
        return Placement::Anywhere;
    }
    let selector = pod["spec"]["nodeSelector"].as_object();
    let (mut cordoned, mut not_ready, mut unmatched) = (0, 0, 0);
    let mut fitting = Vec::new();
    for node in &nodes {
        let labels = &node["metadata"]["labels"];
        if node["spec"]["unschedulable"] == true {
            cordoned += 1;
        } else if node_not_ready(node) {
            not_ready += 1;
        } else if selector
            .into_iter()
            .flatten()
            .any(|(key, value)| labels.get(key) != Some(value))
        {
            unmatched += 1;
        } else {
            fitting.push(node);
        }
    }
    if fitting.is_empty() {
        // In the scheduler's words.
        let mut reasons = Vec::new();
        if unmatched > 0 {
            reasons.push(format!(
                "{unmatched} node(s) didn't match Pod's node affinity/selector"
            ));
        }
        if not_ready > 0 {
            reasons.push(format!("{not_ready} node(s) were not ready"));
        }
        if cordoned > 0 {
            reasons.push(format!("{cordoned} node(s) were unschedulable"));
        }
        return Placement::Nowhere(format!(
            "0/{} nodes are available: {}.",
            nodes.len(),
            reasons.join(", ")
        ));
    }
    let pods = store.objects(kind("", "pods"));
    let load = |node: &Value| {
        pods.iter()
            .filter(|p| text(p, "/spec/nodeName") == name_of(node))
            .filter(|p| !matches!(text(p, "/status/phase"), "Succeeded" | "Failed"))
            .count()
    };
    let chosen = fitting
        .into_iter()
        .min_by_key(|node| (load(node), name_of(node).to_owned()))
        .expect("fitting is not empty");
    Placement::Node(chosen.clone())
}

/// The scheduler's part: a pod without a node gets one, or a `PodScheduled` condition that
/// says why none fits. The pod as it is after, if it may start.
fn schedule(store: &mut Store, pod: &Value, changed: &mut bool) -> Option<Value> {
    if !text(pod, "/spec/nodeName").is_empty() {
        return Some(pod.clone());
    }
    let pods_kind = kind("", "pods");
    match place(store, pod) {
        Placement::Anywhere => Some(pod.clone()),
        Placement::Node(node) => {
            let mut bound = pod.clone();
            bound["spec"]["nodeName"] = name_of(&node).into();
            *changed |= write(store, pods_kind, bound, Part::Main);
            store
                .get(pods_kind, Some(namespace_of(pod)), name_of(pod))
                .ok()
        }
        Placement::Nowhere(message) => {
            let conditions = &pod["status"]["conditions"];
            let said = conditions.as_array().into_iter().flatten().any(|c| {
                c["type"] == "PodScheduled" && c["status"] == "False" && c["message"] == message
            });
            if !said {
                let mut next = pod.clone();
                next["status"]["conditions"] = json!([{
                    "type": "PodScheduled",
                    "status": "False",
                    "lastProbeTime": null,
                    "lastTransitionTime": now(),
                    "reason": "Unschedulable",
                    "message": message,
                }]);
                *changed |= write(store, pods_kind, next, Part::Status);
            }
            None
        }
    }
}

/// The node's internal address, as the kubelet reports it in `status.hostIP`.
fn host_ip(store: &Store, pod: &Value) -> String {
    let node = store.get(kind("", "nodes"), None, text(pod, "/spec/nodeName"));
    node.ok()
        .and_then(|node| {
            node["status"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["type"] == "InternalIP")
                .and_then(|a| a["address"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "10.0.0.1".into())
}

/// The scheduler's and kubelet's part: a pod that has not started is placed on a node (if
/// there are nodes) and starts, `Running` and `Ready`, or, with the annotation
/// `drkit.test/fail: "true"`, `Running` with its containers crash-looping.
fn start_pod(store: &mut Store, pod: &Value) -> bool {
    if pod["status"].get("startTime").is_some() || pod["status"]["phase"] != "Pending" {
        return false;
    }
    let mut changed = false;
    let Some(pod) = schedule(store, pod, &mut changed) else {
        return changed;
    };
    let pod = &pod;
    let fail = pod["metadata"]["annotations"][FAIL_ANNOTATION] == "true";
    let now = now();
    let ready = if fail { "False" } else { "True" };
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let state = if fail {
                json!({"waiting": {"reason": "CrashLoopBackOff", "message": "drkit.test/fail"}})
            } else {
                json!({"running": {"startedAt": now}})
            };
            json!({
                "name": c["name"].clone(),
                "image": c["image"].clone(),
                "imageID": "",
                "ready": !fail,
                "started": !fail,
                "restartCount": if fail { 1 } else { 0 },
                "state": state,
            })
        })
        .collect();
    let mut not_ready = json!({});
    if fail {
        not_ready =
            json!({"reason": "ContainersNotReady", "message": "containers with unready status"});
    }
    let condition = |kind: &str, status: &str, extra: &Value| {
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(extra.clone());
        }
        c
    };
    let uid = uid_of(pod);
    let octet = |i: usize| uid.as_bytes().get(i).map_or(1, |b| u32::from(*b) % 250 + 2);
    let ip = format!("10.244.{}.{}", octet(0), octet(1));
    let status = json!({
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers", "True", &json!({})),
            condition("Initialized", "True", &json!({})),
            condition("Ready", ready, &not_ready),
            condition("ContainersReady", ready, &not_ready),
            condition("PodScheduled", "True", &json!({})),
        ],
        "hostIP": host_ip(store, pod),
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "containerStatuses": containers,
        "qosClass": "BestEffort",
    });
    let mut next = pod.clone();
    next["status"] = status;
    changed | write(store, kind("", "pods"), next, Part::Status)
}
