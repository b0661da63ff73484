//! `check`: the repository's structure, without reading the data. Every
//! index and snapshot file opens, every pack an index names exists and is
//! long enough, every chunk a snapshot refers to is indexed, with the
//! chunks adding up to each stream's size, and every snapshot another is
//! stored against exists.

use std::collections::{HashMap, HashSet};

use super::lock::Lock;
use super::verify::Damage;
use super::{Repository, snapshot_key};
use crate::backend::{ReadBackendExt, UnfinishedWrite};
use crate::crypto::parse_hex_id;
use crate::error::{Error, Result};

/// What [`Repository::check`] looked at and what it found wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Snapshot files read.
    pub snapshots: usize,
    /// Index files read.
    pub index_files: usize,
    /// Packs in the store.
    pub packs: usize,
    /// Packs no index names: left by backups that did not finish; the next
    /// prune removes them. Not a problem.
    pub unindexed_packs: usize,
    /// Archive segments in the store.
    pub segments: usize,
    /// Segment journals in the store (segments in progress).
    pub journals: usize,
    /// Writes that never finished (temporary files of killed writes,
    /// incomplete multipart uploads), those in progress included; prune
    /// removes those older than its grace period. Not a problem. Not
    /// looked for when the repository is read-only.
    pub unfinished_writes: Vec<UnfinishedWrite>,
    /// Every problem found, by object. Empty means the repository is sound.
    pub problems: Vec<Damage>,
}

impl CheckReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Repository {
    /// Checks the repository's structure (see the module docs); reads no
    /// pack data (that is [`Repository::verify`]). Problems are collected,
    /// not fatal. Holds a shared lock, so no prune changes what is checked.
    ///
    /// # Errors
    /// Only when the store itself fails or the lock cannot be taken.
    pub async fn check(&self) -> Result<CheckReport> {
        let lock = self.read_lock().await?;
        let report = self.check_locked().await;
        Lock::release_read(lock).await?;
        if let Ok(report) = &report {
            for problem in &report.problems {
                tracing::warn!(store = %self.inner.backend.location(), object = %problem.object, reason = %problem.reason, "problem");
            }
            tracing::info!(
                store = %self.inner.backend.location(),
                snapshots = report.snapshots,
                packs = report.packs,
                problems = report.problems.len(),
                unfinished_writes = report.unfinished_writes.len(),
                "checked"
            );
        }
        report
    }

    async fn check_locked(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let mut problem = |object: String, reason: String| {
            report.problems.push(Damage { object, reason });
        };
        let sizes = self.stored_packs().await?;
        let mut indexed_packs = HashSet::new();
        // Blob id -> raw length, for adding up streams.
        let mut blobs = HashMap::new();
        let index_files = self.inner.backend.list("index/").await?;
        let index_count = index_files.len();
        for object in index_files {
            let file = match self.index_file(&object.key).await {
                Ok(file) => file,
                Err(e) if is_damage(&e) => {
                    problem(object.key, e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            for pack in file.packs {
                let Some(&size) = sizes.get(&pack.id) else {
                    problem(
                        format!("pack {}", pack.id),
                        format!("named by {} but missing from the store", object.key),
                    );
                    continue;
                };
                for blob in &pack.blobs {
                    if blob.offset + u64::from(blob.length) > size {
                        problem(
                            format!("pack {}", pack.id),
                            format!(
                                "{size} bytes long, but {} places a blob at {}..{}",
                                object.key,
                                blob.offset,
                                blob.offset + u64::from(blob.length)
                            ),
                        );
                        break;
                    }
                    blobs.insert(blob.id, blob.raw_length);
                }
                indexed_packs.insert(pack.id);
            }
        }
        let snapshots = self.inner.backend.list("snapshots/").await?;
        let snapshot_count = snapshots.len();
        let committed: HashSet<String> = snapshots.iter().map(|o| o.key.clone()).collect();
        for object in snapshots {
            let Some(id) = object
                .key
                .strip_prefix("snapshots/")
                .and_then(|s| s.parse().ok())
            else {
                problem(object.key, "not a snapshot id".into());
                continue;
            };
            let file = match self.snapshot_file(&id).await {
                Ok(file) => file,
                Err(e) if is_damage(&e) => {
                    problem(object.key, e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(base) = file.manifest.depends_on
                && !committed.contains(&snapshot_key(&base))
            {
                problem(
                    object.key.clone(),
                    format!("stored against snapshot {base}, which is missing"),
                );
            }
            for entry in &file.manifest.streams {
                let what = format!("stream {} of snapshot {id}", entry.name);
                let Some(chunks) = file.chunks.get(&entry.name) else {
                    problem(
                        what,
                        format!("{} lists no chunks for it", snapshot_key(&id)),
                    );
                    continue;
                };
                let mut total = 0u64;
                let mut complete = true;
                for text in chunks {
                    match parse_hex_id(text).and_then(|chunk| blobs.get(&chunk)) {
                        Some(&raw) => total += u64::from(raw),
                        None => {
                            problem(what.clone(), format!("chunk {text} is in no index"));
                            complete = false;
                        }
                    }
                }
                if complete && total != entry.size {
                    problem(
                        what,
                        format!(
                            "its chunks add up to {total} bytes, its manifest says {}",
                            entry.size
                        ),
                    );
                }
            }
        }
        report.snapshots = snapshot_count;
        report.index_files = index_count;
        report.packs = sizes.len();
        report.unindexed_packs = sizes.keys().filter(|p| !indexed_packs.contains(*p)).count();
        report.segments = self.inner.backend.list("archive/").await?.len();
        report.journals = self.inner.backend.list("journal/").await?.len();
        if !self.inner.read_only {
            report.unfinished_writes = self.inner.backend.unfinished_writes().await?;
        }
        Ok(report)
    }
}

/// Whether an error reading a repository file is damage to that file rather
/// than a failure of the store.
pub(super) fn is_damage(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupt { .. } | Error::UnsupportedVersion { .. } | Error::NotFound { .. }
    )
}
