//! [`Cluster::discover`]: every kind of object a cluster serves, custom
//! resources included, as its discovery documents say.

use futures_util::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList};
use kube::core::{ApiResource, GroupVersionKind};

use crate::cluster::Cluster;
use crate::error::Result;

/// One kind of object a cluster serves, in the preferred version of its
/// group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceType {
    /// Group, version, kind and plural, as kube names them.
    pub api: ApiResource,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
    /// The verbs it serves (`get`, `list`, `create`, ...).
    pub verbs: Vec<String>,
    /// Its singular name (`deployment`).
    pub singular: String,
    /// Its short names (`deploy`).
    pub short_names: Vec<String>,
}

impl ResourceType {
    /// Its name as Velero and `kubectl api-resources` write it: the plural,
    /// then `.group` outside the core group (`configmaps`,
    /// `deployments.apps`, `rooms.livekit.io`).
    pub fn name(&self) -> String {
        if self.api.group.is_empty() {
            self.api.plural.clone()
        } else {
            format!("{}.{}", self.api.plural, self.api.group)
        }
    }

    /// Whether `spec` names it: its plural, singular, kind (in any case) or
    /// a short name, alone or followed by `.group` (`deploy`,
    /// `deployments.apps`, `Room.livekit.io`).
    pub fn is_named(&self, spec: &str) -> bool {
        let names = |name: &str| {
            let name = name.to_ascii_lowercase();
            name == self.api.plural
                || name == self.singular
                || name == self.api.kind.to_ascii_lowercase()
                || self.short_names.contains(&name)
        };
        if names(spec) {
            return true;
        }
        spec.split_once('.')
            .is_some_and(|(name, group)| group == self.api.group && names(name))
    }

    /// Whether it serves `verb`.
    pub fn serves(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    fn of(group: &str, version: &str, resource: &APIResource) -> Self {
        let gvk = GroupVersionKind::gvk(group, version, &resource.kind);
        Self {
            api: ApiResource::from_gvk_with_plural(&gvk, &resource.name),
            namespaced: resource.namespaced,
            verbs: resource.verbs.clone(),
            singular: if resource.singular_name.is_empty() {
                resource.kind.to_ascii_lowercase()
            } else {
                resource.singular_name.clone()
            },
            short_names: resource.short_names.clone().unwrap_or_default(),
        }
    }
}

/// What [`Cluster::discover`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Discovered {
    /// Every resource served, subresources (`pods/log`) left out, in the
    /// order of the discovery documents.
    pub resources: Vec<ResourceType>,
    /// Group versions whose discovery failed (an aggregated API whose
    /// server is down answers 503), with why: the rest is still usable.
    pub unavailable: Vec<(String, String)>,
}

impl Discovered {
    /// The resource `spec` names ([`ResourceType::is_named`]).
    pub fn find(&self, spec: &str) -> Option<&ResourceType> {
        self.resources.iter().find(|r| r.is_named(spec))
    }

    /// The resource of `kind` in the group version `api_version` (`v1`,
    /// `apps/v1`).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        self.resources
            .iter()
            .find(|r| r.api.api_version == api_version && r.api.kind == kind)
    }
}

impl Cluster {
    /// Every kind of object the cluster serves: the core group's `v1` and
    /// the preferred version of every other group (custom resources
    /// included), read from the discovery documents, the groups at once. A
    /// group whose document does not come back is in
    /// [`Discovered::unavailable`], not an error, as Velero tolerates an
    /// aggregated API that is down.
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api) or
    /// [`Error::Client`](crate::Error::Client) where the list of groups
    /// itself (`/api`, `/apis`) does not come back.
    pub async fn discover(&self) -> Result<Discovered> {
        let client = self.client();
        let core = client
            .list_core_api_versions()
            .await
            .map_err(|e| self.failed("discovering the core API versions", e))?;
        let groups = client
            .list_api_groups()
            .await
            .map_err(|e| self.failed("discovering the API groups", e))?;
        let mut wanted: Vec<(String, String)> = Vec::new();
        if core.versions.iter().any(|v| v == "v1") {
            wanted.push((String::new(), "v1".to_owned()));
        }
        for group in &groups.groups {
            let version = group
                .preferred_version
                .as_ref()
                .or_else(|| group.versions.first());
            if let Some(version) = version {
                wanted.push((group.name.clone(), version.version.clone()));
            }
        }
        let lists = join_all(wanted.iter().map(|(group, version)| async move {
            if group.is_empty() {
                client.list_core_api_resources(version).await
            } else {
                client
                    .list_api_group_resources(&format!("{group}/{version}"))
                    .await
            }
        }))
        .await;
        let mut discovered = Discovered::default();
        for ((group, version), list) in wanted.iter().zip(lists) {
            match list {
                Ok(list) => discovered
                    .resources
                    .extend(resources_of(group, version, &list)),
                Err(e) => {
                    let gv = if group.is_empty() {
                        version.clone()
                    } else {
                        format!("{group}/{version}")
                    };
                    let error = self.failed(format!("discovering {gv}"), e);
                    discovered.unavailable.push((gv, error.to_string()));
                }
            }
        }
        Ok(discovered)
    }
}

/// The resources of one group version's document, subresources left out.
pub(crate) fn resources_of<'a>(
    group: &'a str,
    version: &'a str,
    list: &'a APIResourceList,
) -> impl Iterator<Item = ResourceType> + 'a {
    list.resources
        .iter()
        .filter(|r| !r.name.contains('/'))
        .map(move |r| ResourceType::of(group, version, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> ResourceType {
        ResourceType::of(
            "apps",
            "v1",
            &APIResource {
                name: "deployments".into(),
                singular_name: "deployment".into(),
                namespaced: true,
                kind: "Deployment".into(),
                verbs: vec!["list".into()],
                short_names: Some(vec!["deploy".into()]),
                ..APIResource::default()
            },
        )
    }

    #[test]
    fn resources_are_named_as_kubectl_names_them() {
        let d = deployments();
        assert_eq!(d.name(), "deployments.apps");
        for spec in [
            "deployments",
            "deployment",
            "Deployment",
            "deploy",
            "deployments.apps",
            "deploy.apps",
        ] {
            assert!(d.is_named(spec), "{spec}");
        }
        for spec in ["deployments.extensions", "pods", "deployments.", "apps"] {
            assert!(!d.is_named(spec), "{spec}");
        }
        assert!(d.serves("list") && !d.serves("create"));
    }
}
