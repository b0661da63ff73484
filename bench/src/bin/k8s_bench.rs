//! `k8s_bench`: the drkit side of `scripts/bench k8s` (see BENCHMARKS.md).
//!
//! ```text
//! k8s_bench serve   --dir <dir>
//! k8s_bench seed    --kubeconfig <file> --namespace <ns> --objects <n>
//! k8s_bench backup  --kubeconfig <file> --namespace <ns> --repo <dir>
//! k8s_bench restore --kubeconfig <file> --repo <dir>
//! k8s_bench count   --kubeconfig <file> --namespace <ns>
//! ```
//!
//! - `serve` starts dr-k8s-testkit's API server on loopback (its
//!   controllers off: every object is one the benchmark made), writes
//!   `<dir>/kubeconfig` (context `test`), prints `ready`, and serves until
//!   killed.
//! - `seed` creates the namespace and `--objects` objects in it, of mixed
//!   kinds in fixed proportions (config maps, Secrets, Services, service
//!   accounts, Deployments, StatefulSets, disruption budgets, network
//!   policies), sixteen requests at once.
//! - `backup` takes a [`ResourceBackup`] of the namespace (Secrets
//!   included) into a repository on disk, and prints the number of objects
//!   stored.
//! - `restore` restores the latest snapshot with a [`ResourceRestore`] and
//!   fails unless every object was created; it prints how many were.
//! - `count` prints the objects of each benchmark kind in the namespace,
//!   `<kind> <count>`, and their total.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use dr_core::{Backup, BackupRequest, RecoveryTarget};
use dr_k8s::{Cluster, Outcome, ResourceBackup, ResourceFilter, ResourceRestore};
use dr_k8s_testkit::{KubeApiServer, KubeApiServerOptions};
use dr_storage::InitOptions;
use drkit_bench::{AnyResult, RepoArgs, secs};
use futures_util::{StreamExt, stream};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};

/// The kinds seeded, with their share of every 20 objects, as `kubectl get`
/// names them.
const KINDS: [(&str, usize); 8] = [
    ("configmaps", 6),
    ("secrets", 3),
    ("services", 3),
    ("serviceaccounts", 2),
    ("deployments", 2),
    ("statefulsets", 2),
    ("poddisruptionbudgets", 1),
    ("networkpolicies", 1),
];
/// The benchmark's component in the repository.
const COMPONENT: &str = "kubernetes/bench";

/// drkit's side of `scripts/bench k8s`.
#[derive(Parser)]
#[command(name = "k8s_bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves a test API server until killed.
    Serve {
        /// Where its kubeconfig is written.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Creates the namespace and its objects.
    Seed {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        objects: usize,
    },
    /// Backs the namespace up into the repository.
    Backup {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        namespace: String,
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Restores the latest backup.
    Restore {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Counts the namespace's objects of the seeded kinds.
    Count {
        #[arg(long)]
        kubeconfig: PathBuf,
        #[arg(long)]
        namespace: String,
    },
}

fn main() -> ExitCode {
    drkit_bench::main(|cli: Cli| {
        let runtime = drkit_bench::runtime()?;
        match cli.command {
            Command::Serve { dir } => runtime.block_on(serve(dir)),
            Command::Seed {
                kubeconfig,
                namespace,
                objects,
            } => runtime.block_on(seed(kubeconfig, namespace, objects)),
            Command::Backup {
                kubeconfig,
                namespace,
                repo,
            } => runtime.block_on(backup(kubeconfig, namespace, repo)),
            Command::Restore { kubeconfig, repo } => runtime.block_on(restore(kubeconfig, repo)),
            Command::Count {
                kubeconfig,
                namespace,
            } => runtime.block_on(count(kubeconfig, namespace)),
        }
    })
}

async fn serve(dir: PathBuf) -> AnyResult<()> {
    let server =
        KubeApiServer::start_with(KubeApiServerOptions::default().controllers(false)).await?;
    std::fs::create_dir_all(&dir)?;
    server.kubeconfig(&dir).await?;
    println!("ready {}", server.url());
    std::future::pending::<()>().await;
    Ok(())
}

async fn cluster(kubeconfig: &PathBuf) -> AnyResult<Cluster> {
    Ok(Cluster::from_kubeconfig(kubeconfig, Some("test")).await?)
}

/// The `index`th object of `kind` in `namespace`.
fn object(kind: &str, namespace: &str, index: usize) -> Value {
    let name = format!("{}-{index:05}", kind.trim_end_matches('s'));
    let labels = json!({ "app": format!("app-{}", index % 50), "bench": "k8s" });
    let metadata = json!({ "name": name, "namespace": namespace, "labels": labels });
    let template = json!({
        "metadata": { "labels": { "app": name } },
        "spec": { "containers": [{ "name": "main", "image": "nginx:1.27",
            "env": [{ "name": "INDEX", "value": index.to_string() }],
            "ports": [{ "containerPort": 8080 }] }] }
    });
    match kind {
        "configmaps" => json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
            "data": { "settings.yaml": format!("index: {index}\nreplicas: 3\nregion: eu-west-1\n{}", "x".repeat(400)) } }),
        "secrets" => json!({ "apiVersion": "v1", "kind": "Secret", "metadata": metadata,
            "type": "Opaque", "data": { "password": "c2VjcmV0LXBhc3N3b3Jk" } }),
        "services" => json!({ "apiVersion": "v1", "kind": "Service", "metadata": metadata,
            "spec": { "selector": { "app": name }, "ports": [{ "port": 80, "targetPort": 8080 }] } }),
        "serviceaccounts" => {
            json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata })
        }
        "deployments" => {
            json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
            "spec": { "replicas": 2, "selector": { "matchLabels": { "app": name } }, "template": template } })
        }
        "statefulsets" => {
            json!({ "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata,
            "spec": { "replicas": 1, "serviceName": name, "selector": { "matchLabels": { "app": name } }, "template": template } })
        }
        "poddisruptionbudgets" => {
            json!({ "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": metadata,
            "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": name } } } })
        }
        _ => {
            json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata,
            "spec": { "podSelector": { "matchLabels": { "app": name } }, "policyTypes": ["Ingress"] } })
        }
    }
}

