//! [`LogicalBackup`]: `pg_dump` of chosen databases, each streamed straight
//! into one snapshot, with what its own snapshot saw (row counts, schema
//! fingerprints) recorded beside it.

use std::process::Stdio;

use dr_core::{
    Backup, BackupReport, BackupRequest, Capabilities, ComponentId, Manifest, RecoveryPoint,
    SnapshotCommit, SnapshotSource, SnapshotWriter, StreamName, Timeline, async_trait,
};
use jiff::Timestamp;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::logical::catalog;
use crate::logical::details::{DumpedDatabase, DumpedTable, LogicalBackupDetails};
use crate::logical::tools::{Environment, LibpqTls, PgTools, environment, failed, tail};
use crate::metered::Meter;
use crate::replication::{SqlClient, Tls};

/// The label every logical backup snapshot carries: `kind=logical`.
pub const LOGICAL_KIND_LABEL: (&str, &str) = ("kind", "logical");

/// The stream holding `pg_dumpall --globals-only`.
pub const GLOBALS_STREAM: &str = "globals.sql";

/// Whether `manifest` is a logical backup's (labelled [`LOGICAL_KIND_LABEL`]).
pub fn is_logical_backup(manifest: &Manifest) -> bool {
    manifest
        .labels
        .get(LOGICAL_KIND_LABEL.0)
        .map(String::as_str)
        == Some(LOGICAL_KIND_LABEL.1)
}

/// The committed logical backups of `component` in `source`, oldest first.
///
/// # Errors
/// The source could not be listed.
pub async fn logical_backups(
    source: &dyn SnapshotSource,
    component: &ComponentId,
) -> dr_core::Result<Vec<Manifest>> {
    crate::backup::snapshots_where(source, component, is_logical_backup).await
}

/// Which databases a [`LogicalBackup`] dumps.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Databases {
    /// Every database that accepts connections, but the templates.
    All,
    /// These, each of which must exist.
    Named(Vec<String>),
}

/// A logical backup of one server: each chosen database dumped by
/// `pg_dump --format=custom --compress=0` into a stream of one snapshot
/// (the repository compresses and deduplicates, so two dumps of a database
/// that changed little store little), the globals (`pg_dumpall
/// --globals-only`: roles, tablespaces) in another.
///
/// Each database's dump reads a snapshot exported by a transaction of the
/// backup's own, which counts every table's rows in that same snapshot
/// while the dump streams: the recorded counts are the dump's, exactly.
/// Nothing is written to disk on the way.
///
/// `pg_dump` must be of the server's major version or newer: an older one
/// is refused before anything is dumped, naming both versions.
///
/// ```no_run
/// # async fn demo(repo: &dr_storage::Repository) -> dr_core::Result<()> {
/// use dr_core::{Backup, BackupRequest};
/// use dr_postgres::{Databases, LibpqTls, LogicalBackup, PgTools, Tls};
///
/// let config: tokio_postgres::Config = "host=10.0.0.5 user=backup password=secret".parse().unwrap();
/// let dump = LogicalBackup::new("postgres/gomeet".parse()?, config, Tls::none(), LibpqTls::disable())
///     .databases(Databases::Named(vec!["gomeet_primary".into(), "gomeet_shard_1".into()]))
///     .tools(PgTools::in_dir("/usr/lib/postgresql/15/bin"));
/// let report = dump.backup(BackupRequest::new(repo)).await?;
/// println!("{} bytes dumped", report.manifest.total_size());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LogicalBackup {
    component: ComponentId,
    config: tokio_postgres::Config,
    tls: Tls,
    libpq: LibpqTls,
    tools: PgTools,
    databases: Databases,
    globals: bool,
    role_passwords: bool,
    jobs: usize,
}

impl LogicalBackup {
    /// Dumps every database of the server `config` points at (its `dbname`,
    /// or `postgres`, is where the databases are listed), connecting with
    /// `tls` itself and with `libpq`'s settings in `pg_dump`; the globals
    /// with the roles' passwords; the programs from the `PATH`.
    pub fn new(
        component: ComponentId,
        config: tokio_postgres::Config,
        tls: Tls,
        libpq: LibpqTls,
    ) -> Self {
        Self {
            component,
            config,
            tls,
            libpq,
            tools: PgTools::from_path(),
            databases: Databases::All,
            globals: true,
            role_passwords: true,
            jobs: 2,
        }
    }

    /// How many databases are dumped at once (each a `pg_dump` and a
    /// session on the server). Default 2; at least 1.
    #[must_use]
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Which databases to dump.
    #[must_use]
    pub fn databases(mut self, databases: Databases) -> Self {
        self.databases = databases;
        self
    }

