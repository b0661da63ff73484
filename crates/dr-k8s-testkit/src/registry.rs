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
#[derive(Debug, PartialEq, Eq)]
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
    /// Defined by a CustomResourceDefinition.
    pub(crate) custom: bool,
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
        custom: false,
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
        crate::crd::GROUP,
        "CustomResourceDefinition",
        "customresourcedefinitions",
        "customresourcedefinition",
        false,
        &["crd", "crds"],
    )),
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
    with_status(resource("batch", "Job", "jobs", "job", true, &[])),
    with_status(resource(
        "batch",
        "CronJob",
        "cronjobs",
        "cronjob",
        true,
        &["cj"],
    )),
    resource(
        "rbac.authorization.k8s.io",
        "Role",
        "roles",
        "role",
        true,
        &[],
    ),
    resource(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
        &[],
    ),
    resource(
        "rbac.authorization.k8s.io",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
        &[],
    ),
    resource(
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
        &[],
    ),
];

/// The groups other than the core one, in the order `/apis` lists them.
const GROUPS: &[&str] = &[
    "apps",
    "batch",
    "coordination.k8s.io",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
];

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

/// The versions of a group, preferred first: `v1` for a built-in group, a custom group's in
/// Kubernetes' order.
fn versions(group: &str, custom: &[&'static ResourceType]) -> Vec<&'static str> {
    if GROUPS.contains(&group) {
        return vec!["v1"];
    }
    let mut versions: Vec<&'static str> = custom
        .iter()
        .filter(|r| r.group == group)
        .map(|r| r.version)
        .collect();
    versions.sort_by(|a, b| crate::crd::version_order(a, b));
    versions.dedup();
    versions
}

/// An `APIGroup`'s members: name, versions, preferred version.
fn group_entry(name: &str, custom: &[&'static ResourceType]) -> Option<Value> {
    let versions: Vec<Value> = versions(name, custom)
        .into_iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first()?.clone();
    Some(json!({"name": name, "versions": versions, "preferredVersion": preferred}))
}

/// The named groups: the built-in ones, then those of custom resources by name.
fn group_names(custom: &[&'static ResourceType]) -> Vec<&'static str> {
    let mut extra: Vec<&'static str> = custom
        .iter()
        .map(|r| r.group)
        .filter(|g| !GROUPS.contains(g))
        .collect();
    extra.sort_unstable();
    extra.dedup();
    GROUPS.iter().copied().chain(extra).collect()
}

/// `GET /apis`: every named group with its versions.
pub(crate) fn group_list(custom: &[&'static ResourceType]) -> Value {
    let groups: Vec<Value> = group_names(custom)
        .into_iter()
        .filter_map(|g| group_entry(g, custom))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`: one group.
pub(crate) fn group(name: &str, custom: &[&'static ResourceType]) -> Option<Value> {
    let mut entry = group_entry(name, custom)?;
    entry["kind"] = "APIGroup".into();
    entry["apiVersion"] = "v1".into();
    Some(entry)
}

/// `GET /api/v1` or `/apis/{group}/{version}`: the resources of a group version, with their
/// subresources as entries of their own (`deployments/scale`).
pub(crate) fn resource_list(
    group: &str,
    version: &str,
    custom: &[&'static ResourceType],
) -> Option<Value> {
    let mut entries = Vec::new();
    for r in RESOURCES
        .iter()
        .chain(custom.iter().copied())
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
