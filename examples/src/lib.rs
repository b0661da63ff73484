//! What drkit's drills share: a write workload that keeps a log of what the
//! database acknowledged, throwaway directories to restore into (started
//! with dr-postgres's `PgCtl`), which rows a time target keeps by
//! PostgreSQL's rule, and the check of a restore against the log.

use std::path::PathBuf;
use std::time::Duration;

use dr_core::{ArchiveSource, ComponentId, JournalSource, Lsn};
use dr_postgres::{
    DEFAULT_SEGMENT_SIZE, PgCtl, WalRecordEvent, WalRecordReader, WalSegment, fetch_wal,
    list_archive,
};
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

/// Each row's id with the transaction that inserted it (rows are never
/// updated, so `xmin` is that transaction).
///
/// # Errors
/// The query failed.
pub async fn row_xids(
    client: &tokio_postgres::Client,
) -> Result<Vec<(i64, u32)>, tokio_postgres::Error> {
    let rows = client
        .query("SELECT id, xmin::text FROM drill ORDER BY id", &[])
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r.get(0), r.get::<_, String>(1).parse().ok()?)))
        .collect())
}

/// Every commit and abort in `component`'s archived WAL (timeline 1, its
/// segment journals read where the store keeps them) from
/// the segment holding `from` on, in WAL order, read with
/// [`WalRecordReader`] as far as the archive runs without a gap.
///
/// # Errors
/// The archive could not be read, or holds WAL that is not PostgreSQL 15's.
pub async fn transaction_ends(
    archive: &dyn ArchiveSource,
    journals: Option<&dyn JournalSource>,
    component: &ComponentId,
    from: Lsn,
) -> dr_core::Result<Vec<WalRecordEvent>> {
    let size = DEFAULT_SEGMENT_SIZE;
    let listing = list_archive(archive, journals, component, size).await?;
    let mut reader = WalRecordReader::new(size);
    let mut ends = Vec::new();
    let mut segment = WalSegment::containing(1, from, size);
    while listing.segments.contains_key(&segment) && reader.end_reason().is_none() {
        let file = segment.file_name(size);
        let Some(bytes) = fetch_wal(archive, journals, component, &file, size).await? else {
            break;
        };
        let events = reader.feed_segment(segment.start(size), &bytes)?;
        ends.extend(events.into_iter().filter(|e| {
            matches!(
                e,
                WalRecordEvent::Commit { .. } | WalRecordEvent::Abort { .. }
            )
        }));
        segment.number += 1;
    }
    Ok(ends)
}

/// The rows a recovery to `target` keeps, by PostgreSQL's rule: it stops
/// before the first commit or abort, in WAL order, whose time is after the
/// target. A row is kept unless its commit comes at or after that record;
/// with concurrent writers a commit can reach the WAL after one with a
/// later time, so its time alone does not tell. `ends` is
/// [`transaction_ends`] from the base backup's start; `rows` is
/// [`row_xids`].
pub fn kept_at<Id: Copy>(
    target: Timestamp,
    ends: &[WalRecordEvent],
    rows: &[(Id, u32)],
) -> Vec<Id> {
    let stop = ends
        .iter()
        .position(|e| e.time() > target)
        .unwrap_or(ends.len());
    let not_replayed: std::collections::BTreeSet<u32> = ends[stop..]
        .iter()
        .filter_map(|e| match e {
            WalRecordEvent::Commit { xid, .. } => Some(*xid),
            _ => None,
        })
        .collect();
    rows.iter()
        .filter(|(_, xid)| !not_replayed.contains(xid))
        .map(|(id, _)| *id)
        .collect()
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

/// A throwaway directory to restore into: a dr-testkit slot, which stops a
/// server started in it and removes it when dropped, and the server
/// started with dr-postgres's [`PgCtl`].
#[derive(Debug)]
pub struct RestoreTarget {
    slot: RestoreSlot,
}

impl RestoreTarget {
    /// A fresh directory for a restore of a server set up with `options`.
    ///
    /// # Errors
    /// PostgreSQL is not installed, or the directory could not be made.
    pub fn new(options: PostgresOptions) -> dr_testkit::Result<Self> {
        Ok(Self {
            slot: Postgres::restore_slot(options)?,
        })
    }

    /// Where the restore goes.
    pub fn data_dir(&self) -> PathBuf {
        self.slot.data_dir()
    }

    /// Who must own the restored files.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.slot.owner()
    }

    /// Starts the restored server on the slot's port, listening on 127.0.0.1.
    pub fn pg_ctl(&self) -> PgCtl {
        PgCtl::new(
            self.slot.binaries().dir(),
            self.slot.port(),
            self.slot.socket_dir(),
            self.slot.config("postgres"),
        )
        .listen_addresses("127.0.0.1")
    }

    /// A client of the started server.
    ///
    /// # Errors
    /// It was not started, or does not answer.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self
            .slot
            .config("postgres")
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(connection);
        Ok(client)
    }
}
