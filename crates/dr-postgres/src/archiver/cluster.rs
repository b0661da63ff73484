//! An archiver of a whole cluster ([`WalArchiver::cluster`](super::WalArchiver::cluster)):
//! it streams from whichever member is the primary, and keeps its slot on
//! every replica, advanced to what the archive holds, so that the replica
//! promoted by a failover still has every segment the archive lacks and the
//! archiver resumes there, across the timeline switch, without a gap.
//!
//! A replica recycles WAL at each restartpoint regardless of what an
//! archiver of its primary has stored; a physical slot on the replica
//! (allowed in recovery) is what makes it keep the WAL. The slot is created
//! reserving WAL from the replica's last restartpoint, and moved forward
//! with `pg_replication_slot_advance` (which a replica clamps to its replay
//! position), never past the archive's flushed position.

use std::time::Duration;

use dr_core::{Error, Lsn};
use futures_util::future::join_all;
use tokio::sync::watch;

use crate::failover::cluster::{PgCluster, PgMember};
use crate::failover::state::ClusterState;
use crate::replication::SqlClient;
use crate::replication::client::quote_literal;
use crate::replication::row::Row;

use super::ArchiverStatus;
use super::handle::Stop;

/// How often the replicas' slots are checked and moved forward.
const INTERVAL: Duration = Duration::from_secs(2);

/// The archiver's slot on one member of its cluster, as last looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StandbySlot {
    /// The member's name.
    pub member: String,
    /// What was found there.
    pub state: StandbySlotState,
}

/// The state of the archiver's slot on one member.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StandbySlotState {
    /// A replica, whose slot holds its WAL from `restart_lsn` on.
    Held {
        /// Where the replica keeps WAL from for the archive.
        restart_lsn: Lsn,
    },
    /// Not in recovery: a primary, whose slot the archiver's stream moves
    /// (or a fenced former primary, left alone).
    NotReplica,
    /// Unreachable, or the slot could not be made or moved: this member's
    /// WAL is not held for the archive.
    Failed {
        /// Why, for people.
        error: String,
    },
}

impl std::fmt::Display for StandbySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            StandbySlotState::Held { restart_lsn } => {
                write!(f, "{}: holds WAL from {restart_lsn}", self.member)
            }
            StandbySlotState::NotReplica => write!(f, "{}: not a replica", self.member),
            StandbySlotState::Failed { error } => {
                write!(f, "{}: holds no WAL for the archive: {error}", self.member)
            }
        }
    }
}

/// The connection settings of the member to stream from: the one primary
/// that takes writes, or with none, the one fenced former primary.
///
/// # Errors
/// [`Error::Unavailable`] while the cluster has no such member (during a
/// failover) or two writable primaries (the archive would take the WAL of
/// whichever answered first), to be retried.
pub(super) async fn primary_config(
    cluster: &PgCluster,
    application_name: &str,
) -> dr_core::Result<tokio_postgres::Config> {
    let state = ClusterState::assess(cluster).await?;
    let writable = state.primaries().count();
    let Some((member, _)) = state.primary().or_else(|| state.only_fenced()) else {
        let why = if writable > 1 {
            format!("{writable} members take writes")
        } else {
            "no member is a primary".to_owned()
        };
        return Err(Error::Unavailable {
            target: format!("the primary of {}", cluster.component),
            source: format!("{why}; archiving waits for one primary").into(),
        });
    };
    let member = cluster
        .get(&member.name)
        .expect("assessed members are the cluster's");
    let mut config = member.config.clone();
    config.application_name(application_name);
    Ok(config)
}

