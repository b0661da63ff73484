//! Resource backup and restore: a namespace backed up, deleted and
//! restored equal; into another namespace; existing objects skipped or
//! recreated; a dry run that keeps nothing; damaged backups and unknown
//! kinds refused clearly.

use std::sync::Arc;

use dr_core::{
    BackupExt, ComponentId, ErrorKind, RecoveryPoint, RecoveryTarget, SnapshotCommit, SnapshotSink,
    SnapshotSource, StreamName,
};
use dr_k8s::{
    Cluster, ExistingPolicy, Outcome, ResourceBackup, ResourceFilter, ResourceRestore,
    StoredObject, clean_object, read_backup,
};
use dr_k8s_testkit::Fault;
use dr_storage::{InitOptions, KdfParams, MemoryBackend, Repository, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use serde_json::{Value, json};

use crate::common::{deployment_in, setup, stand_in};

async fn repository() -> Arc<Repository> {
    let options = InitOptions::encrypted(Secret::password("k8s")).kdf(KdfParams::INSECURE_FAST);
    Arc::new(
        Repository::init(Arc::new(MemoryBackend::new()), options)
            .await
            .unwrap(),
    )
}

fn component() -> ComponentId {
    "kubernetes/shop".parse().unwrap()
}

/// Creates `object` (with its apiVersion and kind) through discovery.
async fn put(cluster: &Cluster, object: Value) {
    let discovered = cluster.discover().await.unwrap();
    let resource = discovered
        .by_kind(
            object["apiVersion"].as_str().unwrap(),
            object["kind"].as_str().unwrap(),
        )
        .unwrap();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(cluster.client().clone(), ns, &resource.api),
        None => Api::all_with(cluster.client().clone(), &resource.api),
    };
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

/// The object `stored` names as the cluster has it now in `namespace`,
/// or `None`.
async fn current(cluster: &Cluster, stored: &StoredObject, namespace: &str) -> Option<Value> {
    let discovered = cluster.discover().await.unwrap();
    let resource = discovered
        .by_kind(
            stored.object["apiVersion"].as_str().unwrap(),
            stored.object["kind"].as_str().unwrap(),
        )
        .unwrap();
    let api: Api<DynamicObject> = if resource.namespaced {
        Api::namespaced_with(cluster.client().clone(), namespace, &resource.api)
    } else {
        Api::all_with(cluster.client().clone(), &resource.api)
    };
    let name = if stored.resource == "namespaces" {
        namespace
    } else {
        &stored.name
    };
    let mut object = serde_json::to_value(api.get_opt(name).await.unwrap()?).unwrap();
    object["apiVersion"] = stored.object["apiVersion"].clone();
    object["kind"] = stored.object["kind"].clone();
    Some(object)
}

/// `object` cleaned as a restore cleans it, without what the Deployment
/// controller writes of its own (its revision annotation) and with its
/// namespace set to `namespace`, for comparing.
fn comparable(resource: &str, object: &Value, namespace: &str) -> Value {
    let mut object = object.clone();
    clean_object(resource, &mut object);
    if let Some(Value::Object(annotations)) = object.pointer_mut("/metadata/annotations") {
        annotations.retain(|k, _| !k.starts_with("deployment.kubernetes.io/"));
        if annotations.is_empty() {
            object["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("annotations");
        }
    }
    if resource == "namespaces" {
        object["metadata"]["name"] = json!(namespace);
    } else if object["metadata"].get("namespace").is_some() {
        object["metadata"]["namespace"] = json!(namespace);
    }
    object
}

/// A namespace `ns` (the tests' `shop`) of mixed kinds: config maps (and the root CA one the
/// cluster gives), a Secret, a service account and its token, a Service
/// (with a cluster IP and node port of its own where `addresses`: a real
/// cluster gives them), a Deployment (whose replica set and
/// pods its controller makes).
async fn make_shop(cluster: &Cluster, ns: &str, addresses: bool) {
    put(
        cluster,
        json!({ "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": ns, "labels": { "team": "web" } } }),
    )
    .await;
    for (name, data) in [("settings", "a=1"), ("flags", "dark=true")] {
        put(
            cluster,
            json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": name, "namespace": ns, "labels": { "app": "shop" } },
            "data": { "conf": data } }),
        )
        .await;
    }
    put(
        cluster,
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "kube-root-ca.crt", "namespace": ns },
        "data": { "ca.crt": "----" } }),
    )
    .await;
    put(
        cluster,
        json!({ "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "db-password", "namespace": ns },
        "type": "Opaque", "data": { "password": "aHVudGVyMg==" } }),
    )
    .await;
    put(
        cluster,
        json!({ "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "web-token", "namespace": ns,
            "annotations": { "kubernetes.io/service-account.name": "web" } },
        "type": "kubernetes.io/service-account-token" }),
    )
    .await;
    put(
        cluster,
        json!({ "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": { "name": "web", "namespace": ns } }),
    )
    .await;
    let mut service = json!({ "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "namespace": ns },
        "spec": { "type": "NodePort", "selector": { "app": "web" },
            "ports": [{ "port": 80, "targetPort": 8080 }] } });
    if addresses {
        service["spec"]["clusterIP"] = json!("10.96.0.17");
        service["spec"]["clusterIPs"] = json!(["10.96.0.17"]);
        service["spec"]["ports"][0]["nodePort"] = json!(30080);
    }
    put(cluster, service).await;
    deployment_in(cluster, ns, "web", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_backed_up_deleted_and_restored_is_as_it_was() {
    let setup = setup().await;
    let cluster = &setup.cluster;
    let shop = setup.scratch_namespace("shop");
    let shop = shop.as_str();
    make_shop(cluster, shop, setup.is_stand_in()).await;
    let repo = repository().await;
    let filter = ResourceFilter::namespaces([shop]).secrets(true);
    let backup = ResourceBackup::new(cluster.clone(), component(), filter);
    let report = backup.backup_to(repo.as_ref()).await.unwrap();
    let (contents, objects) = read_backup(repo.as_ref(), &report.manifest).await.unwrap();

    let mut names: Vec<String> = objects.iter().map(StoredObject::describe).collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!("configmaps {shop}/flags"),
            format!("configmaps {shop}/settings"),
            format!("deployments.apps {shop}/web"),
            format!("namespaces {shop}"),
            format!("secrets {shop}/db-password"),
            format!("serviceaccounts {shop}/web"),
            format!("services {shop}/web"),
        ],
        "{contents:#?}"
    );
    let why = |what: &str| {
        contents
            .left_out
            .iter()
            .find(|l| l.what.starts_with(what))
            .map(|l| l.reason.clone())
            .unwrap_or_else(|| panic!("{what} not recorded as left out: {contents:#?}"))
    };
    assert!(
        why(&format!("replicasets.apps {shop}/web-")).contains("its controller Deployment web")
    );
    assert!(why(&format!("configmaps {shop}/kube-root-ca.crt")).contains("root CA"));
    assert!(why(&format!("secrets {shop}/web-token")).contains("service account tokens"));
    assert!(why("nodes").contains("register themselves"));
    assert!(contents.unreadable.is_empty(), "{contents:#?}");

    // The namespace goes, with everything in it.
    Api::<k8s_openapi::api::core::v1::Namespace>::all(cluster.client().clone())
        .delete(shop, &DeleteParams::default())
        .await
        .unwrap();
    for object in &objects {
        assert!(current(cluster, object, shop).await.is_none(), "{object:?}");
    }

    let restore = ResourceRestore::new(cluster.clone(), component());
    let restored = restore
        .restore_objects(repo.as_ref(), &RecoveryTarget::Latest)
        .await
        .unwrap();
    assert_eq!(
        restored.count(&Outcome::Created),
        objects.len(),
        "{restored:#?}"
    );
    let order: Vec<&str> = restored.objects.iter().map(|o| o.object.as_str()).collect();
    let at = |name: &str| order.iter().position(|o| *o == name).unwrap();
    assert!(at(&format!("namespaces {shop}")) < at(&format!("secrets {shop}/db-password")));
    assert!(at(&format!("secrets {shop}/db-password")) < at(&format!("configmaps {shop}/flags")));
    assert!(at(&format!("configmaps {shop}/flags")) < at(&format!("deployments.apps {shop}/web")));
    for object in &objects {
        let now = current(cluster, object, shop).await.unwrap();
        assert_eq!(
            comparable(&object.resource, &now, shop),
            comparable(&object.resource, &object.object, shop),
            "{}",
            object.describe()
        );
    }
    let service = current(
        cluster,
        &objects[objects
            .iter()
            .position(|o| o.resource == "services")
            .unwrap()],
        shop,
    )
    .await
    .unwrap();
    // The stand-in gives none: the restore asked for none.
    if setup.is_stand_in() {
        assert!(service["spec"].get("clusterIP").is_none(), "{service}");
        assert!(
            service["spec"]["ports"][0].get("nodePort").is_none(),
            "{service}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_maps_namespaces_and_handles_what_exists() {
    let setup = setup().await;
    let cluster = &setup.cluster;
    let shop = setup.scratch_namespace("shop");
    let shop = shop.as_str();
    let shop_dr = setup.scratch_namespace("shop-dr");
    let shop_dr = shop_dr.as_str();
    make_shop(cluster, shop, setup.is_stand_in()).await;
    let repo = repository().await;
    let backup = ResourceBackup::new(
        cluster.clone(),
        component(),
        ResourceFilter::namespaces([shop]),
    );
    let report = backup.backup_to(repo.as_ref()).await.unwrap();
    let (_, objects) = read_backup(repo.as_ref(), &report.manifest).await.unwrap();
    assert!(
        objects.iter().all(|o| o.resource != "secrets"),
        "Secrets were not asked for"
    );

    // A dry run keeps nothing.
    let restore = ResourceRestore::new(cluster.clone(), component()).map_namespace(shop, shop_dr);
    let dry = restore
        .clone()
        .dry_run(true)
        .restore_objects(repo.as_ref(), &RecoveryTarget::Latest)
        .await
        .unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.count(&Outcome::Created), 1, "the namespace: {dry:#?}");
    assert_eq!(
        dry.count(&Outcome::Unchecked(String::new())),
        objects.len() - 1,
        "{dry:#?}"
    );
    for object in &objects {
        assert!(
            current(cluster, object, shop_dr).await.is_none(),
            "{object:?}"
        );
    }

    // Into another namespace, beside the original.
    let mapped = restore
        .restore_objects(repo.as_ref(), &RecoveryTarget::Latest)
        .await
        .unwrap();
    assert_eq!(
        mapped.count(&Outcome::Created),
        objects.len(),
        "{mapped:#?}"
    );
    for object in &objects {
        let now = current(cluster, object, shop_dr).await.unwrap();
        assert_eq!(
            comparable(&object.resource, &now, shop_dr),
            comparable(&object.resource, &object.object, shop_dr),
        );
    }

    // Again: everything exists and is skipped.
    let again = restore
        .clone()
        .restore_objects(repo.as_ref(), &RecoveryTarget::Latest)
        .await
        .unwrap();
    assert_eq!(
        again.count(&Outcome::Skipped(String::new())),
        objects.len(),
        "{again:#?}"
    );

    // Recreated: a changed config map comes back as stored, with a new uid;
    // the namespace is never recreated.
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(cluster.client().clone(), shop_dr);
    let before = maps.get("settings").await.unwrap();
    let mut changed = before.clone();
    changed.data = Some([("conf".to_owned(), "a=2".to_owned())].into());
    maps.replace("settings", &PostParams::default(), &changed)
        .await
        .unwrap();
    let recreated = restore
        .clone()
        .existing(ExistingPolicy::Recreate)
        .only_kinds(["configmaps"])
        .restore_objects(repo.as_ref(), &RecoveryTarget::Latest)
        .await
        .unwrap();
    let outcome = |name: &str| {
        recreated
            .objects
            .iter()
            .find(|o| o.object == name)
            .map(|o| o.outcome.clone())
            .unwrap_or_else(|| panic!("no outcome for {name}: {recreated:#?}"))
    };
    assert_eq!(
        outcome(&format!("configmaps {shop_dr}/settings")),
        Outcome::Recreated
    );
    assert!(
        matches!(outcome(&format!("namespaces {shop_dr}")), Outcome::Skipped(why) if why.contains("never recreated"))
    );
    assert!(
        recreated
            .objects
            .iter()
            .all(|o| !o.object.starts_with("deployments"))
    );
    let after = maps.get("settings").await.unwrap();
    assert_eq!(after.data.unwrap()["conf"], "a=1");
    assert_ne!(after.metadata.uid, before.metadata.uid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kinds_and_damaged_backups_are_clear_errors() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    let repo = repository().await;
    let unknown = ResourceBackup::new(
        cluster.clone(),
        component(),
        ResourceFilter::namespaces([ns]).kinds(["gadgets.example.com"]),
    );
    let err = unknown.backup_to(repo.as_ref()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("gadgets.example.com"), "{err}");
    assert!(
        err.to_string().contains("configmaps"),
        "it names what is served: {err}"
    );
    assert!(repo.snapshots(&component()).await.unwrap().is_empty());

    // A record that counts more objects than the tar holds.
    let backup = ResourceBackup::new(
        cluster.clone(),
        component(),
        ResourceFilter::namespaces([ns]),
    );
    let good = backup.backup_to(repo.as_ref()).await.unwrap();
    let mut writer = repo
        .begin(&component(), good.manifest.started_at)
        .await
        .unwrap();
    for entry in &good.manifest.streams {
        let mut bytes = Vec::new();
        let mut stream =
            dr_core::SnapshotSourceExt::open_stream(repo.as_ref(), &good.manifest.id, &entry.name)
                .await
                .unwrap();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut bytes)
            .await
            .unwrap();
        if entry.name.as_str() == "contents.json" {
            let mut contents: Value = serde_json::from_slice(&bytes).unwrap();
            contents["taken"][0]["objects"] = json!(99);
            bytes = serde_json::to_vec(&contents).unwrap();
        }
        writer
            .add_stream(&entry.name, &mut bytes.as_slice())
            .await
            .unwrap();
    }
    // Recorded as the good one was: a resource backup, by its details.
    let details = good
        .manifest
        .details::<dr_k8s::ResourceBackupDetails>()
        .unwrap()
        .unwrap();
    let damaged = writer
        .commit(
            SnapshotCommit::new(RecoveryPoint::new(good.manifest.started_at))
                .details(&details)
                .unwrap(),
        )
        .await
        .unwrap();
    let restore = ResourceRestore::new(cluster.clone(), component());
    let err = restore
        .restore_objects(repo.as_ref(), &RecoveryTarget::Snapshot(damaged.id))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("record counts"), "{err}");

    // A snapshot that is not a resource backup.
    let mut writer = repo
        .begin(&component(), good.manifest.started_at)
        .await
        .unwrap();
    let name: StreamName = "dump.rdb".parse().unwrap();
    writer
        .add_stream(&name, &mut &b"REDIS0011"[..])
        .await
        .unwrap();
    let other = writer
        .commit(SnapshotCommit::new(RecoveryPoint::new(
            good.manifest.started_at,
        )))
        .await
        .unwrap();
    let err = restore
        .restore_objects(repo.as_ref(), &RecoveryTarget::Snapshot(other.id))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("not a resource backup"), "{err}");
}

