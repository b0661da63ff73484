//! What a running archiver publishes: [`ArchiverStatus`], its state and its last error.

use std::time::{Duration, Instant};

use dr_core::{Error, ErrorKind, Lsn};
use jiff::Timestamp;

/// What the archiver is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArchiverState {
    /// Connecting and finding where to start.
    Connecting,
    /// Receiving and storing WAL.
    Streaming,
    /// Waiting before the next connection attempt after a failure.
    Reconnecting,
    /// Shut down, or stopped by an error that retrying cannot heal.
    Stopped,
}

/// An error the archiver met, in a form that can be copied into every
/// status: its class and its message with the chain of causes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorSummary {
    /// How a caller should treat it.
    pub kind: ErrorKind,
    /// The error and its causes, `: `-separated.
    pub message: String,
    /// When it happened.
    pub at: Timestamp,
}

impl ErrorSummary {
    pub(super) fn of(error: &Error) -> Self {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self {
            kind: error.kind(),
            message,
            at: Timestamp::now(),
        }
    }
}

/// Where a [`WalArchiver`](crate::WalArchiver) stands, for RPO monitoring.
///
/// Positions are `0/0` until known. The RPO exposure is
/// [`ArchiverStatus::lag_bytes`] and [`ArchiverStatus::lag`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiverStatus {
    /// What the archiver is doing.
    pub state: ArchiverState,
    /// The database system identifier of the cluster being archived.
    pub system_id: Option<u64>,
    /// The timeline being streamed.
    pub timeline: Option<u32>,
    /// WAL received up to here (held in memory until stored).
    pub received: Lsn,
    /// WAL durable in the archive up to here, along the history of the
    /// server's timeline: what is reported to the server as flushed.
    pub flushed: Lsn,
    /// How far the server's WAL went when it last said.
    pub server_end: Lsn,
    /// The server's clock when it last sent anything.
    pub server_time: Option<Timestamp>,
    /// WAL the replication slot holds back on the server: its end of WAL
    /// minus the slot's `restart_lsn` (read when connecting; a physical
    /// slot's `restart_lsn` then follows the flush positions reported).
    pub slot_retained_bytes: Option<u64>,
    /// The slot holds back more than [`ArchiverOptions::slot_warning_bytes`](crate::ArchiverOptions::slot_warning_bytes):
    /// the server's disk fills while the archive is behind.
    pub slot_warning: bool,
    /// Segments stored whole since the archiver started (counted when the
    /// store ends: it may run in the background, after the segment's last
    /// piece made it durable).
    pub segments_stored: u64,
    /// Pieces stored since the archiver started.
    pub pieces_stored: u64,
    /// History files stored since the archiver started.
    pub histories_stored: u64,
    /// Connections opened since the archiver started.
    pub connections: u64,
    /// The most recent error, kept after the archiver recovers from it.
    pub last_error: Option<ErrorSummary>,
    /// When the oldest WAL the server reported and the archive does not yet
    /// hold was first reported; `None` when the archive is caught up.
    pub(super) pending_since: Option<Instant>,
}

impl ArchiverStatus {
    pub(super) fn new() -> Self {
        Self {
            state: ArchiverState::Connecting,
            system_id: None,
            timeline: None,
            received: Lsn::ZERO,
            flushed: Lsn::ZERO,
            server_end: Lsn::ZERO,
            server_time: None,
            slot_retained_bytes: None,
            slot_warning: false,
            segments_stored: 0,
            pieces_stored: 0,
            histories_stored: 0,
            connections: 0,
            last_error: None,
            pending_since: None,
        }
    }

    /// WAL the server has that the archive does not hold yet, in bytes:
    /// `server_end - flushed`.
    pub fn lag_bytes(&self) -> u64 {
        self.server_end
            .as_u64()
            .saturating_sub(self.flushed.as_u64())
    }

    /// How long the oldest WAL not yet durable in the archive has been
    /// waiting, counted from when the server first reported it to this
    /// archiver; zero when the archive holds everything reported. It keeps
    /// growing while the server is unreachable with WAL outstanding.
    pub fn lag(&self) -> Duration {
        self.pending_since.map_or(Duration::ZERO, |at| at.elapsed())
    }
}
