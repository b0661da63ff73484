//! [`Cluster::apply`] and [`Cluster::apply_yaml`]: manifests applied with
//! server-side apply (field manager `drkit`), as `kubectl apply
//! --server-side --force-conflicts` does: the seeds' "apply the manifests
//! in the DR cluster".

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::resources::{Discovered, FIELD_MANAGER};

/// One object [`Cluster::apply`] applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// `resource namespace/name`, or `resource name` for a cluster-scoped
    /// object.
    pub object: String,
    /// Its resourceVersion after.
    pub resource_version: String,
}

impl Cluster {
    /// Applies `objects` in their order, each a whole object with its
    /// `apiVersion`, `kind` and `metadata.name` (a namespaced one without
    /// a namespace goes into [`Cluster::default_namespace`]); a `List` is
    /// its items. A kind the cluster does not serve is looked up again
    /// once, after the CustomResourceDefinitions before it were applied.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for an object without its kind or name,
    /// before anything is applied; [`Error::UnknownResource`] for a kind
    /// the cluster does not serve; [`Error::Api`] (409 where another field
    /// manager's conflict is not forced: it always is here; 422 for an
    /// object the server refuses), [`Error::Client`]. What was applied
    /// before an error stays applied.
    pub async fn apply(&self, objects: &[Value]) -> Result<Vec<Applied>> {
        let mut flat = Vec::with_capacity(objects.len());
        for object in objects {
            flatten(object, &mut flat);
        }
        for object in &flat {
            if type_of(object).is_none() || name_of(object).is_none() {
                return Err(Error::Unsupported {
                    what: "applying manifests".to_owned(),
                    reason: format!(
                        "an object without apiVersion, kind or metadata.name: {}",
                        truncate(&object.to_string())
                    ),
                });
            }
        }
        let mut discovered = self.discover().await?;
        let mut applied = Vec::with_capacity(flat.len());
        for object in flat {
            let (api_version, kind) = type_of(object).unwrap_or_default();
            if discovered.by_kind(api_version, kind).is_none() {
                discovered = self.discover().await?;
            }
            applied.push(self.apply_one(object, &discovered).await?);
        }
        Ok(applied)
    }

    /// [`Cluster::apply`] of the YAML documents of `text` (separated by
    /// `---`, as `kubectl apply -f` reads them; empty ones skipped).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for YAML that does not read, naming the
    /// document; as [`Cluster::apply`].
    pub async fn apply_yaml(&self, text: &str) -> Result<Vec<Applied>> {
        let mut objects = Vec::new();
        for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value: Value =
                serde::Deserialize::deserialize(document).map_err(|e| Error::Unsupported {
                    what: "applying manifests".to_owned(),
                    reason: format!("document {} does not read as YAML: {e}", index + 1),
                })?;
            if !value.is_null() {
                objects.push(value);
            }
        }
        self.apply(&objects).await
    }

    async fn apply_one(&self, object: &Value, discovered: &Discovered) -> Result<Applied> {
        let (api_version, kind) = type_of(object).unwrap_or_default();
        let name = name_of(object).unwrap_or_default();
        let resource =
            discovered
                .by_kind(api_version, kind)
                .ok_or_else(|| Error::UnknownResource {
                    cluster: self.name().to_owned(),
                    resource: format!("{kind} of {api_version}"),
                    served: "see kubectl api-resources".to_owned(),
                })?;
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(self.default_namespace())
            .to_owned();
        let (api, described): (Api<DynamicObject>, String) = if resource.namespaced {
            (
                Api::namespaced_with(self.client().clone(), &namespace, &resource.api),
                format!("{} {namespace}/{name}", resource.name()),
            )
        } else {
            (
                Api::all_with(self.client().clone(), &resource.api),
                format!("{} {name}", resource.name()),
            )
        };
        let mut body = object.clone();
        if resource.namespaced {
            body["metadata"]["namespace"] = Value::String(namespace);
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patched = api
            .patch(name, &params, &Patch::Apply(&body))
            .await
            .map_err(|e| self.failed(format!("applying {described}"), e))?;
        Ok(Applied {
            object: described,
            resource_version: patched.metadata.resource_version.unwrap_or_default(),
        })
    }
}

/// `object`, or the items of a `List`, appended to `into`.
fn flatten<'v>(object: &'v Value, into: &mut Vec<&'v Value>) {
    match object.get("kind").and_then(Value::as_str) {
        Some(kind) if kind.ends_with("List") && object.get("items").is_some() => {
            for item in object["items"].as_array().into_iter().flatten() {
                flatten(item, into);
            }
        }
        _ => into.push(object),
    }
}

fn type_of(object: &Value) -> Option<(&str, &str)> {
    Some((
        object.get("apiVersion")?.as_str()?,
        object.get("kind")?.as_str()?,
    ))
}

fn name_of(object: &Value) -> Option<&str> {
    object.pointer("/metadata/name")?.as_str()
}

fn truncate(text: &str) -> String {
    let mut text = text.to_owned();
    if text.len() > 120 {
        let mut end = 120;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