const ROOMS_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: rooms.livekit.io
spec:
  group: livekit.io
  scope: Namespaced
  names: { plural: rooms, singular: room, kind: Room }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true }
---
apiVersion: v1
kind: Namespace
metadata: { name: livekit }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: livekit-config, namespace: livekit }
data: { config.yaml: "port: 7880" }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: other, namespace: livekit }
data: { a: "1" }
---
apiVersion: livekit.io/v1
kind: Room
metadata: { name: standup, namespace: livekit }
spec: { maxParticipants: 20 }
---
apiVersion: livekit.io/v1
kind: Room
metadata: { name: all-hands, namespace: livekit }
spec: { maxParticipants: 500 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_livekit_backup_restores_its_definition_before_its_rooms() {
    let Some(setup) = stand_in("it deletes the cluster-wide rooms.livekit.io definition").await
    else {
        return;
    };
    let cluster = &setup.cluster;
    cluster.apply_yaml(ROOMS_CRD).await.unwrap();
    let repo = repository().await;
    // The seed's LiveKit backup, one call: the rooms and the one config map.
    let livekit = ResourceFilter::namespaces(["livekit"])
        .kinds(["rooms.livekit.io", "configmaps"])
        .names("configmaps", ["livekit-config"]);
    let backup = ResourceBackup::new(cluster.clone(), component(), livekit);
    let report = backup.backup_to(repo.as_ref()).await.unwrap();
    let (_, objects) = read_backup(repo.as_ref(), &report.manifest).await.unwrap();
    let mut names: Vec<String> = objects.iter().map(StoredObject::describe).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "configmaps livekit/livekit-config",
            "customresourcedefinitions.apiextensions.k8s.io rooms.livekit.io",
            "namespaces livekit",
            "rooms.livekit.io livekit/all-hands",
            "rooms.livekit.io livekit/standup",
        ]
    );

    // The namespace and the definition go: the rooms with them.
    cluster
        .delete_namespace("livekit", std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let crds = Api::<DynamicObject>::all_with(
        cluster.client().clone(),
        &cluster
            .discover()
            .await
            .unwrap()
            .find("customresourcedefinitions")
            .unwrap()
            .api,
    );
    crds.delete("rooms.livekit.io", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        cluster
            .discover()
            .await
            .unwrap()
            .find("rooms.livekit.io")
            .is_none()
    );

    let restored = ResourceRestore::new(cluster.clone(), component())
        .restore_objects(repo.as_ref(), &RecoveryTarget::Latest)
        .await
        .unwrap();
    assert_eq!(
        restored.count(&Outcome::Created),
        objects.len(),
        "{restored:#?}"
    );
    let order: Vec<&str> = restored.objects.iter().map(|o| o.object.as_str()).collect();
    let at = |name: &str| order.iter().position(|o| *o == name).unwrap();
    assert!(
        at("namespaces livekit")
            < at("customresourcedefinitions.apiextensions.k8s.io rooms.livekit.io")
    );
    assert!(
        at("customresourcedefinitions.apiextensions.k8s.io rooms.livekit.io")
            < at("rooms.livekit.io livekit/standup")
    );
    let steps: Vec<&str> = restored
        .timeline
        .steps()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        steps.contains(&"wait for the definitions to be established"),
        "{steps:?}"
    );
    for object in &objects {
        let now = current(cluster, object, "livekit").await.unwrap();
        assert_eq!(
            comparable(&object.resource, &now, "livekit"),
            comparable(&object.resource, &object.object, "livekit"),
            "{}",
            object.describe()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_applies_the_stored_objects_over_changed_ones() {
    let setup = setup().await;
    let cluster = &setup.cluster;
    let shop = setup.scratch_namespace("shop");
    let shop = shop.as_str();
    make_shop(cluster, shop, setup.is_stand_in()).await;
    let repo = repository().await;
    let backup = ResourceBackup::new(
        cluster.clone(),
        component(),
        ResourceFilter::namespaces([shop]).kinds(["configmaps"]),
    );
    backup.backup_to(repo.as_ref()).await.unwrap();
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(cluster.client().clone(), shop);
    let mut changed = maps.get("settings").await.unwrap();
    let uid = changed.metadata.uid.clone();
    changed.data = Some([("conf".to_owned(), "a=9".to_owned())].into());
    maps.replace("settings", &PostParams::default(), &changed)
        .await
        .unwrap();
    let updated = ResourceRestore::new(cluster.clone(), component())
        .existing(ExistingPolicy::Update)
        .restore_objects(repo.as_ref(), &RecoveryTarget::Latest)
        .await
        .unwrap();
    assert!(updated.failures().next().is_none(), "{updated:#?}");
    assert_eq!(
        updated.count(&Outcome::Updated),
        3,
        "two maps and the namespace: {updated:#?}"
    );
    let after = maps.get("settings").await.unwrap();
    assert_eq!(after.data.unwrap()["conf"], "a=1");
    assert_eq!(after.metadata.uid, uid, "updated in place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_and_failing_servers_are_retried_and_refusals_are_clear() {
    let Some(setup) = stand_in("it injects faults").await else {
        return;
    };
    let cluster = &setup.cluster;
    let shop = setup.scratch_namespace("shop");
    let shop = shop.as_str();
    make_shop(cluster, shop, setup.is_stand_in()).await;
    let repo = repository().await;
    let filter = ResourceFilter::namespaces([shop]).secrets(true);
    // A list answered 500, then 429: retried.
    setup.server().inject(
        Fault::status(500)
            .method("GET")
            .path_contains("/configmaps")
            .times(1),
    );
    setup.server().inject(
        Fault::status(429)
            .method("GET")
            .path_contains("/secrets")
            .times(2),
    );
    let backup = ResourceBackup::new(cluster.clone(), component(), filter.clone());
    let report = backup.backup_to(repo.as_ref()).await.unwrap();
    let (contents, objects) = read_backup(repo.as_ref(), &report.manifest).await.unwrap();
    assert!(contents.unreadable.is_empty(), "{contents:#?}");
    assert_eq!(objects.len(), 7);

    // A group whose discovery fails is recorded, the rest backed up.
    setup.server().set_group_unavailable("policy", true);
    let partial = backup.backup_to(repo.as_ref()).await.unwrap();
    let (contents, _) = read_backup(repo.as_ref(), &partial.manifest).await.unwrap();
    assert_eq!(contents.unreadable.len(), 1, "{contents:#?}");
    assert!(
        contents.unreadable[0].what.starts_with("policy/"),
        "{contents:#?}"
    );
    assert!(
        contents.unreadable[0].reason.contains("503"),
        "{contents:#?}"
    );
    let details = partial
        .manifest
        .details::<dr_k8s::ResourceBackupDetails>()
        .unwrap()
        .unwrap();
    assert_eq!(details.unreadable, 1);
    setup.server().set_group_unavailable("policy", false);

    // A kind the user may not list, named: the backup fails, Auth.
    setup.server().inject(
        Fault::status(403)
            .method("GET")
            .path_contains("/secrets")
            .times(1),
    );
    let err = ResourceBackup::new(cluster.clone(), component(), filter.kinds(["secrets"]))
        .backup_to(repo.as_ref())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("listing secrets"), "{err}");

    // Creates answered 503 twice are retried; one refused for good fails
    // alone, and the trait's restore names it.
    Api::<k8s_openapi::api::core::v1::Namespace>::all(cluster.client().clone())
        .delete(shop, &DeleteParams::default())
        .await
        .unwrap();
    setup.server().inject(
        Fault::status(503)
            .method("POST")
            .path_contains("/configmaps")
            .times(2),
    );
    setup.server().inject(
        Fault::status(422)
            .method("POST")
            .path_contains("/services")
            .message("Service \"web\" is invalid")
            .times(4),
    );
    let restore = ResourceRestore::new(cluster.clone(), component());
    let restored = restore
        .restore_objects(repo.as_ref(), &RecoveryTarget::Snapshot(report.manifest.id))
        .await
        .unwrap();
    let failures: Vec<String> = restored.failures().map(ToString::to_string).collect();
    assert_eq!(failures.len(), 1, "{restored:#?}");
    assert!(
        failures[0].contains(&format!("services {shop}/web")) && failures[0].contains("422"),
        "{failures:?}"
    );
    assert_eq!(restored.count(&Outcome::Created), objects.len() - 1);
}
