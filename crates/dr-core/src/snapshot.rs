//! The snapshot model: how system crates hand bytes to storage, and read them back.
//!
//! A backup is a *snapshot* of one component: a set of named byte streams plus
//! a [`Manifest`]. A [`SnapshotSink`] begins one and hands back a
//! [`SnapshotWriter`]; the writer takes streams one after another and is then
//! either committed, which writes the manifest and makes the snapshot visible,
//! or aborted. **A snapshot exists once its manifest is written, and not
//! before**: a writer dropped without `commit` leaves nothing visible.
//!
//! Continuous, append-only data (PostgreSQL WAL) goes to an [`ArchiveSink`]
//! as named segments instead. While a segment is still being written, a store
//! on local disk can also keep a journal of it, through the opt-in
//! [`JournalSink`](crate::JournalSink) and [`JournalSource`](crate::JournalSource).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use crate::error::{Error, Result};
use crate::id::{ComponentId, SegmentName, Sha256Digest, SnapshotId, StreamName};
use crate::point::{Position, RecoveryPoint};

/// Free-form labels for selecting snapshots (`env=prod`, `trigger=drill`).
pub type Labels = BTreeMap<String, String>;

/// A readable byte stream handed across the sink and source traits.
pub type ByteStream = Box<dyn AsyncRead + Send + Unpin>;

/// The manifest format version this build writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// One stream of a committed snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamEntry {
    /// The stream's name within the snapshot.
    pub name: StreamName,
    /// Its length in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes, checked again on every read.
    pub sha256: Sha256Digest,
}

/// The record of a committed snapshot. Writing it is the commit point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format version; see [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The snapshot's id.
    pub id: SnapshotId,
    /// The component it is a snapshot of.
    pub component: ComponentId,
    /// When the backup began.
    pub started_at: Timestamp,
    /// When it was committed.
    pub committed_at: Timestamp,
    /// What the snapshot covers.
    pub recovery_point: RecoveryPoint,
    /// Its streams, in the order they were added.
    pub streams: Vec<StreamEntry>,
    /// Labels for selection and retention.
    #[serde(default)]
    pub labels: Labels,
    /// Facts the component crate needs to restore (server version, start
    /// LSN, ...): each kind of snapshot's [`SnapshotDetails`] as JSON under
    /// its key. Read them with [`Manifest::details`].
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The snapshot this one's streams are stored against (a delta backup's
    /// full backup): restoring this one reads that one too, so the store
    /// keeps it for as long as it keeps this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<SnapshotId>,
}

/// The facts a component crate records with a kind of snapshot and reads
/// back to restore it (a base backup's start position, a Redis snapshot's
/// replication offset): one typed value, stored as JSON in the manifest's
/// metadata under [`SnapshotDetails::KEY`], written with
/// [`SnapshotCommit::details`] and read with [`Manifest::details`].
///
/// ```
/// use dr_core::{Lsn, SnapshotDetails};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Dump {
///     server_version: String,
///     taken_at_lsn: Lsn,
/// }
///
/// impl SnapshotDetails for Dump {
///     const KEY: &'static str = "example.dump";
/// }
/// ```
pub trait SnapshotDetails: Serialize + DeserializeOwned {
    /// The metadata key, one per kind of snapshot: `<crate>.<kind>`.
    const KEY: &'static str;
}

impl Manifest {
    /// The snapshot's details of kind `T`, or `None` if it has none (a
    /// snapshot of another kind).
    ///
    /// # Errors
    /// [`Error::Corrupt`] if they are there but do not read as `T`.
    pub fn details<T: SnapshotDetails>(&self) -> Result<Option<T>> {
        self.metadata
            .get(T::KEY)
            .map(|json| {
                serde_json::from_str(json).map_err(|e| {
                    Error::corrupt(
                        format!("snapshot {}", self.id),
                        format!("its {} details do not read: {e}", T::KEY),
                    )
                })
            })
            .transpose()
    }

