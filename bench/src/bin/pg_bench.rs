//! Drives dr-postgres's base backup, restore, WAL archiver and logical
//! backup and restore from the command line; `scripts/bench postgres` runs
//! it side by side with pgBackRest, pg_basebackup, pg_receivewal, pg_dump and
//! pg_restore on one cluster.
//!
//! ```text
//! pg_bench backup       --repo <dir> --conninfo <conninfo> [--delta]
//! pg_bench restore      --repo <dir> --to <dir> [--owner <uid>:<gid>]
//! pg_bench archive      --repo <dir> --conninfo <conninfo> --samples <file>
//!                       [--piece-interval-ms 200] [--synchronous-too] [--peers <name,...>]
//! pg_bench lag          --samples <file> --from <unix seconds> --to <unix seconds>
//! pg_bench dump         --repo <dir> --conninfo <conninfo> --database <name> [--bindir <dir>]
//! pg_bench restore-dump --repo <dir> --conninfo <conninfo> --database <name> --into <name>
//!                       [--bindir <dir>]
//! ```
//!
//! `backup` takes a [`BaseBackup`] into the repository, creating it (encrypted,
//! zstd at its default level, 1) if the directory is empty; with `--delta`,
//! a delta backup against the latest full one. `restore` prepares a data
//! directory from the latest base backup with [`PitrRestore`], without
//! starting a server: files extracted, WAL staged, recovery settings written.
//!
//! `dump` takes a [`LogicalBackup`] of one database (`pg_dump
//! --format=custom --compress=0` streamed into the repository, which
//! compresses and deduplicates it; no globals) into the repository, creating
//! it as `backup` does. `restore-dump` restores that database from the latest
//! logical backup into a new database with [`LogicalRestore`] (`pg_restore`
//! reading the stored dump as it streams, then the smoke checks of every
//! table's recorded row count). Both take PostgreSQL's programs from
//! `--bindir`, or else from the `PATH`.
//!
//! `archive` runs a [`WalArchiver`] (piece interval as given; with
//! `--synchronous-too`, a second one in synchronous mode into its own
//! component) until its standard input ends; then it waits until the archive
//! holds the server's WAL as of that moment and shuts down gracefully. Until
//! a line `stop-sampling` arrives on standard input, every 10 ms it samples the server's WAL position (`pg_current_wal_lsn()`), each
//! archiver's durable position ([`ArchiverStatus::flushed`], read just before
//! the server's, so never in our favour) and, for each `--peers` name, the
//! `flush_lsn` that `pg_stat_replication` shows for that `application_name`,
//! into a tab-separated file. `lag` reads that file: for each sample taken
//! between `--from` and `--to`, the lag of a receiver is the time until the
//! first sample at which its durable position reached the server's position
//! of that sample. It prints, per receiver, `<name> <p50> <p99> <max>
//! <samples> <unresolved>` in seconds, resolved to the sampling interval.
//!
//! The repository password comes from `DRKIT_PASSWORD`; key derivation runs
//! at the recommended cost, every time. Timings go to standard error.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::{Parser, Subcommand};
use dr_core::{
    Backup, BackupBase, BackupRequest, ComponentId, Lsn, Objectives, RecoveryTarget, Restore,
    RestoreRequest, Timeline,
};
use dr_postgres::{
    ArchiverHandle, ArchiverOptions, ArchiverStatus, BaseBackup, Databases, LibpqTls,
    LogicalBackup, LogicalBackupDetails, LogicalRestore, PgTools, PitrRestore, RestoreInto, Tls,
    WalArchiver,
};
use dr_storage::InitOptions;
use drkit_bench::{AnyResult, RepoArgs, runtime, secs};

/// The component base backups, logical backups and the piece-interval
/// archiver write.
const COMPONENT: &str = "bench/postgres";
/// The component the synchronous archiver writes.
const SYNC_COMPONENT: &str = "bench/postgres-sync";
/// Slot and `application_name` of each archiver.
const PIECE_NAME: &str = "drkit_bench";
const SYNC_NAME: &str = "drkit_bench_sync";
/// How often `archive` samples the positions.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// How long `archive` waits, once told to stop, for the archive to catch up.
const CATCH_UP: Duration = Duration::from_secs(300);

