//! The built-in resources the server knows, and the discovery documents made from them.

use serde_json::{Value, json};

/// The verbs of an ordinary resource, as discovery lists them.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// A namespace cannot be deleted as a collection.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// The verbs of `*/status` and `*/scale`.
const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// One resource of one group version: what discovery says of it and how paths name it.
#[derive(Debug)]
pub(crate) struct ResourceType {
    /// `""` for the core group.
    pub(crate) group: &'static str,
    pub(crate) version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) plural: &'static str,
    pub(crate) singular: &'static str,
    pub(crate) namespaced: bool,
    pub(crate) short_names: &'static [&'static str],
    /// Whether `{plural}/status` is served.
    pub(crate) status: bool,
    /// Whether `{plural}/scale` is served.
    pub(crate) scale: bool,
}

impl ResourceType {
    /// `v1` for the core group, `apps/v1` otherwise.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn verbs(&self) -> &'static [&'static str] {
        if self.kind == "Namespace" {
            NAMESPACE_VERBS
        } else {
            ALL_VERBS
        }
    }
}

const fn resource(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        status: false,
        scale: false,
    }
}

const fn with_status(mut r: ResourceType) -> ResourceType {
    r.status = true;
    r
}

const fn with_scale(mut r: ResourceType) -> ResourceType {
    r.status = true;
    r.scale = true;
    r
}

/// Every resource served, in the order discovery lists them.
pub(crate) static RESOURCES: &[ResourceType] = &[
    resource("", "ConfigMap", "configmaps", "configmap", true, &["cm"]),
    with_status(resource(
        "",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
    )),
    with_status(resource("", "Node", "nodes", "node", false, &["no"])),
    resource(
        "",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        &["pvc"],
    ),
    with_status(resource("", "Pod", "pods", "pod", true, &["po"])),
    resource("", "Secret", "secrets", "secret", true, &[]),
    resource(
        "",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
    ),
    resource("", "Service", "services", "service", true, &["svc"]),
    with_status(resource(
        "apps",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
    )),
    with_scale(resource(
        "apps",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
    )),
    with_scale(resource(
        "apps",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
    )),
    with_scale(resource(
        "apps",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        &["sts"],
    )),
    resource("coordination.k8s.io", "Lease", "leases", "lease", true, &[]),
    with_status(resource(
        "policy",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        true,
        &["pdb"],
    )),
    resource(
        "networking.k8s.io",
        "NetworkPolicy",
        "networkpolicies",
        "networkpolicy",
        true,
        &["netpol"],
    ),
];

/// The groups other than the core one, in the order `/apis` lists them.
const GROUPS: &[&str] = &["apps", "coordination.k8s.io", "policy", "networking.k8s.io"];

/// The resource a path names, by group, version and plural.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// `GET /version`.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0-drkit",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`: the core group's versions.
pub(crate) fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    })
}

/// `GET /apis`: every named group with its one version.
pub(crate) fn group_list() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|g| {
            let version = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
            json!({"name": g, "versions": [version.clone()], "preferredVersion": version})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`: one group.
pub(crate) fn group(name: &str) -> Option<Value> {
    let name = GROUPS.iter().find(|g| **g == name)?;
    let version = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
    Some(json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": [version.clone()],
        "preferredVersion": version,
    }))
}

/// `GET /api/v1` or `/apis/{group}/{version}`: the resources of a group version, with their
/// subresources as entries of their own (`deployments/scale`).
pub(crate) fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut entries = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        entries.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
            "shortNames": r.short_names,
            "storageVersionHash": "",
        }));
        if r.status {
            entries.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": SUBRESOURCE_VERBS,
            }));
        }
        if r.kind == "Pod" {
            // Served in the core group's list, in policy/v1's terms, as kubectl drain looks
            // for it.
            entries.push(json!({
                "name": "pods/eviction",
                "singularName": "",
                "namespaced": true,
                "group": "policy",
                "version": "v1",
                "kind": "Eviction",
                "verbs": ["create"],
            }));
            entries.push(json!({
                "name": "pods/log",
                "singularName": "",
                "namespaced": true,
                "kind": "Pod",
                "verbs": ["get"],
            }));
        }
        if r.scale {
            entries.push(json!({
                "name": format!("{}/scale", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": SUBRESOURCE_VERBS,
            }));
        }
    }
    if entries.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }))
}
