//! [`ResourceFilter`]: which objects a resource backup takes (and a
//! restore puts back), as Velero's include and exclude filters.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::resources::discovery::ResourceType;

/// Whether cluster-scoped objects (nodes aside: see [`ResourceFilter`])
/// are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterScoped {
    /// As Velero: all of them for a backup of every namespace; for a
    /// backup of some namespaces, only the namespaces themselves and the
    /// definitions (CRDs) of the custom resources taken.
    #[default]
    Auto,
    /// All of them (the kinds filter still applies).
    Include,
    /// None but the namespaces themselves.
    Exclude,
}

/// Which objects a [`ResourceBackup`](crate::ResourceBackup) takes.
///
/// Everything is taken unless narrowed: by namespace (included, excluded),
/// by resource (named as `kubectl` names them: `configmaps`, `cm`,
/// `deployments.apps`, `rooms.livekit.io`), by label selector, by object
/// name within a resource, and cluster-scoped or not ([`ClusterScoped`]).
/// Secrets are taken only when asked ([`ResourceFilter::secrets`]).
///
/// Left out whatever the filter says, because the cluster makes them for
/// itself or they describe a moment, not a wish: events, endpoints and
/// endpoint slices, nodes, leases (held by running processes), the
/// `kube-root-ca.crt` config map of every namespace, service account
/// tokens, and objects whose controller is itself taken (a Deployment's
/// ReplicaSets and their Pods: the restored controller makes them again).
/// Naming one of those kinds in [`ResourceFilter::kinds`] takes it (the root
/// CA config maps and tokens: naming them in [`ResourceFilter::names`]).
/// The CustomResourceDefinitions of the custom resources taken are taken
/// with them, whatever the kinds (unless cluster-scoped objects are
/// excluded).
///
/// ```
/// use dr_k8s::ResourceFilter;
/// // The seed's LiveKit backup: the rooms, and the one config map.
/// let livekit = ResourceFilter::namespaces(["livekit"])
///     .kinds(["rooms.livekit.io", "configmaps"])
///     .names("configmaps", ["livekit-config"]);
/// # let _ = livekit;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceFilter {
    /// Namespaces taken; empty: all.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub include_namespaces: BTreeSet<String>,
    /// Namespaces left out.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub exclude_namespaces: BTreeSet<String>,
    /// Resources taken; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_kinds: Vec<String>,
    /// Resources left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_kinds: Vec<String>,
    /// A label selector (`app=livekit,tier in (sfu,ingress)`), sent to
    /// the server; namespaces themselves are taken whatever their labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// Per resource, the only names taken of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only_names: Vec<(String, BTreeSet<String>)>,
    /// Cluster-scoped objects.
    #[serde(default)]
    pub cluster_scoped: ClusterScoped,
    /// Whether Secrets are taken.
    #[serde(default)]
    pub secrets: bool,
}

/// Why a resource is not taken, or `None` where it is.
pub(crate) type Verdict = Option<String>;

/// The resource name of CustomResourceDefinitions.
pub(crate) const CRDS: &str = "customresourcedefinitions.apiextensions.k8s.io";

/// Resources left out unless named, and why.
const CLUSTER_MADE: &[(&str, &str)] = &[
    ("events", "events are the cluster's record of a moment"),
    (
        "events.events.k8s.io",
        "events are the cluster's record of a moment",
    ),
    ("endpoints", "the cluster makes endpoints from Services"),
    (
        "endpointslices.discovery.k8s.io",
        "the cluster makes endpoint slices from Services",
    ),
    ("nodes", "nodes register themselves"),
    (
        "leases.coordination.k8s.io",
        "leases are held by running processes",
    ),
    ("csinodes.storage.k8s.io", "nodes register themselves"),
    (
        "volumeattachments.storage.k8s.io",
        "the cluster attaches volumes to running pods",
    ),
    (
        "controllerrevisions.apps",
        "controllers record their own revisions",
    ),
];

