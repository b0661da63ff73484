//! Logical mode, for servers that refuse `SYNC` (managed services): every
//! key read with `SCAN`, `DUMP` and `PTTL`, pipelined, and written out as an
//! RDB of the server's own version, so that verification and restore read
//! it as they read any snapshot. A `DUMP` payload is a value exactly as an
//! RDB holds it, followed by a version and a checksum: only the key, its
//! expiry and the file's frame are added here.
//!
//! The snapshot is not one instant: each key is read when `SCAN` reaches it.
//! A key deleted in between is skipped; an expiry is made absolute when read.
//! `SCAN` may return a key more than once (while the server rehashes); it
//! is written once, as Redis refuses to load an RDB with a duplicate key.

use std::collections::{HashSet, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::rdb::crc::Crc64;
use crate::rdb::dump::DumpPayload;

use super::RedisServer;
use super::conn::{self, Conn, Reply};

/// Keys asked for by one `SCAN` call (a hint to the server).
const SCAN_COUNT: &[u8] = b"1000";
/// A chunk is handed out once this much RDB is ready.
const CHUNK: usize = 256 << 10;
/// The RDB version of a file with neither keys nor functions, which every
/// Redis since 5.0 loads.
const EMPTY_VERSION: u16 = 9;

// RDB opcodes.
const AUX: u8 = 0xFA;
const SELECTDB: u8 = 0xFE;
const EXPIRETIME_MS: u8 = 0xFC;
const EOF: u8 = 0xFF;

impl RedisServer {
    /// Connects and starts reading every key: `SCAN` on one connection,
    /// `DUMP` and `PTTL` pipelined on [`RedisServer::logical_connections`]
    /// others at once (the user needs `INFO`, `SELECT`, `SCAN`, `DUMP`,
    /// `PTTL` and, for functions, `FUNCTION DUMP`):
    /// [`LogicalDump::next_chunk`] yields an RDB written from what they
    /// return.
    ///
    /// # Errors
    /// As [`RedisServer::begin_rdb`], for the connection and `INFO`.
    pub async fn begin_logical(&self) -> Result<LogicalDump> {
        let (mut conn, server_version) = self.connect().await?;
        let started_at = Timestamp::now();
        let keyspace = super::info(&mut conn, "keyspace").await?;
        let databases = keyspace
            .lines()
            .filter_map(|line| line.strip_prefix("db")?.split(':').next()?.parse().ok())
            .collect();
        // Function libraries, where the server has them (7.0 and later).
        let functions = match conn.call("FUNCTION", &[b"FUNCTION", b"DUMP"]).await {
            Ok(Reply::Bulk(Some(payload))) if payload.len() > 10 => {
                Some(DumpPayload::parse(Bytes::from(payload))?)
            }
            Ok(_) => None,
            Err(Error::ServerRefused { message, .. }) if message.contains("unknown") => None,
            Err(e) => return Err(e),
        };
        let mut workers = Vec::with_capacity(self.logical_connections);
        for _ in 0..self.logical_connections {
            let (conn, _) = self.connect().await?;
            workers.push(Worker { conn, db: None });
        }
        Ok(LogicalDump {
            conn,
            workers,
            server_version,
            started_at,
            databases,
            cursor: None,
            seen: HashSet::new(),
            functions,
            version: None,
            written_db: None,
            out: BytesMut::with_capacity(CHUNK * 2),
            crc: Crc64::new(),
            ended: false,
            keys: 0,
        })
    }
}

/// A logical dump under way: [`LogicalDump::next_chunk`] yields an RDB.
pub struct LogicalDump {
    /// The connection `SCAN` runs on.
    conn: Conn,
    /// The connections `DUMP` and `PTTL` run on.
    workers: Vec<Worker>,
    server_version: String,
    started_at: Timestamp,
    /// Databases not yet read, in order.
    databases: VecDeque<u64>,
    /// The `SCAN` cursor in the first of them, once begun.
    cursor: Option<Vec<u8>>,
    /// The keys of that database already written.
    seen: HashSet<Vec<u8>>,
    /// `FUNCTION DUMP`'s payload, until written.
    functions: Option<DumpPayload>,
    /// The RDB version, once the header is written.
    version: Option<u16>,
    /// The database the last key written is in.
    written_db: Option<u64>,
    /// RDB bytes not yet handed out.
    out: BytesMut,
    crc: Crc64,
    ended: bool,
    keys: u64,
}

impl std::fmt::Debug for LogicalDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogicalDump")
            .field("addr", &self.conn.addr())
            .field("server_version", &self.server_version)
            .field("databases", &self.databases)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl LogicalDump {
    /// The server's `redis_version`.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// When the scan began: every change before it is in the dump, for the
    /// keys it holds.
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// Keys written so far.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// The next bytes of the RDB; `None` once it is complete.
    ///
    /// # Errors
    /// A command refused ([`Error::ServerRefused`]), a payload that does
    /// not check ([`Error::Checksum`]) or payloads of two RDB versions, and
    /// the connection's errors.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.out.len() >= CHUNK || (self.ended && !self.out.is_empty()) {
                let take = self.out.len().min(CHUNK);
                return Ok(Some(self.out.split_to(take).freeze()));
            }
            if self.ended {
                return Ok(None);
            }
            self.step().await?;
        }
    }

    /// One `SCAN` batch, or the end.
    ///
    /// (`SCAN` runs on the first connection; `DUMP` and `PTTL` on all.)
    async fn step(&mut self) -> Result<()> {
        let Some(&db) = self.databases.front() else {
            self.header(EMPTY_VERSION);
            self.put(&[EOF]);
            let crc = self.crc.value();
            self.out.put_u64_le(crc);
            self.ended = true;
            return Ok(());
        };
        let cursor = match self.cursor.take() {
            Some(cursor) => cursor,
            None => {
                let number = db.to_string();
                self.conn
                    .call("SELECT", &[b"SELECT", number.as_bytes()])
                    .await?;
                b"0".to_vec()
            }
        };
        let reply = self
            .conn
            .call("SCAN", &[b"SCAN", &cursor, b"COUNT", SCAN_COUNT])
            .await?;
        let (next, keys) = match reply {
            Reply::Array(Some(mut items)) if items.len() == 2 => match (items.pop(), items.pop()) {
                (Some(Reply::Array(Some(keys))), Some(Reply::Bulk(Some(next)))) => (next, keys),
                _ => return Err(self.odd("SCAN")),
            },
            _ => return Err(self.odd("SCAN")),
        };
        let mut fresh = Vec::with_capacity(keys.len());
        for key in keys {
            match key {
                // Returned again: written already.
                Reply::Bulk(Some(key)) if self.seen.contains(&key) => {}
                Reply::Bulk(Some(key)) => fresh.push(key),
                _ => return Err(self.odd("SCAN")),
            }
        }
        // The batch shared out among the connections, each part one write
        // and one round trip, all at once.
        let share = fresh.len().div_ceil(self.workers.len()).max(1);
        let parts: Vec<Vec<Vec<u8>>> = fresh.chunks(share).map(<[_]>::to_vec).collect();
        let read = self
            .workers
            .iter_mut()
            .zip(parts)
            .map(|(worker, keys)| dump_part(worker, db, keys));
        let answers = futures_util::future::try_join_all(read).await?;
        for (key, dumped, ttl, now) in answers.into_iter().flatten() {
            let (payload, expire_at) = match (dumped, ttl) {
                // Deleted since SCAN saw it.
                (Reply::Bulk(None), _) | (_, Reply::Integer(-2)) => continue,
                (Reply::Bulk(Some(payload)), Reply::Integer(ttl)) => {
                    (payload, (ttl >= 0).then(|| now.saturating_add(ttl)))
                }
                _ => return Err(self.odd("DUMP or PTTL")),
            };
            let payload = DumpPayload::parse(Bytes::from(payload))?;
            self.key(db, &key, &payload, expire_at)?;
            self.seen.insert(key);
        }
        if next == b"0" {
            self.databases.pop_front();
            self.seen.clear();
        } else {
            self.cursor = Some(next);
        }
        Ok(())
    }

    /// Writes one key (the header first, with the first payload's version).
    fn key(
        &mut self,
        db: u64,
        key: &[u8],
        payload: &DumpPayload,
        expire_at: Option<i64>,
    ) -> Result<()> {
        let version = payload.rdb_version();
        self.header(version);
        if self.version != Some(version) {
            return Err(Error::NotRedis {
                addr: self.conn.addr().to_owned(),
                reason: format!(
                    "DUMP payloads of RDB versions {} and {version} from one server",
                    self.version.unwrap_or_default()
                ),
            });
        }
        if self.written_db != Some(db) {
            self.put(&[SELECTDB]);
            self.put_len(db);
            self.written_db = Some(db);
        }
        if let Some(at) = expire_at {
            self.put(&[EXPIRETIME_MS]);
            self.put(&at.to_le_bytes());
        }
        self.put(&[payload.value_type().0]);
        self.put_string(key);
        self.put(&payload.raw_value());
        self.keys += 1;
        Ok(())
    }

    /// The magic, version, AUX fields and function libraries, once: at
    /// `version`, or the function payload's where there is one.
    fn header(&mut self, version: u16) {
        if self.version.is_some() {
            return;
        }
        // The same server's function payload has its keys' version.
        let version = self
            .functions
            .as_ref()
            .map_or(version, DumpPayload::rdb_version);
        self.version = Some(version);
        self.put(format!("REDIS{version:04}").as_bytes());
        let server_version = self.server_version.clone();
        for (key, value) in [
            ("redis-ver", server_version),
            ("ctime", (self.started_at.as_second()).to_string()),
            ("drkit-mode", "logical".to_owned()),
        ] {
            self.put(&[AUX]);
            self.put_string(key.as_bytes());
            self.put_string(value.as_bytes());
        }
        if let Some(functions) = self.functions.take() {
            // FUNCTION DUMP's body is the RDB's FUNCTION2 items.
            let bytes = functions.into_bytes();
            self.put(&bytes[..bytes.len() - 10]);
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.crc.update(bytes);
        self.out.put_slice(bytes);
    }

    /// An RDB length.
    fn put_len(&mut self, n: u64) {
        match n {
            0..0x40 => self.put(&[n as u8]),
            0x40..0x4000 => self.put(&[0x40 | (n >> 8) as u8, n as u8]),
            0x4000..=0xFFFF_FFFF => {
                self.put(&[0x80]);
                self.put(&(n as u32).to_be_bytes());
            }
            _ => {
                self.put(&[0x81]);
                self.put(&n.to_be_bytes());
            }
        }
    }

    /// An RDB string, stored as it is.
    fn put_string(&mut self, bytes: &[u8]) {
        self.put_len(bytes.len() as u64);
        self.put(bytes);
    }

    fn odd(&self, command: &str) -> Error {
        odd(&self.conn, command)
    }
}

