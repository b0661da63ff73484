//! The drill's Redis scenario, the seeds' master-failure runbook and the
//! disaster replication cannot fix, on a master and two replicas:
//!
//! 1. a writer sets a new key every 20 ms through a client that follows the
//!    master, logging each acknowledged write;
//! 2. the command archiver follows the master (its first full
//!    synchronization stored as a snapshot), the replicas its candidates;
//!    dr-core's monitor (500 ms probes, 3 failures) watches;
//! 3. kill -9 of the master: the monitor fails it over by itself, the
//!    writer finds the new master, the archiver goes on with it;
//! 4. a `FLUSHALL`, replicated everywhere: the point-in-time restore of the
//!    snapshot and the archive, to just before it, into a fresh server;
//! 5. every key checked: the restore must hold exactly what the master held
//!    just before the `FLUSHALL`. The failover's RTO runs from the kill to
//!    the first write the new master took, its RPO is the acknowledged
//!    writes lost; both held against the seeds' Redis objectives (RTO 5
//!    minutes, RPO 1 minute), and so is the restore's report.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dr_core::{
    ComponentId, FailoverMode, FailoverRequest, LossLimit, Monitor, MonitorEvent, MonitorOptions,
    Objectives, RecoveryTarget, Restore, RestoreRequest,
};
use dr_redis::{ArchiveRestore, CommandArchiver, PauseWrites, RedisFailover, RedisServer};
use dr_storage::Repository;
use dr_testkit::Redis;
use jiff::Timestamp;
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use crate::{Result, indent, step};

/// The seeds' Redis objectives.
fn objectives() -> Result<Objectives> {
    Ok(Objectives::new("5 minutes".parse()?, "1 minute".parse()?))
}

/// Runs the scenario: whether its objectives were met and the restore was
/// exact, and its report.
pub(crate) async fn run(repo: Arc<Repository>) -> Result<(bool, String)> {
    step("Redis: a master and two replicas, a writer, the command archiver, the monitor");
    let mut master = Redis::start().await?;
    let replicas = [master.start_replica().await?, master.start_replica().await?];
    let nodes: Vec<(String, u16)> = [("r-0", master.port())]
        .into_iter()
        .chain([("r-1", replicas[0].port()), ("r-2", replicas[1].port())])
        .map(|(name, port)| (name.to_owned(), port))
        .collect();
    let members: Vec<(String, RedisServer)> = nodes
        .iter()
        .map(|(name, port)| (name.clone(), RedisServer::new("127.0.0.1", *port)))
        .collect();
    let component: ComponentId = "redis/drill".parse()?;

    let writer = Writer::start(nodes.clone());
    let (stop_archiver, archiver_stopped) = watch::channel(false);
    let archiver = CommandArchiver::new(component.clone(), members[0].1.clone())
        .candidates(members[1..].iter().map(|(_, s)| s.clone()).collect());
    let archiving = {
        let repo = repo.clone();
        tokio::spawn(async move {
            let journals = repo.segment_journals();
            archiver
                .run(
                    repo.as_ref(),
                    journals.as_ref().map(|j| j as &dyn dr_core::JournalSink),
                    repo.as_ref(),
                    None,
                    archiver_stopped,
                )
                .await
        })
    };
    let failover = Arc::new(RedisFailover::new(component.clone(), members.clone()));
    let request = FailoverRequest::new(
        FailoverMode::Failover,
        objectives()?,
        LossLimit::Bytes(1 << 20),
    )
    .old_primary_known_dead();
    let mut monitor = Monitor::new(
        failover,
        MonitorOptions::new(Duration::from_millis(500), Duration::from_millis(500), 3),
    )
    .fail_over_automatically(
        request,
        Arc::new(PauseWrites::new(members.clone(), Duration::from_secs(30))),
        repo.clone(),
        "drill-redis-monitor",
    )
    .spawn();
    tokio::time::sleep(Duration::from_secs(3)).await;

    step("Redis: kill -9 of the master; the monitor fails it over by itself");
    let killed_at = Instant::now();
    let incident = Timestamp::now();
    master.kill9();
    let outcome = loop {
        match tokio::time::timeout(Duration::from_secs(60), monitor.next_event()).await {
            Ok(Some(MonitorEvent::FailedOver(outcome))) => break outcome,
            Ok(Some(MonitorEvent::FailoverFailed { reason })) => {
                return Err(format!("the monitor's failover failed: {reason}").into());
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err("the monitor did not fail over within 60 s".into()),
        }
    };
    let first_write = writer
        .first_write_after(killed_at, Duration::from_secs(60))
        .await;
    let promoted = outcome.plan.promote.name.clone();
    println!(
        "{}",
        indent(&format!(
            "promoted {promoted} ({}); the writer's first write on it {} after the kill",
            outcome
                .plan
                .expected_loss
                .bytes
                .map_or("loss unknown".to_owned(), |b| format!(
                    "{b} bytes behind the master when last seen"
                )),
            first_write.map_or("never came".to_owned(), |d| format!(
                "{:.2} s",
                d.as_secs_f64()
            )),
        ))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    step("Redis: FLUSHALL on the new master, replicated everywhere");
    let port = nodes
        .iter()
        .find(|(name, _)| *name == promoted)
        .map(|(_, port)| *port)
        .ok_or("the promoted member is not one of the nodes")?;
    let live = connect(port).await?;
    // What the master holds just before the disaster, with the writer held
    // long enough for the archive to have stored everything (it stamps a
    // record when it stores it, every 200 ms).
    writer.pause(true);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let held: BTreeSet<String> = keys(&live).await?;
    let before_flush = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (): () = redis::cmd("FLUSHALL")
        .query_async(&mut live.clone())
        .await?;
    writer.pause(false);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let acknowledged = writer.stop().await;
    stop_archiver.send_replace(true);
    monitor.stop().await;
    let archived = archiving.await??;
    // Writes acknowledged before the kill that the new master never had;
    // the RPO is how long before the kill the first of them was.
    let lost: Vec<Instant> = acknowledged
        .iter()
        .filter(|(key, at)| *at < killed_at && !held.contains(key))
        .map(|(_, at)| *at)
        .collect();
    let before_kill = acknowledged
        .iter()
        .filter(|(_, at)| *at < killed_at)
        .count();
    let rpo = lost
        .iter()
        .min()
        .map_or(Duration::ZERO, |first| killed_at - *first);

    step(&format!(
        "Redis: restore to {before_flush}, just before the FLUSHALL"
    ));
    let fresh = Redis::start().await?;
    let restore = ArchiveRestore::new(
        component.clone(),
        RedisServer::new("127.0.0.1", fresh.port()),
    );
    let journals = repo.segment_journals();
    let target = RecoveryTarget::Time(before_flush);
    let mut request = RestoreRequest::new(repo.as_ref(), &target, objectives()?)
        .archive(repo.as_ref())
        .incident_at(before_flush);
    if let Some(journals) = &journals {
        request = request.journals(journals);
    }
    let report = restore.restore(request).await?;
    let restored = keys(&connect(fresh.port()).await?).await?;
    let exact = restored == held;

    let rto = first_write.unwrap_or(Duration::MAX);
    let failover_met = rto <= Duration::from_secs(300) && rpo <= Duration::from_secs(60);
    let text = format!(
        "Redis master failure (objectives RTO 5m, RPO 1m): RTO {} (kill to first write on the new \
         master), RPO {:.2}s ({} acknowledged writes lost of {before_kill} before the kill); \
         incident at {incident}\n\
         Redis restore to {before_flush} (after a FLUSHALL): {} keys restored, {} held by the \
         master just before it: {}; the archive reaches offset {}, from the archiver's {} full \
         synchronization(s), each stored as a snapshot\n{}",
        first_write.map_or("none".to_owned(), |d| format!("{:.2}s", d.as_secs_f64())),
        rpo.as_secs_f64(),
        lost.len(),
        restored.len(),
        held.len(),
        if exact { "exact" } else { "NOT exact" },
        archived.archived.offset,
        archived.snapshots_taken,
        indent(&report.to_string()),
    );
    Ok((failover_met && report.objectives_met() && exact, text))
}

async fn connect(port: u16) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    Ok(client.get_multiplexed_async_connection().await?)
}

/// Every key of the server.
async fn keys(con: &MultiplexedConnection) -> Result<BTreeSet<String>> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut con.clone())
        .await?;
    Ok(keys.into_iter().collect())
}

