//! The commands of a `postgres-dump` component beyond `backup`: `drkit
//! restore` of one database (whole, a schema or one table) into a new
//! database or over one, and `drkit restore-test` for either kind.

use dr_core::{RecoveryTarget, RestoreRequest};
use dr_postgres::{
    LogicalBackupDetails, LogicalRestore, RestoreInto, RestoreTestReport, Selection, SmokeCheck,
};
use dr_storage::Repository;
use drkit::Component;
use jiff::Timestamp;

use crate::commands::restore::{print, save, verdict};
use crate::commands::target::TargetArg;
use crate::context::Context;
use crate::failure::{Failure, Outcome};
use crate::output::Output;

/// What `drkit restore` of a dump is asked for.
pub(crate) struct DumpRestoreArgs {
    pub(crate) to: TargetArg,
    pub(crate) database: Option<String>,
    pub(crate) into: Option<String>,
    pub(crate) over: Option<String>,
    pub(crate) table: Option<String>,
    pub(crate) rename: Option<String>,
    pub(crate) schema: Option<String>,
    pub(crate) globals: bool,
    pub(crate) parallel: Option<(usize, std::path::PathBuf)>,
    pub(crate) checks: Vec<SmokeCheck>,
    pub(crate) incident_at: Option<Timestamp>,
    pub(crate) report_file: Option<std::path::PathBuf>,
}

/// Restores one database of the chosen dump and prints the report with the
/// smoke checks; a failed check is exit 1, a missed objective exit 3.
pub(crate) async fn restore(
    cx: &Context,
    repo: &Repository,
    component: &Component,
    args: DumpRestoreArgs,
    out: &Output,
) -> Outcome {
    let target = match args.to {
        TargetArg::Latest => RecoveryTarget::Latest,
        TargetArg::Time(at) => RecoveryTarget::Time(at),
        TargetArg::Snapshot(id) => RecoveryTarget::Snapshot(id),
        TargetArg::Lsn { .. } | TargetArg::RestorePoint(_) => {
            return Err(Failure::Usage(format!(
                "{} is a postgres-dump component: a dump restores as it was taken \
                 (--to latest, a time, or a snapshot id), not to a WAL position",
                component.id()
            )));
        }
    };
    let database = match args.database {
        Some(name) => name,
        None => only_database(repo, component).await?,
    };
    let into = match (args.over, args.into) {
        (Some(over), _) => RestoreInto::Over(over),
        (None, Some(into)) => RestoreInto::NewDatabase(into),
        (None, None) => RestoreInto::NewDatabase(format!("{database}_restored")),
    };
    let selection = match (args.table, args.schema) {
        (Some(table), _) => {
            let (schema, name) = table.split_once('.').unwrap_or(("public", table.as_str()));
            Selection::Table {
                schema: schema.to_owned(),
                name: name.to_owned(),
            }
        }
        (None, Some(schema)) => Selection::Schema(schema),
        (None, None) => Selection::Whole,
    };
    let (config, tls) = cx.postgres(component).await?;
    let connection = component.connection().ok_or_else(|| {
        Failure::Usage(format!("{} is not a PostgreSQL component", component.id()))
    })?;
    let into_name = into.database().to_owned();
    let mut restore = LogicalRestore::new(
        component.id().clone(),
        config,
        tls,
        connection.libpq_tls(),
        &database,
        into,
    )
    .selection(selection)
    .globals(args.globals)
    .tools(connection.pg_tools());
    for check in args.checks {
        restore = restore.check(check);
    }
    if let Some(name) = args.rename {
        restore = restore.rename_table(name);
    }
    if let Some((jobs, spool_dir)) = args.parallel {
        restore = restore.parallel(jobs, spool_dir);
    }
    let mut request = RestoreRequest::new(repo, &target, component.objectives());
    if let Some(at) = args.incident_at {
        request = request.incident_at(at);
    }
    let (report, smoke) = restore.restore_checked(request).await.map_err(|e| {
        Failure::of(
            format_args!(
                "restoring {database} of {} into {into_name}",
                component.id()
            ),
            &e,
        )
    })?;
    if let Some(path) = &args.report_file {
        save(&report, path)?;
    }
    if out.json {
        out.json(&serde_json::json!({ "recovery": report, "smoke": smoke }))?;
    } else {
        print(&report, out)?;
        for outcome in &smoke.outcomes {
            out.line(format_args!(
                "  {} {}: {}",
                if outcome.passed { "ok  " } else { "FAIL" },
                outcome.name,
                outcome.detail
            ));
        }
    }
    if !smoke.is_ok() {
        return Err(Failure::Failed(format!(
            "{} smoke checks failed on {into_name}",
            smoke.failures().count()
        )));
    }
    verdict(&report)
}

/// The one database the latest dump holds, or a usage error naming them.
async fn only_database(repo: &Repository, component: &Component) -> Result<String, Failure> {
    let latest = crate::kinds::latest_backup(repo, component)
        .await?
        .ok_or_else(|| Failure::Failed(format!("{} has no backup", component.id())))?;
    let details = LogicalBackupDetails::of(&latest)
        .map_err(|e| Failure::of(format_args!("reading snapshot {}", latest.id), &e))?;
    match details.databases.as_slice() {
        [only] => Ok(only.name.clone()),
        several => Err(Failure::Usage(format!(
            "the latest dump of {} holds {}: name one with --database",
            component.id(),
            several
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// `drkit restore-test`: the latest backup restored into a scratch server,
/// checked, timed, and the server removed. A failed check is exit 1, a
/// missed objective exit 3.
pub(crate) async fn restore_test(
    cx: &Context,
    repo: &Repository,
    component: &Component,
    checks: &[SmokeCheck],
    report_file: Option<&std::path::Path>,
    out: &Output,
) -> Outcome {
    let tested = crate::kinds::restore_test(cx, repo, component, checks).await?;
    if let Some(path) = report_file {
        let json = serde_json::to_vec_pretty(&tested).map_err(|e| Failure::of("the report", &e))?;
        std::fs::write(path, json).map_err(|e| {
            Failure::of(format_args!("saving the report to {}", path.display()), &e)
        })?;
    }
    print_test(&tested, out)?;
    if !tested.smoke.is_ok() {
        return Err(Failure::Failed(format!(
            "the restore test of {}: {} smoke checks failed",
            component.id(),
            tested.smoke.failures().count()
        )));
    }
    verdict(&tested.recovery)
}

fn print_test(tested: &RestoreTestReport, out: &Output) -> Outcome {
    if out.json {
        return out.json(tested);
    }
    if let Some(id) = tested.snapshot {
        out.line(format_args!("restored snapshot {id} into a scratch server"));
    }
    print(&tested.recovery, out)?;
    for outcome in &tested.smoke.outcomes {
        out.line(format_args!(
            "  {} {}: {}",
            if outcome.passed { "ok  " } else { "FAIL" },
            outcome.name,
            outcome.detail
        ));
    }
    Ok(())
}
