//! Real RDB files from Redis's test suite: the good ones parse and decode
//! whole, the damaged ones give clear errors.

use crate::common::{GOOD_FILES, RdbBuilder, data, string};
use bytes::Bytes;
use dr_redis::{
    Error, Event, KeyKind, Value, decode_value, events, verify, verify_file, verify_slice,
};

/// Every key of a file, decoded, by name.
fn decoded(name: &str) -> Vec<(String, Option<i64>, Value)> {
    let rdb = data(name);
    let mut version = 0;
    let mut out = Vec::new();
    for event in events(&rdb) {
        match event.unwrap_or_else(|e| panic!("{name}: {e}")) {
            Event::Header(header) => version = header.version,
            Event::Key(key) => {
                let value = decode_value(key.value_type, &key.value, version)
                    .unwrap_or_else(|e| panic!("{name}: {}: {e}", key.printable_key()));
                out.push((
                    String::from_utf8_lossy(&key.key).into_owned(),
                    key.expire_at_ms,
                    value,
                ));
            }
            _ => {}
        }
    }
    out
}

fn strings(items: &[&str]) -> Vec<Bytes> {
    items
        .iter()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect()
}

#[test]
fn every_good_file_verifies() {
    for name in GOOD_FILES {
        let summary = verify_slice(&data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            summary.counts.keys() > 0 || *name == "scriptbackup.rdb",
            "{name}: {summary:?}"
        );
        assert_eq!(summary.bytes, data(name).len() as u64, "{name}");
    }
}

#[tokio::test]
async fn verify_reads_a_file() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/encodings.rdb");
    let file = tokio::fs::File::open(path).await.unwrap();
    let summary = verify(file).await.unwrap();
    assert_eq!(summary, verify_slice(&data("encodings.rdb")).unwrap());
    assert_eq!(summary.rdb_version, 4);
}

#[tokio::test]
async fn verify_file_agrees_with_verify_on_every_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in GOOD_FILES
        .iter()
        .chain(&["corrupt_empty_keys.rdb", "corrupt_ziplist.rdb"])
    {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name);
        let from_file = verify_file(&path).await.map_err(|e| e.to_string());
        let from_slice = verify_slice(&data(name)).map_err(|e| e.to_string());
        assert_eq!(from_file, from_slice, "{name}");
    }
    // Larger than one read: keys of 100 KB and 70 KB values, whole and then
    // cut short inside the second one, and with a byte of it changed.
    let big = |n: usize, fill: u8| string(&vec![fill; n]);
    let rdb = RdbBuilder::new(10)
        .aux("redis-ver", "7.0.15")
        .select_db(0)
        .key(0, b"first", &big(100_000, b'a'))
        .key(0, b"second", &big(70_000, b'b'))
        .finish();
    let path = dir.path().join("big.rdb");
    std::fs::write(&path, &rdb).unwrap();
    let summary = verify_file(&path).await.unwrap();
    assert_eq!(summary, verify_slice(&rdb).unwrap());
    assert_eq!(
        (summary.counts.keys(), summary.bytes),
        (2, rdb.len() as u64)
    );
    std::fs::write(&path, &rdb[..150_000]).unwrap();
    let cut = verify_file(&path).await.unwrap_err();
    assert!(matches!(cut, Error::Truncated { .. }), "{cut}");
    let mut changed = rdb.clone();
    changed[120_000] ^= 1;
    std::fs::write(&path, &changed).unwrap();
    let changed = verify_file(&path).await.unwrap_err();
    assert!(matches!(changed, Error::Checksum { .. }), "{changed}");
    let missing = verify_file(dir.path().join("none.rdb")).await.unwrap_err();
    assert!(matches!(missing, Error::Io { offset: 0, .. }), "{missing}");
}

#[test]
fn hash_zipmap() {
    let keys = decoded("hash-zipmap.rdb");
    assert_eq!(keys.len(), 1);
    let (name, expiry, Value::Hash(fields)) = &keys[0] else {
        panic!("{keys:?}")
    };
    assert_eq!((name.as_str(), *expiry), ("hash", None));
    let pairs: Vec<_> = fields
        .iter()
        .map(|f| (f.field.clone(), f.value.clone()))
        .collect();
    assert_eq!(
        pairs,
        [
            (Bytes::from("f1"), Bytes::from("v1")),
            (Bytes::from("f2"), Bytes::from("v2"))
        ]
    );
}

#[test]
fn list_quicklist() {
    let keys = decoded("list-quicklist.rdb");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].0, "list");
    assert_eq!(keys[0].2, Value::List(strings(&["7"])));
    assert_eq!(keys[1].2, Value::String(Bytes::from("7")));
}

