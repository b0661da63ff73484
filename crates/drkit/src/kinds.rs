//! What each kind of component does for the commands and the agent: its
//! backup, its latest backup, the check of it, and its restore test. The
//! work is the libraries'; this only picks which.

use dr_core::{Backup, Manifest, RestoreRequest, Timeline, VerificationReport};
use dr_k8s::{ResourceBackup, is_resource_backup, resource_backups};
use dr_livekit::LiveKitSnapshot;
use dr_postgres::{
    BaseBackup, LogicalBackup, RestoreTest, RestoreTestKind, RestoreTestReport, ScratchOptions,
    SmokeCheck, base_backups, logical_backups, verify_base_backup, verify_logical_backup,
};
use dr_redis::{ClusterSnapshot, RdbSnapshot};
use dr_storage::Repository;
use drkit::Component;

use crate::context::Context;
use crate::failure::Failure;

/// The backup a `backup` of `component` takes.
pub(crate) async fn backup_of(
    cx: &Context,
    component: &Component,
) -> Result<Box<dyn Backup>, Failure> {
    if let Some(kubernetes) = component.kubernetes() {
        let cluster = cx.kubernetes_cluster(component).await?;
        return Ok(Box::new(ResourceBackup::new(
            cluster,
            component.id().clone(),
            kubernetes.filter().clone(),
        )));
    }
    if component.livekit().is_some() {
        let client = cx.livekit(component, false).await?;
        return Ok(Box::new(LiveKitSnapshot::new(
            component.id().clone(),
            client,
        )));
    }
    if let Some(redis) = component.redis() {
        let id = component.id().clone();
        let seed = cx.redis_seed(component).await?;
        if !redis.is_cluster() {
            return Ok(Box::new(RdbSnapshot::new(id, seed).mode(redis.mode())));
        }
        let mut snapshot = ClusterSnapshot::new(id, seed);
        if let Some(at_most) = redis.pause_writes() {
            snapshot = snapshot.pause_writes(at_most);
        }
        if redis.from_masters() {
            snapshot = snapshot.from_masters();
        }
        return Ok(Box::new(snapshot));
    }
    let (config, tls) = cx.postgres(component).await?;
    let id = component.id().clone();
    if let Some(dump) = component.postgres_dump() {
        let connection = dump.connection();
        return Ok(Box::new(
            LogicalBackup::new(id, config, tls, connection.libpq_tls())
                .databases(dump.databases().clone())
                .globals(dump.globals())
                .tools(connection.pg_tools()),
        ));
    }
    Ok(Box::new(BaseBackup::new(id, config, tls)))
}

/// The newest committed backup of `component`, of its kind.
pub(crate) async fn latest_backup(
    repo: &Repository,
    component: &Component,
) -> Result<Option<Manifest>, Failure> {
    let id = component.id();
    let listed = if component.kubernetes().is_some() {
        resource_backups(repo, id).await
    } else if component.livekit().is_some() {
        dr_livekit::livekit_snapshots(repo, id).await
    } else if component.redis().is_some() {
        dr_redis::redis_snapshots(repo, id).await
    } else if component.postgres_dump().is_some() {
        logical_backups(repo, id).await
    } else {
        base_backups(repo, id).await
    };
    listed
        .map(|mut all| all.pop())
        .map_err(|e| Failure::of(format_args!("listing the backups of {id}"), &e))
}

/// Whether `manifest` is a backup of `component`'s kind (a dump, or a base
/// backup), for a caller that has listed the snapshots already.
pub(crate) fn is_backup_of(component: &Component, manifest: &Manifest) -> bool {
    if component.kubernetes().is_some() {
        is_resource_backup(manifest)
    } else if component.livekit().is_some() {
        dr_livekit::is_livekit_snapshot(manifest)
    } else if component.redis().is_some() {
        dr_redis::is_redis_snapshot(manifest)
    } else if component.postgres_dump().is_some() {
        dr_postgres::is_logical_backup(manifest)
    } else {
        dr_postgres::is_base_backup(manifest)
    }
}

/// Checks the latest backup of `component` without restoring it; any
/// problem is a failure naming the first.
pub(crate) async fn verify_latest(
    repo: &Repository,
    component: &Component,
) -> Result<VerificationReport, Failure> {
    let id = component.id();
    let latest = latest_backup(repo, component)
        .await?
        .ok_or_else(|| Failure::Failed(format!("{id} has no backup to verify")))?;
    let report = if component.kubernetes().is_some() {
        verify_resource_backup(repo, &latest).await
    } else if component.livekit().is_some() {
        dr_livekit::verify_snapshot(repo, &latest).await
    } else if component.redis().is_some() {
        dr_redis::verify_snapshot(repo, &latest.id).await
    } else if let Some(dump) = component.postgres_dump() {
        verify_logical_backup(repo, &latest.id, &dump.connection().pg_tools()).await
    } else {
        verify_base_backup(repo, &latest.id).await
    }
    .map_err(|e| Failure::of(format_args!("verifying snapshot {}", latest.id), &e))?;
    if let Some(first) = report.findings.first() {
        return Err(Failure::Failed(format!(
            "snapshot {} of {id} has {} problems, the first: {first}",
            latest.id,
            report.findings.len()
        )));
    }
    Ok(report)
}

/// Reads a resource backup back whole: `read_backup` checks every object
/// against its path and the count its record keeps; damage is an error.
async fn verify_resource_backup(
    repo: &Repository,
    manifest: &Manifest,
) -> dr_core::Result<VerificationReport> {
    let mut timeline = Timeline::start_now();
    let (_, objects) = timeline
        .step("read the objects back", dr_k8s::read_backup(repo, manifest))
        .await?;
    Ok(VerificationReport {
        snapshot: manifest.id,
        checked: objects.len() as u64,
        bytes: manifest.total_size(),
        findings: Vec::new(),
        timeline,
    })
}

/// Restores the latest backup of `component` into a scratch server,
/// checks it and removes the server.
pub(crate) async fn restore_test(
    cx: &Context,
    repo: &Repository,
    component: &Component,
    checks: &[SmokeCheck],
) -> Result<RestoreTestReport, Failure> {
    let id = component.id();
    let connection = component.connection().ok_or_else(|| {
        Failure::Usage(format!(
            "{id}: restore tests into a scratch server are for PostgreSQL components; \
             check its snapshot with drkit verify --component {id}"
        ))
    })?;
    let kind = if component.postgres_dump().is_some() {
        RestoreTestKind::Logical
    } else {
        // The restored cluster answers on the scratch server's socket, as
        // the component's user.
        let (config, _) = cx.postgres(component).await?;
        RestoreTestKind::Physical(Box::new(crate::commands::restore::local_connection(
            &config,
        )))
    };
    let mut scratch = ScratchOptions::new();
    if let Some((uid, gid)) = cx.postgres_os_user()? {
        scratch = scratch.run_as(uid, gid);
    }
    let mut test = RestoreTest::new(id.clone(), kind, connection.pg_tools()).scratch(scratch);
    for check in checks {
        test = test.check(check.clone());
    }
    let target = dr_core::RecoveryTarget::Latest;
    let journals = repo.segment_journals();
    let mut request = RestoreRequest::new(repo, &target, component.objectives()).archive(repo);
    if let Some(journals) = &journals {
        request = request.journals(journals);
    }
    test.run(request)
        .await
        .map_err(|e| Failure::of(format_args!("the restore test of {id}"), &e))
}
