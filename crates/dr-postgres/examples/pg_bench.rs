//! Drives dr-postgres's base backup, restore and WAL archiver from the
//! command line; `scripts/bench postgres` runs it side by side with
//! pgBackRest, pg_basebackup and pg_receivewal on one cluster.
//!
//! ```text
//! pg_bench backup  --repo <dir> --conninfo <conninfo> [--delta yes]
//! pg_bench restore --repo <dir> --to <dir> [--owner <uid>:<gid>]
//! pg_bench archive --repo <dir> --conninfo <conninfo> --samples <file>
//!                  [--piece-interval-ms 200] [--synchronous-too yes] [--peers <name,...>]
//! pg_bench lag     --samples <file> --from <unix seconds> --to <unix seconds>
//! ```
//!
//! `backup` takes a [`BaseBackup`] into the repository, creating it (encrypted,
//! zstd at its default level, 1) if the directory is empty; with `--delta yes`,
//! a delta backup against the latest full one. `restore` prepares a data
//! directory from the latest base backup with [`PitrRestore`], without
//! starting a server: files extracted, WAL staged, recovery settings written.
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

use std::collections::HashMap;
use std::error::Error;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dr_core::{
    Backup, BackupBase, BackupRequest, ComponentId, Lsn, Objectives, RecoveryTarget, Restore,
    RestoreRequest,
};
use dr_postgres::{
    ArchiverHandle, ArchiverOptions, ArchiverStatus, BaseBackup, PitrRestore, Tls, WalArchiver,
};
use dr_storage::{FsBackend, InitOptions, Repository, Secret, WriteBackend};

type AnyResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// The component base backups and the piece-interval archiver write.
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

const USAGE: &str = "usage:
  pg_bench backup  --repo <dir> --conninfo <conninfo> [--delta yes]
  pg_bench restore --repo <dir> --to <dir> [--owner <uid>:<gid>]
  pg_bench archive --repo <dir> --conninfo <conninfo> --samples <file>
                   [--piece-interval-ms 200] [--synchronous-too yes] [--peers <name,...>]
  pg_bench lag     --samples <file> --from <unix seconds> --to <unix seconds>
