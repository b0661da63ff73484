//! [`ClusterFailover`] (dr-core `Failover`): one shard of a Redis Cluster,
//! by a manual failover on its most advanced replica: `CLUSTER FAILOVER`
//! (a switchover: the master hands over once the replica has every write),
//! `FORCE` when the master is unreachable, `TAKEOVER` when the masters
//! cannot vote (no majority). An OK reply is not success: the replica's
//! own `CLUSTER NODES` must show it a master serving the shard's slots.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_core::{
    Capabilities, Capability, ClusterAssessment, ComponentId, Failover, FailoverMode, FailoverPlan,
    FailoverRequest, Lag, Member, PassedOver, Position, Promotion, Role, async_trait,
};
use jiff::Timestamp;

use super::layout::{ClusterLayout, NodeRole};
use super::snapshot::read_layout;
use crate::failover::{
    LastSeen, member_within, offset_of, position_of, refused, within_loss_limit,
};
use crate::fetch::conn::Reply;
use crate::fetch::{RedisServer, info, info_field};

/// A Redis Cluster's shards, failed over one at a time. Members are named
/// by their addresses, as `CLUSTER NODES` gives them.
#[derive(Debug, Clone)]
pub struct ClusterFailover {
    component: ComponentId,
    seeds: Vec<RedisServer>,
    promote_wait: Duration,
    /// Only the shard serving this slot, where set.
    slot: Option<u16>,
    last_seen: Arc<LastSeen>,
    probe_timeout: Duration,
}

impl ClusterFailover {
    /// The cluster that `seeds` belong to (the first that answers is
    /// asked; every node is reached with its credentials and TLS).
    pub fn new(component: ComponentId, seeds: Vec<RedisServer>) -> Self {
        Self {
            component,
            seeds,
            promote_wait: Duration::from_secs(30),
            slot: None,
            last_seen: Arc::default(),
            probe_timeout: Duration::from_secs(5),
        }
    }

    /// How long a node may take to answer an assessment's probe before it
    /// counts as unreachable (default 5 s; a monitor gives its own).
    #[must_use]
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// Only the shard that serves `slot` (whichever node that is after
    /// failovers): its master and that master's replicas are the members,
    /// so that it has one primary, as dr-core's `Monitor` expects. One
    /// monitor per shard watches a whole Cluster.
    #[must_use]
    pub fn shard_serving(mut self, slot: u16) -> Self {
        self.slot = Some(slot);
        self
    }

    /// How long a promotion may take to show (default 30 s; a switchover is
    /// asked again every 6 s, a forced failover that has not shown after
    /// 7.5 s is retried as a takeover).
    #[must_use]
    pub fn promote_wait(mut self, wait: Duration) -> Self {
        self.promote_wait = wait;
        self
    }

    async fn layout(&self) -> dr_core::Result<(ClusterLayout, RedisServer)> {
        self.layout_within(self.probe_timeout).await
    }

    /// The layout from the first seed that answers within `timeout` (a
    /// hung node is passed over like a dead one).
    async fn layout_within(
        &self,
        timeout: Duration,
    ) -> dr_core::Result<(ClusterLayout, RedisServer)> {
        let mut last = None;
        for seed in &self.seeds {
            match tokio::time::timeout(timeout, read_layout(seed)).await {
                Ok(Ok((layout, _))) => return Ok((layout, seed.clone())),
                Ok(Err(e)) => last = Some(dr_core::Error::from(e)),
                Err(_) => {
                    last = Some(dr_core::Error::Timeout {
                        operation: format!("reading the cluster's layout from {}", seed.addr()),
                        after: timeout,
                    });
                }
            }
        }
        Err(last
            .unwrap_or_else(|| dr_core::Error::invalid("cluster failover", "no seed was given")))
    }

    fn refused(&self, reason: impl Into<String>) -> dr_core::Error {
        refused(&self.component, reason)
    }
}

