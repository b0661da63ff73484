//! A real Redis Cluster archived shard by shard (`ClusterArchiver`), then
//! restored to a time just before a `FLUSHALL` on every master into a fresh
//! Cluster of another shape (`ClusterArchiveRestore`, each shard replayed on
//! a staging server from a scheduled cluster snapshot on): exactly the keys
//! written up to then, values and TTLs kept, `INCR`s and a `MULTI`/`EXEC`
//! applied as the masters did.

use std::sync::Arc;
use std::time::Duration;

use dr_core::{
    BackupExt, ErrorKind, Objectives, RecoveryTarget, Restore, RestoreRequest, SnapshotSource,
};
use dr_redis::{
    ClusterArchiveRestore, ClusterArchiver, ClusterSnapshot, RedisServer, SLOTS, slot_of,
};
use dr_storage::{FsBackend, InitOptions, KdfParams, Repository, Secret};
use dr_testkit::{Redis, RedisCluster};
use jiff::Timestamp;

use crate::common::acknowledged_by;

fn server(node: &Redis) -> RedisServer {
    RedisServer::new("127.0.0.1", node.port())
}

/// The master of `key` in a kit cluster (slots split evenly, in order).
fn master_for<'a>(cluster: &'a RedisCluster, key: &str) -> &'a Redis {
    let n = cluster.masters().len();
    let slot = usize::from(slot_of(key.as_bytes()));
    let index = (0..n)
        .find(|i| slot < usize::from(SLOTS) * (i + 1) / n)
        .unwrap();
    &cluster.masters()[index]
}

