//! The one error type of the crate.

/// What can go wrong starting the server or driving its test controls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No port on 127.0.0.1 could be bound.
    #[error("binding a port on 127.0.0.1")]
    Bind {
        /// Why the bind failed.
        #[source]
        source: std::io::Error,
    },
    /// The webhook URL is not an `http://host:port/path` URL (the stand-in posts in plain
    /// HTTP/1.1 only).
    #[error("webhook URL {url:?} is not an http:// URL")]
    WebhookUrl {
        /// The URL given.
        url: String,
    },
    /// A participant without an identity was asked to join.
    #[error("a participant needs an identity to join room {room:?}")]
    EmptyIdentity {
        /// The room it was to join.
        room: String,
    },
    /// No room of that name.
    #[error("no room {room:?}")]
    NoSuchRoom {
        /// The room's name.
        room: String,
    },
    /// No participant of that identity in that room.
    #[error("no participant {identity:?} in room {room:?}")]
    NoSuchParticipant {
        /// The room looked in.
        room: String,
        /// The participant's identity.
        identity: String,
    },
    /// No egress of that id.
    #[error("no egress {egress_id:?}")]
    NoSuchEgress {
        /// The egress id.
        egress_id: String,
    },
}

impl Error {
    /// Whether trying again could succeed: only a failed bind (a port race) may.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Bind { .. })
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
