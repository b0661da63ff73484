//! One connection to a Redis server, as much of RESP2 as a backup needs:
//! commands out, simple replies in, and the raw bytes of a replication
//! transfer after them. Every read waits at most the idle timeout.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

/// The socket, plain or under TLS.
trait Socket: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Socket for T {}

/// TLS for a connection: the client's settings and the name the server's
/// certificate must carry.
#[derive(Clone)]
pub(crate) struct TlsSettings {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

use crate::error::{Error, Result};

/// The longest reply line accepted (a `+FULLRESYNC`, an error message).
const MAX_LINE: usize = 64 * 1024;
/// The largest bulk reply accepted (an `INFO` answer, a `DUMP` payload:
/// Redis's own limit on a bulk argument is 512 MB).
const MAX_BULK: usize = 512 << 20;
/// The most elements an array reply may have (a `SCAN` batch).
const MAX_ARRAY: usize = 1 << 20;
/// The deepest arrays within arrays accepted.
const MAX_DEPTH: usize = 8;

/// A reply to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+text`
    Simple(String),
    /// `:n`
    Integer(i64),
    /// `$n` and its bytes; `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*n` and its elements (arrays within arrays up to 8 deep);
    /// `None` for `*-1`.
    Array(Option<Vec<Reply>>),
}

/// Appends one command to `out`, as RESP's array of bulk strings.
pub(crate) fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// A connection: the socket and what was read past the last reply.
pub(crate) struct Conn {
    stream: Box<dyn Socket>,
    buf: BytesMut,
    addr: String,
    idle: Duration,
}

