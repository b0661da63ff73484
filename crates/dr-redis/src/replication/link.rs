//! A replica's link to a master, on a socket of our own: the handshake
//! (`REPLCONF capa eof psync2`, no `listening-port`, so that no Sentinel or
//! Cluster ever counts this link as a replica it could promote), `PSYNC`
//! continuing a history where it can, and then the stream of the master's
//! writes, command by command, with their replication offsets.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fetch::conn::Conn;
use crate::fetch::{RdbTransfer, RedisServer};
use crate::replication::commands::{CommandSplitter, StreamCommand};

/// Where a replication history stands: its id and the offset of the last
/// byte of it (`master_repl_offset`: the bytes so far).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPoint {
    /// The 40-character replication id.
    pub replication_id: String,
    /// The offset.
    pub offset: u64,
}

/// What the master answered to `PSYNC`.
#[derive(Debug)]
pub enum Replication {
    /// It continues the history from the point asked: the stream follows.
    Continue(ReplicaLink),
    /// It could not (or no point was asked): a full resynchronization,
    /// whose RDB comes first.
    FullSync(FullSync),
}

/// A full resynchronization: the RDB, then the stream from its point.
#[derive(Debug)]
pub struct FullSync {
    transfer: RdbTransfer,
}

impl FullSync {
    /// The RDB transfer: read it to its end before [`FullSync::into_link`].
    pub fn transfer(&mut self) -> &mut RdbTransfer {
        &mut self.transfer
    }

    /// Where the RDB stands in the history: the stream continues from here.
    pub fn point(&self) -> HistoryPoint {
        HistoryPoint {
            replication_id: self.transfer.replication_id().to_owned(),
            offset: self.transfer.offset(),
        }
    }

    /// The stream after the RDB. The master sends nothing until it hears an
    /// acknowledgement, so this acknowledges the RDB's point.
    ///
    /// # Errors
    /// [`Error::InvalidState`] if the RDB was not read to its end; the
    /// connection's errors.
    pub async fn into_link(self) -> Result<ReplicaLink> {
        let point = self.point();
        let version = self.transfer.server_version().to_owned();
        let conn = self.transfer.into_conn()?;
        let mut link = ReplicaLink::new(conn, version, point);
        let offset = link.offset();
        link.ack(offset).await?;
        Ok(link)
    }
}

/// The stream of a master's writes, as a replica receives it.
pub struct ReplicaLink {
    conn: Conn,
    server_version: String,
    replication_id: String,
    split: CommandSplitter,
    /// The offset last acknowledged, sent again every [`ACK_EVERY`] as a
    /// replica does (a master starts the stream after a diskless sync only
    /// once an acknowledgement arrives after the sync's end).
    acked: u64,
}

/// How often the acknowledgement is repeated while the stream is quiet.
const ACK_EVERY: Duration = Duration::from_secs(1);

impl fmt::Debug for ReplicaLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaLink")
            .field("addr", &self.conn.addr())
            .field("replication_id", &self.replication_id)
            .field("offset", &self.split.offset())
            .finish_non_exhaustive()
    }
}

impl ReplicaLink {
    fn new(conn: Conn, server_version: String, point: HistoryPoint) -> Self {
        Self {
            conn,
            server_version,
            acked: point.offset,
            replication_id: point.replication_id,
            split: CommandSplitter::new(point.offset),
        }
    }

    /// The master's `host:port`.
    pub fn addr(&self) -> &str {
        self.conn.addr()
    }

    /// The master's `redis_version`.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The history the stream belongs to (after a failover, the new
    /// master's id, which continues the old one's offsets).
    pub fn replication_id(&self) -> &str {
        &self.replication_id
    }

    /// The offset after the last whole command handed out.
    pub fn offset(&self) -> u64 {
        self.split.offset()
    }

    /// The point after the last whole command handed out.
    pub fn point(&self) -> HistoryPoint {
        HistoryPoint {
            replication_id: self.replication_id.clone(),
            offset: self.offset(),
        }
    }

