//! The `pods/eviction` subresource, and the PodDisruptionBudget arithmetic it shares with the
//! disruption controller (which keeps each budget's `status`).

use serde_json::{Value, json};

use crate::registry::{self, ResourceType};
use crate::selector::LabelSelector;
use crate::status::ApiError;
use crate::store::Store;

fn kind(group: &str, plural: &str) -> &'static ResourceType {
    registry::find(group, "v1", plural).expect("pods and disruption budgets are served")
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Whether a pod counts as healthy for a budget: `Ready` and not being deleted.
fn healthy(pod: &Value) -> bool {
    pod["metadata"].get("deletionTimestamp").is_none()
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Whether a budget's selector selects a pod (a missing or unreadable selector selects
/// nothing, an empty one everything, as in policy/v1).
fn selects(pdb: &Value, pod: &Value) -> bool {
    let Some(selector) = pdb["spec"].get("selector").filter(|s| s.is_object()) else {
        return false;
    };
    text(pdb, "/metadata/namespace") == text(pod, "/metadata/namespace")
        && LabelSelector::from_object(selector)
            .is_ok_and(|s| s.matches(pod["metadata"].get("labels")))
}

/// A budget's figures, as the disruption controller computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    pub(crate) expected_pods: i64,
    pub(crate) current_healthy: i64,
    pub(crate) desired_healthy: i64,
    pub(crate) disruptions_allowed: i64,
}

/// `value` of an int-or-percent field scaled to `total`, percentages rounded up as the
/// disruption controller rounds them; `None` if absent or not understood.
fn scaled(value: &Value, total: i64) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((total * percent + 99) / 100)
        }
        _ => None,
    }
}

/// How many pods the budget's pods' controllers want: each controller with a scale (a
/// replica set, stateful set or deployment) counts its `spec.replicas` once, every other pod
/// counts one.
fn expected_scale(store: &Store, pods: &[&Value]) -> i64 {
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    for pod in pods {
        let controller = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == true);
        let plural = match controller.and_then(|c| c["kind"].as_str()) {
            Some("ReplicaSet") => "replicasets",
            Some("StatefulSet") => "statefulsets",
            Some("Deployment") => "deployments",
            _ => {
                total += 1;
                continue;
            }
        };
        let controller = controller.expect("matched above");
        if !seen.insert(text(controller, "/uid").to_owned()) {
            continue;
        }
        let namespace = text(pod, "/metadata/namespace");
        let name = text(controller, "/name");
        total += store
            .get(kind("apps", plural), Some(namespace), name)
            .ok()
            .and_then(|c| c["spec"]["replicas"].as_i64())
            .unwrap_or(1);
    }
    total
}

/// A budget's figures over the pods it selects now: with `minAvailable` an integer, the
/// expected pods are the pods selected; with a percentage or `maxUnavailable`, the scale of
/// their controllers.
pub(crate) fn budget(store: &Store, pdb: &Value) -> Budget {
    let all = store.objects(kind("", "pods"));
    let pods: Vec<&Value> = all.iter().filter(|p| selects(pdb, p)).collect();
    let current_healthy = pods.iter().filter(|p| healthy(p)).count() as i64;
    let spec = &pdb["spec"];
    let (expected_pods, desired_healthy) =
        match (spec.get("maxUnavailable"), spec.get("minAvailable")) {
            (Some(max), _) if !max.is_null() => {
                let expected = expected_scale(store, &pods);
                (expected, expected - scaled(max, expected).unwrap_or(0))
            }
            (_, Some(Value::Number(min))) => (pods.len() as i64, min.as_i64().unwrap_or(0)),
            (_, Some(min @ Value::String(_))) => {
                let expected = expected_scale(store, &pods);
                (expected, scaled(min, expected).unwrap_or(0))
            }
            _ => (pods.len() as i64, 0),
        };
    Budget {
        expected_pods,
        current_healthy,
        desired_healthy,
        disruptions_allowed: (current_healthy - desired_healthy).max(0),
    }
}

