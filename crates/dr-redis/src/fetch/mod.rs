//! Fetching an RDB snapshot over Redis's replication protocol, as
//! `redis-cli --rdb` does, on a socket of our own: `AUTH`, `REPLCONF capa
//! eof` and `REPLCONF rdb-only 1` (refusals ignored: older servers), `PSYNC
//! ? -1`, then the RDB in either framing the server chooses — `$<length>`
//! (written to its disk first) or `$EOF:<40-byte mark>` (diskless, streamed
//! from the fork) — with the master's keep-alive newlines skipped while it
//! forks. Every read waits at most an idle timeout, never a total one: a
//! large snapshot takes as long as it takes while bytes keep coming.

pub(crate) mod conn;
mod logical;

pub use self::logical::LogicalDump;

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};

use std::sync::Arc;

use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use self::conn::{Conn, Reply, TlsSettings};

/// The end mark of a diskless transfer is this long.
const MARK_LEN: usize = 40;

/// How to reach one Redis server for a snapshot.
#[derive(Clone)]
pub struct RedisServer {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    tls: Option<TlsSettings>,
    logical_connections: usize,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("addr", &self.addr())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl RedisServer {
    /// The server at `host:port`, without credentials; connecting may take
    /// 10 s, and a transfer may go 60 s without a byte.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls: None,
            logical_connections: 3,
        }
    }

    /// How many connections logical mode reads keys on with `DUMP` and
    /// `PTTL`, besides the one `SCAN` runs on (default 3, at least 1).
    #[must_use]
    pub fn logical_connections(mut self, connections: usize) -> Self {
        self.logical_connections = connections.max(1);
        self
    }

    /// Connects over TLS with `config` (its root certificates decide which
    /// servers are trusted; a client certificate in it is presented), the
    /// server's certificate checked against the host given to
    /// [`RedisServer::new`] (a DNS name or an IP address).
    ///
    /// # Errors
    /// [`Error::NotRedis`] if the host cannot be a certificate's name.
    pub fn tls(mut self, config: Arc<ClientConfig>) -> Result<Self> {
        let server_name = ServerName::try_from(self.host.clone()).map_err(|e| Error::NotRedis {
            addr: self.addr(),
            reason: format!(
                "{:?} cannot be checked against a TLS certificate: {e}",
                self.host
            ),
        })?;
        self.tls = Some(TlsSettings {
            config,
            server_name,
        });
        Ok(self)
    }

    /// Authenticates with `password`, as the ACL user `username` where
    /// given (`AUTH [username] password`). The user needs `SYNC`/`PSYNC`
    /// and `REPLCONF` (in `@admin`) and `INFO`.
    #[must_use]
    pub fn auth(mut self, username: Option<String>, password: impl Into<String>) -> Self {
        self.username = username;
        self.password = Some(password.into());
        self
    }

    /// How long a transfer may go without receiving a byte (default 60 s;
    /// the master sends a newline about once a second while it forks).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long connecting may take (default 10 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The server at `addr` (`host:port`, as `CLUSTER NODES` gives it),
    /// reached as this one is: the same credentials, timeouts and TLS
    /// settings (the certificate checked against the new host).
    ///
    /// # Errors
    /// [`Error::NotRedis`] if `addr` does not read as `host:port`, or the
    /// host cannot be a certificate's name.
    pub fn at(&self, addr: &str) -> Result<Self> {
        let bad = || Error::NotRedis {
            addr: addr.to_owned(),
            reason: "not host:port".into(),
        };
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        let mut server = self.clone();
        server.host = host.to_owned();
        server.port = port;
        match self.tls.as_ref() {
            Some(tls) => server.tls(tls.config.clone()),
            None => Ok(server),
        }
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Connects, authenticates, reads the server's version, and starts a
    /// full synchronization: returns once the server has answered
    /// `+FULLRESYNC` (its fork has happened, or its file is being written),
    /// before any RDB byte is read.
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::ServerRefused`] (wrong password, a
    /// user without the permissions, a replica whose master link is down),
    /// [`Error::NotRedis`] for a peer that does not speak RESP,
    /// [`Error::Idle`].
    pub async fn begin_rdb(&self) -> Result<RdbTransfer> {
        let (mut conn, version) = self.connect().await?;
        // Older servers refuse these; the transfer works without them.
        for option in [
            &[&b"REPLCONF"[..], b"capa", b"eof"],
            &[b"REPLCONF", b"rdb-only", b"1"],
        ] {
            match conn.call("REPLCONF", option).await {
                Ok(_) => {}
                Err(Error::ServerRefused { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        conn.send(&[b"PSYNC", b"?", b"-1"]).await?;
        let line = conn.line("waiting for the server to fork", true).await?;
        RdbTransfer::after_fullresync(conn, version, &line)
    }
}

impl RedisServer {
    /// Where the server's replication stream stands: its `master_replid`
    /// and `master_repl_offset` (a master's history and how far it has
    /// written; a replica's, how far it has applied its master's).
    ///
    /// # Errors
    /// As [`RedisServer::begin_rdb`]'s connection; [`Error::NotRedis`] for
    /// an `INFO replication` without them.
    pub async fn replication_point(&self) -> Result<crate::HistoryPoint> {
        let (mut conn, _) = self.connect().await?;
        let replication = info(&mut conn, "replication").await?;
        let id = info_field(&replication, "master_replid");
        let offset = info_field(&replication, "master_repl_offset").and_then(|o| o.parse().ok());
        match (id, offset) {
            (Some(id), Some(offset)) => Ok(crate::HistoryPoint {
                replication_id: id.to_owned(),
                offset,
            }),
            _ => Err(Error::NotRedis {
                addr: conn.addr().to_owned(),
                reason: "INFO replication gives no master_replid and master_repl_offset".into(),
            }),
        }
    }
}

/// What a server says of itself ([`RedisServer::probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerProbe {
    /// `host:port`.
    pub addr: String,
    /// `redis_version`.
    pub version: String,
    /// `master` or `slave`, as `INFO replication` says.
    pub role: String,
    /// Whether it runs in cluster mode.
    pub cluster: bool,
    /// Keys in all its databases.
    pub keys: u64,
}

impl RedisServer {
    /// Connects, authenticates and asks the server what it is, changing
    /// nothing: for a check that the settings are right.
    ///
    /// # Errors
    /// As [`RedisServer::begin_rdb`]'s connection.
    pub async fn probe(&self) -> Result<ServerProbe> {
        let (mut conn, version) = self.connect().await?;
        let replication = info(&mut conn, "replication").await?;
        let cluster = info(&mut conn, "cluster").await?;
        let keyspace = info(&mut conn, "keyspace").await?;
        let keys = keyspace
            .lines()
            .filter(|l| l.starts_with("db"))
            .filter_map(|l| l.split([':', ',']).find_map(|kv| kv.strip_prefix("keys=")))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .sum();
        Ok(ServerProbe {
            addr: conn.addr().to_owned(),
            version,
            role: info_field(&replication, "role")
                .unwrap_or("unknown")
                .to_owned(),
            cluster: info_field(&cluster, "cluster_enabled") == Some("1"),
            keys,
        })
    }
}

impl RedisServer {
    /// Connects, authenticates, and reads the server's `redis_version`.
    pub(crate) async fn connect(&self) -> Result<(Conn, String)> {
        let addr = self.addr();
        let mut conn = Conn::connect(
            &addr,
            self.connect_timeout,
            self.idle_timeout,
            self.tls.as_ref(),
        )
        .await?;
        if let Some(password) = &self.password {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &self.username {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            conn.call("AUTH", &args).await?;
        }
        let info = info(&mut conn, "server").await?;
        let version = info_field(&info, "redis_version")
            .ok_or_else(|| Error::NotRedis {
                addr: addr.clone(),
                reason: "INFO server names no redis_version".into(),
            })?
            .to_owned();
        Ok((conn, version))
    }
}

/// `INFO <section>`'s text.
pub(crate) async fn info(conn: &mut Conn, section: &str) -> Result<String> {
    match conn.call("INFO", &[b"INFO", section.as_bytes()]).await? {
        Reply::Bulk(Some(text)) => Ok(String::from_utf8_lossy(&text).into_owned()),
        other => Err(Error::NotRedis {
            addr: conn.addr().to_owned(),
            reason: format!("INFO answered {other:?}"),
        }),
    }
}

/// How the server frames the RDB it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `$<length>`: an RDB file the server wrote to its disk first.
    Length(u64),
    /// `$EOF:<mark>`: diskless, streamed from the fork, ended by the mark.
    EofMark([u8; MARK_LEN]),
}

/// A snapshot transfer under way: [`RdbTransfer::next_chunk`] yields the
/// RDB's bytes, exactly, in order.
pub struct RdbTransfer {
    conn: Conn,
    server_version: String,
    replication_id: String,
    offset: u64,
    framing: Option<Framing>,
    received: u64,
    done: bool,
}

impl fmt::Debug for RdbTransfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RdbTransfer")
            .field("addr", &self.conn.addr())
            .field("server_version", &self.server_version)
            .field("replication_id", &self.replication_id)
            .field("offset", &self.offset)
            .field("framing", &self.framing)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl RdbTransfer {
    /// The transfer announced by `line`, `PSYNC`'s answer on `conn`: it must
    /// be `+FULLRESYNC <id> <offset>`.
    pub(crate) fn after_fullresync(conn: Conn, server_version: String, line: &str) -> Result<Self> {
        let addr = conn.addr().to_owned();
        let (replication_id, offset) = match line.strip_prefix("+FULLRESYNC ") {
            Some(rest) => {
                let mut words = rest.split(' ');
                match (words.next(), words.next().map(str::parse::<u64>)) {
                    (Some(id), Some(Ok(offset))) if id.len() == 40 => (id.to_owned(), offset),
                    _ => {
                        return Err(Error::NotRedis {
                            addr,
                            reason: format!("PSYNC answered {line:?}"),
                        });
                    }
                }
            }
            None => {
                return Err(match line.strip_prefix('-') {
                    Some(message) => Error::ServerRefused {
                        addr,
                        command: "PSYNC",
                        message: message.to_owned(),
                    },
                    None => Error::NotRedis {
                        addr,
                        reason: format!("PSYNC answered {line:?}, not +FULLRESYNC"),
                    },
                });
            }
        };
        Ok(RdbTransfer {
            conn,
            server_version,
            replication_id,
            offset,
            framing: None,
            received: 0,
            done: false,
        })
    }

    /// The connection, once the RDB was read to its end: a replica's
    /// stream follows on it.
    pub(crate) fn into_conn(self) -> Result<Conn> {
        if !self.done {
            return Err(Error::InvalidState {
                reason: "the RDB transfer was not read to its end",
            });
        }
        Ok(self.conn)
    }

    /// The server's `redis_version`.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The replication id of the `+FULLRESYNC` answer: the history the
    /// snapshot belongs to.
    pub fn replication_id(&self) -> &str {
        &self.replication_id
    }

    /// The replication offset the snapshot stands at.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The framing, once the first chunk was asked for.
    pub fn framing(&self) -> Option<Framing> {
        self.framing
    }

    /// RDB bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The next bytes of the RDB; `None` once it is complete (the end mark
    /// is not part of it).
    ///
    /// # Errors
    /// [`Error::EndedEarly`] if the server closed the connection before the
    /// RDB's end, [`Error::Idle`], [`Error::Connection`],
    /// [`Error::NotRedis`] for a preamble that is neither framing.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        let framing = match self.framing {
            Some(framing) => framing,
            None => {
                let framing = self.preamble().await?;
                self.framing = Some(framing);
                framing
            }
        };
        let chunk = match framing {
            Framing::Length(total) => {
                let remaining = total - self.received;
                if remaining == 0 {
                    self.done = true;
                    return Ok(None);
                }
                if self.conn.buffered().is_empty() {
                    self.read_more("receiving the RDB").await?;
                }
                let buf = self.conn.buffered();
                let take = buf
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let chunk = buf.split_to(take).freeze();
                if self.received + take as u64 == total {
                    self.done = true;
                }
                chunk
            }
            Framing::EofMark(mark) => loop {
                let buf = self.conn.buffered();
                // Servers before 7.0.6 sent keep-alive newlines after the mark.
                let trailing = buf.iter().rev().take_while(|&&b| b == b'\n').count();
                let body = buf.len() - trailing;
                if body >= MARK_LEN && buf[body - MARK_LEN..body] == mark {
                    let chunk = buf.split_to(body - MARK_LEN).freeze();
                    buf.clear();
                    self.done = true;
                    break chunk;
                }
                // Everything but what could be the start of the mark.
                let release = body.saturating_sub(MARK_LEN);
                if release >= 64 * 1024 {
                    break buf.split_to(release).freeze();
                }
                self.read_more("receiving the RDB").await?;
            },
        };
        self.received += chunk.len() as u64;
        if chunk.is_empty() && self.done {
            return Ok(None);
        }
        Ok(Some(chunk))
    }

    /// Reads the rest of the transfer on a task of its own, up to `depth`
    /// pieces ahead of [`ReadAhead::next_chunk`]: the socket is drained
    /// while the caller works on what came before, so the server's
    /// transfer (and its forked child behind it) does not wait on that
    /// work. [`ReadAhead::finish`] gives the transfer back.
    pub(crate) fn read_ahead(mut self, depth: usize) -> ReadAhead {
        let (tx, rx) = tokio::sync::mpsc::channel(depth.max(1));
        let task = tokio::spawn(async move {
            loop {
                let next = self.next_chunk().await;
                let end = !matches!(next, Ok(Some(_)));
                let next = next.transpose();
                if let Some(next) = next
                    && tx.send(next).await.is_err()
                {
                    break;
                }
                if end {
                    break;
                }
            }
            self
        });
        ReadAhead {
            rx,
            task: Some(task),
        }
    }

    /// Reads the preamble: `$<length>` or `$EOF:<mark>`.
    async fn preamble(&mut self) -> Result<Framing> {
        let line = self
            .conn
            .line("waiting for the RDB (the server saves it)", true)
            .await?;
        let bad = |addr: &str| Error::NotRedis {
            addr: addr.to_owned(),
            reason: format!("the RDB transfer began with {line:?}"),
        };
        if let Some(mark) = line.strip_prefix("$EOF:") {
            let mark: [u8; MARK_LEN] = mark
                .as_bytes()
                .try_into()
                .map_err(|_| bad(self.conn.addr()))?;
            return Ok(Framing::EofMark(mark));
        }
        if let Some(message) = line.strip_prefix('-') {
            return Err(Error::ServerRefused {
                addr: self.conn.addr().to_owned(),
                command: "PSYNC",
                message: message.to_owned(),
            });
        }
        line.strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .map(Framing::Length)
            .ok_or_else(|| bad(self.conn.addr()))
    }

    /// Reads more; the end of the stream here is the RDB ending early.
    async fn read_more(&mut self, what: &'static str) -> Result<()> {
        let before = self.conn.buffered().len() as u64;
        if self.conn.read_more(what).await? == 0 {
            return Err(Error::EndedEarly {
                addr: self.conn.addr().to_owned(),
                received: self.received + before,
                expected: match self.framing {
                    Some(Framing::Length(total)) => Some(total),
                    _ => None,
                },
            });
        }
        Ok(())
    }
}

