//! [`BaseBackupDetails`]: what a base backup records about its cluster, read
//! back by the restore, the WAL retention and the verification.

use std::collections::BTreeMap;

use dr_core::{Lsn, Manifest, SnapshotDetails};
use serde::{Deserialize, Serialize};

use crate::wal::WalSegmentSize;

/// What a base backup snapshot records about the cluster it was taken from,
/// in its manifest (see [`SnapshotDetails`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BaseBackupDetails {
    /// Where the backup's WAL starts (the checkpoint's redo point).
    pub start_lsn: Lsn,
    /// The timeline of the start position.
    pub start_timeline: u32,
    /// Where the WAL must be replayed to for the backup to be consistent.
    pub end_lsn: Lsn,
    /// The timeline of the end position.
    pub end_timeline: u32,
    /// The cluster's database system identifier.
    pub system_identifier: u64,
    /// The cluster's WAL segment size.
    pub wal_segment_size: WalSegmentSize,
    /// The server version, as the server reports it (`server_version`).
    pub server_version: String,
    /// Each tablespace's archive name (`<oid>.tar`) → its location on the
    /// server backed up.
    pub tablespaces: BTreeMap<String, String>,
}

impl SnapshotDetails for BaseBackupDetails {
    const KEY: &'static str = "postgres.base_backup";
}

impl BaseBackupDetails {
    /// The details base backup `manifest` records.
    ///
    /// # Errors
    /// [`dr_core::Error::Corrupt`] if it records none (it is not a base
    /// backup) or they do not read.
    pub fn of(manifest: &Manifest) -> dr_core::Result<Self> {
        manifest.details()?.ok_or_else(|| {
            dr_core::Error::corrupt(
                format!("snapshot {}", manifest.id),
                format!("not a base backup: it records no {} details", Self::KEY),
            )
        })
    }
}
