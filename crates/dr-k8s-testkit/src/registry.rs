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
    /// The categories it is in (`all`, as `kubectl get all` reads them); listed by aggregated
    /// discovery only, the legacy documents having never carried them here.
    pub(crate) categories: &'static [&'static str],
}

/// A subresource as discovery lists it: `status`, `scale`, `eviction`, `log`.
#[derive(Debug)]
pub(crate) struct SubresourceEntry {
    pub(crate) name: &'static str,
    /// The group and version of its kind where they are not the resource's own
    /// (`autoscaling/v1` for `scale`).
    pub(crate) group_version: Option<(&'static str, &'static str)>,
    pub(crate) kind: &'static str,
    pub(crate) verbs: &'static [&'static str],
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

    pub(crate) fn verbs(&self) -> &'static [&'static str] {
        if self.kind == "Namespace" {
            NAMESPACE_VERBS
        } else {
            ALL_VERBS
        }
    }

    /// The subresources served, in the order discovery lists them.
    pub(crate) fn subresources(&self) -> Vec<SubresourceEntry> {
        let own = |name, verbs| SubresourceEntry {
            name,
            group_version: None,
            kind: self.kind,
            verbs,
        };
        let mut entries = Vec::new();
        if self.status {
            entries.push(own("status", SUBRESOURCE_VERBS));
        }
        if self.kind == "Pod" {
            // In the core group's list, in policy/v1's terms, as kubectl drain looks for it.
            entries.push(SubresourceEntry {
                name: "eviction",
                group_version: Some(("policy", "v1")),
                kind: "Eviction",
                verbs: &["create"],
            });
            entries.push(own("log", &["get"]));
        }
        if self.scale {
            entries.push(SubresourceEntry {
                name: "scale",
                group_version: Some(("autoscaling", "v1")),
                kind: "Scale",
                verbs: SUBRESOURCE_VERBS,
            });
        }
        entries
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
        categories: &[],
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

/// In the category `all`, as Kubernetes has pods, services, the workloads and jobs.
const fn in_all(mut r: ResourceType) -> ResourceType {
    r.categories = &["all"];
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
    in_all(with_status(resource(
        "",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
    ))),
    resource("", "Secret", "secrets", "secret", true, &[]),
    resource(
        "",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
    ),
    in_all(resource(
        "",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
    )),
    ResourceType {
        categories: &["api-extensions"],
        ..with_status(resource(
            crate::crd::GROUP,
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "customresourcedefinition",
            false,
            &["crd", "crds"],
        ))
    },
    in_all(with_status(resource(
        "apps",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        &["ds"],
    ))),
    in_all(with_scale(resource(
        "apps",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
    ))),
    in_all(with_scale(resource(
        "apps",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
    ))),
    in_all(with_scale(resource(
        "apps",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        &["sts"],
    ))),
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
    in_all(with_status(resource(
        "batch",
        "Job",
        "jobs",
        "job",
        true,
        &[],
    ))),
    in_all(with_status(resource(
        "batch",
        "CronJob",
        "cronjobs",
        "cronjob",
        true,
        &["cj"],
    ))),
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

/// The resources of a group version, built-in and custom, in the order discovery lists them.
pub(crate) fn resources_of<'a>(
    group: &'a str,
    version: &'a str,
    custom: &'a [&'static ResourceType],
) -> impl Iterator<Item = &'static ResourceType> + 'a {
    RESOURCES
        .iter()
        .chain(custom.iter().copied())
        .filter(move |r| r.group == group && r.version == version)
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
pub(crate) fn versions(group: &str, custom: &[&'static ResourceType]) -> Vec<&'static str> {
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
pub(crate) fn group_names(custom: &[&'static ResourceType]) -> Vec<&'static str> {
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
    for r in resources_of(group, version, custom) {
        entries.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
            "shortNames": r.short_names,
            "storageVersionHash": "",
        }));
        for sub in r.subresources() {
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if let Some((group, version)) = sub.group_version {
                entry["group"] = group.into();
                entry["version"] = version.into();
            }
            entries.push(entry);
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
