//! Rollouts: a restart makes the next revision and its status completes; a
//! template whose pods never become ready times out saying what it saw; an
//! undo goes back to the previous template exactly as `kubectl rollout
//! undo` does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dr_k8s::{Cluster, Error, RESTARTED_AT, Workload};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::common::{Setup, deployment, setup, stand_in, stateful_set};

const REVISION: &str = "deployment.kubernetes.io/revision";
const WAIT: Duration = Duration::from_secs(10);

fn deployments(cluster: &Cluster) -> Api<Deployment> {
    Api::namespaced(cluster.client().clone(), cluster.default_namespace())
}

async fn set_image(cluster: &Cluster, name: &str, image: &str) {
    let patch = json!({ "spec": { "template": { "spec": {
        "containers": [{ "name": "main", "image": image }] } } } });
    deployments(cluster)
        .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
}

async fn template_of(cluster: &Cluster, name: &str) -> Value {
    let deployment = deployments(cluster).get(name).await.unwrap();
    serde_json::to_value(&deployment.spec.template).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_makes_the_next_revision_and_its_rollout_completes() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    deployment(cluster, "web", 2, json!({})).await;
    let web = Workload::deployment(ns, "web");
    let first = cluster.rollout_status(&web, WAIT).await.unwrap();
    assert_eq!(first.revision, Some(1), "{first:?}");
    assert_eq!((first.replicas, first.updated, first.available), (2, 2, 2));
    assert_eq!(first.message, "deployment \"web\" successfully rolled out");

    let restarted = cluster.rollout_restart(&web).await.unwrap();
    let template = template_of(cluster, "web").await;
    assert_eq!(
        template["metadata"]["annotations"][RESTARTED_AT],
        restarted.at.as_str()
    );
    let second = cluster.rollout_status(&web, WAIT).await.unwrap();
    assert_eq!(second.revision, Some(2), "{second:?}");
    assert_eq!(
        (second.replicas, second.updated, second.available),
        (2, 2, 2)
    );
    let replica_sets = Api::<ReplicaSet>::namespaced(cluster.client().clone(), ns)
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(replica_sets.len(), 2);
    let newest = replica_sets
        .iter()
        .find(|rs| rs.metadata.annotations.as_ref().unwrap()[REVISION] == "2")
        .expect("a replica set of revision 2");
    let annotations = newest.spec.template.as_ref().unwrap();
    let annotations = annotations.metadata.as_ref().unwrap().annotations.as_ref();
    assert_eq!(annotations.unwrap()[RESTARTED_AT], restarted.at);

    // A StatefulSet restarts through the same annotation and rolls out.
    stateful_set(cluster, "db", 2).await;
    let db = Workload::stateful_set(ns, "db");
    cluster.rollout_status(&db, WAIT).await.unwrap();
    let restarted = cluster.rollout_restart(&db).await.unwrap();
    let set = Api::<StatefulSet>::namespaced(cluster.client().clone(), ns)
        .get("db")
        .await
        .unwrap();
    let annotations = set.spec.template.metadata.unwrap().annotations.unwrap();
    assert_eq!(annotations[RESTARTED_AT], restarted.at);
    let status = cluster.rollout_status(&db, WAIT).await.unwrap();
    assert_eq!(status.available, 2, "{status:?}");

    // A ReplicaSet has no rollout; nor does what is not there.
    let rs = Workload::parse("rs/whatever", ns).unwrap();
    let err = cluster.rollout_restart(&rs).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    let ghost = Workload::deployment(ns, "ghost");
    let err = cluster.rollout_status(&ghost, WAIT).await.unwrap_err();
    assert!(matches!(err, Error::Api { code: 404, .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_whose_pods_never_become_ready_times_out_saying_what_it_saw() {
    let Some(setup) = stand_in("its pods fail by the stand-in's drkit.test/fail annotation").await
    else {
        return;
    };
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;
    deployment(cluster, "web", 2, json!({})).await;
    let web = Workload::deployment(ns, "web");
    cluster.rollout_status(&web, WAIT).await.unwrap();

    let patch = json!({ "spec": { "template": { "metadata": {
        "annotations": { "drkit.test/fail": "true" } } } } });
    deployments(cluster)
        .patch("web", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = cluster
        .rollout_status(&web, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(started.elapsed() < Duration::from_secs(5));
    let Error::TimedOut {
        saw, waited_for, ..
    } = &err
    else {
        panic!("not a timeout: {err}");
    };
    assert!(
        saw.contains("0 of 2 updated replicas are available"),
        "{saw}"
    );
    assert!(
        waited_for.contains("every updated replica available"),
        "{waited_for}"
    );
    let said = err.to_string();
    assert!(
        said.contains("deployment/web in namespace default"),
        "{said}"
    );
    assert!(said.contains("test"), "{said}");
    let core: dr_core::Error = err.into();
    assert_eq!(core.kind(), dr_core::ErrorKind::Timeout);
}

/// Makes `name` at nginx:1.27 (revision 1), then nginx:1.28 (revision 2),
/// each rolled out.
async fn two_revisions(cluster: &Cluster, name: &str) -> Workload {
    deployment(cluster, name, 2, json!({})).await;
    let workload = Workload::deployment(cluster.default_namespace(), name);
    cluster.rollout_status(&workload, WAIT).await.unwrap();
    set_image(cluster, name, "nginx:1.28").await;
    let status = cluster.rollout_status(&workload, WAIT).await.unwrap();
    assert_eq!(status.revision, Some(2), "{status:?}");
    workload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_goes_back_to_the_previous_template_as_kubectl_does() {
    let setup = setup().await;
    let ns = setup.namespace.as_str();
    let cluster = &setup.cluster;

    // Nothing to go back to yet.
    deployment(cluster, "fresh", 1, json!({})).await;
    let fresh = Workload::deployment(ns, "fresh");
    cluster.rollout_status(&fresh, WAIT).await.unwrap();
    let err = cluster.rollout_undo(&fresh, None).await.unwrap_err();
    assert!(
        matches!(&err, Error::NoRevision { known, .. } if known == "1"),
        "{err}"
    );
    assert!(err.to_string().contains("previous revision"), "{err}");

    let web = two_revisions(cluster, "web").await;
    let err = cluster.rollout_undo(&web, Some(9)).await.unwrap_err();
    assert!(
        matches!(&err, Error::NoRevision { known, .. } if known == "1, 2"),
        "{err}"
    );
    let undone = cluster.rollout_undo(&web, None).await.unwrap();
    assert_eq!((undone.from_revision, undone.to_revision), (2, 1));
    assert!(!undone.skipped);
    let status = cluster.rollout_status(&web, WAIT).await.unwrap();
    assert_eq!(
        status.revision,
        Some(3),
        "revision 1's template becomes revision 3"
    );
    let ours = template_of(cluster, "web").await;
    assert_eq!(ours["spec"]["containers"][0]["image"], "nginx:1.27");
    assert!(
        ours["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none(),
        "{ours}"
    );

    // Going back to the template it has changes nothing.
    let again = cluster.rollout_undo(&web, Some(3)).await.unwrap();
    assert!(again.skipped, "{again:?}");

    // The same history on a twin, undone by kubectl.
    let Some(kubectl) = kubectl() else {
        eprintln!(
            "SKIPPED the kubectl half of this test: no kubectl at /usr/bin/kubectl or on PATH"
        );
        return;
    };
    let twin = two_revisions(cluster, "twin").await;
    let output = kubectl_undo(&kubectl, &setup, "deployment/twin").await;
    assert!(output.contains("rolled back"), "{output}");
    let status = cluster.rollout_status(&twin, WAIT).await.unwrap();
    assert_eq!(status.revision, Some(3));
    let theirs = template_of(cluster, "twin").await;
    assert_eq!(
        comparable(&ours, "web"),
        comparable(&theirs, "twin"),
        "our undo's template, then kubectl's"
    );
    let annotations = |name: &str| {
        let cluster = cluster.clone();
        let name = name.to_owned();
        async move {
            let d = deployments(&cluster).get(&name).await.unwrap();
            d.metadata.annotations.unwrap_or_default()
        }
    };
    assert_eq!(annotations("web").await, annotations("twin").await);
}

/// kubectl, where installed.
fn kubectl() -> Option<PathBuf> {
    let usr = PathBuf::from("/usr/bin/kubectl");
    if usr.is_file() {
        return Some(usr);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
}

/// `kubectl rollout undo <what>`'s output, after checking it succeeded.
async fn kubectl_undo(kubectl: &Path, setup: &Setup, what: &str) -> String {
    let output = tokio::process::Command::new(kubectl)
        .args(setup.kubectl_args())
        .args(["rollout", "undo", what])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl failed: {stdout}{stderr}");
    stdout
}

/// A template with its deployment's name taken out, and without the null
/// and empty fields a typed server drops or fills alike (kubectl sends
/// `"creationTimestamp": null` and `"resources": {}`; a real API server
/// stores both templates the same; this test server keeps JSON as sent).
fn comparable(template: &Value, name: &str) -> Value {
    fn clean(value: &mut Value) {
        if let Value::Object(map) = value {
            map.values_mut().for_each(clean);
            map.retain(|_, v| !v.is_null() && *v != json!({}));
        } else if let Value::Array(items) = value {
            items.iter_mut().for_each(clean);
        }
    }
    let text = template
        .to_string()
        .replace(&format!("\"{name}\""), "\"NAME\"");
    let mut value: Value = serde_json::from_str(&text).unwrap();
    clean(&mut value);
    value
}
