//! The cluster the tests run against, and helpers that make objects in it.
//!
//! By default each test starts dr-k8s-testkit's API server (a stand-in:
//! no kube-apiserver installs here) and reaches it through a kubeconfig, as
//! a user's cluster is reached, in its namespace `default`. With
//! `DRKIT_TEST_KUBECONFIG` naming a kubeconfig (its context
//! `DRKIT_TEST_CONTEXT`, else its current one), the tests that need no
//! control only the stand-in has run against that real cluster instead,
//! each in a namespace of its own (`drkit-test-<random>`, deleted after);
//! the others ([`stand_in`]) say they are skipped there.

use std::path::PathBuf;
use std::time::Duration;

use dr_k8s::{Cluster, PodQuery, PodState};
use dr_k8s_testkit::KubeApiServer;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, PostParams};
use serde_json::json;

/// The variable naming a real cluster's kubeconfig.
const REAL_KUBECONFIG: &str = "DRKIT_TEST_KUBECONFIG";
/// The variable naming its context.
const REAL_CONTEXT: &str = "DRKIT_TEST_CONTEXT";

/// A test's cluster, its kubeconfig, and the namespace the test works in.
pub(crate) struct Setup {
    /// The stand-in (dropping it stops it), or `None` for a real cluster.
    server: Option<KubeApiServer>,
    pub(crate) dir: tempfile::TempDir,
    /// The kubeconfig and its context.
    pub(crate) kubeconfig: PathBuf,
    pub(crate) context: String,
    /// The cluster, whose default namespace is the test's.
    pub(crate) cluster: Cluster,
    /// The test's namespace: `default` on the stand-in.
    pub(crate) namespace: String,
    /// The namespaces the test made besides its own, on a real cluster.
    scratch: std::sync::Mutex<Vec<String>>,
}

impl Setup {
    /// The stand-in: for its controls (faults, logs), in stand-in-only tests.
    pub(crate) fn server(&self) -> &KubeApiServer {
        self.server
            .as_ref()
            .expect("a stand-in-only test runs only on the stand-in")
    }

    /// Whether this is the stand-in.
    pub(crate) fn is_stand_in(&self) -> bool {
        self.server.is_some()
    }

    /// A namespace for the test to make besides its own: `base` on the
    /// stand-in; on a real cluster `<the test's namespace>-<base>`, deleted
    /// with the test's.
    pub(crate) fn scratch_namespace(&self, base: &str) -> String {
        if self.is_stand_in() {
            return base.to_owned();
        }
        let name = format!("{}-{base}", self.namespace);
        self.scratch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name.clone());
        name
    }

    /// `kubectl`'s arguments for this cluster and namespace.
    pub(crate) fn kubectl_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--kubeconfig".into(),
            self.kubeconfig.clone().into(),
            "--context".into(),
            self.context.clone().into(),
            "--namespace".into(),
            self.namespace.clone().into(),
        ]
    }
}

impl Drop for Setup {
    /// On a real cluster, deletes the test's namespaces (and with them
    /// what the test made there).
    fn drop(&mut self) {
        if self.is_stand_in() {
            return;
        }
        let cluster = self.cluster.clone();
        let mut namespaces = std::mem::take(
            &mut *self
                .scratch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        namespaces.push(self.namespace.clone());
        // Dropped inside the test's runtime: the deletes run on a runtime
        // of their own, on a thread of their own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let mut failed = Vec::new();
                for namespace in namespaces {
                    let wait = Duration::from_secs(120);
                    if let Err(e) = cluster.delete_namespace(&namespace, wait).await {
                        failed.push(format!("{namespace}: {e}"));
                    }
                }
                failed
            })
        })
        .join();
        match deleted {
            Ok(failed) if failed.is_empty() => {}
            other => eprintln!("could not delete the test's namespaces: {other:?}"),
        }
    }
}

