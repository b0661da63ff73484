//! The three patch formats the API server takes as JSON: merge patch (RFC 7386), JSON patch
//! (RFC 6902) and Kubernetes' strategic merge patch for the lists it merges by key.

use serde_json::{Map, Value};

use crate::status::ApiError;

/// A patch's format, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Json,
    Strategic,
}

impl PatchKind {
    /// The format a media type names, if it is one served.
    pub(crate) fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            _ => None,
        }
    }
}

/// Applies `patch` (already parsed) to a copy of `target`.
pub(crate) fn apply(kind: PatchKind, target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut patched = target.clone();
    match kind {
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            merge(&mut patched, patch);
        }
        PatchKind::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            strategic(&mut patched, patch);
        }
        PatchKind::Json => {
            let Value::Array(operations) = patch else {
                return Err(ApiError::bad_request("a JSON patch must be an array"));
            };
            for operation in operations {
                json_operation(&mut patched, operation)?;
            }
        }
    }
    Ok(patched)
}

/// RFC 7386: objects merge member by member, `null` removes, anything else replaces.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in members {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The key a list is merged by in a strategic merge patch, for the lists of the built-in
/// types whose patch strategy is `merge`. `ports` of a container merge by `containerPort`, a
/// Service's by `port`; `volumeMounts` by `mountPath`, as in Kubernetes. The OpenAPI
/// documents (`schema`) publish the same keys.
pub(crate) fn merge_key(field: &str, item: &Value) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "ports" if item.get("containerPort").is_some() => Some("containerPort"),
        "ports" => Some("port"),
        _ => None,
    }
}

/// A strategic merge patch: a merge patch whose keyed lists merge item by item, with the
/// `$patch: replace` and `$patch: delete` directives and `$setElementOrder`. Other `$`
/// directives (`$retainKeys`, `$deleteFromPrimitiveList`) are ignored.
fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return;
    };
    if members.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = without_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(object) = target else {
        unreachable!("made an object above")
    };
    for (key, value) in members {
        if key.starts_with('$') {
            continue;
        }
        if value.is_null() || directive(value) == Some("delete") {
            object.remove(key);
            continue;
        }
        let current = object.entry(key.clone()).or_insert(Value::Null);
        match (value, &mut *current) {
            (Value::Array(items), Value::Array(list))
                if items.first().and_then(|i| merge_key(key, i)).is_some() =>
            {
                merge_list(list, items, key);
            }
            (Value::Array(items), _) => {
                *current = Value::Array(
                    items
                        .iter()
                        .filter(|i| directive(i) != Some("replace"))
                        .map(without_directives)
                        .collect(),
                );
            }
            _ => strategic(current, value),
        }
    }
    for (key, order) in members {
        if let (Some(field), Value::Array(order)) = (key.strip_prefix("$setElementOrder/"), order)
            && let Some(Value::Array(list)) = object.get_mut(field)
        {
            set_element_order(list, order, field);
        }
    }
}

/// `$setElementOrder/<field>`, as kubectl sends it with a keyed list: the items it names in
/// its order, then the others (the server's own) in theirs. (Kubernetes interleaves the
/// server's own items where they were; with none, as when kubectl owns the list, the order
/// is the same.)
fn set_element_order(list: &mut [Value], order: &[Value], field: &str) {
    let position = |item: &Value| {
        let key = merge_key(field, item)?;
        order.iter().position(|o| o.get(key) == item.get(key))
    };
    // A stable sort: the named items by their place in the order, the others after.
    list.sort_by_key(|item| position(item).unwrap_or(usize::MAX));
}

fn directive(value: &Value) -> Option<&str> {
    value.get("$patch").and_then(Value::as_str)
}

fn without_directives(value: &Value) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Merges a keyed list: an item of the patch whose key matches an item of the list is merged
/// into it (or removes it, with `$patch: delete`); others are appended. A `{"$patch": "replace"}`
/// item makes the patch's items the whole list.
fn merge_list(list: &mut Vec<Value>, items: &[Value], field: &str) {
    if items.iter().any(|i| directive(i) == Some("replace")) {
        *list = items
            .iter()
            .filter(|i| directive(i) != Some("replace"))
            .map(without_directives)
            .collect();
        return;
    }
    for item in items {
        let Some(key) = merge_key(field, item) else {
            list.push(item.clone());
            continue;
        };
        let Some(wanted) = item.get(key) else {
            list.push(without_directives(item));
            continue;
        };
        let position = list.iter().position(|l| l.get(key) == Some(wanted));
        match (directive(item), position) {
            (Some("delete"), Some(at)) => {
                list.remove(at);
            }
            (Some("delete"), None) => {}
            (_, Some(at)) => strategic(&mut list[at], item),
            (_, None) => list.push(without_directives(item)),
        }
    }
}

/// One RFC 6902 operation.
fn json_operation(target: &mut Value, operation: &Value) -> Result<(), ApiError> {
    let field = |name: &str| {
        operation.get(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "a JSON patch operation lacks {name:?}: {operation}"
            ))
        })
    };
    let op = field("op")?.as_str().unwrap_or_default();
    let path = pointer(field("path")?)?;
    match op {
        "add" => add(target, &path, field("value")?.clone()),
        "remove" => remove(target, &path).map(drop),
        "replace" => {
            remove(target, &path)?;
            add(target, &path, field("value")?.clone())
        }
        "move" => {
            let from = pointer(field("from")?)?;
            let value = remove(target, &from)?;
            add(target, &path, value)
        }
        "copy" => {
            let from = pointer(field("from")?)?;
            let value = resolve(target, &from)?.clone();
            add(target, &path, value)
        }
        "test" => {
            let expected = field("value")?;
            if resolve(target, &path)? == expected {
                Ok(())
            } else {
                Err(unprocessable(format!(
                    "testing value {} failed: not {expected}",
                    join(&path)
                )))
            }
        }
        other => Err(ApiError::bad_request(format!(
            "unknown JSON patch operation {other:?}"
        ))),
    }
}