    /// The entry for a named stream.
    pub fn stream(&self, name: &StreamName) -> Option<&StreamEntry> {
        self.streams.iter().find(|s| &s.name == name)
    }

    /// The total size of all streams in bytes.
    pub fn total_size(&self) -> u64 {
        self.streams.iter().map(|s| s.size).sum()
    }

    /// Checks that this build can read the manifest.
    ///
    /// # Errors
    /// [`Error::UnsupportedVersion`] for a format other than [`MANIFEST_FORMAT`].
    pub fn check_format(&self) -> Result<()> {
        if self.format != MANIFEST_FORMAT {
            return Err(Error::UnsupportedVersion {
                what: format!("manifest of snapshot {}", self.id),
                found: self.format,
                supported: MANIFEST_FORMAT.to_string(),
            });
        }
        Ok(())
    }
}

/// What a backup states about its snapshot when committing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCommit {
    /// What the snapshot covers.
    pub recovery_point: RecoveryPoint,
    /// Labels for selection and retention.
    pub labels: Labels,
    /// Facts needed to restore: see [`SnapshotCommit::details`].
    pub metadata: BTreeMap<String, String>,
    /// The snapshot this one is stored against; see [`Manifest::depends_on`].
    pub depends_on: Option<SnapshotId>,
}

impl SnapshotCommit {
    /// A commit with the given recovery point and no labels or metadata.
    pub fn new(recovery_point: RecoveryPoint) -> Self {
        Self {
            recovery_point,
            labels: Labels::new(),
            metadata: BTreeMap::new(),
            depends_on: None,
        }
    }

