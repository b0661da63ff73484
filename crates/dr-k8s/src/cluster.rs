//! [`Cluster`]: a client of one Kubernetes cluster, from a kubeconfig
//! context (as kubectl's `--context`) or from inside a pod.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, Result};

/// One cluster, as one kubeconfig context reaches it: several can be open
/// at once (the plans' DR region is `--context=dr-cluster`).
///
/// kube's own retry of 429, 503 and 504 answers is off (it backs off up to
/// fifteen times, for many minutes, where a drill has a deadline): the
/// operations here retry what they should, boundedly, and a disruption
/// budget's 429 reaches a drain, which waits it out as kubectl does.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    name: String,
    default_namespace: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("default_namespace", &self.default_namespace)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The cluster of `context` in the kubeconfig at `path` (its current
    /// context where `context` is `None`).
    ///
    /// # Errors
    /// [`Error::Kubeconfig`] for a file that does not read, a context
    /// without a cluster or user, credentials that do not load;
    /// [`Error::UnknownContext`] naming the contexts it has.
    pub async fn from_kubeconfig(path: impl AsRef<Path>, context: Option<&str>) -> Result<Self> {
        let path = path.as_ref();
        let bad = |reason: String| Error::Kubeconfig {
            path: path.to_owned(),
            reason,
        };
        let kubeconfig = Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
        let name = match context {
            Some(context) => {
                if !kubeconfig.contexts.iter().any(|c| c.name == context) {
                    let known: Vec<&str> = kubeconfig
                        .contexts
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect();
                    return Err(Error::UnknownContext {
                        path: path.to_owned(),
                        context: context.to_owned(),
                        known: if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        },
                    });
                }
                context.to_owned()
            }
            None => kubeconfig
                .current_context
                .clone()
                .ok_or_else(|| bad("no current-context, and none was named".into()))?,
        };
        let options = KubeConfigOptions {
            context: Some(name.clone()),
            ..KubeConfigOptions::default()
        };
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| bad(e.to_string()))?;
        config.default_retry = false;
        let default_namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            client,
            name,
            default_namespace,
        })
    }

    /// The kubeconfig kubectl would read where none is named: the one
    /// file `$KUBECONFIG` names, else `~/.kube/config` if there is one;
    /// `None` where there is neither (a pod reaches its own cluster with
    /// [`Cluster::in_cluster`]).
    ///
    /// # Errors
    /// [`Error::Kubeconfig`] where `$KUBECONFIG` lists several files,
    /// which kubectl merges and this does not.
    pub fn default_kubeconfig() -> Result<Option<PathBuf>> {
        if let Some(value) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            let path = PathBuf::from(&value);
            if value.to_string_lossy().contains(':') {
                return Err(Error::Kubeconfig {
                    path,
                    reason: "$KUBECONFIG names several files, which drkit does not merge: \
                             name one"
                        .to_owned(),
                });
            }
            return Ok(Some(path));
        }
        Ok(std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".kube").join("config"))
            .filter(|path| path.is_file()))
    }

    /// The cluster this process runs in, through its pod's service account.
    ///
    /// # Errors
    /// [`Error::NotInCluster`] outside a pod.
    pub fn in_cluster() -> Result<Self> {
        let not = |reason: String| Error::NotInCluster { reason };
        let mut config = kube::Config::incluster().map_err(|e| not(e.to_string()))?;
        config.default_retry = false;
        let default_namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(|e| not(e.to_string()))?;
        Ok(Self {
            client,
            name: "in-cluster".to_owned(),
            default_namespace,
        })
    }

    /// A cluster reached through `client`, called `name` in messages.
    pub fn from_client(client: kube::Client, name: impl Into<String>) -> Self {
        let default_namespace = client.default_namespace().to_owned();
        Self {
            client,
            name: name.into(),
            default_namespace,
        }
    }

    /// Its kube client, for what this crate does not do.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Its name in messages: the kubeconfig context, or `in-cluster`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace its context names (`default` where it names none).
    pub fn default_namespace(&self) -> &str {
        &self.default_namespace
    }

    /// `error` of the request `what`, as this crate says it.
    pub(crate) fn failed(&self, what: impl Into<String>, error: kube::Error) -> Error {
        let what = what.into();
        match error {
            kube::Error::Api(status) => Error::Api {
                what,
                cluster: self.name.clone(),
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            source => Error::Client {
                what,
                cluster: self.name.clone(),
                source,
            },
        }
    }
}
