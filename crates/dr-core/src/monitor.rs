//! [`Monitor`]: any [`Failover`]'s members assessed every interval (each
//! within a timeout, by [`Failover::assess_within`]: a real query or command
//! to each); after a number of probes in a row that find no primary taking
//! writes, a failover under the lease, by itself; and a former primary that
//! comes back writable fenced again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::failover::{
    Failover, FailoverHooks, FailoverLease, FailoverOutcome, FailoverRequest, Fence, Rewire, Role,
    execute,
};

/// How the monitor probes. No default for what it may lose: that is the
/// failover request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MonitorOptions {
    /// Time between probes.
    pub interval: Duration,
    /// How long a probe may take before it counts as failed.
    pub timeout: Duration,
    /// Failed probes in a row before the primary counts as lost.
    pub failures: u32,
    /// How long the failover lease is taken for.
    pub lease_ttl: Duration,
}

impl MonitorOptions {
    /// A probe every `interval`, failed after `timeout`, the primary lost
    /// after `failures` in a row; the lease taken for 30 s.
    pub fn new(interval: Duration, timeout: Duration, failures: u32) -> Self {
        Self {
            interval,
            timeout,
            failures: failures.max(1),
            lease_ttl: Duration::from_secs(30),
        }
    }

    /// How long the failover lease is taken for.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }
}

/// What the monitor saw or did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MonitorEvent {
    /// A probe found no primary taking writes (the count in a row).
    PrimaryDown {
        /// The primary last seen, if one was.
        last_primary: Option<String>,
        /// Failed probes in a row.
        failures: u32,
    },
    /// A primary takes writes: the first seen, one seen again after failed
    /// probes, or one another monitor promoted.
    PrimaryUp {
        /// Its name.
        name: String,
    },
    /// A failover ran.
    FailedOver(Box<FailoverOutcome>),
    /// A failover was refused or failed (the lease is another's, the loss
    /// guard refused, a fence failed); the monitor tries again at its next
    /// probe.
    FailoverFailed {
        /// Why.
        reason: String,
    },
    /// More than one member took writes: those that are not the primary
    /// this monitor promoted were fenced again.
    Refenced {
        /// The member fenced.
        name: String,
        /// Whether the fence held.
        result: Result<(), String>,
    },
}

/// Watches a cluster's primary, and fails it over when told to. The
/// failover's report counts its RTO from the first of the failed probes.
pub struct Monitor {
    failover: Arc<dyn Failover>,
    options: MonitorOptions,
    automatic: Option<Automatic>,
}

/// What an automatic failover needs: a fence that works without the old
/// primary, and a lease so that two monitors never both promote.
struct Automatic {
    request: FailoverRequest,
    fence: Arc<dyn Fence>,
    lease: Arc<dyn FailoverLease>,
    holder: String,
    rewire: Option<Arc<dyn Rewire>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("component", self.failover.component())
            .field("options", &self.options)
            .field("automatic", &self.automatic.as_ref().map(|a| &a.holder))
            .finish()
    }
}

impl Monitor {
    /// Watches `failover`'s cluster; reports only, until
    /// [`Monitor::fail_over_automatically`].
    pub fn new(failover: Arc<dyn Failover>, options: MonitorOptions) -> Self {
        Self {
            failover,
            options,
            automatic: None,
        }
    }

    /// Fails over by itself once the primary is lost, as `request` allows,
    /// fencing with `fence` (which must work without the old primary: it
    /// does not answer), under `lease` held as `holder`.
    #[must_use]
    pub fn fail_over_automatically(
        mut self,
        request: FailoverRequest,
        fence: Arc<dyn Fence>,
        lease: Arc<dyn FailoverLease>,
        holder: impl Into<String>,
    ) -> Self {
        self.automatic = Some(Automatic {
            request,
            fence,
            lease,
            holder: holder.into(),
            rewire: None,
        });
        self
    }