/// Drives dr-postgres's backups, restores and WAL archiver for `scripts/bench postgres`.
#[derive(Parser)]
#[command(
    name = "pg_bench",
    after_help = "The repository password comes from DRKIT_PASSWORD."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Takes a base backup into the repository, creating it if its directory is empty
    Backup {
        #[command(flatten)]
        repo: RepoArgs,
        /// The server, as a libpq connection string
        #[arg(long)]
        conninfo: tokio_postgres::Config,
        /// A delta backup against the latest full one
        #[arg(long)]
        delta: bool,
    },
    /// Prepares a data directory from the latest base backup, without starting a server
    Restore {
        #[command(flatten)]
        repo: RepoArgs,
        /// The data directory to create
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Who owns the restored files
        #[arg(long, value_name = "UID:GID")]
        owner: Option<Owner>,
    },
    /// Archives WAL and samples every receiver's position until standard input ends
    Archive(ArchiveArgs),
    /// Archiving lag per receiver from an `archive` samples file: name p50 p99 max samples unresolved
    Lag {
        /// The samples file `archive` wrote
        #[arg(long, value_name = "FILE")]
        samples: PathBuf,
        /// Samples from this time on (Unix seconds)
        #[arg(long, value_name = "UNIX_SECONDS")]
        from: f64,
        /// Samples up to this time (Unix seconds)
        #[arg(long, value_name = "UNIX_SECONDS")]
        to: f64,
    },
    /// Takes a logical backup (pg_dump) of one database into the repository, creating it if its directory is empty
    Dump {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        server: DumpServer,
        /// The database to dump
        #[arg(long, value_name = "NAME")]
        database: String,
    },
    /// Restores a database of the latest logical backup into a new database (pg_restore)
    RestoreDump {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        server: DumpServer,
        /// The dumped database to restore
        #[arg(long, value_name = "NAME")]
        database: String,
        /// The database to create and restore into
        #[arg(long, value_name = "NAME")]
        into: String,
        /// `pg_restore --jobs`; above 1 the dump is first written to
        /// `--spool-dir`
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Where a parallel restore writes the dump (default: the system's
        /// temporary directory)
        #[arg(long, value_name = "DIR")]
        spool_dir: Option<PathBuf>,
    },
}

/// The server a logical backup or restore connects to, and where
/// PostgreSQL's programs are.
#[derive(clap::Args)]
struct DumpServer {
    /// The server, as a libpq connection string
    #[arg(long)]
    conninfo: tokio_postgres::Config,
    /// The directory of pg_dump and pg_restore (default: the PATH)
    #[arg(long, value_name = "DIR")]
    bindir: Option<PathBuf>,
}

impl DumpServer {
    fn tools(&self) -> PgTools {
        self.bindir
            .as_ref()
            .map_or_else(PgTools::from_path, PgTools::in_dir)
    }
}

fn main() -> ExitCode {
    drkit_bench::main(|cli: Cli| match cli.command {
        Command::Backup {
            repo,
            conninfo,
            delta,
        } => runtime()?.block_on(backup(&repo, conninfo, delta)),
        Command::Restore { repo, to, owner } => runtime()?.block_on(restore(&repo, to, owner)),
        Command::Archive(args) => runtime()?.block_on(archive(args)),
        Command::Lag { samples, from, to } => lag(&samples, from, to),
        Command::Dump {
            repo,
            server,
            database,
        } => runtime()?.block_on(dump(&repo, &server, database)),
        Command::RestoreDump {
            repo,
            server,
            database,
            into,
            jobs,
            spool_dir,
        } => {
            let spool_dir = spool_dir.unwrap_or_else(std::env::temp_dir);
            runtime()?.block_on(restore_dump(
                &repo,
                &server,
                database,
                into,
                (jobs, spool_dir),
            ))
        }
    })
}

/// `--owner <uid>:<gid>`.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl FromStr for Owner {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let id = |part: &str| {
            part.parse()
                .map_err(|e| format!("{part:?} is not a numeric id: {e}"))
        };
        let (uid, gid) = text.split_once(':').ok_or("expected <uid>:<gid>")?;
        Ok(Self {
            uid: id(uid)?,
            gid: id(gid)?,
        })
    }
}

/// Prints each step of a timeline with its duration.
fn print_steps(timeline: &Timeline) {
    for step in timeline.steps() {
        eprintln!("{}: {:.2} s", step.name, step.duration().as_secs_f64());
    }
}

