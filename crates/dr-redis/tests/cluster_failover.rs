//! Manual failovers of a real Redis Cluster's shards: a master killed (-9)
//! and its replica promoted with `CLUSTER FAILOVER FORCE` before the
//! cluster's own timeout would, writes to its slots accepted at once; a
//! planned switchover of a healthy shard that loses nothing; a shard's
//! killed master failed over by dr-core's monitor, by itself.

use std::sync::Arc;
use std::time::Duration;

use dr_core::{
    ErrorKind, FailoverHooks, FailoverMode, FailoverRequest, LossLimit, Monitor, MonitorEvent,
    MonitorOptions, Objectives, execute,
};
use dr_redis::{ClusterFailover, PauseWrites, RedisServer, SLOTS, slot_of};
use dr_testkit::{RedisCluster, RedisOptions};

use crate::common::{acknowledged_by, memory_lease};

fn request(mode: FailoverMode) -> FailoverRequest {
    FailoverRequest::new(
        mode,
        Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap()),
        LossLimit::Bytes(1 << 20),
    )
}

/// A key of master `index`'s slots (slots split evenly, in order).
fn key_of(masters: usize, index: usize) -> String {
    (0..)
        .map(|i| format!("key{i}"))
        .find(|k| {
            let slot = usize::from(slot_of(k.as_bytes()));
            slot >= usize::from(SLOTS) * index / masters
                && slot < usize::from(SLOTS) * (index + 1) / masters
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_s_replica_takes_over_its_slots() {
    // The cluster's own detection would wait 15 s (cluster-node-timeout).
    let options = RedisOptions::default().setting("cluster-node-timeout", "15000");
    let mut cluster = RedisCluster::start_with(3, 1, options).await.unwrap();
    let key = key_of(3, 0);
    let mut con = cluster.masters()[0].connection().await.unwrap();
    let (): () = redis::cmd("SET")
        .arg(&key)
        .arg("before")
        .query_async(&mut con)
        .await
        .unwrap();
    // On the replica before the kill.
    acknowledged_by(&con, 1).await;
    let seeds: Vec<RedisServer> = cluster
        .nodes()
        .map(|n| RedisServer::new("127.0.0.1", n.port()))
        .collect();
    let failover = ClusterFailover::new("redis-cluster/main".parse().unwrap(), seeds);

    // Every master answers: nothing to fail over without naming a replica.
    let err = execute(
        &failover,
        &request(FailoverMode::Failover),
        FailoverHooks::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");

    cluster.master_mut(0).unwrap().kill9();
    let replica_port = cluster.replicas()[0].port();
    let outcome = execute(
        &failover,
        &request(FailoverMode::Failover),
        FailoverHooks::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        outcome.plan.promote.name,
        format!("127.0.0.1:{replica_port}")
    );
    // The report times the promotion (speed is the benchmark's).
    assert!(
        outcome
            .report
            .timeline
            .steps()
            .iter()
            .any(|s| s.name.starts_with("promote")),
        "{}",
        outcome.report
    );
    let mut promoted = cluster.replicas()[0].connection().await.unwrap();
    let value: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut promoted)
        .await
        .unwrap();
    assert_eq!(value, "before");
    let (): () = redis::cmd("SET")
        .arg(&key)
        .arg("after")
        .query_async(&mut promoted)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_of_a_healthy_shard_loses_nothing() {
    let cluster = RedisCluster::start(3, 1).await.unwrap();
    let key = key_of(3, 1);
    let mut con = cluster.masters()[1].connection().await.unwrap();
    for i in 0..100 {
        let (): () = redis::cmd("SET")
            .arg(format!("{{{key}}}{i}"))
            .arg(i)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let seeds = vec![RedisServer::new("127.0.0.1", cluster.masters()[0].port())];
    let failover = ClusterFailover::new("redis-cluster/main".parse().unwrap(), seeds);
    let replica = format!("127.0.0.1:{}", cluster.replicas()[1].port());
    let outcome = execute(
        &failover,
        &request(FailoverMode::Switchover).to(replica.clone()),
        FailoverHooks::default(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.plan.promote.name, replica);
    assert_eq!(outcome.plan.expected_loss.bytes, Some(0));
    let mut promoted = cluster.replicas()[1].connection().await.unwrap();
    let size: i64 = redis::cmd("DBSIZE")
        .query_async(&mut promoted)
        .await
        .unwrap();
    assert_eq!(size, 100);
    // The old master follows it now.
    dr_testkit::eventually("the old master demoted", Duration::from_secs(30), || {
        let mut con = con.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut con)
                .await
                .unwrap();
            info.contains("role:slave").then_some(())
        }
    })
    .await;
}

/// One monitor on the shard serving a key's slot, probing every 200 ms
/// (each probe within 500 ms): its master killed (-9), the monitor fails it
/// over by itself after three missed probes, long before the cluster's own
/// 15 s timeout would; the shard then takes writes, the RTO counted from
/// the first missed probe and the loss assessed from the offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_fails_a_killed_shard_master_over_by_itself() {
    let options = RedisOptions::default().setting("cluster-node-timeout", "15000");
    let mut cluster = RedisCluster::start_with(3, 1, options).await.unwrap();
    let key = key_of(3, 0);
    let seeds: Vec<RedisServer> = cluster
        .nodes()
        .map(|n| RedisServer::new("127.0.0.1", n.port()))
        .collect();
    let shard = [cluster.masters()[0].port(), cluster.replicas()[0].port()].map(|port| {
        (
            format!("127.0.0.1:{port}"),
            RedisServer::new("127.0.0.1", port),
        )
    });
    let failover = ClusterFailover::new("redis-cluster/main".parse().unwrap(), seeds)
        .shard_serving(slot_of(key.as_bytes()));
    let lease = memory_lease().await;
    let probes = MonitorOptions::new(Duration::from_millis(200), Duration::from_millis(500), 3);
    let mut handle = Monitor::new(Arc::new(failover), probes)
        .fail_over_automatically(
            request(FailoverMode::Failover).old_primary_known_dead(),
            Arc::new(PauseWrites::new(shard.to_vec(), Duration::from_secs(30))),
            lease,
            "monitor-a",
        )
        .spawn();
    let master = format!("127.0.0.1:{}", cluster.masters()[0].port());
    let mut seen = Vec::new();
    let first_up = next_until(&mut handle, &mut seen, |e| {
        matches!(e, MonitorEvent::PrimaryUp { .. })
    })
    .await;
    assert!(
        matches!(first_up, MonitorEvent::PrimaryUp { name } if *name == master),
        "{seen:?}"
    );

    cluster.master_mut(0).unwrap().kill9();
    let done = next_until(&mut handle, &mut seen, |e| {
        matches!(
            e,
            MonitorEvent::FailedOver(_) | MonitorEvent::FailoverFailed { .. }
        )
    })
    .await;
    let MonitorEvent::FailedOver(outcome) = done else {
        panic!("no failover: {seen:?}");
    };
    let replica = format!("127.0.0.1:{}", cluster.replicas()[0].port());
    assert_eq!(outcome.plan.promote.name, replica);
    // Nothing was written: the loss, counted from the master's offset when
    // it was last seen, is at most the replication stream's pings.
    let lost = outcome.plan.expected_loss.bytes;
    assert!(lost.is_some_and(|b| b < 1024), "{lost:?}");
    let incident = outcome.report.incident_at.expect("the monitor says when");
    assert!(
        incident < outcome.report.timeline.started_at(),
        "{}",
        outcome.report
    );
    let mut promoted = cluster.replicas()[0].connection().await.unwrap();
    let (): () = redis::cmd("SET")
        .arg(&key)
        .arg("after")
        .query_async(&mut promoted)
        .await
        .unwrap();
    handle.stop().await;
}

/// The next event that `done` picks, within 30 s; every event is kept in
/// `seen`.
async fn next_until<'a>(
    handle: &mut dr_core::MonitorHandle,
    seen: &'a mut Vec<MonitorEvent>,
    mut done: impl FnMut(&MonitorEvent) -> bool,
) -> &'a MonitorEvent {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = handle.next_event().await {
            let stop = done(&event);
            seen.push(event);
            if stop {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "waited 30 s; saw {seen:?}");
    seen.last().unwrap()
}
