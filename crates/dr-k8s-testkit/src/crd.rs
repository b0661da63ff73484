//! CustomResourceDefinitions: their checks, the resources they define, and the status the
//! apiextensions controllers give them.

use serde_json::{Value, json};

use crate::registry::ResourceType;
use crate::status::{ApiError, Subject};

/// The group of CustomResourceDefinitions.
pub(crate) const GROUP: &str = "apiextensions.k8s.io";

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn invalid(name: &str, message: String) -> ApiError {
    ApiError::invalid(
        Subject {
            group: GROUP,
            plural: "customresourcedefinitions",
            name,
        },
        message,
    )
}

/// The checks the real server makes that matter here: the name is `<plural>.<group>`, the
/// names and scope are given, and of at least one version exactly one is stored, each with
/// a schema.
pub(crate) fn validate(crd: &Value) -> Result<(), ApiError> {
    let name = text(crd, "/metadata/name");
    let group = text(crd, "/spec/group");
    let plural = text(crd, "/spec/names/plural");
    let required = [
        ("spec.group", group),
        ("spec.names.plural", plural),
        ("spec.names.kind", text(crd, "/spec/names/kind")),
    ];
    for (field, value) in required {
        if value.is_empty() {
            return Err(invalid(name, format!("{field}: Required value")));
        }
    }
    if name != format!("{plural}.{group}") {
        return Err(invalid(
            name,
            format!(
                "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
            ),
        ));
    }
    let scope = text(crd, "/spec/scope");
    if !matches!(scope, "Namespaced" | "Cluster") {
        return Err(invalid(
            name,
            format!(
                "spec.scope: Unsupported value: {scope:?}: supported values: \"Cluster\", \"Namespaced\""
            ),
        ));
    }
    let versions = crd["spec"]["versions"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if versions.is_empty() {
        return Err(invalid(name, "spec.versions: Invalid value: \"null\": must have exactly one version marked as storage version".into()));
    }
    for (i, version) in versions.iter().enumerate() {
        if text(version, "/name").is_empty() {
            return Err(invalid(
                name,
                format!("spec.versions[{i}].name: Required value"),
            ));
        }
        if !version["schema"]["openAPIV3Schema"].is_object() {
            return Err(invalid(
                name,
                format!(
                    "spec.versions[{i}].schema.openAPIV3Schema: Required value: schemas are required"
                ),
            ));
        }
    }
    let stored = versions.iter().filter(|v| v["storage"] == true).count();
    if stored != 1 {
        return Err(invalid(
            name,
            "spec.versions: Invalid value: must have exactly one version marked as storage version"
                .into(),
        ));
    }
    Ok(())
}

/// What the definition names, with the defaults the server fills in (`singular` is the
/// kind lowercased, `listKind` the kind and `List`).
fn accepted_names(crd: &Value) -> Value {
    let mut names = crd["spec"]["names"].clone();
    let kind = text(crd, "/spec/names/kind").to_owned();
    if text(&names, "/singular").is_empty() {
        names["singular"] = kind.to_ascii_lowercase().into();
    }
    if text(&names, "/listKind").is_empty() {
        names["listKind"] = format!("{kind}List").into();
    }
    names
}

/// The status the apiextensions controllers give a definition, at once: names accepted,
/// established, the storage version stored; a condition keeps its time if it was there.
pub(crate) fn status(crd: &Value, now: &str) -> Value {
    let since = |kind: &str| {
        crd["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == kind && c["status"] == "True")
            .map_or_else(|| now.into(), |c| c["lastTransitionTime"].clone())
    };
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        .collect();
    let mut stored: Vec<Value> = crd["status"]["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for version in storage {
        if !stored.contains(&version) {
            stored.push(version);
        }
    }
    json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted",
             "lastTransitionTime": since("Established")},
        ],
        "acceptedNames": accepted_names(crd),
        "storedVersions": stored,
    })
}

/// Text that lives as long as the resource types made of it (see [`resource_types`]).
fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// The resource a served version of a definition adds, one per served version.
///
/// Resource types are `&'static`, as the built-in ones are, so a custom one's strings are
/// leaked: a few hundred bytes for each distinct definition a server sees (the store keeps
/// every type it made and reuses an equal one), which a test server can afford.
pub(crate) fn resource_types(crd: &Value) -> Vec<ResourceType> {
    let names = accepted_names(crd);
    let leak_list = |field: &str| -> &'static [&'static str] {
        let list: Vec<&'static str> = names[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(leak)
            .collect();
        Box::leak(list.into_boxed_slice())
    };
    let short_names = leak_list("shortNames");
    let categories = leak_list("categories");
    crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] == true)
        .map(|version| ResourceType {
            group: leak(text(crd, "/spec/group")),
            version: leak(text(version, "/name")),
            kind: leak(text(&names, "/kind")),
            plural: leak(text(&names, "/plural")),
            singular: leak(text(&names, "/singular")),
            namespaced: text(crd, "/spec/scope") == "Namespaced",
            short_names,
            status: version["subresources"]["status"].is_object(),
            scale: false,
            custom: true,
            categories,
        })
        .collect()
}

/// Kubernetes' order of versions: GA before beta before alpha, higher numbers first, then
/// any other name alphabetically.
pub(crate) fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn rank(version: &str) -> Option<(u8, u64, u64)> {
        let rest = version.strip_prefix('v')?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        let (level, minor) = if tail.is_empty() {
            (3, 0)
        } else if let Some(n) = tail.strip_prefix("beta") {
            (2, n.parse().ok()?)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (1, n.parse().ok()?)
        } else {
            return None;
        };
        Some((level, major, minor))
    }
    match (rank(a), rank(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kubernetes_sorts_them() {
        let mut versions = vec![
            "v1alpha1", "foo", "v1", "v2beta1", "v1beta2", "v2", "v1beta1",
        ];
        versions.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            versions,
            [
                "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"
            ]
        );
    }
}
