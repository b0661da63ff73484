//! The drill's Kubernetes scenarios, on two stand-in clusters (the test
//! API server: no kube-apiserver installs here) reached through one
//! kubeconfig as the seeds reach theirs, `prod` and `dr-cluster`:
//!
//! 1. in `prod`, the GoMeet namespace: LiveKit's `rooms.livekit.io`
//!    definition and rooms, the `livekit-config` ConfigMap, a Secret, the
//!    SFU and API Deployments, their Services and a disruption budget;
//! 2. the scheduled resource backup of the namespace (Secrets included),
//!    then a room made after it, which a restore cannot bring back;
//! 3. Veza's Scenario 3, a deployment failure: a release of the API whose
//!    pods never become ready and whose health check fails, undone by the
//!    health-gated rollout (RTO < 5 minutes);
//! 4. Scenario 4, the region lost: `prod` is gone, and the backup is
//!    restored into `dr-cluster`, the definitions first, every Deployment
//!    rolled out there; every object checked against the backup, and the
//!    room made after it counted lost. The RTO runs from the loss to the
//!    last Deployment rolled out (the complete platform: < 4 hours), the
//!    RPO from the backup to the loss (configuration: < 5 minutes).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dr_core::{BackupExt, ComponentId, Objectives, RecoveryTarget, Restore, RestoreRequest};
use dr_k8s::{
    Cluster, GuardVerdict, HttpHealth, ResourceBackup, ResourceFilter, ResourceRestore,
    RolloutGuard, Workload, clean_object, read_backup,
};
use dr_k8s_testkit::KubeApiServer;
use dr_storage::Repository;
use jiff::Timestamp;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::{Result, indent, step};

/// The namespace of the platform.
const NAMESPACE: &str = "gomeet";
/// The platform, as its manifests would have it.
const PLATFORM: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: { name: rooms.livekit.io }
spec:
  group: livekit.io
  scope: Namespaced
  names: { plural: rooms, singular: room, kind: Room }
  versions:
    - name: v1
      served: true
      storage: true
      schema: { openAPIV3Schema: { type: object, x-kubernetes-preserve-unknown-fields: true } }
---
apiVersion: v1
kind: Namespace
metadata: { name: gomeet, labels: { team: video } }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: livekit-config, namespace: gomeet }
data: { config.yaml: "port: 7880\nrtc: { port_range_start: 50000, port_range_end: 60000 }\n" }
---
apiVersion: v1
kind: Secret
metadata: { name: livekit-keys, namespace: gomeet }
type: Opaque
data: { keys.yaml: YXBpa2V5OiBzZWNyZXQK }
---
apiVersion: livekit.io/v1
kind: Room
metadata: { name: standup, namespace: gomeet }
spec: { maxParticipants: 20, emptyTimeout: 300 }
---
apiVersion: livekit.io/v1
kind: Room
metadata: { name: all-hands, namespace: gomeet }
spec: { maxParticipants: 500, emptyTimeout: 600 }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: livekit-server, namespace: gomeet }
spec:
  replicas: 3
  selector: { matchLabels: { app: livekit } }
  template:
    metadata: { labels: { app: livekit } }
    spec:
      terminationGracePeriodSeconds: 18000
      containers: [{ name: livekit, image: "livekit/livekit-server:v1.8", ports: [{ containerPort: 7880 }] }]
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: api, namespace: gomeet }
spec:
  replicas: 2
  selector: { matchLabels: { app: api } }
  template:
    metadata: { labels: { app: api } }
    spec:
      containers: [{ name: api, image: "gomeet/api:1.4.2", ports: [{ containerPort: 8080 }] }]
---
apiVersion: v1
kind: Service
metadata: { name: livekit, namespace: gomeet }
spec: { selector: { app: livekit }, ports: [{ port: 7880 }] }
---
apiVersion: v1
kind: Service
metadata: { name: api, namespace: gomeet }
spec: { selector: { app: api }, ports: [{ port: 80, targetPort: 8080 }] }
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: { name: livekit, namespace: gomeet }
spec: { minAvailable: 2, selector: { matchLabels: { app: livekit } } }
"#;

