//! Deleting a pod waits for a ready replacement; one that never becomes
//! ready times out saying so; a pod nothing owns is refused.

use std::time::Duration;

use dr_k8s::{Error, PodQuery};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::common::{deployment, pods_until, setup, stand_in, stateful_set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_is_replaced_by_a_ready_one() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    deployment(cluster, "web", 2, json!({})).await;
    let web = PodQuery::in_namespace(ns).labels("app=web");
    let before = pods_until(cluster, &web, |pods| {
        pods.len() == 2 && pods.iter().all(|p| p.ready)
    })
    .await;
    let victim = &before[0].name;
    let replaced = cluster
        .delete_pod_and_wait(ns, victim, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(&replaced.deleted, victim);
    assert_ne!(&replaced.replacement, victim);
    assert!(replaced.took < Duration::from_secs(10));
    let after = cluster.pods(&web).await.unwrap();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.iter().all(|p| p.ready), "{after:?}");
    assert!(after.iter().all(|p| &p.name != victim), "{after:?}");
    assert!(
        after.iter().any(|p| p.name == replaced.replacement),
        "{after:?}"
    );

    // A StatefulSet's replacement has the same name, and is still a new pod.
    stateful_set(cluster, "db", 1).await;
    let db = PodQuery::in_namespace(ns).labels("app=db");
    pods_until(cluster, &db, |pods| pods.len() == 1 && pods[0].ready).await;
    let replaced = cluster
        .delete_pod_and_wait(ns, "db-0", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(replaced.replacement, "db-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_that_never_becomes_ready_times_out() {
    let Some(setup) = stand_in("its pods fail by the stand-in's drkit.test/fail annotation").await
    else {
        return;
    };
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    deployment(cluster, "broken", 1, json!({ "drkit.test/fail": "true" })).await;
    let broken = PodQuery::in_namespace(ns).labels("app=broken");
    let pods = pods_until(cluster, &broken, |pods| pods.len() == 1).await;
    let err = cluster
        .delete_pod_and_wait(ns, &pods[0].name, Duration::from_secs(1))
        .await
        .unwrap_err();
    let Error::TimedOut { saw, .. } = &err else {
        panic!("not a timeout: {err}");
    };
    assert!(saw.contains("gone") && saw.contains("(not ready)"), "{saw}");

    // A pod of its own: nothing would replace it.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "lonely" },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] }
    }))
    .unwrap();
    Api::<Pod>::namespaced(cluster.client().clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let err = cluster
        .delete_pod_and_wait(ns, "lonely", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    let err = cluster
        .delete_pod_and_wait(ns, "ghost", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { code: 404, .. }), "{err}");
}
