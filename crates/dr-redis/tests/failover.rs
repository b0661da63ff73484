//! Failover of a real standalone Redis 7.0 master and its replicas: the
//! master killed (-9) and the most advanced replica promoted, the other
//! following it, writes accepted; a planned switchover with `FAILOVER TO`
//! that loses nothing; a failover refused while the master answers, and
//! with force, the answering master fenced and demoted, never left
//! writable beside the new one; dr-core's monitor failing a killed master
//! over by itself, and making it the new master's replica when it returns.

use std::sync::Arc;
use std::time::Duration;

use dr_core::{
    ErrorKind, FailoverHooks, FailoverMode, FailoverRequest, LossLimit, Monitor, MonitorEvent,
    MonitorOptions, Objectives, execute,
};
use dr_redis::{PauseWrites, RedisFailover, RedisServer};
use dr_testkit::Redis;
use redis::aio::MultiplexedConnection;

use crate::common::{events_until, memory_lease};

fn members(nodes: &[(&str, &Redis)]) -> Vec<(String, RedisServer)> {
    nodes
        .iter()
        .map(|(name, node)| {
            (
                (*name).to_owned(),
                RedisServer::new("127.0.0.1", node.port()),
            )
        })
        .collect()
}

fn request(mode: FailoverMode) -> FailoverRequest {
    FailoverRequest::new(
        mode,
        Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap()),
        LossLimit::Bytes(1 << 20),
    )
}

