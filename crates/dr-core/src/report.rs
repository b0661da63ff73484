//! What a restore or failover reports: a timeline of steps, the RTO and RPO it
//! achieved, and how those compare with the component's objectives.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::ComponentId;
use crate::objectives::{Objectives, Rpo, Rto, format_duration};

/// One timestamped step of a recovery ("restore base backup", "replay WAL").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// What was done.
    pub name: String,
    /// When it began.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
}

impl Step {
    /// How long the step took.
    pub fn duration(&self) -> Duration {
        span(self.started_at, self.finished_at)
    }
}

/// The steps of a recovery, in the order they were recorded. Its start is the
/// moment the recovery (or the incident, see [`RecoveryReport::with_incident_at`])
/// began; no step may start before it or end before it starts.
///
/// ```
/// # use dr_core::Timeline;
/// let t0: jiff::Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
/// let mut timeline = Timeline::new(t0);
/// timeline.record("fence old primary", t0, "2026-11-21T10:00:05Z".parse().unwrap())?;
/// timeline.record("promote replica", "2026-11-21T10:00:05Z".parse().unwrap(), "2026-11-21T10:00:12Z".parse().unwrap())?;
/// assert_eq!(timeline.elapsed().as_secs(), 12);
/// # Ok::<(), dr_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeline {
    started_at: Timestamp,
    steps: Vec<Step>,
}

impl Timeline {
    /// An empty timeline starting at `started_at`.
    pub const fn new(started_at: Timestamp) -> Self {
        Self {
            started_at,
            steps: Vec::new(),
        }
    }

    /// An empty timeline starting now.
    pub fn start_now() -> Self {
        Self::new(Timestamp::now())
    }

    /// Records a step that ran from `started_at` to `finished_at`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if the step ends before it starts or starts
    /// before the timeline.
    pub fn record(
        &mut self,
        name: impl Into<String>,
        started_at: Timestamp,
        finished_at: Timestamp,
    ) -> Result<&Step> {
        let name = name.into();
        if finished_at < started_at {
            return Err(Error::invalid(
                format!("step {name:?}"),
                "ends before it starts",
            ));
        }
        if started_at < self.started_at {
            return Err(Error::invalid(
                format!("step {name:?}"),
                "starts before the timeline",
            ));
        }
        self.steps.push(Step {
            name,
            started_at,
            finished_at,
        });
        Ok(&self.steps[self.steps.len() - 1])
    }

    /// Records a step that began at `started_at` and ends now.
    ///
    /// # Errors
    /// As [`Timeline::record`].
    pub fn record_until_now(
        &mut self,
        name: impl Into<String>,
        started_at: Timestamp,
    ) -> Result<&Step> {
        self.record(name, started_at, Timestamp::now())
    }

    /// Records something that happened now and took no time (a warning, a
    /// fallback taken) as a step of no duration, so that it shows in its
    /// place among the steps.
    ///
    /// # Errors
    /// As [`Timeline::record`].
    pub fn mark(&mut self, name: impl Into<String>) -> Result<&Step> {
        let now = Timestamp::now();
        self.record(name, now, now)
    }

    /// Runs `work` and records it as the step `name`, from when it began to
    /// when it ended. A step that fails is not recorded: its error is returned.
    ///
    /// # Errors
    /// What `work` returns, or as [`Timeline::record`].
    pub async fn step<T, E>(
        &mut self,
        name: impl Into<String>,
        work: impl Future<Output = std::result::Result<T, E>>,
    ) -> std::result::Result<T, E>
    where
        E: From<Error>,
    {
        let name = name.into();
        self.step_named(work, move |_| name).await
    }

    /// As [`Timeline::step`], with the step named after what it returned
    /// ("check WAL (12 segments)").
    ///
    /// # Errors
    /// What `work` returns, or as [`Timeline::record`].
    pub async fn step_named<T, E>(
        &mut self,
        work: impl Future<Output = std::result::Result<T, E>>,
        name: impl FnOnce(&T) -> String,
    ) -> std::result::Result<T, E>
    where
        E: From<Error>,
    {
        let started_at = Timestamp::now();
        let value = work.await?;
        self.record_until_now(name(&value), started_at)?;
        Ok(value)
    }

