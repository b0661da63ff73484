//! [`RdbSnapshot`] (dr-core `Backup`): one server's RDB, fetched over the
//! replication protocol straight into a snapshot, with no copy on disk: the
//! bytes are framed and their checksum checked on the way, and the snapshot
//! is committed only if the RDB arrived whole and sound.

use std::collections::VecDeque;

use bytes::Bytes;
use dr_core::{
    Backup, BackupReport, BackupRequest, Capabilities, ComponentId, CutHints, CutHintsPublisher,
    Manifest, Position, RecoveryPoint, SnapshotCommit, SnapshotDetails, SnapshotWriter, StreamName,
    Timeline, async_trait,
};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::fetch::{Framing, LogicalDump, RdbTransfer, ReadAhead, RedisServer};
use crate::pieces::{self, PieceWriter, ReaderGone};
use crate::rdb::verify::{KeyCounts, RdbSummary, Verifier};

/// The stream an RDB snapshot stores its RDB in.
pub const RDB_STREAM: &str = "rdb";

/// How far ahead of the store the transfer may read.
/// Pieces (up to 64 KiB each) in flight between a fetch and the store.
pub(crate) const PIPE_PIECES: usize = 64;

/// How many pieces of a transfer (up to 64 KiB each) are read ahead of the
/// store: 16 MiB, about 0.15 s of a fast transfer.
pub(crate) const READ_AHEAD: usize = 256;

/// What an RDB snapshot records beside its stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RdbSnapshotDetails {
    /// The server's `redis_version`.
    pub server_version: String,
    /// The RDB version it wrote.
    pub rdb_version: u16,
    /// `length` (the server saved to its disk first), `diskless`, or
    /// `logical` (written from `SCAN`, `DUMP` and `PTTL`: not one instant).
    pub framing: String,
    /// Keys per database and kind, counted as the RDB arrived: what a
    /// verification or a restore compares with.
    pub counts: KeyCounts,
    /// Function libraries in it.
    pub functions: u64,
    /// The RDB's size in bytes.
    pub bytes: u64,
    /// Its CRC-64, where the server computed one.
    pub checksum: Option<u64>,
}

impl SnapshotDetails for RdbSnapshotDetails {
    const KEY: &'static str = "redis.rdb";
}

impl RdbSnapshotDetails {
    /// The details of an RDB summed up as `summary`, written by the Redis
    /// `server_version` and stored as `framing` says.
    pub(crate) fn of_summary(summary: RdbSummary, server_version: String, framing: &str) -> Self {
        Self {
            server_version,
            rdb_version: summary.rdb_version,
            framing: framing.to_owned(),
            counts: summary.counts,
            functions: summary.functions,
            bytes: summary.bytes,
            checksum: summary.checksum,
        }
    }

    /// The details RDB snapshot `manifest` records.
    ///
    /// # Errors
    /// [`dr_core::Error::Corrupt`] if it records none (it is not an RDB
    /// snapshot) or they do not read.
    pub fn of(manifest: &Manifest) -> dr_core::Result<Self> {
        manifest.details()?.ok_or_else(|| {
            dr_core::Error::corrupt(
                format!("snapshot {}", manifest.id),
                format!("not an RDB snapshot: it records no {} details", Self::KEY),
            )
        })
    }
}

/// Backs one Redis server up as `redis-cli --rdb` does, into a snapshot.
///
/// Its recovery point is the instant the server forked (its `+FULLRESYNC`
/// answer) with the replication id and offset it gave. The fork happens on
/// the server named: point it at a replica to spare the master. The
/// server's `repl-diskless-sync-delay` (5 s by default) passes before a
/// diskless transfer begins.
///
/// ```no_run
/// # async fn demo(repo: &dr_storage::Repository) -> dr_core::Result<()> {
/// use dr_core::BackupExt;
/// use dr_redis::{RdbSnapshot, RdbSnapshotDetails, RedisServer};
///
/// let server = RedisServer::new("10.0.0.8", 6379).auth(Some("backup".into()), "secret");
/// let snapshot = RdbSnapshot::new("redis/sessions".parse()?, server);
/// let report = snapshot.backup_to(repo).await?;
/// let details = RdbSnapshotDetails::of(&report.manifest)?;
/// println!("{} keys, RDB {}", details.counts.keys(), details.rdb_version);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RdbSnapshot {
    component: ComponentId,
    server: RedisServer,
    mode: SnapshotMode,
}

