//! Patches of a workload's pod template: env set and removed, an image
//! changed (a new revision), an unknown container refused.

use dr_k8s::{EnvChange, Workload};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use crate::common::{deployment, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_and_image_are_patched_and_unknown_containers_refused() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    deployment(cluster, "api", 1, serde_json::json!({})).await;
    let api = Workload::deployment(ns, "api");

    let env = cluster
        .set_env(
            &api,
            "main",
            &[
                EnvChange::set("DB_HOST", "pg-replica"),
                EnvChange::set("MODE", "dr"),
            ],
        )
        .await
        .unwrap();
    let names: Vec<(&str, Option<&str>)> = env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert_eq!(
        names,
        [("DB_HOST", Some("pg-replica")), ("MODE", Some("dr"))]
    );
    let env = cluster
        .set_env(
            &api,
            "main",
            &[
                EnvChange::remove("MODE"),
                EnvChange::set("DB_HOST", "pg-new"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(env.len(), 1, "{env:?}");
    assert_eq!(env[0].value.as_deref(), Some("pg-new"));

    cluster.set_image(&api, "main", "nginx:1.28").await.unwrap();
    let object = Api::<Deployment>::namespaced(cluster.client().clone(), ns)
        .get("api")
        .await
        .unwrap();
    let template = object.spec.template.spec.unwrap();
    assert_eq!(template.containers.len(), 1);
    assert_eq!(template.containers[0].image.as_deref(), Some("nginx:1.28"));

    let err = cluster
        .set_image(&api, "sidecar", "envoy:1")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no container \"sidecar\" (it has: main)"),
        "{err}"
    );
    let err = cluster
        .set_env(&Workload::deployment(ns, "nope"), "main", &[])
        .await
        .unwrap_err();
    assert_eq!(
        dr_core::Error::from(err).kind(),
        dr_core::ErrorKind::NotFound
    );
}
