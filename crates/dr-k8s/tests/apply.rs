//! Manifests applied with server-side apply: a CRD and its objects in one
//! file, a change applied again, objects that do not read refused first.

use dr_k8s::FIELD_MANAGER;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

use crate::common::stand_in;

const MANIFESTS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: rooms.livekit.io
spec:
  group: livekit.io
  scope: Namespaced
  names: { plural: rooms, singular: room, kind: Room, shortNames: [rm] }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true }
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: livekit-config
data:
  config.yaml: "port: 7880"
---
apiVersion: livekit.io/v1
kind: Room
metadata:
  name: standup
  namespace: default
spec:
  maxParticipants: 20
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_applied_server_side_custom_resources_included() {
    let Some(setup) = stand_in("it leaves a CRD in the cluster").await else {
        return;
    };
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    let applied = cluster.apply_yaml(MANIFESTS).await.unwrap();
    let objects: Vec<&str> = applied.iter().map(|a| a.object.as_str()).collect();
    assert_eq!(
        objects,
        [
            "customresourcedefinitions.apiextensions.k8s.io rooms.livekit.io",
            "configmaps default/livekit-config",
            "rooms.livekit.io default/standup",
        ]
    );
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client().clone(), ns);
    let map = maps.get("livekit-config").await.unwrap();
    let managers: Vec<String> = map
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&FIELD_MANAGER.to_owned()), "{managers:?}");

    // Applied again with a change: the same objects, the change made.
    let changed = MANIFESTS.replace("port: 7880", "port: 7881");
    let again = cluster.apply_yaml(&changed).await.unwrap();
    assert_eq!(again.len(), 3);
    let map = maps.get("livekit-config").await.unwrap();
    assert_eq!(map.data.unwrap()["config.yaml"], "port: 7881");

    let err = cluster
        .apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("without apiVersion, kind or metadata.name"),
        "{err}"
    );
    let err = cluster
        .apply_yaml("apiVersion: example.com/v1\nkind: Gadget\nmetadata: { name: g }\n")
        .await
        .unwrap_err();
    assert!(
        matches!(err, dr_k8s::Error::UnknownResource { .. }),
        "{err}"
    );
    let err = cluster.apply_yaml("key: [unclosed").await.unwrap_err();
    assert!(
        err.to_string().contains("document 1 does not read as YAML"),
        "{err}"
    );
}
