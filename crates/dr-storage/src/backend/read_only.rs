//! [`ReadOnly`]: a store opened with credentials that may only read, as a
//! restore or a verify in an incident should be. Every write fails with
//! `Unsupported`, naming what was attempted; nothing is ever probed.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    BackendCapabilities, InPlaceObject, ListPage, ObjectMeta, PutOptions, ReadBackend,
    UnfinishedWrite, WriteBackend,
};
use crate::error::{Error, Result};

/// A read-only store behind the [`WriteBackend`] the repository holds.
#[derive(Debug, Clone)]
pub(crate) struct ReadOnly {
    inner: Arc<dyn ReadBackend>,
}

impl ReadOnly {
    pub(crate) fn new(inner: Arc<dyn ReadBackend>) -> Self {
        Self { inner }
    }

    fn refuse(&self, operation: &str, key: &str) -> Error {
        Error::Unsupported {
            location: self.inner.location(),
            reason: format!(
                "the repository was opened read-only: {operation} of {key} is not allowed \
                 (open it with write access to back up, forget, prune or unlock)"
            ),
        }
    }
}

// A wrapper forwards every method, defaulted ones too: a default left in
// place would silently change what the wrapped store does.
#[warn(clippy::missing_trait_methods)]
#[async_trait]
impl ReadBackend for ReadOnly {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        self.inner.get(key, range).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }

    async fn list_page(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<ListPage> {
        self.inner.list_page(prefix, token, limit).await
    }
}

// A wrapper forwards every method, defaulted ones too: a default left in
// place would silently change what the wrapped store does.
#[warn(clippy::missing_trait_methods)]
#[async_trait]
impl WriteBackend for ReadOnly {
    fn capabilities(&self) -> BackendCapabilities {
        BackendCapabilities::default()
    }

    async fn put(&self, key: &str, _data: Bytes, _options: PutOptions) -> Result<()> {
        Err(self.refuse("a write", key))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        Err(self.refuse("a delete", key))
    }

    async fn unfinished_writes(&self) -> Result<Vec<UnfinishedWrite>> {
        // Listing them may need more than read access (S3's
        // ListMultipartUploads), and they are there to be removed.
        Err(self.refuse("listing unfinished writes", "the store"))
    }

    async fn remove_unfinished(&self, write: &UnfinishedWrite) -> Result<()> {
        Err(self.refuse("removing an unfinished write", &write.name))
    }

    async fn open_in_place(
        &self,
        key: &str,
        _capacity: u64,
    ) -> Result<Option<Box<dyn InPlaceObject>>> {
        Err(self.refuse("a write in place", key))
    }
}
