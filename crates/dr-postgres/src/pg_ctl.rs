//! [`PgCtl`]: a ready [`StartServer`] that starts a restored data directory
//! with PostgreSQL's own `pg_ctl`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dr_core::async_trait;

use crate::restore::StartServer;

/// Starts PostgreSQL on a restored data directory with `pg_ctl start`, from
/// the given directory of server binaries, on the given port and Unix
/// socket directory, and waits until the server accepts connections (in
/// recovery, once it is consistent; [`PitrRestore`](crate::PitrRestore)
/// then waits for the promotion itself).
///
/// `pg_ctl` refuses to run as root: when the caller is root, it runs as the
/// OS user and group that own the data directory (give them to the restore
/// with [`PitrRestore::owner`](crate::PitrRestore::owner)), or as those set
/// with [`PgCtl::run_as`]. The server keeps running after the restore; stop
/// it with [`PgCtl::stop`] or `pg_ctl stop`.
///
/// ```no_run
/// use dr_postgres::{PgCtl, PitrRestore};
///
/// let mut connect = tokio_postgres::Config::new();
/// connect.user("postgres").dbname("postgres");
/// let server = PgCtl::new("/usr/lib/postgresql/15/bin", 5433, "/run/postgresql", connect)
///     .log_file("/var/log/postgresql/restored.log");
/// let restore = PitrRestore::new("postgres/main".parse()?, "/srv/pg/restored")
///     .owner(113, 120)
///     .start_with(server);
/// # Ok::<(), dr_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PgCtl {
    bindir: PathBuf,
    port: u16,
    socket_dir: PathBuf,
    connect: tokio_postgres::Config,
    listen_addresses: Option<String>,
    log_file: Option<PathBuf>,
    run_as: Option<(u32, u32)>,
    timeout: Duration,
}

impl PgCtl {
    /// Starts servers with `<bindir>/pg_ctl` on `port`, with their Unix
    /// socket in `socket_dir`. The server is connected to with `connect`
    /// (user, password, database), its port set to `port` and, where it
    /// names no host, its host set to `socket_dir`.
    pub fn new(
        bindir: impl Into<PathBuf>,
        port: u16,
        socket_dir: impl Into<PathBuf>,
        connect: tokio_postgres::Config,
    ) -> Self {
        Self {
            bindir: bindir.into(),
            port,
            socket_dir: socket_dir.into(),
            connect,
            listen_addresses: None,
            log_file: None,
            run_as: None,
            timeout: Duration::from_secs(300),
        }
    }

    /// The TCP addresses to listen on (`listen_addresses`, such as
    /// `127.0.0.1`); by default the restored configuration's.
    #[must_use]
    pub fn listen_addresses(mut self, addresses: impl Into<String>) -> Self {
        self.listen_addresses = Some(addresses.into());
        self
    }

    /// Where the server writes its log (`pg_ctl -l`); by default
    /// `pg_ctl.log` in the data directory. Its user must be able to write it.
    #[must_use]
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    /// Runs `pg_ctl` (and so the server) as this user and group, rather than
    /// as the data directory's owner when the caller is root.
    #[must_use]
    pub fn run_as(mut self, uid: u32, gid: u32) -> Self {
        self.run_as = Some((uid, gid));
        self
    }

    /// How long to wait for the server to start and accept connections
    /// (default five minutes; recovery to consistency comes first).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How to connect to the server started by this: `connect`'s user,
    /// password, database, options, application name, connect timeout and
    /// hosts (the socket directory where it names none), on `port`.
    pub fn config(&self) -> tokio_postgres::Config {
        // tokio-postgres adds ports to a list: a fresh config takes one.
        let from = &self.connect;
        let mut config = tokio_postgres::Config::new();
        if let Some(user) = from.get_user() {
            config.user(user);
        }
        if let Some(password) = from.get_password() {
            config.password(password);
        }
        if let Some(dbname) = from.get_dbname() {
            config.dbname(dbname);
        }
        if let Some(options) = from.get_options() {
            config.options(options);
        }
        if let Some(name) = from.get_application_name() {
            config.application_name(name);
        }
        if let Some(timeout) = from.get_connect_timeout() {
            config.connect_timeout(*timeout);
        }
        for host in from.get_hosts() {
            match host {
                tokio_postgres::config::Host::Tcp(name) => config.host(name),
                tokio_postgres::config::Host::Unix(path) => config.host_path(path),
            };
        }
        if from.get_hosts().is_empty() {
            config.host_path(&self.socket_dir);
        }
        config.port(self.port);
        config
    }

