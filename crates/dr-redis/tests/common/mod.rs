//! Shared by the tests: test files, and RDBs built byte by byte from the
//! format description (for versions no installed server writes).

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

pub mod fake_master;

/// A test file from `tests/data`.
pub fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The test files that are whole RDBs Redis loads.
pub const GOOD_FILES: &[&str] = &[
    "encodings.rdb",
    "hash-zipmap.rdb",
    "hash-ziplist.rdb",
    "list-quicklist.rdb",
    "zset-ziplist.rdb",
    "scriptbackup.rdb",
];

pub fn crc64(bytes: &[u8]) -> u64 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Redis, bytes)
}

/// An RDB length.
pub fn len(n: u64) -> Vec<u8> {
    if n < 64 {
        vec![n as u8]
    } else if n < 16384 {
        vec![0x40 | (n >> 8) as u8, n as u8]
    } else if n <= u64::from(u32::MAX) {
        let mut out = vec![0x80];
        out.extend((n as u32).to_be_bytes());
        out
    } else {
        let mut out = vec![0x81];
        out.extend(n.to_be_bytes());
        out
    }
}

/// An RDB string, stored raw.
pub fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = len(bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

/// A listpack element.
#[derive(Debug, Clone)]
pub enum Lp<'a> {
    Str(&'a [u8]),
    Int(i64),
}

/// A listpack, each integer in the smallest encoding that holds it.
pub fn listpack(items: &[Lp<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for item in items {
        let entry = match item {
            Lp::Int(v @ 0..=127) => vec![*v as u8],
            Lp::Int(v @ -4096..=4095) => {
                let raw = (*v as u16) & 0x1fff;
                vec![0xc0 | (raw >> 8) as u8, raw as u8]
            }
            Lp::Int(v) if i16::try_from(*v).is_ok() => {
                let mut e = vec![0xf1];
                e.extend((*v as i16).to_le_bytes());
                e
            }
            Lp::Int(v @ -8_388_608..=8_388_607) => {
                let mut e = vec![0xf2];
                e.extend(&(*v as i32).to_le_bytes()[..3]);
                e
            }
            Lp::Int(v) if i32::try_from(*v).is_ok() => {
                let mut e = vec![0xf3];
                e.extend((*v as i32).to_le_bytes());
                e
            }
            Lp::Int(v) => {
                let mut e = vec![0xf4];
                e.extend(v.to_le_bytes());
                e
            }
            Lp::Str(s) if s.len() < 64 => {
                let mut e = vec![0x80 | s.len() as u8];
                e.extend_from_slice(s);
                e
            }
            Lp::Str(s) if s.len() < 4096 => {
                let mut e = vec![0xe0 | (s.len() >> 8) as u8, s.len() as u8];
                e.extend_from_slice(s);
                e
            }
            Lp::Str(s) => {
                let mut e = vec![0xf0];
                e.extend((s.len() as u32).to_le_bytes());
                e.extend_from_slice(s);
                e
            }
        };
        let n = entry.len() as u64;
        body.extend(&entry);
        let size = match n {
            0..=127 => 1,
            128..=16_383 => 2,
            16_384..=2_097_151 => 3,
            2_097_152..=268_435_455 => 4,
            _ => 5,
        };
        for i in 0..size {
            let shift = 7 * (size - 1 - i);
            body.push(((n >> shift) & 127) as u8 | if i == 0 { 0 } else { 128 });
        }
    }
    let total = 6 + body.len() + 1;
    let mut out = Vec::new();
    out.extend((total as u32).to_le_bytes());
    out.extend((items.len().min(65535) as u16).to_le_bytes());
    out.extend(body);
    out.push(0xff);
    out
}

/// An RDB built item by item.
pub struct RdbBuilder {
    bytes: Vec<u8>,
}

impl RdbBuilder {
    pub fn new(version: u16) -> Self {
        Self {
            bytes: format!("REDIS{version:04}").into_bytes(),
        }
    }

    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.bytes.extend_from_slice(bytes);
        self
    }

    pub fn aux(self, key: &str, value: &str) -> Self {
        let mut item = vec![0xfa];
        item.extend(string(key.as_bytes()));
        item.extend(string(value.as_bytes()));
        self.raw(&item)
    }

    pub fn select_db(self, db: u64) -> Self {
        let mut item = vec![0xfe];
        item.extend(len(db));
        self.raw(&item)
    }

    pub fn resize_db(self, keys: u64, expires: u64) -> Self {
        let mut item = vec![0xfb];
        item.extend(len(keys));
        item.extend(len(expires));
        self.raw(&item)
    }

    pub fn slot_info(self, slot: u64, keys: u64, expires: u64) -> Self {
        let mut item = vec![0xf4];
        item.extend(len(slot));
        item.extend(len(keys));
        item.extend(len(expires));
        self.raw(&item)
    }

    pub fn function(self, code: &str) -> Self {
        let mut item = vec![0xf5];
        item.extend(string(code.as_bytes()));
        self.raw(&item)
    }

    pub fn expire_ms(self, ms: i64) -> Self {
        let mut item = vec![0xfc];
        item.extend(ms.to_le_bytes());
        self.raw(&item)
    }

    pub fn key(self, value_type: u8, key: &[u8], value: &[u8]) -> Self {
        let mut item = vec![value_type];
        item.extend(string(key));
        item.extend_from_slice(value);
        self.raw(&item)
    }

    /// EOF and the checksum.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.push(0xff);
        let crc = crc64(&self.bytes);
        self.bytes.extend(crc.to_le_bytes());
        self.bytes
    }
}

