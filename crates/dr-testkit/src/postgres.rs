//! PostgreSQL on loopback: `initdb` into a temp dir, a free port, replication
//! enabled; replicas by `pg_basebackup`; stop, restart and kill -9.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{Error, Result};
use crate::process::{
    RunAs, ServerProcess, free_port, is_executable, kit_dir, on_path, port_was_taken, run,
    wait_ready,
};

/// The superuser every kit instance has.
pub const SUPERUSER: &str = "postgres";

const PACKAGE: &str = "postgresql";

/// How clients over TCP authenticate (local socket connections are always trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Auth {
    /// No password.
    Trust,
    /// MD5 password hashes.
    Md5,
    /// SCRAM-SHA-256, PostgreSQL's default.
    ScramSha256,
}

/// How to set up a kit PostgreSQL.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// TCP authentication (default SCRAM-SHA-256).
    pub auth: Auth,
    /// The superuser's password.
    pub password: String,
    /// `fsync` (default off: tests crash processes, not machines).
    pub fsync: bool,
    /// Data page checksums (default on).
    pub data_checksums: bool,
    /// Extra `postgresql.conf` lines, such as `("synchronous_commit", "remote_apply")`.
    pub settings: Vec<(String, String)>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            auth: Auth::ScramSha256,
            password: "drkit-test-password".into(),
            fsync: false,
            data_checksums: true,
            settings: Vec::new(),
        }
    }
}

impl PostgresOptions {
    /// Sets the authentication method.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets the superuser password.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = password.into();
        self
    }

    /// Turns fsync on or off.
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }

    /// Adds a `postgresql.conf` setting.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// Where PostgreSQL's server binaries are.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    dir: PathBuf,
}

impl PgBinaries {
    /// Finds the binaries: `pg_config --bindir`, then PATH, then Debian's
    /// `/usr/lib/postgresql/<newest>/bin`.
    ///
    /// # Errors
    /// [`Error::MissingBinary`] naming the package to install.
    pub fn find() -> Result<Self> {
        let from_pg_config = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        let from_path = on_path("initdb").and_then(|p| p.parent().map(Path::to_owned));
        let debian = newest_debian_bindir();
        [from_pg_config, from_path, debian]
            .into_iter()
            .flatten()
            .find(|dir| is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres")))
            .map(|dir| Self { dir })
            .ok_or_else(|| Error::MissingBinary {
                binary: "initdb".into(),
                hint: format!(
                    "install PostgreSQL's server (Debian: apt-get install -y {PACKAGE}); \
                     the kit looks in `pg_config --bindir`, PATH and /usr/lib/postgresql/*/bin"
                ),
            })
    }

    /// The path of one binary, such as `pg_basebackup`.
    pub fn path(&self, binary: &str) -> PathBuf {
        self.dir.join(binary)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A kit directory waiting for a restored data directory: see
/// [`Postgres::restore_slot`]. Dropping it removes the directory.
#[derive(Debug)]
pub struct RestoreSlot {
    // Field order: a server started on the directory stops before it goes.
    started_elsewhere: StopOnDrop,
    dir: TempDir,
    options: PostgresOptions,
    bin: PgBinaries,
    run_as: RunAs,
    port: u16,
}

impl RestoreSlot {
    /// Where the data directory goes (it does not exist yet).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A free TCP port, chosen when the slot was made, for a server that
    /// something else starts on the data directory (such as
    /// `dr_postgres::PgCtl`). A server started in the slot is stopped when
    /// the slot is dropped.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A directory for the Unix socket of a server started in the slot.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The server binaries.
    pub fn binaries(&self) -> &PgBinaries {
        &self.bin
    }

    /// A tokio-postgres config for `dbname` as the superuser over TCP on
    /// 127.0.0.1 and [`RestoreSlot::port`], with the backed-up server's
    /// password.
    pub fn config(&self, dbname: &str) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(SUPERUSER)
            .password(&self.options.password)
            .dbname(dbname)
            .connect_timeout(Duration::from_secs(5));
        config
    }

    /// The user and group the server will run as, if not the current ones:
    /// the restored files must belong to them.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.run_as.ids()
    }

    /// Starts PostgreSQL on the restored data directory and waits until it
    /// accepts queries (in recovery, once it is consistent).
    ///
    /// # Errors
    /// The server did not start (the error holds its log).
    pub async fn start(self) -> Result<Postgres> {
        let RestoreSlot {
            started_elsewhere,
            dir,
            options,
            bin,
            run_as,
            port: _,
        } = self;
        // Nothing runs on the directory yet; from here the kit server owns it.
        drop(started_elsewhere);
        let mut pg = Postgres {
            process: None,
            port: 0,
            options,
            bin,
            run_as,
            dir,
        };
        pg.launch().await?;
        Ok(pg)
    }
}

/// Stops a server that something else started on a slot's data directory
/// (an immediate shutdown, as a kit server's drop does).
#[derive(Debug)]
struct StopOnDrop {
    pidfile: PathBuf,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let pidfile = &self.pidfile;
        let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok())
        else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(pid);
        if nix::sys::signal::kill(pid, Signal::SIGQUIT).is_err() {
            return;
        }
        // Not our child: wait until it is gone (its pid file removed, or
        // the process no longer there).
        for _ in 0..300 {
            if !pidfile.exists() || nix::sys::signal::kill(pid, None).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
    }
}

