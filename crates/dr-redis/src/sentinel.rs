//! [`SentinelFailover`] (dr-core `Failover`): a master that Redis Sentinel
//! watches, failed over through Sentinel itself (`SENTINEL FAILOVER`), so
//! that the Sentinels, and every client that asks them, agree on the new
//! master; success is `SENTINEL get-master-addr-by-name` naming another
//! node, which then answers as a master.

use std::time::{Duration, Instant};

use dr_core::{
    Capabilities, ClusterAssessment, ComponentId, Failover, FailoverMode, FailoverPlan,
    FailoverRequest, Lag, Member, PassedOver, Promotion, Role, async_trait,
};
use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::failover::{member, offset_of, refused};
use crate::fetch::RedisServer;
use crate::fetch::conn::Reply;

/// A master watched by Sentinels under a name. The data nodes are reached
/// with the credentials and TLS settings of the `nodes` template (its
/// address is not used); the Sentinels with their own.
#[derive(Debug, Clone)]
pub struct SentinelFailover {
    component: ComponentId,
    sentinels: Vec<RedisServer>,
    name: String,
    nodes: RedisServer,
    wait: Duration,
}

impl SentinelFailover {
    /// The master `name` that `sentinels` watch.
    pub fn new(
        component: ComponentId,
        sentinels: Vec<RedisServer>,
        name: impl Into<String>,
        nodes: RedisServer,
    ) -> Self {
        Self {
            component,
            sentinels,
            name: name.into(),
            nodes,
            wait: Duration::from_secs(30),
        }
    }

    /// How long the Sentinels may take to name a new master.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    fn refused(&self, reason: impl Into<String>) -> dr_core::Error {
        refused(&self.component, reason)
    }

    /// Asks the first Sentinel that answers.
    async fn ask(&self, args: &[&[u8]]) -> Result<Reply> {
        let mut last = None;
        for sentinel in &self.sentinels {
            match sentinel.connect().await {
                Ok((mut conn, _)) => match conn.call("SENTINEL", args).await {
                    Ok(reply) => return Ok(reply),
                    Err(e @ Error::ServerRefused { .. }) => return Err(e),
                    Err(e) => last = Some(e),
                },
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(Error::InvalidState {
            reason: "no Sentinel was given",
        }))
    }

    /// The master's address as the Sentinels know it.
    async fn master_addr(&self) -> Result<String> {
        let reply = self
            .ask(&[
                b"SENTINEL",
                b"GET-MASTER-ADDR-BY-NAME",
                self.name.as_bytes(),
            ])
            .await?;
        match reply {
            Reply::Array(Some(parts)) => match parts.as_slice() {
                [Reply::Bulk(Some(host)), Reply::Bulk(Some(port))] => Ok(format!(
                    "{}:{}",
                    String::from_utf8_lossy(host),
                    String::from_utf8_lossy(port)
                )),
                _ => Err(self.not_watched()),
            },
            _ => Err(self.not_watched()),
        }
    }

    /// The replicas' addresses as the Sentinels know them.
    async fn replica_addrs(&self) -> Result<Vec<String>> {
        let reply = self
            .ask(&[b"SENTINEL", b"REPLICAS", self.name.as_bytes()])
            .await?;
        let mut addrs = Vec::new();
        if let Reply::Array(Some(replicas)) = reply {
            for replica in replicas {
                let Reply::Array(Some(fields)) = replica else {
                    continue;
                };
                let mut fields = fields.into_iter();
                while let (Some(Reply::Bulk(Some(key))), Some(Reply::Bulk(Some(value)))) =
                    (fields.next(), fields.next())
                {
                    if key == b"name" {
                        addrs.push(String::from_utf8_lossy(&value).into_owned());
                    }
                }
            }
        }
        Ok(addrs)
    }

    fn not_watched(&self) -> Error {
        Error::WrongTarget {
            addr: self
                .sentinels
                .first()
                .map(RedisServer::addr)
                .unwrap_or_default(),
            reason: format!("the Sentinels watch no master named {:?}", self.name),
        }
    }
}

