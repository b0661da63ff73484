//! What a repository occupies in its store, by kind of object: what an
//! operator's dashboard and a capacity alert read.

use super::Repository;
use crate::backend::ReadBackendExt;
use crate::error::Result;

/// What a repository occupies in its store, from one listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Packs: the snapshots' deduplicated, compressed and sealed data.
    pub packs: u64,
    /// Their bytes.
    pub pack_bytes: u64,
    /// Archive segments (WAL files and their pieces) of every component.
    pub archive_objects: u64,
    /// Their bytes, with the segment journals in progress.
    pub archive_bytes: u64,
    /// Everything else: snapshot files, indexes, keys, locks, leases and
    /// coverage records.
    pub metadata_bytes: u64,
}

impl Usage {
    /// Every byte the repository occupies.
    pub fn total_bytes(&self) -> u64 {
        self.pack_bytes + self.archive_bytes + self.metadata_bytes
    }
}

impl Repository {
    /// What the repository occupies, by kind of object, from one listing of
    /// the store; objects of writes that have not finished count too.
    ///
    /// # Errors
    /// The store could not be listed.
    pub async fn usage(&self) -> Result<Usage> {
        let mut usage = Usage::default();
        for object in self.inner.backend.list("").await? {
            if object.key.starts_with("data/") {
                usage.packs += 1;
                usage.pack_bytes += object.size;
            } else if object.key.starts_with("archive/") {
                usage.archive_objects += 1;
                usage.archive_bytes += object.size;
            } else if object.key.starts_with("journal/") {
                usage.archive_bytes += object.size;
            } else {
                usage.metadata_bytes += object.size;
            }
        }
        Ok(usage)
    }
}
