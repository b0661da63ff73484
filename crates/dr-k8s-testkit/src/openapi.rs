//! The OpenAPI v3 documents (`/openapi/v3` and one per group version) and `fieldValidation`:
//! unknown fields found by the same schemas the documents publish.

use std::hash::{Hash, Hasher};

use serde_json::{Map, Value, json};

use crate::registry::{self, ResourceType};
use crate::schema;
use crate::status::ApiError;
use crate::store::Store;

/// The media types a PATCH of a built-in kind takes; a custom resource's lack the strategic
/// merge patch.
const PATCH_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// The group versions served now: `api/v1`, `apis/apps/v1`, ... with their resources.
fn group_versions(store: &Store) -> Vec<(String, Vec<&'static ResourceType>)> {
    let mut out: Vec<(String, Vec<&'static ResourceType>)> = Vec::new();
    for kind in registry::RESOURCES
        .iter()
        .chain(store.custom_resources().iter().copied())
    {
        let path = document_path(kind);
        match out.iter_mut().find(|(p, _)| *p == path) {
            Some((_, kinds)) => kinds.push(kind),
            None => out.push((path, vec![kind])),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `api/v1` or `apis/{group}/{version}`: where a kind's document is, under `/openapi/v3/`.
fn document_path(kind: &ResourceType) -> String {
    if kind.group.is_empty() {
        format!("api/{}", kind.version)
    } else {
        format!("apis/{}/{}", kind.group, kind.version)
    }
}

/// A document's hash: what `?hash=` names and the ETag carries (of aggregated discovery's
/// documents too). Not Kubernetes' SHA-512, but
/// as stable: the same document has the same hash for the life of the server.
pub(crate) fn hash(document: &Value) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    document.to_string().hash(&mut hasher);
    format!("{:016X}", hasher.finish())
}

/// What `/openapi/v3/...` answers: a document, or where it moved.
#[derive(Debug)]
pub(crate) enum Served {
    /// The document and its ETag; `immutable` when asked for by its current hash.
    Document {
        body: Value,
        etag: String,
        immutable: bool,
    },
    /// `?hash=` named an older document: 301 to the current one.
    Moved(String),
}

/// `GET /openapi/v3` (`rest` empty) or `/openapi/v3/{rest}`, `query` the raw query string.
pub(crate) fn serve(store: &Store, rest: &str, query: &str) -> Result<Served, ApiError> {
    let served = group_versions(store);
    if rest.is_empty() {
        let paths: Map<String, Value> = served
            .iter()
            .map(|(path, kinds)| {
                let url = format!("/openapi/v3/{path}?hash={}", hash(&document(store, kinds)));
                (path.clone(), json!({"serverRelativeURL": url}))
            })
            .collect();
        let body = json!({"paths": paths});
        let etag = hash(&body);
        return Ok(Served::Document {
            body,
            etag,
            immutable: false,
        });
    }
    let (_, kinds) = served
        .iter()
        .find(|(path, _)| path == rest)
        .ok_or_else(ApiError::no_route)?;
    let body = document(store, kinds);
    let etag = hash(&body);
    let asked = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("hash="))
        .filter(|h| !h.is_empty());
    match asked {
        Some(h) if h != etag => Ok(Served::Moved(format!("/openapi/v3/{rest}?hash={etag}"))),
        _ => Ok(Served::Document {
            body,
            etag,
            immutable: asked.is_some(),
        }),
    }
}

/// The name of a kind's schema among the components: Kubernetes' Go package path for the
/// built-in kinds (`io.k8s.api.apps.v1.Deployment`), the reversed group for custom ones
/// (`io.livekit.v1.Room`), as the real server names them.
fn component_name(kind: &ResourceType) -> String {
    let package = match kind.group {
        _ if kind.custom => kind.group.split('.').rev().collect::<Vec<_>>().join("."),
        "" => "io.k8s.api.core".to_owned(),
        crate::crd::GROUP => "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions".to_owned(),
        group => format!("io.k8s.api.{}", group.split('.').next().unwrap_or(group)),
    };
    format!("{package}.{}.{}", kind.version, kind.kind)
}

fn gvk(kind: &ResourceType) -> Value {
    json!({"group": kind.group, "version": kind.version, "kind": kind.kind})
}

/// The schema of a kind, as the documents publish it and `fieldValidation` checks it: a
/// built-in kind's from [`schema`], a custom resource's from its definition's
/// `openAPIV3Schema` (with `apiVersion`, `kind` and `metadata` as for every kind).
pub(crate) fn kind_schema(store: &Store, kind: &ResourceType) -> Value {
    let mut schema = if kind.custom {
        custom_schema(store, kind)
    } else {
        schema::kind_schema(kind.kind)
    };
    schema["x-kubernetes-group-version-kind"] = json!([gvk(kind)]);
    schema
}

fn custom_schema(store: &Store, kind: &ResourceType) -> Value {
    let definitions = registry::find(crate::crd::GROUP, "v1", "customresourcedefinitions")
        .expect("definitions are served");
    let name = format!("{}.{}", kind.plural, kind.group);
    let definition = store.get(definitions, None, &name).unwrap_or(Value::Null);
    let version = definition["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == kind.version);
    let mut schema = version
        .map(|v| v["schema"]["openAPIV3Schema"].clone())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"type": "object"}));
    let common = [
        ("apiVersion", json!({"type": "string"})),
        ("kind", json!({"type": "string"})),
        ("metadata", schema::to_schema(&schema::OBJECT_META)),
    ];
    if !schema["properties"].is_object() {
        schema["properties"] = json!({});
    }
    if let Some(properties) = schema["properties"].as_object_mut() {
        for (field, value) in common {
            properties.insert(field.into(), value);
        }
    }
    schema
}

