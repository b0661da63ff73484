//! Server-side apply: creation, merging, fields a manager drops, conflicts with other managers
//! and forcing them; over raw HTTP and with `kubectl apply --server-side`.

use dr_k8s_testkit::{KubeApiServer, KubeApiServerOptions};
use serde_json::{Value, json};

use crate::common::{Kubectl, get, send};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const APPLY: &str = "application/apply-patch+yaml";

fn settings(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
           "data": data})
}

fn managers(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_owned(),
                e["operation"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn apply_creates_merges_and_conflicts_with_other_managers() {
    let server = KubeApiServer::start().await.unwrap();
    let path = format!("{CMS}/settings");
    let without = send(&server, "PATCH", &path, APPLY, &settings(json!({"a": "1"}))).await;
    assert_eq!(without.code, 400, "{}", without.body);

    let created = send(
        &server,
        "PATCH",
        &format!("{path}?fieldManager=alice"),
        APPLY,
        &settings(json!({"a": "1", "b": "2"})),
    )
    .await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(managers(&created.body), [("alice".into(), "Apply".into())]);
    let fields = &created.body["metadata"]["managedFields"][0];
    assert_eq!(fields["fieldsType"], "FieldsV1");
    assert_eq!(fields["apiVersion"], "v1");
    assert_eq!(
        fields["fieldsV1"],
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );

    // Bob applies his own key: both stay. He may set alice's `a` only to the same value.
    let bob = format!("{path}?fieldManager=bob");
    let merged = send(
        &server,
        "PATCH",
        &bob,
        APPLY,
        &settings(json!({"a": "1", "c": "3"})),
    )
    .await;
    assert_eq!(merged.code, 200, "{}", merged.body);
    assert_eq!(merged.body["data"], json!({"a": "1", "b": "2", "c": "3"}));
    let refused = send(
        &server,
        "PATCH",
        &bob,
        APPLY,
        &settings(json!({"a": "9", "b": "8"})),
    )
    .await;
    assert_eq!(refused.code, 409, "{}", refused.body);
    assert_eq!(refused.body["reason"], "Conflict");
    assert_eq!(
        refused.body["message"],
        "Apply failed with 2 conflicts: conflicts with \"alice\" using v1:\n- .data.a\n- .data.b"
    );
    assert_eq!(refused.body["details"]["causes"][0]["field"], ".data.a");
    assert_eq!(
        refused.body["details"]["causes"][0]["reason"],
        "FieldManagerConflict"
    );
    let forced = send(
        &server,
        "PATCH",
        &format!("{bob}&force=true"),
        APPLY,
        &settings(json!({"a": "9", "c": "3"})),
    )
    .await;
    assert_eq!(forced.code, 200, "{}", forced.body);
    assert_eq!(forced.body["data"], json!({"a": "9", "b": "2", "c": "3"}));

    // Alice drops `b` (and no longer owns `a`, taken by force): `b` goes, `a` stays bob's.
    let dropped = send(
        &server,
        "PATCH",
        &format!("{path}?fieldManager=alice"),
        APPLY,
        &settings(json!({})),
    )
    .await;
    assert_eq!(dropped.code, 200, "{}", dropped.body);
    assert_eq!(dropped.body["data"], json!({"a": "9", "c": "3"}));

    // An ordinary update by another manager takes what it changes, without conflict.
    let update = send(
        &server,
        "PATCH",
        &format!("{path}?fieldManager=carol"),
        "application/merge-patch+json",
        &json!({"data": {"c": "4"}}),
    )
    .await;
    assert_eq!(update.code, 200);
    assert!(managers(&update.body).contains(&("carol".into(), "Update".into())));
    let retake = send(
        &server,
        "PATCH",
        &bob,
        APPLY,
        &settings(json!({"a": "9", "c": "3"})),
    )
    .await;
    assert_eq!(retake.code, 409, "{}", retake.body);
    assert_eq!(
        retake.body["message"],
        "Apply failed with 1 conflict: conflict with \"carol\" using v1: .data.c"
    );
    let stored = get(&server, &path).await.body;
    assert_eq!(stored["data"], json!({"a": "9", "c": "4"}));
}

#[tokio::test]
async fn apply_merges_containers_by_name_and_keeps_status() {
    // Without controllers, which would write the status.
    let options = KubeApiServerOptions::default().controllers(false);
    let server = KubeApiServer::start_with(options).await.unwrap();
    let path = "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=me";
    let deployment = |containers: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": containers}}}})
    };
    let two = json!([{"name": "web", "image": "nginx:1"}, {"name": "side", "image": "busybox:1"}]);
    let created = send(&server, "PATCH", path, APPLY, &deployment(two)).await;
    assert_eq!(created.code, 201, "{}", created.body);
    // Another manager sets the sidecar's args; my next apply drops the sidecar, which stays
    // because its args are someone else's, while its image, which only I set, goes.
    let theirs = send(
        &server,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=them",
        "application/strategic-merge-patch+json",
        &json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "args": ["-v"]}]}}}}),
    )
    .await;
    assert_eq!(theirs.code, 200, "{}", theirs.body);
    let one = json!([{"name": "web", "image": "nginx:2"}]);
    let next = send(&server, "PATCH", path, APPLY, &deployment(one)).await;
    assert_eq!(next.code, 200, "{}", next.body);
    assert_eq!(
        next.body["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "nginx:2"}, {"name": "side", "args": ["-v"]}])
    );
    // Status goes through its subresource only: an applied status is not taken.
    let mut with_status = deployment(json!([{"name": "web", "image": "nginx:2"}]));
    with_status["status"] = json!({"replicas": 42});
    let again = send(&server, "PATCH", path, APPLY, &with_status).await;
    assert_eq!(again.code, 200, "{}", again.body);
    assert_eq!(again.body["status"], json!({}));
}

