//! The server driven by kubectl 1.32 as a child process: what a real client sends, and what it
//! makes of the answers.

use serde_json::json;

use crate::common::Kubectl;
use dr_k8s_testkit::KubeApiServerOptions;

#[tokio::test]
async fn get_ns_lists_the_namespaces_a_new_cluster_has() {
    let Some(k) = Kubectl::start("get_ns_lists_the_namespaces_a_new_cluster_has").await else {
        return;
    };
    let server = k
        .run(&[
            "config",
            "view",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])
        .await;
    assert_eq!(server.out(), k.server.url());
    let run = k.run(&["get", "ns"]).await;
    let out = run.out();
    for name in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    let names = k.run(&["get", "namespaces", "-o", "name"]).await;
    assert_eq!(
        names.out().lines().collect::<Vec<_>>(),
        [
            "namespace/default",
            "namespace/kube-node-lease",
            "namespace/kube-public",
            "namespace/kube-system"
        ]
    );
}

#[tokio::test]
async fn apply_creates_a_manifest_that_get_reads_back() {
    let Some(k) = Kubectl::start("apply_creates_a_manifest_that_get_reads_back").await else {
        return;
    };
    k.apply_manifest().await;
    let deployment = k
        .run(&["-n", "shop", "get", "deploy", "web", "-o", "json"])
        .await
        .json();
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["apiVersion"], "apps/v1");
    assert_eq!(deployment["metadata"]["namespace"], "shop");
    assert_eq!(deployment["metadata"]["generation"], 1);
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(
        deployment["metadata"]["uid"].as_str().map(str::len),
        Some(36)
    );
    let created = deployment["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap();
    assert!(created.ends_with('Z') && created.len() == 20, "{created}");
    let revision = deployment["metadata"]["resourceVersion"].as_str().unwrap();
    assert!(revision.parse::<u64>().is_ok(), "{revision}");
    assert!(
        deployment["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    let settings = k
        .run(&["-n", "shop", "get", "cm", "web-settings", "-o", "json"])
        .await;
    assert_eq!(settings.json()["data"]["LOG_LEVEL"], "info");
    let service = k
        .run(&["-n", "shop", "get", "svc", "web", "-o", "json"])
        .await;
    assert_eq!(service.json()["spec"]["ports"][0]["port"], 80);

    // Applying again changes nothing, and a write of nothing keeps the resourceVersion.
    let again = k
        .run(&["apply", "-f", crate::common::manifest().to_str().unwrap()])
        .await;
    assert!(
        again.out().contains("deployment.apps/web unchanged"),
        "{}",
        again.stdout
    );
    let after = k
        .run(&["-n", "shop", "get", "deploy", "web", "-o", "json"])
        .await
        .json();
    assert_eq!(after["metadata"]["resourceVersion"], revision);
}

#[tokio::test]
async fn scale_sets_spec_replicas_through_the_scale_subresource() {
    let Some(k) = Kubectl::start("scale_sets_spec_replicas_through_the_scale_subresource").await
    else {
        return;
    };
    k.apply_manifest().await;
    let run = k
        .run(&["-n", "shop", "scale", "deployment", "web", "--replicas=3"])
        .await;
    assert!(
        run.out().contains("deployment.apps/web scaled"),
        "{}",
        run.stdout
    );
    let deployment = k
        .run(&["-n", "shop", "get", "deploy", "web", "-o", "json"])
        .await
        .json();
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(deployment["metadata"]["generation"], 2, "spec changed");
    let scale = k
        .run(&[
            "-n",
            "shop",
            "get",
            "deploy",
            "web",
            "--subresource=scale",
            "-o",
            "json",
        ])
        .await
        .json();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
    // The precondition kubectl offers: scale only from the replica count it expects.
    let stale = k
        .run(&[
            "-n",
            "shop",
            "scale",
            "deploy",
            "web",
            "--current-replicas=2",
            "--replicas=5",
        ])
        .await;
    assert!(!stale.ok, "{}", stale.stdout);
}

#[tokio::test]
async fn patch_merges_json_patches_and_merges_strategically() {
    let Some(k) = Kubectl::start("patch_merges_json_patches_and_merges_strategically").await else {
        return;
    };
    k.apply_manifest().await;
    let get = || async {
        k.run(&["-n", "shop", "get", "deploy", "web", "-o", "json"])
            .await
            .json()
    };

    // Strategic: the container `web`'s env entry LOG_LEVEL, merged by name; MODE, the other
    // entry, and the container `sidecar` stay.
    let strategic = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "LOG_LEVEL", "value": "debug"}]}
    ]}}}});
    let patch = strategic.to_string();
    let run = k
        .run(&[
            "-n",
            "shop",
            "patch",
            "deployment",
            "web",
            "--type=strategic",
            "-p",
            &patch,
        ])
        .await;
    assert!(
        run.out().contains("deployment.apps/web patched"),
        "{}",
        run.stdout
    );
    let containers = get().await["spec"]["template"]["spec"]["containers"].clone();
    assert_eq!(containers.as_array().map(Vec::len), Some(2), "{containers}");
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "LOG_LEVEL", "value": "debug"}, {"name": "MODE", "value": "shop"}])
    );
    assert_eq!(containers[0]["image"], "nginx:1.27");
    assert_eq!(containers[1]["name"], "sidecar");

    // JSON patch: an image replaced by path, guarded by a test.
    let json_patch = json!([
        {"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "web"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1.28"},
    ]);
    let patch = json_patch.to_string();
    k.run(&[
        "-n",
        "shop",
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        &patch,
    ])
    .await
    .out();
    let deployment = get().await;
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.28"
    );
    let failing = json!([{"op": "test", "path": "/spec/replicas", "value": 7}]).to_string();
    let run = k
        .run(&[
            "-n",
            "shop",
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            &failing,
        ])
        .await;
    // A 422 without field causes, which kubectl words as an invalid request.
    assert!(
        !run.ok
            && run.stderr.contains("The request is invalid")
            && run.stderr.contains("testing value /spec/replicas failed"),
        "{}",
        run.stderr
    );

    // Merge patch: a list is replaced whole, unlike the strategic patch above.
    let merge = json!({"spec": {"minReadySeconds": 5, "template": {"spec": {"containers": [
        {"name": "only", "image": "busybox:1.36"}
    ]}}}});
    let patch = merge.to_string();
    k.run(&[
        "-n",
        "shop",
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        &patch,
    ])
    .await
    .out();
    let deployment = get().await;
    assert_eq!(deployment["spec"]["minReadySeconds"], 5);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only", "image": "busybox:1.36"}])
    );
    assert_eq!(
        deployment["metadata"]["generation"], 4,
        "three patches of spec"
    );
}