    /// When the timeline began.
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// When the last step ended (the start, if there are none).
    pub fn finished_at(&self) -> Timestamp {
        self.steps
            .iter()
            .map(|s| s.finished_at)
            .max()
            .unwrap_or(self.started_at)
            .max(self.started_at)
    }

    /// From the start to the end of the last step.
    pub fn elapsed(&self) -> Duration {
        span(self.started_at, self.finished_at())
    }

    /// The recorded steps.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

/// How an achieved value compares with its objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Assessment {
    /// Within the objective, with this much to spare.
    Met {
        /// Objective minus achieved.
        margin: Duration,
    },
    /// Beyond the objective by this much.
    Missed {
        /// Achieved minus objective.
        by: Duration,
    },
    /// The achieved value could not be measured.
    Unmeasured,
}

impl Assessment {
    /// Compares `achieved` with `objective`: equal counts as met.
    pub fn of(achieved: Duration, objective: Duration) -> Self {
        match achieved.checked_sub(objective) {
            Some(by) if !by.is_zero() => Assessment::Missed { by },
            _ => Assessment::Met {
                margin: objective - achieved,
            },
        }
    }

    /// True for [`Assessment::Met`].
    pub fn is_met(self) -> bool {
        matches!(self, Assessment::Met { .. })
    }
}

impl fmt::Display for Assessment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Assessment::Met { margin } => {
                f.write_str("met, ")?;
                format_duration(round_to_millis(*margin), f)?;
                f.write_str(" to spare")
            }
            Assessment::Missed { by } => {
                f.write_str("MISSED by ")?;
                format_duration(round_to_millis(*by), f)
            }
            Assessment::Unmeasured => f.write_str("not measured"),
        }
    }
}

/// Where a standing exposure is against its objective, for monitoring: the
/// data a component would lose if it failed now, against its RPO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Compliance {
    /// At most half the objective is used.
    Met {
        /// Objective minus exposure.
        #[serde(with = "duration_seconds")]
        to_spare: Duration,
    },
    /// More than half the objective is used, not all of it.
    AtRisk {
        /// Objective minus exposure.
        #[serde(with = "duration_seconds")]
        to_spare: Duration,
    },
    /// The exposure is beyond the objective.
    Missed {
        /// Exposure minus objective.
        #[serde(with = "duration_seconds")]
        by: Duration,
    },
}

impl Compliance {
    /// `exposure` against `objective`: met up to half of it, at risk up to
    /// all of it, missed beyond.
    pub fn of(exposure: Duration, objective: Duration) -> Self {
        match objective.checked_sub(exposure) {
            None => Compliance::Missed {
                by: exposure - objective,
            },
            Some(to_spare) if exposure * 2 > objective => Compliance::AtRisk { to_spare },
            Some(to_spare) => Compliance::Met { to_spare },
        }
    }

    /// Whether the objective is missed.
    pub fn is_missed(self) -> bool {
        matches!(self, Compliance::Missed { .. })
    }
}

impl fmt::Display for Compliance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (state, amount, tail) = match self {
            Compliance::Met { to_spare } => ("met, ", to_spare, " to spare"),
            Compliance::AtRisk { to_spare } => ("AT RISK, ", to_spare, " to spare"),
            Compliance::Missed { by } => ("MISSED by ", by, ""),
        };
        f.write_str(state)?;
        format_duration(round_to_millis(*amount), f)?;
        f.write_str(tail)
    }
}

/// A duration as (fractional) seconds in JSON.
mod duration_seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let seconds = f64::deserialize(d)?;
        Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
    }
}

/// What kind of recovery a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Data restored from backups.
    Restore,
    /// Service moved to another live instance.
    Failover,
}

