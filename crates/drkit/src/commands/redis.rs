//! The commands of `redis` and `redis-cluster` components: `drkit restore`
//! into a server, a Cluster, a file or a cluster rebuilt on empty nodes;
//! `drkit redis inspect`; and their part of `drkit config check`.

use std::path::PathBuf;

use dr_core::{RecoveryReport, RecoveryTarget, RestoreRequest, SnapshotSource, SnapshotSourceExt};
use dr_redis::{
    ArchiveRestore, ClusterRebuild, ClusterSnapshotDetails, Conflict, Inspection, RdbFileRestore,
    RdbRestore, RdbSnapshotDetails,
};
use dr_storage::Repository;
use drkit::Component;
use jiff::Timestamp;

use crate::commands::restore::{print, save, verdict};
use crate::commands::target::TargetArg;
use crate::context::Context;
use crate::failure::{Failure, Outcome};
use crate::output::{Output, bytes};

/// Where a Redis restore writes.
#[derive(Debug, Clone)]
pub(crate) enum Destination {
    /// The component's own server or cluster (no flag given).
    Own,
    /// `--server host:port`.
    Server(String),
    /// `--cluster host:port`: a running cluster, by one of its nodes.
    Cluster(String),
    /// `--file path [--shard id]`: an RDB file for a stopped server.
    File {
        path: PathBuf,
        shard: Option<String>,
    },
    /// `--rebuild-on host:port,…`: empty nodes a whole cluster is built on.
    Rebuild(Vec<String>),
}

/// What a Redis restore is asked for.
pub(crate) struct RedisRestoreArgs {
    pub(crate) to: TargetArg,
    pub(crate) destination: Destination,
    pub(crate) conflict: Conflict,
    pub(crate) single_pass: bool,
    /// Where a replay from the command archive listens for the target, and
    /// the host it advertises.
    pub(crate) replay_on: Option<(std::net::SocketAddr, Option<String>)>,
    pub(crate) incident_at: Option<Timestamp>,
    pub(crate) report_file: Option<PathBuf>,
}

