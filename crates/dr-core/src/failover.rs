//! Failover as a typed sequence: **assess** the live members, **plan** (what
//! would be promoted, fenced and lost; a dry run is this step alone), then
//! **execute**: take the lease, fence, promote, rewire, check.
//!
//! A system crate implements [`Failover`]: how to look at its members, how
//! to choose among them, how to promote one. What every failover needs
//! besides is a hook trait of its own, so that no system crate depends on
//! another: [`Fence`] (make the old primary unable to take writes),
//! [`Rewire`] (point clients at the new primary) and [`FailoverLease`] (a
//! numbered term, so that two monitors never promote twice). [`execute`]
//! runs the sequence over them and times each step into the
//! [`RecoveryReport`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::ComponentId;
use crate::objectives::{Objectives, Rpo};
use crate::ops::Capabilities;
use crate::point::Position;
use crate::report::{Operation, RecoveryReport, Timeline};

/// What a member does in its cluster, as seen when assessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Takes writes.
    Primary,
    /// Follows a primary.
    Replica,
    /// Follows no primary and takes no writes: a former primary fenced
    /// (made read-only) that is yet to rejoin as a replica.
    Fenced,
    /// Could not be told (unreachable).
    Unknown,
}

/// How far a member is behind the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lag {
    /// Bytes of changes it has not received or applied, where measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// How long ago the last change it applied was made, where measured.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_secs")]
    pub behind: Option<Duration>,
}

/// One member of a cluster (a server, a node, a pod) as assessed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its name, unique in the cluster (`pg-1`, `10.0.0.5:6379`).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Whether it answered.
    pub reachable: bool,
    /// Where it is in the change stream, where it could be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// How far behind the primary, for a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<Lag>,
    /// Whether the caller allows promoting it at all.
    pub promotable: bool,
    /// Preference among fit candidates, higher first.
    pub priority: i32,
    /// What else the system says of it, for people.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, String>,
}

/// The members of a cluster, as they were at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterAssessment {
    /// The component.
    pub component: ComponentId,
    /// When it was looked at.
    pub assessed_at: Timestamp,
    /// Every member, primary or not, reachable or not.
    pub members: Vec<Member>,
}

impl ClusterAssessment {
    /// The reachable member that takes writes, if exactly one does.
    pub fn primary(&self) -> Option<&Member> {
        let mut primaries = self
            .members
            .iter()
            .filter(|m| m.role == Role::Primary && m.reachable);
        match (primaries.next(), primaries.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// The member named `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// How a failover treats the current primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverMode {
    /// The primary is healthy: hand over without losing anything
    /// (needs [`Capability::PlannedSwitchover`](crate::Capability::PlannedSwitchover)).
    Switchover,
    /// The primary is lost: promote the best candidate, fencing the old
    /// primary first.
    Failover,
}

/// What the caller allows a failover to lose: a promotion that would lose
/// more is refused unless forced. No default: the caller chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossLimit {
    /// At most this many bytes of changes.
    Bytes(u64),
    /// At most this window of changes (the RPO objective, typically).
    Within(Rpo),
}

/// A failover request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailoverRequest {
    /// Planned or forced.
    pub mode: FailoverMode,
    /// The objectives the report is held against.
    pub objectives: Objectives,
    /// What may be lost.
    pub loss_limit: LossLimit,
    /// Promote even beyond the loss limit.
    pub force: bool,
    /// The old primary is known to be dead (powered off, its disk gone): a
    /// fence that fails does not stop the failover.
    pub old_primary_known_dead: bool,
    /// When the primary was lost, if the RTO clock started before the failover.
    pub incident_at: Option<Timestamp>,
    /// The member to promote, instead of the fittest: refused if it is not
    /// fit at all.
    pub target: Option<String>,
}

impl FailoverRequest {
    /// A request in `mode`, held against `objectives`, losing at most `loss_limit`.
    pub fn new(mode: FailoverMode, objectives: Objectives, loss_limit: LossLimit) -> Self {
        Self {
            mode,
            objectives,
            loss_limit,
            force: false,
            old_primary_known_dead: false,
            incident_at: None,
            target: None,
        }
    }

    /// Promotes `member`, if it is fit, instead of the fittest.
    #[must_use]
    pub fn to(mut self, member: impl Into<String>) -> Self {
        self.target = Some(member.into());
        self
    }

