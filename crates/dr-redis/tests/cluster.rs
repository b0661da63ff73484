//! Real Redis Clusters: a snapshot of every shard at once (from replicas,
//! with writes paused for one cut), restored into a fresh cluster of a
//! different shape key for key, and a whole cluster rebuilt on empty nodes
//! from its snapshot (Redis 7.0 and 8.2).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dr_core::{BackupExt, ErrorKind, Objectives, RecoveryTarget, RestoreRequest};
use dr_redis::{
    ClusterRebuild, ClusterSnapshot, ClusterSnapshotDetails, RdbRestore, RedisServer, SLOTS, Value,
    slot_of,
};
use dr_storage::{FsBackend, InitOptions, KdfParams, Repository, Secret};
use dr_testkit::{Redis, RedisCluster, RedisOptions, RedisVersion};
use tokio::io::AsyncReadExt;

/// Every shard's stored RDB: sound to us and to `redis-check-rdb` of the
/// version that wrote it.
async fn shards_agree(repo: &Repository, manifest: &dr_core::Manifest, version: RedisVersion) {
    use dr_core::SnapshotSourceExt;
    for shard in ClusterSnapshotDetails::of(manifest).unwrap().shards {
        let mut stream = repo
            .open_stream(&manifest.id, &shard.stream.parse().unwrap())
            .await
            .unwrap();
        let mut rdb = Vec::new();
        stream.read_to_end(&mut rdb).await.unwrap();
        let ours = dr_redis::verify_slice(&rdb).unwrap();
        assert_eq!(ours.counts, shard.rdb.counts);
        let (sound, said) = crate::common::redis_check_rdb(version, &rdb);
        assert!(sound, "{}: {said}", shard.stream);
    }
}

async fn repository(dir: &tempfile::TempDir) -> Repository {
    let backend = Arc::new(FsBackend::new(dir.path()).unwrap());
    let options = InitOptions::encrypted(Secret::password("rdb")).kdf(KdfParams::INSECURE_FAST);
    Repository::init(backend, options).await.unwrap()
}

fn server(node: &Redis) -> RedisServer {
    RedisServer::new("127.0.0.1", node.port())
}

/// The master of `key` in a kit cluster (slots split evenly, in order).
fn master_for<'a>(cluster: &'a RedisCluster, key: &[u8]) -> &'a Redis {
    let n = cluster.masters().len();
    let slot = usize::from(slot_of(key));
    let index = (0..n)
        .find(|i| slot < usize::from(SLOTS) * (i + 1) / n)
        .unwrap();
    &cluster.masters()[index]
}

/// Keys of several kinds spread over every slot range, and a library on
/// every master.
async fn fill(cluster: &RedisCluster, keys: usize) {
    let mut pipes: BTreeMap<u16, (redis::Pipeline, &Redis)> = BTreeMap::new();
    for i in 0..keys {
        let key = format!("k:{i}");
        let master = master_for(cluster, key.as_bytes());
        let (pipe, _) = pipes
            .entry(master.port())
            .or_insert_with(|| (redis::pipe(), master));
        match i % 5 {
            0 => pipe.cmd("SET").arg(&key).arg(i).ignore(),
            1 => pipe.cmd("HSET").arg(&key).arg("f").arg(i).ignore(),
            2 => pipe.cmd("RPUSH").arg(&key).arg(&["a", "b"]).ignore(),
            3 => pipe.cmd("ZADD").arg(&key).arg(1.5).arg("m").ignore(),
            _ => pipe
                .cmd("SET")
                .arg(&key)
                .arg("t")
                .arg("PX")
                .arg(3_600_000)
                .ignore(),
        };
    }
    for (pipe, master) in pipes.values() {
        let mut con = master.connection().await.unwrap();
        let (): () = pipe.query_async(&mut con).await.unwrap();
    }
    for master in cluster.masters() {
        let mut con = master.connection().await.unwrap();
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("#!lua name=lib\nredis.register_function('one', function() return 1 end)")
            .query_async(&mut con)
            .await
            .unwrap();
        // Everything written so far is on the replica: a snapshot takes a
        // replica only where it is in step, and a loaded machine's replica
        // may lag the pipelined writes by more than the snapshot waits.
        // Short waits, each well within the client's reply timeout.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let acked: i64 = redis::cmd("WAIT")
                .arg(1)
                .arg(100)
                .query_async(&mut con)
                .await
                .unwrap();
            if acked == 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the replica of {} never caught up",
                master.port()
            );
        }
    }
}

/// Every key of the given masters: value (from `DUMP`) and absolute expiry.
async fn keys_of<'a>(masters: impl Iterator<Item = &'a Redis>) -> BTreeMap<Vec<u8>, (Value, i64)> {
    let mut keys = BTreeMap::new();
    for master in masters {
        let mut con = master.connection().await.unwrap();
        keys.extend(crate::common::dumped_keys(&mut con, true).await);
    }
    keys
}

