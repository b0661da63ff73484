//! [`RestoreTest`]: the DR plans' "restore the latest backup into a scratch
//! server, check it, time it against the RTO, clean up" as one call, for
//! logical and physical backups alike.

use dr_core::{
    ComponentId, Operation, RecoveryReport, Restore, RestoreRequest, SnapshotId, Timeline,
};
use serde::{Deserialize, Serialize};

use crate::logical::{
    LibpqTls, LogicalBackupDetails, LogicalRestore, PgTools, RestoreInto, SmokeCheck, SmokeReport,
    logical_backups, smoke_check,
};
use crate::replication::Tls;
use crate::restore::{CHOOSE_STEP, PitrRestore};
use crate::scratch::{ScratchOptions, ScratchServer};

/// Which kind of backup a [`RestoreTest`] restores.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RestoreTestKind {
    /// A logical backup: every database it holds, with the globals.
    Logical,
    /// A physical base backup and its WAL, replayed and promoted; the
    /// restored cluster is connected to with this config's user, password
    /// and database (its roles are the backed-up server's).
    Physical(Box<tokio_postgres::Config>),
}

/// What a restore test found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RestoreTestReport {
    /// The backup restored.
    pub snapshot: Option<SnapshotId>,
    /// The restore's steps, its RTO and RPO against the objectives.
    pub recovery: RecoveryReport,
    /// The smoke checks.
    pub smoke: SmokeReport,
}

impl RestoreTestReport {
    /// Whether the checks passed and the objectives were met.
    pub fn is_ok(&self) -> bool {
        self.smoke.is_ok() && self.recovery.objectives_met()
    }
}

/// Restores a component's latest (or chosen) backup into a throwaway
/// server started for the purpose, runs the smoke checks, times it against
/// the component's RTO, and removes the server: the DR plans' monthly
/// restore test and daily verification.
#[derive(Debug, Clone)]
pub struct RestoreTest {
    component: ComponentId,
    kind: RestoreTestKind,
    tools: PgTools,
    scratch: ScratchOptions,
    checks: Vec<SmokeCheck>,
}

impl RestoreTest {
    /// A test of `component`'s backups of `kind`, with PostgreSQL's
    /// programs from `tools` (the scratch server's too).
    pub fn new(component: ComponentId, kind: RestoreTestKind, tools: PgTools) -> Self {
        Self {
            component,
            kind,
            tools,
            scratch: ScratchOptions::default(),
            checks: Vec::new(),
        }
    }

    /// Where the scratch server lives and who runs it.
    #[must_use]
    pub fn scratch(mut self, options: ScratchOptions) -> Self {
        self.scratch = options;
        self
    }

    /// Adds a check run on the restored data.
    #[must_use]
    pub fn check(mut self, check: SmokeCheck) -> Self {
        self.checks.push(check);
        self
    }

    /// Runs the test on the backup `request`'s target names. The scratch
    /// server is removed whatever happens.
    ///
    /// # Errors
    /// No backup matches, the scratch server could not be made or started,
    /// or the restore failed (checks that fail are in the report).
    pub async fn run(&self, request: RestoreRequest<'_>) -> dr_core::Result<RestoreTestReport> {
        match &self.kind {
            RestoreTestKind::Logical => self.run_logical(request).await,
            RestoreTestKind::Physical(connect) => self.run_physical(request, connect).await,
        }
    }

    async fn run_logical(&self, request: RestoreRequest<'_>) -> dr_core::Result<RestoreTestReport> {
        let mut timeline = Timeline::start_now();
        let server = timeline
            .step(
                "start a scratch server",
                ScratchServer::start(&self.tools, &self.scratch),
            )
            .await?;
        let tested = self.restore_logical(&request, &server, &mut timeline).await;
        server.remove().await.ok();
        let (snapshot, smoke, snapshot_at) = tested?;
        let mut recovery = RecoveryReport::new(
            self.component.clone(),
            Operation::Restore,
            request.objectives,
            timeline,
        );
        let wanted = request
            .incident_at
            .unwrap_or(recovery.timeline.started_at());
        if let Some(at) = request.incident_at {
            recovery = recovery.with_incident_at(at);
        }
        Ok(RestoreTestReport {
            snapshot: Some(snapshot),
            recovery: recovery.with_data_loss_between(snapshot_at, wanted),
            smoke,
        })
    }