    /// Records that the snapshot's streams are stored against `base`, which
    /// must then be kept with it. The sink refuses the commit if `base` is
    /// not a committed snapshot.
    pub fn depends_on(mut self, base: SnapshotId) -> Self {
        self.depends_on = Some(base);
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Records `details`, replacing any recorded of the same kind.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if they do not serialize (a map with keys
    /// that are not strings).
    pub fn details<T: SnapshotDetails>(mut self, details: &T) -> Result<Self> {
        let json = serde_json::to_string(details)
            .map_err(|e| Error::invalid(format!("{} details", T::KEY), e.to_string()))?;
        self.metadata.insert(T::KEY.to_owned(), json);
        Ok(self)
    }
}

/// Where backups are written: begins snapshots.
#[async_trait]
pub trait SnapshotSink: Send + Sync {
    /// Begins a snapshot of `component`, started at `started_at`.
    ///
    /// # Errors
    /// The store could not be reached or refused the write.
    async fn begin(
        &self,
        component: &ComponentId,
        started_at: Timestamp,
    ) -> Result<Box<dyn SnapshotWriter>>;
}

/// How a stream's bytes are laid out, so that storage can cut them into
/// chunks where they change between backups.
///
/// A stream of records whose starts only its producer knows (the keys of a
/// Redis RDB) is not a layout: the starts come along with the bytes, as
/// [`CutHints`] given to [`SnapshotWriter::add_stream_hinted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StreamLayout {
    /// Any bytes: storage finds chunk boundaries in the content.
    #[default]
    Opaque,
    /// A tar archive whose members change in place, as a database's files
    /// do (pages rewritten where they are, files growing at their end):
    /// chunks are cut at member boundaries and at fixed offsets within large
    /// members, which keeps unchanged parts unchanged without searching the
    /// content. Bytes that turn out not to be tar are cut as
    /// [`StreamLayout::Opaque`].
    Tar,
}

/// Where the records of a stream start (each key of a Redis RDB), told by
/// the stream's producer to the store as the bytes go by, so that chunks are
/// cut between records: a record rewritten between two backups then changes
/// the chunks it lies in and no others. Hints decide only where chunks are
/// cut, never what is stored.
///
/// Made in pairs with [`CutHints::pair`]: the producer keeps the
/// [`CutHintsPublisher`] and hands the `CutHints` to
/// [`SnapshotWriter::add_stream_hinted`]. **The producer publishes each
/// offset before it writes the byte at that offset into the stream**: a
/// store that has read the stream up to offset `end` has then been told of
/// every record starting below `end`, so its cuts depend only on the
/// offsets and the bytes, never on how the reads were split or timed. A
/// producer that learns of a record start too late leaves it out.
///
/// The hints are a queue in memory, with no I/O: it holds the offsets of
/// the bytes written and not yet taken by the store (one per record of
/// what the pipe and the store's read-ahead hold). Once the `CutHints` is
/// dropped (a store that does not use them), publishing does nothing.
///
/// ```
/// let (publisher, hints) = dr_core::CutHints::pair();
/// publisher.publish([0, 120, 4000]);
/// let mut taken = Vec::new();
/// hints.take_below(4000, &mut taken);
/// assert_eq!(taken, [0, 120]);
/// drop(hints);
/// assert!(publisher.is_closed());
/// ```
#[derive(Debug)]
pub struct CutHints {
    queue: Arc<Mutex<HintQueue>>,
}

/// The producer's end of [`CutHints`].
#[derive(Debug, Clone)]
pub struct CutHintsPublisher {
    queue: Arc<Mutex<HintQueue>>,
}

#[derive(Debug, Default)]
struct HintQueue {
    offsets: VecDeque<u64>,
    /// The last offset published: offsets only grow.
    last: Option<u64>,
    /// The store dropped its end.
    closed: bool,
}

fn lock(queue: &Mutex<HintQueue>) -> MutexGuard<'_, HintQueue> {
    // Every method leaves the queue consistent, even one that panicked.
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CutHints {
    /// A publisher and the hints it publishes to.
    pub fn pair() -> (CutHintsPublisher, CutHints) {
        let queue = Arc::new(Mutex::new(HintQueue::default()));
        (
            CutHintsPublisher {
                queue: Arc::clone(&queue),
            },
            CutHints { queue },
        )
    }

    /// Moves every offset published below `end` into `out`, in order.
    pub fn take_below(&self, end: u64, out: &mut impl Extend<u64>) {
        let mut queue = lock(&self.queue);
        let n = queue.offsets.partition_point(|&offset| offset < end);
        out.extend(queue.offsets.drain(..n));
    }
}

impl Drop for CutHints {
    fn drop(&mut self) {
        let mut queue = lock(&self.queue);
        queue.closed = true;
        queue.offsets = VecDeque::new();
    }
}

impl CutHintsPublisher {
    /// Publishes record starts, in increasing order, each before the byte at
    /// that offset is written into the stream. An offset not above the last
    /// one published is left out.
    pub fn publish(&self, offsets: impl IntoIterator<Item = u64>) {
        let mut queue = lock(&self.queue);
        if queue.closed {
            return;
        }
        for offset in offsets {
            if queue.last.is_none_or(|last| offset > last) {
                queue.offsets.push_back(offset);
                queue.last = Some(offset);
            }
        }
    }

    /// Whether the store dropped its end: nothing published is read.
    pub fn is_closed(&self) -> bool {
        lock(&self.queue).closed
    }
}

/// A snapshot being written. Streams are added one at a time; `commit` makes
/// the snapshot visible, `abort` (or dropping the writer) discards it.
#[async_trait]
pub trait SnapshotWriter: Send {
    /// The id the snapshot will have once committed.
    fn id(&self) -> SnapshotId;

