//! Repository locks. Writers hold a shared lock from `begin` to `commit`;
//! operations that delete (forget, prune) hold an exclusive one. A lock is a
//! sealed object `locks/lock-<random>` naming its holder, rewritten under a
//! new name every few minutes while held.
//!
//! Taking a lock: write our lock object, then list the others. Two processes
//! racing both write before they list, so at least one sees the other and
//! backs off; neither can proceed unseen. A lock that has not been refreshed
//! for [`STALE_AFTER`], or whose holder is a dead process on this host, is
//! stale and ignored.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::Repository;
use crate::backend::{PutOptions, ReadBackendExt};
use crate::crypto::{fill_random, hex};
use crate::error::{Error, Result};

const LOCK_CONTEXT: &[u8] = b"drkit lock";
const LOCK_PREFIX: &str = "locks/lock-";
/// How often a held lock is rewritten.
const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// A lock not refreshed for this long is abandoned.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How long to sleep between attempts while waiting for a lock.
const RETRY_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    exclusive: bool,
    host: String,
    pid: u32,
    refreshed_at: Timestamp,
}

impl LockFile {
    fn describe(&self, now: Timestamp) -> String {
        let age = now.duration_since(self.refreshed_at).as_secs().max(0);
        format!(
            "{} lock of process {} on {} (refreshed {age}s ago)",
            if self.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            self.pid,
            self.host
        )
    }

    fn is_stale(&self, now: Timestamp, host: &str) -> bool {
        let age = now.duration_since(self.refreshed_at);
        age.as_secs() > STALE_AFTER.as_secs() as i64 || (self.host == host && !alive(self.pid))
    }
}

/// Whether a process of this host is running; `true` where that cannot be told.
fn alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

fn new_lock_key() -> Result<String> {
    let mut nonce = [0u8; 16];
    fill_random(&mut nonce)?;
    Ok(format!("{LOCK_PREFIX}{}", hex(&nonce)))
}

#[derive(Debug)]
struct Held {
    key: String,
    file: LockFile,
    released: bool,
}

/// A held repository lock. Release it with [`Lock::release`]; dropping it
/// releases it in the background.
#[derive(Debug)]
pub(crate) struct Lock {
    repo: Repository,
    held: Arc<Mutex<Held>>,
    refresher: JoinHandle<()>,
}

impl Repository {
    /// Takes a lock, trying until `wait` has passed.
    pub(crate) async fn lock(&self, exclusive: bool, wait: Duration) -> Result<Lock> {
        let host = hostname();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let key = new_lock_key()?;
            let file = LockFile {
                exclusive,
                host: host.clone(),
                pid: std::process::id(),
                refreshed_at: Timestamp::now(),
            };
            self.write_lock(&key, &file).await?;
            let conflict = match self.conflicting_lock(&key, exclusive, &host).await {
                Ok(conflict) => conflict,
                Err(e) => {
                    self.inner.backend.delete(&key).await.ok();
                    return Err(e);
                }
            };
            let Some(holder) = conflict else {
                return Ok(Lock::start(self.clone(), key, file));
            };
            self.inner.backend.delete(&key).await?;
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Locked {
                    location: self.inner.backend.location(),
                    reason: format!("the repository is locked: {holder}"),
                });
            }
            let mut jitter = [0u8; 1];
            fill_random(&mut jitter)?;
            tokio::time::sleep(RETRY_EVERY + Duration::from_millis(u64::from(jitter[0]))).await;
        }
    }

    async fn write_lock(&self, key: &str, file: &LockFile) -> Result<()> {
        let bytes = self.encode(file, LOCK_CONTEXT)?;
        self.inner
            .backend
            .put(key, bytes.into(), PutOptions::CREATE)
            .await
    }

    /// The first live lock other than `own` that conflicts with a lock of our kind.
    async fn conflicting_lock(
        &self,
        own: &str,
        exclusive: bool,
        host: &str,
    ) -> Result<Option<String>> {
        let now = Timestamp::now();
        for (key, file) in self.other_locks(own).await? {
            if (exclusive || file.exclusive) && !file.is_stale(now, host) {
                return Ok(Some(format!("{} ({key})", file.describe(now))));
            }
        }
        Ok(None)
    }

    /// Every lock object but `own` that still exists and opens.
    async fn other_locks(&self, own: &str) -> Result<Vec<(String, LockFile)>> {
        let mut out = Vec::new();
        for object in self.inner.backend.list(LOCK_PREFIX).await? {
            if object.key == own {
                continue;
            }
            let raw = match self.inner.backend.get_all(&object.key).await {
                Ok(raw) => raw,
                // Released or refreshed under a new name since the listing.
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let file: LockFile = self.decode(&raw, LOCK_CONTEXT, &object.key)?;
            out.push((object.key, file));
        }
        Ok(out)
    }

    /// Deletes the locks of processes that are gone (stale locks), and
    /// returns how many. Live locks are left alone.
    ///
    /// # Errors
    /// The store failed or a lock object is damaged.
    pub async fn remove_stale_locks(&self) -> Result<usize> {
        let host = hostname();
        let now = Timestamp::now();
        let mut removed = 0;
        for (key, file) in self.other_locks("").await? {
            if file.is_stale(now, &host) {
                self.inner.backend.delete(&key).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl Lock {
    fn start(repo: Repository, key: String, file: LockFile) -> Self {
        let held = Arc::new(Mutex::new(Held {
            key,
            file,
            released: false,
        }));
        let refresher = tokio::spawn(refresh(repo.clone(), held.clone()));
        Self {
            repo,
            held,
            refresher,
        }
    }

    /// Fails if the lock went unrefreshed so long that others may have
    /// taken it for abandoned: work done under it must not be committed.
    pub(crate) fn ensure_held(&self) -> Result<()> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let age = Timestamp::now().duration_since(held.file.refreshed_at);
        // Leave a margin: a prune on another host judges with its own clock.
        if age.as_secs() > (STALE_AFTER - REFRESH_EVERY).as_secs() as i64 {
            return Err(Error::Locked {
                location: self.repo.inner.backend.location(),
                reason: format!(
                    "this process's lock {} could not be refreshed for {}s; \
                     others may have taken it for abandoned",
                    held.key,
                    age.as_secs()
                ),
            });
        }
        Ok(())
    }

    /// Deletes the lock object.
    pub(crate) async fn release(self) -> Result<()> {
        self.refresher.abort();
        let key = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.released = true;
            held.key.clone()
        };
        self.repo.inner.backend.delete(&key).await
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.refresher.abort();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.released {
            return;
        }
        held.released = true;
        let key = held.key.clone();
        let backend = self.repo.inner.backend.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { backend.delete(&key).await.ok() });
        }
    }
}

/// Rewrites the lock under a new name every [`REFRESH_EVERY`], so its age
/// shows that its holder lives. A failed refresh is retried at the next tick.
async fn refresh(repo: Repository, held: Arc<Mutex<Held>>) {
    loop {
        tokio::time::sleep(REFRESH_EVERY).await;
        let (old, mut file) = {
            let held = held.lock().unwrap_or_else(|p| p.into_inner());
            (held.key.clone(), held.file.clone())
        };
        file.refreshed_at = Timestamp::now();
        let Ok(key) = new_lock_key() else { continue };
        if repo.write_lock(&key, &file).await.is_err() {
            continue;
        }
        {
            let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
            held.key = key;
            held.file = file;
        }
        repo.inner.backend.delete(&old).await.ok();
    }
}
