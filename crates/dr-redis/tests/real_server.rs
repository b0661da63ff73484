//! Against a real Redis (Debian's 7.0, RDB version 10): keys of every kind
//! in small and big encodings are written, `SAVE`d, and the server's
//! `dump.rdb` must decode to exactly what was written; `DUMP` must give the
//! payload built from the framed raw bytes.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use dr_redis::{DumpPayload, Event, KeyEntry, KeyKind, RdbReader, Value, decode_value};
use dr_testkit::{Redis, RedisOptions, RedisVersion};
use proptest::prelude::*;
use redis::aio::MultiplexedConnection;

/// A value in a form that ignores encoding order: what was written.
#[derive(Debug, Clone, PartialEq)]
enum Model {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    SortedSet(BTreeMap<Vec<u8>, f64>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
}

fn model_of(value: &Value) -> Model {
    let v = |b: &Bytes| b.to_vec();
    match value {
        Value::String(s) => Model::String(v(s)),
        Value::List(items) => Model::List(items.iter().map(v).collect()),
        Value::Set(items) => Model::Set(items.iter().map(v).collect()),
        Value::SortedSet(items) => {
            Model::SortedSet(items.iter().map(|(m, s)| (v(m), *s)).collect())
        }
        Value::Hash(fields) => {
            assert!(fields.iter().all(|f| f.expire_at_ms.is_none()));
            Model::Hash(fields.iter().map(|f| (v(&f.field), v(&f.value))).collect())
        }
        other => panic!("not modelled: {other:?}"),
    }
}

async fn cmd<T: redis::FromRedisValue>(con: &mut MultiplexedConnection, args: &[&[u8]]) -> T {
    let mut command = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command
        .query_async(con)
        .await
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(args[0])))
}

async fn write(con: &mut MultiplexedConnection, key: &[u8], model: &Model) {
    let _: i64 = cmd(con, &[b"DEL", key]).await;
    match model {
        Model::String(s) => cmd::<()>(con, &[b"SET", key, s]).await,
        Model::List(items) => {
            for chunk in items.chunks(500) {
                let mut args: Vec<&[u8]> = vec![b"RPUSH", key];
                args.extend(chunk.iter().map(Vec::as_slice));
                cmd::<i64>(con, &args).await;
            }
        }
        Model::Set(items) => {
            for chunk in items.iter().collect::<Vec<_>>().chunks(500) {
                let mut args: Vec<&[u8]> = vec![b"SADD", key];
                args.extend(chunk.iter().map(|m| m.as_slice()));
                cmd::<i64>(con, &args).await;
            }
        }
        Model::SortedSet(items) => {
            for (member, score) in items {
                let score = format!("{score:?}");
                cmd::<i64>(con, &[b"ZADD", key, score.as_bytes(), member]).await;
            }
        }
        Model::Hash(fields) => {
            for (field, value) in fields {
                cmd::<i64>(con, &[b"HSET", key, field, value]).await;
            }
        }
    }
}

/// `SAVE`s and reads the server's `dump.rdb`: the version, each key, and the
/// other events.
async fn save_and_read(
    redis: &Redis,
    con: &mut MultiplexedConnection,
) -> (u16, Vec<KeyEntry>, Vec<Event>) {
    cmd::<()>(con, &[b"SAVE"]).await;
    let file = tokio::fs::File::open(redis.dir().join("dump.rdb"))
        .await
        .unwrap();
    let mut reader = RdbReader::new(file);
    let (mut version, mut keys, mut others) = (0, Vec::new(), Vec::new());
    while let Some(event) = reader.next_event().await.unwrap() {
        match event {
            Event::Key(key) => keys.push(key),
            Event::Header(header) => {
                version = header.version;
                others.push(Event::Header(header));
            }
            other => others.push(other),
        }
    }
    (version, keys, others)
}

fn blob(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| b'a' + ((i + usize::from(seed)) % 26) as u8)
        .collect()
}