/// The `status` the disruption controller gives a budget, keeping the condition's time while
/// its status stays.
pub(crate) fn status(store: &Store, pdb: &Value, now: &str) -> Value {
    let budget = budget(store, pdb);
    let allowed = budget.disruptions_allowed > 0;
    let (status, reason) = if allowed {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let generation = pdb["metadata"]["generation"].clone();
    let since = pdb["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "DisruptionAllowed" && c["status"] == status)
        .map_or_else(|| now.into(), |c| c["lastTransitionTime"].clone());
    json!({
        "observedGeneration": generation,
        "disruptionsAllowed": budget.disruptions_allowed,
        "currentHealthy": budget.current_healthy,
        "desiredHealthy": budget.desired_healthy,
        "expectedPods": budget.expected_pods,
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": status,
            "reason": reason,
            "message": "",
            "observedGeneration": generation,
            "lastTransitionTime": since,
        }],
    })
}

/// The 429 a budget that forbids the eviction answers with, in the real server's words.
fn too_many_requests(pdb_name: &str, budget: Budget) -> ApiError {
    ApiError {
        code: 429,
        reason: "TooManyRequests",
        message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
        details: Some(json!({"causes": [{
            "reason": "DisruptionBudget",
            "message": format!(
                "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                budget.desired_healthy, budget.current_healthy
            ),
        }]})),
    }
}

/// `POST .../pods/{name}/eviction`: checks the `Eviction` body (policy/v1 or v1beta1; its
/// `deleteOptions` with `gracePeriodSeconds`, `preconditions` and `dryRun`), then the pod's
/// disruption budget, and deletes the pod, answering 201 with a `Success` Status.
///
/// A pod that is `Pending`, `Succeeded` or `Failed` is evicted whatever its budget says, as
/// the real server does. A pod under more than one budget is a 500, under none is deleted.
/// Under one, a healthy (ready) pod goes only while the budget allows a disruption, an
/// unhealthy one while the budget's pods are at least as healthy as it wants
/// (`unhealthyPodEvictionPolicy: IfHealthyBudget`, the default) or always with
/// `AlwaysAllow`.
pub(crate) fn evict(
    store: &mut Store,
    namespace: &str,
    name: &str,
    body: &Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request is not a JSON object",
        ));
    }
    let api_version = body["apiVersion"].as_str().unwrap_or("policy/v1");
    let given_kind = body["kind"].as_str().unwrap_or("Eviction");
    if given_kind != "Eviction" || !matches!(api_version, "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::bad_request(format!(
            "expected an Eviction of policy/v1, got {given_kind} of {api_version}"
        )));
    }
    if body["metadata"]["name"]
        .as_str()
        .is_some_and(|given| given != name)
    {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let pods = kind("", "pods");
    let pod = store.get(pods, Some(namespace), name)?;
    let options = crate::api::DeleteOptions::from_value(&body["deleteOptions"])?;
    options.check(pods, &pod, name)?;
    let dry_run = dry_run || options.dry_run;
    let phase = text(&pod, "/status/phase");
    let exempt = matches!(phase, "Pending" | "Succeeded" | "Failed")
        || pod["metadata"].get("deletionTimestamp").is_some();
    if !exempt {
        let budgets: Vec<Value> = store
            .objects(kind("policy", "poddisruptionbudgets"))
            .into_iter()
            .filter(|pdb| selects(pdb, &pod))
            .collect();
        if budgets.len() > 1 {
            return Err(ApiError {
                code: 500,
                reason: "InternalError",
                message: "This pod has more than one PodDisruptionBudget, which the eviction \
                          subresource does not support."
                    .into(),
                details: None,
            });
        }
        if let Some(pdb) = budgets.first() {
            let figures = budget(store, pdb);
            let allowed = if healthy(&pod) {
                figures.disruptions_allowed > 0
            } else {
                pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
                    || figures.current_healthy >= figures.desired_healthy
            };
            if !allowed {
                return Err(too_many_requests(text(pdb, "/metadata/name"), figures));
            }
        }
    }
    store.delete(pods, Some(namespace), name, dry_run)?;
    Ok(json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }))
}
