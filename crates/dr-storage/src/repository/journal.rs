//! Segment journals: a segment's in-progress form on a store that writes in
//! place (a local directory), for archivers that must make every few
//! kilobytes durable at once (synchronous WAL archiving).
//!
//! A journal is one object, `journal/<component>/<name>`, created as zeros
//! with room for the whole segment. Each append writes one *record* at the
//! next 512-byte boundary and syncs it (see [`WriteBackend::open_in_place`]):
//!
//! ```text
//! "DRKJ" | version (u8) | 3 zero bytes | sealed length (u32 LE) | CRC-32C (u32 LE) | sealed
//! ```
//!
//! The CRC-32C covers the first 12 header bytes and the sealed bytes;
//! `sealed` is the record's plaintext, `start (u64 LE)` then the segment
//! plaintext of its bytes (see `archive`), sealed with the journal's key as
//! context, so a record cannot be moved to another journal unnoticed.
//!
//! Reading walks the records from offset 0. Where the next one is not whole
//! (no magic, a CRC that does not match, cut off by the end), the journal
//! ends: that is free space, or a record a crash cut short, which was never
//! reported durable. A record whose CRC matches but which does not open is
//! damage, and so is any whole record found after the end: each record is
//! synced before the next is written, so only the last one can be torn.
//!
//! Journals are offered only where the store writes in place
//! ([`BackendCapabilities::in_place_writes`]): [`Repository::segment_journals`]
//! hands out a [`RepositoryJournals`], dr-core's [`JournalSink`] and
//! [`JournalSource`].
//!
//! [`WriteBackend::open_in_place`]: crate::WriteBackend::open_in_place
//! [`BackendCapabilities::in_place_writes`]: crate::BackendCapabilities::in_place_writes

use async_trait::async_trait;
use bytes::Bytes;
use dr_core::{
    ComponentId, JournalRecord, JournalSink, JournalSource, SegmentJournal, SegmentName,
};

use super::archive::{parse_segment_plain, segment_plain};
use super::{Repository, join_error};
use crate::backend::{InPlaceObject, ReadBackendExt};
use crate::crypto::Crypter;
use crate::error::{Error, Result};

const MAGIC: [u8; 4] = *b"DRKJ";
/// The record format this build writes and reads.
const VERSION: u8 = 1;
const HEADER_LEN: usize = 16;
/// Records start at multiples of this: the sector size, so a torn write
/// never damages the record before, and the free space can be searched.
const ALIGN: usize = 512;
const JOURNAL_CONTEXT: &[u8] = b"drkit segment journal\0";
/// Records up to this size are sealed on the async task; larger ones on a
/// blocking thread.
const INLINE_SEAL_MAX: usize = 64 * 1024;

pub(super) fn journal_key(component: &ComponentId, name: &SegmentName) -> String {
    format!("journal/{}/{name}", component.storage_path())
}

fn context(key: &str) -> Vec<u8> {
    [JOURNAL_CONTEXT, key.as_bytes()].concat()
}

/// One record, padded to [`ALIGN`].
fn encode_record(
    crypter: &Crypter,
    key: &str,
    level: i32,
    start: u64,
    data: &[u8],
) -> Result<Vec<u8>> {
    let (_, plain) = segment_plain(data, level, &start.to_le_bytes())?;
    let sealed = crypter.seal(&plain, &context(key))?;
    let len = u32::try_from(sealed.len()).map_err(|_| Error::InvalidInput {
        what: format!("a record of journal {key}"),
        reason: "larger than 4 GiB".into(),
    })?;
    let mut record = Vec::with_capacity((HEADER_LEN + sealed.len()).next_multiple_of(ALIGN));
    record.extend_from_slice(&MAGIC);
    record.push(VERSION);
    record.extend_from_slice(&[0; 3]);
    record.extend_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&record), &sealed);
    record.extend_from_slice(&crc.to_le_bytes());
    record.extend_from_slice(&sealed);
    record.resize(record.len().next_multiple_of(ALIGN), 0);
    Ok(record)
}

