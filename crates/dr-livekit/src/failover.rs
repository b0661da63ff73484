//! [`LiveKitFailover`]: dr-core's `Failover` from a dead SFU to a warm
//! standby, by restoring the latest snapshot onto it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dr_core::{
    Capabilities, Capability, ClusterAssessment, ComponentId, Failover, FailoverMode, FailoverPlan,
    FailoverRequest, Lag, LossLimit, Member, Objectives, PassedOver, Promotion, RecoveryTarget,
    RestoreRequest, Role, Rpo, SnapshotSource,
};
use jiff::Timestamp;

use crate::client::LiveKit;
use crate::health::{LiveKitHealth, LiveKitProbe};
use crate::restore::{LiveKitRestore, LiveKitRestoreReport};
use crate::snapshot::latest;

/// Which of the two servers clients are pointed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serving {
    Primary,
    Standby,
}

/// Moves a LiveKit service from its SFU to a warm standby (another
/// server, another region, with the same API key), in dr-core's steps:
///
/// - **assess**: both servers probed at once ([`LiveKitProbe`]: `GET /`, a
///   short `ListRooms`); the one clients are pointed at is the primary,
///   the other the replica, each reachable only if healthy. The standby's
///   lag is the age of the latest snapshot: what a failover would lose.
/// - **plan**: promote the standby if it is healthy; refused if the loss
///   limit is smaller than the snapshot's age, unless forced. Nothing is
///   fenced: an SFU holds no data that diverges, and one that comes back
///   serves no one once clients are pointed away.
/// - **promote**: the latest snapshot restored onto the standby
///   ([`LiveKitRestore`]); its report (remap of ids and stream keys, the
///   participants to set again) is kept for [`LiveKitFailover::last_restore`].
/// - the caller's `Rewire` hook points clients at it (a Kubernetes Service,
///   DNS, a command), and **verify** finds it the one healthy primary.
///
/// The report's data loss is the snapshot's age at the promotion: the
/// rooms, metadata and ids made after it are not on the standby.
pub struct LiveKitFailover {
    component: ComponentId,
    primary: LiveKit,
    standby: LiveKit,
    snapshots: Arc<dyn SnapshotSource>,
    probe: LiveKitProbe,
    objectives: Objectives,
    serving: Mutex<Serving>,
    last: Mutex<Option<LiveKitRestoreReport>>,
}

impl std::fmt::Debug for LiveKitFailover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKitFailover")
            .field("component", &self.component)
            .field("primary", &self.primary.url())
            .field("standby", &self.standby.url())
            .finish_non_exhaustive()
    }
}

impl LiveKitFailover {
    /// Fails `component` over from `primary` to `standby`, restoring its
    /// snapshots in `snapshots`, each restore held against `objectives`.
    pub fn new(
        component: ComponentId,
        primary: LiveKit,
        standby: LiveKit,
        snapshots: Arc<dyn SnapshotSource>,
        objectives: Objectives,
    ) -> Self {
        Self {
            component,
            primary,
            standby,
            snapshots,
            probe: LiveKitProbe::new(),
            objectives,
            serving: Mutex::new(Serving::Primary),
            last: Mutex::new(None),
        }
    }

    /// Probes with `probe` (its timeout, its metrics URL).
    #[must_use]
    pub fn probe(mut self, probe: LiveKitProbe) -> Self {
        self.probe = probe;
        self
    }

    /// The report of the restore the last promotion made: its remap of
    /// ids and stream keys, and the participants to set again as they
    /// rejoin ([`LiveKitRestoreReport::rejoin`]).
    pub fn last_restore(&self) -> Option<LiveKitRestoreReport> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn serving(&self) -> Serving {
        *self.serving.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn server(&self, name: &str) -> Option<(&LiveKit, Serving)> {
        if name == self.primary.url() {
            Some((&self.primary, Serving::Primary))
        } else if name == self.standby.url() {
            Some((&self.standby, Serving::Standby))
        } else {
            None
        }
    }
}

/// A member of the assessment from one look at a server.
fn member(health: &LiveKitHealth, serving: bool, lag: Option<Lag>) -> Member {
    let mut detail = BTreeMap::new();
    if let Some(problem) = health.problem() {
        detail.insert("problem".to_owned(), problem);
    }
    if let Ok(latency) = &health.api {
        detail.insert(
            "list_rooms".to_owned(),
            format!("{} ms", latency.as_millis()),
        );
    }
    if let Some(Ok(metrics)) = &health.metrics {
        if let Some(rooms) = metrics.rooms {
            detail.insert("rooms".to_owned(), rooms.to_string());
        }
        if let Some(participants) = metrics.participants {
            detail.insert("participants".to_owned(), participants.to_string());
        }
    }
    Member {
        name: health.url.clone(),
        role: if serving {
            Role::Primary
        } else {
            Role::Replica
        },
        reachable: health.is_healthy(),
        position: None,
        lag,
        promotable: true,
        priority: 0,
        detail,
    }
}

#[async_trait]
impl Failover for LiveKitFailover {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with(Capability::PlannedSwitchover)
    }

