//! The health-gated rollout (Veza's Scenario 3): a good rollout is kept; one
//! whose pods never become ready, and one whose health check fails once it
//! is out, are undone within their deadline, with the time to rollback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dr_k8s::{Cluster, GuardVerdict, HttpHealth, RolloutGuard, Workload};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::{deployment, setup, stand_in};

/// An HTTP health endpoint on loopback that answers 200 while `healthy`,
/// 500 otherwise; its URL.
async fn health_endpoint(healthy: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let healthy = healthy.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = [0; 1024];
                let _ = stream.read(&mut request).await;
                let status = if healthy {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                let answer =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

/// The image of `name`'s first container.
async fn image(cluster: &Cluster, name: &str) -> String {
    let d = Api::<Deployment>::namespaced(cluster.client().clone(), cluster.default_namespace())
        .get(name)
        .await
        .unwrap();
    d.spec.template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

async fn ready(cluster: &Cluster, workload: &Workload) {
    cluster
        .rollout_status(workload, Duration::from_secs(10))
        .await
        .unwrap();
}

fn guard(deadline_ms: u64) -> RolloutGuard {
    RolloutGuard::new(Duration::from_millis(deadline_ms))
        .interval(Duration::from_millis(50))
        .settle(Duration::from_millis(500))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_rollout_is_kept() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    deployment(cluster, "web", 2, json!({})).await;
    let web = Workload::deployment(ns, "web");
    ready(cluster, &web).await;
    let url = health_endpoint(Arc::new(AtomicBool::new(true))).await;
    cluster.set_image(&web, "main", "nginx:1.28").await.unwrap();
    let guarded = cluster
        .guard_rollout(
            &web,
            &guard(5000).health(Arc::new(HttpHealth::new(&url).unwrap()), 3),
        )
        .await
        .unwrap();
    assert_eq!(guarded.verdict, GuardVerdict::Kept, "{guarded:?}");
    assert!(guarded.time_to_rollback.is_none());
    assert_eq!(image(cluster, "web").await, "nginx:1.28");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_whose_pods_never_become_ready_is_undone_by_its_deadline() {
    let Some(setup) = stand_in("its pods fail by the stand-in's drkit.test/fail annotation").await
    else {
        return;
    };
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    deployment(cluster, "web", 2, json!({})).await;
    let web = Workload::deployment(ns, "web");
    ready(cluster, &web).await;
    // A broken release: its pods start and never become ready.
    let broken = Patch::Strategic(json!({ "spec": { "template": {
        "metadata": { "annotations": { "drkit.test/fail": "true" } },
        "spec": { "containers": [{ "name": "main", "image": "nginx:broken" }] }
    } } }));
    Api::<Deployment>::namespaced(cluster.client().clone(), ns)
        .patch("web", &PatchParams::default(), &broken)
        .await
        .unwrap();
    let guarded = cluster.guard_rollout(&web, &guard(1500)).await.unwrap();
    let GuardVerdict::RolledBack {
        reason,
        from_revision,
        to_revision,
        recovered,
    } = &guarded.verdict
    else {
        panic!("{guarded:?}");
    };
    assert!(
        reason.contains("not rolled out and healthy for 500ms within 1.5s"),
        "{reason}"
    );
    assert_eq!((*from_revision, *to_revision), (2, 1));
    assert!(recovered);
    assert!(guarded.decided_after >= Duration::from_millis(1500));
    assert!(guarded.time_to_rollback.is_some());
    assert_eq!(image(cluster, "web").await, "nginx:1.27");
    let steps: Vec<&str> = guarded
        .timeline
        .steps()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(steps[1].starts_with("undo to revision 1"), "{steps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_whose_health_check_fails_is_undone_and_health_returns() {
    let Some(setup) =
        stand_in("its bad release must start and be ready, as only the stand-in's pods are").await
    else {
        return;
    };
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    deployment(cluster, "web", 2, json!({})).await;
    let web = Workload::deployment(ns, "web");
    ready(cluster, &web).await;
    // The service is healthy exactly while the good image is deployed.
    let healthy = Arc::new(AtomicBool::new(true));
    let url = health_endpoint(healthy.clone()).await;
    let watcher = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            loop {
                healthy.store(
                    image(&cluster, "web").await != "nginx:bad",
                    Ordering::SeqCst,
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    cluster.set_image(&web, "main", "nginx:bad").await.unwrap();
    let check = Arc::new(HttpHealth::new(&url).unwrap());
    let guarded = cluster
        .guard_rollout(&web, &guard(10_000).health(check, 3))
        .await
        .unwrap();
    watcher.abort();
    let GuardVerdict::RolledBack {
        reason,
        to_revision,
        recovered,
        ..
    } = &guarded.verdict
    else {
        panic!("{guarded:?}");
    };
    assert!(
        reason.contains("failed 3 times in a row: answered 500"),
        "{reason}"
    );
    assert_eq!(*to_revision, 1);
    assert!(recovered, "{guarded:?}");
    assert_eq!(image(cluster, "web").await, "nginx:1.27");
}