#[tokio::test]
async fn labels_select_pods_with_equality_and_set_based_selectors() {
    let Some(k) = Kubectl::start("labels_select_pods_with_equality_and_set_based_selectors").await
    else {
        return;
    };
    let pods: Vec<_> = [
        ("web-1", "web", "front"),
        ("web-2", "web", "db"),
        ("api-1", "api", "front"),
    ]
    .iter()
    .map(|(name, app, tier)| {
        json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "labels": {"app": app, "tier": tier}},
                   "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}})
    })
    .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": pods});
    let file = k.dir.path().join("pods.json");
    tokio::fs::write(&file, list.to_string()).await.unwrap();
    // kubectl validates a `List` itself, with /openapi/v2, which is not served.
    k.run(&["apply", "--validate=false", "-f", file.to_str().unwrap()])
        .await
        .out();

    let k = &k;
    let select = |selector: &'static str| async move {
        let run = k.run(&["get", "pods", "-l", selector, "-o", "name"]).await;
        run.out().lines().map(str::to_owned).collect::<Vec<_>>()
    };
    assert_eq!(select("app=web,tier!=db").await, ["pod/web-1"]);
    assert_eq!(select("tier in (front)").await, ["pod/api-1", "pod/web-1"]);
    assert_eq!(
        select("app notin (api),tier").await,
        ["pod/web-1", "pod/web-2"]
    );

    let run = k.run(&["label", "pod", "web-2", "canary=true"]).await;
    assert!(run.out().contains("pod/web-2 labeled"), "{}", run.stdout);
    assert_eq!(select("canary").await, ["pod/web-2"]);
    assert_eq!(select("!canary,app=web").await, ["pod/web-1"]);
    k.run(&["label", "pod", "web-2", "tier=cache", "--overwrite"])
        .await
        .out();
    assert_eq!(select("app=web,tier!=db").await, ["pod/web-1", "pod/web-2"]);
    k.run(&["label", "pod", "web-2", "canary-"]).await.out();
    assert!(select("canary").await.is_empty());
}

