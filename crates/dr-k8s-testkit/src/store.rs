//! Objects in memory, with the API server's rules for creating, updating and deleting them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::crd;
use crate::logs::Logs;
use crate::registry::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{self, ApiError, Subject};
use crate::watch::{Event, EventType, Watch, WatchFilter, WatchStart};

/// How many events a watcher may fall behind before it is told to start again (410).
const WATCH_BUFFER: usize = 4096;

/// Where an object is kept: group, plural, namespace (`""` for cluster-scoped) and name. The
/// order is the order lists return, as etcd's keys sort.
type Key = (&'static str, &'static str, String, String);

/// What a LIST asks for.
#[derive(Debug, Default)]
pub(crate) struct ListQuery {
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
    pub(crate) limit: Option<usize>,
    pub(crate) continue_token: Option<String>,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The object through its own path: everything but `status`, where `status` is a
    /// subresource.
    Main,
    /// The `status` subresource: `status` only.
    Status,
}

/// Every object, and the one resourceVersion counter they share.
#[derive(Debug)]
pub(crate) struct Store {
    objects: BTreeMap<Key, Value>,
    /// The last resourceVersion handed out.
    revision: u64,
    /// Makes uids and generated names differ between servers.
    seed: u64,
    /// How many uids and generated names have been made.
    minted: u64,
    /// Every change, to whoever watches.
    events: broadcast::Sender<Arc<Event>>,
    /// The latest changes, oldest first, for watches that start from an older resourceVersion.
    history: VecDeque<Arc<Event>>,
    /// How many changes `history` keeps.
    history_limit: usize,
    /// The newest resourceVersion dropped from `history`: a watch from before it gets 410.
    compacted: u64,
    /// What the pods' containers wrote.
    pub(crate) logs: Logs,
    /// The resources the CustomResourceDefinitions define now.
    custom: Vec<&'static ResourceType>,
    /// Every custom resource type made so far, reused when a definition comes back equal.
    interned: Vec<&'static ResourceType>,
}

impl Store {
    /// A store holding the namespaces a new cluster has: `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease`.
    /// `history_limit` changes are kept for watches from an older resourceVersion.
    pub(crate) fn new(seed: u64, history_limit: usize) -> Self {
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let mut store = Store {
            objects: BTreeMap::new(),
            revision: 0,
            seed,
            minted: 0,
            events,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 0,
            logs: Logs::default(),
            custom: Vec::new(),
            interned: Vec::new(),
        };
        let namespaces = registry::find("", "v1", "namespaces").expect("namespaces are served");
        for name in ["default", "kube-node-lease", "kube-public", "kube-system"] {
            store
                .create(namespaces, None, json!({"metadata": {"name": name}}), false)
                .expect("a fresh store takes its namespaces");
        }
        store
    }

    /// The resource a path names, built-in or defined by a CustomResourceDefinition.
    pub(crate) fn resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static ResourceType> {
        registry::find(group, version, plural).or_else(|| {
            self.custom
                .iter()
                .copied()
                .find(|r| r.group == group && r.version == version && r.plural == plural)
        })
    }

    /// The custom resources served now, for discovery.
    pub(crate) fn custom_resources(&self) -> &[&'static ResourceType] {
        &self.custom
    }

    /// Makes the custom resources the definitions stored now define.
    fn sync_custom(&mut self) {
        let crds = registry::find(crd::GROUP, "v1", "customresourcedefinitions")
            .expect("definitions are served");
        let mut custom = Vec::new();
        for definition in self.objects(crds) {
            for made in crd::resource_types(&definition) {
                let known = self.interned.iter().copied().find(|r| **r == made);
                let kind = known.unwrap_or_else(|| {
                    let leaked: &'static ResourceType = Box::leak(Box::new(made));
                    self.interned.push(leaked);
                    leaked
                });
                custom.push(kind);
            }
        }
        self.custom = custom;
    }

    fn next_revision(&mut self) -> String {
        self.revision += 1;
        self.revision.to_string()
    }