impl ResourceFilter {
    /// Everything (Secrets aside).
    pub fn everything() -> Self {
        Self::default()
    }

    /// The objects of `namespaces` (and the namespaces themselves).
    pub fn namespaces<I, S>(namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            include_namespaces: namespaces.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Leaves out `namespaces`.
    #[must_use]
    pub fn exclude_namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exclude_namespaces
            .extend(namespaces.into_iter().map(Into::into));
        self
    }

    /// Takes only these resources.
    #[must_use]
    pub fn kinds<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.include_kinds.extend(kinds.into_iter().map(Into::into));
        self
    }

    /// Leaves out these resources.
    #[must_use]
    pub fn exclude_kinds<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exclude_kinds.extend(kinds.into_iter().map(Into::into));
        self
    }

    /// Takes only objects whose labels `selector` selects.
    #[must_use]
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.labels = Some(selector.into());
        self
    }

    /// Takes of `kind` only the objects called `names`.
    #[must_use]
    pub fn names<I, S>(mut self, kind: impl Into<String>, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.only_names
            .push((kind.into(), names.into_iter().map(Into::into).collect()));
        self
    }

    /// Whether cluster-scoped objects are taken.
    #[must_use]
    pub fn cluster_scoped(mut self, cluster_scoped: ClusterScoped) -> Self {
        self.cluster_scoped = cluster_scoped;
        self
    }

    /// Whether Secrets are taken (they are stored encrypted, as everything
    /// in the repository).
    #[must_use]
    pub fn secrets(mut self, secrets: bool) -> Self {
        self.secrets = secrets;
        self
    }

    /// Whether the objects of `namespace` are taken.
    pub fn takes_namespace(&self, namespace: &str) -> bool {
        (self.include_namespaces.is_empty() || self.include_namespaces.contains(namespace))
            && !self.exclude_namespaces.contains(namespace)
    }

    /// Whether any object of `resource` named `name` is taken (the names
    /// filter).
    pub(crate) fn takes_name(&self, resource: &ResourceType, name: &str) -> bool {
        self.only_names
            .iter()
            .filter(|(kind, _)| resource.is_named(kind))
            .all(|(_, names)| names.contains(name))
    }

    /// Why `resource` is not listed at all, or `None` where it is.
    pub(crate) fn resource_verdict(&self, resource: &ResourceType) -> Verdict {
        let named = |specs: &[String]| specs.iter().any(|s| resource.is_named(s));
        let name = resource.name();
        if !(resource.serves("list") && resource.serves("get") && resource.serves("create")) {
            return Some("it cannot be listed, read and created".to_owned());
        }
        if named(&self.exclude_kinds) {
            return Some("its kind is excluded".to_owned());
        }
        let asked = named(&self.include_kinds);
        // Definitions are listed whatever the kinds: those of the custom
        // resources taken go with them (see `only_related_definitions`).
        let definitions = name == CRDS && self.cluster_scoped != ClusterScoped::Exclude;
        if !self.include_kinds.is_empty() && !asked && name != "namespaces" && !definitions {
            return Some("its kind is not among those included".to_owned());
        }
        if !asked {
            if let Some((_, why)) = CLUSTER_MADE.iter().find(|(r, _)| *r == name) {
                return Some(format!("{why} (name it among the kinds to take it)"));
            }
            if name == "secrets" && !self.secrets {
                return Some("Secrets are taken only when asked".to_owned());
            }
        }
        if !resource.namespaced && name != "namespaces" {
            let whole = self.include_namespaces.is_empty();
            let cluster = match self.cluster_scoped {
                ClusterScoped::Include => true,
                ClusterScoped::Exclude => false,
                ClusterScoped::Auto => {
                    whole || name == "customresourcedefinitions.apiextensions.k8s.io"
                }
            };
            if !cluster {
                return Some("cluster-scoped objects are not taken".to_owned());
            }
        }
        None
    }

    /// Whether the CRDs taken are only those of the custom resources
    /// taken: for a backup of some kinds (unless the definitions are named
    /// among them), or of some namespaces under the `Auto` rule.
    pub(crate) fn only_related_definitions(&self, definitions_named: bool) -> bool {
        !definitions_named
            && (!self.include_kinds.is_empty()
                || (self.cluster_scoped == ClusterScoped::Auto
                    && !self.include_namespaces.is_empty()))
    }

    /// Whether the names filter names `name` of `resource` itself: what
    /// the cluster makes for itself (a root CA config map, a token) is
    /// taken only so.
    pub(crate) fn names_explicitly(&self, resource: &ResourceType, name: &str) -> bool {
        self.only_names
            .iter()
            .any(|(kind, names)| resource.is_named(kind) && names.contains(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn resource(group: &str, plural: &str, kind: &str, namespaced: bool) -> ResourceType {
        let list = k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList {
            group_version: format!("{group}/v1"),
            resources: vec![APIResource {
                name: plural.into(),
                kind: kind.into(),
                namespaced,
                verbs: ["create", "get", "list"].map(String::from).to_vec(),
                ..APIResource::default()
            }],
        };
        crate::resources::discovery::resources_of(group, "v1", &list)
            .next()
            .unwrap()
    }

    #[test]
    fn cluster_made_kinds_and_secrets_are_left_out_unless_named() {
        let events = resource("", "events", "Event", true);
        let secrets = resource("", "secrets", "Secret", true);
        let all = ResourceFilter::everything();
        assert!(all.resource_verdict(&events).is_some());
        assert!(all.resource_verdict(&secrets).is_some());
        assert!(
            all.clone()
                .secrets(true)
                .resource_verdict(&secrets)
                .is_none()
        );
        assert!(all.kinds(["events"]).resource_verdict(&events).is_none());
    }

    #[test]
    fn cluster_scoped_objects_follow_the_namespaces_filter() {
        let roles = resource(
            "rbac.authorization.k8s.io",
            "clusterroles",
            "ClusterRole",
            false,
        );
        let crds = resource(
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        );
        let namespaces = resource("", "namespaces", "Namespace", false);
        let some = ResourceFilter::namespaces(["a"]);
        assert!(some.resource_verdict(&roles).is_some());
        assert!(some.resource_verdict(&crds).is_none());
        assert!(some.resource_verdict(&namespaces).is_none());
        assert!(
            ResourceFilter::everything()
                .resource_verdict(&roles)
                .is_none()
        );
        let excluded = ResourceFilter::everything().cluster_scoped(ClusterScoped::Exclude);
        assert!(excluded.resource_verdict(&roles).is_some());
        assert!(excluded.resource_verdict(&namespaces).is_none());
    }

    #[test]
    fn kinds_and_names_narrow() {
        let cms = resource("", "configmaps", "ConfigMap", true);
        let rooms = resource("livekit.io", "rooms", "Room", true);
        let deployments = resource("apps", "deployments", "Deployment", true);
        let f = ResourceFilter::namespaces(["livekit"])
            .kinds(["rooms.livekit.io", "ConfigMap"])
            .names("configmaps", ["livekit-config"]);
        assert!(f.resource_verdict(&cms).is_none());
        assert!(f.resource_verdict(&rooms).is_none());
        assert!(f.resource_verdict(&deployments).is_some());
        assert!(f.takes_name(&cms, "livekit-config"));
        assert!(!f.takes_name(&cms, "other"));
        assert!(f.takes_name(&rooms, "any"));
        assert!(f.takes_namespace("livekit") && !f.takes_namespace("default"));
        let ex = ResourceFilter::everything()
            .exclude_kinds(["deployments"])
            .exclude_namespaces(["kube-system"]);
        assert!(ex.resource_verdict(&deployments).is_some());
        assert!(!ex.takes_namespace("kube-system") && ex.takes_namespace("default"));
    }
}