/// Keeps the slot `slot` on every replica of `cluster` at the archive's
/// flushed position (from `status`), publishing what it finds on `found`,
/// until stopped.
pub(super) async fn keep_slots(
    cluster: PgCluster,
    slot: String,
    status: watch::Receiver<ArchiverStatus>,
    found: watch::Sender<Vec<StandbySlot>>,
    mut stop: Stop,
) {
    let mut sessions: Vec<Option<SqlClient>> = cluster.members.iter().map(|_| None).collect();
    let mut last: Vec<StandbySlot> = Vec::new();
    loop {
        let archived = status.borrow().flushed;
        let rounds = cluster
            .members
            .iter()
            .zip(sessions.iter_mut())
            .map(|(member, session)| {
                let (cluster, slot) = (&cluster, &slot);
                async move {
                    let kept = tokio::time::timeout(
                        cluster.probe_timeout,
                        keep_one(member, cluster, session, slot, archived),
                    )
                    .await;
                    let state = match kept {
                        Ok(Ok(state)) => state,
                        Ok(Err(e)) => StandbySlotState::Failed {
                            error: e.to_string(),
                        },
                        Err(_) => StandbySlotState::Failed {
                            error: format!(
                                "no answer within {} s",
                                cluster.probe_timeout.as_secs_f64()
                            ),
                        },
                    };
                    if matches!(state, StandbySlotState::Failed { .. }) {
                        *session = None;
                    }
                    StandbySlot {
                        member: member.name.clone(),
                        state,
                    }
                }
            });
        let now = tokio::select! {
            () = stop.wait() => return,
            now = join_all(rounds) => now,
        };
        for slot_now in &now {
            let before = last.iter().find(|s| s.member == slot_now.member);
            let failed_before =
                before.is_some_and(|s| matches!(s.state, StandbySlotState::Failed { .. }));
            match &slot_now.state {
                StandbySlotState::Failed { error } if !failed_before => tracing::warn!(
                    member = %slot_now.member,
                    slot = %slot,
                    "the archiver's slot is not held on this member: {error}"
                ),
                StandbySlotState::Held { restart_lsn } if before.is_none() || failed_before => {
                    tracing::info!(
                        member = %slot_now.member,
                        slot = %slot,
                        from = %restart_lsn,
                        "the replica holds WAL for the archive"
                    );
                }
                _ => {}
            }
        }
        found.send_replace(now.clone());
        last = now;
        tokio::select! {
            () = stop.wait() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

/// Looks at the slot on one member, creating it on a replica that lacks it
/// and moving it forward to `archived`.
async fn keep_one(
    member: &PgMember,
    cluster: &PgCluster,
    session: &mut Option<SqlClient>,
    slot: &str,
    archived: Lsn,
) -> crate::error::Result<StandbySlotState> {
    let sql = match session {
        Some(sql) => sql,
        None => {
            let database = member.config.get_dbname().unwrap_or("postgres");
            session.insert(SqlClient::connect(&member.config, &cluster.tls, database).await?)
        }
    };
    let literal = quote_literal(slot)?;
    let rows = sql
        .query(&format!(
            "SELECT pg_is_in_recovery(),
                    (SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = {literal})"
        ))
        .await?;
    let addr = sql.addr().to_owned();
    let row = rows.first().ok_or_else(|| unexpected(&addr, "no row"))?;
    if value(row, 0, &addr)? != Some("t") {
        return Ok(StandbySlotState::NotReplica);
    }
    let mut restart = match value(row, 1, &addr)? {
        Some(lsn) => lsn_of(lsn, &addr)?,
        None => {
            let rows = sql
                .query(&format!(
                    "SELECT lsn FROM pg_create_physical_replication_slot({literal}, true)"
                ))
                .await?;
            let row = rows.first().ok_or_else(|| unexpected(&addr, "no row"))?;
            let lsn = value(row, 0, &addr)?.ok_or_else(|| unexpected(&addr, "no WAL reserved"))?;
            lsn_of(lsn, &addr)?
        }
    };
    if archived > restart {
        let rows = sql
            .query(&format!(
                "SELECT end_lsn FROM pg_replication_slot_advance({literal}, '{archived}')"
            ))
            .await?;
        if let Some(lsn) = rows
            .first()
            .map(|row| value(row, 0, &addr))
            .transpose()?
            .flatten()
        {
            restart = lsn_of(lsn, &addr)?;
        }
    }
    Ok(StandbySlotState::Held {
        restart_lsn: restart,
    })
}

fn value<'r>(row: &'r Row, idx: usize, addr: &str) -> crate::error::Result<Option<&'r str>> {
    row.get_str(idx)
        .map_err(|_| unexpected(addr, "a value that is not UTF-8"))
}

fn lsn_of(text: &str, addr: &str) -> crate::error::Result<Lsn> {
    text.parse()
        .map_err(|_| unexpected(addr, &format!("LSN {text:?}")))
}

fn unexpected(addr: &str, what: &str) -> crate::Error {
    crate::Error::Protocol {
        addr: addr.to_owned(),
        reason: format!("unexpected answer while keeping the archiver's slot: {what}"),
    }
}
