//! `drkit status`: per component, the newest point a restore reaches (the
//! last base backup, and the archived WAL beyond it), its age, and whether
//! that age keeps within the RPO objective: met (at most half of it used),
//! at risk, or missed (exit 3). For a PostgreSQL cluster or a Redis
//! replication set with a `[component.failover]` table, each member's role,
//! position and lag too; for a LiveKit component, whether its server (and
//! its standby) serves now.

use std::time::Duration;

use dr_core::{ArchiveSource, Compliance, JournalSource, Manifest};
use dr_livekit::{LiveKitHealth, LiveKitProbe};
use dr_postgres::{DEFAULT_SEGMENT_SIZE, newest_archived_transaction};
use dr_storage::Repository;
use drkit::{Component, Config};
use jiff::Timestamp;
use serde_json::json;

use crate::context::Context;
use crate::failure::{Failure, Outcome};
use crate::output::Output;

/// Where one component stands.
struct Standing {
    last_backup: Option<Manifest>,
    /// The newest point the archived WAL reaches, and how that is known.
    wal: Option<(Timestamp, &'static str)>,
    /// The newest restorable point.
    restorable: Option<Timestamp>,
    compliance: Option<Compliance>,
    cluster: Option<dr_postgres::ClusterState>,
    /// A Redis master and its replicas, as assessed.
    replication: Option<dr_core::ClusterAssessment>,
    /// Bytes of a Redis master's stream its command archive lacks.
    archive_behind: Option<u64>,
    /// A LiveKit component's servers as probed now: its own, then its
    /// standby's; why one could not be probed.
    livekit: Vec<(&'static str, Result<LiveKitHealth, String>)>,
}

/// Prints every component's standing; exit 3 if one misses its RPO.
pub(crate) async fn run(cx: &Context, repo: &Repository, out: &Output) -> Outcome {
    let config: &Config = &cx.config;
    let now = Timestamp::now();
    let mut rows = Vec::new();
    let mut missed = Vec::new();
    for component in config.components() {
        let mut standing = standing(repo, component, now).await?;
        standing.cluster = crate::commands::failover::state(cx, component).await?;
        standing.replication = crate::commands::failover::redis_state(cx, component).await?;
        standing.archive_behind = archive_behind(cx, repo, component).await;
        standing.livekit = livekit_health(cx, component).await;
        if standing.compliance.is_some_and(Compliance::is_missed) {
            missed.push(component.id().to_string());
        }
        rows.push((component, standing));
    }
    if out.json {
        let json: Vec<_> = rows
            .iter()
            .map(|(component, s)| {
                json!({
                    "component": component.id().to_string(),
                    "rpo_objective": component.objectives().rpo.to_string(),
                    "last_backup": s.last_backup.as_ref().map(|m| json!({
                        "id": m.id.to_string(),
                        "committed_at": m.committed_at.to_string(),
                    })),
                    "wal_reaches": s.wal.map(|(at, how)| json!({ "at": at.to_string(), "from": how })),
                    "archive_behind_bytes": s.archive_behind,
                    "restorable_to": s.restorable.map(|at| at.to_string()),
                    "exposure_seconds": s.restorable.map(|at| age(now, at).as_secs_f64()),
                    "rpo": s.compliance,
                    "cluster": s.cluster,
                    "replication": s.replication,
                    "livekit": (!s.livekit.is_empty()).then(|| s.livekit.iter().map(|(role, health)| match health {
                        Ok(health) => json!({
                            "role": role,
                            "serves": health.is_healthy(),
                            "problem": health.problem(),
                            "health": health,
                        }),
                        Err(reason) => json!({ "role": role, "serves": false, "problem": reason }),
                    }).collect::<Vec<_>>()),
                })
            })
            .collect();
        out.json(&json)?;
    } else {
        for (component, s) in &rows {
            out.line(component.id());
            match &s.last_backup {
                Some(m) => out.line(format_args!(
                    "  last backup   {} ({} ago)",
                    m.id,
                    ago(now, m.committed_at)
                )),
                None => out.line("  last backup   none"),
            }
            if let Some((at, how)) = s.wal {
                let label = if component.redis().is_some() {
                    "archive reaches"
                } else {
                    "WAL reaches  "
                };
                out.line(format_args!("  {label} {at} ({} ago; {how})", ago(now, at)));
                if let Some(bytes) = s.archive_behind {
                    out.line(format_args!(
                        "                {bytes} bytes of the master's stream not yet archived"
                    ));
                }
            }
            match s.compliance {
                Some(c) => out.line(format_args!(
                    "  RPO objective {}: {c}",
                    component.objectives().rpo
                )),
                None => out.line(format_args!(
                    "  RPO objective {}: MISSED, nothing is restorable",
                    component.objectives().rpo
                )),
            }
            if let Some(cluster) = &s.cluster {
                out.line("  cluster");
                for line in cluster.to_string().lines().skip(1) {
                    out.line(format_args!("  {line}"));
                }
            }
            if let Some(replication) = &s.replication {
                out.line("  replication");
                for member in &replication.members {
                    out.line(format_args!("    {}", member_line(member)));
                }
            }
            for (role, health) in &s.livekit {
                out.line(format_args!("  {role:<13} {}", livekit_line(health)));
            }
        }
    }
    let unrestorable: Vec<String> = rows
        .iter()
        .filter(|(_, s)| s.restorable.is_none())
        .map(|(c, _)| c.id().to_string())
        .collect();
    missed.extend(unrestorable);
    if missed.is_empty() {
        Ok(())
    } else {
        Err(Failure::MissedObjective(format!(
            "RPO missed for {}",
            missed.join(", ")
        )))
    }
}

async fn standing(
    repo: &Repository,
    component: &Component,
    now: Timestamp,
) -> Result<Standing, Failure> {
    let last_backup = crate::kinds::latest_backup(repo, component).await?;
    let archives_wal = component.postgres().is_some_and(|p| p.wal_archiving());
    let archives_commands = component
        .redis()
        .is_some_and(drkit::RedisSettings::archiving);
    let wal = if archives_wal {
        wal_reaches(repo, component).await?
    } else if archives_commands
        && component
            .redis()
            .is_some_and(drkit::RedisSettings::is_cluster)
    {
        shards_reach(repo, component.id()).await?
    } else if archives_commands && last_backup.is_some() {
        commands_reach(repo, component.id()).await?
    } else {
        None
    };
    let restorable = [
        last_backup.as_ref().map(|m| m.recovery_point.at),
        wal.map(|(at, _)| at),
    ]
    .into_iter()
    .flatten()
    .max();
    let compliance =
        restorable.map(|at| Compliance::of(age(now, at), component.objectives().rpo.as_duration()));
    Ok(Standing {
        last_backup,
        wal,
        restorable,
        compliance,
        cluster: None,
        replication: None,
        archive_behind: None,
        livekit: Vec::new(),
    })
}

/// A `livekit` component's server and, where it has one, its standby,
/// probed now (readiness and a `ListRooms` of no room); nothing for other
/// kinds. A server that cannot be probed (its secret unreadable, say) is
/// said so in its entry rather than failing the whole status.
async fn livekit_health(
    cx: &Context,
    component: &Component,
) -> Vec<(&'static str, Result<LiveKitHealth, String>)> {
    let Some(settings) = component.livekit() else {
        return Vec::new();
    };
    let probe = LiveKitProbe::new();
    let mut roles = vec![("server", false)];
    if settings.standby_url().is_some() {
        roles.push(("standby", true));
    }
    let mut healths = Vec::new();
    for (role, standby) in roles {
        let health = match cx.livekit(component, standby).await {
            Ok(client) => Ok(probe.check(&client).await),
            Err(failure) => Err(failure.to_string()),
        };
        healths.push((role, health));
    }
    healths
}

/// `<url> serves (ListRooms in 3 ms)` or `<url> does NOT serve: <why>`.
fn livekit_line(health: &Result<LiveKitHealth, String>) -> String {
    match health {
        Ok(health) => match (health.problem(), &health.api) {
            (None, Ok(took)) => format!(
                "{} serves (ListRooms in {} ms)",
                health.url,
                took.as_millis()
            ),
            (problem, _) => format!(
                "{} does NOT serve: {}",
                health.url,
                problem.unwrap_or_default()
            ),
        },
        Err(reason) => format!("not probed: {reason}"),
    }
}

/// How many bytes of a `redis` component's master stream its command
/// archive lacks: the master's offset less where the archive ends, on the
/// same history; `None` where it is not archived, is a Cluster, or the
/// master does not answer on the archive's history.
async fn archive_behind(cx: &Context, repo: &Repository, component: &Component) -> Option<u64> {
    let redis = component.redis()?;
    if !redis.archiving() || redis.is_cluster() {
        return None;
    }
    let (end, _) = dr_redis::archive_end(repo, component.id()).await.ok()??;
    let master = cx.redis_seed(component).await.ok()?;
    let point = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        master.replication_point(),
    )
    .await
    .ok()?
    .ok()?;
    (point.replication_id == end.replication_id).then(|| point.offset.saturating_sub(end.offset))
}

/// The newest point a Redis component's command archive reaches: where
/// the archiver last recorded that it held everything the master had sent
/// (its coverage record), or else when its newest record arrived.
async fn commands_reach(
    repo: &Repository,
    id: &dr_core::ComponentId,
) -> Result<Option<(Timestamp, &'static str)>, Failure> {
    let covered = covered(repo, id).await?;
    let newest = dr_redis::archive_end(repo, id)
        .await
        .map_err(|e| Failure::of(format_args!("reading the command archive of {id}"), &e))?
        .map(|(_, at)| (at, "the newest archived command"));
    Ok([covered, newest]
        .into_iter()
        .flatten()
        .max_by_key(|(at, _)| *at))
}

/// The newest point a Cluster's command archive reaches: the oldest of its
/// shards' ([`commands_reach`]), for a restore replays them all to one
/// time; none while a shard's archive is empty.
async fn shards_reach(
    repo: &Repository,
    id: &dr_core::ComponentId,
) -> Result<Option<(Timestamp, &'static str)>, Failure> {
    let shards = dr_redis::archived_shards(repo, id)
        .await
        .map_err(|e| Failure::of(format_args!("reading the shards of {id}'s archive"), &e))?;
    let mut reach = None;
    for shard in &shards {
        let Some((at, _)) = commands_reach(repo, &shard.component).await? else {
            return Ok(None);
        };
        reach = Some(reach.map_or(at, |r: Timestamp| r.min(at)));
    }
    Ok(reach.map(|at| (at, "every shard's command archive")))
}

/// Where the component's archiver last recorded that its archive held
/// everything its source had written.
async fn covered(
    repo: &Repository,
    id: &dr_core::ComponentId,
) -> Result<Option<(Timestamp, &'static str)>, Failure> {
    Ok(repo
        .coverage(id)
        .await
        .map_err(|e| Failure::of(format_args!("reading the archive coverage of {id}"), &e))?
        .map(|c| (c.seen_at, "the archiver's coverage record")))
}

/// The newest point the archived WAL reaches: where the continuous
/// archiver last saw the archive hold everything the server wrote (its
/// coverage record), or else the newest transaction archived.
async fn wal_reaches(
    repo: &Repository,
    component: &Component,
) -> Result<Option<(Timestamp, &'static str)>, Failure> {
    let id = component.id();
    let covered = covered(repo, id).await?;
    let journals = repo.segment_journals();
    let size = component.postgres().map_or(
        DEFAULT_SEGMENT_SIZE,
        drkit::PostgresSettings::wal_segment_size,
    );
    let newest = newest_archived_transaction(
        repo,
        journals.as_ref().map(|j| j as &dyn JournalSource),
        id,
        size,
    )
    .await
    .map_err(|e| Failure::of(format_args!("reading the newest archived WAL of {id}"), &e))?
    .map(|event| (event.time(), "the newest archived transaction"));
    Ok([covered, newest]
        .into_iter()
        .flatten()
        .max_by_key(|(at, _)| *at))
}

fn age(now: Timestamp, at: Timestamp) -> Duration {
    now.duration_since(at).try_into().unwrap_or(Duration::ZERO)
}

fn ago(now: Timestamp, at: Timestamp) -> dr_core::Rpo {
    dr_core::Rpo::new(Duration::from_secs(age(now, at).as_secs()))
}

/// One Redis member: its name, role, offset, lag and link, or why it does
/// not answer.
fn member_line(member: &dr_core::Member) -> String {
    let detail = |key: &str| member.detail.get(key).map(String::as_str);
    if !member.reachable {
        return format!(
            "{:<12} unreachable: {}",
            member.name,
            detail("error").unwrap_or("no answer")
        );
    }
    let role = match member.role {
        dr_core::Role::Primary => "master",
        _ => "replica",
    };
    let mut line = format!("{:<12} {role:<8}", member.name);
    if let Some(dr_core::Position::Redis { offset, .. }) = &member.position {
        line.push_str(&format!(" offset {offset}"));
    }
    if let Some(bytes) = member.lag.and_then(|l| l.bytes) {
        line.push_str(&format!(", {bytes} bytes behind"));
    }
    if let Some(link) = detail("master_link_status") {
        line.push_str(&format!(", link {link}"));
    }
    line
}
