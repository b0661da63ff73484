//! `drkit backup <component>`: a base backup into the repository, full or
//! (`--delta`) against the component's latest full backup; or a dump, a
//! Redis snapshot, a Kubernetes resource backup.

use dr_core::{Backup, BackupBase, BackupReport, BackupRequest};
use dr_storage::Repository;

use crate::failure::{Failure, Outcome};
use crate::output::{Output, bytes};

/// Takes the backup and prints what it stored.
pub(crate) async fn run(
    backup: &dyn Backup,
    repo: &Repository,
    delta: bool,
    labels: &[(String, String)],
    out: &Output,
) -> Outcome {
    let mut request = BackupRequest::new(repo);
    if delta {
        request = request.base(BackupBase::LatestFull(repo));
    }
    for (key, value) in labels {
        request = request.label(key, value);
    }
    let progress = out.progress("backup");
    if let Some(progress) = &progress {
        request = request.progress(progress);
    }
    let report = backup
        .backup(request)
        .await
        .map_err(|e| Failure::of(format_args!("backing up {}", backup.component()), &e))?;
    drop(progress);
    print(&report, out)
}

/// `--forget`: after the backup, the component's retention policy applied.
pub(crate) async fn forget_after(
    repo: &Repository,
    component: &drkit::Component,
    out: &Output,
) -> Outcome {
    let plan = crate::commands::maintenance::apply_retention(
        repo,
        component,
        false,
        jiff::Timestamp::now(),
    )
    .await?;
    if !out.json {
        out.line(format_args!(
            "forgot {} snapshots of {} by \"{}\"",
            plan.forget.len(),
            component.id(),
            component.retention()
        ));
    }
    Ok(())
}

fn print(report: &BackupReport, out: &Output) -> Outcome {
    if out.json {
        return out.json(report);
    }
    let manifest = &report.manifest;
    out.line(format_args!(
        "snapshot {} of {}: {} in {} streams{}",
        manifest.id,
        manifest.component,
        bytes(manifest.total_size()),
        manifest.streams.len(),
        manifest
            .depends_on
            .filter(|_| !manifest.streams.is_empty())
            .map(|full| format!(", a delta against {full}"))
            .unwrap_or_default()
    ));
    if let Ok(Some(resources)) = manifest.details::<dr_k8s::ResourceBackupDetails>() {
        out.line(format_args!(
            "  {} objects of {} resources from {}{}{}",
            resources.objects,
            resources.resources,
            resources.cluster,
            if resources.secrets {
                ", Secrets included"
            } else {
                ""
            },
            match resources.unreadable {
                0 => String::new(),
                n => format!(
                    "; {n} resources or API groups could not be read \
                     (see contents.json in the snapshot)"
                ),
            }
        ));
    }
    if let Ok(Some(livekit)) = manifest.details::<dr_livekit::LiveKitSnapshotDetails>() {
        let c = livekit.counts;
        out.line(format_args!(
            "  {} rooms, {} participants, {} egress, {} agent dispatches, {} ingress, \
             {} SIP trunks, {} dispatch rules from {}{}",
            c.rooms,
            c.participants,
            c.egress,
            c.agent_dispatches,
            c.ingress,
            c.sip_trunks,
            c.sip_dispatch_rules,
            livekit.url,
            match livekit.unchanged_since {
                Some(full) => format!("; unchanged since {full}: confirmed, nothing stored"),
                None => String::new(),
            }
        ));
        for part in &livekit.unreadable {
            out.line(format_args!("  not read: {}: {}", part.what, part.reason));
        }
    }
    for step in report.timeline.steps() {
        out.line(format_args!(
            "  {:<20} {:.2} s",
            step.name,
            step.duration().as_secs_f64()
        ));
    }
    Ok(())
}
