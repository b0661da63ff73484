//! `verify`: re-read stored data and name every damaged object.

use sha2::{Digest, Sha256};

use super::{Repository, join_error};
use crate::backend::ReadBackendExt;
use crate::crypto::{Crypter, hex};
use crate::error::Result;
use crate::pack::{open_blob, read_header};

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
    /// Every damaged object, by name.
    pub damaged: Vec<Damage>,
}

impl Repository {
    /// Reads every pack in full and checks it: its name is the SHA-256 of its
    /// bytes, its header opens, and every blob decrypts, decompresses and
    /// hashes to its id. Damage is collected, not fatal, so the report names
    /// every damaged object.
    ///
    /// # Errors
    /// Only when the store itself fails (listing or reading).
    pub async fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        for object in self.inner.backend.list("data/").await? {
            let bytes = self.inner.backend.get_all(&object.key).await?;
            let crypter = self.inner.crypter.clone();
            let key = object.key.clone();
            let (blobs, damaged) =
                tokio::task::spawn_blocking(move || verify_pack(&crypter, &key, &bytes))
                    .await
                    .map_err(join_error)?;
            report.packs += 1;
            report.blobs += blobs;
            report.damaged.extend(damaged);
        }
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
    if hex(&Sha256::digest(bytes)) != name {
        found.push(damage(
            key,
            "SHA-256 of the pack differs from its name".into(),
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
        if let Err(e) = open_blob(crypter, entry, &bytes[start..end], name) {
            found.push(damage(&format!("{key}#{}", hex(&entry.id)), e.to_string()));
        }
    }
    (entries.len(), found)
}
