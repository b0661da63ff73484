//! Where bytes live: one small trait, split by authority, with fs, memory and
//! S3 implementations and wrappers for retries and fault injection.
//!
//! The contract every backend keeps (and `tests/conformance.rs` checks):
//!
//! - Keys are `/`-separated relative paths of `[A-Za-z0-9._%-]` segments
//!   ([`check_key`]); a backend maps them to files or object names. (`%`
//!   escapes what else a component's name holds: `ComponentId::storage_path`.)
//! - `put` stores the whole object atomically: a reader sees the old object,
//!   the new one, or (for a new key) nothing, never a part.
//! - `put` with [`PutMode::Create`] fails with `AlreadyExists` if the key is
//!   taken, and of two racing creates exactly one wins.
//! - `get` of a missing key fails with `NotFound`; a range is clamped to the
//!   object's end, and a range starting past the end is empty.
//! - `list_page` returns keys under a prefix in ascending order, at most
//!   `limit` per page, with a token for the next page.
//! - `delete` of a missing key succeeds.

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use jiff::Timestamp;

use crate::error::{Error, Result};

/// An object's key and size, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// Objects in ascending key order.
    pub objects: Vec<ObjectMeta>,
    /// Where the next page starts, if there is one.
    pub next: Option<String>,
}

/// How `put` treats an existing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Replace it.
    Overwrite,
    /// Fail with `AlreadyExists`; of racing creates, exactly one wins.
    Create,
}

/// S3 Object Lock retention for a written object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectRetention {
    /// Governance (removable with a special permission) or compliance (by nobody).
    pub mode: RetentionMode,
    /// Until when the object may not be deleted or overwritten.
    pub until: Timestamp,
}

/// The S3 Object Lock modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionMode {
    /// Principals with `s3:BypassGovernanceRetention` may still delete.
    Governance,
    /// Nobody may delete until the date passes.
    Compliance,
}

/// Options of one `put`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOptions {
    /// What to do if the key exists.
    pub mode: PutMode,
    /// Object Lock retention, for backends that support it (see [`BackendCapabilities`]).
    pub retention: Option<ObjectRetention>,
}

impl PutOptions {
    /// Replace any existing object.
    pub const OVERWRITE: PutOptions = PutOptions {
        mode: PutMode::Overwrite,
        retention: None,
    };

    /// Only create; fail if the key exists.
    pub const CREATE: PutOptions = PutOptions {
        mode: PutMode::Create,
        retention: None,
    };

    /// The same options with Object Lock retention.
    pub const fn retain(mut self, retention: ObjectRetention) -> Self {
        self.retention = Some(retention);
        self
    }
}

/// What a backend can do beyond the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackendCapabilities {
    /// [`PutMode::Create`] is atomic against concurrent writers.
    pub atomic_create: bool,
    /// [`PutOptions::retention`] is honoured.
    pub object_lock: bool,
    /// [`WriteBackend::open_in_place`] opens objects for durable writes in
    /// place (a local directory): the store can keep segment journals.
    pub in_place_writes: bool,
}

/// A write that never finished: the temporary file of a write to a
/// directory whose process was killed, or an S3 multipart upload never
/// completed nor aborted. Invisible to `get` and `list`, but it takes
/// space (and, on S3, is billed) until removed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnfinishedWrite {
    /// The key it was writing, where the store knows it (S3); else the
    /// temporary file's path under the store's root.
    pub name: String,
    /// The multipart upload's id, for S3.
    pub upload_id: Option<String>,
    /// When it was started (S3) or last written to (a temporary file).
    pub started: Timestamp,
}

impl UnfinishedWrite {
    /// An unfinished write of `name`, started at `started`.
    pub fn new(name: impl Into<String>, started: Timestamp) -> Self {
        Self {
            name: name.into(),
            upload_id: None,
            started,
        }
    }

    /// The same, as the multipart upload `id`.
    #[must_use]
    pub fn with_upload_id(mut self, id: impl Into<String>) -> Self {
        self.upload_id = Some(id.into());
        self
    }
}

/// Reading a store.
#[async_trait]
pub trait ReadBackend: Send + Sync + fmt::Debug {
    /// Where the store is, for messages: `/backups`, `s3://bucket/prefix`, `memory`.
    fn location(&self) -> String;

    /// The object's bytes, or those in `range` (clamped to its end).
    ///
    /// # Errors
    /// `NotFound` if there is no such object; `Backend` if the store failed.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes>;

    /// The object's size, or `None` if it does not exist.
    ///
    /// # Errors
    /// `Backend` if the store failed.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// One page of the objects whose keys start with `prefix`, in key order,
    /// starting at `token` (from the previous page), at most `limit` long.
    ///
    /// # Errors
    /// `Backend` if the store failed.
    async fn list_page(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<ListPage>;
}

/// Writing a store.
#[async_trait]
pub trait WriteBackend: ReadBackend {
    /// What the store honours beyond the contract.
    fn capabilities(&self) -> BackendCapabilities;

