//! [`LogicalRestore`]: one database of a logical backup, restored by
//! `pg_restore` reading the stored dump as it streams out of the
//! repository: into a new database, or over an existing one (`--clean
//! --if-exists`, only when asked); whole, one schema, or one table with its
//! indexes, constraints and sequences. Then the smoke checks: every table
//! restored has the rows recorded, and the caller's SQL checks pass.

use std::path::{Path, PathBuf};

use dr_core::{
    Capabilities, Capability, ComponentId, Manifest, Operation, RecoveryReport, RecoveryTarget,
    Restore, RestoreRequest, SnapshotSource, SnapshotSourceExt, Timeline, async_trait,
};
use jiff::Timestamp;

use crate::error::Error;
use crate::logical::archive::OffsetScanner;
use crate::logical::backup::logical_backups;
use crate::logical::catalog;
use crate::logical::details::{DumpedDatabase, DumpedTable, LogicalBackupDetails, sql_name};
use crate::logical::tools::{Environment, LibpqTls, PgTools, environment, failed, feed};
use crate::replication::{SqlClient, Tls};

/// Where a [`LogicalRestore`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreInto {
    /// A database it creates (from `template0`); it must not exist. If the
    /// restore fails, the database is dropped again.
    NewDatabase(String),
    /// An existing database: what the dump holds is dropped there first
    /// (`pg_restore --clean --if-exists`), as a runbook restores over a
    /// damaged database. The stored dump is read whole and checked before.
    Over(String),
}

impl RestoreInto {
    /// The database's name.
    pub fn database(&self) -> &str {
        match self {
            RestoreInto::NewDatabase(name) | RestoreInto::Over(name) => name,
        }
    }
}

/// What of a dumped database a [`LogicalRestore`] restores.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Selection {
    /// Everything.
    Whole,
    /// The objects of one schema.
    Schema(String),
    /// One table, with its indexes, constraints, triggers, defaults and
    /// the sequences it owns, and its data.
    Table {
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
    },
}

/// A caller's check of a restored database: it passes when `sql` runs and
/// its first row's first value is neither NULL, `false` nor zero (`SELECT
/// count(*) FROM users`, `SELECT bool_and(total >= 0) FROM orders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmokeCheck {
    name: String,
    sql: String,
    database: Option<String>,
}

impl SmokeCheck {
    /// A check named `name` running `sql` in the restored database.
    pub fn new(name: impl Into<String>, sql: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            sql: sql.into(),
            database: None,
        }
    }

    /// Runs only where the database restored is `database` (a dumped
    /// database's name), for restores of several.
    #[must_use]
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }

    /// Whether it runs after a restore of the dumped database `database`.
    pub(crate) fn applies_to(&self, database: &str) -> bool {
        self.database.as_deref().is_none_or(|d| d == database)
    }
}

/// How one smoke check went.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CheckOutcome {
    /// What was checked: `rows of public.users`, or the caller's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

/// The smoke checks of a restored database.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SmokeReport {
    /// Each check, in the order run.
    pub outcomes: Vec<CheckOutcome>,
}

impl SmokeReport {
    /// Whether every check passed.
    pub fn is_ok(&self) -> bool {
        self.outcomes.iter().all(|o| o.passed)
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckOutcome> {
        self.outcomes.iter().filter(|o| !o.passed)
    }
}

/// Restores one database of a logical backup of `component` into the
/// server `config` points at (dr-core `Restore`; the request's target picks
/// the backup: the latest, a snapshot id, or the latest taken at or before
/// a time).
///
/// Nothing is written to disk on the way but, for one table, the list of
/// what to restore. A dump that does not read back fails the restore: a new
/// database is then dropped again; over an existing database, the dump is
/// read whole and checked before anything is dropped.
///
/// ```no_run
/// # async fn demo(repo: &dr_storage::Repository) -> dr_core::Result<()> {
/// use dr_core::{Objectives, RecoveryTarget, Restore, RestoreRequest};
/// use dr_postgres::{LibpqTls, LogicalRestore, RestoreInto, Selection, SmokeCheck, Tls};
///
/// let config: tokio_postgres::Config = "host=10.0.0.5 user=postgres password=secret".parse().unwrap();
/// let restore = LogicalRestore::new(
///     "postgres/veza".parse()?,
///     config,
///     Tls::none(),
///     LibpqTls::disable(),
///     "veza",
///     RestoreInto::NewDatabase("veza_users_check".into()),
/// )
/// .selection(Selection::Table { schema: "public".into(), name: "users".into() })
/// .check(SmokeCheck::new("users", "SELECT count(*) FROM users"));
/// let objectives = Objectives::new("1h".parse()?, "24h".parse()?);
/// let report = restore
///     .restore(RestoreRequest::new(repo, &RecoveryTarget::Latest, objectives))
///     .await?;
/// println!("{report}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LogicalRestore {
    component: ComponentId,
    config: tokio_postgres::Config,
    tls: Tls,
    libpq: LibpqTls,
    tools: PgTools,
    database: String,
    into: RestoreInto,
    selection: Selection,
    globals: bool,
    checks: Vec<SmokeCheck>,
    rename: Option<String>,
    parallel: Option<(usize, PathBuf)>,
}

