//! A disaster-recovery drill of PostgreSQL, Redis, Kubernetes and LiveKit, start to finish, on this machine:
//!
//! 1. start a throwaway PostgreSQL and a write workload;
//! 2. stream its WAL into a local repository and take a base backup while
//!    the workload runs;
//! 3. the disaster: kill -9, and the data directory is lost;
//! 4. restore to the latest point, and to a moment in the past;
//! 5. check every row against the workload's log, and report the achieved
//!    RTO and RPO against the plan's objectives (PostgreSQL: RTO 30 minutes,
//!    RPO 15 minutes);
//! 6. a primary failure, as the plans' monthly drill does it on purpose: a
//!    primary with two synchronous replicas under the workload and the
//!    cluster's WAL archiver (it must go on with the new primary, no gap), the monitor
//!    (1 s probes, 3 failures) watching; kill -9 of the primary; the monitor
//!    fences and promotes by itself under the repository's lease; every
//!    acknowledged row checked on the new primary; the old primary rewound
//!    and following it. The RTO runs from the kill to the first write the
//!    new primary takes (the plans' "Database Primary Failure": RTO 5
//!    minutes), the RPO is the acknowledged rows lost.
//!
//! 7. Redis (`drill_redis.rs`): a Cluster of three masters and their
//!    replicas under a writer, every shard's commands archived, a cluster
//!    snapshot taken, a monitor (500 ms probes) watching one shard; kill -9
//!    of its master, failed over by the monitor; then a `FLUSHALL` on every
//!    master, undone by a point-in-time restore of every shard to just
//!    before it into a fresh Cluster, checked key by key (the seeds' Redis
//!    objectives: RTO 5 minutes, RPO 1 minute).
//!
//! 8. Kubernetes (`drill_k8s.rs`), on two stand-in clusters in one
//!    kubeconfig (`prod` and `dr-cluster`): GoMeet's namespace (LiveKit's
//!    room definition and rooms, config, Secrets, Deployments, Services)
//!    backed up; a bad release undone by the health-gated rollout (Veza's
//!    Scenario 3: RTO 5 minutes); then prod lost and the backup restored
//!    into dr-cluster, every Deployment rolled out there and every object
//!    checked (the complete platform: RTO 4 hours; configuration: RPO 5
//!    minutes).
//!
//! 9. LiveKit (`drill_livekit.rs`), on two stand-in SFUs sharing one API
//!    key: GoMeet's rooms, participants, a recording, an ingress and SIP;
//!    the minute's snapshots (the unchanged ones only confirmed); the SFU's
//!    region lost, failed over to the standby (the latest snapshot restored,
//!    clients pointed there), participants set again as they rejoin (the
//!    SFU's objectives: RTO 5 minutes, RPO 1 minute).
//!
//! Run: `cargo run --example drill` (or `scripts/drill`, which installs
//! PostgreSQL and Redis first where it can). `--repo <dir>` keeps the
//! repository.

use std::sync::Arc;
use std::time::Duration;

use dr_core::{
    BackupExt, ComponentId, FailoverMode, FailoverRequest, Fence, JournalSource, LossLimit, Member,
    Monitor, MonitorEvent, MonitorOptions, Objectives, RecoveryReport, RecoveryTarget, Restore,
    RestoreRequest, async_trait,
};
use dr_postgres::{
    ArchiverHandle, ArchiverOptions, BaseBackup, DEFAULT_SEGMENT_SIZE, PgCluster, PgFailover,
    PgMember, PgTools, PitrRestore, Rejoin, SqlFence, Tls, WalArchiver, list_archive,
    verify_base_backup,
};
use dr_storage::{FsBackend, InitOptions, Repository, Secret};
use dr_testkit::{Postgres, PostgresOptions};
use drkit_examples::{Comparison, RestoreTarget, Workload, kept_at, row_xids, transaction_ends};
use jiff::Timestamp;