/// The whole record at `pos`, and where the next one may start; `None` if
/// there is none (free space, or a record cut short).
fn record_at(
    crypter: &Crypter,
    key: &str,
    bytes: &[u8],
    pos: usize,
) -> Result<Option<(JournalRecord, usize)>> {
    let Some(header) = bytes.get(pos..pos + HEADER_LEN) else {
        return Ok(None);
    };
    if header[..4] != MAGIC {
        return Ok(None);
    }
    let len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    let crc = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    let body_start = pos + HEADER_LEN;
    let Some(sealed) = bytes.get(body_start..body_start + len) else {
        return Ok(None);
    };
    if crc32c::crc32c_append(crc32c::crc32c(&header[..12]), sealed) != crc {
        return Ok(None);
    }
    let what = format!("the record at offset {pos} of {key}");
    if header[4] != VERSION {
        return Err(Error::UnsupportedVersion {
            object: what,
            found: u32::from(header[4]),
            supported: VERSION.to_string(),
        });
    }
    let plain = crypter.open(sealed, &context(key), &what)?;
    let Some((start, segment)) = plain.split_first_chunk::<8>() else {
        return Err(Error::corrupt(what, "no start offset"));
    };
    let (data, _) = parse_segment_plain(segment, &what)?;
    let record = JournalRecord {
        start: u64::from_le_bytes(*start),
        data,
    };
    Ok(Some((record, (body_start + len).next_multiple_of(ALIGN))))
}

/// The records of a journal's bytes, and the offset where the next goes.
fn parse_journal(
    crypter: &Crypter,
    key: &str,
    bytes: &[u8],
) -> Result<(Vec<JournalRecord>, usize)> {
    let mut records = Vec::new();
    let mut pos = 0;
    while let Some((record, next)) = record_at(crypter, key, bytes, pos)? {
        records.push(record);
        pos = next;
    }
    let mut later = pos + ALIGN;
    while later + HEADER_LEN <= bytes.len() {
        if bytes[later..later + 4] == MAGIC && record_at(crypter, key, bytes, later)?.is_some() {
            return Err(Error::corrupt(
                key,
                format!(
                    "the record at offset {pos} is damaged, and a whole one follows at {later}"
                ),
            ));
        }
        later += ALIGN;
    }
    Ok((records, pos))
}

/// A journal of the repository, open for appending.
struct RepositoryJournal {
    object: Box<dyn InPlaceObject>,
    crypter: Crypter,
    key: String,
    level: i32,
    /// Where the next record goes.
    next: u64,
    /// An append failed: what is on disk is unknown, so nothing more is
    /// appended (the journal is reopened instead, which finds its end).
    failed: bool,
}

#[async_trait]
impl SegmentJournal for RepositoryJournal {
    async fn append(&mut self, start: u64, data: &[u8]) -> dr_core::Result<()> {
        if self.failed {
            return Err(Error::InvalidInput {
                what: format!("journal {}", self.key),
                reason: "an earlier append failed; reopen the journal".into(),
            }
            .into());
        }
        let record = if data.len() <= INLINE_SEAL_MAX {
            encode_record(&self.crypter, &self.key, self.level, start, data)?
        } else {
            let (crypter, key, level, data) = (
                self.crypter.clone(),
                self.key.clone(),
                self.level,
                data.to_vec(),
            );
            tokio::task::spawn_blocking(move || encode_record(&crypter, &key, level, start, &data))
                .await
                .map_err(join_error)??
        };
        let len = record.len() as u64;
        if let Err(error) = self
            .object
            .write_durably(self.next, Bytes::from(record))
            .await
        {
            self.failed = true;
            return Err(error.into());
        }
        self.next += len;
        Ok(())
    }
}

/// The segment journals of a [`Repository`] whose store writes in place
/// (see [`Repository::segment_journals`]): dr-core's [`JournalSink`] and
/// [`JournalSource`], beside the repository's archive.
#[derive(Debug, Clone)]
pub struct RepositoryJournals {
    repo: Repository,
}