// ---------------------------------------------------------------------------
// Backup and restore

async fn backup(args: &RepoArgs, config: tokio_postgres::Config, delta: bool) -> AnyResult<()> {
    let started = Instant::now();
    let repo = Arc::new(args.open_or_create(InitOptions::encrypted).await?);
    let backup = BaseBackup::new(COMPONENT.parse()?, config, Tls::none()).label("drkit bench");
    let mut request = BackupRequest::new(repo.as_ref());
    if delta {
        request = request.base(BackupBase::LatestFull(repo.as_ref()));
    }
    let report = backup.backup(request).await?;
    print_steps(&report.timeline);
    eprintln!(
        "snapshot {}: {} bytes in {} streams; {:.2} s in all",
        report.manifest.id,
        report.manifest.total_size(),
        report.manifest.streams.len(),
        secs(started)
    );
    Ok(())
}

async fn restore(args: &RepoArgs, to: PathBuf, owner: Option<Owner>) -> AnyResult<()> {
    let started = Instant::now();
    let repo = args.open_or_create(InitOptions::encrypted).await?;
    let component: ComponentId = COMPONENT.parse()?;
    let mut restore = PitrRestore::new(component, &to);
    if let Some(Owner { uid, gid }) = owner {
        restore = restore.owner(uid, gid);
    }
    let journals = repo.segment_journals();
    let objectives = Objectives::new("1h".parse()?, "1h".parse()?);
    let mut request =
        RestoreRequest::new(&repo, &RecoveryTarget::Latest, objectives).archive(&repo);
    if let Some(journals) = &journals {
        request = request.journals(journals);
    }
    let report = restore.restore(request).await?;
    print_steps(&report.timeline);
    eprintln!("prepared {} in {:.2} s in all", to.display(), secs(started));
    Ok(())
}

// ---------------------------------------------------------------------------
// Logical backup and restore

async fn dump(args: &RepoArgs, server: &DumpServer, database: String) -> AnyResult<()> {
    let started = Instant::now();
    let repo = args.open_or_create(InitOptions::encrypted).await?;
    let backup = LogicalBackup::new(
        COMPONENT.parse()?,
        server.conninfo.clone(),
        Tls::none(),
        LibpqTls::disable(),
    )
    .databases(Databases::Named(vec![database]))
    .globals(false)
    .tools(server.tools());
    let report = backup.backup(BackupRequest::new(&repo)).await?;
    print_steps(&report.timeline);
    let details = LogicalBackupDetails::of(&report.manifest)?;
    for dumped in &details.databases {
        let rows: u64 = dumped.tables.iter().map(|t| t.rows).sum();
        eprintln!(
            "{}: {} tables, {rows} rows counted in the dump's snapshot",
            dumped.name,
            dumped.tables.len()
        );
    }
    eprintln!(
        "snapshot {}: {} bytes dumped (pg_dump {}); {:.2} s in all",
        report.manifest.id,
        report.manifest.total_size(),
        details.pg_dump_version,
        secs(started)
    );
    Ok(())
}

