//! [`ClusterState`]: every member of a cluster looked at now — reachable,
//! primary or replica, timeline, writable; each replica's receive and
//! replay positions and its lag behind the primary in bytes and seconds;
//! and the primary's own view of each (`pg_stat_replication`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use dr_core::{ClusterAssessment, ComponentId, Lag, Lsn, Member, Position, Role};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::failover::cluster::{PgCluster, PgMember};
use crate::replication::SqlClient;
use crate::replication::row::Row;

/// A cluster's members as they were at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterState {
    /// The component.
    pub component: ComponentId,
    /// When it was looked at.
    pub assessed_at: Timestamp,
    /// Every member, in the cluster's order.
    pub members: Vec<MemberState>,
}

/// One member as assessed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberState {
    /// Its name in the cluster.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// Preference among equally advanced replicas.
    pub priority: i32,
    /// Never to be promoted.
    pub never_promote: bool,
    /// What it said, or why it said nothing.
    pub status: MemberStatus,
}

/// What a member is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "role")]
pub enum MemberStatus {
    /// It did not answer (or refused the credentials).
    Unreachable {
        /// Why.
        error: String,
    },
    /// Not in recovery: it takes writes unless read-only.
    Primary(PrimaryState),
    /// In recovery: a replica.
    Replica(Box<ReplicaState>),
}

/// A primary's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimaryState {
    /// `pg_control`'s system identifier.
    pub system_identifier: u64,
    /// The timeline it writes.
    pub timeline: u32,
    /// Whether a new transaction may write (`default_transaction_read_only`
    /// off).
    pub writable: bool,
    /// Where it writes WAL.
    pub current_lsn: Lsn,
    /// How far its WAL is flushed to disk.
    pub flush_lsn: Lsn,
    /// Its replication connections (`pg_stat_replication`).
    pub standbys: Vec<StandbyView>,
    /// Its `synchronous_standby_names`: empty where commits wait for no standby.
    #[serde(default)]
    pub synchronous_standby_names: String,
    /// Its `synchronous_commit`.
    #[serde(default)]
    pub synchronous_commit: String,
}

impl PrimaryState {
    /// How many standbys every commit waits for before it is acknowledged
    /// (`synchronous_standby_names` with `synchronous_commit` at `on`,
    /// `remote_write` or `remote_apply`); 0 with asynchronous replication.
    pub fn commits_wait_for(&self) -> u32 {
        match self.synchronous_commit.as_str() {
            "on" | "remote_write" | "remote_apply" => {
                standbys_waited_for(&self.synchronous_standby_names)
            }
            _ => 0,
        }
    }
}

/// How many standbys a commit waits for under `synchronous_standby_names`:
/// `FIRST 2 (a, b, c)` and `2 (a, b)` two, `ANY 1 (*)` one, a plain list
/// one, an empty setting none.
fn standbys_waited_for(names: &str) -> u32 {
    let names = names.trim();
    if names.is_empty() {
        return 0;
    }
    let mut rest = names;
    for keyword in ["FIRST", "ANY"] {
        if let Some(head) = rest.get(..keyword.len())
            && head.eq_ignore_ascii_case(keyword)
            && rest[keyword.len()..].starts_with(char::is_whitespace)
        {
            rest = rest[keyword.len()..].trim_start();
            break;
        }
    }
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    match rest[..digits].parse() {
        Ok(n) if rest[digits..].trim_start().starts_with('(') => n,
        _ => 1,
    }
}

