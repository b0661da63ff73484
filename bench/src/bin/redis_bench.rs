//! `redis_bench`: the drkit side of `scripts/bench redis` (see BENCHMARKS.md).
//!
//! - `fill` loads a Redis server with the benchmark's data set: about a
//!   million keys of every type (strings, hashes, lists, sets, sorted sets
//!   and a few streams with a consumer group), random bytes that do not
//!   compress, each key's value 64 B to 16 KiB, written pipelined over one
//!   connection.
//! - `change` rewrites a fraction of those keys, chosen at random, with new
//!   random values of the same type (a new size too).
//! - `snapshot` takes an [`RdbSnapshot`] of the server into a repository on
//!   local disk, as `redis-cli --rdb` fetches the RDB to a file.
//! - `verify` parses an RDB file with every value decoded and the checksum
//!   checked ([`dr_redis::verify`]), as `redis-check-rdb` does.
//!
//! Every key and value is a function of the seed, the key's number and its
//! generation (0 for `fill`, 1 for `change`), so a run is repeatable.

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use dr_core::BackupExt;
use dr_core::{Objectives, RecoveryTarget, RestoreRequest};
use dr_redis::{
    DumpPayload, Event, RdbReader, RdbRestore, RdbSnapshot, RdbSnapshotDetails, RedisServer,
};
use dr_storage::InitOptions;
use drkit_bench::{AnyResult, RepoArgs, secs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The component the snapshots are taken as.
const COMPONENT: &str = "redis/bench";

/// drkit's side of `scripts/bench redis`.
#[derive(Parser)]
#[command(name = "redis_bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the server listens (always on loopback).
#[derive(Debug, Clone, clap::Args)]
struct ServerArgs {
    /// The server's port on 127.0.0.1
    #[arg(long)]
    port: u16,
}

/// Which keys.
#[derive(Debug, Clone, clap::Args)]
struct DataArgs {
    /// How many keys the data set has
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// The seed every key and value derives from
    #[arg(long, default_value_t = 17)]
    seed: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Loads the data set into the server.
    Fill {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Rewrites a fraction of the keys, chosen at random, with new values.
    Change {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        data: DataArgs,
        /// The fraction of keys rewritten
        #[arg(long, default_value_t = 0.05)]
        fraction: f64,
    },
    /// Takes a snapshot of the server into the repository.
    Snapshot {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Creates the repository, if its directory is empty, and takes nothing.
    Init {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Parses an RDB file, decoding every value and checking its checksum.
    Verify {
        /// The RDB file
        file: std::path::PathBuf,
    },
    /// Restores the repository's latest snapshot into the (empty) server.
    Restore {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        repo: RepoArgs,
        /// Write as the snapshot is read, without reading it whole first
        #[arg(long)]
        single_pass: bool,
    },
    /// Writes, from an RDB file, the RESTORE commands `redis-cli --pipe`
    /// sends: the same commands drkit's restore sends (expired keys left out).
    RestoreCommands {
        /// The RDB file
        file: std::path::PathBuf,
        /// Where the commands go
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    drkit_bench::main(|cli: Cli| {
        let runtime = drkit_bench::runtime()?;
        match cli.command {
            Command::Fill { server, data } => runtime.block_on(fill(server.port, &data)),
            Command::Change {
                server,
                data,
                fraction,
            } => runtime.block_on(change(server.port, &data, fraction)),
            Command::Snapshot { server, repo } => runtime.block_on(snapshot(server.port, &repo)),
            Command::Init { repo } => runtime.block_on(async {
                repo.open_or_create(InitOptions::encrypted).await?;
                Ok(())
            }),
            Command::Verify { file } => runtime.block_on(verify(&file)),
            Command::Restore {
                server,
                repo,
                single_pass,
            } => runtime.block_on(restore(server.port, &repo, single_pass)),
            Command::RestoreCommands { file, out } => {
                runtime.block_on(restore_commands(&file, &out))
            }
        }
    })
}

// ---------------------------------------------------------------------------
// The data set

/// wyrand: fast, and random enough that zstd finds nothing to take out.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut rng = Self(seed ^ 0x9E37_79B9_7F4A_7C15);
        rng.next();
        rng
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xA076_1D64_78BD_642F);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xE703_7ED1_A0B4_28DB);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// A float in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fill(&mut self, out: &mut Vec<u8>, n: usize) {
        let mut left = n;
        while left > 0 {
            let word = self.next().to_le_bytes();
            let take = left.min(8);
            out.extend_from_slice(&word[..take]);
            left -= take;
        }
    }
}

/// Streams come first, this many of them.
const STREAMS: u64 = 16;
/// Entries per stream.
const STREAM_ENTRIES: u64 = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Hash,
    List,
    Set,
    SortedSet,
    Stream,
}