#[test]
fn ziplist_files_hold_pairs() {
    for name in ["hash-ziplist.rdb", "zset-ziplist.rdb"] {
        let keys = decoded(name);
        assert_eq!(keys.len(), 1, "{name}");
        match &keys[0].2 {
            Value::Hash(fields) => assert!(!fields.is_empty()),
            Value::SortedSet(members) => assert!(!members.is_empty()),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn encodings_holds_every_old_encoding() {
    let summary = verify_slice(&data("encodings.rdb")).unwrap();
    let db = &summary.counts.databases[&0];
    for kind in [
        KeyKind::String,
        KeyKind::List,
        KeyKind::Set,
        KeyKind::SortedSet,
        KeyKind::Hash,
    ] {
        assert!(
            db.by_kind.get(&kind).copied().unwrap_or(0) > 0,
            "{kind:?}: {summary:?}"
        );
    }
    let keys = decoded("encodings.rdb");
    assert_eq!(keys.len(), 13);
    let find = |name: &str| {
        keys.iter()
            .find(|k| k.0 == name)
            .map(|k| k.2.clone())
            .unwrap()
    };
    // An integer-encoded string comes back as its decimal text.
    assert_eq!(find("number"), Value::String(Bytes::from("10")));
    assert_eq!(find("string"), Value::String(Bytes::from("Hello World")));
    // An LZF-compressed string comes back whole.
    let Value::String(compressible) = find("compressible") else {
        panic!()
    };
    assert!(compressible.len() > 100 && compressible.iter().all(|&b| b == b'a'));
    // Intsets of 16-, 32- and 64-bit integers.
    assert_eq!(
        find("set_zipped_1"),
        Value::Set(strings(&["1", "2", "3", "4"]))
    );
    assert_eq!(
        find("set_zipped_2"),
        Value::Set(strings(&["100000", "200000", "300000", "400000"]))
    );
    assert_eq!(
        find("set_zipped_3"),
        Value::Set(strings(&[
            "1000000000",
            "2000000000",
            "3000000000",
            "4000000000",
            "5000000000",
            "6000000000"
        ]))
    );
    // A ziplist with strings and integers of several widths.
    assert_eq!(
        find("list_zipped"),
        Value::List(strings(&[
            "1",
            "2",
            "3",
            "a",
            "b",
            "c",
            "100000",
            "6000000000"
        ]))
    );
    assert_eq!(
        find("zset_zipped"),
        Value::SortedSet(vec![
            (Bytes::from("a"), 1.0),
            (Bytes::from("b"), 2.0),
            (Bytes::from("c"), 3.0)
        ])
    );
    // Type 3: scores as text.
    let Value::SortedSet(zset) = find("zset") else {
        panic!()
    };
    assert!(
        zset.contains(&(Bytes::from("bbbb"), 5_000_000_000.0)),
        "{zset:?}"
    );
    let Value::Hash(hash) = find("hash_zipped") else {
        panic!()
    };
    assert_eq!(
        (hash[0].field.clone(), hash[0].value.clone()),
        (Bytes::from("a"), Bytes::from("1"))
    );
}

#[test]
fn scripts_live_in_an_aux_field() {
    let rdb = data("scriptbackup.rdb");
    let lua = events(&rdb)
        .map(Result::unwrap)
        .find_map(|event| match event {
            Event::Aux { key, value } if key == "lua" => Some(value),
            _ => None,
        });
    assert!(lua.is_some_and(|script| !script.is_empty()));
}

#[test]
fn the_rdb_part_of_an_aof_parses() {
    let aof = data("rdb-preamble.aof");
    let mut parsed = events(&aof);
    let all: Vec<Event> = parsed.by_ref().collect::<Result<_, _>>().unwrap();
    assert!(matches!(all.last(), Some(Event::Eof(_))));
    // The AOF's commands follow the RDB.
    let tail = parsed.parser().remainder();
    assert!(
        tail.starts_with(b"*"),
        "{:?}",
        tail.escape_ascii().to_string()
    );
    // verify wants an RDB and nothing else.
    let err = verify_slice(&aof).unwrap_err();
    assert!(err.to_string().contains("after the RDB's end"), "{err}");
}

#[test]
fn damaged_files_give_clear_errors() {
    let err = verify_slice(&data("corrupt_empty_keys.rdb")).unwrap_err();
    assert_eq!(err.kind(), dr_core::ErrorKind::Corrupt);
    let text = err.to_string();
    assert!(text.contains("empty") && text.contains("key \""), "{text}");

    let err = verify_slice(&data("corrupt_ziplist.rdb")).unwrap_err();
    assert_eq!(err.kind(), dr_core::ErrorKind::Corrupt, "{err}");
    assert!(err.place().is_some_and(|p| p.offset.is_some()), "{err}");
}
