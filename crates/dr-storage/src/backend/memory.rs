//! A backend in process memory, for tests and dry runs.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::common::{check_limit, clamp_range, page_of};
use crate::backend::{
    BackendCapabilities, ListPage, ObjectMeta, PutMode, PutOptions, ReadBackend, UnfinishedWrite,
    WriteBackend, check_key, check_prefix,
};
use crate::error::{Error, Result};

/// Objects in a `BTreeMap` behind a mutex.
///
/// Clones share the same map, so a test can keep a handle while a wrapper or
/// a repository owns another. ObjectRetention is not supported
/// ([`BackendCapabilities::object_lock`] is `false`) and is ignored.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    objects: Arc<Mutex<BTreeMap<String, Bytes>>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<String, Bytes>> {
        // No code path panics while holding the lock, but a poisoned map is
        // still consistent: every mutation is a single insert or remove.
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn not_found(&self, key: &str) -> Error {
        Error::NotFound {
            location: self.location(),
            key: key.to_owned(),
        }
    }
}

#[async_trait]
impl ReadBackend for MemoryBackend {
    fn location(&self) -> String {
        "memory".to_owned()
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        check_key(key)?;
        let data = self
            .map()
            .get(key)
            .cloned()
            .ok_or_else(|| self.not_found(key))?;
        Ok(match range {
            None => data,
            Some(range) => {
                let range = clamp_range(range, data.len() as u64);
                // Both ends are at most `data.len()`, which fits in usize.
                data.slice(
                    usize::try_from(range.start).unwrap_or(0)
                        ..usize::try_from(range.end).unwrap_or(0),
                )
            }
        })
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        check_key(key)?;
        Ok(self.map().get(key).map(|data| ObjectMeta {
            key: key.to_owned(),
            size: data.len() as u64,
        }))
    }

    async fn list_page(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<ListPage> {
        check_prefix(prefix)?;
        check_limit(limit)?;
        let map = self.map();
        let start = match token {
            Some(token) if token >= prefix => Bound::Excluded(token),
            _ => Bound::Included(prefix),
        };
        let objects: Vec<ObjectMeta> = map
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit.saturating_add(1))
            .map(|(key, data)| ObjectMeta {
                key: key.clone(),
                size: data.len() as u64,
            })
            .collect();
        Ok(page_of(objects, limit))
    }
}

#[async_trait]
impl WriteBackend for MemoryBackend {
    fn capabilities(&self) -> BackendCapabilities {
        BackendCapabilities {
            atomic_create: true,
            object_lock: false,
            in_place_writes: false,
        }
    }

    async fn put(&self, key: &str, data: Bytes, options: PutOptions) -> Result<()> {
        check_key(key)?;
        let mut map = self.map();
        if options.mode == PutMode::Create && map.contains_key(key) {
            return Err(Error::AlreadyExists {
                location: self.location(),
                key: key.to_owned(),
            });
        }
        map.insert(key.to_owned(), data);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.map().remove(key);
        Ok(())
    }

    async fn unfinished_writes(&self) -> Result<Vec<UnfinishedWrite>> {
        // A put here is one insert under a mutex: it cannot be left half-done.
        Ok(Vec::new())
    }

    async fn remove_unfinished(&self, _write: &UnfinishedWrite) -> Result<()> {
        Ok(())
    }
}
