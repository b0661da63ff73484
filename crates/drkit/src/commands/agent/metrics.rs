//! What the agent knows of its components, jobs and repository, and its
//! rendering in the Prometheus text format (version 0.0.4) for `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use dr_core::{Compliance, ComponentId, Rpo, Rto};
use dr_postgres::{ArchiverState, ArchiverStatus, StandbySlot, StandbySlotState};
use dr_storage::Usage;
use jiff::Timestamp;
use tokio::sync::watch;

/// What a scheduled run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Work {
    /// A base backup, then the component's retention.
    Backup,
    /// The latest base backup read back and checked.
    Verify,
    /// The repository's unneeded data removed.
    Prune,
    /// The latest backup restored into a scratch server and checked.
    RestoreTest,
}

impl Work {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Work::Backup => "backup",
            Work::Verify => "verify",
            Work::Prune => "prune",
            Work::RestoreTest => "restore-test",
        }
    }
}

/// A job: a component's backup or verify, or the repository's prune.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct JobKey {
    pub(crate) component: Option<ComponentId>,
    pub(crate) work: Work,
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.component {
            Some(id) => write!(f, "{} of {id}", self.work.as_str()),
            None => f.write_str(self.work.as_str()),
        }
    }
}

#[derive(Debug, Default)]
struct JobFigures {
    succeeded: u64,
    failed: u64,
    last_success: Option<Timestamp>,
    last_failure: Option<Timestamp>,
    last_duration: Option<Duration>,
    running: bool,
    next_run: Option<Timestamp>,
}

struct ComponentFigures {
    rpo: Rpo,
    rto: Rto,
    /// The last backup the agent took: how long it took and its size.
    last_backup: Option<(Duration, u64)>,
    /// The last restore test: its achieved RTO, and whether it passed.
    last_restore_test: Option<(Duration, bool)>,
    /// From the repository, at the last refresh.
    restorable_at: Option<Timestamp>,
    snapshots: Option<u64>,
    /// The running archiver's status, for components whose WAL is archived.
    archiver: Option<watch::Receiver<ArchiverStatus>>,
    /// Where the archiver's slot is held on the members of the component's
    /// cluster, for components with a `[component.failover]` table.
    standby_slots: Option<watch::Receiver<Vec<StandbySlot>>>,
    archiver_restarts: u64,
    /// For Redis components with `archiving`: each command archiver's
    /// progress (the component's own under `None`, or each shard's of a
    /// Cluster), none while it does not run.
    redis_archive: Option<BTreeMap<Option<ComponentId>, Option<RedisProgress>>>,
    /// Whether a primary took writes at the failover monitor's last probe.
    primary_up: Option<bool>,
    /// Failovers the monitor ran, and those refused or failed.
    failovers: (u64, u64),
}

/// A running Redis command archiver's progress.
type RedisProgress = watch::Receiver<Option<dr_redis::ArchiveProgress>>;

/// How far a Redis command archive holds its master's stream
/// (`ArchiveProgress`), as of now.
type RedisField = fn(&dr_redis::ArchiveProgress, Timestamp) -> Option<f64>;