the repository password comes from DRKIT_PASSWORD";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = format!("pg_bench: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> AnyResult<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().ok_or(USAGE)?;
    let args = Args::parse(args)?;
    match command.as_str() {
        "backup" => {
            args.allow(&["repo", "conninfo", "delta"])?;
            let delta = args.yes_or_no("delta")?;
            runtime()?.block_on(backup(args.path("repo")?, args.conninfo()?, delta))
        }
        "restore" => {
            args.allow(&["repo", "to", "owner"])?;
            let owner = args.get("owner").map(parse_owner).transpose()?;
            runtime()?.block_on(restore(args.path("repo")?, args.path("to")?, owner))
        }
        "archive" => {
            args.allow(&[
                "repo",
                "conninfo",
                "samples",
                "piece-interval-ms",
                "synchronous-too",
                "peers",
            ])?;
            let options = ArchiveArgs {
                repo: args.path("repo")?,
                conninfo: args.conninfo()?,
                samples: args.path("samples")?,
                piece_interval: Duration::from_millis(
                    args.number("piece-interval-ms")?.unwrap_or(200),
                ),
                synchronous_too: args.yes_or_no("synchronous-too")?,
                peers: args
                    .get("peers")
                    .map(|p| {
                        p.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            runtime()?.block_on(archive(options))
        }
        "lag" => {
            args.allow(&["samples", "from", "to"])?;
            let from = args.number("from")?.ok_or("lag needs --from")?;
            let to = args.number("to")?.ok_or("lag needs --to")?;
            lag(&args.path("samples")?, from, to)
        }
        _ => Err(USAGE.into()),
    }
}

/// `--name value` options.
struct Args {
    options: HashMap<String, String>,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> AnyResult<Self> {
        let mut options = HashMap::new();
        while let Some(arg) = args.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg:?}\n{USAGE}"))?;
            let value = args.next().ok_or(format!("--{name} needs a value"))?;
            options.insert(name.to_owned(), value);
        }
        Ok(Self { options })
    }

    /// Fails on an option not in `names`, so a misspelt one is not ignored.
    fn allow(&self, names: &[&str]) -> AnyResult<()> {
        match self.options.keys().find(|k| !names.contains(&k.as_str())) {
            Some(unknown) => Err(format!("unknown option --{unknown}\n{USAGE}").into()),
            None => Ok(()),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    /// `--name yes` or `--name no` (the default).
    fn yes_or_no(&self, name: &str) -> AnyResult<bool> {
        match self.get(name) {
            None | Some("no") => Ok(false),
            Some("yes") => Ok(true),
            Some(other) => Err(format!("--{name} {other:?}: yes or no").into()),
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> AnyResult<Option<T>>
    where
        T::Err: Error + Send + Sync + 'static,
    {
        self.get(name)
            .map(|v| v.parse().map_err(|e| format!("--{name} {v:?}: {e}").into()))
            .transpose()
    }

    fn path(&self, name: &str) -> AnyResult<PathBuf> {
        Ok(self
            .get(name)
            .ok_or(format!("--{name} is required"))?
            .into())
    }

    fn conninfo(&self) -> AnyResult<tokio_postgres::Config> {
        let text = self.get("conninfo").ok_or("--conninfo is required")?;
        Ok(text.parse()?)
    }
}

fn parse_owner(text: &str) -> AnyResult<(u32, u32)> {
    let (uid, gid) = text.split_once(':').ok_or("--owner takes <uid>:<gid>")?;
    Ok((uid.parse()?, gid.parse()?))
}

fn password() -> AnyResult<Secret> {
    let password = std::env::var("DRKIT_PASSWORD").map_err(|_| "set DRKIT_PASSWORD")?;
    Ok(Secret::password(password))
}

fn runtime() -> AnyResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// Opens the repository in `dir`, creating it there if the directory is empty.
async fn open_repo(dir: &Path) -> AnyResult<Repository> {
    let started = Instant::now();
    let fresh = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(format!("reading {}: {e}", dir.display()).into()),
    };
    let backend: Arc<dyn WriteBackend> = Arc::new(FsBackend::new(dir)?);
    let repo = if fresh {
        Repository::init(backend, InitOptions::encrypted(password()?)).await?
    } else {
        Repository::open(backend, Some(&password()?)).await?
    };
    let verb = if fresh { "created" } else { "opened" };
    eprintln!("{verb} the repository in {:.2} s", secs(started));
    Ok(repo)
}

// ---------------------------------------------------------------------------
// Backup and restore

async fn backup(dir: PathBuf, config: tokio_postgres::Config, delta: bool) -> AnyResult<()> {
    let started = Instant::now();
    let repo = Arc::new(open_repo(&dir).await?);
    let backup = BaseBackup::new(COMPONENT.parse()?, config, Tls::none()).label("drkit bench");
    let mut request = BackupRequest::new(repo.as_ref());
    if delta {
        request = request.base(BackupBase::LatestFull(repo.as_ref()));
    }
    let report = backup.backup(request).await?;
    for step in report.timeline.steps() {
        eprintln!("{}: {:.2} s", step.name, step.duration().as_secs_f64());
    }
    eprintln!(
        "snapshot {}: {} bytes in {} streams; {:.2} s in all",
        report.manifest.id,
        report.manifest.total_size(),
        report.manifest.streams.len(),
        secs(started)
    );
    Ok(())
}

async fn restore(dir: PathBuf, to: PathBuf, owner: Option<(u32, u32)>) -> AnyResult<()> {
    let started = Instant::now();
    let repo = open_repo(&dir).await?;
    let component: ComponentId = COMPONENT.parse()?;
    let mut restore = PitrRestore::new(component, &to);
    if let Some((uid, gid)) = owner {
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
    for step in report.timeline.steps() {
        eprintln!("{}: {:.2} s", step.name, step.duration().as_secs_f64());
    }
    eprintln!("prepared {} in {:.2} s in all", to.display(), secs(started));
    Ok(())
}

// ---------------------------------------------------------------------------
// Archiving and its lag

struct ArchiveArgs {
    repo: PathBuf,
    conninfo: tokio_postgres::Config,
    samples: PathBuf,
    piece_interval: Duration,
    synchronous_too: bool,
    peers: Vec<String>,
}

async fn archive(args: ArchiveArgs) -> AnyResult<()> {
    let repo = Arc::new(open_repo(&args.repo).await?);
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
        format!("ours_piece_{}ms", args.piece_interval.as_millis()),
        spawn(
            COMPONENT,
            ArchiverOptions::new()
                .slot(PIECE_NAME)
                .application_name(PIECE_NAME)
                .piece_interval(Some(args.piece_interval)),
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
