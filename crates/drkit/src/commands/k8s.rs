//! `drkit k8s`: the runbooks' `kubectl` steps as dr-k8s calls, needing no
//! config file: scale (saying the count it had), restart and wait for the
//! rollout, wait for a rollout, undo one, fence a workload (scaled to zero,
//! its pods gone); drain, cordon and uncordon a node; read the logs of an
//! incident's window; apply manifests server-side.

use std::path::PathBuf;
use std::time::Duration;

use dr_k8s::{Cluster, DrainOptions, LogQuery, RolloutStatus, Workload};
use serde_json::json;

use crate::failure::{Failure, Outcome};
use crate::output::Output;

/// Which cluster and namespace a `drkit k8s` command acts on.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClusterArgs {
    /// The kubeconfig. Without it, as kubectl: $KUBECONFIG (one file), else
    /// ~/.kube/config if there is one, else the cluster drkit runs in.
    #[arg(long, value_name = "FILE", global = true)]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context (the DR cluster's, say); default its
    /// current context.
    #[arg(long, global = true)]
    pub(crate) context: Option<String>,
    /// The namespace; default the context's.
    #[arg(long, short = 'n', global = true)]
    pub(crate) namespace: Option<String>,
}

/// One `drkit k8s` step.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum K8sCommand {
    /// Scales a workload (`deployment/web`, `sts/db`, `rs/web-5d4f`) through
    /// its scale subresource, as kubectl scale, and prints the count it
    /// had: what to scale back to.
    Scale {
        /// The workload, as kubectl names it.
        workload: String,
        /// The new count.
        #[arg(long)]
        replicas: i32,
    },
    /// Restarts a Deployment's or StatefulSet's pods as kubectl rollout
    /// restart does, then waits for the rollout as kubectl rollout status.
    Restart {
        /// The workload.
        workload: String,
        /// How long to wait for the rollout.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        wait: Duration,
    },
    /// Waits for a rollout to finish, as kubectl rollout status.
    Status {
        /// The workload.
        workload: String,
        /// How long to wait.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Undoes a Deployment's rollout, as kubectl rollout undo: back to the
    /// previous revision, or --to-revision.
    Undo {
        /// The Deployment.
        workload: String,
        /// The revision to go back to.
        #[arg(long, value_name = "N")]
        to_revision: Option<i64>,
    },
    /// Fences a workload: scales it to zero and waits until its pods are
    /// gone; prints the count to scale it back to.
    Fence {
        /// The workload.
        workload: String,
        /// How long to wait for its pods to be gone.
        #[arg(long, default_value = "1m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Drains a node as kubectl drain does: cordons it, evicts its pods
    /// (a disruption budget's refusal waited out), and waits until they
    /// are gone. DaemonSet and mirror pods stay.
    Drain {
        /// The node.
        node: String,
        /// How long the whole drain may take.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
        /// Evicts pods with emptyDir volumes, whose data goes.
        #[arg(long)]
        delete_emptydir_data: bool,
        /// Evicts pods that no controller replaces.
        #[arg(long)]
        force: bool,
        /// Refuses the node where it runs DaemonSet pods (by default they
        /// stay, as with kubectl's --ignore-daemonsets).
        #[arg(long)]
        refuse_daemonsets: bool,
        /// The grace period each pod gets; default its own.
        #[arg(long, value_name = "SECONDS")]
        grace_period: Option<u32>,
    },
    /// Marks a node unschedulable, as kubectl cordon.
    Cordon {
        /// The node.
        node: String,
    },
    /// Marks a node schedulable again, as kubectl uncordon.
    Uncordon {
        /// The node.
        node: String,
    },
    /// Prints the logs of the pods a label selector selects (or of one
    /// pod), each line with its time: a window of the incident, or the
    /// last lines.
    Logs {
        /// The pods' label selector (app=livekit).
        #[arg(long, short = 'l', required_unless_present = "pod")]
        selector: Option<String>,
        /// One pod, by name.
        #[arg(long, conflicts_with = "selector")]
        pod: Option<String>,
        /// The container, where pods have several.
        #[arg(long, short = 'c')]
        container: Option<String>,
        /// Lines written at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<jiff::Timestamp>,
        /// Lines written before this time (RFC 3339).
        #[arg(long)]
        until: Option<jiff::Timestamp>,
        /// The last N lines (of the window).
        #[arg(long, value_name = "N")]
        tail: Option<i64>,
    },
    /// Applies manifests (YAML, several documents) with server-side apply
    /// as drkit, as kubectl apply --server-side --force-conflicts.
    Apply {
        /// The manifest file.
        #[arg(long, short = 'f', value_name = "FILE")]
        file: PathBuf,
    },
}

/// `--wait 5m`, `--timeout 90s`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<dr_core::Rto>()
        .map(dr_core::Rto::as_duration)
        .map_err(|e| format!("{text:?}: {e}; expected a duration such as \"90s\" or \"5m\""))
}