/// The test's cluster: the stand-in, or the real one `DRKIT_TEST_KUBECONFIG` names.
pub(crate) async fn setup() -> Setup {
    match std::env::var_os(REAL_KUBECONFIG) {
        Some(kubeconfig) => real(PathBuf::from(kubeconfig)).await,
        None => stand_in_setup().await,
    }
}

/// The stand-in, for a test that needs a control only it has; `None`, and
/// a line saying the test is skipped, against a real cluster.
pub(crate) async fn stand_in(why: &str) -> Option<Setup> {
    if std::env::var_os(REAL_KUBECONFIG).is_some() {
        eprintln!("SKIPPED against a real cluster: stand-in only ({why})");
        return None;
    }
    Some(stand_in_setup().await)
}

async fn stand_in_setup() -> Setup {
    let server = KubeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.kubeconfig(dir.path()).await.unwrap();
    let cluster = Cluster::from_kubeconfig(&kubeconfig, Some("test"))
        .await
        .unwrap();
    Setup {
        server: Some(server),
        dir,
        kubeconfig,
        context: "test".to_owned(),
        namespace: cluster.default_namespace().to_owned(),
        cluster,
        scratch: Default::default(),
    }
}

/// A namespace of the test's own in the real cluster of `kubeconfig`.
async fn real(kubeconfig: PathBuf) -> Setup {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let file = Kubeconfig::read_from(&kubeconfig).unwrap();
    let context = std::env::var(REAL_CONTEXT)
        .ok()
        .or(file.current_context.clone())
        .expect("DRKIT_TEST_CONTEXT, or a current context in the kubeconfig");
    let namespace = format!("drkit-test-{:08x}", rand_suffix());
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(file, &options)
        .await
        .unwrap();
    config.default_namespace = namespace.clone();
    config.default_retry = false;
    let cluster = Cluster::from_client(kube::Client::try_from(config).unwrap(), &context);
    cluster
        .create_namespace(&namespace, &Default::default())
        .await
        .unwrap();
    Setup {
        server: None,
        dir: tempfile::tempdir().unwrap(),
        kubeconfig,
        context,
        cluster,
        namespace,
        scratch: Default::default(),
    }
}

/// Bits for a namespace's name: the time's nanoseconds and the process.
fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// Creates a Deployment of `replicas` pods labelled `app: name`, with
/// `annotations` on its pod template.
pub(crate) async fn deployment(
    cluster: &Cluster,
    name: &str,
    replicas: i32,
    annotations: serde_json::Value,
) {
    deployment_with(
        cluster,
        cluster.default_namespace(),
        name,
        replicas,
        annotations,
    )
    .await;
}

/// Creates a Deployment of `replicas` pods labelled `app: name` in
/// `namespace`.
pub(crate) async fn deployment_in(cluster: &Cluster, namespace: &str, name: &str, replicas: i32) {
    deployment_with(cluster, namespace, name, replicas, json!({})).await;
}

async fn deployment_with(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    replicas: i32,
    annotations: serde_json::Value,
) {
    let object: Deployment = serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name }, "annotations": annotations },
                "spec": { "containers": [{ "name": "main", "image": "nginx:1.27" }] }
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(cluster.client().clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// Creates a StatefulSet of `replicas` pods labelled `app: name`.
pub(crate) async fn stateful_set(cluster: &Cluster, name: &str, replicas: i32) {
    let object: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": cluster.default_namespace() },
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": "postgres:15" }] }
            }
        }
    }))
    .unwrap();
    Api::<StatefulSet>::namespaced(cluster.client().clone(), cluster.default_namespace())
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
}

/// Waits (up to 10 s) until the pods `query` selects satisfy `done`; them.
pub(crate) async fn pods_until(
    cluster: &Cluster,
    query: &PodQuery,
    done: impl Fn(&[PodState]) -> bool,
) -> Vec<PodState> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let pods = cluster.pods(query).await.unwrap();
        if done(&pods) {
            return pods;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pods never as wanted: {pods:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
