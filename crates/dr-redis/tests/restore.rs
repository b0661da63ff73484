//! Snapshots of real Redis 7.0 and 8.2 servers restored into fresh servers
//! with `RdbRestore`: every key's value (decoded from `DUMP` on both sides)
//! and expiry equal to the source's, functions loaded, a snapshot of 8.2
//! rebuilt into 7.0 from plain commands; conflicts failed, skipped or
//! replaced as asked; and what must not write anything: a damaged
//! snapshot, a value the target cannot take, a conflict, a refused
//! password, a user without `RESTORE`.

use std::collections::BTreeMap;
use std::sync::Arc;

use dr_core::{BackupExt, ErrorKind, Objectives, RecoveryTarget, RestoreRequest};
use dr_redis::{Conflict, RdbRestore, RdbSnapshot, RedisServer, RestoreCounts, Value};
use dr_storage::{FsBackend, InitOptions, KdfParams, Repository, Secret};
use dr_testkit::{Redis, RedisOptions, RedisVersion};
use proptest::prelude::*;
use redis::aio::MultiplexedConnection;

async fn repository(dir: &tempfile::TempDir) -> Repository {
    let backend = Arc::new(FsBackend::new(dir.path()).unwrap());
    let options = InitOptions::encrypted(Secret::password("rdb")).kdf(KdfParams::INSECURE_FAST);
    Repository::init(backend, options).await.unwrap()
}

