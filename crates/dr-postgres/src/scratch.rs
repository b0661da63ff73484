//! [`ScratchServer`]: a throwaway PostgreSQL for a restore test, reachable
//! only on a Unix socket in its own directory, removed with everything in
//! it when the test is done (or when dropped).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::logical::PgTools;
use crate::pg_ctl::PgCtl;
use crate::restore::StartServer;

/// The scratch cluster's superuser and the port naming its socket.
const SUPERUSER: &str = "postgres";
const PORT: u16 = 5432;

/// Where a [`ScratchServer`] lives and who runs it.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ScratchOptions {
    /// The directory its own directory is made in; default the system's
    /// temporary directory.
    pub parent: Option<PathBuf>,
    /// The OS user and group it runs as: needed when the caller is root,
    /// which PostgreSQL refuses to run as.
    pub run_as: Option<(u32, u32)>,
}

impl ScratchOptions {
    /// In the system's temporary directory, as the current user.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes its directory in `parent`.
    #[must_use]
    pub fn parent(mut self, parent: impl Into<PathBuf>) -> Self {
        self.parent = Some(parent.into());
        self
    }

    /// Runs it as this OS user and group.
    #[must_use]
    pub fn run_as(mut self, uid: u32, gid: u32) -> Self {
        self.run_as = Some((uid, gid));
        self
    }
}

/// A throwaway PostgreSQL server: its directory (data, socket, log) is
/// removed by [`ScratchServer::remove`], or on drop after an immediate stop.
#[derive(Debug)]
pub struct ScratchServer {
    root: PathBuf,
    bindir: PathBuf,
    run_as: Option<(u32, u32)>,
    running: bool,
}

impl ScratchServer {
    /// A directory for a server, with nothing in `data_dir` yet: a physical
    /// restore fills it and starts it with [`ScratchServer::pg_ctl`].
    ///
    /// # Errors
    /// The programs' directory is unknown, or the directory cannot be made.
    pub fn prepare(tools: &PgTools, options: &ScratchOptions) -> dr_core::Result<Self> {
        let bindir = match tools.dir() {
            Some(dir) => dir.to_owned(),
            None => tools
                .program("pg_ctl")?
                .parent()
                .map(Path::to_owned)
                .unwrap_or_default(),
        };
        let run_as = match options.run_as {
            Some(user) => Some(user),
            None if nix::unistd::geteuid().is_root() => {
                return Err(dr_core::Error::invalid(
                    "scratch server",
                    "PostgreSQL does not run as root: say which OS user runs the scratch server",
                ));
            }
            None => None,
        };
        let parent = options.parent.clone().unwrap_or_else(std::env::temp_dir);
        let root = parent.join(format!(
            "drkit-scratch-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        ));
        let made = (|| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(root.join("socket"))?;
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
            if let Some((uid, gid)) = run_as {
                for dir in [root.clone(), root.join("socket")] {
                    std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
                }
            }
            Ok::<_, std::io::Error>(())
        })();
        let server = Self {
            root,
            bindir,
            run_as,
            running: false,
        };
        made.map_err(|e| dr_core::Error::io(format!("making {}", server.root.display()), e))?;
        Ok(server)
    }

    /// An empty cluster (`initdb`, trust on its socket), started.
    ///
    /// # Errors
    /// As [`ScratchServer::prepare`]; `initdb` or the start failed.
    pub async fn start(tools: &PgTools, options: &ScratchOptions) -> dr_core::Result<Self> {
        let mut server = Self::prepare(tools, options)?;
        let mut initdb = tokio::process::Command::new(server.bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(server.data_dir())
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
                "--encoding=UTF8",
                "--locale=C",
            ])
            .current_dir(&server.root)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some((uid, gid)) = server.run_as {
            initdb.uid(uid).gid(gid);
        }
        let output = initdb
            .output()
            .await
            .map_err(|e| dr_core::Error::io("running initdb for a scratch server", e))?;
        if !output.status.success() {
            return Err(dr_core::Error::other(
                dr_core::ErrorKind::Unavailable,
                "initdb of a scratch server",
                std::io::Error::other(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
            ));
        }
        // A scratch server never outlives its test: durability buys nothing.
        let conf = server.data_dir().join("postgresql.conf");
        let settings = "\n# drkit scratch server\nfsync = off\nfull_page_writes = off\n\
                        synchronous_commit = off\nmax_wal_size = 4GB\n";
        std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| std::io::Write::write_all(&mut f, settings.as_bytes()))
            .map_err(|e| dr_core::Error::io(format!("writing {}", conf.display()), e))?;
        server.pg_ctl().start(&server.data_dir()).await?;
        server.running = true;
        Ok(server)
    }

    /// Its data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Starts and stops it: on its socket only (`listen_addresses` empty),
    /// as its user, connecting as `postgres`.
    pub fn pg_ctl(&self) -> PgCtl {
        self.pg_ctl_as(self.connect_as_superuser())
    }

    /// [`ScratchServer::pg_ctl`], connecting with `connect`'s user,
    /// password and database (a restored cluster has its own roles).
    pub fn pg_ctl_as(&self, connect: tokio_postgres::Config) -> PgCtl {
        let mut pg_ctl = PgCtl::new(&self.bindir, PORT, self.root.join("socket"), connect)
            .listen_addresses("")
            .log_file(self.root.join("server.log"));
        if let Some((uid, gid)) = self.run_as {
            pg_ctl = pg_ctl.run_as(uid, gid);
        }
        pg_ctl
    }

    fn connect_as_superuser(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.user(SUPERUSER).dbname("postgres");
        config
    }

    /// How to connect to it as its superuser.
    pub fn config(&self) -> tokio_postgres::Config {
        self.pg_ctl().config()
    }

    /// Marks the server as started by someone else (a restore's
    /// [`StartServer`]), so that it is stopped before its removal.
    pub fn started(&mut self) {
        self.running = true;
    }

    /// Stops the server if it runs and removes its directory.
    ///
    /// # Errors
    /// The directory could not be removed (the server's stop is best
    /// effort: an immediate stop follows a failed fast one).
    pub async fn remove(mut self) -> dr_core::Result<()> {
        if self.running {
            if self.pg_ctl().stop(&self.data_dir()).await.is_err() {
                self.stop_immediately();
            }
            self.running = false;
        }
        let removed = std::fs::remove_dir_all(&self.root);
        // Dropped now with nothing left to do.
        self.root = PathBuf::new();
        removed.map_err(|e| dr_core::Error::io("removing a scratch server's directory", e))
    }

    /// `pg_ctl stop -m immediate`, blocking: for drop.
    fn stop_immediately(&self) {
        let mut command = std::process::Command::new(self.bindir.join("pg_ctl"));
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["stop", "-w", "-m", "immediate"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        let _ = command.status();
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        if self.root.as_os_str().is_empty() {
            return;
        }
        if self.running {
            self.stop_immediately();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