async fn restore_dump(
    args: &RepoArgs,
    server: &DumpServer,
    database: String,
    into: String,
    (jobs, spool_dir): (usize, PathBuf),
) -> AnyResult<()> {
    let started = Instant::now();
    let repo = args.open().await?;
    let restore = LogicalRestore::new(
        COMPONENT.parse()?,
        server.conninfo.clone(),
        Tls::none(),
        LibpqTls::disable(),
        database,
        RestoreInto::NewDatabase(into.clone()),
    )
    .tools(server.tools())
    .parallel(jobs, spool_dir);
    let objectives = Objectives::new("1h".parse()?, "1h".parse()?);
    let (report, smoke) = restore
        .restore_checked(RestoreRequest::new(
            &repo,
            &RecoveryTarget::Latest,
            objectives,
        ))
        .await?;
    for step in report.timeline.steps() {
        eprintln!("{}: {:.2} s", step.name, step.duration().as_secs_f64());
    }
    let failed: Vec<String> = smoke
        .failures()
        .map(|o| format!("{}: {}", o.name, o.detail))
        .collect();
    if !failed.is_empty() {
        return Err(format!("smoke checks of {into} failed: {}", failed.join("; ")).into());
    }
    eprintln!(
        "restored into {into}, {} smoke checks passed; {:.2} s in all",
        smoke.outcomes.len(),
        secs(started)
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Archiving and its lag

#[derive(clap::Args)]
struct ArchiveArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// The server, as a libpq connection string
    #[arg(long)]
    conninfo: tokio_postgres::Config,
    /// The samples file to write
    #[arg(long, value_name = "FILE")]
    samples: PathBuf,
    /// How often the first archiver stores a piece of the current segment
    #[arg(long, value_name = "MS", default_value_t = 200)]
    piece_interval_ms: u64,
    /// Runs a second archiver too, in synchronous mode, into its own component
    #[arg(long)]
    synchronous_too: bool,
    /// Other receivers to sample, by application_name
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    peers: Vec<String>,
}

async fn archive(mut args: ArchiveArgs) -> AnyResult<()> {
    args.peers.retain(|peer| !peer.is_empty());
    let piece_interval = Duration::from_millis(args.piece_interval_ms);
    let repo = Arc::new(args.repo.open_or_create(InitOptions::encrypted).await?);
    // A directory keeps segment journals, which synchronous pieces go to.
    let journals = repo.segment_journals().map(Arc::new);
    let spawn = |component: &str, options: ArchiverOptions| -> AnyResult<ArchiverHandle> {
        let archiver = WalArchiver::new(
            args.conninfo.clone(),
            Tls::none(),
            repo.clone(),
            component.parse()?,
            options,
        );
        Ok(match &journals {
            Some(journals) => archiver.journals(journals.clone()),
            None => archiver,
        }
        .spawn())
    };
    let mut archivers = vec![(
        format!("ours_piece_{}ms", piece_interval.as_millis()),
        spawn(
            COMPONENT,
            ArchiverOptions::new()
                .slot(PIECE_NAME)
                .application_name(PIECE_NAME)
                .piece_interval(Some(piece_interval)),
        )?,
    )];
    if args.synchronous_too {
        archivers.push((
            "ours_synchronous".to_owned(),
            spawn(
                SYNC_COMPONENT,
                ArchiverOptions::new()
                    .slot(SYNC_NAME)
                    .application_name(SYNC_NAME)
                    .synchronous(true),
            )?,
        ));
    }

    let (client, connection) = args.conninfo.connect(tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);

    // Standard input steers: a line `stop-sampling` ends the sampling, its
    // end (the script closing it, or the script gone) stops the archivers. A
    // thread, not the runtime: reading may block forever.
    let (control_tx, mut control) = tokio::sync::mpsc::unbounded_channel::<Option<String>>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if control_tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = control_tx.send(None);
    });

    let mut sql = String::from("SELECT (pg_current_wal_lsn() - '0/0')::int8");
    for i in 1..=args.peers.len() {
        sql.push_str(&format!(
            ", (SELECT max(flush_lsn - '0/0')::int8 FROM pg_stat_replication \
             WHERE application_name = ${i})"
        ));
    }
    let statement = client.prepare(&sql).await?;
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
        .peers
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();

    let mut out = BufWriter::new(std::fs::File::create(&args.samples)?);
    let mut header = vec!["time".to_owned(), "server".to_owned()];
    header.extend(archivers.iter().map(|(name, _)| name.clone()));
    header.extend(args.peers.iter().cloned());
    writeln!(out, "{}", header.join("\t"))?;

    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flushed_at = Instant::now();
    let mut samples = 0u64;
    let mut sampling = true;
    loop {
        tokio::select! {
            biased;
            message = control.recv() => match message.flatten() {
                None => break,
                Some(line) if line.trim() == "stop-sampling" => {
                    sampling = false;
                    out.flush()?;
                }
                Some(line) => return Err(format!("unknown command on standard input: {line:?}").into()),
            },
            _ = tick.tick(), if sampling => {}
        }
        if !sampling {
            continue;
        }
        for (name, handle) in &archivers {
            if handle.is_finished() {
                return Err(format!(
                    "the {name} archiver stopped: {:?}",
                    handle.status().last_error
                )
                .into());
            }
        }
        // Ours before the server's position: a sample never favours us.
        let ours: Vec<u64> = archivers
            .iter()
            .map(|(_, h)| h.status().flushed.as_u64())
            .collect();
        let row = client.query_one(&statement, &params).await?;
        let time = unix_now();
        let server: i64 = row.get(0);
        let mut line = format!("{time:.6}\t{server}");
        for value in ours {
            line.push_str(&format!("\t{value}"));
        }
        for i in 0..args.peers.len() {
            match row.get::<_, Option<i64>>(i + 1) {
                Some(v) => line.push_str(&format!("\t{v}")),
                None => line.push_str("\t-"),
            }
        }
        writeln!(out, "{line}")?;
        samples += 1;
        if flushed_at.elapsed() > Duration::from_secs(1) {
            out.flush()?;
            flushed_at = Instant::now();
        }
    }
    out.flush()?;
    eprintln!("took {samples} samples into {}", args.samples.display());

    // Everything the server has now goes into the archive before we stop.
    let end: i64 = client
        .query_one("SELECT (pg_current_wal_lsn() - '0/0')::int8", &[])
        .await?
        .get(0);
    let end = Lsn::new(u64::try_from(end)?);
    let started = Instant::now();
    for (name, handle) in &archivers {
        tokio::time::timeout(CATCH_UP, handle.wait_for_flush(end))
            .await
            .map_err(|_| format!("{name} did not archive up to {end} within {CATCH_UP:?}"))??;
        eprintln!("{name}: durable up to {end} after {:.2} s", secs(started));
    }
    drop(client);
    let _ = connection.await;
    for (name, handle) in archivers {
        let status = handle.shutdown().await?;
        describe(&name, &status);
    }
    Ok(())
}

