//! A wrapper that retries transient failures with exponential backoff.
//!
//! Only errors whose [`Error::is_retryable`] is true are retried; everything
//! else (not found, already exists, access denied, corrupt) is returned at
//! once. The delay before retry `n` (1-based) is `base * 2^(n-1)`, capped at
//! `max_delay`, of which a random half is dropped ("equal jitter") so that
//! many clients failing together do not retry together.
//!
//! **Create after an ambiguous failure.** A transient error on
//! [`PutMode::Create`] may come after the store wrote the object (the answer
//! was lost). The retry then finds the key taken. `Retry` reads the object in
//! that case: if its bytes equal ours, the earlier attempt is taken to have
//! won and `put` succeeds; otherwise it fails with `AlreadyExists`. Two
//! writers creating the same key with *identical* bytes cannot be told apart
//! this way; for content-addressed keys that is harmless, for lock objects
//! put something unique (an owner id) in the body.

use std::ops::Range;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::backend::common::SplitMix64;
use crate::backend::{
    BackendCapabilities, InPlaceObject, ListPage, ObjectMeta, PutMode, PutOptions, ReadBackend,
    UnfinishedWrite, WriteBackend,
};
use crate::error::{Error, Result};

/// How [`Retry`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryOptions {
    /// Attempts in all, including the first; at least 1.
    pub max_attempts: u32,
    /// The delay before the first retry (before jitter).
    pub base_delay: Duration,
    /// The longest delay between attempts.
    pub max_delay: Duration,
    /// Seed of the jitter PRNG.
    pub seed: u64,
}

impl RetryOptions {
    /// `max_attempts` attempts, backing off from `base_delay` up to `max_delay`.
    pub fn new(max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            max_attempts,
            base_delay,
            max_delay,
            seed: 0x5EED,
        }
    }

    /// Sets [`RetryOptions::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// A backend wrapper that retries transient failures.
#[derive(Debug)]
pub struct Retry<B> {
    inner: B,
    options: RetryOptions,
    rng: Mutex<SplitMix64>,
}

impl<B> Retry<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, options: RetryOptions) -> Self {
        Self {
            inner,
            rng: Mutex::new(SplitMix64::new(options.seed)),
            options,
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The delay before retry number `retry` (1-based).
    fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .options
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        let capped = exp.min(self.options.max_delay);
        let half = capped / 2;
        let jitter = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_f64();
        half + half.mul_f64(jitter)
    }

