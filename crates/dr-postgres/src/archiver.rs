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

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_core::{
    ArchiveSink, ArchiveSource, ComponentId, Error, ErrorKind, JournalSink, JournalSource, Lsn,
    SegmentJournal,
};
use jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle, JoinSet};

use crate::archive::{
    ArchiveListing, ArchivedWal, Coverage, archived_header, fetch_wal, list_archive,
};
use crate::replication::{
    CreateSlotOptions, ReplicationClient, SlotPosition, StandbyStatus, SystemIdentity, Tls,
    WalEvent, WalStream,
};
use crate::wal::{TimelinePath, WalSegment, WalSegmentSize};

/// In synchronous mode, a piece is stored at the latest once this much WAL
/// is waiting, even if more is ready to be read.
const SYNC_BATCH_MAX: usize = 1 << 20;

/// At most this many whole segments are stored in the background at once;
/// a segment completed beyond that waits for the oldest store to end.
const MAX_SEGMENT_STORES: usize = 2;

/// At most this many (position, time) marks are kept for the lag.
const MAX_LAG_MARKS: usize = 4096;

/// How long a graceful shutdown waits for the server to end the stream.
const FINISH_TIMEOUT: Duration = Duration::from_secs(5);

/// How a [`WalArchiver`] streams and stores.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiverOptions {
    /// The physical replication slot (created with `RESERVE_WAL` if
    /// missing), which keeps the server's WAL until it is archived.
    /// Default `drkit_wal`. Slot names are lower-case letters, digits and `_`.
    pub slot: String,
    /// The `application_name` the archiver connects with, which
    /// `synchronous_standby_names` lists to make it synchronous. `None`
    /// keeps the connection settings' name, or `drkit_wal` if they have none.
    pub application_name: Option<String>,
    /// How often the bytes received since the last store are stored as a
    /// piece (when any arrived): the bound on what is lost with the
    /// server, plus the store's own time. `None` stores complete segments
    /// only. Default 1 s. Each piece is one object in the archive. Synchronous
    /// mode stores as soon as WAL arrives instead.
    pub piece_interval: Option<Duration>,
    /// Store WAL as soon as it arrives and the stream has nothing more
    /// ready, and report it written and flushed only then. Listed in
    /// `synchronous_standby_names`, with `synchronous_commit` `on` (the
    /// default) or `remote_write`, the archiver makes a commit return only
    /// once its WAL is durable in the archive (RPO zero). Never use it with
    /// `remote_apply`: an archiver applies nothing, so commits would wait
    /// forever. Default off.
    pub synchronous: bool,
    /// How often a status update is sent when nothing else prompts one
    /// (keep it below half the server's `wal_sender_timeout`). Default 10 s.
    pub status_interval: Duration,
    /// The first wait before reconnecting after a failure. Default 1 s.
    pub reconnect_min: Duration,
    /// The longest wait between reconnection attempts; the wait doubles
    /// from `reconnect_min` up to this. Default 30 s.
    pub reconnect_max: Duration,
    /// Set [`ArchiverStatus::slot_warning`] when the slot holds back more
    /// WAL than this many bytes on the server. Default 1 GiB; `None` never warns.
    pub slot_warning_bytes: Option<u64>,
    /// How often, while the archive holds everything the server reported,
    /// the archiver asks the server for its end of WAL and records in the
    /// archive how far it holds everything, and when
    /// ([`dr_core::ArchiveCoverage`]): what a restore to the latest point
    /// measures its data loss from. Default 5 s, one small object
    /// overwritten each time; `None` records nothing.
    pub coverage_interval: Option<Duration>,
}

impl Default for ArchiverOptions {
    fn default() -> Self {
        Self {
            slot: "drkit_wal".into(),
            application_name: None,
            piece_interval: Some(Duration::from_secs(1)),
            synchronous: false,
            status_interval: Duration::from_secs(10),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            slot_warning_bytes: Some(1 << 30),
            coverage_interval: Some(Duration::from_secs(5)),
        }
    }
}

impl ArchiverOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`ArchiverOptions::slot`].
    pub fn slot(mut self, name: impl Into<String>) -> Self {
        self.slot = name.into();
        self
    }

    /// Sets [`ArchiverOptions::application_name`].
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Sets [`ArchiverOptions::piece_interval`].
    pub fn piece_interval(mut self, interval: Option<Duration>) -> Self {
        self.piece_interval = interval;
        self
    }

    /// Sets [`ArchiverOptions::synchronous`].
    pub fn synchronous(mut self, on: bool) -> Self {
        self.synchronous = on;
        self
    }

    /// Sets [`ArchiverOptions::status_interval`].
    pub fn status_interval(mut self, interval: Duration) -> Self {
        self.status_interval = interval;
        self
    }

    /// Sets [`ArchiverOptions::reconnect_min`] and [`ArchiverOptions::reconnect_max`].
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    /// Sets [`ArchiverOptions::slot_warning_bytes`].
    pub fn slot_warning_bytes(mut self, bytes: Option<u64>) -> Self {
        self.slot_warning_bytes = bytes;
        self
    }

    /// Sets [`ArchiverOptions::coverage_interval`].
    pub fn coverage_interval(mut self, interval: Option<Duration>) -> Self {
        self.coverage_interval = interval;
        self
    }
}

/// What the archiver is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiverState {
    /// Connecting and finding where to start.
    Connecting,
    /// Receiving and storing WAL.
    Streaming,
    /// Waiting before the next connection attempt after a failure.
    Reconnecting,
    /// Shut down, or stopped by an error that retrying cannot heal.
    Stopped,
}

/// An error the archiver met, in a form that can be copied into every
/// status: its class and its message with the chain of causes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorSummary {
    /// How a caller should treat it.
    pub kind: ErrorKind,
    /// The error and its causes, `: `-separated.
    pub message: String,
    /// When it happened.
    pub at: Timestamp,
}

impl ErrorSummary {
    fn of(error: &Error) -> Self {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self {
            kind: error.kind(),
            message,
            at: Timestamp::now(),
        }
    }
}

