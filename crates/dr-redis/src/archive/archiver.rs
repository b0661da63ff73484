//! [`CommandArchiver`]: a master's replication stream archived as it
//! arrives, every interval, with only what is durable acknowledged.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use dr_core::{
    ArchiveSink, BackupRequest, ComponentId, JournalSink, Position, RecoveryPoint, SegmentJournal,
    SegmentName, SnapshotSink, StreamName, Timeline,
};
use jiff::Timestamp;
use tokio::sync::watch;

use super::segment::{SegmentHeader, encode_record};
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
    interval: Duration,
    seal_bytes: u64,
    seal_after: Duration,
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
            interval: Duration::from_millis(200),
            seal_bytes: 64 << 20,
            seal_after: Duration::from_secs(600),
        }
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
    /// open segment and returns where the archive stands.
    ///
    /// # Errors
    /// The connection's (the caller reconnects with the point the archive
    /// holds), the store's, a stream that does not read as commands.
    pub async fn run(
        &self,
        archive: &dyn ArchiveSink,
        journals: Option<&dyn JournalSink>,
        snapshots: &dyn SnapshotSink,
        from: Option<HistoryPoint>,
        mut stop: watch::Receiver<bool>,
    ) -> dr_core::Result<ArchiverStop> {
        let mut snapshots_taken = 0;
        let mut link = match self.server.replicate(from.as_ref()).await? {
            Replication::Continue(link) => link,
            Replication::FullSync(sync) => {
                snapshots_taken += 1;
                self.store_full_sync(sync, snapshots).await?
            }
        };
        let mut open: Option<OpenSegment> = None;
        let mut pending: Vec<StreamCommand> = Vec::new();
        let mut next_flush = Instant::now() + self.interval;
        loop {
            let stopping = *stop.borrow_and_update();
            let now = Instant::now();
            if now >= next_flush || stopping {
                self.flush(&mut link, &mut open, &mut pending, archive, journals)
                    .await?;
                next_flush = now + self.interval;
            }
            if stopping {
                if let Some(segment) = open.take() {
                    segment.seal(&self.component, archive, journals).await?;
                }
                return Ok(ArchiverStop {
                    archived: link.point(),
                    snapshots_taken,
                });
            }
            let wait = next_flush.saturating_duration_since(Instant::now());
            tokio::select! {
                received = link.recv_within(wait) => pending.extend(received?),
                _ = stop.changed() => {}
            }
        }
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
        if pending.is_empty() {
            return Ok(());
        }
        let start = pending[0].offsets.start;
        let mut data = BytesMut::with_capacity(pending.iter().map(|c| c.raw.len()).sum());
        for command in pending.drain(..) {
            data.extend_from_slice(&command.raw);
        }
        let end = start + data.len() as u64;
        let record = encode_record(start, Timestamp::now().as_millisecond(), &data);
        // A new history (after a failover) starts a segment of its own.
        if open
            .as_ref()
            .is_some_and(|s| s.header.replication_id != link.replication_id())
            && let Some(segment) = open.take()
        {
            segment.seal(&self.component, archive, journals).await?;
        }
        if open.is_none() {
            *open = Some(
                OpenSegment::open(
                    &self.component,
                    SegmentHeader {
                        replication_id: link.replication_id().to_owned(),
                        start,
                    },
                    journals,
                    self.seal_bytes,
                )
                .await?,
            );
        }
        let Some(segment) = open.as_mut() else {
            return Ok(());
        };
        segment.append(&record).await?;
        // Without journals, a record is durable only as a segment.
        let due = journals.is_none()
            || segment.bytes.len() as u64 >= self.seal_bytes
            || segment.opened.elapsed() >= self.seal_after;
        if due && let Some(segment) = open.take() {
            segment.seal(&self.component, archive, journals).await?;
        }
        link.ack(end).await?;
        Ok(())
    }
}

/// The segment being written: its bytes so far, and its journal.
struct OpenSegment {
    header: SegmentHeader,
    name: SegmentName,
    bytes: Vec<u8>,
    journal: Option<Box<dyn SegmentJournal>>,
    opened: Instant,
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
            header,
            name,
            bytes,
            journal,
            opened: Instant::now(),
        })
    }

    async fn append(&mut self, record: &[u8]) -> dr_core::Result<()> {
        if let Some(journal) = &mut self.journal {
            journal.append(self.bytes.len() as u64, record).await?;
        }
        self.bytes.extend_from_slice(record);
        Ok(())
    }

    async fn seal(
        self,
        component: &ComponentId,
        archive: &dyn ArchiveSink,
        journals: Option<&dyn JournalSink>,
    ) -> dr_core::Result<()> {
        archive
            .put_segment(component, &self.name, &mut &self.bytes[..])
            .await?;
        if let Some(journals) = journals {
            journals.remove_journal(component, &self.name).await?;
        }
        Ok(())
    }
}
