//! Raw HTTP checks of what kubectl does not show: pagination, the Status bodies of errors,
//! content types, discovery, generateName and dry runs, the Scale document.

use serde_json::{Value, json};

use crate::common::{get, post, request};
use dr_k8s_testkit::{KubeApiServer, KubeApiServerOptions};

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}})
}

#[tokio::test]
async fn lists_page_with_limit_and_an_opaque_continue_token() {
    let server = KubeApiServer::start().await.unwrap();
    for i in 0..5 {
        let created = post(
            &server,
            "/api/v1/namespaces/default/configmaps",
            &configmap(&format!("cm-{i}")),
        )
        .await;
        assert_eq!(created.code, 201, "{}", created.body);
    }
    let mut names = Vec::new();
    let mut path = "/api/v1/namespaces/default/configmaps?limit=2".to_owned();
    let mut revisions = Vec::new();
    let mut pages = 0;
    loop {
        let page = get(&server, &path).await;
        assert_eq!(page.code, 200, "{}", page.body);
        assert_eq!(page.body["kind"], "ConfigMapList");
        pages += 1;
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        names.extend(
            items
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned()),
        );
        revisions.push(page.body["metadata"]["resourceVersion"].clone());
        let Some(token) = page.body["metadata"]["continue"].as_str() else {
            assert!(page.body["metadata"].get("remainingItemCount").is_none());
            break;
        };
        assert!(!token.contains("cm-"), "the token is opaque: {token}");
        let remaining = page.body["metadata"]["remainingItemCount"]
            .as_u64()
            .unwrap();
        assert_eq!(remaining as usize, 5 - names.len());
        path = format!("/api/v1/namespaces/default/configmaps?limit=2&continue={token}");
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);
    // Every page reports the resourceVersion of the list it continues.
    assert!(
        revisions.iter().all(|r| *r == revisions[0]),
        "{revisions:?}"
    );

    let bad = get(
        &server,
        "/api/v1/namespaces/default/configmaps?limit=2&continue=zz",
    )
    .await;
    assert_eq!(bad.code, 400);
    assert_eq!(bad.body["reason"], "BadRequest");

    // Field selectors, and a list across namespaces.
    let one = get(
        &server,
        "/api/v1/configmaps?fieldSelector=metadata.name%3Dcm-3",
    )
    .await;
    let items = one.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["namespace"], "default");
    let unsupported = get(&server, "/api/v1/configmaps?fieldSelector=data.k%3Dx").await;
    assert_eq!(unsupported.code, 400);
}

#[tokio::test]
async fn conflicts_come_back_as_status_objects() {
    let server = KubeApiServer::start().await.unwrap();
    let path = "/api/v1/namespaces/default/configmaps";
    let first = post(&server, path, &configmap("a")).await;
    assert_eq!(first.code, 201);
    assert_eq!(first.content_type, "application/json");
    let again = post(&server, path, &configmap("a")).await;
    assert_eq!(again.code, 409);
    assert_eq!(
        again.body,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "configmaps \"a\" already exists", "reason": "AlreadyExists",
            "details": {"name": "a", "group": "", "kind": "configmaps"}, "code": 409,
        })
    );

    let mut stale = first.body.clone();
    stale["data"]["k"] = "changed".into();
    let updated = request(
        &server,
        "PUT",
        &format!("{path}/a"),
        "application/json",
        &stale.to_string(),
    )
    .await;
    assert_eq!(updated.code, 200, "{}", updated.body);
    let newer = updated.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    let older = first.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert!(newer > older);
    stale["data"]["k"] = "lost".into();
    let conflict = request(
        &server,
        "PUT",
        &format!("{path}/a"),
        "application/json",
        &stale.to_string(),
    )
    .await;
    assert_eq!(conflict.code, 409);
    assert_eq!(conflict.body["reason"], "Conflict");
    assert_eq!(conflict.body["status"], "Failure");
    assert_eq!(conflict.body["details"]["name"], "a");

    let missing = request(
        &server,
        "PUT",
        &format!("{path}/nope"),
        "application/json",
        &configmap("nope").to_string(),
    )
    .await;
    assert_eq!(missing.code, 404);
    assert_eq!(missing.body["message"], "configmaps \"nope\" not found");
}