/// Where a [`WalArchiver`] stands, for RPO monitoring.
///
/// Positions are `0/0` until known. The RPO exposure is
/// [`ArchiverStatus::lag_bytes`] and [`ArchiverStatus::lag`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiverStatus {
    /// What the archiver is doing.
    pub state: ArchiverState,
    /// The database system identifier of the cluster being archived.
    pub system_id: Option<u64>,
    /// The timeline being streamed.
    pub timeline: Option<u32>,
    /// WAL received up to here (held in memory until stored).
    pub received: Lsn,
    /// WAL durable in the archive up to here, along the history of the
    /// server's timeline: what is reported to the server as flushed.
    pub flushed: Lsn,
    /// How far the server's WAL went when it last said.
    pub server_end: Lsn,
    /// The server's clock when it last sent anything.
    pub server_time: Option<Timestamp>,
    /// WAL the replication slot holds back on the server: its end of WAL
    /// minus the slot's `restart_lsn` (read when connecting; a physical
    /// slot's `restart_lsn` then follows the flush positions reported).
    pub slot_retained_bytes: Option<u64>,
    /// The slot holds back more than [`ArchiverOptions::slot_warning_bytes`]:
    /// the server's disk fills while the archive is behind.
    pub slot_warning: bool,
    /// Segments stored whole since the archiver started (counted when the
    /// store ends: it may run in the background, after the segment's last
    /// piece made it durable).
    pub segments_stored: u64,
    /// Pieces stored since the archiver started.
    pub pieces_stored: u64,
    /// History files stored since the archiver started.
    pub histories_stored: u64,
    /// Connections opened since the archiver started.
    pub connections: u64,
    /// The most recent error, kept after the archiver recovers from it.
    pub last_error: Option<ErrorSummary>,
    /// When the oldest WAL the server reported and the archive does not yet
    /// hold was first reported; `None` when the archive is caught up.
    pending_since: Option<Instant>,
}

impl ArchiverStatus {
    fn new() -> Self {
        Self {
            state: ArchiverState::Connecting,
            system_id: None,
            timeline: None,
            received: Lsn::ZERO,
            flushed: Lsn::ZERO,
            server_end: Lsn::ZERO,
            server_time: None,
            slot_retained_bytes: None,
            slot_warning: false,
            segments_stored: 0,
            pieces_stored: 0,
            histories_stored: 0,
            connections: 0,
            last_error: None,
            pending_since: None,
        }
    }

    /// WAL the server has that the archive does not hold yet, in bytes:
    /// `server_end - flushed`.
    pub fn lag_bytes(&self) -> u64 {
        self.server_end
            .as_u64()
            .saturating_sub(self.flushed.as_u64())
    }

    /// How long the oldest WAL not yet durable in the archive has been
    /// waiting, counted from when the server first reported it to this
    /// archiver; zero when the archive holds everything reported. It keeps
    /// growing while the server is unreachable with WAL outstanding.
    pub fn lag(&self) -> Duration {
        self.pending_since.map_or(Duration::ZERO, |at| at.elapsed())
    }
}

/// Streams a PostgreSQL server's WAL into an archive, continuously: like
/// `pg_receivewal`, with the archive as its directory.
///
/// - It uses a physical replication slot, so the server keeps WAL until it
///   is archived; [`ArchiverStatus::slot_warning`] says when the slot holds
///   back too much.
/// - It resumes where the archive ends on its newest timeline (from the
///   segment's start, storing only what is missing), else where the slot
///   holds WAL from, else at the start of the server's current segment.
/// - It stores complete segments, and pieces of the current one every
///   [`ArchiverOptions::piece_interval`]; in synchronous mode as soon as WAL
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
///   it, with the error in [`ArchiverStatus::last_error`] and from
///   [`ArchiverHandle::shutdown`].
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
}

impl std::fmt::Debug for WalArchiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalArchiver")
            .field("component", &self.component)
            .field("journals", &self.journal_sink.is_some())
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
        }
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
        let task = Task {
            archiver: self,
            status: ArchiverStatus::new(),
            status_tx,
            system_id: None,
            histories: BTreeSet::new(),
            marks: VecDeque::new(),
            slot_restart: None,
            segment_stores: JoinSet::new(),
            spare_buffer: None,
            journals: Journals::default(),
            reported_at: None,
            required_for_commits: false,
            coverage: CoverageRecords::default(),
        };
        let task = tokio::spawn(task.run(Stop(stop_rx)));
        ArchiverHandle {
            status: status_rx,
            stop: stop_tx,
            task,
        }
    }
}

/// A running [`WalArchiver`]. Dropping the handle shuts the archiver down
/// as [`ArchiverHandle::shutdown`] does, without waiting for it.
#[derive(Debug)]
pub struct ArchiverHandle {
    status: watch::Receiver<ArchiverStatus>,
    stop: watch::Sender<bool>,
    task: JoinHandle<dr_core::Result<ArchiverStatus>>,
}

impl ArchiverHandle {
    /// The archiver's status now.
    pub fn status(&self) -> ArchiverStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change, for a service to watch.
    pub fn subscribe(&self) -> watch::Receiver<ArchiverStatus> {
        self.status.clone()
    }

    /// Whether the archiver has stopped (shut down or failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the WAL up to `lsn` is durable in the archive, and
    /// returns the status then.
    ///
    /// # Errors
    /// [`Error::Timeout`] after `timeout`; the archiver's error, by kind,
    /// if it stopped before getting there.
    pub async fn wait_for_flush(
        &self,
        lsn: Lsn,
        timeout: Duration,
    ) -> dr_core::Result<ArchiverStatus> {
        let mut status = self.status.clone();
        let reached = status.wait_for(|s| s.flushed >= lsn || s.state == ArchiverState::Stopped);
        let status = match tokio::time::timeout(timeout, reached).await {
            Err(_) => {
                return Err(Error::Timeout {
                    operation: format!("archiving WAL up to {lsn}"),
                    after: timeout,
                });
            }
            Ok(Err(_)) => self.status(),
            Ok(Ok(status)) => status.clone(),
        };
        if status.flushed >= lsn {
            return Ok(status);
        }
        let (kind, why) = status.last_error.as_ref().map_or_else(
            || (ErrorKind::Internal, "it was shut down".to_owned()),
            |e| (e.kind, e.message.clone()),
        );
        Err(Error::Other {
            kind,
            context: format!("the WAL archiver stopped before archiving up to {lsn}: {why}"),
            source: None,
        })
    }

