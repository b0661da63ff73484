//! `drkit snapshots`: the committed snapshots, newest last, filtered by
//! component, time and labels.

use dr_core::Manifest;
use dr_storage::{Repository, SnapshotFilter};

use crate::failure::{Failure, Outcome};
use crate::output::{Output, bytes};

/// Lists what `filter` matches.
pub(crate) async fn run(repo: &Repository, filter: &SnapshotFilter, out: &Output) -> Outcome {
    let mut snapshots = repo
        .snapshots_matching(filter)
        .await
        .map_err(|e| Failure::of("listing the snapshots", &e))?;
    snapshots.sort_by_key(|m| m.id);
    if out.json {
        return out.json(&snapshots);
    }
    if snapshots.is_empty() {
        out.line("no snapshots");
        return Ok(());
    }
    out.line(format_args!(
        "{:<32} {:<28} {:>10}  {:<20} labels",
        "id", "component", "size", "committed"
    ));
    for manifest in &snapshots {
        out.line(row(manifest));
    }
    Ok(())
}

fn row(manifest: &Manifest) -> String {
    let labels: Vec<String> = manifest
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{:<32} {:<28} {:>10}  {:<20} {}",
        manifest.id.to_string(),
        manifest.component.to_string(),
        bytes(manifest.total_size()),
        manifest
            .committed_at
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        labels.join(",")
    )
}
