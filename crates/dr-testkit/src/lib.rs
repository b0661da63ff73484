//! Real servers on loopback for drkit's tests, examples and benchmarks.
//!
//! - [`Postgres`]: `initdb` into a temp dir, a free port on 127.0.0.1,
//!   `wal_level = replica` with WAL senders and replication slots, password
//!   authentication ([`Auth`]); streaming replicas ([`Postgres::start_replica`]);
//!   stop, restart, kill -9, promote. Running as root, the server runs as the
//!   `postgres` OS user, since PostgreSQL refuses root.
//! - [`Redis`]: `redis-server` with a chosen [`Persistence`]; replicas;
//!   [`RedisCluster`] of N masters with M replicas each; kill -9 and restart.
//! - [`S3`]: moto's S3 server with a fresh bucket (optionally with Object Lock),
//!   and an `aws-sdk-s3` client configured for it.
//! - Test helpers the crates' tests share: [`eventually`] waits for a
//!   condition, [`CapturedEvents`] collects the `tracing` events emitted,
//!   [`tls_fixture`] names a test certificate.
//!
//! Every handle owns its process (in its own process group) and its temp dir
//! (named `drkit-tk-*`): it waits until the server answers, keeps the server's
//! log for errors, and on drop stops the whole process group and removes the
//! directory. A missing program is an [`Error::MissingBinary`] that says what to install.
//!
//! Each directory records its owner process and its servers' process groups,
//! so that [`sweep`] clears away only what a dead owner left (a killed run of
//! the suite), never a live run's kits, and [`leftovers`] finds what one run
//! left behind; `scripts/test` runs both through the `drkit-tk-sweep` binary.
//!
//! ```no_run
//! # async fn demo() -> dr_testkit::Result<()> {
//! let pg = dr_testkit::Postgres::start().await?;
//! let client = pg.connect("postgres").await?;
//! client.batch_execute("CREATE TABLE t (id int)").await?;
//! drop(pg); // server stopped, directory removed
//! # Ok(()) }
//! ```

pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod fixtures;
pub(crate) mod postgres;
pub(crate) mod process;
pub(crate) mod redis;
pub(crate) mod s3;
pub(crate) mod sweep;
pub(crate) mod wait;

pub use crate::error::{Error, Result};
pub use crate::events::CapturedEvents;
pub use crate::fixtures::{TestCertificates, make_certificates, noise, tls_fixture};
pub use crate::postgres::{Auth, PgBinaries, Postgres, PostgresOptions, RestoreSlot, SUPERUSER};
pub use crate::process::process_exists;
pub use crate::redis::{
    Persistence, Redis, RedisCluster, RedisOptions, RedisSentinels, RedisVersion,
};
pub use crate::s3::{MOTO_VENV, S3, S3Options};
pub use crate::sweep::{SweepReport, leftovers, sweep};
pub use crate::wait::eventually;

/// The prefix of every temp dir the kit creates, so leftovers can be found.
pub const TEMP_PREFIX: &str = "drkit-tk-";
