//! The OpenAPI v3 documents and `fieldValidation`: over raw HTTP, and as kubectl 1.32 uses
//! them (`kubectl apply` validated by the server, its patches computed from the schemas).

use dr_k8s_testkit::KubeApiServer;
use serde_json::{Value, json};

use crate::common::{Kubectl, get, post, send};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const ROOMS: &str = "/apis/livekit.io/v1/namespaces/default/rooms";

/// A definition whose `spec` is closed (only `maxParticipants`) and `status` open.
const DEFINITION: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: rooms.livekit.io
spec:
  group: livekit.io
  scope: Namespaced
  names:
    plural: rooms
    kind: Room
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              maxParticipants:
                type: integer
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

fn definition() -> Value {
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"maxParticipants": {"type": "integer"}}},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}});
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "rooms.livekit.io"},
           "spec": {"group": "livekit.io", "scope": "Namespaced",
                    "names": {"plural": "rooms", "kind": "Room"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                                  "schema": {"openAPIV3Schema": schema}}]}})
}

fn header<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
        .collect()
}

#[tokio::test]
async fn the_index_points_at_each_group_version_document_by_hash() {
    let server = KubeApiServer::start().await.unwrap();
    let index = get(&server, "/openapi/v3").await;
    assert_eq!(index.code, 200, "{}", index.body);
    let paths = index.body["paths"].as_object().unwrap();
    let served: Vec<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(
        served,
        [
            "api/v1",
            "apis/apiextensions.k8s.io/v1",
            "apis/apps/v1",
            "apis/batch/v1",
            "apis/coordination.k8s.io/v1",
            "apis/networking.k8s.io/v1",
            "apis/policy/v1",
            "apis/rbac.authorization.k8s.io/v1",
        ]
    );
    let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
    let hash = url
        .strip_prefix("/openapi/v3/apis/apps/v1?hash=")
        .expect(url);
    let document = get(&server, url).await;
    assert_eq!(document.code, 200);
    assert_eq!(header(&document.head, "etag"), [format!("\"{hash}\"")]);
    assert_eq!(
        header(&document.head, "cache-control"),
        ["public, immutable"]
    );
    // Without a hash, the same document, to be revalidated; with an outdated one, moved.
    let plain = get(&server, "/openapi/v3/apis/apps/v1").await;
    assert_eq!(plain.body, document.body);
    assert!(header(&plain.head, "cache-control").is_empty());
    let moved = get(&server, "/openapi/v3/apis/apps/v1?hash=0").await;
    assert_eq!(moved.code, 301);
    assert_eq!(header(&moved.head, "location"), [url]);
    assert_eq!(
        get(&server, "/openapi/v3/apis/autoscaling/v2").await.code,
        404
    );
    assert_eq!(get(&server, "/openapi/v2").await.code, 404);

    let body = &document.body;
    assert_eq!(body["openapi"], "3.0.0");
    let deployment = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let item = &body["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"], deployment);
    let parameters: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        parameters,
        ["dryRun", "fieldManager", "fieldValidation", "force"]
    );
    let content = patch["requestBody"]["content"].as_object().unwrap();
    assert!(content.contains_key("application/strategic-merge-patch+json"));
    assert!(
        item["put"]["parameters"]
            .to_string()
            .contains("fieldValidation")
    );
    assert!(body["paths"]["/apis/apps/v1/deployments"]["get"].is_object());
    assert!(
        body["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"]["patch"]
            .is_object()
    );
    let schema = &body["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        schema["x-kubernetes-group-version-kind"],
        json!([deployment])
    );
    let pod = &schema["properties"]["spec"]["properties"]["template"]["properties"]["spec"];
    let containers = &pod["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    let container = &containers["items"]["properties"];
    assert_eq!(container["env"]["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(
        container["ports"]["x-kubernetes-patch-merge-key"],
        "containerPort"
    );
    assert_eq!(
        container["volumeMounts"]["x-kubernetes-patch-merge-key"],
        "mountPath"
    );
    assert_eq!(container["args"]["x-kubernetes-list-type"], "atomic");

    // A definition adds its group version, with its schema; a custom resource takes no
    // strategic merge patch.
    assert_eq!(post(&server, CRDS, &definition()).await.code, 201);
    let index = get(&server, "/openapi/v3").await.body;
    let url = index["paths"]["apis/livekit.io/v1"]["serverRelativeURL"]
        .as_str()
        .expect("the custom group version is listed");
    let custom = get(&server, url).await.body;
    let room = &custom["components"]["schemas"]["io.livekit.v1.Room"];
    assert_eq!(
        room["x-kubernetes-group-version-kind"],
        json!([{"group": "livekit.io", "version": "v1", "kind": "Room"}])
    );
    assert_eq!(
        room["properties"]["spec"]["properties"]["maxParticipants"]["type"],
        "integer"
    );
    assert!(room["properties"]["metadata"]["properties"]["labels"].is_object());
    let patch =
        &custom["paths"]["/apis/livekit.io/v1/namespaces/{namespace}/rooms/{name}"]["patch"];
    let content: Vec<&String> = patch["requestBody"]["content"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        content,
        [
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json"
        ]
    );
}

#[tokio::test]
async fn field_validation_refuses_warns_or_ignores_unknown_fields() {
    let server = KubeApiServer::start().await.unwrap();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "a", "colour": "red"}, "data": {"k": "v"},
                    "shape": "round"});
    let strict = post(&server, &format!("{CMS}?fieldValidation=Strict"), &cm).await;
    assert_eq!(strict.code, 400, "{}", strict.body);
    assert_eq!(strict.body["reason"], "BadRequest");
    assert_eq!(
        strict.body["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: \
         unknown field \"metadata.colour\", unknown field \"shape\""
    );
    assert_eq!(get(&server, &format!("{CMS}/a")).await.code, 404);
    // Warn, the default: taken, each unknown field a warning.
    let warned = post(&server, CMS, &cm).await;
    assert_eq!(warned.code, 201, "{}", warned.body);
    assert_eq!(
        header(&warned.head, "warning"),
        [
            r#"299 - "unknown field \"metadata.colour\"""#,
            r#"299 - "unknown field \"shape\"""#
        ]
    );
    let mut known = warned.body.clone();
    known["metadata"].as_object_mut().unwrap().remove("colour");
    known["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    known.as_object_mut().unwrap().remove("shape");
    let mut update = known.clone();
    update["size"] = 1.into();
    let ignored = send(
        &server,
        "PUT",
        &format!("{CMS}/a?fieldValidation=Ignore"),
        "application/json",
        &update,
    )
    .await;
    assert_eq!(ignored.code, 200, "{}", ignored.body);
    assert!(header(&ignored.head, "warning").is_empty());
    // A patch is checked as it leaves the object.
    let cleaned = send(
        &server,
        "PUT",
        &format!("{CMS}/a?fieldValidation=Strict"),
        "application/json",
        &known,
    )
    .await;
    assert_eq!(cleaned.code, 200, "{}", cleaned.body);
    let patched = send(
        &server,
        "PATCH",
        &format!("{CMS}/a?fieldValidation=Strict"),
        "application/merge-patch+json",
        &json!({"data": {"k": "w"}, "extra": true}),
    )
    .await;
    assert_eq!(patched.code, 400, "{}", patched.body);
    assert_eq!(
        patched.body["message"],
        "strict decoding error: unknown field \"extra\""
    );
    let loud = post(&server, &format!("{CMS}?fieldValidation=Loud"), &known).await;
    assert_eq!(loud.code, 400, "{}", loud.body);

    // Deep in a pod template, by index.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx",
                "resources": {"limits": {"cpu": 1}}, "colour": "red"}]}}}});
    let refused = post(
        &server,
        "/apis/apps/v1/namespaces/default/deployments?fieldValidation=Strict",
        &deployment,
    )
    .await;
    assert_eq!(refused.code, 400, "{}", refused.body);
    assert!(
        refused.body["message"].as_str().unwrap().ends_with(
            "strict decoding error: unknown field \"spec.template.spec.containers[0].colour\""
        ),
        "{}",
        refused.body
    );

    // Server-side apply, in its own words, a 500 as the real server's.
    let applied = send(
        &server,
        "PATCH",
        &format!("{CMS}/b?fieldManager=me&fieldValidation=Strict"),
        "application/apply-patch+yaml",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"},
                "shape": "round"}),
    )
    .await;
    assert_eq!(applied.code, 500, "{}", applied.body);
    assert_eq!(
        applied.body["message"],
        "failed to create typed patch object (default/b; /v1, Kind=ConfigMap): .shape: field \
         not declared in schema"
    );

    // A custom resource, by its definition's schema: `spec` closed, `status` open.
    assert_eq!(post(&server, CRDS, &definition()).await.code, 201);
    let room = json!({"apiVersion": "livekit.io/v1", "kind": "Room", "metadata": {"name": "r"},
                      "spec": {"maxParticipants": 2, "colour": "red"}, "status": {"any": 1}});
    let refused = post(&server, &format!("{ROOMS}?fieldValidation=Strict"), &room).await;
    assert_eq!(refused.code, 400, "{}", refused.body);
    assert_eq!(
        refused.body["message"],
        "Room in version \"v1\" cannot be handled as a Room: strict decoding error: unknown \
         field \"spec.colour\""
    );
    let mut known = room.clone();
    known["spec"].as_object_mut().unwrap().remove("colour");
    let created = post(&server, &format!("{ROOMS}?fieldValidation=Strict"), &known).await;
    assert_eq!(created.code, 201, "{}", created.body);
}

