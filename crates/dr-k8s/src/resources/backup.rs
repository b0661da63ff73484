//! [`ResourceBackup`]: the objects a [`ResourceFilter`] selects, listed
//! through discovery and stored as one snapshot.

use std::collections::{BTreeSet, HashSet};

use async_trait::async_trait;
use dr_core::{
    Backup, BackupReport, BackupRequest, Capabilities, ComponentId, RecoveryPoint, SnapshotCommit,
    SnapshotDetails, StreamLayout, StreamName, Timeline,
};
use futures_util::{StreamExt, stream};
use kube::api::{Api, DynamicObject, ListParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::resources::archive::{
    BackupContents, CONTENTS_FORMAT, CONTENTS_STREAM, LeftOut, OBJECTS_STREAM, StoredObject,
    TakenResource, write_tar,
};
use crate::resources::discovery::{Discovered, ResourceType};
use crate::resources::filter::{CRDS, ResourceFilter};
use crate::retry::retrying;

/// Objects per list request, as kubectl pages.
const PAGE: u32 = 500;
/// Resources listed at once.
const LISTS_AT_ONCE: usize = 4;
/// The config map every namespace gets from the cluster.
const ROOT_CA: &str = "kube-root-ca.crt";
/// The Secret type of a service account's token, which the cluster makes.
const TOKEN_SECRET: &str = "kubernetes.io/service-account-token";

/// What a resource snapshot's manifest records of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ResourceBackupDetails {
    /// The cluster backed up (its kubeconfig context).
    pub cluster: String,
    /// Objects stored.
    pub objects: u64,
    /// Resources that had objects stored.
    pub resources: u64,
    /// Things that could not be read (see
    /// [`BackupContents::unreadable`]); 0 in a complete backup.
    pub unreadable: u64,
    /// Whether Secrets were taken.
    pub secrets: bool,
}

impl SnapshotDetails for ResourceBackupDetails {
    const KEY: &'static str = "dr-k8s.resources";
}

/// A backup of a cluster's objects, as Velero takes one without volumes:
/// every resource discovery lists (custom resources included), narrowed by
/// a [`ResourceFilter`], listed in pages, stored as one snapshot of two
/// streams: `resources.tar` (an object per file, as the server gave it)
/// and `contents.json` ([`BackupContents`]: what was taken, what was left
/// out and why, what could not be read).
///
/// A resource the filter names that the cluster does not serve is an
/// error; one that is only discovered and whose list is refused (a 403
/// for a kind the backup's user may not read) is recorded as unreadable
/// and counted in [`ResourceBackupDetails::unreadable`].
///
/// The objects are held in memory while they are listed and written
/// (about the size of `kubectl get -o json` of them all).
///
/// ```no_run
/// # async fn demo(repo: &dyn dr_core::SnapshotSink) -> dr_core::Result<()> {
/// use dr_core::BackupExt;
/// use dr_k8s::{Cluster, ResourceBackup, ResourceFilter};
///
/// let cluster = Cluster::from_kubeconfig("/etc/drkit/kubeconfig", Some("prod")).await?;
/// let livekit = ResourceFilter::namespaces(["livekit"])
///     .kinds(["rooms.livekit.io", "configmaps"])
///     .names("configmaps", ["livekit-config"]);
/// let backup = ResourceBackup::new(cluster, "kubernetes/livekit".parse()?, livekit);
/// let report = backup.backup_to(repo).await?;
/// println!("{}", report.manifest.id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ResourceBackup {
    cluster: Cluster,
    component: ComponentId,
    filter: ResourceFilter,
}

/// The objects listed, and the record of them.
#[derive(Debug)]
pub(crate) struct Collected {
    pub(crate) objects: Vec<StoredObject>,
    pub(crate) contents: BackupContents,
}

impl ResourceBackup {
    /// A backup of `cluster`'s objects that `filter` selects, as
    /// `component`.
    pub fn new(cluster: Cluster, component: ComponentId, filter: ResourceFilter) -> Self {
        Self {
            cluster,
            component,
            filter,
        }
    }

    /// Its filter.
    pub fn filter(&self) -> &ResourceFilter {
        &self.filter
    }

