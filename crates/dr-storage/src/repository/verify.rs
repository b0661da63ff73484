//! `verify`: re-read stored data and name every damaged object.

use std::collections::HashMap;

use dr_core::{Progress, ProgressSink};

use super::archive::decode_segment;
use super::lock::Lock;
use super::{Repository, join_error};
use crate::backend::{ObjectMeta, ReadBackendExt};
use crate::crypto::{Crypter, content_name, fill_random, hex};
use crate::error::{Error, Result};
use crate::pack::{BlobCheck, open_blob, read_header};

/// One damaged object found by [`Repository::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The object (a pack key, or a blob within one).
    pub object: String,
    /// What check failed.
    pub reason: String,
}

/// What [`Repository::verify`] read and what it found damaged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Packs read in full.
    pub packs: usize,
    /// Blobs decrypted, decompressed and re-hashed.
    pub blobs: usize,
    /// Archive segments read and re-hashed.
    pub segments: usize,
    /// Segment journals read, every record opened and re-hashed.
    pub journals: usize,
    /// Every damaged object, by name.
    pub damaged: Vec<Damage>,
}

/// How much of the stored data [`Repository::verify_with`] reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerifyOptions {
    fraction: f64,
}

impl VerifyOptions {
    /// Read everything.
    pub const ALL: VerifyOptions = VerifyOptions { fraction: 1.0 };

    /// Read a random `fraction` (0 to 1) of the packs and of the archive
    /// segments, at least one of each if there are any; repeated runs cover
    /// the whole repository over time.
    ///
    /// # Errors
    /// `InvalidInput` unless `0 < fraction <= 1`.
    pub fn fraction(fraction: f64) -> Result<Self> {
        if fraction > 0.0 && fraction <= 1.0 {
            Ok(Self { fraction })
        } else {
            Err(Error::InvalidInput {
                what: "verify fraction".into(),
                reason: format!("{fraction} is not in (0, 1]"),
            })
        }
    }

    /// Chooses which of `keys` to read.
    fn choose(self, mut keys: Vec<String>) -> Result<Vec<String>> {
        if self.fraction >= 1.0 || keys.is_empty() {
            return Ok(keys);
        }
        let wanted = ((keys.len() as f64 * self.fraction).ceil() as usize).clamp(1, keys.len());
        // A partial Fisher-Yates shuffle puts a uniform random sample first.
        for i in 0..wanted {
            let mut r = [0u8; 8];
            fill_random(&mut r)?;
            let j = i + (u64::from_le_bytes(r) % (keys.len() - i) as u64) as usize;
            keys.swap(i, j);
        }
        keys.truncate(wanted);
        keys.sort();
        Ok(keys)
    }
}

impl Repository {
    /// Reads every pack and archive segment in full and checks it: see
    /// [`Repository::verify_with`].
    ///
    /// # Errors
    /// Only when the store itself fails (listing or reading).
    pub async fn verify(&self) -> Result<VerifyReport> {
        self.verify_with(VerifyOptions::ALL).await
    }

    /// Reads packs and archive segments (all, or a random fraction) and
    /// checks them: a pack's name is the BLAKE3 of its bytes, its header
    /// opens, and every blob decrypts, decompresses and hashes to its id; a
    /// segment opens and matches its SHA-256. Damage is collected, not fatal,
    /// so the report names every damaged object. Holds a shared lock (unless
    /// the repository is read-only), so no prune deletes what is being read.
    ///
    /// # Errors
    /// Only when the store itself fails (listing or reading), or the lock
    /// cannot be taken.
    pub async fn verify_with(&self, options: VerifyOptions) -> Result<VerifyReport> {
        self.verify_reporting(options, None).await
    }