/// Where a snapshot's RDB comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SnapshotMode {
    /// The replication protocol: the server forks and sends its RDB, one
    /// instant, with its replication id and offset.
    #[default]
    Replication,
    /// `SCAN`, `DUMP` and `PTTL` ([`RedisServer::begin_logical`]), for
    /// servers that refuse `SYNC` (managed services): each key as of when it
    /// was read; the recovery point is when the scan began, without a
    /// replication position.
    Logical,
}

impl RdbSnapshot {
    /// Snapshots of `server`, as the component `component`, over the
    /// replication protocol.
    pub fn new(component: ComponentId, server: RedisServer) -> Self {
        Self {
            component,
            server,
            mode: SnapshotMode::Replication,
        }
    }

    /// Takes them in `mode` instead.
    #[must_use]
    pub fn mode(mut self, mode: SnapshotMode) -> Self {
        self.mode = mode;
        self
    }
}

/// A snapshot's source of RDB bytes.
enum Source {
    Replication(ReadAhead),
    Logical(Box<LogicalDump>),
}

/// Where an RDB's bytes come from, a piece at a time.
#[async_trait]
pub(crate) trait Chunks: Send {
    /// The next bytes; `None` at the end.
    async fn next_chunk(&mut self) -> crate::Result<Option<Bytes>>;
}

#[async_trait]
impl Chunks for RdbTransfer {
    async fn next_chunk(&mut self) -> crate::Result<Option<Bytes>> {
        RdbTransfer::next_chunk(self).await
    }
}

#[async_trait]
impl Chunks for ReadAhead {
    async fn next_chunk(&mut self) -> crate::Result<Option<Bytes>> {
        ReadAhead::next_chunk(self).await
    }
}

#[async_trait]
impl Chunks for Source {
    async fn next_chunk(&mut self) -> crate::Result<Option<Bytes>> {
        match self {
            Source::Replication(ahead) => ahead.next_chunk().await,
            Source::Logical(dump) => dump.next_chunk().await,
        }
    }
}

/// Stores the RDB `source` yields as the stream `name`, framing it and
/// checking its checksum on the way; the summary once both are done.
///
/// Each key's record start goes to the store as a [`CutHints`] offset, so
/// that chunks are cut between keys and a key rewritten between two
/// snapshots changes only the chunks it lies in. An offset is published
/// before the bytes at it are written: bytes after the start of an item
/// not yet whole (a key's type and name, an opcode's arguments) wait for
/// the next piece, up to [`HOLD`] of them; beyond that they go, and that
/// record's start is left out.
///
/// # Errors
/// The source's, the check's (a damaged or incomplete RDB) or the store's.
/// The snapshot must then be aborted.
pub(crate) async fn store_checked(
    writer: &mut dyn SnapshotWriter,
    name: &StreamName,
    source: &mut dyn Chunks,
) -> dr_core::Result<RdbSummary> {
    let (pipe_in, pipe_out) = pieces::pipe(PIPE_PIECES);
    let (publisher, hints) = CutHints::pair();
    let fetch = pump(source, pipe_in, publisher);
    let store = async {
        // Moved in: once the store ends, the fetch's writes fail.
        let mut pipe_out = pipe_out;
        writer.add_stream_hinted(name, &mut pipe_out, hints).await
    };
    let (summary, stored) = tokio::join!(fetch, store);
    stored?;
    Ok(summary?)
}

/// The most bytes [`pump`] holds back for a record start it does not know
/// yet: longer key names are not cut before.
const HOLD: u64 = 1 << 20;

