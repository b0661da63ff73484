//! RDB versions 11 and 12 (Redis 7.2 and 7.4+), built byte by byte from
//! the format description: no installed server writes them yet. Real files
//! from Redis 8.2 are left to the tests that will run against it.

use crate::common::{Lp, RdbBuilder, len, listpack, raw_id, string};
use bytes::Bytes;
use dr_redis::{
    DumpPayload, Error, Event, HashField, KeyKind, ModuleField, StreamId, Value, ValueType,
    decode_value, events, verify_slice,
};

/// Writes a built RDB into the fuzz target's seeds when
/// `DR_REDIS_FUZZ_SEEDS` names a folder (`fuzz/seeds`).
fn seed(name: &str, rdb: &[u8]) {
    if let Some(dir) = std::env::var_os("DR_REDIS_FUZZ_SEEDS") {
        std::fs::write(std::path::Path::new(&dir).join(name), rdb).unwrap();
    }
}

fn keys(rdb: &[u8]) -> Vec<(dr_redis::KeyEntry, Value)> {
    let mut version = 0;
    let mut out = Vec::new();
    for event in events(rdb) {
        match event.unwrap() {
            Event::Header(header) => version = header.version,
            Event::Key(key) => {
                let value = decode_value(key.value_type, &key.value, version).unwrap();
                out.push((key, value));
            }
            _ => {}
        }
    }
    out
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn set_listpack_with_every_integer_width() {
    let members = [
        Lp::Int(5),
        Lp::Int(-1),
        Lp::Int(-4096),
        Lp::Int(-100),
        Lp::Int(4095),
        Lp::Int(-8_388_608),
        Lp::Int(8_388_607),
        Lp::Int(-70_000),
        Lp::Int(i64::from(i32::MIN)),
        Lp::Int(i64::MIN),
        Lp::Str(b"word"),
    ];
    let rdb = RdbBuilder::new(11)
        .select_db(0)
        .key(20, b"s", &string(&listpack(&members)))
        .finish();
    seed("v11-set-listpack.rdb", &rdb);
    let got = keys(&rdb);
    let expected: Vec<Bytes> = [
        "5",
        "-1",
        "-4096",
        "-100",
        "4095",
        "-8388608",
        "8388607",
        "-70000",
        "-2147483648",
        "-9223372036854775808",
        "word",
    ]
    .into_iter()
    .map(b)
    .collect();
    assert_eq!(got[0].1, Value::Set(expected));
    // The same value in a version-10 file is a type it cannot hold.
    let old = RdbBuilder::new(10)
        .key(20, b"s", &string(&listpack(&members)))
        .finish();
    assert!(verify_slice(&old).is_err());
}

/// A stream of type 21: one node of two entries (the second with its own
/// fields, a third deleted), one group with two pending entries, one
/// consumer owning one of them.
fn stream_v3() -> Vec<u8> {
    let node = listpack(&[
        // Master entry: count, deleted, fields, terminator.
        Lp::Int(2),
        Lp::Int(1),
        Lp::Int(1),
        Lp::Str(b"temp"),
        Lp::Int(0),
        // 1700000000000-0: same fields.
        Lp::Int(2),
        Lp::Int(0),
        Lp::Int(0),
        Lp::Str(b"21"),
        Lp::Int(4),
        // 1700000000005-1: deleted.
        Lp::Int(3),
        Lp::Int(5),
        Lp::Int(1),
        Lp::Str(b"22"),
        Lp::Int(4),
        // 1700000001000-0: its own fields.
        Lp::Int(0),
        Lp::Int(1000),
        Lp::Int(0),
        Lp::Int(2),
        Lp::Str(b"temp"),
        Lp::Int(-3),
        Lp::Str(b"unit"),
        Lp::Str(b"C"),
        Lp::Int(7),
    ]);
    let mut value = len(1);
    value.extend(string(&raw_id(1_700_000_000_000, 0)));
    value.extend(string(&node));
    value.extend(len(2)); // length
    value.extend(len(1_700_000_001_000));
    value.extend(len(0)); // last id
    value.extend(len(1_700_000_000_000));
    value.extend(len(0)); // first id
    value.extend(len(1_700_000_000_005));
    value.extend(len(1)); // max deleted id
    value.extend(len(3)); // entries added
    value.extend(len(1)); // one group
    value.extend(string(b"workers"));
    value.extend(len(1_700_000_001_000));
    value.extend(len(0));
    value.extend(len(2)); // entries read
    value.extend(len(2)); // PEL
    for (ms, delivered, count) in [
        (1_700_000_000_000u64, 1_700_000_100_000u64, 1u64),
        (1_700_000_001_000, 1_700_000_200_000, 3),
    ] {
        value.extend(raw_id(ms, 0));
        value.extend(delivered.to_le_bytes());
        value.extend(len(count));
    }
    value.extend(len(1)); // consumers
    value.extend(string(b"alice"));
    value.extend(1_700_000_300_000u64.to_le_bytes()); // seen
    value.extend(1_700_000_200_000u64.to_le_bytes()); // active
    value.extend(len(1));
    value.extend(raw_id(1_700_000_001_000, 0));
    value
}

#[test]
fn stream_of_type_21() {
    let rdb = RdbBuilder::new(11)
        .key(21, b"events", &stream_v3())
        .finish();
    let got = keys(&rdb);
    let Value::Stream(stream) = &got[0].1 else {
        panic!("{:?}", got[0].1)
    };
    let ids: Vec<String> = stream.entries.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, ["1700000000000-0", "1700000001000-0"]);
    assert_eq!(stream.entries[0].fields, [(b("temp"), b("21"))]);
    assert_eq!(
        stream.entries[1].fields,
        [(b("temp"), b("-3")), (b("unit"), b("C"))]
    );
    assert_eq!(stream.length, 2);
    assert_eq!(
        stream.last_id,
        StreamId {
            ms: 1_700_000_001_000,
            seq: 0
        }
    );
    assert_eq!(
        stream.max_deleted_id,
        Some(StreamId {
            ms: 1_700_000_000_005,
            seq: 1
        })
    );
    assert_eq!(stream.entries_added, Some(3));
    let group = &stream.groups[0];
    assert_eq!(
        (group.name.clone(), group.entries_read),
        (b("workers"), Some(2))
    );
    assert_eq!(group.pending.len(), 2);
    assert_eq!(group.pending[1].delivery_count, 3);
    assert_eq!(group.pending[1].delivery_time_ms, 1_700_000_200_000);
    let alice = &group.consumers[0];
    assert_eq!(alice.active_time_ms, Some(1_700_000_200_000));
    assert_eq!(alice.seen_time_ms, 1_700_000_300_000);
    assert_eq!(
        alice.pending,
        [StreamId {
            ms: 1_700_000_001_000,
            seq: 0
        }]
    );
}

