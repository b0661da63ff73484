//! Containers' logs: written by the test, served as the kubelet serves them, over raw HTTP and
//! through `kubectl logs`.

use std::time::{Duration, SystemTime};

use dr_k8s_testkit::{Error, KubeApiServer};
use serde_json::{Value, json};

use crate::common::{Kubectl, exchange, get_until, post, request};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str, containers: &[&str]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox:1.36"}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": containers}})
}

/// A GET whose body is text: the code, the Content-Type and the body.
async fn text(server: &KubeApiServer, path: &str) -> (u16, String, String) {
    let raw = exchange(server, "GET", path, "", "").await;
    (raw.code, raw.content_type, raw.body)
}

fn at(seconds: u64) -> SystemTime {
    // 2026-01-01T00:00:00Z and on.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + seconds)
}

async fn running(server: &KubeApiServer, name: &str) {
    get_until(server, &format!("{PODS}/{name}"), |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
}

#[tokio::test]
async fn a_log_is_served_with_tail_since_timestamps_and_limits() {
    let server = KubeApiServer::start().await.unwrap();
    assert_eq!(post(&server, PODS, &pod("one", &["c"])).await.code, 201);
    running(&server, "one").await;
    for (i, line) in ["first", "second\n", "third", "fourth"].iter().enumerate() {
        server
            .append_log_at("default", "one", "c", at(i as u64 * 10), line)
            .unwrap();
    }
    let log = format!("{PODS}/one/log");
    let (code, content_type, body) = text(&server, &log).await;
    assert_eq!((code, content_type.as_str()), (200, "text/plain"));
    assert_eq!(body, "first\nsecond\nthird\nfourth\n");
    assert_eq!(
        text(&server, &format!("{log}?tailLines=2")).await.2,
        "third\nfourth\n"
    );
    assert_eq!(text(&server, &format!("{log}?tailLines=0")).await.2, "");
    let since = format!("{log}?sinceTime=2026-01-01T00%3A00%3A15Z");
    assert_eq!(text(&server, &since).await.2, "third\nfourth\n");
    assert_eq!(
        text(&server, &format!("{log}?tailLines=1&timestamps=true"))
            .await
            .2,
        "2026-01-01T00:00:30.000000000Z fourth\n"
    );
    assert_eq!(
        text(&server, &format!("{log}?limitBytes=8")).await.2,
        "first\nse"
    );
    // Lines from long ago are not within the last hour; one written now is.
    assert_eq!(
        text(&server, &format!("{log}?sinceSeconds=3600")).await.2,
        ""
    );
    server.append_log("default", "one", "c", "now").unwrap();
    assert_eq!(
        text(&server, &format!("{log}?sinceSeconds=3600")).await.2,
        "now\n"
    );

    // The refusals, as Status objects.
    let both = request(
        &server,
        "GET",
        &format!("{log}?sinceSeconds=1&sinceTime=2026-01-01T00%3A00%3A00Z"),
        "",
        "",
    )
    .await;
    assert_eq!(both.code, 400);
    assert_eq!(both.body["kind"], "Status");
    let previous = request(&server, "GET", &format!("{log}?previous=true"), "", "").await;
    assert_eq!(previous.code, 400);
    assert_eq!(
        previous.body["message"],
        "previous terminated container \"c\" in pod \"one\" not found"
    );
    let wrong = request(&server, "GET", &format!("{log}?container=nope"), "", "").await;
    assert_eq!(
        wrong.body["message"],
        "container nope is not valid for pod one"
    );
    let bad = request(&server, "GET", &format!("{log}?tailLines=x"), "", "").await;
    assert_eq!(bad.code, 400);
    let missing = request(&server, "GET", &format!("{PODS}/nope/log"), "", "").await;
    assert_eq!(missing.code, 404);

    // A restart keeps the old log as the previous container's.
    server.restart_container("default", "one", "c").unwrap();
    assert_eq!(text(&server, &log).await.2, "");
    let previous = text(&server, &format!("{log}?previous=true")).await.2;
    assert!(
        previous.starts_with("first\n") && previous.ends_with("now\n"),
        "{previous}"
    );
    let restarted = get_until(&server, &format!("{PODS}/one"), |p| {
        p["status"]["containerStatuses"][0]["restartCount"] == 1
    })
    .await;
    assert_eq!(
        restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"],
        "Error"
    );

    // Writing to what does not exist.
    assert!(matches!(
        server.append_log("default", "nope", "c", "x"),
        Err(Error::NoSuchPod { .. })
    ));
    assert!(matches!(
        server.append_log("default", "one", "nope", "x"),
        Err(Error::NoSuchContainer { .. })
    ));
}

#[tokio::test]
async fn a_pod_of_several_containers_needs_one_named_and_a_pending_one_has_no_log() {
    let server = KubeApiServer::start().await.unwrap();
    assert_eq!(
        post(&server, PODS, &pod("two", &["web", "sidecar"]))
            .await
            .code,
        201
    );
    running(&server, "two").await;
    server
        .append_log("default", "two", "sidecar", "side")
        .unwrap();
    let unnamed = request(&server, "GET", &format!("{PODS}/two/log"), "", "").await;
    assert_eq!(unnamed.code, 400);
    assert_eq!(
        unnamed.body["message"],
        "a container name must be specified for pod two, choose one of: [web sidecar]"
    );
    assert_eq!(
        text(&server, &format!("{PODS}/two/log?container=sidecar"))
            .await
            .2,
        "side\n"
    );
    // With nodes that are all cordoned, a new pod never starts.
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                      "spec": {"unschedulable": true}});
    assert_eq!(post(&server, "/api/v1/nodes", &node).await.code, 201);
    assert_eq!(post(&server, PODS, &pod("waiting", &["c"])).await.code, 201);
    let pending = request(&server, "GET", &format!("{PODS}/waiting/log"), "", "").await;
    assert_eq!(pending.code, 400);
    assert_eq!(
        pending.body["message"],
        "container \"c\" in pod \"waiting\" is waiting to start: ContainerCreating"
    );
}

