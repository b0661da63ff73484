//! Packs: many sealed blobs in one object, with a sealed header at the end
//! listing them, so a pack can be checked or re-indexed on its own.
//!
//! ```text
//! blob 0 | blob 1 | ... | sealed header | header length (u32 LE) | "DRK1"
//! header entry: id (32) | compression (u8) | stored length (u32 LE) | raw length (u32 LE)
//! ```

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::crypto::{AUTHENTICATION_FAILED, Crypter, Id, hex};
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"DRK1";
const TRAILER_LEN: usize = 8;
const ENTRY_LEN: usize = 32 + 1 + 4 + 4;
pub(crate) const HEADER_CONTEXT: &[u8] = b"drkit pack header";
pub(crate) const BLOB_CONTEXT: &[u8] = b"drkit blob";

/// How a blob's plaintext was transformed before sealing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Compression {
    /// Stored as it was (it did not compress).
    None,
    /// One zstd frame.
    Zstd,
}

/// Where one blob is, as the index records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlobEntry {
    #[serde(with = "hex_id")]
    pub(crate) id: Id,
    pub(crate) offset: u64,
    pub(crate) length: u32,
    pub(crate) raw_length: u32,
    pub(crate) compression: Compression,
}

/// A blob ready to be packed: its id, its sealed bytes, how they were made.
#[derive(Debug, Clone)]
pub(crate) struct SealedBlob {
    pub(crate) id: Id,
    pub(crate) data: Bytes,
    pub(crate) raw_length: u32,
    pub(crate) compression: Compression,
}

/// Compresses (if it helps) and seals a chunk, into one buffer allocated
/// once: compressed (or copied) behind room for the nonce, then encrypted
/// where it lies. zstd writes into the buffer's spare capacity, so only
/// what it writes is ever touched: a database chunk compresses twentyfold,
/// and zeroing room for the worst case cost more than compressing it.
pub(crate) fn seal_blob(crypter: &Crypter, id: Id, raw: &[u8], level: i32) -> Result<SealedBlob> {
    let raw_length = u32::try_from(raw.len()).map_err(|_| Error::InvalidInput {
        what: "chunk".into(),
        reason: "larger than 4 GiB".into(),
    })?;
    let prefix = crypter.prefix_len();
    let bound = zstd::zstd_safe::compress_bound(raw.len()).max(raw.len());
    let mut buf = Vec::with_capacity(bound + crypter.overhead());
    let compressed = if looks_incompressible(raw) {
        None
    } else {
        buf.resize(prefix, 0);
        let mut behind_prefix = std::io::Cursor::new(buf);
        behind_prefix.set_position(prefix as u64);
        let n = with_compressor(level, |c| c.compress_to_buffer(raw, &mut behind_prefix))?;
        buf = behind_prefix.into_inner();
        Some(n)
    };
    let compression = match compressed {
        Some(n) if n < raw.len() => Compression::Zstd,
        _ => {
            buf.clear();
            buf.resize(prefix, 0);
            buf.extend_from_slice(raw);
            Compression::None
        }
    };
    crypter.seal_in_place(&mut buf, BLOB_CONTEXT)?;
    Ok(SealedBlob {
        id,
        data: Bytes::from(buf),
        raw_length,
        compression,
    })
}

/// Whether five 32 KiB samples spread over a large chunk (its start, its
/// quarters and its end) all fail to shrink at zstd's fastest level: then the
/// whole chunk is stored as it is without spending a full compression on it.
/// A chunk that is only partly incompressible (where compressible data
/// begins or ends) shows it in some sample and is compressed. A smaller
/// chunk (of records, such as an RDB's keys) is stored as it is when its
/// bytes are as evenly spread as random bytes ([`looks_uniform`]).
fn looks_incompressible(raw: &[u8]) -> bool {
    const SAMPLE: usize = 32 * 1024;
    if raw.len() < 8 * SAMPLE {
        return looks_uniform(raw);
    }
    let last = raw.len() - SAMPLE;
    [0, last / 4, last / 2, 3 * last / 4, last]
        .into_iter()
        .all(|at| {
            let sample = &raw[at..at + SAMPLE];
            compress(sample, 1).is_ok_and(|c| c.len() * 100 >= sample.len() * 98)
        })
}

