//! PostgreSQL's streaming replication protocol, client side: a physical
//! replication connection (`replication=true`) and the walsender's commands.
//!
//! - `startup`: sockets, TLS negotiation, the startup message, authentication.
//! - `conn` and `message`: framing, the few backend messages a walsender sends.
//! - `client`: [`ReplicationClient`] and its one-shot commands.
//! - `base_backup`: `BASE_BACKUP` as a [`BaseBackupStream`].
//! - `wal`: `START_REPLICATION` as a [`WalStream`].
//! - `sql`: [`SqlClient`], a plain SQL session on the same wire client.
//! - `tls`: [`Tls`], how the server's certificate is checked.

pub(crate) mod base_backup;
pub(crate) mod client;
pub(crate) mod conn;
pub(crate) mod message;
pub(crate) mod row;
pub(crate) mod sql;
pub(crate) mod startup;
pub(crate) mod tls;
pub(crate) mod wal;

pub use self::base_backup::{
    BaseBackupEvent, BaseBackupOptions, BaseBackupReader, BaseBackupStream, ManifestChecksums,
    Tablespace,
};
pub use self::client::{
    CreateSlotOptions, HistoryEntry, ReplicationClient, SlotInfo, SlotPosition, SystemIdentity,
    TimelineHistory,
};
pub use self::row::Row;
pub use self::sql::SqlClient;
pub use self::tls::{ClientCertificate, ServerCheck, Tls};
pub use self::wal::{Keepalive, StandbyStatus, TimelineEnded, WalEvent, WalStream, XLogData};

/// Streams move into spawned tasks: this fails to compile if one stops being `Send`.
fn _assert_send() {
    fn send<T: Send + 'static>() {}
    send::<ReplicationClient>();
    send::<BaseBackupStream>();
    send::<WalStream>();
    send::<SqlClient>();
    send::<crate::Error>();
}
