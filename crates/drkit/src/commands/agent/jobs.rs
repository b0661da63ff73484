//! The scheduled jobs: when each runs, and what a run does.
//!
//! A job's first run is its next scheduled time, except for a component's
//! backup: if a scheduled time passed after the component's latest base
//! backup in the repository (or there is none), that missed run happens
//! once at start, however many were missed. Verify and prune leave no
//! record in the repository, so they wait for their next scheduled time.
//!
//! A run takes its component's lock first, so two runs of one component
//! never overlap; with `[agent.lease]`, it runs only while the agent holds
//! the Lease (a run skipped for it is not retried: the holder runs it). A failed run is retried after the agent's `retry` wait,
//! doubling up to an hour, until the job's next scheduled time takes over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_core::{BackupBase, BackupRequest, ComponentId};
use drkit::{Job, Schedule};
use jiff::Timestamp;

use super::metrics::{JobKey, Work};
use super::{Agent, stopped};
use crate::commands::maintenance;
use crate::failure::Failure;

/// The longest wait between retries of a failed job.
const MAX_RETRY: Duration = Duration::from_secs(60 * 60);
/// The longest single sleep: the wall clock is read again after it, so a
/// clock set forward or back moves the next run accordingly.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// What a job of the config does; `None` for a kind this agent does not run.
pub(crate) fn work_of(job: Job) -> Option<Work> {
    match job {
        Job::Backup => Some(Work::Backup),
        Job::Verify => Some(Work::Verify),
        Job::RestoreTest => Some(Work::RestoreTest),
        _ => None,
    }
}

/// When a run is due, and the scheduled time it makes up for if it is a
/// run missed while the agent was down.
#[derive(Debug, Clone, Copy)]
struct Due {
    at: Timestamp,
    missed: Option<Timestamp>,
}

/// How a run went.
enum Ran {
    Done,
    /// A missed backup another run already made up for.
    Skipped,
    Failed(Failure),
    /// The agent stopped before the run began.
    Stopped,
}

/// Runs `job` by `schedule` until the agent stops.
pub(crate) async fn scheduled(agent: Arc<Agent>, job: JobKey, schedule: Schedule) {
    let mut stop = agent.stop.clone();
    let mut due = first_due(&agent, &job, &schedule).await;
    loop {
        let Some(next) = due else {
            tracing::warn!(%job, %schedule, "the schedule has no further run");
            agent.metrics.next_run(&job, None);
            return;
        };
        agent.metrics.next_run(&job, Some(next.at));
        if !sleep_until(next.at, &mut stop).await {
            return;
        }
        if !run_with_retries(&agent, &job, &schedule, next).await {
            return;
        }
        due = schedule
            .next_after_timestamp(Timestamp::now())
            .map(|at| Due {
                at: at.timestamp(),
                missed: None,
            });
    }
}

/// The first run: a backup missed while the agent was down, now; else the
/// next scheduled time.
async fn first_due(agent: &Agent, job: &JobKey, schedule: &Schedule) -> Option<Due> {
    let now = Timestamp::now();
    let next = || {
        schedule.next_after_timestamp(now).map(|at| Due {
            at: at.timestamp(),
            missed: None,
        })
    };
    let (Work::Backup, Some(component)) = (job.work, &job.component) else {
        return next();
    };
    match latest_backup(agent, component).await {
        Ok(None) => {
            tracing::info!(%job, "no base backup in the repository: running one now");
            Some(Due {
                at: now,
                missed: Some(now),
            })
        }
        Ok(Some(latest)) => match schedule.next_after_timestamp(latest) {
            Some(missed) if missed.timestamp() <= now => {
                tracing::info!(
                    %job,
                    missed = %missed,
                    "a scheduled backup was missed since the latest one: running it now, once"
                );
                Some(Due {
                    at: now,
                    missed: Some(missed.timestamp()),
                })
            }
            _ => next(),
        },
        // The run reads the repository again and reports what fails.
        Err(failure) => {
            tracing::warn!(%job, "{failure}; running the backup now in case one was missed");
            Some(Due {
                at: now,
                missed: None,
            })
        }
    }
}

/// When the component's latest backup was committed.
async fn latest_backup(
    agent: &Agent,
    component: &ComponentId,
) -> Result<Option<Timestamp>, Failure> {
    let settings = agent.cx.component(component.as_str())?;
    Ok(crate::kinds::latest_backup(&agent.repo, settings)
        .await?
        .map(|m| m.committed_at))
}

/// Runs `job`, retrying a failure with backoff while its next scheduled
/// time is further away than the retry. False if the agent stopped.
async fn run_with_retries(agent: &Agent, job: &JobKey, schedule: &Schedule, due: Due) -> bool {
    let mut stop = agent.stop.clone();
    let mut wait = agent.settings.retry();
    loop {
        let failure = match run_once(agent, job, due.missed).await {
            Ran::Done | Ran::Skipped => return true,
            Ran::Stopped => return false,
            Ran::Failed(failure) => failure,
        };
        let now = Timestamp::now();
        let retry_at = now.checked_add(wait).unwrap_or(now);
        match schedule.next_after_timestamp(now) {
            Some(next) if next.timestamp() <= retry_at => {
                tracing::error!(%job, next = %next, "failed: {failure}; the next scheduled run takes over");
                return true;
            }
            _ => tracing::error!(%job, retry_at = %retry_at, "failed: {failure}; retrying"),
        }
        agent.metrics.next_run(job, Some(retry_at));
        if !sleep_until(retry_at, &mut stop).await {
            return false;
        }
        wait = (wait * 2).min(MAX_RETRY);
    }
}