/// Every kind, small (compact encodings) and big (hash tables, quicklists
/// of several nodes).
fn data_set() -> Vec<(&'static str, Model)> {
    let numbers = |n: i64| (0..n).map(|i| (i * 7 - 300).to_string().into_bytes());
    vec![
        ("string:small", Model::String(b"hello".to_vec())),
        ("string:int", Model::String(b"-123456789".to_vec())),
        ("string:empty", Model::String(Vec::new())),
        ("string:big", Model::String(blob(100_000, 3))),
        ("string:binary", Model::String((0..=255).collect())),
        (
            "list:small",
            Model::List(vec![b"a".to_vec(), b"-5".to_vec(), b"70000".to_vec()]),
        ),
        (
            "list:big",
            Model::List((0..3000).map(|i| blob(40 + i % 30, i as u8)).collect()),
        ),
        (
            "list:plain",
            Model::List(vec![blob(20_000, 1), b"x".to_vec()]),
        ),
        ("set:intset", Model::Set(numbers(50).collect())),
        ("set:big-intset", Model::Set(numbers(2000).collect())),
        (
            "set:strings",
            Model::Set((0..20).map(|i| blob(5 + i, i as u8)).collect()),
        ),
        (
            "zset:small",
            Model::SortedSet(
                [
                    (b"a".to_vec(), 1.5),
                    (b"b".to_vec(), -2.0),
                    (b"c".to_vec(), 1e300),
                ]
                .into(),
            ),
        ),
        (
            "zset:big",
            Model::SortedSet(
                (0..300)
                    .map(|i| {
                        (
                            blob(10, i as u8)
                                .into_iter()
                                .chain(i.to_string().bytes())
                                .collect(),
                            f64::from(i) / 3.0,
                        )
                    })
                    .collect(),
            ),
        ),
        (
            "zset:inf",
            Model::SortedSet(
                [
                    (b"lo".to_vec(), f64::NEG_INFINITY),
                    (b"hi".to_vec(), f64::INFINITY),
                ]
                .into(),
            ),
        ),
        (
            "hash:small",
            Model::Hash(
                [
                    (b"f".to_vec(), b"v".to_vec()),
                    (b"n".to_vec(), b"12".to_vec()),
                ]
                .into(),
            ),
        ),
        (
            "hash:big",
            Model::Hash(
                (0..500)
                    .map(|i| (format!("field{i}").into_bytes(), blob(i % 100, i as u8)))
                    .collect(),
            ),
        ),
    ]
}

const EXPIRE_AT: i64 = 4_102_444_800_000; // 2100-01-01

const LIBRARY: &str = "#!lua name=drkit\nredis.register_function('drkit_ping', function(keys, args) return 'pong' end)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_7_dump_rdb_decodes_to_what_was_written() {
    decodes_to_what_was_written(RedisVersion::System, 10, "7.", 19).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_8_dump_rdb_decodes_to_what_was_written() {
    decodes_to_what_was_written(RedisVersion::Redis8, 12, "8.2", 21).await;
}