#[async_trait]
impl Failover for ClusterFailover {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with(Capability::PlannedSwitchover)
    }

    async fn assess(&self) -> dr_core::Result<ClusterAssessment> {
        self.assess_nodes(self.probe_timeout).await
    }

    async fn assess_within(&self, timeout: Duration) -> dr_core::Result<ClusterAssessment> {
        self.assess_nodes(timeout).await
    }

    fn plan(
        &self,
        assessment: &ClusterAssessment,
        request: &FailoverRequest,
    ) -> dr_core::Result<FailoverPlan> {
        let switchover = request.mode == FailoverMode::Switchover;
        let node_id = |m: &Member| m.detail.get("node_id").cloned().unwrap_or_default();
        let master_of = |m: &Member| m.detail.get("master_id").cloned();
        // The shard: the one of the replica asked for, else the first whose
        // master is lost.
        let master = match request.target.as_deref() {
            Some(target) => {
                let replica = assessment.member(target).ok_or_else(|| {
                    self.refused(format!("{target} is not a node of the cluster"))
                })?;
                let id = master_of(replica)
                    .ok_or_else(|| self.refused(format!("{target} is not a replica")))?;
                assessment
                    .members
                    .iter()
                    .find(|m| node_id(m) == id)
                    .ok_or_else(|| self.refused(format!("{target}'s master is not known")))?
            }
            None if switchover => {
                return Err(self.refused("a switchover names the replica to promote"));
            }
            None => assessment
                .members
                .iter()
                .find(|m| {
                    m.role == Role::Primary && (!m.reachable || m.detail.contains_key("failing"))
                })
                .ok_or_else(|| {
                    self.refused("every master answers: name the replica to switch over to")
                })?,
        };
        if !switchover && master.reachable && !request.force {
            return Err(self.refused(format!(
                "{} answers as the master: switch over, or fail over with force",
                master.name
            )));
        }
        if switchover && !master.reachable {
            return Err(self.refused(format!(
                "{} does not answer: fail over instead",
                master.name
            )));
        }
        let master_id = node_id(master);
        let mut passed_over = Vec::new();
        let mut candidates: Vec<&Member> = Vec::new();
        for m in assessment
            .members
            .iter()
            .filter(|m| master_of(m).as_deref() == Some(master_id.as_str()))
        {
            if !m.promotable {
                passed_over.push(PassedOver {
                    name: m.name.clone(),
                    reason: "unreachable".into(),
                });
            } else if request.target.as_deref().is_some_and(|t| t != m.name) {
                passed_over.push(PassedOver {
                    name: m.name.clone(),
                    reason: "not the member asked for".into(),
                });
            } else {
                candidates.push(m);
            }
        }
        candidates.sort_by_key(|m| std::cmp::Reverse(offset_of(m)));
        let Some(&promote) = candidates.first() else {
            // Say what was seen: the replicas passed over, and how the
            // other nodes stood, so that a layout that lags shows.
            let passed: Vec<String> = passed_over
                .iter()
                .map(|p| format!("{} ({})", p.name, p.reason))
                .collect();
            let others: Vec<String> = assessment
                .members
                .iter()
                .filter(|m| m.name != master.name)
                .map(|m| {
                    let of = master_of(m).map_or(String::new(), |id| format!(" of {id}"));
                    format!("{} {:?}{of}", m.name, m.role)
                })
                .collect();
            return Err(self.refused(format!(
                "{} (node {master_id}) has no reachable replica to promote; passed over: {}; \
                 the other nodes: {}",
                master.name,
                if passed.is_empty() {
                    "none".to_owned()
                } else {
                    passed.join(", ")
                },
                others.join(", ")
            )));
        };
        let expected_loss = if switchover {
            Lag {
                bytes: Some(0),
                behind: None,
            }
        } else {
            // A lost master's offset is where it was last seen.
            Lag {
                bytes: offset_of(master)
                    .zip(offset_of(promote))
                    .map(|(m, r)| m.saturating_sub(r)),
                behind: None,
            }
        };
        within_loss_limit(&self.component, request, promote, &expected_loss)?;
        Ok(FailoverPlan {
            component: self.component.clone(),
            mode: request.mode,
            assessed_at: assessment.assessed_at,
            promote: promote.clone(),
            // The cluster demotes a returning master itself (config epochs).
            fence: Vec::new(),
            expected_loss,
            acknowledged_kept: None,
            passed_over,
        })
    }

    async fn promote(&self, plan: &FailoverPlan) -> dr_core::Result<Promotion> {
        let (_, seed) = self.layout().await?;
        let replica = seed.at(&plan.promote.name)?;
        let (mut conn, _) = replica.connect().await?;
        let deadline = Instant::now() + self.promote_wait;
        // A manual failover the master did not take up (or whose election
        // the other masters refused: one that has not yet heard of the
        // replica refuses its vote) is given up by the replica after 5 s:
        // asked again each time until the deadline. A forced one that has
        // not shown within `FORCED_WAIT` becomes a takeover.
        let mut attempt = 0u32;
        loop {
            let mode: &[u8] = match (plan.mode, attempt) {
                (FailoverMode::Switchover, _) => b"",
                (_, 0) => b"FORCE",
                _ => b"TAKEOVER",
            };
            let mut args: Vec<&[u8]> = vec![b"CLUSTER", b"FAILOVER"];
            if !mode.is_empty() {
                args.push(mode);
            }
            conn.call("CLUSTER FAILOVER", &args).await?;
            let until = match (plan.mode, attempt) {
                (FailoverMode::Switchover, _) => Instant::now() + MANUAL_FAILOVER_TIMEOUT,
                (_, 0) => Instant::now() + FORCED_WAIT,
                _ => deadline,
            }
            .min(deadline);
            if let Some(position) = self.wait_for_master(&replica, until).await? {
                return Ok(Promotion {
                    position: Some(position),
                    data_loss: None,
                });
            }
            attempt += 1;
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(self.refused(format!(
            "{} was not a master serving slots {} s after CLUSTER FAILOVER",
            replica.addr(),
            self.promote_wait.as_secs()
        )))
    }

    async fn verify(&self, plan: &FailoverPlan) -> dr_core::Result<Option<Timestamp>> {
        let (_, seed) = self.layout().await?;
        let replica = seed.at(&plan.promote.name)?;
        let deadline = Instant::now() + self.promote_wait;
        loop {
            let (mut conn, _) = replica.connect().await?;
            let state = match conn.call("CLUSTER INFO", &[b"CLUSTER", b"INFO"]).await? {
                Reply::Bulk(Some(text)) => String::from_utf8_lossy(&text).into_owned(),
                _ => String::new(),
            };
            if info_field(&state, "cluster_state") == Some("ok") {
                return Ok(None);
            }
            if Instant::now() > deadline {
                return Err(self.refused(format!(
                    "{} was promoted, but the cluster is not ok: {state:?}",
                    plan.promote.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// How long a replica waits for a manual failover (5 s in Redis's
/// `CLUSTER_MF_TIMEOUT`), and a little more.
const MANUAL_FAILOVER_TIMEOUT: Duration = Duration::from_secs(6);

/// How long a forced failover may take to show before it becomes a
/// takeover.
const FORCED_WAIT: Duration = Duration::from_millis(7500);

impl ClusterFailover {
    /// Every node of the layout (of the shard, with `shard_serving`)
    /// probed at once, each within `timeout`: one that does not answer in
    /// time (dead, or hung) is unreachable.
    async fn assess_nodes(&self, timeout: Duration) -> dr_core::Result<ClusterAssessment> {
        let assessed_at = Timestamp::now();
        let (layout, seed) = self.layout_within(timeout).await?;
        let masters: Vec<&str> = match self.slot {
            None => Vec::new(),
            Some(slot) => layout
                .nodes
                .iter()
                .filter(|n| n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
                .map(|n| n.id.as_str())
                .collect(),
        };
        let in_scope = |node: &super::layout::ClusterNode| {
            self.slot.is_none()
                || masters.contains(&node.id.as_str())
                || matches!(&node.role, NodeRole::Replica { of } if masters.contains(&of.as_str()))
        };
        let nodes: Vec<&super::layout::ClusterNode> =
            layout.nodes.iter().filter(|n| in_scope(n)).collect();
        let probes = nodes.iter().map(|node| {
            let server = seed.at(&node.addr).ok();
            async move { Some(member_within(&node.addr, &server?, timeout).await) }
        });
        let probed_all = futures_util::future::join_all(probes).await;
        let mut members = Vec::new();
        for (node, probed) in nodes.into_iter().zip(probed_all) {
            let mut detail = BTreeMap::new();
            detail.insert("node_id".to_owned(), node.id.clone());
            let role = match &node.role {
                NodeRole::Master => {
                    let slots: Vec<String> =
                        node.slots.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                    detail.insert("slots".to_owned(), slots.join(" "));
                    Role::Primary
                }
                NodeRole::Replica { of } => {
                    detail.insert("master_id".to_owned(), of.clone());
                    Role::Replica
                }
            };
            let reachable = probed.as_ref().is_some_and(|m| m.reachable);
            let position = probed.and_then(|m| m.position);
            if node.failing {
                detail.insert("failing".to_owned(), "true".to_owned());
            }
            members.push(Member {
                name: node.addr.clone(),
                role,
                reachable,
                position,
                lag: None,
                promotable: role == Role::Replica && reachable,
                priority: 0,
                detail,
            });
        }
        self.last_seen.note(&mut members, assessed_at);
        Ok(ClusterAssessment {
            component: self.component.clone(),
            assessed_at,
            members,
        })
    }

    /// Waits until `replica`'s own `CLUSTER NODES` shows it a master with
    /// slots; its position then, or `None` at `until`.
    async fn wait_for_master(
        &self,
        replica: &RedisServer,
        until: Instant,
    ) -> dr_core::Result<Option<Position>> {
        loop {
            let (mut conn, _) = replica.connect().await?;
            if let Reply::Bulk(Some(text)) =
                conn.call("CLUSTER NODES", &[b"CLUSTER", b"NODES"]).await?
            {
                let text = String::from_utf8_lossy(&text);
                let me = text.lines().find(|l| {
                    l.split(' ')
                        .nth(2)
                        .is_some_and(|f| f.split(',').any(|f| f == "myself"))
                });
                let serving = me.is_some_and(|l| {
                    let words: Vec<&str> = l.split(' ').collect();
                    words
                        .get(2)
                        .is_some_and(|f| f.split(',').any(|f| f == "master"))
                        && words.len() > 8
                });
                if serving
                    && let Some(position) = position_of(&info(&mut conn, "replication").await?)
                {
                    return Ok(Some(position));
                }
            }
            if Instant::now() > until {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