fn newest_debian_bindir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// A PostgreSQL server on 127.0.0.1, owning its process and its temp dir.
/// Dropping it shuts the server down and removes the directory.
///
/// ```no_run
/// # async fn demo() -> dr_testkit::Result<()> {
/// let pg = dr_testkit::Postgres::start().await?;
/// let client = pg.connect("postgres").await?;
/// let row = client.query_one("SELECT 1 + 1", &[]).await?;
/// assert_eq!(row.get::<_, i32>(0), 2);
/// let replica = pg.start_replica().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Postgres {
    // Field order: the process is stopped before the directory is removed.
    process: Option<ServerProcess>,
    port: u16,
    options: PostgresOptions,
    bin: PgBinaries,
    run_as: RunAs,
    dir: TempDir,
}

impl Postgres {
    /// `initdb` and start a server with the default options.
    ///
    /// # Errors
    /// PostgreSQL is not installed, or did not start (the error holds its log).
    pub async fn start() -> Result<Self> {
        Self::start_with(PostgresOptions::default()).await
    }

    /// `initdb` and start a server.
    ///
    /// # Errors
    /// As [`Postgres::start`].
    pub async fn start_with(options: PostgresOptions) -> Result<Self> {
        let bin = PgBinaries::find()?;
        let run_as = RunAs::unprivileged(SUPERUSER, PACKAGE)?;
        let dir = kit_dir(&run_as)?;
        let pwfile = dir.path().join("pwfile");
        write_file(&pwfile, &options.password)?;
        run_as.chown(&pwfile)?;

        let method = match options.auth {
            Auth::Trust => "trust",
            Auth::Md5 => "md5",
            Auth::ScramSha256 => "scram-sha-256",
        };
        let mut initdb = tokio::process::Command::new(bin.path("initdb"));
        initdb
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--auth-local=trust", &format!("--auth-host={method}")])
            .current_dir(dir.path());
        if options.data_checksums {
            initdb.arg("--data-checksums");
        }
        run_as.apply_tokio(&mut initdb);
        run(initdb).await?;
        std::fs::remove_file(&pwfile).map_err(|e| Error::io("removing pwfile", e))?;

        let mut conf = String::from(
            "\n# dr-testkit\nwal_level = replica\nmax_wal_senders = 10\nmax_replication_slots = 10\n\
             hot_standby = on\nwal_log_hints = on\nshared_buffers = 64MB\nmax_connections = 50\n\
             log_line_prefix = '%m [%p] '\n",
        );
        if options.auth == Auth::Md5 {
            conf.push_str("password_encryption = md5\n");
        }
        conf.push_str(&format!(
            "fsync = {}\n",
            if options.fsync { "on" } else { "off" }
        ));
        for (name, value) in &options.settings {
            conf.push_str(&format!("{name} = '{}'\n", value.replace('\'', "''")));
        }
        append_file(&dir.path().join("data/postgresql.conf"), &conf)?;

        let mut pg = Self {
            process: None,
            port: 0,
            options,
            bin,
            run_as,
            dir,
        };
        if pg.options.auth == Auth::Md5 {
            // initdb hashed the password with SCRAM; md5 needs it re-hashed.
            pg.launch().await?;
            let client = pg.connect("postgres").await?;
            client
                .batch_execute(&format!(
                    "SET password_encryption = 'md5'; ALTER USER {SUPERUSER} PASSWORD '{}'",
                    pg.options.password.replace('\'', "''")
                ))
                .await?;
        } else {
            pg.launch().await?;
        }
        Ok(pg)
    }

