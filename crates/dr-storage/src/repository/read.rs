//! Reading snapshots back: runs of blobs that lie together in a pack fetched
//! with one read each, a few at a time, opened on blocking
//! threads, and the whole stream checked against its manifest entry (its
//! SHA-256 left out where the caller checks the content itself).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use dr_core::{
    ByteStream, ComponentId, Manifest, Sha256Digest, SnapshotId, SnapshotSource, StreamCheck,
    StreamEntry, StreamName,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Location, Repository, join_error, pack_key, snapshot_key};
use crate::crypto::parse_hex_id;
use crate::error::{Error, Result};
use crate::pack::{BlobCheck, open_blob_in_place};

#[async_trait]
impl SnapshotSource for Repository {
    async fn snapshots(&self, component: &ComponentId) -> dr_core::Result<Vec<Manifest>> {
        let mut all = self.all_snapshots().await?;
        all.retain(|m| &m.component == component);
        Ok(all)
    }

    async fn manifest(&self, id: &SnapshotId) -> dr_core::Result<Manifest> {
        match self.snapshot_file(id).await {
            Ok(file) => Ok(file.manifest),
            Err(Error::NotFound { .. }) => Err(dr_core::Error::not_found(format!("snapshot {id}"))),
            Err(e) => Err(e.into()),
        }
    }

    async fn open_stream_with(
        &self,
        id: &SnapshotId,
        name: &StreamName,
        check: StreamCheck,
    ) -> dr_core::Result<ByteStream> {
        let mut file = match self.snapshot_file(id).await {
            Ok(file) => file,
            Err(Error::NotFound { .. }) => {
                return Err(dr_core::Error::not_found(format!("snapshot {id}")));
            }
            Err(e) => return Err(e.into()),
        };
        // Pick up index files written since the last load (cheap when none were).
        self.load_index().await?;
        let entry =
            file.manifest.stream(name).cloned().ok_or_else(|| {
                dr_core::Error::not_found(format!("stream {name} of snapshot {id}"))
            })?;
        let chunk_ids = file.chunks.remove(name).unwrap_or_default();
        let mut locations = Vec::with_capacity(chunk_ids.len());
        for text in chunk_ids {
            let chunk = parse_hex_id(&text).ok_or_else(|| {
                Error::corrupt(snapshot_key(id), format!("bad chunk id {text:?}"))
            })?;
            let location = self.lookup(&chunk).ok_or_else(|| {
                Error::corrupt(
                    format!("stream {name} of snapshot {id}"),
                    format!("chunk {text} is in no index"),
                )
            })?;
            locations.push(location);
        }
        let (tx, rx) = mpsc::channel(4);
        let repo = self.clone();
        let what = format!("stream {name} of snapshot {id}");
        tokio::spawn(async move { repo.produce(locations, entry, check, what, tx).await });
        Ok(Box::new(VerifiedStream::new(rx)))
    }
}

impl Repository {
    /// Reads blobs in order, a few in parallel, into `tx`, and ends with
    /// `None` only if the stream's length matches `expected`, and with
    /// [`StreamCheck::Digest`] its SHA-256 too, computed on a thread of its
    /// own beside the reading.
    async fn produce(
        self,
        locations: Vec<Location>,
        expected: StreamEntry,
        check: StreamCheck,
        what: String,
        tx: mpsc::Sender<io::Result<Option<Vec<Bytes>>>>,
    ) {
        let (hash_tx, mut hash_rx) = mpsc::channel::<Vec<Bytes>>(8);
        let hasher = (check == StreamCheck::Digest).then(|| {
            tokio::task::spawn_blocking(move || {
                let mut hash = Sha256::new();
                while let Some(pieces) = hash_rx.blocking_recv() {
                    for piece in pieces {
                        hash.update(&piece);
                    }
                }
                hash.finalize()
            })
        });
        let mut in_flight: VecDeque<JoinHandle<Result<Vec<Bytes>>>> = VecDeque::new();
        let mut pending = runs(locations).into_iter();
        let mut seen = 0u64;
        let outcome = loop {
            while in_flight.len() < 2 * self.inner.concurrency {
                let Some(run) = pending.next() else {
                    break;
                };
                let repo = self.clone();
                in_flight.push_back(tokio::spawn(async move { repo.read_run(run).await }));
            }
            let Some(next) = in_flight.pop_front() else {
                break Ok(());
            };
            let pieces = match next.await.map_err(join_error).and_then(|r| r) {
                Ok(pieces) => pieces,
                Err(e) => break Err(blob_failure(&what, e)),
            };
            seen += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
            if seen > expected.size {
                break Err(corrupt_io(&what, "longer than its manifest says"));
            }
            if hasher.is_some() && hash_tx.send(pieces.clone()).await.is_err() {
                break Err(io::Error::other("the stream's hasher stopped"));
            }
            if tx.send(Ok(Some(pieces))).await.is_err() {
                // The reader is gone: nobody to tell.
                break Ok(());
            }
        };
        for job in in_flight {
            job.abort();
        }
        drop(hash_tx);
        let verdict = match outcome {
            Err(e) => Err(e),
            Ok(()) if seen != expected.size => {
                Err(corrupt_io(&what, "shorter than its manifest says"))
            }
            Ok(()) => match hasher {
                None => Ok(None),
                Some(hasher) => match hasher.await {
                    Ok(digest) if Sha256Digest::from_bytes(digest.into()) == expected.sha256 => {
                        Ok(None)
                    }
                    Ok(_) => Err(corrupt_io(&what, "SHA-256 differs from its manifest")),
                    Err(e) => Err(dr_core::Error::from(join_error(e)).into_io()),
                },
            },
        };
        tx.send(verdict).await.ok();
    }