async fn node_id(node: &Redis) -> String {
    let mut con = node.connection().await.unwrap();
    redis::cmd("CLUSTER")
        .arg("MYID")
        .query_async(&mut con)
        .await
        .unwrap()
}

fn objectives() -> Objectives {
    Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_cluster_snapshot_restores_into_a_cluster_of_another_shape() {
    let source = RedisCluster::start(3, 1).await.unwrap();
    fill(&source, 3000).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let component = "redis/cluster".parse().unwrap();
    let snapshot = ClusterSnapshot::new(component, server(&source.masters()[1]))
        .pause_writes(Duration::from_secs(10));
    let report = snapshot.backup_to(&repo).await.unwrap();

    shards_agree(&repo, &report.manifest, RedisVersion::System).await;
    let details = ClusterSnapshotDetails::of(&report.manifest).unwrap();
    assert_eq!(details.shards.len(), 3);
    assert_eq!(details.layout.nodes.len(), 6);
    assert_eq!(details.keys(), 3000);
    let paused = details.paused_ms.expect("writes were paused");
    assert!(paused < 10_000, "{paused} ms");
    // Each shard came from its replica, whose master is the shard's.
    for (shard, replica) in details.shards.iter().zip(source.replicas()) {
        assert_eq!(shard.source, format!("127.0.0.1:{}", replica.port()));
        let master = details
            .layout
            .nodes
            .iter()
            .find(|n| n.id == shard.master_id)
            .unwrap();
        let replica_node = details
            .layout
            .nodes
            .iter()
            .find(|n| n.addr == shard.source)
            .unwrap();
        assert_eq!(
            replica_node.role,
            dr_redis::NodeRole::Replica {
                of: master.id.clone()
            }
        );
        assert!(shard.rdb.counts.keys() > 800, "{shard:?}");
    }

    // Two masters instead of three: keys go where the target's slots are.
    // One slot with keys is migrating from its master to the other: its
    // keys are asked for (ASK) on the importing master.
    let target = RedisCluster::start(2, 0).await.unwrap();
    let migrating = slot_of(b"k:0");
    let from = master_for(&target, b"k:0");
    let to = target
        .masters()
        .iter()
        .find(|m| m.port() != from.port())
        .unwrap();
    let (from_id, to_id) = (node_id(from).await, node_id(to).await);
    let mut to_con = to.connection().await.unwrap();
    let (): () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(migrating)
        .arg("IMPORTING")
        .arg(&from_id)
        .query_async(&mut to_con)
        .await
        .unwrap();
    let mut from_con = from.connection().await.unwrap();
    let (): () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(migrating)
        .arg("MIGRATING")
        .arg(&to_id)
        .query_async(&mut from_con)
        .await
        .unwrap();
    let restore = RdbRestore::into_cluster(
        "redis/cluster".parse().unwrap(),
        server(&target.masters()[0]),
    );
    let latest = RecoveryTarget::Latest;
    let (_, counts) = restore
        .restore_counted(RestoreRequest::new(&repo, &latest, objectives()))
        .await
        .unwrap();
    assert_eq!((counts.restored, counts.functions), (3000, 1));
    // The migration ends: the slot is the importing master's.
    for con in [&mut to_con, &mut from_con] {
        let (): () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(migrating)
            .arg("NODE")
            .arg(&to_id)
            .query_async(con)
            .await
            .unwrap();
    }
    assert_eq!(
        keys_of(target.masters().iter()).await,
        keys_of(source.masters().iter()).await
    );
    // The migrating slot's keys went to the importing master.
    let moved: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(migrating)
        .query_async(&mut to_con)
        .await
        .unwrap();
    let stayed: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(migrating)
        .query_async(&mut from_con)
        .await
        .unwrap();
    assert!(moved > 0 && stayed == 0, "{moved} moved, {stayed} stayed");
    for master in target.masters() {
        let mut con = master.connection().await.unwrap();
        let one: i64 = redis::cmd("FCALL")
            .arg("one")
            .arg(0)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(one, 1);
    }

    // Again: every key conflicts, and nothing is written.
    let err = restore
        .restore_counted(RestoreRequest::new(&repo, &latest, objectives()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains("3000 keys"), "{err}");

    // A standalone server is not a cluster, and the other way round.
    let standalone = Redis::start().await.unwrap();
    let err = RdbRestore::new(
        "redis/cluster".parse().unwrap(),
        server(&target.masters()[0]),
    )
    .restore_counted(RestoreRequest::new(&repo, &latest, objectives()))
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = RdbRestore::into_cluster("redis/cluster".parse().unwrap(), server(&standalone))
        .restore_counted(RestoreRequest::new(&repo, &latest, objectives()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_is_rebuilt_on_empty_nodes_from_its_snapshot() {
    let options = RedisOptions::default().version(RedisVersion::Redis8);
    let source = RedisCluster::start_with(3, 1, options.clone())
        .await
        .unwrap();
    fill(&source, 2000).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let component: dr_core::ComponentId = "redis/cluster".parse().unwrap();
    let report = ClusterSnapshot::new(component.clone(), server(&source.masters()[0]))
        .from_masters()
        .backup_to(&repo)
        .await
        .unwrap();
    shards_agree(&repo, &report.manifest, RedisVersion::Redis8).await;
    let details = ClusterSnapshotDetails::of(&report.manifest).unwrap();
    assert_eq!(details.paused_ms, None);
    for (shard, master) in details.shards.iter().zip(source.masters()) {
        assert_eq!(shard.source, format!("127.0.0.1:{}", master.port()));
        assert_eq!(shard.rdb.rdb_version, 12);
    }

    // Six empty cluster nodes, as after the loss of every machine.
    let mut nodes = Vec::new();
    for _ in 0..6 {
        nodes.push(Redis::start_cluster_node(options.clone()).await.unwrap());
    }
    let rebuild = ClusterRebuild::new(component, nodes.iter().map(server).collect());
    let latest = RecoveryTarget::Latest;
    let (report, outcome) = rebuild
        .rebuild(RestoreRequest::new(&repo, &latest, objectives()))
        .await
        .unwrap();
    assert_eq!(outcome.counts.restored, 2000);
    assert_eq!(outcome.masters.len(), 3);
    assert_eq!(outcome.replicas.len(), 3);
    let per_shard: Vec<u64> = details.shards.iter().map(|s| s.rdb.counts.keys()).collect();
    assert_eq!(outcome.keys_per_master, per_shard);
    assert!(report.objectives_met(), "{report}");
    assert_eq!(
        keys_of(nodes[..3].iter()).await,
        keys_of(source.masters().iter()).await
    );
    // Each master serves the slots its counterpart did.
    for (node, master) in nodes[..3].iter().zip(details.layout.masters()) {
        let mut con = node.connection().await.unwrap();
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut con)
            .await
            .unwrap();
        let me = text.lines().find(|l| l.contains("myself")).unwrap();
        let ranges: Vec<String> = master
            .slots
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect();
        assert!(me.ends_with(&ranges.join(" ")), "{me} vs {ranges:?}");
    }

    // Nodes that are not empty are refused before anything is changed.
    let err = rebuild
        .rebuild(RestoreRequest::new(&repo, &latest, objectives()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("not an empty node"), "{err}");
}

/// `SET k:<i> <noise>` for each of `keys`, by master.
fn noisy_writes(
    cluster: &RedisCluster,
    keys: Vec<usize>,
    version: u64,
) -> BTreeMap<u16, (redis::Pipeline, &Redis)> {
    let mut pipes: BTreeMap<u16, (redis::Pipeline, &Redis)> = BTreeMap::new();
    for i in keys {
        let key = format!("k:{i}");
        let master = master_for(cluster, key.as_bytes());
        let (pipe, _) = pipes
            .entry(master.port())
            .or_insert_with(|| (redis::pipe(), master));
        pipe.cmd("SET")
            .arg(&key)
            .arg(dr_testkit::noise(
                i as u64 * 2 + version,
                200 + (i * 997) % 3000,
            ))
            .ignore();
    }
    pipes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cluster_snapshot_stores_little_more_than_the_keys_that_changed() {
    let cluster = RedisCluster::start(3, 0).await.unwrap();
    for (pipe, master) in noisy_writes(&cluster, (0..3000).collect(), 0).values() {
        let mut con = master.connection().await.unwrap();
        let (): () = pipe.query_async(&mut con).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let snapshot = ClusterSnapshot::new(
        "redis/cluster".parse().unwrap(),
        server(&cluster.masters()[0]),
    )
    .from_masters();
    let first = snapshot.backup_to(&repo).await.unwrap();
    let rdb: u64 = ClusterSnapshotDetails::of(&first.manifest)
        .unwrap()
        .shards
        .iter()
        .map(|s| s.rdb.bytes)
        .sum();
    let after_first = crate::common::stored_bytes(dir.path());
    for (pipe, master) in noisy_writes(&cluster, (0..3000).step_by(200).collect(), 1).values() {
        let mut con = master.connection().await.unwrap();
        let (): () = pipe.query_async(&mut con).await.unwrap();
    }
    snapshot.backup_to(&repo).await.unwrap();
    let added = crate::common::stored_bytes(dir.path()) - after_first;
    // 15 keys of 3000 rewritten: every shard cut at its keys.
    assert!(rdb > 4_000_000, "{rdb}");
    assert!(
        added * 10 < rdb,
        "the second snapshot stored {added} bytes of RDBs of {rdb}"
    );
}
