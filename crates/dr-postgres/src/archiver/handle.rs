//! [`ArchiverHandle`], the caller's side of a running archiver, and the stop signal it holds.

use dr_core::{Error, ErrorKind, Lsn};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ArchiverState, ArchiverStatus, StandbySlot};

/// A running [`WalArchiver`](crate::WalArchiver). Dropping the handle shuts the archiver down
/// as [`ArchiverHandle::shutdown`] does, without waiting for it.
#[derive(Debug)]
pub struct ArchiverHandle {
    pub(super) status: watch::Receiver<ArchiverStatus>,
    pub(super) stop: watch::Sender<bool>,
    pub(super) task: JoinHandle<dr_core::Result<ArchiverStatus>>,
    /// With a cluster: what the slot keeper found, and its task.
    pub(super) keeper: Option<(watch::Receiver<Vec<StandbySlot>>, JoinHandle<()>)>,
}

impl ArchiverHandle {
    /// The archiver's status now.
    pub fn status(&self) -> ArchiverStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change, for a service to watch.
    pub fn subscribe(&self) -> watch::Receiver<ArchiverStatus> {
        self.status.clone()
    }

    /// Where the archiver's slot is held on the members of its cluster, as
    /// last looked at; empty for an archiver of one server
    /// ([`WalArchiver::cluster`](crate::WalArchiver::cluster)) or before the first look.
    pub fn standby_slots(&self) -> Vec<StandbySlot> {
        self.keeper
            .as_ref()
            .map(|(found, _)| found.borrow().clone())
            .unwrap_or_default()
    }

    /// A receiver that sees every change of [`ArchiverHandle::standby_slots`];
    /// `None` for an archiver of one server.
    pub fn subscribe_standby_slots(&self) -> Option<watch::Receiver<Vec<StandbySlot>>> {
        self.keeper.as_ref().map(|(found, _)| found.clone())
    }

    /// Whether the archiver has stopped (shut down or failed).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the WAL up to `lsn` is durable in the archive, and
    /// returns the status then. It waits as long as it takes: bound it with
    /// `tokio::time::timeout`, which is safe, as dropping the wait changes
    /// nothing.
    ///
    /// # Errors
    /// The archiver's error, by kind, if it stopped before getting there.
    pub async fn wait_for_flush(&self, lsn: Lsn) -> dr_core::Result<ArchiverStatus> {
        let mut status = self.status.clone();
        let status = match status
            .wait_for(|s| s.flushed >= lsn || s.state == ArchiverState::Stopped)
            .await
        {
            Err(_) => self.status(),
            Ok(status) => status.clone(),
        };
        if status.flushed >= lsn {
            return Ok(status);
        }
        let (kind, why) = status.last_error.as_ref().map_or_else(
            || (ErrorKind::Internal, "it was shut down".to_owned()),
            |e| (e.kind, e.message.clone()),
        );
        Err(Error::Other {
            kind,
            context: format!("the WAL archiver stopped before archiving up to {lsn}: {why}"),
            source: None,
        })
    }

    /// Shuts the archiver down gracefully: WAL received but not yet stored
    /// is stored as a final piece, the server is told, the stream is ended,
    /// and the whole-segment stores under way are waited for. Returns the
    /// last status.
    ///
    /// # Errors
    /// The error that stopped the archiver, or that the final store met. A
    /// whole-segment store that fails while shutting down is returned only if
    /// retrying could not heal it; otherwise its segment is durable in
    /// pieces, is stored whole when an archiver next starts, and the failure
    /// is in [`ArchiverStatus::last_error`](crate::ArchiverStatus::last_error).
    pub async fn shutdown(self) -> dr_core::Result<ArchiverStatus> {
        let _ = self.stop.send(true);
        if let Some((_, keeper)) = self.keeper {
            // It ends at the stop, between two looks.
            let _ = keeper.await;
        }
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(Error::other(
                ErrorKind::Internal,
                "the WAL archiver task failed",
                e,
            )),
        }
    }
}

/// The shutdown signal: a request, or the handle gone.
pub(super) struct Stop(pub(super) watch::Receiver<bool>);

impl Stop {
    pub(super) fn requested(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once a stop is requested. Cancellation-safe.
    pub(super) async fn wait(&mut self) {
        while !self.requested() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}