#[tokio::test]
async fn delete_removes_objects_and_a_missing_one_is_not_found() {
    let Some(k) = Kubectl::start("delete_removes_objects_and_a_missing_one_is_not_found").await
    else {
        return;
    };
    k.apply_manifest().await;
    let run = k
        .run(&["-n", "shop", "delete", "configmap", "web-settings"])
        .await;
    assert!(
        run.out().contains("configmap \"web-settings\" deleted"),
        "{}",
        run.stdout
    );
    let missing = k.run(&["-n", "shop", "get", "cm", "web-settings"]).await;
    assert!(!missing.ok);
    assert_eq!(
        missing.stderr.trim(),
        "Error from server (NotFound): configmaps \"web-settings\" not found"
    );
    let missing = k.run(&["-n", "shop", "get", "deploy", "nope"]).await;
    assert!(
        missing
            .stderr
            .contains("Error from server (NotFound): deployments.apps \"nope\" not found"),
        "{}",
        missing.stderr
    );

    // A namespace takes its objects with it.
    let run = k.run(&["delete", "namespace", "shop"]).await;
    assert!(
        run.out().contains("namespace \"shop\" deleted"),
        "{}",
        run.stdout
    );
    let all = k.run(&["get", "deploy,svc,cm", "-A", "-o", "name"]).await;
    assert_eq!(all.out().trim(), "", "left behind: {}", all.stdout);
    // And objects need their namespace.
    let file = k.dir.path().join("cm.json");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "x", "namespace": "gone"}});
    tokio::fs::write(&file, cm.to_string()).await.unwrap();
    let orphan = k.run(&["create", "-f", file.to_str().unwrap()]).await;
    assert!(
        orphan
            .stderr
            .starts_with("Error from server (NotFound): error when creating")
            && orphan.stderr.contains("namespaces \"gone\" not found"),
        "{}",
        orphan.stderr
    );
}

#[tokio::test]
async fn an_update_with_a_stale_resource_version_conflicts() {
    let Some(k) = Kubectl::start("an_update_with_a_stale_resource_version_conflicts").await else {
        return;
    };
    k.apply_manifest().await;
    let read = k
        .run(&["-n", "shop", "get", "cm", "web-settings", "-o", "json"])
        .await
        .json();
    let stale = k.dir.path().join("stale.json");
    tokio::fs::write(&stale, read.to_string()).await.unwrap();
    // Someone else writes in between.
    k.run(&["-n", "shop", "label", "cm", "web-settings", "owner=other"])
        .await
        .out();
    let run = k.run(&["replace", "-f", stale.to_str().unwrap()]).await;
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("Error from server (Conflict): error when replacing \"",)
            && run.stderr.contains(
                "Operation cannot be fulfilled on configmaps \"web-settings\": the object has been \
             modified; please apply your changes to the latest version and try again"
            ),
        "{}",
        run.stderr
    );
    // Without a resourceVersion the replace is unconditional, and wins.
    let mut fresh = read.clone();
    fresh["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    fresh["data"]["LOG_LEVEL"] = "warn".into();
    tokio::fs::write(&stale, fresh.to_string()).await.unwrap();
    k.run(&["replace", "-f", stale.to_str().unwrap()])
        .await
        .out();
    let now = k
        .run(&["-n", "shop", "get", "cm", "web-settings", "-o", "json"])
        .await
        .json();
    assert_eq!(now["data"]["LOG_LEVEL"], "warn");
}

#[tokio::test]
async fn status_changes_only_through_its_subresource() {
    // Without controllers, or the deployment controller would write the status back.
    let Some(k) = Kubectl::start_with(
        "status_changes_only_through_its_subresource",
        KubeApiServerOptions::default().controllers(false),
    )
    .await
    else {
        return;
    };
    k.apply_manifest().await;
    let status = json!({"status": {"replicas": 2, "readyReplicas": 2}}).to_string();
    k.run(&[
        "-n",
        "shop",
        "patch",
        "deploy",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ])
    .await
    .out();
    let plain = json!({"status": {"replicas": 9}, "metadata": {"labels": {"seen": "yes"}}});
    let patch = plain.to_string();
    k.run(&[
        "-n",
        "shop",
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        &patch,
    ])
    .await
    .out();
    let deployment = k
        .run(&["-n", "shop", "get", "deploy", "web", "-o", "json"])
        .await
        .json();
    assert_eq!(
        deployment["status"],
        json!({"replicas": 2, "readyReplicas": 2})
    );
    assert_eq!(deployment["metadata"]["labels"]["seen"], "yes");
    assert_eq!(
        deployment["metadata"]["generation"], 1,
        "status is not spec"
    );
}

#[tokio::test]
async fn typed_create_commands_are_refused_as_protobuf() {
    let Some(k) = Kubectl::start("typed_create_commands_are_refused_as_protobuf").await else {
        return;
    };
    let run = k.run(&["create", "namespace", "typed"]).await;
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("Error from server (UnsupportedMediaType)")
            && run.stderr.contains("kubectl apply"),
        "{}",
        run.stderr
    );
    let run = k
        .run(&["create", "configmap", "typed", "--from-literal=a=b"])
        .await;
    // kubectl words this one without the reason; the message is the server's.
    assert!(
        !run.ok && run.stderr.contains("this test server speaks JSON only"),
        "{}",
        run.stderr
    );
}
