//! From a request's method, path, query and body to the reply: routing, content types, verbs
//! and the `scale` and `status` subresources.

use std::collections::BTreeSet;

use hyper::Method;
use serde_json::{Value, json};

use crate::discovery::{self, Aggregated};
use crate::openapi::{self, FieldValidation, Served, Warnings};
use crate::patch::{self, PatchKind};
use crate::registry::{self, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{ListQuery, Part, Store, subject};
use crate::watch::{Watch, WatchFilter};

/// What the handler needs of an HTTP request, its body already read.
#[derive(Debug)]
pub(crate) struct ApiRequest {
    pub(crate) method: Method,
    pub(crate) path: String,
    /// The raw query string, percent-encoded.
    pub(crate) query: String,
    /// The media type of `Content-Type`, without parameters, lowercased.
    pub(crate) content_type: String,
    pub(crate) accept: String,
    pub(crate) user_agent: String,
    /// `If-None-Match`, checked against aggregated discovery's ETag.
    pub(crate) if_none_match: String,
    /// Whether `/api` and `/apis` answer aggregated discovery to a client that asks for it.
    pub(crate) aggregated_discovery: bool,
    /// The groups made unavailable, `Stale` in aggregated discovery.
    pub(crate) unavailable_groups: BTreeSet<String>,
    pub(crate) body: bytes::Bytes,
}

/// The media type of a server-side apply.
const APPLY: &str = "application/apply-patch+yaml";

/// An HTTP status code and the JSON body that goes with it.
#[derive(Debug)]
pub(crate) struct ApiReply {
    pub(crate) code: u16,
    /// Sent as JSON; none at all with a 304.
    pub(crate) body: Value,
    /// `application/json` but for aggregated discovery.
    pub(crate) content_type: &'static str,
    /// Headers besides `Content-Type`: `Warning`, `ETag`, `Location`, ...
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl ApiReply {
    pub(crate) fn new(code: u16, body: Value) -> Self {
        ApiReply {
            code,
            body,
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    /// With a `Warning` header for each warning, as the real server words them
    /// (`299 - "unknown field \"spec.foo\""`).
    fn warned(mut self, warnings: Warnings) -> Self {
        for warning in warnings {
            let quoted = serde_json::to_string(&warning).expect("a string serializes");
            self.headers.push(("warning", format!("299 - {quoted}")));
        }
        self
    }
}

impl From<ApiError> for ApiReply {
    fn from(error: ApiError) -> Self {
        ApiReply::new(error.code, error.to_status())
    }
}

fn ok(body: Value) -> ApiReply {
    ApiReply::new(200, body)
}

/// What a request is answered with: one document, or a watch.
#[derive(Debug)]
pub(crate) enum Outcome {
    Reply(ApiReply),
    /// A `text/plain` body (a container's log), 200.
    Text(Vec<u8>),
    /// A watch, and its `timeoutSeconds`.
    Watch(Watch, Option<std::time::Duration>),
}

impl From<ApiReply> for Outcome {
    fn from(reply: ApiReply) -> Self {
        Outcome::Reply(reply)
    }
}

/// Answers one request against the store.
pub(crate) fn handle(store: &mut Store, request: &ApiRequest) -> Outcome {
    match route(store, request) {
        Ok(outcome) => outcome,
        Err(error) => ApiReply::from(error).into(),
    }
}

/// Which subresource a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subresource {
    Scale,
    Status,
    Eviction,
    Log,
}

/// A path under `/api/v1` or `/apis/{group}/{version}` that names resources.
#[derive(Debug)]
struct Target<'a> {
    kind: &'static ResourceType,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<Subresource>,
}

fn route(store: &mut Store, request: &ApiRequest) -> Result<Outcome, ApiError> {
    if let Some(rest) = request.path.strip_prefix("/openapi/v3")
        && (rest.is_empty() || rest.starts_with('/'))
    {
        if request.method != Method::GET {
            return Err(ApiError::method_not_allowed(request.method.as_str()));
        }
        return Ok(openapi_reply(store, rest.trim_start_matches('/'), &request.query)?.into());
    }
    if request.path.starts_with("/openapi/") {
        // `/openapi/v2` is not served: kubectl takes the 404 (whatever it accepts) and, with
        // `/openapi/v3` there, has no need of it.
        return Err(ApiError::no_route());
    }
    let accept = &request.accept;
    if !accept.is_empty() && !accept.contains("json") && !accept.contains("*/*") {
        return Err(ApiError {
            code: 406,
            reason: "NotAcceptable",
            message: format!(
                "only the following media types are accepted: application/json; got {accept:?}"
            ),
            details: None,
        });
    }
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    if let ["api"] | ["apis"] = segments.as_slice()
        && request.method == Method::GET
        && request.aggregated_discovery
        && let Some(format) = discovery::negotiate(accept)
    {
        return Ok(aggregated_reply(store, request, format, segments == ["api"]).into());
    }
    let discovery = match segments.as_slice() {
        ["version"] => Some(registry::version()),
        ["api"] => Some(registry::core_versions()),
        ["apis"] => Some(registry::group_list(store.custom_resources())),
        ["api", version] => registry::resource_list("", version, store.custom_resources()),
        ["apis", group] => registry::group(group, store.custom_resources()),
        ["apis", group, version] => {
            registry::resource_list(group, version, store.custom_resources())
        }
        _ => None,
    };
    if let Some(document) = discovery {
        return if request.method == Method::GET {
            Ok(ok(document).into())
        } else {
            Err(ApiError::method_not_allowed(request.method.as_str()))
        };
    }
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_route()),
    };
    let target = target(store, group, version, rest).ok_or_else(ApiError::no_route)?;
    let query = Query::parse(&request.query);
    match (target.name, target.subresource) {
        (None, _) => collection(store, request, &target, &query),
        (Some(name), None) => item(store, request, &target, name, &query).map(Outcome::from),
        (Some(name), Some(Subresource::Log)) => {
            if request.method != Method::GET {
                return Err(ApiError::method_not_allowed(request.method.as_str()));
            }
            let pod = store.get(target.kind, target.namespace, name)?;
            let text = crate::logs::serve(&store.logs, &pod, &request.query)?;
            Ok(Outcome::Text(text))
        }
        (Some(name), Some(subresource)) => {
            sub(store, request, &target, name, subresource, &query).map(Outcome::from)
        }
    }
}