    /// Where `pg_dump` and `pg_dumpall` are.
    #[must_use]
    pub fn tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// Whether to dump the globals (roles, tablespaces) too. Default on.
    #[must_use]
    pub fn globals(mut self, on: bool) -> Self {
        self.globals = on;
        self
    }

    /// Whether the globals carry the roles' passwords, which only a
    /// superuser may read. Default on.
    #[must_use]
    pub fn role_passwords(mut self, on: bool) -> Self {
        self.role_passwords = on;
        self
    }

    /// Checks that `tools` has a `pg_dump` (and `pg_dumpall`) that can dump
    /// a server of `server_version`; returns `pg_dump`'s version.
    ///
    /// # Errors
    /// [`Error::Tool`] naming what is missing or both versions.
    pub async fn check_tools(tools: &PgTools, server_version: &str) -> Result<String> {
        let major = crate::replication::client::major_version(server_version).unwrap_or(0);
        let version = tools
            .check_version("pg_dump", server_version, major)
            .await?;
        tools
            .check_version("pg_dumpall", server_version, major)
            .await?;
        Ok(version)
    }

    /// The database the databases are listed from.
    fn maintenance_database(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }
}

#[async_trait]
impl Backup for LogicalBackup {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    async fn backup(&self, request: BackupRequest<'_>) -> dr_core::Result<BackupReport> {
        let span = tracing::info_span!("logical_backup", component = %self.component);
        let taken = self.backup_traced(request).instrument(span).await;
        match &taken {
            Ok(report) => tracing::info!(
                snapshot = %report.manifest.id,
                bytes = report.manifest.total_size(),
                seconds = report.timeline.elapsed().as_secs_f64(),
                "logical backup committed"
            ),
            Err(error) => {
                tracing::warn!(%error, "the logical backup failed; nothing was committed");
            }
        }
        taken
    }
}

/// What the backup learns before it dumps.
struct Plan {
    server_version: String,
    pg_dump_version: String,
    databases: Vec<String>,
    environment: Environment,
}

impl LogicalBackup {
    async fn backup_traced(&self, request: BackupRequest<'_>) -> dr_core::Result<BackupReport> {
        let mut timeline = Timeline::start_now();
        let plan = timeline
            .step("connect", async {
                Ok::<_, dr_core::Error>(self.plan().await?)
            })
            .await?;
        let mut writer = request
            .sink
            .begin(&self.component, Timestamp::now())
            .await?;
        let meter = Meter::new(request.progress, "dump", None);
        let mut dumped = Vec::with_capacity(plan.databases.len());
        let mut globals = None;
        let result: dr_core::Result<()> = async {
            for batch in plan.databases.chunks(self.jobs) {
                let dump = self.dump_batch(batch, &plan, writer.as_mut(), &meter);
                dumped.extend(
                    timeline
                        .step(format!("dump {}", batch.join(", ")), dump)
                        .await?,
                );
            }
            if self.globals {
                let dump = self.dump_globals(&plan, writer.as_mut());
                globals = Some(timeline.step("dump globals", dump).await?);
            }
            Ok(())
        }
        .await;
        meter.finish();
        if let Err(error) = result {
            writer.abort().await.ok();
            return Err(error);
        }
        let first = dumped.iter().min_by_key(|d| d.0.snapshot_at);
        let mut point = RecoveryPoint::new(first.map_or_else(Timestamp::now, |d| d.0.snapshot_at));
        if let Some(position) = first.and_then(|d| d.1.clone()) {
            point = point.with_position(position);
        }
        let mut commit = SnapshotCommit::new(point);
        for (key, value) in &request.labels {
            commit = commit.label(key, value);
        }
        let commit = commit
            .label(LOGICAL_KIND_LABEL.0, LOGICAL_KIND_LABEL.1)
            .details(&LogicalBackupDetails {
                server_version: plan.server_version,
                pg_dump_version: plan.pg_dump_version,
                databases: dumped.into_iter().map(|(d, _)| d).collect(),
                globals,
            })?;
        let manifest = timeline.step("commit", writer.commit(commit)).await?;
        Ok(BackupReport { manifest, timeline })
    }

