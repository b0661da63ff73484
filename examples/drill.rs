//! A PostgreSQL disaster-recovery drill, start to finish, on this machine:
//!
//! 1. start a throwaway PostgreSQL and a write workload;
//! 2. stream its WAL into a local repository and take a base backup while
//!    the workload runs;
//! 3. the disaster: kill -9, and the data directory is lost;
//! 4. restore to the latest point, and to a moment in the past;
//! 5. check every row against the workload's log, and report the achieved
//!    RTO and RPO against the plan's objectives (PostgreSQL: RTO 30 minutes,
//!    RPO 15 minutes).
//!
//! Run: `cargo run --example drill` (or `scripts/drill`, which installs
//! PostgreSQL first where it can). `--repo <dir>` keeps the repository.

use std::sync::Arc;
use std::time::Duration;

use dr_core::{
    BackupExt, ComponentId, JournalSource, Objectives, RecoveryReport, RecoveryTarget, Restore,
    RestoreRequest,
};
use dr_postgres::{ArchiverOptions, BaseBackup, PitrRestore, Tls, WalArchiver, verify_base_backup};
use dr_storage::{FsBackend, InitOptions, Repository, Secret};
use dr_testkit::{Postgres, PostgresOptions};
use drkit_examples::{Comparison, RestoreTarget, Workload, kept_at, row_xids, transaction_ends};
use jiff::Timestamp;

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

    println!("\n=== drill report ===");
    print_restore("latest point", &latest, &latest_check, expected.len());
    print_restore(
        &format!("{past}"),
        &earlier,
        &earlier_check,
        expected_then.len(),
    );
    let all_met = latest.objectives_met() && earlier.objectives_met();
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
