//! Fault injection: injected errors come back as `Status` objects, are used up, and come late
//! when asked; an unavailable group answers 503 while the rest of the server works.

use std::time::{Duration, Instant};

use dr_k8s_testkit::{Fault, KubeApiServer, KubeApiServerOptions};
use serde_json::json;

use crate::common::{Kubectl, get, post};

#[tokio::test]
async fn an_injected_fault_answers_its_status_for_the_matching_requests_only() {
    let server = KubeApiServer::start().await.unwrap();
    server.inject(
        Fault::status(500)
            .method("get")
            .path_prefix("/api/v1/namespaces/default/configmaps")
            .times(2),
    );
    // Another method, another path: not matched.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
    let created = post(&server, "/api/v1/namespaces/default/configmaps", &cm).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(get(&server, "/api/v1/configmaps").await.code, 200);
    for _ in 0..2 {
        let failed = get(&server, "/api/v1/namespaces/default/configmaps/a").await;
        assert_eq!(failed.code, 500);
        assert_eq!(failed.content_type, "application/json");
        assert_eq!(failed.body["kind"], "Status");
        assert_eq!(failed.body["status"], "Failure");
        assert_eq!(failed.body["reason"], "InternalError");
        assert_eq!(failed.body["code"], 500);
        assert!(
            failed.body["message"]
                .as_str()
                .unwrap()
                .contains("GET /api/v1/namespaces/default/configmaps/a"),
            "{}",
            failed.body
        );
    }
    // Used up.
    let after = get(&server, "/api/v1/namespaces/default/configmaps/a").await;
    assert_eq!(after.code, 200, "{}", after.body);

    // 429 with a Retry-After, and a message of the test's; then 409 for a substring.
    server.inject(
        Fault::status(429)
            .path_contains("/configmaps/")
            .retry_after(3)
            .message("slow down"),
    );
    server.inject(Fault::status(409).path_contains("/configmaps/"));
    let busy = get(&server, "/api/v1/namespaces/default/configmaps/a").await;
    assert_eq!(busy.code, 429);
    assert_eq!(busy.body["reason"], "TooManyRequests");
    assert_eq!(busy.body["message"], "slow down");
    assert_eq!(busy.body["details"]["retryAfterSeconds"], 3);
    assert!(
        busy.head.to_ascii_lowercase().contains("retry-after: 3"),
        "{}",
        busy.head
    );
    let conflict = get(&server, "/api/v1/namespaces/default/configmaps/a").await;
    assert_eq!(
        (conflict.code, conflict.body["reason"].as_str()),
        (409, Some("Conflict"))
    );
    assert!(!conflict.head.to_ascii_lowercase().contains("retry-after"));
    assert_eq!(
        get(&server, "/api/v1/namespaces/default/configmaps/a")
            .await
            .code,
        200
    );
}

#[tokio::test]
async fn a_delayed_fault_and_a_latency_answer_late() {
    let server = KubeApiServer::start().await.unwrap();
    server.inject(Fault::latency(Duration::from_millis(300)).path_prefix("/api/v1/nodes"));
    server.inject(
        Fault::status(503)
            .path_prefix("/api/v1/secrets")
            .delay(Duration::from_millis(300)),
    );
    let start = Instant::now();
    let late = get(&server, "/api/v1/nodes").await;
    assert_eq!(late.code, 200, "answered as usual");
    assert_eq!(late.body["kind"], "NodeList");
    assert!(start.elapsed() >= Duration::from_millis(300));
    let start = Instant::now();
    let failed = get(&server, "/api/v1/secrets").await;
    assert_eq!(
        (failed.code, failed.body["reason"].as_str()),
        (503, Some("ServiceUnavailable"))
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    let start = Instant::now();
    assert_eq!(get(&server, "/api/v1/nodes").await.code, 200);
    assert!(start.elapsed() < Duration::from_millis(300), "used up");
}

#[tokio::test]
async fn an_unavailable_group_answers_503_and_the_others_still_serve() {
    let server = KubeApiServer::start().await.unwrap();
    server.set_group_unavailable("apps", true);
    for path in [
        "/apis/apps",
        "/apis/apps/v1",
        "/apis/apps/v1/namespaces/default/deployments",
    ] {
        let down = get(&server, path).await;
        assert_eq!(down.code, 503, "{path}");
        assert_eq!(down.body["reason"], "ServiceUnavailable");
        assert_eq!(
            down.body["message"],
            "the server is currently unable to handle the request"
        );
    }
    let groups = get(&server, "/apis").await;
    assert_eq!(groups.code, 200);
    assert!(
        groups.body["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "apps"),
        "still listed"
    );
    assert_eq!(get(&server, "/apis/policy/v1").await.code, 200);
    assert_eq!(get(&server, "/api/v1").await.code, 200);
    server.set_group_unavailable("apps", false);
    assert_eq!(get(&server, "/apis/apps/v1").await.code, 200);
}

#[tokio::test]
async fn kubectl_reports_an_unavailable_group_and_still_gets_the_rest() {
    let Some(k) =
        Kubectl::start("kubectl_reports_an_unavailable_group_and_still_gets_the_rest").await
    else {
        return;
    };
    k.server.set_group_unavailable("policy", true);
    let run = k.run(&["get", "ns", "-o", "name"]).await;
    assert!(run.out().contains("namespace/default"), "{}", run.stdout);
    // In aggregated discovery the group's version is `Stale`: kubectl 1.32's `api-resources`
    // leaves it out without a word (client-go's ServerPreferredResources passes over stale
    // group versions) and lists the others.
    let run = k.run(&["api-resources"]).await;
    assert!(run.out().contains("deployments"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("poddisruptionbudgets"),
        "{}",
        run.stdout
    );
    // From the legacy documents, fetched one group version at a time, it reports the group's
    // 503 and lists the others.
    let Some(legacy) = Kubectl::start_with(
        "kubectl_reports_an_unavailable_group_and_still_gets_the_rest",
        KubeApiServerOptions::default().aggregated_discovery(false),
    )
    .await
    else {
        return;
    };
    legacy.server.set_group_unavailable("policy", true);
    let run = legacy.run(&["api-resources"]).await;
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stderr.contains("policy/v1")
            && run
                .stderr
                .contains("the server is currently unable to handle the request"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("deployments"), "{}", run.stdout);
    // A request kubectl retries by itself: a 429 with Retry-After.
    k.server.inject(
        Fault::status(429)
            .method("GET")
            .path_prefix("/api/v1/namespaces/default/configmaps")
            .retry_after(1),
    );
    let start = Instant::now();
    let run = k.run(&["get", "cm", "-o", "name"]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(start.elapsed() >= Duration::from_secs(1), "it waited");
    // Without Retry-After it gives up at once, naming the reason.
    k.server.inject(
        Fault::status(500)
            .method("GET")
            .path_prefix("/api/v1/namespaces/default/configmaps"),
    );
    let run = k.run(&["get", "cm"]).await;
    assert!(
        !run.ok && run.stderr.contains("Error from server (InternalError)"),
        "{}",
        run.stderr
    );
}
