//! The failover monitor of each PostgreSQL cluster or Redis replication set
//! whose `[component.failover]` asks for automatic failover: dr-core's
//! `Monitor` over dr-postgres's `PgFailover` or dr-redis's `RedisFailover`,
//! with the component's fence (its own protocol for a member that answers, the
//! `fence_command` for one that does not) under the repository's lease, its
//! events logged and counted in `/metrics`.

use std::sync::Arc;

use dr_core::{ComponentId, FailoverLease, FailoverMode, Monitor, MonitorEvent, MonitorOptions};

use super::{Agent, stopped};
use crate::commands::failover::{CommandRewire, failover_of, holder, request, settings};

/// Watches `component`'s primary until the agent stops.
pub(crate) async fn watch(agent: Arc<Agent>, component: ComponentId) {
    let mut handle = match start(&agent, &component).await {
        Ok(handle) => handle,
        Err(why) => {
            tracing::error!(%component, "the failover monitor did not start: {why}");
            return;
        }
    };
    let mut stop = agent.stop.clone();
    loop {
        let event = tokio::select! {
            event = handle.next_event() => event,
            () = stopped(&mut stop) => break,
        };
        let Some(event) = event else { break };
        match &event {
            MonitorEvent::PrimaryDown {
                last_primary,
                failures,
            } => {
                agent.metrics.primary_up(&component, false);
                tracing::warn!(%component, ?last_primary, failures, "no primary takes writes");
            }
            MonitorEvent::PrimaryUp { name } => {
                agent.metrics.primary_up(&component, true);
                tracing::info!(%component, primary = %name, "a primary takes writes again");
            }
            MonitorEvent::FailedOver(outcome) => {
                agent.metrics.primary_up(&component, true);
                agent.metrics.failed_over(&component, true);
                tracing::warn!(%component, "failed over:\n{}\n{}", outcome.plan, outcome.report);
            }
            MonitorEvent::FailoverFailed { reason } => {
                agent.metrics.failed_over(&component, false);
                tracing::error!(%component, "the failover did not happen: {reason}");
            }
            MonitorEvent::Refenced { name, result } => {
                tracing::warn!(%component, member = %name, ?result, "a second primary was fenced again");
            }
            _ => {}
        }
    }
    handle.stop().await;
}

async fn start(
    agent: &Agent,
    component: &ComponentId,
) -> Result<dr_core::MonitorHandle, crate::failure::Failure> {
    let settings_of = agent.cx.component(component.as_str())?;
    let failover = settings(settings_of)?;
    let Some(automatic) = failover.automatic() else {
        return Err(crate::failure::Failure::Usage(format!(
            "{component} does not ask for automatic failover"
        )));
    };
    let (watched, fence) = failover_of(&agent.cx, settings_of).await?;
    let lease: Arc<dyn FailoverLease> = agent.repo.clone();
    let options = MonitorOptions::new(automatic.interval, automatic.timeout, automatic.failures);
    tracing::info!(%component, "failover monitor starting");
    let mut monitor = Monitor::new(watched, options).fail_over_automatically(
        request(settings_of, failover, FailoverMode::Failover),
        fence,
        lease,
        holder("drkit-agent"),
    );
    if let Some(rewire) = CommandRewire::of(failover) {
        monitor = monitor.rewire(Arc::new(rewire));
    }
    Ok(monitor.spawn())
}