/// The kind of key `i`: 60% strings, 12% hashes, 10% lists, 9% sets, 9%
/// sorted sets, and the first few keys streams.
fn kind_of(seed: u64, i: u64) -> Kind {
    if i < STREAMS {
        return Kind::Stream;
    }
    match Rng::new(seed ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D)).below(100) {
        0..60 => Kind::String,
        60..72 => Kind::Hash,
        72..82 => Kind::List,
        82..91 => Kind::Set,
        _ => Kind::SortedSet,
    }
}

/// A value's size: 64 B to 16 KiB, most of them small (about 1.2 KiB on
/// average), as `64 * 256^(u^3)`.
fn value_size(rng: &mut Rng) -> usize {
    let u = rng.unit();
    (64.0 * 256f64.powf(u * u * u)) as usize
}

/// One command in RESP.
struct Resp<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Resp<'a> {
    fn command(out: &'a mut Vec<u8>, args: usize) -> Self {
        out.extend_from_slice(format!("*{args}\r\n").as_bytes());
        Self { out }
    }

    fn arg(&mut self, bytes: &[u8]) -> &mut Self {
        self.out
            .extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
        self.out.extend_from_slice(bytes);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    fn random(&mut self, rng: &mut Rng, n: usize) -> &mut Self {
        self.out.extend_from_slice(format!("${n}\r\n").as_bytes());
        rng.fill(self.out, n);
        self.out.extend_from_slice(b"\r\n");
        self
    }
}

fn key_name(i: u64) -> Vec<u8> {
    format!("bench:{i:08}").into_bytes()
}

/// Appends the commands that write key `i` (generation `generation`) to
/// `out`; returns how many replies they get.
fn write_key(out: &mut Vec<u8>, seed: u64, i: u64, generation: u64) -> usize {
    let key = key_name(i);
    let kind = kind_of(seed, i);
    let mut rng = Rng::new(
        seed ^ i.wrapping_mul(0x9E37_79B9) ^ generation.wrapping_mul(0x5851_F42D_4C95_7F2D),
    );
    let mut replies = 0;
    if generation > 0 && kind != Kind::String {
        Resp::command(out, 2).arg(b"DEL").arg(&key);
        replies += 1;
    }
    let total = value_size(&mut rng);
    // Collections split their value among 1 to 8 elements.
    let n = 1 + rng.below(8) as usize;
    let each = (total / n).max(8);
    match kind {
        Kind::String => {
            Resp::command(out, 3)
                .arg(b"SET")
                .arg(&key)
                .random(&mut rng, total);
        }
        Kind::Hash => {
            let mut command = Resp::command(out, 2 + 2 * n);
            command.arg(b"HSET").arg(&key);
            for field in 0..n {
                command.arg(format!("field{field}").as_bytes());
                command.random(&mut rng, each);
            }
        }
        Kind::List | Kind::Set => {
            let mut command = Resp::command(out, 2 + n);
            command
                .arg(if kind == Kind::List {
                    b"RPUSH"
                } else {
                    b"SADD"
                })
                .arg(&key);
            for _ in 0..n {
                command.random(&mut rng, each);
            }
        }
        Kind::SortedSet => {
            let mut command = Resp::command(out, 2 + 2 * n);
            command.arg(b"ZADD").arg(&key);
            for _ in 0..n {
                let score = (rng.unit() * 1e6).to_string();
                command.arg(score.as_bytes());
                command.random(&mut rng, each);
            }
        }
        Kind::Stream => {
            for _ in 0..STREAM_ENTRIES {
                let sensor = 16 + rng.below(64) as usize;
                Resp::command(out, 7)
                    .arg(b"XADD")
                    .arg(&key)
                    .arg(b"*")
                    .arg(b"sensor")
                    .random(&mut rng, sensor)
                    .arg(b"reading")
                    .random(&mut rng, 48);
            }
            replies += STREAM_ENTRIES as usize;
            Resp::command(out, 5)
                .arg(b"XGROUP")
                .arg(b"CREATE")
                .arg(&key)
                .arg(b"readers")
                .arg(b"0");
            // Some entries delivered and not acknowledged: a pending list.
            Resp::command(out, 9)
                .arg(b"XREADGROUP")
                .arg(b"GROUP")
                .arg(b"readers")
                .arg(b"reader-1")
                .arg(b"COUNT")
                .arg(b"100")
                .arg(b"STREAMS")
                .arg(&key)
                .arg(b">");
            replies += 2;
            return replies;
        }
    }
    replies += 1;
    // One key in ten expires, far in the future.
    if rng.below(10) == 0 {
        let at = 4_102_444_800_000u64 + rng.below(1 << 30);
        Resp::command(out, 3)
            .arg(b"PEXPIREAT")
            .arg(&key)
            .arg(at.to_string().as_bytes());
        replies += 1;
    }
    replies
}