#[tokio::test]
async fn protobuf_is_unsupported_media_type() {
    let server = KubeApiServer::start().await.unwrap();
    let reply = request(
        &server,
        "POST",
        "/api/v1/namespaces",
        "application/vnd.kubernetes.protobuf",
        "k8s\0",
    )
    .await;
    assert_eq!(reply.code, 415);
    assert_eq!(reply.body["kind"], "Status");
    assert_eq!(reply.body["reason"], "UnsupportedMediaType");
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .contains("kubectl apply")
    );
    let apply = request(
        &server,
        "PATCH",
        "/api/v1/namespaces/default",
        "application/apply-patch+yaml",
        "{}",
    )
    .await;
    // Server-side apply is served, and needs a field manager.
    assert_eq!(apply.code, 400);
    assert!(
        apply.body["message"]
            .as_str()
            .unwrap()
            .contains("fieldManager is required for apply requests"),
        "{}",
        apply.body
    );
}

#[tokio::test]
async fn objects_need_their_namespace() {
    let server = KubeApiServer::start().await.unwrap();
    let reply = post(
        &server,
        "/api/v1/namespaces/nope/configmaps",
        &configmap("a"),
    )
    .await;
    assert_eq!(reply.code, 404);
    assert_eq!(reply.body["message"], "namespaces \"nope\" not found");
    assert_eq!(reply.body["details"]["kind"], "namespaces");
    let created = post(
        &server,
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "nope"}}),
    )
    .await;
    assert_eq!(created.body["status"]["phase"], "Active");
    let reply = post(
        &server,
        "/api/v1/namespaces/nope/configmaps",
        &configmap("a"),
    )
    .await;
    assert_eq!(reply.code, 201);
    let deleted = request(
        &server,
        "DELETE",
        "/api/v1/namespaces/nope",
        "application/json",
        "",
    )
    .await;
    assert_eq!(deleted.code, 200);
    assert_eq!(deleted.body["kind"], "Status");
    assert_eq!(deleted.body["status"], "Success");
    let gone = get(&server, "/api/v1/namespaces/nope/configmaps/a").await;
    assert_eq!(gone.code, 404);
}

#[tokio::test]
async fn generate_name_and_dry_run() {
    let server = KubeApiServer::start().await.unwrap();
    let path = "/api/v1/namespaces/default/configmaps";
    let generated = json!({"metadata": {"generateName": "job-"}});
    let a = post(&server, path, &generated).await;
    let b = post(&server, path, &generated).await;
    let name = |r: &crate::common::Reply| r.body["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(
        name(&a).starts_with("job-") && name(&a).len() == 9,
        "{}",
        name(&a)
    );
    assert_ne!(name(&a), name(&b));
    assert_ne!(a.body["metadata"]["uid"], b.body["metadata"]["uid"]);

    let dry = post(&server, &format!("{path}?dryRun=All"), &configmap("dry")).await;
    assert_eq!(dry.code, 201);
    assert_eq!(dry.body["metadata"]["name"], "dry");
    assert_eq!(get(&server, &format!("{path}/dry")).await.code, 404);
    let nameless = post(&server, path, &json!({"metadata": {}})).await;
    assert_eq!(nameless.code, 422);
    assert_eq!(nameless.body["reason"], "Invalid");
}

