//! Aggregated discovery (`apidiscovery.k8s.io/v2`): `/api` and `/apis` as one document each
//! for a client that asks for it, the legacy documents for one that does not; over raw HTTP,
//! and with kubectl 1.32, which asks for it first.

use std::collections::BTreeSet;

use dr_k8s_testkit::{KubeApiServer, KubeApiServerOptions};
use serde_json::{Value, json};

use crate::common::{Kubectl, RawReply, exchange_with, get, post, request};

/// What kubectl 1.32 (client-go) sends for `/api` and `/apis`.
const KUBECTL_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                              application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                              application/json";
const V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const V2BETA1: &str = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// The verbs of an ordinary resource.
const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The `status` subresource of a kind, as aggregated discovery lists it.
fn status(kind: &str) -> Value {
    json!({"subresource": "status", "responseKind": {"group": "", "version": "", "kind": kind},
           "verbs": ["get", "patch", "update"]})
}

/// `GET path` with these headers.
async fn get_with(server: &KubeApiServer, path: &str, headers: &[(&str, &str)]) -> RawReply {
    exchange_with(server, "GET", path, headers, "").await
}

/// `GET path` as kubectl asks for discovery, the body parsed.
async fn aggregated(server: &KubeApiServer, path: &str) -> (RawReply, Value) {
    let reply = get_with(server, path, &[("Accept", KUBECTL_ACCEPT)]).await;
    assert_eq!(reply.code, 200, "{}", reply.body);
    let body = serde_json::from_str(&reply.body).expect("a JSON body");
    (reply, body)
}

/// A header of a response, by its lowercase name.
fn header<'a>(reply: &'a RawReply, name: &str) -> Option<&'a str> {
    reply.head.lines().find_map(|line| {
        let (key, value) = line.split_once(": ")?;
        key.eq_ignore_ascii_case(name).then_some(value)
    })
}

/// The group of an aggregated `/apis` document by name.
fn group<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == name)
}

/// A version's resources as the legacy documents name them: `deployments`,
/// `deployments/status`, ...
fn flattened(version: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for resource in version["resources"].as_array().unwrap() {
        let plural = resource["resource"].as_str().unwrap();
        names.push(plural.to_owned());
        for sub in resource["subresources"].as_array().into_iter().flatten() {
            names.push(format!("{plural}/{}", sub["subresource"].as_str().unwrap()));
        }
    }
    names
}