/// A failed JSON patch, as the real server reports it: 422.
fn unprocessable(message: String) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message,
        details: None,
    }
}

/// A JSON pointer's reference tokens, unescaped (`~1` is `/`, `~0` is `~`).
fn pointer(path: &Value) -> Result<Vec<String>, ApiError> {
    let text = path
        .as_str()
        .ok_or_else(|| ApiError::bad_request(format!("a JSON pointer is a string: {path}")))?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err(ApiError::bad_request(format!(
            "a JSON pointer starts with '/': {text:?}"
        )));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn join(path: &[String]) -> String {
    path.iter().map(|t| format!("/{t}")).collect()
}

fn resolve<'a>(target: &'a Value, path: &[String]) -> Result<&'a Value, ApiError> {
    let mut at = target;
    for token in path {
        at = match at {
            Value::Object(members) => members.get(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok(at)
}

fn missing(path: &[String]) -> ApiError {
    unprocessable(format!(
        "doc is missing path: {:?}: missing value",
        join(path)
    ))
}

fn parent<'a>(target: &'a mut Value, path: &[String]) -> Result<&'a mut Value, ApiError> {
    let mut at = target;
    for token in path {
        at = match at {
            Value::Object(members) => members.get_mut(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok(at)
}

fn add(target: &mut Value, path: &[String], value: Value) -> Result<(), ApiError> {
    let Some((last, head)) = path.split_last() else {
        *target = value;
        return Ok(());
    };
    match parent(target, head)? {
        Value::Object(members) => {
            members.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let at = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= items.len())
                    .ok_or_else(|| missing(path))?
            };
            items.insert(at, value);
            Ok(())
        }
        _ => Err(missing(path)),
    }
}

fn remove(target: &mut Value, path: &[String]) -> Result<Value, ApiError> {
    let Some((last, head)) = path.split_last() else {
        return Err(ApiError::bad_request("cannot remove the whole document"));
    };
    match parent(target, head)? {
        Value::Object(members) => members.remove(last).ok_or_else(|| missing(path)),
        Value::Array(items) => {
            let at = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < items.len())
                .ok_or_else(|| missing(path))?;
            Ok(items.remove(at))
        }
        _ => Err(missing(path)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386_examples() {
        // RFC 7386 appendix A, a few of its cases.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            let mut t = target.clone();
            merge(&mut t, &patch);
            assert_eq!(t, expected, "{target} + {patch}");
        }
    }

    #[test]
    fn json_patch_follows_rfc_6902_examples() {
        let doc = json!({"foo": ["bar", "baz"], "a/b": 1, "q": {"x": 1}});
        let patch = json!([
            {"op": "add", "path": "/foo/1", "value": "qux"},
            {"op": "remove", "path": "/a~1b"},
            {"op": "replace", "path": "/q/x", "value": 2},
            {"op": "move", "from": "/q/x", "path": "/moved"},
            {"op": "copy", "from": "/foo/0", "path": "/foo/-"},
            {"op": "test", "path": "/moved", "value": 2},
        ]);
        let out = apply(PatchKind::Json, &doc, &patch).unwrap();
        assert_eq!(
            out,
            json!({"foo": ["bar", "qux", "baz", "bar"], "q": {}, "moved": 2})
        );
        let failing = json!([{"op": "test", "path": "/q/x", "value": 9}]);
        assert_eq!(
            apply(PatchKind::Json, &doc, &failing).unwrap_err().code,
            422
        );
        let missing = json!([{"op": "replace", "path": "/nope", "value": 9}]);
        assert_eq!(
            apply(PatchKind::Json, &doc, &missing).unwrap_err().code,
            422
        );
    }

    #[test]
    fn strategic_merge_merges_containers_and_env_by_name() {
        let doc = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
            {"name": "b", "image": "b:1", "ports": [{"containerPort": 80}]},
        ]}});
        let patch = json!({"spec": {"containers": [
            {"name": "a", "env": [{"name": "X", "value": "9"}, {"name": "Y", "$patch": "delete"}, {"name": "Z", "value": "3"}]},
            {"name": "b", "ports": [{"containerPort": 443}]},
        ]}});
        let out = apply(PatchKind::Strategic, &doc, &patch).unwrap();
        assert_eq!(
            out,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "9"}, {"name": "Z", "value": "3"}]},
                {"name": "b", "image": "b:1", "ports": [{"containerPort": 80}, {"containerPort": 443}]},
            ]}})
        );
        // kubectl's order of a keyed list: a new item in its place, not at the end.
        let ordered = json!({"spec": {"containers": [{"name": "a",
            "$setElementOrder/env": [{"name": "X"}, {"name": "W"}, {"name": "Y"}],
            "env": [{"name": "W", "value": "0"}]}]}});
        let out = apply(PatchKind::Strategic, &doc, &ordered).unwrap();
        let names: Vec<&Value> = out["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["name"])
            .collect();
        assert_eq!(names, ["X", "W", "Y"]);
        let replace =
            json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "c:1"}]}});
        let out = apply(PatchKind::Strategic, &doc, &replace).unwrap();
        assert_eq!(
            out,
            json!({"spec": {"containers": [{"name": "c", "image": "c:1"}]}})
        );
        // A list without a merge key is replaced, as in a merge patch.
        let args = json!({"args": ["x"]});
        let out = apply(PatchKind::Strategic, &json!({"args": ["a", "b"]}), &args).unwrap();
        assert_eq!(out, args);
    }
}
