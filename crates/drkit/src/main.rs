//! `drkit`: the operator's binary. One config file (`--config`, default
//! `./drkit.toml`, or `DRKIT_CONFIG`) names the repository and the
//! components; every command is a thin layer over the library calls a
//! service could make itself.
//!
//! Exit status: 0 done; 1 the operation failed; 2 the command line or the
//! config file is wrong; 3 the operation succeeded but missed its objective.

mod cluster;
mod commands;
mod context;
mod failure;
mod kinds;
mod output;
mod yaml;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use dr_postgres::{DEFAULT_SEGMENT_SIZE, PgCtl, PitrRestore, SmokeCheck, WalSegmentSize};
use dr_storage::SnapshotFilter;

use crate::commands::target::TargetArg;
use crate::context::{Access, Context};
use crate::failure::{Failure, Outcome};
use crate::output::Output;

/// Disaster recovery for PostgreSQL, Redis and Kubernetes: backups, WAL
/// archiving, point-in-time restores, Redis and Redis Cluster snapshots and
/// restores, Kubernetes resource backups and restores, into one repository,
/// measured against the objectives of your DR plan.
#[derive(Debug, Parser)]
#[command(name = "drkit", version, max_term_width = 100)]
struct Cli {
    /// The config file.
    #[arg(
        long,
        global = true,
        env = "DRKIT_CONFIG",
        default_value = "drkit.toml"
    )]
    config: PathBuf,
    /// Print listings and reports as JSON on standard output.
    #[arg(long, global = true)]
    json: bool,
    /// No progress and no informational lines.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// How log lines on standard error look; which are shown is RUST_LOG's
    /// (default: warnings and errors; for the agent, also what it does).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// The config file: checked, and the plan it resolves to printed.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Creates the repository the config names.
    Init,
    /// Takes a backup of a component: a base backup or dump (PostgreSQL),
    /// an RDB snapshot (Redis), every shard at once (Redis Cluster), the
    /// objects the component selects (Kubernetes).
    Backup {
        /// The component, as the config names it (`postgres/main`).
        component: String,
        /// Store only what changed since the component's latest full backup.
        #[arg(long)]
        delta: bool,
        /// A label for the snapshot, `key=value`; repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Then forget the snapshots the component's retention policy does
        /// not keep.
        #[arg(long)]
        forget: bool,
    },
    /// Lists the committed snapshots.
    Snapshots {
        /// Only this component's.
        #[arg(long)]
        component: Option<String>,
        /// Only those committed at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<jiff::Timestamp>,
        /// Only those committed before this time (RFC 3339).
        #[arg(long)]
        until: Option<jiff::Timestamp>,
        /// Only those with this label, `key=value`; repeatable.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// Restores a component: PostgreSQL into a new data directory (or a
    /// dump into a database); Redis into a running server or Cluster, an
    /// RDB file, or a cluster rebuilt on empty nodes; Kubernetes objects
    /// into their cluster or another.
    Restore {
        /// The component, as the config names it.
        component: String,
        /// What to recover to: latest, a time (2026-12-06T14:30:00Z),
        /// lsn:<lsn>[@<timeline>], name:<restore point>, or a snapshot id.
        #[arg(long, default_value = "latest")]
        to: TargetArg,
        /// The new data directory: absent or empty (postgres components).
        #[arg(long)]
        target: Option<PathBuf>,
        /// Who the restored files belong to, `<uid>:<gid>` (the server's
        /// user, when drkit runs as root).
        #[arg(long)]
        owner: Option<Owner>,
        /// When the incident happened (RFC 3339): the RTO is measured from it.
        #[arg(long)]
        incident_at: Option<jiff::Timestamp>,
        /// Saves the recovery report as JSON.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Then start PostgreSQL on the new directory and wait until it has
        /// replayed to the target and promoted: the RTO measured includes the
        /// replay. The server keeps running.
        #[arg(long)]
        start: bool,
        /// The port the started server listens on.
        #[arg(long, requires = "start", default_value_t = 5432)]
        port: u16,
        /// The directory of the started server's Unix socket.
        #[arg(long, requires = "start", default_value = "/tmp")]
        socket_dir: PathBuf,
        /// PostgreSQL's server programs (pg_ctl); default `pg_config --bindir`.
        #[arg(long, requires = "start")]
        pg_bin: Option<PathBuf>,
        /// The dumped database to restore, when the dump holds several
        /// (postgres-dump components).
        #[arg(long)]
        database: Option<String>,
        /// The new database to restore into; default `<database>_restored`.
        #[arg(long, conflicts_with = "over")]
        into: Option<String>,
        /// Restore over this existing database, dropping what the dump holds
        /// there first (pg_restore --clean --if-exists).
        #[arg(long)]
        over: Option<String>,
        /// Only this table (`schema.name`, or `name` in public), with its
        /// indexes, constraints and sequences.
        #[arg(long, conflicts_with = "schema")]
        table: Option<String>,
        /// Restore the --table under this name, beside the original (through
        /// a scratch database), with its indexes and sequences renamed.
        #[arg(long, requires = "table")]
        rename: Option<String>,
        /// Only this schema.
        #[arg(long)]
        schema: Option<String>,
        /// Restore the roles and tablespaces first.
        #[arg(long)]
        globals: bool,
        /// Restore into the new database with this many pg_restore jobs; the
        /// dump is first written to --spool-dir (as large as the dump).
        #[arg(long, conflicts_with = "over")]
        jobs: Option<usize>,
        /// Where a parallel restore spools the dump; default the temporary directory.
        #[arg(long, requires = "jobs")]
        spool_dir: Option<PathBuf>,
        /// A check after the restore, `name=SQL`, passing when the query's
        /// first value is neither NULL, false nor 0; repeatable.
        #[arg(long = "check", value_parser = parse_check)]
        checks: Vec<SmokeCheck>,
        /// Redis: restore into this server, `host:port`, instead of the
        /// component's own.
        #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["cluster", "file", "rebuild_on"])]
        server: Option<String>,
        /// Redis: restore into the running Cluster this node belongs to,
        /// keys routed by slot.
        #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["file", "rebuild_on"])]
        cluster: Option<String>,
        /// Redis: write the RDB as this file, for a stopped server to load
        /// (a cold restore).
        #[arg(long, conflicts_with = "rebuild_on")]
        file: Option<PathBuf>,
        /// Redis: the shard of a cluster snapshot to write with --file (its
        /// master's node id or address).
        #[arg(long, requires = "file")]
        shard: Option<String>,
        /// Redis: rebuild the whole cluster on these empty cluster-enabled
        /// nodes (`host:port`, comma-separated): slots, replicas, data.
        #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
        rebuild_on: Vec<String>,
        /// Redis: what to do with keys the target has already: fail (before
        /// writing anything), skip, or replace.
        #[arg(long, default_value = "fail")]
        conflict: dr_redis::Conflict,
        /// Redis: write as the snapshot is read, checking it as it goes,
        /// instead of reading it whole first: faster, but a damaged snapshot
        /// then stops the restore with the keys before it written.
        #[arg(long)]
        single_pass: bool,
        /// Redis, with a command archive: where drkit listens for the
        /// target's replication connection while it replays (it plays the
        /// target's master); default 127.0.0.1 on a free port.
        #[arg(long, value_name = "IP:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Redis, with a command archive: the host the target connects to
        /// (default the --listen address's IP).
        #[arg(long, value_name = "HOST", requires = "listen")]
        advertise: Option<String>,
        /// Redis, with a command archive, restoring into a Cluster or an RDB
        /// file: the empty standalone server each replay runs on before its
        /// data is fetched (reached with the component's credentials);
        /// default a redis-server from PATH that drkit starts on a free
        /// loopback port and stops after.
        #[arg(long, value_name = "HOST:PORT")]
        staging: Option<String>,
        /// Kubernetes: restore the objects of namespace FROM (and the
        /// namespace itself) into TO; repeatable.
        #[arg(long = "namespace-map", value_name = "FROM=TO", value_parser = parse_mapping)]
        namespace_map: Vec<(String, String)>,
        /// Kubernetes: only the objects of this namespace, as backed up
        /// (and cluster-scoped ones); repeatable.
        #[arg(long = "only-namespace", value_name = "NAMESPACE")]
        only_namespaces: Vec<String>,
        /// Kubernetes: only this resource, as kubectl names it
        /// (`configmaps`, `deployments.apps`), and the namespaces its
        /// objects go into; repeatable.
        #[arg(long = "only-kind", value_name = "KIND")]
        only_kinds: Vec<String>,
        /// Kubernetes: what to do with an object that exists: skip it,
        /// update it (server-side apply), or recreate it (delete, then
        /// create). Default skip.
        #[arg(long, value_enum)]
        existing: Option<ExistingArg>,
        /// Kubernetes: the server checks every write and keeps none.
        #[arg(long)]
        dry_run: bool,
        /// Kubernetes: restore into the cluster of this kubeconfig (its
        /// current context unless --context names one) instead of the
        /// component's.
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// Kubernetes: restore into this context (of --kubeconfig, else of
        /// the component's kubeconfig), such as the DR cluster's.
        #[arg(long)]
        context: Option<String>,
        /// LiveKit: restore onto the component's standby (its
        /// `standby_url`) instead of its server.
        #[arg(long)]
        standby: bool,
        /// LiveKit: save the ids and stream keys the server assigned anew
        /// (ingress, SIP trunks and rules, egress, rooms) as JSON.
        #[arg(long, value_name = "FILE", conflicts_with = "redis_keys")]
        remap: Option<PathBuf>,
        /// LiveKit: instead of the API, write LiveKit's durable keys
        /// (ingress, SIP, agent dispatches) back into its Redis from the
        /// latest snapshot of the component's `redis_component`: every id
        /// and stream key as it was.
        #[arg(long, conflicts_with = "standby")]
        redis_keys: bool,
    },
    /// Restores the latest backup into a scratch server started for it,
    /// checks it, times it against the RTO, and removes the server.
    RestoreTest {
        /// The component.
        component: String,
        /// A check on the restored data, `name=SQL`; repeatable.
        #[arg(long = "check", value_parser = parse_check)]
        checks: Vec<SmokeCheck>,
        /// Saves the report as JSON.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Per component: the newest restorable point, its age, and the RPO
    /// objective met, at risk or missed (exit 3); and for a cluster with a
    /// [component.failover] table, each member's role, timeline and lag.
    Status,
    /// Fails a PostgreSQL primary or a Redis master over to its most
    /// advanced healthy replica (members, loss limit and fence in
    /// [component.failover]).
    Failover {
        /// The component.
        component: String,
        /// Prints the plan (which replica, what would be lost, what is
        /// fenced) and does nothing.
        #[arg(long)]
        dry_run: bool,
        /// A planned move of a healthy primary, losing nothing: the old
        /// primary is fenced and the replica waited for until it replayed
        /// everything.
        #[arg(long)]
        switchover: bool,
        /// Promotes even beyond the loss limit.
        #[arg(long)]
        force: bool,
        /// Promotes this replica instead of the most advanced.
        #[arg(long, value_name = "MEMBER")]
        to: Option<String>,
        /// The old primary is known to be dead: a fence that fails does not
        /// stop the failover.
        #[arg(long)]
        known_dead: bool,
    },
    /// On a former primary's host, its server stopped: rewinds its data
    /// directory (pg_rewind, or a fresh copy with the old one kept aside)
    /// to follow the cluster's primary; start the server afterwards.
    Rejoin {
        /// The component.
        component: String,
        /// The member to rejoin, as [component.failover] names it.
        member: String,
        /// Its data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Reads the repository's data back and checks it.
    Verify {
        /// Read only this random fraction of the data (0 to 1).
        #[arg(long, default_value_t = 1.0, conflicts_with = "component")]
        fraction: f64,
        /// Check only this component's latest base backup, against its own
        /// checksums.
        #[arg(long)]
        component: Option<String>,
    },
    /// Checks the repository's structure without reading the data.
    Check,
    /// Forgets the snapshots each component's retention policy does not keep.
    Forget {
        /// Only say what would be forgotten.
        #[arg(long)]
        dry_run: bool,
    },
    /// Removes the data no snapshot needs any more.
    Prune {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// PostgreSQL's archive_command and restore_command.
    #[command(subcommand)]
    Wal(WalCommand),
    /// Runs every schedule of the config, the continuous WAL archivers and
    /// /metrics, until SIGTERM.
    Agent,
    /// Running drkit in Kubernetes.
    #[command(subcommand)]
    Kubernetes(KubernetesCommand),
    /// The runbooks' kubectl steps on a cluster (no config file needed):
    /// scale, restart, rollout status and undo, fence.
    K8s {
        #[command(flatten)]
        cluster: commands::k8s::ClusterArgs,
        #[command(subcommand)]
        command: commands::k8s::K8sCommand,
    },
    /// LiveKit runbooks.
    #[command(subcommand)]
    Livekit(LiveKitCommand),
    /// Redis snapshots and RDB files.
    #[command(subcommand)]
    Redis(RedisCommand),
    /// Prints a recovery report saved with `restore --report`.
    Report {
        /// The saved report.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Checks the config file, the repository (reachable, the password
    /// right) and every component's server, without changing anything, and
    /// prints the plan.
    Check,
}

#[derive(Debug, Subcommand)]
enum KubernetesCommand {
    /// Prints the YAML that runs drkit in a cluster: the config as a
    /// ConfigMap, Secret references, a ServiceAccount, and the agent's
    /// Deployment (one replica, Recreate) or one CronJob per schedule.
    Manifests {
        #[command(flatten)]
        options: commands::kubernetes::ManifestOptions,
    },
    /// Prints the strategic merge patch that gives a PostgreSQL
    /// StatefulSet's pods drkit (an init container copies it) and the
    /// config, for archive_command.
    PostgresPatch {
        /// The image with drkit.
        #[arg(long, default_value = commands::kubernetes::DEFAULT_IMAGE)]
        image: String,
        /// The PostgreSQL container's name in the pod.
        #[arg(long, default_value = "postgres")]
        container: String,
        /// The name given to `manifests` (its ConfigMap and Secret).
        #[arg(long, default_value = "drkit")]
        name: String,
    },
    /// Copies this executable to a path: the init container's job.
    CopyBinary {
        /// Where to put it.
        dest: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RedisCommand {
    /// What an RDB holds: keys per type and database, stored bytes, the
    /// biggest keys, and when keys expire.
    Inspect {
        /// The snapshot (its id, as `drkit snapshots` lists it).
        #[arg(required_unless_present = "file")]
        snapshot: Option<String>,
        /// An RDB file instead of a snapshot (no config needed).
        #[arg(long, conflicts_with = "snapshot")]
        file: Option<PathBuf>,
        /// The shard of a cluster snapshot: its master's node id or address.
        #[arg(long)]
        shard: Option<String>,
        /// How many of the biggest keys to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
}

#[derive(Debug, Subcommand)]
enum LiveKitCommand {
    /// The node-failure runbook: the SFU's pods that failed (not ready, or
    /// Failed or Unknown) deleted one by one, each replacement waited
    /// ready, then the SFU probed until it serves and, with --metrics, its
    /// participants counted back; timed as a recovery report.
    NodeFailure {
        /// The livekit component.
        component: String,
        #[command(flatten)]
        cluster: commands::k8s::ClusterArgs,
        /// The SFU pods' label selector.
        #[arg(long, short = 'l', default_value = "app=livekit")]
        selector: String,
        /// LiveKit's Prometheus metrics (its prometheus port), where the
        /// participants are counted.
        #[arg(long, value_name = "URL")]
        metrics: Option<String>,
        /// Waits until the metrics count at least this many participants
        /// (those before the failure, back); needs --metrics.
        #[arg(long, value_name = "N", requires = "metrics")]
        expect_participants: Option<u64>,
        /// How long the whole runbook may take.
        #[arg(long, default_value = "5m", value_parser = commands::k8s::parse_duration)]
        timeout: std::time::Duration,
    },
}

#[derive(Debug, Subcommand)]
enum WalCommand {
    /// Stores a WAL file in the archive: archive_command = 'drkit wal push %p'.
    Push {
        /// The file (PostgreSQL's %p).
        path: PathBuf,
        /// The component; needed only when the config has several PostgreSQL components.
        #[arg(long)]
        component: Option<String>,
    },
    /// Writes an archived WAL file: restore_command = 'drkit wal fetch %f %p'.
    Fetch {
        /// The file's name (PostgreSQL's %f).
        name: String,
        /// Where to write it (PostgreSQL's %p).
        path: PathBuf,
        /// The component; needed only when the config has several PostgreSQL components.
        #[arg(long)]
        component: Option<String>,
    },
}

/// `--check name=SQL`.
fn parse_check(text: &str) -> Result<SmokeCheck, String> {
    let (name, sql) = parse_label(text)?;
    Ok(SmokeCheck::new(name, sql))
}

/// `--namespace-map from=to`.
fn parse_mapping(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((from, to)) if !from.is_empty() && !to.is_empty() => {
            Ok((from.to_owned(), to.to_owned()))
        }
        _ => Err(format!(
            "{text:?} is not from=to, such as livekit=livekit-restored"
        )),
    }
}

/// `--existing`: what a resource restore does with an object that exists.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExistingArg {
    Skip,
    Update,
    Recreate,
}

impl ExistingArg {
    fn policy(self) -> dr_k8s::ExistingPolicy {
        match self {
            Self::Skip => dr_k8s::ExistingPolicy::Skip,
            Self::Update => dr_k8s::ExistingPolicy::Update,
            Self::Recreate => dr_k8s::ExistingPolicy::Recreate,
        }
    }
}

pub(crate) fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not key=value")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A long-running agent logs what it does; a command only what goes wrong.
    let default_level = match cli.command {
        Command::Agent => "info",
        _ => "warn",
    };
    init_logging(cli.log_format, default_level);
    let out = Output {
        json: cli.json,
        quiet: cli.quiet,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report(&Failure::of("starting the runtime", &e)),
    };
    match runtime.block_on(run(cli, out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(&failure),
    }
}

fn report(failure: &Failure) -> ExitCode {
    eprintln!("drkit: {failure}");
    failure.exit_code()
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Only this binary installs a subscriber, once: a failure would mean
    // another already logs, which is as good.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn run(cli: Cli, out: Output) -> Outcome {
    if let Command::Report { file } = &cli.command {
        return commands::report::run(file, &out);
    }
    if let Command::Kubernetes(KubernetesCommand::CopyBinary { dest }) = &cli.command {
        return commands::kubernetes::copy_binary(dest);
    }
    if let Command::K8s { cluster, command } = &cli.command {
        return commands::k8s::run(cluster, command, &out).await;
    }
    if let Command::Redis(RedisCommand::Inspect {
        file: Some(file),
        shard,
        top,
        ..
    }) = &cli.command
    {
        return commands::redis::inspect(None, None, Some(file), shard.as_deref(), *top, &out)
            .await;
    }
    let cx = Context::load(&cli.config, out)?;
    match cli.command {
        Command::Config(ConfigCommand::Check) => commands::check::run(&cx).await,
        Command::Init => commands::init::run(&cx).await,
        Command::Backup {
            component,
            delta,
            labels,
            forget,
        } => {
            let settings = cx.component(&component)?;
            if delta && settings.redis().is_some() {
                return Err(Failure::Usage(format!(
                    "{component} is a Redis component: a snapshot has no delta \
                     (the repository stores only the chunks that changed anyway)"
                )));
            }
            if delta && settings.kubernetes().is_some() {
                return Err(Failure::Usage(format!(
                    "{component} is a kubernetes component: a resource backup has no delta \
                     (the repository stores only what changed anyway)"
                )));
            }
            if delta && settings.postgres_dump().is_some() {
                return Err(Failure::Usage(format!(
                    "{component} is a postgres-dump component: a dump has no delta \
                     (the repository stores only what changed anyway)"
                )));
            }
            let backup = kinds::backup_of(&cx, settings).await?;
            let repo = cx.repository(Access::ReadWrite).await?;
            // A LiveKit snapshot always builds on the latest: an unchanged
            // state is then only confirmed.
            let base = delta || settings.livekit().is_some();
            commands::backup::run(backup.as_ref(), &repo, base, &labels, &out).await?;
            if forget {
                commands::backup::forget_after(&repo, cx.component(&component)?, &out).await?;
            }
            Ok(())
        }
        Command::Snapshots {
            component,
            since,
            until,
            labels,
        } => {
            let mut filter = SnapshotFilter::new();
            if let Some(id) = component {
                filter = filter.component(cx.component(&id)?.id().clone());
            }
            if let Some(at) = since {
                filter = filter.since(at);
            }
            if let Some(at) = until {
                filter = filter.until(at);
            }
            for (key, value) in labels {
                filter = filter.label(key, value);
            }
            let repo = cx.repository(Access::ReadOnly).await?;
            commands::snapshots::run(&repo, &filter, &out).await
        }
        Command::Restore {
            component,
            to,
            target,
            owner,
            incident_at,
            report,
            start,
            port,
            socket_dir,
            pg_bin,
            database,
            into,
            over,
            table,
            rename,
            schema,
            globals,
            jobs,
            spool_dir,
            checks,
            server,
            cluster,
            file,
            shard,
            rebuild_on,
            conflict,
            single_pass,
            listen,
            advertise,
            staging,
            namespace_map,
            only_namespaces,
            only_kinds,
            existing,
            dry_run,
            kubeconfig,
            context,
            standby,
            remap,
            redis_keys,
        } => {
            let settings = cx.component(&component)?;
            let livekit_only = [
                ("--standby", standby),
                ("--remap", remap.is_some()),
                ("--redis-keys", redis_keys),
            ];
            let redis_only = [
                ("--server", server.is_some()),
                ("--cluster", cluster.is_some()),
                ("--file", file.is_some()),
                ("--rebuild-on", !rebuild_on.is_empty()),
                ("--single-pass", single_pass),
                ("--listen", listen.is_some()),
                ("--staging", staging.is_some()),
            ];
            let postgres_only = [
                ("--target", target.is_some()),
                ("--owner", owner.is_some()),
                ("--start", start),
                ("--database", database.is_some()),
                ("--into", into.is_some()),
                ("--over", over.is_some()),
                ("--table", table.is_some()),
                ("--schema", schema.is_some()),
                ("--globals", globals),
                ("--jobs", jobs.is_some()),
                ("--check", !checks.is_empty()),
            ];
            let kubernetes_only = [
                ("--namespace-map", !namespace_map.is_empty()),
                ("--only-namespace", !only_namespaces.is_empty()),
                ("--only-kind", !only_kinds.is_empty()),
                ("--existing", existing.is_some()),
                ("--dry-run", dry_run),
                ("--kubeconfig", kubeconfig.is_some()),
                ("--context", context.is_some()),
            ];
            if settings.livekit().is_some() {
                let mut other = postgres_only
                    .iter()
                    .chain(&redis_only)
                    .chain(&kubernetes_only);
                if let Some((flag, _)) = other.find(|(_, given)| *given) {
                    return Err(Failure::Usage(format!(
                        "{flag} is for other kinds of components; {component} is a livekit \
                         component (--standby, --remap, --redis-keys)"
                    )));
                }
                let repo = cx.repository(Access::ReadOnly).await?;
                if redis_keys {
                    return commands::livekit::restore_redis_keys(
                        &cx,
                        &repo,
                        settings,
                        &to,
                        incident_at,
                        report.as_deref(),
                        &out,
                    )
                    .await;
                }
                let args = commands::livekit::LiveKitRestoreArgs {
                    to,
                    standby,
                    incident_at,
                    report_file: report,
                    remap_file: remap,
                };
                return commands::livekit::restore(&cx, &repo, settings, args, &out).await;
            }
            if let Some((flag, _)) = livekit_only.iter().find(|(_, given)| *given) {
                return Err(Failure::Usage(format!(
                    "{flag} is for livekit components; {component} is not one"
                )));
            }
            if settings.kubernetes().is_some() {
                let mut other = postgres_only.iter().chain(&redis_only);
                if let Some((flag, _)) = other.find(|(_, given)| *given) {
                    return Err(Failure::Usage(format!(
                        "{flag} is for PostgreSQL or Redis components; {component} is a \
                         kubernetes component (--namespace-map, --only-namespace, --only-kind, \
                         --existing, --dry-run, --kubeconfig, --context)"
                    )));
                }
                let repo = cx.repository(Access::ReadOnly).await?;
                let args = commands::resources::ResourceRestoreArgs {
                    to,
                    namespace_map,
                    only_namespaces,
                    only_kinds,
                    existing: existing.map_or(dr_k8s::ExistingPolicy::Skip, ExistingArg::policy),
                    dry_run,
                    kubeconfig,
                    context,
                    incident_at,
                    report_file: report,
                };
                return commands::resources::restore(&cx, &repo, settings, args, &out).await;
            }
            if let Some((flag, _)) = kubernetes_only.iter().find(|(_, given)| *given) {
                return Err(Failure::Usage(format!(
                    "{flag} is for kubernetes components; {component} is not one"
                )));
            }
            if settings.redis().is_some() {
                if let Some((flag, _)) = postgres_only.iter().find(|(_, given)| *given) {
                    return Err(Failure::Usage(format!(
                        "{flag} is for PostgreSQL components; {component} is a Redis component \
                         (--server, --cluster, --file or --rebuild-on)"
                    )));
                }
                let destination = match (server, cluster, file, rebuild_on.is_empty()) {
                    (Some(addr), _, _, _) => commands::redis::Destination::Server(addr),
                    (_, Some(addr), _, _) => commands::redis::Destination::Cluster(addr),
                    (_, _, Some(path), _) => commands::redis::Destination::File { path, shard },
                    (_, _, _, false) => commands::redis::Destination::Rebuild(rebuild_on),
                    _ => commands::redis::Destination::Own,
                };
                let repo = cx.repository(Access::ReadOnly).await?;
                let args = commands::redis::RedisRestoreArgs {
                    to,
                    destination,
                    conflict,
                    single_pass,
                    replay_on: listen.map(|addr| (addr, advertise)),
                    staging,
                    incident_at,
                    report_file: report,
                };
                return commands::redis::restore(&cx, &repo, settings, args, &out).await;
            }
            if let Some((flag, _)) = redis_only.iter().find(|(_, given)| *given) {
                return Err(Failure::Usage(format!(
                    "{flag} is for Redis components; {component} is a PostgreSQL component"
                )));
            }
            if settings.postgres_dump().is_some() {
                let repo = cx.repository(Access::ReadOnly).await?;
                let args = commands::dump::DumpRestoreArgs {
                    to,
                    database,
                    into,
                    over,
                    table,
                    rename,
                    schema,
                    globals,
                    parallel: jobs.map(|jobs| (jobs, spool_dir.unwrap_or_else(std::env::temp_dir))),
                    checks,
                    incident_at,
                    report_file: report,
                };
                return commands::dump::restore(&cx, &repo, settings, args, &out).await;
            }
            let dump_only = [
                ("--database", database.is_some()),
                ("--into", into.is_some()),
                ("--over", over.is_some()),
                ("--table", table.is_some()),
                ("--rename", rename.is_some()),
                ("--schema", schema.is_some()),
                ("--globals", globals),
                ("--jobs", jobs.is_some()),
                ("--check", !checks.is_empty()),
            ];
            if let Some((flag, _)) = dump_only.iter().find(|(_, given)| *given) {
                return Err(Failure::Usage(format!(
                    "{flag} is for postgres-dump components; {component} is restored \
                     physically into --target"
                )));
            }
            let Some(target) = target else {
                return Err(Failure::Usage(format!(
                    "restoring {component} needs --target <new data directory>"
                )));
            };
            let mut restore = PitrRestore::new(settings.id().clone(), &target);
            if let Some(Owner { uid, gid }) = owner {
                restore = restore.owner(uid, gid);
            }
            if start {
                let bindir = match pg_bin {
                    Some(dir) => dir,
                    None => commands::restore::pg_bindir().await?,
                };
                let (connection, _) = cx.postgres(settings).await?;
                let server = PgCtl::new(
                    bindir,
                    port,
                    socket_dir,
                    commands::restore::local_connection(&connection),
                );
                restore = restore.start_with(server);
            }
            let repo = cx.repository(Access::ReadOnly).await?;
            let args = commands::restore::RestoreArgs {
                target: &to,
                data_dir: &target,
                objectives: settings.objectives(),
                incident_at,
                report_file: report,
            };
            commands::restore::run(restore, &repo, args, &out).await
        }
        Command::RestoreTest {
            component,
            checks,
            report,
        } => {
            let settings = cx.component(&component)?;
            let repo = cx.repository(Access::ReadOnly).await?;
            commands::dump::restore_test(&cx, &repo, settings, &checks, report.as_deref(), &out)
                .await
        }
        Command::Status => {
            let repo = cx.repository(Access::ReadOnly).await?;
            commands::status::run(&cx, &repo, &out).await
        }
        Command::Failover {
            component,
            dry_run,
            switchover,
            force,
            to,
            known_dead,
        } => {
            let settings = cx.component(&component)?;
            let args = commands::failover::FailoverArgs {
                dry_run,
                switchover,
                force,
                to,
                known_dead,
            };
            if settings.livekit().is_some() {
                // Even a plan needs the snapshots: what a failover loses is
                // the latest one's age.
                let access = if dry_run {
                    Access::ReadOnly
                } else {
                    Access::ReadWrite
                };
                let repo = cx.repository(access).await?;
                return commands::livekit::failover(&cx, &repo, settings, &args, &out).await;
            }
            let repo = if dry_run {
                None
            } else {
                Some(cx.repository(Access::ReadWrite).await?)
            };
            commands::failover::run(&cx, repo.as_ref(), settings, &args, &out).await
        }
        Command::Rejoin {
            component,
            member,
            data_dir,
        } => {
            let settings = cx.postgres_component(Some(&component))?;
            commands::failover::rejoin(&cx, settings, &member, &data_dir, &out).await
        }
        Command::Verify {
            fraction,
            component,
        } => {
            let repo = cx.repository(Access::ReadOnly).await?;
            match component {
                Some(id) => {
                    let component = cx.component(&id)?;
                    commands::maintenance::verify_component(&repo, component, &out).await
                }
                None => commands::maintenance::verify(&repo, fraction, &out).await,
            }
        }
        Command::Check => {
            let repo = cx.repository(Access::ReadOnly).await?;
            commands::maintenance::check(&repo, &out).await
        }
        Command::Forget { dry_run } => {
            let repo = cx.repository(Access::ReadWrite).await?;
            commands::maintenance::forget(&repo, &cx.config, dry_run, &out).await
        }
        Command::Prune { dry_run } => {
            let repo = cx.repository(Access::ReadWrite).await?;
            commands::maintenance::prune(&repo, dry_run, &out).await
        }
        Command::Wal(WalCommand::Push { path, component }) => {
            let settings = cx.postgres_component(component.as_deref())?;
            let size = segment_size(settings);
            let repo = cx.repository(Access::ReadWrite).await?;
            commands::wal::push(&repo, settings.id(), size, &path).await
        }
        Command::Wal(WalCommand::Fetch {
            name,
            path,
            component,
        }) => {
            let settings = cx.postgres_component(component.as_deref())?;
            let size = segment_size(settings);
            let repo = cx.repository(Access::ReadOnly).await?;
            commands::wal::fetch(&repo, settings.id(), size, &name, &path).await
        }
        Command::Agent => commands::agent::run(cx).await,
        Command::Kubernetes(KubernetesCommand::Manifests { options }) => {
            commands::kubernetes::manifests(&cx.config, &cli.config, &options)
        }
        Command::Kubernetes(KubernetesCommand::PostgresPatch {
            image,
            container,
            name,
        }) => commands::kubernetes::postgres_patch(&cx.config, &image, &container, &name),
        Command::Livekit(LiveKitCommand::NodeFailure {
            component,
            cluster,
            selector,
            metrics,
            expect_participants,
            timeout,
        }) => {
            let settings = cx.component(&component)?;
            let args = commands::livekit::NodeFailureArgs {
                cluster,
                selector,
                metrics,
                expect_participants,
                timeout,
            };
            commands::livekit::node_failure(&cx, settings, args, &out).await
        }
        Command::Redis(RedisCommand::Inspect {
            snapshot,
            shard,
            top,
            ..
        }) => {
            let repo = cx.repository(Access::ReadOnly).await?;
            commands::redis::inspect(
                Some(&repo),
                snapshot.as_deref(),
                None,
                shard.as_deref(),
                top,
                &out,
            )
            .await
        }
        // Done above: they need no config.
        Command::Kubernetes(KubernetesCommand::CopyBinary { .. }) | Command::K8s { .. } => Ok(()),
        // Printed above: a saved report needs no config.
        Command::Report { .. } => Ok(()),
    }
}

/// A PostgreSQL component's WAL segment size, as its config says.
fn segment_size(component: &drkit::Component) -> WalSegmentSize {
    component.postgres().map_or(
        DEFAULT_SEGMENT_SIZE,
        drkit::PostgresSettings::wal_segment_size,
    )
}

/// `--owner <uid>:<gid>`: who the restored files belong to.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl std::str::FromStr for Owner {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (uid, gid) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?} is not <uid>:<gid>"))?;
        let number = |n: &str| {
            n.parse::<u32>()
                .map_err(|_| format!("{text:?}: {n:?} is not a numeric id"))
        };
        Ok(Self {
            uid: number(uid)?,
            gid: number(gid)?,
        })
    }
}
