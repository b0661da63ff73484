//! Failover of a primary to one of its streaming replicas.
//!
//! - `cluster`: [`PgCluster`] and [`PgMember`], the servers and how much
//!   each may be promoted.
//! - `state`: [`ClusterState`], every member looked at now: role, timeline,
//!   positions, lag in bytes and seconds, the primary's view of each.
//! - [`PgFailover`] (dr-core `Failover`): plans from an assessment (the most
//!   advanced healthy replica, a loss guard, what to fence), promotes with
//!   `pg_promote`, and points the remaining replicas at the new primary.
//!   dr-core's `execute` runs it between the lease, the fences and the
//!   clients' rewiring.
//! - `fence`: [`SqlFence`](crate::SqlFence), a primary that still answers
//!   made read-only.
//!   dr-core's `Monitor` probes it with [`PgFailover::state_within`] (its
//!   `assess_within`).
//! - `rejoin`: [`Rejoin`](crate::Rejoin), a former primary's stopped data
//!   directory rewound (or copied afresh) to follow the new primary.

pub(crate) mod cluster;
pub(crate) mod fence;
pub(crate) mod rejoin;
pub(crate) mod state;

use std::sync::Mutex;
use std::time::Duration;

use dr_core::async_trait;
use dr_core::{
    Capabilities, Capability, ClusterAssessment, ComponentId, Failover, FailoverMode, FailoverPlan,
    FailoverRequest, Lag, LossLimit, Lsn, Member, PassedOver, Position, Promotion, Role, Rpo,
};
use jiff::Timestamp;

use crate::error::Error;
use crate::failover::cluster::PgCluster;
use crate::failover::fence::SqlFence;
use crate::failover::state::{ClusterState, PrimaryState};
use crate::replication::SqlClient;
use crate::replication::client::quote_literal;

/// Where the primary last was, as an assessment saw it: what a failover
/// after it became unreachable would lose is measured from here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LastSeen {
    system_identifier: u64,
    timeline: u32,
    flush_lsn: Lsn,
    at: Timestamp,
    /// With synchronous replication, the standbys commits waited for.
    synchronous: Option<Synchronous>,
}

/// The primary's synchronous replication, as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Synchronous {
    /// How many standbys every commit waited for.
    waits_for: u32,
    /// The standbys that could be among them (`sync`, `quorum` or
    /// `potential` in `pg_stat_replication`): the member each is, where its
    /// `application_name` names one.
    standbys: Vec<Option<String>>,
}

impl Synchronous {
    fn of(state: &ClusterState, primary: &PrimaryState) -> Option<Self> {
        let waits_for = primary.commits_wait_for();
        if waits_for == 0 {
            return None;
        }
        let standbys = primary
            .standbys
            .iter()
            .filter(|view| matches!(view.sync_state.as_str(), "sync" | "quorum" | "potential"))
            .map(|view| {
                state
                    .replicas()
                    .find(|(_, replica)| replica.seen_by_primary.as_ref() == Some(view))
                    .map(|(member, _)| member.name.clone())
            })
            .collect();
        Some(Self {
            waits_for,
            standbys,
        })
    }

    /// Why promoting `chosen`, the most advanced of `candidates`, keeps
    /// every acknowledged commit; `None` if fewer than one of the standbys
    /// each commit waited for is sure to be among the candidates.
    fn keeps(&self, chosen: &str, candidates: &[&str]) -> Option<String> {
        let known: Vec<&str> = self
            .standbys
            .iter()
            .filter_map(|s| s.as_deref().filter(|name| candidates.contains(name)))
            .collect();
        let missing = self.standbys.len() - known.len();
        (missing < self.waits_for as usize).then(|| {
            format!(
                "every commit waited for {} of the {} synchronous standbys; {} of them can be \
                 promoted ({}), and {chosen} has the most WAL",
                self.waits_for,
                self.standbys.len(),
                known.len(),
                known.join(", ")
            )
        })
    }
}

