//! Eviction and drain: the `pods/eviction` subresource against PodDisruptionBudgets over raw
//! HTTP, and `kubectl drain` as it is used on a real cluster.

use dr_k8s_testkit::KubeApiServer;
use serde_json::{Value, json};

use crate::common::{Kubectl, get, get_until, names, node, post, request, send};

const PODS: &str = "/api/v1/namespaces/default/pods";
const PDBS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

fn deployment(name: &str, replicas: u32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
}

fn budget(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": name}});
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn eviction(name: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction",
           "metadata": {"name": name, "namespace": "default"},
           "deleteOptions": {"gracePeriodSeconds": 30}})
}

async fn running_pods(server: &KubeApiServer, count: usize) -> Vec<String> {
    let path = format!("{PODS}?labelSelector=app%3Dweb&fieldSelector=status.phase%3DRunning");
    let list = get_until(server, &path, |l| {
        l["items"].as_array().is_some_and(|items| {
            items.len() == count
                && items.iter().all(|p| {
                    p["status"]["conditions"]
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready"))
                })
        })
    })
    .await;
    names(&list)
}

#[tokio::test]
async fn an_eviction_that_would_break_a_budget_is_429_and_one_that_would_not_deletes() {
    let server = KubeApiServer::start().await.unwrap();
    let discovery = get(&server, "/api/v1").await;
    let entry = discovery.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .cloned()
        .expect("pods/eviction in discovery");
    assert_eq!(
        (&entry["group"], &entry["version"], &entry["kind"]),
        (&json!("policy"), &json!("v1"), &json!("Eviction"))
    );
    let created = post(
        &server,
        "/apis/apps/v1/namespaces/default/deployments",
        &deployment("web", 2),
    )
    .await;
    assert_eq!(created.code, 201);
    let created = post(&server, PDBS, &budget("web", json!({"minAvailable": 2}))).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let pods = running_pods(&server, 2).await;
    let status = get_until(&server, &format!("{PDBS}/web"), |b| {
        b["status"]["currentHealthy"] == 2
    })
    .await["status"]
        .clone();
    assert_eq!(status["desiredHealthy"], 2);
    assert_eq!(status["expectedPods"], 2);
    assert_eq!(status["disruptionsAllowed"], 0);
    assert_eq!(status["conditions"][0]["reason"], "InsufficientPods");

    let path = format!("{PODS}/{}/eviction", pods[0]);
    let refused = post(&server, &path, &eviction(&pods[0])).await;
    assert_eq!(refused.code, 429, "{}", refused.body);
    assert_eq!(refused.body["kind"], "Status");
    assert_eq!(refused.body["reason"], "TooManyRequests");
    assert_eq!(
        refused.body["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(
        refused.body["details"]["causes"][0],
        json!({"reason": "DisruptionBudget",
               "message": "The disruption budget web needs 2 healthy pods and has 2 currently"})
    );
    assert_eq!(get(&server, &format!("{PODS}/{}", pods[0])).await.code, 200);

    // The wrong name, a stale uid, a body that is not JSON, a pod that does not exist.
    let wrong = post(&server, &path, &eviction("other")).await;
    assert_eq!(wrong.code, 400, "{}", wrong.body);
    let mut stale = eviction(&pods[0]);
    stale["deleteOptions"]["preconditions"] = json!({"uid": "not-the-uid"});
    let stale = post(&server, &path, &stale).await;
    assert_eq!(
        (stale.code, stale.body["reason"].as_str()),
        (409, Some("Conflict"))
    );
    assert!(
        stale.body["message"]
            .as_str()
            .unwrap()
            .contains("Precondition failed: UID in precondition: not-the-uid"),
        "{}",
        stale.body
    );
    let garbled = request(&server, "POST", &path, "application/json", "{nope").await;
    assert_eq!(garbled.code, 400);
    let missing = post(&server, &format!("{PODS}/nope/eviction"), &eviction("nope")).await;
    assert_eq!(missing.code, 404);

    // A percentage of the controller's scale: 50% of 2 may go.
    let relax = send(
        &server,
        "PATCH",
        &format!("{PDBS}/web"),
        "application/merge-patch+json",
        &json!({"spec": {"minAvailable": null, "maxUnavailable": "50%"}}),
    )
    .await;
    assert_eq!(relax.code, 200, "{}", relax.body);
    let evicted = post(&server, &path, &eviction(&pods[0])).await;
    assert_eq!(evicted.code, 201, "{}", evicted.body);
    assert_eq!(evicted.body["status"], "Success");
    assert_eq!(get(&server, &format!("{PODS}/{}", pods[0])).await.code, 404);
    // Its replica set replaces it.
    let after = running_pods(&server, 2).await;
    assert!(!after.contains(&pods[0]), "{after:?}");
}

#[tokio::test]
async fn a_dry_run_eviction_and_one_of_a_pending_pod_ignore_nothing_they_should_not() {
    let server = KubeApiServer::start().await.unwrap();
    post(
        &server,
        "/apis/apps/v1/namespaces/default/deployments",
        &deployment("web", 1),
    )
    .await;
    post(&server, PDBS, &budget("web", json!({"maxUnavailable": 1}))).await;
    let pods = running_pods(&server, 1).await;
    let path = format!("{PODS}/{}/eviction?dryRun=All", pods[0]);
    let dry = post(&server, &path, &eviction(&pods[0])).await;
    assert_eq!(dry.code, 201, "{}", dry.body);
    assert_eq!(get(&server, &format!("{PODS}/{}", pods[0])).await.code, 200);
    // Two budgets over one pod: the server cannot choose.
    post(&server, PDBS, &{
        let mut b = budget("web", json!({"maxUnavailable": 1}));
        b["metadata"]["name"] = "web-2".into();
        b
    })
    .await;
    let path = format!("{PODS}/{}/eviction", pods[0]);
    let two = post(&server, &path, &eviction(&pods[0])).await;
    assert_eq!(two.code, 500, "{}", two.body);
    // A DELETE takes DeleteOptions, with their preconditions.
    let stale = send(
        &server,
        "DELETE",
        &format!("{PODS}/{}", pods[0]),
        "application/json",
        &json!({"kind": "DeleteOptions", "apiVersion": "v1",
                "preconditions": {"resourceVersion": "1"}}),
    )
    .await;
    assert_eq!(stale.code, 409, "{}", stale.body);
    let deleted = send(
        &server,
        "DELETE",
        &format!("{PODS}/{}", pods[0]),
        "application/json",
        &json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 30,
                "propagationPolicy": "Background"}),
    )
    .await;
    assert_eq!(deleted.code, 200, "{}", deleted.body);
    assert_eq!(get(&server, &format!("{PODS}/{}", pods[0])).await.code, 404);
}

