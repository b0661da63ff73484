//! `drkit restore kubernetes/<name>`: a resource backup put back into the
//! cluster it came from or another (the DR cluster's context), with every
//! object's outcome, a summary, and the recovery report.

use std::path::PathBuf;

use dr_core::RecoveryTarget;
use dr_k8s::{ExistingPolicy, ObjectOutcome, Outcome, ResourceRestore, ResourceRestoreReport};
use dr_storage::Repository;
use drkit::Component;
use jiff::Timestamp;
use serde_json::json;

use crate::commands::target::TargetArg;
use crate::context::Context;
use crate::failure::{Failure, Outcome as CommandOutcome};
use crate::output::Output;

/// What a resource restore is asked for.
pub(crate) struct ResourceRestoreArgs {
    pub(crate) to: TargetArg,
    /// `from` -> `to`: the objects of namespace `from` go into `to`.
    pub(crate) namespace_map: Vec<(String, String)>,
    pub(crate) only_namespaces: Vec<String>,
    pub(crate) only_kinds: Vec<String>,
    pub(crate) existing: ExistingPolicy,
    pub(crate) dry_run: bool,
    /// Another cluster than the component's: its kubeconfig, its context.
    pub(crate) kubeconfig: Option<PathBuf>,
    pub(crate) context: Option<String>,
    pub(crate) incident_at: Option<Timestamp>,
    pub(crate) report_file: Option<PathBuf>,
}

/// Restores, printing every object's outcome and a summary; exit 1 when an
/// object failed, 3 when the restore missed an objective.
pub(crate) async fn restore(
    cx: &Context,
    repo: &Repository,
    component: &Component,
    args: ResourceRestoreArgs,
    out: &Output,
) -> CommandOutcome {
    let id = component.id();
    let target = match args.to.target() {
        Ok(RecoveryTarget::RestorePoint(_)) | Err(_) => {
            return Err(Failure::Usage(format!(
                "{id} is a kubernetes component: a resource backup restores as it was taken; \
                 --to latest, a time or a snapshot id"
            )));
        }
        Ok(target) => target,
    };
    let cluster = match (&args.kubeconfig, &args.context) {
        (None, None) => cx.kubernetes_cluster(component).await?,
        // Another cluster, or another context of the component's kubeconfig.
        (kubeconfig, context) => {
            let own = component.kubernetes().and_then(|k| k.kubeconfig());
            let kubeconfig = kubeconfig.as_deref().or(own);
            crate::cluster::connect(kubeconfig, context.as_deref()).await?
        }
    };
    let mut restore = ResourceRestore::new(cluster.clone(), id.clone())
        .only_namespaces(args.only_namespaces)
        .only_kinds(args.only_kinds)
        .existing(args.existing)
        .dry_run(args.dry_run);
    for (from, to) in args.namespace_map {
        restore = restore.map_namespace(from, to);
    }
    let restored = restore.restore_objects(repo, &target).await.map_err(|e| {
        let failure = Failure::of(format_args!("restoring {id} into {}", cluster.name()), &e);
        match e.kind() {
            dr_core::ErrorKind::InvalidInput => Failure::Usage(failure.to_string()),
            _ => failure,
        }
    })?;
    let failed = count(&restored, "failed");
    let recovery = if args.dry_run || failed > 0 {
        None
    } else {
        Some(restored.recovery_report(component.id(), component.objectives(), args.incident_at))
    };
    if let (Some(report), Some(path)) = (&recovery, &args.report_file) {
        crate::commands::restore::save(report, path)?;
    }
    if out.json {
        out.json(&json!({
            "component": id.to_string(),
            "snapshot": restored.snapshot.to_string(),
            "cluster": cluster.name(),
            "dry_run": restored.dry_run,
            "objects": restored.objects.iter().map(|o| {
                json!({ "object": o.object, "outcome": o.outcome.name(), "reason": o.outcome.reason() })
            }).collect::<Vec<_>>(),
            "summary": Outcome::NAMES
                .iter()
                .map(|name| (name.to_string(), json!(count(&restored, name))))
                .collect::<serde_json::Map<_, _>>(),
            "recovery": recovery,
        }))?;
    } else {
        for object in &restored.objects {
            out.line(object);
        }
        out.line(format_args!(
            "{} snapshot {} of {id} into {}: {}",
            if restored.dry_run {
                "dry run of"
            } else {
                "restored"
            },
            restored.snapshot,
            cluster.name(),
            Outcome::NAMES
                .iter()
                .map(|name| format!("{} {name}", count(&restored, name)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if let Some(report) = &recovery {
            out.line(report);
        }
    }
    if failed > 0 {
        let first: Vec<String> = restored
            .failures()
            .take(3)
            .map(ObjectOutcome::to_string)
            .collect();
        return Err(Failure::Failed(format!(
            "{failed} of {} objects of {id} failed to restore into {}: {}",
            restored.objects.len(),
            cluster.name(),
            first.join("; ")
        )));
    }
    match &recovery {
        Some(report) => crate::commands::restore::verdict(report),
        None => Ok(()),
    }
}

/// How many objects had the outcome `name`.
fn count(restored: &ResourceRestoreReport, name: &str) -> usize {
    restored
        .objects
        .iter()
        .filter(|o| o.outcome.name() == name)
        .count()
}
