//! Reading snapshots back: blobs fetched a few at a time, opened on blocking
//! threads, and the whole stream checked against its manifest entry.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use dr_core::{
    ByteStream, ComponentId, Manifest, Sha256Digest, SnapshotId, SnapshotSource, StreamEntry,
    StreamName,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Location, Repository, join_error, pack_key, snapshot_key};
use crate::crypto::parse_hex_id;
use crate::error::{Error, Result};
use crate::pack::open_blob;

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

    async fn open_stream(&self, id: &SnapshotId, name: &StreamName) -> dr_core::Result<ByteStream> {
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
        tokio::spawn(async move { repo.produce(locations, tx).await });
        Ok(Box::new(VerifyingReader::new(
            rx,
            entry,
            format!("stream {name} of snapshot {id}"),
        )))
    }
}

impl Repository {
    /// Reads blobs in order, a few in parallel, into `tx`.
    async fn produce(self, locations: Vec<Location>, tx: mpsc::Sender<io::Result<Bytes>>) {
        let mut in_flight: VecDeque<JoinHandle<Result<Bytes>>> = VecDeque::new();
        let mut pending = locations.into_iter();
        loop {
            while in_flight.len() < 2 * self.inner.concurrency {
                let Some(location) = pending.next() else {
                    break;
                };
                let repo = self.clone();
                in_flight.push_back(tokio::spawn(async move { repo.read_blob(&location).await }));
            }
            let Some(next) = in_flight.pop_front() else {
                break;
            };
            let result =
                next.await.map_err(join_error).and_then(|r| r).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, dr_core::Error::from(e))
                });
            let failed = result.is_err();
            if tx.send(result).await.is_err() || failed {
                break;
            }
        }
        for job in in_flight {
            job.abort();
        }
    }

    async fn read_blob(&self, location: &Location) -> Result<Bytes> {
        let entry = location.entry;
        let range = entry.offset..entry.offset + u64::from(entry.length);
        let sealed = self
            .inner
            .backend
            .get(&pack_key(&location.pack), Some(range))
            .await?;
        if sealed.len() != entry.length as usize {
            return Err(Error::corrupt(
                format!("pack {}", location.pack),
                "truncated: a blob extends past its end",
            ));
        }
        let crypter = self.inner.crypter.clone();
        let pack = location.pack.clone();
        let raw = tokio::task::spawn_blocking(move || open_blob(&crypter, &entry, &sealed, &pack))
            .await
            .map_err(join_error)??;
        Ok(Bytes::from(raw))
    }
}

/// Reads a stream from its producer task and checks its length and SHA-256
/// against the manifest before reporting the end: a damaged stream ends in an
/// `InvalidData` error, never in silently wrong bytes.
struct VerifyingReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    hash: Sha256,
    seen: u64,
    expected: StreamEntry,
    what: String,
    finished: bool,
}

impl VerifyingReader {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>, expected: StreamEntry, what: String) -> Self {
        Self {
            rx,
            current: Bytes::new(),
            hash: Sha256::new(),
            seen: 0,
            expected,
            what,
            finished: false,
        }
    }
}

impl AsyncRead for VerifyingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.current.is_empty() {
                let n = self.current.len().min(out.remaining());
                let piece = self.current.split_to(n);
                out.put_slice(&piece);
                return Poll::Ready(Ok(()));
            }
            if self.finished {
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Some(Ok(bytes))) => {
                    self.hash.update(&bytes);
                    self.seen += bytes.len() as u64;
                    if self.seen > self.expected.size {
                        return Poll::Ready(Err(corrupt_io(
                            &self.what,
                            "longer than its manifest says",
                        )));
                    }
                    self.current = bytes;
                }
                Poll::Ready(None) => {
                    self.finished = true;
                    let digest: [u8; 32] = std::mem::take(&mut self.hash).finalize().into();
                    if self.seen != self.expected.size {
                        return Poll::Ready(Err(corrupt_io(
                            &self.what,
                            "shorter than its manifest says",
                        )));
                    }
                    if Sha256Digest::from_bytes(digest) != self.expected.sha256 {
                        return Poll::Ready(Err(corrupt_io(
                            &self.what,
                            "SHA-256 differs from its manifest",
                        )));
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

fn corrupt_io(what: &str, reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        dr_core::Error::corrupt(what, reason),
    )
}
