//! `kubernetes` components, `drkit k8s` and the agent's Lease, against the
//! test API server:
//! a resource backup listed, verified and restored (after its namespace
//! was deleted, beside it, as a dry run, into a context that does not
//! exist), and the runbooks' scale, restart, rollout status, undo and fence
//! on Deployments the server's controllers roll; two agents on one config,
//! of which only the one holding the Lease runs jobs.

use std::path::{Path, PathBuf};
use std::process::Output;

use dr_k8s_testkit::KubeApiServer;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::common::agent::{Agent, value};
use crate::common::{BIN, Setup, text};

/// The test API server, a config whose component `kubernetes/shop` backs
/// up its namespace `shop`, and a client of the server.
struct Cluster {
    server: KubeApiServer,
    setup: Setup,
    kubeconfig: PathBuf,
    client: kube::Client,
}

const COMPONENT: &str = "kubernetes/shop";

impl Cluster {
    /// The server with the namespace `shop` and its objects, and a
    /// repository created; `settings` are more lines of the component's
    /// `[component.kubernetes]` table.
    async fn start(settings: &str) -> Self {
        let server = KubeApiServer::start().await.unwrap();
        let setup = Setup::with_components(|dir| {
            format!(
                "[[component]]\nid = \"{COMPONENT}\"\nkind = \"kubernetes\"\n\
                 objectives = {{ rto = \"10m\", rpo = \"24h\" }}\nretention = \"last=3\"\n\n\
                 [component.kubernetes]\nkubeconfig = \"{}\"\ncontext = \"test\"\n\
                 namespaces = [\"shop\"]\n{settings}\n",
                dir.join("kubeconfig").display()
            )
        });
        let kubeconfig = server.kubeconfig(setup.dir.path()).await.unwrap();
        let client = dr_k8s::Cluster::from_kubeconfig(&kubeconfig, Some("test"))
            .await
            .unwrap()
            .client()
            .clone();
        let cluster = Self {
            server,
            setup,
            kubeconfig,
            client,
        };
        cluster.shop().await;
        let init = cluster.drkit(&["init"]).await;
        assert!(init.status.success(), "{}", text(&init));
        cluster
    }

    /// The namespace `shop`: a ConfigMap, a Secret, a Service, a
    /// ServiceAccount and a Deployment of two pods.
    async fn shop(&self) {
        create(self.namespaces(), json!({ "metadata": { "name": "shop" } })).await;
        create(
            self.api::<ConfigMap>("shop"),
            json!({ "metadata": { "name": "settings" }, "data": { "greeting": "hello" } }),
        )
        .await;
        create(
            self.api::<Secret>("shop"),
            json!({ "metadata": { "name": "token" }, "stringData": { "key": "s3cr3t" } }),
        )
        .await;
        create(
            self.api::<Service>("shop"),
            json!({
                "metadata": { "name": "web" },
                "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80 }] }
            }),
        )
        .await;
        create(
            self.api::<ServiceAccount>("shop"),
            json!({ "metadata": { "name": "runner" } }),
        )
        .await;
        self.deployment("shop", "web", 2).await;
    }

    /// Creates a Deployment of `replicas` pods labelled `app: name`.
    async fn deployment(&self, namespace: &str, name: &str, replicas: i32) {
        create(
            self.api::<Deployment>(namespace),
            json!({
                "metadata": { "name": name },
                "spec": {
                    "replicas": replicas,
                    "selector": { "matchLabels": { "app": name } },
                    "template": {
                        "metadata": { "labels": { "app": name } },
                        "spec": { "containers": [{ "name": "main", "image": "nginx:1.27" }] }
                    }
                }
            }),
        )
        .await;
    }

    /// The API of `K` in `namespace`.
    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.client.clone())
    }

    /// The ConfigMap `settings` of `namespace`, if there is one.
    async fn settings(&self, namespace: &str) -> Option<ConfigMap> {
        self.api::<ConfigMap>(namespace)
            .get_opt("settings")
            .await
            .unwrap()
    }

    /// Deletes the namespace `shop`, which takes its objects with it.
    async fn delete_shop(&self) {
        self.namespaces()
            .delete("shop", &DeleteParams::default())
            .await
            .unwrap();
        assert!(self.settings("shop").await.is_none());
    }

    async fn drkit(&self, args: &[&str]) -> Output {
        self.setup.drkit(args).await
    }

    /// `drkit <args>`, which must succeed; its standard output.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.drkit(args).await;
        assert!(output.status.success(), "{args:?}: {}", text(&output));
        String::from_utf8(output.stdout).unwrap()
    }
}

