//! Delta base backups: a tablespace's tar stored against the same archive
//! of a full base backup.
//!
//! The stored archive is the server's tar with the content of every file
//! the full backup also has replaced by its XOR with that file: bytes past
//! the full backup's length are XORed with zeros, and the full backup's
//! bytes past the new length are ignored. Headers, padding and the end of
//! the archive are stored as the server sent them.
//!
//! Pages a workload did not touch become zeros, and a touched page keeps
//! only the bytes that changed (a few tuples, the page LSN and checksum):
//! the repository compresses both to almost nothing, where deduplication
//! alone stores every touched page again. XOR is its own inverse, so a
//! restore runs the same transform over the stored archive and the full
//! backup's to get the server's archive back, byte for byte.
//!
//! Both archives are read front to back, once. The files paired with the
//! full backup's are recorded ([`DELTA_STREAM`]) in the order both archives
//! have them, so the restore pairs exactly the same ones. To pair, a backup
//! looks a file up in the full backup's own backup manifest first, so a new
//! file never makes it read the full backup's archive to its end; a file
//! the full backup had earlier in its archive than this one's order reached
//! is stored whole.

use std::collections::{BTreeMap, HashSet};
use std::io;

use bytes::{Bytes, BytesMut};
use dr_core::{
    ByteStream, ErrorKind, Manifest, SnapshotSource, SnapshotSourceExt, SnapshotWriter,
    StreamCheck, StreamLayout, StreamName,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::chunks::{ChannelReader, Piece};
use crate::tar::{BLOCK, EntryKind, TarReader, parse_header};

/// The stream of a delta backup that records, for each archive, the files
/// stored as XOR with the full backup's (JSON: archive name → paths).
pub const DELTA_STREAM: &str = "delta_files";

/// Archive name → the files of that archive paired with the full backup's,
/// in archive order.
pub(crate) type DeltaFiles = BTreeMap<String, Vec<String>>;

/// How much transformed output is handed on at once.
const OUT: usize = 1 << 20;
/// How much of a file is read (and XORed) at once.
const PIECE: usize = 256 * 1024;

/// How files are paired with the full backup's.
enum Pairing {
    /// Backing up: any file the full backup's archive still has ahead.
    Encode {
        ahead: HashSet<String>,
        paired: Vec<String>,
    },
    /// Restoring: exactly the recorded files, in order.
    Decode {
        next: Option<String>,
        rest: std::vec::IntoIter<String>,
    },
}

impl Pairing {
    fn decode(files: Vec<String>) -> Self {
        let mut rest = files.into_iter();
        Self::Decode {
            next: rest.next(),
            rest,
        }
    }

    /// Whether `path` is to be paired with the full backup's file.
    fn wants(&self, path: &str) -> bool {
        match self {
            Self::Encode { ahead, .. } => ahead.contains(path),
            Self::Decode { next, .. } => next.as_deref() == Some(path),
        }
    }

    /// The full backup's archive went past `path` while looking for another.
    fn passed(&mut self, path: &str) {
        if let Self::Encode { ahead, .. } = self {
            ahead.remove(path);
        }
    }

    /// Records the outcome of looking for `path`; a recorded file that the
    /// full backup's archive does not have (any more) is an error.
    fn found(&mut self, path: &str, found: bool, what: &str) -> io::Result<()> {
        match self {
            Self::Encode { ahead, paired } => {
                if found {
                    paired.push(path.to_owned());
                } else {
                    // The archive ended: nothing more pairs.
                    ahead.clear();
                }
            }
            Self::Decode { next, rest } => {
                if !found {
                    return Err(invalid(
                        what,
                        format!("{path} is stored against the full backup, which lacks it"),
                    ));
                }
                *next = rest.next();
            }
        }
        Ok(())
    }

    /// Every recorded file was met.
    fn finish(self, what: &str) -> io::Result<Vec<String>> {
        match self {
            Self::Encode { paired, .. } => Ok(paired),
            Self::Decode {
                next: Some(path), ..
            } => Err(invalid(
                what,
                format!(
                    "{path} is recorded as stored against the full backup, but is not in the archive"
                ),
            )),
            Self::Decode { next: None, .. } => Ok(Vec::new()),
        }
    }
}

fn invalid(what: &str, reason: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {reason}"))
}

/// The full backup's archive, read forward only.
struct Base<B> {
    tar: TarReader<B>,
    ended: bool,
}

impl<B: AsyncRead + Unpin> Base<B> {
    /// Moves to the file `path`; its size, or `None` if the archive ended first.
    async fn seek(&mut self, path: &str, pairing: &mut Pairing) -> io::Result<Option<u64>> {
        while !self.ended {
            match self.tar.next_entry().await? {
                None => self.ended = true,
                Some(entry) => {
                    pairing.passed(&entry.path);
                    if entry.kind == EntryKind::File && entry.path == path {
                        return Ok(Some(entry.size));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// Runs the transform over the archive `input`, against the full backup's
/// archive `base`, sending the result to `out`; returns the files paired.
async fn xor_archive(
    mut input: impl AsyncRead + Unpin,
    base: impl AsyncRead + Unpin,
    what: &str,
    mut pairing: Pairing,
    out: &mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<Vec<String>> {
    let mut base = Base {
        tar: TarReader::new(base, format!("{what} of the full backup")),
        ended: false,
    };
    let mut buf = BytesMut::with_capacity(OUT);
    let mut scratch = vec![0u8; PIECE];
    let send = |buf: &mut BytesMut| {
        let bytes = buf.split().freeze();
        async move {
            out.send(Ok(bytes))
                .await
                .map_err(|_| io::Error::other("the reader of the transformed archive stopped"))
        }
    };
    loop {
        if buf.len() >= OUT - PIECE {
            send(&mut buf).await?;
        }
        let mut header = [0u8; BLOCK];
        input.read_exact(&mut header).await.map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid(what, "truncated: no end-of-archive marker")
            } else {
                e
            }
        })?;
        buf.extend_from_slice(&header);
        if header.iter().all(|b| *b == 0) {
            // The end-of-archive blocks and whatever follows, as they are.
            loop {
                if buf.len() >= OUT - PIECE {
                    send(&mut buf).await?;
                }
                buf.reserve(PIECE);
                if input.read_buf(&mut buf).await? == 0 {
                    break;
                }
            }
            send(&mut buf).await?;
            // The rest of the full backup's archive, so that its stream's
            // verdict at its end is heard.
            base.tar.finish().await?;
            return pairing.finish(what);
        }
        let entry = parse_header(&header).map_err(|reason| invalid(what, reason))?;
        if entry.kind != EntryKind::File {
            continue;
        }
        let mut paired_left = 0u64;
        if pairing.wants(&entry.path) {
            let size = base.seek(&entry.path, &mut pairing).await?;
            pairing.found(&entry.path, size.is_some(), what)?;
            paired_left = size.unwrap_or(0);
        }
        let mut left = entry.size;
        while left > 0 {
            if buf.len() >= OUT - PIECE {
                send(&mut buf).await?;
            }
            let want = left.min(PIECE as u64);
            let start = buf.len();
            buf.reserve(want as usize);
            let n = (&mut input).take(want).read_buf(&mut buf).await?;
            if n == 0 {
                return Err(invalid(what, "truncated inside a file's content"));
            }
            let xor = (n as u64).min(paired_left) as usize;
            if xor > 0 {
                base.tar.content().read_exact(&mut scratch[..xor]).await?;
                for (b, a) in buf[start..start + xor].iter_mut().zip(&scratch[..xor]) {
                    *b ^= a;
                }
                paired_left -= xor as u64;
            }
            left -= n as u64;
        }
        let padding = (BLOCK - (entry.size % BLOCK as u64) as usize) % BLOCK;
        let start = buf.len();
        buf.resize(start + padding, 0);
        input.read_exact(&mut buf[start..]).await.map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid(what, "truncated inside a file's padding")
            } else {
                // Damage met reading the stored stream, reported as itself.
                e
            }
        })?;
    }
}

/// Runs [`xor_archive`] with its output read from the returned reader,
/// which ends in the transform's error if it fails.
fn transformed<'a>(
    input: impl AsyncRead + Unpin + 'a,
    base: impl AsyncRead + Unpin + 'a,
    what: String,
    pairing: Pairing,
) -> (
    impl Future<Output = io::Result<Vec<String>>> + 'a,
    ChannelReader<io::Result<Bytes>>,
) {
    let (tx, rx) = mpsc::channel(4);
    let transform = async move {
        let done = xor_archive(input, base, &what, pairing, &tx).await;
        if let Err(e) = &done {
            tx.send(Err(io::Error::new(e.kind(), e.to_string())))
                .await
                .ok();
        }
        done
    };
    (transform, ChannelReader::new(rx, bytes_or_failure))
}

/// Stores the archive `input` as stream `name` of `writer`, with every file
/// that `base` (the full backup's same archive, whose files are `listed`)
/// also has XORed with it. Returns the files paired, in order.
pub(crate) async fn store_delta(
    input: &mut (dyn AsyncRead + Send + Unpin),
    base: ByteStream,
    listed: HashSet<String>,
    writer: &mut dyn SnapshotWriter,
    name: &StreamName,
) -> dr_core::Result<Vec<String>> {
    let what = name.as_str();
    let pairing = Pairing::Encode {
        ahead: listed,
        paired: Vec::new(),
    };
    let (transform, mut reader) = transformed(input, base, what.to_owned(), pairing);
    // The reader goes with the store: if storing fails, the transform stops too.
    // The same members as the server's archive: cut the same way.
    let store = async move {
        writer
            .add_stream_with(name, &mut reader, StreamLayout::Tar)
            .await
    };
    let (paired, stored) = tokio::join!(transform, store);
    let paired =
        paired.map_err(|e| dr_core::Error::io(format!("delta-encoding archive {what}"), e))?;
    stored?;
    Ok(paired)
}

/// The server's archive back from a stored delta archive and the full
/// backup's same archive; `files` are the ones recorded as paired.
fn restore_delta(
    stored: ByteStream,
    base: ByteStream,
    files: Vec<String>,
    what: String,
) -> ChannelReader<io::Result<Bytes>> {
    let (transform, reader) = transformed(stored, base, what, Pairing::decode(files));
    tokio::spawn(transform);
    reader
}

/// What reading a delta backup's archives takes: the full backup it is
/// stored against and the files it recorded as paired.
pub(crate) struct DeltaBase {
    full: Manifest,
    files: DeltaFiles,
}

impl DeltaBase {
    /// For the base backup `snapshot`: `None` if it is a full backup.
    ///
    /// # Errors
    /// The full backup it is stored against is gone, or its record of
    /// paired files is missing or damaged.
    pub(crate) async fn of(
        source: &dyn SnapshotSource,
        snapshot: &Manifest,
    ) -> dr_core::Result<Option<Self>> {
        let Some(full) = snapshot.depends_on else {
            return Ok(None);
        };
        let id = snapshot.id;
        let full = source.manifest(&full).await.map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                dr_core::Error::not_found(format!(
                    "full backup {full}, which delta backup {id} is stored against"
                ))
            } else {
                e
            }
        })?;
        let name: StreamName = DELTA_STREAM.parse()?;
        if snapshot.stream(&name).is_none() {
            return Err(dr_core::Error::corrupt(
                format!("snapshot {id}"),
                format!("stored against {} without a {DELTA_STREAM} stream", full.id),
            ));
        }
        let mut raw = Vec::new();
        source
            .open_stream(&id, &name)
            .await?
            .read_to_end(&mut raw)
            .await
            .map_err(|e| dr_core::Error::io(format!("reading {DELTA_STREAM} of {id}"), e))?;
        let files = serde_json::from_slice(&raw).map_err(|e| {
            dr_core::Error::corrupt(format!("{DELTA_STREAM} of snapshot {id}"), e.to_string())
        })?;
        Ok(Some(Self { full, files }))
    }
}