fn describe(name: &str, status: &ArchiverStatus) {
    eprintln!(
        "{name}: flushed {}, {} segments and {} pieces stored, {} connections{}",
        status.flushed,
        status.segments_stored,
        status.pieces_stored,
        status.connections,
        status
            .last_error
            .as_ref()
            .map(|e| format!(", last error: {}", e.message))
            .unwrap_or_default()
    );
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One sample: its time, the server's position, each receiver's durable
/// position (`None` while unknown).
struct Sample {
    time: f64,
    server: u64,
    durable: Vec<Option<u64>>,
}

fn lag(path: &Path, from: f64, to: f64) -> AnyResult<()> {
    let file = BufReader::new(std::fs::File::open(path)?);
    let mut lines = file.lines();
    let header = lines.next().ok_or("an empty samples file")??;
    let names: Vec<String> = header.split('\t').skip(2).map(str::to_owned).collect();
    let mut samples = Vec::new();
    for line in lines {
        let line = line?;
        let mut fields = line.split('\t');
        let mut next = || fields.next().ok_or(format!("a short line: {line:?}"));
        let time: f64 = next()?.parse()?;
        let server: u64 = next()?.parse()?;
        let mut durable = Vec::with_capacity(names.len());
        for _ in &names {
            durable.push(match next()? {
                "-" => None,
                v => Some(v.parse()?),
            });
        }
        samples.push(Sample {
            time,
            server,
            durable,
        });
    }
    let window: Vec<usize> = (0..samples.len())
        .filter(|&i| samples[i].time >= from && samples[i].time <= to)
        .collect();
    if window.is_empty() {
        return Err(format!("no samples between {from} and {to}").into());
    }
    let last = samples.last().map_or(to, |s| s.time);
    for (column, name) in names.iter().enumerate() {
        let mut lags = Vec::with_capacity(window.len());
        let mut unresolved = 0usize;
        // Both positions only grow, so the answer for the next sample is
        // never earlier than this one's.
        let mut j = window[0];
        for &k in &window {
            j = j.max(k);
            let wanted = samples[k].server;
            while j < samples.len() && samples[j].durable[column].is_none_or(|d| d < wanted) {
                j += 1;
            }
            if j == samples.len() {
                // Not reached before sampling ended (nor, then, for any later sample).
                unresolved += 1;
                lags.push(last - samples[k].time);
            } else {
                lags.push(samples[j].time - samples[k].time);
            }
        }
        lags.sort_by(f64::total_cmp);
        let rank =
            |p: f64| lags[((p * lags.len() as f64).ceil() as usize).clamp(1, lags.len()) - 1];
        println!(
            "{name} {:.3} {:.3} {:.3} {} {unresolved}",
            rank(0.50),
            rank(0.99),
            lags[lags.len() - 1],
            lags.len()
        );
    }
    Ok(())
}
