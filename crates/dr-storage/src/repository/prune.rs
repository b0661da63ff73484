//! `prune`: remove the data no snapshot refers to.
//!
//! Under an exclusive lock (so no backup is between `begin` and `commit`):
//!
//! 1. read every snapshot file: the chunks they use;
//! 2. read every index file and list the packs;
//! 3. plan: packs no index names (left by backups that died) and packs
//!    with no used blob go; packs with more unused bytes than allowed are
//!    repacked (their used blobs copied, still sealed, into new packs);
//! 4. write the new packs, then one new index covering every pack that stays,
//!    then delete the old index files, then the packs.
//!
//! Dying at any step leaves every used chunk indexed in a pack that exists:
//! deletions come only after what replaces them is written. Objects that
//! Object Lock still retains are left in place and reported, and an index
//! file that cannot be deleted keeps the packs it names.

use std::collections::{HashMap, HashSet};

use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;

use super::check::is_damage;
use super::lock::{STALE_AFTER, Unlock};
use super::{
    INDEX_CONTEXT, IndexFile, IndexedPack, REPOSITORY_FORMAT, Repository, join_error, pack_key,
};
use crate::backend::{ReadBackendExt, UnfinishedWrite};
use crate::crypto::{Id, content_name, hex, parse_hex_id};
use crate::error::{Error, Result};
use crate::pack::{BlobCheck, BlobEntry, PackBuilder, SealedBlob, open_blob};

/// How [`Repository::prune`] trades work for space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PruneOptions {
    max_unused: f64,
    dry_run: bool,
    unfinished_after: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            max_unused: 0.1,
            dry_run: false,
            unfinished_after: STALE_AFTER,
        }
    }
}

impl PruneOptions {
    /// Repack a pack once more than `fraction` (0 to 1) of its bytes are
    /// unused; 0 repacks every pack with any unused blob, 1 never repacks
    /// (only wholly unused packs are deleted). The default is 0.1.
    ///
    /// # Errors
    /// `InvalidInput` unless `0 <= fraction <= 1`.
    pub fn max_unused(mut self, fraction: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Error::InvalidInput {
                what: "prune max_unused".into(),
                reason: format!("{fraction} is not in [0, 1]"),
            });
        }
        self.max_unused = fraction;
        Ok(self)
    }

    /// Remove writes that never finished (temporary files of killed writes,
    /// incomplete multipart uploads) once they were started this long
    /// before the prune took its lock; the default is 30 minutes, the age
    /// at which a lock is stale. Backups, forgets and prunes write under
    /// locks that the prune's exclusive lock waits out, so nothing of
    /// theirs is in progress; archive segments are written without a lock,
    /// and this is their margin.
    #[must_use]
    pub fn unfinished_after(mut self, age: Duration) -> Self {
        self.unfinished_after = age;
        self
    }

    /// Only work out and report what would be done.
    #[must_use]
    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }
}

/// What [`Repository::prune`] did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Snapshots whose chunks were kept.
    pub snapshots: usize,
    /// Packs kept as they are.
    pub packs_kept: usize,
    /// Packs deleted outright (nothing in them used, or no index names them).
    pub packs_deleted: usize,
    /// Packs whose used blobs were copied into new packs before deletion.
    pub packs_repacked: usize,
    /// New packs written by repacking.
    pub packs_written: usize,
    /// Bytes of packs deleted (including repacked ones).
    pub bytes_deleted: u64,
    /// Bytes of new packs written.
    pub bytes_written: u64,
    /// Stale lock objects removed.
    pub stale_locks_removed: usize,
    /// Writes that never finished, removed (or, in a dry run, to remove).
    pub unfinished_removed: Vec<UnfinishedWrite>,
    /// Objects prune would have deleted but Object Lock still retains.
    pub retained: Vec<String>,
}

/// What to do with one stored pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Repack,
    Delete,
}

impl Repository {
    /// Removes the data no snapshot refers to (see the module docs). Waits
    /// for running backups to commit (up to the repository's lock wait).
    ///
    /// # Errors
    /// The lock could not be taken; the store failed; a snapshot or index
    /// file is damaged, or a chunk a snapshot uses is in no index (prune then
    /// deletes nothing: run [`Repository::check`]).
    pub async fn prune(&self, options: &PruneOptions) -> Result<PruneReport> {
        let taken_at = Timestamp::now();
        let lock = self.lock(true, self.lock_wait).await?;
        let result = self
            .prune_locked(options, taken_at)
            .await
            .map(|mut report| {
                report.stale_locks_removed += lock.stale_removed;
                report
            });
        let released = lock.release().await;
        // Other handles' indexes notice the replaced index files on their next load.
        let reloaded = self.load_index().await;
        let report = result?;
        released?;
        reloaded?;
        tracing::info!(
            store = %self.inner.backend.location(),
            dry_run = options.dry_run,
            packs_deleted = report.packs_deleted,
            packs_repacked = report.packs_repacked,
            bytes_deleted = report.bytes_deleted,
            retained = report.retained.len(),
            unfinished_removed = report.unfinished_removed.len(),
            stale_locks_removed = report.stale_locks_removed,
            "pruned"
        );
        Ok(report)
    }