    async fn assess(&self) -> dr_core::Result<ClusterAssessment> {
        let assessed_at = Timestamp::now();
        let (primary, standby, latest) = tokio::join!(
            self.probe.check(&self.primary),
            self.probe.check(&self.standby),
            latest(self.snapshots.as_ref(), &self.component),
        );
        let age = latest?.map(|(manifest, _)| {
            let age = assessed_at.duration_since(manifest.recovery_point.at);
            Duration::try_from(age).unwrap_or(Duration::ZERO)
        });
        let lag = Lag {
            bytes: None,
            behind: age,
        };
        let serving = self.serving();
        Ok(ClusterAssessment {
            component: self.component.clone(),
            assessed_at,
            members: vec![
                member(
                    &primary,
                    serving == Serving::Primary,
                    (serving != Serving::Primary).then_some(lag),
                ),
                member(
                    &standby,
                    serving == Serving::Standby,
                    (serving != Serving::Standby).then_some(lag),
                ),
            ],
        })
    }

    fn plan(
        &self,
        assessment: &ClusterAssessment,
        request: &FailoverRequest,
    ) -> dr_core::Result<FailoverPlan> {
        let refused = |reason: String| dr_core::Error::Refused {
            operation: format!("failover of {}", self.component),
            reason,
        };
        let serving = assessment
            .members
            .iter()
            .find(|m| m.role == Role::Primary)
            .ok_or_else(|| refused("no server is serving".into()))?;
        let candidate = assessment
            .members
            .iter()
            .find(|m| m.role != Role::Primary)
            .ok_or_else(|| refused("there is no standby".into()))?;
        if let Some(target) = &request.target
            && *target != candidate.name
        {
            return Err(refused(format!(
                "{target} is not the standby ({})",
                candidate.name
            )));
        }
        if !candidate.reachable {
            return Err(refused(format!(
                "the standby {} is not healthy: {}",
                candidate.name,
                candidate
                    .detail
                    .get("problem")
                    .map_or("no answer", String::as_str)
            )));
        }
        if request.mode == FailoverMode::Switchover && !serving.reachable {
            return Err(refused(format!(
                "a switchover needs {} healthy; it is not (fail over instead)",
                serving.name
            )));
        }
        let behind = candidate.lag.and_then(|l| l.behind);
        let Some(behind) = behind else {
            return Err(refused(format!(
                "there is no snapshot of {} to restore onto {}",
                self.component, candidate.name
            )));
        };
        if let LossLimit::Within(limit) = request.loss_limit
            && behind > limit.as_duration()
            && !request.force
        {
            return Err(refused(format!(
                "the latest snapshot is {} old, more than the {} allowed to lose; \
                 take a snapshot, or force it",
                Rpo::new(behind),
                limit
            )));
        }
        Ok(FailoverPlan {
            component: self.component.clone(),
            mode: request.mode,
            assessed_at: assessment.assessed_at,
            promote: candidate.clone(),
            fence: Vec::new(),
            expected_loss: Lag {
                bytes: None,
                behind: Some(behind),
            },
            acknowledged_kept: None,
            passed_over: Vec::<PassedOver>::new(),
        })
    }

    async fn promote(&self, plan: &FailoverPlan) -> dr_core::Result<Promotion> {
        let (target, which) = self.server(&plan.promote.name).ok_or_else(|| {
            dr_core::Error::invalid(
                format!("failover of {}", self.component),
                format!("{} is neither of its servers", plan.promote.name),
            )
        })?;
        let restore = LiveKitRestore::new(self.component.clone(), target.clone());
        let latest = RecoveryTarget::Latest;
        let report = restore
            .restore_state(RestoreRequest::new(
                self.snapshots.as_ref(),
                &latest,
                self.objectives,
            ))
            .await?;
        let lost = report
            .recovery
            .data_loss
            .unwrap_or_else(|| Rpo::new(Duration::ZERO));
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = which;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
        Ok(Promotion {
            position: None,
            data_loss: Some(lost),
        })
    }
}