#[test]
fn a_stream_whose_length_lies_is_corrupt() {
    let mut value = stream_v3();
    // The length follows the node: find it after the listpack's end marker.
    let end = value.iter().position(|&byte| byte == 0xff).unwrap();
    value[end + 1] = 3;
    let err = decode_value(ValueType::STREAM_LISTPACKS_3, &Bytes::from(value), 11).unwrap_err();
    assert!(
        err.to_string().contains("stream says it has 3 entries"),
        "{err}"
    );
}

#[test]
fn version_12_items_and_hash_field_expiry() {
    let min = 1_900_000_000_000u64;
    // Type 24: TTLs relative to the smallest, plus one; 0 for none.
    let mut metadata = min.to_le_bytes().to_vec();
    metadata.extend(len(2));
    metadata.extend(len(1));
    metadata.extend(string(b"soon"));
    metadata.extend(string(b"1"));
    metadata.extend(len(0));
    metadata.extend(string(b"never"));
    metadata.extend(string(b"2"));
    // Type 25: the smallest expiry, then (field, value, absolute ms or 0).
    let mut listpack_ex = min.to_le_bytes().to_vec();
    listpack_ex.extend(string(&listpack(&[
        Lp::Str(b"a"),
        Lp::Str(b"x"),
        Lp::Int(min as i64 + 500),
        Lp::Str(b"b"),
        Lp::Int(-7),
        Lp::Int(0),
    ])));
    let rdb = RdbBuilder::new(12)
        .aux("redis-ver", "8.2.1")
        .function("#!lua name=lib\nredis.register_function('f', function() return 1 end)")
        .select_db(3)
        .resize_db(2, 1)
        .slot_info(866, 2, 1)
        .expire_ms(1_950_000_000_000)
        .key(24, b"h24", &metadata)
        .key(25, b"h25", &listpack_ex)
        .finish();
    seed("v12-hash-expiry-slot-info-function.rdb", &rdb);

    let all: Vec<Event> = events(&rdb).collect::<Result<_, _>>().unwrap();
    assert!(all.contains(&Event::SlotInfo {
        slot: 866,
        keys: 2,
        expires: 1
    }));
    assert!(all.contains(&Event::ResizeDb {
        keys: 2,
        expires: 1
    }));
    assert!(
        all.iter()
            .any(|e| matches!(e, Event::Function(code) if code.starts_with(b"#!lua")))
    );

    let got = keys(&rdb);
    assert_eq!(got[0].0.db, 3);
    assert_eq!(got[0].0.expire_at_ms, Some(1_950_000_000_000));
    assert_eq!(got[1].0.expire_at_ms, None);
    let field =
        |field: &str, value: &str, expire_at_ms: Option<u64>| (b(field), b(value), expire_at_ms);
    let fields = |value: &Value| match value {
        Value::Hash(fields) => fields
            .iter()
            .map(
                |HashField {
                     field,
                     value,
                     expire_at_ms,
                     ..
                 }| (field.clone(), value.clone(), *expire_at_ms),
            )
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        fields(&got[0].1),
        [field("soon", "1", Some(min)), field("never", "2", None)]
    );
    assert_eq!(
        fields(&got[1].1),
        [field("a", "x", Some(min + 500)), field("b", "-7", None)]
    );

    let summary = verify_slice(&rdb).unwrap();
    assert_eq!(summary.rdb_version, 12);
    assert_eq!(summary.redis_version.as_deref(), Some("8.2.1"));
    assert_eq!(summary.functions, 1);
    assert_eq!(summary.counts.databases[&3].by_kind[&KeyKind::Hash], 2);
    assert_eq!(summary.counts.expires(), 1);

    // A key's raw bytes make a DUMP payload that decodes the same.
    let payload = DumpPayload::from_key(&got[1].0, 12);
    let checked = DumpPayload::parse(payload.clone().into_bytes()).unwrap();
    assert_eq!(checked.decode().unwrap(), got[1].1);
}