    /// Tells watchers of a change just made, at the current revision, and keeps it in the
    /// history.
    fn record(&mut self, kind: EventType, key: &Key, object: &Value, previous: Option<Value>) {
        let event = Arc::new(Event {
            revision: self.revision,
            kind,
            group: key.0,
            plural: key.1,
            namespace: key.2.clone(),
            object: object.clone(),
            previous,
        });
        if self.history.len() >= self.history_limit
            && let Some(dropped) = self.history.pop_front()
        {
            self.compacted = dropped.revision;
        }
        self.history.push_back(event.clone());
        // Nobody watching is no error.
        let _ = self.events.send(event);
    }

    /// Every change from now on; no change is missed between a read of the store and this
    /// call while the caller holds the store.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Every object of a resource, in key order.
    pub(crate) fn objects(&self, kind: &'static ResourceType) -> Vec<Value> {
        self.objects
            .range((kind.group, kind.plural, String::new(), String::new())..)
            .take_while(|((g, p, _, _), _)| *g == kind.group && *p == kind.plural)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Starts a watch: what to send first, and the changes to come.
    ///
    /// From no resourceVersion (or `0`), or with `sendInitialEvents`, the objects there are now
    /// come first as `ADDED`; from a resourceVersion the history still covers, the changes made
    /// after it; from an older one, one `ERROR` event (410 Expired) and nothing more.
    pub(crate) fn watch(
        &self,
        filter: WatchFilter,
        from: Option<u64>,
        send_initial_events: bool,
        bookmarks: bool,
    ) -> Watch {
        let receiver = self.subscribe();
        let mut initial = Vec::new();
        match from {
            Some(from) if !send_initial_events && from < self.compacted => {
                initial.push(WatchFilter::expired(from, self.compacted));
                return Watch {
                    start: WatchStart {
                        initial,
                        revision: self.revision,
                    },
                    receiver: None,
                    filter,
                    bookmarks,
                };
            }
            Some(from) if !send_initial_events => {
                initial.extend(
                    self.history
                        .iter()
                        .filter(|e| e.revision > from)
                        .filter_map(|e| filter.translate(e)),
                );
            }
            _ => {
                let kind = filter.kind;
                initial.extend(
                    self.objects(kind)
                        .iter()
                        .filter(|o| filter.matches(o))
                        .map(|o| WatchFilter::event("ADDED", o)),
                );
                if send_initial_events && bookmarks {
                    initial.push(filter.bookmark(self.revision, true));
                }
            }
        }
        Watch {
            start: WatchStart {
                initial,
                revision: self.revision,
            },
            receiver: Some(receiver),
            filter,
            bookmarks,
        }
    }

    /// A pseudo-random number, different for every call and every server.
    fn mint(&mut self) -> u64 {
        self.minted += 1;
        splitmix(self.seed ^ self.minted.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn uid(&mut self) -> String {
        let (a, b) = (self.mint(), self.mint());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    /// Five characters from the alphabet Kubernetes uses for `generateName`.
    fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.mint();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize];
                n /= ALPHABET.len() as u64;
                char::from(c)
            })
            .collect()
    }

    fn namespace_exists(&self, namespace: &str) -> bool {
        self.objects
            .contains_key(&("", "namespaces", String::new(), namespace.to_owned()))
    }

    /// For a write to a namespaced resource: the namespace must exist.
    fn require_namespace(&self, namespace: &str) -> Result<(), ApiError> {
        if self.namespace_exists(namespace) {
            Ok(())
        } else {
            Err(ApiError::not_found(Subject {
                group: "",
                plural: "namespaces",
                name: namespace,
            }))
        }
    }

