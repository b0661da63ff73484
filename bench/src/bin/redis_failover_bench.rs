//! `redis_failover_bench`: the drkit side of `scripts/bench redis-failover`
//! (see BENCHMARKS.md), and the clients that time every tool alike.
//!
//! ```text
//! redis_failover_bench monitor (--members <name=port,...> | --cluster <port,...> --shard <port,...>)
//!                              [--interval-ms 500] [--timeout-ms 500] [--failures 3]
//! redis_failover_bench write   --mode <standalone|sentinel|cluster> --nodes <port,...>
//!                              --acked <file> --stop <file> [--interval-ms 20] [--load-rate 2000]
//! redis_failover_bench check   --mode <...> --nodes <port,...> --acked <file>
//! redis_failover_bench shard   --nodes <port,...>
//! redis_failover_bench archive --port <master> --replica <port> --repo <dir>
//!                              [--seconds 20] [--rate 5000] [--samples <file>]
//! ```
//!
//! - `monitor` runs a [`dr_core::Monitor`] that probes every interval and
//!   fails over by itself after that many failed probes in a row, under a
//!   lease (a [`Repository`] in memory), with
//!   [`FailoverRequest::old_primary_known_dead`] and [`PauseWrites`] as the
//!   fence: over a [`RedisFailover`] of a standalone master and its replicas
//!   (`--members`), or over a [`ClusterFailover`] scoped to the shard that
//!   serves the writer's key (`--cluster`, the seeds, and `--shard`, that
//!   shard's nodes, for the fence). It prints `ready` once it has seen the
//!   primary, then every event with its Unix time, until killed.
//! - `write` writes `SADD {fbench}:acked <id>` every interval (the ids 1, 2,
//!   …) and, on a connection of its own, about `--load-rate` more writes a
//!   second (pipelined `SET`s of 200 bytes to 10,000 keys of the same hash
//!   tag), both through a client that follows the master the way each kind
//!   of client does: `standalone` asks every node `ROLE` and uses the one
//!   that says `master`; `sentinel` asks the sentinels (`--nodes` are
//!   theirs) `SENTINEL GET-MASTER-ADDR-BY-NAME mymaster` and checks the
//!   answer with `ROLE`; `cluster` follows `MOVED` and, when the node it
//!   writes to fails, reads the slot map again (`CLUSTER SLOTS`) from the
//!   first node that answers. Each acknowledged id goes to `--acked` as
//!   `<id> <began> <ended>` (Unix seconds), until the file `--stop` exists.
//!   Every connection attempt and reply may take 1 s.
//! - `check` reads the ids acknowledged from `--acked` and prints `<lost>
//!   <acknowledged>`: how many of them the master (found as `write` finds
//!   it) does not have, and of how many.
//! - `shard` prints the port of the Cluster master that serves the
//!   writer's key, then those of its replicas.
//! - `archive` runs a [`CommandArchiver`] (200 ms, the default, between
//!   records; segment journals in the repository) on the master into a
//!   repository, writes `--rate` `SET`s a second for `--seconds`, and every
//!   10 ms samples the master's `master_repl_offset` and the offset the
//!   archiver acknowledged (its `slaveN:…,port=0,…` line of the master's
//!   `INFO replication`: the archiver acknowledges only what is durable,
//!   and advertises no port), then the replica's own `slave_repl_offset`
//!   (what it has applied; read last, so never in our favour). The lag of a
//!   sample is the time until the first sample at which the consumer's
//!   offset reached the master's offset of that sample (as `pg_bench lag`
//!   computes it); it prints `<name> <p50> <p99> <max> <samples>
//!   <unresolved>` in seconds for `ours` and `replica`, and with
//!   `--samples` writes every sample to that file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::{Parser, Subcommand, ValueEnum};
use dr_core::{
    FailoverMode, FailoverRequest, LossLimit, Monitor, MonitorEvent, MonitorOptions, Objectives,
};
use dr_redis::{ClusterFailover, CommandArchiver, PauseWrites, RedisFailover, RedisServer};
use dr_storage::{InitOptions, KdfParams, MemoryBackend, Repository, Secret};
use drkit_bench::{AnyResult, RepoArgs, secs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The key every recorded write adds its id to; its hash tag decides the
/// Cluster slot, and so the shard, the benchmark kills the master of.
const ACKED_KEY: &str = "{fbench}:acked";
/// The Sentinel name of the master.
const SENTINEL_NAME: &str = "mymaster";
/// How long connecting, or a reply, may take for the writer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// drkit's side of `scripts/bench redis-failover`.
#[derive(Parser)]
#[command(name = "redis_failover_bench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How a client finds the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Asks every node `ROLE`
    Standalone,
    /// Asks the sentinels
    Sentinel,
    /// Follows `MOVED` and the slot map
    Cluster,
}