/// `DUMP` and `PTTL` of `keys` in database `db` on one connection: each
/// key with the two answers and the time they arrived (ms).
async fn dump_part(
    worker: &mut Worker,
    db: u64,
    keys: Vec<Vec<u8>>,
) -> Result<Vec<(Vec<u8>, Reply, Reply, i64)>> {
    if worker.db != Some(db) {
        let number = db.to_string();
        worker
            .conn
            .call("SELECT", &[b"SELECT", number.as_bytes()])
            .await?;
        worker.db = Some(db);
    }
    let mut batch = Vec::with_capacity(keys.iter().map(|k| k.len() + 40).sum());
    for key in &keys {
        conn::encode(&mut batch, &[b"DUMP", key]);
        conn::encode(&mut batch, &[b"PTTL", key]);
    }
    worker.conn.send_raw(&batch).await?;
    let mut answers = Vec::with_capacity(keys.len());
    for key in keys {
        let dumped = worker.conn.reply("DUMP").await?;
        let ttl = worker.conn.reply("PTTL").await?;
        answers.push((key, dumped, ttl, Timestamp::now().as_millisecond()));
    }
    Ok(answers)
}

/// One of the connections `DUMP` and `PTTL` run on, and the database it
/// has selected.
struct Worker {
    conn: Conn,
    db: Option<u64>,
}

fn odd(conn: &Conn, command: &str) -> Error {
    Error::NotRedis {
        addr: conn.addr().to_owned(),
        reason: format!("{command} answered outside the protocol"),
    }
}
