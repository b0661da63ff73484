//! cordon, uncordon and drain as kubectl does them: pods a drain would
//! lose refused until forced, DaemonSet and mirror pods left, evictions a
//! budget refuses retried, and a budget that never allows one timed out.

use std::time::Duration;

use dr_k8s::{Cluster, DrainOptions, PodQuery};
use dr_k8s_testkit::Fault;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::common::{deployment, pods_until, stand_in};

async fn node(cluster: &Cluster, name: &str) {
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": name },
        "status": { "conditions": [{ "type": "Ready", "status": "True" }] }
    }))
    .unwrap();
    Api::<Node>::all(cluster.client().clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
}

async fn pod(cluster: &Cluster, name: &str, node: &str, metadata: Value) {
    let mut object = json!({
        "metadata": { "name": name, "namespace": cluster.default_namespace() },
        "spec": { "nodeName": node, "containers": [{ "name": "main", "image": "busybox" }] }
    });
    if let (Some(into), Value::Object(extra)) = (object["metadata"].as_object_mut(), metadata) {
        into.extend(extra);
    }
    let pod: Pod = serde_json::from_value(object).unwrap();
    Api::<Pod>::namespaced(cluster.client().clone(), cluster.default_namespace())
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

async fn unschedulable(cluster: &Cluster, name: &str) -> bool {
    let node = Api::<Node>::all(cluster.client().clone())
        .get(name)
        .await
        .unwrap();
    node.spec.and_then(|s| s.unschedulable).unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_evicts_what_kubectl_would_and_leaves_the_rest() {
    let Some(setup) = stand_in("it makes nodes of its own and injects a 429").await else {
        return;
    };
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    node(cluster, "n1").await;
    node(cluster, "n2").await;
    deployment(cluster, "web", 4, json!({})).await;
    let web = PodQuery::in_namespace(ns).labels("app=web");
    let on_n1 = |pods: &[dr_k8s::PodState]| {
        pods.iter()
            .filter(|p| p.node.as_deref() == Some("n1"))
            .count()
    };
    pods_until(cluster, &web, |pods| {
        pods.len() == 4 && pods.iter().all(|p| p.ready)
    })
    .await;
    let before = on_n1(&cluster.pods(&web).await.unwrap());
    assert!(before > 0, "the scheduler spreads the pods");
    pod(cluster, "agent-x1", "n1", json!({ "ownerReferences": [{
        "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "ds-1", "controller": true }] })).await;
    pod(
        cluster,
        "etcd-n1",
        "n1",
        json!({ "annotations": { "kubernetes.io/config.mirror": "abc" } }),
    )
    .await;
    pod(cluster, "debug", "n1", json!({})).await;

    // A bare pod would be lost: refused, the node cordoned all the same.
    let err = cluster
        .drain("n1", &DrainOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("default/debug (no controller replaces it"),
        "{err}"
    );
    assert!(unschedulable(cluster, "n1").await);

    // Forced: the first eviction is refused once (429) and tried again.
    setup.server().inject(
        Fault::status(429)
            .method("POST")
            .path_contains("/eviction")
            .times(1),
    );
    let options = DrainOptions {
        force: true,
        timeout: Duration::from_secs(20),
        ..DrainOptions::default()
    };
    let drained = cluster.drain("n1", &options).await.unwrap();
    assert_eq!(drained.refusals, 1, "{drained:?}");
    assert_eq!(drained.evicted.len(), before + 1, "{drained:?}");
    assert!(drained.evicted.contains(&"default/debug".to_owned()));
    let left: Vec<&str> = drained.left.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(left, ["default/agent-x1", "default/etcd-n1"], "{drained:?}");
    let pods = Api::<Pod>::namespaced(cluster.client().clone(), ns);
    assert!(pods.get_opt("debug").await.unwrap().is_none());
    // The Deployment's pods come back, on the other node.
    let after = pods_until(cluster, &web, |pods| {
        pods.len() == 4 && pods.iter().all(|p| p.ready)
    })
    .await;
    assert_eq!(on_n1(&after), 0, "{after:?}");

    assert!(cluster.uncordon("n1").await.unwrap());
    assert!(!cluster.uncordon("n1").await.unwrap());
    assert!(!unschedulable(cluster, "n1").await);
    assert!(cluster.cordon("n1").await.unwrap());
    let err = cluster.cordon("n9").await.unwrap_err();
    assert_eq!(
        dr_core::Error::from(err).kind(),
        dr_core::ErrorKind::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_never_allows_the_eviction_times_the_drain_out() {
    let Some(setup) = stand_in("it makes a node of its own").await else {
        return;
    };
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    node(cluster, "n1").await;
    deployment(cluster, "db", 1, json!({})).await;
    let db = PodQuery::in_namespace(ns).labels("app=db");
    pods_until(cluster, &db, |pods| pods.len() == 1 && pods[0].ready).await;
    let budget: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": { "name": "db", "namespace": ns },
        "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": "db" } } }
    }))
    .unwrap();
    Api::<PodDisruptionBudget>::namespaced(cluster.client().clone(), ns)
        .create(&PostParams::default(), &budget)
        .await
        .unwrap();
    let options = DrainOptions {
        timeout: Duration::from_secs(2),
        ..DrainOptions::default()
    };
    let err = cluster.drain("n1", &options).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("a disruption budget to allow the eviction"),
        "{text}"
    );
    assert!(text.contains("disruption budget"), "{text}");
    assert_eq!(
        dr_core::Error::from(err).kind(),
        dr_core::ErrorKind::Timeout
    );
    let pods = cluster.pods(&db).await.unwrap();
    assert_eq!(pods.len(), 1, "the protected pod stays: {pods:?}");
}