impl Repository {
    /// The repository's segment journals, where its store can keep them:
    /// a store that writes in place ([`BackendCapabilities::in_place_writes`],
    /// a local directory). `None` on an object store, where an archiver
    /// stores its pieces as segments instead.
    ///
    /// A repository opened read-only cannot ask its store, and always has
    /// them: reading finds whatever journals the store holds (none on an
    /// object store), and opening or removing one is refused like every
    /// other write.
    ///
    /// [`BackendCapabilities::in_place_writes`]: crate::BackendCapabilities::in_place_writes
    pub fn segment_journals(&self) -> Option<RepositoryJournals> {
        (self.inner.read_only || self.inner.backend.capabilities().in_place_writes)
            .then(|| RepositoryJournals { repo: self.clone() })
    }

    async fn open_journal_of(
        &self,
        component: &ComponentId,
        name: &SegmentName,
        capacity: u64,
    ) -> Result<Box<dyn SegmentJournal>> {
        let key = journal_key(component, name);
        let Some(object) = self.inner.backend.open_in_place(&key, capacity).await? else {
            return Err(Error::Unsupported {
                location: self.inner.backend.location(),
                reason: "the store cannot write in place, so it keeps no segment journals".into(),
            });
        };
        let next = if object.created() {
            0
        } else {
            self.parse_journal_at(&key).await?.1
        };
        Ok(Box::new(RepositoryJournal {
            object,
            crypter: self.inner.crypter.clone(),
            key,
            level: self.inner.config.compression_level,
            next: next as u64,
            failed: false,
        }))
    }