/// Feeds what `source` yields into `pipe` for the store, framing it and
/// checking its checksum on the way and publishing each key's record start
/// to `publisher` before the bytes at it are written (bytes after the start
/// of an item not yet whole wait for the next piece, up to [`HOLD`]); the
/// summary once the source ends. A store that stops reading ends the pump,
/// and the check then fails as incomplete.
pub(crate) async fn pump(
    source: &mut (dyn Chunks + '_),
    pipe: PieceWriter,
    publisher: CutHintsPublisher,
) -> crate::Result<RdbSummary> {
    let mut checker = Verifier::framing_only().collecting_record_starts();
    // Fed and not yet written, from offset `written` on.
    let mut held: VecDeque<Bytes> = VecDeque::new();
    let mut held_len = 0u64;
    let mut written = 0u64;
    let mut starts = Vec::new();
    while let Some(chunk) = source.next_chunk().await? {
        checker.feed(&chunk)?;
        held_len += chunk.len() as u64;
        held.push_back(chunk);
        checker.take_record_starts(&mut starts);
        // Those below what was written already came too late.
        publisher.publish(starts.drain(..).filter(|&start| start >= written));
        let mut release = checker.settled() - written;
        if held_len - release > HOLD {
            release = held_len;
        }
        if write_held(&pipe, &mut held, release).await.is_err() {
            // The store stopped reading: its own error says why.
            held.clear();
            break;
        }
        written += release;
        held_len -= release;
    }
    write_held(&pipe, &mut held, held_len).await.ok();
    // The end of the stream for the store.
    drop(pipe);
    checker.finish()
}

/// Writes the first `n` bytes of `held` into `pipe`, and drops them.
async fn write_held(
    pipe: &PieceWriter,
    held: &mut VecDeque<Bytes>,
    mut n: u64,
) -> Result<(), ReaderGone> {
    while n > 0 {
        let Some(front) = held.front_mut() else {
            break;
        };
        if front.len() as u64 <= n {
            n -= front.len() as u64;
            if let Some(piece) = held.pop_front() {
                pipe.send(piece).await?;
            }
        } else {
            let part = front.split_to(n as usize);
            pipe.send(part).await?;
            n = 0;
        }
    }
    Ok(())
}

#[async_trait]
impl Backup for RdbSnapshot {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    async fn backup(&self, request: BackupRequest<'_>) -> dr_core::Result<BackupReport> {
        let mut timeline = Timeline::start_now();
        let (mut source, point, server_version) = match self.mode {
            SnapshotMode::Replication => {
                let transfer = timeline
                    .step("fork (PSYNC)", async {
                        Ok::<_, dr_core::Error>(self.server.begin_rdb().await?)
                    })
                    .await?;
                let point = RecoveryPoint::new(Timestamp::now()).with_position(Position::Redis {
                    replication_id: transfer.replication_id().parse()?,
                    offset: transfer.offset(),
                });
                let version = transfer.server_version().to_owned();
                let ahead = transfer.read_ahead(READ_AHEAD);
                (Source::Replication(ahead), point, version)
            }
            SnapshotMode::Logical => {
                let dump = timeline
                    .step("connect (logical: SCAN, DUMP, PTTL)", async {
                        Ok::<_, dr_core::Error>(self.server.begin_logical().await?)
                    })
                    .await?;
                let point = RecoveryPoint::new(dump.started_at());
                let version = dump.server_version().to_owned();
                (Source::Logical(Box::new(dump)), point, version)
            }
        };
        let mut writer = request.sink.begin(&self.component, point.at).await?;
        let name = RDB_STREAM.parse::<StreamName>()?;
        let fetched = timeline
            .step(
                "fetch and store the RDB",
                store_checked(writer.as_mut(), &name, &mut source),
            )
            .await;
        let summary = match fetched {
            Ok(summary) => summary,
            Err(error) => {
                writer.abort().await.ok();
                return Err(error);
            }
        };
        let framing = match source {
            Source::Logical(_) => "logical",
            Source::Replication(ahead) => match ahead.finish().await?.framing() {
                Some(Framing::EofMark(_)) => "diskless",
                _ => "length",
            },
        };
        let details = RdbSnapshotDetails::of_summary(summary, server_version, framing);
        commit(writer, timeline, &request, point, &details).await
    }
}

/// Commits a Redis snapshot with its details and the request's labels, as
/// a step of `timeline`.
pub(crate) async fn commit(
    writer: Box<dyn SnapshotWriter>,
    mut timeline: Timeline,
    request: &BackupRequest<'_>,
    point: RecoveryPoint,
    details: &impl SnapshotDetails,
) -> dr_core::Result<BackupReport> {
    let mut commit = SnapshotCommit::new(point);
    for (key, value) in &request.labels {
        commit = commit.label(key, value);
    }
    let commit = commit.details(details)?;
    let manifest = timeline.step("commit", writer.commit(commit)).await?;
    Ok(BackupReport { manifest, timeline })
}
