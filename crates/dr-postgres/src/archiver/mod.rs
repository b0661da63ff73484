//! [`WalArchiver`]: continuous WAL streaming into an archive, as
//! `pg_receivewal` does into a directory, as a task a service embeds.
//!
//! The archiver holds the segment being received in memory. Until it is
//! complete, the bytes received since the last store are stored as a
//! *piece* every `piece_interval`, which bounds the WAL a lost primary can
//! take with it (see [`crate::archive`] for the names). A complete segment
//! is stored whole; if pieces hold its start, its end is stored as its last
//! piece first and the whole segment in the background, so that storing
//! 16 MiB does not hold up the flush position. The flush position it
//! reports to the server is the end of what is durable in the archive, so
//! the replication slot keeps everything else, and in synchronous mode a
//! commit waits until its WAL is in the archive.
//!
//! In synchronous mode, where the archiver is handed the store's segment
//! journals ([`WalArchiver::journals`]: a repository in a local directory
//! has them), pieces are appended to the segment's journal instead of
//! stored as objects: one write and one data sync each,
//! into space allocated when the journal was created, as `pg_receivewal`
//! does with its preallocated segments. The next segment's journal is
//! created ahead of need, and a segment's journal is removed once the
//! segment is stored whole.

mod cluster;
mod handle;
mod options;
mod status;
mod task;

pub use self::cluster::{StandbySlot, StandbySlotState};
pub use self::handle::ArchiverHandle;
pub use self::options::ArchiverOptions;
pub use self::status::{ArchiverState, ArchiverStatus, ErrorSummary};

use std::sync::Arc;

use dr_core::{ArchiveSink, ArchiveSource, ComponentId, JournalSink, JournalSource};
use tokio::sync::watch;

use crate::failover::cluster::PgCluster;
use crate::replication::Tls;

use self::handle::Stop;
use self::task::Task;
use tracing::Instrument;

/// Streams a PostgreSQL server's WAL into an archive, continuously: like
/// `pg_receivewal`, with the archive as its directory.
///
/// - It uses a physical replication slot, so the server keeps WAL until it
///   is archived; [`ArchiverStatus::slot_warning`](crate::ArchiverStatus::slot_warning) says when the slot holds
///   back too much.
/// - It resumes where the archive ends on its newest timeline (from the
///   segment's start, storing only what is missing), else where the slot
///   holds WAL from, else at the start of the server's current segment.
/// - It stores complete segments, and pieces of the current one every
///   [`ArchiverOptions::piece_interval`](crate::ArchiverOptions::piece_interval); in synchronous mode as soon as WAL
///   arrives. The flush position it reports is the end of what is durable in
///   the archive. At a segment's end, if pieces hold its start, the rest is
///   stored as its last piece, which makes it durable, and the whole segment
///   in the background (at most two at a time); a failure there ends the
///   connection like any other store's, and the segment, complete in pieces,
///   is stored whole again when the archiver reconnects or next starts.
/// - It follows timeline switches, on one server or after a failover to
///   another (the connection settings may list several hosts), storing the
///   history files; it refuses a server of another cluster (a different
///   system identifier) and stops.
/// - It reconnects with exponential backoff; errors that retrying cannot
///   heal (refused credentials, another cluster, a conflicting archive) stop
///   it, with the error in [`ArchiverStatus::last_error`](crate::ArchiverStatus::last_error) and from
///   [`ArchiverHandle::shutdown`](crate::ArchiverHandle::shutdown).
///
/// ```no_run
/// # async fn demo(repo: std::sync::Arc<dr_storage::Repository>) -> dr_core::Result<()> {
/// use std::sync::Arc;
/// use dr_postgres::{ArchiverOptions, Tls, WalArchiver};
///
/// let config: tokio_postgres::Config = "host=127.0.0.1 user=postgres password=secret".parse().unwrap();
/// let options = ArchiverOptions::new().synchronous(true).application_name("drkit_wal");
/// let journals = repo.segment_journals();
/// let mut archiver = WalArchiver::new(config, Tls::none(), repo, "postgres/main".parse()?, options);
/// // A repository in a local directory keeps segment journals: one data
/// // sync per synchronous piece instead of a new object.
/// if let Some(journals) = journals {
///     archiver = archiver.journals(Arc::new(journals));
/// }
/// let handle = archiver.spawn();
/// // ... serve; expose handle.status().lag_bytes() and handle.status().lag() ...
/// let last = handle.shutdown().await?;
/// println!("archived up to {}", last.flushed);
/// # Ok(()) }
/// ```
pub struct WalArchiver {
    config: tokio_postgres::Config,
    tls: Tls,
    sink: Arc<dyn ArchiveSink>,
    source: Arc<dyn ArchiveSource>,
    /// The store's segment journals, where the caller has them.
    journal_sink: Option<Arc<dyn JournalSink>>,
    journal_source: Option<Arc<dyn JournalSource>>,
    component: ComponentId,
    options: ArchiverOptions,
    /// The cluster to follow, where the caller gave one.
    cluster: Option<PgCluster>,
}

