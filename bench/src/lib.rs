//! What drkit's benchmark drivers share: `storage_bench` (dr-storage's
//! repository, which `scripts/bench storage` runs beside restic),
//! `pg_bench` (dr-postgres's base backup, restore, WAL archiver and logical
//! backup and restore, which `scripts/bench postgres` runs beside
//! pgBackRest, pg_basebackup, pg_receivewal, pg_dump and pg_restore) and
//! `redis_bench` (dr-redis's snapshots and RDB verification, which
//! `scripts/bench redis` runs beside `redis-cli` and `redis-check-rdb`),
//! `redis_failover_bench` (dr-core's monitor over dr-redis's failovers,
//! and the command archiver's lag, which `scripts/bench redis-failover`
//! runs beside Redis Sentinel and Redis Cluster's own failover),
//! `k8s_bench` (dr-k8s's resource backup and restore, beside kubectl) and
//! `livekit_bench` (dr-livekit's snapshot and restore of the LiveKit
//! stand-in, which `scripts/bench livekit` runs beside one `curl` per Twirp
//! call parsed with `jq`).
//!
//! - [`main`] parses a driver's command line with clap and runs it; a failure
//!   is printed with its chain of causes, and the exit code is 1.
//! - [`RepoArgs`] is `--repo <dir>`, flattened into every subcommand that uses
//!   a repository. It opens the repository ([`RepoArgs::open`]) or, where the
//!   directory is empty or missing, creates it with the driver's own
//!   [`InitOptions`] ([`RepoArgs::open_or_create`]); either way with the
//!   password from `DRKIT_PASSWORD`. Key derivation runs every time, at the
//!   cost the repository records, as it does for every user of a repository.
//! - [`runtime`] builds the drivers' tokio runtime, and [`secs`] turns an
//!   [`Instant`] into the seconds the drivers print.
//!
//! Two habits of the libraries do not hold here, on purpose. Errors are an
//! [`AnyError`]: a driver only prints them and exits, so a kind to match on
//! would serve no caller. And this crate reads the environment
//! (`DRKIT_PASSWORD`): it is the drivers' own code, shared, not a library
//! anything else configures.
//!
//! A driver, in full:
//!
//! ```no_run
//! use clap::{Parser, Subcommand};
//! use drkit_bench::{AnyResult, RepoArgs, secs};
//! use dr_storage::InitOptions;
//! use std::process::ExitCode;
//! use std::time::Instant;
//!
//! /// Opens a repository, creating it if its directory is empty.
//! #[derive(Parser)]
//! #[command(name = "open_bench")]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Command,
//! }
//!
//! #[derive(Subcommand)]
//! enum Command {
//!     /// Opens or creates the repository.
//!     Open {
//!         #[command(flatten)]
//!         repo: RepoArgs,
//!     },
//! }
//!
//! fn main() -> ExitCode {
//!     drkit_bench::main(|cli: Cli| match cli.command {
//!         Command::Open { repo } => drkit_bench::runtime()?.block_on(open(repo)),
//!     })
//! }
//!
//! async fn open(repo: RepoArgs) -> AnyResult<()> {
//!     let started = Instant::now();
//!     repo.open_or_create(InitOptions::encrypted).await?;
//!     eprintln!("{:.2} s in all", secs(started));
//!     Ok(())
//! }
//! ```

use std::env::VarError;
use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use dr_storage::{FsBackend, InitOptions, Repository, Secret, WriteBackend};
use tokio::runtime::Runtime;

/// Any error of a driver, printed with its causes by [`main`].
pub type AnyError = Box<dyn Error + Send + Sync>;

/// The result of a driver's step.
pub type AnyResult<T> = Result<T, AnyError>;

/// The environment variable the repository password comes from.
const PASSWORD_VAR: &str = "DRKIT_PASSWORD";

/// Parses the command line into `C` and runs `run` with it: exit code 0 when
/// it succeeds; when it fails, `<program>: <error>: <cause>: <cause>...` on
/// standard error and exit code 1, the program named as `C` names itself
/// (`#[command(name = ...)]`). A command line clap rejects, and `--help`,
/// end as clap ends them (exit code 2 and 0).
pub fn main<C: Parser>(run: impl FnOnce(C) -> AnyResult<()>) -> ExitCode {
    match run(C::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}: {}", C::command().get_name(), chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// An error and its sources, each after a colon.
fn chain(error: &(dyn Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Writing to a String cannot fail.
        let _ = write!(message, ": {cause}");
        source = cause.source();
    }
    message
}

/// `--repo <dir>`: the local directory of a repository, opened with the
/// password from `DRKIT_PASSWORD`.
#[derive(Debug, Clone, clap::Args)]
pub struct RepoArgs {
    /// The repository's directory
    #[arg(long = "repo", value_name = "DIR")]
    pub dir: PathBuf,
}

impl RepoArgs {
    /// Opens the repository in [`RepoArgs::dir`], and says on standard error
    /// how long that took.
    ///
    /// # Errors
    /// `DRKIT_PASSWORD` is unset, the directory holds no repository, the
    /// password does not unlock it, or reading it fails.
    pub async fn open(&self) -> AnyResult<Repository> {
        let started = Instant::now();
        let secret = password()?;
        let repo = Repository::open(Arc::new(FsBackend::new(&self.dir)?), Some(&secret)).await?;
        eprintln!("opened the repository in {:.2} s", secs(started));
        Ok(repo)
    }

    /// Opens the repository in [`RepoArgs::dir`] or, if the directory is empty
    /// or missing, creates one there with `options` (given the password), and
    /// says on standard error which and how long it took. `options` applies
    /// only to a repository this creates: an existing one keeps its own.
    ///
    /// # Errors
    /// `DRKIT_PASSWORD` is unset, the directory cannot be read, `options` are
    /// refused, the directory holds something other than a repository, the
    /// password does not unlock it, or writing or reading it fails.
    pub async fn open_or_create(
        &self,
        options: impl FnOnce(Secret) -> InitOptions,
    ) -> AnyResult<Repository> {
        let started = Instant::now();
        let fresh = is_empty_dir(&self.dir)?;
        let secret = password()?;
        let backend: Arc<dyn WriteBackend> = Arc::new(FsBackend::new(&self.dir)?);
        let repo = if fresh {
            Repository::init(backend, options(secret)).await?
        } else {
            Repository::open(backend, Some(&secret)).await?
        };
        let verb = if fresh { "created" } else { "opened" };
        eprintln!("{verb} the repository in {:.2} s", secs(started));
        Ok(repo)
    }
}

/// The repository password, from `DRKIT_PASSWORD`.
fn password() -> AnyResult<Secret> {
    match std::env::var(PASSWORD_VAR) {
        Ok(password) => Ok(Secret::password(password)),
        Err(VarError::NotPresent) => {
            Err(format!("{PASSWORD_VAR} is not set; set it to the repository password").into())
        }
        Err(VarError::NotUnicode(_)) => Err(format!("{PASSWORD_VAR} is not valid UTF-8").into()),
    }
}

/// Whether `dir` is empty or missing.
fn is_empty_dir(dir: &Path) -> AnyResult<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(format!("reading {}: {e}", dir.display()).into()),
    }
}

/// The drivers' tokio runtime: multi-threaded (a worker per core), I/O and
/// timers enabled.
///
/// # Errors
/// The operating system refuses the runtime's threads or its I/O driver.
pub fn runtime() -> AnyResult<Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Seconds since `since`, for the timings the drivers print.
pub fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}
