//! CustomResourceDefinitions: a definition adds its resources to discovery and serves them,
//! and takes them away with their objects; over raw HTTP and with kubectl.

use std::time::Duration;

use dr_k8s_testkit::KubeApiServer;
use serde_json::{Value, json};

use crate::common::{Kubectl, WatchStream, get, names, post, request, send};

pub(crate) const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const ROOMS: &str = "/apis/livekit.io/v1/namespaces/default/rooms";

pub(crate) fn definition() -> Value {
    let schema = json!({"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true}});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "rooms.livekit.io"},
        "spec": {
            "group": "livekit.io",
            "scope": "Namespaced",
            "names": {"plural": "rooms", "kind": "Room", "shortNames": ["rm"]},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false, "schema": schema},
                {"name": "v1", "served": true, "storage": true, "schema": schema,
                 "subresources": {"status": {}}},
            ],
        },
    })
}

fn room(name: &str) -> Value {
    json!({"apiVersion": "livekit.io/v1", "kind": "Room",
           "metadata": {"name": name}, "spec": {"maxParticipants": 10},
           "status": {"participants": 99}})
}

#[tokio::test]
async fn a_definition_adds_its_resource_to_discovery_and_serves_it() {
    let server = KubeApiServer::start().await.unwrap();
    let early = post(&server, ROOMS, &room("alpha")).await;
    assert_eq!(early.code, 404, "no such resource yet");

    let mut wrong = definition();
    wrong["metadata"]["name"] = "rooms.example.com".into();
    let refused = post(&server, CRDS, &wrong).await;
    assert_eq!(refused.code, 422, "{}", refused.body);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("must be spec.names.plural")
    );
    let mut two_stored = definition();
    two_stored["spec"]["versions"][0]["storage"] = true.into();
    assert_eq!(post(&server, CRDS, &two_stored).await.code, 422);

    let created = post(&server, CRDS, &definition()).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let status = &created.body["status"];
    let conditions: Vec<(&str, &str)> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        conditions,
        [("NamesAccepted", "True"), ("Established", "True")]
    );
    assert_eq!(status["acceptedNames"]["singular"], "room");
    assert_eq!(status["acceptedNames"]["listKind"], "RoomList");
    assert_eq!(status["storedVersions"], json!(["v1"]));

    let groups = get(&server, "/apis").await.body;
    let group = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "livekit.io")
        .cloned()
        .expect("livekit.io listed");
    assert_eq!(group["preferredVersion"]["version"], "v1");
    assert_eq!(group["versions"][1]["groupVersion"], "livekit.io/v1beta1");
    assert_eq!(
        get(&server, "/apis/livekit.io").await.body["kind"],
        "APIGroup"
    );
    let resources = get(&server, "/apis/livekit.io/v1").await.body;
    let entries: Vec<&str> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(entries, ["rooms", "rooms/status"]);
    assert_eq!(resources["resources"][0]["shortNames"], json!(["rm"]));
    assert_eq!(resources["resources"][0]["namespaced"], true);
    assert_eq!(resources["resources"][0]["kind"], "Room");

    let mut watch = WatchStream::open(&server, &format!("{ROOMS}?watch=1")).await;
    let created = post(&server, ROOMS, &room("alpha")).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert!(
        created.body.get("status").is_none(),
        "status only through its subresource"
    );
    assert_eq!(created.body["metadata"]["generation"], 1);
    let event = watch.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (
            event["type"].as_str(),
            event["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("alpha"))
    );

    let merged = send(
        &server,
        "PATCH",
        &format!("{ROOMS}/alpha"),
        "application/merge-patch+json",
        &json!({"spec": {"maxParticipants": 20}}),
    )
    .await;
    assert_eq!(merged.code, 200, "{}", merged.body);
    assert_eq!(merged.body["metadata"]["generation"], 2);
    let json_patch = send(
        &server,
        "PATCH",
        &format!("{ROOMS}/alpha"),
        "application/json-patch+json",
        &json!([{"op": "add", "path": "/spec/region", "value": "eu"}]),
    )
    .await;
    assert_eq!(json_patch.body["spec"]["region"], "eu");
    let strategic = send(
        &server,
        "PATCH",
        &format!("{ROOMS}/alpha"),
        "application/strategic-merge-patch+json",
        &json!({"spec": {"x": 1}}),
    )
    .await;
    assert_eq!(strategic.code, 415);
    assert_eq!(strategic.body["reason"], "UnsupportedMediaType");
    let status = send(
        &server,
        "PATCH",
        &format!("{ROOMS}/alpha/status"),
        "application/merge-patch+json",
        &json!({"status": {"participants": 3}, "spec": {"maxParticipants": 1}}),
    )
    .await;
    assert_eq!(status.code, 200, "{}", status.body);
    assert_eq!(status.body["status"]["participants"], 3);
    assert_eq!(status.body["spec"]["maxParticipants"], 20, "spec untouched");

    // The other served version reads the same objects.
    let other = get(&server, "/apis/livekit.io/v1beta1/namespaces/default/rooms").await;
    assert_eq!(names(&other.body), ["alpha"]);
    assert_eq!(other.body["kind"], "RoomList");

    // Deleting the definition takes its objects and its discovery entries.
    let deleted = request(
        &server,
        "DELETE",
        &format!("{CRDS}/rooms.livekit.io"),
        "application/json",
        "",
    )
    .await;
    assert_eq!(deleted.code, 200, "{}", deleted.body);
    let mut event = watch.next(Duration::from_secs(5)).await.unwrap();
    while event["type"] == "MODIFIED" {
        event = watch.next(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(event["type"], "DELETED");
    assert_eq!(get(&server, ROOMS).await.code, 404);
    assert_eq!(get(&server, "/apis/livekit.io/v1").await.code, 404);
    assert!(
        !get(&server, "/apis")
            .await
            .body
            .to_string()
            .contains("livekit.io")
    );
    assert_eq!(post(&server, CRDS, &definition()).await.code, 201);
    assert!(
        names(&get(&server, ROOMS).await.body).is_empty(),
        "the objects went for good"
    );
}

#[tokio::test]
async fn a_cluster_scoped_definition_serves_objects_outside_namespaces() {
    let server = KubeApiServer::start().await.unwrap();
    let mut cluster = definition();
    cluster["metadata"]["name"] = "regions.livekit.io".into();
    cluster["spec"]["scope"] = "Cluster".into();
    cluster["spec"]["names"] = json!({"plural": "regions", "singular": "region", "kind": "Region"});
    assert_eq!(post(&server, CRDS, &cluster).await.code, 201);
    let region =
        json!({"apiVersion": "livekit.io/v1", "kind": "Region", "metadata": {"name": "eu"}});
    let created = post(&server, "/apis/livekit.io/v1/regions", &region).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert!(created.body["metadata"].get("namespace").is_none());
    let namespaced = post(
        &server,
        "/apis/livekit.io/v1/namespaces/default/regions",
        &region,
    )
    .await;
    assert_eq!(namespaced.code, 404);
}

const DEFINITION_YAML: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: rooms.livekit.io
spec:
  group: livekit.io
  scope: Namespaced
  names:
    plural: rooms
    singular: room
    kind: Room
    shortNames: [rm]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const ROOMS_YAML: &str = r#"apiVersion: livekit.io/v1
kind: Room
metadata:
  name: alpha
spec:
  maxParticipants: 10
---
apiVersion: livekit.io/v1
kind: Room
metadata:
  name: beta
spec:
  maxParticipants: 20
"#;

#[tokio::test]
async fn kubectl_applies_a_definition_then_its_objects() {
    let Some(k) = Kubectl::start("kubectl_applies_a_definition_then_its_objects").await else {
        return;
    };
    // Before the definition, kubectl does not know the kind.
    let path = k.dir.path().join("rooms.yaml");
    tokio::fs::write(&path, ROOMS_YAML).await.unwrap();
    // (With validation on, kubectl would first try /openapi/v2 for a kind it cannot find in
    // /openapi/v3, and report its 404.)
    let early = k
        .run(&["apply", "--validate=false", "-f", path.to_str().unwrap()])
        .await;
    assert!(!early.ok);
    assert!(
        early
            .stderr
            .contains("no matches for kind \"Room\" in version \"livekit.io/v1\""),
        "{}",
        early.stderr
    );

    k.apply("crd.yaml", DEFINITION_YAML).await;
    let run = k
        .run(&[
            "wait",
            "--for=condition=Established",
            "crd/rooms.livekit.io",
            "--timeout=10s",
        ])
        .await;
    assert!(run.out().contains("condition met"), "{}", run.stdout);
    k.apply("rooms.yaml", ROOMS_YAML).await;
    let run = k.run(&["get", "rooms", "-o", "name"]).await;
    assert_eq!(run.out(), "room.livekit.io/alpha\nroom.livekit.io/beta\n");
    let run = k
        .run(&[
            "get",
            "rm",
            "beta",
            "-o",
            "jsonpath={.spec.maxParticipants}",
        ])
        .await;
    assert_eq!(run.out(), "20");
    // Applying again merges (kubectl sends a merge patch for a kind it has no type for).
    let changed = ROOMS_YAML.replace("maxParticipants: 20", "maxParticipants: 25");
    k.apply("rooms.yaml", &changed).await;
    let run = k
        .run(&[
            "get",
            "room",
            "beta",
            "-o",
            "jsonpath={.spec.maxParticipants}",
        ])
        .await;
    assert_eq!(run.out(), "25");
    let run = k
        .run(&[
            "patch",
            "room",
            "alpha",
            "--type=merge",
            "-p",
            r#"{"spec":{"maxParticipants":11}}"#,
        ])
        .await;
    assert!(
        run.out().contains("room.livekit.io/alpha patched"),
        "{}",
        run.stdout
    );
    let run = k
        .run(&[
            "patch",
            "room",
            "alpha",
            "-p",
            r#"{"spec":{"maxParticipants":12}}"#,
        ])
        .await;
    assert!(!run.ok);
    assert!(
        // kubectl words the server's 415 itself.
        run.stderr.contains(
            "application/strategic-merge-patch+json is not supported by livekit.io/v1, Kind=Room"
        ) && run.stderr.contains("application/merge-patch+json"),
        "{}",
        run.stderr
    );
    let run = k.run(&["delete", "crd", "rooms.livekit.io"]).await;
    assert!(run.out().contains("deleted"), "{}", run.stdout);
    // kubectl still has the resource in its discovery cache, and the list is 404.
    let run = k.run(&["get", "rooms"]).await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains(
            "Error from server (NotFound): Unable to list \"livekit.io/v1, Resource=rooms\": \
             the server could not find the requested resource"
        ),
        "{}",
        run.stderr
    );
    let run = k.run(&["api-resources", "--api-group=livekit.io"]).await;
    assert!(!run.out().contains("rooms"), "{}", run.stdout);
}