/// A field of an `INFO` answer.
pub(crate) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

#[cfg(test)]
mod tests {
    use super::info_field;

    #[test]
    fn info_fields_are_read_by_name() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "redis_mode"), Some("standalone"));
        assert_eq!(info_field(info, "redis"), None);
    }
}

/// An [`RdbTransfer`] read on a task of its own, ahead of its consumer
/// ([`RdbTransfer::read_ahead`]). Dropped before the end, the reading stops.
#[derive(Debug)]
pub(crate) struct ReadAhead {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes>>,
    task: Option<tokio::task::JoinHandle<RdbTransfer>>,
}

impl ReadAhead {
    /// The next bytes of the RDB, as [`RdbTransfer::next_chunk`].
    ///
    /// # Errors
    /// Those of [`RdbTransfer::next_chunk`].
    pub(crate) async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        self.rx.recv().await.transpose()
    }

    /// The transfer, once its reading task has stopped: at the end of the
    /// RDB, after an error, or now if it was not read to its end.
    ///
    /// # Errors
    /// [`Error::InvalidState`] if the reading task did not return it.
    pub(crate) async fn finish(mut self) -> Result<RdbTransfer> {
        self.rx.close();
        // Pieces still queued let a blocked send through, and the task ends.
        while self.rx.recv().await.is_some() {}
        let task = self.task.take().ok_or(Error::InvalidState {
            reason: "the RDB transfer was already given back",
        })?;
        task.await.map_err(|_| Error::InvalidState {
            reason: "the RDB transfer's reading task failed",
        })
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