/// The Redis command archivers' families: one sample per archiver, labelled
/// with its shard's archive for a Cluster.
fn redis_archives(
    out: &mut Exposition,
    components: &BTreeMap<ComponentId, ComponentFigures>,
    now: Timestamp,
) {
    let archivers = || {
        components.iter().flat_map(|(id, c)| {
            c.redis_archive
                .iter()
                .flatten()
                .map(move |(shard, progress)| (id, shard, progress))
        })
    };
    let labels = |id: &ComponentId, shard: &Option<ComponentId>| match shard {
        Some(shard) => vec![("component", id.to_string()), ("shard", shard.to_string())],
        None => vec![("component", id.to_string())],
    };
    out.family(
        "drkit_redis_archiver_up",
        "gauge",
        "1 while the Redis command archiver (of the component, or of one shard of a Cluster) follows its master.",
    );
    for (id, shard, progress) in archivers() {
        let up = if progress.is_some() { 1.0 } else { 0.0 };
        out.sample_owned("drkit_redis_archiver_up", &labels(id, shard), up);
    }
    let fields: [(&str, &str, RedisField); 4] = [
        (
            "drkit_redis_archive_lag_seconds",
            "How long ago the archive last held everything the Redis master had sent.",
            |p, now| Some(exposure(now, p.complete_at).as_secs_f64()),
        ),
        (
            "drkit_redis_archive_lag_bytes",
            "Bytes of the master's replication stream the archive lacked when the master was last asked (every 10 s).",
            |p, _| p.behind_master.map(|b| b as f64),
        ),
        (
            "drkit_redis_archiver_snapshots",
            "Full synchronizations the running Redis command archiver stored as snapshots: more than one means a master could not continue the archive's history.",
            |p, _| Some(f64::from(p.snapshots_taken)),
        ),
        (
            "drkit_redis_archived_offset",
            "The replication offset the Redis command archive holds up to.",
            |p, _| Some(p.archived.offset as f64),
        ),
    ];
    for (name, help, field) in fields {
        out.family(name, "gauge", help);
        for (id, shard, progress) in archivers() {
            let Some(progress) = progress.as_ref().and_then(|p| p.borrow().clone()) else {
                continue;
            };
            if let Some(value) = field(&progress, now) {
                out.sample_owned(name, &labels(id, shard), value);
            }
        }
    }
}

struct State {
    components: BTreeMap<ComponentId, ComponentFigures>,
    jobs: BTreeMap<JobKey, JobFigures>,
    usage: Option<Usage>,
    refreshed_at: Option<Timestamp>,
    refresh_failures: u64,
    stopping: bool,
    /// Whether the agent holds its Lease, where it has one.
    lease_held: Option<bool>,
}

/// What `/metrics` shows, updated by the agent's tasks.
pub(crate) struct Metrics {
    state: Mutex<State>,
}

/// What a refresh read from the repository for one component.
pub(crate) struct Standing {
    pub(crate) restorable_at: Option<Timestamp>,
    pub(crate) snapshots: u64,
}