/// `GET /api` or `/apis` as aggregated discovery, with the real server's caching headers
/// (`ETag`, `Vary: Accept`, `Cache-Control: public`); 304 and no body when `If-None-Match`
/// names the ETag.
fn aggregated_reply(
    store: &Store,
    request: &ApiRequest,
    format: Aggregated,
    core: bool,
) -> ApiReply {
    let body = discovery::document(
        format,
        core,
        store.custom_resources(),
        &request.unavailable_groups,
    );
    let etag = format!("\"{}\"", openapi::hash(&body));
    let mut reply = if request.if_none_match == etag {
        ApiReply::new(304, Value::Null)
    } else {
        ok(body)
    };
    reply.content_type = format.content_type();
    reply.headers.extend([
        ("etag", etag),
        ("vary", "Accept".to_owned()),
        ("cache-control", "public".to_owned()),
    ]);
    reply
}

/// `GET /openapi/v3[/{rest}]`: the index or a group version's document, with the ETag and
/// caching headers of the real server; a 301 from an outdated `?hash=`.
fn openapi_reply(store: &Store, rest: &str, query: &str) -> Result<ApiReply, ApiError> {
    Ok(match openapi::serve(store, rest, query)? {
        Served::Document {
            body,
            etag,
            immutable,
        } => {
            let mut reply = ok(body);
            reply.headers.push(("etag", format!("\"{etag}\"")));
            if immutable {
                reply
                    .headers
                    .push(("cache-control", "public, immutable".into()));
                reply.headers.push(("vary", "Accept".into()));
            }
            reply
        }
        Served::Moved(location) => {
            let mut reply = ApiReply::new(301, json!({"location": location}));
            reply.headers.push(("location", location));
            reply
        }
    })
}