/// A replica's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaState {
    /// `pg_control`'s system identifier.
    pub system_identifier: u64,
    /// The timeline it receives (or, with no WAL receiver running, that of
    /// its last restartpoint).
    pub timeline: u32,
    /// WAL received and flushed to its disk (`pg_last_wal_receive_lsn`, or
    /// the replayed position where that is further, as just after a start).
    pub receive_lsn: Option<Lsn>,
    /// WAL replayed (`pg_last_wal_replay_lsn`).
    pub replay_lsn: Option<Lsn>,
    /// Seconds since the last transaction it replayed was committed (on
    /// the primary's clock), if it replayed one since it started.
    pub replay_age: Option<f64>,
    /// Replay was paused (`pg_wal_replay_pause`).
    pub replay_paused: bool,
    /// Its WAL receiver's status (`streaming`, ...), if one runs.
    pub receiver: Option<String>,
    /// The `host:port` it streams from, if it does.
    pub upstream: Option<String>,
    /// The `application_name` its replication connection gives.
    pub application_name: String,
    /// How far behind the cluster's primary, when one was reachable.
    pub lag: Option<ReplicaLag>,
    /// The primary's view of it, when the primary was reachable and named it.
    pub seen_by_primary: Option<StandbyView>,
}

/// How far a replica is behind the primary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaLag {
    /// Bytes of WAL the primary flushed that it has not received.
    pub receive_bytes: u64,
    /// Bytes of WAL the primary flushed that it has not replayed.
    pub replay_bytes: u64,
    /// Seconds since the last transaction it replayed was committed on the
    /// primary, while it has not replayed everything the primary flushed;
    /// 0 when it has; unknown when it replayed none since it started.
    pub replay_seconds: Option<f64>,
}

/// One row of the primary's `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyView {
    /// The connection's `application_name`.
    pub application_name: String,
    /// Its client address, if over TCP.
    pub client_addr: Option<String>,
    /// `streaming`, `catchup`, `backup`, ...
    pub state: String,
    /// `async`, `potential`, `sync` or `quorum`.
    pub sync_state: String,
    /// WAL sent.
    pub sent_lsn: Option<Lsn>,
    /// WAL it confirmed written.
    pub write_lsn: Option<Lsn>,
    /// WAL it confirmed flushed.
    pub flush_lsn: Option<Lsn>,
    /// WAL it confirmed replayed.
    pub replay_lsn: Option<Lsn>,
}

impl ClusterState {
    /// Looks at every member of `cluster` at once; a member that does not
    /// answer within the cluster's probe timeout is unreachable.
    ///
    /// # Errors
    /// The cluster has no members or two with one name.
    pub async fn assess(cluster: &PgCluster) -> dr_core::Result<Self> {
        Self::assess_within(cluster, cluster.probe_timeout).await
    }

    /// As [`ClusterState::assess`], a member unreachable after `timeout`.
    ///
    /// # Errors
    /// The cluster has no members or two with one name.
    pub async fn assess_within(cluster: &PgCluster, timeout: Duration) -> dr_core::Result<Self> {
        cluster.check()?;
        let assessed_at = Timestamp::now();
        let probes = cluster.members.iter().map(|member| async move {
            let probed = tokio::time::timeout(timeout, probe(member, &cluster.tls)).await;
            let status = match probed {
                Ok(Ok(status)) => status,
                Ok(Err(e)) => MemberStatus::Unreachable {
                    error: e.to_string(),
                },
                Err(_) => MemberStatus::Unreachable {
                    error: format!("no answer within {}", humantime_secs(timeout)),
                },
            };
            MemberState {
                name: member.name.clone(),
                address: member.address(),
                priority: member.priority,
                never_promote: member.never_promote,
                status,
            }
        });
        let mut members = futures_util::future::join_all(probes).await;
        relate(&mut members);
        Ok(Self {
            component: cluster.component.clone(),
            assessed_at,
            members,
        })
    }

    /// The reachable members not in recovery that take writes.
    pub fn primaries(&self) -> impl Iterator<Item = (&MemberState, &PrimaryState)> {
        self.members.iter().filter_map(|m| match &m.status {
            MemberStatus::Primary(p) if p.writable => Some((m, p)),
            _ => None,
        })
    }

