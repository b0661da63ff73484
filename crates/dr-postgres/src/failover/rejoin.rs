//! [`Rejoin`]: a former primary's data directory made a replica of the new
//! primary, with `pg_rewind`, or with a fresh copy where it cannot rewind.

use std::path::{Path, PathBuf};

use dr_core::Timeline;
use jiff::Timestamp;

use crate::failover::cluster::PgMember;
use crate::logical::tools::{Environment, LibpqTls, PgTools, environment, failed};
use crate::replication::client::quote_literal;
use crate::replication::{SqlClient, Tls};

/// How the data directory was brought in line with the new primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejoinMethod {
    /// `pg_rewind` undid what it wrote after the histories parted.
    Rewound,
    /// `pg_rewind` could not (its output is kept here): the directory was
    /// moved aside, kept, and a fresh copy taken with `pg_basebackup`.
    Cloned {
        /// Why `pg_rewind` failed.
        rewind_failed: String,
        /// Where the old directory now is.
        kept_aside: PathBuf,
    },
}

/// What [`Rejoin::run`] did.
#[derive(Debug, Clone)]
pub struct RejoinReport {
    /// How.
    pub method: RejoinMethod,
    /// Its steps, timed.
    pub timeline: Timeline,
}

/// Makes the stopped data directory of a former primary follow the new
/// primary: `pg_rewind` from it (which runs crash recovery first where the
/// server was killed), or where that fails, a fresh `pg_basebackup` with
/// the old directory kept aside; then `standby.signal` and a
/// `primary_conninfo` naming the member, with the read-only setting a
/// [`SqlFence`](crate::SqlFence) left removed. Starting the server is the
/// caller's, who owns its process (systemd, a pod, [`PgCtl`](crate::PgCtl)).
///
/// `pg_rewind` needs `wal_log_hints` or data checksums on the cluster, and
/// the old primary's WAL from the last checkpoint before the histories
/// parted: keep it with `wal_keep_size`, or have `pg_rewind` fetch it with
/// the server's `restore_command` ([`Rejoin::restore_target_wal`]). As
/// root, the programs run as the data directory's owner.
#[derive(Debug, Clone)]
pub struct Rejoin {
    name: String,
    data_dir: PathBuf,
    tools: PgTools,
    libpq: LibpqTls,
    tls: Tls,
    restore_target_wal: bool,
}