/// A client that sets a new key every 20 ms on whichever node answers as
/// the master, logging each acknowledged key and when.
struct Writer {
    log: Arc<Mutex<Vec<(String, Instant)>>>,
    paused: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(nodes: Vec<(String, u16)>) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (paused, paused_rx) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(write(nodes, log.clone(), paused_rx, stop_rx));
        Self {
            log,
            paused,
            stop,
            task,
        }
    }

    fn pause(&self, paused: bool) {
        self.paused.send_replace(paused);
    }

    /// How long after `kill` the first write acknowledged after it was.
    async fn first_write_after(&self, kill: Instant, within: Duration) -> Option<Duration> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let first = {
                let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
                log.iter().find(|(_, at)| *at > kill).map(|(_, at)| *at)
            };
            if let Some(at) = first {
                return Some(at - kill);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Stops writing; every acknowledged key and when.
    async fn stop(self) -> Vec<(String, Instant)> {
        self.stop.send_replace(true);
        let _ = self.task.await;
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

async fn write(
    nodes: Vec<(String, u16)>,
    log: Arc<Mutex<Vec<(String, Instant)>>>,
    paused: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) {
    let mut master: Option<MultiplexedConnection> = None;
    let mut n = 0u64;
    while !*stop.borrow() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if *paused.borrow() {
            continue;
        }
        if master.is_none() {
            master = find_master(&nodes).await;
        }
        let Some(con) = master.as_mut() else {
            continue;
        };
        let key = format!("w:{n:06}");
        let set = tokio::time::timeout(
            Duration::from_millis(500),
            redis::cmd("SET").arg(&key).arg(n).query_async::<()>(con),
        )
        .await;
        match set {
            Ok(Ok(())) => {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((key, Instant::now()));
                n += 1;
            }
            // A read-only replica, a paused or dead master: look again.
            _ => master = None,
        }
    }
}

/// The node whose `ROLE` says master, as a client with a node list finds it.
async fn find_master(nodes: &[(String, u16)]) -> Option<MultiplexedConnection> {
    for (_, port) in nodes {
        let Ok(Ok(mut con)) =
            tokio::time::timeout(Duration::from_millis(200), connect(*port)).await
        else {
            continue;
        };
        let role: redis::RedisResult<redis::Value> = redis::cmd("ROLE").query_async(&mut con).await;
        if let Ok(redis::Value::Array(items)) = role
            && matches!(items.first(), Some(redis::Value::BulkString(b)) if b == b"master")
        {
            return Some(con);
        }
    }
    None
}