/// Whether a chunk of at least 1 KiB has its byte values spread so evenly
/// that compressing it is not worth its time: Pearson's chi-squared statistic
/// of its byte counts against a uniform spread is at least 150 and below the
/// larger of 340 and the chunk's length n. Random bytes give 255 on average,
/// with a standard deviation of 23, whatever the length. For a spread near
/// uniform, chi² / (2 n ln 2) estimates the bits per byte that entropy coding
/// saves, so chi² < n means under 9% before zstd's tables are paid for: on
/// the Redis benchmark's chunks of random values with their keys' framing
/// between them, the 16% of chunks the old bound (340) sent to zstd shrank
/// by 1.3% for about 5% of the snapshot's CPU time. Text, and anything else
/// zstd's fastest level shrinks by its entropy coding, gives several times
/// n (base64 3n, hex digits 15n); a spread more even than chance, such as
/// every byte value in turn, gives less than 150. Data whose only redundancy
/// is long repeats of random-looking data passes too and is stored as it is.
///
/// A chunk over 2 KiB is judged by a sample: 16 runs of 64 bytes spread
/// evenly over it (counting every byte of every chunk was 8% of a Redis
/// snapshot's CPU). The sample's own statistic must be at least 150, and its
/// excess over chance, scaled to the chunk's length, stands for the chunk's:
/// a uniform chunk's estimate stays near 255, well under n, while structure
/// anywhere in a run shows at n/1024 times its weight in the sample.
fn looks_uniform(raw: &[u8]) -> bool {
    const MIN: usize = 1024;
    const RUN: usize = 64;
    const RUNS: usize = 16;
    if raw.len() < MIN {
        return false;
    }
    // Four tables, so that runs of one byte value do not wait on each other;
    // at most 2 KiB is counted, so 16-bit counts (half the zeroing).
    let mut counts = [[0u16; 256]; 4];
    let mut count = |bytes: &[u8]| {
        let mut quads = bytes.chunks_exact(4);
        for quad in &mut quads {
            for (table, &byte) in counts.iter_mut().zip(quad) {
                table[usize::from(byte)] += 1;
            }
        }
        for &byte in quads.remainder() {
            counts[0][usize::from(byte)] += 1;
        }
    };
    let sampled = if raw.len() <= 2 * RUN * RUNS {
        count(raw);
        raw.len()
    } else {
        let step = (raw.len() - RUN) / (RUNS - 1);
        for run in 0..RUNS {
            count(&raw[run * step..run * step + RUN]);
        }
        RUN * RUNS
    };
    // chi² = sum((c - m/256)²) / (m/256) = 256 * sum(c²) / m - m, summed in
    // integers (the compiler's vector lanes) rather than by float per value.
    let [a, b, c, d] = &counts;
    let squares: u64 = (0..256)
        .map(|value| {
            let n = u64::from(a[value]) + u64::from(b[value]);
            let n = n + u64::from(c[value]) + u64::from(d[value]);
            n * n
        })
        .sum();
    let m = sampled as f64;
    let chi_squared = 256.0 * squares as f64 / m - m;
    let n = raw.len() as f64;
    let estimate = 255.0 + (chi_squared - 255.0) * n / m;
    chi_squared >= 150.0 && estimate < f64::max(340.0, n)
}

thread_local! {
    /// One zstd context per thread and level, reused across chunks.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// One zstd decompression context per thread, reused across blobs:
    /// setting one up was a few percent of a restore.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses `compressed`, which must come out `len` bytes long, with
/// this thread's zstd context.
pub(crate) fn decompress(compressed: &[u8], len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match cell.as_mut() {
            Some(decompressor) => decompressor,
            None => cell.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress(compressed, len)
    })
}

/// Opens a blob read from a pack where it lies in `sealed`, checked as
/// [`open_blob`] checks it: an uncompressed blob's plaintext is decrypted
/// over its ciphertext and returned as a slice of the same buffer, with no
/// copy; a compressed one is decompressed into a buffer of its own. On
/// failure the bytes may be left half decrypted: the caller drops them.
pub(crate) fn open_blob_in_place(
    crypter: &Crypter,
    entry: &BlobEntry,
    sealed: &mut BytesMut,
    pack: &str,
    check: BlobCheck,
) -> Result<Bytes> {
    let what = || format!("blob {} in pack {pack}", hex(&entry.id));
    let range = crypter
        .open_in_place(sealed, BLOB_CONTEXT)
        .map_err(|()| Error::corrupt(what(), AUTHENTICATION_FAILED))?;
    let raw = match entry.compression {
        Compression::None => {
            let mut all = std::mem::take(sealed);
            all.truncate(range.end);
            let _ = all.split_to(range.start);
            all.freeze()
        }
        Compression::Zstd => decompress(&sealed[range], entry.raw_length as usize)
            .map(Bytes::from)
            .map_err(|e| Error::corrupt(what(), format!("does not decompress: {e}")))?,
    };
    if raw.len() != entry.raw_length as usize {
        return Err(Error::corrupt(
            what(),
            format!("{} bytes, expected {}", raw.len(), entry.raw_length),
        ));
    }
    let hash = check == BlobCheck::Id || matches!(crypter, Crypter::Plain);
    if hash && crypter.id(&raw) != entry.id {
        return Err(Error::corrupt(what(), "content does not match its id"));
    }
    Ok(raw)
}

