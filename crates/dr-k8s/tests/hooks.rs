//! The failover hooks: a fence scales the failed primary's workload to zero
//! (its pods gone when it returns) or deletes its bare pod; a rewire points
//! a Service's selector at the new primary, the old keys gone.

use std::collections::BTreeMap;

use dr_core::{ComponentId, Fence, Member, Rewire, Role};
use dr_k8s::{FenceTarget, PodQuery, ServiceRewire, Workload, WorkloadFence};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::common::{pods_until, setup, stateful_set};

fn member(name: &str) -> Member {
    Member {
        name: name.to_owned(),
        role: Role::Primary,
        reachable: false,
        position: None,
        lag: None,
        promotable: true,
        priority: 0,
        detail: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_scales_the_primary_to_zero_or_deletes_its_bare_pod() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    stateful_set(cluster, "pg-primary", 1).await;
    stateful_set(cluster, "pg-replica", 2).await;
    let primary = PodQuery::in_namespace(ns).labels("app=pg-primary");
    pods_until(cluster, &primary, |pods| pods.len() == 1).await;
    let bare: Pod = serde_json::from_value(json!({
        "metadata": { "name": "redis-0", "namespace": ns, "labels": { "app": "redis" } },
        "spec": { "containers": [{ "name": "redis", "image": "redis:7" }] }
    }))
    .unwrap();
    Api::<Pod>::namespaced(cluster.client().clone(), ns)
        .create(&PostParams::default(), &bare)
        .await
        .unwrap();

    let fence = WorkloadFence::new(cluster.clone())
        .member(
            "pg-1",
            FenceTarget::Scale(Workload::stateful_set(ns, "pg-primary")),
        )
        .member(
            "redis-0",
            FenceTarget::DeletePod {
                namespace: ns.into(),
                name: "redis-0".into(),
            },
        );
    fence.fence(&member("pg-1")).await.unwrap();
    // Gone when the fence returned; the replicas untouched.
    assert!(cluster.pods(&primary).await.unwrap().is_empty());
    let replicas = cluster
        .pods(&PodQuery::in_namespace(ns).labels("app=pg-replica"))
        .await
        .unwrap();
    assert_eq!(replicas.len(), 2);
    let scaled = fence.scaled();
    assert_eq!(scaled.len(), 1);
    assert_eq!((scaled[0].previous, scaled[0].replicas), (1, 0));

    fence.fence(&member("redis-0")).await.unwrap();
    let redis = PodQuery::in_namespace(ns).labels("app=redis");
    assert!(cluster.pods(&redis).await.unwrap().is_empty());
    // Fencing what is gone already is no error.
    fence.fence(&member("redis-0")).await.unwrap();

    let unknown = fence.fence(&member("pg-9")).await.unwrap_err();
    assert_eq!(unknown.kind(), dr_core::ErrorKind::InvalidInput);
    assert!(unknown.to_string().contains("pg-9"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewire_replaces_the_services_selector() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    let service: Service = serde_json::from_value(json!({
        "metadata": { "name": "postgres", "namespace": ns },
        "spec": {
            "selector": { "app": "pg", "role": "primary" },
            "ports": [{ "port": 5432 }]
        }
    }))
    .unwrap();
    let services = Api::<Service>::namespaced(cluster.client().clone(), ns);
    services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let rewire = ServiceRewire::new(cluster.clone(), ns, "postgres").member(
        "pg-2",
        [
            ("app", "pg"),
            ("statefulset.kubernetes.io/pod-name", "pg-2"),
        ],
    );
    let component: ComponentId = "postgres/main".parse().unwrap();
    rewire.rewire(&component, &member("pg-2")).await.unwrap();
    let selector = services
        .get("postgres")
        .await
        .unwrap()
        .spec
        .unwrap()
        .selector
        .unwrap();
    let expected: BTreeMap<String, String> = [
        ("app".to_owned(), "pg".to_owned()),
        (
            "statefulset.kubernetes.io/pod-name".to_owned(),
            "pg-2".to_owned(),
        ),
    ]
    .into();
    assert_eq!(selector, expected, "the old role key is gone");

    let unnamed = rewire
        .rewire(&component, &member("pg-3"))
        .await
        .unwrap_err();
    assert_eq!(unnamed.kind(), dr_core::ErrorKind::InvalidInput);
    let missing = ServiceRewire::new(cluster.clone(), ns, "nope").member("pg-2", [("a", "b")]);
    let err = missing
        .rewire(&component, &member("pg-2"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), dr_core::ErrorKind::NotFound, "{err}");
}