    async fn prune_locked(
        &self,
        options: &PruneOptions,
        taken_at: Timestamp,
    ) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let unfinished_before = taken_at
            .checked_sub(
                jiff::SignedDuration::try_from(options.unfinished_after).map_err(|_| {
                    Error::InvalidInput {
                        what: "prune unfinished_after".into(),
                        reason: "too long".into(),
                    }
                })?,
            )
            .map_err(|e| Error::InvalidInput {
                what: "prune unfinished_after".into(),
                reason: e.to_string(),
            })?;
        report.unfinished_removed = self
            .inner
            .backend
            .unfinished_writes()
            .await?
            .into_iter()
            .filter(|w| w.started < unfinished_before)
            .collect();
        let used = self.used_chunks(&mut report).await?;
        let index_keys = self.index_keys().await?;
        // Every pack the index files name, with its blobs; and where each used
        // blob will be found (the first indexed copy that exists).
        let stored = self.stored_packs().await?;
        let mut packs: HashMap<String, Vec<BlobEntry>> = HashMap::new();
        let mut index_packs: HashMap<String, Vec<String>> = HashMap::new();
        let mut home: HashMap<Id, String> = HashMap::new();
        for key in &index_keys {
            let file = self.index_file(key).await?;
            let names = index_packs.entry(key.clone()).or_default();
            for pack in file.packs {
                names.push(pack.id.clone());
                if !stored.contains_key(&pack.id) {
                    continue;
                }
                for blob in &pack.blobs {
                    if used.contains(&blob.id) {
                        home.entry(blob.id).or_insert_with(|| pack.id.clone());
                    }
                }
                packs.entry(pack.id).or_insert(pack.blobs);
            }
        }
        if let Some(missing) = used.iter().find(|id| !home.contains_key(*id)) {
            return Err(Error::corrupt(
                format!("chunk {}", hex(missing)),
                "a snapshot uses it but no stored pack holds it; prune deleted nothing \
                 (run check to find what is damaged)",
            ));
        }

        let mut fates: HashMap<String, Fate> = HashMap::new();
        for (name, &size) in &stored {
            let fate = match packs.get(name) {
                None => Fate::Delete,
                Some(blobs) => {
                    let live: u64 = blobs
                        .iter()
                        .filter(|b| home.get(&b.id) == Some(name))
                        .map(|b| u64::from(b.length))
                        .sum();
                    let total = size.max(1) as f64;
                    if live == 0 {
                        Fate::Delete
                    } else if (size - live.min(size)) as f64 / total > options.max_unused {
                        Fate::Repack
                    } else {
                        Fate::Keep
                    }
                }
            };
            fates.insert(name.clone(), fate);
        }
        for (name, fate) in &fates {
            match fate {
                Fate::Keep => report.packs_kept += 1,
                Fate::Repack => report.packs_repacked += 1,
                Fate::Delete => report.packs_deleted += 1,
            }
            if *fate != Fate::Keep {
                report.bytes_deleted += stored[name];
            }
        }
        if options.dry_run {
            return Ok(report);
        }

        // 1. New packs holding the used blobs of the packs being repacked.
        let mut new_packs = Vec::new();
        let mut builder = PackBuilder::default();
        let mut repack: Vec<&String> = fates
            .iter()
            .filter(|(_, f)| **f == Fate::Repack)
            .map(|(n, _)| n)
            .collect();
        repack.sort();
        for name in repack {
            let bytes = self.inner.backend.get_all(&pack_key(name)).await?;
            for blob in &packs[name] {
                if home.get(&blob.id) != Some(name) {
                    continue;
                }
                let sealed = self.checked_blob(name, blob, &bytes).await?;
                builder.add(&sealed)?;
                if builder.len() >= self.inner.config.pack_size as usize {
                    let full = std::mem::take(&mut builder);
                    new_packs.push(self.store_pack(full, &mut report).await?);
                }
            }
        }
        if !builder.is_empty() {
            new_packs.push(self.store_pack(builder, &mut report).await?);
        }

