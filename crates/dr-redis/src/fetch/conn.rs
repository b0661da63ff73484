//! One connection to a Redis server, as much of RESP2 as a backup needs:
//! commands out, simple replies in, and the raw bytes of a replication
//! transfer after them. Every read waits at most the idle timeout.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// The longest reply line accepted (a `+FULLRESYNC`, an error message).
const MAX_LINE: usize = 64 * 1024;
/// The largest bulk reply accepted (an `INFO` answer).
const MAX_BULK: usize = 16 << 20;

/// A reply to a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+text`
    Simple(String),
    /// `:n`
    Integer(i64),
    /// `$n` and its bytes; `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
}

/// A connection: the socket and what was read past the last reply.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    addr: String,
    idle: Duration,
}

impl Conn {
    /// Connects to `addr` (`host:port`) within `timeout`.
    pub(crate) async fn connect(addr: &str, timeout: Duration, idle: Duration) -> Result<Self> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
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
        stream.set_nodelay(true).ok();
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
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.stream
            .write_all(&out)
            .await
            .map_err(|source| self.broken("sending a command", source))
    }

    /// Sends a command and reads its reply; an error reply is
    /// [`Error::ServerRefused`] naming `command`.
    pub(crate) async fn call(&mut self, command: &'static str, args: &[&[u8]]) -> Result<Reply> {
        self.send(args).await?;
        self.reply(command).await
    }

    /// Reads one reply.
    pub(crate) async fn reply(&mut self, command: &'static str) -> Result<Reply> {
        let line = self.line(command, false).await?;
        let (kind, rest) = line.split_at(1);
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