    /// Stops the server on `data_dir` (`pg_ctl stop -m fast`) and waits.
    ///
    /// # Errors
    /// [`dr_core::ErrorKind::Unavailable`] if `pg_ctl` could not be run or
    /// failed (with its output).
    pub async fn stop(&self, data_dir: &Path) -> dr_core::Result<()> {
        let mut command = self.command(data_dir)?;
        command.args(["stop", "-w", "-m", "fast", "-t"]);
        command.arg(self.timeout.as_secs().max(1).to_string());
        self.run(command, "stopping", data_dir).await
    }

    /// `pg_ctl` for `data_dir`, as the user it runs as.
    fn command(&self, data_dir: &Path) -> dr_core::Result<tokio::process::Command> {
        let mut command = tokio::process::Command::new(self.bindir.join("pg_ctl"));
        command
            .arg("-D")
            .arg(data_dir)
            .current_dir(data_dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.user_for(data_dir)? {
            command.uid(uid).gid(gid);
        }
        Ok(command)
    }

    /// The user and group to run as: those given, or when root, the owner
    /// of the data directory.
    fn user_for(&self, data_dir: &Path) -> dr_core::Result<Option<(u32, u32)>> {
        if self.run_as.is_some() {
            return Ok(self.run_as);
        }
        owner_when_root(
            data_dir,
            "give the restore an owner (PitrRestore::owner) or PgCtl a user (PgCtl::run_as)",
        )
    }

    async fn run(
        &self,
        mut command: tokio::process::Command,
        doing: &str,
        data_dir: &Path,
    ) -> dr_core::Result<()> {
        let unavailable = |reason: String| {
            dr_core::Error::other(
                dr_core::ErrorKind::Unavailable,
                format!("{doing} PostgreSQL on {} with pg_ctl", data_dir.display()),
                std::io::Error::other(reason),
            )
        };
        let output = command.output().await.map_err(|e| {
            unavailable(format!(
                "running {}: {e}",
                self.bindir.join("pg_ctl").display()
            ))
        })?;
        if output.status.success() {
            return Ok(());
        }
        let mut reason = format!(
            "pg_ctl {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        if let Ok(log) = std::fs::read_to_string(self.log_path(data_dir)) {
            let lines: Vec<&str> = log.lines().collect();
            reason.push_str("; the server's log ends: ");
            reason.push_str(&lines[lines.len().saturating_sub(20)..].join("\n"));
        }
        Err(unavailable(reason))
    }

    fn log_path(&self, data_dir: &Path) -> PathBuf {
        self.log_file
            .clone()
            .unwrap_or_else(|| data_dir.join("pg_ctl.log"))
    }
}

/// Tries `config` until a query answers or `deadline` passes.
async fn wait_for_connections(
    config: &tokio_postgres::Config,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> dr_core::Result<()> {
    loop {
        let error = match config.connect(tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                let task = tokio::spawn(connection);
                let answered = client.simple_query("SELECT 1").await;
                drop(client);
                task.abort();
                match answered {
                    Ok(_) => return Ok(()),
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(dr_core::Error::Timeout {
                operation: format!(
                    "waiting for the restored server to accept connections ({error})"
                ),
                after: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[async_trait]
impl StartServer for PgCtl {
    async fn start(&self, data_dir: &Path) -> dr_core::Result<tokio_postgres::Config> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        // pg_ctl hands -o to a shell: each option single-quoted.
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut options = format!(
            "-p {} -k {}",
            self.port,
            quote(&self.socket_dir.display().to_string())
        );
        if let Some(addresses) = &self.listen_addresses {
            options.push_str(&format!(
                " -c {}",
                quote(&format!("listen_addresses={addresses}"))
            ));
        }
        let mut command = self.command(data_dir)?;
        command
            .args(["start", "-w", "-t"])
            .arg(self.timeout.as_secs().max(1).to_string())
            .arg("-o")
            .arg(options);
        command.arg("-l").arg(self.log_path(data_dir));
        self.run(command, "starting", data_dir).await?;
        let config = self.config();
        wait_for_connections(&config, deadline, self.timeout).await?;
        Ok(config)
    }
}

/// When this process is root, the owner of `data_dir`, whom PostgreSQL's
/// programs run as (they refuse root); `None` otherwise. A directory root
/// owns is refused, saying `remedy`.
pub(crate) fn owner_when_root(
    data_dir: &Path,
    remedy: &str,
) -> dr_core::Result<Option<(u32, u32)>> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let meta = std::fs::metadata(data_dir)
        .map_err(|e| dr_core::Error::io(format!("reading {}", data_dir.display()), e))?;
    if meta.uid() == 0 {
        return Err(dr_core::Error::invalid(
            "data directory",
            format!(
                "{} belongs to root, and PostgreSQL's programs do not run as root: {remedy}",
                data_dir.display()
            ),
        ));
    }
    Ok(Some((meta.uid(), meta.gid())))
}