/// Splits the path after the group version: `namespaces/{ns}/{plural}[/{name}[/{sub}]]` for a
/// namespaced resource, `{plural}[/{name}[/{sub}]]` otherwise (including all-namespaces lists
/// and namespaces themselves).
fn target<'a>(store: &Store, group: &str, version: &str, rest: &[&'a str]) -> Option<Target<'a>> {
    let namespaced = match rest {
        ["namespaces", ns, plural, tail @ ..] => store
            .resource(group, version, plural)
            .filter(|kind| kind.namespaced)
            .map(|kind| (kind, Some(*ns), tail)),
        _ => None,
    };
    let (kind, namespace, tail) = match namespaced {
        Some(found) => found,
        None => {
            let (plural, tail) = rest.split_first()?;
            (store.resource(group, version, plural)?, None, tail)
        }
    };
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(*name), None),
        [name, "status"] if kind.status => (Some(*name), Some(Subresource::Status)),
        [name, "scale"] if kind.scale => (Some(*name), Some(Subresource::Scale)),
        [name, "eviction"] if kind.kind == "Pod" => (Some(*name), Some(Subresource::Eviction)),
        [name, "log"] if kind.kind == "Pod" => (Some(*name), Some(Subresource::Log)),
        _ => return None,
    };
    // A namespaced object is named only within its namespace.
    if kind.namespaced && namespace.is_none() && name.is_some() {
        return None;
    }
    Some(Target {
        kind,
        namespace,
        name,
        subresource,
    })
}

/// The query parameters the server acts on.
#[derive(Debug, Default)]
struct Query {
    label_selector: Option<String>,
    field_selector: Option<String>,
    limit: Option<String>,
    continue_token: Option<String>,
    dry_run: bool,
    watch: bool,
    resource_version: Option<String>,
    allow_watch_bookmarks: bool,
    send_initial_events: bool,
    timeout_seconds: Option<String>,
    field_manager: Option<String>,
    force: bool,
    field_validation: Option<String>,
}

impl Query {
    fn parse(query: &str) -> Self {
        let mut parsed = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match key {
                "labelSelector" => parsed.label_selector = Some(value),
                "fieldSelector" => parsed.field_selector = Some(value),
                "limit" => parsed.limit = Some(value),
                "continue" => parsed.continue_token = Some(value).filter(|v| !v.is_empty()),
                "dryRun" => parsed.dry_run = value == "All",
                "watch" => parsed.watch = matches!(value.as_str(), "1" | "true"),
                "resourceVersion" => parsed.resource_version = Some(value),
                "allowWatchBookmarks" => {
                    parsed.allow_watch_bookmarks = matches!(value.as_str(), "1" | "true");
                }
                "sendInitialEvents" => {
                    parsed.send_initial_events = matches!(value.as_str(), "1" | "true");
                }
                "timeoutSeconds" => parsed.timeout_seconds = Some(value),
                "fieldManager" => parsed.field_manager = Some(value).filter(|v| !v.is_empty()),
                "force" => parsed.force = matches!(value.as_str(), "1" | "true"),
                "fieldValidation" => parsed.field_validation = Some(value),
                _ => {}
            }
        }
        parsed
    }

    fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        FieldValidation::parse(self.field_validation.as_deref())
    }

    fn list_query(&self, kind: &ResourceType) -> Result<ListQuery, ApiError> {
        let limit = match self.limit.as_deref() {
            None | Some("") | Some("0") => None,
            Some(text) => Some(text.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!("limit is not a non-negative integer: {text:?}"))
            })?),
        };
        Ok(ListQuery {
            labels: LabelSelector::parse(self.label_selector.as_deref().unwrap_or(""))?,
            fields: FieldSelector::parse(self.field_selector.as_deref().unwrap_or(""), kind)?,
            limit,
            continue_token: self.continue_token.clone(),
        })
    }
}

/// Decodes `%XX` escapes and `+` (a space in a form-encoded query).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET ...?watch=1` on a collection: the store's watch with the query's filter, start and
/// timeout.
fn watch(store: &Store, target: &Target<'_>, query: &Query) -> Result<Outcome, ApiError> {
    let from = match query.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("resourceVersion is not valid: {text:?}"))
        })?),
    };
    let timeout = match query.timeout_seconds.as_deref() {
        None | Some("") | Some("0") => None,
        Some(text) => Some(std::time::Duration::from_secs(text.parse().map_err(
            |_| ApiError::bad_request(format!("timeoutSeconds is not valid: {text:?}")),
        )?)),
    };
    let filter = WatchFilter {
        kind: target.kind,
        namespace: target.namespace.map(str::to_owned),
        labels: LabelSelector::parse(query.label_selector.as_deref().unwrap_or(""))?,
        fields: FieldSelector::parse(query.field_selector.as_deref().unwrap_or(""), target.kind)?,
    };
    let watch = store.watch(
        filter,
        from,
        query.send_initial_events,
        query.allow_watch_bookmarks,
    );
    Ok(Outcome::Watch(watch, timeout))
}