#[path = "drill_k8s.rs"]
mod k8s_scenario;
#[path = "drill_livekit.rs"]
mod livekit_scenario;
#[path = "drill_redis.rs"]
mod redis_scenario;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// How long a restore, replay included, may take before the drill fails.
const RESTORE_WITHIN: Duration = Duration::from_secs(300);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let repo_dir = match std::env::args().skip_while(|a| a != "--repo").nth(1) {
        Some(dir) => Keep::Path(dir.into()),
        None => Keep::Temp(tempfile::Builder::new().prefix("drkit-drill-").tempdir()?),
    };
    let objectives = Objectives::new("30 minutes".parse()?, "15 minutes".parse()?);
    let component: ComponentId = "postgres/drill".parse()?;
    let options = PostgresOptions::default().setting("track_commit_timestamp", "on");

    step("starting PostgreSQL and a write workload");
    let mut primary = Postgres::start_with(options.clone()).await?;
    let workload = Workload::start(primary.config("postgres"), Duration::from_millis(20)).await?;

    step(&format!("repository at {}", repo_dir.path().display()));
    let backend = Arc::new(FsBackend::new(repo_dir.path())?);
    let secret = Secret::password("drill-password");
    let repo = match Repository::open(backend.clone(), Some(&secret)).await {
        Ok(repo) => repo,
        Err(dr_storage::Error::NotFound { .. }) => {
            Repository::init(backend, InitOptions::encrypted(secret)).await?
        }
        Err(e) => return Err(e.into()),
    };
    let repo = Arc::new(repo);
    // A directory keeps segment journals: every reader of the archive reads them.
    let journals = repo.segment_journals().map(Arc::new);

    step("streaming WAL into the repository (a piece every 500 ms)");
    let archiver = WalArchiver::new(
        primary.config("postgres"),
        Tls::none(),
        repo.clone(),
        component.clone(),
        ArchiverOptions::new()
            .slot("drkit_drill")
            .piece_interval(Some(Duration::from_millis(500))),
    );
    let archiver = match &journals {
        Some(journals) => archiver.journals(journals.clone()),
        None => archiver,
    }
    .spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;

    step("base backup while the workload writes");
    let backup =
        BaseBackup::new(component.clone(), primary.config("postgres"), Tls::none()).label("drill");
    let report = backup.backup_to(repo.as_ref()).await?;
    let check = verify_base_backup(repo.as_ref(), &report.manifest.id).await?;
    println!(
        "  backup {}: {} MB in {:.1} s; {} files match its manifest{}",
        report.manifest.id,
        report.manifest.total_size() / 1_000_000,
        report.timeline.elapsed().as_secs_f64(),
        check.checked,
        if check.is_ok() {
            ""
        } else {
            " (PROBLEMS FOUND)"
        },
    );

    // Writes go on after the backup; a moment in the middle is the
    // "restore to 14:30" target.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let past = Timestamp::now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    step("the disaster: kill -9 of the primary, its data directory lost");
    let before_kill = row_xids(&primary.connect("postgres").await?).await?;
    let incident = Timestamp::now();
    primary.kill9();
    let acknowledged = workload.stop().await;
    let archived = archiver.shutdown().await;
    std::fs::remove_dir_all(primary.data_dir())?;
    println!(
        "  {} transactions were acknowledged; the archive holds WAL up to {}",
        acknowledged.len(),
        archived.map_or_else(|e| format!("? ({e})"), |s| s.flushed.to_string()),
    );

    step("restore to the latest point");
    let (latest, latest_rows) = restore(
        &repo,
        &component,
        &options,
        RecoveryTarget::Latest,
        Some(incident),
        objectives,
    )
    .await?;
    let expected: Vec<i64> = acknowledged.iter().map(|a| a.id).collect();
    let latest_check = Comparison::of(&latest_rows, &expected);

    step(&format!("restore to {past} (a moment in the past)"));
    // Undoing a bad change rather than surviving a crash: the RTO counts
    // from the start of this restore.
    let (earlier, earlier_rows) = restore(
        &repo,
        &component,
        &options,
        RecoveryTarget::Time(past),
        None,
        objectives,
    )
    .await?;
    // Which rows the target keeps, by PostgreSQL's rule: up to the first
    // transaction in WAL order that committed after it.
    let start = dr_postgres::BaseBackupDetails::of(&report.manifest)?.start_lsn;
    let journals = journals.as_deref().map(|j| j as &dyn JournalSource);
    let ends = transaction_ends(repo.as_ref(), journals, &component, start).await?;
    let expected_then = kept_at(past, &ends, &before_kill);
    let earlier_check = Comparison::of(&earlier_rows, &expected_then);

    let (failover_met, failover_report) = primary_failure(repo.clone()).await?;
    let (redis_met, redis_report) = redis_scenario::run(repo.clone()).await?;
    let (k8s_met, k8s_report) = k8s_scenario::run(repo.clone()).await?;
    let (livekit_met, livekit_report) = livekit_scenario::run(repo.clone()).await?;

    println!("\n=== drill report ===");
    print_restore("latest point", &latest, &latest_check, expected.len());
    print_restore(
        &format!("{past}"),
        &earlier,
        &earlier_check,
        expected_then.len(),
    );
    println!("{failover_report}");
    println!("{redis_report}");
    println!("{k8s_report}");
    println!("{livekit_report}");
    let all_met = latest.objectives_met()
        && earlier.objectives_met()
        && failover_met
        && redis_met
        && k8s_met
        && livekit_met;
    let exact_past = earlier_check.exact();
    println!(
        "\nverdict: objectives {}; past-point restore {}",
        if all_met { "MET" } else { "MISSED" },
        if exact_past {
            "exact (every row committed by the target, none after)"
        } else {
            "NOT exact"
        }
    );
    if !(all_met && exact_past) {
        std::process::exit(1);
    }
    Ok(())
}