#[test]
fn module_values_and_module_aux() {
    let charset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let id = "testtype1"
        .chars()
        .fold(0u64, |id, c| id << 6 | charset.find(c).unwrap() as u64)
        << 10
        | 2;
    let mut value = len(id);
    value.extend(len(1)); // signed
    value.extend(len(-5i64 as u64));
    value.extend(len(4)); // double
    value.extend(2.5f64.to_le_bytes());
    value.extend(len(5)); // string
    value.extend(string(b"payload"));
    value.extend(len(0));
    let mut aux = vec![0xf7];
    aux.extend(len(id));
    aux.extend(len(2));
    aux.extend(len(2)); // after the keys
    aux.extend(len(2));
    aux.extend(len(42));
    aux.extend(len(0));
    let rdb = RdbBuilder::new(12).key(7, b"m", &value).raw(&aux).finish();
    seed("v12-module.rdb", &rdb);
    let all: Vec<Event> = events(&rdb).collect::<Result<_, _>>().unwrap();
    let Some(Event::ModuleAux(module_aux)) = all.iter().find(|e| matches!(e, Event::ModuleAux(_)))
    else {
        panic!("{all:?}")
    };
    assert_eq!(module_aux.module.name(), "testtype1");
    assert_eq!(module_aux.when, 2);
    let got = keys(&rdb);
    let Value::Module(module) = &got[0].1 else {
        panic!()
    };
    assert_eq!(module.module.name(), "testtype1");
    assert_eq!(module.module.encoding_version(), 2);
    assert_eq!(
        module.fields,
        [
            ModuleField::Signed(-5),
            ModuleField::Double(2.5),
            ModuleField::String(b("payload"))
        ]
    );
    assert_eq!(verify_slice(&rdb).unwrap().module_aux, 1);
}

#[test]
fn quicklist_2_with_plain_and_packed_nodes() {
    let mut value = len(2);
    value.extend(len(2)); // packed
    value.extend(string(&listpack(&[Lp::Str(b"a"), Lp::Int(-2)])));
    value.extend(len(1)); // plain
    value.extend(string(&vec![b'z'; 300]));
    let rdb = RdbBuilder::new(10).key(18, b"l", &value).finish();
    seed("v10-quicklist-2.rdb", &rdb);
    let got = keys(&rdb);
    assert_eq!(
        got[0].1,
        Value::List(vec![b("a"), b("-2"), Bytes::from(vec![b'z'; 300])])
    );
}

