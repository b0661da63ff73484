//! [`ResourceRestore`]: a resource backup put back, in Velero's order,
//! with an outcome for every object.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use dr_core::{
    Capabilities, ComponentId, ErrorKind, Manifest, Objectives, Operation, RecoveryReport,
    RecoveryTarget, Restore, RestoreRequest, SnapshotId, SnapshotSource, SnapshotSourceExt,
    StreamName, Timeline,
};
use futures_util::{StreamExt, stream};
use jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::resources::archive::{
    BackupContents, CONTENTS_FORMAT, CONTENTS_STREAM, OBJECTS_STREAM, StoredObject, read_tar,
};
use crate::resources::backup::{ResourceBackupDetails, text};
use crate::resources::clean::clean_object;
use crate::resources::discovery::{Discovered, ResourceType};
use crate::resources::filter::CRDS;
use crate::retry::retrying;

/// The order resources are restored in: Velero's priority list, the rest
/// after them by name. Custom resources come after their definitions are
/// established.
const PRIORITY: [&str; 12] = [
    "namespaces",
    CRDS,
    "storageclasses.storage.k8s.io",
    "persistentvolumes",
    "persistentvolumeclaims",
    "serviceaccounts",
    "secrets",
    "configmaps",
    "limitranges",
    "pods",
    "replicasets.apps",
    "services",
];
/// Objects restored at once within one step of [`PRIORITY`].
const WRITES_AT_ONCE: usize = 16;
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);
/// The field manager of server-side apply.
pub const FIELD_MANAGER: &str = "drkit";

/// What a restore does with an object that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExistingPolicy {
    /// Leaves it as it is (Velero's default).
    #[default]
    Skip,
    /// Applies the stored object over it with server-side apply (field
    /// manager [`FIELD_MANAGER`], conflicts forced).
    Update,
    /// Deletes it, waits until it is gone, and creates the stored one.
    /// Namespaces are never recreated (that would delete their objects):
    /// they are skipped.
    Recreate,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum Outcome {
    /// It did not exist and was created.
    Created,
    /// It existed and the stored one was applied over it.
    Updated,
    /// It existed, was deleted, and the stored one created.
    Recreated,
    /// Left alone, and why.
    Skipped(String),
    /// In a dry run, what the server could not check, and why (an object
    /// whose namespace the restore would create first).
    Unchecked(String),
    /// It could not be restored, and why.
    Failed(String),
}

/// One object's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectOutcome {
    /// `resource namespace/name` (the namespace it was restored into) or
    /// `resource name`.
    pub object: String,
    /// What happened.
    pub outcome: Outcome,
}

impl Outcome {
    /// Every outcome's name, in the order a summary gives them.
    pub const NAMES: [&'static str; 6] = [
        "created",
        "updated",
        "recreated",
        "skipped",
        "unchecked",
        "failed",
    ];

    /// Its name, one of [`Outcome::NAMES`].
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Recreated => "recreated",
            Outcome::Skipped(_) => "skipped",
            Outcome::Unchecked(_) => "unchecked",
            Outcome::Failed(_) => "failed",
        }
    }

    /// Why, for the outcomes that say.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Created | Outcome::Updated | Outcome::Recreated => None,
            Outcome::Skipped(why) | Outcome::Unchecked(why) | Outcome::Failed(why) => Some(why),
        }
    }
}

impl fmt::Display for ObjectOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.outcome.name())?;
        match self.outcome.reason() {
            Some(why) => write!(f, ": {why}"),
            None => Ok(()),
        }
    }
}

/// What [`ResourceRestore::restore_objects`] did, object by object.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceRestoreReport {
    /// The snapshot restored.
    pub snapshot: SnapshotId,
    /// What it covers: everything up to this instant.
    pub recovered_to: Timestamp,
    /// Whether it was a dry run: the server checked every write and kept
    /// none.
    pub dry_run: bool,
    /// Every object's outcome, in the order they were restored.
    pub objects: Vec<ObjectOutcome>,
    /// The steps, timed.
    pub timeline: Timeline,
}