/// Two nodes; `web` (two replicas, one per node) under a budget of one unavailable; on n1 a
/// DaemonSet's pod, a mirror pod, and `cache`, pinned to n1, with an emptyDir volume.
fn cluster() -> Value {
    let mut web = deployment("web", 2);
    web["spec"]["template"]["spec"]["topologySpreadConstraints"] = json!([]);
    let mut cache = deployment("cache", 1);
    cache["spec"]["template"]["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "n1"});
    cache["spec"]["template"]["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    let agents = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"containers": [{"name": "a", "image": "busybox:1.36"}]}}}});
    let items = vec![
        node("n1", "10.1.0.1"),
        node("n2", "10.1.0.2"),
        agents,
        web,
        budget("web", json!({"maxUnavailable": 1})),
        cache,
    ];
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// A pod on n1 that drain must leave: the DaemonSet's (its uid given) or a mirror pod.
fn pinned_pod(name: &str, daemon_set_uid: Option<&str>) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": "n1", "containers": [{"name": "a", "image": "busybox:1.36"}]}});
    match daemon_set_uid {
        Some(uid) => {
            pod["metadata"]["labels"] = json!({"app": "agent"});
            pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
                "kind": "DaemonSet", "name": "agent", "uid": uid, "controller": true}]);
        }
        None => {
            pod["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
        }
    }
    pod
}

