//! A test API server and a `Cluster` of it through a kubeconfig.

use std::time::Duration;

use dr_k8s::{Cluster, PodQuery, PodState};
use dr_k8s_testkit::KubeApiServer;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, PostParams};
use serde_json::json;

/// The server, its kubeconfig's directory, and the cluster of its `test` context.
pub(crate) struct Setup {
    /// The server (dropping it stops it): faults, logs.
    pub(crate) server: KubeApiServer,
    pub(crate) dir: tempfile::TempDir,
    /// The kubeconfig of its `test` context.
    pub(crate) kubeconfig: std::path::PathBuf,
    pub(crate) cluster: Cluster,
}

pub(crate) async fn setup() -> Setup {
    let server = KubeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.kubeconfig(dir.path()).await.unwrap();
    let cluster = Cluster::from_kubeconfig(&kubeconfig, Some("test"))
        .await
        .unwrap();
    Setup {
        server,
        dir,
        kubeconfig,
        cluster,
    }
}

/// Creates a Deployment of `replicas` pods labelled `app: name`, with
/// `annotations` on its pod template.
pub(crate) async fn deployment(
    cluster: &Cluster,
    name: &str,
    replicas: i32,
    annotations: serde_json::Value,
) {
    deployment_with(cluster, "default", name, replicas, annotations).await;
}

/// Creates a Deployment of `replicas` pods labelled `app: name` in
/// `namespace`.
pub(crate) async fn deployment_in(cluster: &Cluster, namespace: &str, name: &str, replicas: i32) {
    deployment_with(cluster, namespace, name, replicas, json!({})).await;
}

async fn deployment_with(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    replicas: i32,
    annotations: serde_json::Value,
) {
    let object: Deployment = serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name }, "annotations": annotations },
                "spec": { "containers": [{ "name": "main", "image": "nginx:1.27" }] }
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(cluster.client().clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// Creates a StatefulSet of `replicas` pods labelled `app: name`.
pub(crate) async fn stateful_set(cluster: &Cluster, name: &str, replicas: i32) {
    let object: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": "postgres:15" }] }
            }
        }
    }))
    .unwrap();
    Api::<StatefulSet>::namespaced(cluster.client().clone(), "default")
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// Waits (up to 10 s) until the pods `query` selects satisfy `done`; them.
pub(crate) async fn pods_until(
    cluster: &Cluster,
    query: &PodQuery,
    done: impl Fn(&[PodState]) -> bool,
) -> Vec<PodState> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pods = cluster.pods(query).await.unwrap();
        if done(&pods) {
            return pods;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pods never as wanted: {pods:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
