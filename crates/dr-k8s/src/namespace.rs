//! Namespaces ([`Cluster::create_namespace`], [`Cluster::delete_namespace`],
//! the runbooks' incident namespace) and the network-partition drill's
//! NetworkPolicy ([`Cluster::isolate`], [`Cluster::remove_isolation`]).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::{Error, Result};

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);
/// The label drkit puts on what it creates for a drill, to find it again.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "drkit");

/// A NetworkPolicy that cuts pods off: no traffic in, none out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Isolation {
    /// The namespace of the pods and the policy.
    pub namespace: String,
    /// The policy's name: `drkit-isolate-` and the selector's values.
    pub policy: String,
    /// The labels of the pods cut off.
    pub selector: BTreeMap<String, String>,
}

impl Cluster {
    /// Creates the namespace `name` with `labels` (and [`MANAGED_BY`]);
    /// whether it was created (`false`: it was there).
    ///
    /// # Errors
    /// [`Error::Api`] (422 for a name Kubernetes refuses), [`Error::Client`].
    pub async fn create_namespace(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool> {
        let mut labels = labels.clone();
        labels.insert(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned());
        let namespace: Namespace = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": labels }
        }))
        .map_err(|_| Error::Incomplete {
            what: format!("namespace {name}"),
            field: "metadata",
        })?;
        match self
            .namespaces()
            .create(&PostParams::default(), &namespace)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.failed(format!("creating namespace {name}"), e)),
        }
    }

    /// Deletes the namespace `name` and waits, up to `wait`, until it is
    /// gone (with every object in it); whether it was there.
    ///
    /// # Errors
    /// [`Error::TimedOut`] where it is still there (its finalizers not
    /// done); [`Error::Api`], [`Error::Client`].
    pub async fn delete_namespace(&self, name: &str, wait: Duration) -> Result<bool> {
        let what = format!("deleting namespace {name}");
        let api = self.namespaces();
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
            Err(e) => return Err(self.failed(&what, e)),
        }
        let deadline = Instant::now() + wait;
        loop {
            let now = api.get_opt(name).await.map_err(|e| self.failed(&what, e))?;
            let Some(namespace) = now else {
                return Ok(true);
            };
            if Instant::now() >= deadline {
                let phase = namespace
                    .status
                    .and_then(|s| s.phase)
                    .unwrap_or_else(|| "?".to_owned());
                return Err(Error::TimedOut {
                    what,
                    cluster: self.name().to_owned(),
                    timeout: wait,
                    waited_for: "the namespace to be gone".to_owned(),
                    saw: format!("it is still there, phase {phase}"),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Cuts off the pods of `namespace` that `selector` selects, as the
    /// network-partition drill does: a NetworkPolicy selecting them with
    /// both policy types and no rule, so that nothing goes in or out (where
    /// the cluster's network plugin enforces policies). Creating it again
    /// replaces it.
    ///
    /// # Errors
    /// [`Error::Api`] (404 for a namespace that does not exist),
    /// [`Error::Client`].
    pub async fn isolate(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Isolation> {
        let isolation = Isolation {
            namespace: namespace.to_owned(),
            policy: policy_name(selector),
            selector: selector.clone(),
        };
        let what = format!(
            "isolating the pods {selector:?} in namespace {namespace} (network policy {})",
            isolation.policy
        );
        let policy: NetworkPolicy = serde_json::from_value(json!({
            "metadata": {
                "name": isolation.policy,
                "namespace": namespace,
                "labels": { MANAGED_BY.0: MANAGED_BY.1 },
            },
            "spec": {
                "podSelector": { "matchLabels": selector },
                "policyTypes": ["Ingress", "Egress"],
            }
        }))
        .map_err(|_| Error::Incomplete {
            what: what.clone(),
            field: "spec",
        })?;
        let api: Api<NetworkPolicy> = Api::namespaced(self.client().clone(), namespace);
        match api.create(&PostParams::default(), &policy).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let old = api
                    .get(&isolation.policy)
                    .await
                    .map_err(|e| self.failed(&what, e))?;
                let mut policy = policy;
                policy.metadata.resource_version = old.metadata.resource_version;
                api.replace(&isolation.policy, &PostParams::default(), &policy)
                    .await
                    .map_err(|e| self.failed(&what, e))?;
            }
            Err(e) => return Err(self.failed(&what, e)),
        }
        Ok(isolation)
    }

    /// Removes an [`Isolation`]: its pods reachable again. Removing one
    /// that is gone is not an error.
    ///
    /// # Errors
    /// [`Error::Api`], [`Error::Client`].
    pub async fn remove_isolation(&self, isolation: &Isolation) -> Result<()> {
        let api: Api<NetworkPolicy> = Api::namespaced(self.client().clone(), &isolation.namespace);
        match api
            .delete(&isolation.policy, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(self.failed(
                format!(
                    "removing network policy {} in namespace {}",
                    isolation.policy, isolation.namespace
                ),
                e,
            )),
        }
    }

    fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.client().clone())
    }
}

/// `drkit-isolate-` and the selector's values, as a name Kubernetes takes
/// (lowercase letters, digits and `-`, at most 63).
fn policy_name(selector: &BTreeMap<String, String>) -> String {
    let values: Vec<String> = selector
        .values()
        .map(|v| {
            v.to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect()
        })
        .collect();
    let mut name = format!("drkit-isolate-{}", values.join("-"));
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_are_names_kubernetes_takes() {
        let selector = BTreeMap::from([
            ("app".to_owned(), "LiveKit".to_owned()),
            ("tier".to_owned(), "sfu.v2".to_owned()),
        ]);
        assert_eq!(policy_name(&selector), "drkit-isolate-livekit-sfu-v2");
        let long = BTreeMap::from([("app".to_owned(), "x".repeat(100))]);
        assert_eq!(policy_name(&long).len(), 63);
    }
}