/// The outcome of one restore or failover: its timeline, the RTO and RPO it
/// achieved, and their assessment against the component's objectives.
///
/// The achieved RTO runs from the incident (by default the start of the
/// timeline) to the end of the last step. The achieved RPO is the window of
/// data lost, which only the component can measure (for example the target
/// time minus the last transaction replayed); a report without it says so.
///
/// ```
/// # use dr_core::{Objectives, Operation, RecoveryReport, Rpo, Timeline};
/// let t0: jiff::Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
/// let mut timeline = Timeline::new(t0);
/// timeline.record("restore", t0, "2026-11-21T10:20:00Z".parse().unwrap())?;
/// let objectives = Objectives::new("30m".parse()?, "15m".parse()?);
/// let report = RecoveryReport::new("postgres/main".parse()?, Operation::Restore, objectives, timeline)
///     .with_data_loss(Rpo::from_secs(40));
/// assert_eq!(report.achieved_rto().to_string(), "20m");
/// assert!(report.rto_assessment().is_met() && report.rpo_assessment().is_met());
/// assert!(report.objectives_met());
/// # Ok::<(), dr_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryReport {
    /// The component recovered.
    pub component: ComponentId,
    /// Restore or failover.
    pub operation: Operation,
    /// The objectives held against.
    pub objectives: Objectives,
    /// The steps taken.
    pub timeline: Timeline,
    /// When the incident happened, if before the timeline began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_at: Option<Timestamp>,
    /// The window of data lost, if measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<Rpo>,
    /// When service was back (a failover's first write on the new
    /// primary), if before the timeline's end: the achieved RTO runs to
    /// here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_at: Option<Timestamp>,
}

impl RecoveryReport {
    /// A report of `timeline` against `objectives`, with data loss not yet measured.
    pub fn new(
        component: ComponentId,
        operation: Operation,
        objectives: Objectives,
        timeline: Timeline,
    ) -> Self {
        Self {
            component,
            operation,
            objectives,
            timeline,
            incident_at: None,
            data_loss: None,
            restored_at: None,
        }
    }

    /// Counts the RTO from `incident_at` rather than from the start of the timeline.
    pub fn with_incident_at(mut self, incident_at: Timestamp) -> Self {
        self.incident_at = Some(incident_at);
        self
    }

    /// Records the window of data lost.
    pub fn with_data_loss(mut self, lost: Rpo) -> Self {
        self.data_loss = Some(lost);
        self
    }

    /// Records the data lost as the gap between what should have been
    /// recovered (`wanted`: the target time, or the incident) and what was
    /// (`recovered`: the last change present); zero if nothing was lost.
    pub fn with_data_loss_between(self, recovered: Timestamp, wanted: Timestamp) -> Self {
        self.with_data_loss(Rpo::new(span(recovered, wanted)))
    }

    /// Counts the RTO up to `restored_at` (service back, checks after it
    /// still running) rather than to the end of the timeline.
    pub fn with_restored_at(mut self, restored_at: Timestamp) -> Self {
        self.restored_at = Some(restored_at);
        self
    }

    /// From the incident (or the start of the timeline) to when service was
    /// back, or else to the end of the last step.
    pub fn achieved_rto(&self) -> Rto {
        let from = self.incident_at.unwrap_or(self.timeline.started_at());
        let to = self.restored_at.map_or(self.timeline.finished_at(), |at| {
            at.min(self.timeline.finished_at())
        });
        Rto::new(span(from, to))
    }

    /// The window of data lost, if measured.
    pub fn achieved_rpo(&self) -> Option<Rpo> {
        self.data_loss
    }

    /// The achieved RTO against the objective.
    pub fn rto_assessment(&self) -> Assessment {
        Assessment::of(
            self.achieved_rto().as_duration(),
            self.objectives.rto.as_duration(),
        )
    }

    /// The achieved RPO against the objective.
    pub fn rpo_assessment(&self) -> Assessment {
        self.data_loss.map_or(Assessment::Unmeasured, |lost| {
            Assessment::of(lost.as_duration(), self.objectives.rpo.as_duration())
        })
    }

    /// Both objectives measured and met.
    pub fn objectives_met(&self) -> bool {
        self.rto_assessment().is_met() && self.rpo_assessment().is_met()
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operation {
            Operation::Restore => "restore",
            Operation::Failover => "failover",
        };
        writeln!(f, "{op} of {}", self.component)?;
        for step in self.timeline.steps() {
            write!(f, "  {:<40} ", step.name)?;
            format_duration(round_to_millis(step.duration()), f)?;
            writeln!(f)?;
        }
        let rto = Rto::new(round_to_millis(self.achieved_rto().as_duration()));
        writeln!(
            f,
            "  RTO achieved {rto} (objective {}): {}",
            self.objectives.rto,
            self.rto_assessment()
        )?;
        match self.data_loss {
            Some(lost) => {
                let lost = Rpo::new(round_to_millis(lost.as_duration()));
                write!(
                    f,
                    "  RPO achieved {lost} (objective {}): {}",
                    self.objectives.rpo,
                    self.rpo_assessment()
                )
            }
            None => write!(f, "  RPO not measured (objective {})", self.objectives.rpo),
        }
    }
}