    /// Runs `call` until it succeeds, fails for good, or attempts run out.
    /// `call` gets the attempt number (1-based).
    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
    {
        let mut attempt = 1;
        loop {
            match call(attempt).await {
                Err(err) if err.is_retryable() && attempt < self.options.max_attempts => {
                    let delay = self.delay(attempt);
                    tracing::warn!(
                        attempt,
                        error = %err,
                        ?delay,
                        "a store call failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

// A wrapper forwards every method, defaulted ones too: a default left in
// place would silently change what the wrapped store does.
#[warn(clippy::missing_trait_methods)]
#[async_trait]
impl<B: ReadBackend> ReadBackend for Retry<B> {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        self.retry(|_| self.inner.get(key, range.clone())).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.retry(|_| self.inner.head(key)).await
    }

    async fn list_page(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<ListPage> {
        self.retry(|_| self.inner.list_page(prefix, token, limit))
            .await
    }
}

// A wrapper forwards every method, defaulted ones too: a default left in
// place would silently change what the wrapped store does.
#[warn(clippy::missing_trait_methods)]
#[async_trait]
impl<B: WriteBackend> WriteBackend for Retry<B> {
    fn capabilities(&self) -> BackendCapabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &str, data: Bytes, options: PutOptions) -> Result<()> {
        let mut ambiguous = false;
        let result = self
            .retry(|attempt| {
                ambiguous = attempt > 1;
                self.inner.put(key, data.clone(), options)
            })
            .await;
        match result {
            Err(err @ Error::AlreadyExists { .. })
                if ambiguous && options.mode == PutMode::Create =>
            {
                // Did an earlier attempt that reported a transient failure write it?
                match self.get(key, None).await {
                    Ok(stored) if stored == data => Ok(()),
                    Ok(_) | Err(Error::NotFound { .. }) => Err(err),
                    Err(other) => Err(other),
                }
            }
            other => other,
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.retry(|_| self.inner.delete(key)).await
    }

    async fn unfinished_writes(&self) -> Result<Vec<UnfinishedWrite>> {
        self.retry(|_| self.inner.unfinished_writes()).await
    }

    async fn remove_unfinished(&self, write: &UnfinishedWrite) -> Result<()> {
        self.retry(|_| self.inner.remove_unfinished(write)).await
    }

    async fn open_in_place(
        &self,
        key: &str,
        capacity: u64,
    ) -> Result<Option<Box<dyn InPlaceObject>>> {
        self.inner.open_in_place(key, capacity).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{
        BackendOperation, FaultInjection, FaultOptions, FaultSchedule, MemoryBackend,
    };

    fn fast(attempts: u32) -> RetryOptions {
        RetryOptions::new(attempts, Duration::from_millis(1), Duration::from_millis(4))
    }

    #[tokio::test]
    async fn wrapped_directories_still_keep_journals_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = Retry::new(
            FaultInjection::new(
                crate::backend::FsBackend::new(dir.path()).unwrap(),
                FaultOptions::new(1),
            ),
            fast(2),
        );
        let journal = store
            .open_in_place("journal/x", 4096)
            .await
            .unwrap()
            .expect("a directory behind wrappers still writes in place");
        assert!(journal.created());
        assert!(store.capabilities().in_place_writes);
        journal
            .write_durably(0, Bytes::from_static(b"record"))
            .await
            .unwrap();
        assert_eq!(
            &store.get("journal/x", Some(0..6)).await.unwrap()[..],
            b"record"
        );
    }

    #[tokio::test]
    async fn each_retry_is_a_warning_naming_the_failure() {
        let events = dr_testkit::CapturedEvents::new();
        let _capture = events.capture();
        let store = Retry::new(
            FaultInjection::new(MemoryBackend::new(), FaultOptions::new(1)),
            fast(3),
        );
        store.inner().fail_next(2);
        store
            .put("k", Bytes::from_static(b"v"), PutOptions::OVERWRITE)
            .await
            .unwrap();
        let seen = events.lines();
        let retries: Vec<&String> = seen.iter().filter(|m| m.contains("retrying")).collect();
        assert_eq!(retries.len(), 2, "{seen:?}");
        assert!(
            retries
                .iter()
                .all(|m| m.starts_with("WARN") && m.contains("attempt=")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn retries_transient_failures_until_attempts_run_out() {
        let store = Retry::new(
            FaultInjection::new(MemoryBackend::new(), FaultOptions::new(1)),
            fast(3),
        );
        store.inner().fail_next(2);
        store
            .put("k", Bytes::from_static(b"v"), PutOptions::OVERWRITE)
            .await
            .unwrap();
        assert_eq!(store.inner().injected(), 2);

        store.inner().fail_next(3);
        let err = store.get("k", None).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(store.inner().injected(), 5);
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors() {
        let store = Retry::new(
            FaultInjection::new(MemoryBackend::new(), FaultOptions::new(1)),
            fast(5),
        );
        let err = store.get("missing", None).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        store
            .put("k", Bytes::from_static(b"a"), PutOptions::CREATE)
            .await
            .unwrap();
        let err = store
            .put("k", Bytes::from_static(b"a"), PutOptions::CREATE)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert_eq!(store.inner().injected(), 0);
    }

    #[tokio::test]
    async fn create_after_an_ambiguous_failure() {
        // Every put fails after it reached the store.
        let faults = FaultOptions::new(3)
            .operation(BackendOperation::Put, FaultSchedule::EveryNth(1))
            .ambiguous_writes(true);
        let memory = MemoryBackend::new();
        let store = Retry::new(FaultInjection::new(memory.clone(), faults), fast(2));
        // Loop until the PRNG picks "after" for the first attempt.
        let mut seen_ours = false;
        for i in 0..32 {
            let key = format!("k{i}");
            match store
                .put(&key, Bytes::from_static(b"ours"), PutOptions::CREATE)
                .await
            {
                Ok(()) => {
                    seen_ours = true;
                    assert_eq!(
                        memory.get(&key, None).await.unwrap(),
                        Bytes::from_static(b"ours")
                    );
                }
                Err(err) => assert!(
                    err.is_retryable() || matches!(err, Error::AlreadyExists { .. }),
                    "{err}"
                ),
            }
        }
        assert!(seen_ours, "no ambiguous create was recognised as ours");

        // Someone else's bytes under the key: the retry must not claim it.
        memory
            .put("theirs", Bytes::from_static(b"theirs"), PutOptions::CREATE)
            .await
            .unwrap();
        let store = Retry::new(
            FaultInjection::new(memory.clone(), FaultOptions::new(4)),
            fast(2),
        );
        store.inner().fail_next(1);
        let err = store
            .put("theirs", Bytes::from_static(b"ours"), PutOptions::CREATE)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert_eq!(
            memory.get("theirs", None).await.unwrap(),
            Bytes::from_static(b"theirs")
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let store = Retry::new(
            MemoryBackend::new(),
            RetryOptions::new(10, Duration::from_millis(100), Duration::from_secs(1)),
        );
        for retry in 1..10 {
            let full = Duration::from_millis(100 * 2u64.pow(retry - 1)).min(Duration::from_secs(1));
            let d = store.delay(retry);
            assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
        }
    }
}
