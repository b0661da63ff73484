//! Archives of continuous segments (WAL): one sealed, compressed,
//! write-once object per segment.

use std::io;

use async_trait::async_trait;
use dr_core::{
    ArchiveCoverage, ArchiveSink, ArchiveSource, ByteStream, ComponentId, SegmentInfo, SegmentName,
    Sha256Digest,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::journal::journal_key;
use super::{MAX_SEGMENT, Repository, SEGMENT_CONTEXT, join_error, segment_key};
use crate::backend::{PutOptions, ReadBackendExt};
use crate::crypto::Crypter;
use crate::error::{Error, Result};

#[async_trait]
impl ArchiveSink for Repository {
    async fn record_coverage(
        &self,
        component: &ComponentId,
        coverage: &ArchiveCoverage,
    ) -> dr_core::Result<()> {
        let bytes = self.encode(coverage, COVERAGE_CONTEXT)?;
        // Overwritten in place, and never retained by Object Lock: a record
        // of now, not a backup.
        self.inner
            .backend
            .put(
                &coverage_key(component),
                bytes.into(),
                PutOptions::OVERWRITE,
            )
            .await?;
        Ok(())
    }

    async fn put_segment(
        &self,
        component: &ComponentId,
        name: &SegmentName,
        data: &mut (dyn AsyncRead + Send + Unpin),
    ) -> dr_core::Result<SegmentInfo> {
        let mut raw = Vec::new();
        data.take(MAX_SEGMENT + 1)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| dr_core::Error::io(format!("reading segment {name}"), e))?;
        match self.put_segment_bytes(component, name, raw).await {
            Err(Error::AlreadyExists { .. }) => Err(dr_core::Error::AlreadyExists {
                what: format!("segment {name} of {component} (with other content)"),
            }),
            other => Ok(other?),
        }
    }
}

