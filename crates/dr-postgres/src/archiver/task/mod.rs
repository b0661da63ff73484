//! The archiver's task: one replication session after another, with
//! backoff between them, publishing its status as it goes.

mod coverage;
mod journals;
mod setup;
mod stream;

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use dr_core::{Error, ErrorKind, Lsn};
use jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::replication::{ReplicationClient, StandbyStatus};
use crate::wal::{WalSegment, WalSegmentSize};

use super::{ArchiverState, ArchiverStatus, ErrorSummary, WalArchiver};

use self::coverage::CoverageRecords;
use self::journals::Journals;
use super::handle::Stop;

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

/// The archiver's running state.
pub(super) struct Task {
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

/// How a background whole-segment store ended, and the buffer it stored
/// from (empty if it read the pieces back), to be used again.
type SegmentStore = (dr_core::Result<()>, Vec<u8>);

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
    pub(super) fn new(archiver: WalArchiver, status_tx: watch::Sender<ArchiverStatus>) -> Self {
        Self {
            archiver,
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
        }
    }

    pub(super) async fn run(mut self, mut stop: Stop) -> dr_core::Result<ArchiverStatus> {
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
                        tracing::error!(%error, "the WAL archiver stops: retrying cannot heal this");
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
            if let Some(error) = &self.status.last_error {
                tracing::warn!(
                    error = %error.message,
                    retry_in = ?backoff,
                    "the WAL archiver lost its connection; reconnecting"
                );
            }
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
            let warning = self
                .archiver
                .options
                .slot_warning_bytes
                .is_some_and(|limit| retained > limit);
            if warning && !self.status.slot_warning {
                tracing::warn!(
                    retained_bytes = retained,
                    slot = %self.archiver.options.slot,
                    "the replication slot holds back more WAL than the warning limit"
                );
            }
            self.status.slot_warning = warning;
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
                    tracing::info!(
                        timeline = ended.next_timeline,
                        from = %ended.next_start,
                        "the server switched timelines; following"
                    );
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

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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