impl Metrics {
    /// Figures for these components and their objectives.
    pub(crate) fn new(components: impl IntoIterator<Item = (ComponentId, Rto, Rpo)>) -> Self {
        let components = components
            .into_iter()
            .map(|(id, rto, rpo)| {
                let figures = ComponentFigures {
                    rpo,
                    rto,
                    last_backup: None,
                    last_restore_test: None,
                    restorable_at: None,
                    snapshots: None,
                    archiver: None,
                    standby_slots: None,
                    archiver_restarts: 0,
                    redis_archive: None,
                    primary_up: None,
                    failovers: (0, 0),
                };
                (id, figures)
            })
            .collect();
        Self {
            state: Mutex::new(State {
                components,
                jobs: BTreeMap::new(),
                usage: None,
                refreshed_at: None,
                refresh_failures: 0,
                stopping: false,
                lease_held: None,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves figures, not invariants.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_run(&self, job: &JobKey, at: Option<Timestamp>) {
        self.state().jobs.entry(job.clone()).or_default().next_run = at;
    }

    pub(crate) fn started(&self, job: &JobKey) {
        self.state().jobs.entry(job.clone()).or_default().running = true;
    }

    pub(crate) fn finished(&self, job: &JobKey, ok: bool, took: Duration) {
        let now = Timestamp::now();
        let mut state = self.state();
        let figures = state.jobs.entry(job.clone()).or_default();
        figures.running = false;
        figures.last_duration = Some(took);
        if ok {
            figures.succeeded += 1;
            figures.last_success = Some(now);
        } else {
            figures.failed += 1;
            figures.last_failure = Some(now);
        }
    }

    pub(crate) fn backed_up(&self, component: &ComponentId, took: Duration, bytes: u64) {
        if let Some(c) = self.state().components.get_mut(component) {
            c.last_backup = Some((took, bytes));
        }
    }

    pub(crate) fn archiver(
        &self,
        component: &ComponentId,
        status: watch::Receiver<ArchiverStatus>,
        standby_slots: Option<watch::Receiver<Vec<StandbySlot>>>,
    ) {
        if let Some(c) = self.state().components.get_mut(component) {
            c.archiver = Some(status);
            c.standby_slots = standby_slots;
        }
    }

    /// The component archives its Redis commands: shown as not running
    /// until an archiver starts.
    pub(crate) fn redis_archivers_expected(&self, component: &ComponentId) {
        if let Some(c) = self.state().components.get_mut(component) {
            c.redis_archive
                .get_or_insert_with(BTreeMap::new)
                .entry(None)
                .or_insert(None);
        }
    }

    /// A Redis command archiver (the component's, or one `shard`'s of a
    /// Cluster) started (`Some`, its progress) or stopped.
    pub(crate) fn redis_archiver(
        &self,
        component: &ComponentId,
        shard: Option<&ComponentId>,
        progress: Option<RedisProgress>,
    ) {
        if let Some(c) = self.state().components.get_mut(component) {
            let archivers = c.redis_archive.get_or_insert_with(BTreeMap::new);
            if shard.is_some() {
                archivers.remove(&None);
            }
            archivers.insert(shard.cloned(), progress);
        }
    }

    pub(crate) fn restore_tested(&self, component: &ComponentId, rto: Duration, passed: bool) {
        if let Some(c) = self.state().components.get_mut(component) {
            c.last_restore_test = Some((rto, passed));
        }
    }

    pub(crate) fn primary_up(&self, component: &ComponentId, up: bool) {
        if let Some(c) = self.state().components.get_mut(component) {
            c.primary_up = Some(up);
        }
    }

    pub(crate) fn failed_over(&self, component: &ComponentId, done: bool) {
        if let Some(c) = self.state().components.get_mut(component) {
            if done {
                c.failovers.0 += 1;
            } else {
                c.failovers.1 += 1;
            }
        }
    }

    pub(crate) fn archiver_restarted(&self, component: &ComponentId) {
        if let Some(c) = self.state().components.get_mut(component) {
            c.archiver_restarts += 1;
        }
    }

    pub(crate) fn refreshed(&self, standings: Vec<(ComponentId, Standing)>, usage: Usage) {
        let mut state = self.state();
        for (id, standing) in standings {
            if let Some(c) = state.components.get_mut(&id) {
                c.restorable_at = standing.restorable_at;
                c.snapshots = Some(standing.snapshots);
            }
        }
        state.usage = Some(usage);
        state.refreshed_at = Some(Timestamp::now());
    }

    pub(crate) fn refresh_failed(&self) {
        self.state().refresh_failures += 1;
    }

    pub(crate) fn stopping(&self) {
        self.state().stopping = true;
    }

    pub(crate) fn lease_held(&self, held: bool) {
        self.state().lease_held = Some(held);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.state().stopping
    }

    /// The Prometheus text exposition of every figure, as of `now`.
    pub(crate) fn render(&self, now: Timestamp) -> String {
        let state = self.state();
        let mut out = Exposition::default();

        out.family(
            "drkit_up",
            "gauge",
            "1 while the agent runs, 0 once it is shutting down.",
        );
        out.sample("drkit_up", &[], if state.stopping { 0.0 } else { 1.0 });
        if let Some(held) = state.lease_held {
            out.family(
                "drkit_agent_lease_held",
                "gauge",
                "1 while the agent holds its [agent.lease] Lease and runs jobs, 0 while it \
                 stands by.",
            );
            out.sample("drkit_agent_lease_held", &[], if held { 1.0 } else { 0.0 });
        }

        render_jobs(&mut out, &state.jobs);
        render_components(&mut out, &state.components, now);

        out.family(
            "drkit_repository_stored_bytes",
            "gauge",
            "Bytes the repository occupies in its store, by kind of object.",
        );
        if let Some(usage) = state.usage {
            for (kind, bytes) in [
                ("packs", usage.pack_bytes),
                ("archive", usage.archive_bytes),
                ("metadata", usage.metadata_bytes),
            ] {
                out.sample(
                    "drkit_repository_stored_bytes",
                    &[("kind", kind)],
                    bytes as f64,
                );
            }
        }
        out.family(
            "drkit_repository_refresh_timestamp_seconds",
            "gauge",
            "When the repository's figures were last read.",
        );
        if let Some(at) = state.refreshed_at {
            out.sample(
                "drkit_repository_refresh_timestamp_seconds",
                &[],
                seconds(at),
            );
        }
        out.family(
            "drkit_repository_refresh_failures_total",
            "counter",
            "Reads of the repository's figures that failed.",
        );
        out.sample(
            "drkit_repository_refresh_failures_total",
            &[],
            state.refresh_failures as f64,
        );
        out.text
    }
}

fn render_jobs(out: &mut Exposition, jobs: &BTreeMap<JobKey, JobFigures>) {
    let labels = |key: &JobKey| -> Vec<(&'static str, String)> {
        let mut labels = Vec::new();
        if let Some(id) = &key.component {
            labels.push(("component", id.to_string()));
        }
        labels.push(("job", key.work.as_str().to_owned()));
        labels
    };
    out.family(
        "drkit_job_runs_total",
        "counter",
        "Finished runs of a job, by result.",
    );
    for (key, f) in jobs {
        for (result, n) in [("success", f.succeeded), ("failure", f.failed)] {
            let mut l = labels(key);
            l.push(("result", result.to_owned()));
            out.sample_owned("drkit_job_runs_total", &l, n as f64);
        }
    }
    type Field = fn(&JobFigures) -> Option<f64>;
    let gauges: [(&str, &str, Field); 5] = [
        (
            "drkit_job_last_success_timestamp_seconds",
            "When the job last succeeded.",
            |f| f.last_success.map(seconds),
        ),
        (
            "drkit_job_last_failure_timestamp_seconds",
            "When the job last failed.",
            |f| f.last_failure.map(seconds),
        ),
        (
            "drkit_job_last_duration_seconds",
            "How long the job's last run took.",
            |f| f.last_duration.map(|d| d.as_secs_f64()),
        ),
        ("drkit_job_running", "1 while the job runs.", |f| {
            Some(if f.running { 1.0 } else { 0.0 })
        }),
        (
            "drkit_job_next_run_timestamp_seconds",
            "When the job runs next by its schedule (or its retry).",
            |f| f.next_run.map(seconds),
        ),
    ];
    for (name, help, field) in gauges {
        out.family(name, "gauge", help);
        for (key, f) in jobs {
            if let Some(value) = field(f) {
                out.sample_owned(name, &labels(key), value);
            }
        }
    }
}

fn render_components(
    out: &mut Exposition,
    components: &BTreeMap<ComponentId, ComponentFigures>,
    now: Timestamp,
) {
    type Field = fn(&ComponentFigures, Timestamp) -> Option<f64>;
    let gauges: [(&str, &str, &str, Field); 15] = [
        (
            "drkit_cluster_primary_up",
            "gauge",
            "1 if a primary took writes at the failover monitor's last probe.",
            |c, _| c.primary_up.map(|up| if up { 1.0 } else { 0.0 }),
        ),
        (
            "drkit_failovers_total",
            "counter",
            "Failovers the failover monitor carried out.",
            |c, _| c.primary_up.map(|_| c.failovers.0 as f64),
        ),
        (
            "drkit_failovers_failed_total",
            "counter",
            "Failovers the failover monitor attempted that were refused or failed.",
            |c, _| c.primary_up.map(|_| c.failovers.1 as f64),
        ),
        (
            "drkit_restore_test_rto_seconds",
            "gauge",
            "The RTO the last restore test achieved: restored into a scratch server and checked.",
            |c, _| c.last_restore_test.map(|(rto, _)| rto.as_secs_f64()),
        ),
        (
            "drkit_restore_test_passed",
            "gauge",
            "1 if the last restore test's checks passed and it met the objectives.",
            |c, _| {
                c.last_restore_test
                    .map(|(_, ok)| if ok { 1.0 } else { 0.0 })
            },
        ),
        (
            "drkit_backup_last_duration_seconds",
            "gauge",
            "How long the last backup the agent took ran.",
            |c, _| c.last_backup.map(|(took, _)| took.as_secs_f64()),
        ),
        (
            "drkit_backup_last_bytes",
            "gauge",
            "The size of the last backup the agent took, before deduplication.",
            |c, _| c.last_backup.map(|(_, bytes)| bytes as f64),
        ),
        (
            "drkit_rpo_objective_seconds",
            "gauge",
            "The component's recovery point objective.",
            |c, _| Some(c.rpo.as_duration().as_secs_f64()),
        ),
        (
            "drkit_rto_objective_seconds",
            "gauge",
            "The component's recovery time objective.",
            |c, _| Some(c.rto.as_duration().as_secs_f64()),
        ),
        (
            "drkit_restorable_timestamp_seconds",
            "gauge",
            "The newest point a restore reaches: the last backup, or how far the archived WAL holds everything.",
            |c, _| c.restorable_at.map(seconds),
        ),
        (
            "drkit_rpo_exposure_seconds",
            "gauge",
            "Seconds of data at risk: the age of the newest restorable point.",
            |c, now| c.restorable_at.map(|at| exposure(now, at).as_secs_f64()),
        ),
        (
            "drkit_repository_snapshots",
            "gauge",
            "The component's snapshots in the repository.",
            |c, _| c.snapshots.map(|n| n as f64),
        ),
        (
            "drkit_wal_archiver_up",
            "gauge",
            "1 while the component's WAL archiver streams from the server.",
            |c, _| {
                c.archiver.as_ref().map(|a| {
                    let streaming = a.borrow().state == ArchiverState::Streaming;
                    if streaming { 1.0 } else { 0.0 }
                })
            },
        ),
        (
            "drkit_wal_archive_lag_seconds",
            "gauge",
            "How long the oldest WAL the server reported has waited to be archived.",
            |c, _| c.archiver.as_ref().map(|a| a.borrow().lag().as_secs_f64()),
        ),
        (
            "drkit_wal_archive_lag_bytes",
            "gauge",
            "WAL the server reported that the archive does not hold yet.",
            |c, _| c.archiver.as_ref().map(|a| a.borrow().lag_bytes() as f64),
        ),
    ];
    for (name, kind, help, field) in gauges {
        out.family(name, kind, help);
        for (id, c) in components {
            if let Some(value) = field(c, now) {
                out.sample(name, &[("component", id.as_str())], value);
            }
        }
    }
    redis_archives(out, components, now);
    out.family(
        "drkit_wal_archiver_restarts_total",
        "counter",
        "Times the agent started the component's WAL archiver again after it stopped.",
    );
    for (id, c) in components.iter().filter(|(_, c)| c.archiver.is_some()) {
        out.sample(
            "drkit_wal_archiver_restarts_total",
            &[("component", id.as_str())],
            c.archiver_restarts as f64,
        );
    }
    out.family(
        "drkit_wal_standby_slot_held",
        "gauge",
        "1 while the replica keeps the WAL the archive lacks in the archiver's slot (what a failover to it needs to archive on without a gap), 0 when it cannot be reached or the slot cannot be kept.",
    );
    for (id, c) in components {
        let Some(slots) = &c.standby_slots else {
            continue;
        };
        for slot in slots.borrow().iter() {
            let held = match slot.state {
                StandbySlotState::Held { .. } => 1.0,
                StandbySlotState::Failed { .. } => 0.0,
                _ => continue,
            };
            out.sample(
                "drkit_wal_standby_slot_held",
                &[("component", id.as_str()), ("member", &slot.member)],
                held,
            );
        }
    }
    out.family(
        "drkit_rpo_compliance",
        "gauge",
        "1 for the component's RPO state: met (at most half the objective used), at_risk, or missed (also when nothing is restorable).",
    );
    for (id, c) in components {
        let state = match c.restorable_at {
            Some(at) => match Compliance::of(exposure(now, at), c.rpo.as_duration()) {
                Compliance::Met { .. } => "met",
                Compliance::AtRisk { .. } => "at_risk",
                Compliance::Missed { .. } => "missed",
            },
            // Not yet read: no claim either way.
            None if c.snapshots.is_none() => continue,
            None => "missed",
        };
        for candidate in ["met", "at_risk", "missed"] {
            out.sample(
                "drkit_rpo_compliance",
                &[("component", id.as_str()), ("state", candidate)],
                if candidate == state { 1.0 } else { 0.0 },
            );
        }
    }
}

fn exposure(now: Timestamp, at: Timestamp) -> Duration {
    now.duration_since(at).try_into().unwrap_or(Duration::ZERO)
}

fn seconds(at: Timestamp) -> f64 {
    at.as_millisecond() as f64 / 1000.0
}

/// The text being written.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    fn sample_owned(&mut self, name: &str, labels: &[(&'static str, String)], value: f64) {
        let borrowed: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.sample(name, &borrowed, value);
    }
}

/// A label value: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// A help text: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

/// A sample value as Prometheus reads it.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> ComponentId {
        text.parse().unwrap()
    }

