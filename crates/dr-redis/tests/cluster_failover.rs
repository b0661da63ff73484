//! Manual failovers of a real Redis Cluster's shards: a master killed (-9)
//! and its replica promoted with `CLUSTER FAILOVER FORCE` before the
//! cluster's own timeout would, writes to its slots accepted at once; a
//! planned switchover of a healthy shard that loses nothing.

use std::time::Duration;

use dr_core::{
    ErrorKind, FailoverHooks, FailoverMode, FailoverRequest, LossLimit, Objectives, execute,
};
use dr_redis::{ClusterFailover, RedisServer, SLOTS, slot_of};
use dr_testkit::{RedisCluster, RedisOptions};

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
    let _: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query_async(&mut con)
        .await
        .unwrap();
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