/// One run of `job` under its component's lock.
async fn run_once(agent: &Agent, job: &JobKey, missed: Option<Timestamp>) -> Ran {
    let mut stop = agent.stop.clone();
    let lock = job
        .component
        .as_ref()
        .and_then(|id| agent.busy.get(id))
        .cloned();
    let _guard = match lock {
        Some(lock) => tokio::select! {
            guard = lock.lock_owned() => Some(guard),
            () = stopped(&mut stop) => return Ran::Stopped,
        },
        None => None,
    };
    if agent.stopping() {
        return Ran::Stopped;
    }
    if !agent.holds_lease() {
        tracing::info!(%job, "another agent holds the lease: not running it");
        return Ran::Skipped;
    }
    if let (Some(missed), Some(component), Work::Backup) = (missed, &job.component, job.work)
        && let Ok(Some(latest)) = latest_backup(agent, component).await
        && latest >= missed
    {
        tracing::info!(%job, "a backup after the missed time exists now; not running another");
        return Ran::Skipped;
    }
    tracing::info!(%job, "starting");
    agent.metrics.started(job);
    let started = Instant::now();
    let result = match (&job.work, &job.component) {
        (Work::Backup, Some(component)) => backup(agent, component).await,
        (Work::Verify, Some(component)) => verify(agent, component).await,
        (Work::RestoreTest, Some(component)) => restore_test(agent, component).await,
        (Work::Prune, _) => prune(agent).await,
        (_, None) => Err(Failure::Failed(format!("{job} names no component"))),
    };
    let took = started.elapsed();
    agent.metrics.finished(job, result.is_ok(), took);
    agent.refresh_now.notify_one();
    match result {
        Ok(()) => {
            tracing::info!(%job, seconds = took.as_secs_f64(), "done");
            Ran::Done
        }
        Err(failure) => Ran::Failed(failure),
    }
}

/// A base backup of `component`, then its retention.
async fn backup(agent: &Agent, component: &ComponentId) -> Result<(), Failure> {
    let settings = agent.cx.component(component.as_str())?;
    let backup = crate::kinds::backup_of(&agent.cx, settings).await?;
    let started = Instant::now();
    let mut request = BackupRequest::new(agent.repo.as_ref()).label("trigger", "schedule");
    if settings.livekit().is_some() {
        // Every minute: an unchanged state is only confirmed.
        request = request.base(BackupBase::LatestFull(agent.repo.as_ref()));
    }
    let report = backup
        .backup(request)
        .await
        .map_err(|e| Failure::of(format_args!("backing up {component}"), &e))?;
    let bytes = report.manifest.total_size();
    agent.metrics.backed_up(component, started.elapsed(), bytes);
    tracing::info!(%component, snapshot = %report.manifest.id, bytes, "backup committed");
    let plan = maintenance::apply_retention(&agent.repo, settings, false, Timestamp::now()).await?;
    if !plan.forget.is_empty() {
        tracing::info!(
            %component,
            forgotten = plan.forget.len(),
            policy = %settings.retention(),
            "retention applied"
        );
    }
    Ok(())
}

/// The latest base backup of `component`, read back and checked.
async fn verify(agent: &Agent, component: &ComponentId) -> Result<(), Failure> {
    let settings = agent.cx.component(component.as_str())?;
    let report = crate::kinds::verify_latest(&agent.repo, settings).await?;
    tracing::info!(%component, snapshot = %report.snapshot, bytes = report.bytes, "verified");
    Ok(())
}

/// The latest backup restored into a scratch server, checked and timed.
async fn restore_test(agent: &Agent, component: &ComponentId) -> Result<(), Failure> {
    let settings = agent.cx.component(component.as_str())?;
    let tested = crate::kinds::restore_test(&agent.cx, &agent.repo, settings, &[]).await?;
    let passed = tested.is_ok();
    let rto = tested.recovery.achieved_rto().as_duration();
    agent.metrics.restore_tested(component, rto, passed);
    if !tested.smoke.is_ok() {
        let failed: Vec<String> = tested
            .smoke
            .failures()
            .map(|o| format!("{}: {}", o.name, o.detail))
            .collect();
        return Err(Failure::Failed(format!(
            "the restore test's checks failed: {}",
            failed.join("; ")
        )));
    }
    if !tested.recovery.objectives_met() {
        return Err(Failure::MissedObjective(format!(
            "the restore test took {}, more than the RTO of {}",
            tested.recovery.achieved_rto(),
            settings.objectives().rto
        )));
    }
    tracing::info!(%component, rto = %tested.recovery.achieved_rto(), "restore test passed");
    Ok(())
}

/// The repository's unneeded data removed.
async fn prune(agent: &Agent) -> Result<(), Failure> {
    let report = agent
        .repo
        .prune(&dr_storage::PruneOptions::default())
        .await
        .map_err(|e| Failure::of("pruning the repository", &e))?;
    tracing::info!(
        packs_deleted = report.packs_deleted,
        packs_repacked = report.packs_repacked,
        bytes_deleted = report.bytes_deleted,
        "pruned"
    );
    Ok(())
}

/// Sleeps until the wall clock reaches `at`; false if the agent stopped first.
async fn sleep_until(at: Timestamp, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    loop {
        if *stop.borrow() {
            return false;
        }
        let left: Duration = at
            .duration_since(Timestamp::now())
            .try_into()
            .unwrap_or(Duration::ZERO);
        if left.is_zero() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(left.min(MAX_SLEEP)) => {}
            () = stopped(stop) => return false,
        }
    }
}