impl Repository {
    /// Stores archive segment `name` of `component` from bytes in memory,
    /// as [`ArchiveSink::put_segment`] does from a reader, without copying
    /// them first: for a caller that reads a whole file (`drkit wal push`,
    /// once per WAL segment). It returns once the segment is durable in the
    /// store. Storing the same bytes again succeeds.
    ///
    /// # Errors
    /// `InvalidInput` for more than 1 GiB; `AlreadyExists` if the archive
    /// holds other bytes under this name (they are kept); the store's error
    /// if it failed.
    pub async fn put_segment_bytes(
        &self,
        component: &ComponentId,
        name: &SegmentName,
        raw: Vec<u8>,
    ) -> Result<SegmentInfo> {
        if raw.len() as u64 > MAX_SEGMENT {
            return Err(Error::InvalidInput {
                what: format!("segment {name}"),
                reason: "larger than 1 GiB".into(),
            });
        }
        self.writable("storing an archive segment")?;
        let crypter = self.inner.crypter.clone();
        let level = self.inner.config.compression_level;
        let (info, stored) =
            tokio::task::spawn_blocking(move || encode_segment(&crypter, &raw, level))
                .await
                .map_err(join_error)??;
        let info = SegmentInfo {
            name: name.clone(),
            ..info
        };
        let key = segment_key(component, name);
        match self
            .inner
            .backend
            .put(&key, stored.into(), self.put_options()?)
            .await
        {
            Ok(()) => Ok(info),
            Err(Error::AlreadyExists { location, key }) => {
                // Write-once: the same bytes again are fine, other bytes are not.
                let existing = self.inner.backend.get_all(&key).await?;
                let crypter = self.inner.crypter.clone();
                let what = key.clone();
                let (_, old) =
                    tokio::task::spawn_blocking(move || decode_segment(&crypter, &existing, &what))
                        .await
                        .map_err(join_error)??;
                if old == info.sha256 {
                    Ok(info)
                } else {
                    Err(Error::AlreadyExists { location, key })
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// The key of `component`'s archive coverage: after a '.', which no
/// segment of a component's storage form starts with.
fn coverage_key(component: &ComponentId) -> String {
    format!("coverage/{}/.latest", component.storage_path())
}

const COVERAGE_CONTEXT: &[u8] = b"drkit archive coverage";

#[async_trait]
impl ArchiveSource for Repository {
    async fn coverage(&self, component: &ComponentId) -> dr_core::Result<Option<ArchiveCoverage>> {
        let key = coverage_key(component);
        let raw = match self.inner.backend.get_all(&key).await {
            Ok(raw) => raw,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(self.decode(&raw, COVERAGE_CONTEXT, &key)?))
    }

    async fn segments(
        &self,
        component: &ComponentId,
        prefix: &str,
    ) -> dr_core::Result<Vec<SegmentName>> {
        let base = format!("archive/{}/", component.storage_path());
        let mut names = Vec::new();
        for object in self.inner.backend.list(&format!("{base}{prefix}")).await? {
            let Some(rest) = object.key.strip_prefix(&base) else {
                continue;
            };
            if let Ok(name) = rest.parse::<SegmentName>() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn open_segment(
        &self,
        component: &ComponentId,
        name: &SegmentName,
    ) -> dr_core::Result<ByteStream> {
        let key = segment_key(component, name);
        let stored = match self.inner.backend.get_all(&key).await {
            Ok(bytes) => bytes,
            Err(Error::NotFound { .. }) => {
                return Err(dr_core::Error::not_found(format!(
                    "segment {name} of {component}"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let crypter = self.inner.crypter.clone();
        let (raw, _) = tokio::task::spawn_blocking(move || decode_segment(&crypter, &stored, &key))
            .await
            .map_err(join_error)??;
        Ok(Box::new(io::Cursor::new(raw)))
    }
}

/// A segment object: [`segment_plain`], sealed where it lies (not copied).
fn encode_segment(crypter: &Crypter, raw: &[u8], level: i32) -> Result<(SegmentInfo, Vec<u8>)> {
    // Room for the nonce in front, which sealing writes.
    let (digest, mut sealed) = segment_plain(raw, level, &vec![0; crypter.prefix_len()])?;
    sealed.reserve_exact(crypter.overhead() - crypter.prefix_len());
    crypter.seal_in_place(&mut sealed, SEGMENT_CONTEXT)?;
    let info = SegmentInfo {
        // The caller sets the real name.
        name: "segment"
            .parse()
            .map_err(|_| Error::corrupt("segment", "name"))?,
        size: raw.len() as u64,
        sha256: digest,
    };
    Ok((info, sealed))
}

pub(super) fn decode_segment(
    crypter: &Crypter,
    stored: &[u8],
    what: &str,
) -> Result<(Vec<u8>, Sha256Digest)> {
    let plain = crypter.open(stored, SEGMENT_CONTEXT, what)?;
    parse_segment_plain(&plain, what)
}

/// Segments at least this large are hashed and compressed on three threads.
const PARALLEL_MIN: usize = 4 << 20;

/// `prefix | sha256 (32) | raw length (u64 LE) | compression (u8) | body`:
/// the plaintext of a segment (with no prefix) or of a journal record.
///
/// The body is one zstd frame, or, for a segment of [`PARALLEL_MIN`] bytes
/// or more, two frames (each half of the segment compressed on a thread of
/// its own, while a third computes the SHA-256), which decompress as one:
/// `drkit wal push` runs once per segment, and its wait is the server's.
pub(super) fn segment_plain(
    raw: &[u8],
    level: i32,
    prefix: &[u8],
) -> Result<(Sha256Digest, Vec<u8>)> {
    let compress = |part: &[u8]| {
        zstd::bulk::compress(part, level).map_err(|e| Error::io("compressing a segment", e))
    };
    let (digest, compressed): ([u8; 32], Vec<u8>) = if raw.len() < PARALLEL_MIN {
        (Sha256::digest(raw).into(), compress(raw)?)
    } else {
        let (first, second) = raw.split_at(raw.len() / 2);
        std::thread::scope(|scope| {
            let hashing = scope.spawn(|| Sha256::digest(raw));
            let compressing = scope.spawn(|| compress(second));
            let mut compressed = compress(first)?;
            let thread_failed = || {
                Error::io(
                    "compressing a segment",
                    io::Error::other("a thread panicked"),
                )
            };
            compressed.extend_from_slice(&compressing.join().map_err(|_| thread_failed())??);
            let digest = hashing.join().map_err(|_| thread_failed())?;
            Ok::<_, Error>((digest.into(), compressed))
        })?
    };
    let (flag, body) = if compressed.len() < raw.len() {
        (1u8, compressed.as_slice())
    } else {
        (0u8, raw)
    };
    let mut plain = Vec::with_capacity(prefix.len() + 41 + body.len());
    plain.extend_from_slice(prefix);
    plain.extend_from_slice(&digest);
    plain.extend_from_slice(&(raw.len() as u64).to_le_bytes());
    plain.push(flag);
    plain.extend_from_slice(body);
    Ok((Sha256Digest::from_bytes(digest), plain))
}

/// The raw bytes of [`segment_plain`] (after its prefix), checked against
/// their SHA-256.
pub(super) fn parse_segment_plain(plain: &[u8], what: &str) -> Result<(Vec<u8>, Sha256Digest)> {
    if plain.len() < 41 {
        return Err(Error::corrupt(what, "truncated segment header"));
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&plain[..32]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&plain[32..40]);
    let len = u64::from_le_bytes(len);
    if len > MAX_SEGMENT {
        return Err(Error::corrupt(what, "impossible segment length"));
    }
    let body = &plain[41..];
    let raw = match plain[40] {
        0 => body.to_vec(),
        1 => crate::pack::decompress(body, len as usize)
            .map_err(|e| Error::corrupt(what, format!("does not decompress: {e}")))?,
        other => return Err(Error::corrupt(what, format!("unknown compression {other}"))),
    };
    if raw.len() as u64 != len || Sha256::digest(&raw).as_slice() != digest {
        return Err(Error::corrupt(what, "content does not match its SHA-256"));
    }
    Ok((raw, Sha256Digest::from_bytes(digest)))
}

/// What [`Repository::forget_segments`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentForgetReport {
    /// Segments deleted.
    pub forgotten: Vec<SegmentName>,
    /// Segments Object Lock still retains; a later call removes them.
    pub retained: Vec<SegmentName>,
}

impl Repository {
    /// Deletes archive segments of `component`, and their journals (under an
    /// exclusive lock).
    /// Which segments are no longer needed is the component's call: for
    /// PostgreSQL, the WAL older than the oldest kept base backup.
    ///
    /// # Errors
    /// The lock could not be taken or the store failed.
    pub async fn forget_segments(
        &self,
        component: &ComponentId,
        names: &[SegmentName],
    ) -> Result<SegmentForgetReport> {
        let lock = self.lock(true, self.lock_wait).await?;
        let mut report = SegmentForgetReport::default();
        for name in names {
            let deleted = match self
                .inner
                .backend
                .delete(&journal_key(component, name))
                .await
            {
                Ok(()) => {
                    self.inner
                        .backend
                        .delete(&segment_key(component, name))
                        .await
                }
                Err(e) => Err(e),
            };
            match deleted {
                Ok(()) => report.forgotten.push(name.clone()),
                Err(Error::Retained { .. }) => report.retained.push(name.clone()),
                Err(e) => {
                    lock.release().await.ok();
                    return Err(e);
                }
            }
        }
        lock.release().await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Cipher, MasterKey, fill_random};

    /// WAL-like bytes: records of counters and text, with runs of zeros.
    fn wal_like(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(&i.to_le_bytes());
            out.extend_from_slice(format!("row {} of pgbench_accounts", i % 9973).as_bytes());
            out.extend_from_slice(&[0; 40]);
            i = i
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
        }
        out.truncate(len);
        out
    }

    #[test]
    fn segments_large_and_small_round_trip() {
        let crypter = Crypter::Keyed(MasterKey::generate().unwrap(), Cipher::Aes256GcmDerived);
        for len in [
            0,
            1000,
            PARALLEL_MIN - 1,
            PARALLEL_MIN,
            16 << 20,
            (16 << 20) + 3,
        ] {
            let raw = wal_like(len);
            let (info, stored) = encode_segment(&crypter, &raw, 1).unwrap();
            assert_eq!(info.size, len as u64);
            assert_eq!(info.sha256.as_bytes()[..], Sha256::digest(&raw)[..]);
            if len > 1000 {
                assert!(stored.len() < len / 2, "{len}: {} stored", stored.len());
            }
            let (back, digest) = decode_segment(&crypter, &stored, "segment").unwrap();
            assert!(back == raw, "{len} bytes come back as they went in");
            assert_eq!(digest, info.sha256);
        }
        // Incompressible: stored as it is.
        let mut noise = vec![0u8; PARALLEL_MIN + 5];
        fill_random(&mut noise).unwrap();
        let (_, plain) = segment_plain(&noise, 1, b"").unwrap();
        assert_eq!(plain[40], 0);
        assert_eq!(parse_segment_plain(&plain, "s").unwrap().0, noise);
    }
}
