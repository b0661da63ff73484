//! The command archiver of each `redis` component with `archiving = true`:
//! dr-redis's `CommandArchiver` following the master (and, where
//! `[component.failover]` names the replicas, whichever of them is promoted),
//! from where the archive ends; started again with backoff whenever it
//! stops by itself. Its progress is in `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_core::{ComponentId, JournalSink};
use dr_redis::{ArchiveProgress, CommandArchiver, archive_end};
use tokio::sync::watch;

use super::{Agent, stopped};

/// The longest wait before starting a stopped archiver again.
const MAX_WAIT: Duration = Duration::from_secs(5 * 60);
/// An archiver that ran this long before stopping starts again after the
/// first wait, not a grown one.
const HEALTHY_RUN: Duration = Duration::from_secs(10 * 60);

/// Keeps `component`'s archiver running until the agent stops; it then
/// seals what it holds.
pub(crate) async fn archive(agent: Arc<Agent>, component: ComponentId) {
    let mut stop = agent.stop.clone();
    let mut wait = agent.settings.retry();
    agent.metrics.redis_archiver(&component, None);
    loop {
        if agent.stopping() {
            return;
        }
        let started = Instant::now();
        let why = match run(&agent, &component, &mut stop).await {
            Ok(()) => return,
            Err(why) => why,
        };
        agent.metrics.redis_archiver(&component, None);
        if started.elapsed() >= HEALTHY_RUN {
            wait = agent.settings.retry();
        }
        tracing::error!(
            %component,
            retry_in = %dr_core::Rto::new(wait),
            "the Redis command archiver is not running: {why}"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(&mut stop) => return,
        }
        wait = (wait * 2).min(MAX_WAIT);
    }
}

/// One run: from where the archive ends (or a full synchronization, stored
/// as a snapshot) until the agent stops (`Ok`) or the archiver gives up.
async fn run(
    agent: &Agent,
    component: &ComponentId,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let settings = agent
        .cx
        .component(component.as_str())
        .map_err(|f| f.to_string())?;
    let server = agent
        .cx
        .redis_seed(settings)
        .await
        .map_err(|f| f.to_string())?;
    let mut candidates = Vec::new();
    if settings.redis().and_then(|r| r.failover()).is_some() {
        for (_, member) in crate::commands::failover::redis_members(&agent.cx, settings)
            .await
            .map_err(|f| f.to_string())?
        {
            if member.addr() != server.addr() {
                candidates.push(member);
            }
        }
    }
    let from = archive_end(agent.repo.as_ref(), component)
        .await
        .map_err(|e| crate::failure::chain(&e))?
        .map(|(point, _)| point);
    let from_known = from.is_some();
    let (progress, watched) = watch::channel::<Option<ArchiveProgress>>(None);
    let archiver = CommandArchiver::new(component.clone(), server)
        .candidates(candidates)
        .progress(progress);
    let journals = agent.repo.segment_journals();
    let (stop_tx, stop_rx) = watch::channel(false);
    tracing::info!(%component, from = ?from, "Redis command archiver starting");
    agent
        .metrics
        .redis_archiver(component, Some(watched.clone()));
    // Said as it happens: a new snapshot where the history could not go on.
    let told = {
        let (component, mut watched) = (component.clone(), watched);
        tokio::spawn(async move {
            let mut seen = 0;
            while watched.changed().await.is_ok() {
                let taken = watched
                    .borrow()
                    .as_ref()
                    .map_or(seen, |p| p.snapshots_taken);
                if taken > seen && (seen > 0 || from_known) {
                    tracing::warn!(
                        %component,
                        "the master could not continue the archive's history (its backlog no \
                         longer held the archive's end, or a failover forked it): its full \
                         synchronization was stored as a new snapshot, and the archive goes on \
                         from there"
                    );
                }
                seen = seen.max(taken);
            }
        })
    };
    let repo = agent.repo.clone();
    let running = async {
        archiver
            .run(
                repo.as_ref(),
                journals.as_ref().map(|j| j as &dyn JournalSink),
                repo.as_ref(),
                from,
                stop_rx,
            )
            .await
    };
    tokio::pin!(running);
    let _told = AbortOnDrop(told);
    let outcome = tokio::select! {
        outcome = &mut running => outcome,
        () = stopped(stop) => {
            stop_tx.send_replace(true);
            let outcome = running.await;
            if let Ok(done) = &outcome {
                tracing::info!(%component, offset = done.archived.offset, "Redis command archiver stopped");
            }
            return outcome.map(|_| ()).map_err(|e| crate::failure::chain(&e));
        }
    };
    match outcome {
        Ok(_) => Err("it stopped".to_owned()),
        Err(e) => Err(crate::failure::chain(&e)),
    }
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