    /// Stores `data` under `key`, atomically.
    ///
    /// # Errors
    /// `AlreadyExists` for a create of a taken key; `Retained` when Object
    /// Lock forbids an overwrite; `Backend` if the store failed.
    async fn put(&self, key: &str, data: Bytes, options: PutOptions) -> Result<()>;

    /// Removes the object; a missing one is not an error.
    ///
    /// # Errors
    /// `Retained` if Object Lock keeps it; `Backend` if the store failed.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Writes that were started and never finished (see [`UnfinishedWrite`]),
    /// those in progress included: the caller decides by their age which
    /// are abandoned. A store whose writes cannot be left half-done returns
    /// none.
    ///
    /// # Errors
    /// `Backend` if the store failed.
    async fn unfinished_writes(&self) -> Result<Vec<UnfinishedWrite>>;

    /// Removes an unfinished write's leftovers (deletes the temporary file,
    /// aborts the upload); one already gone is not an error.
    ///
    /// # Errors
    /// `Backend` if the store failed.
    async fn remove_unfinished(&self, write: &UnfinishedWrite) -> Result<()>;

    /// Opens `key` for durable writes in place, first creating it, atomically
    /// and durably, as `capacity` zero bytes if it does not exist: a journal
    /// whose appends cost one write and one data sync each, no new object.
    /// `Ok(None)` where the store has no such thing (object stores): the
    /// default, for a store whose [`BackendCapabilities::in_place_writes`]
    /// is false.
    ///
    /// The object breaks the put contract while open: readers see each write
    /// as it lands. Only what is built to be read that way (the repository's
    /// segment journals, which find their own end) is stored like this.
    ///
    /// # Errors
    /// `Backend` if the object could not be created or opened.
    async fn open_in_place(
        &self,
        key: &str,
        capacity: u64,
    ) -> Result<Option<Box<dyn InPlaceObject>>> {
        let _ = (key, capacity);
        Ok(None)
    }
}

/// An object open for durable writes in place (see
/// [`WriteBackend::open_in_place`]).
#[async_trait]
pub trait InPlaceObject: Send + Sync + fmt::Debug {
    /// Whether this open created the object: it holds nothing but zeros.
    fn created(&self) -> bool;

    /// Writes `data` at `offset`, growing the object if it reaches past the
    /// end, and makes it durable before returning.
    ///
    /// # Errors
    /// `Backend` if writing or syncing failed: any part of `data` may be there.
    async fn write_durably(&self, offset: u64, data: Bytes) -> Result<()>;
}

/// Conveniences over [`ReadBackend`].
#[async_trait]
pub trait ReadBackendExt: ReadBackend {
    /// The whole object.
    ///
    /// # Errors
    /// As [`ReadBackend::get`].
    async fn get_all(&self, key: &str) -> Result<Bytes> {
        self.get(key, None).await
    }

    /// Every object under `prefix`, following pages.
    ///
    /// # Errors
    /// As [`ReadBackend::list_page`].
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_page(prefix, token.as_deref(), 1000).await?;
            all.extend(page.objects);
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }
}

impl<T: ReadBackend + ?Sized> ReadBackendExt for T {}

/// Checks a key against the contract: non-empty `/`-separated segments of
/// `[A-Za-z0-9._%-]`, none of them `.` or `..`, at most 1024 bytes.
///
/// # Errors
/// [`Error::InvalidKey`] saying why.
pub fn check_key(key: &str) -> Result<()> {
    let err = |reason| Error::InvalidKey {
        key: key.to_owned(),
        reason,
    };
    if key.is_empty() || key.len() > 1024 {
        return Err(err("must be 1 to 1024 bytes"));
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(err("empty, '.' or '..' segment"));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'%'))
        {
            return Err(err(
                "only letters, digits, '.', '_', '-', '%' and '/' are allowed",
            ));
        }
    }
    Ok(())
}

/// Checks a listing prefix: empty, or a key prefix (it may end with `/`).
///
/// # Errors
/// [`Error::InvalidKey`] saying why.
pub fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_key(prefix.strip_suffix('/').unwrap_or(prefix))
}

/// The traits are used as `dyn`: this fails to compile if one stops being object-safe.
fn _assert_object_safe(_: &dyn ReadBackend, _: &dyn WriteBackend) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in [
            "config",
            "data/ab/abcdef",
            "locks/x-1.json",
            "a.b_c-d",
            "a%20b",
        ] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "../a", "a/./b", "a b", "a\\b", "ä"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
        assert!(check_prefix("").is_ok());
        assert!(check_prefix("data/").is_ok());
        assert!(check_prefix("data/ab").is_ok());
        assert!(check_prefix("/data").is_err());
    }
}

pub(crate) mod common;
pub(crate) mod fault;
pub(crate) mod fs;
pub(crate) mod memory;
pub(crate) mod read_only;
pub(crate) mod retry;
pub(crate) mod s3;

pub use self::fault::{BackendOperation, FaultInjection, FaultOptions, FaultSchedule};
pub use self::fs::FsBackend;
pub use self::memory::MemoryBackend;
pub use self::retry::{Retry, RetryOptions};
pub use self::s3::{S3Backend, S3Credentials, S3Options};