fn legacy_names(list: &Value) -> Vec<String> {
    list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn api_and_apis_answer_aggregated_discovery_to_a_client_that_asks_for_it() {
    let server = KubeApiServer::start().await.unwrap();
    let (reply, core) = aggregated(&server, "/api").await;
    assert_eq!(header(&reply, "content-type"), Some(V2));
    assert_eq!(core["kind"], "APIGroupDiscoveryList");
    assert_eq!(core["apiVersion"], "apidiscovery.k8s.io/v2");
    let items = core["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert!(items[0]["metadata"].get("name").is_none(), "the core group");
    let v1 = &items[0]["versions"][0];
    assert_eq!(
        (&v1["version"], &v1["freshness"]),
        (&json!("v1"), &json!("Current"))
    );
    let resource = |version: &Value, plural: &str| {
        version["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == plural)
            .cloned()
            .unwrap_or_else(|| panic!("{plural} in {version}"))
    };
    assert_eq!(
        resource(v1, "pods"),
        json!({
            "resource": "pods",
            "responseKind": {"group": "", "version": "", "kind": "Pod"},
            "scope": "Namespaced",
            "singularResource": "pod",
            "verbs": VERBS,
            "shortNames": ["po"],
            "categories": ["all"],
            "subresources": [
                status("Pod"),
                {"subresource": "eviction",
                 "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"},
                 "verbs": ["create"]},
                {"subresource": "log",
                 "responseKind": {"group": "", "version": "", "kind": "Pod"},
                 "verbs": ["get"]},
            ],
        })
    );
    let namespaces = resource(v1, "namespaces");
    assert_eq!(namespaces["scope"], "Cluster");
    assert!(
        !namespaces["verbs"]
            .as_array()
            .unwrap()
            .contains(&json!("deletecollection"))
    );
    let secrets = resource(v1, "secrets");
    for absent in ["shortNames", "categories", "subresources"] {
        assert!(secrets.get(absent).is_none(), "{absent} in {secrets}");
    }

    let (reply, apis) = aggregated(&server, "/apis").await;
    assert_eq!(header(&reply, "content-type"), Some(V2));
    let names: Vec<&str> = apis["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["metadata"]["name"].as_str().unwrap())
        .collect();
    let legacy = get(&server, "/apis").await;
    let legacy_groups: Vec<&str> = legacy.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, legacy_groups, "the groups of /apis, in its order");
    let apps = &group(&apis, "apps").unwrap()["versions"][0];
    assert_eq!(
        resource(apps, "deployments"),
        json!({
            "resource": "deployments",
            "responseKind": {"group": "", "version": "", "kind": "Deployment"},
            "scope": "Namespaced",
            "singularResource": "deployment",
            "verbs": VERBS,
            "shortNames": ["deploy"],
            "categories": ["all"],
            "subresources": [
                status("Deployment"),
                {"subresource": "scale",
                 "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                 "verbs": ["get", "patch", "update"]},
            ],
        })
    );
    let crds = &group(&apis, "apiextensions.k8s.io").unwrap()["versions"][0];
    assert_eq!(
        resource(crds, "customresourcedefinitions")["categories"],
        json!(["api-extensions"])
    );

    // Every group version lists what its legacy document lists, subresources included.
    let mut documents = vec![(core["items"][0].clone(), "/api/v1".to_owned())];
    for item in apis["items"].as_array().unwrap() {
        for version in item["versions"].as_array().unwrap() {
            let path = format!(
                "/apis/{}/{}",
                item["metadata"]["name"].as_str().unwrap(),
                version["version"].as_str().unwrap()
            );
            documents.push((json!({"versions": [version]}), path));
        }
    }
    for (item, path) in documents {
        let version = &item["versions"][0];
        assert_eq!(version["freshness"], "Current", "{path}");
        let legacy = get(&server, &path).await;
        assert_eq!(flattened(version), legacy_names(&legacy.body), "{path}");
    }
}

#[tokio::test]
async fn requests_that_do_not_ask_for_it_get_the_legacy_documents() {
    let server = KubeApiServer::start().await.unwrap();
    for accept in ["application/json", "*/*", "application/json, */*;q=0.8"] {
        for (path, kind) in [("/api", "APIVersions"), ("/apis", "APIGroupList")] {
            let reply = get_with(&server, path, &[("Accept", accept)]).await;
            assert_eq!(reply.code, 200);
            assert_eq!(reply.content_type, "application/json", "{accept}");
            let body: Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["kind"], kind, "{accept}");
            assert!(header(&reply, "etag").is_none(), "{}", reply.head);
        }
    }
    // No Accept at all, and an aggregated type the client weighs lower than plain JSON.
    let none = get_with(&server, "/apis", &[]).await;
    assert_eq!(none.content_type, "application/json");
    let lower = format!("{V2};q=0.5,application/json");
    let reply = get_with(&server, "/apis", &[("Accept", &lower)]).await;
    assert_eq!(reply.content_type, "application/json");
    // The group version documents are legacy whatever is asked for.
    let reply = get_with(&server, "/apis/apps/v1", &[("Accept", KUBECTL_ACCEPT)]).await;
    assert_eq!(reply.content_type, "application/json");
    assert!(reply.body.contains("\"APIResourceList\""), "{}", reply.body);

    // A client that asks only for v2beta1 (client-go 1.26 to 1.29) gets that version.
    let older = format!("{V2BETA1},application/json");
    let reply = get_with(&server, "/apis", &[("Accept", &older)]).await;
    assert_eq!(header(&reply, "content-type"), Some(V2BETA1));
    let body: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    assert!(group(&body, "apps").is_some());

    // A server without aggregated discovery, as before 1.26.
    let old =
        KubeApiServer::start_with(KubeApiServerOptions::default().aggregated_discovery(false))
            .await
            .unwrap();
    let reply = get_with(&old, "/apis", &[("Accept", KUBECTL_ACCEPT)]).await;
    assert_eq!(reply.content_type, "application/json");
    assert!(reply.body.contains("\"APIGroupList\""), "{}", reply.body);
}

#[tokio::test]
async fn the_etag_answers_304_until_discovery_changes() {
    let server = KubeApiServer::start().await.unwrap();
    let (first, _) = aggregated(&server, "/apis").await;
    let etag = header(&first, "etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(header(&first, "vary"), Some("Accept"));
    assert_eq!(header(&first, "cache-control"), Some("public"));
    let cached = get_with(
        &server,
        "/apis",
        &[("Accept", KUBECTL_ACCEPT), ("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(cached.code, 304, "{}", cached.head);
    assert_eq!(cached.body, "");
    assert_eq!(header(&cached, "etag"), Some(etag.as_str()));
    // /api has its own document and ETag.
    let (core, _) = aggregated(&server, "/api").await;
    assert_ne!(header(&core, "etag"), Some(etag.as_str()));

    let created = post(&server, crate::crd::CRDS, &crate::crd::definition()).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let changed = get_with(
        &server,
        "/apis",
        &[("Accept", KUBECTL_ACCEPT), ("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(changed.code, 200);
    assert_ne!(header(&changed, "etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn custom_resources_join_aggregated_discovery_and_leave_with_their_definition() {
    let server = KubeApiServer::start().await.unwrap();
    let mut definition = crate::crd::definition();
    definition["spec"]["names"]["categories"] = json!(["livekit"]);
    let created = post(&server, crate::crd::CRDS, &definition).await;
    assert_eq!(created.code, 201, "{}", created.body);

    let (_, apis) = aggregated(&server, "/apis").await;
    let livekit = group(&apis, "livekit.io").expect("livekit.io listed");
    let versions: Vec<&str> = livekit["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1", "v1beta1"], "preferred first");
    assert_eq!(
        livekit["versions"][0],
        json!({
            "version": "v1",
            "freshness": "Current",
            "resources": [{
                "resource": "rooms",
                "responseKind": {"group": "", "version": "", "kind": "Room"},
                "scope": "Namespaced",
                "singularResource": "room",
                "verbs": VERBS,
                "shortNames": ["rm"],
                "categories": ["livekit"],
                "subresources": [status("Room")],
            }],
        })
    );
    assert!(
        livekit["versions"][1]["resources"][0]
            .get("subresources")
            .is_none(),
        "v1beta1 declares no status"
    );

    let deleted = request(
        &server,
        "DELETE",
        &format!("{}/rooms.livekit.io", crate::crd::CRDS),
        "application/json",
        "",
    )
    .await;
    assert_eq!(deleted.code, 200, "{}", deleted.body);
    let (_, apis) = aggregated(&server, "/apis").await;
    assert!(group(&apis, "livekit.io").is_none(), "{apis}");
}

#[tokio::test]
async fn an_unavailable_group_is_stale_in_aggregated_discovery() {
    let server = KubeApiServer::start().await.unwrap();
    server.set_group_unavailable("policy", true);
    let (_, apis) = aggregated(&server, "/apis").await;
    assert_eq!(
        group(&apis, "policy").unwrap()["versions"],
        json!([{"version": "v1", "freshness": "Stale"}])
    );
    assert_eq!(
        group(&apis, "apps").unwrap()["versions"][0]["freshness"],
        "Current"
    );
    server.set_group_unavailable("policy", false);
    let (_, apis) = aggregated(&server, "/apis").await;
    assert_eq!(
        group(&apis, "policy").unwrap()["versions"][0]["freshness"],
        "Current"
    );
}

/// The paths kubectl requested of the server, by its `-v=6` log, without queries.
fn requested_paths(k: &Kubectl, stderr: &str) -> Vec<String> {
    let url = k.server.url();
    stderr
        .match_indices(&url)
        .map(|(at, _)| {
            let rest = &stderr[at + url.len()..];
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"' || c == '?')
                .unwrap_or(rest.len());
            rest[..end].to_owned()
        })
        .collect()
}

/// Whether a path is a legacy discovery document of one group or group version.
fn per_group_discovery(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    matches!(
        segments.as_slice(),
        ["api", _] | ["apis", _] | ["apis", _, _]
    )
}

#[tokio::test]
async fn kubectl_discovers_everything_with_two_requests() {
    let Some(k) = Kubectl::start("kubectl_discovers_everything_with_two_requests").await else {
        return;
    };
    // With nothing cached, `get` discovers with /api and /apis alone; the verbose log shows
    // the aggregated document's media type coming back.
    let run = k.run(&["get", "deploy", "-v=8"]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("Content-Type: {V2}")),
        "{}",
        run.stderr
    );
    let paths = requested_paths(&k, &run.stderr);
    let per_group: Vec<&String> = paths.iter().filter(|p| per_group_discovery(p)).collect();
    assert!(per_group.is_empty(), "{per_group:?}\n{}", run.stderr);
    assert!(
        paths.contains(&"/apis/apps/v1/namespaces/default/deployments".to_owned()),
        "{paths:?}"
    );

    // `api-resources` discovers anew, ignoring the cache.
    let run = k.run(&["api-resources", "-v=6"]).await;
    let listed = run.out().to_owned();
    let paths = requested_paths(&k, &run.stderr);
    assert!(
        paths.contains(&"/api".to_owned()) && paths.contains(&"/apis".to_owned()),
        "{paths:?}\n{}",
        run.stderr
    );
    let per_group: Vec<&String> = paths.iter().filter(|p| per_group_discovery(p)).collect();
    assert!(per_group.is_empty(), "{per_group:?}\n{}", run.stderr);

    // The same resources as from the legacy documents, which kubectl reads one group version
    // at a time from a server without aggregated discovery.
    let Some(old) = Kubectl::start_with(
        "kubectl_discovers_everything_with_two_requests",
        KubeApiServerOptions::default().aggregated_discovery(false),
    )
    .await
    else {
        return;
    };
    let run = old.run(&["api-resources", "-v=6"]).await;
    assert_eq!(run.out(), listed);
    let paths = requested_paths(&old, &run.stderr);
    assert!(paths.contains(&"/apis/apps/v1".to_owned()), "{paths:?}");

    // Categories come with aggregated discovery: `get all` reads them.
    let run = k
        .run(&["api-resources", "--categories=all", "-o", "name"])
        .await;
    let all: BTreeSet<&str> = run.out().lines().collect();
    let expected: BTreeSet<&str> = [
        "pods",
        "services",
        "daemonsets.apps",
        "deployments.apps",
        "replicasets.apps",
        "statefulsets.apps",
        "cronjobs.batch",
        "jobs.batch",
    ]
    .into();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn kubectl_finds_a_custom_resource_through_aggregated_discovery() {
    let Some(k) =
        Kubectl::start("kubectl_finds_a_custom_resource_through_aggregated_discovery").await
    else {
        return;
    };
    let created = post(&k.server, crate::crd::CRDS, &crate::crd::definition()).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let run = k
        .run(&["api-resources", "--api-group=livekit.io", "-v=6"])
        .await;
    assert!(run.out().contains("rooms"), "{}", run.stdout);
    assert!(run.stdout.contains("livekit.io/v1"), "{}", run.stdout);
    let paths = requested_paths(&k, &run.stderr);
    assert!(
        !paths.iter().any(|p| per_group_discovery(p)),
        "{paths:?}\n{}",
        run.stderr
    );
    let run = k.run(&["get", "rm", "-v=6"]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        requested_paths(&k, &run.stderr)
            .contains(&"/apis/livekit.io/v1/namespaces/default/rooms".to_owned()),
        "{}",
        run.stderr
    );
}
