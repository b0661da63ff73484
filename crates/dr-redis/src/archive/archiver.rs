//! [`CommandArchiver`]: a master's replication stream archived as it
//! arrives, every interval, with only what is durable acknowledged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use dr_core::{
    ArchiveCoverage, ArchiveSink, BackupRequest, ComponentId, JournalSink, Position, RecoveryPoint,
    SegmentJournal, SegmentName, SnapshotSink, StreamName, Timeline,
};
use jiff::Timestamp;
use tokio::sync::watch;

use super::segment::{SegmentHeader, encode_record, fork_marker_name};
use crate::fetch::RedisServer;
use crate::replication::commands::StreamCommand;
use crate::replication::link::{FullSync, HistoryPoint, ReplicaLink, Replication};
use crate::snapshot::{RDB_STREAM, RdbSnapshotDetails, commit, store_checked};

/// Archives one master's writes (one shard's, in a Cluster).
///
/// It follows the master as a replica that advertises no listening port,
/// gathers the commands that arrive for an interval (200 ms by default),
/// appends them as one record to the current segment (its journal, where
/// the store keeps journals; else each interval's records are a segment of
/// their own), and only then acknowledges their offset (`REPLCONF ACK`):
/// its acknowledgements count for `WAIT` and `min-replicas-to-write`, and
/// they are never ahead of the archive. A segment is sealed (stored whole,
/// its journal dropped) once it holds `seal_bytes` or is `seal_after` old.
///
/// Where the master cannot continue from the point it is given (the
/// history is unknown, or the backlog no longer holds it), it sends an RDB
/// first: that RDB is stored as a snapshot of the component, and the
/// archive continues from its point.
#[derive(Debug, Clone)]
pub struct CommandArchiver {
    component: ComponentId,
    server: RedisServer,
    candidates: Vec<RedisServer>,
    interval: Duration,
    seal_bytes: u64,
    seal_after: Duration,
    reconnect_for: Duration,
    progress: Option<Arc<watch::Sender<Option<ArchiveProgress>>>>,
}

/// How often the archive's coverage (everything that arrived is archived,
/// as of now) is recorded in the store.
const COVERAGE_EVERY: Duration = Duration::from_secs(10);

/// How far the archive holds the master's stream, as the archiver last
/// made sure: what a monitor holds against the RPO.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveProgress {
    /// The history and offset the archive holds up to.
    pub archived: HistoryPoint,
    /// When the archive last held everything the master had sent: each
    /// interval's flush that stored what had arrived, or found nothing
    /// waiting. Its age is the archive's lag.
    pub complete_at: Timestamp,
    /// Full synchronizations stored as snapshots since the archiver
    /// started: one where it began with no point to continue from, and one
    /// more each time a master could not continue the archive's history
    /// (its backlog no longer held it, or a failover forked it).
    pub snapshots_taken: u32,
    /// How many bytes of the master's stream the archive lacked when its
    /// master was last asked (every 10 s: its `master_repl_offset` less
    /// the archived offset); `None` until it answers on the archive's
    /// history.
    pub behind_master: Option<u64>,
}

/// Why [`CommandArchiver::run`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiverStop {
    /// How far the archive holds the stream.
    pub archived: HistoryPoint,
    /// The snapshots taken because the master could not continue.
    pub snapshots_taken: u32,
}

impl CommandArchiver {
    /// Archives `server`'s writes as `component`'s archive, every 200 ms,
    /// sealing segments at 64 MiB or 10 minutes.
    pub fn new(component: ComponentId, server: RedisServer) -> Self {
        Self {
            component,
            server,
            candidates: Vec::new(),
            interval: Duration::from_millis(200),
            seal_bytes: 64 << 20,
            seal_after: Duration::from_secs(600),
            reconnect_for: Duration::from_secs(300),
            progress: None,
        }
    }