    /// Lists what the backup takes, without storing it.
    pub(crate) async fn collect(&self) -> Result<Collected> {
        let discovered = self.cluster.discover().await?;
        self.check_named_kinds(&discovered)?;
        let mut left_out = Vec::new();
        let mut unreadable: Vec<LeftOut> = discovered
            .unavailable
            .iter()
            .map(|(gv, why)| LeftOut {
                what: gv.clone(),
                reason: why.clone(),
            })
            .collect();
        let mut listed = Vec::new();
        for resource in &discovered.resources {
            match self.filter.resource_verdict(resource) {
                Some(reason) => left_out.push(LeftOut {
                    what: resource.name(),
                    reason,
                }),
                None => listed.push(resource),
            }
        }
        let lists: Vec<(&ResourceType, Result<Vec<Value>>)> = stream::iter(
            listed
                .into_iter()
                .map(|resource| async move { (resource, self.list(resource).await) })
                .collect::<Vec<_>>(),
        )
        .buffered(LISTS_AT_ONCE)
        .collect()
        .await;
        let named = |r: &ResourceType| self.filter.include_kinds.iter().any(|s| r.is_named(s));
        let mut found: Vec<(&ResourceType, Vec<Value>)> = Vec::new();
        for (resource, list) in lists {
            match list {
                Ok(items) => found.push((resource, items)),
                // A kind asked for by name must be there; one only
                // discovered is recorded as unreadable.
                Err(error) if named(resource) => return Err(error),
                Err(error) => unreadable.push(LeftOut {
                    what: resource.name(),
                    reason: error.to_string(),
                }),
            }
        }
        let uids: HashSet<String> = found
            .iter()
            .flat_map(|(_, items)| items.iter())
            .filter_map(|o| text(o, "/metadata/uid"))
            .map(str::to_owned)
            .collect();
        let mut objects = Vec::new();
        let mut taken = Vec::new();
        for (resource, items) in &found {
            let before = objects.len();
            for item in items {
                let object = stored(resource, item);
                match self.object_verdict(resource, &object.object, &uids) {
                    Some(reason) => left_out.push(LeftOut {
                        what: object.describe(),
                        reason,
                    }),
                    None => objects.push(object),
                }
            }
            taken.push(TakenResource::of(resource, (objects.len() - before) as u64));
        }
        let definitions_named = found.iter().any(|(r, _)| r.name() == CRDS && named(r));
        if self.filter.only_related_definitions(definitions_named) {
            let named: BTreeSet<String> = found
                .iter()
                .filter(|(r, _)| named(r))
                .map(|(r, _)| r.name())
                .collect();
            keep_related_definitions(&named, &mut objects, &mut taken, &mut left_out);
        }
        self.note_missing_namespaces(&objects, &mut left_out);
        Ok(Collected {
            objects,
            contents: BackupContents {
                format: CONTENTS_FORMAT,
                cluster: self.cluster.name().to_owned(),
                filter: self.filter.clone(),
                taken,
                left_out,
                unreadable,
            },
        })
    }

    /// Every kind the filter names must be one the cluster serves.
    fn check_named_kinds(&self, discovered: &Discovered) -> Result<()> {
        let named = self
            .filter
            .include_kinds
            .iter()
            .chain(self.filter.only_names.iter().map(|(kind, _)| kind));
        for spec in named {
            if discovered.find(spec).is_none() {
                let mut served: Vec<String> = discovered
                    .resources
                    .iter()
                    .map(ResourceType::name)
                    .collect();
                served.sort();
                return Err(Error::UnknownResource {
                    cluster: self.cluster.name().to_owned(),
                    resource: spec.clone(),
                    served: served.join(", "),
                });
            }
        }
        Ok(())
    }

    /// Every object of `resource` the filter's namespaces and labels
    /// select, page by page.
    async fn list(&self, resource: &ResourceType) -> Result<Vec<Value>> {
        let client = self.cluster.client().clone();
        let namespaces: Vec<Option<&str>> =
            if resource.namespaced && !self.filter.include_namespaces.is_empty() {
                self.filter
                    .include_namespaces
                    .iter()
                    .map(|n| Some(n.as_str()))
                    .collect()
            } else {
                vec![None]
            };
        let mut items = Vec::new();
        for namespace in namespaces {
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &resource.api),
                None => Api::all_with(client.clone(), &resource.api),
            };
            let mut params = ListParams::default().limit(PAGE);
            if resource.name() != "namespaces"
                && let Some(labels) = &self.filter.labels
            {
                params = params.labels(labels);
            }
            loop {
                let page = retrying(|| api.list(&params)).await.map_err(|e| {
                    self.cluster
                        .failed(format!("listing {}", resource.name()), e)
                })?;
                for item in page.items {
                    items.push(serde_json::to_value(item).map_err(|e| Error::Incomplete {
                        what: format!("an object of {}: {e}", resource.name()),
                        field: "metadata",
                    })?);
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
        Ok(items)
    }

    /// Why `object` of `resource` is left out, or `None` where it is taken.
    fn object_verdict(
        &self,
        resource: &ResourceType,
        object: &Value,
        uids: &HashSet<String>,
    ) -> Option<String> {
        let name = text(object, "/metadata/name").unwrap_or_default();
        let resource_name = resource.name();
        if let Some(namespace) = text(object, "/metadata/namespace") {
            if !self.filter.takes_namespace(namespace) {
                return Some("its namespace is not taken".to_owned());
            }
        } else if resource_name == "namespaces" && !self.filter.takes_namespace(name) {
            return Some("the namespace is not taken".to_owned());
        }
        if !self.filter.takes_name(resource, name) {
            return Some("its name is not among those taken".to_owned());
        }
        if !self.filter.names_explicitly(resource, name) {
            if resource_name == "configmaps" && name == ROOT_CA {
                return Some("the cluster gives every namespace its root CA".to_owned());
            }
            if resource_name == "secrets" && text(object, "/type") == Some(TOKEN_SECRET) {
                return Some("the cluster makes service account tokens".to_owned());
            }
        }
        let controller = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))?;
        let uid = text(controller, "/uid")?;
        uids.contains(uid).then(|| {
            format!(
                "its controller {} {} is taken and makes it again",
                text(controller, "/kind").unwrap_or("?"),
                text(controller, "/name").unwrap_or("?"),
            )
        })
    }

    /// Records the namespaces asked for that the cluster does not have.
    fn note_missing_namespaces(&self, objects: &[StoredObject], left_out: &mut Vec<LeftOut>) {
        let present: BTreeSet<&str> = objects
            .iter()
            .filter(|o| o.resource == "namespaces")
            .map(|o| o.name.as_str())
            .collect();
        for ns in &self.filter.include_namespaces {
            if !present.contains(ns.as_str()) {
                left_out.push(LeftOut {
                    what: format!("namespace {ns}"),
                    reason: "the cluster has no such namespace".to_owned(),
                });
            }
        }
    }
}