fn parameter(name: &str, location: &str, kind: &str) -> Value {
    let mut parameter = json!({"name": name, "in": location, "schema": {"type": kind}});
    if location == "path" {
        parameter["required"] = true.into();
    }
    parameter
}

/// An operation on a kind's objects: its action, the kind, its query parameters, its body.
fn operation(kind: &ResourceType, action: &str, id: &str, reference: &Value) -> Value {
    let query: &[(&str, &str)] = match action {
        "post" | "put" => &[
            ("dryRun", "string"),
            ("fieldManager", "string"),
            ("fieldValidation", "string"),
        ],
        "patch" => &[
            ("dryRun", "string"),
            ("fieldManager", "string"),
            ("fieldValidation", "string"),
            ("force", "boolean"),
        ],
        "list" => &[
            ("labelSelector", "string"),
            ("fieldSelector", "string"),
            ("limit", "integer"),
            ("continue", "string"),
            ("resourceVersion", "string"),
            ("watch", "boolean"),
            ("allowWatchBookmarks", "boolean"),
            ("sendInitialEvents", "boolean"),
            ("timeoutSeconds", "integer"),
        ],
        "delete" => &[("dryRun", "string"), ("gracePeriodSeconds", "integer")],
        _ => &[],
    };
    let reply =
        json!({"description": "OK", "content": {"application/json": {"schema": reference}}});
    let mut op = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(kind),
        "parameters": query.iter().map(|(n, t)| parameter(n, "query", t)).collect::<Vec<_>>(),
        "responses": {"200": reply},
    });
    let body_types: &[&str] = match action {
        "post" | "put" => &["application/json"],
        "patch" if kind.custom => &PATCH_TYPES[..3],
        "patch" => PATCH_TYPES,
        _ => &[],
    };
    if !body_types.is_empty() {
        let patch =
            json!({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"});
        let schema = if action == "patch" { &patch } else { reference };
        let content: Map<String, Value> = body_types
            .iter()
            .map(|t| ((*t).to_owned(), json!({"schema": schema})))
            .collect();
        op["requestBody"] = json!({"content": content, "required": true});
    }
    if matches!(action, "post" | "patch") {
        op["responses"]["201"] = op["responses"]["200"].clone();
    }
    op
}

/// The document of one group version: a path per collection, object and subresource, and
/// each kind's schema.
fn document(store: &Store, kinds: &[&'static ResourceType]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({"type": "object", "description": "the body of a PATCH, in the format its Content-Type names"}),
    );
    for kind in kinds {
        let component = component_name(kind);
        let reference = json!({"$ref": format!("#/components/schemas/{component}")});
        schemas.insert(component, kind_schema(store, kind));
        let root = if kind.group.is_empty() {
            format!("/api/{}", kind.version)
        } else {
            format!("/apis/{}/{}", kind.group, kind.version)
        };
        let scoped = if kind.namespaced {
            format!("{root}/namespaces/{{namespace}}/{}", kind.plural)
        } else {
            format!("{root}/{}", kind.plural)
        };
        let id = |verb: &str, suffix: &str| format!("{verb}{}{suffix}", kind.kind);
        let op = |action: &str, id: String| operation(kind, action, &id, &reference);
        let mut scope = vec![parameter("pretty", "query", "string")];
        if kind.namespaced {
            scope.push(parameter("namespace", "path", "string"));
            paths.insert(
                format!("{root}/{}", kind.plural),
                json!({"get": op("list", id("list", "ForAllNamespaces")),
                       "parameters": [parameter("pretty", "query", "string")]}),
            );
        }
        paths.insert(
            scoped.clone(),
            json!({"get": op("list", id("list", "")), "post": op("post", id("create", "")),
                   "parameters": scope}),
        );
        let mut named = scope.clone();
        named.push(parameter("name", "path", "string"));
        paths.insert(
            format!("{scoped}/{{name}}"),
            json!({"get": op("get", id("read", "")), "put": op("put", id("replace", "")),
                   "patch": op("patch", id("patch", "")), "delete": op("delete", id("delete", "")),
                   "parameters": named}),
        );
        if kind.status {
            paths.insert(
                format!("{scoped}/{{name}}/status"),
                json!({"get": op("get", id("read", "Status")),
                       "put": op("put", id("replace", "Status")),
                       "patch": op("patch", id("patch", "Status")),
                       "parameters": named}),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": registry::version()["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// How a write treats fields its schema does not know (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldValidation {
    Ignore,
    /// The default, as since Kubernetes 1.27.
    Warn,
    Strict,
}

impl FieldValidation {
    /// The directive a query's `fieldValidation` names; 400 for another.
    pub(crate) fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \
                 \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// One step of a path into an object.
#[derive(Debug, Clone)]
enum Step {
    Field(String),
    /// A list's item: its index, and its key where the list is keyed.
    Item(usize, Option<(String, Value)>),
}

/// The fields of `value` its schema does not know, at the levels the schema closes: an
/// object with `properties` (or of type object) and neither `additionalProperties` nor
/// `x-kubernetes-preserve-unknown-fields`.
fn unknown(schema: &Value, value: &Value, path: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match value {
        Value::Object(members) => {
            let properties = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let open = schema["x-kubernetes-preserve-unknown-fields"] == true
                || (properties.is_none() && schema["type"] != "object");
            for (field, member) in members {
                path.push(Step::Field(field.clone()));
                match properties.and_then(|p| p.get(field)).or(additional) {
                    Some(inner) => unknown(inner, member, path, out),
                    None if !open => out.push(path.clone()),
                    None => {}
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let Some(inner) = schema.get("items") else {
                return;
            };
            let key = schema["x-kubernetes-patch-merge-key"].as_str();
            for (i, item) in items.iter().enumerate() {
                let keyed = key.and_then(|k| Some((k.to_owned(), item.get(k)?.clone())));
                path.push(Step::Item(i, keyed));
                unknown(inner, item, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `spec.template.spec.containers[0].foo`, as a strict decoding error names a field.
fn decoding_path(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Field(field) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(field);
            }
            Step::Item(i, _) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

/// `.spec.template.spec.containers[name="web"].foo`, as server-side apply names a field.
fn apply_path(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Field(field) => {
                text.push('.');
                text.push_str(field);
            }
            Step::Item(_, Some((key, value))) => text.push_str(&format!("[{key}={value}]")),
            Step::Item(i, None) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

/// The unknown fields of an object of a kind; none looked for with `Ignore`.
fn unknown_fields(
    store: &Store,
    kind: &ResourceType,
    object: &Value,
    directive: FieldValidation,
) -> Vec<Vec<Step>> {
    let mut found = Vec::new();
    if directive != FieldValidation::Ignore {
        let custom;
        let schema = if kind.custom {
            custom = custom_schema(store, kind);
            &custom
        } else {
            schema::cached_kind_schema(kind.kind)
        };
        unknown(schema, object, &mut Vec::new(), &mut found);
    }
    found
}

/// What a write does with `fieldValidation`: nothing to say, or the warnings to send.
pub(crate) type Warnings = Vec<String>;

/// Checks an object about to be created or updated, or an object as a patch leaves it:
/// unknown fields refused (400 `BadRequest`, "strict decoding error: unknown field ...")
/// with `Strict`, a warning each with `Warn`, nothing with `Ignore`. `whole` is whether the
/// request's body was the whole object (create, update), whose error names the kind.
pub(crate) fn check(
    store: &Store,
    kind: &ResourceType,
    object: &Value,
    directive: FieldValidation,
    whole: bool,
) -> Result<Warnings, ApiError> {
    let found = unknown_fields(store, kind, object, directive);
    let fields: Vec<String> = found
        .iter()
        .map(|p| format!("unknown field {:?}", decoding_path(p)))
        .collect();
    if fields.is_empty() || directive == FieldValidation::Warn {
        return Ok(fields);
    }
    let mut message = format!("strict decoding error: {}", fields.join(", "));
    if whole {
        message = format!(
            "{} in version {:?} cannot be handled as a {}: {message}",
            kind.kind, kind.version, kind.kind
        );
    }
    Err(ApiError::bad_request(message))
}

/// [`check`] for a server-side apply: the real server's words for a field its schema does
/// not declare ("failed to create typed patch object (ns/name; apps/v1, Kind=Deployment):
/// .spec.foo: field not declared in schema"), a 500 as there.
pub(crate) fn check_apply(
    store: &Store,
    kind: &ResourceType,
    applied: &Value,
    namespace: Option<&str>,
    name: &str,
    directive: FieldValidation,
) -> Result<Warnings, ApiError> {
    let found = unknown_fields(store, kind, applied, directive);
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let fields: Vec<String> = found.iter().map(|p| apply_path(p)).collect();
    if directive == FieldValidation::Warn {
        return Ok(fields
            .iter()
            .map(|f| format!("{f}: field not declared in schema"))
            .collect());
    }
    let errors = match fields.as_slice() {
        [one] => format!("{one}: field not declared in schema"),
        many => {
            let lines: Vec<String> = many
                .iter()
                .map(|f| format!("  {f}: field not declared in schema"))
                .collect();
            format!("errors:\n{}", lines.join("\n"))
        }
    };
    Err(ApiError {
        code: 500,
        reason: "",
        message: format!(
            "failed to create typed patch object ({}/{name}; {}/{}, Kind={}): {errors}",
            namespace.unwrap_or(""),
            kind.group,
            kind.version,
            kind.kind
        ),
        details: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths_of(schema: &Value, value: &Value) -> Vec<String> {
        let mut found = Vec::new();
        unknown(schema, value, &mut Vec::new(), &mut found);
        found.iter().map(|p| decoding_path(p)).collect()
    }

    #[test]
    fn unknown_fields_are_found_where_the_schema_is_closed() {
        let schema = schema::kind_schema("Deployment");
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"any": "thing"}, "colour": "red"},
            "spec": {"replicas": 1, "foo": 1, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx", "bar": true,
                 "env": [{"name": "A", "value": "1", "baz": 2}]}]}}},
            "status": {"anything": {"goes": 1}}});
        assert_eq!(
            paths_of(&schema, &deployment),
            [
                "metadata.colour",
                "spec.foo",
                "spec.template.spec.containers[0].bar",
                "spec.template.spec.containers[0].env[0].baz",
            ]
        );
        let custom = json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"size": {"type": "integer"}}}, "status": {"type": "object",
            "x-kubernetes-preserve-unknown-fields": true}}});
        let room = json!({"spec": {"size": 1, "colour": "red"}, "status": {"x": 1}, "extra": 1});
        assert_eq!(paths_of(&custom, &room), ["extra", "spec.colour"]);
    }
}