    /// As [`Repository::verify_with`], reporting the bytes read so far to
    /// `progress` (step `verify`) against the total of what was chosen.
    ///
    /// # Errors
    /// As [`Repository::verify_with`].
    pub async fn verify_reporting(
        &self,
        options: VerifyOptions,
        progress: Option<&dyn ProgressSink>,
    ) -> Result<VerifyReport> {
        let lock = self.read_lock().await?;
        let mut report = VerifyReport::default();
        let listed = |objects: Vec<ObjectMeta>| -> Result<Vec<(String, u64)>> {
            let sizes: HashMap<String, u64> =
                objects.iter().map(|o| (o.key.clone(), o.size)).collect();
            let chosen = options.choose(objects.into_iter().map(|o| o.key).collect())?;
            Ok(chosen
                .into_iter()
                .map(|key| {
                    let size = sizes.get(&key).copied().unwrap_or(0);
                    (key, size)
                })
                .collect())
        };
        let packs = listed(self.inner.backend.list("data/").await?)?;
        let segments = listed(self.inner.backend.list("archive/").await?)?;
        let journals = listed(self.inner.backend.list("journal/").await?)?;
        let total = [&packs, &segments, &journals]
            .into_iter()
            .flatten()
            .map(|(_, size)| size)
            .sum();
        let mut done = 0;
        let mut read = |size: u64| {
            done += size;
            if let Some(progress) = progress {
                progress.report(&Progress::new("verify", done, Some(total)));
            }
        };
        for (key, size) in packs {
            let bytes = self.inner.backend.get_all(&key).await?;
            let crypter = self.inner.crypter.clone();
            let (blobs, damaged) =
                tokio::task::spawn_blocking(move || verify_pack(&crypter, &key, &bytes))
                    .await
                    .map_err(join_error)?;
            report.packs += 1;
            report.blobs += blobs;
            report.damaged.extend(damaged);
            read(size);
        }
        for (key, size) in segments {
            let stored = self.inner.backend.get_all(&key).await?;
            let crypter = self.inner.crypter.clone();
            let what = key.clone();
            let decoded =
                tokio::task::spawn_blocking(move || decode_segment(&crypter, &stored, &what))
                    .await
                    .map_err(join_error)?;
            report.segments += 1;
            if let Err(e) = decoded {
                report.damaged.push(Damage {
                    object: key,
                    reason: e.to_string(),
                });
            }
            read(size);
        }
        for (key, size) in journals {
            report.journals += 1;
            read(size);
            match self.parse_journal_at(&key).await {
                Ok(_) => {}
                Err(e) if super::check::is_damage(&e) => report.damaged.push(Damage {
                    object: key,
                    reason: e.to_string(),
                }),
                Err(e) => {
                    Lock::release_read(lock).await.ok();
                    return Err(e);
                }
            }
        }
        Lock::release_read(lock).await?;
        for damage in &report.damaged {
            tracing::warn!(store = %self.inner.backend.location(), object = %damage.object, reason = %damage.reason, "damaged");
        }
        tracing::info!(
            store = %self.inner.backend.location(),
            packs = report.packs,
            blobs = report.blobs,
            segments = report.segments,
            damaged = report.damaged.len(),
            "verified"
        );
        Ok(report)
    }
}

fn verify_pack(crypter: &Crypter, key: &str, bytes: &[u8]) -> (usize, Vec<Damage>) {
    let damage = |object: &str, reason: String| Damage {
        object: object.to_owned(),
        reason,
    };
    let name = key.rsplit('/').next().unwrap_or(key);
    let mut found = Vec::new();
    if content_name(bytes) != name {
        found.push(damage(
            key,
            "BLAKE3 of the pack differs from its name".into(),
        ));
    }
    let entries = match read_header(crypter, bytes, name) {
        Ok(entries) => entries,
        Err(e) => {
            found.push(damage(key, e.to_string()));
            return (0, found);
        }
    };
    for entry in &entries {
        let start = entry.offset as usize;
        let end = start + entry.length as usize;
        if let Err(e) = open_blob(crypter, entry, &bytes[start..end], name, BlobCheck::Id) {
            found.push(damage(&format!("{key}#{}", hex(&entry.id)), e.to_string()));
        }
    }
    (entries.len(), found)
}
