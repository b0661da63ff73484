//! What drkit's drills share: a write workload that keeps a log of what the
//! database acknowledged, a way to start restored servers on throwaway
//! directories, and the check of a restore against the log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dr_core::{ErrorKind, async_trait};
use dr_postgres::StartServer;
use dr_testkit::{Postgres, PostgresOptions, RestoreSlot};
use jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One row the workload wrote, with the time PostgreSQL acknowledged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The row's id.
    pub id: i64,
    /// When the client saw the commit succeed.
    pub at: Timestamp,
}

/// A stream of small transactions into table `drill`, one row each.
#[derive(Debug)]
pub struct Workload {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<Ack>>,
}

impl Workload {
    /// Creates the table and starts writing a row every `every`.
    ///
    /// # Errors
    /// The server cannot be reached or the table not created.
    pub async fn start(
        config: tokio_postgres::Config,
        every: Duration,
    ) -> Result<Self, tokio_postgres::Error> {
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS drill (id bigint PRIMARY KEY, payload text NOT NULL)",
            )
            .await?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut id = 0i64;
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = stopped.changed() => return acks,
                    _ = tick.tick() => {}
                }
                let payload = format!("row {id} of the drill workload");
                let insert = client
                    .execute("INSERT INTO drill VALUES ($1, $2)", &[&id, &payload])
                    .await;
                match insert {
                    Ok(_) => acks.push(Ack {
                        id,
                        at: Timestamp::now(),
                    }),
                    // The server died under the workload: what was
                    // acknowledged so far is the log.
                    Err(_) => return acks,
                }
                id += 1;
            }
        });
        Ok(Self { stop, task })
    }

    /// Stops writing and returns every acknowledged row.
    pub async fn stop(self) -> Vec<Ack> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(acks) => acks,
            // A bug in the workload, not a result: do not report an empty log.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Vec::new(),
        }
    }
}

/// Each row's commit time as PostgreSQL recorded it
/// (needs `track_commit_timestamp = on`).
///
/// # Errors
/// The query failed.
pub async fn commit_times(
    client: &tokio_postgres::Client,
) -> Result<Vec<(i64, Timestamp)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 \
             FROM drill ORDER BY id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let secs: f64 = r.get(1);
            let at = Timestamp::from_microsecond((secs * 1e6).round() as i64).ok()?;
            Some((r.get(0), at))
        })
        .collect())
}

/// How a restored table compares with what was expected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Rows expected and present.
    pub present: usize,
    /// Rows expected but absent: data lost.
    pub missing: Vec<i64>,
    /// Rows present that should not be (after the target).
    pub unexpected: Vec<i64>,
}

impl Comparison {
    /// Compares the ids found with the ids expected (both ascending).
    pub fn of(found: &[i64], expected: &[i64]) -> Self {
        let found_set: std::collections::BTreeSet<_> = found.iter().collect();
        let expected_set: std::collections::BTreeSet<_> = expected.iter().collect();
        Self {
            present: expected_set.intersection(&found_set).count(),
            missing: expected_set.difference(&found_set).map(|i| **i).collect(),
            unexpected: found_set.difference(&expected_set).map(|i| **i).collect(),
        }
    }

    /// Whether exactly the expected rows are there.
    pub fn exact(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty()
    }
}

/// Starts restored data directories as dr-testkit servers, which stop and
/// remove themselves when dropped.
#[derive(Debug, Clone)]
pub struct KitStarter {
    slot: Arc<Mutex<Option<RestoreSlot>>>,
    server: Arc<tokio::sync::Mutex<Option<Postgres>>>,
    data_dir: PathBuf,
    owner: Option<(u32, u32)>,
}

impl KitStarter {
    /// A fresh throwaway directory for a restore of a server set up with `options`.
    ///
    /// # Errors
    /// PostgreSQL is not installed, or the directory could not be made.
    pub fn new(options: PostgresOptions) -> dr_testkit::Result<Self> {
        let slot = Postgres::restore_slot(options)?;
        Ok(Self {
            data_dir: slot.data_dir(),
            owner: slot.owner(),
            slot: Arc::new(Mutex::new(Some(slot))),
            server: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    /// Where the restore goes.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Who must own the restored files.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// A client of the started server.
    ///
    /// # Errors
    /// It was not started, or does not answer.
    pub async fn connect(&self) -> dr_testkit::Result<tokio_postgres::Client> {
        let guard = self.server.lock().await;
        match guard.as_ref() {
            Some(pg) => pg.connect("postgres").await,
            None => Err(dr_testkit::Error::User(
                "the restored server was not started".into(),
            )),
        }
    }
}

#[async_trait]
impl StartServer for KitStarter {
    async fn start(&self, _data_dir: &Path) -> dr_core::Result<tokio_postgres::Config> {
        let slot = self
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| dr_core::Error::invalid("restore slot", "already started"))?;
        let pg = slot.start().await.map_err(|e| {
            dr_core::Error::other(ErrorKind::Unavailable, "starting the restored server", e)
        })?;
        let config = pg.config("postgres");
        *self.server.lock().await = Some(pg);
        Ok(config)
    }
}