const CONFIG: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  LOG_LEVEL: info
  MODE: shop
"#;

#[tokio::test]
async fn kubectl_apply_server_side_creates_updates_and_forces_conflicts() {
    let Some(k) =
        Kubectl::start("kubectl_apply_server_side_creates_updates_and_forces_conflicts").await
    else {
        return;
    };
    let file = k.dir.path().join("settings.yaml");
    let apply = |extra: &'static [&'static str]| {
        let file = file.clone();
        let k = &k;
        async move {
            let mut args = vec!["apply", "--server-side", "-f"];
            args.push(file.to_str().unwrap());
            args.extend(extra);
            k.run(&args).await
        }
    };
    tokio::fs::write(&file, CONFIG).await.unwrap();
    let run = apply(&[]).await;
    assert!(
        run.out().contains("configmap/settings serverside-applied"),
        "{}",
        run.stdout
    );
    let cm = k
        .run(&[
            "get",
            "cm",
            "settings",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await
        .json();
    assert_eq!(cm["data"], json!({"LOG_LEVEL": "info", "MODE": "shop"}));
    assert_eq!(cm["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(cm["metadata"]["managedFields"][0]["operation"], "Apply");

    // Another manager changes a field kubectl applied; kubectl's next apply conflicts.
    let run = k
        .run(&[
            "patch",
            "cm",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"LOG_LEVEL":"debug"}}"#,
        ])
        .await;
    run.out();
    tokio::fs::write(&file, CONFIG.replace("MODE: shop", "MODE: home"))
        .await
        .unwrap();
    let run = apply(&[]).await;
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stderr.contains("Apply failed with 1 conflict: conflict with \"kubectl-patch\" using v1: .data.LOG_LEVEL"),
        "{}",
        run.stderr
    );
    let run = apply(&["--force-conflicts"]).await;
    assert!(run.out().contains("serverside-applied"), "{}", run.stdout);
    let cm = k.run(&["get", "cm", "settings", "-o", "json"]).await.json();
    assert_eq!(cm["data"], json!({"LOG_LEVEL": "info", "MODE": "home"}));

    // Dropping a key from the file removes it.
    tokio::fs::write(&file, CONFIG.replace("  MODE: shop\n", ""))
        .await
        .unwrap();
    apply(&[]).await.out();
    let cm = k.run(&["get", "cm", "settings", "-o", "json"]).await.json();
    assert_eq!(cm["data"], json!({"LOG_LEVEL": "info"}));
}