    /// The reachable members not in recovery that take no writes: fenced
    /// former primaries.
    pub fn fenced(&self) -> impl Iterator<Item = (&MemberState, &PrimaryState)> {
        self.members.iter().filter_map(|m| match &m.status {
            MemberStatus::Primary(p) if !p.writable => Some((m, p)),
            _ => None,
        })
    }

    /// The one primary, if exactly one member takes writes.
    pub fn primary(&self) -> Option<(&MemberState, &PrimaryState)> {
        let mut primaries = self.primaries();
        match (primaries.next(), primaries.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// The reachable replicas.
    pub fn replicas(&self) -> impl Iterator<Item = (&MemberState, &ReplicaState)> {
        self.members.iter().filter_map(|m| match &m.status {
            MemberStatus::Replica(r) => Some((m, r.as_ref())),
            _ => None,
        })
    }

    /// With no primary taking writes, the one fenced former primary.
    pub(crate) fn only_fenced(&self) -> Option<(&MemberState, &PrimaryState)> {
        if self.primaries().next().is_some() {
            return None;
        }
        let mut fenced = self.fenced();
        match (fenced.next(), fenced.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    /// The member named `name`.
    pub fn member(&self, name: &str) -> Option<&MemberState> {
        self.members.iter().find(|m| m.name == name)
    }

    /// What is wrong with the cluster, for people: two primaries, a member
    /// of another cluster, a replica that streams from nobody or lags on
    /// an older timeline. Empty when nothing is.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let primaries: Vec<&str> = self.primaries().map(|(m, _)| m.name.as_str()).collect();
        match primaries.as_slice() {
            [] => problems.push("no member is a primary".to_owned()),
            [_] => {}
            many => problems.push(format!(
                "more than one primary takes writes: {}",
                many.join(", ")
            )),
        }
        let reference = self.reference_identifier();
        for member in &self.members {
            match &member.status {
                MemberStatus::Unreachable { error } => {
                    problems.push(format!("{} is unreachable: {error}", member.name));
                }
                MemberStatus::Primary(p) => {
                    if Some(p.system_identifier) != reference {
                        problems.push(foreign(&member.name, p.system_identifier, reference));
                    }
                    if !p.writable {
                        problems.push(format!(
                            "{} is a primary fenced read-only: rejoin it as a replica, or lift \
                             the fence",
                            member.name
                        ));
                    }
                }
                MemberStatus::Replica(r) => {
                    if Some(r.system_identifier) != reference {
                        problems.push(foreign(&member.name, r.system_identifier, reference));
                    }
                    if r.receiver.as_deref() != Some("streaming") {
                        problems.push(format!("{} is not streaming", member.name));
                    }
                    if let Some((_, primary)) = self.primary()
                        && r.timeline < primary.timeline
                        && r.receiver.as_deref() != Some("streaming")
                    {
                        problems.push(format!(
                            "{} is on timeline {}, the primary on {}",
                            member.name, r.timeline, primary.timeline
                        ));
                    }
                    if r.replay_paused {
                        problems.push(format!("{} has its replay paused", member.name));
                    }
                }
            }
        }
        problems
    }

    /// The system identifier the cluster is taken to have: the one primary's,
    /// else the one most members report.
    pub(crate) fn reference_identifier(&self) -> Option<u64> {
        if let Some((_, primary)) = self.primary().or_else(|| self.only_fenced()) {
            return Some(primary.system_identifier);
        }
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for member in &self.members {
            if let Some(id) = member.system_identifier() {
                *counts.entry(id).or_default() += 1;
            }
        }
        counts.into_iter().max_by_key(|(_, n)| *n).map(|(id, _)| id)
    }

    /// dr-core's view, for [`dr_core::execute`] and reports.
    pub fn to_assessment(&self) -> ClusterAssessment {
        let members = self
            .members
            .iter()
            .map(|m| {
                let mut detail = BTreeMap::new();
                detail.insert("address".to_owned(), m.address.clone());
                let (role, reachable, position, lag) = match &m.status {
                    MemberStatus::Unreachable { error } => {
                        detail.insert("error".to_owned(), error.clone());
                        (Role::Unknown, false, None, None)
                    }
                    MemberStatus::Primary(p) => {
                        let position = Position::Postgres {
                            system_identifier: p.system_identifier,
                            timeline: p.timeline,
                            lsn: p.flush_lsn,
                        };
                        let role = if p.writable {
                            Role::Primary
                        } else {
                            Role::Fenced
                        };
                        (role, true, Some(position), None)
                    }
                    MemberStatus::Replica(r) => {
                        if let Some(receiver) = &r.receiver {
                            detail.insert("receiver".to_owned(), receiver.clone());
                        }
                        if let Some(view) = &r.seen_by_primary {
                            detail.insert("sync_state".to_owned(), view.sync_state.clone());
                        }
                        let position =
                            r.receive_lsn
                                .or(r.replay_lsn)
                                .map(|lsn| Position::Postgres {
                                    system_identifier: r.system_identifier,
                                    timeline: r.timeline,
                                    lsn,
                                });
                        let lag = r.lag.map(|lag| Lag {
                            bytes: Some(lag.receive_bytes),
                            behind: lag
                                .replay_seconds
                                .and_then(|s| Duration::try_from_secs_f64(s).ok()),
                        });
                        (Role::Replica, true, position, lag)
                    }
                };
                Member {
                    name: m.name.clone(),
                    role,
                    reachable,
                    position,
                    lag,
                    promotable: !m.never_promote,
                    priority: m.priority,
                    detail,
                }
            })
            .collect();
        ClusterAssessment {
            component: self.component.clone(),
            assessed_at: self.assessed_at,
            members,
        }
    }
}

impl MemberState {
    /// Its system identifier, if it answered.
    pub fn system_identifier(&self) -> Option<u64> {
        match &self.status {
            MemberStatus::Unreachable { .. } => None,
            MemberStatus::Primary(p) => Some(p.system_identifier),
            MemberStatus::Replica(r) => Some(r.system_identifier),
        }
    }
}

fn foreign(name: &str, id: u64, reference: Option<u64>) -> String {
    match reference {
        Some(reference) => format!(
            "{name} belongs to another cluster (system identifier {id}, the cluster's {reference})"
        ),
        None => format!("{name} has system identifier {id} and the cluster has none agreed"),
    }
}

fn humantime_secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl fmt::Display for ClusterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} at {}", self.component, self.assessed_at)?;
        for m in &self.members {
            write!(f, "  {:<12} {:<21} ", m.name, m.address)?;
            match &m.status {
                MemberStatus::Unreachable { error } => writeln!(f, "unreachable: {error}")?,
                MemberStatus::Primary(p) => writeln!(
                    f,
                    "primary  timeline {} flushed {}{}",
                    p.timeline,
                    p.flush_lsn,
                    if p.writable { "" } else { " (read-only)" }
                )?,
                MemberStatus::Replica(r) => {
                    write!(
                        f,
                        "replica  timeline {} received {} replayed {}",
                        r.timeline,
                        r.receive_lsn.map_or("-".to_owned(), |l| l.to_string()),
                        r.replay_lsn.map_or("-".to_owned(), |l| l.to_string()),
                    )?;
                    if let Some(lag) = r.lag {
                        write!(f, "; lag {} bytes", lag.replay_bytes)?;
                        if let Some(seconds) = lag.replay_seconds {
                            write!(f, ", {seconds:.1} s")?;
                        }
                    }
                    if let Some(view) = &r.seen_by_primary {
                        write!(f, "; {} {}", view.state, view.sync_state)?;
                    }
                    if m.never_promote {
                        write!(f, "; never promoted")?;
                    }
                    writeln!(f)?;
                }
            }
        }
        for problem in self.problems() {
            writeln!(f, "  ! {problem}")?;
        }
        Ok(())
    }
}

