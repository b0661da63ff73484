//! `scale` through the scale subresource: the count it had comes back, the
//! pods follow, and a workload that does not exist is a NotFound that names
//! it.

use dr_k8s::{Error, PodQuery, Workload};
use serde_json::json;

use crate::common::{deployment, pods_until, setup, stateful_set};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_says_the_count_it_had_and_the_pods_follow() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    deployment(cluster, "web", 2, json!({})).await;
    let web = PodQuery::in_namespace(ns).labels("app=web");
    pods_until(cluster, &web, |pods| {
        pods.len() == 2 && pods.iter().all(|p| p.ready)
    })
    .await;

    let workload = Workload::parse("deploy/web", ns).unwrap();
    assert_eq!(cluster.replicas(&workload).await.unwrap(), 2);
    let fenced = cluster.scale(&workload, 0).await.unwrap();
    assert_eq!((fenced.previous, fenced.replicas), (2, 0));
    pods_until(cluster, &web, <[_]>::is_empty).await;

    let back = cluster
        .scale(&fenced.workload, fenced.previous)
        .await
        .unwrap();
    assert_eq!((back.previous, back.replicas), (0, 2));
    pods_until(cluster, &web, |pods| {
        pods.len() == 2 && pods.iter().all(|p| p.ready)
    })
    .await;

    stateful_set(cluster, "db", 3).await;
    let db = Workload::stateful_set(ns, "db");
    let down = cluster.scale(&db, 1).await.unwrap();
    assert_eq!((down.previous, down.replicas), (3, 1));
    let pods = pods_until(
        cluster,
        &PodQuery::in_namespace(ns).labels("app=db"),
        |pods| pods.len() == 1,
    )
    .await;
    assert_eq!(pods[0].name, "db-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_that_does_not_exist_is_not_found_by_name() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let missing = Workload::deployment(ns, "ghost");
    let err = setup.cluster.scale(&missing, 0).await.unwrap_err();
    assert!(matches!(err, Error::Api { code: 404, .. }), "{err}");
    let said = err.to_string();
    assert!(
        said.contains("deployment/ghost in namespace default") && said.contains("test"),
        "{said}"
    );
    let core: dr_core::Error = err.into();
    assert_eq!(core.kind(), dr_core::ErrorKind::NotFound);

    for bad in ["web", "pod/web", "deployment/", "deployment/a/b"] {
        assert!(Workload::parse(bad, ns).is_err(), "{bad}");
    }
}