async fn keys_in(cluster: &RedisCluster) -> i64 {
    let mut total = 0;
    for master in cluster.masters() {
        let n: i64 = redis::cmd("DBSIZE")
            .query_async(&mut master.connection().await.unwrap())
            .await
            .unwrap();
        total += n;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_archived_per_shard_restores_to_a_time_into_an_empty_cluster() {
    let source = RedisCluster::start(3, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(FsBackend::new(dir.path()).unwrap());
    let options = InitOptions::encrypted(Secret::password("rdb")).kdf(KdfParams::INSECURE_FAST);
    let repo = Repository::init(backend, options).await.unwrap();
    let journals = repo.segment_journals().unwrap();
    let archiver =
        ClusterArchiver::new("redis/shop".parse().unwrap(), server(&source.masters()[0]))
            .interval(Duration::from_millis(50))
            .reconnect_for(Duration::from_secs(10));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = {
        let (repo, journals) = (repo.clone(), journals.clone());
        tokio::spawn(async move { archiver.run(&repo, Some(&journals), &repo, stopped).await })
    };

    // Plain keys (some with a TTL), counters, and a transaction, on every
    // shard; each master's replica and archiver acknowledge them.
    // (WAIT counts acknowledgements of the connection's own writes.)
    let mut connections = Vec::new();
    for master in source.masters() {
        connections.push(master.connection().await.unwrap());
    }
    let con_for = |key: &str| {
        let master = master_for(&source, key);
        let index = source
            .masters()
            .iter()
            .position(|m| m.port() == master.port())
            .unwrap();
        connections[index].clone()
    };
    let mut expected = Vec::new();
    for i in 0..30 {
        let key = format!("k{i}");
        let mut con = con_for(&key);
        let mut set = redis::cmd("SET");
        set.arg(&key).arg(i);
        if i % 3 == 0 {
            set.arg("PX").arg(3_600_000);
        }
        let (): () = set.query_async(&mut con).await.unwrap();
        expected.push((key, i.to_string(), i % 3 == 0));
    }
    // A scheduled snapshot of the whole cluster: the restore starts each
    // shard from it (the archivers' own first snapshots are forgotten
    // below), then replays what came after.
    for con in &connections {
        acknowledged_by(con, 2).await;
    }
    let scheduled =
        ClusterSnapshot::new("redis/shop".parse().unwrap(), server(&source.masters()[1]))
            .backup_to(&repo)
            .await
            .unwrap();
    for i in 0..6 {
        let key = format!("n{i}");
        let mut con = con_for(&key);
        for _ in 0..=i {
            let _: i64 = redis::cmd("INCR")
                .arg(&key)
                .query_async(&mut con)
                .await
                .unwrap();
        }
        expected.push((key, (i + 1).to_string(), false));
    }
    let mut con = con_for("{t}a");
    let (): () = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("{t}a")
        .arg("x")
        .ignore()
        .cmd("SET")
        .arg("{t}b")
        .arg("y")
        .ignore()
        .query_async(&mut con)
        .await
        .unwrap();
    expected.push(("{t}a".into(), "x".into(), false));
    expected.push(("{t}b".into(), "y".into(), false));
    for con in &connections {
        acknowledged_by(con, 2).await;
    }
    let before_flush = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(150)).await;

    // The disaster replication cannot fix: every master flushed.
    for master in source.masters() {
        let con = master.connection().await.unwrap();
        let (): () = redis::cmd("FLUSHALL")
            .query_async(&mut con.clone())
            .await
            .unwrap();
        acknowledged_by(&con, 2).await;
    }
    assert_eq!(keys_in(&source).await, 0);
    stop.send(true).unwrap();
    let stopped = run.await.unwrap().unwrap();
    assert_eq!(stopped.len(), 3, "one archive per shard: {stopped:?}");
    let mut first_syncs = Vec::new();
    for (shard, _) in &stopped {
        let own = repo.snapshots(shard).await.unwrap();
        assert_eq!(own.len(), 1, "{shard}: the archiver's full synchronization");
        assert!(own[0].recovery_point.at < scheduled.manifest.recovery_point.at);
        first_syncs.push(own[0].id);
    }
    repo.forget_snapshots(&first_syncs).await.unwrap();
    let target = RedisCluster::start(2, 0).await.unwrap();
    let staging = Redis::start().await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let restore = ClusterArchiveRestore::new(
        "redis/shop".parse().unwrap(),
        server(&target.masters()[0]),
        server(&staging),
    )
    .scratch(scratch.path())
    .wait(Duration::from_secs(60));
    let objectives = Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap());
    let restore_to = |at: Timestamp| {
        let restore = restore.clone();
        let repo = &repo;
        async move {
            let target = RecoveryTarget::Time(at);
            let request = RestoreRequest::new(repo, &target, objectives).archive(repo);
            restore.restore(request).await
        }
    };

    // A time the archive does not reach: refused, nothing written.
    let beyond = restore_to(Timestamp::now() + Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert!(beyond.to_string().contains("does not reach"), "{beyond}");
    assert_eq!(keys_in(&target).await, 0);

    let report = restore_to(before_flush + Duration::from_millis(50))
        .await
        .unwrap();
    let printed = report.to_string();
    assert!(
        printed.contains(&format!("restored {} keys from 3 shards", expected.len())),
        "{printed}"
    );
    assert!(report.data_loss.is_some(), "{printed}");
    assert_eq!(keys_in(&target).await, expected.len() as i64, "{printed}");
    for (key, value, expires) in &expected {
        let mut con = master_for(&target, key).connection().await.unwrap();
        let (got, ttl): (Option<String>, i64) = redis::pipe()
            .cmd("GET")
            .arg(key)
            .cmd("PTTL")
            .arg(key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some(value.as_str()), "{key}");
        assert_eq!(ttl > 0, *expires, "{key}: PTTL {ttl}");
    }
    let left: i64 = redis::cmd("DBSIZE")
        .query_async(&mut staging.connection().await.unwrap())
        .await
        .unwrap();
    assert_eq!(left, 0, "the staging server is emptied");
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);

    // Into a Cluster that holds keys: refused.
    let refused = restore_to(before_flush).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::InvalidInput, "{refused}");
    assert!(refused.to_string().contains("holds keys"), "{refused}");
}