/// Runs `f` with this thread's zstd context for `level`.
fn with_compressor<T>(
    level: i32,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> std::io::Result<T>,
) -> Result<T> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match cell.as_mut() {
            Some((l, compressor)) if *l == level => compressor,
            _ => {
                let compressor = zstd::bulk::Compressor::new(level)
                    .map_err(|e| Error::io("setting up zstd", e))?;
                &mut cell.insert((level, compressor)).1
            }
        };
        f(compressor).map_err(|e| Error::io("compressing a chunk", e))
    })
}

fn compress(raw: &[u8], level: i32) -> Result<Vec<u8>> {
    with_compressor(level, |c| c.compress(raw))
}

/// How much [`open_blob`] checks beyond the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobCheck {
    /// Hash the content and compare it with the blob's id: what names a
    /// damaged or misplaced blob (verify, prune).
    Id,
    /// Hash the content only if the repository is not encrypted. An
    /// authenticated blob is what a key holder sealed; that it is the
    /// right one in the right place is checked by the caller (a stream
    /// read checks the whole stream's SHA-256 before it ends).
    Authenticity,
}

/// Opens a blob read from a pack and checks it (see [`BlobCheck`]), from a
/// copy of `sealed` ([`open_blob_in_place`] without the caller's buffer).
pub(crate) fn open_blob(
    crypter: &Crypter,
    entry: &BlobEntry,
    sealed: &[u8],
    pack: &str,
    check: BlobCheck,
) -> Result<Bytes> {
    open_blob_in_place(crypter, entry, &mut BytesMut::from(sealed), pack, check)
}

/// Builds one pack.
#[derive(Debug, Default)]
pub(crate) struct PackBuilder {
    data: BytesMut,
    entries: Vec<BlobEntry>,
}

/// A pack buffer of at least `capacity` bytes whose start is aligned to a
/// page, so that a local filesystem backend writes a pack with `O_DIRECT`
/// straight from it rather than through a copy. A stored pack's buffer,
/// taken back for the next pack, keeps its start.
pub(crate) fn pack_buffer(capacity: usize) -> BytesMut {
    use bytes::Buf;
    const PAGE: usize = 4096;
    let mut buffer = BytesMut::with_capacity(capacity + PAGE);
    let skip = buffer.as_ptr().align_offset(PAGE);
    if skip < PAGE {
        buffer.resize(skip, 0);
        buffer.advance(skip);
    }
    buffer
}

