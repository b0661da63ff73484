//! The repository's figures behind `/metrics`, read every `refresh` and
//! after each job: per component its snapshots and the newest point a
//! restore reaches (the latest base backup, or how far the archive held
//! everything the server wrote, from the archiver's coverage record), and
//! what the repository occupies.

use std::sync::Arc;

use dr_core::{ArchiveSource, SnapshotSource};

use super::metrics::Standing;
use super::{Agent, stopped};
use crate::failure::Failure;

/// Reads the figures until the agent stops.
pub(crate) async fn run(agent: Arc<Agent>) {
    let mut stop = agent.stop.clone();
    loop {
        match read(&agent).await {
            Ok((standings, usage)) => agent.metrics.refreshed(standings, usage),
            Err(failure) => {
                agent.metrics.refresh_failed();
                tracing::warn!("reading the repository's figures: {failure}");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(agent.settings.refresh()) => {}
            () = agent.refresh_now.notified() => {}
            () = stopped(&mut stop) => return,
        }
    }
}

async fn read(
    agent: &Agent,
) -> Result<(Vec<(dr_core::ComponentId, Standing)>, dr_storage::Usage), Failure> {
    let repo = agent.repo.as_ref();
    let mut standings = Vec::new();
    for component in agent.cx.config.components() {
        let id = component.id();
        let snapshots = repo
            .snapshots(id)
            .await
            .map_err(|e| Failure::of(format_args!("listing the snapshots of {id}"), &e))?;
        // One listing gives both the count and the newest backup.
        let last_backup = snapshots
            .iter()
            .filter(|m| crate::kinds::is_backup_of(component, m))
            .max_by_key(|m| m.id)
            .map(|m| m.recovery_point.at);
        // An archive's coverage counts from a backup on: the restore starts
        // from one (a Redis command archive replays onto a snapshot).
        let archives = component.postgres().is_some_and(|p| p.wal_archiving())
            || component
                .redis()
                .is_some_and(drkit::RedisSettings::archiving)
                && last_backup.is_some();
        let covered = if archives {
            repo.coverage(id)
                .await
                .map_err(|e| Failure::of(format_args!("reading the archive coverage of {id}"), &e))?
                .map(|c| c.seen_at)
        } else {
            None
        };
        standings.push((
            id.clone(),
            Standing {
                restorable_at: last_backup.max(covered),
                snapshots: snapshots.len() as u64,
            },
        ));
    }
    let usage = repo
        .usage()
        .await
        .map_err(|e| Failure::of("reading what the repository occupies", &e))?;
    Ok((standings, usage))
}