    /// Promotes even beyond the loss limit.
    #[must_use]
    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }

    /// Goes on when fencing the old primary fails: it is known dead.
    #[must_use]
    pub fn old_primary_known_dead(mut self) -> Self {
        self.old_primary_known_dead = true;
        self
    }

    /// Counts the RTO from `at`.
    #[must_use]
    pub fn incident_at(mut self, at: Timestamp) -> Self {
        self.incident_at = Some(at);
        self
    }
}

/// A candidate passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassedOver {
    /// The member.
    pub name: String,
    /// Why it was not chosen ("unreachable", "never promote", "behind pg-2").
    pub reason: String,
}

/// What a failover would do, decided from one assessment. Showing it is a
/// dry run; [`execute`] carries it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverPlan {
    /// The component.
    pub component: ComponentId,
    /// Planned or forced.
    pub mode: FailoverMode,
    /// The assessment it was made from.
    pub assessed_at: Timestamp,
    /// The member to promote.
    pub promote: Member,
    /// The members to fence first (the old primary, and any other that
    /// might still take writes).
    pub fence: Vec<Member>,
    /// What promoting it would lose, as far as it can be known before.
    pub expected_loss: Lag,
    /// Where synchronous replication promises that the member promoted
    /// holds every change acknowledged to clients: why, for people. Then
    /// what [`FailoverPlan::expected_loss`] counts was never acknowledged.
    /// `None` where nothing promises it (asynchronous replication, or too
    /// few of the synchronous partners left to tell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_kept: Option<String>,
    /// The other candidates, and why they were passed over.
    pub passed_over: Vec<PassedOver>,
}

impl fmt::Display for FailoverPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            FailoverMode::Switchover => "switchover",
            FailoverMode::Failover => "failover",
        };
        writeln!(f, "{mode} of {}", self.component)?;
        for member in &self.fence {
            writeln!(f, "  fence    {}", member.name)?;
        }
        writeln!(f, "  promote  {}", self.promote.name)?;
        match (self.expected_loss.bytes, self.expected_loss.behind) {
            (None, None) => writeln!(f, "  loss     not known")?,
            (bytes, behind) => {
                write!(f, "  loss    ")?;
                if let Some(bytes) = bytes {
                    write!(f, " {bytes} bytes")?;
                }
                if let Some(behind) = behind {
                    write!(f, " {} behind", Rpo::new(behind))?;
                }
                writeln!(f)?;
            }
        }
        if let Some(why) = &self.acknowledged_kept {
            writeln!(f, "  keeps    every acknowledged change: {why}")?;
        }
        for passed in &self.passed_over {
            writeln!(f, "  passed over {}: {}", passed.name, passed.reason)?;
        }
        Ok(())
    }
}

/// What a promotion reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    /// Where the new primary's history begins (a new timeline's start).
    pub position: Option<Position>,
    /// The window of changes lost, where the component can measure it
    /// after the fact (the old primary's last acknowledged change against
    /// what the new one has).
    pub data_loss: Option<Rpo>,
}

/// Moves service from a failed or leaving primary to another live member,
/// in steps that runbooks and drills can show and time. [`execute`] runs
/// them, with the hooks around them.
#[async_trait]
pub trait Failover: Send + Sync {
    /// The component failed over.
    fn component(&self) -> &ComponentId;

    /// Optional abilities (planned switchover).
    fn capabilities(&self) -> Capabilities;

    /// Looks at every member now.
    ///
    /// # Errors
    /// The cluster cannot be looked at at all (no member answers, bad configuration).
    async fn assess(&self) -> Result<ClusterAssessment>;

    /// As [`Failover::assess`], for a monitor's probe: done within
    /// `timeout`. The default gives up on the whole assessment after
    /// `timeout` ([`Error::Timeout`]); a component that probes its members
    /// one by one counts a member that does not answer in time unreachable
    /// instead, and still judges the others.
    ///
    /// # Errors
    /// As [`Failover::assess`]; [`Error::Timeout`] by the default.
    async fn assess_within(&self, timeout: Duration) -> Result<ClusterAssessment> {
        tokio::time::timeout(timeout, self.assess())
            .await
            .map_err(|_| Error::Timeout {
                operation: format!("assessing {}", self.component()),
                after: timeout,
            })?
    }