    /// Connects, lists the databases and checks the programs' versions.
    async fn plan(&self) -> Result<Plan> {
        let mut sql =
            SqlClient::connect(&self.config, &self.tls, self.maintenance_database()).await?;
        let server_version = sql.server_version().unwrap_or("unknown").to_owned();
        let server_major = sql.server_major_version().unwrap_or(0);
        let rows = sql
            .query(
                "SELECT datname FROM pg_database \
                 WHERE datallowconn AND NOT datistemplate ORDER BY datname",
            )
            .await?;
        sql.close().await.ok();
        let existing: Vec<String> = rows
            .iter()
            .filter_map(|row| row.get_str(0).ok().flatten().map(str::to_owned))
            .collect();
        let databases = match &self.databases {
            Databases::All => existing,
            Databases::Named(names) => {
                if let Some(missing) = names.iter().find(|n| !existing.contains(n)) {
                    return Err(Error::InvalidInput {
                        what: "database",
                        reason: format!(
                            "{missing:?} is not a database of {} that accepts connections; \
                             it has {}",
                            addr_of(&self.config),
                            existing.join(", ")
                        ),
                    });
                }
                names.clone()
            }
        };
        let pg_dump_version = self
            .tools
            .check_version("pg_dump", &server_version, server_major)
            .await?;
        if self.globals {
            self.tools
                .check_version("pg_dumpall", &server_version, server_major)
                .await?;
        }
        let environment = environment(&self.config, &self.libpq, self.maintenance_database())?;
        Ok(Plan {
            server_version,
            pg_dump_version,
            databases,
            environment,
        })
    }

    /// Dumps `batch`'s databases at once into `writer`, each counting its
    /// tables in its dump's snapshot meanwhile.
    async fn dump_batch(
        &self,
        batch: &[String],
        plan: &Plan,
        writer: &mut dyn SnapshotWriter,
        meter: &Meter<'_>,
    ) -> dr_core::Result<Vec<(DumpedDatabase, Option<dr_core::Position>)>> {
        let mut started = Vec::with_capacity(batch.len());
        for database in batch {
            // A failure drops (and so kills) the dumps already started.
            started.push(self.start_dump(database, plan).await?);
        }
        let mut readers: Vec<_> = started
            .iter_mut()
            .filter_map(|s| s.stdout.take())
            .map(|stdout| meter.reader(stdout))
            .collect();
        let streams: Vec<(StreamName, &mut (dyn tokio::io::AsyncRead + Send + Unpin))> = started
            .iter()
            .map(|s| s.stream.clone())
            .zip(
                readers
                    .iter_mut()
                    .map(|r| r as &mut (dyn tokio::io::AsyncRead + Send + Unpin)),
            )
            .collect();
        let counting = futures_util::future::try_join_all(
            started
                .iter_mut()
                .map(|s| count_tables(&mut s.sql, &s.tables)),
        );
        let storing = writer.add_streams(streams);
        let (counted, stored) = tokio::join!(counting, storing);
        drop(readers);
        if counted.is_err() || stored.is_err() {
            for dump in &mut started {
                dump.child.kill().await.ok();
            }
        }
        let mut finished = Vec::with_capacity(started.len());
        for dump in &mut started {
            finished.push(dump.finish().await);
        }
        let counted = counted?;
        stored?;
        let mut dumped = Vec::with_capacity(started.len());
        for ((dump, tables), status) in started.into_iter().zip(counted).zip(finished) {
            status?;
            dumped.push(dump.close(tables).await?);
        }
        Ok(dumped)
    }

    /// Connects to `database`, exports a snapshot, reads its tables, and
    /// starts `pg_dump` on that snapshot.
    async fn start_dump(&self, database: &str, plan: &Plan) -> dr_core::Result<Started> {
        let mut sql = SqlClient::connect(&self.config, &self.tls, database).await?;
        let snapshot = catalog::export_snapshot(&mut sql).await?;
        let tables = catalog::tables(&mut sql).await?;
        let stream = database_stream(database)?;
        let program = self.tools.program("pg_dump")?;
        let mut command = tokio::process::Command::new(&program);
        command
            .args(["--format=custom", "--compress=0", "--no-password"])
            .arg(format!("--snapshot={}", snapshot.id))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        plan.environment.database(database).apply(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| failed("pg_dump", format!("starting {}: {e}", program.display())))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(failed("pg_dump", "its output could not be read".into()).into());
        };
        Ok(Started {
            database: database.to_owned(),
            sql,
            snapshot,
            tables,
            stream,
            child,
            stdout: Some(stdout),
            said: tokio::spawn(tail(stderr)),
        })
    }

    /// `pg_dumpall --globals-only` into `writer`.
    async fn dump_globals(
        &self,
        plan: &Plan,
        writer: &mut dyn SnapshotWriter,
    ) -> dr_core::Result<StreamName> {
        let program = self.tools.program("pg_dumpall")?;
        let mut command = tokio::process::Command::new(&program);
        command
            .args(["--globals-only", "--no-password"])
            .arg(format!("--database={}", self.maintenance_database()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if !self.role_passwords {
            command.arg("--no-role-passwords");
        }
        plan.environment.apply(&mut command);
        let mut child = command
            .spawn()
            .map_err(|e| failed("pg_dumpall", format!("starting {}: {e}", program.display())))?;
        let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(failed("pg_dumpall", "its output could not be read".into()).into());
        };
        let said = tokio::spawn(tail(stderr));
        let stream: StreamName = GLOBALS_STREAM.parse()?;
        let stored = writer.add_stream(&stream, &mut stdout).await;
        if stored.is_err() {
            child.kill().await.ok();
        }
        let status = child
            .wait()
            .await
            .map_err(|e| failed("pg_dumpall", format!("waiting for it: {e}")))?;
        let said = said.await.unwrap_or_default();
        if !status.success() {
            let hint = if said.contains("pg_authid") {
                " (reading the roles' passwords needs a superuser; turn role passwords off otherwise)"
            } else {
                ""
            };
            return Err(failed(
                "pg_dumpall",
                format!("dumping the globals failed ({status}): {said}{hint}"),
            )
            .into());
        }
        stored?;
        Ok(stream)
    }
}