/// A real server of `server` writes RDB version `rdb_version`, names itself
/// `prefix…`, and writes streams as type `stream_type`.
async fn decodes_to_what_was_written(
    server: RedisVersion,
    rdb_version: u16,
    prefix: &str,
    stream_type: u8,
) {
    // DEBUG lowers the size from which a list element gets a PLAIN node.
    let options = RedisOptions::default()
        .version(server)
        .setting("enable-debug-command", "yes");
    let redis = Redis::start_with(options).await.unwrap();
    let mut con = redis.connection().await.unwrap();
    cmd::<()>(
        &mut con,
        &[b"DEBUG", b"QUICKLIST-PACKED-THRESHOLD", b"1000"],
    )
    .await;
    let written = data_set();
    for (key, model) in &written {
        write(&mut con, key.as_bytes(), model).await;
    }
    cmd::<i64>(
        &mut con,
        &[
            b"PEXPIREAT",
            b"string:small",
            EXPIRE_AT.to_string().as_bytes(),
        ],
    )
    .await;
    cmd::<i64>(
        &mut con,
        &[b"PEXPIREAT", b"hash:big", EXPIRE_AT.to_string().as_bytes()],
    )
    .await;
    // One key in database 2.
    write(&mut con, b"elsewhere", &Model::String(b"db2".to_vec())).await;
    cmd::<i64>(&mut con, &[b"MOVE", b"elsewhere", b"2"]).await;
    // A stream with a consumer group and pending entries.
    for (id, temp) in [
        ("1700000000000-1", "20"),
        ("1700000000000-2", "21"),
        ("1700000000500-0", "19"),
    ] {
        cmd::<String>(
            &mut con,
            &[b"XADD", b"stream", id.as_bytes(), b"temp", temp.as_bytes()],
        )
        .await;
    }
    cmd::<String>(
        &mut con,
        &[
            b"XADD",
            b"stream",
            b"1700000000600-0",
            b"other",
            b"field",
            b"temp",
            b"18",
        ],
    )
    .await;
    cmd::<()>(
        &mut con,
        &[b"XGROUP", b"CREATE", b"stream", b"workers", b"0"],
    )
    .await;
    let _: redis::Value = cmd(
        &mut con,
        &[
            b"XREADGROUP",
            b"GROUP",
            b"workers",
            b"alice",
            b"COUNT",
            b"2",
            b"STREAMS",
            b"stream",
            b">",
        ],
    )
    .await;
    cmd::<String>(&mut con, &[b"FUNCTION", b"LOAD", LIBRARY.as_bytes()]).await;

    let (version, keys, others) = save_and_read(&redis, &mut con).await;
    assert_eq!(version, rdb_version);
    assert!(
        others
            .iter()
            .any(|e| matches!(e, Event::Function(code) if code == LIBRARY))
    );
    assert!(others.iter().any(
        |e| matches!(e, Event::Aux { key, value } if key == "redis-ver" && value.starts_with(prefix.as_bytes()))
    ));

    let by_name: BTreeMap<Vec<u8>, &KeyEntry> = keys.iter().map(|k| (k.key.to_vec(), k)).collect();
    assert_eq!(keys.len(), written.len() + 2);
    for (name, model) in &written {
        let key = by_name[name.as_bytes()];
        assert_eq!(key.db, 0);
        let value = decode_value(key.value_type, &key.value, version)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&model_of(&value), model, "{name} ({})", key.value_type);
        let expected_expiry = matches!(*name, "string:small" | "hash:big").then_some(EXPIRE_AT);
        assert_eq!(key.expire_at_ms, expected_expiry, "{name}");
    }
    // Both encodings of each kind were exercised.
    let types: BTreeSet<u8> = keys.iter().map(|k| k.value_type.0).collect();
    for wanted in [0, 2, 4, 5, 11, 16, 17, 18, stream_type] {
        assert!(
            types.contains(&wanted),
            "type {wanted} missing from {types:?}"
        );
    }
    // The big element has a PLAIN node of its own, the small one a PACKED one.
    assert_eq!(&by_name[b"list:plain".as_slice()].value[..2], &[2, 1]);
    let elsewhere = by_name[b"elsewhere".as_slice()];
    assert_eq!(elsewhere.db, 2);

    let stream = by_name[b"stream".as_slice()];
    let Value::Stream(stream) = decode_value(stream.value_type, &stream.value, version).unwrap()
    else {
        panic!("not a stream")
    };
    let ids: Vec<String> = stream.entries.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(
        ids,
        [
            "1700000000000-1",
            "1700000000000-2",
            "1700000000500-0",
            "1700000000600-0"
        ]
    );
    assert_eq!(
        stream.entries[3].fields,
        [
            (Bytes::from("other"), Bytes::from("field")),
            (Bytes::from("temp"), Bytes::from("18"))
        ]
    );
    assert_eq!(
        stream.entries[1].fields,
        [(Bytes::from("temp"), Bytes::from("21"))]
    );
    assert_eq!(
        (stream.length, stream.last_id.to_string()),
        (4, "1700000000600-0".to_owned())
    );
    assert_eq!(stream.entries_added, Some(4));
    let group = &stream.groups[0];
    assert_eq!(group.name, "workers");
    assert_eq!(group.entries_read, Some(2));
    assert_eq!(group.last_id.to_string(), "1700000000000-2");
    let pending: Vec<String> = group.pending.iter().map(|p| p.id.to_string()).collect();
    assert_eq!(pending, ["1700000000000-1", "1700000000000-2"]);
    assert!(
        group
            .pending
            .iter()
            .all(|p| p.delivery_count == 1 && p.delivery_time_ms > 1_700_000_000_000)
    );
    assert_eq!(group.consumers.len(), 1);
    assert_eq!(group.consumers[0].name, "alice");
    assert_eq!(group.consumers[0].pending.len(), 2);

    // DUMP gives the payload built from the framed raw bytes.
    for name in [
        "string:small",
        "string:big",
        "list:small",
        "list:big",
        "set:intset",
        "zset:big",
        "hash:small",
        "stream",
    ] {
        let dumped: Vec<u8> = cmd(&mut con, &[b"DUMP", name.as_bytes()]).await;
        let built = DumpPayload::from_key(by_name[name.as_bytes()], version);
        assert_eq!(built.as_bytes(), &dumped[..], "{name}");
        let parsed = DumpPayload::parse(Bytes::from(dumped)).unwrap();
        assert_eq!(parsed.rdb_version(), rdb_version);
    }

    // verify counts as INFO keyspace does.
    let summary = dr_redis::verify(
        tokio::fs::File::open(redis.dir().join("dump.rdb"))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let info: String = cmd(&mut con, &[b"INFO", b"keyspace"]).await;
    assert!(
        info.contains(&format!("db0:keys={},expires=2", written.len() + 1)),
        "{info}"
    );
    assert!(info.contains("db2:keys=1,expires=0"), "{info}");
    assert_eq!(summary.counts.databases[&0].keys, written.len() as u64 + 1);
    assert_eq!(summary.counts.databases[&0].expires, 2);
    assert_eq!(summary.counts.databases[&0].by_kind[&KeyKind::Stream], 1);
    assert_eq!(summary.counts.databases[&2].keys, 1);
    assert_eq!(summary.functions, 1);
    assert!(
        summary
            .redis_version
            .as_deref()
            .is_some_and(|v| v.starts_with(prefix))
    );
    assert!(summary.checksum.is_some());
    assert!(summary.counts.differences(&summary.counts).is_empty());
}

