//! Watch over raw HTTP: events in order, bookmarks, 410 for a resourceVersion older than the
//! history, selectors, timeouts, cluster-scoped resources.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{WatchStream, post, request};
use dr_k8s_testkit::{KubeApiServer, KubeApiServerOptions};

const WAIT: Duration = Duration::from_secs(5);
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": {"app": app}}, "data": {"k": name}})
}

fn revision(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .expect("a numeric resourceVersion")
}

async fn patch_labels(server: &KubeApiServer, name: &str, app: &str) {
    let patch = json!({"metadata": {"labels": {"app": app}}}).to_string();
    let reply = request(
        server,
        "PATCH",
        &format!("{CONFIGMAPS}/{name}"),
        "application/merge-patch+json",
        &patch,
    )
    .await;
    assert_eq!(reply.code, 200, "{}", reply.body);
}

#[tokio::test]
async fn a_watch_sends_changes_in_order_and_bookmarks() {
    let options = KubeApiServerOptions::default()
        .controllers(false)
        .bookmark_interval(Duration::from_millis(100));
    let server = KubeApiServer::start_with(options).await.unwrap();
    let a = post(&server, CONFIGMAPS, &configmap("a", "web")).await;
    assert_eq!(a.code, 201);
    let listed = crate::common::get(&server, CONFIGMAPS).await;
    let from = listed.body["metadata"]["resourceVersion"].as_str().unwrap();

    let mut watch = WatchStream::open(
        &server,
        &format!("{CONFIGMAPS}?watch=1&resourceVersion={from}&allowWatchBookmarks=true"),
    )
    .await;
    assert_eq!(watch.code, 200);
    let head = watch.head.to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");

    post(&server, CONFIGMAPS, &configmap("b", "web")).await;
    patch_labels(&server, "b", "db").await;
    let deleted = request(&server, "DELETE", &format!("{CONFIGMAPS}/b"), "", "").await;
    assert_eq!(deleted.code, 200);

    let mut seen = Vec::new();
    let mut bookmark = None;
    while bookmark.is_none() {
        let event = watch.next(WAIT).await.expect("the watch stays open");
        match event["type"].as_str().unwrap() {
            "BOOKMARK" => bookmark = Some(event),
            kind => seen.push((
                kind.to_owned(),
                event["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                revision(&event["object"]),
            )),
        }
    }
    let kinds: Vec<(&str, &str)> = seen
        .iter()
        .map(|(k, n, _)| (k.as_str(), n.as_str()))
        .collect();
    // The change before `from` (a's creation) is not sent again.
    assert_eq!(kinds, [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "b")]);
    assert!(seen.windows(2).all(|w| w[0].2 < w[1].2), "{seen:?}");
    assert!(seen[0].2 > from.parse().unwrap());
    let bookmark = bookmark.unwrap();
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    assert_eq!(bookmark["object"]["apiVersion"], "v1");
    let metadata = bookmark["object"]["metadata"].as_object().unwrap();
    assert_eq!(metadata.keys().collect::<Vec<_>>(), ["resourceVersion"]);
    assert!(revision(&bookmark["object"]) >= seen[2].2);
}

#[tokio::test]
async fn a_watch_without_a_resource_version_starts_with_what_exists() {
    let server = KubeApiServer::start_with(KubeApiServerOptions::default().controllers(false))
        .await
        .unwrap();
    post(&server, CONFIGMAPS, &configmap("a", "web")).await;
    // Cluster-scoped, and timeoutSeconds ends the response.
    let mut namespaces =
        WatchStream::open(&server, "/api/v1/namespaces?watch=true&timeoutSeconds=1").await;
    let mut names = Vec::new();
    while let Some(event) = namespaces.next(WAIT).await {
        assert_eq!(event["type"], "ADDED");
        names.push(
            event["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );

    let mut watch =
        WatchStream::open(&server, &format!("{CONFIGMAPS}?watch=1&resourceVersion=0")).await;
    let first = watch.next(WAIT).await.unwrap();
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "a");
    assert_eq!(first["object"]["kind"], "ConfigMap");
    post(&server, CONFIGMAPS, &configmap("c", "web")).await;
    let next = watch.next(WAIT).await.unwrap();
    assert_eq!(
        (
            next["type"].as_str(),
            next["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("c"))
    );
}

#[tokio::test]
async fn a_resource_version_older_than_the_history_is_gone() {
    let options = KubeApiServerOptions::default()
        .controllers(false)
        .watch_history(3);
    let server = KubeApiServer::start_with(options).await.unwrap();
    let mut revisions = Vec::new();
    for i in 0..6 {
        let created = post(&server, CONFIGMAPS, &configmap(&format!("cm-{i}"), "web")).await;
        revisions.push(revision(&created.body));
    }
    let mut old = WatchStream::open(
        &server,
        &format!("{CONFIGMAPS}?watch=1&resourceVersion={}", revisions[0]),
    )
    .await;
    assert_eq!(
        old.code, 200,
        "the error comes as an event, as a real server sends it"
    );
    let error = old.next(WAIT).await.unwrap();
    assert_eq!(error["type"], "ERROR");
    assert_eq!(error["object"]["kind"], "Status");
    assert_eq!(error["object"]["code"], 410);
    assert_eq!(error["object"]["reason"], "Expired");
    assert_eq!(error["object"]["status"], "Failure");
    assert!(
        old.next(WAIT).await.is_none(),
        "the watch ends after the error"
    );

    // From a resourceVersion the history still holds, what came after it is replayed.
    let mut recent = WatchStream::open(
        &server,
        &format!("{CONFIGMAPS}?watch=1&resourceVersion={}", revisions[3]),
    )
    .await;
    for (i, wanted) in revisions[4..].iter().enumerate() {
        let event = recent.next(WAIT).await.unwrap();
        assert_eq!(event["type"], "ADDED");
        assert_eq!(event["object"]["metadata"]["name"], format!("cm-{}", i + 4));
        assert_eq!(revision(&event["object"]), *wanted);
    }
}

#[tokio::test]
async fn a_label_selected_watch_sees_objects_enter_and_leave() {
    let server = KubeApiServer::start_with(KubeApiServerOptions::default().controllers(false))
        .await
        .unwrap();
    // All namespaces, app=web only.
    let mut watch = WatchStream::open(
        &server,
        "/api/v1/configmaps?watch=1&labelSelector=app%3Dweb",
    )
    .await;
    post(&server, CONFIGMAPS, &configmap("web-1", "web")).await;
    post(&server, CONFIGMAPS, &configmap("db-1", "db")).await;
    patch_labels(&server, "db-1", "web").await;
    patch_labels(&server, "web-1", "cache").await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let event = watch.next(WAIT).await.unwrap();
        got.push(format!(
            "{} {} {}",
            event["type"].as_str().unwrap(),
            event["object"]["metadata"]["name"].as_str().unwrap(),
            event["object"]["metadata"]["labels"]["app"]
                .as_str()
                .unwrap()
        ));
    }
    // db-1 enters the selection (ADDED), web-1 leaves it (DELETED, as it is now).
    assert_eq!(
        got,
        ["ADDED web-1 web", "ADDED db-1 web", "DELETED web-1 cache"]
    );
    let bad = crate::common::get(&server, "/api/v1/configmaps?watch=1&resourceVersion=abc").await;
    assert_eq!(bad.code, 400);
}