/// Runs the scenarios: whether their objectives were met and the restore
/// was exact, and their report.
pub(crate) async fn run(repo: Arc<Repository>) -> Result<(bool, String)> {
    step(
        "Kubernetes: two clusters, prod and dr-cluster, in one kubeconfig; GoMeet's namespace in prod",
    );
    let prod_server = KubeApiServer::start().await?;
    let dr_server = KubeApiServer::start().await?;
    let dir = tempfile::Builder::new()
        .prefix("drkit-drill-k8s-")
        .tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    write_kubeconfig(&kubeconfig, &prod_server.url(), &dr_server.url())?;
    let prod = Cluster::from_kubeconfig(&kubeconfig, Some("prod")).await?;
    let dr = Cluster::from_kubeconfig(&kubeconfig, Some("dr-cluster")).await?;
    prod.apply_yaml(PLATFORM).await?;
    let deployments = ["livekit-server", "api"].map(|d| Workload::deployment(NAMESPACE, d));
    for deployment in &deployments {
        prod.rollout_status(deployment, Duration::from_secs(30))
            .await?;
    }

    step("the scheduled backup of the namespace (Secrets included, encrypted)");
    let component: ComponentId = "kubernetes/gomeet".parse()?;
    let backup = ResourceBackup::new(
        prod.clone(),
        component.clone(),
        ResourceFilter::namespaces([NAMESPACE]).secrets(true),
    );
    let report = backup.backup_to(repo.as_ref()).await?;
    let (contents, stored) = read_backup(repo.as_ref(), &report.manifest).await?;
    println!(
        "  snapshot {}: {} objects of {} resources; left out by rule: {}",
        report.manifest.id,
        stored.len(),
        contents.taken.iter().filter(|t| t.objects > 0).count(),
        contents.left_out.len()
    );
    prod.apply_yaml(
        "apiVersion: livekit.io/v1\nkind: Room\nmetadata: { name: late-room, namespace: gomeet }\nspec: { maxParticipants: 5 }\n",
    )
    .await?;
    println!("  then a room, late-room, made after the backup");

    let (rollback_met, rollback_report) = bad_release(&prod).await?;

    step("the region is lost: prod is gone; the backup restored into dr-cluster");
    drop(prod_server);
    let incident = Timestamp::now();
    let lost_at = Instant::now();
    let objectives = Objectives::new("4 hours".parse()?, "5 minutes".parse()?);
    let restore = ResourceRestore::new(dr.clone(), component.clone());
    let request = RestoreRequest::new(repo.as_ref(), &RecoveryTarget::Latest, objectives)
        .incident_at(incident);
    let restored = restore.restore(request).await?;
    for deployment in &deployments {
        dr.rollout_status(deployment, Duration::from_secs(60))
            .await?;
    }
    let rolled_out = lost_at.elapsed();
    let mismatched = compare(&dr, &stored).await?;
    let late_room_lost = room_absent(&dr, "late-room").await?;
    let exact = mismatched.is_empty() && late_room_lost;
    for m in &mismatched {
        println!("  NOT as backed up: {m}");
    }

    let region_met = restored.objectives_met() && rolled_out < Duration::from_secs(4 * 3600);
    let report = format!(
        "\nKubernetes: the region lost, GoMeet restored into dr-cluster:\n{}\n  every Deployment rolled \
         out in dr-cluster {:.2} s after the loss; {} objects as backed up{}; late-room, made after \
         the backup, lost as the RPO says\n{rollback_report}",
        indent(&restored.to_string()),
        rolled_out.as_secs_f64(),
        stored.len() - mismatched.len(),
        if mismatched.is_empty() {
            String::new()
        } else {
            format!(", {} NOT", mismatched.len())
        },
    );
    Ok((region_met && rollback_met && exact, report))
}