/// The nodes a client knows (always on 127.0.0.1).
#[derive(Debug, Clone, clap::Args)]
struct ClientArgs {
    /// How the client finds the master
    #[arg(long, value_enum)]
    mode: Mode,
    /// The nodes' ports (the sentinels', for `sentinel`)
    #[arg(long, value_delimiter = ',', required = true)]
    nodes: Vec<u16>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs drkit's monitor, failing over by itself, until killed.
    Monitor(MonitorArgs),
    /// Writes through a client that follows the master, until told to stop.
    Write {
        #[command(flatten)]
        client: ClientArgs,
        /// Where acknowledged ids go
        #[arg(long)]
        acked: PathBuf,
        /// Writing stops once this file exists
        #[arg(long)]
        stop: PathBuf,
        /// Time between recorded writes
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        /// Further writes a second, on a connection of their own
        #[arg(long, default_value_t = 2000)]
        load_rate: u64,
    },
    /// Counts the acknowledged ids the master no longer has.
    Check {
        #[command(flatten)]
        client: ClientArgs,
        /// The ids acknowledged, as `write` wrote them
        #[arg(long)]
        acked: PathBuf,
    },
    /// Prints the port of the Cluster master serving the writer's key, then its replicas'.
    Shard {
        /// Any of the Cluster's nodes
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<u16>,
    },
    /// Archives the master's writes under load and measures the lag.
    Archive {
        /// The master's port
        #[arg(long)]
        port: u16,
        /// A plain replica's port, measured beside
        #[arg(long)]
        replica: u16,
        #[command(flatten)]
        repo: RepoArgs,
        /// Seconds of load
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Writes a second
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        /// Where the samples go (`time master ours replica`, tab-separated), if anywhere
        #[arg(long)]
        samples: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct MonitorArgs {
    /// A standalone master and its replicas: name=port, …
    #[arg(long, value_delimiter = ',', conflicts_with = "cluster")]
    members: Vec<String>,
    /// A Cluster's nodes (seeds): port, …
    #[arg(long, value_delimiter = ',', requires = "shard")]
    cluster: Vec<u16>,
    /// The nodes of the shard serving the writer's key (the fence's members)
    #[arg(long, value_delimiter = ',')]
    shard: Vec<u16>,
    /// Time between probes
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
    /// How long a probe may take
    #[arg(long, default_value_t = 500)]
    timeout_ms: u64,
    /// Failed probes in a row before failing over
    #[arg(long, default_value_t = 3)]
    failures: u32,
}

fn main() -> ExitCode {
    drkit_bench::main(|cli: Cli| {
        let runtime = drkit_bench::runtime()?;
        match cli.command {
            Command::Monitor(args) => runtime.block_on(monitor(args)),
            Command::Write {
                client,
                acked,
                stop,
                interval_ms,
                load_rate,
            } => runtime.block_on(write(client, acked, stop, interval_ms, load_rate)),
            Command::Check { client, acked } => runtime.block_on(check(client, acked)),
            Command::Shard { nodes } => runtime.block_on(shard(nodes)),
            Command::Archive {
                port,
                replica,
                repo,
                seconds,
                rate,
                samples,
            } => runtime.block_on(archive(port, replica, &repo, seconds, rate, samples)),
        }
    })
}

/// Unix seconds now.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn loopback(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------
// A minimal RESP2 client

/// A reply of RESP2.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn text(&self) -> Option<String> {
        match self {
            Self::Status(s) => Some(s.clone()),
            Self::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The reply at the start of `buf` and its length; `None` if incomplete.
    fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, String> {
        let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[1..end]).into_owned();
        let after = end + 2;
        let number = || -> Result<i64, String> {
            line.parse()
                .map_err(|_| format!("a bad reply line: {line:?}"))
        };
        match buf.first() {
            Some(b'+') => Ok(Some((Self::Status(line), after))),
            Some(b'-') => Ok(Some((Self::Error(line), after))),
            Some(b':') => Ok(Some((Self::Int(number()?), after))),
            Some(b'$') => {
                let Ok(len) = usize::try_from(number()?) else {
                    return Ok(Some((Self::Bulk(None), after)));
                };
                if buf.len() < after + len + 2 {
                    return Ok(None);
                }
                let bytes = buf[after..after + len].to_vec();
                Ok(Some((Self::Bulk(Some(bytes)), after + len + 2)))
            }
            Some(b'*') => {
                let Ok(n) = usize::try_from(number()?) else {
                    return Ok(Some((Self::Array(None), after)));
                };
                let mut items = Vec::with_capacity(n.min(1024));
                let mut at = after;
                for _ in 0..n {
                    match Self::parse(&buf[at..])? {
                        Some((item, len)) => {
                            items.push(item);
                            at += len;
                        }
                        None => return Ok(None),
                    }
                }
                Ok(Some((Self::Array(Some(items)), at)))
            }
            _ => Err("not a RESP reply".into()),
        }
    }
}

/// Appends one command in RESP.
fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// One connection; every call within [`CLIENT_TIMEOUT`] unless told otherwise.
struct Conn {
    addr: String,
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    async fn connect(addr: &str, timeout: Duration) -> AnyResult<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {addr}: no answer within {timeout:?}"))?
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            addr: addr.to_owned(),
            stream,
            buf: Vec::new(),
            timeout,
        })
    }

    /// Sends `commands` (RESP, `count` of them) and reads as many replies.
    async fn pipeline(&mut self, commands: &[u8], count: usize) -> AnyResult<Vec<Reply>> {
        let addr = self.addr.clone();
        tokio::time::timeout(self.timeout, async {
            self.stream.write_all(commands).await?;
            let mut replies = Vec::with_capacity(count);
            let mut chunk = vec![0u8; 64 << 10];
            while replies.len() < count {
                match Reply::parse(&self.buf)? {
                    Some((reply, len)) => {
                        self.buf.drain(..len);
                        replies.push(reply);
                    }
                    None => {
                        let n = self.stream.read(&mut chunk).await?;
                        if n == 0 {
                            return Err("the server closed the connection".into());
                        }
                        self.buf.extend_from_slice(&chunk[..n]);
                    }
                }
            }
            Ok::<_, drkit_bench::AnyError>(replies)
        })
        .await
        .map_err(|_| format!("{addr}: no reply within {:?}", self.timeout))?
        .map_err(|e| format!("{addr}: {e}").into())
    }

    async fn call(&mut self, args: &[&[u8]]) -> AnyResult<Reply> {
        let mut out = Vec::new();
        command(&mut out, args);
        let mut replies = self.pipeline(&out, 1).await?;
        replies.pop().ok_or_else(|| "no reply".into())
    }
}