// ---------------------------------------------------------------------------
// Talking to the server

/// Replies of RESP2, skipped whole and counted; an error reply fails.
#[derive(Default)]
struct Replies {
    buf: Vec<u8>,
    seen: usize,
}

impl Replies {
    /// The length of the reply at `pos`, `Ok(None)` if incomplete.
    fn skip(buf: &[u8], pos: usize) -> Result<Option<usize>, String> {
        let Some(line_end) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = &buf[pos + 1..pos + line_end];
        let after = pos + line_end + 2;
        let number = || -> Result<i64, String> {
            std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad reply line {}", String::from_utf8_lossy(line)))
        };
        match buf.get(pos) {
            Some(b'+' | b':') => Ok(Some(after - pos)),
            Some(b'-') => Err(format!(
                "the server said: {}",
                String::from_utf8_lossy(line)
            )),
            Some(b'$') => {
                let len = number()?;
                if len < 0 {
                    return Ok(Some(after - pos));
                }
                let end = after + len as usize + 2;
                Ok((end <= buf.len()).then_some(end - pos))
            }
            Some(b'*') => {
                let n = number()?;
                let mut at = after;
                for _ in 0..n.max(0) {
                    match Self::skip(buf, at)? {
                        Some(len) => at += len,
                        None => return Ok(None),
                    }
                }
                Ok(Some(at - pos))
            }
            _ => Err("not a RESP reply".into()),
        }
    }

    /// Takes `bytes` read from the server.
    fn take(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.buf.extend_from_slice(bytes);
        let mut pos = 0;
        while pos < self.buf.len() {
            match Self::skip(&self.buf, pos)? {
                Some(len) => {
                    pos += len;
                    self.seen += 1;
                }
                None => break,
            }
        }
        self.buf.drain(..pos);
        Ok(())
    }
}

/// Writes keys `keys` (generation `generation`) over one pipelined
/// connection, values made on a blocking thread, replies read as they come
/// and any error reply a failure; the bytes of commands sent.
async fn pipeline(port: u16, keys: Vec<u64>, seed: u64, generation: u64) -> AnyResult<u64> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (mut read, mut write) = stream.into_split();
    let (count_tx, count_rx) = tokio::sync::oneshot::channel::<usize>();
    let reader = tokio::spawn(async move {
        let mut replies = Replies::default();
        let mut buf = vec![0u8; 1 << 20];
        let mut count_rx = count_rx;
        let mut expected = None;
        loop {
            if let Some(expected) = expected
                && replies.seen >= expected
            {
                return Ok::<usize, String>(replies.seen);
            }
            tokio::select! {
                n = read.read(&mut buf) => {
                    let n = n.map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err("the server closed the connection".into());
                    }
                    replies.take(&buf[..n])?;
                }
                count = &mut count_rx, if expected.is_none() => {
                    expected = Some(count.map_err(|e| e.to_string())?);
                }
            }
        }
    });
    let (batch_tx, mut batch_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    // Generating the values is most of the work: on a core of its own.
    let generator = tokio::task::spawn_blocking(move || {
        let mut replies = 0;
        let mut out = Vec::with_capacity(4 << 20);
        for i in keys {
            replies += write_key(&mut out, seed, i, generation);
            if out.len() >= 2 << 20 {
                let full = std::mem::replace(&mut out, Vec::with_capacity(4 << 20));
                if batch_tx.blocking_send(full).is_err() {
                    return replies;
                }
            }
        }
        let _ = batch_tx.blocking_send(out);
        replies
    });
    let mut sent = 0u64;
    while let Some(batch) = batch_rx.recv().await {
        write.write_all(&batch).await?;
        sent += batch.len() as u64;
    }
    let replies = generator.await?;
    let _ = count_tx.send(replies);
    reader.await??;
    Ok(sent)
}

async fn fill(port: u16, data: &DataArgs) -> AnyResult<()> {
    let started = Instant::now();
    let sent = pipeline(port, (0..data.keys).collect(), data.seed, 0).await?;
    eprintln!(
        "filled {} keys: {} bytes of commands in {:.2} s",
        data.keys,
        sent,
        secs(started)
    );
    Ok(())
}

