//! [`Cluster::pods`]: `kubectl get pods -l … --field-selector …`, each
//! pod's phase, readiness and restarts, as the runbooks read them.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::cluster::Cluster;
use crate::error::Result;

/// Which pods to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodQuery {
    /// One namespace, or every namespace where `None`.
    pub namespace: Option<String>,
    /// A label selector (`app=livekit,tier!=db`), as `kubectl -l`.
    pub labels: Option<String>,
    /// A field selector (`status.phase=Failed`), as `kubectl --field-selector`.
    pub fields: Option<String>,
}

impl PodQuery {
    /// The pods of `namespace`.
    pub fn in_namespace(namespace: impl Into<String>) -> Self {
        Self {
            namespace: Some(namespace.into()),
            ..Self::default()
        }
    }

    /// Those whose labels match `selector`.
    #[must_use]
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.labels = Some(selector.into());
        self
    }

    /// Those whose fields match `selector`.
    #[must_use]
    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.fields = Some(selector.into());
        self
    }
}

/// One pod, as a runbook reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PodState {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`).
    pub phase: String,
    /// Whether its `Ready` condition is true.
    pub ready: bool,
    /// Its containers' restarts, summed.
    pub restarts: i32,
    /// The node it runs on, once scheduled.
    pub node: Option<String>,
}

/// How many pods one list request asks for.
const PAGE: u32 = 500;

impl Cluster {
    /// The pods `query` selects, page by page, sorted by namespace and name.
    ///
    /// # Errors
    /// [`crate::Error::Api`] (a selector the server does not take: 400;
    /// a user who may not list pods: 403), [`crate::Error::Client`].
    pub async fn pods(&self, query: &PodQuery) -> Result<Vec<PodState>> {
        let api: Api<Pod> = match &query.namespace {
            Some(namespace) => Api::namespaced(self.client().clone(), namespace),
            None => Api::all(self.client().clone()),
        };
        let mut params = ListParams::default().limit(PAGE);
        if let Some(labels) = &query.labels {
            params = params.labels(labels);
        }
        if let Some(fields) = &query.fields {
            params = params.fields(fields);
        }
        let what = format!(
            "listing the pods of {}",
            query
                .namespace
                .as_deref()
                .map_or("every namespace".to_owned(), |n| format!("namespace {n}"))
        );
        let mut pods = Vec::new();
        loop {
            let page = api.list(&params).await.map_err(|e| self.failed(&what, e))?;
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            pods.extend(page.items.iter().map(state_of));
            match next {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(pods)
    }
}

fn state_of(pod: &Pod) -> PodState {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
    let restarts = status
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |containers| {
            containers.iter().map(|c| c.restart_count).sum()
        });
    PodState {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Unknown".to_owned()),
        ready,
        restarts,
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
    }
}