impl ResourceRestoreReport {
    /// The outcomes that are failures.
    pub fn failures(&self) -> impl Iterator<Item = &ObjectOutcome> {
        self.objects
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Failed(_)))
    }

    /// The restore as dr-core reports it: `component`'s restore timed by
    /// this report's timeline against `objectives`, its data loss from the
    /// snapshot's point ([`ResourceRestoreReport::recovered_to`]) to the
    /// incident, or to the restore's start where none is given.
    pub fn recovery_report(
        &self,
        component: &ComponentId,
        objectives: Objectives,
        incident_at: Option<Timestamp>,
    ) -> RecoveryReport {
        let mut report = RecoveryReport::new(
            component.clone(),
            Operation::Restore,
            objectives,
            self.timeline.clone(),
        );
        let wanted = incident_at.unwrap_or(report.timeline.started_at());
        if let Some(at) = incident_at {
            report = report.with_incident_at(at);
        }
        report.with_data_loss_between(self.recovered_to, wanted)
    }

    /// How many objects had an outcome like `outcome` (reasons ignored).
    pub fn count(&self, outcome: &Outcome) -> usize {
        self.objects
            .iter()
            .filter(|o| std::mem::discriminant(&o.outcome) == std::mem::discriminant(outcome))
            .count()
    }
}

/// A restore of a [`ResourceBackup`](crate::ResourceBackup) into a
/// cluster (the one backed up, or another), as Velero restores:
///
/// - in dependency order: namespaces; CustomResourceDefinitions, waited
///   until the cluster says each is `Established` (and discovery read
///   again); then storage classes, volumes and claims, service accounts,
///   Secrets, ConfigMaps, limit ranges, pods, replica sets, services; then
///   the rest by name, custom resources among them;
/// - each object cleaned of what the old cluster set
///   ([`clean_object`]), into the namespace a
///   [`ResourceRestore::map_namespace`] names;
/// - a namespace that objects go into and that neither the backup nor the
///   cluster has is created first;
/// - an object that exists handled by the [`ExistingPolicy`];
/// - writes the server answers 429 or 5xx to are tried again (three
///   times, backing off); other refusals are that object's failure, and
///   the rest go on;
/// - a dry run sends every create and apply with `dryRun=All`, so the
///   server checks them and keeps none.
///
/// [`Restore::restore`] fails where any object failed, naming the first
/// few; [`ResourceRestore::restore_objects`] returns every outcome.
#[derive(Debug, Clone)]
pub struct ResourceRestore {
    cluster: Cluster,
    component: ComponentId,
    namespaces: BTreeMap<String, String>,
    only_namespaces: BTreeSet<String>,
    only_kinds: Vec<String>,
    existing: ExistingPolicy,
    dry_run: bool,
    wait: Duration,
}

impl ResourceRestore {
    /// A restore of `component`'s snapshots into `cluster`: every object,
    /// into the namespace it came from, existing ones skipped, waiting up
    /// to a minute for a CRD to be established or an object to be deleted.
    pub fn new(cluster: Cluster, component: ComponentId) -> Self {
        Self {
            cluster,
            component,
            namespaces: BTreeMap::new(),
            only_namespaces: BTreeSet::new(),
            only_kinds: Vec::new(),
            existing: ExistingPolicy::Skip,
            dry_run: false,
            wait: Duration::from_secs(60),
        }
    }

    /// Restores the objects of namespace `from` (and the namespace itself)
    /// into `to`.
    #[must_use]
    pub fn map_namespace(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.namespaces.insert(from.into(), to.into());
        self
    }

    /// Restores only the objects of these namespaces (as they were
    /// backed up), and cluster-scoped ones.
    #[must_use]
    pub fn only_namespaces<I, S>(mut self, namespaces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.only_namespaces
            .extend(namespaces.into_iter().map(Into::into));
        self
    }