/// Runs `command` on the cluster `args` names.
pub(crate) async fn run(args: &ClusterArgs, command: &K8sCommand, out: &Output) -> Outcome {
    let kubeconfig = match &args.kubeconfig {
        Some(path) => Some(path.clone()),
        None => crate::cluster::default_kubeconfig()?,
    };
    let cluster = crate::cluster::connect(kubeconfig.as_deref(), args.context.as_deref()).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.default_namespace().to_owned());
    let workload = |text: &str| Workload::parse(text, namespace.clone()).map_err(Failure::Usage);
    let failed = |what: String| move |e: dr_k8s::Error| Failure::of(what, &e);
    match command {
        K8sCommand::Drain {
            node,
            timeout,
            delete_emptydir_data,
            force,
            refuse_daemonsets,
            grace_period,
        } => {
            let options = DrainOptions {
                timeout: *timeout,
                ignore_daemonsets: !refuse_daemonsets,
                delete_emptydir_data: *delete_emptydir_data,
                force: *force,
                grace_period: *grace_period,
                ..DrainOptions::default()
            };
            drain(&cluster, node, &options, out).await
        }
        K8sCommand::Cordon { node } | K8sCommand::Uncordon { node } => {
            let cordon = matches!(command, K8sCommand::Cordon { .. });
            let changed = if cordon {
                cluster.cordon(node).await
            } else {
                cluster.uncordon(node).await
            };
            let verb = if cordon { "cordoned" } else { "uncordoned" };
            changed
                .map_err(|e| Failure::of(format_args!("node {node} on {}", cluster.name()), &e))
                .map(|changed| {
                    if changed {
                        out.line(format_args!("node {node} on {}: {verb}", cluster.name()));
                    } else {
                        out.line(format_args!(
                            "node {node} on {}: already {verb}",
                            cluster.name()
                        ));
                    }
                })
        }
        K8sCommand::Logs {
            selector,
            pod,
            container,
            since,
            until,
            tail,
        } => {
            let mut query = match (pod, selector) {
                (Some(pod), _) => LogQuery::pod(&namespace, pod),
                (None, selector) => {
                    LogQuery::labels(&namespace, selector.clone().unwrap_or_default())
                }
            }
            .between(*since, *until);
            if let Some(container) = container {
                query = query.container(container);
            }
            if let Some(tail) = tail {
                query = query.tail(*tail);
            }
            logs(&cluster, &query, out).await
        }
        K8sCommand::Apply { file } => apply(&cluster, file, out).await,
        K8sCommand::Scale {
            workload: w,
            replicas,
        } => {
            let w = workload(w)?;
            let scaled = cluster
                .scale(&w, *replicas)
                .await
                .map_err(failed(format!("scaling {w} on {}", cluster.name())))?;
            if out.json {
                return out.json(&json!({
                    "workload": kind_name(&w),
                    "namespace": w.namespace,
                    "previous": scaled.previous,
                    "replicas": scaled.replicas,
                }));
            }
            out.line(format_args!(
                "{w} on {}: scaled from {} to {}",
                cluster.name(),
                scaled.previous,
                scaled.replicas
            ));
            Ok(())
        }
        K8sCommand::Restart { workload: w, wait } => {
            let w = workload(w)?;
            let restarted = cluster
                .rollout_restart(&w)
                .await
                .map_err(failed(format!("restarting {w} on {}", cluster.name())))?;
            out.line(format_args!(
                "{w} on {}: restarted at {}",
                cluster.name(),
                restarted.at
            ));
            let status = rollout(&cluster, &w, *wait).await?;
            print_status(&status, out)
        }
        K8sCommand::Status {
            workload: w,
            timeout,
        } => {
            let status = rollout(&cluster, &workload(w)?, *timeout).await?;
            print_status(&status, out)
        }
        K8sCommand::Undo {
            workload: w,
            to_revision,
        } => {
            let w = workload(w)?;
            let undone = cluster
                .rollout_undo(&w, *to_revision)
                .await
                .map_err(failed(format!(
                    "undoing the rollout of {w} on {}",
                    cluster.name()
                )))?;
            if out.json {
                return out.json(&json!({
                    "workload": kind_name(&w),
                    "namespace": w.namespace,
                    "from_revision": undone.from_revision,
                    "to_revision": undone.to_revision,
                    "skipped": undone.skipped,
                }));
            }
            if undone.skipped {
                out.line(format_args!(
                    "{w} on {}: already at the template of revision {}; nothing sent",
                    cluster.name(),
                    undone.to_revision
                ));
            } else {
                out.line(format_args!(
                    "{w} on {}: rolled back from revision {} to the template of revision {}",
                    cluster.name(),
                    undone.from_revision,
                    undone.to_revision
                ));
            }
            Ok(())
        }
        K8sCommand::Fence {
            workload: w,
            timeout,
        } => {
            let w = workload(w)?;
            let name = kind_name(&w);
            let scaled = cluster
                .fence(&w, *timeout)
                .await
                .map_err(failed(format!("fencing {w} on {}", cluster.name())))?;
            let previous = scaled.previous;
            if out.json {
                return out.json(&json!({
                    "workload": name,
                    "namespace": w.namespace,
                    "previous": previous,
                    "replicas": 0,
                }));
            }
            out.line(format_args!(
                "{w} on {}: fenced, scaled from {previous} to 0 and its pods gone; \
                 scale it back with: drkit k8s scale {name} -n {} --replicas {previous}",
                cluster.name(),
                w.namespace
            ));
            Ok(())
        }
    }
}