fn collection(
    store: &mut Store,
    request: &ApiRequest,
    target: &Target<'_>,
    query: &Query,
) -> Result<Outcome, ApiError> {
    match request.method {
        Method::GET if query.watch => watch(store, target, query),
        Method::GET => Ok(ok(store.list(
            target.kind,
            target.namespace,
            &query.list_query(target.kind)?,
        )?)
        .into()),
        Method::POST => {
            if target.kind.namespaced && target.namespace.is_none() {
                return Err(ApiError::method_not_allowed("POST"));
            }
            let mut body = json_body(request)?;
            let warnings =
                openapi::check(store, target.kind, &body, query.field_validation()?, true)?;
            if let Some(manager) = update_manager(request, query) {
                crate::apply::track_update(target.kind, None, &mut body, manager);
            }
            let created = store.create(target.kind, target.namespace, body, query.dry_run)?;
            Ok(ApiReply::new(201, created).warned(warnings).into())
        }
        ref other => Err(ApiError::method_not_allowed(other.as_str())),
    }
}

fn item(
    store: &mut Store,
    request: &ApiRequest,
    target: &Target<'_>,
    name: &str,
    query: &Query,
) -> Result<ApiReply, ApiError> {
    let (kind, namespace) = (target.kind, target.namespace);
    match request.method {
        Method::GET => Ok(ok(store.get(kind, namespace, name)?)),
        Method::PUT => {
            let mut body = json_body(request)?;
            let warnings = openapi::check(store, kind, &body, query.field_validation()?, true)?;
            if let Some(manager) = update_manager(request, query) {
                let current = store.get(kind, namespace, name)?;
                crate::apply::track_update(kind, Some(&current), &mut body, manager);
            }
            let updated = store.update(kind, namespace, name, body, Part::Main, query.dry_run)?;
            Ok(ok(updated).warned(warnings))
        }
        Method::PATCH if request.content_type == APPLY => {
            server_side_apply(store, request, target, name, query)
        }
        Method::PATCH => {
            let current = store.get(kind, namespace, name)?;
            let mut patched = patched(request, kind, &current)?;
            let warnings = openapi::check(store, kind, &patched, query.field_validation()?, false)?;
            if let Some(manager) = update_manager(request, query) {
                crate::apply::track_update(kind, Some(&current), &mut patched, manager);
            }
            let updated =
                store.update(kind, namespace, name, patched, Part::Main, query.dry_run)?;
            Ok(ok(updated).warned(warnings))
        }
        Method::DELETE => {
            // Deletion is immediate, whatever grace period the options give.
            let options = DeleteOptions::from_body(request)?;
            let current = store.get(kind, namespace, name)?;
            options.check(kind, &current, name)?;
            let dry_run = query.dry_run || options.dry_run;
            Ok(ok(store.delete(kind, namespace, name, dry_run)?))
        }
        ref other => Err(ApiError::method_not_allowed(other.as_str())),
    }
}

/// The manager of a write other than apply: `fieldManager`, else the client's User-Agent up
/// to its first `/` (`kubectl`), as the real server names it; none without either.
fn update_manager<'a>(request: &'a ApiRequest, query: &'a Query) -> Option<&'a str> {
    query.field_manager.as_deref().or_else(|| {
        let prefix = request.user_agent.split('/').next().unwrap_or("").trim();
        (!prefix.is_empty()).then_some(prefix)
    })
}

