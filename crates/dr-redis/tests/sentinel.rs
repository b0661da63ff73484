//! Failover through three real Redis Sentinels: the master killed (-9)
//! while the Sentinels' own detection would wait 30 s, `SENTINEL FAILOVER`
//! asked at once, and every Sentinel naming a promoted replica that takes
//! writes and has every write acknowledged by both replicas before.

use std::time::Duration;

use dr_core::{
    ErrorKind, FailoverHooks, FailoverMode, FailoverRequest, LossLimit, Objectives, execute,
};
use dr_redis::{RedisServer, SentinelFailover};
use dr_testkit::{Redis, RedisSentinels};

fn request(mode: FailoverMode) -> FailoverRequest {
    FailoverRequest::new(
        mode,
        Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap()),
        LossLimit::Bytes(1 << 20),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_fail_a_killed_master_over_when_asked() {
    let mut master = Redis::start().await.unwrap();
    let first = master.start_replica().await.unwrap();
    let second = master.start_replica().await.unwrap();
    let sentinels = RedisSentinels::start(&master, "main", 3, 30_000)
        .await
        .unwrap();
    let mut con = master.connection().await.unwrap();
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    let (): () = pipe.query_async(&mut con).await.unwrap();
    dr_testkit::eventually("both replicas", Duration::from_secs(30), || {
        let mut con = con.clone();
        async move {
            let n: i64 = redis::cmd("WAIT")
                .arg(2)
                .arg(200)
                .query_async(&mut con)
                .await
                .unwrap();
            (n == 2).then_some(())
        }
    })
    .await;
    let failover = SentinelFailover::new(
        "redis/main".parse().unwrap(),
        sentinels
            .ports()
            .iter()
            .map(|p| RedisServer::new("127.0.0.1", *p))
            .collect(),
        sentinels.name(),
        RedisServer::new("127.0.0.1", 0),
    );
    // While the master answers: refused; and no switchover through Sentinel.
    for mode in [FailoverMode::Failover, FailoverMode::Switchover] {
        let err = execute(&failover, &request(mode), FailoverHooks::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    }

    master.kill9();
    let outcome = execute(
        &failover,
        &request(FailoverMode::Failover),
        FailoverHooks::default(),
    )
    .await
    .unwrap();
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
    // Every Sentinel names the same new master, one of the replicas.
    let mut named = std::collections::BTreeSet::new();
    for port in sentinels.ports() {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
        let mut s = client.get_multiplexed_async_connection().await.unwrap();
        let addr =
            dr_testkit::eventually("the Sentinels agreeing", Duration::from_secs(30), || {
                let mut s = s.clone();
                let master_port = master.port().to_string();
                async move {
                    let addr: Vec<String> = redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg("main")
                        .query_async(&mut s)
                        .await
                        .unwrap();
                    (addr[1] != master_port).then_some(addr[1].clone())
                }
            })
            .await;
        let _ = &mut s;
        named.insert(addr);
    }
    assert_eq!(named.len(), 1, "{named:?}");
    let port: u16 = named.into_iter().next().unwrap().parse().unwrap();
    assert!(port == first.port() || port == second.port());
    let promoted = if port == first.port() {
        &first
    } else {
        &second
    };
    let mut new_master = promoted.connection().await.unwrap();
    let (): () = redis::cmd("SET")
        .arg("after")
        .arg(1)
        .query_async(&mut new_master)
        .await
        .unwrap();
    let size: i64 = redis::cmd("DBSIZE")
        .query_async(&mut new_master)
        .await
        .unwrap();
    assert_eq!(size, 101);
}
