//! The commands of `redis` and `redis-cluster` components: `drkit restore`
//! into a server, a Cluster, a file or a cluster rebuilt on empty nodes;
//! `drkit redis inspect`; and their part of `drkit config check`.

use std::path::PathBuf;

use dr_core::{RecoveryReport, RecoveryTarget, RestoreRequest, SnapshotSource, SnapshotSourceExt};
use dr_redis::{
    ArchiveRestore, ClusterArchiveRestore, ClusterRebuild, ClusterSnapshotDetails, Conflict,
    Inspection, RdbFileRestore, RdbRestore, RdbSnapshotDetails, RedisServer, archived_shards,
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
    /// `--staging host:port`: where a replay into a Cluster or a file runs.
    pub(crate) staging: Option<String>,
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
    let journals = repo.segment_journals();
    let (report, written): (RecoveryReport, String) = match args.destination {
        Destination::Own | Destination::Cluster(_) if replay && settings.is_cluster() => {
            let (seed, into) = match &args.destination {
                Destination::Cluster(addr) => (
                    cx.redis_server(component, addr).await?,
                    format!("the Cluster of {addr}"),
                ),
                _ => (
                    cx.redis_seed(component).await?,
                    format!("the Cluster of {}", settings.addresses().join(", ")),
                ),
            };
            let (staging, _scratch) = staging(cx, component, args.staging.as_deref()).await?;
            let replay = listening(
                ClusterArchiveRestore::new(id.clone(), seed, staging),
                &args.replay_on,
                |r, addr| r.serve_on(addr),
                |r, host| r.advertise(host),
            );
            let report = dr_core::Restore::restore(&replay, with_archive(request, repo, &journals))
                .await
                .map_err(|e| Failure::of(format_args!("restoring {id} into {into}"), &e))?;
            (
                report,
                format!(
                    "{into}: every shard's snapshot and command archive replayed up to {}",
                    upto(&target)
                ),
            )
        }
        Destination::Server(_) if replay && settings.is_cluster() => {
            return Err(Failure::Usage(format!(
                "{id} is a Cluster: its command archive restores into a Cluster (its own, or                  --cluster) or, a shard at a time, into an RDB file (--file with --shard <slot>)"
            )));
        }
        Destination::File { path, shard } if replay => {
            let shard_id = match (settings.is_cluster(), shard) {
                (false, _) => id.clone(),
                (true, Some(slot)) => archived_shard(repo, &id, &slot).await?,
                (true, None) => {
                    return Err(Failure::Usage(format!(
                        "{id} is a Cluster: name the shard to write with --shard <a slot it serves>"
                    )));
                }
            };
            let (staging, _scratch) = staging(cx, component, args.staging.as_deref()).await?;
            let replay = listening(
                ArchiveRestore::new(shard_id.clone(), staging).into_file(&path),
                &args.replay_on,
                |r, addr| r.serve_on(addr),
                |r, host| r.advertise(host),
            );
            let report = dr_core::Restore::restore(&replay, with_archive(request, repo, &journals))
                .await
                .map_err(|e| {
                    Failure::of(format_args!("writing {shard_id} to {}", path.display()), &e)
                })?;
            (
                report,
                format!(
                    "RDB file {}: the snapshot and the command archive of {shard_id} replayed up to {}",
                    path.display(),
                    upto(&target)
                ),
            )
        }
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
            let replay = listening(
                ArchiveRestore::new(id.clone(), server),
                &args.replay_on,
                |r, addr| r.serve_on(addr),
                |r, host| r.advertise(host),
            );
            let report = dr_core::Restore::restore(&replay, with_archive(request, repo, &journals))
                .await
                .map_err(|e| Failure::of(format_args!("restoring {id} into {into}"), &e))?;
            (
                report,
                format!(
                    "{into}: the snapshot and the command archive replayed up to {}",
                    upto(&target)
                ),
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

/// `request` with the command archive (and its journals, where the store
/// keeps them).
fn with_archive<'a>(
    request: RestoreRequest<'a>,
    repo: &'a Repository,
    journals: &'a Option<impl dr_core::JournalSource>,
) -> RestoreRequest<'a> {
    let request = request.archive(repo);
    match journals {
        Some(journals) => request.journals(journals),
        None => request,
    }
}

/// `replay` listening where `--listen` says and advertising `--advertise`,
/// through its own `serve_on` and `advertise`.
fn listening<T>(
    replay: T,
    on: &Option<(std::net::SocketAddr, Option<String>)>,
    serve_on: fn(T, std::net::SocketAddr) -> T,
    advertise: fn(T, String) -> T,
) -> T {
    match on {
        Some((addr, Some(host))) => advertise(serve_on(replay, *addr), host.clone()),
        Some((addr, None)) => serve_on(replay, *addr),
        None => replay,
    }
}

/// How far a replay goes, in words.
fn upto(target: &RecoveryTarget) -> String {
    match target {
        RecoveryTarget::Time(at) => at.to_string(),
        _ => "the latest point".to_owned(),
    }
}

/// The archive of the shard of Cluster `cluster` that serves `slot`.
async fn archived_shard(
    repo: &Repository,
    cluster: &dr_core::ComponentId,
    slot: &str,
) -> Result<dr_core::ComponentId, Failure> {
    let slot: u16 = slot
        .parse()
        .ok()
        .filter(|s| *s < dr_redis::SLOTS)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "--shard {slot:?}: a Cluster's archive names a shard by a slot it serves (0 to {})",
                dr_redis::SLOTS - 1
            ))
        })?;
    let shards = archived_shards(repo, cluster).await.map_err(|e| {
        Failure::of(
            format_args!("reading the shards of {cluster}'s archive"),
            &e,
        )
    })?;
    shards
        .into_iter()
        .find(|shard| shard.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
        .map(|shard| shard.component)
        .ok_or_else(|| {
            Failure::Failed(format!(
                "no shard of {cluster}'s command archive serves slot {slot} (is it archived?)"
            ))
        })
}

