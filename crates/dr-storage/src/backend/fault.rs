//! A wrapper that makes a backend fail on purpose, for tests of everything
//! built on top: transient failures by probability or schedule, added
//! latency, and "fail the next N calls".
//!
//! Injected failures are `Backend { transient: true }` errors. With
//! [`FaultOptions::ambiguous_writes`], half of the failures injected into
//! `put` and `delete` happen *after* the inner call succeeded, like a
//! connection dropped before the answer arrived: the write happened, the
//! caller sees an error.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::common::SplitMix64;
use crate::backend::{
    BackendCapabilities, InPlaceObject, ListPage, ObjectMeta, PutOptions, ReadBackend,
    UnfinishedWrite, WriteBackend,
};
use crate::error::{Error, Result};

/// The operations a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendOperation {
    /// [`ReadBackend::get`].
    Get,
    /// [`ReadBackend::head`].
    Head,
    /// [`ReadBackend::list_page`].
    List,
    /// [`WriteBackend::put`].
    Put,
    /// [`WriteBackend::delete`].
    Delete,
}

impl BackendOperation {
    fn index(self) -> usize {
        match self {
            BackendOperation::Get => 0,
            BackendOperation::Head => 1,
            BackendOperation::List => 2,
            BackendOperation::Put => 3,
            BackendOperation::Delete => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            BackendOperation::Get => "get",
            BackendOperation::Head => "head",
            BackendOperation::List => "list",
            BackendOperation::Put => "put",
            BackendOperation::Delete => "delete",
        }
    }
}

/// When an operation fails.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum FaultSchedule {
    /// Never.
    Never,
    /// Each call fails with this probability (0.0 to 1.0), drawn from the seeded PRNG.
    Probability(f64),
    /// Every n-th call of the operation fails (the n-th, the 2n-th, ...); 0 means never.
    EveryNth(u64),
}

/// What [`FaultInjection`] injects.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FaultOptions {
    /// Seed of the PRNG behind [`FaultSchedule::Probability`].
    pub seed: u64,
    /// The schedule of each [`BackendOperation`], in declaration order.
    pub schedules: [FaultSchedule; 5],
    /// Added to every call.
    pub latency: Duration,
    /// Whether half the injected write failures happen after the write.
    pub ambiguous_writes: bool,
}

impl FaultOptions {
    /// No faults, no latency, with this PRNG seed.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            schedules: [FaultSchedule::Never; 5],
            latency: Duration::ZERO,
            ambiguous_writes: false,
        }
    }

    /// The same schedule for every operation.
    pub fn all(mut self, schedule: FaultSchedule) -> Self {
        self.schedules = [schedule; 5];
        self
    }

    /// The schedule of one operation.
    pub fn operation(mut self, operation: BackendOperation, schedule: FaultSchedule) -> Self {
        self.schedules[operation.index()] = schedule;
        self
    }

    /// Latency added to every call.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets [`FaultOptions::ambiguous_writes`].
    pub fn ambiguous_writes(mut self, yes: bool) -> Self {
        self.ambiguous_writes = yes;
        self
    }
}

#[derive(Debug)]
struct State {
    rng: SplitMix64,
    calls: [u64; 5],
    fail_next: u64,
}

/// When to fail a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Before,
    After,
}

/// A backend wrapper that injects transient failures and latency.
pub struct FaultInjection<B> {
    inner: B,
    options: FaultOptions,
    state: Mutex<State>,
    injected: AtomicU64,
}

impl<B: fmt::Debug> fmt::Debug for FaultInjection<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjection")
            .field("inner", &self.inner)
            .field("options", &self.options)
            .field("injected", &self.injected())
            .finish_non_exhaustive()
    }
}

impl<B> FaultInjection<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, options: FaultOptions) -> Self {
        let state = State {
            rng: SplitMix64::new(options.seed),
            calls: [0; 5],
            fail_next: 0,
        };
        Self {
            inner,
            options,
            state: Mutex::new(state),
            injected: AtomicU64::new(0),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// Makes the next `n` calls (of any operation) fail, on top of the schedules.
    pub fn fail_next(&self, n: u64) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fail_next = n;
    }

    /// How many failures have been injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn decide(&self, operation: BackendOperation) -> Fault {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let i = operation.index();
        state.calls[i] += 1;
        let fail = if state.fail_next > 0 {
            state.fail_next -= 1;
            true
        } else {
            match self.options.schedules[i] {
                FaultSchedule::Never => false,
                FaultSchedule::Probability(p) => state.rng.next_f64() < p,
                FaultSchedule::EveryNth(n) => n > 0 && state.calls[i].is_multiple_of(n),
            }
        };
        if !fail {
            return Fault::None;
        }
        self.injected.fetch_add(1, Ordering::Relaxed);
        let write = matches!(operation, BackendOperation::Put | BackendOperation::Delete);
        if write && self.options.ambiguous_writes && state.rng.next_u64() & 1 == 1 {
            Fault::After
        } else {
            Fault::Before
        }
    }

    fn error(
        &self,
        location: String,
        operation: BackendOperation,
        key: &str,
        after: bool,
    ) -> Error {
        let what = if after {
            "injected fault after the call reached the store"
        } else {
            "injected fault"
        };
        Error::Backend {
            location,
            operation: operation.name(),
            key: key.to_owned(),
            transient: true,
            source: what.into(),
        }
    }

    async fn delay(&self) {
        if !self.options.latency.is_zero() {
            tokio::time::sleep(self.options.latency).await;
        }
    }
}