    /// Publishes the archive's [`ArchiveProgress`] on `progress` after each
    /// interval's flush.
    #[must_use]
    pub fn progress(mut self, progress: watch::Sender<Option<ArchiveProgress>>) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }

    /// Other servers that may become the master (its replicas): when the
    /// link breaks, the archiver asks each in turn to continue the history
    /// from where the archive ends. A promoted replica continues it (its
    /// `replid2` is the old master's id), so a failover leaves no gap; a
    /// replica whose master is gone refuses until it follows a new one.
    #[must_use]
    pub fn candidates(mut self, servers: Vec<RedisServer>) -> Self {
        self.candidates = servers;
        self
    }

    /// How long the archiver keeps asking for a master to continue from
    /// before it gives up with the last error (default 5 minutes).
    #[must_use]
    pub fn reconnect_for(mut self, wait: Duration) -> Self {
        self.reconnect_for = wait;
        self
    }

    /// How often the commands that arrived are made durable (at least 10 ms).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// When a segment is sealed: at `bytes`, or once `after` old.
    #[must_use]
    pub fn seal_at(mut self, bytes: u64, after: Duration) -> Self {
        self.seal_bytes = bytes.max(1);
        self.seal_after = after;
        self
    }

    /// Follows the master from `from` (or from a full synchronization,
    /// stored as a snapshot in `snapshots`, where `from` is `None` or the
    /// master cannot continue it) until `stop` says `true`; then seals the
    /// open segment and returns where the archive stands. A broken link is
    /// followed again from where the archive ends, on the server or a
    /// [candidate](CommandArchiver::candidates).
    ///
    /// # Errors
    /// No server continued the history within
    /// [`reconnect_for`](CommandArchiver::reconnect_for) (the last one's
    /// error), the store's, a stream that does not read as commands.
    pub async fn run(
        &self,
        archive: &dyn ArchiveSink,
        journals: Option<&dyn JournalSink>,
        snapshots: &dyn SnapshotSink,
        from: Option<HistoryPoint>,
        mut stop: watch::Receiver<bool>,
    ) -> dr_core::Result<ArchiverStop> {
        let mut snapshots_taken = 0;
        let mut open: Option<OpenSegment> = None;
        let mut from = from;
        loop {
            let Some(mut link) = self
                .connect(
                    from.as_ref(),
                    archive,
                    snapshots,
                    &mut snapshots_taken,
                    &mut stop,
                )
                .await?
            else {
                if let Some(segment) = open.take() {
                    segment.seal(&self.component, archive, journals).await?;
                }
                return Ok(ArchiverStop {
                    archived: from.unwrap_or(HistoryPoint {
                        replication_id: String::new(),
                        offset: 0,
                    }),
                    snapshots_taken,
                });
            };
            match self
                .follow(
                    &mut link,
                    &mut open,
                    archive,
                    journals,
                    snapshots_taken,
                    &mut stop,
                )
                .await
            {
                Ok(()) => {
                    return Ok(ArchiverStop {
                        archived: link.point(),
                        snapshots_taken,
                    });
                }
                // The link broke: what arrived whole is archived; go on
                // from there, with whoever continues the history.
                Err(e) if e.is_retryable() => from = Some(link.point()),
                Err(e) => return Err(e),
            }
        }
    }

    /// A link continuing from `from`: the server first, then each
    /// candidate, again and again with growing pauses, until one continues
    /// the history or sends a full synchronization (stored as a snapshot);
    /// `None` if asked to stop meanwhile.
    async fn connect(
        &self,
        from: Option<&HistoryPoint>,
        archive: &dyn ArchiveSink,
        snapshots: &dyn SnapshotSink,
        snapshots_taken: &mut u32,
        stop: &mut watch::Receiver<bool>,
    ) -> dr_core::Result<Option<ReplicaLink>> {
        let deadline = Instant::now() + self.reconnect_for;
        let mut pause = Duration::from_millis(50);
        loop {
            let mut last = None;
            for server in std::iter::once(&self.server).chain(&self.candidates) {
                if *stop.borrow_and_update() {
                    return Ok(None);
                }
                match server.replicate(from).await {
                    Ok(Replication::Continue(link)) => return Ok(Some(link)),
                    Ok(Replication::FullSync(sync)) => {
                        if let Some(from) = from {
                            self.note_fork(server, from, archive).await?;
                        }
                        *snapshots_taken += 1;
                        return Ok(Some(self.store_full_sync(sync, snapshots).await?));
                    }
                    Err(e) => last = Some(e),
                }
            }
            if Instant::now() >= deadline
                && let Some(e) = last
            {
                return Err(e.into());
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Archives what `link` brings until asked to stop (then the open
    /// segment is sealed) or the link breaks (what arrived whole archived
    /// first).
    async fn follow(
        &self,
        link: &mut ReplicaLink,
        open: &mut Option<OpenSegment>,
        archive: &dyn ArchiveSink,
        journals: Option<&dyn JournalSink>,
        snapshots_taken: u32,
        stop: &mut watch::Receiver<bool>,
    ) -> dr_core::Result<()> {
        let mut pending: Vec<StreamCommand> = Vec::new();
        let mut next_flush = Instant::now() + self.interval;
        let mut next_coverage = Instant::now();
        let mut behind_master = None;
        loop {
            let stopping = *stop.borrow_and_update();
            let now = Instant::now();
            if now >= next_flush || stopping {
                self.flush(link, open, &mut pending, archive, journals)
                    .await?;
                next_flush = now + self.interval;
                // Everything that arrived is archived: recorded now and
                // then (and at the end), so that a restore (and a monitor)
                // knows an idle master's archive is still whole up to now.
                if now >= next_coverage || stopping {
                    self.record_coverage(link.point(), archive).await?;
                    next_coverage = now + COVERAGE_EVERY;
                    if self.progress.is_some() && !stopping {
                        let (addr, point) = (link.addr().to_owned(), link.point());
                        behind_master = self.behind_master(&addr, &point).await;
                    }
                }
                if let Some(progress) = &self.progress {
                    progress.send_replace(Some(ArchiveProgress {
                        archived: link.point(),
                        complete_at: Timestamp::now(),
                        snapshots_taken,
                        behind_master,
                    }));
                }
            }
            if stopping {
                if let Some(segment) = open.take() {
                    segment.seal(&self.component, archive, journals).await?;
                }
                return Ok(());
            }
            let wait = next_flush.saturating_duration_since(Instant::now());
            tokio::select! {
                received = link.recv_within(wait) => match received {
                    Ok(commands) => pending.extend(commands),
                    Err(e) => {
                        // Archived without an acknowledgement: the link is gone.
                        self.flush_unacknowledged(link, open, &mut pending, archive, journals).await?;
                        return Err(e.into());
                    }
                },
                _ = stop.changed() => {}
            }
        }
    }

    /// How many bytes of its stream the master at `addr` has written
    /// beyond `archived`, where it answers within a second on the
    /// archive's history.
    async fn behind_master(&self, addr: &str, archived: &HistoryPoint) -> Option<u64> {
        let master = self.server.at(addr).ok()?;
        let point = tokio::time::timeout(Duration::from_secs(1), master.replication_point())
            .await
            .ok()?
            .ok()?;
        (point.replication_id == archived.replication_id)
            .then(|| point.offset.saturating_sub(archived.offset))
    }

    /// Where a master that refused to continue the archive's history took
    /// that history over in a failover (its `master_replid2`), but only up
    /// to an offset before the archive's end, the history forked: what the
    /// archive holds past that offset was lost with the old master. A
    /// marker in the archive ([`fork_marker_name`]) records it, so that no
    /// restore replays it.
    async fn note_fork(
        &self,
        server: &RedisServer,
        from: &HistoryPoint,
        archive: &dyn ArchiveSink,
    ) -> dr_core::Result<()> {
        let Ok((mut conn, _)) = server.connect().await else {
            return Ok(());
        };
        let replication = crate::fetch::info(&mut conn, "replication").await?;
        let took_over = crate::fetch::info_field(&replication, "master_replid2")
            == Some(from.replication_id.as_str());
        let second: Option<u64> = crate::fetch::info_field(&replication, "second_repl_offset")
            .and_then(|o| o.parse().ok());
        let Some(second) = second.filter(|_| took_over) else {
            return Ok(());
        };
        // The new master holds the old history up to `second - 1`.
        let kept = second.saturating_sub(1);
        if kept >= from.offset {
            return Ok(());
        }
        // Its text depends on the fork alone: written again (an archiver
        // that restarts at the same point), it is the same marker.
        let text = format!(
            "history {} forked at offset {kept}: {} bytes archived from the old master (offsets \
             {kept} to {}) were lost in a failover to a master that took the history over only \
             up to {kept}\n",
            from.replication_id,
            from.offset - kept,
            from.offset,
        );
        let name = fork_marker_name(&from.replication_id, kept)?;
        match archive
            .put_segment(&self.component, &name, &mut text.as_bytes())
            .await
        {
            Ok(_) => Ok(()),
            // Another archive end beyond the same fork: marked already.
            Err(e) if e.kind() == dr_core::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Records that the archive holds everything received, up to `point`,
    /// as of now.
    async fn record_coverage(
        &self,
        point: HistoryPoint,
        archive: &dyn ArchiveSink,
    ) -> dr_core::Result<()> {
        let coverage = ArchiveCoverage {
            position: Position::Redis {
                replication_id: point.replication_id.parse()?,
                offset: point.offset,
            },
            seen_at: Timestamp::now(),
            synchronous: false,
        };
        archive.record_coverage(&self.component, &coverage).await
    }

    /// Stores a full synchronization's RDB as a snapshot; the link after it.
    async fn store_full_sync(
        &self,
        mut sync: FullSync,
        snapshots: &dyn SnapshotSink,
    ) -> dr_core::Result<ReplicaLink> {
        let point = sync.point();
        let timeline = Timeline::start_now();
        let at = RecoveryPoint::new(Timestamp::now()).with_position(Position::Redis {
            replication_id: point.replication_id.parse()?,
            offset: point.offset,
        });
        let mut writer = snapshots.begin(&self.component, at.at).await?;
        let name = RDB_STREAM.parse::<StreamName>()?;
        let version = sync.transfer().server_version().to_owned();
        let stored = store_checked(writer.as_mut(), &name, sync.transfer()).await;
        let summary = match stored {
            Ok(summary) => summary,
            Err(e) => {
                writer.abort().await.ok();
                return Err(e);
            }
        };
        let framing = match sync.transfer().framing() {
            Some(crate::fetch::Framing::EofMark(_)) => "diskless",
            _ => "length",
        };
        let details = RdbSnapshotDetails::of_summary(summary, version, framing);
        let request = BackupRequest::new(snapshots).label("trigger", "archiver");
        commit(writer, timeline, &request, at, &details).await?;
        Ok(sync.into_link().await?)
    }

    /// Appends the commands gathered as one record, then acknowledges
    /// them; seals the segment when it is due.
    async fn flush(
        &self,
        link: &mut ReplicaLink,
        open: &mut Option<OpenSegment>,
        pending: &mut Vec<StreamCommand>,
        archive: &dyn ArchiveSink,
        journals: Option<&dyn JournalSink>,
    ) -> dr_core::Result<()> {
        if let Some(end) = self
            .flush_unacknowledged(link, open, pending, archive, journals)
            .await?
        {
            link.ack(end).await?;
        }
        Ok(())
    }

    /// [`CommandArchiver::flush`] without the acknowledgement: the end
    /// offset archived, if anything was.
    async fn flush_unacknowledged(
        &self,
        link: &mut ReplicaLink,
        open: &mut Option<OpenSegment>,
        pending: &mut Vec<StreamCommand>,
        archive: &dyn ArchiveSink,
        journals: Option<&dyn JournalSink>,
    ) -> dr_core::Result<Option<u64>> {
        if pending.is_empty() {
            return Ok(None);
        }
        let start = pending[0].offsets.start;
        let mut data = BytesMut::with_capacity(pending.iter().map(|c| c.raw.len()).sum());
        for command in pending.drain(..) {
            data.extend_from_slice(&command.raw);
        }
        let end = start + data.len() as u64;
        let record = encode_record(start, Timestamp::now().as_millisecond(), &data);
        let header = SegmentHeader {
            replication_id: link.replication_id().to_owned(),
            start,
        };
        // Without journals, a record is durable only as a segment: each is
        // stored as one now, and the open segment gathers them for a
        // roll-up that replaces them (once `rolled_up_segments` are
        // forgotten) when it is sealed.
        if journals.is_none() {
            let mut small = OpenSegment::open(&self.component, header.clone(), None, 0).await?;
            small.append(&record, end).await?;
            small.seal(&self.component, archive, None).await?;
        }
        // A new history (after a failover) starts a segment of its own.
        if open
            .as_ref()
            .is_some_and(|s| s.header.replication_id != link.replication_id())
            && let Some(segment) = open.take()
        {
            segment.seal(&self.component, archive, journals).await?;
        }
        if open.is_none() {
            let mut segment =
                OpenSegment::open(&self.component, header, journals, self.seal_bytes).await?;
            segment.rollup = journals.is_none();
            *open = Some(segment);
        }
        let Some(segment) = open.as_mut() else {
            return Ok(None);
        };
        segment.append(&record, end).await?;
        let due = segment.bytes.len() as u64 >= self.seal_bytes
            || segment.opened.elapsed() >= self.seal_after;
        if due && let Some(segment) = open.take() {
            segment.seal(&self.component, archive, journals).await?;
        }
        Ok(Some(end))
    }
}

/// The segment being written: its bytes so far, and its journal (or,
/// without journals, a roll-up of records each already stored on its own).
struct OpenSegment {
    header: SegmentHeader,
    name: SegmentName,
    bytes: Vec<u8>,
    journal: Option<Box<dyn SegmentJournal>>,
    opened: Instant,
    /// The offset after its last record.
    end: u64,
    records: usize,
    /// Stored under a roll-up's name, `<id>-<start>-<end>`.
    rollup: bool,
}

impl OpenSegment {
    async fn open(
        component: &ComponentId,
        header: SegmentHeader,
        journals: Option<&dyn JournalSink>,
        capacity: u64,
    ) -> dr_core::Result<Self> {
        let name = header.name()?;
        let bytes = header.encode();
        let journal = match journals {
            Some(journals) => {
                let mut journal = journals.open_journal(component, &name, capacity).await?;
                journal.append(0, &bytes).await?;
                Some(journal)
            }
            None => None,
        };
        Ok(Self {
            end: header.start,
            header,
            name,
            bytes,
            journal,
            opened: Instant::now(),
            records: 0,
            rollup: false,
        })
    }

    /// Appends a record whose data ends at offset `end`.
    async fn append(&mut self, record: &[u8], end: u64) -> dr_core::Result<()> {
        if let Some(journal) = &mut self.journal {
            journal.append(self.bytes.len() as u64, record).await?;
        }
        self.bytes.extend_from_slice(record);
        self.end = end;
        self.records += 1;
        Ok(())
    }

    async fn seal(
        self,
        component: &ComponentId,
        archive: &dyn ArchiveSink,
        journals: Option<&dyn JournalSink>,
    ) -> dr_core::Result<()> {
        let name = match self.rollup {
            // One record rolls nothing up: its own segment stands.
            true if self.records < 2 => return Ok(()),
            true => self.header.rollup_name(self.end)?,
            false => self.name.clone(),
        };
        archive
            .put_segment(component, &name, &mut &self.bytes[..])
            .await?;
        if let Some(journals) = journals {
            journals.remove_journal(component, &self.name).await?;
        }
        Ok(())
    }
}
