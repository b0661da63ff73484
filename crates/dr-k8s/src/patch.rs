//! The runbooks' patches: a Service's selector ([`Cluster::set_service_selector`]),
//! a container's environment ([`Cluster::set_env`]) and image
//! ([`Cluster::set_image`], `kubectl set image`), each by strategic merge
//! patch and read back.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{EnvVar, PodTemplateSpec, Service};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::workload::{Workload, WorkloadKind};

/// One change to a container's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvChange {
    /// Sets the variable to a value (added, or replaced).
    Set(String, String),
    /// Removes the variable.
    Remove(String),
}

impl EnvChange {
    /// Sets `name` to `value`.
    pub fn set(name: impl Into<String>, value: impl Into<String>) -> Self {
        EnvChange::Set(name.into(), value.into())
    }

    /// Removes `name`.
    pub fn remove(name: impl Into<String>) -> Self {
        EnvChange::Remove(name.into())
    }

    fn as_patch(&self) -> Value {
        match self {
            EnvChange::Set(name, value) => json!({ "name": name, "value": value }),
            EnvChange::Remove(name) => json!({ "name": name, "$patch": "delete" }),
        }
    }
}

impl Cluster {
    /// Points the Service `service` in `namespace` at the pods `labels`
    /// select: its selector replaced whole (a strategic merge patch with
    /// `$patch: replace`, so keys the old one had and the new one lacks do
    /// not stay), then read back.
    ///
    /// # Errors
    /// [`Error::Api`] (404 for a Service that does not exist),
    /// [`Error::Client`]; [`Error::Unsupported`] where the selector does
    /// not read back as sent (an admission hook changed it).
    pub async fn set_service_selector(
        &self,
        namespace: &str,
        service: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        let what = format!("setting the selector of service {service} in namespace {namespace}");
        let mut selector = serde_json::Map::new();
        selector.insert("$patch".into(), json!("replace"));
        for (key, value) in labels {
            selector.insert(key.clone(), json!(value));
        }
        let patch = Patch::Strategic(json!({ "spec": { "selector": selector } }));
        let patched = Api::<Service>::namespaced(self.client().clone(), namespace)
            .patch(service, &PatchParams::default(), &patch)
            .await
            .map_err(|e| self.failed(&what, e))?;
        let now = patched.spec.and_then(|s| s.selector).unwrap_or_default();
        if now != *labels {
            return Err(Error::Unsupported {
                what,
                reason: format!("its selector reads back as {now:?}, not {labels:?}"),
            });
        }
        Ok(())
    }

    /// Changes the environment of `container` in `workload`'s pod
    /// template (`kubectl set env`): one strategic merge patch, the `env`
    /// list merged by name, removals as `$patch: delete`. The controller
    /// then rolls the pods. Returns the container's environment after.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a container the template does not have
    /// (naming those it has); [`Error::Api`], [`Error::Client`].
    pub async fn set_env(
        &self,
        workload: &Workload,
        container: &str,
        changes: &[EnvChange],
    ) -> Result<Vec<EnvVar>> {
        let what = format!("setting the environment of container {container} of {workload}");
        self.check_container(workload, container, &what).await?;
        let env: Vec<Value> = changes.iter().map(EnvChange::as_patch).collect();
        let template = self
            .patch_template(
                workload,
                container_patch(container, json!({ "env": env })),
                &what,
            )
            .await?;
        Ok(container_of(&template, container)
            .and_then(|c| c.get("env").cloned())
            .and_then(|env| serde_json::from_value(env).ok())
            .unwrap_or_default())
    }

    /// `kubectl set image`: sets `container`'s image in `workload`'s pod
    /// template by strategic merge patch; the controller then rolls the
    /// pods.
    ///
    /// # Errors
    /// As [`Cluster::set_env`].
    pub async fn set_image(&self, workload: &Workload, container: &str, image: &str) -> Result<()> {
        let what = format!("setting the image of container {container} of {workload} to {image}");
        self.check_container(workload, container, &what).await?;
        self.patch_template(
            workload,
            container_patch(container, json!({ "image": image })),
            &what,
        )
        .await
        .map(drop)
    }

    /// Fails unless `workload`'s pod template has `container` (a strategic
    /// merge patch would add one, with nothing but a name).
    async fn check_container(
        &self,
        workload: &Workload,
        container: &str,
        what: &str,
    ) -> Result<()> {
        let template = self.template_of(workload).await?;
        if container_of(&template, container).is_some() {
            return Ok(());
        }
        let names: Vec<String> = template
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        Err(Error::Unsupported {
            what: what.to_owned(),
            reason: format!(
                "its pod template has no container {container:?} (it has: {})",
                names.join(", ")
            ),
        })
    }

    /// `workload`'s pod template, as JSON.
    async fn template_of(&self, workload: &Workload) -> Result<Value> {
        let read = format!("reading {workload}");
        let template = match workload.kind {
            WorkloadKind::Deployment => self
                .apps::<Deployment>(workload)
                .get(&workload.name)
                .await
                .map(|d| Some(d.spec.template)),
            WorkloadKind::StatefulSet => self
                .apps::<StatefulSet>(workload)
                .get(&workload.name)
                .await
                .map(|s| Some(s.spec.template)),
            WorkloadKind::ReplicaSet => self
                .apps::<ReplicaSet>(workload)
                .get(&workload.name)
                .await
                .map(|r| r.spec.template),
        }
        .map_err(|e| self.failed(&read, e))?;
        template_json(template, workload)
    }

    /// Sends `patch` (of `spec.template`) to `workload`; its pod template
    /// after.
    async fn patch_template(&self, workload: &Workload, patch: Value, what: &str) -> Result<Value> {
        let patch = Patch::Strategic(patch);
        let params = PatchParams::default();
        let name = &workload.name;
        let template = match workload.kind {
            WorkloadKind::Deployment => self
                .apps::<Deployment>(workload)
                .patch(name, &params, &patch)
                .await
                .map(|d| Some(d.spec.template)),
            WorkloadKind::StatefulSet => self
                .apps::<StatefulSet>(workload)
                .patch(name, &params, &patch)
                .await
                .map(|s| Some(s.spec.template)),
            WorkloadKind::ReplicaSet => self
                .apps::<ReplicaSet>(workload)
                .patch(name, &params, &patch)
                .await
                .map(|r| r.spec.template),
        }
        .map_err(|e| self.failed(what, e))?;
        template_json(template, workload)
    }
}

/// A strategic merge patch of one container of a pod template.
fn container_patch(container: &str, fields: Value) -> Value {
    let mut container_fields = json!({ "name": container });
    if let (Some(into), Value::Object(fields)) = (container_fields.as_object_mut(), fields) {
        into.extend(fields);
    }
    json!({ "spec": { "template": { "spec": { "containers": [container_fields] } } } })
}

/// The container `name` of `template`.
fn container_of<'t>(template: &'t Value, name: &str) -> Option<&'t Value> {
    template
        .pointer("/spec/containers")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

fn template_json(template: Option<PodTemplateSpec>, workload: &Workload) -> Result<Value> {
    let template = template.ok_or(Error::Incomplete {
        what: workload.to_string(),
        field: "spec.template",
    })?;
    serde_json::to_value(template).map_err(|_| Error::Incomplete {
        what: workload.to_string(),
        field: "spec.template",
    })
}
