//! Writing snapshots: chunk, hash and seal on blocking threads, pack, upload
//! in the background, then commit packs, index and snapshot file in that order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use dr_core::{
    ComponentId, CutHints, MANIFEST_FORMAT, Manifest, Sha256Digest, SnapshotCommit, SnapshotId,
    SnapshotSink, SnapshotWriter, StreamEntry, StreamLayout, StreamName,
};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::lock::Lock;
use super::record_cuts::RecordCuts;
use super::tar_cuts::{Next, TarCuts};
use super::{
    ChunkerParams, INDEX_CONTEXT, IndexFile, IndexedPack, REPOSITORY_FORMAT, Repository,
    SNAPSHOT_CONTEXT, SnapshotFile, join_error, pack_key, snapshot_key,
};
use crate::crypto::{Id, IdSet, content_name, hex};
use crate::error::{Error, Result};
use crate::pack::{PackBuilder, SealedBlob, seal_blob};

/// A chunk that went through hashing, and sealing if it was new: the
/// `index`th of its stream. Chunks are processed in batches.
struct Processed {
    index: usize,
    id: Id,
    blob: Option<SealedBlob>,
}

/// Collects sealed blobs into packs and uploads full packs in the background.
struct Packer {
    repo: Repository,
    current: PackBuilder,
    buffers: Buffers,
    /// Blobs already packed by this writer.
    packed: IdSet,
    uploads: VecDeque<JoinHandle<Result<IndexedPack>>>,
    done: Vec<IndexedPack>,
}

/// Room for a full pack and its header, so a pack's buffer is allocated once
/// rather than grown by doubling (a pack is stored before a blob would take
/// it past `pack_size`).
fn pack_capacity(repo: &Repository) -> usize {
    repo.inner.config.pack_size as usize + 64 * 1024
}

/// Buffers of packs already stored, for the next packs: a backup allocates
/// its few pack buffers once instead of fresh memory for every pack.
#[derive(Clone, Default)]
struct Buffers(Arc<Mutex<Vec<BytesMut>>>);

impl Buffers {
    /// Packs filling and uploading at once: one filling, two uploading.
    const KEPT: usize = 3;

    fn take(&self, capacity: usize) -> BytesMut {
        let reused = self.0.lock().ok().and_then(|mut free| free.pop());
        match reused {
            Some(buffer) if buffer.capacity() >= capacity => buffer,
            _ => crate::pack::pack_buffer(capacity),
        }
    }

    /// Keeps a stored pack's buffer if nothing else still refers to it.
    fn give(&self, stored: Bytes) {
        if let Ok(buffer) = stored.try_into_mut()
            && let Ok(mut free) = self.0.lock()
            && free.len() < Self::KEPT
        {
            free.push(buffer);
        }
    }
}

impl Drop for Packer {
    /// An abandoned backup stops uploading.
    fn drop(&mut self) {
        for upload in &self.uploads {
            upload.abort();
        }
    }
}

impl Packer {
    fn new(repo: Repository) -> Self {
        let buffers = Buffers::default();
        Self {
            current: PackBuilder::in_buffer(buffers.take(pack_capacity(&repo))),
            buffers,
            repo,
            packed: IdSet::default(),
            uploads: VecDeque::new(),
            done: Vec::new(),
        }
    }

    async fn add(&mut self, blob: SealedBlob) -> Result<()> {
        if !self.packed.insert(blob.id) || self.repo.knows(&blob.id) {
            return Ok(());
        }
        if self.current.len() + blob.data.len() > self.repo.inner.config.pack_size as usize {
            self.flush().await?;
        }
        self.current.add(&blob)
    }