    /// Reads a run of blobs (see [`runs`]) with one ranged read of their
    /// pack, and opens each, in order, on one blocking thread, where it
    /// lies in the buffer read: a stream of small chunks reaches its reader
    /// a run at a time, its blobs' plaintexts slices of one buffer.
    async fn read_run(&self, run: Vec<Location>) -> Result<Vec<Bytes>> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(Vec::new());
        };
        let start = first.entry.offset;
        let end = last.entry.offset + u64::from(last.entry.length);
        let pack = first.pack.clone();
        let sealed = self
            .inner
            .backend
            .get(&pack_key(&pack), Some(start..end))
            .await?;
        if sealed.len() as u64 != end - start {
            return Err(Error::corrupt(
                format!("pack {pack}"),
                "truncated: a blob extends past its end",
            ));
        }
        let crypter = self.inner.crypter.clone();
        tokio::task::spawn_blocking(move || {
            // The read's own buffer (copied only if shared), split blob by blob.
            let mut rest = bytes::BytesMut::from(sealed);
            let mut pieces = Vec::with_capacity(run.len());
            let mut at = start;
            for location in &run {
                let _ = rest.split_to((location.entry.offset - at) as usize);
                let mut blob = rest.split_to(location.entry.length as usize);
                at = location.entry.offset + u64::from(location.entry.length);
                pieces.push(open_blob_in_place(
                    &crypter,
                    &location.entry,
                    &mut blob,
                    &pack,
                    BlobCheck::Authenticity,
                )?);
            }
            Ok(pieces)
        })
        .await
        .map_err(join_error)?
    }
}

/// The most bytes, and blobs, one read of a pack fetches.
const RUN_BYTES: u64 = 4 << 20;
const RUN_BLOBS: usize = 1024;

/// `locations` gathered into runs: blobs that lie one after another in the
/// same pack, read together (a stream cut into many small chunks, such as
/// an RDB cut at its keys, is stored in order: one read per run instead of
/// one per chunk).
fn runs(locations: Vec<Location>) -> Vec<Vec<Location>> {
    let mut runs: Vec<Vec<Location>> = Vec::new();
    for location in locations {
        let joins = runs.last().is_some_and(|run| {
            let (Some(first), Some(last)) = (run.first(), run.last()) else {
                return false;
            };
            run.len() < RUN_BLOBS
                && last.pack == location.pack
                && last.entry.offset + u64::from(last.entry.length) == location.entry.offset
                && location.entry.offset + u64::from(location.entry.length) - first.entry.offset
                    <= RUN_BYTES
        });
        match runs.last_mut() {
            Some(run) if joins => run.push(location),
            _ => runs.push(vec![location]),
        }
    }
    runs
}

/// A stream from its producer task, which checks its length and SHA-256
/// against the manifest before it sends the end: a damaged stream ends in an
/// `InvalidData` error, never in silently wrong bytes, and a producer that
/// stops without a verdict is an error too.
struct VerifiedStream {
    rx: mpsc::Receiver<io::Result<Option<Vec<Bytes>>>>,
    current: VecDeque<Bytes>,
    finished: bool,
}

impl VerifiedStream {
    fn new(rx: mpsc::Receiver<io::Result<Option<Vec<Bytes>>>>) -> Self {
        Self {
            rx,
            current: VecDeque::new(),
            finished: false,
        }
    }
}

