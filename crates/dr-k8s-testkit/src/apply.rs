//! Server-side apply and the `metadata.managedFields` it rests on, approximated: field sets
//! are the paths to an object's leaves, keyed lists of the built-in types (`containers` by
//! `name`, ...) are merged item by item and every other list is one atomic value.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::patch::merge_key;
use crate::registry::ResourceType;
use crate::status::ApiError;

/// Paths to leaves, each element `f:<field>` or `k:<key as JSON>` (a keyed list's item), as
/// `fieldsV1` spells them.
type FieldSet = BTreeSet<Vec<String>>;

/// The top-level fields a manager never owns: identity, server-set metadata, and `status`
/// where it is a subresource.
fn ignored(kind: &ResourceType, path: &[String]) -> bool {
    match path {
        [top] => {
            matches!(top.as_str(), "f:apiVersion" | "f:kind") || (kind.status && top == "f:status")
        }
        [meta, field] if meta == "f:metadata" => matches!(
            field.as_str(),
            "f:name"
                | "f:namespace"
                | "f:uid"
                | "f:resourceVersion"
                | "f:generation"
                | "f:creationTimestamp"
                | "f:managedFields"
                | "f:selfLink"
                | "f:deletionTimestamp"
        ),
        _ => false,
    }
}

/// The key of a keyed list's item, as a `k:` element; `None` for an item of an atomic list.
fn item_key(field: &str, item: &Value, structured: bool) -> Option<String> {
    if !structured {
        return None;
    }
    let key = merge_key(field, item)?;
    let value = item.get(key)?;
    Some(format!("k:{}", json!({key: value})))
}

/// Whether every item of a list has a key, so the list merges item by item.
fn keyed(field: &str, items: &[Value], structured: bool) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|i| item_key(field, i, structured).is_some())
}

fn collect(value: &Value, path: &mut Vec<String>, structured: bool, out: &mut FieldSet) {
    let Value::Object(members) = value else {
        out.insert(path.clone());
        return;
    };
    if members.is_empty() {
        out.insert(path.clone());
    }
    for (field, member) in members {
        path.push(format!("f:{field}"));
        match member {
            Value::Array(items) if keyed(field, items, structured) => {
                for item in items {
                    path.push(item_key(field, item, structured).expect("keyed"));
                    collect(item, path, structured, out);
                    path.pop();
                }
            }
            Value::Object(_) => collect(member, path, structured, out),
            _ => {
                out.insert(path.clone());
            }
        }
        path.pop();
    }
}

/// The fields an object (or an applied configuration) sets.
fn fields_of(kind: &ResourceType, object: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    collect(object, &mut Vec::new(), !kind.custom, &mut out);
    out.retain(|p| !(1..=p.len()).any(|n| ignored(kind, &p[..n])));
    out
}

/// The value at a path, if there is one.
fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut at = value;
    for element in path {
        at = if let Some(field) = element.strip_prefix("f:") {
            at.get(field)?
        } else {
            let key: Value = serde_json::from_str(element.strip_prefix("k:")?).ok()?;
            let key = key.as_object()?;
            at.as_array()?
                .iter()
                .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))?
        };
    }
    Some(at)
}

/// Removes what is at a path.
fn remove(value: &mut Value, path: &[String]) {
    let Some((last, head)) = path.split_last() else {
        return;
    };
    let mut at = value;
    for element in head {
        let next = if let Some(field) = element.strip_prefix("f:") {
            at.get_mut(field)
        } else {
            let key: Option<Map<String, Value>> = element
                .strip_prefix("k:")
                .and_then(|k| serde_json::from_str(k).ok());
            let Some(key) = key else { return };
            at.as_array_mut().and_then(|items| {
                items
                    .iter_mut()
                    .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))
            })
        };
        let Some(next) = next else { return };
        at = next;
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(members) = at.as_object_mut() {
            members.remove(field);
        }
    } else if let Some(key) = last
        .strip_prefix("k:")
        .and_then(|k| serde_json::from_str::<Map<String, Value>>(k).ok())
        && let Some(items) = at.as_array_mut()
    {
        items.retain(|item| !key.iter().all(|(k, v)| item.get(k) == Some(v)));
    }
}

/// A field set as `fieldsV1`: nested objects, `{}` at the leaves, `"."` marking a keyed
/// item.
fn to_fields_v1(fields: &FieldSet) -> Value {
    let mut root = json!({});
    for path in fields {
        let mut at = &mut root;
        for element in path {
            at = at
                .as_object_mut()
                .expect("built of objects")
                .entry(element.clone())
                .or_insert_with(|| json!({}));
            if element.starts_with("k:") {
                at["."] = json!({});
            }
        }
    }
    root
}

fn from_fields_v1(value: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
    let Some(members) = value.as_object() else {
        return;
    };
    let children: Vec<_> = members.iter().filter(|(k, _)| *k != ".").collect();
    if children.is_empty() {
        if !path.is_empty() {
            out.insert(path.clone());
        }
        return;
    }
    for (element, child) in children {
        path.push(element.clone());
        from_fields_v1(child, path, out);
        path.pop();
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Debug)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Value,
    subresource: Option<Value>,
    fields: FieldSet,
}