#[tokio::test]
async fn kubectl_drain_evicts_what_it_should_and_leaves_the_rest() {
    let Some(k) = Kubectl::start("kubectl_drain_evicts_what_it_should_and_leaves_the_rest").await
    else {
        return;
    };
    k.apply("cluster.json", &cluster().to_string()).await;
    let agent = k.run(&["get", "ds", "agent", "-o", "json"]).await.json();
    let uid = agent["metadata"]["uid"].as_str().unwrap();
    let pods = json!({"apiVersion": "v1", "kind": "List", "items": [
        pinned_pod("agent-n1", Some(uid)), pinned_pod("static-n1", None)]});
    k.apply("pinned.json", &pods.to_string()).await;
    let on_n1 = |list: &Value| {
        let mut on: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["spec"]["nodeName"] == "n1")
            .map(|p| {
                p["metadata"]["labels"]["app"]
                    .as_str()
                    .unwrap_or("static")
                    .to_owned()
            })
            .collect();
        on.sort();
        on
    };
    let before = k
        .get_until(&["get", "pods"], |l| {
            l["items"].as_array().is_some_and(|items| {
                items.len() == 5 && items.iter().all(|p| p["status"]["phase"] == "Running")
            })
        })
        .await;
    assert_eq!(on_n1(&before), ["agent", "cache", "static", "web"]);

    // The emptyDir pod stops the drain until allowed; the node is cordoned all the same.
    let refused = k
        .run(&["drain", "n1", "--ignore-daemonsets", "--timeout=20s"])
        .await;
    assert!(!refused.ok, "{}", refused.stdout);
    assert!(
        refused.stdout.contains("node/n1 cordoned"),
        "{}",
        refused.stdout
    );
    assert!(
        refused
            .stderr
            .contains("cannot delete Pods with local storage (use --delete-emptydir-data to override): default/cache-"),
        "{}",
        refused.stderr
    );
    let drained = k
        .run(&[
            "drain",
            "n1",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=20s",
        ])
        .await;
    assert!(drained.ok, "{}\n{}", drained.stdout, drained.stderr);
    assert!(
        drained.stdout.contains("node/n1 drained"),
        "{}",
        drained.stdout
    );
    assert!(
        drained
            .stderr
            .contains("Warning: ignoring DaemonSet-managed Pods: default/agent-n1"),
        "{}",
        drained.stderr
    );
    let node = k.run(&["get", "node", "n1", "-o", "json"]).await.json();
    assert_eq!(node["spec"]["unschedulable"], true);
    // web came back on n2; cache waits for a node it may go to; the DaemonSet's pod and the
    // mirror pod stayed.
    let after = k
        .get_until(&["get", "pods"], |l| {
            let items = l["items"].as_array().unwrap();
            items.len() == 5
                && items
                    .iter()
                    .filter(|p| p["metadata"]["labels"]["app"] == "web")
                    .all(|p| p["spec"]["nodeName"] == "n2" && p["status"]["phase"] == "Running")
        })
        .await;
    assert_eq!(on_n1(&after), ["agent", "static"]);
    let cache = after["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["labels"]["app"] == "cache")
        .unwrap();
    assert_eq!(cache["status"]["phase"], "Pending");

    // With both web pods on n2 and a budget that wants both, draining n2 waits on 429s and
    // gives up at its timeout.
    let patch = json!({"spec": {"maxUnavailable": null, "minAvailable": 2}}).to_string();
    k.run(&["patch", "pdb", "web", "--type=merge", "-p", &patch])
        .await
        .out();
    k.get_until(&["get", "pdb", "web"], |b| {
        b["status"]["disruptionsAllowed"] == 0 && b["status"]["desiredHealthy"] == 2
    })
    .await;
    let blocked = k
        .run(&["drain", "n2", "--ignore-daemonsets", "--timeout=2s"])
        .await;
    assert!(!blocked.ok, "{}", blocked.stdout);
    assert!(
        blocked
            .stderr
            .contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{}",
        blocked.stderr
    );
    assert!(
        blocked.stderr.contains("global timeout reached: 2s"),
        "{}",
        blocked.stderr
    );
    k.run(&["uncordon", "n1"]).await.out();
    let cache = k
        .get_until(&["get", "pods", "-l", "app=cache"], |l| {
            l["items"][0]["status"]["phase"] == "Running"
        })
        .await;
    assert_eq!(cache["items"][0]["spec"]["nodeName"], "n1");
}