/// The staging server a replay into a Cluster or a file runs on: the one
/// `--staging` names (reached with the component's credentials), or a
/// `redis-server` started for it (kept alive by the second value).
async fn staging(
    cx: &Context,
    component: &Component,
    named: Option<&str>,
) -> Result<(RedisServer, Option<ScratchRedis>), Failure> {
    match named {
        Some(addr) => Ok((cx.redis_server(component, addr).await?, None)),
        None => {
            let scratch = ScratchRedis::start().await?;
            Ok((scratch.server(), Some(scratch)))
        }
    }
}

/// A standalone `redis-server` (from `PATH`) drkit starts as a replay's
/// staging server: on 127.0.0.1 and a free port, saving nothing, in a
/// directory of its own; killed and removed when dropped.
struct ScratchRedis {
    child: std::process::Child,
    dir: PathBuf,
    port: u16,
}

impl ScratchRedis {
    async fn start() -> Result<Self, Failure> {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| Failure::of("finding a free port for the staging server", &e))?
            .port();
        let dir = std::env::temp_dir().join(format!("drkit-staging-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Failure::of(format_args!("creating {}", dir.display()), &e))?;
        let spawned = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            // Its data set is fetched as soon as it is replayed.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                std::fs::remove_dir_all(&dir).ok();
                return Err(Failure::Usage(format!(
                    "a replay into a Cluster or an RDB file runs on a staging Redis server, and                      starting redis-server failed ({e}): install Redis (apt-get install                      redis-server), or name an empty standalone server with --staging host:port"
                )));
            }
        };
        let scratch = Self { child, dir, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match scratch.server().probe().await {
                Ok(_) => return Ok(scratch),
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(Failure::Failed(format!(
                        "the staging redis-server on port {port} did not answer within 10 s: {e}"
                    )));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    fn server(&self) -> RedisServer {
        RedisServer::new("127.0.0.1", self.port)
    }
}

impl Drop for ScratchRedis {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
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