fn entries(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let mut fields = FieldSet::new();
            from_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut fields);
            Entry {
                manager: e["manager"].as_str().unwrap_or("").to_owned(),
                operation: e["operation"].as_str().unwrap_or("Update").to_owned(),
                api_version: e["apiVersion"].as_str().unwrap_or("").to_owned(),
                time: e["time"].clone(),
                subresource: e.get("subresource").cloned(),
                fields,
            }
        })
        .collect()
}

fn set_entries(object: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut entry = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(subresource) = e.subresource {
                entry["subresource"] = subresource;
            }
            entry
        })
        .collect();
    if list.is_empty() {
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = Value::Array(list);
    }
}

fn now() -> Value {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
        .into()
}

/// `.spec.template.spec.containers[name="web"].image`: a path as conflicts name it.
fn describe(path: &[String]) -> String {
    let mut text = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            text.push('.');
            text.push_str(field);
        } else if let Some(Ok(Value::Object(key))) = element
            .strip_prefix("k:")
            .map(serde_json::from_str::<Value>)
        {
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            text.push_str(&format!("[{}]", parts.join(",")));
        }
    }
    text
}

/// Merges an applied configuration into an object: objects member by member, keyed lists
/// item by item (new items at the end), anything else replaced.
fn merge(target: &mut Value, applied: &Value, structured: bool) {
    let (Value::Object(target), Value::Object(applied)) = (target, applied) else {
        return;
    };
    for (field, value) in applied {
        let slot = target.entry(field.clone()).or_insert(Value::Null);
        match (value, &mut *slot) {
            (Value::Object(_), Value::Object(_)) => merge(slot, value, structured),
            (Value::Array(items), Value::Array(list)) if keyed(field, items, structured) => {
                for item in items {
                    let key = item_key(field, item, structured).expect("keyed");
                    let found = list
                        .iter_mut()
                        .find(|l| item_key(field, l, structured).as_deref() == Some(&key));
                    match found {
                        Some(existing) => merge(existing, item, structured),
                        None => list.push(item.clone()),
                    }
                }
            }
            _ => *slot = value.clone(),
        }
    }
}

/// What a manager's update of an object changed becomes that manager's (an `Update` entry)
/// and no longer anyone else's, as the real server tracks writes other than apply. If the
/// write sets `managedFields` itself (kubectl does, upgrading client-side apply's), they are
/// taken as given.
pub(crate) fn track_update(
    kind: &ResourceType,
    current: Option<&Value>,
    next: &mut Value,
    manager: &str,
) {
    let given = next["metadata"].get("managedFields").cloned();
    let before = current.and_then(|c| c["metadata"].get("managedFields").cloned());
    if given.is_some() && given != before {
        return;
    }
    if let (Some(before), Some(metadata)) = (before, next["metadata"].as_object_mut()) {
        metadata.insert("managedFields".into(), before);
    }
    let changed: FieldSet = fields_of(kind, next)
        .into_iter()
        .filter(|p| current.is_none_or(|c| get(c, p) != get(next, p)))
        .collect();
    if changed.is_empty() {
        return;
    }
    let mut list = entries(next);
    for entry in &mut list {
        entry.fields.retain(|p| !changed.contains(p));
    }
    let api_version = kind.api_version();
    match list
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource.is_none())
    {
        Some(entry) => {
            entry.fields.extend(changed);
            entry.time = now();
        }
        None => list.push(Entry {
            manager: manager.to_owned(),
            operation: "Update".into(),
            api_version,
            time: now(),
            subresource: None,
            fields: changed,
        }),
    }
    set_entries(next, list);
}