/// Restores `target` into a throwaway directory, starts it, and returns the
/// report and the row ids found.
async fn restore(
    repo: &Repository,
    component: &ComponentId,
    options: &PostgresOptions,
    target: RecoveryTarget,
    incident: Option<Timestamp>,
    objectives: Objectives,
) -> Result<(RecoveryReport, Vec<i64>)> {
    let kit = RestoreTarget::new(options.clone())?;
    let mut restore = PitrRestore::new(component.clone(), kit.data_dir()).start_with(kit.pg_ctl());
    if let Some((uid, gid)) = kit.owner() {
        restore = restore.owner(uid, gid);
    }
    let journals = repo.segment_journals();
    let mut request = RestoreRequest::new(repo, &target, objectives).archive(repo);
    if let Some(journals) = &journals {
        request = request.journals(journals);
    }
    request.incident_at = incident;
    let restoring = restore.restore(request);
    let report = tokio::time::timeout(RESTORE_WITHIN, restoring)
        .await
        .map_err(|_| format!("the restore did not finish within {RESTORE_WITHIN:?}"))??;
    let client = kit.connect().await?;
    let rows = client
        .query("SELECT id FROM drill ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((report, rows))
}

fn print_restore(what: &str, report: &RecoveryReport, check: &Comparison, expected: usize) {
    println!("\nrestore to {what}:");
    for line in report.to_string().lines() {
        println!("  {line}");
    }
    println!(
        "  rows: {} of {expected} expected present, {} missing, {} after the target",
        check.present,
        check.missing.len(),
        check.unexpected.len()
    );
}

/// The primary-failure scenario: whether its objectives were met, and its
/// report.
async fn primary_failure(repo: Arc<Repository>) -> Result<(bool, String)> {
    let objectives = Objectives::new("5 minutes".parse()?, "0 seconds".parse()?);
    step(
        "primary failure: a primary and two replicas, synchronous (ANY 1), the workload, \
         the cluster's WAL archiver",
    );
    let options = PostgresOptions::default().setting("wal_keep_size", "256MB");
    let mut primary = Postgres::start_with(options).await?;
    let one = primary.start_replica().await?;
    let two = primary.start_replica().await?;
    // Each replica connects as its member, so that the primary names it.
    for (pg, name) in [(&one, "pg-2"), (&two, "pg-3")] {
        let session = pg.connect("postgres").await?;
        let conninfo: String = session
            .query_one("SHOW primary_conninfo", &[])
            .await?
            .get(0);
        let named = format!("{conninfo} application_name={name}").replace('\'', "''");
        session
            .batch_execute(&format!("ALTER SYSTEM SET primary_conninfo = '{named}'"))
            .await?;
        session.batch_execute("SELECT pg_reload_conf()").await?;
    }
    let admin = primary.connect("postgres").await?;
    admin
        .batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (\"pg-2\", \"pg-3\")'")
        .await?;
    admin.batch_execute("SELECT pg_reload_conf()").await?;
    let component: ComponentId = "postgres/drill-cluster".parse()?;
    let cluster = [("pg-1", &primary), ("pg-2", &one), ("pg-3", &two)]
        .into_iter()
        .fold(
            PgCluster::new(component.clone(), Tls::none()).probe_timeout(Duration::from_secs(1)),
            |cluster, (name, pg)| cluster.member(PgMember::new(name, pg.config("postgres"))),
        );
    // The archiver follows the primary and holds WAL on both replicas.
    let archiver = WalArchiver::new(
        primary.config("postgres"),
        Tls::none(),
        repo.clone(),
        component.clone(),
        ArchiverOptions::new().piece_interval(Some(Duration::from_millis(500))),
    )
    .cluster(cluster.clone());
    let archiver = match repo.segment_journals() {
        Some(journals) => archiver.journals(Arc::new(journals)),
        None => archiver,
    }
    .spawn();
    let failover = Arc::new(PgFailover::new(cluster.clone()));
    let workload = Workload::start(primary.config("postgres"), Duration::from_millis(20)).await?;
    let fence = Arc::new(KilledOrReadOnly(SqlFence::new(cluster.clone())));
    let request = FailoverRequest::new(FailoverMode::Failover, objectives, LossLimit::Bytes(0));
    let mut monitor = Monitor::new(
        failover.clone(),
        MonitorOptions::new(Duration::from_secs(1), Duration::from_secs(1), 3),
    )
    .fail_over_automatically(request, fence, repo.clone(), "drill-monitor")
    .spawn();
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("{}", indent(&failover.state().await?.to_string()));
    for slot in archiver.standby_slots() {
        println!("  the archiver's slot on {slot}");
    }

    step("the disaster: kill -9 of the primary");
    let killed_at = Timestamp::now();
    primary.kill9();
    let acknowledged = workload.stop().await;
    // The first write the new primary takes: one libpq multi-host client,
    // as an application would reconnect.
    let mut any_primary = tokio_postgres::Config::new();
    for pg in [&one, &two] {
        any_primary.host("127.0.0.1").port(pg.port());
    }
    any_primary
        .user("postgres")
        .password(one.password())
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(1))
        .target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    let first_write = loop {
        if let Ok((client, connection)) = any_primary.connect(tokio_postgres::NoTls).await {
            tokio::spawn(connection);
            if client
                .execute(
                    "INSERT INTO drill VALUES (-1, 'first write after the failover')",
                    &[],
                )
                .await
                .is_ok()
            {
                break Timestamp::now();
            }
        }
        if killed_at.duration_until(Timestamp::now()).as_secs() > 300 {
            return Err("no primary took a write within 5 minutes of the kill".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let outcome = loop {
        match monitor.next_event().await {
            Some(MonitorEvent::FailedOver(outcome)) => break outcome,
            Some(MonitorEvent::FailoverFailed { reason }) => println!("  monitor: {reason}"),
            Some(_) => {}
            None => return Err("the monitor stopped".into()),
        }
    };
    let new_primary = match outcome.plan.promote.name.as_str() {
        "pg-2" => &one,
        _ => &two,
    };
    let rows: Vec<i64> = new_primary
        .connect("postgres")
        .await?
        .query("SELECT id FROM drill WHERE id >= 0 ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i64> = acknowledged.iter().map(|a| a.id).collect();
    let check = Comparison::of(&rows, &expected);

    step("the archiver goes on with the new primary");
    let archive = archive_continues(&archiver, new_primary, &repo, &component).await?;
    archiver.shutdown().await?;

    step("the old primary rewound to follow the new one");
    let rejoined = Rejoin::new("pg-1", primary.data_dir())
        .tools(PgTools::in_dir(primary.binaries().dir()))
        .run(&new_primary.config("postgres"))
        .await?;
    primary.restart().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let state = loop {
        let state = failover.state().await?;
        let following = state
            .replicas()
            .filter(|(_, r)| {
                r.seen_by_primary
                    .as_ref()
                    .is_some_and(|v| v.state == "streaming")
            })
            .count();
        if following == 2 || tokio::time::Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    monitor.stop().await;

    let rto = Duration::try_from(killed_at.duration_until(first_write))?;
    let lost = check.missing.len();
    let mut report = String::from("\nprimary failure:\n");
    for line in outcome.report.to_string().lines() {
        report.push_str(&format!("  {line}\n"));
    }
    if let Some(why) = &outcome.plan.acknowledged_kept {
        report.push_str(&format!(
            "  promised: every acknowledged commit kept, as {why}\n"
        ));
    }
    report.push_str(&format!("  archive: {archive}\n"));
    report.push_str(&format!(
        "  kill -9 to the first write on {}: {:.1} s (RTO objective {})\n",
        outcome.plan.promote.name,
        rto.as_secs_f64(),
        objectives.rto
    ));
    report.push_str(&format!(
        "  rows: {} of {} acknowledged present, {lost} lost (RPO objective {}: no acknowledged \
         commit lost)\n",
        check.present,
        expected.len(),
        objectives.rpo
    ));
    report.push_str(&format!(
        "  old primary: {:?} in {} ms; the cluster now:\n{}",
        rejoined.method,
        rejoined.timeline.elapsed().as_millis(),
        indent(&state.to_string())
    ));
    let met = rto <= objectives.rto.as_duration() && lost == 0 && state.problems().is_empty();
    Ok((met, report))
}

/// Waits until the archiver holds a segment the new primary completed on
/// its timeline, then checks the archive: the old timeline whole up to the
/// switch, the new one from there. Says how it stands.
async fn archive_continues(
    archiver: &ArchiverHandle,
    new_primary: &Postgres,
    repo: &Arc<Repository>,
    component: &ComponentId,
) -> Result<String> {
    let session = new_primary.connect("postgres").await?;
    let switched: String = session
        .query_one("SELECT pg_switch_wal()::text", &[])
        .await?
        .get(0);
    let switched: dr_core::Lsn = switched.parse()?;
    tokio::time::timeout(Duration::from_secs(60), archiver.wait_for_flush(switched))
        .await
        .map_err(|_| "the archiver did not go on with the new primary within a minute")??;
    let journals = repo.segment_journals();
    let listing = list_archive(
        repo.as_ref(),
        journals.as_ref().map(|j| j as &dyn JournalSource),
        component,
        DEFAULT_SEGMENT_SIZE,
    )
    .await?;
    let Some(timeline) = listing.latest_timeline() else {
        return Err("the archive is empty".into());
    };
    let mut said = Vec::new();
    for tli in 1..=timeline {
        let segments: Vec<_> = listing
            .segments
            .keys()
            .filter(|s| s.timeline == tli)
            .collect();
        let gaps = segments
            .windows(2)
            .filter(|pair| pair[1].number != pair[0].number + 1)
            .count();
        if gaps > 0 {
            return Err(format!("the archive has {gaps} gaps on timeline {tli}").into());
        }
        if let (Some(first), Some(last)) = (segments.first(), segments.last()) {
            said.push(format!(
                "timeline {tli}: segments {:X} to {:X}",
                first.number, last.number
            ));
        }
    }
    Ok(format!(
        "{}, no gap (the history of timeline {timeline} stored: {})",
        said.join("; "),
        listing.histories.contains(&timeline)
    ))
}

/// The drill's power switch: a member that answers is made read-only; one
/// that does not was killed by the drill itself.
struct KilledOrReadOnly(SqlFence);

#[async_trait]
impl Fence for KilledOrReadOnly {
    async fn fence(&self, member: &Member) -> dr_core::Result<()> {
        if member.reachable {
            self.0.fence(member).await
        } else {
            Ok(())
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn step(what: &str) {
    println!("- {what}");
}

/// The repository directory: the caller's, or a temp one removed at exit.
enum Keep {
    Path(std::path::PathBuf),
    Temp(tempfile::TempDir),
}

impl Keep {
    fn path(&self) -> &std::path::Path {
        match self {
            Keep::Path(p) => p,
            Keep::Temp(t) => t.path(),
        }
    }
}