impl AsyncRead for VerifiedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.current.is_empty() {
                // As much as fits, from as many pieces as it takes.
                while out.remaining() > 0
                    && let Some(front) = self.current.front_mut()
                {
                    let n = front.len().min(out.remaining());
                    out.put_slice(&front[..n]);
                    if n == front.len() {
                        self.current.pop_front();
                    } else {
                        let _ = front.split_to(n);
                    }
                }
                return Poll::Ready(Ok(()));
            }
            if self.finished {
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(Some(pieces)))) => {
                    self.current = pieces.into_iter().filter(|p| !p.is_empty()).collect();
                }
                Poll::Ready(Some(Ok(None))) => self.finished = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => {
                    return Poll::Ready(Err(io::Error::other(
                        "the stream's reader stopped before its end was checked",
                    )));
                }
            }
        }
    }
}

/// What to do about damage met while reading a stream.
const DAMAGE_ADVICE: &str = "run verify to find every damaged object, and restore from an \
                             older snapshot that does not use it";

/// A piece of the stream that could not be read back. Damage (a blob that
/// fails its check, a pack missing or cut short) is `Corrupt`, naming the
/// damaged object and the stream, and saying what to do; a failing store
/// stays what it is. Either travels inside the `io::Error` as a
/// `dr_core::Error`, which `dr_core::Error::io` takes out again.
fn blob_failure(what: &str, e: Error) -> io::Error {
    let damage = match &e {
        Error::Corrupt { object, reason } => Some((object.clone(), reason.clone())),
        Error::NotFound { key, .. } => Some((key.clone(), "missing from the store".to_owned())),
        _ => None,
    };
    match damage {
        Some((object, reason)) => dr_core::Error::corrupt(
            object,
            format!("{reason} (while reading {what}); {DAMAGE_ADVICE}"),
        )
        .into_io(),
        None => dr_core::Error::from(e).into_io(),
    }
}

fn corrupt_io(what: &str, reason: &str) -> io::Error {
    dr_core::Error::corrupt(what, format!("{reason}; {DAMAGE_ADVICE}")).into_io()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dr_core::{RecoveryPoint, SnapshotCommit, SnapshotSink};
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::{ChunkerParams, InitOptions, KdfParams, MemoryBackend, Secret};

    /// Reads `name` of the snapshot through its blobs at `order` (indices
    /// into its chunk list), the way `open_stream` does.
    async fn read_in_order(
        repo: &Repository,
        manifest: &Manifest,
        name: &StreamName,
        order: impl Fn(usize) -> Vec<usize>,
    ) -> io::Result<Vec<u8>> {
        let file = repo.snapshot_file(&manifest.id).await.unwrap();
        let chunks = &file.chunks[name];
        let locations = order(chunks.len())
            .into_iter()
            .map(|i| repo.lookup(&parse_hex_id(&chunks[i]).unwrap()).unwrap())
            .collect();
        let entry = manifest.stream(name).unwrap().clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(repo.clone().produce(
            locations,
            entry,
            StreamCheck::Digest,
            "the stream".into(),
            tx,
        ));
        let mut out = Vec::new();
        VerifiedStream::new(rx).read_to_end(&mut out).await?;
        Ok(out)
    }

    /// Every blob authenticates, yet the stream is not the one backed up:
    /// its chunks in another order, or one missing or repeated.
    #[tokio::test]
    async fn a_stream_of_genuine_blobs_in_the_wrong_order_is_an_error() {
        let options = InitOptions::encrypted(Secret::password("pw"))
            .kdf(KdfParams::INSECURE_FAST)
            .chunker(ChunkerParams {
                min: 1024,
                avg: 4096,
                max: 16 * 1024,
            });
        let repo = Repository::init(Arc::new(MemoryBackend::new()), options)
            .await
            .unwrap();
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let name: StreamName = "data".parse().unwrap();
        let mut writer = repo
            .begin(&"test/read".parse().unwrap(), jiff::Timestamp::now())
            .await
            .unwrap();
        writer
            .add_stream(&name, &mut data.as_slice())
            .await
            .unwrap();
        let manifest = writer
            .commit(SnapshotCommit::new(RecoveryPoint::new(
                jiff::Timestamp::now(),
            )))
            .await
            .unwrap();

        let as_stored = read_in_order(&repo, &manifest, &name, |n| (0..n).collect());
        assert_eq!(as_stored.await.unwrap(), data);

        type Order = fn(usize) -> Vec<usize>;
        let cases: [(&str, Order); 3] = [
            ("SHA-256 differs", |n| (0..n).rev().collect()),
            ("shorter than", |n| (1..n).collect()),
            ("longer than", |n| (0..n).chain([0]).collect()),
        ];
        for (reason, order) in cases {
            let err = read_in_order(&repo, &manifest, &name, order)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains(reason), "{reason}: {err}");
        }
    }
}