/// Looks at one member.
async fn probe(member: &PgMember, tls: &crate::replication::Tls) -> Result<MemberStatus> {
    let database = member.config.get_dbname().unwrap_or("postgres");
    let mut sql = SqlClient::connect(&member.config, tls, database).await?;
    let status = read_status(&mut sql).await;
    sql.close().await.ok();
    status
}

async fn read_status(sql: &mut SqlClient) -> Result<MemberStatus> {
    let addr = sql.addr().to_owned();
    let bad = |reason: String| Error::Protocol {
        addr: addr.clone(),
        reason: format!("unexpected answer while assessing: {reason}"),
    };
    let rows = sql
        .query(
            "SELECT pg_is_in_recovery() AS in_recovery,
                    (SELECT system_identifier FROM pg_control_system()) AS system_identifier,
                    current_setting('default_transaction_read_only') AS read_only",
        )
        .await?;
    let row = only(&rows).map_err(bad)?;
    let in_recovery = boolean(row, "in_recovery").map_err(bad)?;
    let system_identifier: u64 = parsed(row, "system_identifier").map_err(bad)?;
    let read_only = boolean(row, "read_only").map_err(bad)?;
    if !in_recovery {
        let rows = sql
            .query(
                "SELECT pg_current_wal_lsn() AS current_lsn,
                        pg_current_wal_flush_lsn() AS flush_lsn,
                        pg_walfile_name(pg_current_wal_lsn()) AS walfile,
                        current_setting('synchronous_standby_names') AS synchronous_standby_names,
                        current_setting('synchronous_commit') AS synchronous_commit",
            )
            .await?;
        let row = only(&rows).map_err(bad)?;
        let walfile = text(row, "walfile").map_err(bad)?;
        let timeline = walfile
            .get(..8)
            .and_then(|t| u32::from_str_radix(t, 16).ok())
            .ok_or_else(|| bad(format!("WAL file name {walfile:?}")))?;
        let current_lsn = parsed(row, "current_lsn").map_err(bad)?;
        let flush_lsn = parsed(row, "flush_lsn").map_err(bad)?;
        let synchronous_standby_names = text(row, "synchronous_standby_names").map_err(bad)?;
        let synchronous_commit = text(row, "synchronous_commit").map_err(bad)?;
        let standbys = sql
            .query(
                "SELECT application_name, client_addr, state, sync_state,
                        sent_lsn, write_lsn, flush_lsn, replay_lsn
                   FROM pg_stat_replication ORDER BY application_name, pid",
            )
            .await?
            .iter()
            .map(standby_view)
            .collect::<Answer<Vec<_>>>()
            .map_err(bad)?;
        return Ok(MemberStatus::Primary(PrimaryState {
            system_identifier,
            timeline,
            writable: !read_only,
            current_lsn,
            flush_lsn,
            standbys,
            synchronous_standby_names,
            synchronous_commit,
        }));
    }
    let rows = sql
        .query(
            "SELECT pg_last_wal_receive_lsn() AS receive_lsn,
                    pg_last_wal_replay_lsn() AS replay_lsn,
                    extract(epoch FROM now() - pg_last_xact_replay_timestamp()) AS replay_age,
                    pg_is_wal_replay_paused() AS paused,
                    current_setting('primary_conninfo') AS primary_conninfo,
                    current_setting('cluster_name') AS cluster_name,
                    r.status AS receiver, r.received_tli,
                    r.sender_host || ':' || r.sender_port AS upstream,
                    (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_tli
               FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver r ON true",
        )
        .await?;
    let row = only(&rows).map_err(bad)?;
    let timeline = match optional::<u32>(row, "received_tli").map_err(bad)? {
        Some(tli) if tli > 0 => tli,
        _ => parsed(row, "checkpoint_tli").map_err(bad)?,
    };
    let conninfo = optional_text(row, "primary_conninfo")
        .map_err(bad)?
        .unwrap_or_default();
    let cluster_name = optional_text(row, "cluster_name")
        .map_err(bad)?
        .unwrap_or_default();
    let application_name = conninfo_value(&conninfo, "application_name")
        .filter(|n| !n.is_empty())
        .or_else(|| (!cluster_name.is_empty()).then(|| cluster_name.clone()))
        .unwrap_or_else(|| "walreceiver".to_owned());
    // Just after a start, the receiver reports where it began streaming
    // (a segment's start), behind what was replayed from disk: what the
    // replica has is the larger.
    let replay_lsn: Option<Lsn> = optional(row, "replay_lsn").map_err(bad)?;
    let receive_lsn = match (
        optional::<Lsn>(row, "receive_lsn").map_err(bad)?,
        replay_lsn,
    ) {
        (Some(received), Some(replayed)) => Some(received.max(replayed)),
        (received, replayed) => received.or(replayed),
    };
    Ok(MemberStatus::Replica(Box::new(ReplicaState {
        system_identifier,
        timeline,
        receive_lsn,
        replay_lsn,
        replay_age: optional(row, "replay_age").map_err(bad)?,
        replay_paused: boolean(row, "paused").map_err(bad)?,
        receiver: optional_text(row, "receiver").map_err(bad)?,
        upstream: optional_text(row, "upstream").map_err(bad)?,
        application_name,
        lag: None,
        seen_by_primary: None,
    })))
}

/// Fills in what needs the primary (the one that takes writes, or with
/// none, the one fenced former primary): each replica's lag behind it and
/// the primary's view of each (matched by `application_name`, where only one
/// replica gives that name).
fn relate(members: &mut [MemberState]) {
    let not_in_recovery: Vec<&PrimaryState> = members
        .iter()
        .filter_map(|m| match &m.status {
            MemberStatus::Primary(p) => Some(p),
            _ => None,
        })
        .collect();
    let writable: Vec<&PrimaryState> = not_in_recovery
        .iter()
        .copied()
        .filter(|p| p.writable)
        .collect();
    let primary = match (writable.as_slice(), not_in_recovery.as_slice()) {
        ([one], _) | ([], [one]) => (*one).clone(),
        _ => return,
    };
    let names: Vec<String> = members
        .iter()
        .filter_map(|m| match &m.status {
            MemberStatus::Replica(r) => Some(r.application_name.clone()),
            _ => None,
        })
        .collect();
    for member in members.iter_mut() {
        let MemberStatus::Replica(replica) = &mut member.status else {
            continue;
        };
        if replica.system_identifier != primary.system_identifier {
            continue;
        }
        let unique = names
            .iter()
            .filter(|n| **n == replica.application_name)
            .count()
            == 1;
        if unique {
            let mut views = primary
                .standbys
                .iter()
                .filter(|s| s.application_name == replica.application_name);
            if let (Some(view), None) = (views.next(), views.next()) {
                replica.seen_by_primary = Some(view.clone());
            }
        }
        let behind = |lsn: Option<Lsn>| {
            primary
                .flush_lsn
                .as_u64()
                .saturating_sub(lsn.map_or(0, Lsn::as_u64))
        };
        let replay_bytes = behind(replica.replay_lsn);
        let replay_seconds = match replay_bytes {
            0 => Some(0.0),
            _ => replica.replay_age.map(|age| age.max(0.0)),
        };
        replica.lag = Some(ReplicaLag {
            receive_bytes: behind(replica.receive_lsn),
            replay_bytes,
            replay_seconds,
        });
    }
}

fn standby_view(row: &Row) -> Answer<StandbyView> {
    Ok(StandbyView {
        application_name: optional_text(row, "application_name")?.unwrap_or_default(),
        client_addr: optional_text(row, "client_addr")?,
        state: optional_text(row, "state")?.unwrap_or_default(),
        sync_state: optional_text(row, "sync_state")?.unwrap_or_default(),
        sent_lsn: optional(row, "sent_lsn")?,
        write_lsn: optional(row, "write_lsn")?,
        flush_lsn: optional(row, "flush_lsn")?,
        replay_lsn: optional(row, "replay_lsn")?,
    })
}

/// The value of `key` in a libpq connection string, in its key/value form
/// (`host=a application_name='x y'`) or as a URI's query parameter.
pub(crate) fn conninfo_value(conninfo: &str, key: &str) -> Option<String> {
    let trimmed = conninfo.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let query = trimmed.split_once('?')?.1;
        return query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| v.to_owned())
        });
    }
    let mut chars = trimmed.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            name.push(c);
        }
        if name.is_empty() {
            return None;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.next_if_eq(&'=')?;
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next()?);
                } else {
                    value.push(c);
                }
            }
        }
        if name == key {
            return Some(value);
        }
    }
}

