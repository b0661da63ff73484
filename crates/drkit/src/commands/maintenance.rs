//! The repository's upkeep: `drkit verify` (read the data back and check
//! it), `drkit check` (the structure), `drkit forget` (each component's
//! retention policy from the config) and `drkit prune` (remove what no
//! snapshot needs).

use dr_storage::{Damage, ForgetPlan, PruneOptions, Repository, SnapshotFilter, VerifyOptions};
use drkit::{Component, Config};
use serde_json::json;

use crate::failure::{Failure, Outcome};
use crate::output::{Output, bytes};

/// Reads every pack and archive segment (or a random `fraction` of them)
/// and checks their content; any damage is exit 1, each object named.
pub(crate) async fn verify(repo: &Repository, fraction: f64, out: &Output) -> Outcome {
    let options = VerifyOptions::fraction(fraction)
        .map_err(|e| Failure::Usage(format!("--fraction: {e}")))?;
    let progress = out.progress("verify");
    let report = repo
        .verify_reporting(
            options,
            progress.as_ref().map(|p| p as &dyn dr_core::ProgressSink),
        )
        .await
        .map_err(|e| Failure::of("verifying the repository", &e))?;
    drop(progress);
    if out.json {
        out.json(&json!({
            "packs": report.packs,
            "blobs": report.blobs,
            "segments": report.segments,
            "journals": report.journals,
            "damaged": damage_json(&report.damaged),
        }))?;
    } else {
        out.line(format_args!(
            "read {} packs ({} blobs), {} archive segments and {} journals",
            report.packs, report.blobs, report.segments, report.journals
        ));
        for damage in &report.damaged {
            out.line(format_args!(
                "damaged: {}: {}",
                damage.object, damage.reason
            ));
        }
    }
    match report.damaged.len() {
        0 => Ok(()),
        n => Err(Failure::Failed(format!(
            "{n} damaged objects; restore from a snapshot that does not use them"
        ))),
    }
}

/// `drkit verify --component`: the component's latest base backup checked.
pub(crate) async fn verify_component(
    repo: &Repository,
    component: &Component,
    out: &Output,
) -> Outcome {
    let report = crate::kinds::verify_latest(repo, component).await?;
    let component = component.id();
    if out.json {
        return out.json(&json!({
            "component": component.to_string(),
            "snapshot": report.snapshot.to_string(),
            "checked": report.checked,
            "bytes": report.bytes,
            "findings": [],
        }));
    }
    out.line(format_args!(
        "snapshot {} of {component}: {} items and {} read back, sound",
        report.snapshot,
        report.checked,
        bytes(report.bytes)
    ));
    Ok(())
}

/// Damaged objects, each with why, as JSON.
fn damage_json(damaged: &[Damage]) -> serde_json::Value {
    damaged
        .iter()
        .map(|d| json!({ "object": d.object, "reason": d.reason }))
        .collect()
}

/// Checks the repository's structure without reading the data; any problem
/// is exit 1.
pub(crate) async fn check(repo: &Repository, out: &Output) -> Outcome {
    let report = repo
        .check()
        .await
        .map_err(|e| Failure::of("checking the repository", &e))?;
    if out.json {
        out.json(&json!({
            "snapshots": report.snapshots,
            "index_files": report.index_files,
            "packs": report.packs,
            "unindexed_packs": report.unindexed_packs,
            "segments": report.segments,
            "journals": report.journals,
            "unfinished_writes": report.unfinished_writes.len(),
            "problems": damage_json(&report.problems),
        }))?;
    } else {
        out.line(format_args!(
            "{} snapshots, {} index files, {} packs ({} not indexed), {} archive segments, \
             {} journals, {} unfinished writes",
            report.snapshots,
            report.index_files,
            report.packs,
            report.unindexed_packs,
            report.segments,
            report.journals,
            report.unfinished_writes.len()
        ));
        for problem in &report.problems {
            out.line(format_args!(
                "problem: {}: {}",
                problem.object, problem.reason
            ));
        }
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "{} problems in the repository",
            report.problems.len()
        )))
    }
}

/// Applies each component's retention policy; with `dry_run`, only says
/// what it would forget.
pub(crate) async fn forget(
    repo: &Repository,
    config: &Config,
    dry_run: bool,
    out: &Output,
) -> Outcome {
    let now = jiff::Timestamp::now();
    let mut listed = Vec::new();
    for component in config.components() {
        let plan = apply_retention(repo, component, dry_run, now).await?;
        let forgotten: Vec<String> = plan.forget.iter().map(|m| m.id.to_string()).collect();
        out.line(format_args!(
            "{}: {} {} of {} snapshots by \"{}\"",
            component.id(),
            if dry_run { "would forget" } else { "forgot" },
            forgotten.len(),
            forgotten.len() + plan.keep.len(),
            component.retention()
        ));
        for id in &forgotten {
            out.line(format_args!("  {id}"));
        }
        listed.push(json!({
            "component": component.id().to_string(),
            "forget": forgotten,
            "keep": plan.keep.iter().map(|(m, _)| m.id.to_string()).collect::<Vec<_>>(),
            "dry_run": dry_run,
        }));
    }
    if out.json {
        out.json(&listed)?;
    }
    Ok(())
}

/// Forgets the snapshots of `component` that its retention policy does
/// not keep as of `now` (with `dry_run`, only plans it); returns the plan.
pub(crate) async fn apply_retention(
    repo: &Repository,
    component: &Component,
    dry_run: bool,
    now: jiff::Timestamp,
) -> Result<ForgetPlan, Failure> {
    let filter = SnapshotFilter::new().component(component.id().clone());
    let plan = repo
        .plan_forget(&filter, component.retention(), now)
        .await
        .map_err(|e| Failure::of(format_args!("planning what {} forgets", component.id()), &e))?;
    if !dry_run && !plan.forget.is_empty() {
        repo.forget(&plan).await.map_err(|e| {
            Failure::of(
                format_args!("forgetting snapshots of {}", component.id()),
                &e,
            )
        })?;
    }
    Ok(plan)
}

/// Removes the data no snapshot needs any more, repacking where packs are
/// partly used.
pub(crate) async fn prune(repo: &Repository, dry_run: bool, out: &Output) -> Outcome {
    let mut options = PruneOptions::default();
    if dry_run {
        options = options.dry_run();
    }
    let report = repo
        .prune(&options)
        .await
        .map_err(|e| Failure::of("pruning the repository", &e))?;
    if out.json {
        return out.json(&json!({
            "dry_run": dry_run,
            "snapshots": report.snapshots,
            "packs_kept": report.packs_kept,
            "packs_deleted": report.packs_deleted,
            "packs_repacked": report.packs_repacked,
            "packs_written": report.packs_written,
            "bytes_deleted": report.bytes_deleted,
            "bytes_written": report.bytes_written,
        }));
    }
    out.line(format_args!(
        "{}{} packs deleted and {} repacked ({} freed, {} written); {} kept for {} snapshots",
        if dry_run { "would have: " } else { "" },
        report.packs_deleted,
        report.packs_repacked,
        bytes(report.bytes_deleted),
        bytes(report.bytes_written),
        report.packs_kept,
        report.snapshots
    ));
    Ok(())
}