impl LogicalRestore {
    /// Restores the dumped database `database` of `component` into `into`,
    /// on the server `config` points at (its `dbname`, or `postgres`, is
    /// where databases are created), whole, without the globals, with
    /// `pg_restore` from the `PATH`.
    pub fn new(
        component: ComponentId,
        config: tokio_postgres::Config,
        tls: Tls,
        libpq: LibpqTls,
        database: impl Into<String>,
        into: RestoreInto,
    ) -> Self {
        Self {
            component,
            config,
            tls,
            libpq,
            tools: PgTools::from_path(),
            database: database.into(),
            into,
            selection: Selection::Whole,
            globals: false,
            checks: Vec::new(),
            rename: None,
            parallel: None,
        }
    }

    /// Restores into a new database with `pg_restore --jobs=jobs`. That
    /// needs the dump as a file: it is written to `spool_dir` first (as
    /// large as the dump; readable only by this user) and removed after.
    /// A restore over a database stays in one transaction, not parallel.
    #[must_use]
    pub fn parallel(mut self, jobs: usize, spool_dir: impl Into<PathBuf>) -> Self {
        self.parallel = (jobs > 1).then(|| (jobs, spool_dir.into()));
        self
    }

    /// Restores the selected table under this name (in its schema), beside
    /// the damaged one: `pg_restore` cannot rename, so it is restored into
    /// a scratch database on the same server, renamed there with its
    /// indexes and sequences, and copied across with `pg_dump`. Its foreign
    /// keys are not brought: the copy is for comparing and repairing.
    #[must_use]
    pub fn rename_table(mut self, name: impl Into<String>) -> Self {
        self.rename = Some(name.into());
        self
    }

    /// What to restore.
    #[must_use]
    pub fn selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// Where `pg_restore` and `psql` are.
    #[must_use]
    pub fn tools(mut self, tools: PgTools) -> Self {
        self.tools = tools;
        self
    }

    /// Restores the globals (roles, tablespaces) first, with `psql`; roles
    /// that exist already are left as they are.
    #[must_use]
    pub fn globals(mut self, on: bool) -> Self {
        self.globals = on;
        self
    }

    /// Adds a smoke check, run after the restore.
    #[must_use]
    pub fn check(mut self, check: SmokeCheck) -> Self {
        self.checks.push(check);
        self
    }