/// `drkit restore <redis component>`: the report printed and saved; exit
/// 3 if an objective was missed.
pub(crate) async fn restore(
    cx: &Context,
    repo: &Repository,
    component: &Component,
    args: RedisRestoreArgs,
    out: &Output,
) -> Outcome {
    let id = component.id().clone();
    let settings = cx.redis(component)?;
    let target = match args.to.target() {
        Ok(
            target @ (RecoveryTarget::Latest
            | RecoveryTarget::Time(_)
            | RecoveryTarget::Snapshot(_)),
        ) => target,
        _ => {
            return Err(Failure::Usage(format!(
                "{id} restores a snapshot as it was taken: --to latest, a time or a snapshot id"
            )));
        }
    };
    let mut request = RestoreRequest::new(repo, &target, component.objectives());
    if let Some(at) = args.incident_at {
        request = request.incident_at(at);
    }
    let progress = out.progress("restore the keys");
    if let Some(progress) = &progress {
        request = request.progress(progress);
    }
    // With a command archive, the latest point or a time is reached by
    // replaying the archive onto the snapshot before it.
    let replay =
        settings.archiving() && matches!(target, RecoveryTarget::Latest | RecoveryTarget::Time(_));
    let (report, written): (RecoveryReport, String) = match args.destination {
        Destination::Own | Destination::Server(_) if replay => {
            let (server, into) = match &args.destination {
                Destination::Server(addr) => {
                    (cx.redis_server(component, addr).await?, addr.clone())
                }
                _ => (
                    cx.redis_seed(component).await?,
                    settings.addresses().join(", "),
                ),
            };
            let journals = repo.segment_journals();
            let mut request = request.archive(repo);
            if let Some(journals) = &journals {
                request = request.journals(journals);
            }
            let mut replay = ArchiveRestore::new(id.clone(), server);
            if let Some((addr, advertise)) = &args.replay_on {
                replay = replay.serve_on(*addr);
                if let Some(host) = advertise {
                    replay = replay.advertise(host.clone());
                }
            }
            let report = dr_core::Restore::restore(&replay, request)
                .await
                .map_err(|e| Failure::of(format_args!("restoring {id} into {into}"), &e))?;
            let upto = match &target {
                RecoveryTarget::Time(at) => at.to_string(),
                _ => "the latest point".to_owned(),
            };
            (
                report,
                format!("{into}: the snapshot and the command archive replayed up to {upto}"),
            )
        }
        Destination::File { path, shard } => {
            let mut restore = RdbFileRestore::new(id.clone(), &path);
            if let Some(shard) = shard {
                restore = restore.shard(shard);
            }
            let report = dr_core::Restore::restore(&restore, request)
                .await
                .map_err(|e| Failure::of(format_args!("writing {id} to {}", path.display()), &e))?;
            (report, format!("RDB file {}", path.display()))
        }
        Destination::Rebuild(nodes) => {
            let mut servers = Vec::new();
            for addr in &nodes {
                servers.push(cx.redis_server(component, addr).await?);
            }
            let (report, outcome) = ClusterRebuild::new(id.clone(), servers)
                .rebuild(request)
                .await
                .map_err(|e| Failure::of(format_args!("rebuilding the cluster of {id}"), &e))?;
            let shards: Vec<String> = outcome
                .masters
                .iter()
                .zip(&outcome.keys_per_master)
                .map(|(master, keys)| format!("{master} {keys} keys"))
                .collect();
            (
                report,
                format!(
                    "a cluster of {} masters ({}) and {} replicas: {} keys",
                    outcome.masters.len(),
                    shards.join(", "),
                    outcome.replicas.len(),
                    outcome.counts.restored
                ),
            )
        }
        destination => {
            let (restore, into) = match destination {
                Destination::Server(addr) => (
                    RdbRestore::new(id.clone(), cx.redis_server(component, &addr).await?),
                    addr,
                ),
                Destination::Cluster(addr) => (
                    RdbRestore::into_cluster(id.clone(), cx.redis_server(component, &addr).await?),
                    format!("the cluster of {addr}"),
                ),
                _ if settings.is_cluster() => (
                    RdbRestore::into_cluster(id.clone(), cx.redis_seed(component).await?),
                    format!("the cluster of {}", settings.addresses().join(", ")),
                ),
                _ => (
                    RdbRestore::new(id.clone(), cx.redis_seed(component).await?),
                    settings.addresses().join(", "),
                ),
            };
            let (report, counts) = restore
                .conflict(args.conflict)
                .check_first(!args.single_pass)
                .restore_counted(request)
                .await
                .map_err(|e| Failure::of(format_args!("restoring {id} into {into}"), &e))?;
            let mut said = format!("{into}: {} keys restored", counts.restored);
            for (n, what) in [
                (counts.kept_existing, "kept as the target had them"),
                (counts.expired, "expired, not written"),
                (counts.functions, "function libraries loaded"),
            ] {
                if n > 0 {
                    said.push_str(&format!(", {n} {what}"));
                }
            }
            if counts.rebuilt {
                said.push_str(" (rebuilt from commands: the target is older than the snapshot)");
            }
            (report, said)
        }
    };
    drop(progress);
    out.line(format_args!("{id}: {written}"));
    if let Some(path) = &args.report_file {
        save(&report, path)?;
    }
    print(&report, out)?;
    verdict(&report)
}

/// `drkit redis inspect`: what a snapshot's RDB (or a local RDB file)
/// holds.
pub(crate) async fn inspect(
    repo: Option<&Repository>,
    snapshot: Option<&str>,
    file: Option<&std::path::Path>,
    shard: Option<&str>,
    top: usize,
    out: &Output,
) -> Outcome {
    let now = Timestamp::now().as_millisecond();
    let (title, seen) = match (repo, snapshot, file) {
        (_, _, Some(path)) => {
            let reader = tokio::fs::File::open(path)
                .await
                .map_err(|e| Failure::of(format_args!("opening {}", path.display()), &e))?;
            let seen = dr_redis::inspect(reader, top, now)
                .await
                .map_err(|e| Failure::of(format_args!("reading {}", path.display()), &e))?;
            (path.display().to_string(), seen)
        }
        (Some(repo), Some(snapshot), None) => {
            let id = snapshot
                .parse()
                .map_err(|e| Failure::Usage(format!("{snapshot:?} is not a snapshot id: {e}")))?;
            let manifest = repo
                .manifest(&id)
                .await
                .map_err(|e| Failure::of(format_args!("reading snapshot {id}"), &e))?;
            let stream = pick_stream(&manifest, shard)?;
            let reader = repo
                .open_stream(
                    &id,
                    &stream.parse().map_err(|e| Failure::of("the stream", &e))?,
                )
                .await
                .map_err(|e| Failure::of(format_args!("opening {stream} of {id}"), &e))?;
            let seen = dr_redis::inspect(reader, top, now)
                .await
                .map_err(|e| Failure::of(format_args!("reading {stream} of {id}"), &e))?;
            (
                format!("snapshot {id} ({}), {stream}", manifest.component),
                seen,
            )
        }
        _ => {
            return Err(Failure::Usage(
                "name a snapshot id, or an RDB file with --file".into(),
            ));
        }
    };
    if out.json {
        return out.json(&seen);
    }
    print_inspection(&title, &seen, out);
    Ok(())
}

