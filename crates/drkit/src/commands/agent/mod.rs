//! `drkit agent`: the long-running form, for a server or a pod.
//!
//! - Every schedule of the config runs ([`jobs`]): a component's backups
//!   (each followed by its retention) and verifies, and the repository's
//!   prune. A backup missed while the agent was down runs once at start,
//!   found from the repository's snapshots (so a new pod knows it); two
//!   runs of one component never overlap; a failed run is retried with
//!   backoff until its next scheduled run.
//! - The WAL archiver of each PostgreSQL component with `wal_archiving`
//!   streams continuously ([`archivers`]), started again with backoff
//!   when it stops.
//! - A cluster whose `[component.failover]` asks for it is watched by the
//!   failover monitor ([`monitors`]), which fails it over by itself.
//! - `/metrics` and `/healthz` are served ([`http`]) from [`Metrics`],
//!   which the tasks update and [`refresh`] completes from the repository.
//! - With `[agent.lease]`, jobs run only while the agent holds that
//!   Kubernetes Lease ([`lease`]); it is released at shutdown.
//! - SIGTERM (or SIGINT) stops new work; a running job gets the
//!   `shutdown_grace` to finish, then is aborted (a backup aborted before
//!   its commit leaves no snapshot); the archivers store what they
//!   received and stop. A second signal aborts at once.

mod archivers;
mod http;
mod jobs;
mod lease;
mod metrics;
mod monitors;
mod redis_archivers;
mod refresh;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dr_core::ComponentId;
use dr_storage::Repository;
use drkit::AgentSettings;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinSet;

use self::metrics::{JobKey, Metrics, Work};
use crate::context::{Access, Context};
use crate::failure::{Failure, Outcome};

/// What the agent's tasks share.
pub(crate) struct Agent {
    cx: Context,
    settings: AgentSettings,
    repo: Arc<Repository>,
    metrics: Arc<Metrics>,
    /// One lock per component: its runs never overlap.
    busy: HashMap<ComponentId, Arc<Mutex<()>>>,
    /// Turns true when the agent stops taking new work.
    stop: watch::Receiver<bool>,
    /// Asks for the repository's figures to be read now.
    refresh_now: Notify,
    /// Whether this agent holds its `[agent.lease]`, where it has one.
    lease: Option<watch::Receiver<bool>>,
}

impl Agent {
    /// Whether the agent is stopping.
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Whether the agent may run jobs: it holds its Lease, or has none.
    fn holds_lease(&self) -> bool {
        self.lease.as_ref().is_none_or(|held| *held.borrow())
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Runs the agent until SIGTERM or SIGINT.
pub(crate) async fn run(cx: Context) -> Outcome {
    let settings = cx.config.agent().cloned().ok_or_else(|| {
        Failure::Usage(format!(
            "{} has no [agent] table; the agent needs at least its listen address \
             and prune schedule: [agent] listen = \"0.0.0.0:9187\" \
             prune = {{ cron = \"0 4 * * 0\" }}",
            cx.config.origin()
        ))
    })?;
    // Signals first: one arriving during the set-up must not kill the
    // process with the default action.
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| Failure::of("listening for SIGTERM", &e))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| Failure::of("listening for SIGINT", &e))?;

    let repo = Arc::new(cx.repository(Access::ReadWrite).await?);
    // Taken before any job is due: a missed backup runs at start only
    // where this agent holds it.
    let lease = match settings.lease() {
        Some(lease) => Some(Arc::new(lease::Lease::take(lease).await?)),
        None => None,
    };
    let listener = TcpListener::bind(settings.listen())
        .await
        .map_err(|e| Failure::of(format_args!("listening on {}", settings.listen()), &e))?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::of("reading the listening address", &e))?;
    cx.out.line(format_args!(
        "drkit agent: serving /metrics and /healthz on http://{address}"
    ));
    tracing::info!(%address, "serving /metrics and /healthz");

    let components = cx.config.components();
    let metrics = Arc::new(Metrics::new(components.iter().map(|c| {
        let objectives = c.objectives();
        (c.id().clone(), objectives.rto, objectives.rpo)
    })));
    let busy = components
        .iter()
        .map(|c| (c.id().clone(), Arc::new(Mutex::new(()))))
        .collect();
    let (stop_tx, stop) = watch::channel(false);
    let grace = settings.shutdown_grace();
    let agent = Arc::new(Agent {
        settings,
        repo,
        metrics: metrics.clone(),
        busy,
        stop: stop.clone(),
        refresh_now: Notify::new(),
        lease: lease.as_ref().map(|l| l.watch()),
        cx,
    });
    let renewer = lease
        .clone()
        .map(|lease| tokio::spawn(lease.keep(metrics.clone())));

    let mut jobs = JoinSet::new();
    for component in agent.cx.config.components() {
        for job in component.schedules() {
            let Some(work) = jobs::work_of(job.job()) else {
                tracing::warn!(component = %component.id(), job = %job.job(), "not a job the agent runs");
                continue;
            };
            let key = JobKey {
                component: Some(component.id().clone()),
                work,
            };
            jobs.spawn(jobs::scheduled(agent.clone(), key, job.schedule().clone()));
        }
    }
    let prune = JobKey {
        component: None,
        work: Work::Prune,
    };
    jobs.spawn(jobs::scheduled(
        agent.clone(),
        prune,
        agent.settings.prune().clone(),
    ));
    let mut background = JoinSet::new();
    for component in agent.cx.config.components() {
        if component.postgres().is_some_and(|p| p.wal_archiving()) {
            background.spawn(archivers::archive(agent.clone(), component.id().clone()));
        }
        if component
            .redis()
            .is_some_and(drkit::RedisSettings::archiving)
        {
            background.spawn(redis_archivers::archive(
                agent.clone(),
                component.id().clone(),
            ));
        }
        let automatic = component
            .postgres()
            .and_then(|p| p.failover())
            .or_else(|| component.redis().and_then(|r| r.failover()))
            .and_then(drkit::FailoverSettings::automatic);
        if automatic.is_some() {
            background.spawn(monitors::watch(agent.clone(), component.id().clone()));
        }
    }
    background.spawn(refresh::run(agent.clone()));
    let server = tokio::spawn(http::serve(listener, metrics.clone()));

    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!(
        signal = name,
        grace = %dr_core::Rto::new(grace),
        "stopping: no new work; running jobs may finish within the grace"
    );
    metrics.stopping();
    stop_tx.send_replace(true);

    let again = async {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    let finished = tokio::select! {
        done = tokio::time::timeout(grace, drain(&mut jobs)) => done.is_ok(),
        () = again => false,
    };
    if !finished {
        tracing::warn!("aborting the running jobs: a backup not committed leaves no snapshot");
        jobs.abort_all();
        drain(&mut jobs).await;
    }
    // No job runs now: the next agent may take over.
    if let (Some(renewer), Some(lease)) = (renewer, &lease) {
        renewer.abort();
        lease.release().await;
    }
    // The archivers store what they received; they get the grace too.
    if tokio::time::timeout(grace.max(Duration::from_secs(10)), drain(&mut background))
        .await
        .is_err()
    {
        tracing::warn!("the WAL archivers did not stop within the grace; aborting them");
        background.abort_all();
        drain(&mut background).await;
    }
    server.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Waits for every task of `set` to end.
async fn drain(set: &mut JoinSet<()>) {
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined
            && e.is_panic()
        {
            tracing::error!("an agent task panicked: {e}");
        }
    }
}