impl PackBuilder {
    /// An empty pack built in `buffer` (cleared first), so that a writer can
    /// reuse the buffers of packs it already stored.
    pub(crate) fn in_buffer(mut buffer: BytesMut) -> Self {
        buffer.clear();
        Self {
            data: buffer,
            entries: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn add(&mut self, blob: &SealedBlob) -> Result<()> {
        let length = u32::try_from(blob.data.len()).map_err(|_| Error::InvalidInput {
            what: "blob".into(),
            reason: "larger than 4 GiB".into(),
        })?;
        self.entries.push(BlobEntry {
            id: blob.id,
            offset: self.data.len() as u64,
            length,
            raw_length: blob.raw_length,
            compression: blob.compression,
        });
        self.data.extend_from_slice(&blob.data);
        Ok(())
    }

    /// The finished pack's bytes and its blob entries.
    pub(crate) fn finish(mut self, crypter: &Crypter) -> Result<(Bytes, Vec<BlobEntry>)> {
        let mut header = Vec::with_capacity(self.entries.len() * ENTRY_LEN);
        for e in &self.entries {
            header.extend_from_slice(&e.id);
            header.push(match e.compression {
                Compression::None => 0,
                Compression::Zstd => 1,
            });
            header.extend_from_slice(&e.length.to_le_bytes());
            header.extend_from_slice(&e.raw_length.to_le_bytes());
        }
        let sealed = crypter.seal(&header, HEADER_CONTEXT)?;
        self.data.extend_from_slice(&sealed);
        self.data
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        self.data.extend_from_slice(MAGIC);
        Ok((self.data.freeze(), self.entries))
    }
}

/// Reads the blob list from a whole pack (for check and index rebuilding).
pub(crate) fn read_header(crypter: &Crypter, pack: &[u8], name: &str) -> Result<Vec<BlobEntry>> {
    let what = format!("pack {name}");
    if pack.len() < TRAILER_LEN {
        return Err(Error::corrupt(&what, "shorter than its trailer"));
    }
    let (rest, trailer) = pack.split_at(pack.len() - TRAILER_LEN);
    if &trailer[4..] != MAGIC {
        return Err(Error::corrupt(
            &what,
            "no pack trailer (truncated, or not a pack)",
        ));
    }
    let header_len = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as usize;
    if header_len > rest.len() {
        return Err(Error::corrupt(&what, "header longer than the pack"));
    }
    let (blobs, sealed) = rest.split_at(rest.len() - header_len);
    let header = crypter.open(sealed, HEADER_CONTEXT, &what)?;
    if header.len() % ENTRY_LEN != 0 {
        return Err(Error::corrupt(
            &what,
            "header length is not a whole number of entries",
        ));
    }
    let mut offset = 0u64;
    let mut entries = Vec::with_capacity(header.len() / ENTRY_LEN);
    for raw in header.chunks_exact(ENTRY_LEN) {
        let mut id = [0u8; 32];
        id.copy_from_slice(&raw[..32]);
        let compression = match raw[32] {
            0 => Compression::None,
            1 => Compression::Zstd,
            other => {
                return Err(Error::corrupt(
                    &what,
                    format!("unknown compression {other}"),
                ));
            }
        };
        let length = u32::from_le_bytes([raw[33], raw[34], raw[35], raw[36]]);
        let raw_length = u32::from_le_bytes([raw[37], raw[38], raw[39], raw[40]]);
        entries.push(BlobEntry {
            id,
            offset,
            length,
            raw_length,
            compression,
        });
        offset += u64::from(length);
    }
    if offset != blobs.len() as u64 {
        return Err(Error::corrupt(
            &what,
            "blob lengths do not add up to the pack",
        ));
    }
    Ok(entries)
}

mod hex_id {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::crypto::{Id, hex, parse_hex_id};

    pub(crate) fn serialize<S: Serializer>(id: &Id, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex(id))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let text = String::deserialize(d)?;
        parse_hex_id(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Cipher, MasterKey};
    use dr_testkit::noise as random;

    #[test]
    fn only_chunks_spread_like_random_bytes_skip_compression() {
        for (seed, len) in [(1, 1024), (2, 4000), (3, 65_536), (4, 200_000)] {
            let chunk = random(seed, len);
            assert!(looks_uniform(&chunk), "{len} random bytes");
            let sealed = seal_blob(&Crypter::Plain, Crypter::Plain.id(&chunk), &chunk, 1).unwrap();
            assert_eq!(sealed.compression, Compression::None);
        }
        let text = "drkit stores RDB files in chunks cut at key boundaries. ".repeat(100);
        assert!(!looks_uniform(text.as_bytes()));
        // Every byte value in turn: evener than chance, and it compresses.
        let cycle: Vec<u8> = (0..=255u8).cycle().take(8192).collect();
        assert!(!looks_uniform(&cycle));
        let sealed = seal_blob(&Crypter::Plain, Crypter::Plain.id(&cycle), &cycle, 1).unwrap();
        assert_eq!(sealed.compression, Compression::Zstd);
        // Random bytes with a run of zeros in the middle.
        let mut mixed = random(5, 4096);
        mixed[1000..1600].fill(0);
        assert!(!looks_uniform(&mixed));
        assert!(!looks_uniform(&random(6, 1000)), "too short to tell");
        // Random values with a little framing between them, as an RDB's
        // keys are: too little to save by entropy coding, whether counted
        // whole (up to 2 KiB) or judged by a sample.
        for records in [2u64, 3, 8, 16, 64, 400] {
            let framed: Vec<u8> = (0..records)
                .flat_map(|i| {
                    [
                        format!("\x00\x0bkey:{i:06}\x40").into_bytes(),
                        random(10 + i, 500),
                    ]
                })
                .flatten()
                .collect();
            assert!(looks_uniform(&framed), "{records} framed records");
        }
        // Structure anywhere in a sampled chunk shows.
        let mut part_text = random(7, 16_384);
        part_text[12_288..].copy_from_slice(&text.as_bytes()[..4096]);
        assert!(!looks_uniform(&part_text), "a quarter of text");
        let mut zeros = random(8, 4096);
        zeros[2048..2560].fill(0);
        assert!(!looks_uniform(&zeros), "an eighth of zeros");
        for (seed, len) in [(11, 2049), (12, 5000), (13, 1 << 20)] {
            assert!(
                looks_uniform(&random(seed, len)),
                "{len} random bytes, sampled"
            );
        }
    }

    #[test]
    fn packs_round_trip_and_reject_damage() {
        for crypter in [
            Crypter::Plain,
            Crypter::Keyed(MasterKey::generate().unwrap(), Cipher::Aes256GcmDerived),
        ] {
            let chunks: Vec<Vec<u8>> = vec![vec![b'a'; 5000], (0..=255u8).collect(), b"x".to_vec()];
            let mut builder = PackBuilder::default();
            for c in &chunks {
                builder
                    .add(&seal_blob(&crypter, crypter.id(c), c, 3).unwrap())
                    .unwrap();
            }
            let (pack, entries) = builder.finish(&crypter).unwrap();
            assert_eq!(entries[0].compression, Compression::Zstd);
            assert_eq!(entries[1].compression, Compression::None);
            assert_eq!(read_header(&crypter, &pack, "p").unwrap(), entries);
            for (entry, chunk) in entries.iter().zip(&chunks) {
                let range =
                    entry.offset as usize..(entry.offset + u64::from(entry.length)) as usize;
                assert_eq!(
                    &open_blob(&crypter, entry, &pack[range.clone()], "p", BlobCheck::Id).unwrap(),
                    chunk
                );
                let mut bad = pack[range.clone()].to_vec();
                let last = bad.len() - 1;
                bad[last] ^= 0x40;
                assert!(open_blob(&crypter, entry, &bad, "p", BlobCheck::Id).is_err());
                // A blob in the place of another: the id check names it; a
                // stream read of an encrypted repository leaves it to the
                // stream's SHA-256, an unencrypted one still hashes.
                let misplaced = BlobEntry {
                    id: crypter.id(b"another chunk"),
                    ..*entry
                };
                let sealed = &pack[range];
                assert!(open_blob(&crypter, &misplaced, sealed, "p", BlobCheck::Id).is_err());
                let read = open_blob(&crypter, &misplaced, sealed, "p", BlobCheck::Authenticity);
                assert_eq!(read.is_ok(), matches!(crypter, Crypter::Keyed(..)));
            }
            assert!(read_header(&crypter, &pack[..pack.len() - 3], "p").is_err());
            assert!(read_header(&crypter, &pack[5..], "p").is_err());
        }
    }

    /// Blobs open where they lie, compressed ones among them; a damaged one
    /// is an error.
    #[test]
    fn blobs_open_where_they_lie() {
        for crypter in [
            Crypter::Plain,
            Crypter::Keyed(MasterKey::generate().unwrap(), Cipher::Aes256GcmDerived),
        ] {
            let chunks: Vec<Vec<u8>> = vec![random(7, 3000), vec![b'z'; 4000], random(8, 1500)];
            let mut builder = PackBuilder::default();
            for c in &chunks {
                builder
                    .add(&seal_blob(&crypter, crypter.id(c), c, 1).unwrap())
                    .unwrap();
            }
            let (pack, entries) = builder.finish(&crypter).unwrap();
            assert_eq!(entries[1].compression, Compression::Zstd);
            let sealed = |entry: &BlobEntry| {
                &pack[entry.offset as usize..(entry.offset + u64::from(entry.length)) as usize]
            };
            for (entry, chunk) in entries.iter().zip(&chunks) {
                let mut blob = BytesMut::from(sealed(entry));
                let raw = open_blob_in_place(&crypter, entry, &mut blob, "p", BlobCheck::Id);
                assert_eq!(&raw.unwrap()[..], &chunk[..]);
                let mut bad = BytesMut::from(sealed(entry));
                let middle = bad.len() / 2;
                bad[middle] ^= 1;
                let check = BlobCheck::Id;
                assert!(open_blob_in_place(&crypter, entry, &mut bad, "p", check).is_err());
            }
        }
    }
}
