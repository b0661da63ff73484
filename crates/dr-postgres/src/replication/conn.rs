//! The connection under every replication command: a socket (TCP, Unix or
//! TLS), a read buffer cut into frames, and a write buffer.
//!
//! Reading is cancellation-safe: bytes read are kept in the buffer until a
//! whole message is there, so a dropped `message()` future loses nothing.
//! Writing is too: a message is appended to the write buffer whole, and the
//! buffer drains across calls, so a dropped flush resumes with the next one.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;

use crate::error::{Error, Result, ServerError};
use crate::replication::message::{
    self, COMMAND_COMPLETE, COPY_BOTH_RESPONSE, COPY_IN_RESPONSE, COPY_OUT_RESPONSE, DATA_ROW,
    EMPTY_QUERY_RESPONSE, ERROR_RESPONSE, Frame, Malformed, NOTICE_RESPONSE, PARAMETER_STATUS,
    READY_FOR_QUERY, ROW_DESCRIPTION,
};
use crate::replication::row::Row;

/// How much to ask the socket for at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The byte stream under a connection.
pub(crate) enum Transport {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A framed connection to one server.
pub(crate) struct Conn {
    io: Transport,
    rbuf: BytesMut,
    wbuf: BytesMut,
    addr: String,
    params: Vec<(String, String)>,
    tls: bool,
}

impl Conn {
    pub(crate) fn new(io: Transport, addr: String, tls: bool) -> Self {
        Self {
            io,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(1024),
            addr,
            params: Vec::new(),
            tls,
        }
    }

    /// The server's address, for errors.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection is encrypted.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }

    /// A ParameterStatus value the server reported.
    pub(crate) fn parameter(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The write buffer: append whole messages, then [`Conn::flush`].
    pub(crate) fn wbuf(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    pub(crate) fn protocol(&self, reason: impl Into<String>) -> Error {
        Error::Protocol {
            addr: self.addr.clone(),
            reason: reason.into(),
        }
    }

    pub(crate) fn malformed(&self, m: Malformed) -> Error {
        self.protocol(m.0)
    }

    pub(crate) fn unexpected(&self, frame: &Frame, during: &str) -> Error {
        self.protocol(format!("unexpected {} {during}", frame.name()))
    }

    pub(crate) fn io_error(&self, context: &'static str, source: io::Error) -> Error {
        Error::Io {
            addr: self.addr.clone(),
            context,
            source,
        }
    }

    pub(crate) fn server_error(&self, error: ServerError) -> Error {
        Error::Server {
            addr: self.addr.clone(),
            error: Box::new(error),
        }
    }

    /// An ErrorResponse body as an [`Error::Server`].
    pub(crate) fn error_response(&self, body: Bytes) -> Error {
        match message::parse_error(body) {
            Ok(error) => self.server_error(error),
            Err(m) => self.malformed(m),
        }
    }

    /// Reads more bytes into the read buffer; `Ok(0)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let start = self.rbuf.len();
        // Safe code cannot read into uninitialised capacity, so zero it first:
        // a memset of 64 KiB is cheap next to the read itself.
        self.rbuf.resize(start + READ_CHUNK, 0);
        let mut buf = ReadBuf::new(&mut self.rbuf[start..]);
        let result = Pin::new(&mut self.io).poll_read(cx, &mut buf);
        let filled = buf.filled().len();
        self.rbuf.truncate(start + filled);
        match result {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(filled)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The next message, skipping notices and recording parameter changes.
    pub(crate) fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Result<Frame>> {
        loop {
            match message::split_frame(&mut self.rbuf) {
                Ok(Some(frame)) => match frame.tag {
                    NOTICE_RESPONSE => continue,
                    PARAMETER_STATUS => {
                        let (name, value) = message::parse_parameter_status(frame.body)
                            .map_err(|m| self.malformed(m))?;
                        match self.params.iter_mut().find(|(n, _)| *n == name) {
                            Some(slot) => slot.1 = value,
                            None => self.params.push((name, value)),
                        }
                        continue;
                    }
                    _ => return Poll::Ready(Ok(frame)),
                },
                Ok(None) => {}
                Err(m) => return Poll::Ready(Err(self.malformed(m))),
            }
            let n = ready!(self.poll_fill(cx)).map_err(|e| self.io_error("reading", e))?;
            if n == 0 {
                return Poll::Ready(Err(self.io_error(
                    "reading",
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    ),
                )));
            }
        }
    }

    /// The next message.
    pub(crate) async fn frame(&mut self) -> Result<Frame> {
        poll_fn(|cx| self.poll_frame(cx)).await
    }

    /// Writes out the write buffer and flushes the socket.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while !self.wbuf.is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wbuf))
                .map_err(|e| self.io_error("writing", e))?;
            if n == 0 {
                return Poll::Ready(Err(
                    self.io_error("writing", io::Error::from(io::ErrorKind::WriteZero))
                ));
            }
            self.wbuf.advance(n);
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx)).map_err(|e| self.io_error("writing", e))?;
        Poll::Ready(Ok(()))
    }

