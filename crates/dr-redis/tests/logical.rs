//! Logical snapshots (SCAN, DUMP and PTTL written out as an RDB) of real
//! Redis 7.0 and 8.2 servers: every key, value, expiry and function the
//! server's own SAVE holds, and a user who may not replicate but may read.

use std::collections::BTreeMap;
use std::sync::Arc;

use dr_core::{BackupExt, ErrorKind, SnapshotSourceExt, StreamName};
use dr_redis::{
    Event, RDB_STREAM, RdbSnapshot, RdbSnapshotDetails, RedisServer, SnapshotMode, Value,
    decode_value, events, verify_slice,
};
use dr_storage::{FsBackend, InitOptions, KdfParams, Repository, Secret};
use dr_testkit::{Redis, RedisOptions, RedisVersion};
use redis::aio::MultiplexedConnection;
use tokio::io::AsyncReadExt;

/// Every key of an RDB: (database, key) → (value, expiry in ms).
type Keys = BTreeMap<(u64, Vec<u8>), (Value, Option<i64>)>;

fn keys_of(rdb: &[u8]) -> (Keys, u64) {
    let mut version = 0;
    let mut functions = 0;
    let mut keys = Keys::new();
    for event in events(rdb) {
        match event.unwrap() {
            Event::Header(header) => version = header.version,
            Event::Function(_) => functions += 1,
            Event::Key(key) => {
                let value = decode_value(key.value_type, &key.value, version).unwrap();
                keys.insert((key.db, key.key.to_vec()), (value, key.expire_at_ms));
            }
            _ => {}
        }
    }
    (keys, functions)
}

async fn run(con: &mut MultiplexedConnection, args: &[&str]) {
    let _: redis::Value = redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(con)
        .await
        .unwrap();
}

/// Keys of every kind, small and big, with and without expiry, in two
/// databases, and a function library.
async fn fill(con: &mut MultiplexedConnection) {
    let mut pipe = redis::pipe();
    for i in 0..1500 {
        pipe.cmd("SET").arg(format!("s:{i}")).arg(i * 7).ignore();
        if i % 10 == 0 {
            pipe.cmd("PEXPIRE")
                .arg(format!("s:{i}"))
                .arg(3_600_000)
                .ignore();
        }
    }
    for i in 0..400 {
        pipe.cmd("HSET")
            .arg("hash:big")
            .arg(format!("f{i}"))
            .arg(format!("v{i}"))
            .ignore();
        pipe.cmd("RPUSH")
            .arg("list:big")
            .arg(format!("element {i}"))
            .ignore();
        pipe.cmd("ZADD")
            .arg("zset:big")
            .arg(i as f64 / 3.0)
            .arg(format!("m{i}"))
            .ignore();
        pipe.cmd("SADD")
            .arg("set:big")
            .arg(format!("member {i}"))
            .ignore();
    }
    pipe.cmd("HSET")
        .arg("hash:small")
        .arg("a")
        .arg("1")
        .ignore();
    pipe.cmd("SADD").arg("set:ints").arg(&[1, 2, 3]).ignore();
    pipe.cmd("XADD")
        .arg("stream")
        .arg("1-1")
        .arg("k")
        .arg("v")
        .ignore();
    pipe.cmd("XADD")
        .arg("stream")
        .arg("2-1")
        .arg("k")
        .arg("w")
        .ignore();
    let (): () = pipe.query_async(con).await.unwrap();
    run(con, &["XGROUP", "CREATE", "stream", "readers", "0"]).await;
    run(
        con,
        &[
            "XREADGROUP",
            "GROUP",
            "readers",
            "r1",
            "COUNT",
            "1",
            "STREAMS",
            "stream",
            ">",
        ],
    )
    .await;
    run(
        con,
        &[
            "FUNCTION",
            "LOAD",
            "#!lua name=lib\nredis.register_function('one', function() return 1 end)",
        ],
    )
    .await;
    run(con, &["SELECT", "3"]).await;
    run(con, &["SET", "elsewhere", "db3"]).await;
    run(con, &["SELECT", "0"]).await;
}

async fn repository(dir: &tempfile::TempDir) -> Repository {
    let backend = Arc::new(FsBackend::new(dir.path()).unwrap());
    let options = InitOptions::encrypted(Secret::password("rdb")).kdf(KdfParams::INSECURE_FAST);
    Repository::init(backend, options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logical_snapshot_holds_what_the_servers_own_save_holds() {
    for (version, rdb_version) in [(RedisVersion::System, 10), (RedisVersion::Redis8, 12)] {
        let redis = Redis::start_with(RedisOptions::default().version(version))
            .await
            .unwrap();
        // One connection: SELECT applies to it.
        let mut con = redis
            .client()
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        fill(&mut con).await;
        run(&mut con, &["SAVE"]).await;
        let saved = std::fs::read(redis.dir().join("dump.rdb")).unwrap();
        let (expected, expected_functions) = keys_of(&saved);

        let dir = tempfile::tempdir().unwrap();
        let repo = repository(&dir).await;
        let snapshot = RdbSnapshot::new(
            "redis/main".parse().unwrap(),
            RedisServer::new("127.0.0.1", redis.port()),
        )
        .mode(SnapshotMode::Logical);
        let report = snapshot.backup_to(&repo).await.unwrap();
        let details = RdbSnapshotDetails::of(&report.manifest).unwrap();
        assert_eq!(details.framing, "logical");
        assert_eq!(details.rdb_version, rdb_version);
        assert!(report.manifest.recovery_point.position.is_none());

        let mut rdb = Vec::new();
        repo.open_stream(
            &report.manifest.id,
            &RDB_STREAM.parse::<StreamName>().unwrap(),
        )
        .await
        .unwrap()
        .read_to_end(&mut rdb)
        .await
        .unwrap();
        let summary = verify_slice(&rdb).unwrap();
        assert_eq!(summary.rdb_version, rdb_version);
        assert_eq!(summary.functions, 1);
        let (dumped, functions) = keys_of(&rdb);
        assert_eq!(functions, expected_functions);
        assert_eq!(dumped.len(), expected.len());
        assert_eq!(dumped.len(), 1500 + 8);
        for (key, (value, expiry)) in &expected {
            let (got, got_expiry) = &dumped[key];
            assert_eq!(got, value, "{key:?}");
            match (expiry, got_expiry) {
                (None, None) => {}
                // Made absolute when read, a moment after the SAVE.
                (Some(a), Some(b)) => assert!((a - b).abs() < 10_000, "{key:?}: {a} {b}"),
                other => panic!("{key:?}: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_read_but_not_replicate_gets_a_logical_snapshot() {
    let redis = Redis::start().await.unwrap();
    let mut con = redis.connection().await.unwrap();
    run(&mut con, &["SET", "k", "v"]).await;
    run(
        &mut con,
        &[
            "ACL",
            "SETUSER",
            "scanner",
            "on",
            ">pw",
            "~*",
            "+info",
            "+select",
            "+scan",
            "+dump",
            "+pttl",
            "+function|dump",
        ],
    )
    .await;
    let server = RedisServer::new("127.0.0.1", redis.port()).auth(Some("scanner".into()), "pw");
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let component: dr_core::ComponentId = "redis/managed".parse().unwrap();
    let err = RdbSnapshot::new(component.clone(), server.clone())
        .backup_to(&repo)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let report = RdbSnapshot::new(component, server)
        .mode(SnapshotMode::Logical)
        .backup_to(&repo)
        .await
        .unwrap();
    let details = RdbSnapshotDetails::of(&report.manifest).unwrap();
    assert_eq!(details.counts.keys(), 1);
}