    /// Reads `data` to its end and stores it as the stream `name`.
    ///
    /// # Errors
    /// Reading `data` failed, the name was already used in this snapshot, or
    /// the store failed. The snapshot can still be aborted.
    async fn add_stream(
        &mut self,
        name: &StreamName,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<StreamEntry>;

    /// [`SnapshotWriter::add_stream`] for bytes laid out as `layout`, which
    /// decides only where chunks are cut, never what is stored. The default
    /// ignores the layout.
    ///
    /// # Errors
    /// As [`SnapshotWriter::add_stream`].
    async fn add_stream_with(
        &mut self,
        name: &StreamName,
        data: &mut (dyn AsyncRead + Send + Unpin),
        layout: StreamLayout,
    ) -> Result<StreamEntry> {
        let _ = layout;
        self.add_stream(name, data).await
    }

    /// [`SnapshotWriter::add_stream`] for a stream of records whose starts
    /// its producer publishes to `hints` as it writes them: chunks are cut
    /// at record boundaries, which decides only where chunks are cut, never
    /// what is stored. The default drops the hints and stores the stream as
    /// [`StreamLayout::Opaque`].
    ///
    /// # Errors
    /// As [`SnapshotWriter::add_stream`].
    async fn add_stream_hinted(
        &mut self,
        name: &StreamName,
        data: &mut (dyn AsyncRead + Send + Unpin),
        hints: CutHints,
    ) -> Result<StreamEntry> {
        drop(hints);
        self.add_stream(name, data).await
    }

    /// Stores several streams at once, each read to its end, and returns
    /// their entries in the order given: for a source that produces them
    /// in parallel (several databases dumped at the same time). A sink
    /// that can take them concurrently does; this default stores them one
    /// after another.
    ///
    /// # Errors
    /// As [`SnapshotWriter::add_stream`], for the first that fails; the
    /// snapshot can still be aborted.
    async fn add_streams(
        &mut self,
        streams: Vec<(StreamName, &mut (dyn AsyncRead + Send + Unpin))>,
    ) -> Result<Vec<StreamEntry>> {
        let mut entries = Vec::with_capacity(streams.len());
        for (name, data) in streams {
            entries.push(self.add_stream(&name, data).await?);
        }
        Ok(entries)
    }

    /// [`SnapshotWriter::add_streams`] where each stream may come with the
    /// [`CutHints`] of its records ([`SnapshotWriter::add_stream_hinted`]).
    /// The default stores them one after another.
    ///
    /// # Errors
    /// As [`SnapshotWriter::add_streams`].
    async fn add_streams_hinted(
        &mut self,
        streams: Vec<(
            StreamName,
            &mut (dyn AsyncRead + Send + Unpin),
            Option<CutHints>,
        )>,
    ) -> Result<Vec<StreamEntry>> {
        let mut entries = Vec::with_capacity(streams.len());
        for (name, data, hints) in streams {
            entries.push(match hints {
                Some(hints) => self.add_stream_hinted(&name, data, hints).await?,
                None => self.add_stream(&name, data).await?,
            });
        }
        Ok(entries)
    }

    /// Writes the manifest: the snapshot now exists.
    ///
    /// # Errors
    /// The store failed; the snapshot is then not visible.
    async fn commit(self: Box<Self>, commit: SnapshotCommit) -> Result<Manifest>;

    /// Discards the snapshot. Data already stored is left for pruning.
    ///
    /// # Errors
    /// The store failed while cleaning up; the snapshot is invisible anyway.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// Where backups are read from.
#[async_trait]
pub trait SnapshotSource: Send + Sync {
    /// The committed snapshots of `component`, oldest first.
    ///
    /// # Errors
    /// The store failed, or a manifest is unreadable.
    async fn snapshots(&self, component: &ComponentId) -> Result<Vec<Manifest>>;

    /// The manifest of one snapshot.
    ///
    /// # Errors
    /// [`Error::NotFound`] if no such snapshot is committed.
    async fn manifest(&self, id: &SnapshotId) -> Result<Manifest>;

    /// Opens one stream of a snapshot for reading, checked as `check` says.
    /// The reader fails with an I/O error of kind `InvalidData` rather than
    /// return bytes that fail the check. [`SnapshotSourceExt::open_stream`]
    /// opens one with the whole check.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the snapshot or stream does not exist.
    async fn open_stream_with(
        &self,
        id: &SnapshotId,
        name: &StreamName,
        check: StreamCheck,
    ) -> Result<ByteStream>;
}

/// Conveniences over any [`SnapshotSource`].
#[async_trait]
pub trait SnapshotSourceExt: SnapshotSource {
    /// Opens one stream of a snapshot for reading, with
    /// [`StreamCheck::Digest`]: it ends only once its length and SHA-256
    /// match the manifest.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the snapshot or stream does not exist.
    async fn open_stream(&self, id: &SnapshotId, name: &StreamName) -> Result<ByteStream> {
        self.open_stream_with(id, name, StreamCheck::Digest).await
    }
}

impl<T: SnapshotSource + ?Sized> SnapshotSourceExt for T {}

/// What a stream read checks before it hands out bytes and before it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamCheck {
    /// The stored pieces, each as the source checks them on every read,
    /// and the stream's length and SHA-256 against its [`StreamEntry`]
    /// before the end: the stream as it was handed to the sink, whole and
    /// in order.
    Digest,
    /// The stored pieces and the stream's length, not its SHA-256, which can
    /// be the slowest step of a read. For a caller that checks what it reads
    /// end to end itself, against checksums of its own (a PostgreSQL restore
    /// checks every file against the server's backup manifest): pieces
    /// damaged in the store still fail the read, but pieces whole and in the
    /// wrong order are for that caller to find.
    Pieces,
}

/// One stored segment of a continuous archive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentInfo {
    /// The segment's name.
    pub name: SegmentName,
    /// Its length in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes.
    pub sha256: Sha256Digest,
}

/// How far an archive held everything its source had written, as its
/// archiver last saw it: `pg_receivewal`'s flush position, with when. A
/// restore to the latest point measures what was lost from it: only what
/// the source wrote after `seen_at` can be missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveCoverage {
    /// The source's position the archive held everything up to.
    pub position: Position,
    /// When the source last said it had written nothing beyond `position`
    /// (the archiver's clock).
    pub seen_at: Timestamp,
    /// The source then acknowledged writes only once they were archived (a
    /// PostgreSQL server whose `synchronous_standby_names` requires this
    /// archiver for every commit): nothing it acknowledged is missing.
    pub synchronous: bool,
}