/// Fails a PostgreSQL primary over to its most advanced healthy replica.
///
/// ```no_run
/// use dr_core::{FailoverHooks, FailoverMode, FailoverRequest, LossLimit, Objectives};
/// use dr_postgres::{PgCluster, PgFailover, PgMember, Tls};
///
/// # async fn demo(fence: &dyn dr_core::Fence) -> dr_core::Result<()> {
/// let member = |name: &str, host: &str| -> dr_core::Result<PgMember> {
///     let config = format!("host={host} user=postgres password=secret")
///         .parse()
///         .map_err(|e| dr_core::Error::invalid("connection settings", format!("{e}")))?;
///     Ok(PgMember::new(name, config))
/// };
/// let cluster = PgCluster::new("postgres/main".parse()?, Tls::none())
///     .member(member("pg-1", "10.0.0.1")?)
///     .member(member("pg-2", "10.0.0.2")?)
///     .member(member("pg-3", "10.0.0.3")?.never_promote());
/// let failover = PgFailover::new(cluster);
/// println!("{}", failover.state().await?);
///
/// let objectives = Objectives::new("5m".parse()?, "1m".parse()?);
/// let request = FailoverRequest::new(FailoverMode::Failover, objectives, LossLimit::Bytes(1 << 20));
/// let hooks = FailoverHooks { fence: Some(fence), ..FailoverHooks::default() };
/// let outcome = dr_core::execute(&failover, &request, hooks).await?;
/// println!("{}\n{}", outcome.plan, outcome.report);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgFailover {
    cluster: PgCluster,
    promote_wait: Duration,
    catch_up_wait: Duration,
    verify_wait: Duration,
    last_seen: Mutex<Option<LastSeen>>,
}

impl PgFailover {
    /// Fails `cluster` over; promotion waits up to a minute.
    pub fn new(cluster: PgCluster) -> Self {
        Self {
            cluster,
            promote_wait: Duration::from_secs(60),
            catch_up_wait: Duration::from_secs(30),
            verify_wait: Duration::from_secs(30),
            last_seen: Mutex::new(None),
        }
    }

    /// How long `pg_promote` may take to end recovery (default a minute).
    #[must_use]
    pub fn promote_wait(mut self, wait: Duration) -> Self {
        self.promote_wait = wait;
        self
    }

    /// How long a switchover waits for the replica to replay the old
    /// primary's last WAL (default 30 s).
    #[must_use]
    pub fn catch_up_wait(mut self, wait: Duration) -> Self {
        self.catch_up_wait = wait;
        self
    }

    /// How long the check after a promotion waits for the first write on
    /// the new primary (with synchronous replication it waits for a
    /// replica to follow) and for every reachable replica to stream from
    /// it (default 30 s).
    #[must_use]
    pub fn verify_wait(mut self, wait: Duration) -> Self {
        self.verify_wait = wait;
        self
    }

    /// The cluster.
    pub fn cluster(&self) -> &PgCluster {
        &self.cluster
    }

    /// Looks at every member now, and remembers where the primary was for
    /// a later failover's loss.
    ///
    /// # Errors
    /// The cluster has no members or two with one name.
    pub async fn state(&self) -> dr_core::Result<ClusterState> {
        self.state_within(self.cluster.probe_timeout).await
    }

    /// As [`PgFailover::state`], a member unreachable after `timeout`.
    ///
    /// # Errors
    /// The cluster has no members or two with one name.
    pub async fn state_within(&self, timeout: Duration) -> dr_core::Result<ClusterState> {
        let state = ClusterState::assess_within(&self.cluster, timeout).await?;
        if let Some((_, primary)) = state.primary() {
            let seen = LastSeen {
                system_identifier: primary.system_identifier,
                timeline: primary.timeline,
                flush_lsn: primary.flush_lsn,
                at: state.assessed_at,
                synchronous: Synchronous::of(&state, primary),
            };
            *self.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(seen);
        }
        Ok(state)
    }

