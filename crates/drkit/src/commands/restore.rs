//! `drkit restore <component> --to <target> --target <dir>`: a new data
//! directory at the target, checked against the archive before anything is
//! written; the `RecoveryReport` printed, and saved with `--report`.

use std::path::{Path, PathBuf};

use dr_core::{
    Assessment, JournalSource, Objectives, RecoveryReport, RecoveryTarget, Restore, RestoreRequest,
};
use dr_postgres::{BaseBackupDetails, PitrRestore, base_backups, list_archive};
use dr_storage::Repository;
use jiff::Timestamp;

use crate::commands::target::TargetArg;
use crate::failure::{Failure, Outcome};
use crate::output::Output;

/// What a restore is asked for.
pub(crate) struct RestoreArgs<'a> {
    pub(crate) target: &'a TargetArg,
    pub(crate) data_dir: &'a Path,
    pub(crate) objectives: Objectives,
    /// When the incident happened, which starts the RTO clock.
    pub(crate) incident_at: Option<Timestamp>,
    /// Where to save the report as JSON.
    pub(crate) report_file: Option<PathBuf>,
}

/// Restores, prints the report, and fails with exit 3 if it missed an objective.
pub(crate) async fn run(
    restore: PitrRestore,
    repo: &Repository,
    args: RestoreArgs<'_>,
    out: &Output,
) -> Outcome {
    let component = restore.component().clone();
    let target = resolve(repo, &component, args.target).await?;
    let journals = repo.segment_journals();
    let progress = out.progress("extract base backup");
    let mut request = RestoreRequest::new(repo, &target, args.objectives).archive(repo);
    if let Some(journals) = &journals {
        request = request.journals(journals as &dyn JournalSource);
    }
    if let Some(at) = args.incident_at {
        request = request.incident_at(at);
    }
    if let Some(progress) = &progress {
        request = request.progress(progress);
    }
    let report = restore.restore(request).await.map_err(|e| {
        Failure::of(
            format_args!("restoring {component} into {}", args.data_dir.display()),
            &e,
        )
    })?;
    drop(progress);
    if let Some(path) = &args.report_file {
        save(&report, path)?;
    }
    print(&report, out)?;
    verdict(&report)
}

/// PostgreSQL's server programs, as `pg_config --bindir` names them.
pub(crate) async fn pg_bindir() -> Result<PathBuf, Failure> {
    let output = tokio::process::Command::new("pg_config")
        .arg("--bindir")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| {
            Failure::Usage(format!(
                "--start needs PostgreSQL's server programs: running pg_config failed ({e}); \
                 name their directory with --pg-bin"
            ))
        })?;
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !output.status.success() || !dir.join("pg_ctl").is_file() {
        return Err(Failure::Usage(format!(
            "--start needs pg_ctl, which pg_config --bindir ({}) does not have; \
             name the directory of PostgreSQL's server programs with --pg-bin",
            dir.display()
        )));
    }
    Ok(dir)
}

/// How to reach the restored server on its Unix socket: the component's
/// user, password and database, no host (the socket directory is used).
pub(crate) fn local_connection(component: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut local = tokio_postgres::Config::new();
    if let Some(user) = component.get_user() {
        local.user(user);
    }
    if let Some(password) = component.get_password() {
        local.password(password);
    }
    local.dbname(component.get_dbname().unwrap_or("postgres"));
    local
}

/// Prints a report: its steps and the achieved RTO and RPO against the objectives.
pub(crate) fn print(report: &RecoveryReport, out: &Output) -> Outcome {
    if out.json {
        return out.json(report);
    }
    out.line(report);
    Ok(())
}

/// Exit 3 when the restore succeeded but missed an objective. An
/// objective that could not be measured (the RPO of a restore to the latest
/// point without `--incident-at`) is not missed: the report says so.
pub(crate) fn verdict(report: &RecoveryReport) -> Outcome {
    let missed: Vec<String> = [
        ("RTO", report.rto_assessment()),
        ("RPO", report.rpo_assessment()),
    ]
    .into_iter()
    .filter(|(_, assessment)| matches!(assessment, Assessment::Missed { .. }))
    .map(|(objective, assessment)| format!("{objective}: {assessment}"))
    .collect();
    if missed.is_empty() {
        return Ok(());
    }
    Err(Failure::MissedObjective(format!(
        "the restore of {} missed its objectives ({})",
        report.component,
        missed.join("; ")
    )))
}

pub(crate) fn save(report: &RecoveryReport, path: &Path) -> Outcome {
    let json = serde_json::to_vec_pretty(report).map_err(|e| Failure::of("the report", &e))?;
    std::fs::write(path, json)
        .map_err(|e| Failure::of(format_args!("saving the report to {}", path.display()), &e))
}

/// Completes an LSN target with the cluster's identity: the system
/// identifier of the newest base backup, and the newest timeline in the
/// archive unless one was given.
async fn resolve(
    repo: &Repository,
    component: &dr_core::ComponentId,
    target: &TargetArg,
) -> Result<RecoveryTarget, Failure> {
    let (lsn, timeline) = match target.target() {
        Ok(target) => return Ok(target),
        Err(lsn) => lsn,
    };
    let newest = base_backups(repo, component)
        .await
        .map_err(|e| Failure::of("listing the base backups", &e))?
        .pop()
        .ok_or_else(|| Failure::Failed(format!("{component} has no base backup to restore")))?;
    let details = BaseBackupDetails::of(&newest)
        .map_err(|e| Failure::of(format_args!("base backup {}", newest.id), &e))?;
    let journals = repo.segment_journals();
    let listing = list_archive(
        repo,
        journals.as_ref().map(|j| j as &dyn JournalSource),
        component,
        details.wal_segment_size,
    )
    .await
    .map_err(|e| Failure::of(format_args!("listing the WAL archive of {component}"), &e))?;
    Ok(RecoveryTarget::Position(dr_core::Position::Postgres {
        system_identifier: details.system_identifier,
        timeline: timeline
            .or(listing.latest_timeline())
            .unwrap_or(details.end_timeline),
        lsn,
    }))
}
