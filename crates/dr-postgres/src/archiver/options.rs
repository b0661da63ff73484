//! [`ArchiverOptions`]: how a [`WalArchiver`](super::WalArchiver) streams and stores.

use std::time::Duration;

/// How a [`WalArchiver`](crate::WalArchiver) streams and stores.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiverOptions {
    /// The physical replication slot (created with `RESERVE_WAL` if
    /// missing), which keeps the server's WAL until it is archived.
    /// Default `drkit_wal`. Slot names are lower-case letters, digits and `_`.
    pub slot: String,
    /// The `application_name` the archiver connects with, which
    /// `synchronous_standby_names` lists to make it synchronous. `None`
    /// keeps the connection settings' name, or `drkit_wal` if they have none.
    pub application_name: Option<String>,
    /// How often the bytes received since the last store are stored as a
    /// piece (when any arrived): the bound on what is lost with the
    /// server, plus the store's own time. `None` stores complete segments
    /// only. Default 1 s. Each piece is one object in the archive. Synchronous
    /// mode stores as soon as WAL arrives instead.
    pub piece_interval: Option<Duration>,
    /// Store WAL as soon as it arrives and the stream has nothing more
    /// ready, and report it written and flushed only then. Listed in
    /// `synchronous_standby_names`, with `synchronous_commit` `on` (the
    /// default) or `remote_write`, the archiver makes a commit return only
    /// once its WAL is durable in the archive (RPO zero). Never use it with
    /// `remote_apply`: an archiver applies nothing, so commits would wait
    /// forever. Default off.
    pub synchronous: bool,
    /// How often a status update is sent when nothing else prompts one
    /// (keep it below half the server's `wal_sender_timeout`). Default 10 s.
    pub status_interval: Duration,
    /// The first wait before reconnecting after a failure. Default 1 s.
    pub reconnect_min: Duration,
    /// The longest wait between reconnection attempts; the wait doubles
    /// from `reconnect_min` up to this. Default 30 s.
    pub reconnect_max: Duration,
    /// Set [`ArchiverStatus::slot_warning`](crate::ArchiverStatus::slot_warning) when the slot holds back more
    /// WAL than this many bytes on the server. Default 1 GiB; `None` never warns.
    pub slot_warning_bytes: Option<u64>,
    /// How often, while the archive holds everything the server reported,
    /// the archiver asks the server for its end of WAL and records in the
    /// archive how far it holds everything, and when
    /// ([`dr_core::ArchiveCoverage`]): what a restore to the latest point
    /// measures its data loss from. Default 5 s, one small object
    /// overwritten each time; `None` records nothing.
    pub coverage_interval: Option<Duration>,
}

impl Default for ArchiverOptions {
    fn default() -> Self {
        Self {
            slot: "drkit_wal".into(),
            application_name: None,
            piece_interval: Some(Duration::from_secs(1)),
            synchronous: false,
            status_interval: Duration::from_secs(10),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            slot_warning_bytes: Some(1 << 30),
            coverage_interval: Some(Duration::from_secs(5)),
        }
    }
}

impl ArchiverOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`ArchiverOptions::slot`].
    pub fn slot(mut self, name: impl Into<String>) -> Self {
        self.slot = name.into();
        self
    }

    /// Sets [`ArchiverOptions::application_name`].
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Sets [`ArchiverOptions::piece_interval`].
    pub fn piece_interval(mut self, interval: Option<Duration>) -> Self {
        self.piece_interval = interval;
        self
    }

    /// Sets [`ArchiverOptions::synchronous`].
    pub fn synchronous(mut self, on: bool) -> Self {
        self.synchronous = on;
        self
    }

    /// Sets [`ArchiverOptions::status_interval`].
    pub fn status_interval(mut self, interval: Duration) -> Self {
        self.status_interval = interval;
        self
    }

    /// Sets [`ArchiverOptions::reconnect_min`] and [`ArchiverOptions::reconnect_max`].
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    /// Sets [`ArchiverOptions::slot_warning_bytes`].
    pub fn slot_warning_bytes(mut self, bytes: Option<u64>) -> Self {
        self.slot_warning_bytes = bytes;
        self
    }

    /// Sets [`ArchiverOptions::coverage_interval`].
    pub fn coverage_interval(mut self, interval: Option<Duration>) -> Self {
        self.coverage_interval = interval;
        self
    }
}