impl Rejoin {
    /// Rejoins the member `name`, whose data directory is `data_dir`, with
    /// the programs on the `PATH` and no TLS.
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            data_dir: data_dir.into(),
            tools: PgTools::from_path(),
            libpq: LibpqTls::disable(),
            tls: Tls::none(),
            restore_target_wal: false,
        }
    }

    /// Where `pg_rewind` and `pg_basebackup` are.
    #[must_use]
    pub fn tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// How they connect to the new primary.
    #[must_use]
    pub fn libpq_tls(mut self, libpq: LibpqTls) -> Self {
        self.libpq = libpq;
        self
    }

    /// Lets `pg_rewind` fetch WAL the old primary no longer has with the
    /// `restore_command` its configuration sets (`--restore-target-wal`),
    /// such as `drkit wal fetch`.
    #[must_use]
    pub fn restore_target_wal(mut self, on: bool) -> Self {
        self.restore_target_wal = on;
        self
    }

    /// How this connects to the new primary itself, for its checkpoint.
    #[must_use]
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// Brings the data directory in line with the new primary `source` (a
    /// superuser's connection) and sets it up to follow it.
    ///
    /// # Errors
    /// A server still runs on the directory; `pg_rewind` failed and so did
    /// the fresh copy; the directory could not be written.
    pub async fn run(&self, source: &tokio_postgres::Config) -> dr_core::Result<RejoinReport> {
        let mut timeline = Timeline::start_now();
        if let Some(pid) = running_postmaster(&self.data_dir) {
            return Err(dr_core::Error::Refused {
                operation: format!("rejoining {}", self.name),
                reason: format!(
                    "a server (process {pid}) still runs on {}: stop it first",
                    self.data_dir.display()
                ),
            });
        }
        let owner = crate::pg_ctl::owner_when_root(
            &self.data_dir,
            "give the directory to the PostgreSQL OS user (chown -R postgres)",
        )?;
        let env = environment(source, &self.libpq, "postgres")?;
        // Its slot on the new primary first, so that the WAL from here on
        // waits for it. pg_rewind reads the new timeline from the source's
        // control file, which a promoted replica updates only at its next
        // checkpoint.
        let source_member = PgMember::new(self.name.clone(), source.clone());
        let slot = super::ensure_slot(&source_member, &self.tls, &self.name).await?;
        let checkpoint = async {
            let mut sql = SqlClient::connect(source, &self.tls, "postgres").await?;
            sql.query("CHECKPOINT").await?;
            sql.close().await.ok();
            Ok::<_, dr_core::Error>(())
        };
        timeline
            .step("checkpoint the new primary", checkpoint)
            .await?;
        let rewound = timeline
            .step("pg_rewind", async {
                Ok::<_, dr_core::Error>(self.rewind(&env, owner).await)
            })
            .await?;
        let method = match rewound {
            Ok(()) => RejoinMethod::Rewound,
            Err(why) => {
                let kept_aside = self.data_dir.with_file_name(format!(
                    "{}.drkit-rejoin-{}",
                    self.data_dir
                        .file_name()
                        .map_or_else(|| "data".into(), |n| n.to_string_lossy()),
                    Timestamp::now().as_second()
                ));
                let clone = self.clone_fresh(&env, owner, &kept_aside);
                timeline.step("pg_basebackup", clone).await?;
                RejoinMethod::Cloned {
                    rewind_failed: why.to_string(),
                    kept_aside,
                }
            }
        };
        timeline
            .step("follow the new primary", async {
                self.configure(source, owner, &slot)
            })
            .await?;
        Ok(RejoinReport { method, timeline })
    }

    async fn rewind(&self, env: &Environment, owner: Option<(u32, u32)>) -> crate::Result<()> {
        let mut command = tokio::process::Command::new(self.tools.program("pg_rewind")?);
        command
            .arg(format!("--target-pgdata={}", self.data_dir.display()))
            .arg("--source-server=dbname=postgres");
        if self.restore_target_wal {
            command.arg("--restore-target-wal");
        }
        run("pg_rewind", command, env, owner, &self.data_dir).await
    }

    async fn clone_fresh(
        &self,
        env: &Environment,
        owner: Option<(u32, u32)>,
        kept_aside: &Path,
    ) -> dr_core::Result<()> {
        std::fs::rename(&self.data_dir, kept_aside).map_err(|e| {
            dr_core::Error::io(
                format!(
                    "moving {} aside to {}",
                    self.data_dir.display(),
                    kept_aside.display()
                ),
                e,
            )
        })?;
        let parent = self.data_dir.parent().unwrap_or(Path::new("/"));
        let mut command = tokio::process::Command::new(self.tools.program("pg_basebackup")?);
        command
            .arg(format!("--pgdata={}", self.data_dir.display()))
            .args(["--wal-method=stream", "--checkpoint=fast", "--no-password"])
            .arg("--dbname=dbname=postgres");
        run("pg_basebackup", command, env, owner, parent).await?;
        Ok(())
    }

    /// `standby.signal`, and in `postgresql.auto.conf` a `primary_conninfo`
    /// reaching `source` as this member through `slot`, without a fence's
    /// read-only setting.
    fn configure(
        &self,
        source: &tokio_postgres::Config,
        owner: Option<(u32, u32)>,
        slot: &str,
    ) -> dr_core::Result<()> {
        let io = |what: &Path, e| dr_core::Error::io(format!("writing {}", what.display()), e);
        let signal = self.data_dir.join("standby.signal");
        std::fs::write(&signal, b"").map_err(|e| io(&signal, e))?;
        let auto = self.data_dir.join("postgresql.auto.conf");
        let text = std::fs::read_to_string(&auto).unwrap_or_default();
        let mut kept: Vec<&str> = text
            .lines()
            .filter(|line| {
                let setting = line.trim_start();
                !setting.starts_with("primary_conninfo")
                    && !setting.starts_with("primary_slot_name")
                    && !setting.starts_with("default_transaction_read_only")
            })
            .collect();
        let conninfo = super::replication_conninfo(source, &self.name);
        let line = format!("primary_conninfo = {}", quote_literal(&conninfo)?);
        kept.push(&line);
        let slot_line = format!("primary_slot_name = {}", quote_literal(slot)?);
        kept.push(&slot_line);
        let mut new = kept.join("\n");
        new.push('\n');
        std::fs::write(&auto, new).map_err(|e| io(&auto, e))?;
        if let Some((uid, gid)) = owner {
            for path in [&signal, &auto] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| io(path, e))?;
            }
        }
        Ok(())
    }
}

/// The process of a postmaster that still runs on `data_dir`.
fn running_postmaster(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    alive.then_some(pid)
}

async fn run(
    program: &str,
    mut command: tokio::process::Command,
    env: &Environment,
    owner: Option<(u32, u32)>,
    dir: &Path,
) -> crate::Result<()> {
    env.apply(&mut command);
    command
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    let output = command
        .output()
        .await
        .map_err(|e| failed(program, format!("starting it: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said.trim();
    let tail = said
        .char_indices()
        .rev()
        .nth(2000)
        .map_or(said, |(i, _)| &said[i..]);
    Err(failed(program, format!("{}: {tail}", output.status)))
}
