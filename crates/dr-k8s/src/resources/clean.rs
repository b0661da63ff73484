//! What a restore takes out of a stored object before it is created again:
//! the fields the server set for the object's life in the old cluster.

use serde_json::{Map, Value};

/// The metadata a restored object keeps; the rest (`uid`,
/// `resourceVersion`, `creationTimestamp`, `generation`, `managedFields`,
/// `ownerReferences` to uids that are gone, ...) the server sets again.
const KEPT_METADATA: [&str; 5] = ["name", "namespace", "labels", "annotations", "finalizers"];
/// Annotations that record a binding in the old cluster.
const BINDING_ANNOTATIONS: [&str; 2] = [
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
];
/// The label the server gives every namespace: its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The labels the Job controller adds, naming the old Job's uid.
const JOB_LABELS: [&str; 2] = ["controller-uid", "batch.kubernetes.io/controller-uid"];

/// `object` of `resource` ([`ResourceType::name`](crate::ResourceType::name))
/// as a restore creates it: metadata cut to its name, namespace, labels,
/// annotations and finalizers, `status`
/// gone, and by kind as Velero does:
/// - Services: `clusterIP` and `clusterIPs` (unless headless: `None`),
///   every port's `nodePort` and `healthCheckNodePort` cleared, for the
///   new cluster to give;
/// - PersistentVolumeClaims: `volumeName` and the binding annotations
///   cleared; PersistentVolumes: `claimRef` cleared;
/// - Namespaces: the label the server gives each its name taken out (a
///   namespace restored under another name gets its own);
/// - Pods: `nodeName` cleared, and the service account token volume the
///   cluster mounted (`kube-api-access-*`) taken out;
/// - Jobs: the selector and labels naming the old Job's uid taken out.
pub fn clean_object(resource: &str, object: &mut Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    map.remove("status");
    if let Some(Value::Object(metadata)) = map.get_mut("metadata") {
        metadata.retain(|k, _| KEPT_METADATA.contains(&k.as_str()));
        if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
            for a in BINDING_ANNOTATIONS {
                annotations.remove(a);
            }
        }
        // The server labels every namespace with its name.
        if resource == "namespaces"
            && let Some(Value::Object(labels)) = metadata.get_mut("labels")
        {
            labels.remove(NAMESPACE_NAME_LABEL);
        }
        drop_empty(metadata, "annotations");
        drop_empty(metadata, "labels");
        drop_empty(metadata, "finalizers");
    }
    let Some(Value::Object(spec)) = map.get_mut("spec") else {
        return;
    };
    match resource {
        "services" => clean_service(spec),
        "persistentvolumeclaims" => {
            spec.remove("volumeName");
        }
        "persistentvolumes" => {
            spec.remove("claimRef");
        }
        "pods" => clean_pod(spec),
        "jobs.batch" => clean_job(spec),
        _ => {}
    }
}

fn clean_service(spec: &mut Map<String, Value>) {
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if !headless {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    spec.remove("healthCheckNodePort");
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.remove("nodePort");
        }
    }
}

fn clean_pod(spec: &mut Map<String, Value>) {
    spec.remove("nodeName");
    let token = |v: &Value| {
        v.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n.starts_with("kube-api-access-"))
    };
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        volumes.retain(|v| !token(v));
    }
    drop_empty(spec, "volumes");
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            for container in containers.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(Value::Array(mounts)) = container.get_mut("volumeMounts") {
                    mounts.retain(|m| !token(m));
                }
                drop_empty(container, "volumeMounts");
            }
        }
    }
}

fn clean_job(spec: &mut Map<String, Value>) {
    spec.remove("selector");
    if let Some(Value::Object(labels)) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("metadata"))
        .and_then(|m| m.get_mut("labels"))
    {
        for label in JOB_LABELS {
            labels.remove(label);
        }
    }
}

/// Removes `key` from `map` where it is an empty object or array.
fn drop_empty(map: &mut Map<String, Value>, key: &str) {
    let empty = match map.get(key) {
        Some(Value::Object(o)) => o.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    if empty {
        map.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_set_fields_go() {
        let mut svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "web", "namespace": "a", "uid": "u", "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [],
                "labels": { "app": "web" }
            },
            "spec": {
                "clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"], "type": "NodePort",
                "ports": [{ "port": 80, "nodePort": 30080 }]
            },
            "status": { "loadBalancer": {} }
        });
        clean_object("services", &mut svc);
        assert_eq!(
            svc,
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": "web", "namespace": "a", "labels": { "app": "web" } },
                "spec": { "type": "NodePort", "ports": [{ "port": 80 }] }
            })
        );
        let mut headless = json!({ "spec": { "clusterIP": "None" } });
        clean_object("services", &mut headless);
        assert_eq!(headless["spec"]["clusterIP"], "None");
    }

    #[test]
    fn bindings_and_tokens_go() {
        let mut pvc = json!({
            "metadata": { "name": "d", "annotations": { "pv.kubernetes.io/bind-completed": "yes" } },
            "spec": { "volumeName": "pv-1", "resources": {} }
        });
        clean_object("persistentvolumeclaims", &mut pvc);
        assert_eq!(
            pvc,
            json!({ "metadata": { "name": "d" }, "spec": { "resources": {} } })
        );
        let mut pod = json!({
            "metadata": { "name": "p" },
            "spec": {
                "nodeName": "n1",
                "volumes": [{ "name": "kube-api-access-x1" }, { "name": "data" }],
                "containers": [{ "name": "c", "volumeMounts": [{ "name": "kube-api-access-x1" }] }]
            }
        });
        clean_object("pods", &mut pod);
        assert_eq!(
            pod["spec"],
            json!({ "volumes": [{ "name": "data" }], "containers": [{ "name": "c" }] })
        );
    }
}