/// A database's dump under way: the session holding its snapshot, its
/// tables, and `pg_dump` running on that snapshot.
struct Started {
    database: String,
    sql: SqlClient,
    snapshot: catalog::ExportedSnapshot,
    tables: Vec<catalog::Table>,
    stream: StreamName,
    child: tokio::process::Child,
    stdout: Option<tokio::process::ChildStdout>,
    said: tokio::task::JoinHandle<String>,
}

impl Started {
    /// Waits for `pg_dump`; its failure names the database and what it said.
    async fn finish(&mut self) -> dr_core::Result<()> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| failed("pg_dump", format!("waiting for it: {e}")))?;
        let said = (&mut self.said).await.unwrap_or_default();
        if !status.success() {
            return Err(failed(
                "pg_dump",
                format!("dumping {:?} failed ({status}): {said}", self.database),
            )
            .into());
        }
        Ok(())
    }

    /// Ends the snapshot's transaction, now that `pg_dump` is done.
    async fn close(
        mut self,
        tables: Vec<DumpedTable>,
    ) -> dr_core::Result<(DumpedDatabase, Option<dr_core::Position>)> {
        self.sql.query("COMMIT").await?;
        self.sql.close().await.ok();
        Ok((
            DumpedDatabase {
                name: self.database,
                stream: self.stream,
                snapshot_at: self.snapshot.at,
                tables,
            },
            self.snapshot.position,
        ))
    }
}

/// Every table's rows, counted in the session's snapshot.
async fn count_tables(sql: &mut SqlClient, tables: &[catalog::Table]) -> Result<Vec<DumpedTable>> {
    let mut counted = Vec::with_capacity(tables.len());
    for table in tables {
        let rows = catalog::count(sql, &table.schema, &table.name).await?;
        counted.push(DumpedTable {
            schema: table.schema.clone(),
            name: table.name.clone(),
            rows,
            fingerprint: table.fingerprint.clone(),
            indexes: table.indexes.clone(),
            sequences: table.sequences.clone(),
        });
    }
    Ok(counted)
}

/// The stream of `database`'s dump: `databases/<name>.dump`, with every
/// byte but letters, digits, `_`, `-` and `.` written `%XX`.
fn database_stream(database: &str) -> Result<StreamName> {
    let mut name = String::from("databases/");
    for byte in database.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.') {
            name.push(byte as char);
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    name.push_str(".dump");
    name.parse()
        .map_err(|e: dr_core::Error| Error::InvalidInput {
            what: "database name",
            reason: e.to_string(),
        })
}

/// The first host and port of `config`, for messages.
fn addr_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(dir)) => dir.display().to_string(),
        None => "the server".to_owned(),
    };
    match config.get_ports().first() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_streams_name_any_database() {
        assert_eq!(
            database_stream("gomeet_shard_1").unwrap().as_str(),
            "databases/gomeet_shard_1.dump"
        );
        assert_eq!(
            database_stream("a/b c").unwrap().as_str(),
            "databases/a%2Fb%20c.dump"
        );
        assert_eq!(database_stream("..").unwrap().as_str(), "databases/...dump");
        assert_eq!(
            database_stream("Ünï").unwrap().as_str(),
            "databases/%C3%9Cn%C3%AF.dump"
        );
    }
}