    /// Restores only these resources (named as `kubectl` names them), and
    /// the namespaces they go into.
    #[must_use]
    pub fn only_kinds<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.only_kinds.extend(kinds.into_iter().map(Into::into));
        self
    }

    /// What to do with objects that exist.
    #[must_use]
    pub fn existing(mut self, policy: ExistingPolicy) -> Self {
        self.existing = policy;
        self
    }

    /// Whether the server only checks the writes.
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// How long to wait for a CRD to be established, or an object being
    /// recreated to be gone.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Restores the snapshot `target` names from `source`, and says what
    /// became of every object.
    ///
    /// # Errors
    /// No snapshot for `target`; a snapshot that is not a resource backup,
    /// or whose streams are damaged ([`dr_core::ErrorKind::Corrupt`]);
    /// the cluster's discovery failing. Objects that fail are outcomes,
    /// not errors.
    pub async fn restore_objects(
        &self,
        source: &dyn SnapshotSource,
        target: &RecoveryTarget,
    ) -> dr_core::Result<ResourceRestoreReport> {
        let mut timeline = Timeline::start_now();
        let manifest = choose(source, &self.component, target).await?;
        let (_, objects) = timeline
            .step("read the backup", read_backup(source, &manifest))
            .await?;
        let mut discovered = timeline
            .step("discover the cluster's resources", async {
                Ok::<_, dr_core::Error>(self.cluster.discover().await?)
            })
            .await?;
        let objects = self.prepare(objects, &discovered)?;
        let mut outcomes = Vec::new();
        let absent = self.absent_namespaces(&objects).await?;
        let stored: BTreeSet<&str> = objects
            .iter()
            .filter(|o| o.resource == "namespaces")
            .map(|o| o.name.as_str())
            .collect();
        let needed: Vec<String> = absent
            .iter()
            .filter(|ns| !stored.contains(ns.as_str()))
            .cloned()
            .collect();
        for namespace in needed {
            let object = json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace }
            });
            let made = StoredObject {
                resource: "namespaces".to_owned(),
                namespace: None,
                name: namespace.clone(),
                object,
            };
            outcomes.push(self.restore_one(&made, &discovered, &absent).await);
        }
        let mut groups: BTreeMap<(usize, String), Vec<StoredObject>> = BTreeMap::new();
        for object in objects {
            let rank = rank(&object.resource);
            let key = if rank < PRIORITY.len() {
                String::new()
            } else {
                object.resource.clone()
            };
            groups.entry((rank, key)).or_default().push(object);
        }
        for ((rank, _), group) in groups {
            let resource = group[0].resource.clone();
            let restored: Vec<ObjectOutcome> = timeline
                .step_named(
                    async {
                        Ok::<_, dr_core::Error>(
                            stream::iter(
                                group
                                    .iter()
                                    .map(|o| self.restore_one(o, &discovered, &absent))
                                    .collect::<Vec<_>>(),
                            )
                            .buffered(WRITES_AT_ONCE)
                            .collect()
                            .await,
                        )
                    },
                    |_| format!("restore {} {resource}", group.len()),
                )
                .await?;
            outcomes.extend(restored);
            if PRIORITY.get(rank) == Some(&CRDS) && !self.dry_run {
                let established = timeline
                    .step("wait for the definitions to be established", async {
                        Ok::<_, dr_core::Error>(self.wait_established(&group).await)
                    })
                    .await?;
                outcomes.extend(established);
                discovered = self.cluster.discover().await?;
            }
        }
        Ok(ResourceRestoreReport {
            snapshot: manifest.id,
            recovered_to: manifest.recovery_point.at,
            dry_run: self.dry_run,
            objects: outcomes,
            timeline,
        })
    }

    /// The stored objects this restore takes, cleaned and mapped into
    /// their namespaces.
    fn prepare(
        &self,
        objects: Vec<StoredObject>,
        discovered: &Discovered,
    ) -> Result<Vec<StoredObject>> {
        for kind in &self.only_kinds {
            if discovered.find(kind).is_none() && !objects.iter().any(|o| o.resource == *kind) {
                return Err(Error::UnknownResource {
                    cluster: self.cluster.name().to_owned(),
                    resource: kind.clone(),
                    served: "see kubectl api-resources".to_owned(),
                });
            }
        }
        let kept = objects.into_iter().filter(|o| {
            let namespace = o.namespace.as_deref().or(if o.resource == "namespaces" {
                Some(o.name.as_str())
            } else {
                None
            });
            let in_namespaces = self.only_namespaces.is_empty()
                || namespace.is_some_and(|ns| self.only_namespaces.contains(ns));
            let in_kinds = self.only_kinds.is_empty()
                || o.resource == "namespaces"
                || self.only_kinds.iter().any(|k| {
                    *k == o.resource || discovered.find(k).is_some_and(|r| r.name() == o.resource)
                });
            in_namespaces && in_kinds
        });
        Ok(kept
            .map(|mut o| {
                clean_object(&o.resource, &mut o.object);
                self.map_into_namespace(&mut o);
                o
            })
            .collect())
    }

    /// Moves `object` into the namespace the mapping names.
    fn map_into_namespace(&self, object: &mut StoredObject) {
        let mapped = |ns: &str| self.namespaces.get(ns).cloned();
        if let Some(to) = object.namespace.as_deref().and_then(mapped) {
            object.object["metadata"]["namespace"] = json!(to);
            object.namespace = Some(to);
        }
        if object.resource == "namespaces"
            && let Some(to) = mapped(&object.name)
        {
            object.object["metadata"]["name"] = json!(to);
            object.name = to;
        }
        // Role bindings name their subjects' namespaces.
        let binding = object.resource.starts_with("rolebindings.")
            || object.resource.starts_with("clusterrolebindings.");
        if binding && let Some(Value::Array(subjects)) = object.object.get_mut("subjects") {
            for subject in subjects {
                if let Some(to) = subject
                    .get("namespace")
                    .and_then(Value::as_str)
                    .and_then(mapped)
                {
                    subject["namespace"] = json!(to);
                }
            }
        }
    }

    /// The namespaces `objects` go into, or are, that the cluster does not
    /// have.
    async fn absent_namespaces(&self, objects: &[StoredObject]) -> Result<BTreeSet<String>> {
        let wanted: BTreeSet<&str> = objects
            .iter()
            .filter_map(|o| match &o.namespace {
                Some(ns) => Some(ns.as_str()),
                None if o.resource == "namespaces" => Some(o.name.as_str()),
                None => None,
            })
            .collect();
        let api: Api<k8s_openapi::api::core::v1::Namespace> =
            Api::all(self.cluster.client().clone());
        let mut absent = BTreeSet::new();
        for ns in wanted {
            let found = retrying(|| api.get_opt(ns))
                .await
                .map_err(|e| self.cluster.failed(format!("reading namespace {ns}"), e))?;
            if found.is_none() {
                absent.insert(ns.to_owned());
            }
        }
        Ok(absent)
    }

    /// Restores one object; its outcome.
    /// In a dry run, an object whose namespace is `absent` is not sent:
    /// the server would refuse it for want of the namespace the restore
    /// creates first.
    async fn restore_one(
        &self,
        object: &StoredObject,
        discovered: &Discovered,
        absent: &BTreeSet<String>,
    ) -> ObjectOutcome {
        let outcome = match &object.namespace {
            Some(ns) if self.dry_run && absent.contains(ns) => Outcome::Unchecked(format!(
                "its namespace {ns} does not exist yet; the restore creates it first"
            )),
            _ => match self.write(object, discovered).await {
                Ok(outcome) => outcome,
                Err(error) => Outcome::Failed(error.to_string()),
            },
        };
        ObjectOutcome {
            object: object.describe(),
            outcome,
        }
    }

    async fn write(&self, stored: &StoredObject, discovered: &Discovered) -> Result<Outcome> {
        let api_version = text(&stored.object, "/apiVersion").unwrap_or_default();
        let kind = text(&stored.object, "/kind").unwrap_or_default();
        let Some(resource) = discovered.by_kind(api_version, kind) else {
            return Ok(Outcome::Failed(format!(
                "{} does not serve {kind} of {api_version}{}",
                self.cluster.name(),
                if self.dry_run {
                    " (in a dry run, the definitions restored first are not created)"
                } else {
                    ""
                }
            )));
        };
        let api = self.api(resource, stored.namespace.as_deref());
        let object: DynamicObject =
            serde_json::from_value(stored.object.clone()).map_err(|e| Error::Incomplete {
                what: format!("{}: {e}", stored.describe()),
                field: "metadata",
            })?;
        let what = |verb: &str| format!("{verb} {}", stored.describe());
        let post = PostParams {
            dry_run: self.dry_run,
            ..PostParams::default()
        };
        match retrying(|| api.create(&post, &object)).await {
            Ok(_) => return Ok(Outcome::Created),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(self.cluster.failed(what("creating"), e)),
        }
        match self.existing {
            ExistingPolicy::Skip => Ok(Outcome::Skipped("it exists".to_owned())),
            ExistingPolicy::Recreate if stored.resource == "namespaces" => Ok(Outcome::Skipped(
                "it exists, and a namespace is never recreated (its objects would go)".to_owned(),
            )),
            ExistingPolicy::Update => {
                let mut params = PatchParams::apply(FIELD_MANAGER).force();
                params.dry_run = self.dry_run;
                let patch = Patch::Apply(&object);
                retrying(|| api.patch(&stored.name, &params, &patch))
                    .await
                    .map_err(|e| self.cluster.failed(what("applying"), e))?;
                Ok(Outcome::Updated)
            }
            ExistingPolicy::Recreate => {
                if !self.dry_run {
                    self.delete_and_wait(&api, stored).await?;
                    retrying(|| api.create(&post, &object))
                        .await
                        .map_err(|e| self.cluster.failed(what("creating again"), e))?;
                }
                Ok(Outcome::Recreated)
            }
        }
    }

    /// Deletes `stored`'s object in the cluster and waits until it is gone
    /// (or another of its name, with another uid, is there).
    async fn delete_and_wait(&self, api: &Api<DynamicObject>, stored: &StoredObject) -> Result<()> {
        let what = format!("deleting {}", stored.describe());
        let old = retrying(|| api.get_opt(&stored.name))
            .await
            .map_err(|e| self.cluster.failed(&what, e))?;
        let Some(old) = old else { return Ok(()) };
        let params = DeleteParams::background();
        match retrying(|| api.delete(&stored.name, &params)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(e) => return Err(self.cluster.failed(&what, e)),
        }
        let deadline = Instant::now() + self.wait;
        loop {
            let now = retrying(|| api.get_opt(&stored.name))
                .await
                .map_err(|e| self.cluster.failed(&what, e))?;
            match now {
                Some(o) if o.metadata.uid == old.metadata.uid => {}
                _ => return Ok(()),
            }
            if Instant::now() >= deadline {
                return Err(Error::TimedOut {
                    what,
                    cluster: self.cluster.name().to_owned(),
                    timeout: self.wait,
                    waited_for: "the object to be gone".to_owned(),
                    saw: "it is still there (a finalizer holds it?)".to_owned(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every CRD of `definitions` is `Established`; a failure
    /// outcome for each that is not within the wait.
    async fn wait_established(&self, definitions: &[StoredObject]) -> Vec<ObjectOutcome> {
        let api: Api<DynamicObject> = Api::all_with(
            self.cluster.client().clone(),
            &kube::core::ApiResource::from_gvk_with_plural(
                &kube::core::GroupVersionKind::gvk(
                    "apiextensions.k8s.io",
                    "v1",
                    "CustomResourceDefinition",
                ),
                "customresourcedefinitions",
            ),
        );
        let deadline = Instant::now() + self.wait;
        let mut failed = Vec::new();
        for definition in definitions {
            loop {
                let established = match retrying(|| api.get_opt(&definition.name)).await {
                    Ok(Some(crd)) => crd.data["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Established" && c["status"] == "True"),
                    _ => false,
                };
                if established {
                    break;
                }
                if Instant::now() >= deadline {
                    failed.push(ObjectOutcome {
                        object: definition.describe(),
                        outcome: Outcome::Failed(format!(
                            "not established after {:?}: its custom resources cannot be restored",
                            self.wait
                        )),
                    });
                    break;
                }
                tokio::time::sleep(POLL).await;
            }
        }
        failed
    }

    fn api(&self, resource: &ResourceType, namespace: Option<&str>) -> Api<DynamicObject> {
        let client = self.cluster.client().clone();
        match namespace {
            Some(ns) if resource.namespaced => Api::namespaced_with(client, ns, &resource.api),
            _ => Api::all_with(client, &resource.api),
        }
    }
}

/// Where `resource` comes in the restore order.
fn rank(resource: &str) -> usize {
    PRIORITY
        .iter()
        .position(|p| *p == resource)
        .unwrap_or(PRIORITY.len())
}

/// The snapshot `target` names among `component`'s.
async fn choose(
    source: &dyn SnapshotSource,
    component: &ComponentId,
    target: &RecoveryTarget,
) -> dr_core::Result<Manifest> {
    if matches!(
        target,
        RecoveryTarget::Position(_) | RecoveryTarget::RestorePoint(_)
    ) {
        return Err(dr_core::Error::invalid(
            format!("restore of {component}"),
            format!("a resource backup restores as it was taken, not to {target:?}"),
        ));
    }
    let mut snapshots = source.snapshots(component).await?;
    if let RecoveryTarget::Snapshot(id) = target
        && let Some(other) = snapshots.iter().find(|m| m.id == *id)
        && !is_resource_backup(other)
    {
        return Err(dr_core::Error::corrupt(
            format!("snapshot {id}"),
            "it records no resource backup details: it is not a resource backup",
        ));
    }
    snapshots.retain(is_resource_backup);
    target.snapshot_among(&snapshots).cloned().ok_or_else(|| {
        dr_core::Error::not_found(format!("a snapshot of {component} for {target:?}"))
    })
}

/// `component`'s committed resource backups, oldest first.
///
/// # Errors
/// The source could not list them.
pub async fn resource_backups(
    source: &dyn SnapshotSource,
    component: &ComponentId,
) -> dr_core::Result<Vec<Manifest>> {
    let mut all = source.snapshots(component).await?;
    all.retain(is_resource_backup);
    Ok(all)
}

/// Whether `manifest` is a resource backup's: it records
/// [`ResourceBackupDetails`].
pub fn is_resource_backup(manifest: &Manifest) -> bool {
    manifest
        .metadata
        .contains_key(<ResourceBackupDetails as dr_core::SnapshotDetails>::KEY)
}

/// The record and the objects of the resource backup `manifest`, checked
/// against each other.
///
/// # Errors
/// [`dr_core::ErrorKind::Corrupt`] where a stream is missing or damaged,
/// or the objects are not those the record counts;
/// [`dr_core::ErrorKind::Unsupported`] for a record of a later format.
pub async fn read_backup(
    source: &dyn SnapshotSource,
    manifest: &Manifest,
) -> dr_core::Result<(BackupContents, Vec<StoredObject>)> {
    let what = format!("resource backup {}", manifest.id);
    let bytes = |name: &'static str| async move {
        let stream: StreamName = name.parse()?;
        if manifest.stream(&stream).is_none() {
            return Err(dr_core::Error::corrupt(
                format!("snapshot {}", manifest.id),
                format!("it has no {name} stream: it is not a resource backup"),
            ));
        }
        let mut reader = source.open_stream(&manifest.id, &stream).await?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| dr_core::Error::io(format!("reading {name} of {}", manifest.id), e))?;
        Ok(bytes)
    };
    let contents: BackupContents = serde_json::from_slice(&bytes(CONTENTS_STREAM).await?)
        .map_err(|e| dr_core::Error::corrupt(&what, format!("{CONTENTS_STREAM}: {e}")))?;
    if contents.format > CONTENTS_FORMAT {
        return Err(dr_core::Error::other(
            ErrorKind::Unsupported,
            &what,
            format!(
                "its record is of format {}; this build reads up to {CONTENTS_FORMAT}",
                contents.format
            ),
        ));
    }
    let objects = read_tar(&bytes(OBJECTS_STREAM).await?)
        .map_err(|e| dr_core::Error::corrupt(&what, format!("{OBJECTS_STREAM}: {e}")))?;
    if objects.len() as u64 != contents.objects() {
        return Err(dr_core::Error::corrupt(
            &what,
            format!(
                "{OBJECTS_STREAM} holds {} objects; its record counts {}",
                objects.len(),
                contents.objects()
            ),
        ));
    }
    Ok((contents, objects))
}

#[async_trait]
impl Restore for ResourceRestore {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    async fn restore(&self, request: RestoreRequest<'_>) -> dr_core::Result<RecoveryReport> {
        let restored = self
            .restore_objects(request.snapshots, request.target)
            .await?;
        let failures: Vec<String> = restored.failures().map(ToString::to_string).collect();
        if !failures.is_empty() {
            let shown = failures
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ");
            return Err(dr_core::Error::other(
                ErrorKind::Refused,
                format!("restore of {} into {}", self.component, self.cluster.name()),
                format!(
                    "{} of {} objects failed: {shown}",
                    failures.len(),
                    restored.objects.len()
                ),
            ));
        }
        Ok(restored.recovery_report(&self.component, request.objectives, request.incident_at))
    }
}
