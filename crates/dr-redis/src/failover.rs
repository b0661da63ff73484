//! [`RedisFailover`] (dr-core `Failover`): a standalone master and its
//! replicas. A failover promotes the reachable replica with the highest
//! replication offset (`REPLICAOF NO ONE`) and points the other replicas,
//! and the old master where it answers, at it; a switchover hands over
//! with Redis's own coordinated `FAILOVER TO`, which waits until the
//! replica has every write. The writes lost are the master's last known
//! offset minus the promoted replica's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dr_core::{
    Capabilities, Capability, ClusterAssessment, ComponentId, Failover, FailoverMode, FailoverPlan,
    FailoverRequest, Fence, Lag, LossLimit, Member, PassedOver, Position, Promotion, Role,
    async_trait,
};
use jiff::Timestamp;

use crate::error::Error;
use crate::fetch::conn::Reply;
use crate::fetch::{RedisServer, info, info_field};

/// A standalone Redis master and its replicas, by name.
#[derive(Debug, Clone)]
pub struct RedisFailover {
    component: ComponentId,
    members: Vec<(String, RedisServer)>,
    promote_wait: Duration,
    last_seen: Arc<LastSeen>,
    probe_timeout: Duration,
}

impl RedisFailover {
    /// The members of `component`'s replication set, each with a name.
    pub fn new(component: ComponentId, members: Vec<(String, RedisServer)>) -> Self {
        Self {
            component,
            members,
            promote_wait: Duration::from_secs(10),
            last_seen: Arc::default(),
            probe_timeout: Duration::from_secs(5),
        }
    }

    /// How long a member may take to answer an assessment's probe before
    /// it counts as unreachable (default 5 s; a monitor gives its own).
    #[must_use]
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// How long a promotion may take to show in the new master's role.
    #[must_use]
    pub fn promote_wait(mut self, wait: Duration) -> Self {
        self.promote_wait = wait;
        self
    }

    fn server(&self, name: &str) -> dr_core::Result<&RedisServer> {
        self.members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                dr_core::Error::not_found(format!("member {name} of {}", self.component))
            })
    }

    fn refused(&self, reason: impl Into<String>) -> dr_core::Error {
        refused(&self.component, reason)
    }
}

/// One member as `INFO replication` shows it.
pub(crate) async fn member(name: &str, server: &RedisServer) -> Member {
    let (mut conn, version) = match server.connect().await {
        Ok(connected) => connected,
        Err(e) => return unreachable_member(name, server, e.to_string()),
    };
    let replication = match info(&mut conn, "replication").await {
        Ok(replication) => replication,
        Err(e) => return unreachable_member(name, server, e.to_string()),
    };
    let mut detail = BTreeMap::new();
    detail.insert("address".to_owned(), server.addr());
    detail.insert("redis_version".to_owned(), version);
    let field = |f: &str| info_field(&replication, f).map(str::to_owned);
    let master = field("role").as_deref() == Some("master");
    let position = position_of(&replication);
    if let Some(link) = field("master_link_status") {
        detail.insert("master_link_status".to_owned(), link);
    }
    if let (Some(host), Some(port)) = (field("master_host"), field("master_port")) {
        detail.insert("master".to_owned(), format!("{host}:{port}"));
    }
    Member {
        name: name.to_owned(),
        role: if master { Role::Primary } else { Role::Replica },
        reachable: true,
        position,
        lag: None,
        promotable: !master,
        priority: 0,
        detail,
    }
}

/// Where each member was last seen answering, so that a master that stops
/// answering still has a position: a failover counts the writes it loses
/// from there (the master's last known offset less the promoted replica's;
/// what the master took after the last probe is not known to anyone).
#[derive(Debug, Default)]
pub(crate) struct LastSeen(Mutex<HashMap<String, (bool, Position, Timestamp)>>);

impl LastSeen {
    /// Notes the members that answered; gives each one that did not the
    /// position it was last seen at, with a `last_seen` detail saying as
    /// what (`master` or `replica`) and when.
    pub(crate) fn note(&self, members: &mut [Member], at: Timestamp) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for m in members {
            match (&m.position, m.reachable) {
                (Some(position), true) => {
                    seen.insert(
                        m.name.clone(),
                        (m.role == Role::Primary, position.clone(), at),
                    );
                }
                (None, false) => {
                    if let Some((master, position, when)) = seen.get(&m.name) {
                        m.position = Some(position.clone());
                        let role = if *master { "master" } else { "replica" };
                        m.detail
                            .insert("last_seen".to_owned(), format!("{role} at {when}"));
                    }
                }
                _ => {}
            }
        }
    }
}

