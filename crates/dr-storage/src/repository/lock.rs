//! Repository locks. Writers hold a shared lock from `begin` to `commit`;
//! operations that delete (forget, prune) hold an exclusive one. A lock is a
//! sealed object `locks/lock-<random>` naming its holder, rewritten under a
//! new name every few minutes while held.
//!
//! Taking a lock: write our lock object, then list the others. Two processes
//! racing both write before they list, so at least one sees the other and
//! backs off; neither can proceed unseen.
//!
//! A lock is **stale** when it has not been refreshed for [`STALE_AFTER`], or
//! when its holder is known to be gone. Gone is decided only where it can be
//! known: the holder ran on this host, in this boot, in this PID namespace
//! (containers of one pod share a host name but not a PID namespace, and see
//! each other's processes neither in `/proc` nor by PID), and no process with
//! its PID and start time runs. Anywhere else only the age counts. Stale
//! locks are deleted by whoever finds them, before that finder goes on.
//!
//! A holder checks, just before it commits anything that refers to what it
//! wrote under the lock, that its lock object is still there: a lock removed
//! by [`Repository::unlock`] or taken for dead fails the commit, so nothing
//! committed ever refers to data a prune may have deleted.

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

/// Who holds a lock: enough to tell, from the same PID namespace of the
/// same boot of the same host, whether that process still runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    exclusive: bool,
    host: String,
    pid: u32,
    /// `/proc/sys/kernel/random/boot_id`: PIDs of another boot mean nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    boot_id: Option<String>,
    /// The target of `/proc/self/ns/pid`, such as `pid:[4026531836]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pid_namespace: Option<String>,
    /// When the process started, in clock ticks after boot (`/proc/<pid>/stat`
    /// field 22): a reused PID is another process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_ticks: Option<u64>,
    refreshed_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    host: String,
    pid: u32,
    boot_id: Option<String>,
    pid_namespace: Option<String>,
    start_ticks: Option<u64>,
}

impl Holder {
    /// This process.
    fn this_process() -> Self {
        let pid = std::process::id();
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        Self {
            host: hostname(),
            pid,
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            pid_namespace: std::fs::read_link("/proc/self/ns/pid")
                .ok()
                .map(|p| p.display().to_string()),
            start_ticks: start_ticks("self"),
        }
    }

    /// Whether `self` is known to be gone, as judged by `me`. Only a holder
    /// in `me`'s own PID namespace, boot and host can be judged; for any
    /// other, `false`.
    fn is_known_gone(&self, me: &Holder) -> bool {
        let same_pid_space = self.host == me.host
            && self.boot_id.is_some()
            && self.boot_id == me.boot_id
            && self.pid_namespace.is_some()
            && self.pid_namespace == me.pid_namespace;
        if !same_pid_space {
            return false;
        }
        match start_ticks(&self.pid.to_string()) {
            None => true,
            // The PID runs, but as another process if it started at another time.
            Some(now) => self.start_ticks.is_some_and(|then| then != now),
        }
    }
}

/// A process's start time in clock ticks after boot, or `None` if it does
/// not exist (or `/proc` cannot tell).
fn start_ticks(pid: &str) -> Option<u64> {
    parse_start_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) may
/// hold spaces and parentheses: fields are counted from the last ')'.
fn parse_start_ticks(stat: &str) -> Option<u64> {
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// A repository lock as found in the store, for [`Repository::locks`] and
/// [`Repository::unlock`] (restic's `list locks` and `unlock`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// The lock object's key (`locks/lock-…`).
    pub key: String,
    /// Held by a prune or forget (exclusive) rather than a backup or check (shared).
    pub exclusive: bool,
    /// The host name of the holder.
    pub host: String,
    /// The holder's process id, in its own PID namespace.
    pub pid: u32,
    /// The holder's PID namespace (`pid:[…]`), where it recorded one.
    pub pid_namespace: Option<String>,
    /// When the holder last rewrote it.
    pub refreshed_at: Timestamp,
    /// How long ago that was, when it was listed.
    pub age: Duration,
    /// Stale: unrefreshed for 30 minutes, or its holder is known to be gone.
    /// Stale locks hold nothing up and are deleted by whoever finds them.
    pub stale: bool,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lock of process {} on {}",
            if self.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            self.pid,
            self.host,
        )?;
        if let Some(ns) = &self.pid_namespace {
            write!(f, " ({ns})")?;
        }
        write!(
            f,
            ", refreshed {}s ago{} ({})",
            self.age.as_secs(),
            if self.stale { ", stale" } else { "" },
            self.key
        )
    }
}