async fn seed(kubeconfig: PathBuf, namespace: String, objects: usize) -> AnyResult<()> {
    let started = Instant::now();
    let cluster = cluster(&kubeconfig).await?;
    cluster
        .create_namespace(&namespace, &Default::default())
        .await?;
    let discovered = cluster.discover().await?;
    let mut work = Vec::with_capacity(objects);
    let mut index = 0;
    'rounds: loop {
        for (kind, share) in KINDS {
            for _ in 0..share {
                if work.len() == objects {
                    break 'rounds;
                }
                let resource = discovered
                    .find(kind)
                    .ok_or_else(|| format!("the server does not serve {kind}"))?;
                let api: Api<DynamicObject> =
                    Api::namespaced_with(cluster.client().clone(), &namespace, &resource.api);
                let object: DynamicObject =
                    serde_json::from_value(object(kind, &namespace, index))?;
                work.push((api, object));
                index += 1;
            }
        }
    }
    let params = PostParams::default();
    let created: Vec<kube::Result<DynamicObject>> = stream::iter(
        work.iter()
            .map(|(api, object)| api.create(&params, object))
            .collect::<Vec<_>>(),
    )
    .buffer_unordered(16)
    .collect()
    .await;
    for result in created {
        result?;
    }
    eprintln!("seeded {objects} objects in {:.2} s", secs(started));
    Ok(())
}

async fn backup(kubeconfig: PathBuf, namespace: String, repo: RepoArgs) -> AnyResult<()> {
    let cluster = cluster(&kubeconfig).await?;
    let repo = repo.open_or_create(InitOptions::encrypted).await?;
    let started = Instant::now();
    let backup = ResourceBackup::new(
        cluster,
        COMPONENT.parse()?,
        ResourceFilter::namespaces([namespace]).secrets(true),
    );
    let report = backup.backup(BackupRequest::new(&repo)).await?;
    let details = report
        .manifest
        .details::<dr_k8s::ResourceBackupDetails>()?
        .ok_or("the snapshot has no resource details")?;
    eprintln!("backed up in {:.2} s", secs(started));
    println!("{}", details.objects);
    Ok(())
}

async fn restore(kubeconfig: PathBuf, repo: RepoArgs) -> AnyResult<()> {
    let cluster = cluster(&kubeconfig).await?;
    let repo = repo.open().await?;
    let started = Instant::now();
    let restored = ResourceRestore::new(cluster, COMPONENT.parse()?)
        .restore_objects(&repo, &RecoveryTarget::Latest)
        .await?;
    if let Some(failure) = restored.failures().next() {
        return Err(format!("{failure}").into());
    }
    let created = restored.count(&Outcome::Created);
    if created != restored.objects.len() {
        return Err(format!(
            "{} of {} objects were created",
            created,
            restored.objects.len()
        )
        .into());
    }
    eprintln!("restored in {:.2} s", secs(started));
    println!("{created}");
    Ok(())
}

async fn count(kubeconfig: PathBuf, namespace: String) -> AnyResult<()> {
    let cluster = cluster(&kubeconfig).await?;
    let discovered = cluster.discover().await?;
    let mut total = 0;
    for (kind, _) in KINDS {
        let resource = discovered
            .find(kind)
            .ok_or_else(|| format!("the server does not serve {kind}"))?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(cluster.client().clone(), &namespace, &resource.api);
        let n = api.list(&ListParams::default()).await?.items.len();
        println!("{kind} {n}");
        total += n;
    }
    println!("total {total}");
    Ok(())
}