/// Whether `member` does not answer and was last seen a master.
pub(crate) fn lost_master(member: &Member) -> bool {
    !member.reachable
        && member
            .detail
            .get("last_seen")
            .is_some_and(|s| s.starts_with("master "))
}

/// [`member`], counted unreachable if it does not answer within
/// `timeout` (a server that hangs accepts connections and answers nothing).
pub(crate) async fn member_within(name: &str, server: &RedisServer, timeout: Duration) -> Member {
    match tokio::time::timeout(timeout, member(name, server)).await {
        Ok(member) => member,
        Err(_) => unreachable_member(
            name,
            server,
            format!("no answer within {} ms", timeout.as_millis()),
        ),
    }
}

/// A member that did not answer, and why.
fn unreachable_member(name: &str, server: &RedisServer, error: String) -> Member {
    Member {
        name: name.to_owned(),
        role: Role::Unknown,
        reachable: false,
        position: None,
        lag: None,
        promotable: false,
        priority: 0,
        detail: BTreeMap::from([
            ("address".to_owned(), server.addr()),
            ("error".to_owned(), error),
        ]),
    }
}

/// Where a server stands in its history, from its `INFO replication`: its
/// replication id and its offset (a master's `master_repl_offset`, a
/// replica's `slave_repl_offset`).
pub(crate) fn position_of(replication: &str) -> Option<Position> {
    let master = info_field(replication, "role") == Some("master");
    let offset = info_field(
        replication,
        if master {
            "master_repl_offset"
        } else {
            "slave_repl_offset"
        },
    )?
    .parse()
    .ok()?;
    Some(Position::Redis {
        replication_id: info_field(replication, "master_replid")?.parse().ok()?,
        offset,
    })
}

/// A member's replication offset, where it is known.
pub(crate) fn offset_of(member: &Member) -> Option<u64> {
    match member.position {
        Some(Position::Redis { offset, .. }) => Some(offset),
        _ => None,
    }
}

/// A failover of `component` refused, and why.
pub(crate) fn refused(component: &ComponentId, reason: impl Into<String>) -> dr_core::Error {
    dr_core::Error::Refused {
        operation: format!("failover of {component}"),
        reason: reason.into(),
    }
}

/// Refuses a promotion of `promote` that loses more than the request's
/// byte limit, unless forced.
pub(crate) fn within_loss_limit(
    component: &ComponentId,
    request: &FailoverRequest,
    promote: &Member,
    expected: &Lag,
) -> dr_core::Result<()> {
    if let (LossLimit::Bytes(limit), Some(lost)) = (request.loss_limit, expected.bytes)
        && lost > limit
        && !request.force
    {
        return Err(refused(
            component,
            format!(
                "promoting {} loses {lost} bytes of writes, over the limit of {limit}",
                promote.name
            ),
        ));
    }
    Ok(())
}