/// The test manifest, changed: the web container's image, an env var added between the two
/// there are, the sidecar gone, a ConfigMap key replaced by another.
fn changed_manifest() -> String {
    let text = std::fs::read_to_string(crate::common::manifest()).unwrap();
    let changed = text
        .replace("image: nginx:1.27", "image: nginx:1.28")
        .replace(
            "            - name: MODE\n",
            "            - name: EXTRA\n              value: \"1\"\n            - name: MODE\n",
        )
        .replace(
            "        - name: sidecar\n          image: busybox:1.36\n",
            "",
        )
        .replace("  LOG_LEVEL: info\n", "  OTHER: x\n");
    assert_ne!(changed, text);
    changed
}

#[tokio::test]
async fn kubectl_apply_validates_on_the_server_and_patches_by_the_schemas() {
    let Some(k) =
        Kubectl::start("kubectl_apply_validates_on_the_server_and_patches_by_the_schemas").await
    else {
        return;
    };
    // No --validate=false: kubectl finds fieldValidation in /openapi/v3 and sends Strict.
    k.apply_manifest().await;
    let path = k.dir.path().join("changed.yaml");
    tokio::fs::write(&path, changed_manifest()).await.unwrap();
    let run = k
        .run(&["apply", "-v=5", "-f", path.to_str().unwrap()])
        .await;
    let out = run.out();
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("configmap/web-settings configured"), "{out}");
    // kubectl computed its strategic merge patches from the documents, without falling back.
    assert!(
        !run.stderr.contains("OpenAPI V3") && !run.stderr.contains("openapi v3 spec"),
        "{}",
        run.stderr
    );
    let deployment = k
        .run(&["-n", "shop", "get", "deploy", "web", "-o", "json"])
        .await
        .json();
    let containers = &deployment["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(1), "{containers}");
    assert_eq!(containers[0]["image"], "nginx:1.28");
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "LOG_LEVEL", "value": "info"}, {"name": "EXTRA", "value": "1"},
               {"name": "MODE", "value": "shop"}])
    );
    assert_eq!(containers[0]["ports"], json!([{"containerPort": 80}]));
    let settings = k
        .run(&["-n", "shop", "get", "cm", "web-settings", "-o", "json"])
        .await
        .json();
    assert_eq!(settings["data"], json!({"OTHER": "x"}));
}