fn member() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..12),
        any::<i32>().prop_map(|i| i.to_string().into_bytes()),
        (0usize..3).prop_map(|n| vec![b'x'; [70, 300, 5000][n]]),
    ]
}

fn model() -> impl Strategy<Value = Model> {
    // Few elements (compact encodings) or many (hash tables, several nodes).
    let count = || prop_oneof![Just(1usize..6), Just(100usize..300)];
    let integer = || any::<i64>().prop_map(|i| i.to_string().into_bytes());
    prop_oneof![
        member().prop_map(Model::String),
        count().prop_flat_map(move |n| prop::collection::vec(member(), n).prop_map(Model::List)),
        count()
            .prop_flat_map(move |n| prop::collection::btree_set(member(), n).prop_map(Model::Set)),
        count()
            .prop_flat_map(move |n| prop::collection::btree_set(integer(), n).prop_map(Model::Set)),
        count().prop_flat_map(move |n| {
            prop::collection::btree_map(member(), -1e9f64..1e9, n).prop_map(Model::SortedSet)
        }),
        count().prop_flat_map(
            move |n| prop::collection::btree_map(member(), member(), n).prop_map(Model::Hash)
        ),
    ]
}

#[test]
fn proptest_round_trip_through_real_redis() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let redis = runtime
        .block_on(Redis::start_with(RedisOptions::default()))
        .unwrap();
    let config = ProptestConfig {
        cases: 12,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(set in prop::collection::vec(model(), 1..6))| {
        let decoded = runtime.block_on(async {
            let mut con = redis.connection().await.unwrap();
            cmd::<()>(&mut con, &[b"FLUSHALL"]).await;
            for (i, model) in set.iter().enumerate() {
                write(&mut con, format!("key{i}").as_bytes(), model).await;
            }
            let (version, keys, _) = save_and_read(&redis, &mut con).await;
            keys.iter()
                .map(|k| {
                    let value = decode_value(k.value_type, &k.value, version).unwrap();
                    (String::from_utf8(k.key.to_vec()).unwrap(), model_of(&value))
                })
                .collect::<BTreeMap<_, _>>()
        });
        let expected: BTreeMap<String, Model> = set.iter().cloned().enumerate().map(|(i, m)| (format!("key{i}"), m)).collect();
        prop_assert_eq!(decoded, expected);
    });
}