#[tokio::test]
async fn a_backup_brings_every_object_back_after_its_namespace_is_deleted() {
    let cluster = Cluster::start("").await;
    let checked = cluster.ok(&["config", "check"]).await;
    assert!(checked.contains("context test of"), "{checked}");
    assert!(checked.contains("namespaces shop;"), "{checked}");
    assert!(
        checked.contains("kubernetes/shop: test answers, ") && checked.contains("resources served"),
        "{checked}"
    );
    let backup = cluster.ok(&["backup", COMPONENT]).await;
    // The namespace, the ConfigMap, the Service, the ServiceAccount and the
    // Deployment; not its ReplicaSet and pods (it makes them again), not
    // the Secret (not asked for).
    assert!(
        backup.contains("5 objects of 5 resources from test"),
        "{backup}"
    );

    let listed = cluster.ok(&["snapshots", "--component", COMPONENT]).await;
    assert!(listed.contains(COMPONENT), "{listed}");
    let status = cluster.ok(&["status"]).await;
    assert!(
        status.contains("last backup") && !status.contains("none"),
        "{status}"
    );
    let verified = cluster.ok(&["verify", "--component", COMPONENT]).await;
    assert!(verified.contains(": 5 items and"), "{verified}");

    cluster.delete_shop().await;
    let restored = cluster.ok(&["restore", COMPONENT]).await;
    for object in [
        "namespaces shop: created",
        "configmaps shop/settings: created",
        "services shop/web: created",
        "serviceaccounts shop/runner: created",
        "deployments.apps shop/web: created",
    ] {
        assert!(restored.contains(object), "{object} in {restored}");
    }
    assert!(
        restored.contains("5 created, 0 updated, 0 recreated, 0 skipped, 0 unchecked, 0 failed"),
        "{restored}"
    );
    assert!(restored.contains("RTO"), "the recovery report: {restored}");
    let settings = cluster.settings("shop").await.unwrap();
    assert_eq!(settings.data.unwrap()["greeting"], "hello");
    let web = cluster.api::<Deployment>("shop").get("web").await.unwrap();
    assert_eq!(web.spec.replicas, Some(2));
    assert!(
        cluster
            .api::<Service>("shop")
            .get_opt("web")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        cluster
            .api::<Secret>("shop")
            .get_opt("token")
            .await
            .unwrap()
            .is_none()
    );

    // Again: everything exists, and is left alone; or applied over, in JSON.
    let again = cluster.ok(&["restore", COMPONENT]).await;
    assert!(
        again.contains("0 created") && again.contains("5 skipped"),
        "{again}"
    );
    let json: Value = serde_json::from_str(
        &cluster
            .ok(&["--json", "restore", COMPONENT, "--existing", "update"])
            .await,
    )
    .unwrap();
    assert_eq!(json["component"], COMPONENT);
    assert_eq!(json["cluster"], "test");
    assert_eq!(json["summary"]["updated"], 5, "{json}");
    let objects = json["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 5);
    let settings = objects
        .iter()
        .find(|o| o["object"] == "configmaps shop/settings")
        .unwrap();
    assert_eq!(settings["outcome"], "updated", "{json}");
    assert!(settings["reason"].is_null(), "{json}");
    assert!(json["recovery"]["timeline"].is_object(), "{json}");
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_a_namespace_map_restores_beside() {
    let cluster = Cluster::start("").await;
    cluster.ok(&["backup", COMPONENT]).await;

    let dry = cluster
        .ok(&[
            "restore",
            COMPONENT,
            "--dry-run",
            "--namespace-map",
            "shop=shop-copy",
        ])
        .await;
    // The namespace is checked; what goes into it cannot be before it exists.
    assert!(dry.contains("namespaces shop-copy: created"), "{dry}");
    assert!(
        dry.contains("configmaps shop-copy/settings: unchecked"),
        "{dry}"
    );
    assert!(dry.contains("dry run of snapshot"), "{dry}");
    assert!(!dry.contains("RTO"), "no recovery report: {dry}");
    assert!(
        cluster
            .namespaces()
            .get_opt("shop-copy")
            .await
            .unwrap()
            .is_none()
    );

    // Only the ConfigMaps, into a copy of the namespace beside it.
    let beside = cluster
        .ok(&[
            "restore",
            COMPONENT,
            "--namespace-map",
            "shop=shop-copy",
            "--only-kind",
            "configmaps",
        ])
        .await;
    assert!(
        beside.contains("2 created, 0 updated, 0 recreated, 0 skipped"),
        "the namespace and the ConfigMap: {beside}"
    );
    let copy = cluster.settings("shop-copy").await.unwrap();
    assert_eq!(copy.data.unwrap()["greeting"], "hello");
    assert!(
        cluster
            .api::<Deployment>("shop-copy")
            .get_opt("web")
            .await
            .unwrap()
            .is_none()
    );
    // The original is as it was.
    assert!(cluster.settings("shop").await.is_some());

    // A dry run over objects that exist: the server checks the updates.
    let dry = cluster
        .ok(&["restore", COMPONENT, "--dry-run", "--existing", "update"])
        .await;
    assert!(dry.contains("configmaps shop/settings: updated"), "{dry}");
}

#[tokio::test]
async fn a_context_that_does_not_exist_is_a_usage_error() {
    let cluster = Cluster::start("").await;
    cluster.ok(&["backup", COMPONENT]).await;
    let output = cluster
        .drkit(&["restore", COMPONENT, "--context", "dr-cluster"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("has no context \"dr-cluster\" (it has: test)"),
        "{}",
        text(&output)
    );
    // The component's own context, wrong in the config.
    let config = std::fs::read_to_string(&cluster.setup.config).unwrap();
    std::fs::write(
        &cluster.setup.config,
        config.replace("context = \"test\"", "context = \"prod\""),
    )
    .unwrap();
    let output = cluster.drkit(&["backup", COMPONENT]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("no context \"prod\""),
        "{}",
        text(&output)
    );
    // Flags of other kinds are refused, and these for other kinds.
    let output = cluster
        .drkit(&["restore", COMPONENT, "--target", "/tmp/x"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("--target is for PostgreSQL"),
        "{}",
        text(&output)
    );
}

#[tokio::test]
async fn restoring_into_another_cluster_by_its_kubeconfig() {
    let cluster = Cluster::start("").await;
    cluster.ok(&["backup", COMPONENT]).await;
    let dr = KubeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dr_kubeconfig = dr.kubeconfig(dir.path()).await.unwrap();
    let restored = cluster
        .ok(&[
            "restore",
            COMPONENT,
            "--kubeconfig",
            dr_kubeconfig.to_str().unwrap(),
        ])
        .await;
    assert!(restored.contains("5 created"), "{restored}");
    let dr_client = dr_k8s::Cluster::from_kubeconfig(&dr_kubeconfig, None)
        .await
        .unwrap();
    let settings: Api<ConfigMap> = Api::namespaced(dr_client.client().clone(), "shop");
    assert!(settings.get_opt("settings").await.unwrap().is_some());
}

#[tokio::test]
async fn a_damaged_backup_fails_its_verify() {
    let cluster = Cluster::start("").await;
    cluster.ok(&["backup", COMPONENT]).await;
    damage_packs(&cluster.setup.repo.join("data"));
    let output = cluster.drkit(&["verify", "--component", COMPONENT]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("verifying snapshot"),
        "{}",
        text(&output)
    );
    // A restore of it reads the same data, and writes nothing.
    cluster.delete_shop().await;
    let output = cluster.drkit(&["restore", COMPONENT]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(cluster.settings("shop").await.is_none());
}

/// Flips a byte in the middle of every file under `dir`.
fn damage_packs(dir: &Path) {
    let mut damaged = 0;
    for entry in walk(dir) {
        let mut bytes = std::fs::read(&entry).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&entry, bytes).unwrap();
        damaged += 1;
    }
    assert!(damaged > 0, "no packs under {}", dir.display());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Creates `object` through `api`.
async fn create<K>(api: Api<K>, object: Value)
where
    K: kube::Resource + serde::de::DeserializeOwned + serde::Serialize + Clone + std::fmt::Debug,
{
    let object: K = serde_json::from_value(object).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

/// `drkit k8s <args> --kubeconfig <kubeconfig>`, no config file, no
/// `KUBECONFIG`.
async fn k8s(kubeconfig: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(BIN)
        .arg("k8s")
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .env_remove("DRKIT_CONFIG")
        .output()
        .await
        .unwrap()
}

async fn k8s_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let output = k8s(kubeconfig, args).await;
    assert!(output.status.success(), "{args:?}: {}", text(&output));
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_runbooks_kubectl_steps() {
    let cluster = Cluster::start("").await;
    let k = cluster.kubeconfig.as_path();
    let deployments = cluster.api::<Deployment>("shop");
    let pods = cluster.api::<Pod>("shop");
    let image = |d: &Deployment| {
        d.spec.template.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    };

    let scaled = k8s_ok(k, &["scale", "deploy/web", "-n", "shop", "--replicas", "3"]).await;
    assert!(scaled.contains("scaled from 2 to 3"), "{scaled}");
    assert_eq!(deployments.get("web").await.unwrap().spec.replicas, Some(3));

    let restarted = k8s_ok(
        k,
        &["restart", "deployment/web", "-n", "shop", "--wait", "30s"],
    )
    .await;
    assert!(restarted.contains("restarted at"), "{restarted}");
    assert!(restarted.contains("successfully rolled out"), "{restarted}");
    let web = deployments.get("web").await.unwrap();
    let annotations = web.spec.template.metadata.unwrap().annotations.unwrap();
    assert!(annotations.contains_key(dr_k8s::RESTARTED_AT));

    // A new image, then back.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({ "spec": { "template": { "spec": {
                "containers": [{ "name": "main", "image": "nginx:1.28" }]
            }}}})),
        )
        .await
        .unwrap();
    let status = k8s_ok(
        k,
        &["status", "deploy/web", "-n", "shop", "--timeout", "30s"],
    )
    .await;
    assert!(status.contains("revision 3"), "{status}");
    let undone = k8s_ok(k, &["undo", "deploy/web", "-n", "shop"]).await;
    assert!(
        undone.contains("rolled back from revision 3 to the template of revision 2"),
        "{undone}"
    );
    assert_eq!(image(&deployments.get("web").await.unwrap()), "nginx:1.27");
    let json: Value = serde_json::from_slice(
        &k8s(
            k,
            &[
                "undo",
                "deploy/web",
                "-n",
                "shop",
                "--to-revision",
                "1",
                "--json",
            ],
        )
        .await
        .stdout,
    )
    .unwrap();
    assert_eq!(json["to_revision"], 1, "{json}");

    // Fenced: no pod left, and the count to scale back to.
    let fenced = k8s_ok(k, &["fence", "deploy/web", "-n", "shop"]).await;
    assert!(
        fenced.contains("scaled from 3 to 0") && fenced.contains("--replicas 3"),
        "{fenced}"
    );
    let selected = ListParams::default().labels("app=web");
    assert!(pods.list(&selected).await.unwrap().items.is_empty());
    k8s_ok(k, &["scale", "deploy/web", "-n", "shop", "--replicas", "3"]).await;
    let status = k8s_ok(k, &["status", "deploy/web", "-n", "shop"]).await;
    assert!(status.contains("3 of 3 updated, 3 available"), "{status}");
}