impl Conn {
    /// Connects to `addr` (`host:port`) within `timeout`.
    pub(crate) async fn connect(
        addr: &str,
        timeout: Duration,
        idle: Duration,
        tls: Option<&TlsSettings>,
    ) -> Result<Self> {
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(Error::Unreachable {
                    addr: addr.to_owned(),
                    source,
                });
            }
            Err(_) => {
                return Err(Error::Idle {
                    addr: addr.to_owned(),
                    what: "connecting",
                    after: timeout,
                });
            }
        };
        tcp.set_nodelay(true).ok();
        let stream: Box<dyn Socket> = match tls {
            None => Box::new(tcp),
            Some(tls) => {
                let connector = TlsConnector::from(tls.config.clone());
                let handshake = connector.connect(tls.server_name.clone(), tcp);
                match tokio::time::timeout(timeout, handshake).await {
                    Ok(Ok(stream)) => Box::new(stream),
                    Ok(Err(source)) => {
                        return Err(Error::Tls {
                            addr: addr.to_owned(),
                            source,
                        });
                    }
                    Err(_) => {
                        return Err(Error::Idle {
                            addr: addr.to_owned(),
                            what: "negotiating TLS",
                            after: timeout,
                        });
                    }
                }
            }
        };
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            addr: addr.to_owned(),
            idle,
        })
    }

    /// The server's `host:port`.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one command.
    pub(crate) async fn send(&mut self, args: &[&[u8]]) -> Result<()> {
        let mut out = Vec::with_capacity(64);
        encode(&mut out, args);
        self.send_raw(&out).await
    }

    /// Sends commands already [`encode`]d, in one write.
    pub(crate) async fn send_raw(&mut self, commands: &[u8]) -> Result<()> {
        self.stream
            .write_all(commands)
            .await
            .map_err(|source| self.broken("sending commands", source))
    }

    /// Sends a command and reads its reply; an error reply is
    /// [`Error::ServerRefused`] naming `command`.
    pub(crate) async fn call(&mut self, command: &'static str, args: &[&[u8]]) -> Result<Reply> {
        self.send(args).await?;
        self.reply(command).await
    }

    /// Reads one reply.
    pub(crate) async fn reply(&mut self, command: &'static str) -> Result<Reply> {
        match self.scalar(command).await? {
            Ok(reply) => Ok(reply),
            Err(count) => self.array(command, count, 1).await,
        }
    }

    /// Reads the `count` elements of an array `depth` deep (arrays within
    /// arrays, such as `FUNCTION LIST`'s, up to [`MAX_DEPTH`]).
    fn array<'a>(
        &'a mut self,
        command: &'static str,
        count: usize,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply>> + Send + 'a>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                return Err(self.not_redis(format!("arrays nested over {MAX_DEPTH} deep")));
            }
            let mut items = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                items.push(match self.scalar(command).await? {
                    Ok(reply) => reply,
                    Err(inner) => self.array(command, inner, depth + 1).await?,
                });
            }
            Ok(Reply::Array(Some(items)))
        })
    }

    /// Reads one reply that is not an array, or the header of an array:
    /// `Err(count)` with its elements still to read.
    async fn scalar(&mut self, command: &'static str) -> Result<std::result::Result<Reply, usize>> {
        let line = self.line(command, false).await?;
        if let Some(count) = line.strip_prefix('*') {
            let count: i64 = count
                .parse()
                .map_err(|_| self.not_redis(format!("an array reply {line:?}")))?;
            if count < 0 {
                return Ok(Ok(Reply::Array(None)));
            }
            return usize::try_from(count)
                .ok()
                .filter(|&n| n <= MAX_ARRAY)
                .map(Err)
                .ok_or_else(|| self.not_redis(format!("an array reply of {count} elements")));
        }
        self.single(command, &line).await.map(Ok)
    }

    /// The reply that `line` begins.
    async fn single(&mut self, command: &'static str, line: &str) -> Result<Reply> {
        let (Some(kind), Some(rest)) = (line.get(..1), line.get(1..)) else {
            return Err(self.not_redis(format!("a reply {line:?}")));
        };
        match kind {
            "+" => Ok(Reply::Simple(rest.to_owned())),
            "-" => Err(Error::ServerRefused {
                addr: self.addr.clone(),
                command,
                message: rest.to_owned(),
            }),
            ":" => rest
                .parse()
                .map(Reply::Integer)
                .map_err(|_| self.not_redis(format!("an integer reply {line:?}"))),
            "$" => {
                let len: i64 = rest
                    .parse()
                    .map_err(|_| self.not_redis(format!("a bulk reply {line:?}")))?;
                if len < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&n| n <= MAX_BULK)
                    .ok_or_else(|| self.not_redis(format!("a bulk reply of {len} bytes")))?;
                while self.buf.len() < len + 2 {
                    self.fill(command).await?;
                }
                let body = self.buf.split_to(len).to_vec();
                if &self.buf[..2] != b"\r\n" {
                    return Err(self.not_redis("a bulk reply not ended by CRLF".to_owned()));
                }
                self.buf.advance(2);
                Ok(Reply::Bulk(Some(body)))
            }
            _ => Err(self.not_redis(format!("a reply {line:?}"))),
        }
    }

    /// Reads one line without its CRLF. With `skip_newlines`, bare `\n`
    /// bytes before it (a master's keep-alives while it forks) are skipped.
    pub(crate) async fn line(&mut self, what: &'static str, skip_newlines: bool) -> Result<String> {
        loop {
            if skip_newlines {
                let newlines = self.buf.iter().take_while(|&&b| b == b'\n').count();
                self.buf.advance(newlines);
            }
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(end + 1);
                let line = line.strip_suffix(b"\r\n").unwrap_or(&line[..end]);
                if line.is_empty() {
                    return Err(self.not_redis(format!("an empty line while {what}")));
                }
                return String::from_utf8(line.to_vec())
                    .map_err(|_| self.not_redis(format!("a reply that is not text while {what}")));
            }
            if self.buf.len() > MAX_LINE {
                return Err(self.not_redis(format!("a reply line over {MAX_LINE} bytes")));
            }
            self.fill(what).await?;
        }
    }

    /// Reads more into the buffer, waiting at most the idle timeout.
    async fn fill(&mut self, what: &'static str) -> Result<()> {
        let n = self.read_more(what).await?;
        if n == 0 {
            return Err(Error::Closed {
                addr: self.addr.clone(),
                what,
            });
        }
        Ok(())
    }

    /// Reads what arrives next (0 at the end of the stream), into the buffer.
    pub(crate) async fn read_more(&mut self, what: &'static str) -> Result<usize> {
        self.buf.reserve(64 * 1024);
        match tokio::time::timeout(self.idle, self.stream.read_buf(&mut self.buf)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(source)) => Err(self.broken(what, source)),
            Err(_) => Err(Error::Idle {
                addr: self.addr.clone(),
                what,
                after: self.idle,
            }),
        }
    }

    /// Reads what arrives within `within` into the buffer: `None` if nothing
    /// did, else how much (0 at the end of the stream).
    pub(crate) async fn read_within(
        &mut self,
        what: &'static str,
        within: Duration,
    ) -> Result<Option<usize>> {
        self.buf.reserve(64 * 1024);
        match tokio::time::timeout(within, self.stream.read_buf(&mut self.buf)).await {
            Ok(Ok(n)) => Ok(Some(n)),
            Ok(Err(source)) => Err(self.broken(what, source)),
            Err(_) => Ok(None),
        }
    }

    /// How long a read may wait for a byte.
    pub(crate) fn idle(&self) -> Duration {
        self.idle
    }

    /// The bytes read but not yet consumed.
    pub(crate) fn buffered(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    fn broken(&self, what: &'static str, source: std::io::Error) -> Error {
        Error::Connection {
            addr: self.addr.clone(),
            what,
            source,
        }
    }

    fn not_redis(&self, reason: String) -> Error {
        Error::NotRedis {
            addr: self.addr.clone(),
            reason,
        }
    }
}