#[test]
fn newer_and_foreign_formats_are_refused_by_name() {
    let v13 = RdbBuilder::new(13).finish();
    let err = events(&v13).find_map(Result::err).unwrap();
    assert!(
        matches!(err, Error::UnsupportedVersion { version: 13, .. }),
        "{err}"
    );
    assert_eq!(err.kind(), dr_core::ErrorKind::UnsupportedVersion);
    let valkey = b"VALKEY080\xff\x00\x00\x00\x00\x00\x00\x00\x00";
    let err = events(valkey).find_map(Result::err).unwrap();
    assert!(err.to_string().contains("VALKEY080"), "{err}");
    // An unknown type byte names itself and where it is.
    let unknown = RdbBuilder::new(12).key(30, b"k", b"").finish();
    let err = events(&unknown).find_map(Result::err).unwrap();
    assert!(
        matches!(err, Error::UnsupportedType { value_type: 30, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("at byte 9"), "{err}");
}

#[test]
fn per_key_opcodes_reach_their_key() {
    let mut idle = vec![0xf8];
    idle.extend(len(3600));
    let mut old_expiry = vec![0xfd];
    old_expiry.extend(1_900_000_000i32.to_le_bytes());
    let rdb = RdbBuilder::new(9)
        .raw(&idle)
        .key(0, b"idle", &string(b"1"))
        .raw(&[0xf9, 7])
        .key(0, b"freq", &string(b"2"))
        .raw(&old_expiry)
        .key(0, b"seconds", &string(b"3"))
        .key(0, b"plain", &string(b"4"))
        .finish();
    let got = keys(&rdb);
    let meta: Vec<_> = got
        .iter()
        .map(|(key, _)| (key.idle_seconds, key.lfu_freq, key.expire_at_ms))
        .collect();
    assert_eq!(
        meta,
        [
            (Some(3600), None, None),
            (None, Some(7), None),
            (None, None, Some(1_900_000_000_000)),
            (None, None, None),
        ]
    );
}

#[test]
fn a_zero_checksum_means_not_computed() {
    let mut rdb = RdbBuilder::new(10).key(0, b"k", &string(b"v")).finish();
    let at = rdb.len() - 8;
    rdb[at..].fill(0);
    let summary = verify_slice(&rdb).unwrap();
    assert_eq!(summary.checksum, None);
    // Any other wrong value is a mismatch.
    rdb[at] = 1;
    let err = verify_slice(&rdb).unwrap_err();
    assert!(matches!(err, Error::Checksum { expected: 1, .. }), "{err}");
    assert_eq!(err.kind(), dr_core::ErrorKind::Corrupt);
}

#[test]
fn key_counts_compare_with_recorded_ones() {
    let one_db = RdbBuilder::new(10)
        .key(0, b"a", &string(b"1"))
        .expire_ms(1)
        .key(0, b"b", &string(b"2"))
        .finish();
    let two_dbs = RdbBuilder::new(10)
        .key(0, b"a", &string(b"1"))
        .select_db(1)
        .key(0, b"b", &string(b"2"))
        .finish();
    let (one, two) = (
        verify_slice(&one_db).unwrap(),
        verify_slice(&two_dbs).unwrap(),
    );
    assert_eq!(one.counts.keys(), two.counts.keys());
    assert_ne!(one.counts, two.counts);
    assert_eq!(
        two.counts.differences(&one.counts),
        [
            "db 0: 1 keys, expected 2",
            "db 0: 0 keys with an expiry, expected 1",
            "db 0: 1 string keys, expected 2",
            "db 1: 1 keys, expected 0",
            "db 1: 1 string keys, expected 0",
        ]
    );
    // Stored and read back as JSON, the counts still compare equal.
    let json = serde_json::to_string(&one).unwrap();
    let back: dr_redis::RdbSummary = serde_json::from_str(&json).unwrap();
    assert!(back.counts.differences(&one.counts).is_empty());
}

#[test]
fn stream_of_type_15_has_no_newer_fields() {
    // Redis 5 and 6: no first id, max deleted id, entries added, entries
    // read nor active time.
    let node = listpack(&[
        Lp::Int(1),
        Lp::Int(0),
        Lp::Int(1),
        Lp::Str(b"f"),
        Lp::Int(0),
        Lp::Int(2),
        Lp::Int(0),
        Lp::Int(0),
        Lp::Str(b"v"),
        Lp::Int(4),
    ]);
    let mut value = len(1);
    value.extend(string(&raw_id(5, 0)));
    value.extend(string(&node));
    value.extend(len(1));
    value.extend(len(5));
    value.extend(len(0));
    value.extend(len(1)); // one group
    value.extend(string(b"g"));
    value.extend(len(5));
    value.extend(len(0));
    value.extend(len(1)); // PEL
    value.extend(raw_id(5, 0));
    value.extend(7u64.to_le_bytes());
    value.extend(len(2));
    value.extend(len(1)); // consumer
    value.extend(string(b"c"));
    value.extend(9u64.to_le_bytes());
    value.extend(len(1));
    value.extend(raw_id(5, 0));
    let rdb = RdbBuilder::new(9).key(15, b"s", &value).finish();
    let got = keys(&rdb);
    let Value::Stream(stream) = &got[0].1 else {
        panic!("{:?}", got[0].1)
    };
    assert_eq!(stream.entries[0].fields, [(b("f"), b("v"))]);
    assert_eq!((stream.first_id, stream.entries_added), (None, None));
    let group = &stream.groups[0];
    assert_eq!(group.entries_read, None);
    assert_eq!(
        (
            group.pending[0].delivery_time_ms,
            group.pending[0].delivery_count
        ),
        (7, 2)
    );
    assert_eq!(
        (
            group.consumers[0].seen_time_ms,
            group.consumers[0].active_time_ms
        ),
        (9, None)
    );
    // A consumer owning an entry the group does not have pending is corrupt.
    let mut bad = value.clone();
    let at = bad.len() - 1;
    bad[at] = 1;
    let err = decode_value(ValueType::STREAM_LISTPACKS, &Bytes::from(bad), 9).unwrap_err();
    assert!(err.to_string().contains("not pending"), "{err}");
}

#[test]
fn hashes_of_redis_7_4_release_candidates() {
    // Type 22: absolute expiries; type 23: a listpack of triples, no minimum.
    let mut metadata = len(1);
    metadata.extend(len(1_900_000_000_000));
    metadata.extend(string(b"f"));
    metadata.extend(string(b"v"));
    let value = decode_value(ValueType(22), &Bytes::from(metadata), 12).unwrap();
    let Value::Hash(fields) = value else { panic!() };
    assert_eq!(fields[0].expire_at_ms, Some(1_900_000_000_000));
    let triples = string(&listpack(&[Lp::Str(b"f"), Lp::Str(b"v"), Lp::Int(0)]));
    let value = decode_value(ValueType(23), &Bytes::from(triples.clone()), 12).unwrap();
    let Value::Hash(fields) = value else { panic!() };
    assert_eq!(
        (fields[0].value.clone(), fields[0].expire_at_ms),
        (b("v"), None)
    );
    // Not triples.
    let pairs = string(&listpack(&[Lp::Str(b"f"), Lp::Str(b"v")]));
    assert!(decode_value(ValueType(23), &Bytes::from(pairs), 12).is_err());
    // An expiry beyond 2^48 - 1 is out of range.
    let far = string(&listpack(&[Lp::Str(b"f"), Lp::Str(b"v"), Lp::Int(1 << 50)]));
    assert!(decode_value(ValueType(23), &Bytes::from(far), 12).is_err());
}

#[test]
fn sorted_sets_of_type_3_with_special_scores() {
    let mut value = len(4);
    for (member, score) in [
        (&b"n"[..], &[253u8][..]),
        (b"p", &[254]),
        (b"m", &[255]),
        (b"x", b"\x041.25"),
    ] {
        value.extend(string(member));
        value.extend_from_slice(score);
    }
    let Value::SortedSet(members) = decode_value(ValueType::ZSET, &Bytes::from(value), 9).unwrap()
    else {
        panic!()
    };
    assert!(members[0].1.is_nan());
    assert_eq!(members[1].1, f64::INFINITY);
    assert_eq!(members[2].1, f64::NEG_INFINITY);
    assert_eq!(members[3], (b("x"), 1.25));
    // Text that is no number.
    let mut bad = len(1);
    bad.extend(string(b"a"));
    bad.extend(b"\x03abc");
    assert!(decode_value(ValueType::ZSET, &Bytes::from(bad), 9).is_err());
}

#[test]
fn lzf_keys_and_values() {
    // "aaaaaaaaaa" as LZF: one literal, then a back reference of 7 + 0 + 2
    // at distance 1.
    let mut lzf = vec![0xc3];
    lzf.extend(len(5));
    lzf.extend(len(10));
    lzf.extend([0, b'a', 7 << 5, 0, 0]);
    let rdb = RdbBuilder::new(10).raw(&[0]).raw(&lzf).raw(&lzf).finish();
    let got = keys(&rdb);
    assert_eq!(got[0].0.key, "aaaaaaaaaa");
    assert_eq!(got[0].1, Value::String(b("aaaaaaaaaa")));
    // A length the compressed bytes cannot make.
    let mut lie = vec![0xc3];
    lie.extend(len(5));
    lie.extend(len(11));
    lie.extend([0, b'a', 7 << 5, 0, 0]);
    let err = decode_value(ValueType::STRING, &Bytes::from(lie), 10).unwrap_err();
    assert!(err.to_string().contains("LZF"), "{err}");
}