/// Where continuous, append-only segments (WAL) are written. Segments are
/// write-once: storing a name again with the same bytes succeeds and changes
/// nothing; with other bytes it fails with [`Error::AlreadyExists`].
#[async_trait]
pub trait ArchiveSink: Send + Sync {
    /// Reads `data` to its end and stores it as segment `name` of `component`'s archive.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if the name holds other bytes; reading or storing failed.
    async fn put_segment(
        &self,
        component: &ComponentId,
        name: &SegmentName,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<SegmentInfo>;

    /// Records how far `component`'s archive holds everything its source
    /// wrote, replacing the record before.
    ///
    /// # Errors
    /// The store failed.
    async fn record_coverage(
        &self,
        component: &ComponentId,
        coverage: &ArchiveCoverage,
    ) -> Result<()>;
}

/// Where archived segments are read from.
#[async_trait]
pub trait ArchiveSource: Send + Sync {
    /// The names of the segments of `component`'s archive that start with
    /// `prefix`, in no promised order: the component orders them by what
    /// their names say (a WAL position, an AOF sequence), never by their
    /// text. Sizes and digests come with `put_segment` and are checked on
    /// every read, so listing stays one cheap call.
    ///
    /// # Errors
    /// The store failed.
    async fn segments(&self, component: &ComponentId, prefix: &str) -> Result<Vec<SegmentName>>;

    /// Opens one segment for reading, checked against its digest as it is read.
    ///
    /// # Errors
    /// [`Error::NotFound`] if it is not archived.
    async fn open_segment(&self, component: &ComponentId, name: &SegmentName)
    -> Result<ByteStream>;

