//! Pods by label and field selector, with readiness and restarts, across
//! namespaces and pages.

use dr_k8s::PodQuery;
use serde_json::json;

use crate::common::{deployment, pods_until, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_found_by_labels_and_fields_with_their_readiness() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    deployment(cluster, "api", 3, json!({})).await;
    deployment(cluster, "broken", 1, json!({ "drkit.test/fail": "true" })).await;
    let all = PodQuery::in_namespace(ns);
    let pods = pods_until(cluster, &all, |pods| pods.len() == 4).await;

    let broken: Vec<_> = pods
        .iter()
        .filter(|p| p.name.starts_with("broken-"))
        .collect();
    assert_eq!(broken.len(), 1);
    assert!(!broken[0].ready, "{broken:?}");
    let ready = pods.iter().filter(|p| p.ready).count();
    assert_eq!(ready, 3, "{pods:?}");
    assert!(pods.iter().all(|p| p.phase == "Running"), "{pods:?}");

    let api = cluster.pods(&all.clone().labels("app=api")).await.unwrap();
    assert_eq!(api.len(), 3);
    let not_api = cluster.pods(&all.clone().labels("app!=api")).await.unwrap();
    assert_eq!(not_api.len(), 1);
    let one = &api[0].name;
    let by_name = cluster
        .pods(&all.clone().fields(format!("metadata.name={one}")))
        .await
        .unwrap();
    assert_eq!(by_name.len(), 1);
    assert_eq!(&by_name[0].name, one);

    // Every namespace.
    let everywhere = cluster.pods(&PodQuery::default()).await.unwrap();
    assert_eq!(everywhere.len(), 4);
}