/// The object a server-side apply makes: `applied` (already checked to be an object of the
/// resource) merged into `current`, or `applied` alone if there is no object yet, with
/// `managedFields` updated. Fields another manager owns whose values differ are a 409
/// Conflict naming them, unless `force` (then they change hands). Fields the manager applied
/// before and applies no more are removed unless another manager owns them.
pub(crate) fn apply(
    kind: &ResourceType,
    current: Option<&Value>,
    mut applied: Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    if let Some(metadata) = applied["metadata"].as_object_mut() {
        metadata.remove("managedFields");
    }
    let structured = !kind.custom;
    let wanted = fields_of(kind, &applied);
    let api_version = applied["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mine = Entry {
        manager: manager.to_owned(),
        operation: "Apply".into(),
        api_version,
        time: now(),
        subresource: None,
        fields: wanted.clone(),
    };
    let Some(current) = current else {
        let mut created = applied;
        set_entries(&mut created, vec![mine]);
        return Ok(created);
    };
    let mut list = entries(current);
    let is_mine = |e: &Entry| e.manager == manager && e.operation == "Apply";
    // Conflicts: fields another manager owns, set to another value.
    let mut conflicts: Vec<(String, String, Vec<String>)> = Vec::new();
    for entry in list.iter().filter(|e| e.manager != manager) {
        let differing: Vec<&Vec<String>> = entry
            .fields
            .iter()
            .filter(|p| wanted.contains(*p) && get(current, p) != get(&applied, p))
            .collect();
        if !differing.is_empty() {
            let paths = differing.iter().map(|p| describe(p)).collect();
            conflicts.push((entry.manager.clone(), entry.api_version.clone(), paths));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict(&conflicts));
    }
    if force {
        for entry in list.iter_mut().filter(|e| e.manager != manager) {
            entry
                .fields
                .retain(|p| !wanted.contains(p) || get(current, p) == get(&applied, p));
        }
    }
    let previous: FieldSet = list
        .iter()
        .filter(|e| is_mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let others: FieldSet = list
        .iter()
        .filter(|e| !is_mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut next = current.clone();
    merge(&mut next, &applied, structured);
    // What this manager set before and sets no more goes, with the objects and keyed items
    // it leaves empty, unless someone else owns it or something under it.
    let kept = |prefix: &[String]| wanted.iter().chain(&others).any(|p| p.starts_with(prefix));
    let mut dropped: Vec<&Vec<String>> = previous.iter().filter(|p| !kept(p)).collect();
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in dropped {
        // An item's key stays while the item does: the item goes below, found by it.
        let is_key = match path.as_slice() {
            [.., item, field] if item.starts_with("k:") => field
                .strip_prefix("f:")
                .is_some_and(|f| item.contains(&format!("\"{f}\":"))),
            _ => false,
        };
        if !is_key {
            remove(&mut next, path);
        }
        for depth in (1..path.len()).rev() {
            let ancestor = &path[..depth];
            if kept(ancestor) {
                break;
            }
            let empty = match get(&next, ancestor) {
                Some(Value::Object(members)) => {
                    members.is_empty() || ancestor[depth - 1].starts_with("k:")
                }
                _ => false,
            };
            if !empty {
                break;
            }
            remove(&mut next, ancestor);
        }
    }
    list.retain(|e| !is_mine(e));
    list.push(mine);
    set_entries(&mut next, list);
    Ok(next)
}

/// The 409 of an apply that conflicts, in the real server's words, each field a cause.
fn conflict(conflicts: &[(String, String, Vec<String>)]) -> ApiError {
    let count: usize = conflicts.iter().map(|(_, _, paths)| paths.len()).sum();
    let mut causes = Vec::new();
    let mut parts = Vec::new();
    for (manager, api_version, paths) in conflicts {
        for path in paths {
            causes.push(json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{manager}\" using {api_version}"),
                "field": path,
            }));
        }
        if count == 1 {
            parts.push(format!(
                "conflict with \"{manager}\" using {api_version}: {}",
                paths[0]
            ));
        } else {
            let list: Vec<String> = paths.iter().map(|p| format!("- {p}")).collect();
            parts.push(format!(
                "conflicts with \"{manager}\" using {api_version}:\n{}",
                list.join("\n")
            ));
        }
    }
    let plural = if count == 1 { "" } else { "s" };
    ApiError {
        code: 409,
        reason: "Conflict",
        message: format!(
            "Apply failed with {count} conflict{plural}: {}",
            parts.join("\n")
        ),
        details: Some(json!({"causes": causes})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry;

    fn deployments() -> &'static ResourceType {
        registry::find("apps", "v1", "deployments").unwrap()
    }

    #[test]
    fn field_sets_name_leaves_and_keyed_items_and_round_trip_through_fields_v1() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "a", "args": ["x"]}]}}},
            "status": {"replicas": 2}});
        let fields = fields_of(deployments(), &object);
        let shown: Vec<String> = fields.iter().map(|p| describe(p)).collect();
        assert_eq!(
            shown,
            [
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"web\"].args",
                ".spec.template.spec.containers[name=\"web\"].image",
                ".spec.template.spec.containers[name=\"web\"].name",
            ]
        );
        let mut back = FieldSet::new();
        from_fields_v1(&to_fields_v1(&fields), &mut Vec::new(), &mut back);
        assert_eq!(back, fields);
    }

    #[test]
    fn a_field_dropped_from_an_apply_goes_unless_another_manager_owns_it() {
        let kind = deployments();
        let first = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 2}});
        let made = apply(kind, None, first, "me", false).unwrap();
        let second = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "1"}}});
        let next = apply(kind, Some(&made), second, "me", false).unwrap();
        assert_eq!(next["metadata"]["labels"], json!({"a": "1"}));
        assert!(next["spec"].get("replicas").is_none(), "{next}");
        let other = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 3}});
        let refused = apply(kind, Some(&made), other.clone(), "you", false).unwrap_err();
        assert_eq!(refused.code, 409);
        assert_eq!(
            refused.message,
            "Apply failed with 1 conflict: conflict with \"me\" using apps/v1: .spec.replicas"
        );
        let forced = apply(kind, Some(&made), other, "you", true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let owners: Vec<&str> = forced["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(owners, ["me", "you"]);
        assert!(
            !forced["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"].is_object(),
            "replicas changed hands"
        );
    }
}