    pub(crate) fn get(
        &self,
        kind: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.objects
            .get(&key(kind, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(subject(kind, name)))
    }

    /// A `{Kind}List` of the objects in `namespace` (all namespaces for `None`) that match.
    pub(crate) fn list(
        &self,
        kind: &'static ResourceType,
        namespace: Option<&str>,
        query: &ListQuery,
    ) -> Result<Value, ApiError> {
        let (revision, after) = match &query.continue_token {
            Some(token) => {
                let (revision, after) = decode_continue(token)?;
                (revision, Some(after))
            }
            None => (self.revision.to_string(), None),
        };
        let matching = self
            .objects
            .range((kind.group, kind.plural, String::new(), String::new())..)
            .take_while(|((g, p, _, _), _)| *g == kind.group && *p == kind.plural)
            .filter(|((_, _, ns, _), _)| namespace.is_none_or(|n| n == ns))
            .filter(|((_, _, ns, name), _)| {
                after
                    .as_ref()
                    .is_none_or(|(a_ns, a_name)| (ns, name) > (a_ns, a_name))
            })
            .filter(|(_, o)| {
                query.labels.matches(o["metadata"].get("labels")) && query.fields.matches(o)
            });
        let mut items = Vec::new();
        let mut rest = 0_usize;
        let mut last = None;
        for ((_, _, ns, name), object) in matching {
            if query.limit.is_some_and(|limit| items.len() >= limit) {
                rest += 1;
                continue;
            }
            let mut item = object.clone();
            // A real server's JSON lists leave out the items' kind and apiVersion.
            if let Some(members) = item.as_object_mut() {
                members.remove("kind");
                members.remove("apiVersion");
            }
            items.push(item);
            last = Some((ns.clone(), name.clone()));
        }
        let mut metadata = json!({"resourceVersion": revision});
        if rest > 0
            && let Some((ns, name)) = last
        {
            metadata["continue"] = encode_continue(&revision, &ns, &name).into();
            metadata["remainingItemCount"] = rest.into();
        }
        Ok(json!({
            "kind": format!("{}List", kind.kind),
            "apiVersion": kind.api_version(),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// Creates an object; with `dry_run` checks and returns it without keeping it.
    pub(crate) fn create(
        &mut self,
        kind: &'static ResourceType,
        namespace: Option<&str>,
        mut object: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        check_type(kind, &mut object)?;
        let metadata = metadata_of(&mut object)?;
        let given = metadata.get("name").and_then(Value::as_str).unwrap_or("");
        let generate = metadata
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = match (given, generate) {
            ("", "") => {
                return Err(ApiError::invalid(
                    subject(kind, ""),
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            ("", prefix) => format!("{prefix}{}", self.name_suffix()),
            (name, _) => name.to_owned(),
        };
        if metadata
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|rv| !rv.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let namespace = object_namespace(kind, namespace, metadata)?;
        if let Some(ns) = &namespace {
            self.require_namespace(ns)?;
        }
        let key = key(kind, namespace.as_deref(), &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(subject(kind, &name)));
        }
        let uid = self.uid();
        let metadata = metadata_of(&mut object)?;
        metadata.insert("name".into(), name.clone().into());
        match &namespace {
            Some(ns) => metadata.insert("namespace".into(), ns.clone().into()),
            None => metadata.remove("namespace"),
        };
        metadata.insert("uid".into(), uid.into());
        metadata.insert("creationTimestamp".into(), now().into());
        if object.get("spec").is_some() {
            object["metadata"]["generation"] = 1.into();
        }
        initial_status(kind, &name, &mut object);
        defaults(kind, &mut object);
        if is_definition(kind) {
            crd::validate(&object)?;
            object["status"] = crd::status(&object, &now());
        }
        if dry_run {
            return Ok(object);
        }
        object["metadata"]["resourceVersion"] = self.next_revision().into();
        self.objects.insert(key.clone(), object.clone());
        self.record(EventType::Added, &key, &object, None);
        if is_definition(kind) {
            self.sync_custom();
        }
        Ok(object)
    }

    /// Replaces an object (or its status), keeping what a client may not change: uid,
    /// creationTimestamp, generation (bumped when `spec` changes), and the other part.
    pub(crate) fn update(
        &mut self,
        kind: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        mut object: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        check_type(kind, &mut object)?;
        let key = key(kind, namespace, name);
        let current = self
            .objects
            .get(&key)
            .ok_or_else(|| ApiError::not_found(subject(kind, name)))?;
        let metadata = metadata_of(&mut object)?;
        match metadata.get("name").and_then(Value::as_str) {
            Some(given) if given != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({given}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        let wanted_revision = metadata
            .get("resourceVersion")
            .and_then(Value::as_str)
            .filter(|rv| !rv.is_empty());
        if wanted_revision
            .is_some_and(|rv| Some(rv) != current["metadata"]["resourceVersion"].as_str())
        {
            return Err(ApiError::conflict(subject(kind, name)));
        }
        object_namespace(kind, namespace, metadata)?;
        let mut next = match part {
            Part::Status => {
                let mut next = current.clone();
                next["status"] = object.get("status").cloned().unwrap_or(json!({}));
                next
            }
            Part::Main => {
                if kind.kind == "Namespace" {
                    // A namespace's finalizers are the server's, as its status is.
                    object["spec"] = current["spec"].clone();
                }
                if kind.status {
                    match current.get("status") {
                        Some(status) => object["status"] = status.clone(),
                        None => {
                            if let Some(members) = object.as_object_mut() {
                                members.remove("status");
                            }
                        }
                    }
                }
                for field in ["uid", "creationTimestamp", "generation", "resourceVersion"] {
                    match current["metadata"].get(field) {
                        Some(value) => object["metadata"][field] = value.clone(),
                        None => {
                            metadata_of(&mut object)?.remove(field);
                        }
                    }
                }
                object["metadata"]["name"] = name.into();
                if let Some(ns) = namespace {
                    object["metadata"]["namespace"] = ns.into();
                }
                defaults(kind, &mut object);
                if is_definition(kind) {
                    crd::validate(&object)?;
                    object["status"] = crd::status(&object, &now());
                }
                object
            }
        };
        if next == *current {
            // As etcd's store: an update that changes nothing writes nothing.
            return Ok(next);
        }
        if next.get("spec") != current.get("spec") {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(0);
            next["metadata"]["generation"] = (generation + 1).into();
        }
        if dry_run {
            return Ok(next);
        }
        let previous = current.clone();
        next["metadata"]["resourceVersion"] = self.next_revision().into();
        self.objects.insert(key.clone(), next.clone());
        self.record(EventType::Modified, &key, &next, Some(previous));
        if is_definition(kind) {
            self.sync_custom();
        }
        Ok(next)
    }

    /// Deletes an object and returns it; a namespace goes with every object in it, and
    /// answers with a `Status`.
    pub(crate) fn delete(
        &mut self,
        kind: &'static ResourceType,
        namespace: Option<&str>,
        name: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let key = key(kind, namespace, name);
        let object = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(subject(kind, name)))?;
        if dry_run {
            return Ok(object);
        }
        if kind.kind == "Namespace" {
            // What is in the namespace goes first, each deletion a change of its own.
            let inside: Vec<Key> = self
                .objects
                .keys()
                .filter(|(_, _, ns, _)| ns == name)
                .cloned()
                .collect();
            for key in inside {
                self.remove(&key);
            }
        }
        if is_definition(kind) {
            // Its objects go first, in every namespace, each a change of its own.
            let (group, plural) = (
                object["spec"]["group"].as_str().unwrap_or(""),
                object["spec"]["names"]["plural"].as_str().unwrap_or(""),
            );
            let defined: Vec<Key> = self
                .objects
                .keys()
                .filter(|(g, p, _, _)| *g == group && *p == plural)
                .cloned()
                .collect();
            for key in defined {
                self.remove(&key);
            }
        }
        let object = self.remove(&key).unwrap_or(object);
        if is_definition(kind) {
            self.sync_custom();
        }
        if kind.kind == "Namespace" {
            return Ok(status::success(subject(kind, name)));
        }
        Ok(object)
    }
}

impl Store {
    /// A container's restart, in its pod's status: `restartCount` one more, the run before
    /// as `lastState.terminated`, running again from now (or still waiting, crash-looping).
    pub(crate) fn restart_container(&mut self, namespace: &str, pod: &str, container: &str) {
        let pods = registry::find("", "v1", "pods").expect("pods are served");
        let Ok(mut object) = self.get(pods, Some(namespace), pod) else {
            return;
        };
        let now = now();
        let statuses = object["status"]["containerStatuses"].as_array_mut();
        let Some(status) = statuses
            .into_iter()
            .flatten()
            .find(|s| s["name"] == container)
        else {
            return;
        };
        let started = status["state"]["running"]["startedAt"].clone();
        let restarts = status["restartCount"].as_i64().unwrap_or(0);
        status["restartCount"] = (restarts + 1).into();
        status["lastState"] = json!({"terminated": {
            "exitCode": 1,
            "reason": "Error",
            "startedAt": started,
            "finishedAt": now,
        }});
        if status["state"].get("waiting").is_none() {
            status["state"] = json!({"running": {"startedAt": now}});
        }
        // The pod exists and only its status changes: nothing to refuse.
        let _ = self.update(pods, Some(namespace), pod, object, Part::Status, false);
    }

    /// Removes an object as a change: the object last seen carries the deletion's
    /// resourceVersion, as a real server's DELETED event does.
    fn remove(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        if key.0.is_empty() && key.1 == "pods" {
            self.logs
                .forget(object["metadata"]["uid"].as_str().unwrap_or(""));
        }
        object["metadata"]["resourceVersion"] = self.next_revision().into();
        self.record(EventType::Deleted, key, &object, None);
        Some(object)
    }
}

fn is_definition(kind: &ResourceType) -> bool {
    kind.group == crd::GROUP && kind.plural == "customresourcedefinitions"
}

fn key(kind: &'static ResourceType, namespace: Option<&str>, name: &str) -> Key {
    let namespace = if kind.namespaced {
        namespace.unwrap_or_default()
    } else {
        ""
    };
    (
        kind.group,
        kind.plural,
        namespace.to_owned(),
        name.to_owned(),
    )
}

pub(crate) fn subject<'a>(kind: &'a ResourceType, name: &'a str) -> Subject<'a> {
    Subject {
        group: kind.group,
        plural: kind.plural,
        name,
    }
}

/// The body's kind and apiVersion must be the resource's, or absent (then they are filled in).
fn check_type(kind: &ResourceType, object: &mut Value) -> Result<(), ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request is not a JSON object",
        ));
    }
    let api_version = kind.api_version();
    let given_kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or(kind.kind);
    let given_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or(&api_version);
    if given_kind != kind.kind || given_version != api_version {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({given_version}) and kind ({given_kind}) do not match \
             the resource ({api_version}, {})",
            kind.kind
        )));
    }
    object["kind"] = kind.kind.into();
    object["apiVersion"] = api_version.into();
    Ok(())
}

fn metadata_of(object: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let members = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body of the request is not a JSON object"))?;
    members
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata is not a JSON object"))
}

/// The namespace an object goes in: the request's, which the body may repeat but not
/// contradict; none for a cluster-scoped resource.
fn object_namespace(
    kind: &ResourceType,
    namespace: Option<&str>,
    metadata: &Map<String, Value>,
) -> Result<Option<String>, ApiError> {
    if !kind.namespaced {
        return Ok(None);
    }
    let request = namespace.unwrap_or("default");
    match metadata.get("namespace").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != request => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(Some(request.to_owned())),
    }
}