impl std::fmt::Debug for WalArchiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalArchiver")
            .field("component", &self.component)
            .field("journals", &self.journal_sink.is_some())
            .field("cluster", &self.cluster.as_ref().map(PgCluster::component))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl WalArchiver {
    /// An archiver of the server `config` points at (its password and hosts
    /// included), into `component`'s archive in `archive`, which it lists
    /// to find where to resume and writes segments to.
    pub fn new<A>(
        config: tokio_postgres::Config,
        tls: Tls,
        archive: Arc<A>,
        component: ComponentId,
        options: ArchiverOptions,
    ) -> Self
    where
        A: ArchiveSink + ArchiveSource + 'static,
    {
        let mut config = config;
        match &options.application_name {
            Some(name) => {
                config.application_name(name);
            }
            None if config.get_application_name().is_none() => {
                config.application_name("drkit_wal");
            }
            None => {}
        }
        Self {
            config,
            tls,
            sink: archive.clone(),
            source: archive,
            journal_sink: None,
            journal_source: None,
            component,
            options,
            cluster: None,
        }
    }

    /// Archives the cluster `cluster` rather than one server: each
    /// connection goes to the member that is then the primary (the one that
    /// takes writes, or with none, the one fenced former primary), with the
    /// user and password of its member settings; and the archiver's slot is
    /// kept on every replica, created where missing and moved forward to
    /// what the archive holds every 2 s
    /// ([`ArchiverHandle::standby_slots`](crate::ArchiverHandle::standby_slots)
    /// says where it is held). So the replica a failover promotes still has
    /// the WAL the archive lacks, and the archiver resumes on it, across the
    /// timeline switch, without a gap. The connection settings given to
    /// [`WalArchiver::new`] then serve for their `application_name` only.
    #[must_use]
    pub fn cluster(mut self, cluster: PgCluster) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Hands the archiver the segment journals of the store `archive` is
    /// in (dr-storage's `Repository::segment_journals`, where its store
    /// writes in place). In synchronous mode, pieces are then appended to journals
    /// instead of stored as objects (see the module docs); in either mode
    /// the archiver reads them when it resumes, and removes them once their
    /// segments are stored whole. An archive that was ever written with
    /// journals must be archived to with them.
    #[must_use]
    pub fn journals<J>(mut self, journals: Arc<J>) -> Self
    where
        J: JournalSink + JournalSource + 'static,
    {
        self.journal_sink = Some(journals.clone());
        self.journal_source = Some(journals);
        self
    }

    /// Starts the archiver on the current tokio runtime.
    pub fn spawn(self) -> ArchiverHandle {
        let (status_tx, status_rx) = watch::channel(ArchiverStatus::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let span = tracing::info_span!(
            "wal_archiver",
            component = %self.component,
            slot = %self.options.slot,
            synchronous = self.options.synchronous,
        );
        let keeper = self.cluster.clone().map(|cluster| {
            let (found_tx, found_rx) = watch::channel(Vec::new());
            let keeper = cluster::keep_slots(
                cluster,
                self.options.slot.clone(),
                status_rx.clone(),
                found_tx,
                Stop(stop_rx.clone()),
            );
            (found_rx, tokio::spawn(keeper.instrument(span.clone())))
        });
        let task = tokio::spawn(
            Task::new(self, status_tx)
                .run(Stop(stop_rx))
                .instrument(span),
        );
        ArchiverHandle {
            status: status_rx,
            stop: stop_tx,
            task,
            keeper,
        }
    }
}