    /// Writes out the write buffer.
    pub(crate) async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Queues a simple Query message. Nothing is queued if the command cannot
    /// be sent (a NUL byte in it).
    pub(crate) fn queue_query(&mut self, command: &str) -> Result<()> {
        if command.contains('\0') {
            return Err(Error::InvalidInput {
                what: "replication command",
                reason: "contains a NUL byte".into(),
            });
        }
        postgres_protocol::message::frontend::query(command, &mut self.wbuf).map_err(|e| {
            Error::InvalidInput {
                what: "replication command",
                reason: e.to_string(),
            }
        })
    }

    /// Sends a simple Query.
    pub(crate) async fn send_query(&mut self, command: &str) -> Result<()> {
        self.queue_query(command)?;
        self.flush().await
    }

    /// Reads the results of a simple query up to ReadyForQuery: every row of
    /// every result set, or the server's error.
    pub(crate) async fn collect_rows(&mut self) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        let mut columns: Arc<[String]> = Arc::from(Vec::new());
        let mut failure = None;
        loop {
            let frame = self.frame().await?;
            match frame.tag {
                ROW_DESCRIPTION => {
                    columns = message::parse_row_description(frame.body)
                        .map_err(|m| self.malformed(m))?
                        .into();
                }
                DATA_ROW => {
                    let values =
                        message::parse_data_row(frame.body).map_err(|m| self.malformed(m))?;
                    rows.push(Row::new(columns.clone(), values));
                }
                COMMAND_COMPLETE | EMPTY_QUERY_RESPONSE => {}
                ERROR_RESPONSE => {
                    let error = self.error_response(frame.body);
                    if error.server_error().is_none_or(ServerError::is_fatal) {
                        return Err(error);
                    }
                    failure = Some(error);
                }
                READY_FOR_QUERY => {
                    return match failure {
                        Some(error) => Err(error),
                        None => Ok(rows),
                    };
                }
                COPY_OUT_RESPONSE | COPY_IN_RESPONSE | COPY_BOTH_RESPONSE => {
                    return Err(self.protocol(format!(
                        "the command started COPY ({}); use the method made for it",
                        frame.name()
                    )));
                }
                _ => return Err(self.unexpected(&frame, "in a query result")),
            }
        }
    }

    /// Sends a simple query and reads all its rows.
    pub(crate) async fn simple_query(&mut self, command: &str) -> Result<Vec<Row>> {
        self.send_query(command).await?;
        self.collect_rows().await
    }

    /// Skips messages up to ReadyForQuery (after an error in COPY mode), and
    /// returns the first server error seen on the way, if any.
    pub(crate) async fn drain_to_ready(&mut self) -> Result<Option<Error>> {
        let mut failure = None;
        loop {
            let frame = self.frame().await?;
            match frame.tag {
                READY_FOR_QUERY => return Ok(failure),
                ERROR_RESPONSE if failure.is_none() => {
                    failure = Some(self.error_response(frame.body));
                }
                _ => {}
            }
        }
    }

    /// Queues a Terminate message, flushes, and closes the socket.
    pub(crate) async fn terminate(mut self) -> Result<()> {
        postgres_protocol::message::frontend::terminate(&mut self.wbuf);
        self.flush().await?;
        poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx))
            .await
            .map_err(|e| self.io_error("closing", e))
    }
}