/// A column's value in what the server answered; what is wrong with it
/// otherwise (turned into [`Error::Protocol`] by [`read_status`]).
type Answer<T> = std::result::Result<T, String>;

fn only(rows: &[Row]) -> Answer<&Row> {
    match rows {
        [row] => Ok(row),
        _ => Err(format!("{} rows where one was expected", rows.len())),
    }
}

fn optional_text(row: &Row, column: &str) -> Answer<Option<String>> {
    Ok(row
        .get_named(column)
        .map_err(|e| e.to_string())?
        .map(str::to_owned))
}

fn text(row: &Row, column: &str) -> Answer<String> {
    optional_text(row, column)?.ok_or_else(|| format!("no {column}"))
}

fn optional<T: FromStr>(row: &Row, column: &str) -> Answer<Option<T>>
where
    T::Err: fmt::Display,
{
    optional_text(row, column)?
        .map(|v| v.parse().map_err(|e| format!("{column} {v:?}: {e}")))
        .transpose()
}

fn parsed<T: FromStr>(row: &Row, column: &str) -> Answer<T>
where
    T::Err: fmt::Display,
{
    optional(row, column)?.ok_or_else(|| format!("no {column}"))
}

fn boolean(row: &Row, column: &str) -> Answer<bool> {
    match text(row, column)?.as_str() {
        "t" | "on" | "true" => Ok(true),
        "f" | "off" | "false" => Ok(false),
        other => Err(format!("{column} {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::{conninfo_value, standbys_waited_for};

    #[test]
    fn the_standbys_a_commit_waits_for_are_counted_in_every_form() {
        for (names, count) in [
            ("", 0),
            ("  ", 0),
            ("pg_2", 1),
            ("pg_2, pg_3", 1),
            ("*", 1),
            ("FIRST 2 (pg_2, pg_3, pg_4)", 2),
            ("first 1 (pg_2)", 1),
            ("ANY 2 (*)", 2),
            ("any 1 (\"pg 2\", pg_3)", 1),
            ("2 (pg_2, pg_3)", 2),
            ("2(pg_2, pg_3)", 2),
            ("\"2\"", 1),
            ("firstling", 1),
        ] {
            assert_eq!(standbys_waited_for(names), count, "{names:?}");
        }
    }

    #[test]
    fn application_names_are_read_from_either_form_of_conninfo() {
        let written_by_pg_basebackup = "user=postgres passfile='/home/pg/.pgpass' \
             channel_binding=prefer host=127.0.0.1 port=5432 sslmode=prefer";
        assert_eq!(
            conninfo_value(written_by_pg_basebackup, "application_name"),
            None
        );
        assert_eq!(
            conninfo_value(written_by_pg_basebackup, "host").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            conninfo_value(
                "host=a application_name = 'pg \\'two\\''",
                "application_name"
            )
            .as_deref(),
            Some("pg 'two'")
        );
        assert_eq!(
            conninfo_value(
                "postgresql://rep@db:5432/postgres?sslmode=require&application_name=pg-3",
                "application_name"
            )
            .as_deref(),
            Some("pg-3")
        );
        assert_eq!(conninfo_value("host='unterminated", "host"), None);
        assert_eq!(conninfo_value("", "host"), None);
    }
}