/// Opens the archive `name` of the base backup `snapshot` as the server
/// sent it: as stored for a full backup, rebuilt against the full backup
/// for a delta one (`delta`, from [`DeltaBase::of`]); the streams read are
/// checked as `check` says.
///
/// # Errors
/// The stream, or the full backup's same archive, is missing.
pub(crate) async fn open_archive(
    source: &dyn SnapshotSource,
    snapshot: &Manifest,
    delta: Option<&DeltaBase>,
    name: &StreamName,
    check: StreamCheck,
) -> dr_core::Result<ByteStream> {
    let stored = source.open_stream_with(&snapshot.id, name, check).await?;
    let Some((delta, files)) = delta.and_then(|d| Some((d, d.files.get(name.as_str())?.clone())))
    else {
        return Ok(stored);
    };
    if files.is_empty() {
        return Ok(stored);
    }
    let base = source
        .open_stream_with(&delta.full.id, name, check)
        .await
        .map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                dr_core::Error::corrupt(
                    format!("snapshot {}", snapshot.id),
                    format!(
                        "{name} is stored against full backup {}, which has no {name}",
                        delta.full.id
                    ),
                )
            } else {
                e
            }
        })?;
    Ok(Box::new(restore_delta(
        stored,
        base,
        files,
        name.as_str().to_owned(),
    )))
}