/// A 16-byte stream id as stored in node keys and PELs.
pub fn raw_id(ms: u64, seq: u64) -> Vec<u8> {
    let mut out = ms.to_be_bytes().to_vec();
    out.extend(seq.to_be_bytes());
    out
}

/// What `redis-check-rdb` of `version` says of `rdb`: whether it finds it
/// sound, and its output.
pub fn redis_check_rdb(version: dr_testkit::RedisVersion, rdb: &[u8]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("checked.rdb");
    std::fs::write(&file, rdb).unwrap();
    let output = std::process::Command::new(version.check_rdb().unwrap())
        .arg(&file)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (
        output.status.success() && said.contains("RDB looks OK"),
        said,
    )
}

/// A value as tests compare it: members of sets, hashes and sorted sets in
/// order (their stored order is the encoding's, a hash table's its own);
/// with `times` false, stream consumers' seen and active times left out (a
/// rebuild claims pending entries now).
pub fn normal(value: dr_redis::Value, times: bool) -> dr_redis::Value {
    use dr_redis::Value;
    match value {
        Value::Set(mut members) => {
            members.sort();
            Value::Set(members)
        }
        Value::SortedSet(mut members) => {
            members.sort_by(|a, b| a.0.cmp(&b.0));
            Value::SortedSet(members)
        }
        Value::Hash(mut fields) => {
            fields.sort_by(|a, b| a.field.cmp(&b.field));
            Value::Hash(fields)
        }
        Value::Stream(mut stream) if !times => {
            for group in &mut stream.groups {
                for consumer in &mut group.consumers {
                    consumer.seen_time_ms = 0;
                    consumer.active_time_ms = None;
                }
            }
            Value::Stream(stream)
        }
        other => other,
    }
}

/// Every key of the connection's database: its value from `DUMP`
/// ([`normal`]ised) and its absolute expiry (`PEXPIRETIME`, -1 for none).
pub async fn dumped_keys(
    con: &mut redis::aio::MultiplexedConnection,
    times: bool,
) -> std::collections::BTreeMap<Vec<u8>, (dr_redis::Value, i64)> {
    let mut keys = std::collections::BTreeMap::new();
    let names: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query_async(con).await.unwrap();
    for name in names {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&name)
            .query_async(con)
            .await
            .unwrap();
        let at: i64 = redis::cmd("PEXPIRETIME")
            .arg(&name)
            .query_async(con)
            .await
            .unwrap();
        let value = dr_redis::DumpPayload::parse(dump.into())
            .unwrap()
            .decode()
            .unwrap();
        keys.insert(name, (normal(value, times), at));
    }
    keys
}

/// Bytes of every file under `dir` (a repository's size on disk).
pub fn stored_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stored_bytes(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// Waits until `n` replicas (an archiver among them) acknowledged every
/// write so far, asking with short `WAIT`s: a long one outlives the
/// client's reply timeout on a loaded machine. Past 30 s it fails with the
/// master's `INFO replication` (each replica's state and offset).
pub async fn acknowledged_by(con: &redis::aio::MultiplexedConnection, n: i64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut con = con.clone();
    loop {
        let got: i64 = redis::cmd("WAIT")
            .arg(n)
            .arg(200)
            .query_async(&mut con)
            .await
            .unwrap();
        if got >= n {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut con)
                .await
                .unwrap_or_else(|e| format!("(INFO failed: {e})"));
            panic!("waited 30s for {n} acknowledgements, had {got}; the master's {info}");
        }
    }
}

/// A failover lease in an in-memory repository.
pub async fn memory_lease() -> std::sync::Arc<dr_storage::Repository> {
    use dr_storage::{InitOptions, KdfParams, MemoryBackend, Repository, Secret};
    let options = InitOptions::encrypted(Secret::password("lease")).kdf(KdfParams::INSECURE_FAST);
    std::sync::Arc::new(
        Repository::init(std::sync::Arc::new(MemoryBackend::new()), options)
            .await
            .unwrap(),
    )
}

/// A monitor's events until `done` picks one (the last), within 30 s.
pub async fn events_until(
    handle: &mut dr_core::MonitorHandle,
    mut done: impl FnMut(&dr_core::MonitorEvent) -> bool,
) -> Vec<dr_core::MonitorEvent> {
    let mut seen = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(event) = handle.next_event().await {
            let stop = done(&event);
            seen.push(event);
            if stop {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("waited 30 s; saw {seen:?}"));
    seen
}

/// Runs `archiver` into `repo` from `from` (with the repository's segment
/// journals where `journaled`, as on a local store; without, as on an object
/// store) until the returned sender says stop.
pub fn spawn_archiver(
    archiver: &dr_redis::CommandArchiver,
    repo: &dr_storage::Repository,
    journaled: bool,
    from: Option<dr_redis::HistoryPoint>,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<dr_core::Result<dr_redis::ArchiverStop>>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (archiver, repo) = (archiver.clone(), repo.clone());
    let run = tokio::spawn(async move {
        let journals = journaled.then(|| repo.segment_journals().unwrap());
        let journals = journals.as_ref().map(|j| j as &dyn dr_core::JournalSink);
        archiver.run(&repo, journals, &repo, from, stopped).await
    });
    (stop, run)
}