    /// The last coverage recorded for `component`'s archive
    /// ([`ArchiveSink::record_coverage`]), if any was.
    ///
    /// # Errors
    /// The store failed, or the record is damaged.
    async fn coverage(&self, component: &ComponentId) -> Result<Option<ArchiveCoverage>>;
}

/// The traits are used as `dyn`: this fails to compile if one stops being object-safe.
fn _assert_object_safe(
    _: &dyn SnapshotSink,
    _: &dyn SnapshotWriter,
    _: &dyn SnapshotSource,
    _: &dyn ArchiveSink,
    _: &dyn ArchiveSource,
) {
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::{Lsn, Position};
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Dump {
        taken_at: Lsn,
        server_version: String,
    }

    impl SnapshotDetails for Dump {
        const KEY: &'static str = "test.dump";
    }

    #[test]
    fn details_read_back_as_written_and_damaged_ones_are_corrupt() {
        let dump = Dump {
            taken_at: Lsn::new(0x1_0000_0028),
            server_version: "15.8".into(),
        };
        let commit = SnapshotCommit::new(RecoveryPoint::new(Timestamp::UNIX_EPOCH))
            .details(&dump)
            .unwrap();
        let mut m = manifest(1_700_000_000, Vec::new(), 0);
        assert_eq!(m.details::<Dump>().unwrap(), None);
        m.metadata = commit.metadata;
        assert_eq!(m.details::<Dump>().unwrap(), Some(dump));

        m.metadata
            .insert(Dump::KEY.into(), r#"{"taken_at":"1/28"}"#.into());
        let err = m.details::<Dump>().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt);
        assert!(err.to_string().contains("test.dump"), "{err}");
    }

    fn manifest(seconds: i64, streams: Vec<(String, u64, [u8; 32])>, lsn: u64) -> Manifest {
        let at = Timestamp::from_second(seconds).unwrap();
        Manifest {
            format: MANIFEST_FORMAT,
            id: SnapshotId::from_parts(at, 7).unwrap(),
            component: "postgres/gomeet_primary".parse().unwrap(),
            started_at: at,
            committed_at: at,
            recovery_point: RecoveryPoint::new(at).with_position(Position::Postgres {
                system_identifier: 7_311_234_567_890_123_456,
                timeline: 1,
                lsn: Lsn::new(lsn),
            }),
            streams: streams
                .into_iter()
                .map(|(name, size, digest)| StreamEntry {
                    name: name.parse().unwrap(),
                    size,
                    sha256: Sha256Digest::from_bytes(digest),
                })
                .collect(),
            labels: Labels::from([("env".into(), "prod".into())]),
            metadata: BTreeMap::from([("server_version".into(), "150018".into())]),
            depends_on: (lsn % 2 == 1).then(|| SnapshotId::from_parts(at, 8).unwrap()),
        }
    }

    #[test]
    fn unknown_formats_are_refused() {
        let mut m = manifest(1_800_000_000, vec![], 0);
        assert!(m.check_format().is_ok());
        m.format = 2;
        let err = m.check_format().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::UnsupportedVersion);
    }

    #[test]
    fn lookups() {
        let m = manifest(
            1_800_000_000,
            vec![
                ("base.tar".into(), 10, [1; 32]),
                ("backup_manifest".into(), 5, [2; 32]),
            ],
            0,
        );
        assert_eq!(m.total_size(), 15);
        assert_eq!(
            m.stream(&"backup_manifest".parse().unwrap()).unwrap().size,
            5
        );
        assert!(m.stream(&"missing".parse().unwrap()).is_none());
    }

    proptest! {
        #[test]
        fn manifests_round_trip_through_json(
            seconds in 0i64..253_402_300_799,
            streams in prop::collection::vec(("[a-z][a-z0-9_.]{0,12}", any::<u64>(), any::<[u8; 32]>()), 0..5),
            lsn in any::<u64>(),
        ) {
            let m = manifest(seconds, streams, lsn);
            let json = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);
        }
    }
}
