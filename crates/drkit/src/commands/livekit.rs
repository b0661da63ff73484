//! `drkit restore livekit/<name>`: a LiveKit snapshot given back to the
//! SFU or its standby, with every thing's outcome, the ids and stream keys
//! assigned anew, and the recovery report.

use std::path::PathBuf;

use dr_core::{Objectives, RecoveryTarget, RestoreRequest};
use dr_livekit::{LiveKitRestore, LiveKitRestoreReport, Outcome};
use dr_storage::Repository;
use drkit::Component;
use jiff::Timestamp;
use serde_json::json;

use crate::commands::target::TargetArg;
use crate::context::Context;
use crate::failure::{Failure, Outcome as CommandOutcome};
use crate::output::Output;

/// What a LiveKit restore is asked for.
pub(crate) struct LiveKitRestoreArgs {
    pub(crate) to: TargetArg,
    /// Onto the component's standby instead of its server.
    pub(crate) standby: bool,
    pub(crate) incident_at: Option<Timestamp>,
    pub(crate) report_file: Option<PathBuf>,
    /// Where the remap of ids and stream keys is saved, as JSON.
    pub(crate) remap_file: Option<PathBuf>,
}

/// Restores, printing each thing's outcome, the remap and a summary; exit
/// 1 when a thing failed, 3 when the restore missed an objective.
pub(crate) async fn restore(
    cx: &Context,
    repo: &Repository,
    component: &Component,
    args: LiveKitRestoreArgs,
    out: &Output,
) -> CommandOutcome {
    let id = component.id();
    let target = match args.to.target() {
        Ok(RecoveryTarget::RestorePoint(_) | RecoveryTarget::Position(_)) | Err(_) => {
            return Err(Failure::Usage(format!(
                "{id} is a livekit component: a snapshot restores as it was taken; \
                 --to latest, a time or a snapshot id"
            )));
        }
        Ok(target) => target,
    };
    let server = cx.livekit(component, args.standby).await?;
    let url = server.url().to_owned();
    let restore = LiveKitRestore::new(id.clone(), server);
    let mut request = RestoreRequest::new(repo, &target, objectives(component));
    if let Some(at) = args.incident_at {
        request = request.incident_at(at);
    }
    let restored = restore
        .restore_state(request)
        .await
        .map_err(|e| Failure::of(format_args!("restoring {id} onto {url}"), &e))?;
    if let Some(path) = &args.report_file {
        crate::commands::restore::save(&restored.recovery, path)?;
    }
    if let Some(path) = &args.remap_file {
        let json = serde_json::to_vec_pretty(&restored.applied.remap)
            .map_err(|e| Failure::Failed(format!("the remap does not serialize: {e}")))?;
        std::fs::write(path, json).map_err(|e| {
            Failure::Failed(format!("writing the remap to {}: {e}", path.display()))
        })?;
    }
    print(&restored, &url, out)?;
    let failed: Vec<String> = restored
        .applied
        .failed()
        .map(|item| match &item.outcome {
            Outcome::Failed { reason } => format!("{:?} {}: {reason}", item.kind, item.name),
            _ => String::new(),
        })
        .collect();
    if !failed.is_empty() {
        return Err(Failure::Failed(format!(
            "{} of {} things of {id} could not be given back to {url}: {}",
            failed.len(),
            restored.applied.items.len(),
            failed
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    crate::commands::restore::verdict(&restored.recovery)
}

fn objectives(component: &Component) -> Objectives {
    component.objectives()
}

fn print(restored: &LiveKitRestoreReport, url: &str, out: &Output) -> CommandOutcome {
    let applied = &restored.applied;
    let outcome_name = |outcome: &Outcome| match outcome {
        Outcome::Created => "created",
        Outcome::Updated => "updated",
        Outcome::Unchanged => "unchanged",
        Outcome::Failed { .. } => "failed",
    };
    let mut summary: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for item in &applied.items {
        *summary.entry(outcome_name(&item.outcome)).or_default() += 1;
    }
    if out.json {
        return out.json(&json!({
            "snapshot": restored.snapshot.to_string(),
            "server": url,
            "method": restored.method,
            "recovered_to": restored.recovered_to.to_string(),
            "items": applied.items,
            "remap": applied.remap.entries,
            "summary": summary,
            "participants_to_rejoin": restored.rejoin.pending(),
            "recovery": restored.recovery,
        }));
    }
    for item in &applied.items {
        match &item.outcome {
            Outcome::Failed { reason } => {
                out.line(format_args!(
                    "{:?} {}: failed: {reason}",
                    item.kind, item.name
                ));
            }
            other => out.line(format_args!(
                "{:?} {}: {}",
                item.kind,
                item.name,
                outcome_name(other)
            )),
        }
    }
    for moved in &applied.remap.entries {
        match (&moved.old_stream_key, &moved.new_stream_key) {
            (Some(old), Some(new)) => out.line(format_args!(
                "remapped {:?} {}: {} -> {} (stream key {old} -> {new})",
                moved.kind, moved.name, moved.old_id, moved.new_id
            )),
            _ => out.line(format_args!(
                "remapped {:?} {}: {} -> {}",
                moved.kind, moved.name, moved.old_id, moved.new_id
            )),
        }
    }
    out.line(format_args!(
        "restored snapshot {} (the state at {}) onto {url} through its API: {}; \
         {} participants to set again as they rejoin",
        restored.snapshot,
        restored.recovered_to,
        summary
            .iter()
            .map(|(name, n)| format!("{n} {name}"))
            .collect::<Vec<_>>()
            .join(", "),
        restored.rejoin.pending()
    ));
    out.line(&restored.recovery);
    Ok(())
}

/// `drkit failover livekit/<name>`: the SFU's standby takes over, the
/// latest snapshot restored onto it, clients pointed at it by the
/// `rewire_command`, under the repository's failover lease.
pub(crate) async fn failover(
    cx: &Context,
    repo: &Repository,
    component: &Component,
    args: &crate::commands::failover::FailoverArgs,
    out: &Output,
) -> CommandOutcome {
    use dr_core::{FailoverHooks, FailoverMode, FailoverRequest, LossLimit, Rewire};
    let id = component.id();
    let settings = component
        .livekit()
        .ok_or_else(|| Failure::Usage(format!("{id} is not a livekit component")))?;
    if args.known_dead {
        return Err(Failure::Usage(
            "--known-dead: a LiveKit failover fences nothing (an SFU holds no data that \
             diverges), so there is nothing to know dead"
                .into(),
        ));
    }
    let primary = cx.livekit(component, false).await?;
    let standby = cx.livekit(component, true).await?;
    let failover = dr_livekit::LiveKitFailover::new(
        id.clone(),
        primary,
        standby,
        std::sync::Arc::new(repo.clone()),
        component.objectives(),
    );
    let mode = if args.switchover {
        FailoverMode::Switchover
    } else {
        FailoverMode::Failover
    };
    let mut request = FailoverRequest::new(
        mode,
        component.objectives(),
        LossLimit::Within(component.objectives().rpo),
    );
    if args.force {
        request = request.force();
    }
    if let Some(to) = &args.to {
        request = request.to(to.clone());
    }
    if args.dry_run {
        let plan = dr_core::dry_run(&failover, &request)
            .await
            .map_err(|e| Failure::Failed(format!("{e}")))?;
        if out.json {
            return out.json(&plan);
        }
        out.line(format_args!("{plan}"));
        out.line("(dry run: nothing was done)");
        return Ok(());
    }
    let rewire = settings.rewire_command().map(|words| RewireCommand {
        words: words.to_vec(),
    });
    let holder = crate::commands::failover::holder("drkit");
    let lease: &dyn dr_core::FailoverLease = repo;
    let hooks = FailoverHooks {
        lease: Some((lease, holder.as_str(), std::time::Duration::from_secs(120))),
        fence: None,
        rewire: rewire.as_ref().map(|r| r as &dyn Rewire),
    };
    let outcome = dr_core::execute(&failover, &request, hooks)
        .await
        .map_err(|e| Failure::Failed(format!("{e}")))?;
    let restored = failover.last_restore();
    if out.json {
        out.json(&json!({
            "plan": outcome.plan,
            "report": outcome.report,
            "remap": restored.as_ref().map(|r| &r.applied.remap.entries),
            "items": restored.as_ref().map(|r| &r.applied.items),
        }))?;
    } else {
        out.line(format_args!("{}", outcome.plan));
        if let Some(restored) = &restored {
            print(restored, &outcome.plan.promote.name, out)?;
        }
        if rewire.is_none() {
            out.line(format_args!(
                "no rewire_command: point clients at {} yourself",
                outcome.plan.promote.name
            ));
        }
        out.line(format_args!("{}", outcome.report));
    }
    crate::commands::restore::verdict(&outcome.report)
}

/// The `rewire_command`: clients pointed at the promoted server, its words
/// with `{url}` replaced by its URL; it must exit 0.
struct RewireCommand {
    words: Vec<String>,
}

#[dr_core::async_trait]
impl dr_core::Rewire for RewireCommand {
    async fn rewire(
        &self,
        component: &dr_core::ComponentId,
        primary: &dr_core::Member,
    ) -> dr_core::Result<()> {
        let words: Vec<String> = self
            .words
            .iter()
            .map(|w| w.replace("{url}", &primary.name))
            .collect();
        let output = tokio::process::Command::new(&words[0])
            .args(&words[1..])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| {
                dr_core::Error::io(format!("running the rewire command {}", words[0]), e)
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(dr_core::Error::Refused {
            operation: format!("pointing {component}'s clients at {}", primary.name),
            reason: format!(
                "the rewire command {} ended {}: {}",
                words.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

/// `drkit restore livekit/<name> --redis-keys`: LiveKit's durable keys
/// (`dr_livekit::REDIS_DURABLE_KEYS`) written back into its Redis from the
/// latest snapshot of the component's `redis_component`, replacing what is
/// there: the same ids and stream keys. Rooms and participants are left to
/// the restore through the API.
pub(crate) async fn restore_redis_keys(
    cx: &Context,
    repo: &Repository,
    component: &Component,
    to: &TargetArg,
    incident_at: Option<Timestamp>,
    report_file: Option<&std::path::Path>,
    out: &Output,
) -> CommandOutcome {
    let id = component.id();
    let settings = component
        .livekit()
        .ok_or_else(|| Failure::Usage(format!("{id} is not a livekit component")))?;
    let redis_id = settings.redis_component().ok_or_else(|| {
        Failure::Usage(format!(
            "--redis-keys: {id} names no redis_component in its [component.livekit]; \
             add the id of the redis component that is LiveKit's Redis"
        ))
    })?;
    let redis = cx.component(redis_id)?;
    let target = to.target().map_err(|_| {
        Failure::Usage(format!(
            "--to lsn:… is for postgres components; {redis_id} restores to latest, a time or a              snapshot id"
        ))
    })?;
    let server = cx.redis_seed(redis).await?;
    let address = server.addr();
    let keys = dr_redis::KeyPatterns::new(dr_livekit::REDIS_DURABLE_KEYS)
        .map_err(|e| Failure::Failed(format!("LiveKit's key patterns: {e}")))?;
    let restore = dr_redis::RdbRestore::new(redis.id().clone(), server)
        .only_keys(keys)
        .conflict(dr_redis::Conflict::Replace);
    let mut request = RestoreRequest::new(repo, &target, component.objectives());
    if let Some(at) = incident_at {
        request = request.incident_at(at);
    }
    let (report, counts) = restore.restore_counted(request).await.map_err(|e| {
        Failure::of(
            format_args!("restoring LiveKit's keys of {id} from {redis_id} into {address}"),
            &e,
        )
    })?;
    if let Some(path) = report_file {
        crate::commands::restore::save(&report, path)?;
    }
    if out.json {
        out.json(&json!({
            "method": dr_livekit::RestoreMethod::RedisKeys,
            "redis_component": redis_id,
            "server": address,
            "keys_written": counts.restored,
            "keys_left_out": counts.left_out,
            "expired": counts.expired,
            "recovery": report,
        }))?;
    } else {
        out.line(format_args!(
            "restored LiveKit's durable keys of {id} from {redis_id} into {address} \
             (method: redis keys, ids and stream keys as they were): {} keys written, \
             {} other keys left out (rooms and participants: restore them through the API)",
            counts.restored, counts.left_out
        ));
        out.line(&report);
    }
    crate::commands::restore::verdict(&report)
}

/// What the node-failure runbook is asked for.
pub(crate) struct NodeFailureArgs {
    pub(crate) cluster: crate::commands::k8s::ClusterArgs,
    pub(crate) selector: String,
    pub(crate) metrics: Option<String>,
    pub(crate) expect_participants: Option<u64>,
    pub(crate) timeout: std::time::Duration,
}

/// `drkit livekit node-failure`: the seed's node-failure scenario. The
/// SFU's failed pods are deleted one by one and each replacement waited
/// ready (dr-k8s), then the SFU is probed (dr-livekit) until it serves
/// and, with metrics, counts the participants expected back; every step
/// timed, the whole held against the component's RTO.
pub(crate) async fn node_failure(
    cx: &Context,
    component: &Component,
    args: NodeFailureArgs,
    out: &Output,
) -> CommandOutcome {
    use std::time::Instant;

    use dr_core::{Operation, RecoveryReport, Timeline};
    use dr_k8s::PodQuery;
    use dr_livekit::LiveKitProbe;

    let id = component.id();
    let sfu = cx.livekit(component, false).await?;
    let kubeconfig = match &args.cluster.kubeconfig {
        Some(path) => Some(path.clone()),
        None => crate::cluster::default_kubeconfig()?,
    };
    let cluster =
        crate::cluster::connect(kubeconfig.as_deref(), args.cluster.context.as_deref()).await?;
    let namespace = args
        .cluster
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.default_namespace().to_owned());
    let deadline = Instant::now() + args.timeout;
    let mut timeline = Timeline::start_now();
    let query = PodQuery::in_namespace(namespace.clone()).labels(args.selector.clone());
    let pods = cluster.pods(&query).await.map_err(|e| {
        Failure::of(
            format_args!("listing the pods {} in {namespace}", args.selector),
            &e,
        )
    })?;
    let failed: Vec<_> = pods
        .iter()
        .filter(|p| !p.ready || matches!(p.phase.as_str(), "Failed" | "Unknown"))
        .collect();
    timeline
        .record_until_now(
            format!(
                "find the failed SFU pods: {} of {} ({})",
                failed.len(),
                pods.len(),
                args.selector
            ),
            timeline.started_at(),
        )
        .map_err(|e| Failure::Failed(e.to_string()))?;
    for pod in &failed {
        let left = deadline.saturating_duration_since(Instant::now());
        let replaced = timeline
            .step_named(
                async {
                    cluster
                        .delete_pod_and_wait(&namespace, &pod.name, left)
                        .await
                        .map_err(dr_core::Error::from)
                },
                |r: &dr_k8s::Replaced| {
                    format!(
                        "delete {} (phase {}, {} restarts); {} ready",
                        r.deleted, pod.phase, pod.restarts, r.replacement
                    )
                },
            )
            .await
            .map_err(|e| Failure::of(format_args!("replacing pod {}", pod.name), &e))?;
        drop(replaced);
    }
    let mut probe = LiveKitProbe::new();
    if let Some(url) = &args.metrics {
        probe = probe.metrics_url(url.clone());
    }
    let expect = args.expect_participants;
    let health = timeline
        .step_named(
            async {
                loop {
                    let health = probe.check(&sfu).await;
                    let participants = health
                        .metrics
                        .as_ref()
                        .and_then(|m| m.as_ref().ok())
                        .and_then(|m| m.participants);
                    let back = match expect {
                        Some(n) => participants.is_some_and(|p| p >= n as f64),
                        None => true,
                    };
                    if health.is_healthy() && back {
                        return Ok::<_, dr_core::Error>(health);
                    }
                    if Instant::now() >= deadline {
                        return Err(dr_core::Error::Timeout {
                            operation: format!(
                                "waiting for {} to serve{}: {}",
                                sfu.url(),
                                expect
                                    .map(|n| format!(" with {n} participants back"))
                                    .unwrap_or_default(),
                                health
                                    .problem()
                                    .unwrap_or_else(|| format!("{participants:?} participants"))
                            ),
                            after: args.timeout,
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            },
            |health| {
                let participants = health
                    .metrics
                    .as_ref()
                    .and_then(|m| m.as_ref().ok())
                    .and_then(|m| m.participants);
                match participants {
                    Some(n) => format!("{} serves; {n} participants in its metrics", health.url),
                    None => format!("{} serves", health.url),
                }
            },
        )
        .await
        .map_err(|e| Failure::of(format_args!("recovering {id}"), &e))?;
    drop(health);
    let report = RecoveryReport::new(
        id.clone(),
        Operation::Failover,
        component.objectives(),
        timeline,
    );
    if out.json {
        out.json(&report)?;
    } else {
        out.line(&report);
    }
    crate::commands::restore::verdict(&report)
}