const BAD: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: bad
data:
  a: "1"
shape: round
"#;

#[tokio::test]
async fn kubectl_apply_of_an_unknown_field_is_refused_unless_told_otherwise() {
    let Some(k) =
        Kubectl::start("kubectl_apply_of_an_unknown_field_is_refused_unless_told_otherwise").await
    else {
        return;
    };
    let path = k.dir.path().join("bad.yaml");
    tokio::fs::write(&path, BAD).await.unwrap();
    let file = path.to_str().unwrap();
    let run = k.run(&["apply", "-f", file]).await;
    assert!(!run.ok, "{}", run.stdout);
    assert_eq!(
        run.stderr.trim(),
        format!(
            "Error from server (BadRequest): error when creating \"{file}\": ConfigMap in \
             version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown \
             field \"shape\""
        )
    );
    let run = k.run(&["apply", "--server-side", "-f", file]).await;
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stderr.contains(
            "failed to create typed patch object (default/bad; /v1, Kind=ConfigMap): .shape: \
             field not declared in schema"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !k.run(&["get", "cm", "bad"]).await.ok,
        "nothing was created"
    );
    let run = k.run(&["apply", "--validate=warn", "-f", file]).await;
    assert!(
        run.out().contains("configmap/bad created"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("Warning: unknown field \"shape\""),
        "{}",
        run.stderr
    );
    // As users do, to apply what the server does not know: nothing said.
    let run = k
        .run(&["apply", "--validate=false", "--server-side", "-f", file])
        .await;
    assert!(run.out().contains("serverside-applied"), "{}", run.stdout);
    assert_eq!(run.stderr, "");
}

#[tokio::test]
async fn kubectl_applies_a_definition_then_resources_checked_by_its_schema() {
    let Some(k) =
        Kubectl::start("kubectl_applies_a_definition_then_resources_checked_by_its_schema").await
    else {
        return;
    };
    k.apply("crd.yaml", DEFINITION).await;
    let room = "apiVersion: livekit.io/v1\nkind: Room\nmetadata:\n  name: alpha\nspec:\n  \
                maxParticipants: 10\n";
    k.apply("room.yaml", room).await;
    // The second apply is a merge patch (no strategic merge patch for a custom resource).
    k.apply("room.yaml", &room.replace("10", "12")).await;
    let run = k
        .run(&[
            "get",
            "room",
            "alpha",
            "-o",
            "jsonpath={.spec.maxParticipants}",
        ])
        .await;
    assert_eq!(run.out(), "12");
    let path = k.dir.path().join("room.yaml");
    tokio::fs::write(&path, format!("{room}  colour: red\n"))
        .await
        .unwrap();
    let run = k.run(&["apply", "-f", path.to_str().unwrap()]).await;
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("strict decoding error: unknown field \"spec.colour\""),
        "{}",
        run.stderr
    );
    let run = k
        .run(&["apply", "--server-side", "-f", path.to_str().unwrap()])
        .await;
    assert!(
        run.stderr.contains(
            "failed to create typed patch object (default/alpha; livekit.io/v1, Kind=Room): \
             .spec.colour: field not declared in schema"
        ),
        "{}",
        run.stderr
    );
}