async fn change(port: u16, data: &DataArgs, fraction: f64) -> AnyResult<()> {
    let started = Instant::now();
    let mut rng = Rng::new(data.seed ^ 0xC4A7_6E5D);
    let keys: Vec<u64> = (0..data.keys).filter(|_| rng.unit() < fraction).collect();
    let changed = keys.len();
    let sent = pipeline(port, keys, data.seed, 1).await?;
    eprintln!(
        "rewrote {changed} keys ({:.1}%): {sent} bytes of commands in {:.2} s",
        100.0 * changed as f64 / data.keys as f64,
        secs(started)
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// drkit's side

async fn snapshot(port: u16, args: &RepoArgs) -> AnyResult<()> {
    let started = Instant::now();
    let repo = args.open_or_create(InitOptions::encrypted).await?;
    let snapshot = RdbSnapshot::new(COMPONENT.parse()?, RedisServer::new("127.0.0.1", port));
    let report = snapshot.backup_to(&repo).await?;
    for step in report.timeline.steps() {
        eprintln!("{}: {:.2} s", step.name, step.duration().as_secs_f64());
    }
    let details = RdbSnapshotDetails::of(&report.manifest)?;
    let seconds = secs(started);
    eprintln!(
        "snapshot {}: {} keys, RDB {} of {} bytes ({}); {:.2} s in all, {:.0} MB/s, {:.0} keys/s",
        report.manifest.id,
        details.counts.keys(),
        details.rdb_version,
        details.bytes,
        details.framing,
        seconds,
        details.bytes as f64 / seconds / 1e6,
        details.counts.keys() as f64 / seconds,
    );
    Ok(())
}

async fn verify(file: &std::path::Path) -> AnyResult<()> {
    let started = Instant::now();
    let summary = dr_redis::verify_file(file).await?;
    let seconds = secs(started);
    eprintln!(
        "verified RDB {} from Redis {}: {} keys, {} bytes in {:.2} s, {:.0} MB/s, {:.0} keys/s",
        summary.rdb_version,
        summary.redis_version.as_deref().unwrap_or("?"),
        summary.counts.keys(),
        summary.bytes,
        seconds,
        summary.bytes as f64 / seconds / 1e6,
        summary.counts.keys() as f64 / seconds,
    );
    Ok(())
}

async fn restore(port: u16, args: &RepoArgs, single_pass: bool) -> AnyResult<()> {
    let started = Instant::now();
    let repo = args.open_or_create(InitOptions::encrypted).await?;
    let restore = RdbRestore::new(COMPONENT.parse()?, RedisServer::new("127.0.0.1", port))
        .check_first(!single_pass);
    let target = RecoveryTarget::Latest;
    let objectives = Objectives::new("1h".parse()?, "1h".parse()?);
    let (report, counts) = restore
        .restore_counted(RestoreRequest::new(&repo, &target, objectives))
        .await?;
    for step in report.timeline.steps() {
        eprintln!("{}: {:.2} s", step.name, step.duration().as_secs_f64());
    }
    let seconds = secs(started);
    eprintln!(
        "restored {} keys ({} expired, not written) in {:.2} s, {:.0} keys/s",
        counts.restored,
        counts.expired,
        seconds,
        counts.restored as f64 / seconds,
    );
    Ok(())
}

async fn restore_commands(file: &std::path::Path, out: &std::path::Path) -> AnyResult<()> {
    let mut reader = RdbReader::new(tokio::fs::File::open(file).await?);
    let mut writer =
        tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(out).await?);
    let now = jiff::Timestamp::now().as_millisecond();
    let mut version = 0;
    let (mut written, mut expired) = (0u64, 0u64);
    let mut command = Vec::new();
    while let Some(event) = reader.next_event().await? {
        match event {
            Event::Header(header) => version = header.version,
            Event::Key(key) => {
                if key.expire_at_ms.is_some_and(|at| at <= now) {
                    expired += 1;
                    continue;
                }
                let payload = DumpPayload::from_key(&key, version);
                let ttl = key.expire_at_ms.unwrap_or(0).to_string();
                command.clear();
                let args: [&[u8]; 5] = [
                    b"RESTORE",
                    &key.key,
                    ttl.as_bytes(),
                    payload.as_bytes(),
                    b"ABSTTL",
                ];
                command.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
                for arg in args {
                    command.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                    command.extend_from_slice(arg);
                    command.extend_from_slice(b"\r\n");
                }
                writer.write_all(&command).await?;
                written += 1;
            }
            _ => {}
        }
    }
    writer.flush().await?;
    eprintln!("{written} RESTORE commands ({expired} expired keys left out)");
    Ok(())
}