/// What a new object's status is, for the resources whose status the server owns.
fn initial_status(kind: &ResourceType, name: &str, object: &mut Value) {
    match kind.kind {
        "Namespace" => {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name.into();
        }
        "Pod" => object["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"}),
        // A kubelet registers its node with the status it reports.
        "Node" if object.get("status").is_some_and(Value::is_object) => {}
        // A custom resource's status is written through its subresource only.
        _ if kind.custom && kind.status => {
            if let Some(members) = object.as_object_mut() {
                members.remove("status");
            }
        }
        _ if kind.status => object["status"] = json!({}),
        _ => {}
    }
}

/// The defaults a real server gives the fields of `spec` that the controllers and kubectl
/// read (`rollout status` refuses a stateful set without `updateStrategy`): only where
/// absent, and not inside pod templates.
fn defaults(kind: &ResourceType, object: &mut Value) {
    let defaults = match kind.kind {
        "Deployment" => json!({
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        }),
        "StatefulSet" => json!({
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        }),
        "ReplicaSet" => json!({"replicas": 1}),
        _ => return,
    };
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Value::Object(defaults) = defaults {
        for (field, value) in defaults {
            spec.entry(field).or_insert(value);
        }
    }
}

/// The time now, as Kubernetes writes timestamps: RFC 3339 in UTC, to the second.
fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A continue token: the list's resourceVersion and the last key returned, hex-encoded so that
/// clients treat it as opaque.
fn encode_continue(revision: &str, namespace: &str, name: &str) -> String {
    let text = format!("{revision}\n{namespace}\n{name}");
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> Result<(String, (String, String)), ApiError> {
    let invalid = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    if !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '\n');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(revision), Some(namespace), Some(name)) => {
            Ok((revision.to_owned(), (namespace.to_owned(), name.to_owned())))
        }
        _ => Err(invalid()),
    }
}

/// SplitMix64's finalizer: spreads a counter over 64 bits.
fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