#[tokio::test]
async fn scale_is_an_autoscaling_v1_scale() {
    // Without controllers: no replica set's pods count in the Scale's status.
    let server = KubeApiServer::start_with(KubeApiServerOptions::default().controllers(false))
        .await
        .unwrap();
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web", "tier": "front"}},
                 "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
        "status": {"replicas": 99},
    });
    let created = post(
        &server,
        "/apis/apps/v1/namespaces/default/deployments",
        &deployment,
    )
    .await;
    assert_eq!(created.code, 201);
    assert_eq!(
        created.body["status"],
        json!({}),
        "a client does not set status on create"
    );
    let path = "/apis/apps/v1/namespaces/default/deployments/web/scale";
    let scale = get(&server, path).await;
    assert_eq!(scale.body["apiVersion"], "autoscaling/v1");
    assert_eq!(scale.body["kind"], "Scale");
    assert_eq!(scale.body["spec"], json!({"replicas": 1}));
    assert_eq!(
        scale.body["status"],
        json!({"replicas": 0, "selector": "app=web,tier=front"})
    );

    let mut wanted = scale.body.clone();
    wanted["spec"]["replicas"] = 4.into();
    let put = request(
        &server,
        "PUT",
        path,
        "application/json",
        &wanted.to_string(),
    )
    .await;
    assert_eq!(put.code, 200, "{}", put.body);
    assert_eq!(put.body["spec"]["replicas"], 4);
    // The Scale's resourceVersion is the deployment's, and a stale one conflicts.
    let stale = request(
        &server,
        "PUT",
        path,
        "application/json",
        &wanted.to_string(),
    )
    .await;
    assert_eq!(stale.code, 409);
    let patched = request(
        &server,
        "PATCH",
        path,
        "application/strategic-merge-patch+json",
        r#"{"spec":{"replicas":0}}"#,
    )
    .await;
    assert_eq!(patched.body["spec"]["replicas"], 0);
    let object = get(&server, "/apis/apps/v1/namespaces/default/deployments/web").await;
    assert_eq!(object.body["spec"]["replicas"], 0);
    assert_eq!(object.body["metadata"]["generation"], 3);
}

#[tokio::test]
async fn discovery_lists_resources_and_subresources_as_plain_json() {
    // Asked for `application/json` only: the legacy documents (aggregated discovery, for a
    // client that asks for it, is in tests/discovery.rs).
    let server = KubeApiServer::start().await.unwrap();
    let apis = get(&server, "/apis").await;
    assert_eq!(apis.body["kind"], "APIGroupList");
    assert_eq!(apis.content_type, "application/json");
    let groups: Vec<&str> = apis.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        [
            "apps",
            "batch",
            "coordination.k8s.io",
            "policy",
            "networking.k8s.io",
            "rbac.authorization.k8s.io",
            "apiextensions.k8s.io"
        ]
    );
    assert_eq!(
        apis.body["groups"][0]["preferredVersion"]["groupVersion"],
        "apps/v1"
    );

    let apps = get(&server, "/apis/apps/v1").await;
    let resources = apps.body["resources"].as_array().unwrap();
    let entry = |name: &str| resources.iter().find(|r| r["name"] == name).cloned();
    let scale = entry("deployments/scale").expect("deployments/scale");
    assert_eq!(
        (scale["group"].as_str(), scale["kind"].as_str()),
        (Some("autoscaling"), Some("Scale"))
    );
    assert!(entry("statefulsets/scale").is_some() && entry("daemonsets/status").is_some());
    assert!(entry("daemonsets/scale").is_none());
    assert_eq!(
        entry("deployments").unwrap()["shortNames"],
        json!(["deploy"])
    );

    let core = get(&server, "/api/v1").await;
    let names: Vec<&str> = core.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for name in [
        "pods",
        "pods/status",
        "nodes",
        "namespaces/status",
        "persistentvolumeclaims",
        "serviceaccounts",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert_eq!(get(&server, "/version").await.body["major"], "1");
    assert_eq!(get(&server, "/apis/autoscaling/v2").await.code, 404);
    assert_eq!(get(&server, "/openapi/v2").await.code, 404);
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = KubeApiServer::start().await.unwrap();
    let address = server.address();
    assert_eq!(get(&server, "/version").await.code, 200);
    drop(server);
    // The accept task is aborted at its next poll.
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(address).await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{address} still accepts connections after the drop");
}