#[async_trait]
impl Failover for RedisFailover {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with(Capability::PlannedSwitchover)
    }

    async fn assess(&self) -> dr_core::Result<ClusterAssessment> {
        self.assess_members(self.probe_timeout).await
    }

    async fn assess_within(&self, timeout: Duration) -> dr_core::Result<ClusterAssessment> {
        self.assess_members(timeout).await
    }

    fn plan(
        &self,
        assessment: &ClusterAssessment,
        request: &FailoverRequest,
    ) -> dr_core::Result<FailoverPlan> {
        let primaries: Vec<&Member> = assessment
            .members
            .iter()
            .filter(|m| m.role == Role::Primary && m.reachable)
            .collect();
        let switchover = request.mode == FailoverMode::Switchover;
        if switchover && primaries.len() != 1 {
            return Err(self.refused(match primaries.len() {
                0 => "a switchover needs the master up; fail over instead".to_owned(),
                n => format!("{n} members are masters"),
            }));
        }
        if !switchover && primaries.len() == 1 && !request.force {
            return Err(self.refused(format!(
                "{} answers as the master: switch over, or fail over with force",
                primaries[0].name
            )));
        }
        let mut passed_over = Vec::new();
        let mut candidates: Vec<&Member> = Vec::new();
        for m in &assessment.members {
            if m.role == Role::Primary {
                continue;
            }
            let reason = if !m.reachable {
                Some("unreachable".to_owned())
            } else if !m.promotable {
                Some("not promotable".to_owned())
            } else if request.target.as_deref().is_some_and(|t| t != m.name) {
                Some("not the member asked for".to_owned())
            } else {
                None
            };
            match reason {
                Some(reason) => passed_over.push(PassedOver {
                    name: m.name.clone(),
                    reason,
                }),
                None => candidates.push(m),
            }
        }
        candidates.sort_by_key(|m| std::cmp::Reverse(offset_of(m)));
        let Some(&promote) = candidates.first() else {
            return Err(self.refused("no reachable replica to promote"));
        };
        for other in &candidates[1..] {
            passed_over.push(PassedOver {
                name: other.name.clone(),
                reason: format!("behind {}", promote.name),
            });
        }
        // The writes lost: the master's offset (where it answers) less the
        // replica's; a switchover waits for every one.
        let expected_loss = match (switchover, primaries.first()) {
            (true, _) => Lag {
                bytes: Some(0),
                behind: None,
            },
            (false, Some(master)) => Lag {
                bytes: offset_of(master)
                    .zip(offset_of(promote))
                    .map(|(m, r)| m.saturating_sub(r)),
                behind: None,
            },
            // The master is lost: from where it was last seen, if it was.
            (false, None) => Lag {
                bytes: assessment
                    .members
                    .iter()
                    .find(|m| lost_master(m))
                    .and_then(offset_of)
                    .zip(offset_of(promote))
                    .map(|(m, r)| m.saturating_sub(r)),
                behind: None,
            },
        };
        within_loss_limit(&self.component, request, promote, &expected_loss)?;
        Ok(FailoverPlan {
            component: self.component.clone(),
            mode: request.mode,
            assessed_at: assessment.assessed_at,
            promote: promote.clone(),
            // The master that answers, and one lost since it was last seen
            // (a fence that works without it, such as a command that powers
            // it off, is what keeps it from taking writes alone).
            fence: if switchover {
                Vec::new()
            } else {
                primaries
                    .into_iter()
                    .chain(assessment.members.iter().filter(|m| lost_master(m)))
                    .cloned()
                    .collect()
            },
            expected_loss,
            acknowledged_kept: None,
            passed_over,
        })
    }

    async fn promote(&self, plan: &FailoverPlan) -> dr_core::Result<Promotion> {
        let target = self.server(&plan.promote.name)?;
        let target_addr = target.addr();
        let (host, port) = target_addr
            .rsplit_once(':')
            .ok_or_else(|| self.refused(format!("{target_addr} is not host:port")))?;
        if plan.mode == FailoverMode::Switchover {
            // Redis's own handover: the master pauses writes, waits until
            // the replica has them all, and swaps roles with it.
            let mut handed = false;
            for (name, server) in &self.members {
                if *name == plan.promote.name {
                    continue;
                }
                let Ok((mut conn, _)) = server.connect().await else {
                    continue;
                };
                let replication = info(&mut conn, "replication").await?;
                if info_field(&replication, "role") == Some("master") {
                    conn.call(
                        "FAILOVER",
                        &[
                            b"FAILOVER",
                            b"TO",
                            host.as_bytes(),
                            port.as_bytes(),
                            b"TIMEOUT",
                            b"10000",
                        ],
                    )
                    .await?;
                    handed = true;
                    break;
                }
            }
            if !handed {
                return Err(self.refused("the master no longer answers: fail over instead"));
            }
        } else {
            let (mut conn, _) = target.connect().await?;
            conn.call("REPLICAOF", &[b"REPLICAOF", b"NO", b"ONE"])
                .await?;
        }
        let position = self.wait_for_master(target).await?;
        // Every other member that answers (within the probe timeout: one
        // that hangs is left to the monitor, which demotes it when it comes
        // back) follows the new master; a former master coming back does
        // too, never left writable beside it.
        for (name, server) in &self.members {
            if *name == plan.promote.name {
                continue;
            }
            let repoint = async {
                let (mut conn, _) = server.connect().await?;
                conn.call(
                    "REPLICAOF",
                    &[b"REPLICAOF", host.as_bytes(), port.as_bytes()],
                )
                .await?;
                // A fenced former master: its writes were paused.
                conn.call("CLIENT UNPAUSE", &[b"CLIENT", b"UNPAUSE"])
                    .await?;
                Ok::<_, Error>(())
            };
            let _ = tokio::time::timeout(self.probe_timeout, repoint).await;
        }
        Ok(Promotion {
            position: Some(position),
            data_loss: None,
        })
    }
}