    async fn restore_logical(
        &self,
        request: &RestoreRequest<'_>,
        server: &ScratchServer,
        timeline: &mut Timeline,
    ) -> dr_core::Result<(SnapshotId, SmokeReport, jiff::Timestamp)> {
        // The backup is chosen once: every database from the same one.
        let backups = logical_backups(request.snapshots, &self.component).await?;
        if matches!(
            request.target,
            dr_core::RecoveryTarget::Position(_) | dr_core::RecoveryTarget::RestorePoint(_)
        ) {
            return Err(dr_core::Error::invalid(
                "restore test",
                format!(
                    "a logical backup restores as taken, not to {:?}",
                    request.target
                ),
            ));
        }
        let chosen = request.target.snapshot_among(&backups).ok_or_else(|| {
            dr_core::Error::not_found(format!("a logical backup of {}", self.component))
        })?;
        let details = LogicalBackupDetails::of(chosen)?;
        let target = dr_core::RecoveryTarget::Snapshot(chosen.id);
        let config = server.config();
        let mut smoke = SmokeReport::default();
        for (index, database) in details.databases.iter().enumerate() {
            // The scratch cluster has its own `postgres`: restored over.
            let into = if database.name == "postgres" {
                RestoreInto::Over(database.name.clone())
            } else {
                RestoreInto::NewDatabase(database.name.clone())
            };
            let mut restore = LogicalRestore::new(
                self.component.clone(),
                config.clone(),
                Tls::none(),
                LibpqTls::disable(),
                &database.name,
                into,
            )
            .tools(self.tools.clone())
            .globals(index == 0);
            for check in &self.checks {
                restore = restore.check(check.clone());
            }
            let step = format!("restore {}", database.name);
            let sub = RestoreRequest::new(request.snapshots, &target, request.objectives);
            let (_, checked) = timeline.step(step, restore.restore_checked(sub)).await?;
            smoke
                .outcomes
                .extend(checked.outcomes.into_iter().map(|mut o| {
                    o.name = format!("{}: {}", database.name, o.name);
                    o
                }));
        }
        let snapshot_at = chosen.recovery_point.at;
        Ok((chosen.id, smoke, snapshot_at))
    }

    async fn run_physical(
        &self,
        request: RestoreRequest<'_>,
        connect: &tokio_postgres::Config,
    ) -> dr_core::Result<RestoreTestReport> {
        let mut server = ScratchServer::prepare(&self.tools, &self.scratch)?;
        let mut restore = PitrRestore::new(self.component.clone(), server.data_dir())
            .start_with(server.pg_ctl_as(connect.clone()));
        if let Some((uid, gid)) = self.scratch.run_as {
            restore = restore.owner(uid, gid);
        }
        let restored = restore.restore(request).await;
        // Started or not, it is stopped before the directory goes.
        server.started();
        let checked = match &restored {
            Ok(_) => {
                let config = server.pg_ctl_as(connect.clone()).config();
                let database = connect.get_dbname().unwrap_or("postgres");
                let checks: Vec<SmokeCheck> = self
                    .checks
                    .iter()
                    .filter(|c| c.applies_to(database))
                    .cloned()
                    .collect();
                smoke_check(&config, &Tls::none(), database, &[], &checks)
                    .await
                    .map_err(dr_core::Error::from)
            }
            Err(_) => Ok(SmokeReport::default()),
        };
        server.remove().await.ok();
        let recovery = restored?;
        let smoke = checked?;
        let snapshot = chosen_snapshot(&recovery);
        Ok(RestoreTestReport {
            snapshot,
            recovery,
            smoke,
        })
    }
}

/// The base backup a physical restore's report names in its first step.
fn chosen_snapshot(report: &RecoveryReport) -> Option<SnapshotId> {
    report
        .timeline
        .steps()
        .iter()
        .find_map(|step| step.name.strip_prefix(CHOOSE_STEP)?.trim().parse().ok())
}
