//! [`Cluster::guard_rollout`]: the health-gated rollout of Veza's
//! Scenario 3. A rollout is watched with its health check; where it does
//! not finish healthy within its deadline, it is undone, and the report
//! says how long the rollback took.

use std::sync::Arc;
use std::time::Duration;

use dr_core::Timeline;
use jiff::Timestamp;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::health::HealthCheck;
use crate::rollout::Progress;
use crate::workload::Workload;

/// What a guarded rollout must do to be kept: finish within `deadline`,
/// then stay finished with its health check passing for a settling time;
/// `failures` failed checks in a row fail it at once.
#[derive(Clone)]
pub struct RolloutGuard {
    deadline: Duration,
    health: Option<Arc<dyn HealthCheck>>,
    failures: u32,
    interval: Duration,
    settle: Duration,
}

impl std::fmt::Debug for RolloutGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutGuard")
            .field("deadline", &self.deadline)
            .field("health", &self.health.as_ref().map(|h| h.describe()))
            .field("failures", &self.failures)
            .field("interval", &self.interval)
            .field("settle", &self.settle)
            .finish()
    }
}

impl RolloutGuard {
    /// A rollout that must finish within `deadline` (`kubectl rollout
    /// status`'s conditions) and stay finished and healthy for ten seconds
    /// after, looked at every second.
    pub fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            health: None,
            failures: 3,
            interval: Duration::from_secs(1),
            settle: Duration::from_secs(10),
        }
    }

    /// How long the rollout must stay finished, its health check passing
    /// every time, before it is kept: a release that fails a few seconds
    /// after its pods are ready is caught. Within the deadline.
    #[must_use]
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// And whose `health` check passes once it has; `failures` failed
    /// checks in a row (at least one) fail it before the deadline.
    #[must_use]
    pub fn health(mut self, health: Arc<dyn HealthCheck>, failures: u32) -> Self {
        self.health = Some(health);
        self.failures = failures.max(1);
        self
    }

    /// How often the rollout and the health check are looked at.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

/// How a guarded rollout ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardVerdict {
    /// It finished, and its health check passed.
    Kept,
    /// It failed and was undone.
    RolledBack {
        /// Why it failed.
        reason: String,
        /// The revision undone.
        from_revision: i64,
        /// The revision gone back to.
        to_revision: i64,
        /// Whether, after the undo rolled out, the health check passed
        /// again within the deadline (always `true` without one).
        recovered: bool,
    },
}

/// What [`Cluster::guard_rollout`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GuardedRollout {
    /// The workload.
    pub workload: Workload,
    /// How it ended.
    pub verdict: GuardVerdict,
    /// From the start of the watch to the verdict on the rollout.
    pub decided_after: Duration,
    /// From the failure seen to the undo rolled out (and healthy): the
    /// time to rollback; `None` where it was kept.
    pub time_to_rollback: Option<Duration>,
    /// The steps, timed.
    pub timeline: Timeline,
}

impl Cluster {
    /// Watches `workload`'s rollout (a Deployment's: its undo is
    /// kubectl's) and `guard`'s health check, and undoes the rollout where
    /// it fails: its progress deadline passed (`ProgressDeadlineExceeded`),
    /// the guard's deadline passed before it finished healthy, or the
    /// health check failed the guard's number of times in a row. After an
    /// undo it waits, within the deadline again, for the undo to roll out
    /// and the health check to pass.
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api) and
    /// [`Error::Client`](crate::Error::Client) reading the workload;
    /// what [`Cluster::rollout_undo`] and [`Cluster::rollout_status`]
    /// return for the undo (an undo that itself does not roll out in time
    /// is [`Error::TimedOut`](crate::Error::TimedOut)).
    pub async fn guard_rollout(
        &self,
        workload: &Workload,
        guard: &RolloutGuard,
    ) -> Result<GuardedRollout> {
        let what = format!("the rollout of {workload}");
        let mut timeline = Timeline::start_now();
        let started = Instant::now();
        let started_at = timeline.started_at();
        let deadline = started + guard.deadline;
        let mut failed_in_a_row = 0;
        let mut settled_since: Option<Instant> = None;
        let reason = loop {
            let (progress, status) = self.progress(workload, &what).await?;
            let rolled_out = match progress {
                Progress::Done(_) => true,
                Progress::Waiting(_) => false,
                Progress::Failed { reason, message } => {
                    break format!("the rollout failed: {reason}: {message}");
                }
            };
            let health = match &guard.health {
                Some(check) => Some((check.describe(), check.check().await)),
                None => None,
            };
            match &health {
                Some((_, Err(_))) => failed_in_a_row += 1,
                _ => failed_in_a_row = 0,
            }
            if let Some((check, Err(why))) = &health
                && failed_in_a_row >= guard.failures
            {
                break format!("{check} failed {failed_in_a_row} times in a row: {why}");
            }
            let good = rolled_out && health.as_ref().is_none_or(|(_, r)| r.is_ok());
            settled_since = if good {
                settled_since.or(Some(Instant::now()))
            } else {
                None
            };
            if settled_since.is_some_and(|since| since.elapsed() >= guard.settle) {
                timeline
                    .record_until_now("rollout finished and settled healthy", started_at)
                    .map_err(Error::Timing)?;
                return Ok(GuardedRollout {
                    workload: workload.clone(),
                    verdict: GuardVerdict::Kept,
                    decided_after: started.elapsed(),
                    time_to_rollback: None,
                    timeline,
                });
            }
            if Instant::now() >= deadline {
                let health = match &health {
                    Some((check, Err(why))) => format!("; {check}: {why}"),
                    _ => String::new(),
                };
                break format!(
                    "not rolled out and healthy for {:?} within {:?} (replicas {}, updated {}, available {}{health})",
                    guard.settle, guard.deadline, status.replicas, status.updated, status.available
                );
            }
            tokio::time::sleep(guard.interval).await;
        };
        timeline
            .record_until_now(format!("rollout failed: {reason}"), started_at)
            .map_err(Error::Timing)?;
        let decided_after = started.elapsed();
        let detected = Instant::now();
        let since = Timestamp::now();
        let undone = self.rollout_undo(workload, None).await?;
        timeline
            .record_until_now(format!("undo to revision {}", undone.to_revision), since)
            .map_err(Error::Timing)?;
        let since = Timestamp::now();
        self.rollout_status(workload, guard.deadline).await?;
        timeline
            .record_until_now("the undo rolled out", since)
            .map_err(Error::Timing)?;
        let recovered = match &guard.health {
            None => true,
            Some(check) => {
                let since = Timestamp::now();
                let recovered = self.healthy_within(check.as_ref(), guard).await;
                let step = if recovered {
                    format!("{} passes again", check.describe())
                } else {
                    format!("{} still failing", check.describe())
                };
                timeline
                    .record_until_now(step, since)
                    .map_err(Error::Timing)?;
                recovered
            }
        };
        Ok(GuardedRollout {
            workload: workload.clone(),
            verdict: GuardVerdict::RolledBack {
                reason,
                from_revision: undone.from_revision,
                to_revision: undone.to_revision,
                recovered,
            },
            decided_after,
            time_to_rollback: Some(detected.elapsed()),
            timeline,
        })
    }

    /// Whether `check` passes within the guard's deadline.
    async fn healthy_within(&self, check: &dyn HealthCheck, guard: &RolloutGuard) -> bool {
        let deadline = Instant::now() + guard.deadline;
        loop {
            if check.check().await.is_ok() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(guard.interval).await;
        }
    }
}