    /// The whole commands that arrived next (waiting for at least one, at
    /// most the server's idle timeout: a master sends `PING` every 10 s by
    /// default), the last acknowledgement repeated every second meanwhile.
    /// A command cut across reads waits for its end.
    ///
    /// # Errors
    /// [`Error::Closed`] when the master closes the link, [`Error::Idle`],
    /// [`Error::Corrupt`] for bytes that are not commands.
    pub async fn recv(&mut self) -> Result<Vec<StreamCommand>> {
        let mut quiet = Duration::ZERO;
        loop {
            let commands = self.split_buffered()?;
            if !commands.is_empty() {
                return Ok(commands);
            }
            match self
                .conn
                .read_within("following the master", ACK_EVERY)
                .await?
            {
                Some(0) => {
                    return Err(Error::Closed {
                        addr: self.conn.addr().to_owned(),
                        what: "following the master",
                    });
                }
                Some(_) => quiet = Duration::ZERO,
                None => {
                    quiet += ACK_EVERY;
                    if quiet >= self.conn.idle() {
                        return Err(Error::Idle {
                            addr: self.conn.addr().to_owned(),
                            what: "following the master",
                            after: quiet,
                        });
                    }
                    self.ack(self.acked).await?;
                }
            }
        }
    }

    /// The whole commands that arrive within `within` (none if none did),
    /// without acknowledging anything: for a caller that acknowledges on
    /// its own schedule. Cancel-safe: it only reads.
    ///
    /// # Errors
    /// [`Error::Closed`] when the master closes the link,
    /// [`Error::Corrupt`] for bytes that are not commands.
    pub async fn recv_within(&mut self, within: Duration) -> Result<Vec<StreamCommand>> {
        let mut commands = self.split_buffered()?;
        if commands.is_empty() {
            if let Some(0) = self
                .conn
                .read_within("following the master", within)
                .await?
            {
                return Err(Error::Closed {
                    addr: self.conn.addr().to_owned(),
                    what: "following the master",
                });
            }
            commands = self.split_buffered()?;
        }
        Ok(commands)
    }

    /// The whole commands among the bytes read so far.
    fn split_buffered(&mut self) -> Result<Vec<StreamCommand>> {
        let buffered = self.conn.buffered();
        if !buffered.is_empty() {
            let bytes = buffered.split();
            self.split.feed(&bytes);
        }
        let mut commands = Vec::new();
        while let Some(command) = self.split.next_command()? {
            commands.push(command);
        }
        Ok(commands)
    }

    /// Tells the master the stream is processed up to `offset`
    /// (`REPLCONF ACK`): what counts for `WAIT` and `min-replicas-to-write`.
    ///
    /// # Errors
    /// The connection's.
    pub async fn ack(&mut self, offset: u64) -> Result<()> {
        self.acked = offset;
        let offset = offset.to_string();
        self.conn
            .send(&[b"REPLCONF", b"ACK", offset.as_bytes()])
            .await
    }
}

impl RedisServer {
    /// Connects to this server as a replica that advertises no listening
    /// port, and asks it to continue the history at `from` (`PSYNC <id>
    /// <offset + 1>`), or for a full resynchronization where `from` is
    /// `None`.
    ///
    /// # Errors
    /// As [`RedisServer::begin_rdb`]; a master that cannot continue answers
    /// with a full resynchronization, not an error.
    pub async fn replicate(&self, from: Option<&HistoryPoint>) -> Result<Replication> {
        let (mut conn, version) = self.connect().await?;
        let addr = conn.addr().to_owned();
        for option in [&[&b"REPLCONF"[..], b"capa", b"eof", b"capa", b"psync2"][..]] {
            conn.call("REPLCONF", option).await?;
        }
        let (id, next) = match from {
            Some(point) => (point.replication_id.clone(), (point.offset + 1).to_string()),
            None => ("?".to_owned(), "-1".to_owned()),
        };
        conn.send(&[b"PSYNC", id.as_bytes(), next.as_bytes()])
            .await?;
        let line = conn.line("waiting for PSYNC's answer", true).await?;
        if let Some(rest) = line.strip_prefix("+CONTINUE") {
            let Some(point) = from else {
                return Err(Error::NotRedis {
                    addr,
                    reason: "PSYNC ? -1 answered +CONTINUE".into(),
                });
            };
            // psync2: the id of the history from now on (a promoted
            // replica's own); older masters name none.
            let id = rest.trim();
            let point = HistoryPoint {
                replication_id: if id.len() == 40 {
                    id.to_owned()
                } else {
                    point.replication_id.clone()
                },
                offset: point.offset,
            };
            return Ok(Replication::Continue(ReplicaLink::new(
                conn, version, point,
            )));
        }
        let transfer = RdbTransfer::after_fullresync(conn, version, &line)?;
        Ok(Replication::FullSync(FullSync { transfer }))
    }
}