    fn last_seen(&self) -> Option<LastSeen> {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// In a switchover, once the old primary is fenced: waits until the
    /// replica to promote has received and replayed every byte of WAL the
    /// old primary flushed. The fence is lifted again if it does not catch
    /// up in time, and the switchover stops.
    async fn catch_up(&self, plan: &FailoverPlan) -> dr_core::Result<()> {
        let old = plan
            .fence
            .first()
            .and_then(|m| self.cluster.get(&m.name))
            .ok_or_else(|| refused(&plan.component, "a switchover needs its old primary".into()))?;
        let database = old.config.get_dbname().unwrap_or("postgres");
        let mut sql = SqlClient::connect(&old.config, &self.cluster.tls, database).await?;
        let rows = sql
            .query(
                "SELECT pg_current_wal_flush_lsn() AS flush_lsn,
                        current_setting('default_transaction_read_only') AS read_only",
            )
            .await?;
        sql.close().await.ok();
        let field = |column: &str| {
            rows.first()
                .and_then(|r| r.get_named(column).ok().flatten())
                .map(str::to_owned)
        };
        if field("read_only").as_deref() != Some("on") {
            return Err(refused(
                &plan.component,
                format!("{} still takes writes: fence it first", old.name),
            ));
        }
        let target: Lsn = field("flush_lsn")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| refused(&plan.component, "the old primary's position".into()))?;
        let name = &plan.promote.name;
        let candidate = self
            .cluster
            .get(name)
            .ok_or_else(|| dr_core::Error::invalid("member", format!("no member {name}")))?;
        let database = candidate.config.get_dbname().unwrap_or("postgres");
        let mut replica =
            SqlClient::connect(&candidate.config, &self.cluster.tls, database).await?;
        let deadline = tokio::time::Instant::now() + self.catch_up_wait;
        loop {
            // Replayed is received too; a replica replays only what it has.
            let rows = replica
                .query("SELECT pg_last_wal_replay_lsn() AS replayed")
                .await?;
            let replayed: Option<Lsn> = rows
                .first()
                .and_then(|r| r.get_named("replayed").ok().flatten())
                .and_then(|v| v.parse().ok());
            if replayed.is_some_and(|l| l >= target) {
                replica.close().await.ok();
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let lifted = SqlFence::new(self.cluster.clone())
                    .lift(&plan.fence[0])
                    .await;
                return Err(refused(
                    &plan.component,
                    format!(
                        "{name} did not replay the old primary's WAL up to {target} within {:?}; \
                         nothing was promoted, and {}",
                        self.catch_up_wait,
                        match lifted {
                            Ok(()) => format!("{} takes writes again", old.name),
                            Err(e) => format!("{}'s fence could not be lifted: {e}", old.name),
                        }
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Points every other reachable replica of the cluster at `primary`:
    /// its `primary_conninfo` set (with its own name as `application_name`)
    /// and the configuration reloaded, so that its WAL receiver reconnects
    /// and follows the new timeline.
    async fn follow(&self, primary: &str) -> dr_core::Result<Vec<String>> {
        let new_primary = self
            .cluster
            .get(primary)
            .ok_or_else(|| dr_core::Error::invalid("member", format!("no member {primary}")))?;
        let mut repointed = Vec::new();
        let state = ClusterState::assess(&self.cluster).await?;
        let followers: Vec<&str> = state.replicas().map(|(m, _)| m.name.as_str()).collect();
        // Each follower's slot first: the new primary keeps the WAL it has
        // not streamed yet, whatever checkpoints come meanwhile.
        let mut slots = Vec::with_capacity(followers.len());
        for name in &followers {
            slots.push(ensure_slot(new_primary, &self.cluster.tls, name).await?);
        }
        for (name, slot) in followers.iter().zip(&slots) {
            let Some(replica) = self.cluster.get(name) else {
                continue;
            };
            let conninfo = replication_conninfo(new_primary.config(), name);
            let database = replica.config.get_dbname().unwrap_or("postgres");
            let mut sql = SqlClient::connect(&replica.config, &self.cluster.tls, database).await?;
            sql.query(&format!(
                "ALTER SYSTEM SET primary_conninfo = {}",
                quote_literal(&conninfo)?
            ))
            .await?;
            sql.query(&format!(
                "ALTER SYSTEM SET primary_slot_name = {}",
                quote_literal(slot)?
            ))
            .await?;
            sql.query("SELECT pg_reload_conf()").await?;
            sql.close().await.ok();
            repointed.push((*name).to_owned());
        }
        Ok(repointed)
    }
}

/// The physical replication slot the member `name` streams through, as
/// PostgreSQL allows slot names: `drkit_` and the name's letters and digits
/// in lower case, anything else an underscore.
pub(crate) fn slot_name(name: &str) -> String {
    let mut slot = String::from("drkit_");
    slot.extend(name.chars().map(|c| match c {
        'a'..='z' | '0'..='9' | '_' => c,
        'A'..='Z' => c.to_ascii_lowercase(),
        _ => '_',
    }));
    slot.truncate(63);
    slot
}

/// Creates `name`'s slot on `primary` unless it exists, reserving WAL
/// from now; returns its name.
pub(crate) async fn ensure_slot(
    primary: &crate::failover::cluster::PgMember,
    tls: &crate::replication::Tls,
    name: &str,
) -> dr_core::Result<String> {
    let slot = slot_name(name);
    let literal = quote_literal(&slot)?;
    let database = primary.config.get_dbname().unwrap_or("postgres");
    let mut sql = SqlClient::connect(&primary.config, tls, database).await?;
    sql.query(&format!(
        "SELECT pg_create_physical_replication_slot({literal}, true)
          WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {literal})"
    ))
    .await?;
    sql.close().await.ok();
    Ok(slot)
}

/// A `primary_conninfo` reaching the server `config` points at, as the
/// replica `name`.
fn replication_conninfo(config: &tokio_postgres::Config, name: &str) -> String {
    use tokio_postgres::config::Host;
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = Vec::new();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    if !hosts.is_empty() {
        parts.push(format!("host={}", quote(&hosts.join(","))));
    }
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    if !ports.is_empty() {
        parts.push(format!("port={}", quote(&ports.join(","))));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={}", quote(user)));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!(
            "password={}",
            quote(&String::from_utf8_lossy(password))
        ));
    }
    parts.push(format!("application_name={}", quote(name)));
    parts.join(" ")
}

fn refused(component: &ComponentId, reason: String) -> dr_core::Error {
    dr_core::Error::Refused {
        operation: format!("failover of {component}"),
        reason,
    }
}

fn postgres_position(member: &Member) -> Option<(u64, u32, Lsn)> {
    match member.position.as_ref()? {
        Position::Postgres {
            system_identifier,
            timeline,
            lsn,
        } => Some((*system_identifier, *timeline, *lsn)),
        _ => None,
    }
}

#[async_trait]
impl Failover for PgFailover {
    fn component(&self) -> &ComponentId {
        &self.cluster.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .with(Capability::Fencing)
            .with(Capability::PlannedSwitchover)
    }

    async fn assess(&self) -> dr_core::Result<ClusterAssessment> {
        Ok(self.state().await?.to_assessment())
    }

    async fn assess_within(&self, timeout: Duration) -> dr_core::Result<ClusterAssessment> {
        Ok(self.state_within(timeout).await?.to_assessment())
    }

    fn plan(
        &self,
        assessment: &ClusterAssessment,
        request: &FailoverRequest,
    ) -> dr_core::Result<FailoverPlan> {
        let component = &self.cluster.component;
        let switchover = request.mode == FailoverMode::Switchover;
        let primaries: Vec<&Member> = assessment
            .members
            .iter()
            .filter(|m| m.role == Role::Primary && m.reachable)
            .collect();
        let fenced: Vec<&Member> = assessment
            .members
            .iter()
            .filter(|m| m.role == Role::Fenced)
            .collect();
        // The old primary, when it answers: taking writes, or fenced already
        // (a switchover tried again).
        let old_primary: Option<&Member> = match (primaries.as_slice(), fenced.as_slice()) {
            ([one], _) | ([], [one]) => Some(one),
            _ => None,
        };
        if switchover && old_primary.is_none() {
            return Err(refused(
                component,
                match primaries.len() {
                    0 => "a switchover needs the primary up; fail over instead".to_owned(),
                    n => format!("{n} members take writes; fence all but one first"),
                },
            ));
        }
        // Where the old primary's history ended, as far as it is known.
        let last_seen = self.last_seen();
        let reference: Option<(u64, u32, Lsn)> = match (old_primary, primaries.len()) {
            (Some(one), _) => postgres_position(one),
            (None, 0) => last_seen
                .as_ref()
                .map(|s| (s.system_identifier, s.timeline, s.flush_lsn)),
            _ => None,
        };
        let system = reference.map(|(id, _, _)| id).or_else(|| {
            // No primary known: the identifier most replicas share.
            let mut ids: Vec<u64> = assessment
                .members
                .iter()
                .filter_map(|m| postgres_position(m).map(|p| p.0))
                .collect();
            ids.sort_unstable();
            ids.chunk_by(|a, b| a == b)
                .max_by_key(|run| run.len())
                .map(|run| run[0])
        });

        let mut passed_over = Vec::new();
        let mut candidates: Vec<(&Member, u32, Lsn)> = Vec::new();
        for member in &assessment.members {
            let reason = match (member.role, postgres_position(member)) {
                (Role::Primary, _) => continue,
                (Role::Fenced, _) => Some("a fenced former primary".to_owned()),
                (Role::Unknown, _) => Some("unreachable".to_owned()),
                (Role::Replica, _) if !member.promotable => Some("never promoted".to_owned()),
                (Role::Replica, None) => Some("its position could not be read".to_owned()),
                (Role::Replica, Some((id, _, _))) if Some(id) != system => {
                    Some(format!("another cluster (system identifier {id})"))
                }
                (Role::Replica, _)
                    if switchover
                        && member.detail.get("receiver").map(String::as_str)
                            != Some("streaming") =>
                {
                    Some("not streaming: it could not catch up".to_owned())
                }
                (Role::Replica, Some((_, timeline, lsn))) => {
                    candidates.push((member, timeline, lsn));
                    None
                }
            };
            if let Some(reason) = reason {
                passed_over.push(PassedOver {
                    name: member.name.clone(),
                    reason,
                });
            }
        }
        // The newest timeline, the most WAL received, then the priority,
        // then the name for a stable choice; or the one the caller named.
        candidates.sort_by(|a, b| {
            (b.1, b.2)
                .cmp(&(a.1, a.2))
                .then(b.0.priority.cmp(&a.0.priority))
                .then(a.0.name.cmp(&b.0.name))
        });
        if let Some(target) = &request.target {
            let Some(i) = candidates.iter().position(|(m, _, _)| m.name == *target) else {
                let why = passed_over.iter().find(|p| p.name == *target).map_or_else(
                    || match assessment.member(target) {
                        Some(_) => "it is the primary".to_owned(),
                        None => "no member has that name".to_owned(),
                    },
                    |p| p.reason.clone(),
                );
                return Err(refused(
                    component,
                    format!("{target} cannot be promoted: {why}"),
                ));
            };
            let chosen = candidates.remove(i);
            candidates.insert(0, chosen);
        }
        let Some(&(chosen, timeline, lsn)) = candidates.first() else {
            return Err(refused(
                component,
                format!(
                    "no replica can be promoted{}",
                    passed_over
                        .iter()
                        .map(|p| format!("; {}: {}", p.name, p.reason))
                        .collect::<String>()
                ),
            ));
        };
        for (other, _, other_lsn) in &candidates[1..] {
            passed_over.push(PassedOver {
                name: other.name.clone(),
                reason: if request.target.is_some() {
                    format!("{} was asked for", chosen.name)
                } else if *other_lsn < lsn {
                    format!("behind {} ({other_lsn} against {lsn})", chosen.name)
                } else {
                    format!(
                        "as advanced as {}, lower priority or later name",
                        chosen.name
                    )
                },
            });
        }

        // What promoting it loses: the old primary's flushed WAL it has not.
        // A switchover waits for it to catch up first, and loses nothing.
        let expected_loss = match reference {
            _ if switchover => Lag {
                bytes: Some(0),
                behind: Some(Duration::ZERO),
            },
            Some((_, ref_timeline, ref_lsn)) if ref_timeline == timeline => {
                let bytes = ref_lsn.as_u64().saturating_sub(lsn.as_u64());
                let behind = match (bytes, old_primary.is_some()) {
                    (0, _) => Some(Duration::ZERO),
                    (_, true) => chosen.lag.and_then(|l| l.behind),
                    (_, false) => None,
                };
                Lag {
                    bytes: Some(bytes),
                    behind,
                }
            }
            _ => Lag::default(),
        };
        // With synchronous replication, what the loss counts may never have
        // been acknowledged: then the guard has nothing to guard.
        let most_wal = candidates.iter().map(|c| (c.1, c.2)).max();
        let acknowledged_kept = match (&last_seen, switchover) {
            (Some(seen), false)
                if seen.timeline == timeline && most_wal == Some((timeline, lsn)) =>
            {
                let names: Vec<&str> = candidates.iter().map(|c| c.0.name.as_str()).collect();
                seen.synchronous
                    .as_ref()
                    .and_then(|sync| sync.keeps(&chosen.name, &names))
                    .map(|why| match old_primary {
                        Some(_) => why,
                        None => format!("{why} (the primary as last seen at {})", seen.at),
                    })
            }
            _ => None,
        };
        if !request.force && acknowledged_kept.is_none() {
            let where_seen = match (old_primary, &last_seen) {
                (Some(_), _) => "the primary's flushed WAL".to_owned(),
                (None, Some(seen)) => {
                    format!("the primary's flushed WAL as last seen at {}", seen.at)
                }
                (None, None) => String::new(),
            };
            let over = match (
                request.loss_limit,
                expected_loss.bytes,
                expected_loss.behind,
            ) {
                (_, None, _) => Some(format!(
                    "what promoting {} would lose cannot be told: the primary is not reachable \
                     and was not seen before",
                    chosen.name
                )),
                (LossLimit::Bytes(limit), Some(bytes), _) if bytes > limit => Some(format!(
                    "promoting {} would lose {bytes} bytes of WAL (it has {lsn}, {where_seen} \
                     is further), more than the {limit} allowed",
                    chosen.name
                )),
                (LossLimit::Within(_), Some(bytes), None) if bytes > 0 => Some(format!(
                    "promoting {} would lose {bytes} bytes of WAL and how much time that is \
                     cannot be told",
                    chosen.name
                )),
                (LossLimit::Within(rpo), Some(bytes), Some(behind))
                    if behind > rpo.as_duration() =>
                {
                    Some(format!(
                        "promoting {} would lose {bytes} bytes of WAL, {} of changes, more than \
                         the {rpo} allowed",
                        chosen.name,
                        Rpo::new(behind)
                    ))
                }
                _ => None,
            };
            if let Some(reason) = over {
                return Err(refused(
                    component,
                    format!("{reason}; nothing was promoted (force to promote anyway)"),
                ));
            }
        }

        // Fence whatever might still take writes: a primary that answers,
        // and in a failover every unreachable member (the old primary may be
        // among them and come back). A fenced one stays fenced.
        let fence: Vec<Member> = assessment
            .members
            .iter()
            .filter(|m| match m.role {
                Role::Primary => true,
                Role::Fenced => switchover,
                Role::Unknown => !switchover,
                Role::Replica => false,
            })
            .cloned()
            .collect();
        Ok(FailoverPlan {
            component: component.clone(),
            mode: request.mode,
            assessed_at: assessment.assessed_at,
            promote: chosen.clone(),
            fence,
            expected_loss,
            acknowledged_kept,
            passed_over,
        })
    }

    async fn promote(&self, plan: &FailoverPlan) -> dr_core::Result<Promotion> {
        let name = &plan.promote.name;
        let member = self
            .cluster
            .get(name)
            .ok_or_else(|| dr_core::Error::invalid("member", format!("no member {name}")))?;
        if plan.mode == FailoverMode::Switchover {
            self.catch_up(plan).await?;
        }
        let database = member.config.get_dbname().unwrap_or("postgres");
        let mut sql = SqlClient::connect(&member.config, &self.cluster.tls, database).await?;
        let wait = self.promote_wait.as_secs().max(1);
        let rows = sql
            .query(&format!("SELECT pg_promote(true, {wait}) AS promoted"))
            .await?;
        let promoted = rows
            .first()
            .and_then(|r| r.get_named("promoted").ok().flatten())
            .is_some_and(|v| v == "t");
        if !promoted {
            return Err(Error::Timeout {
                operation: format!("promoting {name}"),
                after: self.promote_wait,
            }
            .into());
        }
        // The first write of the new primary: what the RTO runs to.
        let rows = sql
            .query(
                "SELECT pg_is_in_recovery() AS in_recovery,
                        (SELECT system_identifier FROM pg_control_system()) AS system_identifier,
                        pg_walfile_name(pg_current_wal_lsn()) AS walfile,
                        pg_current_wal_lsn() AS lsn",
            )
            .await?;
        sql.close().await.ok();
        let row = rows.first();
        let field = |column: &str| {
            row.and_then(|r| r.get_named(column).ok().flatten())
                .map(str::to_owned)
        };
        if field("in_recovery").as_deref() != Some("f") {
            return Err(refused(
                &plan.component,
                format!("{name} is still in recovery after pg_promote"),
            ));
        }
        let position = match (
            field("system_identifier").and_then(|v| v.parse().ok()),
            field("walfile").and_then(|w| w.get(..8).and_then(|t| u32::from_str_radix(t, 16).ok())),
            field("lsn").and_then(|v| v.parse().ok()),
        ) {
            (Some(system_identifier), Some(timeline), Some(lsn)) => Some(Position::Postgres {
                system_identifier,
                timeline,
                lsn,
            }),
            _ => None,
        };
        let repointed = self.follow(name).await?;
        tracing::info!(
            component = %plan.component,
            promoted = %name,
            replicas = ?repointed,
            "promoted; the other replicas follow it"
        );
        Ok(Promotion {
            position,
            data_loss: match plan.mode {
                FailoverMode::Switchover => Some(Rpo::new(Duration::ZERO)),
                // No acknowledged commit lost: the window lost is empty.
                FailoverMode::Failover if plan.acknowledged_kept.is_some() => {
                    Some(Rpo::new(Duration::ZERO))
                }
                FailoverMode::Failover => plan.expected_loss.behind.map(Rpo::new),
            },
        })
    }

    /// A write and a read on the new primary (its time is the first
    /// write's, which ends the RTO), then a wait until it is the one
    /// primary and every reachable replica streams from it.
    async fn verify(&self, plan: &FailoverPlan) -> dr_core::Result<Option<Timestamp>> {
        let name = &plan.promote.name;
        let member = self
            .cluster
            .get(name)
            .ok_or_else(|| dr_core::Error::invalid("member", format!("no member {name}")))?;
        let deadline = tokio::time::Instant::now() + self.verify_wait;
        let write = async {
            let database = member.config.get_dbname().unwrap_or("postgres");
            let mut sql = SqlClient::connect(&member.config, &self.cluster.tls, database).await?;
            // A transactional message: a commit like any client's, which
            // with synchronous replication waits for a replica too.
            let rows = sql
                .query(
                    "SELECT pg_logical_emit_message(true, 'drkit', 'failover check')::text AS lsn",
                )
                .await?;
            let at = Timestamp::now();
            let lsn = rows
                .first()
                .and_then(|r| r.get_named("lsn").ok().flatten())
                .map(str::to_owned)
                .ok_or_else(|| {
                    refused(
                        &plan.component,
                        format!("{name} returned no position for the write"),
                    )
                })?;
            let rows = sql
                .query(&format!(
                    "SELECT pg_current_wal_flush_lsn() >= {}::pg_lsn AS durable",
                    quote_literal(&lsn)?
                ))
                .await?;
            sql.close().await.ok();
            let durable = rows
                .first()
                .and_then(|r| r.get_named("durable").ok().flatten())
                .is_some_and(|v| v == "t");
            if !durable {
                return Err(refused(
                    &plan.component,
                    format!("{name} does not read back its write at {lsn} as flushed"),
                ));
            }
            Ok::<_, dr_core::Error>(at)
        };
        let first_write = tokio::time::timeout_at(deadline, write)
            .await
            .map_err(|_| {
                refused(
                    &plan.component,
                    format!(
                        "a write on {name} was not acknowledged within {} s (with synchronous \
                         replication, no replica it waits for follows it)",
                        self.verify_wait.as_secs()
                    ),
                )
            })??;
        loop {
            let state = self.state().await?;
            let problem = match state.primary() {
                Some((primary, _)) if primary.name == *name => {
                    let behind: Vec<&str> = state
                        .replicas()
                        .filter(|(_, r)| {
                            r.seen_by_primary
                                .as_ref()
                                .is_none_or(|v| v.state != "streaming")
                        })
                        .map(|(m, _)| m.name.as_str())
                        .collect();
                    if behind.is_empty() {
                        return Ok(Some(first_write));
                    }
                    format!("{} not streaming from {name}", behind.join(", "))
                }
                other => format!(
                    "{name} was promoted, but the primary is {}",
                    other.map_or("not one member".to_owned(), |(m, _)| m.name.clone())
                ),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(refused(
                    &plan.component,
                    format!(
                        "after {} s, {problem}:\n{state}",
                        self.verify_wait.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Synchronous;

    fn sync(waits_for: u32, standbys: &[Option<&str>]) -> Synchronous {
        Synchronous {
            waits_for,
            standbys: standbys.iter().map(|s| s.map(str::to_owned)).collect(),
        }
    }

    #[test]
    fn acknowledged_commits_are_promised_only_while_enough_synchronous_standbys_remain() {
        let both = ["pg-2", "pg-3"];
        // ANY 1 of two: either one left is enough, as the most advanced.
        let any1 = sync(1, &[Some("pg-2"), Some("pg-3")]);
        assert!(any1.keeps("pg-2", &both).is_some());
        assert!(
            any1.keeps("pg-2", &["pg-2"]).is_none(),
            "pg-3 may hold the last commits"
        );
        // A standby the primary named that is no member (an archiver, a
        // replica known only as walreceiver) counts as missing.
        let unnamed = sync(1, &[Some("pg-2"), None]);
        assert!(unnamed.keeps("pg-2", &both).is_none());
        // ANY 2 of three: one may be missing.
        let any2 = sync(2, &[Some("pg-2"), Some("pg-3"), Some("pg-4")]);
        assert!(any2.keeps("pg-3", &both).is_some());
        assert!(any2.keeps("pg-3", &["pg-3"]).is_none());
        // FIRST 1 with a potential standby: both must remain, as the
        // synchronous one may have changed since last seen.
        let first1 = sync(1, &[Some("pg-2"), Some("pg-3")]);
        assert!(first1.keeps("pg-3", &["pg-3"]).is_none());
    }
}