    /// Reads and parses the journal under `key`.
    pub(super) async fn parse_journal_at(&self, key: &str) -> Result<(Vec<JournalRecord>, usize)> {
        let bytes = self.inner.backend.get_all(key).await?;
        let crypter = self.inner.crypter.clone();
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || parse_journal(&crypter, &key, &bytes))
            .await
            .map_err(join_error)?
    }

    async fn journal_names(
        &self,
        component: &ComponentId,
        prefix: &str,
    ) -> Result<Vec<SegmentName>> {
        let base = format!("journal/{}/", component.storage_path());
        let mut names = Vec::new();
        for object in self.inner.backend.list(&format!("{base}{prefix}")).await? {
            if let Some(Ok(name)) = object
                .key
                .strip_prefix(&base)
                .map(str::parse::<SegmentName>)
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

#[async_trait]
impl JournalSink for RepositoryJournals {
    async fn open_journal(
        &self,
        component: &ComponentId,
        name: &SegmentName,
        capacity: u64,
    ) -> dr_core::Result<Box<dyn SegmentJournal>> {
        Ok(self.repo.open_journal_of(component, name, capacity).await?)
    }

    async fn remove_journal(
        &self,
        component: &ComponentId,
        name: &SegmentName,
    ) -> dr_core::Result<()> {
        Ok(self
            .repo
            .inner
            .backend
            .delete(&journal_key(component, name))
            .await?)
    }
}

#[async_trait]
impl JournalSource for RepositoryJournals {
    async fn journals(
        &self,
        component: &ComponentId,
        prefix: &str,
    ) -> dr_core::Result<Vec<SegmentName>> {
        Ok(self.repo.journal_names(component, prefix).await?)
    }

    async fn read_journal(
        &self,
        component: &ComponentId,
        name: &SegmentName,
    ) -> dr_core::Result<Vec<JournalRecord>> {
        match self
            .repo
            .parse_journal_at(&journal_key(component, name))
            .await
        {
            Ok((records, _)) => Ok(records),
            Err(Error::NotFound { .. }) => Err(dr_core::Error::not_found(format!(
                "the journal of segment {name} of {component}"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Cipher, MasterKey};

    const KEY: &str = "journal/postgres/main/000000010000000000000003";

    fn crypters() -> Vec<Crypter> {
        vec![
            Crypter::Plain,
            Crypter::Keyed(MasterKey::generate().unwrap(), Cipher::Aes256GcmDerived),
        ]
    }

    /// A journal of `capacity` zeros holding `records`.
    fn journal(crypter: &Crypter, records: &[(u64, &[u8])], capacity: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for &(start, data) in records {
            bytes.extend(encode_record(crypter, KEY, 1, start, data).unwrap());
        }
        bytes.resize(bytes.len().max(capacity), 0);
        bytes
    }

    /// Bytes that do not compress.
    fn data(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn records_read_back_in_order_and_the_end_is_found() {
        for crypter in crypters() {
            let (a, b) = (data(1, 700), data(2, 20_000));
            let bytes = journal(&crypter, &[(0, &a), (700, &b)], 64 * 1024);
            let (records, end) = parse_journal(&crypter, KEY, &bytes).unwrap();
            assert_eq!(
                records,
                vec![
                    JournalRecord {
                        start: 0,
                        data: a.clone()
                    },
                    JournalRecord {
                        start: 700,
                        data: b.clone()
                    },
                ]
            );
            assert_eq!(end % ALIGN, 0);
            assert_eq!(end, journal(&crypter, &[(0, &a), (700, &b)], 0).len());

            let (none, zero) = parse_journal(&crypter, KEY, &vec![0; 8192]).unwrap();
            assert!(none.is_empty());
            assert_eq!(zero, 0);
        }
    }

    #[test]
    fn a_torn_last_record_is_left_out() {
        for crypter in crypters() {
            let (a, b) = (data(1, 3000), data(2, 9000));
            let whole = journal(&crypter, &[(0, &a), (3000, &b)], 0);
            let first_end = journal(&crypter, &[(0, &a)], 0).len();
            // Cut anywhere in the second record, the rest still zeros; or
            // its sectors half garbage.
            let second_end = first_end + HEADER_LEN + 9000;
            for cut in [
                first_end + 1,
                first_end + HEADER_LEN,
                first_end + 4000,
                second_end,
            ] {
                let mut torn = whole[..cut].to_vec();
                torn.resize(whole.len() + 4096, 0);
                let (records, end) = parse_journal(&crypter, KEY, &torn).unwrap();
                assert_eq!(records.len(), 1, "cut at {cut}");
                assert_eq!(end, first_end);
            }
            let mut garbage = whole.clone();
            garbage[first_end + 600..first_end + 1100].fill(0xA5);
            assert_eq!(parse_journal(&crypter, KEY, &garbage).unwrap().0.len(), 1);
        }
    }

    #[test]
    fn damage_before_a_whole_record_is_an_error() {
        for crypter in crypters() {
            let (a, b) = (data(1, 3000), data(2, 900));
            let mut bytes = journal(&crypter, &[(0, &a), (3000, &b)], 16 * 1024);
            bytes[HEADER_LEN + 100] ^= 1;
            let err = parse_journal(&crypter, KEY, &bytes).unwrap_err();
            assert!(err.to_string().contains("whole one follows"), "{err}");
        }
    }

    #[test]
    fn a_whole_record_that_does_not_open_is_an_error() {
        let crypter = Crypter::Keyed(MasterKey::generate().unwrap(), Cipher::Aes256GcmDerived);
        // Moved from another journal: its CRC holds, its context does not.
        let moved = encode_record(
            &crypter,
            "journal/postgres/main/000000010000000000000004",
            1,
            0,
            &data(1, 500),
        )
        .unwrap();
        assert!(matches!(
            parse_journal(&crypter, KEY, &moved),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn unknown_versions_are_refused() {
        let crypter = Crypter::Plain;
        let mut bytes = journal(&crypter, &[(0, &data(1, 100))], 0);
        bytes[4] = 9;
        let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let sealed = &bytes[HEADER_LEN..HEADER_LEN + len];
        let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..12]), sealed);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            parse_journal(&crypter, KEY, &bytes),
            Err(Error::UnsupportedVersion { found: 9, .. })
        ));
    }
}