#[async_trait]
impl Failover for SentinelFailover {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        // Sentinel promotes without waiting for the replica to have every
        // write: no planned switchover through it.
        Capabilities::NONE
    }

    async fn assess(&self) -> dr_core::Result<ClusterAssessment> {
        let assessed_at = Timestamp::now();
        let master = self.master_addr().await?;
        let mut members = Vec::new();
        for addr in std::iter::once(master.clone()).chain(self.replica_addrs().await?) {
            let mut m = member(&addr, &self.nodes.at(&addr)?).await;
            if addr == master && !m.reachable {
                m.role = Role::Primary;
            }
            members.push(m);
        }
        Ok(ClusterAssessment {
            component: self.component.clone(),
            assessed_at,
            members,
        })
    }

    fn plan(
        &self,
        assessment: &ClusterAssessment,
        request: &FailoverRequest,
    ) -> dr_core::Result<FailoverPlan> {
        if request.mode == FailoverMode::Switchover {
            return Err(self.refused(
                "Sentinel promotes without waiting for every write: switch over with the \
                 server's own FAILOVER (RedisFailover) instead",
            ));
        }
        let master = assessment
            .members
            .iter()
            .find(|m| m.role == Role::Primary)
            .ok_or_else(|| self.refused("the Sentinels name no master"))?;
        if master.reachable && !request.force {
            return Err(self.refused(format!(
                "{} answers as the master: fail over with force",
                master.name
            )));
        }
        let mut candidates: Vec<&Member> = assessment
            .members
            .iter()
            .filter(|m| m.role == Role::Replica && m.reachable)
            .collect();
        candidates.sort_by_key(|m| std::cmp::Reverse(offset_of(m)));
        let Some(&promote) = candidates.first() else {
            return Err(self.refused("no reachable replica for the Sentinels to promote"));
        };
        let passed_over = assessment
            .members
            .iter()
            .filter(|m| m.role == Role::Replica && m.name != promote.name)
            .map(|m| PassedOver {
                name: m.name.clone(),
                reason: if m.reachable {
                    format!("behind {} (the Sentinels choose in the end)", promote.name)
                } else {
                    "unreachable".into()
                },
            })
            .collect();
        Ok(FailoverPlan {
            component: self.component.clone(),
            mode: request.mode,
            assessed_at: assessment.assessed_at,
            promote: promote.clone(),
            fence: Vec::new(),
            expected_loss: Lag {
                bytes: offset_of(master)
                    .filter(|_| master.reachable)
                    .zip(offset_of(promote))
                    .map(|(m, r)| m.saturating_sub(r)),
                behind: None,
            },
            acknowledged_kept: None,
            passed_over,
        })
    }

    async fn promote(&self, _plan: &FailoverPlan) -> dr_core::Result<Promotion> {
        let old = self.master_addr().await?;
        match self
            .ask(&[b"SENTINEL", b"FAILOVER", self.name.as_bytes()])
            .await
        {
            Ok(_) => {}
            // Their own failover is under way: it is followed the same way.
            Err(Error::ServerRefused { message, .. }) if message.starts_with("INPROG") => {}
            Err(e) => return Err(e.into()),
        }
        let deadline = Instant::now() + self.wait;
        loop {
            let now = self.master_addr().await?;
            if now != old {
                let promoted = member(&now, &self.nodes.at(&now)?).await;
                if promoted.role == Role::Primary && promoted.reachable {
                    return Ok(Promotion {
                        position: promoted.position,
                        data_loss: None,
                    });
                }
            }
            if Instant::now() > deadline {
                return Err(self.refused(format!(
                    "the Sentinels still name {old} {} s after SENTINEL FAILOVER",
                    self.wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn verify(&self, _plan: &FailoverPlan) -> dr_core::Result<Option<Timestamp>> {
        // The Sentinels' choice is the master, whichever replica it was.
        let master = self.master_addr().await?;
        let m = member(&master, &self.nodes.at(&master)?).await;
        if m.role == Role::Primary && m.reachable {
            Ok(None)
        } else {
            Err(self.refused(format!(
                "the Sentinels name {master}, which does not answer as a master"
            )))
        }
    }
}