async fn run(con: &mut MultiplexedConnection, args: &[&str]) -> redis::Value {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query_async(con)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Keys of every kind, small and big encodings, with and without expiry,
/// in two databases; a stream with groups, consumers and pending entries
/// (one of a deleted message where `deleted_pending`), an empty stream; a
/// function library; on 8.2 a hash with a field expiry where `field_ttl`.
async fn fill(con: &mut MultiplexedConnection, field_ttl: bool, deleted_pending: bool) {
    let mut pipe = redis::pipe();
    for i in 0..800 {
        pipe.cmd("SET").arg(format!("s:{i}")).arg(i * 7).ignore();
        if i % 10 == 0 {
            pipe.cmd("PEXPIRE")
                .arg(format!("s:{i}"))
                .arg(3_600_000 + i)
                .ignore();
        }
    }
    for i in 0..300 {
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
            .arg(f64::from(i) / 3.0)
            .arg(format!("m{i}"))
            .ignore();
        pipe.cmd("SADD")
            .arg("set:big")
            .arg(format!("member {i}"))
            .ignore();
    }
    pipe.cmd("SET")
        .arg("s:blob")
        .arg(vec![0xa5u8; 70_000])
        .ignore();
    pipe.cmd("HSET")
        .arg("hash:small")
        .arg("a")
        .arg("1")
        .ignore();
    pipe.cmd("RPUSH")
        .arg("list:small")
        .arg(&["x", "-1", "y"])
        .ignore();
    pipe.cmd("ZADD")
        .arg("zset:small")
        .arg(&["1.5", "a", "-inf", "b", "inf", "c"])
        .ignore();
    pipe.cmd("SADD").arg("set:ints").arg(&[1, 2, 3]).ignore();
    pipe.cmd("SADD").arg("set:small").arg(&["p", "q"]).ignore();
    for i in 1..=5 {
        pipe.cmd("XADD")
            .arg("stream")
            .arg(format!("{i}-1"))
            .arg("k")
            .arg(format!("v{i}"))
            .ignore();
    }
    let (): () = pipe.query_async(con).await.unwrap();
    run(con, &["XGROUP", "CREATE", "stream", "readers", "0"]).await;
    run(con, &["XGROUP", "CREATE", "stream", "late", "$"]).await;
    run(
        con,
        &[
            "XREADGROUP",
            "GROUP",
            "readers",
            "r1",
            "COUNT",
            "2",
            "STREAMS",
            "stream",
            ">",
        ],
    )
    .await;
    run(
        con,
        &[
            "XREADGROUP",
            "GROUP",
            "readers",
            "r2",
            "COUNT",
            "1",
            "STREAMS",
            "stream",
            ">",
        ],
    )
    .await;
    run(con, &["XACK", "stream", "readers", "1-1"]).await;
    run(con, &["XDEL", "stream", "5-1"]).await;
    if deleted_pending {
        run(con, &["XDEL", "stream", "2-1"]).await;
    }
    run(
        con,
        &["XGROUP", "CREATE", "stream:empty", "g", "$", "MKSTREAM"],
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
    if field_ttl {
        run(con, &["HSET", "hash:ttl", "keep", "1", "go", "2"]).await;
        run(
            con,
            &["HPEXPIRE", "hash:ttl", "3600000", "FIELDS", "1", "go"],
        )
        .await;
    }
    run(con, &["SELECT", "3"]).await;
    run(con, &["SET", "elsewhere", "db3"]).await;
    run(con, &["PEXPIRE", "elsewhere", "7200000"]).await;
    run(con, &["SELECT", "0"]).await;
}

/// Every key of every database: value (from `DUMP`) and absolute expiry.
type Keys = BTreeMap<(u64, Vec<u8>), (Value, i64)>;

async fn keys_of(redis: &Redis, times: bool) -> Keys {
    let mut con = redis.connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("keyspace")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut keys = Keys::new();
    for db in info
        .lines()
        .filter_map(|l| l.strip_prefix("db")?.split(':').next()?.parse::<u64>().ok())
    {
        let client = redis::Client::open(format!("{}{db}", redis.url())).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        for (name, value) in crate::common::dumped_keys(&mut con, times).await {
            keys.insert((db, name), value);
        }
    }
    keys
}

/// Snapshots `source` into `repo` as the component `redis/main`.
async fn snapshot(repo: &Repository, source: &Redis) -> dr_core::Manifest {
    let snapshot = RdbSnapshot::new(
        "redis/main".parse().unwrap(),
        RedisServer::new("127.0.0.1", source.port()),
    );
    snapshot.backup_to(repo).await.unwrap().manifest
}

async fn restore_into(
    repo: &Repository,
    target: RedisServer,
    conflict: Conflict,
) -> dr_core::Result<RestoreCounts> {
    let restore = RdbRestore::new("redis/main".parse().unwrap(), target).conflict(conflict);
    let latest = RecoveryTarget::Latest;
    let objectives = Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap());
    let (report, counts) = restore
        .restore_counted(RestoreRequest::new(repo, &latest, objectives))
        .await?;
    let steps: Vec<&str> = report
        .timeline
        .steps()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(steps.contains(&"restore the keys"), "{report}");
    Ok(counts)
}

fn server(redis: &Redis) -> RedisServer {
    RedisServer::new("127.0.0.1", redis.port())
}

async fn dbsize(redis: &Redis) -> i64 {
    let mut con = redis.connection().await.unwrap();
    redis::cmd("DBSIZE").query_async(&mut con).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restores_into_a_fresh_server_key_for_key() {
    for version in [RedisVersion::System, RedisVersion::Redis8] {
        let options = RedisOptions::default().version(version);
        let source = Redis::start_with(options.clone()).await.unwrap();
        let target = Redis::start_with(options).await.unwrap();
        let mut con = source.connection().await.unwrap();
        fill(&mut con, version == RedisVersion::Redis8, true).await;
        let dir = tempfile::tempdir().unwrap();
        let repo = repository(&dir).await;
        snapshot(&repo, &source).await;

        let counts = restore_into(&repo, server(&target), Conflict::Fail)
            .await
            .unwrap();
        let expected = keys_of(&source, true).await;
        assert_eq!(counts.restored, expected.len() as u64, "{version:?}");
        assert_eq!((counts.functions, counts.rebuilt), (1, false));
        assert_eq!(keys_of(&target, true).await, expected, "{version:?}");
        let mut con = target.connection().await.unwrap();
        let one: i64 = redis::cmd("FCALL")
            .arg("one")
            .arg(0)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(one, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_8_snapshot_is_rebuilt_in_redis_7_from_plain_commands() {
    let source = Redis::start_with(RedisOptions::default().version(RedisVersion::Redis8))
        .await
        .unwrap();
    let target = Redis::start().await.unwrap();
    let mut con = source.connection().await.unwrap();
    fill(&mut con, false, false).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    snapshot(&repo, &source).await;

    let counts = restore_into(&repo, server(&target), Conflict::Fail)
        .await
        .unwrap();
    let expected = keys_of(&source, false).await;
    assert!(counts.rebuilt);
    assert_eq!(counts.restored, expected.len() as u64);
    assert_eq!(keys_of(&target, false).await, expected);

    // A hash field's own expiry has no command in 7.0: refused before
    // anything is written.
    run(&mut con, &["HSET", "hash:ttl", "keep", "1", "go", "2"]).await;
    run(
        &mut con,
        &["HPEXPIRE", "hash:ttl", "3600000", "FIELDS", "1", "go"],
    )
    .await;
    snapshot(&repo, &source).await;
    let fresh = Redis::start().await.unwrap();
    let err = restore_into(&repo, server(&fresh), Conflict::Fail)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("hash:ttl"), "{err}");
    assert_eq!(dbsize(&fresh).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_fail_before_writing_or_are_skipped_or_replaced() {
    let source = Redis::start().await.unwrap();
    let mut con = source.connection().await.unwrap();
    fill(&mut con, false, true).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    snapshot(&repo, &source).await;
    let all = keys_of(&source, true).await.len() as u64;

    let target = Redis::start().await.unwrap();
    let mut tcon = target.connection().await.unwrap();
    run(&mut tcon, &["SET", "s:5", "theirs"]).await;

    let err = restore_into(&repo, server(&target), Conflict::Fail)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains("s:5"), "{err}");
    assert_eq!(dbsize(&target).await, 1);

    let counts = restore_into(&repo, server(&target), Conflict::Skip)
        .await
        .unwrap();
    assert_eq!((counts.restored, counts.kept_existing), (all - 1, 1));
    let kept: String = redis::cmd("GET")
        .arg("s:5")
        .query_async(&mut tcon)
        .await
        .unwrap();
    assert_eq!(kept, "theirs");
    assert_eq!((counts.functions, counts.kept_functions), (1, 0));

    let counts = restore_into(&repo, server(&target), Conflict::Replace)
        .await
        .unwrap();
    assert_eq!((counts.restored, counts.kept_existing), (all, 0));
    assert_eq!((counts.functions, counts.kept_functions), (1, 0));
    assert_eq!(keys_of(&target, true).await, keys_of(&source, true).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_are_not_written() {
    let source = Redis::start().await.unwrap();
    let mut con = source.connection().await.unwrap();
    run(&mut con, &["SET", "stays", "1"]).await;
    run(&mut con, &["SET", "goes", "1", "PX", "1500"]).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    snapshot(&repo, &source).await;
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;

    let target = Redis::start().await.unwrap();
    let counts = restore_into(&repo, server(&target), Conflict::Fail)
        .await
        .unwrap();
    assert_eq!((counts.restored, counts.expired), (1, 1));
    assert_eq!(dbsize(&target).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_or_refused_credentials_write_nothing() {
    let source = Redis::start().await.unwrap();
    let mut con = source.connection().await.unwrap();
    // Several MiB of values that do not compress: many chunks.
    let mut pipe = redis::pipe();
    for i in 0..400u32 {
        let value: Vec<u8> = (0..16_384u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i * 97) >> 13) as u8)
            .collect();
        pipe.cmd("SET").arg(format!("blob:{i}")).arg(value).ignore();
    }
    let (): () = pipe.query_async(&mut con).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    snapshot(&repo, &source).await;

    // A password the target refuses, and a user who may not RESTORE.
    let target = Redis::start().await.unwrap();
    let mut tcon = target.connection().await.unwrap();
    run(
        &mut tcon,
        &[
            "ACL", "SETUSER", "reader", "on", ">pw", "~*", "+@all", "-restore",
        ],
    )
    .await;
    let wrong = server(&target).auth(Some("reader".into()), "nope");
    let err = restore_into(&repo, wrong, Conflict::Fail)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let reader = server(&target).auth(Some("reader".into()), "pw");
    let err = restore_into(&repo, reader, Conflict::Fail)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("RESTORE"), "{err}");
    assert_eq!(dbsize(&target).await, 0);

    // A byte flipped late in every stored pack: found before any key is
    // written, though the keys before it read well.
    let mut damaged = 0;
    for entry in walk(&dir.path().join("data")) {
        let mut bytes = std::fs::read(&entry).unwrap();
        let late = bytes.len() * 9 / 10;
        bytes[late] ^= 0x55;
        std::fs::write(&entry, bytes).unwrap();
        damaged += 1;
    }
    assert!(damaged > 0);
    let err = restore_into(&repo, server(&target), Conflict::Fail)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(dbsize(&target).await, 0);
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A value written by the proptest.
#[derive(Debug, Clone)]
enum Model {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(Vec<Vec<u8>>),
    SortedSet(Vec<(Vec<u8>, f64)>),
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    Stream(Vec<Vec<u8>>),
}

fn member() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..12),
        any::<i32>().prop_map(|i| i.to_string().into_bytes()),
        (0usize..3).prop_map(|n| vec![b'x'; [70, 300, 5000][n]]),
    ]
}

fn model() -> impl Strategy<Value = (Model, Option<u32>)> {
    // Few elements (compact encodings) or many (hash tables, several nodes).
    let count = || prop_oneof![Just(1usize..6), Just(100usize..300)];
    let value = prop_oneof![
        member().prop_map(Model::String),
        count().prop_flat_map(move |n| prop::collection::vec(member(), n).prop_map(Model::List)),
        count().prop_flat_map(move |n| prop::collection::vec(member(), n).prop_map(Model::Set)),
        count().prop_flat_map(move |n| {
            prop::collection::vec((member(), -1e9f64..1e9), n).prop_map(Model::SortedSet)
        }),
        count().prop_flat_map(move |n| {
            prop::collection::vec((member(), member()), n).prop_map(Model::Hash)
        }),
        (1usize..20).prop_flat_map(|n| prop::collection::vec(member(), n).prop_map(Model::Stream)),
    ];
    (value, prop::option::of(1_000u32..100_000_000))
}

async fn write(con: &mut MultiplexedConnection, key: &str, model: &Model, ttl: Option<u32>) {
    let mut pipe = redis::pipe();
    match model {
        Model::String(v) => {
            pipe.cmd("SET").arg(key).arg(v);
        }
        Model::List(items) => {
            pipe.cmd("RPUSH").arg(key).arg(items);
        }
        Model::Set(items) => {
            pipe.cmd("SADD").arg(key).arg(items);
        }
        Model::SortedSet(items) => {
            for (member, score) in items {
                pipe.cmd("ZADD").arg(key).arg(*score).arg(member);
            }
        }
        Model::Hash(fields) => {
            for (field, value) in fields {
                pipe.cmd("HSET").arg(key).arg(field).arg(value);
            }
        }
        Model::Stream(entries) => {
            for entry in entries {
                pipe.cmd("XADD").arg(key).arg("*").arg("f").arg(entry);
            }
            pipe.cmd("XGROUP").arg("CREATE").arg(key).arg("g").arg("0");
            pipe.cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg(key)
                .arg(">");
        }
    }
    if let Some(ttl) = ttl {
        pipe.cmd("PEXPIRE").arg(key).arg(ttl);
    }
    let _: redis::Value = pipe.query_async(con).await.unwrap();
}

#[test]
fn proptest_data_sets_restore_as_they_were_on_7_0_and_8_2() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for version in [RedisVersion::System, RedisVersion::Redis8] {
        let options = RedisOptions::default().version(version);
        let (source, target) = runtime.block_on(async {
            (
                Redis::start_with(options.clone()).await.unwrap(),
                Redis::start_with(options).await.unwrap(),
            )
        });
        let config = ProptestConfig {
            cases: 6,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(set in prop::collection::vec(model(), 1..8))| {
            let (restored, expected) = runtime.block_on(async {
                let mut con = source.connection().await.unwrap();
                let mut tcon = target.connection().await.unwrap();
                run(&mut con, &["FLUSHALL"]).await;
                run(&mut tcon, &["FLUSHALL"]).await;
                for (i, (model, ttl)) in set.iter().enumerate() {
                    write(&mut con, &format!("key{i}"), model, *ttl).await;
                }
                let dir = tempfile::tempdir().unwrap();
                let repo = repository(&dir).await;
                snapshot(&repo, &source).await;
                restore_into(&repo, server(&target), Conflict::Fail).await.unwrap();
                (keys_of(&target, true).await, keys_of(&source, true).await)
            });
            prop_assert_eq!(restored, expected);
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_restore_writes_the_file_a_stopped_server_loads() {
    let source = Redis::start().await.unwrap();
    let mut con = source.connection().await.unwrap();
    fill(&mut con, false, true).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    snapshot(&repo, &source).await;

    let mut target = Redis::start().await.unwrap();
    target.stop().await;
    let path = target.dir().join("dump.rdb");
    let restore = dr_redis::RdbFileRestore::new("redis/main".parse().unwrap(), &path);
    let latest = RecoveryTarget::Latest;
    let objectives = Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap());
    use dr_core::Restore;
    restore
        .restore(RestoreRequest::new(&repo, &latest, objectives))
        .await
        .unwrap();
    let (sound, said) =
        crate::common::redis_check_rdb(RedisVersion::System, &std::fs::read(&path).unwrap());
    assert!(sound, "{said}");
    target.restart().await.unwrap();
    assert_eq!(keys_of(&target, true).await, keys_of(&source, true).await);

    // A damaged snapshot leaves the path as it was, and no partial file.
    target.stop().await;
    std::fs::write(&path, b"the file before").unwrap();
    for entry in walk(&dir.path().join("data")) {
        let mut bytes = std::fs::read(&entry).unwrap();
        let late = bytes.len() * 9 / 10;
        bytes[late] ^= 0x55;
        std::fs::write(&entry, bytes).unwrap();
    }
    let err = restore
        .restore(RestoreRequest::new(&repo, &latest, objectives))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"the file before");
    let names: Vec<_> = std::fs::read_dir(target.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.iter().any(|n| n.contains("partial")), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_without_the_first_pass_checks_as_it_writes() {
    let source = Redis::start().await.unwrap();
    let mut con = source.connection().await.unwrap();
    fill(&mut con, false, true).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    snapshot(&repo, &source).await;
    let target = Redis::start().await.unwrap();
    let latest = RecoveryTarget::Latest;
    let objectives = Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap());
    let once = RdbRestore::new("redis/main".parse().unwrap(), server(&target)).check_first(false);

    let (report, counts) = once
        .restore_counted(RestoreRequest::new(&repo, &latest, objectives))
        .await
        .unwrap();
    assert!(
        report
            .timeline
            .steps()
            .iter()
            .all(|s| !s.name.starts_with("check")),
        "{report}"
    );
    assert_eq!(counts.restored, keys_of(&source, true).await.len() as u64);
    assert_eq!(keys_of(&target, true).await, keys_of(&source, true).await);

    // Every key exists now: the first RESTORE refused stops it.
    let err = once
        .restore_counted(RestoreRequest::new(&repo, &latest, objectives))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
}