/// Which locks [`Repository::unlock`] removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlock {
    /// Only stale ones: always safe.
    Stale,
    /// The one with this key (from [`Repository::locks`]), live or not:
    /// for a holder known to be dead that this process cannot tell is (it
    /// ran on another host, or in another container).
    Key(String),
    /// Every lock. Only when no drkit process uses the repository: a live
    /// backup whose lock is removed fails its commit, but a live prune
    /// goes on deleting.
    All,
}

impl LockFile {
    fn new(exclusive: bool, holder: Holder) -> Self {
        Self {
            exclusive,
            host: holder.host,
            pid: holder.pid,
            boot_id: holder.boot_id,
            pid_namespace: holder.pid_namespace,
            start_ticks: holder.start_ticks,
            refreshed_at: Timestamp::now(),
        }
    }

    fn holder(&self) -> Holder {
        Holder {
            host: self.host.clone(),
            pid: self.pid,
            boot_id: self.boot_id.clone(),
            pid_namespace: self.pid_namespace.clone(),
            start_ticks: self.start_ticks,
        }
    }

    fn info(&self, key: &str, now: Timestamp, me: &Holder) -> LockInfo {
        let age = now.duration_since(self.refreshed_at);
        let age = Duration::from_secs(age.as_secs().max(0) as u64);
        LockInfo {
            key: key.to_owned(),
            exclusive: self.exclusive,
            host: self.host.clone(),
            pid: self.pid,
            pid_namespace: self.pid_namespace.clone(),
            refreshed_at: self.refreshed_at,
            age,
            stale: age > STALE_AFTER || self.holder().is_known_gone(me),
        }
    }
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
    /// Why the lock is no longer ours, once the refresher found it gone.
    lost: Option<String>,
}

/// A held repository lock. Release it with [`Lock::release`]; dropping it
/// releases it in the background.
#[derive(Debug)]
pub(crate) struct Lock {
    repo: Repository,
    held: Arc<Mutex<Held>>,
    refresher: JoinHandle<()>,
    /// Stale locks deleted while this one was taken.
    pub(crate) stale_removed: usize,
}

