//! The settings of `kubernetes` components: the `[component.kubernetes]`
//! table — which cluster (a kubeconfig and context, or the cluster drkit
//! runs in) and which of its objects a resource backup takes, as a
//! `dr_k8s::ResourceFilter`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dr_k8s::{ClusterScoped, ResourceFilter};
use serde::Deserialize;
use toml::Spanned;

use crate::config::Source;
use crate::error::Result;

/// Which cluster a `kubernetes` component backs up, and which objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSettings {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    filter: ResourceFilter,
}

impl KubernetesSettings {
    /// The kubeconfig file; `None`: the cluster drkit runs in, through its
    /// pod's service account.
    pub fn kubeconfig(&self) -> Option<&Path> {
        self.kubeconfig.as_deref()
    }

    /// The kubeconfig's context; `None`: its current context.
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }

    /// Which objects a backup takes.
    pub fn filter(&self) -> &ResourceFilter {
        &self.filter
    }
}

// ---- Parsing -------------------------------------------------------------

/// `[component.kubernetes]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKubernetes {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    exclude_namespaces: Vec<String>,
    #[serde(default)]
    kinds: Vec<String>,
    #[serde(default)]
    exclude_kinds: Vec<String>,
    labels: Option<String>,
    #[serde(default)]
    names: BTreeMap<String, Vec<String>>,
    cluster_scoped: Option<String>,
    #[serde(default)]
    secrets: bool,
}

/// A namespace name as Kubernetes takes it: a DNS-1123 label.
fn check_namespace(name: &str) -> std::result::Result<(), String> {
    let fits = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if fits {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a namespace name; expected lowercase letters, digits and '-', \
             at most 63, such as \"livekit\""
        ))
    }
}

/// A resource as kubectl names it: one word, such as `configmaps`, `cm`,
/// `deployments.apps` or `rooms.livekit.io`.
fn check_kind(kind: &str) -> std::result::Result<(), String> {
    if kind.is_empty() || kind.contains(|c: char| c.is_whitespace() || c == '/' || c == ',') {
        return Err(format!(
            "{kind:?} is not a resource; expected one as kubectl names it, such as \
             \"configmaps\", \"deployments.apps\" or \"rooms.livekit.io\""
        ));
    }
    Ok(())
}

/// The first name in both lists.
fn overlap<'a>(included: &'a [String], excluded: &[String]) -> Option<&'a String> {
    included.iter().find(|n| excluded.contains(n))
}

impl KubernetesSettings {
    /// Checks a parsed `[component.kubernetes]`; `field` is its path.
    pub(crate) fn check(
        raw: Spanned<RawKubernetes>,
        source: &Source<'_>,
        field: &str,
    ) -> Result<Self> {
        let span = raw.span();
        let raw = raw.into_inner();
        let error = |sub: &str, message: &str| {
            source.error(Some(span.clone()), &format!("{field}.{sub}"), message)
        };
        if let Some(path) = &raw.kubeconfig
            && !path.is_absolute()
        {
            // Relative to what? The agent, CronJobs and operators run
            // drkit from different directories.
            return Err(error(
                "kubeconfig",
                &format!(
                    "{:?} is relative; expected an absolute path, or no kubeconfig for the \
                     cluster drkit runs in",
                    path.display().to_string()
                ),
            ));
        }
        match &raw.context {
            Some(_) if raw.kubeconfig.is_none() => {
                return Err(error(
                    "context",
                    "a context of which kubeconfig? Without `kubeconfig` drkit reaches the \
                     cluster it runs in, which has no contexts; expected `kubeconfig` too",
                ));
            }
            Some(context) if context.is_empty() => {
                return Err(error(
                    "context",
                    "an empty context; expected a context of the kubeconfig, or none for its \
                     current context",
                ));
            }
            _ => {}
        }
        for (sub, names) in [
            ("namespaces", &raw.namespaces),
            ("exclude_namespaces", &raw.exclude_namespaces),
        ] {
            for name in names {
                check_namespace(name).map_err(|m| error(sub, &m))?;
            }
        }
        if let Some(name) = overlap(&raw.namespaces, &raw.exclude_namespaces) {
            return Err(error(
                "exclude_namespaces",
                &format!("{name:?} is both taken (namespaces) and excluded; expected one"),
            ));
        }
        for (sub, kinds) in [("kinds", &raw.kinds), ("exclude_kinds", &raw.exclude_kinds)] {
            for kind in kinds {
                check_kind(kind).map_err(|m| error(sub, &m))?;
            }
        }
        if let Some(kind) = overlap(&raw.kinds, &raw.exclude_kinds) {
            return Err(error(
                "exclude_kinds",
                &format!("{kind:?} is both taken (kinds) and excluded; expected one"),
            ));
        }
        if raw.labels.as_deref().is_some_and(|l| l.trim().is_empty()) {
            return Err(error(
                "labels",
                "an empty selector; expected one such as \"app=livekit\", or no `labels`",
            ));
        }
        for (kind, names) in &raw.names {
            check_kind(kind).map_err(|m| error("names", &m))?;
            if names.is_empty() || names.iter().any(String::is_empty) {
                return Err(error(
                    &format!("names.{kind}"),
                    "expected the names of the objects taken of it, such as [\"livekit-config\"]",
                ));
            }
        }
        let cluster_scoped = match raw.cluster_scoped.as_deref() {
            None | Some("auto") => ClusterScoped::Auto,
            Some("include") => ClusterScoped::Include,
            Some("exclude") => ClusterScoped::Exclude,
            Some(other) => {
                return Err(error(
                    "cluster_scoped",
                    &format!("{other:?}; expected \"auto\", \"include\" or \"exclude\""),
                ));
            }
        };
        let mut filter = ResourceFilter::namespaces(raw.namespaces)
            .exclude_namespaces(raw.exclude_namespaces)
            .kinds(raw.kinds)
            .exclude_kinds(raw.exclude_kinds)
            .cluster_scoped(cluster_scoped)
            .secrets(raw.secrets);
        if let Some(labels) = raw.labels {
            filter = filter.labels(labels);
        }
        for (kind, names) in raw.names {
            filter = filter.names(kind, names);
        }
        Ok(Self {
            kubeconfig: raw.kubeconfig,
            context: raw.context,
            filter,
        })
    }
}