/// A transform sends its output, or the error that ended it.
fn bytes_or_failure(item: io::Result<Bytes>) -> Piece<io::Result<Bytes>> {
    match item {
        Ok(bytes) => Piece::Bytes(bytes),
        Err(e) => Piece::Fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::tests::archive;
    use proptest::prelude::*;

    async fn run(
        input: &[u8],
        base: &[u8],
        pairing: Pairing,
    ) -> io::Result<(Vec<u8>, Vec<String>)> {
        let (transform, mut reader) = transformed(input, base, "base.tar".into(), pairing);
        let read = async move {
            let mut out = Vec::new();
            reader.read_to_end(&mut out).await.map(|_| out)
        };
        let (paired, out) = tokio::join!(transform, read);
        Ok((out?, paired?))
    }

    fn encode(listed: &[&str]) -> Pairing {
        Pairing::Encode {
            ahead: listed.iter().map(|s| (*s).to_owned()).collect(),
            paired: Vec::new(),
        }
    }

    fn page(fill: u8, changed: &[(usize, u8)]) -> Vec<u8> {
        let mut p = vec![fill; 8192];
        for (at, b) in changed {
            p[*at] = *b;
        }
        p
    }

    #[tokio::test]
    async fn unchanged_bytes_become_zeros_and_come_back() {
        let old = [page(1, &[]), page(2, &[])].concat();
        let new = [page(1, &[(100, 9)]), page(2, &[]), page(3, &[])].concat();
        let base = archive(&[
            ("base", b'5', b"", ""),
            ("base/1", b'0', &old, ""),
            ("gone", b'0', b"old file", ""),
        ]);
        let server = archive(&[
            ("base", b'5', b"", ""),
            ("base/1", b'0', &new, ""),
            ("fresh", b'0', b"a new file", ""),
        ]);
        let (stored, paired) = run(&server, &base, encode(&["base/1", "gone"]))
            .await
            .unwrap();
        assert_eq!(paired, ["base/1"]);
        assert_eq!(stored.len(), server.len());
        // The content of base/1 starts after two headers; only one byte
        // differs in the old part, the new page is stored as it is.
        let content = &stored[2 * BLOCK..2 * BLOCK + new.len()];
        assert_eq!(content.iter().filter(|b| **b != 0).count(), 1 + 8192);
        assert_eq!(content[100], 9 ^ 1);
        let (back, _) = run(&stored, &base, Pairing::decode(paired)).await.unwrap();
        assert_eq!(back, server);
    }

    #[tokio::test]
    async fn a_full_backup_that_does_not_match_is_an_error() {
        let base = archive(&[("a", b'0', b"one", ""), ("b", b'0', b"two", "")]);
        let server = archive(&[("a", b'0', b"uno", ""), ("b", b'0', b"dos", "")]);
        let (stored, paired) = run(&server, &base, encode(&["a", "b"])).await.unwrap();
        assert_eq!(paired, ["a", "b"]);
        // A recorded file the full backup lacks.
        let other = archive(&[("a", b'0', b"one", "")]);
        let err = run(&stored, &other, Pairing::decode(paired.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("lacks it"), "{err}");
        // A recorded file the stored archive lacks.
        let mut extra = paired.clone();
        extra.push("c".into());
        let err = run(&stored, &base, Pairing::decode(extra))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not in the archive"), "{err}");
        // A truncated stored archive.
        let err = run(
            &stored[..stored.len() - 2 * BLOCK - 10],
            &base,
            Pairing::decode(paired),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn files_out_of_the_full_backups_order_are_stored_whole() {
        let base = archive(&[("a", b'0', b"aaaa", ""), ("b", b'0', b"bbbb", "")]);
        let server = archive(&[("b", b'0', b"bbbc", ""), ("a", b'0', b"aaab", "")]);
        let (stored, paired) = run(&server, &base, encode(&["a", "b"])).await.unwrap();
        assert_eq!(paired, ["b"]);
        let (back, _) = run(&stored, &base, Pairing::decode(paired)).await.unwrap();
        assert_eq!(back, server);
    }

    /// A file's content: a base content changed at some places, grown or shrunk.
    fn file_strategy() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        (
            prop::collection::vec(any::<u8>(), 0..3000),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            -1500i32..1500,
        )
            .prop_map(|(old, changes, grow)| {
                let mut new = old.clone();
                for (at, b) in changes {
                    if !new.is_empty() {
                        let i = at.index(new.len());
                        new[i] = b;
                    }
                }
                let len = (new.len() as i32 + grow).max(0) as usize;
                new.resize(len, 0x5a);
                (old, new)
            })
    }

    proptest! {
        #[test]
        fn restoring_gives_the_servers_archive_back(
            files in prop::collection::vec(file_strategy(), 1..6),
            dropped in prop::collection::vec(any::<bool>(), 6),
            added in prop::collection::vec(any::<bool>(), 6),
            swap in any::<bool>(),
        ) {
            let names: Vec<String> = (0..files.len()).map(|i| format!("base/1/{i}")).collect();
            let base_entries: Vec<(&str, u8, &[u8], &str)> = files
                .iter()
                .zip(&names)
                .filter(|(_, n)| !n.ends_with('3') || !added[0])
                .map(|((old, _), n)| (n.as_str(), b'0', old.as_slice(), ""))
                .collect();
            let mut server_entries: Vec<(&str, u8, &[u8], &str)> = files
                .iter()
                .zip(&names)
                .enumerate()
                .filter(|(i, _)| !dropped[*i])
                .map(|(_, ((_, new), n))| (n.as_str(), b'0', new.as_slice(), ""))
                .collect();
            if swap && server_entries.len() > 1 {
                server_entries.swap(0, 1);
            }
            let base = archive(&base_entries);
            let server = archive(&server_entries);
            let listed: Vec<&str> = base_entries.iter().map(|e| e.0).collect();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (stored, paired) = rt.block_on(run(&server, &base, encode(&listed))).unwrap();
            prop_assert_eq!(stored.len(), server.len());
            let (back, _) = rt.block_on(run(&stored, &base, Pairing::decode(paired))).unwrap();
            prop_assert_eq!(back, server);
        }
    }
}
