//! `drkit config check`: everything that can be checked without acting —
//! the file, the repository (reachable, the password right, opened
//! read-only so nothing is written), each PostgreSQL server (reachable,
//! the credentials right, the cluster's identity) and each Kubernetes
//! cluster (reachable, its resources discovered) — with the plan printed.

use dr_postgres::replication::{ReplicationClient, SqlClient};

use crate::context::{Access, Context};
use crate::failure::{Failure, Outcome};

/// Checks, printing one line per check; the first failure ends it.
pub(crate) async fn run(cx: &Context) -> Outcome {
    cx.out.line(cx.config.plan(jiff::Timestamp::now()));
    cx.repository(Access::ReadOnly).await?;
    cx.out
        .line(format_args!("repository {}: opened", cx.location()));
    for component in cx.config.components() {
        if component.redis().is_some() {
            crate::commands::redis::check(cx, component).await?;
            continue;
        }
        if component.kubernetes().is_some() {
            let id = component.id();
            let cluster = cx.kubernetes_cluster(component).await?;
            let discovered = cluster
                .discover()
                .await
                .map_err(|e| Failure::of(format_args!("discovering the resources of {id}"), &e))?;
            cx.out.line(format_args!(
                "{id}: {} answers, {} resources served{}",
                cluster.name(),
                discovered.resources.len(),
                match discovered.unavailable.len() {
                    0 => String::new(),
                    n => format!(", {n} API groups unavailable"),
                }
            ));
            continue;
        }
        if let Some(dump) = component.postgres_dump() {
            check_dump(cx, component, dump).await?;
            continue;
        }
        if component.postgres().is_none() {
            continue;
        }
        let (config, tls) = cx.postgres(component).await?;
        let id = component.id();
        let mut client = ReplicationClient::connect(&config, &tls)
            .await
            .map_err(|e| Failure::of(format_args!("connecting to {id}"), &e))?;
        let identity = client
            .identify_system()
            .await
            .map_err(|e| Failure::of(format_args!("identifying {id}"), &e))?;
        cx.out.line(format_args!(
            "{id}: {} answers, system identifier {}, timeline {}",
            client.addr(),
            identity.system_id,
            identity.timeline
        ));
        if component.postgres().is_some_and(|p| p.wal_archiving()) {
            let shown = |name: &'static str| {
                move |e: dr_postgres::Error| Failure::of(format_args!("reading {name} of {id}"), &e)
            };
            let mode = client
                .show("archive_mode")
                .await
                .map_err(shown("archive_mode"))?;
            let command = client
                .show("archive_command")
                .await
                .map_err(shown("archive_command"))?;
            let archiving = mode != "off" && command.contains("wal push");
            cx.out.line(format_args!(
                "{id}: archive_mode = {mode}, archive_command = '{command}'{}",
                if archiving {
                    ""
                } else {
                    ": WAL is not archived through drkit \
                     (archive_command = 'drkit --config <file> wal push %p')"
                }
            ));
            if !archiving {
                return Err(Failure::Failed(format!(
                    "{id} has wal_archiving = true, but its server does not archive WAL \
                     through drkit wal push"
                )));
            }
        }
    }
    Ok(())
}

/// A `postgres-dump` component: the server answers SQL with these
/// credentials, and the `pg_dump` found can dump it.
async fn check_dump(
    cx: &Context,
    component: &drkit::Component,
    dump: &drkit::DumpSettings,
) -> Outcome {
    let id = component.id();
    let (config, tls) = cx.postgres(component).await?;
    let database = config.get_dbname().unwrap_or("postgres").to_owned();
    let sql = SqlClient::connect(&config, &tls, &database)
        .await
        .map_err(|e| Failure::of(format_args!("connecting to {id}"), &e))?;
    let version = sql.server_version().unwrap_or("unknown").to_owned();
    sql.close().await.ok();
    let tools = dump.connection().pg_tools();
    let pg_dump = dr_postgres::LogicalBackup::check_tools(&tools, &version)
        .await
        .map_err(|e| Failure::of(format_args!("checking pg_dump for {id}"), &e))?;
    cx.out.line(format_args!(
        "{id}: PostgreSQL {version} answers; pg_dump {pg_dump} can dump it"
    ));
    Ok(())
}