    fn metrics() -> Metrics {
        Metrics::new([(
            id("postgres/main"),
            "30m".parse().unwrap(),
            "10m".parse().unwrap(),
        )])
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        assert_eq!(escape_help("a\\b\nc"), r"a\\b\nc");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(3.0), "3");
    }

    #[test]
    fn compliance_follows_the_age_of_the_newest_restorable_point() {
        let m = metrics();
        let now = Timestamp::now();
        let state_of = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("drkit_rpo_compliance{") && l.ends_with(" 1"))
                .map(str::to_owned)
        };
        // Not read yet: no claim.
        assert_eq!(state_of(&m.render(now)), None);
        let standing = |at: Option<Timestamp>| {
            vec![(
                id("postgres/main"),
                Standing {
                    restorable_at: at,
                    snapshots: 1,
                },
            )]
        };
        for (age_minutes, state) in [(2, "met"), (7, "at_risk"), (12, "missed")] {
            let at = now
                .checked_sub(jiff::SignedDuration::from_mins(age_minutes))
                .unwrap();
            m.refreshed(standing(Some(at)), Usage::default());
            let line = state_of(&m.render(now)).unwrap();
            assert!(
                line.contains(&format!("state=\"{state}\"")),
                "{age_minutes}: {line}"
            );
        }
        m.refreshed(standing(None), Usage::default());
        assert!(state_of(&m.render(now)).unwrap().contains("missed"));
    }

    #[test]
    fn every_sample_follows_its_family_header() {
        let m = metrics();
        let backup = JobKey {
            component: Some(id("postgres/main")),
            work: Work::Backup,
        };
        m.started(&backup);
        m.finished(&backup, true, Duration::from_millis(1500));
        m.finished(
            &JobKey {
                component: None,
                work: Work::Prune,
            },
            false,
            Duration::ZERO,
        );
        m.backed_up(&id("postgres/main"), Duration::from_secs(2), 4096);
        m.restore_tested(&id("postgres/main"), Duration::from_secs(95), false);
        let text = m.render(Timestamp::now());
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert!(
                    declared.insert(rest.split(' ').next().unwrap().to_owned()),
                    "{line}"
                );
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{line} before its # TYPE");
            }
        }
        assert!(text.contains(
            "drkit_job_runs_total{component=\"postgres/main\",job=\"backup\",result=\"success\"} 1"
        ));
        assert!(text.contains("drkit_job_runs_total{job=\"prune\",result=\"failure\"} 1"));
        assert!(text.contains("drkit_backup_last_bytes{component=\"postgres/main\"} 4096"));
        assert!(text.contains("drkit_restore_test_rto_seconds{component=\"postgres/main\"} 95"));
        assert!(text.contains("drkit_restore_test_passed{component=\"postgres/main\"} 0"));
        assert!(text.contains("drkit_job_running{component=\"postgres/main\",job=\"backup\"} 0"));
    }
}