        // 2. One index for every pack that stays.
        let mut kept: Vec<IndexedPack> = fates
            .iter()
            .filter(|(_, f)| **f == Fate::Keep)
            .map(|(name, _)| IndexedPack {
                id: name.clone(),
                blobs: packs[name].clone(),
            })
            .collect();
        kept.sort_by(|a, b| a.id.cmp(&b.id));
        kept.extend(new_packs);
        let mut new_index = None;
        if !kept.is_empty() {
            let index = IndexFile {
                format: REPOSITORY_FORMAT,
                packs: kept,
            };
            let bytes = self.encode(&index, INDEX_CONTEXT)?;
            let key = format!("index/{}", content_name(&bytes));
            // Unencrypted, the same content has the same name: then it is already stored.
            if !index_keys.contains(&key) {
                self.inner
                    .backend
                    .put(&key, bytes.into(), self.put_options()?)
                    .await?;
            }
            new_index = Some(key);
        }

        // 3. The old index files; one that is retained keeps its packs.
        let mut protected: HashSet<&String> = HashSet::new();
        for key in index_keys.iter().filter(|k| Some(*k) != new_index.as_ref()) {
            match self.inner.backend.delete(key).await {
                Ok(()) => {}
                Err(Error::Retained { .. }) => {
                    report.retained.push(key.clone());
                    protected.extend(&index_packs[key]);
                }
                Err(e) => return Err(e),
            }
        }

        // 4. The packs.
        let mut doomed: Vec<&String> = fates
            .iter()
            .filter(|(name, f)| **f != Fate::Keep && !protected.contains(name))
            .map(|(n, _)| n)
            .collect();
        doomed.sort();
        for name in doomed {
            let key = pack_key(name);
            match self.inner.backend.delete(&key).await {
                Ok(()) => {}
                Err(Error::Retained { .. }) => report.retained.push(key),
                Err(e) => return Err(e),
            }
        }
        // 5. Writes that never finished, and locks found stale since ours was taken.
        for write in &report.unfinished_removed {
            self.inner.backend.remove_unfinished(write).await?;
            tracing::info!(store = %self.inner.backend.location(), write = %write.name, started = %write.started, "removed a write that never finished");
        }
        report.stale_locks_removed = self.unlock(Unlock::Stale).await?.len();
        Ok(report)
    }

    /// Every chunk id any snapshot uses. A damaged snapshot file stops the
    /// prune: what it refers to cannot be known, so nothing may be deleted.
    async fn used_chunks(&self, report: &mut PruneReport) -> Result<HashSet<Id>> {
        let mut used = HashSet::new();
        for object in self.inner.backend.list("snapshots/").await? {
            let id = object
                .key
                .strip_prefix("snapshots/")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Error::corrupt(&object.key, "not a snapshot id"))?;
            let file = self.snapshot_file(&id).await.map_err(|e| {
                if is_damage(&e) {
                    Error::corrupt(
                        &object.key,
                        format!("{e}; prune deleted nothing (run check)"),
                    )
                } else {
                    e
                }
            })?;
            for text in file.chunks.values().flatten() {
                let chunk = parse_hex_id(text)
                    .ok_or_else(|| Error::corrupt(&object.key, format!("bad chunk id {text:?}")))?;
                used.insert(chunk);
            }
            report.snapshots += 1;
        }
        Ok(used)
    }

    /// A blob cut from a pack being repacked, opened once to make sure that
    /// what is copied is sound.
    async fn checked_blob(
        &self,
        pack: &str,
        blob: &BlobEntry,
        bytes: &Bytes,
    ) -> Result<SealedBlob> {
        let start = usize::try_from(blob.offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(blob.length as usize);
        if end > bytes.len() {
            return Err(Error::corrupt(
                format!("pack {pack}"),
                "truncated: a blob extends past its end",
            ));
        }
        let sealed = bytes.slice(start..end);
        let crypter = self.inner.crypter.clone();
        let entry = *blob;
        let name = pack.to_owned();
        let check = sealed.clone();
        tokio::task::spawn_blocking(move || {
            open_blob(&crypter, &entry, &check, &name, BlobCheck::Id)
        })
        .await
        .map_err(join_error)??;
        Ok(SealedBlob {
            id: blob.id,
            data: sealed,
            raw_length: blob.raw_length,
            compression: blob.compression,
        })
    }

    async fn store_pack(
        &self,
        builder: PackBuilder,
        report: &mut PruneReport,
    ) -> Result<IndexedPack> {
        let crypter = self.inner.crypter.clone();
        let (bytes, blobs) = tokio::task::spawn_blocking(move || builder.finish(&crypter))
            .await
            .map_err(join_error)??;
        let id = content_name(&bytes);
        report.packs_written += 1;
        report.bytes_written += bytes.len() as u64;
        match self
            .inner
            .backend
            .put(&pack_key(&id), bytes, self.put_options()?)
            .await
        {
            Ok(()) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(IndexedPack { id, blobs })
    }
}