/// `to - from`, or zero if `to` is earlier.
fn span(from: Timestamp, to: Timestamp) -> Duration {
    let nanos = to.as_nanosecond() - from.as_nanosecond();
    u64::try_from(nanos).map_or(Duration::ZERO, Duration::from_nanos)
}

fn round_to_millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rto_runs_to_when_service_was_back_where_that_is_known() {
        let start: Timestamp = "2026-12-06T10:00:00Z".parse().unwrap();
        let mut timeline = Timeline::new(start);
        timeline
            .record("promote", start, "2026-12-06T10:00:02Z".parse().unwrap())
            .unwrap();
        timeline
            .record(
                "check",
                "2026-12-06T10:00:02Z".parse().unwrap(),
                "2026-12-06T10:00:09Z".parse().unwrap(),
            )
            .unwrap();
        let objectives = Objectives::new("5m".parse().unwrap(), "0s".parse().unwrap());
        let report = RecoveryReport::new(
            "postgres/main".parse().unwrap(),
            Operation::Failover,
            objectives,
            timeline,
        );
        assert_eq!(report.achieved_rto().as_duration(), Duration::from_secs(9));
        let back = report
            .clone()
            .with_restored_at("2026-12-06T10:00:03Z".parse().unwrap());
        assert_eq!(back.achieved_rto().as_duration(), Duration::from_secs(3));
        // Never past the timeline's end.
        let late = report.with_restored_at("2026-12-06T10:01:00Z".parse().unwrap());
        assert_eq!(late.achieved_rto().as_duration(), Duration::from_secs(9));
    }

    #[test]
    fn compliance_is_met_up_to_half_the_objective_then_at_risk_then_missed() {
        let rpo = Duration::from_secs(900);
        let secs = Duration::from_secs;
        assert_eq!(
            Compliance::of(secs(450), rpo),
            Compliance::Met {
                to_spare: secs(450)
            }
        );
        assert_eq!(
            Compliance::of(secs(451), rpo),
            Compliance::AtRisk {
                to_spare: secs(449)
            }
        );
        assert_eq!(
            Compliance::of(rpo, rpo),
            Compliance::AtRisk { to_spare: secs(0) }
        );
        assert_eq!(
            Compliance::of(secs(960), rpo),
            Compliance::Missed { by: secs(60) }
        );
        assert_eq!(Compliance::of(secs(960), rpo).to_string(), "MISSED by 1m");
        assert!(Compliance::of(secs(960), rpo).is_missed());
        let json = serde_json::to_string(&Compliance::of(secs(600), rpo)).unwrap();
        assert_eq!(json, r#"{"state":"at_risk","to_spare":300.0}"#);
    }

    #[tokio::test]
    async fn steps_are_timed_and_named_after_what_they_returned() {
        let mut timeline = Timeline::start_now();
        let n = timeline
            .step_named(async { Ok::<_, Error>(12) }, |n| {
                format!("check WAL ({n} segments)")
            })
            .await
            .unwrap();
        assert_eq!(n, 12);
        timeline
            .step("extract", async { Ok::<_, Error>(()) })
            .await
            .unwrap();
        let failed = timeline
            .step("replay", async { Err::<(), _>(Error::not_found("WAL")) })
            .await;
        assert!(failed.is_err());
        let names: Vec<&str> = timeline.steps().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["check WAL (12 segments)", "extract"]);
        assert!(timeline.steps()[0].finished_at <= timeline.steps()[1].started_at);
    }
    use proptest::prelude::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn objectives(rto: u64, rpo: u64) -> Objectives {
        Objectives::new(Rto::from_secs(rto), Rpo::from_secs(rpo))
    }

    #[test]
    fn steps_must_be_ordered() {
        let mut t = Timeline::new(ts(10));
        assert!(t.record("backwards", ts(12), ts(11)).is_err());
        assert!(t.record("too early", ts(9), ts(11)).is_err());
        assert!(t.record("ok", ts(10), ts(10)).is_ok());
        assert_eq!(t.steps().len(), 1);
    }

    #[test]
    fn rto_counts_from_the_incident() {
        let mut t = Timeline::new(ts(100));
        t.record("restore", ts(100), ts(160)).unwrap();
        let report = RecoveryReport::new(
            "postgres/main".parse().unwrap(),
            Operation::Restore,
            objectives(90, 0),
            t,
        );
        assert_eq!(report.achieved_rto(), Rto::from_secs(60));
        assert_eq!(
            report.rto_assessment(),
            Assessment::Met {
                margin: Duration::from_secs(30)
            }
        );
        let report = report.with_incident_at(ts(0));
        assert_eq!(report.achieved_rto(), Rto::from_secs(160));
        assert_eq!(
            report.rto_assessment(),
            Assessment::Missed {
                by: Duration::from_secs(70)
            }
        );
        assert_eq!(report.rpo_assessment(), Assessment::Unmeasured);
        assert!(!report.objectives_met());
    }

    #[test]
    fn data_loss_between_points() {
        let t = Timeline::new(ts(0));
        let r = RecoveryReport::new(
            "redis/master-0".parse().unwrap(),
            Operation::Failover,
            objectives(60, 60),
            t,
        );
        let lost = r.clone().with_data_loss_between(ts(10), ts(75));
        assert_eq!(lost.achieved_rpo(), Some(Rpo::from_secs(65)));
        assert_eq!(
            lost.rpo_assessment(),
            Assessment::Missed {
                by: Duration::from_secs(5)
            }
        );
        let none = r.with_data_loss_between(ts(80), ts(75));
        assert_eq!(none.achieved_rpo(), Some(Rpo::from_secs(0)));
        assert!(none.objectives_met());
    }

    #[test]
    fn report_prints_a_summary() {
        let mut t = Timeline::new(ts(0));
        t.record("restore base backup", ts(0), ts(42)).unwrap();
        let r = RecoveryReport::new(
            "postgres/main".parse().unwrap(),
            Operation::Restore,
            objectives(1800, 900),
            t,
        )
        .with_data_loss(Rpo::from_secs(0));
        let text = r.to_string();
        assert!(text.contains("restore of postgres/main"), "{text}");
        assert!(
            text.contains("RTO achieved 42s (objective 30m): met, 29m18s to spare"),
            "{text}"
        );
        assert!(
            text.contains("RPO achieved 0s (objective 15m): met, 15m to spare"),
            "{text}"
        );
    }

    proptest! {
        #[test]
        fn assessment_arithmetic(achieved in 0u64..1_000_000, objective in 0u64..1_000_000) {
            let a = Duration::from_millis(achieved);
            let o = Duration::from_millis(objective);
            match Assessment::of(a, o) {
                Assessment::Met { margin } => { prop_assert!(a <= o); prop_assert_eq!(a + margin, o); }
                Assessment::Missed { by } => { prop_assert!(a > o); prop_assert_eq!(o + by, a); }
                Assessment::Unmeasured => prop_assert!(false),
            }
        }

        #[test]
        fn reports_round_trip_through_json(
            steps in prop::collection::vec(("[a-z ]{1,20}", 0i64..1000, 0i64..1000), 0..6),
            incident in prop::option::of(0i64..100),
            lost in prop::option::of(0u64..10_000),
            rto in 0u64..100_000, rpo in 0u64..100_000,
        ) {
            let mut t = Timeline::new(ts(100));
            for (name, start, len) in steps {
                t.record(name, ts(100 + start), ts(100 + start + len)).unwrap();
            }
            let mut r = RecoveryReport::new("postgres/main".parse().unwrap(), Operation::Restore, objectives(rto, rpo), t);
            if let Some(i) = incident { r = r.with_incident_at(ts(i)); }
            if let Some(l) = lost { r = r.with_data_loss(Rpo::from_secs(l)); }
            let json = serde_json::to_string(&r).unwrap();
            let back: RecoveryReport = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.rto_assessment(), r.rto_assessment());
            prop_assert_eq!(back, r);
        }
    }
}
