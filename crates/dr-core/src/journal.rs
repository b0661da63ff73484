//! Segment journals: an archive segment's in-progress form, on a store that
//! can append in place more cheaply than it stores a new object (a local
//! directory).
//!
//! An opt-in ability, split by authority like the archive itself: a store
//! that keeps journals offers a [`JournalSink`] to write them and a
//! [`JournalSource`] to read them, beside its [`ArchiveSink`] and
//! [`ArchiveSource`]. A store that cannot (an object store) offers neither,
//! and an archiver writes its segments' pieces as segments instead. Records
//! appended to a [`SegmentJournal`] are each durable after one write and one
//! data sync, which is what synchronous archiving needs every few kilobytes.
//!
//! [`ArchiveSink`]: crate::ArchiveSink
//! [`ArchiveSource`]: crate::ArchiveSource

use async_trait::async_trait;

use crate::error::Result;
use crate::id::{ComponentId, SegmentName};

/// Writing segment journals: where a store appends in place.
#[async_trait]
pub trait JournalSink: Send + Sync {
    /// Opens the journal of segment `name` of `component`'s archive for
    /// appending, creating it (with room for `capacity` bytes, allocated
    /// now) if there is none; an existing journal is appended to after its
    /// last whole record.
    ///
    /// A journal is a segment's in-progress form: once the whole segment is
    /// stored, [`JournalSink::remove_journal`] drops it.
    ///
    /// # Errors
    /// The journal could not be created or read.
    async fn open_journal(
        &self,
        component: &ComponentId,
        name: &SegmentName,
        capacity: u64,
    ) -> Result<Box<dyn SegmentJournal>>;

    /// Removes segment `name`'s journal; a missing one is not an error.
    ///
    /// # Errors
    /// The store failed.
    async fn remove_journal(&self, component: &ComponentId, name: &SegmentName) -> Result<()>;
}

/// A segment's journal, open for appending (see [`JournalSink::open_journal`]).
#[async_trait]
pub trait SegmentJournal: Send + Sync {
    /// Appends `data`, the segment's bytes from offset `start`. The record is
    /// durable when this returns; a record cut short by a crash is never read
    /// back (see [`JournalSource::read_journal`]).
    ///
    /// # Errors
    /// Writing or syncing failed: the record may or may not be there.
    async fn append(&mut self, start: u64, data: &[u8]) -> Result<()>;
}

/// One record of a segment's journal: bytes at an offset of the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// The offset of `data`'s first byte within the segment.
    pub start: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

impl JournalRecord {
    /// The offset just after the record's last byte.
    pub fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }
}

/// Reading segment journals back.
#[async_trait]
pub trait JournalSource: Send + Sync {
    /// The names of the segments of `component` that have a journal (see
    /// [`JournalSink::open_journal`]) and start with `prefix`, in no
    /// promised order.
    ///
    /// # Errors
    /// The store failed.
    async fn journals(&self, component: &ComponentId, prefix: &str) -> Result<Vec<SegmentName>>;

    /// The records of segment `name`'s journal, in the order they were
    /// appended. A last record cut short by a crash while it was written (so
    /// never reported durable) is left out; damage anywhere else is an error.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) if there is no such
    /// journal; [`Error::Corrupt`](crate::Error::Corrupt) if a record that
    /// was complete is damaged; the store failed.
    async fn read_journal(
        &self,
        component: &ComponentId,
        name: &SegmentName,
    ) -> Result<Vec<JournalRecord>>;
}

/// The traits are used as `dyn`: this fails to compile if one stops being object-safe.
fn _assert_object_safe(_: &dyn JournalSink, _: &dyn JournalSource, _: &dyn SegmentJournal) {}
