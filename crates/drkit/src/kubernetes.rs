//! The settings of `kubernetes` components: the `[component.kubernetes]`
//! table — which cluster (a kubeconfig and context, or the cluster drkit
//! runs in) and which of its objects a resource backup takes, as a
//! `dr_k8s::ResourceFilter`; and `[agent.lease]`, the Kubernetes Lease the
//! agent runs its jobs under.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dr_k8s::{ClusterScoped, ResourceFilter};
use serde::Deserialize;
use toml::Spanned;

use crate::config::{Interval, Parsed, Source};
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

/// `[agent.lease]`: the coordination.k8s.io Lease an agent must hold to
/// run its jobs, so that of several agents on one config only one does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    namespace: String,
    name: String,
    duration: Duration,
}

/// How long a holder keeps the Lease without renewing it, unless the
/// table says: client-go's leader election default.
const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);

impl LeaseSettings {
    /// The kubeconfig file; `None`: the cluster the agent runs in.
    pub fn kubeconfig(&self) -> Option<&Path> {
        self.kubeconfig.as_deref()
    }

    /// The kubeconfig's context; `None`: its current context.
    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }

    /// The Lease's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long the holder keeps it without renewing (whole seconds, at
    /// least 3); the agent renews it every third of that. Default 15s.
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

// ---- Parsing -------------------------------------------------------------

/// A kubeconfig must be absolute, and a context needs a kubeconfig: the
/// field and the message where they are not.
fn check_cluster(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> std::result::Result<(), (&'static str, String)> {
    if let Some(path) = kubeconfig
        && !path.is_absolute()
    {
        // Relative to what? The agent, CronJobs and operators run drkit
        // from different directories.
        return Err((
            "kubeconfig",
            format!(
                "{:?} is relative; expected an absolute path, or no kubeconfig for the \
                 cluster drkit runs in",
                path.display().to_string()
            ),
        ));
    }
    match context {
        Some(_) if kubeconfig.is_none() => Err((
            "context",
            "a context of which kubeconfig? Without `kubeconfig` drkit reaches the cluster it \
             runs in, which has no contexts; expected `kubeconfig` too"
                .to_owned(),
        )),
        Some("") => Err((
            "context",
            "an empty context; expected a context of the kubeconfig, or none for its current \
             context"
                .to_owned(),
        )),
        _ => Ok(()),
    }
}

/// `[agent.lease]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLease {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    namespace: String,
    name: String,
    duration: Option<Parsed<Interval>>,
}

impl LeaseSettings {
    /// Checks a parsed `[agent.lease]`; `field` is its path.
    pub(crate) fn check(raw: Spanned<RawLease>, source: &Source<'_>, field: &str) -> Result<Self> {
        let span = raw.span();
        let raw = raw.into_inner();
        let error = |sub: &str, message: &str| {
            source.error(Some(span.clone()), &format!("{field}.{sub}"), message)
        };
        check_cluster(raw.kubeconfig.as_deref(), raw.context.as_deref())
            .map_err(|(sub, m)| error(sub, &m))?;
        check_namespace(&raw.namespace).map_err(|m| error("namespace", &m))?;
        let name_fits = !raw.name.is_empty()
            && raw.name.len() <= 253
            && raw
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && raw.name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && raw.name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !name_fits {
            return Err(error(
                "name",
                &format!(
                    "{:?} is not a Lease name; expected lowercase letters, digits, '-' and '.', \
                     such as \"drkit-agent\"",
                    raw.name
                ),
            ));
        }
        let duration = raw.duration.map_or(DEFAULT_LEASE_DURATION, |d| d.0.get());
        if duration < Duration::from_secs(3) || duration.subsec_nanos() != 0 {
            return Err(error(
                "duration",
                "a Lease lasts whole seconds, and the agent renews it every third of them; \
                 expected at least \"3s\", such as \"15s\"",
            ));
        }
        Ok(Self {
            kubeconfig: raw.kubeconfig,
            context: raw.context,
            namespace: raw.namespace,
            name: raw.name,
            duration,
        })
    }
}

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

/// Checks every name of a list taken and a list left out, and that no name
/// is in both: the field and the message where one is wrong.
fn check_lists<'f>(
    (taken_field, taken): (&'f str, &[String]),
    (excluded_field, excluded): (&'f str, &[String]),
    check: fn(&str) -> std::result::Result<(), String>,
) -> std::result::Result<(), (&'f str, String)> {
    for (field, names) in [(taken_field, taken), (excluded_field, excluded)] {
        for name in names {
            check(name).map_err(|m| (field, m))?;
        }
    }
    match taken.iter().find(|n| excluded.contains(n)) {
        Some(name) => Err((
            excluded_field,
            format!("{name:?} is both taken ({taken_field}) and excluded; expected one"),
        )),
        None => Ok(()),
    }
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
        check_cluster(raw.kubeconfig.as_deref(), raw.context.as_deref())
            .map_err(|(sub, m)| error(sub, &m))?;
        check_lists(
            ("namespaces", &raw.namespaces),
            ("exclude_namespaces", &raw.exclude_namespaces),
            check_namespace,
        )
        .map_err(|(sub, m)| error(sub, &m))?;
        check_lists(
            ("kinds", &raw.kinds),
            ("exclude_kinds", &raw.exclude_kinds),
            check_kind,
        )
        .map_err(|(sub, m)| error(sub, &m))?;
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
