//! The continuous WAL archiver of each PostgreSQL component whose WAL is
//! archived: started at once, and started again with backoff whenever it
//! stops by itself (refused credentials, a server of another cluster, a
//! conflicting archive: errors its own reconnecting cannot heal). A
//! component with failover members is archived as a cluster: from whichever
//! member is the primary, with the archiver's slot kept on the replicas.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_core::ComponentId;
use dr_postgres::{ArchiverOptions, ArchiverState, WalArchiver};

use super::{Agent, stopped};

/// The longest wait before starting a stopped archiver again: WAL is the
/// RPO, so this stays short.
const MAX_WAIT: Duration = Duration::from_secs(5 * 60);
/// An archiver that ran this long before stopping starts again after the
/// first wait, not a grown one.
const HEALTHY_RUN: Duration = Duration::from_secs(10 * 60);

/// Keeps `component`'s archiver running until the agent stops, then shuts
/// it down (it stores what it received).
pub(crate) async fn archive(agent: Arc<Agent>, component: ComponentId) {
    let mut stop = agent.stop.clone();
    let mut wait = agent.settings.retry();
    let mut first = true;
    loop {
        if agent.stopping() {
            return;
        }
        if !first {
            agent.metrics.archiver_restarted(&component);
        }
        first = false;
        let started = Instant::now();
        let why = match start(&agent, &component).await {
            Err(failure) => failure.to_string(),
            Ok(handle) => {
                agent.metrics.archiver(
                    &component,
                    handle.subscribe(),
                    handle.subscribe_standby_slots(),
                );
                let mut status = handle.subscribe();
                let by_agent = tokio::select! {
                    _ = status.wait_for(|s| s.state == ArchiverState::Stopped) => false,
                    () = stopped(&mut stop) => true,
                };
                let last = handle.shutdown().await;
                if by_agent {
                    match last {
                        Ok(status) => tracing::info!(
                            %component,
                            flushed = %status.flushed,
                            "WAL archiver stopped"
                        ),
                        Err(e) => tracing::error!(%component, "WAL archiver stopped: {e}"),
                    }
                    return;
                }
                match last {
                    Err(e) => crate::failure::chain(&e),
                    Ok(status) => status
                        .last_error
                        .map_or_else(|| "it stopped".to_owned(), |e| e.message),
                }
            }
        };
        if started.elapsed() >= HEALTHY_RUN {
            wait = agent.settings.retry();
        }
        tracing::error!(
            %component,
            retry_in = %dr_core::Rto::new(wait),
            "the WAL archiver is not running: {why}"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(&mut stop) => return,
        }
        wait = (wait * 2).min(MAX_WAIT);
    }
}

/// Starts the archiver with the component's current connection settings
/// (a password file rewritten since is read again).
async fn start(
    agent: &Agent,
    component: &ComponentId,
) -> Result<dr_postgres::ArchiverHandle, crate::failure::Failure> {
    let settings = agent.cx.component(component.as_str())?;
    let (config, tls) = agent.cx.postgres(settings).await?;
    // With failover members, the archiver follows the primary and holds
    // WAL on the replicas for whichever is promoted.
    let cluster = settings
        .postgres()
        .and_then(|pg| pg.failover())
        .map(|failover| failover.cluster(component, &config, tls.clone()));
    let mut archiver = WalArchiver::new(
        config,
        tls,
        agent.repo.clone(),
        component.clone(),
        ArchiverOptions::new(),
    );
    if let Some(cluster) = cluster {
        archiver = archiver.cluster(cluster);
    }
    if let Some(journals) = agent.repo.segment_journals() {
        archiver = archiver.journals(Arc::new(journals));
    }
    tracing::info!(%component, "WAL archiver starting");
    Ok(archiver.spawn())
}
