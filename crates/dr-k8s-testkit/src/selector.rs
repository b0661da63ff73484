//! Label selectors (equality and set-based) and the field selectors served.

use serde_json::Value;

use crate::registry::ResourceType;
use crate::status::ApiError;

/// One requirement of a label selector.
#[derive(Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector`: every requirement must hold.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub(crate) fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part).ok_or_else(|| {
                ApiError::bad_request(format!("unable to parse requirement: {part:?}"))
            })?);
        }
        Ok(LabelSelector(requirements))
    }

    /// A `meta/v1` `LabelSelector` object (`matchLabels`, `matchExpressions` with `In`,
    /// `NotIn`, `Exists`, `DoesNotExist`), as a PodDisruptionBudget or a Deployment carries.
    /// An empty selector selects everything.
    pub(crate) fn from_object(selector: &Value) -> Result<Self, ApiError> {
        let invalid = |what: &str| ApiError::bad_request(format!("invalid label selector: {what}"));
        let mut requirements = Vec::new();
        for (key, value) in selector["matchLabels"].as_object().into_iter().flatten() {
            let value = value
                .as_str()
                .ok_or_else(|| invalid("a label value is not a string"))?;
            requirements.push(Requirement::Equals(key.clone(), value.to_owned()));
        }
        for expression in selector["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let key = expression["key"]
                .as_str()
                .ok_or_else(|| invalid("an expression has no key"))?
                .to_owned();
            let values: Vec<String> = expression["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            requirements.push(match expression["operator"].as_str() {
                Some("In") => Requirement::In(key, values),
                Some("NotIn") => Requirement::NotIn(key, values),
                Some("Exists") => Requirement::Exists(key),
                Some("DoesNotExist") => Requirement::NotExists(key),
                _ => {
                    return Err(invalid(
                        "an operator is not In, NotIn, Exists or DoesNotExist",
                    ));
                }
            });
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether an object's labels (`metadata.labels`, maybe absent) satisfy the selector.
    pub(crate) fn matches(&self, labels: Option<&Value>) -> bool {
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
        })
    }
}

/// Splits at the commas outside parentheses: `a in (x,y),b` is two requirements.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0_u32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Option<Requirement> {
    if let Some(key) = part.strip_prefix('!') {
        return Some(Requirement::NotExists(label_key(key)?));
    }
    if let Some(open) = part.find('(') {
        let (head, values) = part.split_at(open);
        let values = values.strip_prefix('(')?.strip_suffix(')')?;
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_owned()).collect();
        let mut words = head.split_whitespace();
        let key = label_key(words.next()?)?;
        let operator = words.next()?;
        if words.next().is_some() {
            return None;
        }
        return match operator {
            "in" => Some(Requirement::In(key, values)),
            "notin" => Some(Requirement::NotIn(key, values)),
            _ => None,
        };
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Some(Requirement::NotEquals(label_key(key)?, label_value(value)?));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Some(Requirement::Equals(label_key(key)?, label_value(value)?));
    }
    Some(Requirement::Exists(label_key(part)?))
}

fn label_key(key: &str) -> Option<String> {
    let key = key.trim();
    let valid = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    valid.then(|| key.to_owned())
}

fn label_value(value: &str) -> Option<String> {
    let value = value.trim();
    let valid = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    valid.then(|| value.to_owned())
}

/// A parsed `fieldSelector`: each term a field (as a JSON pointer into the object), whether
/// it must equal or differ, and the value.
#[derive(Debug, Default)]
pub(crate) struct FieldSelector(Vec<(&'static str, bool, String)>);

/// Where a field a selector names is in an object of `kind`, for the fields a real server
/// indexes: `metadata.name` and `metadata.namespace` of every resource, and a pod's
/// `spec.nodeName`, `spec.restartPolicy`, `spec.schedulerName`, `spec.serviceAccountName`,
/// `status.phase`, `status.podIP`, `status.nominatedNodeName`, and a node's
/// `spec.unschedulable`.
fn field_pointer(kind: &ResourceType, field: &str) -> Option<&'static str> {
    let pointer = match (kind.group, kind.kind, field) {
        (_, _, "metadata.name") => "/metadata/name",
        (_, _, "metadata.namespace") => "/metadata/namespace",
        ("", "Pod", "spec.nodeName") => "/spec/nodeName",
        ("", "Pod", "spec.restartPolicy") => "/spec/restartPolicy",
        ("", "Pod", "spec.schedulerName") => "/spec/schedulerName",
        ("", "Pod", "spec.serviceAccountName") => "/spec/serviceAccountName",
        ("", "Pod", "status.phase") => "/status/phase",
        ("", "Pod", "status.podIP") => "/status/podIP",
        ("", "Pod", "status.nominatedNodeName") => "/status/nominatedNodeName",
        ("", "Node", "spec.unschedulable") => "/spec/unschedulable",
        _ => return None,
    };
    Some(pointer)
}

/// A field's value as a selector compares it: a string as it is, a boolean as `true` or
/// `false` (absent is `false`, Go's zero value), anything else absent as `""`.
fn field_value(object: &Value, pointer: &str) -> String {
    match object.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        None | Some(Value::Null) if pointer == "/spec/unschedulable" => "false".into(),
        _ => String::new(),
    }
}

impl FieldSelector {
    /// Parses `metadata.name=x,spec.nodeName!=y` for a resource; a field it does not index is
    /// refused as the real server refuses it.
    pub(crate) fn parse(text: &str, kind: &ResourceType) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: {text:?}; can't understand {part:?}"
                )));
            };
            let field = field.trim();
            let pointer = field_pointer(kind, field).ok_or_else(|| {
                ApiError::bad_request(format!("field label not supported: {field}"))
            })?;
            terms.push((pointer, equal, value.trim().to_owned()));
        }
        Ok(FieldSelector(terms))
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.0
            .iter()
            .all(|(pointer, equal, value)| (field_value(object, pointer) == *value) == *equal)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn set_based_requirements_hold_as_kubernetes_defines_them() {
        let labels = json!({"app": "web", "tier": "front"});
        let holds = |s: &str| LabelSelector::parse(s).unwrap().matches(Some(&labels));
        assert!(holds("app=web,tier!=db"));
        assert!(holds("app==web"));
        assert!(holds("tier in (front, back),app"));
        assert!(holds("tier notin (db),!missing"));
        assert!(holds("missing!=x"));
        assert!(holds("missing notin (x)"));
        assert!(!holds("missing in (x)"));
        assert!(holds("app"));
        assert!(!holds("!app"));
        assert!(!holds("app=web,tier=db"));
        assert!(LabelSelector::parse("a in x").is_err());
        assert!(LabelSelector::parse("a=b c").is_err());
    }
}
