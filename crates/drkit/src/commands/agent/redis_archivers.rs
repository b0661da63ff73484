//! The command archivers of each Redis component with `archiving = true`:
//! dr-redis's `CommandArchiver` following the master (and, where
//! `[component.failover]` names the replicas, whichever of them is
//! promoted), or for a `redis-cluster` component one per shard
//! (`ClusterArchiver`, each following its master and then whichever of its
//! replicas is promoted), each from where its archive ends; all started
//! again with backoff whenever one stops by itself. Their progress is in
//! `/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_core::{ComponentId, JournalSink};
use dr_redis::{ArchiveProgress, ClusterArchiver, CommandArchiver, archive_end};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
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
    agent.metrics.redis_archivers_expected(&component);
    loop {
        if agent.stopping() {
            return;
        }
        let started = Instant::now();
        let why = match run(&agent, &component, &mut stop).await {
            Ok(()) => return,
            Err(why) => why,
        };
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

/// One run of every archiver the component has (its master's, or each
/// shard's of a Cluster, as the layout is now) until the agent stops
/// (`Ok`, each sealed) or one gives up (the others stopped too, so that
/// the next run starts them all from the layout then).
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
    let archivers = if settings
        .redis()
        .is_some_and(drkit::RedisSettings::is_cluster)
    {
        ClusterArchiver::new(component.clone(), server)
            .shards(agent.repo.as_ref())
            .await
            .map_err(|e| crate::failure::chain(&e))?
            .into_iter()
            .map(|shard| (Some(shard.component), shard.archiver))
            .collect()
    } else {
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
        vec![(
            None,
            CommandArchiver::new(component.clone(), server).candidates(candidates),
        )]
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut runs: FuturesUnordered<_> = archivers
        .into_iter()
        .map(|(shard, archiver)| follow(agent, component, shard, archiver, stop_rx.clone()))
        .collect();
    let first = tokio::select! {
        first = runs.next() => first,
        () = stopped(stop) => None,
    };
    // Every archiver stops (sealing what it holds), whichever way this ends.
    stop_tx.send_replace(true);
    let mut failed = first.and_then(Result::err);
    while let Some(outcome) = runs.next().await {
        if let Err(why) = outcome {
            failed.get_or_insert(why);
        }
    }
    match failed {
        Some(why) => Err(why),
        None if agent.stopping() => Ok(()),
        None => Err("it stopped".to_owned()),
    }
}

/// Runs one archiver (the component's, or one `shard`'s) from where its
/// archive ends (or a full synchronization, stored as a snapshot) until
/// `stop` says so (`Ok`) or it gives up.
async fn follow(
    agent: &Agent,
    component: &ComponentId,
    shard: Option<ComponentId>,
    archiver: CommandArchiver,
    stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let archived = shard.clone().unwrap_or_else(|| component.clone());
    let from = archive_end(agent.repo.as_ref(), &archived)
        .await
        .map_err(|e| crate::failure::chain(&e))?
        .map(|(point, _)| point);
    let from_known = from.is_some();
    let (progress, watched) = watch::channel::<Option<ArchiveProgress>>(None);
    let archiver = archiver.progress(progress);
    let journals = agent.repo.segment_journals();
    tracing::info!(component = %archived, from = ?from, "Redis command archiver starting");
    agent
        .metrics
        .redis_archiver(component, shard.as_ref(), Some(watched.clone()));
    // Said as it happens: a new snapshot where the history could not go on.
    let told = {
        let (archived, mut watched) = (archived.clone(), watched);
        tokio::spawn(async move {
            let mut seen = 0;
            while watched.changed().await.is_ok() {
                let taken = watched
                    .borrow()
                    .as_ref()
                    .map_or(seen, |p| p.snapshots_taken);
                if taken > seen && (seen > 0 || from_known) {
                    tracing::warn!(
                        component = %archived,
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
    let _told = AbortOnDrop(told);
    let _forgetting = AbortOnDrop(tokio::spawn(forget_rolled_up(
        agent.repo.clone(),
        archived.clone(),
    )));
    let repo = agent.repo.clone();
    let outcome = archiver
        .run(
            repo.as_ref(),
            journals.as_ref().map(|j| j as &dyn JournalSink),
            repo.as_ref(),
            from,
            stop,
        )
        .await;
    agent
        .metrics
        .redis_archiver(component, shard.as_ref(), None);
    match outcome {
        Ok(done) => {
            tracing::info!(component = %archived, offset = done.archived.offset, "Redis command archiver stopped");
            Ok(())
        }
        Err(e) => Err(format!("{archived}: {}", crate::failure::chain(&e))),
    }
}

/// How often the segments a roll-up holds are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(10 * 60);

/// Forgets, every [`FORGET_EVERY`], the segments of `component`'s archive
/// that a roll-up holds whole: without journals (an object store) the
/// archiver stores each interval's record as a segment of its own, then
/// rolls them up as it seals, so that a day is not hundreds of thousands
/// of objects.
async fn forget_rolled_up(repo: Arc<dr_storage::Repository>, component: ComponentId) {
    loop {
        tokio::time::sleep(FORGET_EVERY).await;
        let forgotten = async {
            let names = dr_redis::rolled_up_segments(repo.as_ref(), &component).await?;
            if names.is_empty() {
                return Ok(0);
            }
            let report = repo.forget_segments(&component, &names).await?;
            Ok::<_, dr_core::Error>(report.forgotten.len())
        }
        .await;
        match forgotten {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(%component, segments = n, "forgot archive segments a roll-up holds")
            }
            Err(e) => tracing::warn!(
                %component,
                "could not forget the archive segments a roll-up holds (tried again later): {}",
                crate::failure::chain(&e)
            ),
        }
    }
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