/// Scenario 3: a release whose pods never become ready and whose health
/// check fails, undone by the health-gated rollout; whether the rollback
/// met its 5 minutes, and its report.
async fn bad_release(prod: &Cluster) -> Result<(bool, String)> {
    step("Scenario 3: a bad release of the API, watched by the health-gated rollout");
    let api = Workload::deployment(NAMESPACE, "api");
    // The API's health endpoint: failing while the bad release is deployed.
    let healthy = Arc::new(AtomicBool::new(true));
    let url = health_endpoint(healthy.clone()).await?;
    let started = Instant::now();
    let broken = Patch::Strategic(serde_json::json!({ "spec": { "template": {
        "metadata": { "annotations": { "drkit.test/fail": "true" } },
        "spec": { "containers": [{ "name": "api", "image": "gomeet/api:1.5.0" }] }
    } } }));
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(prod.client().clone(), NAMESPACE)
        .patch("api", &PatchParams::default(), &broken)
        .await?;
    healthy.store(false, Ordering::SeqCst);
    let watcher = {
        let prod = prod.clone();
        let healthy = healthy.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(image) = image_of(&prod, "api").await {
                    healthy.store(image != "gomeet/api:1.5.0", Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let guard = RolloutGuard::new(Duration::from_secs(20))
        .health(Arc::new(HttpHealth::new(&url)?), 3)
        .interval(Duration::from_millis(200))
        .settle(Duration::from_secs(2));
    let guarded = prod.guard_rollout(&api, &guard).await;
    watcher.abort();
    let guarded = guarded?;
    let GuardVerdict::RolledBack {
        reason,
        from_revision,
        to_revision,
        recovered,
    } = &guarded.verdict
    else {
        return Ok((
            false,
            "Scenario 3: the bad release was KEPT: the health gate did not catch it".to_owned(),
        ));
    };
    let total = started.elapsed();
    let met = *recovered && total < Duration::from_secs(300);
    let steps: Vec<String> = guarded
        .timeline
        .steps()
        .iter()
        .map(|s| format!("    {:>6.2} s  {}", s.duration().as_secs_f64(), s.name))
        .collect();
    Ok((
        met,
        format!(
            "\nScenario 3, a bad release of the API: {reason}\n  undone from revision {from_revision} to \
             {to_revision}; {} s from the release to the previous one rolled out and healthy \
             (objective: 5 minutes): {}\n{}",
            format_args!("{:.1}", total.as_secs_f64()),
            if met { "MET" } else { "MISSED" },
            steps.join("\n")
        ),
    ))
}

/// One kubeconfig with the two clusters, as `--context=dr-cluster` reaches
/// the DR region.
fn write_kubeconfig(path: &Path, prod: &str, dr: &str) -> Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: prod\n\
         clusters:\n- name: prod\n  cluster: {{ server: \"{prod}\" }}\n- name: dr\n  cluster: {{ server: \"{dr}\" }}\n\
         users:\n- name: drill\n  user: {{}}\n\
         contexts:\n- name: prod\n  context: {{ cluster: prod, user: drill, namespace: gomeet }}\n\
         - name: dr-cluster\n  context: {{ cluster: dr, user: drill, namespace: gomeet }}\n"
    );
    std::fs::write(path, text)?;
    Ok(())
}

/// An HTTP endpoint on loopback answering 200 while `healthy`, else 500.
async fn health_endpoint(healthy: Arc<AtomicBool>) -> Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/healthz", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let status = if healthy.load(Ordering::SeqCst) {
                "200 OK"
            } else {
                "500 Internal Server Error"
            };
            tokio::spawn(async move {
                let mut request = [0; 1024];
                let _ = stream.read(&mut request).await;
                let answer =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok(url)
}

async fn image_of(cluster: &Cluster, deployment: &str) -> Result<String> {
    let d = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
        cluster.client().clone(),
        NAMESPACE,
    )
    .get(deployment)
    .await?;
    let spec = d.spec.template.spec.unwrap_or_default();
    Ok(spec
        .containers
        .first()
        .and_then(|c| c.image.clone())
        .unwrap_or_default())
}

/// The stored objects the cluster does not hold as they were backed up
/// (both cleaned as a restore cleans, the Deployment controller's own
/// revision annotation aside).
async fn compare(cluster: &Cluster, stored: &[dr_k8s::StoredObject]) -> Result<Vec<String>> {
    let discovered = cluster.discover().await?;
    let mut mismatched = Vec::new();
    for object in stored {
        let api_version = object.object["apiVersion"].as_str().unwrap_or_default();
        let kind = object.object["kind"].as_str().unwrap_or_default();
        let Some(resource) = discovered.by_kind(api_version, kind) else {
            mismatched.push(format!("{} (its kind is not served)", object.describe()));
            continue;
        };
        let api: Api<DynamicObject> = match &object.namespace {
            Some(ns) => Api::namespaced_with(cluster.client().clone(), ns, &resource.api),
            None => Api::all_with(cluster.client().clone(), &resource.api),
        };
        let Some(now) = api.get_opt(&object.name).await? else {
            mismatched.push(format!("{} (missing)", object.describe()));
            continue;
        };
        let mut now = serde_json::to_value(now)?;
        now["apiVersion"] = Value::from(api_version);
        now["kind"] = Value::from(kind);
        if comparable(&object.resource, &now) != comparable(&object.resource, &object.object) {
            mismatched.push(object.describe());
        }
    }
    Ok(mismatched)
}

fn comparable(resource: &str, object: &Value) -> Value {
    let mut object = object.clone();
    clean_object(resource, &mut object);
    if let Some(Value::Object(annotations)) = object.pointer_mut("/metadata/annotations") {
        annotations.retain(|k, _| !k.starts_with("deployment.kubernetes.io/"));
        if annotations.is_empty()
            && let Some(metadata) = object["metadata"].as_object_mut()
        {
            metadata.remove("annotations");
        }
    }
    object
}

async fn room_absent(cluster: &Cluster, name: &str) -> Result<bool> {
    let discovered = cluster.discover().await?;
    let rooms = discovered
        .find("rooms.livekit.io")
        .ok_or("dr-cluster does not serve rooms.livekit.io")?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client().clone(), NAMESPACE, &rooms.api);
    Ok(api.get_opt(name).await?.is_none())
}