async fn role(con: &mut MultiplexedConnection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("role:") || l.starts_with("master_port:"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn dbsize(con: &mut MultiplexedConnection) -> i64 {
    redis::cmd("DBSIZE").query_async(con).await.unwrap()
}

/// Writes `n` keys and waits until `replicas` acknowledged them.
async fn write_and_sync(con: &mut MultiplexedConnection, prefix: &str, n: usize, replicas: i64) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET").arg(format!("{prefix}{i}")).arg(i).ignore();
    }
    let (): () = pipe.query_async(con).await.unwrap();
    dr_testkit::eventually("the replicas", Duration::from_secs(30), || {
        let mut con = con.clone();
        async move {
            let got: i64 = redis::cmd("WAIT")
                .arg(replicas)
                .arg(200)
                .query_async(&mut con)
                .await
                .unwrap();
            (got >= replicas).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_by_its_most_advanced_replica() {
    let mut master = Redis::start().await.unwrap();
    let first = master.start_replica().await.unwrap();
    let second = master.start_replica().await.unwrap();
    let mut con = master.connection().await.unwrap();
    write_and_sync(&mut con, "k", 200, 2).await;
    let failover = RedisFailover::new(
        "redis/main".parse().unwrap(),
        members(&[("r-0", &master), ("r-1", &first), ("r-2", &second)]),
    );

    // While the master answers, a failover is refused.
    let err = execute(
        &failover,
        &request(FailoverMode::Failover),
        FailoverHooks::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");

    // The master was seen: its plan fences it, which no fence here can do
    // without it; it is known dead.
    master.kill9();
    let outcome = execute(
        &failover,
        &request(FailoverMode::Failover).old_primary_known_dead(),
        FailoverHooks::default(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.plan.fence.len(), 1, "{}", outcome.plan);
    assert_eq!(outcome.plan.fence[0].name, "r-0");
    let promoted = if outcome.plan.promote.name == "r-1" {
        &first
    } else {
        &second
    };
    let other = if outcome.plan.promote.name == "r-1" {
        &second
    } else {
        &first
    };
    let mut new_master = promoted.connection().await.unwrap();
    assert!(role(&mut new_master).await.contains("role:master"));
    let (): () = redis::cmd("SET")
        .arg("after")
        .arg(1)
        .query_async(&mut new_master)
        .await
        .unwrap();
    assert_eq!(dbsize(&mut new_master).await, 201);
    // The other replica follows the new master and gets the new write.
    let mut other_con = other.connection().await.unwrap();
    assert!(
        role(&mut other_con)
            .await
            .contains(&format!("master_port:{}", promoted.port()))
    );
    dr_testkit::eventually("the other replica", Duration::from_secs(30), || {
        let mut other_con = other_con.clone();
        async move { (dbsize(&mut other_con).await == 201).then_some(()) }
    })
    .await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_loses_nothing_and_a_forced_failover_fences_the_master() {
    let master = Redis::start().await.unwrap();
    let replica = master.start_replica().await.unwrap();
    let mut con = master.connection().await.unwrap();
    write_and_sync(&mut con, "k", 100, 1).await;
    let nodes = members(&[("r-0", &master), ("r-1", &replica)]);
    let failover = RedisFailover::new("redis/main".parse().unwrap(), nodes.clone());

    let outcome = execute(
        &failover,
        &request(FailoverMode::Switchover),
        FailoverHooks::default(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.plan.promote.name, "r-1");
    assert_eq!(outcome.plan.expected_loss.bytes, Some(0));
    let mut new_master = replica.connection().await.unwrap();
    assert!(role(&mut new_master).await.contains("role:master"));
    assert_eq!(dbsize(&mut new_master).await, 100);
    let mut old = master.connection().await.unwrap();
    dr_testkit::eventually("the old master following", Duration::from_secs(30), || {
        let mut old = old.clone();
        let port = replica.port();
        async move {
            role(&mut old)
                .await
                .contains(&format!("master_port:{port}"))
                .then_some(())
        }
    })
    .await;

    // Back the other way by force while both answer: the answering master
    // is fenced (writes paused), then follows the promoted one.
    write_and_sync(&mut new_master, "more", 10, 1).await;
    let fence = PauseWrites::new(nodes, Duration::from_secs(60));
    let hooks = FailoverHooks {
        fence: Some(&fence),
        ..FailoverHooks::default()
    };
    let outcome = execute(&failover, &request(FailoverMode::Failover).force(), hooks)
        .await
        .unwrap();
    assert_eq!(outcome.plan.promote.name, "r-0");
    assert_eq!(outcome.plan.fence.len(), 1);
    assert!(role(&mut old).await.contains("role:master"));
    let (): () = redis::cmd("SET")
        .arg("back")
        .arg(1)
        .query_async(&mut old)
        .await
        .unwrap();
    assert!(
        role(&mut new_master)
            .await
            .contains(&format!("master_port:{}", master.port()))
    );
}

/// A monitor probing every 200 ms (each probe within 500 ms) fails over by
/// itself once the master missed three probes in a row (killed -9), under
/// the lease, and the RTO counts from the first missed probe. The old
/// master started again comes back a master, with what it persisted; the
/// monitor makes it the new master's replica instead of leaving it
/// writable beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_fails_a_killed_master_over_and_demotes_it_when_it_returns() {
    let mut master = Redis::start().await.unwrap();
    let first = master.start_replica().await.unwrap();
    let second = master.start_replica().await.unwrap();
    let mut con = master.connection().await.unwrap();
    write_and_sync(&mut con, "k", 100, 2).await;
    let nodes = members(&[("r-0", &master), ("r-1", &first), ("r-2", &second)]);
    let failover = RedisFailover::new("redis/main".parse().unwrap(), nodes.clone());
    let fence = Arc::new(PauseWrites::new(nodes, Duration::from_secs(30)));
    let lease = memory_lease().await;
    let options = MonitorOptions::new(Duration::from_millis(200), Duration::from_millis(500), 3);
    let mut handle = Monitor::new(Arc::new(failover), options)
        .fail_over_automatically(
            request(FailoverMode::Failover).old_primary_known_dead(),
            fence,
            lease,
            "monitor-a",
        )
        .spawn();
    let seen = events_until(&mut handle, |e| matches!(e, MonitorEvent::PrimaryUp { .. })).await;
    assert!(
        matches!(seen.last(), Some(MonitorEvent::PrimaryUp { name }) if name == "r-0"),
        "{seen:?}"
    );

    master.kill9();
    let seen = events_until(&mut handle, |e| {
        matches!(
            e,
            MonitorEvent::FailedOver(_) | MonitorEvent::FailoverFailed { .. }
        )
    })
    .await;
    let down = seen
        .iter()
        .filter(|e| matches!(e, MonitorEvent::PrimaryDown { .. }))
        .count();
    assert!(down >= 3, "{seen:?}");
    let Some(MonitorEvent::FailedOver(outcome)) = seen.last() else {
        panic!("no failover: {seen:?}");
    };
    let promoted = match outcome.plan.promote.name.as_str() {
        "r-1" => &first,
        "r-2" => &second,
        other => panic!("promoted {other}"),
    };
    // Every write reached both replicas: the loss, counted from the
    // master's offset when it was last seen, is at most the replication
    // stream's pings.
    let lost = outcome.plan.expected_loss.bytes;
    assert!(lost.is_some_and(|b| b < 1024), "{lost:?}");
    // Counted from the first missed probe, before the failover began.
    let incident = outcome.report.incident_at.expect("the monitor says when");
    assert!(
        incident < outcome.report.timeline.started_at(),
        "{}",
        outcome.report
    );
    let mut new_master = promoted.connection().await.unwrap();
    let (): () = redis::cmd("SET")
        .arg("after")
        .arg(1)
        .query_async(&mut new_master)
        .await
        .unwrap();

    // The old master comes back a master: made the new one's replica.
    master.restart().await.unwrap();
    let seen = events_until(&mut handle, |e| matches!(e, MonitorEvent::Refenced { .. })).await;
    let Some(MonitorEvent::Refenced { name, result }) = seen.last() else {
        unreachable!()
    };
    assert_eq!(name, "r-0");
    assert_eq!(result, &Ok(()));
    let mut old = master.connection().await.unwrap();
    assert!(
        role(&mut old)
            .await
            .contains(&format!("master_port:{}", promoted.port()))
    );
    dr_testkit::eventually("the old master's copy", Duration::from_secs(30), || {
        let mut old = old.clone();
        async move { (dbsize(&mut old).await == 101).then_some(()) }
    })
    .await;
    handle.stop().await;
}

/// A master that hangs (SIGSTOP) rather than dies: it still accepts
/// connections but answers nothing. Probed within 300 ms, it counts as
/// unreachable; the monitor fails it over (the failover's own assessment
/// gives up on it as fast), and once it runs again it is a second master
/// beside the new one, made its replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_master_is_failed_over_and_demoted_when_it_wakes() {
    let master = Redis::start().await.unwrap();
    let first = master.start_replica().await.unwrap();
    let mut con = master.connection().await.unwrap();
    write_and_sync(&mut con, "k", 50, 1).await;
    let nodes = members(&[("r-0", &master), ("r-1", &first)]);
    let failover = RedisFailover::new("redis/main".parse().unwrap(), nodes.clone())
        .probe_timeout(Duration::from_millis(300));
    let lease = memory_lease().await;
    let options = MonitorOptions::new(Duration::from_millis(200), Duration::from_millis(300), 3);
    let mut handle = Monitor::new(Arc::new(failover), options)
        .fail_over_automatically(
            request(FailoverMode::Failover).old_primary_known_dead(),
            Arc::new(PauseWrites::new(nodes, Duration::from_secs(30))),
            lease,
            "monitor-a",
        )
        .spawn();
    events_until(&mut handle, |e| matches!(e, MonitorEvent::PrimaryUp { .. })).await;
    let pid = master.pid().unwrap().to_string();
    let signal = |which: &str| {
        let sent = std::process::Command::new("kill")
            .args([which, pid.as_str()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {which} {pid}");
    };
    signal("-STOP");
    let seen = events_until(&mut handle, |e| {
        matches!(
            e,
            MonitorEvent::FailedOver(_) | MonitorEvent::FailoverFailed { .. }
        )
    })
    .await;
    signal("-CONT");
    let Some(MonitorEvent::FailedOver(outcome)) = seen.last() else {
        panic!("no failover: {seen:?}");
    };
    assert_eq!(outcome.plan.promote.name, "r-1");
    let seen = events_until(&mut handle, |e| matches!(e, MonitorEvent::Refenced { .. })).await;
    assert!(
        matches!(seen.last(), Some(MonitorEvent::Refenced { name, result: Ok(()) }) if name == "r-0"),
        "{seen:?}"
    );
    let old = master.connection().await.unwrap();
    let new_port = format!("master_port:{}", first.port());
    dr_testkit::eventually("the old master following", Duration::from_secs(30), || {
        let (mut old, new_port) = (old.clone(), new_port.clone());
        async move { role(&mut old).await.contains(&new_port).then_some(()) }
    })
    .await;
    handle.stop().await;
}