    /// Points clients at the new primary after an automatic failover.
    #[must_use]
    pub fn rewire(mut self, rewire: Arc<dyn Rewire>) -> Self {
        if let Some(automatic) = &mut self.automatic {
            automatic.rewire = Some(rewire);
        }
        self
    }

    /// Starts watching on a task of its own.
    pub fn spawn(self) -> MonitorHandle {
        let (events_tx, events) = mpsc::channel(64);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run(events_tx, stopped));
        MonitorHandle { events, stop, task }
    }

    async fn run(self, events: mpsc::Sender<MonitorEvent>, mut stopped: watch::Receiver<bool>) {
        let mut failures = 0u32;
        // When the first of the failed probes in a row was: the incident,
        // as far as the monitor knows, which the RTO counts from.
        let mut first_failure: Option<jiff::Timestamp> = None;
        let mut last_primary: Option<String> = None;
        // The member this monitor promoted: the one primary it stands by.
        let mut promoted: Option<String> = None;
        let mut ticks = tokio::time::interval(self.options.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped.changed() => return,
            }
            let Ok(assessment) = self.failover.assess_within(self.options.timeout).await else {
                // The cluster could not be looked at at all (its
                // configuration): no member to judge; the next probe tries again.
                continue;
            };
            let writable: Vec<String> = assessment
                .members
                .iter()
                .filter(|m| m.role == Role::Primary && m.reachable)
                .map(|m| m.name.clone())
                .collect();
            if writable.len() > 1 {
                // A former primary came back writable beside the new one.
                if let (Some(keep), Some(automatic)) = (&promoted, &self.automatic) {
                    for name in writable.iter().filter(|n| *n != keep) {
                        let Some(member) = assessment.member(name) else {
                            continue;
                        };
                        let result = automatic
                            .fence
                            .fence(member)
                            .await
                            .map_err(|e| e.to_string());
                        let event = MonitorEvent::Refenced {
                            name: name.clone(),
                            result,
                        };
                        if events.send(event).await.is_err() {
                            return;
                        }
                    }
                }
                continue;
            }
            if let [one] = writable.as_slice() {
                if failures > 0 || last_primary.as_deref() != Some(one.as_str()) {
                    let event = MonitorEvent::PrimaryUp { name: one.clone() };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
                failures = 0;
                first_failure = None;
                last_primary = Some(one.clone());
                continue;
            }
            failures += 1;
            let detected = *first_failure.get_or_insert(assessment.assessed_at);
            let event = MonitorEvent::PrimaryDown {
                last_primary: last_primary.clone(),
                failures,
            };
            if events.send(event).await.is_err() {
                return;
            }
            let Some(automatic) = &self.automatic else {
                continue;
            };
            if failures < self.options.failures {
                continue;
            }
            let hooks = FailoverHooks {
                lease: Some((
                    automatic.lease.as_ref(),
                    automatic.holder.as_str(),
                    self.options.lease_ttl,
                )),
                fence: Some(automatic.fence.as_ref()),
                rewire: automatic.rewire.as_deref(),
            };
            let request = automatic.request.clone().incident_at(detected);
            let event = match execute(self.failover.as_ref(), &request, hooks).await {
                Ok(outcome) => {
                    failures = 0;
                    first_failure = None;
                    promoted = Some(outcome.plan.promote.name.clone());
                    last_primary.clone_from(&promoted);
                    MonitorEvent::FailedOver(Box::new(outcome))
                }
                Err(e) => MonitorEvent::FailoverFailed {
                    reason: e.to_string(),
                },
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// A running [`Monitor`].
#[derive(Debug)]
pub struct MonitorHandle {
    events: mpsc::Receiver<MonitorEvent>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl MonitorHandle {
    /// The next event; `None` once the monitor stopped.
    pub async fn next_event(&mut self) -> Option<MonitorEvent> {
        self.events.recv().await
    }

    /// Stops the monitor and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        drop(self.events);
        let _ = self.task.await;
    }
}