    /// What a failover would do, decided from `assessment` alone: the fittest
    /// candidate, what to fence, what would be lost. Changes nothing.
    ///
    /// # Errors
    /// [`Error::Refused`] when no member is fit to promote, or when promoting
    /// the fittest would lose more than `request` allows (saying how much,
    /// on which member) and it is not forced.
    fn plan(
        &self,
        assessment: &ClusterAssessment,
        request: &FailoverRequest,
    ) -> Result<FailoverPlan>;

    /// Promotes the plan's member and returns once it takes writes. Called
    /// by [`execute`] only after the plan's fences held (or the old primary
    /// is known dead) and the lease was confirmed.
    ///
    /// # Errors
    /// The member refused, or did not take writes in time.
    async fn promote(&self, plan: &FailoverPlan) -> Result<Promotion>;

    /// Checks the promoted member once it is promoted and clients are
    /// pointed at it, and returns when it took its first write, where the
    /// check made one: the achieved RTO runs to there. The default finds it
    /// the one primary in a new assessment and makes no write; a component
    /// checks what it can (a write and a read, the other members following).
    ///
    /// # Errors
    /// It is not the one primary, or the component's own checks failed.
    async fn verify(&self, plan: &FailoverPlan) -> Result<Option<Timestamp>> {
        let promoted = &plan.promote.name;
        let after = self.assess().await?;
        match after.primary() {
            Some(primary) if primary.name == *promoted => Ok(None),
            other => Err(Error::Refused {
                operation: format!("failover of {}", plan.component),
                reason: format!(
                    "{promoted} was promoted, but afterwards the primary is {}",
                    other.map_or("not one member".to_owned(), |m| m.name.clone())
                ),
            }),
        }
    }
}

/// Makes a member unable to take writes, whether or not it can be reached:
/// stop it, scale it to zero, cut it off.
#[async_trait]
pub trait Fence: Send + Sync {
    /// Fences `member`; returns once it can no longer take writes.
    ///
    /// # Errors
    /// The fence could not be made sure of.
    async fn fence(&self, member: &Member) -> Result<()>;
}

/// Points clients at a new primary (a Service, a DNS name, a proxy).
#[async_trait]
pub trait Rewire: Send + Sync {
    /// Points clients at `primary`.
    ///
    /// # Errors
    /// The change could not be made.
    async fn rewire(&self, component: &ComponentId, primary: &Member) -> Result<()>;
}

/// A lease held for a failover, numbered by term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseGrant {
    /// The component it is for.
    pub component: ComponentId,
    /// Who holds it.
    pub holder: String,
    /// Higher than every earlier grant's for the component.
    pub term: u64,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
}

/// Who may fail a component over: one holder at a time, each grant with a
/// term higher than the last, so that a holder whose lease lapsed and was
/// granted again is refused at its next step.
#[async_trait]
pub trait FailoverLease: Send + Sync {
    /// Grants the lease to `holder` for `ttl`.
    ///
    /// # Errors
    /// [`Error::Refused`] while another holder's grant has not lapsed.
    async fn acquire(
        &self,
        component: &ComponentId,
        holder: &str,
        ttl: Duration,
    ) -> Result<LeaseGrant>;

    /// Fails unless `grant` is still the latest and has not lapsed: called
    /// before each step that cannot be undone.
    ///
    /// # Errors
    /// [`Error::Refused`] for a lapsed or superseded grant.
    async fn confirm(&self, grant: &LeaseGrant) -> Result<()>;

    /// Gives the lease up; a superseded grant is not an error.
    ///
    /// # Errors
    /// The store failed.
    async fn release(&self, grant: &LeaseGrant) -> Result<()>;
}

/// The hooks [`execute`] runs around a failover. All optional: a failover
/// without a fence relies on [`FailoverRequest::old_primary_known_dead`] or
/// on the plan fencing nothing.
#[derive(Clone, Copy, Default)]
pub struct FailoverHooks<'a> {
    /// The lease and who takes it.
    pub lease: Option<(&'a dyn FailoverLease, &'a str, Duration)>,
    /// How the members to fence are fenced.
    pub fence: Option<&'a dyn Fence>,
    /// How clients find the new primary.
    pub rewire: Option<&'a dyn Rewire>,
}

impl fmt::Debug for FailoverHooks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailoverHooks")
            .field("lease", &self.lease.map(|(_, holder, ttl)| (holder, ttl)))
            .field("fence", &self.fence.is_some())
            .field("rewire", &self.rewire.is_some())
            .finish()
    }
}