/// For a backup of some namespaces: keeps only the CRDs of the custom
/// resources that have objects stored, or were `named`.
fn keep_related_definitions(
    named: &BTreeSet<String>,
    objects: &mut Vec<StoredObject>,
    taken: &mut [TakenResource],
    left_out: &mut Vec<LeftOut>,
) {
    let wanted: BTreeSet<&str> = taken
        .iter()
        .filter(|t| t.objects > 0 || named.contains(&t.resource))
        .map(|t| t.resource.as_str())
        .collect();
    let mut dropped = 0;
    objects.retain(|o| {
        if o.resource != CRDS || wanted.contains(o.name.as_str()) {
            return true;
        }
        left_out.push(LeftOut {
            what: o.describe(),
            reason: "none of its custom resources is taken".to_owned(),
        });
        dropped += 1;
        false
    });
    if let Some(t) = taken.iter_mut().find(|t| t.resource == CRDS) {
        t.objects -= dropped;
    }
}

/// `item` of `resource` as stored: its `apiVersion` and `kind` set (list
/// items come without them).
fn stored(resource: &ResourceType, item: &Value) -> StoredObject {
    let mut object = item.clone();
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), resource.api.api_version.clone().into());
        map.insert("kind".into(), resource.api.kind.clone().into());
    }
    StoredObject {
        resource: resource.name(),
        namespace: text(&object, "/metadata/namespace").map(str::to_owned),
        name: text(&object, "/metadata/name")
            .unwrap_or_default()
            .to_owned(),
        object,
    }
}

/// The string at `pointer` in `value`.
pub(crate) fn text<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value.pointer(pointer).and_then(Value::as_str)
}

#[async_trait]
impl Backup for ResourceBackup {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    async fn backup(&self, request: BackupRequest<'_>) -> dr_core::Result<BackupReport> {
        let mut timeline = Timeline::start_now();
        let started_at = timeline.started_at();
        let Collected { objects, contents } = timeline
            .step_named(
                async { Ok::<_, dr_core::Error>(self.collect().await?) },
                |c| {
                    format!(
                        "list {} objects of {} resources",
                        c.objects.len(),
                        c.contents.taken.len()
                    )
                },
            )
            .await?;
        let tar = write_tar(&objects, started_at.as_second().max(0) as u64)
            .map_err(|e| dr_core::Error::io("writing the objects as tar", e))?;
        let contents_json = serde_json::to_vec_pretty(&contents)
            .map_err(|e| dr_core::Error::invalid("the backup's contents", e.to_string()))?;
        let mut writer = request.sink.begin(&self.component, started_at).await?;
        let stored = timeline
            .step("store the objects", async {
                writer
                    .add_stream_with(
                        &OBJECTS_STREAM.parse::<StreamName>()?,
                        &mut tar.as_slice(),
                        StreamLayout::Tar,
                    )
                    .await?;
                writer
                    .add_stream(
                        &CONTENTS_STREAM.parse::<StreamName>()?,
                        &mut contents_json.as_slice(),
                    )
                    .await
            })
            .await;
        if let Err(error) = stored {
            writer.abort().await.ok();
            return Err(error);
        }
        let details = ResourceBackupDetails {
            cluster: contents.cluster.clone(),
            objects: contents.objects(),
            resources: contents.taken.iter().filter(|t| t.objects > 0).count() as u64,
            unreadable: contents.unreadable.len() as u64,
            secrets: self.filter.secrets,
        };
        let mut commit = SnapshotCommit::new(RecoveryPoint::new(started_at));
        for (key, value) in &request.labels {
            commit = commit.label(key, value);
        }
        let commit = commit.details(&details)?;
        let manifest = timeline.step("commit", writer.commit(commit)).await?;
        Ok(BackupReport { manifest, timeline })
    }
}