impl Repository {
    /// Takes a lock, trying until `wait` has passed. Stale locks found on
    /// the way are deleted first.
    pub(crate) async fn lock(&self, exclusive: bool, wait: Duration) -> Result<Lock> {
        self.writable("taking a lock")?;
        let me = Holder::this_process();
        let deadline = tokio::time::Instant::now() + wait;
        let mut stale_removed = 0;
        let mut waited = false;
        loop {
            let key = new_lock_key()?;
            let file = LockFile::new(exclusive, me.clone());
            self.write_lock(&key, &file).await?;
            let conflict = match self.conflicting_lock(&key, exclusive, &me).await {
                Ok((conflict, removed)) => {
                    stale_removed += removed;
                    conflict
                }
                Err(e) => {
                    self.inner.backend.delete(&key).await.ok();
                    return Err(e);
                }
            };
            let Some(holder) = conflict else {
                tracing::debug!(store = %self.inner.backend.location(), lock = %key, exclusive, "took a repository lock");
                return Ok(Lock::start(self.clone(), key, file, stale_removed));
            };
            if !waited {
                tracing::info!(
                    store = %self.inner.backend.location(),
                    holder = %holder,
                    ?wait,
                    "waiting for a repository lock"
                );
                waited = true;
            }
            self.inner.backend.delete(&key).await?;
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Locked {
                    location: self.inner.backend.location(),
                    reason: format!(
                        "the repository is locked: {holder}; if that process is known \
                         to be dead, remove its lock with unlock"
                    ),
                });
            }
            let mut jitter = [0u8; 1];
            fill_random(&mut jitter)?;
            tokio::time::sleep(RETRY_EVERY + Duration::from_millis(u64::from(jitter[0]))).await;
        }
    }

    /// The shared lock a reader that must not race a prune (check, verify)
    /// takes; none on a read-only repository, which cannot write one.
    pub(crate) async fn read_lock(&self) -> Result<Option<Lock>> {
        if self.inner.read_only {
            return Ok(None);
        }
        self.lock(false, self.lock_wait).await.map(Some)
    }

    async fn write_lock(&self, key: &str, file: &LockFile) -> Result<()> {
        let bytes = self.encode(file, LOCK_CONTEXT)?;
        self.inner
            .backend
            .put(key, bytes.into(), PutOptions::CREATE)
            .await
    }

    /// The first live lock other than `own` that conflicts with a lock of
    /// our kind, and how many stale locks were deleted on the way.
    async fn conflicting_lock(
        &self,
        own: &str,
        exclusive: bool,
        me: &Holder,
    ) -> Result<(Option<LockInfo>, usize)> {
        let now = Timestamp::now();
        let mut removed = 0;
        for (key, file) in self.other_locks(own).await? {
            let info = file.info(&key, now, me);
            if info.stale {
                self.inner.backend.delete(&key).await?;
                tracing::warn!(store = %self.inner.backend.location(), lock = %info, "removed a stale lock");
                removed += 1;
            } else if exclusive || file.exclusive {
                return Ok((Some(info), removed));
            }
        }
        Ok((None, removed))
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

    /// Every lock in the repository, with its holder, age and whether it is
    /// stale.
    ///
    /// # Errors
    /// The store failed, or a lock object is damaged or sealed with another key.
    pub async fn locks(&self) -> Result<Vec<LockInfo>> {
        let me = Holder::this_process();
        let now = Timestamp::now();
        Ok(self
            .other_locks("")
            .await?
            .iter()
            .map(|(key, file)| file.info(key, now, &me))
            .collect())
    }

    /// Removes locks (restic's `unlock`) and returns those removed: the
    /// stale ones, one by key, or all. A dead process on another host or in
    /// another container holds the repository for 30 minutes after its last
    /// refresh unless its lock is removed here.
    ///
    /// # Errors
    /// `NotFound` for [`Unlock::Key`] naming no lock; the store failed; a
    /// lock object is damaged.
    pub async fn unlock(&self, which: Unlock) -> Result<Vec<LockInfo>> {
        self.writable("removing locks")?;
        let locks = self.locks().await?;
        if let Unlock::Key(key) = &which
            && !locks.iter().any(|l| &l.key == key)
        {
            return Err(Error::NotFound {
                location: self.inner.backend.location(),
                key: key.clone(),
            });
        }
        let mut removed = Vec::new();
        for lock in locks {
            let chosen = match &which {
                Unlock::Stale => lock.stale,
                Unlock::Key(key) => &lock.key == key,
                Unlock::All => true,
            };
            if chosen {
                self.inner.backend.delete(&lock.key).await?;
                tracing::warn!(store = %self.inner.backend.location(), lock = %lock, "unlocked");
                removed.push(lock);
            }
        }
        Ok(removed)
    }
}

impl Lock {
    fn start(repo: Repository, key: String, file: LockFile, stale_removed: usize) -> Self {
        let held = Arc::new(Mutex::new(Held {
            key,
            file,
            released: false,
            lost: None,
        }));
        let refresher = tokio::spawn(refresh(repo.clone(), held.clone()));
        Self {
            repo,
            held,
            refresher,
            stale_removed,
        }
    }

    fn lost(&self, reason: String) -> Error {
        Error::Locked {
            location: self.repo.inner.backend.location(),
            reason,
        }
    }