/// The RDB stream of `manifest` to read: its only one, or the shard named.
fn pick_stream(manifest: &dr_core::Manifest, shard: Option<&str>) -> Result<String, Failure> {
    let not_redis = |e: dr_core::Error| Failure::of(format_args!("snapshot {}", manifest.id), &e);
    if let Some(details) = manifest
        .details::<RdbSnapshotDetails>()
        .map_err(not_redis)?
    {
        let _ = details;
        return Ok(dr_redis::RDB_STREAM.to_owned());
    }
    let cluster = ClusterSnapshotDetails::of(manifest).map_err(not_redis)?;
    let shards: Vec<String> = cluster.shards.iter().map(|s| s.master_id.clone()).collect();
    match shard {
        Some(wanted) => cluster
            .shards
            .iter()
            .find(|s| {
                s.master_id == wanted
                    || cluster
                        .layout
                        .nodes
                        .iter()
                        .any(|n| n.id == s.master_id && n.addr == wanted)
            })
            .map(|s| s.stream.clone())
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "snapshot {} has no shard {wanted}; its masters are {}",
                    manifest.id,
                    shards.join(", ")
                ))
            }),
        None => Err(Failure::Usage(format!(
            "snapshot {} is a cluster's: name a shard with --shard (one of {})",
            manifest.id,
            shards.join(", ")
        ))),
    }
}

fn print_inspection(title: &str, seen: &Inspection, out: &Output) {
    out.line(format_args!(
        "{title}: RDB version {}{}, {}, {} function libraries",
        seen.rdb_version,
        seen.redis_version
            .as_deref()
            .map(|v| format!(" (Redis {v})"))
            .unwrap_or_default(),
        bytes(seen.total_bytes),
        seen.functions
    ));
    for (db, kinds) in &seen.keys {
        let total: u64 = kinds.values().sum();
        let per: Vec<String> = kinds
            .iter()
            .map(|(kind, n)| {
                let stored = seen
                    .bytes
                    .get(db)
                    .and_then(|b| b.get(kind))
                    .copied()
                    .unwrap_or(0);
                format!("{n} {kind} ({})", bytes(stored))
            })
            .collect();
        out.line(format_args!("db {db}: {total} keys: {}", per.join(", ")));
    }
    let e = &seen.expiry;
    out.line(format_args!(
        "expiry: {} never, {} expired, {} within an hour, {} within a day, {} within a week, \
         {} within 30 days, {} later",
        e.never, e.expired, e.within_hour, e.within_day, e.within_week, e.within_month, e.later
    ));
    if !seen.biggest.is_empty() {
        out.line("biggest keys:");
        for key in &seen.biggest {
            out.line(format_args!(
                "  {:>10}  db {} {} {}",
                bytes(key.bytes),
                key.db,
                key.kind,
                key.key
            ));
        }
    }
}

/// `drkit config check` of a Redis component: each server (or seed)
/// reached with the component's settings, changing nothing.
pub(crate) async fn check(cx: &Context, component: &Component) -> Outcome {
    let settings = cx.redis(component)?;
    let id = component.id();
    for addr in settings.addresses() {
        let server = cx.redis_server(component, addr).await?;
        let probe = server
            .probe()
            .await
            .map_err(|e| Failure::of(format_args!("connecting to {id} at {addr}"), &e))?;
        if probe.cluster != settings.is_cluster() {
            return Err(Failure::Failed(format!(
                "{id}: {addr} is {}a Cluster node, but the component's kind is {}",
                if probe.cluster { "" } else { "not " },
                component.kind()
            )));
        }
        cx.out.line(format_args!(
            "{id}: {} answers, Redis {}, {}{}, {} keys",
            probe.addr,
            probe.version,
            probe.role,
            if probe.cluster { " (cluster node)" } else { "" },
            probe.keys
        ));
    }
    Ok(())
}