/// `PATCH` with `application/apply-patch+yaml`: the applied configuration (JSON, which is
/// YAML; kubectl and kube send JSON) merged into the object, or creating it (201).
fn server_side_apply(
    store: &mut Store,
    request: &ApiRequest,
    target: &Target<'_>,
    name: &str,
    query: &Query,
) -> Result<ApiReply, ApiError> {
    let (kind, namespace) = (target.kind, target.namespace);
    let manager = query.field_manager.as_deref().ok_or_else(|| {
        ApiError::bad_request("PATCH: fieldManager is required for apply requests")
    })?;
    let applied: Value = serde_json::from_slice(&request.body).map_err(|e| {
        ApiError::bad_request(format!(
            "the apply configuration is not JSON ({e}): this test server takes YAML only in \
             its JSON form"
        ))
    })?;
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "the apply configuration is not an object",
        ));
    }
    let given = |field: &str| applied[field].as_str().unwrap_or("");
    if given("apiVersion") != kind.api_version() || given("kind") != kind.kind {
        return Err(ApiError::bad_request(format!(
            "the apply configuration's apiVersion and kind ({}, {}) are not the resource's \
             ({}, {})",
            given("apiVersion"),
            given("kind"),
            kind.api_version(),
            kind.kind
        )));
    }
    if applied["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != name)
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            applied["metadata"]["name"]
        )));
    }
    let validation = query.field_validation()?;
    let warnings = openapi::check_apply(store, kind, &applied, namespace, name, validation)?;
    match store.get(kind, namespace, name) {
        Ok(current) => {
            let next = crate::apply::apply(kind, Some(&current), applied, manager, query.force)?;
            let updated = store.update(kind, namespace, name, next, Part::Main, query.dry_run)?;
            Ok(ok(updated).warned(warnings))
        }
        Err(error) if error.code == 404 => {
            let mut created = crate::apply::apply(kind, None, applied, manager, query.force)?;
            created["metadata"]["name"] = name.into();
            let created = store.create(kind, namespace, created, query.dry_run)?;
            Ok(ApiReply::new(201, created).warned(warnings))
        }
        Err(error) => Err(error),
    }
}

fn sub(
    store: &mut Store,
    request: &ApiRequest,
    target: &Target<'_>,
    name: &str,
    subresource: Subresource,
    query: &Query,
) -> Result<ApiReply, ApiError> {
    let (kind, namespace) = (target.kind, target.namespace);
    let current = store.get(kind, namespace, name)?;
    let written = match (subresource, &request.method) {
        (Subresource::Eviction, &Method::POST) => {
            let body = json_body(request)?;
            let namespace = namespace.unwrap_or("default");
            let done = crate::eviction::evict(store, namespace, name, &body, query.dry_run)?;
            return Ok(ApiReply::new(201, done));
        }
        (Subresource::Status, &Method::GET) => return Ok(ok(current)),
        (Subresource::Scale, &Method::GET) => return Ok(ok(scale_of(&current))),
        (Subresource::Status, &Method::PUT) => json_body(request)?,
        (Subresource::Status, &Method::PATCH) => patched(request, kind, &current)?,
        (Subresource::Scale, &Method::PUT) => {
            let scale = json_body(request)?;
            with_scale(kind, name, &current, &scale)?
        }
        (Subresource::Scale, &Method::PATCH) => {
            let scale = patched(request, kind, &scale_of(&current))?;
            with_scale(kind, name, &current, &scale)?
        }
        (_, other) => return Err(ApiError::method_not_allowed(other.as_str())),
    };
    let part = match subresource {
        Subresource::Status => Part::Status,
        Subresource::Scale | Subresource::Eviction | Subresource::Log => Part::Main,
    };
    let updated = store.update(kind, namespace, name, written, part, query.dry_run)?;
    Ok(ok(match subresource {
        Subresource::Scale => scale_of(&updated),
        Subresource::Status | Subresource::Eviction | Subresource::Log => updated,
    }))
}

/// The autoscaling/v1 `Scale` of a deployment, replica set or stateful set.
fn scale_of(object: &Value) -> Value {
    let metadata = &object["metadata"];
    let selector: Vec<String> = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let mut scale_metadata = json!({});
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(value) = metadata.get(field) {
            scale_metadata[field] = value.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_metadata,
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {
            "replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector.join(","),
        },
    })
}

/// The object with the replicas a `Scale` asks for; the Scale's resourceVersion, if any, is
/// the precondition.
fn with_scale(
    kind: &ResourceType,
    name: &str,
    current: &Value,
    scale: &Value,
) -> Result<Value, ApiError> {
    let replicas = scale["spec"]["replicas"]
        .as_i64()
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                subject(kind, name),
                "spec.replicas: Invalid value: must be a non-negative integer",
            )
        })?;
    let mut next = current.clone();
    next["spec"]["replicas"] = replicas.into();
    if let Some(rv) = scale["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
    {
        next["metadata"]["resourceVersion"] = rv.into();
    }
    Ok(next)
}