    /// Fails unless the lock is still ours: refreshed recently enough that
    /// nobody may take it for abandoned, and its object still in the store
    /// (not removed by [`Repository::unlock`], nor by a process that took us
    /// for dead). Work done under the lock is committed only after this.
    pub(crate) async fn confirm(&self) -> Result<()> {
        let (key, refreshed_at) = {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(reason) = &held.lost {
                return Err(self.lost(reason.clone()));
            }
            (held.key.clone(), held.file.refreshed_at)
        };
        let age = Timestamp::now().duration_since(refreshed_at);
        // Leave a margin: a prune on another host judges with its own clock.
        if age.as_secs() > (STALE_AFTER - REFRESH_EVERY).as_secs() as i64 {
            return Err(self.lost(format!(
                "this process's lock {key} could not be refreshed for {}s; \
                 others may have taken it for abandoned",
                age.as_secs()
            )));
        }
        let mut key = key;
        loop {
            match self.repo.inner.backend.get_all(&key).await {
                Ok(raw) => {
                    let _: LockFile = self.repo.decode(&raw, LOCK_CONTEXT, &key)?;
                    return Ok(());
                }
                Err(Error::NotFound { .. }) => {
                    // The refresher may have rewritten it under a new name
                    // meanwhile (and deleted the old one): look at that one.
                    let current = self
                        .held
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .key
                        .clone();
                    if current != key {
                        key = current;
                        continue;
                    }
                    return Err(self.lost(format!(
                        "this process's lock {key} was removed (by unlock, or by a process \
                         that took it for abandoned); nothing written under it is committed"
                    )));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Releases a lock from [`Repository::read_lock`], if one was taken.
    pub(crate) async fn release_read(lock: Option<Lock>) -> Result<()> {
        match lock {
            Some(lock) => lock.release().await,
            None => Ok(()),
        }
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
/// shows that its holder lives. A failed refresh is retried at the next
/// tick. A lock whose object is gone is not written again: it was removed
/// on purpose, and whoever removed it may be deleting what it protected.
async fn refresh(repo: Repository, held: Arc<Mutex<Held>>) {
    loop {
        tokio::time::sleep(REFRESH_EVERY).await;
        let (old, mut file) = {
            let held = held.lock().unwrap_or_else(|p| p.into_inner());
            (held.key.clone(), held.file.clone())
        };
        match repo.inner.backend.head(&old).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::error!(
                    store = %repo.inner.backend.location(),
                    lock = %old,
                    "this process's repository lock was removed; what it protects will not be committed"
                );
                let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
                held.lost = Some(format!(
                    "this process's lock {old} was removed (by unlock, or by a process \
                     that took it for abandoned); nothing written under it is committed"
                ));
                return;
            }
            Err(_) => continue,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_judged_only_in_its_own_pid_space() {
        let me = Holder::this_process();
        assert!(me.start_ticks.is_some(), "/proc/self/stat read");
        assert!(!me.is_known_gone(&me));
        // A PID reused by another process.
        let reused = Holder {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(reused.is_known_gone(&me));
        // No such process here...
        let gone = Holder {
            pid: u32::MAX - 1,
            ..me.clone()
        };
        assert!(gone.is_known_gone(&me));
        // ...but in another PID namespace, or a lock without one, it may run.
        for other in [
            Holder {
                pid_namespace: Some("pid:[1]".into()),
                ..gone.clone()
            },
            Holder {
                pid_namespace: None,
                ..gone.clone()
            },
            Holder {
                boot_id: Some("another boot".into()),
                ..gone.clone()
            },
            Holder {
                host: "another-host".into(),
                ..gone.clone()
            },
        ] {
            assert!(!other.is_known_gone(&me), "{other:?}");
        }
    }

    #[test]
    fn start_ticks_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start_ticks(stat), Some(98765));
        assert_eq!(parse_start_ticks("42 (a) S 1 2"), None);
        assert_eq!(parse_start_ticks("no parenthesis"), None);
    }

    #[test]
    fn old_lock_files_without_identity_still_open() {
        let old = r#"{"exclusive":true,"host":"h","pid":7,"refreshed_at":"2026-01-01T00:00:00Z"}"#;
        let file: LockFile = serde_json::from_str(old).unwrap();
        assert_eq!(file.pid_namespace, None);
        assert!(!file.holder().is_known_gone(&Holder::this_process()));
    }
}
