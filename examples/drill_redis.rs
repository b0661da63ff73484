//! The drill's Redis scenario, the seeds' master-failure runbook and the
//! disaster replication cannot fix, on a Redis Cluster of three masters,
//! each with a replica:
//!
//! 1. a writer sets a new key every 20 ms, each to its slot's master as a
//!    cluster client finds it (the layout read again after any failure),
//!    logging each acknowledged write;
//! 2. every shard's command archiver follows its master (its first full
//!    synchronization stored as a snapshot), its replica the candidate; a
//!    scheduled snapshot of the whole cluster is taken while it runs;
//!    dr-core's monitor (500 ms probes, 3 failures) watches the first
//!    shard;
//! 3. kill -9 of that shard's master: the monitor fails it over by itself
//!    (`CLUSTER FAILOVER FORCE`, then `TAKEOVER`), the writer finds the new
//!    master, the shard's archiver goes on with it;
//! 4. a `FLUSHALL` on every master, replicated everywhere: the point-in-time
//!    restore of every shard, to just before it, into a fresh Cluster of
//!    another shape (each shard replayed on a staging server);
//! 5. every key checked: the restore must hold exactly what the masters
//!    held just before the `FLUSHALL`. The failover's RTO runs from the
//!    kill to the first write the new master took, its RPO is the
//!    acknowledged writes lost; both held against the seeds' Redis
//!    objectives (RTO 5 minutes, RPO 1 minute), and so is the restore's
//!    report.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dr_core::{
    BackupExt, ComponentId, FailoverMode, FailoverRequest, LossLimit, Monitor, MonitorEvent,
    MonitorOptions, Objectives, RecoveryTarget, Restore, RestoreRequest,
};
use dr_redis::{
    ClusterArchiveRestore, ClusterArchiver, ClusterFailover, ClusterLayout, ClusterSnapshot,
    PauseWrites, RedisServer, slot_of,
};
use dr_storage::Repository;
use dr_testkit::{Redis, RedisCluster};
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
    step(
        "Redis: a Cluster of three masters and their replicas, a writer, every shard archived, the monitor",
    );
    let mut cluster = RedisCluster::start(3, 1).await?;
    let ports: Vec<u16> = cluster.nodes().map(Redis::port).collect();
    let seeds: Vec<RedisServer> = ports
        .iter()
        .map(|port| RedisServer::new("127.0.0.1", *port))
        .collect();
    let component: ComponentId = "redis/drill-cluster".parse()?;
    // The shard the disaster strikes: the first master's, and its replica.
    let (doomed, its_replica) = (cluster.masters()[0].port(), cluster.replicas()[0].port());
    let doomed_slots = read_layout(&ports)
        .await
        .and_then(|layout| {
            let master = layout
                .masters()
                .find(|m| m.addr == format!("127.0.0.1:{doomed}"))?;
            Some(master.slots.clone())
        })
        .ok_or("the first master serves no slots")?;
    let first_slot = doomed_slots.first().map_or(0, |(a, _)| *a);
    let in_doomed_shard =
        move |slot: u16| doomed_slots.iter().any(|(a, b)| (*a..=*b).contains(&slot));

    let writer = Writer::start(ports.clone());
    let (stop_archiver, archiver_stopped) = watch::channel(false);
    let archiver = ClusterArchiver::new(component.clone(), seeds[0].clone());
    let archiving = {
        let repo = repo.clone();
        tokio::spawn(async move {
            let journals = repo.segment_journals();
            archiver
                .run(
                    repo.as_ref(),
                    journals.as_ref().map(|j| j as &dyn dr_core::JournalSink),
                    repo.as_ref(),
                    archiver_stopped,
                )
                .await
        })
    };
    let shard: Vec<(String, RedisServer)> = [doomed, its_replica]
        .into_iter()
        .map(|port| {
            (
                format!("127.0.0.1:{port}"),
                RedisServer::new("127.0.0.1", port),
            )
        })
        .collect();
    let failover =
        Arc::new(ClusterFailover::new(component.clone(), seeds.clone()).shard_serving(first_slot));
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
        Arc::new(PauseWrites::new(shard, Duration::from_secs(30))),
        repo.clone(),
        "drill-redis-monitor",
    )
    .spawn();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let scheduled = ClusterSnapshot::new(component.clone(), seeds[0].clone())
        .backup_to(repo.as_ref())
        .await?;
    println!(
        "{}",
        indent(&format!(
            "scheduled cluster snapshot {} taken under the write load",
            scheduled.manifest.id
        ))
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    step("Redis: kill -9 of a shard's master; the monitor fails it over by itself");
    let killed_at = Instant::now();
    let incident = Timestamp::now();
    cluster
        .master_mut(0)
        .ok_or("the cluster has no master")?
        .kill9();
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
        .first_write_after(killed_at, &in_doomed_shard, Duration::from_secs(60))
        .await;
    println!(
        "{}",
        indent(&format!(
            "promoted {} ({}); the writer's first write to the shard on it {} after the kill",
            outcome.plan.promote.name,
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

    step("Redis: FLUSHALL on every master, replicated everywhere");
    let masters: Vec<MultiplexedConnection> = {
        let layout = read_layout(&ports)
            .await
            .ok_or("no node answers CLUSTER NODES")?;
        let mut masters = Vec::new();
        for master in layout.masters() {
            let port = master
                .addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .ok_or("a master's address has no port")?;
            masters.push(connect(port).await?);
        }
        masters
    };
    // What the masters hold just before the disaster, with the writer held
    // long enough for the archives to have stored everything (each stamps
    // a record when it stores it, every 200 ms).
    writer.pause(true);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut held = BTreeSet::new();
    for master in &masters {
        held.extend(keys(master).await?);
    }
    let before_flush = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for master in &masters {
        let (): () = redis::cmd("FLUSHALL")
            .query_async(&mut master.clone())
            .await?;
    }
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
        .filter(|w| w.at < killed_at && !held.contains(&w.key))
        .map(|w| w.at)
        .collect();
    let before_kill = acknowledged.iter().filter(|w| w.at < killed_at).count();
    let rpo = lost
        .iter()
        .min()
        .map_or(Duration::ZERO, |first| killed_at - *first);

    step(&format!(
        "Redis: restore every shard to {before_flush}, just before the FLUSHALL, into a fresh Cluster of two masters"
    ));
    let fresh = RedisCluster::start(2, 0).await?;
    let staging = Redis::start().await?;
    let restore = ClusterArchiveRestore::new(
        component.clone(),
        RedisServer::new("127.0.0.1", fresh.masters()[0].port()),
        RedisServer::new("127.0.0.1", staging.port()),
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
    let mut restored = BTreeSet::new();
    for master in fresh.masters() {
        restored.extend(keys(&connect(master.port()).await?).await?);
    }
    let exact = restored == held;

    let rto = first_write.unwrap_or(Duration::MAX);
    let failover_met = rto <= Duration::from_secs(300) && rpo <= Duration::from_secs(60);
    let shards: Vec<String> = archived
        .iter()
        .map(|(shard, stop)| {
            format!(
                "{shard} to offset {} ({} full synchronization(s))",
                stop.archived.offset, stop.snapshots_taken
            )
        })
        .collect();
    let text = format!(
        "Redis Cluster master failure (objectives RTO 5m, RPO 1m): RTO {} (kill to first write \
         on the shard's new master), RPO {:.2}s ({} acknowledged writes lost of {before_kill} \
         before the kill); incident at {incident}\n\
         Redis Cluster restore to {before_flush} (after a FLUSHALL on every master): {} keys \
         restored, {} held by the masters just before it: {}; archives: {}\n{}",
        first_write.map_or("none".to_owned(), |d| format!("{:.2}s", d.as_secs_f64())),
        rpo.as_secs_f64(),
        lost.len(),
        restored.len(),
        held.len(),
        if exact { "exact" } else { "NOT exact" },
        shards.join("; "),
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

/// The cluster's layout as the first node that answers sees it.
async fn read_layout(ports: &[u16]) -> Option<ClusterLayout> {
    for port in ports {
        let Ok(Ok(mut con)) =
            tokio::time::timeout(Duration::from_millis(200), connect(*port)).await
        else {
            continue;
        };
        let nodes: redis::RedisResult<String> = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut con)
            .await;
        if let Ok(text) = nodes
            && let Ok(layout) = ClusterLayout::parse(&text, &format!("127.0.0.1:{port}"))
        {
            return Some(layout);
        }
    }
    None
}

/// One acknowledged write.
struct Write {
    key: String,
    slot: u16,
    at: Instant,
}

/// A cluster client that sets a new key every 20 ms on its slot's master,
/// logging each acknowledged key and when.
struct Writer {
    log: Arc<Mutex<Vec<Write>>>,
    paused: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(ports: Vec<u16>) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (paused, paused_rx) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(write(ports, log.clone(), paused_rx, stop_rx));
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

    /// How long after `kill` the first write to a slot `of_shard` picks
    /// was acknowledged.
    async fn first_write_after(
        &self,
        kill: Instant,
        of_shard: &dyn Fn(u16) -> bool,
        within: Duration,
    ) -> Option<Duration> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let first = {
                let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
                log.iter()
                    .find(|w| w.at > kill && of_shard(w.slot))
                    .map(|w| w.at)
            };
            if let Some(at) = first {
                return Some(at - kill);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Stops writing; every acknowledged write.
    async fn stop(self) -> Vec<Write> {
        self.stop.send_replace(true);
        let _ = self.task.await;
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

async fn write(
    ports: Vec<u16>,
    log: Arc<Mutex<Vec<Write>>>,
    paused: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) {
    let mut layout: Option<ClusterLayout> = None;
    let mut connections: HashMap<String, MultiplexedConnection> = HashMap::new();
    let mut n = 0u64;
    while !*stop.borrow() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if *paused.borrow() {
            continue;
        }
        if layout.is_none() {
            layout = read_layout(&ports).await;
        }
        let key = format!("w:{n:06}");
        let slot = slot_of(key.as_bytes());
        let Some(addr) = layout
            .as_ref()
            .and_then(|l| l.master_of(slot))
            .map(|m| m.addr.clone())
        else {
            continue;
        };
        if !connections.contains_key(&addr) {
            let Some(port) = addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()) else {
                layout = None;
                continue;
            };
            let Ok(Ok(con)) = tokio::time::timeout(Duration::from_millis(200), connect(port)).await
            else {
                layout = None;
                continue;
            };
            connections.insert(addr.clone(), con);
        }
        let Some(con) = connections.get_mut(&addr) else {
            continue;
        };
        let set = tokio::time::timeout(
            Duration::from_millis(500),
            redis::cmd("SET").arg(&key).arg(n).query_async::<()>(con),
        )
        .await;
        match set {
            Ok(Ok(())) => {
                log.lock().unwrap_or_else(|p| p.into_inner()).push(Write {
                    key,
                    slot,
                    at: Instant::now(),
                });
                n += 1;
            }
            // A dead or paused master, or the slot moved: look again.
            _ => {
                connections.remove(&addr);
                layout = None;
            }
        }
    }
}