/// What [`execute`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverOutcome {
    /// The plan carried out.
    pub plan: FailoverPlan,
    /// Its timeline, RTO and RPO.
    pub report: RecoveryReport,
}

/// Assesses and plans: what a failover would do now. Changes nothing.
///
/// # Errors
/// As [`Failover::assess`] and [`Failover::plan`].
pub async fn dry_run(failover: &dyn Failover, request: &FailoverRequest) -> Result<FailoverPlan> {
    let assessment = failover.assess().await?;
    failover.plan(&assessment, request)
}

/// Runs a failover: take the lease, assess, plan, fence, promote, rewire,
/// check, each step timed. The lease is confirmed before fencing and again
/// before promoting; a fence that fails stops the failover unless the old
/// primary is known dead; the new primary is checked to be the one primary
/// at the end.
///
/// # Errors
/// The lease is held by another or lapsed ([`Error::Refused`]); the plan was
/// refused; a fence failed; the promotion or the rewiring failed; the final
/// check did not find the promoted member as the one primary.
pub async fn execute(
    failover: &dyn Failover,
    request: &FailoverRequest,
    hooks: FailoverHooks<'_>,
) -> Result<FailoverOutcome> {
    let mut timeline = Timeline::start_now();
    let component = failover.component().clone();
    let grant = match hooks.lease {
        Some((lease, holder, ttl)) => {
            let grant = timeline
                .step_named(lease.acquire(&component, holder, ttl), |g| {
                    format!("take the failover lease (term {})", g.term)
                })
                .await?;
            Some((lease, grant))
        }
        None => None,
    };
    let result = run(failover, request, hooks, &mut timeline, grant.as_ref()).await;
    if let Some((lease, grant)) = &grant {
        let released = lease.release(grant).await;
        if result.is_ok() {
            released?;
        }
    }
    let (plan, promotion, first_write) = result?;
    let mut report =
        RecoveryReport::new(component, Operation::Failover, request.objectives, timeline);
    if let Some(at) = first_write {
        report = report.with_restored_at(at);
    }
    if let Some(at) = request.incident_at {
        report = report.with_incident_at(at);
    }
    let lost = promotion
        .data_loss
        .or_else(|| plan.expected_loss.behind.map(Rpo::new));
    if let Some(lost) = lost {
        report = report.with_data_loss(lost);
    }
    Ok(FailoverOutcome { plan, report })
}

async fn run(
    failover: &dyn Failover,
    request: &FailoverRequest,
    hooks: FailoverHooks<'_>,
    timeline: &mut Timeline,
    grant: Option<&(&dyn FailoverLease, LeaseGrant)>,
) -> Result<(FailoverPlan, Promotion, Option<Timestamp>)> {
    let confirm = || async {
        match grant {
            Some((lease, grant)) => lease.confirm(grant).await,
            None => Ok(()),
        }
    };
    let plan = timeline
        .step_named(
            async { failover.plan(&failover.assess().await?, request) },
            |plan| format!("assess and plan: promote {}", plan.promote.name),
        )
        .await?;

    confirm().await?;
    for member in &plan.fence {
        let t = Timestamp::now();
        let fenced = match hooks.fence {
            Some(fence) => fence.fence(member).await,
            None => Err(Error::Refused {
                operation: format!("failover of {}", plan.component),
                reason: format!("{} must be fenced and no fence was given", member.name),
            }),
        };
        match fenced {
            Ok(()) => {
                timeline.record_until_now(format!("fence {}", member.name), t)?;
            }
            Err(e) if request.old_primary_known_dead => {
                timeline.record_until_now(
                    format!("fence {} failed ({e}); known dead, going on", member.name),
                    t,
                )?;
            }
            Err(e) => {
                return Err(Error::Refused {
                    operation: format!("failover of {}", plan.component),
                    reason: format!(
                        "fencing {} failed ({e}); nothing was promoted. If it is known \
                         to be dead, say so and run the failover again",
                        member.name
                    ),
                });
            }
        }
    }

    confirm().await?;
    let promoted = &plan.promote.name;
    let promotion = timeline
        .step(format!("promote {promoted}"), failover.promote(&plan))
        .await?;

    if let Some(rewire) = hooks.rewire {
        timeline
            .step(
                format!("point clients at {promoted}"),
                rewire.rewire(&plan.component, &plan.promote),
            )
            .await?;
    }

    let first_write = timeline
        .step(format!("check {promoted}"), failover.verify(&plan))
        .await?;
    Ok((plan, promotion, first_write))
}

