//! The scheduler and the pod field selectors: pods go to the least-loaded node that takes
//! them, a cordoned node gets no new pods, and lists and watches select pods by node and
//! phase.

use std::time::Duration;

use dr_k8s_testkit::KubeApiServer;
use serde_json::{Value, json};

use crate::common::{WatchStream, get, get_until, names, node, post, send};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn deployment(name: &str, replicas: u32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
}

fn bare_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
}

fn on_node(list: &Value, node: &str) -> usize {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["spec"]["nodeName"] == node)
        .count()
}

async fn create_nodes(server: &KubeApiServer) {
    for (name, address) in [("n1", "10.1.0.1"), ("n2", "10.1.0.2")] {
        let created = post(server, "/api/v1/nodes", &node(name, address)).await;
        assert_eq!(created.code, 201, "{}", created.body);
    }
}

#[tokio::test]
async fn pods_spread_over_nodes_and_a_cordoned_node_gets_none() {
    let server = KubeApiServer::start().await.unwrap();
    create_nodes(&server).await;
    let created = post(
        &server,
        "/apis/apps/v1/namespaces/default/deployments",
        &deployment("web", 4),
    )
    .await;
    assert_eq!(created.code, 201, "{}", created.body);
    let running = format!("{PODS}?fieldSelector=status.phase%3DRunning");
    let list = get_until(&server, &running, |l| names(l).len() == 4).await;
    assert_eq!((on_node(&list, "n1"), on_node(&list, "n2")), (2, 2));
    let pod = &list["items"][0];
    let host = pod["status"]["hostIP"].as_str().unwrap();
    let expected = if pod["spec"]["nodeName"] == "n1" {
        "10.1.0.1"
    } else {
        "10.1.0.2"
    };
    assert_eq!(host, expected, "the node's InternalIP");
    let selected = get(&server, &format!("{PODS}?fieldSelector=spec.nodeName%3Dn1")).await;
    assert_eq!(names(&selected.body).len(), 2, "{}", selected.body);
    let none = get(&server, "/api/v1/pods?fieldSelector=spec.nodeName%3D").await;
    assert!(names(&none.body).is_empty(), "every pod is bound");

    // Cordon n2 as kubectl does; new pods all go to n1.
    let cordon = send(
        &server,
        "PATCH",
        "/api/v1/nodes/n2",
        "application/strategic-merge-patch+json",
        &json!({"spec": {"unschedulable": true}}),
    )
    .await;
    assert_eq!(cordon.code, 200, "{}", cordon.body);
    let cordoned = get(
        &server,
        "/api/v1/nodes?fieldSelector=spec.unschedulable%3Dtrue",
    )
    .await;
    assert_eq!(names(&cordoned.body), ["n2"]);
    let scale = send(
        &server,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        "application/merge-patch+json",
        &json!({"spec": {"replicas": 7}}),
    )
    .await;
    assert_eq!(scale.code, 200, "{}", scale.body);
    let list = get_until(&server, &running, |l| names(l).len() == 7).await;
    assert_eq!((on_node(&list, "n1"), on_node(&list, "n2")), (5, 2));
    let bare = post(&server, PODS, &bare_pod("bare")).await;
    assert_eq!(bare.code, 201);
    let bare = get_until(&server, &format!("{PODS}/bare"), |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
    assert_eq!(bare["spec"]["nodeName"], "n1");
}

#[tokio::test]
async fn a_pod_no_node_takes_stays_pending_until_one_does() {
    let server = KubeApiServer::start().await.unwrap();
    create_nodes(&server).await;
    let mut pod = bare_pod("picky");
    pod["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    assert_eq!(post(&server, PODS, &pod).await.code, 201);
    let pending = get_until(&server, &format!("{PODS}/picky"), |p| {
        p["status"]["conditions"][0]["reason"] == "Unschedulable"
    })
    .await;
    assert_eq!(pending["status"]["phase"], "Pending");
    assert_eq!(
        pending["status"]["conditions"][0]["message"],
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    );
    assert!(pending["spec"].get("nodeName").is_none());
    let pending_list = get(
        &server,
        &format!("{PODS}?fieldSelector=status.phase%3DPending"),
    )
    .await;
    assert_eq!(names(&pending_list.body), ["picky"]);

    // A watch of n2's pods sees the pod once it is bound there.
    let mut watch = WatchStream::open(
        &server,
        &format!("{PODS}?watch=1&fieldSelector=spec.nodeName%3Dn2"),
    )
    .await;
    let label = send(
        &server,
        "PATCH",
        "/api/v1/nodes/n2",
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"disk": "ssd"}}}),
    )
    .await;
    assert_eq!(label.code, 200);
    let event = watch.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(event["type"], "ADDED", "{event}");
    assert_eq!(event["object"]["metadata"]["name"], "picky");
    assert_eq!(event["object"]["spec"]["nodeName"], "n2");
    get_until(&server, &format!("{PODS}/picky"), |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
}

#[tokio::test]
async fn without_nodes_pods_run_unassigned_and_other_fields_are_refused() {
    let server = KubeApiServer::start().await.unwrap();
    assert_eq!(post(&server, PODS, &bare_pod("alone")).await.code, 201);
    let pod = get_until(&server, &format!("{PODS}/alone"), |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
    assert!(pod["spec"].get("nodeName").is_none());
    let unassigned = get(&server, "/api/v1/pods?fieldSelector=spec.nodeName%3D").await;
    assert_eq!(names(&unassigned.body), ["alone"]);
    let wrong = get(
        &server,
        "/api/v1/namespaces/default/configmaps?fieldSelector=spec.nodeName%3Dn1",
    )
    .await;
    assert_eq!(wrong.code, 400);
    assert_eq!(
        wrong.body["message"],
        "field label not supported: spec.nodeName"
    );
    let wrong = get(&server, "/api/v1/pods?fieldSelector=spec.nope%3Dx&watch=1").await;
    assert_eq!(wrong.code, 400);
}
