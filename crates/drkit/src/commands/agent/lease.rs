//! `[agent.lease]`: the agent runs its jobs only while it holds a
//! Kubernetes Lease (dr-k8s's `LeaseLock`, client-go's algorithm), so that
//! of several agents on one config one acts and the others stand by.
//!
//! The Lease is taken before any job is scheduled, renewed every third of
//! its duration, and counted as held only while the last renewal is less
//! than two thirds of it old: another agent takes it only once it has
//! gone a whole duration unrenewed. A job that began under the Lease
//! finishes; the Lease is released once the running jobs are done.

use std::sync::Arc;
use std::time::Duration;

use dr_k8s::{Acquired, LeaseLock};
use drkit::LeaseSettings;
use tokio::sync::watch;
use tokio::time::Instant;

use super::metrics::Metrics;
use crate::failure::Failure;

/// The Lease, and whether this agent holds it now.
pub(crate) struct Lease {
    lock: Arc<LeaseLock>,
    duration: Duration,
    held: watch::Sender<bool>,
}

impl Lease {
    /// Reaches the Lease's cluster and tries to take it once.
    pub(crate) async fn take(settings: &LeaseSettings) -> Result<Self, Failure> {
        let cluster = crate::cluster::connect(settings.kubeconfig(), settings.context()).await?;
        let lock = LeaseLock::new(
            cluster,
            settings.namespace(),
            settings.name(),
            holder(),
            settings.duration(),
        );
        let first = lock
            .try_acquire()
            .await
            .map_err(|e| Failure::of("taking the agent's lease", &e))?;
        log(&lock, &first);
        let (held, _) = watch::channel(matches!(first, Acquired::Held(_)));
        Ok(Self {
            lock: Arc::new(lock),
            duration: settings.duration(),
            held,
        })
    }

    /// Whether this agent holds the Lease now.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.held.subscribe()
    }

    /// Renews (or tries to take) the Lease every third of its duration,
    /// until the task is aborted.
    pub(crate) async fn keep(self: Arc<Self>, metrics: Arc<Metrics>) {
        let every = self.duration / 3;
        let mut last_held = self.held.borrow().then(Instant::now);
        metrics.lease_held(*self.held.borrow());
        loop {
            tokio::time::sleep(every).await;
            let was = *self.held.borrow();
            let holds = match self.lock.try_acquire().await {
                Ok(acquired) => {
                    let holds = matches!(acquired, Acquired::Held(_));
                    if holds {
                        last_held = Some(Instant::now());
                    }
                    if holds != was {
                        log(&self.lock, &acquired);
                    }
                    holds
                }
                Err(e) => {
                    let fresh = last_held.is_some_and(|at| at.elapsed() < self.duration * 2 / 3);
                    tracing::warn!(
                        holder = self.lock.holder(),
                        still_held = fresh,
                        "renewing the agent's lease: {e}"
                    );
                    fresh
                }
            };
            if holds != was {
                self.held.send_replace(holds);
            }
            metrics.lease_held(holds);
        }
    }

    /// Gives the Lease up, so that a standby agent need not wait.
    pub(crate) async fn release(&self) {
        match self.lock.release().await {
            Ok(true) => tracing::info!(holder = self.lock.holder(), "released the agent's lease"),
            Ok(false) => {}
            Err(e) => tracing::warn!("releasing the agent's lease: {e}"),
        }
    }
}

/// This agent's identity as a holder: its host name (a pod's name) and
/// process id.
fn holder() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "drkit".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Logs who holds the Lease, when that changed.
fn log(lock: &LeaseLock, acquired: &Acquired) {
    match acquired {
        Acquired::Held(_) => {
            tracing::info!(
                holder = lock.holder(),
                "holding the agent's lease: running jobs"
            );
        }
        Acquired::Taken { holder, .. } => {
            tracing::info!(%holder, "another agent holds the lease: standing by");
        }
    }
}