impl<B: ReadBackend> FaultInjection<B> {
    async fn run<T, F>(&self, operation: BackendOperation, key: &str, call: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send,
    {
        self.delay().await;
        match self.decide(operation) {
            Fault::None => call.await,
            Fault::Before => Err(self.error(self.inner.location(), operation, key, false)),
            Fault::After => {
                call.await?;
                Err(self.error(self.inner.location(), operation, key, true))
            }
        }
    }
}

// A wrapper forwards every method, defaulted ones too: a default left in
// place would silently change what the wrapped store does.
#[warn(clippy::missing_trait_methods)]
#[async_trait]
impl<B: ReadBackend> ReadBackend for FaultInjection<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        self.run(BackendOperation::Get, key, self.inner.get(key, range))
            .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.run(BackendOperation::Head, key, self.inner.head(key))
            .await
    }

    async fn list_page(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<ListPage> {
        self.run(
            BackendOperation::List,
            prefix,
            self.inner.list_page(prefix, token, limit),
        )
        .await
    }
}

// A wrapper forwards every method, defaulted ones too: a default left in
// place would silently change what the wrapped store does.
#[warn(clippy::missing_trait_methods)]
#[async_trait]
impl<B: WriteBackend> WriteBackend for FaultInjection<B> {
    fn capabilities(&self) -> BackendCapabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &str, data: Bytes, options: PutOptions) -> Result<()> {
        self.run(
            BackendOperation::Put,
            key,
            self.inner.put(key, data, options),
        )
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.run(BackendOperation::Delete, key, self.inner.delete(key))
            .await
    }

    async fn unfinished_writes(&self) -> Result<Vec<UnfinishedWrite>> {
        self.run(BackendOperation::List, "", self.inner.unfinished_writes())
            .await
    }

    async fn remove_unfinished(&self, write: &UnfinishedWrite) -> Result<()> {
        self.run(
            BackendOperation::Delete,
            &write.name,
            self.inner.remove_unfinished(write),
        )
        .await
    }

    async fn open_in_place(
        &self,
        key: &str,
        capacity: u64,
    ) -> Result<Option<Box<dyn InPlaceObject>>> {
        // Not a fault point: journal writes are tested through the directory itself.
        self.inner.open_in_place(key, capacity).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    #[tokio::test]
    async fn every_nth_and_fail_next() {
        let store = FaultInjection::new(
            MemoryBackend::new(),
            FaultOptions::new(1).operation(BackendOperation::Put, FaultSchedule::EveryNth(3)),
        );
        let mut failures = Vec::new();
        for i in 0..6 {
            failures.push(
                store
                    .put(&format!("k{i}"), Bytes::new(), PutOptions::OVERWRITE)
                    .await
                    .is_err(),
            );
        }
        assert_eq!(failures, [false, false, true, false, false, true]);
        assert_eq!(store.injected(), 2);

        store.fail_next(2);
        let err = store.head("k0").await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(store.get("k0", None).await.is_err());
        assert!(store.get("k0", None).await.is_ok());
        assert_eq!(store.injected(), 4);
    }

    #[tokio::test]
    async fn probability_is_reproducible_and_ambiguous_writes_land() {
        let run = |seed| async move {
            let store = FaultInjection::new(
                MemoryBackend::new(),
                FaultOptions::new(seed)
                    .all(FaultSchedule::Probability(0.5))
                    .ambiguous_writes(true),
            );
            let mut outcome = Vec::new();
            for i in 0..64 {
                let key = format!("k{i}");
                let failed = store
                    .put(&key, Bytes::from_static(b"x"), PutOptions::CREATE)
                    .await
                    .is_err();
                let landed = store.inner().head(&key).await.unwrap().is_some();
                outcome.push((failed, landed));
            }
            outcome
        };
        let a = run(42).await;
        assert_eq!(a, run(42).await);
        assert!(a.iter().any(|&(failed, _)| failed));
        assert!(a.iter().any(|&(failed, _)| !failed));
        // Some failures were ambiguous: reported as failed, yet stored.
        assert!(a.iter().any(|&(failed, landed)| failed && landed));
        assert!(a.iter().any(|&(failed, landed)| failed && !landed));
        assert!(a.iter().all(|&(failed, landed)| failed || landed));
    }
}