/// What a DELETE's `DeleteOptions` (or an eviction's `deleteOptions`) asks for that the
/// server acts on: its preconditions and `dryRun`. `gracePeriodSeconds` and
/// `propagationPolicy` are taken and checked, and change nothing: deletion is immediate and
/// in the background.
#[derive(Debug, Default)]
pub(crate) struct DeleteOptions {
    uid: Option<String>,
    resource_version: Option<String>,
    pub(crate) dry_run: bool,
}

impl DeleteOptions {
    /// The options in a DELETE's body, if it has one.
    fn from_body(request: &ApiRequest) -> Result<Self, ApiError> {
        if request.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(DeleteOptions::default());
        }
        Self::from_value(&json_body(request)?)
    }

    /// Options from a `DeleteOptions` object; `null` for none.
    pub(crate) fn from_value(options: &Value) -> Result<Self, ApiError> {
        if options.is_null() {
            return Ok(DeleteOptions::default());
        }
        if !options.is_object() {
            return Err(ApiError::bad_request("DeleteOptions is not a JSON object"));
        }
        if let Some(grace) = options.get("gracePeriodSeconds").filter(|g| !g.is_null())
            && !grace.is_i64()
        {
            return Err(ApiError::bad_request(format!(
                "gracePeriodSeconds is not an integer: {grace}"
            )));
        }
        if let Some(policy) = options.get("propagationPolicy").filter(|p| !p.is_null())
            && !matches!(
                policy.as_str(),
                Some("Orphan" | "Background" | "Foreground")
            )
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy is not Orphan, Background or Foreground: {policy}"
            )));
        }
        let precondition =
            |field: &str| options["preconditions"][field].as_str().map(str::to_owned);
        let dry_run = options["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
        Ok(DeleteOptions {
            uid: precondition("uid"),
            resource_version: precondition("resourceVersion"),
            dry_run,
        })
    }

    /// The preconditions against the object as it is: 409 Conflict if one fails.
    pub(crate) fn check(
        &self,
        kind: &ResourceType,
        current: &Value,
        name: &str,
    ) -> Result<(), ApiError> {
        let checks = [
            ("UID", &self.uid, "uid"),
            ("ResourceVersion", &self.resource_version, "resourceVersion"),
        ];
        for (label, wanted, field) in checks {
            let actual = current["metadata"][field].as_str().unwrap_or("");
            if let Some(wanted) = wanted
                && wanted != actual
            {
                let mut error = ApiError::conflict(subject(kind, name));
                error.message = format!(
                    "Operation cannot be fulfilled on {}: Precondition failed: {label} in \
                     precondition: {wanted}, {label} in object meta: {actual}",
                    subject(kind, name).describe()
                );
                return Err(error);
            }
        }
        Ok(())
    }
}

/// A POST or PUT body: JSON only.
fn json_body(request: &ApiRequest) -> Result<Value, ApiError> {
    if request.content_type != "application/json" {
        return Err(ApiError::unsupported_media_type(&request.content_type));
    }
    parse(&request.body)
}

fn parse(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

/// `current` with the request's patch applied, in the format its Content-Type names.
fn patched(request: &ApiRequest, kind: &ResourceType, current: &Value) -> Result<Value, ApiError> {
    let format = PatchKind::from_media_type(&request.content_type);
    if kind.custom && format == Some(PatchKind::Strategic) {
        // A custom resource has no Go type to take patch strategies from.
        return Err(ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: "the body of the request was in an unknown format - accepted media types \
                      include: application/json-patch+json, application/merge-patch+json, \
                      application/apply-patch+yaml"
                .into(),
            details: None,
        });
    }
    let Some(format) = format else {
        if request.content_type == APPLY {
            return Err(ApiError {
                code: 415,
                reason: "UnsupportedMediaType",
                message: "server-side apply of a subresource is not served by this test server"
                    .into(),
                details: None,
            });
        }
        return Err(ApiError::unsupported_media_type(&request.content_type));
    };
    patch::apply(format, current, &parse(&request.body)?)
}