    /// Starts uploading the current pack; waits while too many uploads are in flight.
    async fn flush(&mut self) -> Result<()> {
        if self.current.is_empty() {
            return Ok(());
        }
        let fresh = PackBuilder::in_buffer(self.buffers.take(pack_capacity(&self.repo)));
        let builder = std::mem::replace(&mut self.current, fresh);
        let repo = self.repo.clone();
        let buffers = self.buffers.clone();
        self.uploads.push_back(tokio::spawn(async move {
            let crypter = repo.inner.crypter.clone();
            let (bytes, blobs) = tokio::task::spawn_blocking(move || {
                let (bytes, blobs) = builder.finish(&crypter)?;
                Ok::<_, Error>((bytes, blobs))
            })
            .await
            .map_err(join_error)??;
            let id = content_name(&bytes);
            match repo
                .inner
                .backend
                .put(&pack_key(&id), bytes.clone(), repo.put_options()?)
                .await
            {
                // Named by its content: an existing pack of that name is this pack.
                Ok(()) | Err(Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
            buffers.give(bytes);
            Ok(IndexedPack { id, blobs })
        }));
        // Two packs uploading and one filling bound the memory packs take.
        while self.uploads.len() > 1 {
            self.finish_one().await?;
        }
        Ok(())
    }

    async fn finish_one(&mut self) -> Result<()> {
        if let Some(upload) = self.uploads.pop_front() {
            let pack = upload.await.map_err(join_error)??;
            self.done.push(pack);
        }
        Ok(())
    }

    /// Uploads what is left and returns every pack this writer stored.
    async fn finish(mut self) -> Result<Vec<IndexedPack>> {
        self.flush().await?;
        while !self.uploads.is_empty() {
            self.finish_one().await?;
        }
        Ok(std::mem::take(&mut self.done))
    }
}

/// The buffers a stream is read into. Chunks are slices of them that live
/// on while they are hashed and sealed; when the current buffer runs out of
/// room, its unread tail moves on to a buffer all of whose chunks are done,
/// so a backup reuses a few buffers rather than touching fresh memory for
/// every few chunks.
struct ReadBuffers {
    size: usize,
    retired: VecDeque<BytesMut>,
}

impl ReadBuffers {
    /// Buffers kept for reuse; older ones are left to their last chunk.
    const KEPT: usize = 4;

    fn new(size: usize) -> Self {
        Self {
            size,
            retired: VecDeque::new(),
        }
    }

    /// An empty buffer of `size` bytes: a retired one whose chunks are all
    /// gone, or a new one.
    fn take(&mut self) -> BytesMut {
        let size = self.size;
        self.retired
            .iter_mut()
            .position(|buffer| buffer.try_reclaim(size))
            .and_then(|i| self.retired.remove(i))
            .unwrap_or_else(|| BytesMut::with_capacity(size))
    }

    /// Moves what `buf` holds to the start of another buffer and retires `buf`.
    fn move_to_next(&mut self, buf: &mut BytesMut) {
        let mut next = self.take();
        next.extend_from_slice(buf);
        let mut old = std::mem::replace(buf, next);
        old.clear();
        self.retired.push_back(old);
        if self.retired.len() > Self::KEPT {
            self.retired.pop_front();
        }
    }
}

/// A snapshot being written to a [`Repository`].
pub struct RepositoryWriter {
    repo: Repository,
    id: SnapshotId,
    component: ComponentId,
    started_at: Timestamp,
    streams: Vec<StreamEntry>,
    chunks: BTreeMap<StreamName, Vec<String>>,
    /// Shared by the streams stored at once (`add_streams`).
    packer: tokio::sync::Mutex<Packer>,
    lock: Lock,
}

impl std::fmt::Debug for RepositoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryWriter")
            .field("id", &self.id)
            .field("component", &self.component)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

/// The smallest chunk of records cut at a record start
/// ([`SnapshotWriter::add_stream_hinted`]). On the Redis benchmark's data
/// set (a 1.2 GB RDB of 1M keys of 64 B to 16 KiB, 5% of them rewritten),
/// chunks of at least 1 KiB (4 KiB on average) made a second snapshot
/// store 0.22 of the second RDB's bytes (packs, index and snapshot file
/// counted); the first snapshot stored 4% more than its RDB, in chunk ids,
/// index entries and each blob's seal. A simulation of the same key sizes
/// put larger minimums higher (2 KiB: 0.26, 4 KiB: 0.34 before those
/// costs): each chunk holds more keys, and one changed key stores them all
/// again.
const RECORDS_MIN: u64 = 1024;

/// Where chunks end: FastCDC with the repository's parameters and seed, a
/// tar stream's member boundaries for as long as it is tar (see
/// `tar_cuts`), or the record starts a producer published (see
/// `record_cuts`).
#[derive(Debug, Clone)]
struct Cutter {
    chunker: ChunkerParams,
    seed: u64,
    tar: Option<TarCuts>,
    records: Option<RecordCuts>,
}

impl Cutter {
    fn new(chunker: ChunkerParams, seed: u64, layout: StreamLayout) -> Self {
        let tar = (layout == StreamLayout::Tar)
            .then(|| TarCuts::new(u64::from(chunker.min), u64::from(chunker.avg)));
        Self {
            chunker,
            seed,
            tar,
            records: None,
        }
    }

    /// A cutter at record starts, which [`Cutter::add_records`] gives it;
    /// records larger than the average chunk are cut every average chunk.
    fn records(chunker: ChunkerParams, seed: u64) -> Self {
        Self {
            records: Some(RecordCuts::new(RECORDS_MIN, u64::from(chunker.avg))),
            ..Self::new(chunker, seed, StreamLayout::Opaque)
        }
    }

    /// Takes every record start `hints` holds below `end`, where the bytes
    /// read so far end.
    fn add_records(&mut self, hints: &CutHints, end: u64) {
        if let Some(records) = &mut self.records {
            let mut starts = Vec::new();
            hints.take_below(end, &mut starts);
            records.add(starts);
        }
    }

    /// Where FastCDC ends the next chunk of `buf`. Less than `buf.len()`, or
    /// `max`, is a final cut; `buf.len()` below `max` means no cut was found yet.
    fn content_cut(&self, buf: &[u8]) -> usize {
        let c = self.chunker;
        if buf.len() <= c.min as usize {
            return buf.len();
        }
        fastcdc::v2020::FastCDC::with_level_and_seed(
            buf,
            c.min as usize,
            c.avg as usize,
            c.max as usize,
            fastcdc::v2020::Normalization::Level1,
            self.seed,
        )
        .next()
        .map_or(buf.len(), |chunk| chunk.length)
    }

    /// The lengths of the chunks `buf`, the stream's bytes from offset
    /// `base`, holds, in order. Every cut is final (decided from the bytes
    /// up to it); the tail after the last one waits for more bytes, unless
    /// `last`.
    fn cut_all(&mut self, buf: &[u8], base: u64, last: bool) -> Vec<usize> {
        let max = u64::from(self.chunker.max);
        let end = base + buf.len() as u64;
        let mut lengths = Vec::new();
        let mut start = base;
        while start < end {
            if let Some(records) = &mut self.records {
                let cut = records
                    .next_cut(start, end)
                    .map(|at| at.min(start + max))
                    .or_else(|| (end - start >= max).then_some(start + max));
                let Some(at) = cut else { break };
                lengths.push((at - start) as usize);
                start = at;
                continue;
            }
            let next = match &mut self.tar {
                Some(tar) => tar.next_cut(buf, base, start),
                None => Next::Opaque,
            };
            let cut = match next {
                Next::Cut(at) => Some(at.min(start + max)),
                Next::More => (end - start >= max).then_some(start + max),
                Next::Opaque => {
                    self.tar = None;
                    let rest = &buf[(start - base) as usize..];
                    let len = self.content_cut(rest);
                    (len < rest.len() || len as u64 >= max).then_some(start + len as u64)
                }
            };
            let Some(at) = cut else { break };
            lengths.push((at - start) as usize);
            start = at;
        }
        if last && start < end {
            lengths.push((end - start) as usize);
        }
        lengths
    }
}

/// How much of a stream is read while the bytes before it are cut.
const READ_ROUND: usize = 4 << 20;

/// How many bytes of small chunks go to a blocking thread at once (a chunk
/// as large goes alone).
const BATCH: usize = 1 << 20;

#[async_trait]
impl SnapshotWriter for RepositoryWriter {
    fn id(&self) -> SnapshotId {
        self.id
    }

    async fn add_stream(
        &mut self,
        name: &StreamName,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> dr_core::Result<StreamEntry> {
        self.add_stream_with(name, data, StreamLayout::Opaque).await
    }

    async fn add_stream_with(
        &mut self,
        name: &StreamName,
        data: &mut (dyn AsyncRead + Send + Unpin),
        layout: StreamLayout,
    ) -> dr_core::Result<StreamEntry> {
        self.check_new(std::slice::from_ref(name))?;
        let cutter = Cutter::new(
            self.repo.inner.config.chunker,
            self.repo.inner.crypter.chunker_seed(),
            layout,
        );
        let (entry, ids) = self.store_stream(name, data, cutter, None).await?;
        self.chunks.insert(name.clone(), ids);
        self.streams.push(entry.clone());
        Ok(entry)
    }

    async fn add_stream_hinted(
        &mut self,
        name: &StreamName,
        data: &mut (dyn AsyncRead + Send + Unpin),
        hints: CutHints,
    ) -> dr_core::Result<StreamEntry> {
        self.check_new(std::slice::from_ref(name))?;
        let cutter = Cutter::records(
            self.repo.inner.config.chunker,
            self.repo.inner.crypter.chunker_seed(),
        );
        let (entry, ids) = self.store_stream(name, data, cutter, Some(&hints)).await?;
        self.chunks.insert(name.clone(), ids);
        self.streams.push(entry.clone());
        Ok(entry)
    }

    async fn add_streams(
        &mut self,
        streams: Vec<(StreamName, &mut (dyn AsyncRead + Send + Unpin))>,
    ) -> dr_core::Result<Vec<StreamEntry>> {
        self.add_streams_hinted(
            streams
                .into_iter()
                .map(|(name, data)| (name, data, None))
                .collect(),
        )
        .await
    }

    async fn add_streams_hinted(
        &mut self,
        streams: Vec<(
            StreamName,
            &mut (dyn AsyncRead + Send + Unpin),
            Option<CutHints>,
        )>,
    ) -> dr_core::Result<Vec<StreamEntry>> {
        let names: Vec<StreamName> = streams.iter().map(|(name, _, _)| name.clone()).collect();
        self.check_new(&names)?;
        let this = &*self;
        let stored = futures_util::future::try_join_all(streams.into_iter().map(
            |(name, data, hints)| async move {
                let (chunker, seed) = (
                    this.repo.inner.config.chunker,
                    this.repo.inner.crypter.chunker_seed(),
                );
                let cutter = match hints {
                    Some(_) => Cutter::records(chunker, seed),
                    None => Cutter::new(chunker, seed, StreamLayout::Opaque),
                };
                this.store_stream(&name, data, cutter, hints.as_ref()).await
            },
        ))
        .await?;
        let mut entries = Vec::with_capacity(stored.len());
        for (entry, ids) in stored {
            self.chunks.insert(entry.name.clone(), ids);
            self.streams.push(entry.clone());
            entries.push(entry);
        }
        Ok(entries)
    }

    async fn commit(self: Box<Self>, commit: SnapshotCommit) -> dr_core::Result<Manifest> {
        let this = *self;
        let repo = this.repo.clone();
        let packs = this.packer.into_inner().finish().await?;
        // Everything below refers to packs a prune must not have taken for
        // abandoned: only index them under a lock that is still ours.
        this.lock.confirm().await?;
        if let Some(base) = commit.depends_on {
            // Forget refuses to delete a snapshot others depend on, and it
            // cannot run while this writer holds its lock: checked once is enough.
            match repo.snapshot_file(&base).await {
                Ok(_) => {}
                Err(Error::NotFound { .. }) => {
                    return Err(dr_core::Error::not_found(format!(
                        "snapshot {base}, which snapshot {} is stored against",
                        this.id
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            id: this.id,
            component: this.component,
            started_at: this.started_at,
            committed_at: Timestamp::now(),
            recovery_point: commit.recovery_point,
            streams: this.streams,
            labels: commit.labels,
            metadata: commit.metadata,
            depends_on: commit.depends_on,
        };
        let file = SnapshotFile {
            manifest,
            chunks: this.chunks,
        };
        // The index of the new packs and the snapshot file, encoded on two
        // threads at once: for a large snapshot (hundreds of thousands of
        // chunks) each is a fraction of a second of JSON, zstd and sealing.
        let index = (!packs.is_empty()).then(|| IndexFile {
            format: REPOSITORY_FORMAT,
            packs: packs.clone(),
        });
        let index_repo = repo.clone();
        let encode_index = tokio::task::spawn_blocking(move || {
            index
                .map(|index| index_repo.encode(&index, INDEX_CONTEXT))
                .transpose()
        });
        let file_repo = repo.clone();
        let encode_file = tokio::task::spawn_blocking(move || {
            let bytes = file_repo.encode(&file, SNAPSHOT_CONTEXT);
            bytes.map(|bytes| (file, bytes))
        });
        let (index_bytes, file_bytes) = tokio::join!(encode_index, encode_file);
        let index_bytes = index_bytes.map_err(join_error)??;
        let (file, bytes) = file_bytes.map_err(join_error)??;
        let mut index_key = None;
        if let Some(bytes) = index_bytes {
            let key = format!("index/{}", content_name(&bytes));
            repo.inner
                .backend
                .put(&key, bytes.into(), repo.put_options()?)
                .await?;
            index_key = Some(key);
        }
        // Once more, right before the commit point: a lock removed while the
        // index was written means a prune may be deleting these packs.
        if let Err(lost) = this.lock.confirm().await {
            if let Some(key) = &index_key {
                // So that no later backup takes its blobs for stored; a
                // prune would drop it too.
                repo.inner.backend.delete(key).await.ok();
            }
            return Err(lost.into());
        }
        // The commit point: from here on the snapshot exists.
        repo.inner
            .backend
            .put(
                &snapshot_key(&file.manifest.id),
                bytes.into(),
                repo.put_options()?,
            )
            .await?;
        if let Some(key) = index_key {
            repo.add_to_index(key, &packs);
        }
        this.lock.release().await?;
        tracing::info!(
            store = %repo.inner.backend.location(),
            component = %file.manifest.component,
            snapshot = %file.manifest.id,
            streams = file.manifest.streams.len(),
            bytes = file.manifest.total_size(),
            packs = packs.len(),
            "snapshot committed"
        );
        Ok(file.manifest)
    }

    async fn abort(self: Box<Self>) -> dr_core::Result<()> {
        // Packs already uploaded stay unreferenced until a prune; nothing is
        // visible. Dropping the packer stops the uploads in flight.
        let this = *self;
        drop(this.packer);
        this.lock.release().await?;
        tracing::info!(
            component = %this.component,
            snapshot = %this.id,
            "snapshot aborted; nothing is visible"
        );
        Ok(())
    }
}

impl RepositoryWriter {
    /// Fails if a stream of `names` is in the snapshot already, or named twice.
    fn check_new(&self, names: &[StreamName]) -> dr_core::Result<()> {
        for (i, name) in names.iter().enumerate() {
            if self.chunks.contains_key(name) || names[..i].contains(name) {
                return Err(dr_core::Error::invalid(
                    format!("stream {name}"),
                    "already added to this snapshot",
                ));
            }
        }
        Ok(())
    }

    /// Reads `data` to its end and stores it, cut by `cutter` (with the
    /// record starts `hints` holds, if it cuts at records): its entry and its
    /// chunks' ids. Several run at once on one writer, sharing its packer.
    async fn store_stream(
        &self,
        name: &StreamName,
        data: &mut (dyn AsyncRead + Send + Unpin),
        mut cutter: Cutter,
        hints: Option<&CutHints>,
    ) -> dr_core::Result<(StreamEntry, Vec<String>)> {
        let max = self.repo.inner.config.chunker.max as usize;
        let level = self.repo.inner.config.compression_level;
        let mut buffers = ReadBuffers::new(2 * max);
        let mut buf = buffers.take();
        let mut eof = false;
        // The whole stream's SHA-256, on a thread of its own, in order: the
        // reading loop only reads and cuts.
        let (hash_tx, mut hash_rx) = mpsc::channel::<Bytes>(8);
        let hasher = tokio::task::spawn_blocking(move || {
            let mut hash = Sha256::new();
            while let Some(chunk) = hash_rx.blocking_recv() {
                hash.update(&chunk);
            }
            hash.finalize()
        });
        let mut size = 0u64;
        // Chunks are hashed and sealed in parallel and packed as each is done,
        // in any order: a slow chunk (a large one, compressing) does not
        // hold up the others. Only its id waits for its place.
        let mut ids: Vec<Id> = Vec::new();
        let mut in_flight: JoinSet<Result<Vec<Processed>>> = JoinSet::new();
        loop {
            // What is buffered is cut on a blocking thread while the next
            // bytes are read into the same buffer, right behind it: the tail
            // left without a cut then joins them without a copy. Only when
            // the buffer runs out of room does the tail move (a copy of
            // less than one chunk).
            if buf.capacity() - buf.len() < READ_ROUND {
                buffers.move_to_next(&mut buf);
            }
            let filled = buf.split();
            let last = eof;
            // Where `filled` starts in the stream: what was cut off before it.
            let base = size;
            if let Some(hints) = hints {
                // Published before the bytes were written: all of those
                // below what was read are there.
                cutter.add_records(hints, base + filled.len() as u64);
            }
            let mut round = cutter.clone();
            let cut = async move {
                if filled.is_empty() {
                    return Ok((filled, Vec::new(), round));
                }
                tokio::task::spawn_blocking(move || {
                    let lengths = round.cut_all(&filled, base, last);
                    (filled, lengths, round)
                })
                .await
            };
            let read = async {
                let mut read = 0;
                while !eof && read < READ_ROUND {
                    let n = data.read_buf(&mut buf).await?;
                    eof = n == 0;
                    read += n;
                }
                std::io::Result::Ok(())
            };
            let (cut, read) = tokio::join!(cut, read);
            let (mut filled, lengths, round) = cut.map_err(join_error)?;
            cutter = round;
            read.map_err(|e| dr_core::Error::io(format!("reading stream {name}"), e))?;
            let mut lengths = lengths.into_iter().peekable();
            while lengths.peek().is_some() {
                // Chunks go to a thread together, up to `BATCH` bytes: one
                // hand-off per small chunk cost more than the chunk.
                let mut batch = Vec::new();
                let mut total = 0;
                while let Some(&len) = lengths.peek()
                    && (batch.is_empty() || total + len <= BATCH)
                {
                    batch.push(len);
                    total += len;
                    lengths.next();
                }
                let region = filled.split_to(total).freeze();
                size += total as u64;
                hash_tx.send(region.clone()).await.map_err(|_| {
                    Error::io("hashing", std::io::Error::other("the hasher stopped"))
                })?;
                let repo = self.repo.clone();
                let first = ids.len();
                ids.resize(first + batch.len(), Id::default());
                in_flight.spawn_blocking(move || {
                    let mut processed = Vec::with_capacity(batch.len());
                    let mut at = 0;
                    for (i, len) in batch.into_iter().enumerate() {
                        let chunk = &region[at..at + len];
                        at += len;
                        let id = repo.inner.crypter.id(chunk);
                        let blob = if repo.knows(&id) {
                            None
                        } else {
                            Some(seal_blob(&repo.inner.crypter, id, chunk, level)?)
                        };
                        processed.push(Processed {
                            index: first + i,
                            id,
                            blob,
                        });
                    }
                    Ok(processed)
                });
                while in_flight.len() >= 2 * self.repo.inner.concurrency {
                    self.take_processed(&mut in_flight, &mut ids).await?;
                }
            }
            // The tail, then what was read behind it.
            filled.unsplit(std::mem::take(&mut buf));
            buf = filled;
            if last && buf.is_empty() {
                break;
            }
        }
        while !in_flight.is_empty() {
            self.take_processed(&mut in_flight, &mut ids).await?;
        }
        let ids: Vec<String> = ids.iter().map(|id| hex(id)).collect();
        drop(hash_tx);
        let digest = hasher.await.map_err(join_error)?;
        let entry = StreamEntry {
            name: name.clone(),
            size,
            sha256: Sha256Digest::from_bytes(digest.into()),
        };
        tracing::debug!(
            snapshot = %self.id,
            stream = %name,
            bytes = size,
            chunks = ids.len(),
            "stream stored"
        );
        Ok((entry, ids))
    }

    /// Packs whichever batch of chunks is done first and records their ids
    /// in their places.
    async fn take_processed(
        &self,
        in_flight: &mut JoinSet<Result<Vec<Processed>>>,
        ids: &mut [Id],
    ) -> Result<()> {
        let Some(job) = in_flight.join_next().await else {
            return Ok(());
        };
        let batch = job.map_err(join_error)??;
        let mut packer = self.packer.lock().await;
        for processed in batch {
            ids[processed.index] = processed.id;
            if let Some(blob) = processed.blob {
                packer.add(blob).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SnapshotSink for Repository {
    async fn begin(
        &self,
        component: &ComponentId,
        started_at: Timestamp,
    ) -> dr_core::Result<Box<dyn SnapshotWriter>> {
        // No prune may run while the snapshot refers to stored blobs.
        let lock = self.lock(false, self.lock_wait).await?;
        // Pick up what other writers stored, so it is not stored again.
        self.load_index().await?;
        Ok(Box::new(RepositoryWriter {
            repo: self.clone(),
            id: SnapshotId::new(started_at)?,
            component: component.clone(),
            started_at,
            streams: Vec::new(),
            chunks: BTreeMap::new(),
            packer: tokio::sync::Mutex::new(Packer::new(self.clone())),
            lock,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tar_cuts::test_tar::tar;
    use super::*;
    use crate::backend::MemoryBackend;
    use crate::crypto::parse_hex_id;
    use crate::repository::InitOptions;
    use dr_core::{CutHints, RecoveryPoint};

    /// Chunks of 4 KiB to 64 KiB, 16 KiB on average, for streams of a few MiB.
    const SMALL_CHUNKS: ChunkerParams = ChunkerParams {
        min: 4096,
        avg: 16 * 1024,
        max: 64 * 1024,
    };

    async fn small_chunk_repository() -> Repository {
        Repository::init(
            Arc::new(MemoryBackend::new()),
            InitOptions::unencrypted().chunker(SMALL_CHUNKS),
        )
        .await
        .unwrap()
    }

    /// Commits `writer`; the ids and lengths of stream `name`'s chunks.
    async fn commit_and_list(
        repo: &Repository,
        writer: Box<dyn SnapshotWriter>,
        name: &StreamName,
    ) -> (Vec<String>, Vec<usize>) {
        let manifest = writer
            .commit(SnapshotCommit::new(RecoveryPoint::new(Timestamp::now())))
            .await
            .unwrap();
        let file = repo.snapshot_file(&manifest.id).await.unwrap();
        let index = repo.inner.index.read().unwrap();
        let ids = file.chunks[name].clone();
        let lengths = ids
            .iter()
            .map(|id| index.blobs[&parse_hex_id(id).unwrap()].entry.raw_length as usize)
            .collect();
        (ids, lengths)
    }

    /// Records of 50 B to 20 KiB, each's bytes a function of its number and
    /// `version`; and where each starts.
    fn records(count: usize, rewritten: Option<usize>) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for i in 0..count {
            let version = usize::from(rewritten == Some(i));
            let size = 50 + (i * 7919 + version * 3001) % 20_000;
            starts.push(bytes.len() as u64);
            bytes.extend((0..size).map(|j| (j * 31 + i * 17 + version * 5) as u8));
        }
        (bytes, starts)
    }

    #[tokio::test]
    async fn records_are_cut_at_their_starts_and_a_rewritten_one_changes_its_chunks_only() {
        let repo = small_chunk_repository().await;
        let component: ComponentId = "redis/main".parse().unwrap();
        let name: StreamName = "rdb".parse().unwrap();
        let mut chunk_ids = Vec::new();
        // Over 4 MiB, so that it is read and cut in several rounds.
        for rewritten in [None, Some(300)] {
            let (bytes, starts) = records(600, rewritten);
            let (publisher, hints) = CutHints::pair();
            // Published before any byte is written: the simplest producer.
            publisher.publish(starts.iter().copied());
            let mut writer = repo.begin(&component, Timestamp::now()).await.unwrap();
            writer
                .add_stream_hinted(&name, &mut &bytes[..], hints)
                .await
                .unwrap();
            let (ids, lengths) = commit_and_list(&repo, writer, &name).await;
            // As one pass over the whole stream would cut it.
            let mut one_pass = Cutter::records(SMALL_CHUNKS, repo.inner.crypter.chunker_seed());
            one_pass
                .records
                .as_mut()
                .unwrap()
                .add(starts.iter().copied());
            assert_eq!(lengths, one_pass.cut_all(&bytes, 0, true));
            // Every cut is at a record start or inside a record over 16 KiB.
            let mut at = 0;
            for len in &lengths[..lengths.len() - 1] {
                at += *len as u64;
                let record = starts.partition_point(|&s| s <= at) - 1;
                assert!(starts[record] == at || at - starts[record] >= 16 * 1024);
            }
            chunk_ids.push(ids);
        }
        let (first, second) = (&chunk_ids[0], &chunk_ids[1]);
        let new = second.iter().filter(|id| !first.contains(id)).count();
        assert!(
            (1..=3).contains(&new),
            "{new} new chunks of {}",
            second.len()
        );
    }

    #[tokio::test]
    async fn tar_streams_are_cut_as_one_pass_over_them_would() {
        let repo = small_chunk_repository().await;
        // Over 4 MiB, so that it is read and cut in several rounds.
        let sizes = [100, 3_000_000, 700, 3000, 90, 2_500_001, 4096, 10];
        let (bytes, starts) = tar(&sizes);
        let component: ComponentId = "postgres/main".parse().unwrap();
        let mut writer = repo.begin(&component, Timestamp::now()).await.unwrap();
        let name: StreamName = "base.tar".parse().unwrap();
        writer
            .add_stream_with(&name, &mut &bytes[..], StreamLayout::Tar)
            .await
            .unwrap();
        let (_, lengths) = commit_and_list(&repo, writer, &name).await;
        let mut one_pass = Cutter::new(
            SMALL_CHUNKS,
            repo.inner.crypter.chunker_seed(),
            StreamLayout::Tar,
        );
        assert_eq!(lengths, one_pass.cut_all(&bytes, 0, true));
        let mut at = 0;
        let cuts: Vec<u64> = lengths
            .iter()
            .map(|len| {
                at += *len as u64;
                at
            })
            .collect();
        for big in [1, 5] {
            assert!(cuts.contains(&starts[big]), "no cut before member {big}");
        }
    }
}
