//! Logical snapshots (SCAN, DUMP and PTTL written out as an RDB) of real
//! Redis 7.0 and 8.2 servers: every key, value, expiry and function the
//! server's own SAVE holds, and a user who may not replicate but may read.

use std::collections::BTreeMap;
use std::sync::Arc;

use dr_core::{
    BackupExt, ErrorKind, Objectives, RecoveryTarget, RestoreRequest, SnapshotSourceExt, StreamName,
};
use dr_redis::{
    DumpPayload, Event, RDB_STREAM, RdbRestore, RdbSnapshot, RdbSnapshotDetails, RedisServer,
    SnapshotMode, Value, ValueType, decode_value, events, verify_slice,
};
use dr_storage::{FsBackend, InitOptions, KdfParams, Repository, Secret};
use dr_testkit::{Redis, RedisOptions, RedisVersion};
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::fake_master::{command_args, find_command_end};

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

        let connections = |con: MultiplexedConnection| async move {
            let mut con = con;
            let info: String = redis::cmd("INFO")
                .arg("stats")
                .query_async(&mut con)
                .await
                .unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("total_connections_received:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap()
        };
        let before = connections(con.clone()).await;
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
        // SCAN on one connection, DUMP and PTTL on three more.
        assert_eq!(connections(con.clone()).await - before, 4);
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
        // The RDB written from DUMP payloads is one Redis's own checker accepts.
        let (sound, said) = crate::common::redis_check_rdb(version, &rdb);
        assert!(sound, "{version:?}: {said}");
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

        // Restored into a fresh server, it holds every key again: the same
        // restore path as any snapshot.
        let fresh = Redis::start_with(RedisOptions::default().version(version))
            .await
            .unwrap();
        let latest = RecoveryTarget::Latest;
        let objectives = Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap());
        let (_, counts) = RdbRestore::new(
            "redis/main".parse().unwrap(),
            RedisServer::new("127.0.0.1", fresh.port()),
        )
        .restore_counted(RestoreRequest::new(&repo, &latest, objectives))
        .await
        .unwrap();
        assert_eq!((counts.restored, counts.functions), (1508, 1));
        let mut con = fresh
            .client()
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        run(&mut con, &["SAVE"]).await;
        let (restored, _) = keys_of(&std::fs::read(fresh.dir().join("dump.rdb")).unwrap());
        assert_eq!(restored.len(), expected.len());
        for (key, (value, _)) in &expected {
            assert_eq!(
                crate::common::normal(restored[key].0.clone(), true),
                crate::common::normal(value.clone(), true),
                "{key:?}"
            );
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

/// A server whose SCAN returns a key twice (as a rehashing Redis may):
/// the logical RDB holds it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_scan_returns_twice_is_written_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        // The scanning connection and the reading ones.
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_scan_twice(socket));
        }
    });
    let mut dump = RedisServer::new("127.0.0.1", port)
        .begin_logical()
        .await
        .unwrap();
    let mut rdb = Vec::new();
    while let Some(chunk) = dump.next_chunk().await.unwrap() {
        rdb.extend_from_slice(&chunk);
    }
    let (keys, _) = keys_of(&rdb);
    let names: Vec<&[u8]> = keys.keys().map(|(_, k)| k.as_slice()).collect();
    assert_eq!(names, [b"a".as_slice(), b"b", b"c"]);
    assert_eq!(keys[&(0, b"b".to_vec())].0, Value::String("b".into()));
    // The map above would hide a second "b"; the RDB's own count does not.
    assert_eq!(verify_slice(&rdb).unwrap().counts.keys(), 3);
}

/// One connection of a server whose `SCAN` returns `b` twice.
async fn serve_scan_twice(mut socket: tokio::net::TcpStream) {
    let bulk = |b: &[u8]| {
        let mut out = format!("${}\r\n", b.len()).into_bytes();
        out.extend_from_slice(b);
        out.extend_from_slice(b"\r\n");
        out
    };
    let array = |items: &[&[u8]]| {
        let mut out = format!("*{}\r\n", items.len()).into_bytes();
        for item in items {
            out.extend(bulk(item));
        }
        out
    };
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.unwrap();
        if n == 0 {
            return;
        }
        seen.extend_from_slice(&buf[..n]);
        while let Some(end) = find_command_end(&seen) {
            let args = command_args(&seen[..end]);
            seen.drain(..end);
            let answer = match (args[0].as_str(), args.get(1).map(String::as_str)) {
                ("INFO", Some("server")) => bulk(b"redis_version:7.0.99\r\n"),
                ("INFO", _) => bulk(b"# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n"),
                ("FUNCTION", _) => b"-ERR unknown command 'FUNCTION'\r\n".to_vec(),
                ("SELECT", _) => b"+OK\r\n".to_vec(),
                ("SCAN", Some("0")) => {
                    let mut out = b"*2\r\n".to_vec();
                    out.extend(bulk(b"7"));
                    out.extend(array(&[b"a", b"b"]));
                    out
                }
                ("SCAN", _) => {
                    let mut out = b"*2\r\n".to_vec();
                    out.extend(bulk(b"0"));
                    out.extend(array(&[b"b", b"c"]));
                    out
                }
                ("DUMP", Some(key)) => {
                    let mut raw = vec![key.len() as u8];
                    raw.extend_from_slice(key.as_bytes());
                    bulk(DumpPayload::new(ValueType(0), &raw, 10).as_bytes())
                }
                ("PTTL", _) => b":-1\r\n".to_vec(),
                other => panic!("{other:?}"),
            };
            socket.write_all(&answer).await.unwrap();
        }
    }
}