async fn drain(cluster: &Cluster, node: &str, options: &DrainOptions, out: &Output) -> Outcome {
    let drained = cluster.drain(node, options).await.map_err(|e| {
        Failure::of(
            format_args!("draining node {node} on {}", cluster.name()),
            &e,
        )
    })?;
    if out.json {
        return out.json(&json!({
            "node": drained.node,
            "evicted": drained.evicted,
            "left": drained.left.iter().map(|(pod, why)| json!({ "pod": pod, "why": why })).collect::<Vec<_>>(),
            "refusals": drained.refusals,
            "seconds": drained.timeline.elapsed().as_secs_f64(),
        }));
    }
    for pod in &drained.evicted {
        out.line(format_args!("evicted {pod}"));
    }
    for (pod, why) in &drained.left {
        out.line(format_args!("left {pod}: {why}"));
    }
    out.line(format_args!(
        "node {node} on {}: drained in {:.1} s ({} pods evicted, {} left, {} evictions refused by a \
         disruption budget first); uncordon it with: drkit k8s uncordon {node}",
        cluster.name(),
        drained.timeline.elapsed().as_secs_f64(),
        drained.evicted.len(),
        drained.left.len(),
        drained.refusals
    ));
    Ok(())
}

async fn logs(cluster: &Cluster, query: &LogQuery, out: &Output) -> Outcome {
    let logs = cluster
        .logs(query)
        .await
        .map_err(|e| Failure::of(format_args!("reading logs on {}", cluster.name()), &e))?;
    if out.json {
        return out.json(&json!(logs
            .iter()
            .map(|l| json!({
                "pod": l.pod,
                "container": l.container,
                "lines": l.lines.iter().map(|line| json!({ "at": line.at.to_string(), "text": line.text })).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>()));
    }
    for log in &logs {
        for line in &log.lines {
            out.line(format_args!("{} {} {}", log.pod, line.at, line.text));
        }
    }
    Ok(())
}

async fn apply(cluster: &Cluster, file: &std::path::Path, out: &Output) -> Outcome {
    let text = tokio::fs::read_to_string(file)
        .await
        .map_err(|e| Failure::Usage(format!("reading {}: {e}", file.display())))?;
    let applied = cluster.apply_yaml(&text).await.map_err(|e| {
        Failure::of(
            format_args!("applying {} on {}", file.display(), cluster.name()),
            &e,
        )
    })?;
    if out.json {
        return out.json(&json!(
            applied
                .iter()
                .map(|a| json!({ "object": a.object, "resource_version": a.resource_version }))
                .collect::<Vec<_>>()
        ));
    }
    for a in &applied {
        out.line(format_args!("{}: applied", a.object));
    }
    Ok(())
}

/// `deployment/web`.
fn kind_name(workload: &Workload) -> String {
    format!("{}/{}", workload.kind.name(), workload.name)
}

/// Waits for `workload`'s rollout.
async fn rollout(
    cluster: &Cluster,
    workload: &Workload,
    timeout: Duration,
) -> Result<RolloutStatus, Failure> {
    cluster
        .rollout_status(workload, timeout)
        .await
        .map_err(|e| Failure::of(format_args!("waiting on {}", cluster.name()), &e))
}

fn print_status(status: &RolloutStatus, out: &Output) -> Outcome {
    if out.json {
        return out.json(&json!({
            "workload": kind_name(&status.workload),
            "namespace": status.workload.namespace,
            "revision": status.revision,
            "replicas": status.replicas,
            "updated": status.updated,
            "available": status.available,
            "message": status.message,
            "waited_seconds": status.waited.as_secs_f64(),
        }));
    }
    out.line(format_args!(
        "{} ({} of {} updated, {} available{}; waited {:.1} s)",
        status.message,
        status.updated,
        status.replicas,
        status.available,
        status
            .revision
            .map(|r| format!(", revision {r}"))
            .unwrap_or_default(),
        status.waited.as_secs_f64()
    ));
    Ok(())
}