impl RedisFailover {
    /// Every member probed at once; one that does not answer within
    /// `timeout` counts as unreachable.
    async fn assess_members(&self, timeout: Duration) -> dr_core::Result<ClusterAssessment> {
        let assessed_at = Timestamp::now();
        let probes = self
            .members
            .iter()
            .map(|(name, server)| member_within(name, server, timeout));
        let mut members = futures_util::future::join_all(probes).await;
        self.last_seen.note(&mut members, assessed_at);
        // Lag against the one master, where there is one.
        let master_offset = {
            let mut masters = members.iter().filter(|m| m.role == Role::Primary);
            match (masters.next(), masters.next()) {
                (Some(one), None) => offset_of(one),
                _ => None,
            }
        };
        if let Some(master_offset) = master_offset {
            for m in members.iter_mut().filter(|m| m.role == Role::Replica) {
                m.lag = offset_of(m).map(|o| Lag {
                    bytes: Some(master_offset.saturating_sub(o)),
                    behind: None,
                });
            }
        }
        Ok(ClusterAssessment {
            component: self.component.clone(),
            assessed_at,
            members,
        })
    }

    /// Waits until `server` says it is a master; its position then.
    async fn wait_for_master(&self, server: &RedisServer) -> dr_core::Result<Position> {
        let deadline = Instant::now() + self.promote_wait;
        loop {
            let (mut conn, _) = server.connect().await?;
            let role = conn.call("ROLE", &[b"ROLE"]).await?;
            if let Reply::Array(Some(items)) = &role
                && items.first() == Some(&Reply::Bulk(Some(b"master".to_vec())))
            {
                let replication = info(&mut conn, "replication").await?;
                return position_of(&replication).ok_or_else(|| {
                    dr_core::Error::from(Error::NotRedis {
                        addr: server.addr(),
                        reason: "INFO replication names no replication id and offset".into(),
                    })
                });
            }
            if Instant::now() > deadline {
                return Err(dr_core::Error::from(Error::WrongTarget {
                    addr: server.addr(),
                    reason: format!(
                        "not a master {} s after its promotion: ROLE says {role:?}",
                        self.promote_wait.as_secs()
                    ),
                }));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How long [`PauseWrites`] waits for another member to say whether it is
/// a master.
const FENCE_PROBE: Duration = Duration::from_secs(2);

/// Fences a Redis master that still answers. Beside another master that
/// answers (a former master come back after a failover, with the writes it
/// took alone), it is made that master's replica (`REPLICAOF`), its own
/// data replaced by a full sync; otherwise (the failover has yet to
/// promote) its writes are paused (`CLIENT PAUSE … WRITE`) until the
/// failover points it at the new master, which lifts the pause. A master
/// that does not answer cannot be fenced: a failover without it needs
/// [`FailoverRequest::old_primary_known_dead`], and a monitor demotes it
/// when it answers again.
#[derive(Debug, Clone)]
pub struct PauseWrites {
    members: Vec<(String, RedisServer)>,
    at_most: Duration,
}

impl PauseWrites {
    /// A fence over `members` (as [`RedisFailover::new`] names them),
    /// pausing writes for at most `at_most` should the failover not finish.
    pub fn new(members: Vec<(String, RedisServer)>, at_most: Duration) -> Self {
        Self { members, at_most }
    }
}

#[async_trait]
impl Fence for PauseWrites {
    async fn fence(&self, fenced: &Member) -> dr_core::Result<()> {
        if !fenced.reachable {
            return Err(dr_core::Error::Refused {
                operation: format!("fencing {}", fenced.name),
                reason: "it did not answer: it cannot be fenced over its own protocol".into(),
            });
        }
        let server = self
            .members
            .iter()
            .find(|(name, _)| *name == fenced.name)
            .map(|(_, s)| s)
            .ok_or_else(|| dr_core::Error::not_found(format!("member {}", fenced.name)))?;
        let (mut conn, _) = server.connect().await?;
        let mut others = Vec::new();
        for (name, other) in self.members.iter().filter(|(n, _)| *n != fenced.name) {
            let probed = member_within(name, other, FENCE_PROBE).await;
            if probed.reachable && probed.role == Role::Primary {
                others.push(other);
            }
        }
        if let [master] = others.as_slice() {
            let addr = master.addr();
            let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
                dr_core::Error::invalid("member address", format!("{addr} is not host:port"))
            })?;
            conn.call(
                "REPLICAOF",
                &[b"REPLICAOF", host.as_bytes(), port.as_bytes()],
            )
            .await?;
            conn.call("CLIENT UNPAUSE", &[b"CLIENT", b"UNPAUSE"])
                .await?;
            return Ok(());
        }
        let ms = self.at_most.as_millis().max(1).to_string();
        conn.call(
            "CLIENT PAUSE",
            &[b"CLIENT", b"PAUSE", ms.as_bytes(), b"WRITE"],
        )
        .await?;
        Ok(())
    }
}