/// Optional durations as seconds (with fractions) in JSON.
mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?
            .map(|secs| Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The traits are used as `dyn`: this fails to compile if one stops being object-safe.
fn _assert_object_safe(_: &dyn Failover, _: &dyn Fence, _: &dyn Rewire, _: &dyn FailoverLease) {}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::point::Lsn;

    /// A cluster in memory: members with LSNs; promotion makes one primary.
    struct Cluster {
        component: ComponentId,
        members: Mutex<Vec<Member>>,
        promotions: Mutex<Vec<String>>,
    }

    fn member(name: &str, role: Role, lsn: u64, reachable: bool) -> Member {
        Member {
            name: name.into(),
            role,
            reachable,
            position: Some(Position::Postgres {
                system_identifier: 1,
                timeline: 1,
                lsn: Lsn::new(lsn),
            }),
            lag: None,
            promotable: true,
            priority: 0,
            detail: BTreeMap::new(),
        }
    }

    fn lsn(m: &Member) -> u64 {
        match m.position {
            Some(Position::Postgres { lsn, .. }) => lsn.as_u64(),
            _ => 0,
        }
    }

    impl Cluster {
        /// A primary at LSN 1000 that stopped answering, and two replicas.
        fn new() -> Self {
            Self {
                component: "postgres/main".parse().unwrap(),
                members: Mutex::new(vec![
                    member("pg-0", Role::Primary, 1000, false),
                    member("pg-1", Role::Replica, 900, true),
                    member("pg-2", Role::Replica, 990, true),
                ]),
                promotions: Mutex::new(Vec::new()),
            }
        }
    }

    #[async_trait]
    impl Failover for Cluster {
        fn component(&self) -> &ComponentId {
            &self.component
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities::NONE
        }

        async fn assess(&self) -> Result<ClusterAssessment> {
            Ok(ClusterAssessment {
                component: self.component.clone(),
                assessed_at: Timestamp::now(),
                members: self.members.lock().unwrap().clone(),
            })
        }

        fn plan(&self, a: &ClusterAssessment, request: &FailoverRequest) -> Result<FailoverPlan> {
            let old = a.members.iter().find(|m| m.role == Role::Primary);
            let mut passed_over = Vec::new();
            let mut fit: Vec<&Member> = Vec::new();
            for m in a.members.iter().filter(|m| m.role == Role::Replica) {
                if !m.reachable {
                    passed_over.push(PassedOver {
                        name: m.name.clone(),
                        reason: "unreachable".into(),
                    });
                } else {
                    fit.push(m);
                }
            }
            fit.sort_by_key(|m| std::cmp::Reverse(lsn(m)));
            let Some(best) = fit.first() else {
                return Err(Error::Refused {
                    operation: "failover".into(),
                    reason: "no replica is fit".into(),
                });
            };
            let lost = old.map_or(0, |o| lsn(o).saturating_sub(lsn(best)));
            if let LossLimit::Bytes(max) = request.loss_limit
                && lost > max
                && !request.force
            {
                return Err(Error::Refused {
                    operation: "failover".into(),
                    reason: format!("promoting {} would lose {lost} bytes", best.name),
                });
            }
            passed_over.extend(fit[1..].iter().map(|m| PassedOver {
                name: m.name.clone(),
                reason: format!("behind {}", best.name),
            }));
            Ok(FailoverPlan {
                component: self.component.clone(),
                mode: request.mode,
                assessed_at: a.assessed_at,
                promote: (*best).clone(),
                fence: old.into_iter().cloned().collect(),
                expected_loss: Lag {
                    bytes: Some(lost),
                    behind: Some(Duration::from_millis(lost)),
                },
                acknowledged_kept: None,
                passed_over,
            })
        }

        async fn promote(&self, plan: &FailoverPlan) -> Result<Promotion> {
            self.promotions
                .lock()
                .unwrap()
                .push(plan.promote.name.clone());
            for m in self.members.lock().unwrap().iter_mut() {
                if m.name == plan.promote.name {
                    m.role = Role::Primary;
                } else if m.role == Role::Primary {
                    m.role = Role::Unknown;
                }
            }
            Ok(Promotion {
                position: plan.promote.position.clone(),
                data_loss: None,
            })
        }
    }

    /// Fences by name, or fails for every member.
    struct Fencer {
        works: bool,
        fenced: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Fence for Fencer {
        async fn fence(&self, member: &Member) -> Result<()> {
            if !self.works {
                return Err(Error::Unavailable {
                    target: member.name.clone(),
                    source: "no route to host".into(),
                });
            }
            self.fenced.lock().unwrap().push(member.name.clone());
            Ok(())
        }
    }

    struct Rewirer(Mutex<Vec<String>>);

    #[async_trait]
    impl Rewire for Rewirer {
        async fn rewire(&self, _: &ComponentId, primary: &Member) -> Result<()> {
            self.0.lock().unwrap().push(primary.name.clone());
            Ok(())
        }
    }

    /// Grants in memory; `steal_after_confirms` lets another holder take a
    /// newer term once that many confirmations passed.
    #[derive(Default)]
    struct Lease {
        latest: Mutex<Option<LeaseGrant>>,
        confirms: Mutex<u32>,
        steal_after_confirms: Option<u32>,
    }

    #[async_trait]
    impl FailoverLease for Lease {
        async fn acquire(
            &self,
            component: &ComponentId,
            holder: &str,
            ttl: Duration,
        ) -> Result<LeaseGrant> {
            let mut latest = self.latest.lock().unwrap();
            let now = Timestamp::now();
            if let Some(held) = &*latest
                && held.holder != holder
                && held.expires_at > now
            {
                return Err(Error::Refused {
                    operation: format!("failover of {component}"),
                    reason: format!("{} holds the lease (term {})", held.holder, held.term),
                });
            }
            let grant = LeaseGrant {
                component: component.clone(),
                holder: holder.into(),
                term: latest.as_ref().map_or(1, |g| g.term + 1),
                expires_at: now.checked_add(ttl).unwrap(),
            };
            *latest = Some(grant.clone());
            Ok(grant)
        }

        async fn confirm(&self, grant: &LeaseGrant) -> Result<()> {
            let mut confirms = self.confirms.lock().unwrap();
            *confirms += 1;
            let mut latest = self.latest.lock().unwrap();
            if self.steal_after_confirms == Some(*confirms) {
                let term = latest.as_ref().map_or(1, |g| g.term + 1);
                *latest = Some(LeaseGrant {
                    holder: "monitor-b".into(),
                    term,
                    ..grant.clone()
                });
            }
            match &*latest {
                Some(l) if l.term == grant.term => Ok(()),
                other => Err(Error::Refused {
                    operation: format!("failover of {}", grant.component),
                    reason: format!(
                        "term {} was superseded by term {}",
                        grant.term,
                        other.as_ref().map_or(0, |l| l.term)
                    ),
                }),
            }
        }

        async fn release(&self, grant: &LeaseGrant) -> Result<()> {
            let mut latest = self.latest.lock().unwrap();
            if latest.as_ref().is_some_and(|l| l.term == grant.term) {
                *latest = None;
            }
            Ok(())
        }
    }

    fn request() -> FailoverRequest {
        let objectives = Objectives::new(Rto::from_secs(300), Rpo::from_secs(60));
        FailoverRequest::new(FailoverMode::Failover, objectives, LossLimit::Bytes(50))
    }

    use crate::objectives::Rto;

    #[tokio::test]
    async fn a_dry_run_shows_the_plan_and_changes_nothing() {
        let cluster = Cluster::new();
        let plan = dry_run(&cluster, &request()).await.unwrap();
        assert_eq!(plan.promote.name, "pg-2");
        assert_eq!(plan.fence.len(), 1);
        assert_eq!(plan.fence[0].name, "pg-0");
        assert_eq!(plan.expected_loss.bytes, Some(10));
        assert_eq!(plan.passed_over[0].name, "pg-1");
        let shown = plan.to_string();
        assert!(
            shown.contains("fence    pg-0") && shown.contains("promote  pg-2"),
            "{shown}"
        );
        assert!(cluster.promotions.lock().unwrap().is_empty());
        // Plans are values: they serialize for a CLI or a runbook.
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<FailoverPlan>(&json).unwrap(), plan);
    }

    #[tokio::test]
    async fn execute_takes_the_lease_fences_promotes_rewires_and_times_each_step() {
        let cluster = Cluster::new();
        let fence = Fencer {
            works: true,
            fenced: Mutex::default(),
        };
        let rewire = Rewirer(Mutex::default());
        let lease = Lease::default();
        let hooks = FailoverHooks {
            lease: Some((&lease, "monitor-a", Duration::from_secs(30))),
            fence: Some(&fence),
            rewire: Some(&rewire),
        };
        let outcome = execute(&cluster, &request(), hooks).await.unwrap();
        assert_eq!(*fence.fenced.lock().unwrap(), ["pg-0"]);
        assert_eq!(*cluster.promotions.lock().unwrap(), ["pg-2"]);
        assert_eq!(*rewire.0.lock().unwrap(), ["pg-2"]);
        let steps: Vec<&str> = outcome
            .report
            .timeline
            .steps()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            steps,
            [
                "take the failover lease (term 1)",
                "assess and plan: promote pg-2",
                "fence pg-0",
                "promote pg-2",
                "point clients at pg-2",
                "check pg-2",
            ]
        );
        assert_eq!(
            outcome.report.achieved_rpo(),
            Some(Rpo::new(Duration::from_millis(10)))
        );
        assert!(outcome.report.objectives_met());
        // Released: another monitor may take it now.
        assert!(lease.latest.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_fence_that_fails_stops_the_failover_unless_the_primary_is_known_dead() {
        let cluster = Cluster::new();
        let fence = Fencer {
            works: false,
            fenced: Mutex::default(),
        };
        let hooks = FailoverHooks {
            fence: Some(&fence),
            ..FailoverHooks::default()
        };
        let err = execute(&cluster, &request(), hooks).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Refused, "{err}");
        assert!(err.to_string().contains("fencing pg-0 failed"), "{err}");
        assert!(cluster.promotions.lock().unwrap().is_empty());
        // No fence at all is the same refusal.
        let err = execute(&cluster, &request(), FailoverHooks::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no fence was given"), "{err}");

        let outcome = execute(&cluster, &request().old_primary_known_dead(), hooks)
            .await
            .unwrap();
        assert_eq!(*cluster.promotions.lock().unwrap(), ["pg-2"]);
        assert!(
            outcome.report.timeline.steps()[1]
                .name
                .contains("known dead, going on")
        );
    }

    #[tokio::test]
    async fn a_lease_held_or_lost_promotes_nothing() {
        let cluster = Cluster::new();
        let fence = Fencer {
            works: true,
            fenced: Mutex::default(),
        };
        let lease = Lease::default();
        let component: ComponentId = "postgres/main".parse().unwrap();
        lease
            .acquire(&component, "monitor-b", Duration::from_secs(30))
            .await
            .unwrap();
        let hooks = FailoverHooks {
            lease: Some((&lease, "monitor-a", Duration::from_secs(30))),
            fence: Some(&fence),
            rewire: None,
        };
        let err = execute(&cluster, &request(), hooks).await.unwrap_err();
        assert!(
            err.to_string().contains("monitor-b holds the lease"),
            "{err}"
        );
        assert!(fence.fenced.lock().unwrap().is_empty());

        // Taken over by another monitor between fencing and promoting.
        let lease = Lease {
            steal_after_confirms: Some(2),
            ..Lease::default()
        };
        let hooks = FailoverHooks {
            lease: Some((&lease, "monitor-a", Duration::from_secs(30))),
            ..hooks
        };
        let err = execute(&cluster, &request(), hooks).await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Refused, "{err}");
        assert!(err.to_string().contains("superseded by term 2"), "{err}");
        assert_eq!(*fence.fenced.lock().unwrap(), ["pg-0"]);
        assert!(cluster.promotions.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_promotion_losing_more_than_allowed_is_refused_unless_forced() {
        let cluster = Cluster::new();
        cluster.members.lock().unwrap().truncate(2); // only pg-1, 100 bytes behind
        let err = dry_run(&cluster, &request()).await.unwrap_err();
        assert!(err.to_string().contains("would lose 100 bytes"), "{err}");
        let plan = dry_run(&cluster, &request().force()).await.unwrap();
        assert_eq!(plan.promote.name, "pg-1");
    }

    #[test]
    fn lags_serialize_as_seconds() {
        let lag = Lag {
            bytes: Some(4096),
            behind: Some(Duration::from_millis(1500)),
        };
        let json = serde_json::to_string(&lag).unwrap();
        assert_eq!(json, r#"{"bytes":4096,"behind":1.5}"#);
        assert_eq!(serde_json::from_str::<Lag>(&json).unwrap(), lag);
        assert!(serde_json::from_str::<Lag>(r#"{"behind":-1}"#).is_err());
    }
}