#[tokio::test]
async fn kubectl_logs_reads_tails_and_timestamps() {
    let Some(k) = Kubectl::start("kubectl_logs_reads_tails_and_timestamps").await else {
        return;
    };
    k.apply("pod.json", &pod("two", &["web", "sidecar"]).to_string())
        .await;
    k.get_until(&["get", "pod", "two"], |p| {
        p["status"]["phase"] == "Running"
    })
    .await;
    for (i, line) in ["a", "b", "c"].iter().enumerate() {
        k.server
            .append_log_at("default", "two", "web", at(i as u64), line)
            .unwrap();
    }
    k.server
        .append_log("default", "two", "sidecar", "side")
        .unwrap();
    // kubectl picks the first container and says so.
    let run = k.run(&["logs", "two"]).await;
    assert_eq!(run.out(), "a\nb\nc\n");
    assert!(
        run.stderr
            .contains("Defaulted container \"web\" out of: web, sidecar"),
        "{}",
        run.stderr
    );
    let run = k.run(&["logs", "two", "-c", "sidecar"]).await;
    assert_eq!(run.out(), "side\n");
    let run = k
        .run(&["logs", "two", "-c", "web", "--tail=1", "--timestamps"])
        .await;
    assert_eq!(run.out(), "2026-01-01T00:00:02.000000000Z c\n");
    let run = k
        .run(&[
            "logs",
            "two",
            "-c",
            "web",
            "--since-time=2026-01-01T00:00:01Z",
        ])
        .await;
    assert_eq!(run.out(), "b\nc\n");
    let run = k.run(&["logs", "two", "-c", "web", "--previous"]).await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains(
            "Error from server (BadRequest): previous terminated container \"web\" in pod \"two\" not found"
        ),
        "{}",
        run.stderr
    );
    k.server.restart_container("default", "two", "web").unwrap();
    let run = k.run(&["logs", "two", "-c", "web", "-p"]).await;
    assert_eq!(run.out(), "a\nb\nc\n");
}