    /// Shuts the archiver down gracefully: WAL received but not yet stored
    /// is stored as a final piece, the server is told, the stream is ended,
    /// and the whole-segment stores under way are waited for. Returns the
    /// last status.
    ///
    /// # Errors
    /// The error that stopped the archiver, or that the final store met. A
    /// whole-segment store that fails while shutting down is returned only if
    /// retrying could not heal it; otherwise its segment is durable in
    /// pieces, is stored whole when an archiver next starts, and the failure
    /// is in [`ArchiverStatus::last_error`].
    pub async fn shutdown(self) -> dr_core::Result<ArchiverStatus> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(Error::other(
                ErrorKind::Internal,
                "the WAL archiver task failed",
                e,
            )),
        }
    }
}

/// The shutdown signal: a request, or the handle gone.
struct Stop(watch::Receiver<bool>);

impl Stop {
    fn requested(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once a stop is requested. Cancellation-safe.
    async fn wait(&mut self) {
        while !self.requested() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The archiver's running state.
struct Task {
    archiver: WalArchiver,
    status: ArchiverStatus,
    status_tx: watch::Sender<ArchiverStatus>,
    /// The cluster archived, once checked against the archive.
    system_id: Option<u64>,
    /// History files known to be in the archive.
    histories: BTreeSet<u32>,
    /// (server end of WAL, when first reported), oldest first, beyond `flushed`.
    marks: VecDeque<(Lsn, Instant)>,
    /// The slot's `restart_lsn` as last known.
    slot_restart: Option<Lsn>,
    /// Whole segments being stored in the background, each already durable
    /// in pieces; at most [`MAX_SEGMENT_STORES`].
    segment_stores: JoinSet<SegmentStore>,
    /// A segment buffer a background store gave back, for the next segment.
    spare_buffer: Option<Vec<u8>>,
    /// Segment journals, in synchronous mode.
    journals: Journals,
    /// When the server last reported its end of WAL, by this host's clock.
    reported_at: Option<Timestamp>,
    /// Whether the server waits for this archiver on every commit, as its
    /// `synchronous_standby_names` read at the last connection says.
    required_for_commits: bool,
    /// The coverage record being written, and what was last written.
    coverage: CoverageRecords,
}

/// Coverage records (see [`ArchiverOptions::coverage_interval`]).
#[derive(Default)]
struct CoverageRecords {
    /// The write in flight: at most one.
    writing: Option<JoinHandle<dr_core::Result<()>>>,
    /// The `seen_at` of the last record written.
    recorded: Option<Timestamp>,
    /// A fresh read of `synchronous_standby_names` in flight, and when the
    /// last one began: the setting changes with a reload, which a stream
    /// does not say.
    checking: Option<JoinHandle<Option<bool>>>,
    checked_at: Option<Instant>,
}

/// How many coverage intervals pass between reads of
/// `synchronous_standby_names` while streaming.
const SYNC_CHECK_EVERY: u32 = 5;

/// A journal being opened (created, if need be) in the background.
type OpeningJournal = JoinHandle<dr_core::Result<Box<dyn SegmentJournal>>>;

/// The segment journals of synchronous mode (see the module docs).
#[derive(Default)]
struct Journals {
    /// A journal has been opened: pieces went to journals.
    used: bool,
    /// The open journal of the segment being received.
    current: Option<(WalSegment, Box<dyn SegmentJournal>)>,
    /// The next segment's journal, opened ahead of need.
    next: Option<(WalSegment, OpeningJournal)>,
}

impl Drop for Journals {
    fn drop(&mut self) {
        if let Some((_, opening)) = self.next.take() {
            opening.abort();
        }
    }
}

/// How a background whole-segment store ended, and the buffer it stored
/// from (empty if it read the pieces back), to be used again.
type SegmentStore = (dr_core::Result<()>, Vec<u8>);

/// Where to start streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// The segment to stream from its start.
    segment: WalSegment,
    /// How much of it the archive already holds (contiguous from 0).
    stored: u32,
    /// WAL durable in the archive along the way to here.
    durable: Lsn,
}

/// The segment being received.
struct Current {
    size: WalSegmentSize,
    segment: WalSegment,
    /// Its bytes from offset 0.
    buf: Vec<u8>,
    /// How far the archive holds it.
    stored: usize,
    /// When the oldest byte not yet stored arrived.
    unstored_since: Option<Instant>,
}

impl Current {
    fn new(size: WalSegmentSize, segment: WalSegment, stored: u32) -> Self {
        Self {
            size,
            segment,
            buf: Vec::with_capacity(size.bytes() as usize),
            stored: stored as usize,
            unstored_since: None,
        }
    }

    fn received(&self) -> Lsn {
        Lsn::new(self.segment.start(self.size).as_u64() + self.buf.len() as u64)
    }

    fn unstored(&self) -> usize {
        self.buf.len().saturating_sub(self.stored)
    }
}

/// Why streaming paused.
enum Pause {
    /// A stop was requested.
    Stop,
    /// The server ended the stream (the end of a timeline, or its shutdown).
    ServerDone,
}

impl Task {
    async fn run(mut self, mut stop: Stop) -> dr_core::Result<ArchiverStatus> {
        let options = self.archiver.options.clone();
        let mut backoff = options.reconnect_min;
        loop {
            if stop.requested() {
                return Ok(self.stopped());
            }
            self.status.state = ArchiverState::Connecting;
            self.publish();
            let mut streamed = false;
            let result = self.session(&mut stop, &mut streamed).await;
            // The next session lists the archive, and a shutdown returns
            // only once everything is stored: let the stores under way end.
            let stored = self.finish_segment_stores().await;
            match result.and(stored) {
                Ok(()) => return Ok(self.stopped()),
                Err(error) => {
                    self.status.last_error = Some(ErrorSummary::of(&error));
                    if is_fatal(&error) {
                        self.stopped();
                        return Err(error);
                    }
                    if stop.requested() {
                        // Shutting down: a failure matters only if WAL that
                        // arrived could not be stored (the slot still holds it).
                        let status = self.stopped();
                        return if status.flushed >= status.received {
                            Ok(status)
                        } else {
                            Err(error)
                        };
                    }
                }
            }
            if streamed {
                backoff = options.reconnect_min;
            }
            self.status.state = ArchiverState::Reconnecting;
            self.publish();
            tokio::select! {
                () = stop.wait() => return Ok(self.stopped()),
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(options.reconnect_max);
        }
    }

    fn stopped(&mut self) -> ArchiverStatus {
        self.status.state = ArchiverState::Stopped;
        self.publish();
        self.status.clone()
    }

    fn publish(&mut self) {
        while self
            .marks
            .front()
            .is_some_and(|m| m.0 <= self.status.flushed)
        {
            self.marks.pop_front();
        }
        self.status.pending_since = self.marks.front().map(|m| m.1);
        if let Some(restart) = self.slot_restart {
            let retained = self
                .status
                .server_end
                .as_u64()
                .saturating_sub(restart.as_u64());
            self.status.slot_retained_bytes = Some(retained);
            self.status.slot_warning = self
                .archiver
                .options
                .slot_warning_bytes
                .is_some_and(|limit| retained > limit);
        }
        self.status_tx.send_replace(self.status.clone());
    }

    /// Notes how far the server's WAL goes.
    fn server_reported(&mut self, end: Lsn, time: Timestamp) {
        self.status.server_end = end;
        self.status.server_time = Some(time);
        self.reported_at = Some(Timestamp::now());
        let newest = self.marks.back().map_or(self.status.flushed, |m| m.0);
        if end > newest && self.marks.len() < MAX_LAG_MARKS {
            self.marks.push_back((end, Instant::now()));
        }
    }

    /// One connection: set up, then stream until stopped or failed.
    async fn session(&mut self, stop: &mut Stop, streamed: &mut bool) -> dr_core::Result<()> {
        let setup = tokio::select! {
            biased;
            () = stop.wait() => return Ok(()),
            setup = self.setup() => setup?,
        };
        let (mut stream, mut current) = setup;
        *streamed = true;
        self.status.state = ArchiverState::Streaming;
        self.publish();
        loop {
            let pause = match self.stream(&mut stream, &mut current, stop).await {
                Ok(pause) => pause,
                Err(error) => {
                    // What arrived is the server's flushed WAL: keep it.
                    let _ = self.store_piece(&mut current).await;
                    self.publish();
                    return Err(error);
                }
            };
            self.store_piece(&mut current).await?;
            match pause {
                Pause::Stop => {
                    let _ = stream.send_status(self.standby_status()).await;
                    if let Ok(Ok((client, _))) =
                        tokio::time::timeout(FINISH_TIMEOUT, stream.finish()).await
                    {
                        let _ = client.close().await;
                    }
                    return Ok(());
                }
                Pause::ServerDone => {
                    let (mut client, ended) = stream.finish().await?;
                    let Some(ended) = ended else {
                        return Err(unavailable(
                            &client,
                            "the server ended the WAL stream".to_owned(),
                        ));
                    };
                    self.ensure_histories(&mut client, ended.next_timeline)
                        .await?;
                    let size = current.size;
                    let segment =
                        WalSegment::containing(ended.next_timeline, ended.next_start, size);
                    stream = client
                        .start_replication(
                            Some(&self.archiver.options.slot),
                            segment.start(size),
                            Some(ended.next_timeline),
                        )
                        .await?;
                    current = Current::new(size, segment, 0);
                    self.status.timeline = Some(ended.next_timeline);
                    self.status.received = current.received();
                    self.publish();
                }
            }
        }
    }

    /// Connects, checks the server against the archive, finds where to
    /// start, and starts streaming.
    async fn setup(&mut self) -> dr_core::Result<(WalStream, Current)> {
        let archiver = &self.archiver;
        let mut client = ReplicationClient::connect(&archiver.config, &archiver.tls).await?;
        self.status.connections += 1;
        let identity = client.identify_system().await?;
        let names = client.show("synchronous_standby_names").await?;
        let application = archiver
            .config
            .get_application_name()
            .unwrap_or("drkit_wal");
        self.required_for_commits = waits_for_every_commit(&names, application);
        self.coverage.checked_at = Some(Instant::now());
        let bytes = client.wal_segment_size().await?;
        let size = WalSegmentSize::new(bytes).map_err(|reason| {
            Error::invalid(
                format!("wal_segment_size of {}", client.addr()),
                reason.to_string(),
            )
        })?;
        if let Some(known) = self.system_id
            && known != identity.system_id
        {
            return Err(other_cluster(&client, identity.system_id, known));
        }
        let slot = self.ensure_slot(&mut client).await?;
        let listing = list_archive(
            archiver.source.as_ref(),
            archiver.journal_source.as_deref(),
            &archiver.component,
            size,
        )
        .await?;
        if self.system_id.is_none() {
            let header = archived_header(
                archiver.source.as_ref(),
                archiver.journal_source.as_deref(),
                &archiver.component,
                &listing,
                size,
            )
            .await?;
            if let Some(header) = header {
                if header.system_id != identity.system_id {
                    return Err(other_cluster(&client, identity.system_id, header.system_id));
                }
                if u64::from(header.segment_size) != size.bytes() {
                    return Err(Error::invalid(
                        format!("PostgreSQL server {}", client.addr()),
                        format!(
                            "its WAL segments have {} bytes, the archive of {}'s have {}",
                            size.bytes(),
                            archiver.component,
                            header.segment_size
                        ),
                    ));
                }
            }
            self.system_id = Some(identity.system_id);
        }
        self.histories = listing.histories.clone();
        let plan = self
            .plan(&mut client, &identity, &slot, &listing, size)
            .await?;
        self.ensure_histories(&mut client, plan.segment.timeline)
            .await?;
        // A journal is reopened, so that a failed append is not built on.
        self.journals.current = None;
        // Journals of segments stored whole since: left by a stop in between.
        if let Some(journals) = &self.archiver.journal_sink {
            for segment in &listing.journals {
                if listing.segments.get(segment) == Some(&Coverage::Complete)
                    && !listing.complete_in_pieces.contains(segment)
                {
                    let name = ArchivedWal::Segment(*segment).name(size);
                    journals
                        .remove_journal(&self.archiver.component, &name)
                        .await?;
                }
            }
        }
        // Segments whose whole store failed or was cut short: durable in
        // pieces, stored whole in the background now.
        for &segment in &listing.complete_in_pieces {
            self.store_whole_later(segment, None, size).await?;
        }

        self.slot_restart = slot.restart_lsn;
        self.status.system_id = Some(identity.system_id);
        self.status.timeline = Some(plan.segment.timeline);
        // Not the maximum with what was stored before: after a failover the
        // archive may hold WAL of the old timeline beyond the switch point,
        // which says nothing about the new timeline's WAL at those positions.
        self.status.flushed = plan.durable;
        self.status.received = plan.segment.start(size);
        self.server_reported(identity.xlogpos, Timestamp::now());
        self.publish();

        let stream = client
            .start_replication(
                Some(&self.archiver.options.slot),
                plan.segment.start(size),
                Some(plan.segment.timeline),
            )
            .await?;
        Ok((stream, Current::new(size, plan.segment, plan.stored)))
    }

    /// Reads the slot, creating it if missing.
    async fn ensure_slot(&self, client: &mut ReplicationClient) -> dr_core::Result<SlotPosition> {
        let name = &self.archiver.options.slot;
        if let Some(slot) = client.read_replication_slot(name).await? {
            return Ok(slot);
        }
        match client
            .create_physical_slot(name, &CreateSlotOptions::new().reserve_wal(true))
            .await
        {
            Ok(_) => {}
            // Created meanwhile by another archiver: use it.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        client.read_replication_slot(name).await?.ok_or_else(|| {
            Error::other(
                ErrorKind::Unavailable,
                format!("replication slot {name} vanished after it was created"),
                crate::Error::InvalidState {
                    reason: "slot dropped concurrently",
                },
            )
        })
    }

    /// Chooses where to stream from: the archive's end on its newest
    /// timeline, else the slot, else the server's position; then along the
    /// server's timeline history to the server's timeline.
    async fn plan(
        &self,
        client: &mut ReplicationClient,
        identity: &SystemIdentity,
        slot: &SlotPosition,
        listing: &ArchiveListing,
        size: WalSegmentSize,
    ) -> dr_core::Result<Plan> {
        let server_timeline = identity.timeline;
        let (mut timeline, mut durable, from_archive) = match listing.latest_timeline() {
            Some(timeline) => {
                let end = listing.end_of(timeline, size).unwrap_or(Lsn::ZERO);
                (timeline, end, true)
            }
            None => {
                let (timeline, at) = match slot.restart_lsn {
                    Some(lsn) => (slot.restart_timeline.unwrap_or(server_timeline), lsn),
                    None => (server_timeline, identity.xlogpos),
                };
                let start = WalSegment::containing(timeline, at, size).start(size);
                (timeline, start, false)
            }
        };
        if timeline > server_timeline {
            return Err(unavailable(
                client,
                format!(
                    "the server is on timeline {server_timeline}, behind the archive's timeline {timeline}"
                ),
            ));
        }
        if timeline < server_timeline {
            let history = client.timeline_history(server_timeline).await?;
            let path = TimelinePath::from_history(&history)?;
            let Some(switch) = path.switches.iter().find(|s| s.timeline == timeline) else {
                return Err(Error::invalid(
                    format!("PostgreSQL server {}", client.addr()),
                    format!(
                        "timeline {timeline} of the archive of {} is not in the history of the \
                         server's timeline {server_timeline}",
                        self.archiver.component
                    ),
                ));
            };
            if durable >= switch.switch_point {
                // The archive has all of the old timeline the server knows:
                // go on with the timeline that follows it.
                timeline = path.timeline_at(switch.switch_point);
                durable = switch.switch_point;
                let segment = WalSegment::containing(timeline, durable, size);
                let stored = match listing.segments.get(&segment) {
                    Some(crate::archive::Coverage::Partial { end }) => *end,
                    _ => 0,
                };
                return Ok(Plan {
                    segment,
                    stored,
                    durable,
                });
            }
        } else if from_archive && durable > identity.xlogpos {
            return Err(unavailable(
                client,
                format!(
                    "the server's WAL ends at {}, before the archive's end {durable} on timeline {timeline}",
                    identity.xlogpos
                ),
            ));
        }
        let segment = WalSegment::containing(timeline, durable, size);
        let stored = if from_archive {
            (durable.as_u64() - segment.start(size).as_u64()) as u32
        } else {
            0
        };
        Ok(Plan {
            segment,
            stored,
            durable,
        })
    }

    /// Stores the history files of the timelines up to `timeline` that the
    /// archive lacks and the server has (it needs only those on its path).
    async fn ensure_histories(
        &mut self,
        client: &mut ReplicationClient,
        timeline: u32,
    ) -> dr_core::Result<()> {
        for tli in 2..=timeline {
            if self.histories.contains(&tli) {
                continue;
            }
            let history = match client.timeline_history(tli).await {
                Ok(history) => history,
                // Timelines off the server's path need not be there.
                Err(e) if tli < timeline && e.server_error().is_some_and(|s| !s.is_fatal()) => {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            // A history file's name does not depend on the segment size.
            let name = ArchivedWal::History(tli).name(crate::wal::DEFAULT_SEGMENT_SIZE);
            self.archiver
                .sink
                .put_segment(&self.archiver.component, &name, &mut &history.content[..])
                .await?;
            self.histories.insert(tli);
            self.status.histories_stored += 1;
        }
        Ok(())
    }

    /// Receives and stores until a stop is requested or the server ends the
    /// stream.
    async fn stream(
        &mut self,
        stream: &mut WalStream,
        current: &mut Current,
        stop: &mut Stop,
    ) -> dr_core::Result<Pause> {
        let options = self.archiver.options.clone();
        let mut status_due = tokio::time::Instant::now() + options.status_interval;
        let mut coverage_due = options
            .coverage_interval
            .map(|every| tokio::time::Instant::now() + every);
        loop {
            while let Some(joined) = self.segment_stores.try_join_next() {
                self.segment_store_done(joined)?;
            }
            if options.synchronous && current.unstored() > 0 {
                // Take what is already there, then store it all at once.
                let ready = tokio::select! {
                    biased;
                    event = stream.next() => Some(event),
                    () = std::future::ready(()) => None,
                };
                if let Some(event) = ready {
                    if let Some(pause) = self.handle(event?, stream, current).await? {
                        return Ok(pause);
                    }
                    if current.unstored() < SYNC_BATCH_MAX {
                        // A completed segment may have moved the flush position.
                        self.publish();
                        continue;
                    }
                }
                self.store_piece(current).await?;
                stream.send_status(self.standby_status()).await?;
                status_due = tokio::time::Instant::now() + options.status_interval;
                self.publish();
                continue;
            }
            let piece_due = match (options.piece_interval, current.unstored_since) {
                (Some(interval), Some(since)) if !options.synchronous => {
                    Some(tokio::time::Instant::from_std(since + interval))
                }
                _ => None,
            };
            tokio::select! {
                biased;
                () = stop.wait() => return Ok(Pause::Stop),
                event = stream.next() => {
                    if let Some(pause) = self.handle(event?, stream, current).await? {
                        return Ok(pause);
                    }
                }
                () = sleep_until(piece_due), if piece_due.is_some() => {
                    self.store_piece(current).await?;
                    stream.send_status(self.standby_status()).await?;
                    status_due = tokio::time::Instant::now() + options.status_interval;
                }
                () = tokio::time::sleep_until(status_due) => {
                    stream.send_status(self.standby_status()).await?;
                    status_due = tokio::time::Instant::now() + options.status_interval;
                }
                () = sleep_until(coverage_due), if coverage_due.is_some() => {
                    self.record_coverage();
                    // The server's answer dates the next record.
                    stream.send_status(self.standby_status().reply_requested(true)).await?;
                    coverage_due = options
                        .coverage_interval
                        .map(|every| tokio::time::Instant::now() + every);
                }
                Some(joined) = self.segment_stores.join_next(),
                    if !self.segment_stores.is_empty() =>
                {
                    self.segment_store_done(joined)?;
                }
            }
            self.publish();
        }
    }

    /// Handles one message; `Some` when the server has ended the stream.
    async fn handle(
        &mut self,
        event: Option<WalEvent>,
        stream: &mut WalStream,
        current: &mut Current,
    ) -> dr_core::Result<Option<Pause>> {
        match event {
            None => Ok(Some(Pause::ServerDone)),
            Some(WalEvent::Keepalive(keepalive)) => {
                self.server_reported(keepalive.end_of_wal, keepalive.server_time);
                if keepalive.reply_requested {
                    stream.send_status(self.standby_status()).await?;
                }
                Ok(None)
            }
            Some(WalEvent::XLogData(data)) => {
                let expected = current.received();
                if data.start != expected {
                    return Err(Error::other(
                        ErrorKind::Internal,
                        format!(
                            "WAL arrived from {} when {expected} was expected",
                            data.start
                        ),
                        crate::Error::InvalidState {
                            reason: "a gap or overlap in the WAL stream",
                        },
                    ));
                }
                self.server_reported(data.end_of_wal.max(data.end()), data.server_time);
                let segment_len = current.size.bytes() as usize;
                let mut bytes = &data.data[..];
                while !bytes.is_empty() {
                    let take = (segment_len - current.buf.len()).min(bytes.len());
                    current.buf.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if current.unstored() > 0 && current.unstored_since.is_none() {
                        current.unstored_since = Some(Instant::now());
                    }
                    if current.buf.len() == segment_len {
                        let whole = self.complete_segment(current).await?;
                        stream.send_status(self.standby_status()).await?;
                        if let Some((segment, data)) = whole {
                            self.store_whole_later(segment, Some(data), current.size)
                                .await?;
                        }
                    }
                }
                self.status.received = current.received();
                Ok(None)
            }
        }
    }

    /// Makes the complete segment durable and moves on to the next. If
    /// pieces hold its start, the rest is stored as its last piece, and the
    /// segment is returned to be stored whole off the critical path (see
    /// [`Task::store_whole_later`]); else it is stored whole here, there
    /// being nothing smaller to store.
    async fn complete_segment(
        &mut self,
        current: &mut Current,
    ) -> dr_core::Result<Option<(WalSegment, Vec<u8>)>> {
        let segment = current.segment;
        let whole = if current.stored > 0 {
            self.store_piece(current).await?;
            let next = match self.spare_buffer.take() {
                Some(buffer) => buffer,
                None => Vec::with_capacity(current.buf.capacity()),
            };
            // Done with: removed once the segment is stored whole.
            self.journals.current.take_if(|(s, _)| *s == segment);
            Some((segment, std::mem::replace(&mut current.buf, next)))
        } else {
            let name = ArchivedWal::Segment(segment).name(current.size);
            self.archiver
                .sink
                .put_segment(&self.archiver.component, &name, &mut &current.buf[..])
                .await?;
            self.status.segments_stored += 1;
            current.buf.clear();
            None
        };
        self.status.flushed = self.status.flushed.max(segment.end(current.size));
        current.segment = segment.next();
        current.stored = 0;
        current.unstored_since = None;
        self.status.received = current.received();
        Ok(whole)
    }

    /// Stores whole, in the background, a segment its pieces already hold:
    /// `data`, or else the pieces read back from the archive. Waits first
    /// while [`MAX_SEGMENT_STORES`] are under way.
    ///
    /// The pieces would do for a restore; the whole segment is one object to
    /// read instead of many, and lets retention drop the pieces.
    async fn store_whole_later(
        &mut self,
        segment: WalSegment,
        data: Option<Vec<u8>>,
        size: WalSegmentSize,
    ) -> dr_core::Result<()> {
        while self.segment_stores.len() >= MAX_SEGMENT_STORES {
            if let Some(joined) = self.segment_stores.join_next().await {
                self.segment_store_done(joined)?;
            }
        }
        let sink = self.archiver.sink.clone();
        let source = self.archiver.source.clone();
        let journal_source = self.archiver.journal_source.clone();
        let component = self.archiver.component.clone();
        // Read back from the archive, the pieces may be a journal's records.
        let journaled = if data.is_none() || self.journals.used {
            self.archiver.journal_sink.clone()
        } else {
            None
        };
        self.segment_stores.spawn(async move {
            let name = ArchivedWal::Segment(segment).name(size);
            let mut stored = match &data {
                Some(data) => sink.put_segment(&component, &name, &mut &data[..]).await,
                None => match fetch_wal(
                    source.as_ref(),
                    journal_source.as_deref(),
                    &component,
                    name.as_str(),
                    size,
                )
                .await
                {
                    Ok(Some(pieces)) => sink.put_segment(&component, &name, &mut &pieces[..]).await,
                    Ok(None) => Err(Error::not_found(format!("the pieces of {name}"))),
                    Err(error) => Err(error),
                },
            }
            .map(drop);
            if stored.is_ok()
                && let Some(journals) = journaled
            {
                stored = journals.remove_journal(&component, &name).await;
            }
            let result = stored.map_err(|error| {
                // Of the same kind, so it is as fatal as any other store's failure.
                Error::other(
                    error.kind(),
                    format!("storing WAL segment {name} of {component} whole"),
                    error,
                )
            });
            (result, data.unwrap_or_default())
        });
        Ok(())
    }

    /// Takes in the end of a background whole-segment store.
    fn segment_store_done(
        &mut self,
        joined: Result<SegmentStore, JoinError>,
    ) -> dr_core::Result<()> {
        let (result, mut buffer) = joined.map_err(|error| {
            Error::other(
                ErrorKind::Internal,
                "storing a whole WAL segment in the background failed",
                error,
            )
        })?;
        if buffer.capacity() > 0 && self.spare_buffer.is_none() {
            buffer.clear();
            self.spare_buffer = Some(buffer);
        }
        result?;
        self.status.segments_stored += 1;
        Ok(())
    }

    /// Waits for every background whole-segment store to end; the first
    /// failure, after all have ended.
    async fn finish_segment_stores(&mut self) -> dr_core::Result<()> {
        let mut result = Ok(());
        while let Some(joined) = self.segment_stores.join_next().await {
            let done = self.segment_store_done(joined);
            if result.is_ok() {
                result = done;
            }
        }
        self.publish();
        result
    }

    /// Stores the bytes received since the last store as a piece: appended
    /// to the segment's journal where there is one, else as an object.
    async fn store_piece(&mut self, current: &mut Current) -> dr_core::Result<()> {
        if current.unstored() == 0 {
            return Ok(());
        }
        let (start, end) = (current.stored, current.buf.len());
        if let Some(journal) = self.journal(current.segment, current.size).await? {
            journal
                .append(start as u64, &current.buf[start..end])
                .await?;
        } else {
            let name = ArchivedWal::Piece {
                segment: current.segment,
                start: start as u32,
                end: end as u32,
            }
            .name(current.size);
            self.archiver
                .sink
                .put_segment(
                    &self.archiver.component,
                    &name,
                    &mut &current.buf[start..end],
                )
                .await?;
        }
        self.status.pieces_stored += 1;
        current.stored = end;
        current.unstored_since = None;
        self.status.flushed = self.status.flushed.max(current.received());
        Ok(())
    }

    /// The open journal of `segment`, in synchronous mode where the
    /// archiver was handed journals; opening it (or taking the one opened
    /// ahead) if it is not open yet, and then opening the next segment's
    /// ahead of need.
    async fn journal(
        &mut self,
        segment: WalSegment,
        size: WalSegmentSize,
    ) -> dr_core::Result<Option<&mut Box<dyn SegmentJournal>>> {
        let journals = &mut self.journals;
        let Some(sink) = &self.archiver.journal_sink else {
            return Ok(None);
        };
        if !self.archiver.options.synchronous {
            return Ok(None);
        }
        if journals.current.as_ref().is_none_or(|(s, _)| *s != segment) {
            journals.current = None;
            let ahead = match journals.next.take() {
                Some((next, opening)) if next == segment => opening.await.ok().and_then(Result::ok),
                Some((_, opening)) => {
                    opening.abort();
                    None
                }
                None => None,
            };
            let journal = match ahead {
                Some(opened) => opened,
                // Not opened ahead, or that failed: open it now, to see why.
                None => open_journal(sink, &self.archiver.component, segment, size).await?,
            };
            journals.used = true;
            journals.current = Some((segment, journal));
            let next = segment.next();
            let (sink, component) = (sink.clone(), self.archiver.component.clone());
            journals.next = Some((
                next,
                tokio::spawn(async move { open_journal(&sink, &component, next, size).await }),
            ));
        }
        Ok(journals.current.as_mut().map(|(_, journal)| journal))
    }

    /// Records in the archive, in the background, that it holds everything
    /// the server had written when it last reported, if it does and that
    /// report is newer than the last record. A failed record is kept as the
    /// last error; archiving goes on.
    fn record_coverage(&mut self) {
        self.check_synchronous();
        if let Some(writing) = &self.coverage.writing {
            if !writing.is_finished() {
                return;
            }
            if let Some(Ok(Err(e))) = self
                .coverage
                .writing
                .take()
                .and_then(futures_util::FutureExt::now_or_never)
            {
                self.status.last_error = Some(ErrorSummary::of(&e));
            }
        }
        let (Some(seen_at), Some(system_identifier), Some(timeline)) = (
            self.reported_at,
            self.status.system_id,
            self.status.timeline,
        ) else {
            return;
        };
        let end = self.status.server_end;
        if self.status.flushed < end || end == Lsn::ZERO || self.coverage.recorded >= Some(seen_at)
        {
            return;
        }
        let coverage = dr_core::ArchiveCoverage {
            position: dr_core::Position::Postgres {
                system_identifier,
                timeline,
                lsn: end,
            },
            seen_at,
            synchronous: self.archiver.options.synchronous && self.required_for_commits,
        };
        self.coverage.recorded = Some(seen_at);
        let (sink, component) = (self.archiver.sink.clone(), self.archiver.component.clone());
        self.coverage.writing = Some(tokio::spawn(async move {
            sink.record_coverage(&component, &coverage).await
        }));
    }

    /// Takes the answer of a finished read of `synchronous_standby_names`,
    /// and starts the next one when due (only where it matters: in
    /// synchronous mode), on a connection of its own.
    fn check_synchronous(&mut self) {
        let options = &self.archiver.options;
        let (Some(every), true) = (options.coverage_interval, options.synchronous) else {
            return;
        };
        if let Some(checking) = &self.coverage.checking {
            if !checking.is_finished() {
                return;
            }
            if let Some(Ok(Some(required))) = self
                .coverage
                .checking
                .take()
                .and_then(futures_util::FutureExt::now_or_never)
            {
                self.required_for_commits = required;
            }
        }
        if self
            .coverage
            .checked_at
            .is_some_and(|at| at.elapsed() < every * SYNC_CHECK_EVERY)
        {
            return;
        }
        self.coverage.checked_at = Some(Instant::now());
        let (config, tls) = (self.archiver.config.clone(), self.archiver.tls.clone());
        self.coverage.checking = Some(tokio::spawn(async move {
            let mut client = ReplicationClient::connect(&config, &tls).await.ok()?;
            let names = client.show("synchronous_standby_names").await.ok()?;
            let application = config.get_application_name().unwrap_or("drkit_wal");
            Some(waits_for_every_commit(&names, application))
        }));
    }

    /// The status update to send: flushed is what the archive holds. In
    /// synchronous mode "written" is too, so `remote_write` waits for the
    /// archive as well.
    fn standby_status(&mut self) -> StandbyStatus {
        let flushed = self.status.flushed;
        let written = if self.archiver.options.synchronous {
            flushed
        } else {
            self.status.received.max(flushed)
        };
        if flushed > Lsn::ZERO {
            // A physical slot's restart_lsn follows the reported flush position.
            self.slot_restart = Some(flushed);
        }
        StandbyStatus::new(written, flushed, Lsn::ZERO)
    }
}

/// Opens (creating it, if need be) `segment`'s journal, with room for the
/// segment and the records' overhead.
async fn open_journal(
    sink: &Arc<dyn JournalSink>,
    component: &ComponentId,
    segment: WalSegment,
    size: WalSegmentSize,
) -> dr_core::Result<Box<dyn SegmentJournal>> {
    let name = ArchivedWal::Segment(segment).name(size);
    sink.open_journal(component, &name, size.bytes() + size.bytes() / 8)
        .await
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Whether a server with this `synchronous_standby_names` waits for the
/// standby `application` on every commit (given that it is connected): it is
/// among the first `n` of `FIRST n (...)` (or of a plain list, which is
/// `FIRST 1`), or `ANY n (...)` needs every name listed and it is one. A
/// `*` anywhere, or a setting that does not parse, is a no.
fn waits_for_every_commit(setting: &str, application: &str) -> bool {
    let setting = setting.trim();
    if setting.is_empty() {
        return false;
    }
    let (method, rest) = match setting.split_once(char::is_whitespace) {
        Some((word, rest)) if word.eq_ignore_ascii_case("first") => ("first", rest.trim_start()),
        Some((word, rest)) if word.eq_ignore_ascii_case("any") => ("any", rest.trim_start()),
        _ => ("first", setting),
    };
    let (count, list) = match rest.split_once('(') {
        Some((count, list)) if !count.trim().is_empty() => {
            let Ok(count) = count.trim().parse::<usize>() else {
                return false;
            };
            let Some(list) = list.trim_end().strip_suffix(')') else {
                return false;
            };
            (count, list)
        }
        Some(_) => return false,
        None if method == "first" => (1, rest),
        None => return false,
    };
    let names: Vec<String> = list
        .split(',')
        .map(|name| {
            let name = name.trim();
            name.strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .map_or_else(
                    || name.to_ascii_lowercase(),
                    |quoted| quoted.replace("\"\"", "\""),
                )
        })
        .collect();
    if names.iter().any(|n| n == "*" || n.is_empty()) {
        return false;
    }
    let Some(position) = names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(application))
    else {
        return false;
    };
    match method {
        "any" => count >= names.len(),
        _ => position < count,
    }
}

/// Errors that retrying cannot heal: the archiver stops on them.
fn is_fatal(error: &Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Auth
            | ErrorKind::InvalidInput
            | ErrorKind::AlreadyExists
            | ErrorKind::Corrupt
            | ErrorKind::UnsupportedVersion
            | ErrorKind::Unsupported
    )
}

fn other_cluster(client: &ReplicationClient, server: u64, archived: u64) -> Error {
    Error::invalid(
        format!("PostgreSQL server {}", client.addr()),
        format!(
            "its database system identifier {server} is not the archived cluster's {archived}: \
             WAL of two clusters is never mixed in one archive"
        ),
    )
}

fn unavailable(client: &ReplicationClient, reason: String) -> Error {
    Error::Unavailable {
        target: client.addr().to_owned(),
        source: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::waits_for_every_commit;

    #[test]
    fn synchronous_standby_names_that_wait_for_this_archiver() {
        for (setting, waits) in [
            ("drkit_wal", true),
            ("DRKIT_WAL", true),
            ("\"drkit_wal\"", true),
            ("drkit_wal, replica", true),
            ("replica, drkit_wal", false),
            ("FIRST 1 (drkit_wal, replica)", true),
            ("first 2 (replica, drkit_wal)", true),
            ("2 (replica, drkit_wal)", true),
            ("FIRST 1 (replica, drkit_wal)", false),
            ("ANY 1 (drkit_wal, replica)", false),
            ("ANY 2 (drkit_wal, replica)", true),
            ("ANY 1 (drkit_wal)", true),
            ("*", false),
            ("FIRST 1 (*, drkit_wal)", false),
            ("drkit_wal, *", false),
            ("", false),
            ("replica", false),
            ("FIRST x (drkit_wal)", false),
            ("FIRST 1 (drkit_wal", false),
            ("ANY drkit_wal", false),
        ] {
            assert_eq!(
                waits_for_every_commit(setting, "drkit_wal"),
                waits,
                "{setting}"
            );
        }
    }
}