    /// A streaming replica of this server (`pg_basebackup -R`), started and
    /// connected. It shares this server's options.
    ///
    /// # Errors
    /// The base backup failed or the replica did not start.
    pub async fn start_replica(&self) -> Result<Postgres> {
        let dir = kit_dir(&self.run_as)?;
        let data = dir.path().join("data");
        let mut basebackup = self.command("pg_basebackup");
        basebackup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
            ])
            .arg("-D")
            .arg(&data)
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .env("PGPASSWORD", &self.options.password)
            .current_dir(dir.path());
        run(basebackup).await?;
        let mut replica = Postgres {
            process: None,
            port: 0,
            options: self.options.clone(),
            bin: self.bin.clone(),
            run_as: self.run_as.clone(),
            dir,
        };
        replica.launch().await?;
        Ok(replica)
    }

    /// An empty kit directory for a data directory that something else
    /// fills, such as a point-in-time restore; start a server on it with
    /// [`RestoreSlot::start`]. `options` must match the backed-up server's
    /// (the password is the superuser's there).
    ///
    /// # Errors
    /// PostgreSQL is not installed, or the temp dir could not be made.
    pub fn restore_slot(options: PostgresOptions) -> Result<RestoreSlot> {
        let bin = PgBinaries::find()?;
        let run_as = RunAs::unprivileged(SUPERUSER, PACKAGE)?;
        let dir = kit_dir(&run_as)?;
        Ok(RestoreSlot {
            started_elsewhere: StopOnDrop {
                pidfile: dir.path().join("data/postmaster.pid"),
            },
            dir,
            options,
            bin,
            run_as,
            port: free_port(None)?,
        })
    }

    /// Starts the server on a fresh free port and waits until it accepts queries.
    async fn launch(&mut self) -> Result<()> {
        let mut last_error = None;
        for attempt in 0..5 {
            // A restart keeps its port where it can: replicas and peers point at it.
            let port = if attempt == 0 && self.port != 0 {
                self.port
            } else {
                free_port(None)?
            };
            let log = self.dir.path().join("postgres.log");
            let mut command = Command::new(self.bin.path("postgres"));
            command
                .arg("-D")
                .arg(self.data_dir())
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .arg("-k")
                .arg(self.socket_dir())
                .current_dir(self.dir.path());
            self.run_as.apply(&mut command);
            let offset = std::fs::metadata(&log).map_or(0, |m| m.len());
            let mut process = ServerProcess::spawn(command, &log, Signal::SIGQUIT)?;
            let config = self.config_for(port, "postgres");
            let ready = wait_ready(&mut process, "PostgreSQL", Duration::from_secs(60), || {
                let config = config.clone();
                async move { probe(&config).await }
            })
            .await;
            match ready {
                Ok(()) => {
                    self.port = port;
                    self.process = Some(process);
                    return Ok(());
                }
                Err(e) => {
                    let new_log = std::fs::read_to_string(&log).unwrap_or_default();
                    let new_log = new_log.get(offset as usize..).unwrap_or_default();
                    drop(process);
                    if !port_was_taken(new_log) {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Server {
            server: "PostgreSQL".into(),
            reason: "no free port".into(),
        }))
    }

    /// The TCP port (changes on restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.options.password
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The Unix socket directory.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The kit's temp dir holding the data directory and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server binaries in use.
    pub fn binaries(&self) -> &PgBinaries {
        &self.bin
    }

    /// The postmaster's pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// A libpq-style connection string for `dbname` as the superuser over TCP.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} password={} dbname={dbname}",
            self.port, self.options.password
        )
    }

    /// A tokio-postgres config for `dbname` as the superuser over TCP.
    pub fn config(&self, dbname: &str) -> Config {
        self.config_for(self.port, dbname)
    }

    fn config_for(&self, port: u16, dbname: &str) -> Config {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user(SUPERUSER)
            .password(&self.options.password)
            .dbname(dbname)
            .connect_timeout(Duration::from_secs(5));
        config
    }

    /// Connects to `dbname` as the superuser; the connection runs on a spawned task.
    ///
    /// # Errors
    /// The server refused or is down.
    pub async fn connect(&self, dbname: &str) -> Result<Client> {
        let (client, connection) = self.config(dbname).connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A command running one of PostgreSQL's binaries as the server's OS user
    /// (for `pg_basebackup`, `pgbench`, `pg_ctl`, ...).
    pub fn command(&self, binary: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.bin.path(binary));
        command.current_dir(self.dir.path());
        self.run_as.apply_tokio(&mut command);
        command
    }

    /// A fast shutdown (SIGINT), waiting for it to finish.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Signal::SIGINT, Duration::from_secs(30)).await;
        }
    }

    /// Starts the server again on its data directory (after `stop` or `kill9`),
    /// running crash recovery if needed.
    ///
    /// # Errors
    /// The server did not start.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await;
        self.launch().await
    }

    /// Kills the postmaster and every backend with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9();
        }
    }

    /// Promotes a replica and waits until it accepts writes.
    ///
    /// # Errors
    /// The server is not a replica or did not finish promoting within a minute.
    pub async fn promote(&self) -> Result<()> {
        let client = self.connect("postgres").await?;
        client.execute("SELECT pg_promote(true, 60)", &[]).await?;
        let in_recovery: bool = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await?
            .get(0);
        if in_recovery {
            return Err(Error::Server {
                server: "PostgreSQL".into(),
                reason: "still in recovery after pg_promote".into(),
            });
        }
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGQUIT, an immediate shutdown, lets the postmaster remove its shared memory.
        self.process.take();
    }
}

async fn probe(config: &Config) -> std::result::Result<(), String> {
    let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    let task = tokio::spawn(connection);
    let result = client
        .simple_query("SELECT 1")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    drop(client);
    let _ = task.await;
    result
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn append_file(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Error::io(format!("appending to {}", path.display()), e))
}