#[tokio::test]
async fn k8s_steps_that_cannot_be_done_say_why() {
    let cluster = Cluster::start("").await;
    let k = cluster.kubeconfig.as_path();
    let output = k8s(
        k,
        &[
            "scale",
            "deploy/web",
            "--context",
            "dr-cluster",
            "--replicas",
            "1",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("has no context \"dr-cluster\""),
        "{}",
        text(&output)
    );
    let output = k8s(k, &["scale", "pod/web", "--replicas", "1"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("not a kind that scales"),
        "{}",
        text(&output)
    );
    // The context's namespace is `default`, which has no such Deployment.
    let output = k8s(k, &["scale", "deploy/web", "--replicas", "1"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("404"), "{}", text(&output));
    // A StatefulSet's rollout is not undone here.
    let output = k8s(k, &["undo", "sts/db", "-n", "shop"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("only a Deployment"),
        "{}",
        text(&output)
    );

    // KUBECONFIG, as kubectl reads it, when --kubeconfig names none.
    let output = tokio::process::Command::new(BIN)
        .args(["k8s", "status", "deploy/web", "-n", "shop"])
        .env("KUBECONFIG", k)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
}

/// `drkit_agent_lease_held` and the successful backups of `agent`.
async fn lease_and_backups(agent: &Agent) -> (Option<f64>, f64) {
    let scrape = agent.scrape().await;
    let backups = value(
        &scrape,
        "drkit_job_runs_total",
        &[
            ("component", COMPONENT),
            ("job", "backup"),
            ("result", "success"),
        ],
    )
    .unwrap_or(0.0);
    (value(&scrape, "drkit_agent_lease_held", &[]), backups)
}

#[tokio::test]
async fn agents_run_jobs_only_while_they_hold_the_lease() {
    let cluster = Cluster::start("").await;
    let config = std::fs::read_to_string(&cluster.setup.config).unwrap();
    std::fs::write(
        &cluster.setup.config,
        format!(
            "{config}\n[[component.schedule]]\njob = \"backup\"\ncron = \"*/2 * * * * *\"\n\n\
             [agent]\nlisten = \"127.0.0.1:0\"\nprune = {{ cron = \"0 4 * * 0\" }}\n\
             shutdown_grace = \"10s\"\n\n\
             [agent.lease]\nkubeconfig = \"{}\"\ncontext = \"test\"\nnamespace = \"default\"\n\
             name = \"drkit-agent\"\nduration = \"3s\"\n",
            cluster.kubeconfig.display()
        ),
    )
    .unwrap();
    let within = std::time::Duration::from_secs(30);
    let first = Agent::start(&cluster.setup, "first").await;
    dr_testkit::eventually(
        "the first agent holding the lease, backing up",
        within,
        || async {
            let (held, backups) = lease_and_backups(&first).await;
            (held == Some(1.0) && backups >= 1.0).then_some(())
        },
    )
    .await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.client.clone(), "default");
    let holder = leases
        .get("drkit-agent")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert!(holder.is_some_and(|h| !h.is_empty()));

    let second = Agent::start(&cluster.setup, "second").await;
    // Three renewals of the first, three scheduled backups the second stands by for.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (held, backups) = lease_and_backups(&second).await;
    assert_eq!(held, Some(0.0), "{}", second.log());
    assert_eq!(backups, 0.0, "{}", second.log());
    assert!(
        second.log().contains("another agent holds the lease"),
        "{}",
        second.log()
    );

    // The first stops and gives the lease up; the second takes over.
    let (code, log) = first.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("released the agent's lease"), "{log}");
    dr_testkit::eventually("the second agent taking over", within, || async {
        let (held, backups) = lease_and_backups(&second).await;
        (held == Some(1.0) && backups >= 1.0).then_some(())
    })
    .await;
    let (code, log) = second.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test]
async fn a_node_drained_logs_read_and_manifests_applied() {
    let cluster = Cluster::start("").await;
    let k = cluster.kubeconfig.as_path();
    // A node for the Deployment's pods to go to, then one to drain them to.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(cluster.client.clone());
    for name in ["n1", "n2"] {
        create(
            nodes.clone(),
            json!({ "metadata": { "name": name },
                "status": { "conditions": [{ "type": "Ready", "status": "True" }] } }),
        )
        .await;
    }
    cluster.deployment("shop", "sfu", 2).await;
    let pods = cluster.api::<Pod>("shop");
    let on = |node: &'static str| {
        let pods = pods.clone();
        async move {
            pods.list(
                &ListParams::default()
                    .labels("app=sfu")
                    .fields(&format!("spec.nodeName={node}")),
            )
            .await
            .unwrap()
            .items
            .len()
        }
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while on("n1").await + on("n2").await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pods never scheduled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    k8s_ok(k, &["cordon", "n2"]).await;
    assert!(
        k8s_ok(k, &["cordon", "n2"])
            .await
            .contains("already cordoned")
    );
    k8s_ok(k, &["uncordon", "n2"]).await;
    let drained = k8s_ok(k, &["drain", "n1", "--timeout", "20s"]).await;
    assert!(drained.contains("node n1 on test: drained"), "{drained}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while on("n2").await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pods never moved"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(on("n1").await, 0);
    let err = k8s(k, &["drain", "n9"]).await;
    assert_eq!(err.status.code(), Some(1), "{}", text(&err));
    assert!(text(&err).contains("404"), "{}", text(&err));

    // The logs of the pods, as the RCA reads them.
    let pod = pods
        .list(&ListParams::default().labels("app=sfu"))
        .await
        .unwrap()
        .items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    cluster
        .server
        .append_log("shop", &pod, "main", "room standup: participant left")
        .unwrap();
    let logs = k8s_ok(k, &["logs", "-n", "shop", "-l", "app=sfu", "--tail", "1"]).await;
    assert!(
        logs.contains(&format!("{pod} ")) && logs.contains("participant left"),
        "{logs}"
    );

    // Manifests applied server-side.
    let manifest = cluster.setup.dir.path().join("dr.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: dr-switch, namespace: shop }\ndata: { region: dr }\n",
    )
    .unwrap();
    let applied = k8s_ok(k, &["apply", "-f", manifest.to_str().unwrap()]).await;
    assert!(
        applied.contains("configmaps shop/dr-switch: applied"),
        "{applied}"
    );
    let maps = cluster.api::<ConfigMap>("shop");
    assert_eq!(
        maps.get("dr-switch").await.unwrap().data.unwrap()["region"],
        "dr"
    );
}