/// One call on a connection of its own.
async fn call_at(addr: &str, args: &[&[u8]]) -> AnyResult<Reply> {
    Conn::connect(addr, CLIENT_TIMEOUT).await?.call(args).await
}

/// Whether the server at `conn` says `ROLE` master.
async fn is_master(conn: &mut Conn) -> bool {
    matches!(conn.call(&[b"ROLE"]).await, Ok(Reply::Array(Some(items)))
        if items.first().and_then(Reply::text).as_deref() == Some("master"))
}

/// `host:port` from a two-element array (`[host, port]`, as Sentinel and
/// `CLUSTER SLOTS` give them).
fn address(items: &[Reply]) -> Option<String> {
    let host = items.first()?.text()?;
    let port = match items.get(1)? {
        Reply::Int(port) => port.to_string(),
        other => other.text()?,
    };
    let host = if host.is_empty() {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    Some(format!("{host}:{port}"))
}

/// A client that finds the master, as `mode` says, whenever its connection
/// fails.
struct Client {
    mode: Mode,
    nodes: Vec<String>,
    slot: u16,
    conn: Option<Conn>,
}

impl Client {
    fn new(args: &ClientArgs) -> Self {
        Self {
            mode: args.mode,
            nodes: args.nodes.iter().map(|&p| loopback(p)).collect(),
            slot: dr_redis::slot_of(ACKED_KEY.as_bytes()),
            conn: None,
        }
    }

    /// Where the master is, as this kind of client finds it.
    async fn find_master(&self) -> AnyResult<String> {
        match self.mode {
            Mode::Standalone => {
                for node in &self.nodes {
                    if let Ok(mut conn) = Conn::connect(node, CLIENT_TIMEOUT).await
                        && is_master(&mut conn).await
                    {
                        return Ok(node.clone());
                    }
                }
                Err("no node says ROLE master".into())
            }
            Mode::Sentinel => {
                let name = SENTINEL_NAME.as_bytes();
                for sentinel in &self.nodes {
                    let asked = &[&b"SENTINEL"[..], b"GET-MASTER-ADDR-BY-NAME", name];
                    if let Ok(Reply::Array(Some(items))) = call_at(sentinel, asked).await
                        && let Some(addr) = address(&items)
                    {
                        return Ok(addr);
                    }
                }
                Err("no sentinel named the master".into())
            }
            Mode::Cluster => {
                for node in &self.nodes {
                    if let Ok(Reply::Array(Some(ranges))) =
                        call_at(node, &[b"CLUSTER", b"SLOTS"]).await
                        && let Some(addr) = master_of_slot(&ranges, self.slot)
                    {
                        return Ok(addr);
                    }
                }
                Err("no node gave a slot map serving the key".into())
            }
        }
    }

    /// The connection to the master, made if there is none.
    async fn connection(&mut self) -> AnyResult<&mut Conn> {
        if self.conn.is_none() {
            let addr = self.find_master().await?;
            self.conn = Some(self.connect_to(&addr).await?);
        }
        self.conn.as_mut().ok_or_else(|| "no connection".into())
    }

    async fn connect_to(&self, addr: &str) -> AnyResult<Conn> {
        let mut conn = Conn::connect(addr, CLIENT_TIMEOUT).await?;
        // A Sentinel client checks that the master it was given is one.
        if self.mode == Mode::Sentinel && !is_master(&mut conn).await {
            return Err(format!("{addr}, named by the sentinels, is not a master").into());
        }
        Ok(conn)
    }

    /// Sends `commands` (`count` of them) to the master; an error reply
    /// counts as a failure. A Cluster client follows one `MOVED`.
    async fn send(&mut self, commands: &[u8], count: usize) -> AnyResult<Vec<Reply>> {
        for _ in 0..2 {
            let result = match self.connection().await {
                Ok(conn) => conn.pipeline(commands, count).await,
                Err(e) => Err(e),
            };
            let replies = match result {
                Ok(replies) => replies,
                Err(e) => {
                    self.conn = None;
                    return Err(e);
                }
            };
            let Some(Reply::Error(error)) = replies.iter().find(|r| matches!(r, Reply::Error(_)))
            else {
                return Ok(replies);
            };
            let moved = error
                .strip_prefix("MOVED ")
                .and_then(|rest| rest.split(' ').nth(1))
                .map(str::to_owned);
            match (self.mode, moved) {
                (Mode::Cluster, Some(addr)) => {
                    self.conn = None;
                    self.conn = Some(self.connect_to(&addr).await?);
                }
                _ => {
                    let error = error.clone();
                    self.conn = None;
                    return Err(error.into());
                }
            }
        }
        self.conn = None;
        Err("moved twice".into())
    }
}

/// The master serving `slot` in a `CLUSTER SLOTS` reply.
fn master_of_slot(ranges: &[Reply], slot: u16) -> Option<String> {
    ranges.iter().find_map(|range| {
        let Reply::Array(Some(items)) = range else {
            return None;
        };
        let (Some(Reply::Int(start)), Some(Reply::Int(end))) = (items.first(), items.get(1)) else {
            return None;
        };
        if !(*start..=*end).contains(&i64::from(slot)) {
            return None;
        }
        match items.get(2) {
            Some(Reply::Array(Some(master))) => address(master),
            _ => None,
        }
    })
}

// ---------------------------------------------------------------------------
// The writer

async fn write(
    client: ClientArgs,
    acked: PathBuf,
    stop: PathBuf,
    interval_ms: u64,
    load_rate: u64,
) -> AnyResult<()> {
    let interval = Duration::from_millis(interval_ms.max(1));
    let (stop_load, load_stopped) = tokio::sync::watch::channel(false);
    let load = (load_rate > 0)
        .then(|| tokio::spawn(load_writes(Client::new(&client), load_stopped, load_rate)));
    let mut writer = Client::new(&client);
    let mut out = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&acked)
        .await?;
    let (mut id, mut ok, mut failed) = (0u64, 0u64, 0u64);
    let mut last_error = String::new();
    while !tokio::fs::try_exists(&stop).await.unwrap_or(false) {
        id += 1;
        let began = now();
        let mut commands = Vec::new();
        command(
            &mut commands,
            &[b"SADD", ACKED_KEY.as_bytes(), id.to_string().as_bytes()],
        );
        match writer.send(&commands, 1).await {
            Ok(_) => {
                let ended = now();
                out.write_all(format!("{id} {began:.6} {ended:.6}\n").as_bytes())
                    .await?;
                out.flush().await?;
                ok += 1;
            }
            Err(e) => {
                failed += 1;
                let error = e.to_string();
                if error != last_error {
                    eprintln!("{:.6} write {id} failed: {error}", now());
                    last_error = error;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
    let _ = stop_load.send(true);
    if let Some(load) = load {
        let (sent, refused) = load.await?;
        eprintln!("load: {sent} writes acknowledged, {refused} batches failed");
    }
    eprintln!("writer: {ok} writes acknowledged, {failed} failed");
    Ok(())
}

/// About `rate` writes a second, in a batch every 10 ms, until told to
/// stop; the writes acknowledged and the batches that failed.
async fn load_writes(
    mut client: Client,
    stop: tokio::sync::watch::Receiver<bool>,
    rate: u64,
) -> (u64, u64) {
    let per_batch = rate.div_ceil(100).max(1);
    let value = vec![b'v'; 200];
    let (mut sent, mut failed, mut n) = (0u64, 0u64, 0u64);
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        ticks.tick().await;
        let mut commands = Vec::new();
        for _ in 0..per_batch {
            n += 1;
            let key = format!("{{fbench}}:load:{}", n % 10_000);
            command(&mut commands, &[b"SET", key.as_bytes(), &value]);
        }
        let count = usize::try_from(per_batch).unwrap_or(usize::MAX);
        match client.send(&commands, count).await {
            Ok(_) => sent += per_batch,
            Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    (sent, failed)
}

async fn check(client: ClientArgs, acked: PathBuf) -> AnyResult<()> {
    let text = tokio::fs::read_to_string(&acked).await?;
    let ids: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    let mut client = Client::new(&client);
    let mut commands = Vec::new();
    command(&mut commands, &[b"SMEMBERS", ACKED_KEY.as_bytes()]);
    let started = Instant::now();
    let members = loop {
        match client.send(&commands, 1).await {
            Ok(mut replies) => break replies.pop(),
            Err(e) if started.elapsed() > Duration::from_secs(30) => {
                return Err(format!("reading the acknowledged ids back: {e}").into());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let Some(Reply::Array(Some(members))) = members else {
        return Err(format!("SMEMBERS gave {members:?}").into());
    };
    let present: std::collections::HashSet<u64> = members
        .iter()
        .filter_map(|m| m.text()?.parse().ok())
        .collect();
    let lost = ids.iter().filter(|id| !present.contains(id)).count();
    println!("{lost} {}", ids.len());
    Ok(())
}

async fn shard(nodes: Vec<u16>) -> AnyResult<()> {
    let slot = dr_redis::slot_of(ACKED_KEY.as_bytes());
    for node in nodes.iter().map(|&p| loopback(p)) {
        let Ok(Reply::Array(Some(ranges))) = call_at(&node, &[b"CLUSTER", b"SLOTS"]).await else {
            continue;
        };
        for range in &ranges {
            let Reply::Array(Some(items)) = range else {
                continue;
            };
            let (Some(Reply::Int(start)), Some(Reply::Int(end))) = (items.first(), items.get(1))
            else {
                continue;
            };
            if !(*start..=*end).contains(&i64::from(slot)) {
                continue;
            }
            let ports: Vec<String> = items[2..]
                .iter()
                .filter_map(|node| match node {
                    Reply::Array(Some(node)) => match node.get(1) {
                        Some(Reply::Int(port)) => Some(port.to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            println!("{}", ports.join(" "));
            return Ok(());
        }
    }
    Err(format!("no node says who serves slot {slot}").into())
}

// ---------------------------------------------------------------------------
// drkit's monitor

async fn monitor(args: MonitorArgs) -> AnyResult<()> {
    let interval = Duration::from_millis(args.interval_ms);
    let timeout = Duration::from_millis(args.timeout_ms);
    let server = |port: u16| RedisServer::new("127.0.0.1", port).connect_timeout(timeout);
    let (failover, fenced): (Arc<dyn dr_core::Failover>, Vec<(String, RedisServer)>) =
        if args.cluster.is_empty() {
            let mut members = Vec::new();
            for member in &args.members {
                let (name, port) = member
                    .split_once('=')
                    .ok_or_else(|| format!("--members: {member:?} is not name=port"))?;
                members.push((name.to_owned(), server(port.parse()?)));
            }
            if members.is_empty() {
                return Err("give --members or --cluster".into());
            }
            let failover = RedisFailover::new("redis/bench".parse()?, members.clone());
            (Arc::new(failover), members)
        } else {
            let seeds = args.cluster.iter().map(|&p| server(p)).collect();
            let failover = ClusterFailover::new("redis-cluster/bench".parse()?, seeds)
                .shard_serving(dr_redis::slot_of(ACKED_KEY.as_bytes()));
            let shard = args.shard.iter().map(|&p| (loopback(p), server(p)));
            (Arc::new(failover), shard.collect())
        };
    let fence = Arc::new(PauseWrites::new(fenced, Duration::from_secs(30)));
    // The lease: a repository in memory, as one monitor needs it.
    let options = InitOptions::encrypted(Secret::password("lease")).kdf(KdfParams::INSECURE_FAST);
    let lease = Arc::new(Repository::init(Arc::new(MemoryBackend::new()), options).await?);
    let request = FailoverRequest::new(
        FailoverMode::Failover,
        Objectives::new("5m".parse()?, "1m".parse()?),
        LossLimit::Bytes(16 << 20),
    )
    .old_primary_known_dead();
    let options = MonitorOptions::new(interval, timeout, args.failures);
    let mut handle = Monitor::new(failover, options)
        .fail_over_automatically(request, fence, lease, "bench")
        .spawn();
    let mut ready = false;
    while let Some(event) = handle.next_event().await {
        let at = now();
        match event {
            MonitorEvent::PrimaryUp { name } => {
                println!("{at:.6} primary up: {name}");
                if !ready {
                    println!("ready");
                    ready = true;
                }
            }
            MonitorEvent::PrimaryDown {
                last_primary,
                failures,
            } => println!(
                "{at:.6} primary down: {} ({failures} in a row)",
                last_primary.as_deref().unwrap_or("none seen")
            ),
            MonitorEvent::FailedOver(outcome) => {
                let steps: Vec<String> = outcome
                    .report
                    .timeline
                    .steps()
                    .iter()
                    .map(|s| format!("{} {:.3} s", s.name, s.duration().as_secs_f64()))
                    .collect();
                println!(
                    "{at:.6} failed over to {}: expected loss {} bytes; {}",
                    outcome.plan.promote.name,
                    outcome
                        .plan
                        .expected_loss
                        .bytes
                        .map_or("unknown".to_owned(), |b| b.to_string()),
                    steps.join(", ")
                );
            }
            MonitorEvent::FailoverFailed { reason } => {
                println!("{at:.6} failover failed: {reason}");
            }
            MonitorEvent::Refenced { name, result } => {
                println!("{at:.6} refenced {name}: {result:?}");
            }
            other => println!("{at:.6} {other:?}"),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Archiving lag

/// One sample: when, the master's offset, the archiver's and the replica's.
struct Sample {
    time: f64,
    master: u64,
    consumers: [Option<u64>; 2],
}

/// A field of `INFO` text.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// The offset the master's `INFO replication` shows for the replica that
/// advertises `port` (the archiver advertises none: 0).
fn acked_offset(info: &str, port: u16) -> Option<u64> {
    let wanted = format!("port={port}");
    info.lines()
        .filter(|l| l.starts_with("slave"))
        .find(|l| l.split(',').any(|f| f == wanted))?
        .split(',')
        .find_map(|f| f.strip_prefix("offset="))?
        .trim()
        .parse()
        .ok()
}

async fn info_replication(conn: &mut Conn) -> AnyResult<String> {
    match conn.call(&[b"INFO", b"replication"]).await? {
        Reply::Bulk(Some(text)) => Ok(String::from_utf8_lossy(&text).into_owned()),
        other => Err(format!("INFO gave {other:?}").into()),
    }
}

async fn archive(
    port: u16,
    replica: u16,
    repo: &RepoArgs,
    seconds: u64,
    rate: u64,
    samples_file: Option<PathBuf>,
) -> AnyResult<()> {
    let repo = repo.open_or_create(InitOptions::encrypted).await?;
    let journals = repo
        .segment_journals()
        .ok_or("the repository keeps no segment journals")?;
    let archiver =
        CommandArchiver::new("redis/bench".parse()?, RedisServer::new("127.0.0.1", port));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let repo = Arc::new(repo);
    let running = {
        let repo = repo.clone();
        tokio::spawn(async move {
            archiver
                .run(repo.as_ref(), Some(&journals), repo.as_ref(), None, stop_rx)
                .await
        })
    };
    let mut master = Conn::connect(&loopback(port), CLIENT_TIMEOUT).await?;
    let mut replica_conn = Conn::connect(&loopback(replica), CLIENT_TIMEOUT).await?;
    // Until the archiver has stored the full synchronization and follows.
    let started = Instant::now();
    'caught_up: loop {
        // A write, so that the archiver has something to acknowledge.
        master.call(&[b"SET", b"{fbench}:probe", b"1"]).await?;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let info = info_replication(&mut master).await?;
            let offset = info_field(&info, "master_repl_offset").and_then(|o| o.parse().ok());
            if offset.is_some() && acked_offset(&info, 0) == offset {
                break 'caught_up;
            }
        }
        if running.is_finished() || started.elapsed() > Duration::from_secs(60) {
            return Err("the archiver did not catch up with the master within 60 s".into());
        }
    }
    eprintln!(
        "the archiver follows the master after {:.2} s",
        secs(started)
    );

    let (stop_load, load_stopped) = tokio::sync::watch::channel(false);
    let client = Client {
        mode: Mode::Standalone,
        nodes: vec![loopback(port)],
        slot: 0,
        conn: None,
    };
    let load = tokio::spawn(load_writes(client, load_stopped, rate));
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let load_started = now();
    let load_ends = load_started + seconds as f64;
    let mut load_ended = None;
    // Two seconds beyond the load, so that its last samples resolve.
    while now() < load_ends + 2.0 {
        ticks.tick().await;
        if load_ended.is_none() && now() >= load_ends {
            let _ = stop_load.send(true);
            load_ended = Some(now());
        }
        let time = now();
        let info = info_replication(&mut master).await?;
        let Some(offset) = info_field(&info, "master_repl_offset").and_then(|o| o.parse().ok())
        else {
            continue;
        };
        let ours = acked_offset(&info, 0);
        let theirs = info_field(
            &info_replication(&mut replica_conn).await?,
            "slave_repl_offset",
        )
        .and_then(|o| o.parse().ok());
        samples.push(Sample {
            time,
            master: offset,
            consumers: [ours, theirs],
        });
    }
    let (sent, failed) = load.await?;
    eprintln!(
        "load: {sent} writes in {seconds} s ({failed} batches failed); {} samples",
        samples.len()
    );
    let _ = stop_tx.send(true);
    let stopped = running.await??;
    eprintln!(
        "the archiver stopped at offset {} ({} snapshots taken)",
        stopped.archived.offset, stopped.snapshots_taken
    );
    if let Some(path) = samples_file {
        let mut text = String::from("time\tmaster\tours\treplica\n");
        let show = |o: Option<u64>| o.map_or("-".to_owned(), |o| o.to_string());
        for s in &samples {
            text.push_str(&format!(
                "{:.6}\t{}\t{}\t{}\n",
                s.time,
                s.master,
                show(s.consumers[0]),
                show(s.consumers[1])
            ));
        }
        tokio::fs::write(path, text).await?;
    }
    let to = load_ended.unwrap_or(load_ends);
    for (column, name) in ["ours", "replica"].iter().enumerate() {
        println!("{name} {}", lag_of(&samples, column, load_started, to));
    }
    Ok(())
}

/// `<p50> <p99> <max> <samples> <unresolved>` of consumer `column`'s lag
/// over the samples taken between `from` and `to`.
fn lag_of(samples: &[Sample], column: usize, from: f64, to: f64) -> String {
    let window: Vec<usize> = (0..samples.len())
        .filter(|&i| samples[i].time >= from && samples[i].time <= to)
        .collect();
    if window.is_empty() {
        return "- - - 0 0".to_owned();
    }
    let last = samples.last().map_or(to, |s| s.time);
    let mut lags = Vec::with_capacity(window.len());
    let mut unresolved = 0usize;
    // Offsets only grow, so a later sample's answer is never earlier.
    let mut j = window[0];
    for &k in &window {
        j = j.max(k);
        let wanted = samples[k].master;
        while j < samples.len() && samples[j].consumers[column].is_none_or(|d| d < wanted) {
            j += 1;
        }
        if j == samples.len() {
            unresolved += 1;
            lags.push(last - samples[k].time);
        } else {
            lags.push(samples[j].time - samples[k].time);
        }
    }
    lags.sort_by(f64::total_cmp);
    let rank = |p: f64| lags[((p * lags.len() as f64).ceil() as usize).clamp(1, lags.len()) - 1];
    format!(
        "{:.3} {:.3} {:.3} {} {unresolved}",
        rank(0.50),
        rank(0.99),
        lags[lags.len() - 1],
        lags.len()
    )
}