    fn maintenance_database(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    /// Restores as `request` asks and returns the report with the smoke
    /// checks' outcomes, failed ones included (where
    /// [`Restore::restore`] fails on them).
    ///
    /// # Errors
    /// No logical backup matches the target; the database, schema or table
    /// is not in it; the target database exists (new) or does not (over);
    /// the stored dump does not read back; `pg_restore` failed.
    pub async fn restore_checked(
        &self,
        request: RestoreRequest<'_>,
    ) -> dr_core::Result<(RecoveryReport, SmokeReport)> {
        let mut timeline = Timeline::start_now();
        let (manifest, dumped) = timeline
            .step(
                "choose the backup",
                self.choose(request.snapshots, request.target),
            )
            .await?;
        let mut tables = self.selected_tables(&dumped)?;
        if let Some(new_name) = &self.rename {
            if !matches!(self.selection, Selection::Table { .. }) {
                return Err(dr_core::Error::invalid(
                    "restore",
                    "only a table can be restored under another name",
                ));
            }
            // The smoke check counts the copy.
            for table in &mut tables {
                table.name.clone_from(new_name);
            }
        }
        let environment = timeline
            .step("connect", async {
                Ok::<_, dr_core::Error>(self.prepare().await?)
            })
            .await?;

        if let RestoreInto::Over(_) = &self.into {
            timeline
                .step(
                    "check the stored dump",
                    read_whole(request.snapshots, &manifest, &dumped),
                )
                .await?;
        }
        if self.globals {
            let details = LogicalBackupDetails::of(&manifest)?;
            if let Some(globals) = &details.globals {
                let run = self.restore_globals(request.snapshots, &manifest, globals, &environment);
                timeline.step("restore the globals", run).await?;
            }
        }
        if let RestoreInto::NewDatabase(name) = &self.into {
            let create = async { Ok::<_, dr_core::Error>(self.create_database(name).await?) };
            timeline.step("create the database", create).await?;
        }
        let over = matches!(self.into, RestoreInto::Over(_));
        let restored = match &self.rename {
            None => {
                self.run_pg_restore(
                    &mut timeline,
                    request.snapshots,
                    &manifest,
                    &dumped,
                    &environment,
                    self.into.database(),
                    over,
                )
                .await
            }
            Some(new_name) => {
                self.restore_renamed(
                    &mut timeline,
                    request.snapshots,
                    &manifest,
                    &dumped,
                    &environment,
                    new_name,
                )
                .await
            }
        };
        if let Err(error) = restored {
            if let RestoreInto::NewDatabase(name) = &self.into {
                self.drop_database(name).await;
            }
            return Err(error);
        }
        let smoke = timeline
            .step("smoke checks", async {
                Ok::<_, dr_core::Error>(self.smoke(&tables).await?)
            })
            .await?;

        let mut report = RecoveryReport::new(
            self.component.clone(),
            Operation::Restore,
            request.objectives,
            timeline,
        );
        let wanted = request.incident_at.unwrap_or(report.timeline.started_at());
        if let Some(at) = request.incident_at {
            report = report.with_incident_at(at);
        }
        let report = report.with_data_loss_between(dumped.snapshot_at, wanted);
        Ok((report, smoke))
    }

    /// The backup the target names, and the dumped database in it.
    async fn choose(
        &self,
        source: &dyn SnapshotSource,
        target: &RecoveryTarget,
    ) -> dr_core::Result<(Manifest, DumpedDatabase)> {
        if matches!(
            target,
            RecoveryTarget::Position(_) | RecoveryTarget::RestorePoint(_)
        ) {
            return Err(dr_core::Error::invalid(
                format!("logical restore of {}", self.component),
                format!(
                    "a dump restores as it was taken; {target:?} needs a physical backup and its WAL"
                ),
            ));
        }
        let backups = logical_backups(source, &self.component).await?;
        let manifest = target.snapshot_among(&backups).cloned().ok_or_else(|| {
            dr_core::Error::not_found(format!(
                "a logical backup of {} for {target:?}",
                self.component
            ))
        })?;
        let details = LogicalBackupDetails::of(&manifest)?;
        let dumped = details.database(&self.database).cloned().ok_or_else(|| {
            let names: Vec<&str> = details.databases.iter().map(|d| d.name.as_str()).collect();
            dr_core::Error::invalid(
                format!("snapshot {}", manifest.id),
                format!(
                    "it holds no dump of the database {:?}; it has {}",
                    self.database,
                    names.join(", ")
                ),
            )
        })?;
        Ok((manifest, dumped))
    }

    /// The recorded tables the selection restores, checked to exist.
    fn selected_tables(&self, dumped: &DumpedDatabase) -> dr_core::Result<Vec<DumpedTable>> {
        let tables: Vec<DumpedTable> = match &self.selection {
            Selection::Whole => dumped.tables.clone(),
            Selection::Schema(schema) => dumped
                .tables
                .iter()
                .filter(|t| t.schema == *schema)
                .cloned()
                .collect(),
            Selection::Table { schema, name } => {
                let table = dumped
                    .tables
                    .iter()
                    .find(|t| t.schema == *schema && t.name == *name)
                    .ok_or_else(|| {
                        dr_core::Error::invalid(
                            format!("the dump of {:?}", dumped.name),
                            format!("it has no table {schema}.{name}"),
                        )
                    })?;
                vec![table.clone()]
            }
        };
        Ok(tables)
    }

    /// Connects, checks `pg_restore`'s version and the target database.
    async fn prepare(&self) -> crate::Result<Environment> {
        let mut sql =
            SqlClient::connect(&self.config, &self.tls, self.maintenance_database()).await?;
        let version = sql.server_version().unwrap_or("unknown").to_owned();
        let major = sql.server_major_version().unwrap_or(0);
        let name = self.into.database();
        let rows = sql
            .query(&format!(
                "SELECT 1 FROM pg_database WHERE datname = {}",
                crate::replication::client::quote_literal(name)?
            ))
            .await?;
        sql.close().await.ok();
        match (&self.into, rows.is_empty()) {
            (RestoreInto::NewDatabase(_), false) => {
                return Err(Error::InvalidInput {
                    what: "database",
                    reason: format!(
                        "{name:?} exists already; restore into a new name, or over it on purpose"
                    ),
                });
            }
            (RestoreInto::Over(_), true) => {
                return Err(Error::InvalidInput {
                    what: "database",
                    reason: format!("{name:?} does not exist, so there is nothing to restore over"),
                });
            }
            _ => {}
        }
        self.tools
            .check_version("pg_restore", &version, major)
            .await?;
        environment(&self.config, &self.libpq, name)
    }

    async fn create_database(&self, name: &str) -> crate::Result<()> {
        let name = crate::replication::client::quote_ident(name)?;
        self.on_maintenance_database(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .await
    }

    /// Runs `statement` on the server's maintenance database.
    async fn on_maintenance_database(&self, statement: &str) -> crate::Result<()> {
        let mut sql =
            SqlClient::connect(&self.config, &self.tls, self.maintenance_database()).await?;
        sql.query(statement).await?;
        sql.close().await.ok();
        Ok(())
    }

    /// Drops the database this restore created, after a failure.
    async fn drop_database(&self, name: &str) {
        let dropped = async {
            let name = crate::replication::client::quote_ident(name)?;
            self.on_maintenance_database(&format!("DROP DATABASE IF EXISTS {name}"))
                .await
        };
        if let Err(error) = dropped.await {
            tracing::warn!(%error, database = name, "dropping the half-restored database failed");
        }
    }

    async fn restore_globals(
        &self,
        source: &dyn SnapshotSource,
        manifest: &Manifest,
        globals: &dr_core::StreamName,
        environment: &Environment,
    ) -> dr_core::Result<()> {
        let program = self.tools.program("psql")?;
        let mut reader = source.open_stream(&manifest.id, globals).await?;
        let mut command = tokio::process::Command::new(program);
        command.args([
            "--no-psqlrc",
            "--quiet",
            "--no-password",
            "-v",
            "ON_ERROR_STOP=0",
        ]);
        environment
            .database(self.maintenance_database())
            .apply(&mut command);
        let fed = feed("psql", command, &mut reader, false).await?;
        if let Some(e) = fed.input_error {
            return Err(dr_core::Error::corrupt(
                format!("snapshot {}: {globals}", manifest.id),
                format!("the stored globals do not read back: {e}"),
            ));
        }
        if !fed.stderr.is_empty() {
            // Roles that exist already are expected; say what psql said.
            tracing::info!(said = %fed.stderr, "psql restoring the globals");
        }
        if !fed.status.success() {
            return Err(failed(
                "psql",
                format!("restoring the globals failed: {}", fed.stderr),
            )
            .into());
        }
        Ok(())
    }

    /// `pg_restore` of the selection into `database`, recorded in
    /// `timeline` (the spooling of the dump a parallel restore reads as a
    /// step of its own); `over` drops what the dump holds there first, and
    /// keeps a table's foreign keys (the tables they point at are there).
    #[allow(clippy::too_many_arguments)]
    async fn run_pg_restore(
        &self,
        timeline: &mut Timeline,
        source: &dyn SnapshotSource,
        manifest: &Manifest,
        dumped: &DumpedDatabase,
        environment: &Environment,
        database: &str,
        over: bool,
    ) -> dr_core::Result<()> {
        let program = self.tools.program("pg_restore")?;
        let mut command = tokio::process::Command::new(&program);
        command
            .args(["--no-password", "--exit-on-error"])
            .arg(format!("--dbname={}", conninfo_dbname(database)));
        // Over a database, in one transaction: a failure drops nothing.
        // Into a new one, in parallel when asked: a failure drops it whole.
        let parallel = self.parallel.as_ref().filter(|_| !over);
        match parallel {
            Some((jobs, _)) => {
                command.arg(format!("--jobs={jobs}"));
            }
            None => {
                command.arg("--single-transaction");
            }
        }
        if over {
            command.args(["--clean", "--if-exists"]);
        }
        // Dropped when the restore ends.
        let mut list = None;
        match &self.selection {
            Selection::Whole => {}
            Selection::Schema(schema) => {
                command.arg(format!("--schema={schema}"));
            }
            Selection::Table { schema, name } => {
                let table = dumped
                    .tables
                    .iter()
                    .find(|t| t.schema == *schema && t.name == *name)
                    .ok_or_else(|| {
                        dr_core::Error::invalid(
                            "table",
                            format!("{schema}.{name} is not in the dump"),
                        )
                    })?;
                let file = table_list(source, manifest, dumped, table, &program, over).await?;
                command.arg("--use-list").arg(file.path());
                list = Some(file);
            }
        }
        environment.database(database).apply(&mut command);
        let mut reader = source.open_stream(&manifest.id, &dumped.stream).await?;
        // pg_restore -j reads a file, not a pipe: the dump is spooled first.
        let spool = match parallel {
            Some((_, spool_dir)) => {
                let spooling = async {
                    Spool::write(spool_dir, &mut reader)
                        .await
                        .map_err(|e| match e {
                            SpoolError::Read(e) => dr_core::Error::corrupt(
                                format!("snapshot {}: {}", manifest.id, dumped.stream),
                                format!("the stored dump does not read back: {e}"),
                            ),
                            SpoolError::Write(e) => dr_core::Error::io(
                                format!("spooling the dump in {}", spool_dir.display()),
                                e,
                            ),
                        })
                };
                Some(timeline.step("spool the dump", spooling).await?)
            }
            None => None,
        };
        let started = Timestamp::now();
        let fed = match &spool {
            Some(spool) => {
                command.arg(spool.path());
                feed("pg_restore", command, &mut tokio::io::empty(), false).await?
            }
            None => feed("pg_restore", command, &mut reader, false).await?,
        };
        drop(spool);
        drop(list);
        if let Some(e) = fed.input_error {
            return Err(dr_core::Error::corrupt(
                format!("snapshot {}: {}", manifest.id, dumped.stream),
                format!("the stored dump does not read back: {e}"),
            ));
        }
        if !fed.status.success() {
            return Err(failed(
                "pg_restore",
                format!(
                    "restoring {:?} into {database:?} failed ({}): {}",
                    dumped.name, fed.status, fed.stderr
                ),
            )
            .into());
        }
        timeline.record_until_now("pg_restore", started)?;
        Ok(())
    }

    /// The selected table restored as `new_name`, through a scratch
    /// database that is dropped again whatever happens.
    async fn restore_renamed(
        &self,
        timeline: &mut Timeline,
        source: &dyn SnapshotSource,
        manifest: &Manifest,
        dumped: &DumpedDatabase,
        environment: &Environment,
        new_name: &str,
    ) -> dr_core::Result<()> {
        let Selection::Table { schema, name } = &self.selection else {
            return Err(dr_core::Error::invalid(
                "restore",
                "only a table can be restored under another name",
            ));
        };
        let table = dumped
            .tables
            .iter()
            .find(|t| t.schema == *schema && t.name == *name)
            .ok_or_else(|| {
                dr_core::Error::invalid("table", format!("{schema}.{name} is not in the dump"))
            })?;
        let scratch = format!("drkit_scratch_{}", Timestamp::now().as_nanosecond());
        self.create_database(&scratch).await?;
        let copied = async {
            self.run_pg_restore(
                timeline,
                source,
                manifest,
                dumped,
                environment,
                &scratch,
                false,
            )
            .await?;
            let copy = async {
                self.rename_in(&scratch, table, new_name).await?;
                self.copy_table(environment, &scratch, schema, new_name)
                    .await
            };
            timeline
                .step(format!("copy the table as {new_name}"), copy)
                .await
        }
        .await;
        self.drop_database(&scratch).await;
        copied
    }

    /// Renames `table`, its indexes (their constraints with them) and its
    /// sequences in `database`: the copy's names must not meet the
    /// original's in the target schema.
    async fn rename_in(
        &self,
        database: &str,
        table: &DumpedTable,
        new_name: &str,
    ) -> crate::Result<()> {
        use crate::replication::client::quote_ident;
        let renamed = |old: &str| -> String {
            let name = match old.strip_prefix(table.name.as_str()) {
                Some(rest) => format!("{new_name}{rest}"),
                None => format!("{new_name}_{old}"),
            };
            // PostgreSQL truncates names to 63 bytes.
            let mut end = name.len().min(63);
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name[..end].to_owned()
        };
        let schema = quote_ident(&table.schema)?;
        let mut statements = vec![format!(
            "ALTER TABLE {schema}.{} RENAME TO {}",
            quote_ident(&table.name)?,
            quote_ident(new_name)?
        )];
        for index in &table.indexes {
            statements.push(format!(
                "ALTER INDEX {schema}.{} RENAME TO {}",
                quote_ident(index)?,
                quote_ident(&renamed(index))?
            ));
        }
        for sequence in &table.sequences {
            statements.push(format!(
                "ALTER SEQUENCE {schema}.{} RENAME TO {}",
                quote_ident(sequence)?,
                quote_ident(&renamed(sequence))?
            ));
        }
        let mut sql = SqlClient::connect(&self.config, &self.tls, database).await?;
        sql.query(&statements.join(";\n")).await?;
        sql.close().await.ok();
        Ok(())
    }

    /// `pg_dump -t schema.name` of `from` piped into `pg_restore` into the
    /// target database.
    async fn copy_table(
        &self,
        environment: &Environment,
        from: &str,
        schema: &str,
        name: &str,
    ) -> dr_core::Result<()> {
        let dump_program = self.tools.program("pg_dump")?;
        let restore_program = self.tools.program("pg_restore")?;
        let mut dump = tokio::process::Command::new(&dump_program);
        dump.args(["--format=custom", "--compress=0", "--no-password"])
            .arg(format!("--table={}.{}", sql_name(schema), sql_name(name)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        environment.database(from).apply(&mut dump);
        let mut dumping = dump
            .spawn()
            .map_err(|e| failed("pg_dump", format!("starting it: {e}")))?;
        let (Some(mut stdout), Some(stderr)) = (dumping.stdout.take(), dumping.stderr.take())
        else {
            return Err(failed("pg_dump", "its output could not be read".into()).into());
        };
        let said = tokio::spawn(crate::logical::tools::tail(stderr));
        let mut restore = tokio::process::Command::new(&restore_program);
        restore
            .args(["--no-password", "--exit-on-error", "--single-transaction"])
            .arg(format!(
                "--dbname={}",
                conninfo_dbname(self.into.database())
            ));
        environment
            .database(self.into.database())
            .apply(&mut restore);
        let fed = feed("pg_restore", restore, &mut stdout, false).await?;
        let dumped = dumping
            .wait()
            .await
            .map_err(|e| failed("pg_dump", format!("waiting for it: {e}")))?;
        let said = said.await.unwrap_or_default();
        if !dumped.success() {
            return Err(
                failed("pg_dump", format!("copying {schema}.{name} failed: {said}")).into(),
            );
        }
        if !fed.status.success() {
            return Err(failed(
                "pg_restore",
                format!(
                    "copying {schema}.{name} into {:?} failed: {}",
                    self.into.database(),
                    fed.stderr
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Every restored table has the rows recorded; the caller's checks pass.
    async fn smoke(&self, tables: &[DumpedTable]) -> crate::Result<SmokeReport> {
        let checks: Vec<SmokeCheck> = self
            .checks
            .iter()
            .filter(|c| c.applies_to(&self.database))
            .cloned()
            .collect();
        smoke_check(
            &self.config,
            &self.tls,
            self.into.database(),
            tables,
            &checks,
        )
        .await
    }
}

/// Checks the database `database` of the server `config` points at
/// against a logical backup's record: each of `tables` is there with the
/// rows recorded, and each of `checks` passes. What fails is an outcome,
/// not an error.
///
/// # Errors
/// The database could not be reached.
pub async fn smoke_check(
    config: &tokio_postgres::Config,
    tls: &Tls,
    database: &str,
    tables: &[DumpedTable],
    checks: &[SmokeCheck],
) -> crate::Result<SmokeReport> {
    let mut sql = SqlClient::connect(config, tls, database).await?;
    let mut report = SmokeReport::default();
    for table in tables {
        let name = format!("rows of {}", table.qualified_name());
        let outcome = match catalog::count(&mut sql, &table.schema, &table.name).await {
            Ok(rows) if rows == table.rows => CheckOutcome {
                name,
                passed: true,
                detail: format!("{rows} rows, as recorded"),
            },
            Ok(rows) => CheckOutcome {
                name,
                passed: false,
                detail: format!("{rows} rows; the backup recorded {}", table.rows),
            },
            Err(e) => CheckOutcome {
                name,
                passed: false,
                detail: format!("not readable: {e}"),
            },
        };
        report.outcomes.push(outcome);
    }
    for check in checks {
        let outcome = match sql.query(&check.sql).await {
            Ok(rows) => {
                let value = rows
                    .first()
                    .and_then(|row| row.get_str(0).ok().flatten())
                    .map(str::to_owned);
                let passed = value
                    .as_deref()
                    .is_some_and(|v| !matches!(v, "f" | "0" | "false"));
                CheckOutcome {
                    name: check.name.clone(),
                    passed,
                    detail: match value {
                        Some(v) => format!("returned {v}"),
                        None => "returned nothing or NULL".to_owned(),
                    },
                }
            }
            Err(e) => CheckOutcome {
                name: check.name.clone(),
                passed: false,
                detail: format!("failed: {e}"),
            },
        };
        report.outcomes.push(outcome);
    }
    sql.close().await.ok();
    Ok(report)
}

#[async_trait]
impl Restore for LogicalRestore {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with(Capability::PointInTime)
    }

    async fn restore(&self, request: RestoreRequest<'_>) -> dr_core::Result<RecoveryReport> {
        let (report, smoke) = self.restore_checked(request).await?;
        if !smoke.is_ok() {
            let failed: Vec<String> = smoke
                .failures()
                .map(|o| format!("{}: {}", o.name, o.detail))
                .collect();
            return Err(dr_core::Error::corrupt(
                format!("database {:?} restored", self.into.database()),
                format!("smoke checks failed: {}", failed.join("; ")),
            ));
        }
        Ok(report)
    }
}

/// A libpq connection string naming only `database` (the rest comes from
/// the environment): `dbname='...'`, quotes and backslashes escaped.
fn conninfo_dbname(database: &str) -> String {
    format!(
        "dbname='{}'",
        database.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// Reads the stored dump whole, checking its length and SHA-256.
async fn read_whole(
    source: &dyn SnapshotSource,
    manifest: &Manifest,
    dumped: &DumpedDatabase,
) -> dr_core::Result<u64> {
    let mut reader = source.open_stream(&manifest.id, &dumped.stream).await?;
    tokio::io::copy(&mut reader, &mut tokio::io::sink())
        .await
        .map_err(|e| {
            dr_core::Error::corrupt(
                format!("snapshot {}: {}", manifest.id, dumped.stream),
                format!("the stored dump does not read back: {e}"),
            )
        })
}

/// A `pg_restore --use-list` file naming `table`'s entries: the table, its
/// data, its constraints, indexes, triggers, defaults, comments and
/// grants, and the sequences it owns; its foreign keys only with
/// `foreign_keys` (the tables they point at must be there).
async fn table_list(
    source: &dyn SnapshotSource,
    manifest: &Manifest,
    dumped: &DumpedDatabase,
    table: &DumpedTable,
    program: &Path,
    foreign_keys: bool,
) -> dr_core::Result<ListFile> {
    let mut reader = source.open_stream(&manifest.id, &dumped.stream).await?;
    let mut command = tokio::process::Command::new(program);
    command.arg("--list");
    let fed = feed("pg_restore", command, &mut reader, true).await?;
    if !fed.status.success() {
        return Err(failed(
            "pg_restore",
            format!(
                "listing the dump of {:?} failed: {}",
                dumped.name, fed.stderr
            ),
        )
        .into());
    }
    let listing = String::from_utf8_lossy(&fed.stdout);
    let kept: Vec<&str> = listing
        .lines()
        .filter(|line| !line.starts_with(';') && belongs_to(line, table))
        .filter(|line| foreign_keys || !line.contains(" FK CONSTRAINT "))
        .collect();
    if kept.is_empty() {
        return Err(dr_core::Error::corrupt(
            format!("snapshot {}: {}", manifest.id, dumped.stream),
            format!(
                "its table of contents has no entry of {}",
                table.qualified_name()
            ),
        ));
    }
    ListFile::write(&kept.join("\n"))
        .map_err(|e| dr_core::Error::from(failed("pg_restore", format!("writing its list: {e}"))))
}

/// Whether a `pg_restore --list` line is one of `table`'s entries. Lines
/// read `<id>; <oid> <oid> <KIND> <schema> <name...> <owner>`.
fn belongs_to(line: &str, table: &DumpedTable) -> bool {
    let Some((_, rest)) = line.split_once("; ") else {
        return false;
    };
    // Skip the two OIDs.
    let mut parts = rest.splitn(3, ' ');
    let (Some(_), Some(_), Some(entry)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let on_table =
        |kind: &str| entry.starts_with(&format!("{kind} {} {} ", table.schema, table.name));
    let named = |kind: &str, names: &[String]| {
        names
            .iter()
            .any(|n| entry.starts_with(&format!("{kind} {} {n} ", table.schema)))
    };
    [
        "TABLE",
        "TABLE DATA",
        "CONSTRAINT",
        "FK CONSTRAINT",
        "TRIGGER",
        "DEFAULT",
        "COMMENT",
        "ACL",
        "POLICY",
        "ROW SECURITY",
    ]
    .iter()
    .any(|kind| on_table(kind))
        || named("INDEX", &table.indexes)
        || ["SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET"]
            .iter()
            .any(|kind| named(kind, &table.sequences))
}

/// Why a dump could not be spooled.
enum SpoolError {
    /// The stored dump did not read back.
    Read(std::io::Error),
    /// The spool file could not be written.
    Write(std::io::Error),
}

/// A stored dump written to a file for `pg_restore --jobs`, removed when dropped.
struct Spool {
    path: PathBuf,
}

impl Spool {
    async fn write(
        dir: &Path,
        reader: &mut (dyn tokio::io::AsyncRead + Send + Unpin),
    ) -> Result<Self, SpoolError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let path = dir.join(format!(
            "drkit-restore-{}-{}.dump",
            std::process::id(),
            Timestamp::now().as_nanosecond()
        ));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await
            .map_err(SpoolError::Write)?;
        let spool = Self { path };
        let mut scanner = OffsetScanner::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).await.map_err(SpoolError::Read)?;
            if n == 0 {
                break;
            }
            scanner.feed(&buf[..n]);
            file.write_all(&buf[..n]).await.map_err(SpoolError::Write)?;
        }
        file.flush().await.map_err(SpoolError::Write)?;
        // The data offsets pg_dump could not write into a pipe: with them
        // pg_restore --jobs seeks to each table and starts the largest first.
        match scanner.patches() {
            Ok(patches) => {
                let file = file.into_std().await;
                tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    patches
                        .iter()
                        .try_for_each(|patch| file.write_all_at(&patch.bytes, patch.at))
                })
                .await
                .map_err(|e| SpoolError::Write(std::io::Error::other(e)))?
                .map_err(SpoolError::Write)?;
            }
            Err(why) => tracing::info!(
                %why,
                "the spooled dump keeps its unset data offsets: pg_restore --jobs scans for each table's data"
            ),
        }
        Ok(spool)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The list file of one restore, removed when dropped.
struct ListFile {
    path: PathBuf,
}

impl ListFile {
    fn write(text: &str) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!(
            "drkit-restore-list-{}-{}",
            std::process::id(),
            Timestamp::now().as_nanosecond()
        ));
        std::fs::write(&path, text)?;
        Ok(Self { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ListFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orders() -> DumpedTable {
        DumpedTable {
            schema: "public".into(),
            name: "orders".into(),
            rows: 3,
            fingerprint: String::new(),
            indexes: vec!["orders_pkey".into(), "orders_total".into()],
            sequences: vec!["orders_id_seq".into()],
        }
    }

    #[test]
    fn database_names_are_quoted_for_libpq() {
        assert_eq!(conninfo_dbname("app"), "dbname='app'");
        assert_eq!(conninfo_dbname("it's a\\b"), "dbname='it\\'s a\\\\b'");
    }

    #[test]
    fn a_tables_entries_are_picked_from_the_listing() {
        let listing = "\
;
; Archive created at 2026-12-06 17:00:00 UTC
215; 1259 16390 TABLE public orders postgres
216; 1259 16389 SEQUENCE public orders_id_seq postgres
3345; 0 0 SEQUENCE OWNED BY public orders_id_seq postgres
3190; 2604 16393 DEFAULT public orders id postgres
3338; 0 16390 TABLE DATA public orders postgres
3346; 0 0 SEQUENCE SET public orders_id_seq postgres
3194; 2606 16395 CONSTRAINT public orders orders_pkey postgres
3195; 1259 16396 INDEX public orders_total postgres
217; 1259 16400 TABLE public orders_archive postgres
3339; 0 16400 TABLE DATA public orders_archive postgres
3196; 1259 16401 INDEX public orders_archive_total postgres
3197; 2606 16402 FK CONSTRAINT public lines lines_order_fkey postgres";
        let picked: Vec<&str> = listing
            .lines()
            .filter(|l| !l.starts_with(';') && belongs_to(l, &orders()))
            .map(|l| l.split_once("; ").unwrap().0)
            .collect();
        assert_eq!(
            picked,
            ["215", "216", "3345", "3190", "3338", "3346", "3194", "3195"]
        );
    }
}
