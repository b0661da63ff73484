//! `START_REPLICATION ... PHYSICAL`: WAL streaming in CopyBoth mode.
//!
//! The server sends CopyData payloads tagged `w` (XLogData: start LSN, the
//! server's end of WAL, send time, WAL bytes) and `k` (keepalive: end of WAL,
//! send time, reply-requested). The client sends `r` (standby status update:
//! written, flushed and applied positions, its clock, reply-requested). When a
//! timeline the client streams is not the server's latest, the server ends
//! COPY at its end (CopyDone); once the client ends its side too, the server
//! names the next timeline and where it starts.

use std::future::poll_fn;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes};
use dr_core::Lsn;
use jiff::Timestamp;

use crate::error::{Error, Result};
use crate::replication::client::ReplicationClient;
use crate::replication::conn::Conn;
use crate::replication::message::{
    self, COMMAND_COMPLETE, COPY_BOTH_RESPONSE, COPY_DATA, COPY_DONE, DATA_ROW, ERROR_RESPONSE,
    Malformed, READY_FOR_QUERY, ROW_DESCRIPTION, Reader,
};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00:00 UTC).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A PostgreSQL timestamp (microseconds since 2000-01-01 UTC) as a [`Timestamp`].
fn from_pg_micros(micros: i64) -> Option<Timestamp> {
    Timestamp::from_microsecond(micros.checked_add(PG_EPOCH_UNIX_MICROS)?).ok()
}

/// A [`Timestamp`] as PostgreSQL's microseconds since 2000-01-01 UTC.
fn to_pg_micros(t: Timestamp) -> i64 {
    t.as_microsecond().saturating_sub(PG_EPOCH_UNIX_MICROS)
}

/// WAL from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct XLogData {
    /// Where `data` starts in the WAL.
    pub start: Lsn,
    /// How far the server's WAL goes (its flush position, or its replay
    /// position on a standby) when it sent this.
    pub end_of_wal: Lsn,
    /// The server's clock when it sent this.
    pub server_time: Timestamp,
    /// The WAL bytes; a WAL record is split across messages only at page
    /// boundaries.
    pub data: Bytes,
}

impl XLogData {
    /// The position just after `data`: what to report as written once it is.
    pub fn end(&self) -> Lsn {
        Lsn::new(self.start.as_u64() + self.data.len() as u64)
    }
}

/// A keepalive from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keepalive {
    /// How far the server's WAL goes.
    pub end_of_wal: Lsn,
    /// The server's clock when it sent this.
    pub server_time: Timestamp,
    /// The server wants a status update now, or it may time the connection
    /// out (`wal_sender_timeout`).
    pub reply_requested: bool,
}

/// One message of a WAL stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalEvent {
    /// WAL bytes.
    XLogData(XLogData),
    /// A keepalive.
    Keepalive(Keepalive),
}

/// A standby status update: how far this client has got. Each position is
/// the end of the WAL in that state (the byte after the last one), such as
/// [`XLogData::end`]. The server keeps the slot's WAL from `flush` on and,
/// with synchronous replication, a commit waits for `flush` (or `apply`
/// under `remote_apply`, which an archiver that never applies must not be
/// used with): report only what is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StandbyStatus {
    /// WAL received and written (not necessarily flushed) up to here.
    pub write: Lsn,
    /// WAL durable up to here.
    pub flush: Lsn,
    /// WAL applied up to here; [`Lsn::ZERO`] for a client that never applies.
    pub apply: Lsn,
    /// Ask the server to answer with a keepalive at once.
    pub reply_requested: bool,
}

impl StandbyStatus {
    /// A status with these positions, not asking for a reply.
    pub fn new(write: Lsn, flush: Lsn, apply: Lsn) -> Self {
        Self {
            write,
            flush,
            apply,
            reply_requested: false,
        }
    }

    /// Sets whether the server should answer at once.
    pub fn reply_requested(mut self, on: bool) -> Self {
        self.reply_requested = on;
        self
    }
}

/// The end of a timeline that is not the server's latest: continue with
/// `START_REPLICATION ... next_start TIMELINE next_timeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimelineEnded {
    /// The timeline that follows.
    pub next_timeline: u32,
    /// Where it forked off the one streamed: the end of the streamed timeline.
    pub next_start: Lsn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In CopyBoth.
    Streaming,
    /// The server ended its side (CopyDone); ours is open.
    ServerDone,
    /// There was nothing to stream: the server answered without COPY.
    Ended(Option<TimelineEnded>),
    /// An error ended the stream; `usable` as for a base backup.
    Failed { usable: bool },
}

/// A running WAL stream: [`WalStream::next`] for the server's messages,
/// [`WalStream::send_status`] to report progress, [`WalStream::finish`] to end it.
///
/// `next` is cancellation-safe, so it can sit in a `tokio::select!` next to
/// a status-update timer; `send_status` queues its message whole and a
/// cancelled send is completed by the next call. Dropping the stream closes
/// the connection.
pub struct WalStream {
    conn: Conn,
    state: State,
    start: Lsn,
}

impl std::fmt::Debug for WalStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalStream")
            .field("addr", &self.conn.addr())
            .field("start", &self.start)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl WalStream {
    /// Sends START_REPLICATION and waits for CopyBoth (or the answer that
    /// there is nothing to stream).
    pub(crate) async fn start(mut conn: Conn, command: &str, start: Lsn) -> Result<Self> {
        conn.send_query(command).await?;
        let mut timeline_end = None;
        loop {
            let frame = conn.frame().await?;
            match frame.tag {
                COPY_BOTH_RESPONSE => {
                    return Ok(Self {
                        conn,
                        state: State::Streaming,
                        start,
                    });
                }
                // Asked to start exactly at the end of an old timeline.
                ROW_DESCRIPTION | COMMAND_COMPLETE => {}
                DATA_ROW => {
                    timeline_end = Some(timeline_row(frame.body).map_err(|m| conn.malformed(m))?);
                }
                READY_FOR_QUERY => {
                    return Ok(Self {
                        conn,
                        state: State::Ended(timeline_end),
                        start,
                    });
                }
                ERROR_RESPONSE => return Err(conn.error_response(frame.body)),
                _ => return Err(conn.unexpected(&frame, "in answer to START_REPLICATION")),
            }
        }
    }

    /// Where streaming was asked to start.
    pub fn start_lsn(&self) -> Lsn {
        self.start
    }

    /// The next message from the server; `None` once the server has ended
    /// the stream (at the end of an old timeline): then call
    /// [`WalStream::finish`] to learn the next timeline.
    ///
    /// Cancellation-safe. Also sends any status update a cancelled
    /// [`WalStream::send_status`] left behind.
    ///
    /// # Errors
    /// [`Error::Server`] if the server ended streaming with an error (such as
    /// `58P01` when the requested WAL has been removed), [`Error::Io`] if the
    /// connection broke, [`Error::Protocol`] for a malformed message.
    pub async fn next(&mut self) -> Result<Option<WalEvent>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<WalEvent>>> {
        match self.state {
            State::Streaming => {}
            State::ServerDone | State::Ended(_) => return Poll::Ready(Ok(None)),
            State::Failed { .. } => {
                return Poll::Ready(Err(Error::InvalidState {
                    reason: "the WAL stream failed; it has ended",
                }));
            }
        }
        // Finish writing a status update a cancelled send left queued, without
        // waiting for it: the server may be blocked on us reading.
        if !self.conn.wbuf().is_empty()
            && let Poll::Ready(Err(e)) = self.conn.poll_flush(cx)
        {
            return self.fail(e);
        }
        let frame = match ready!(self.conn.poll_frame(cx)) {
            Ok(frame) => frame,
            Err(e) => return self.fail(e),
        };
        match frame.tag {
            COPY_DATA => match parse_server_message(frame.body) {
                Ok(event) => Poll::Ready(Ok(Some(event))),
                Err(m) => {
                    let error = self.conn.malformed(m);
                    self.fail(error)
                }
            },
            COPY_DONE => {
                self.state = State::ServerDone;
                Poll::Ready(Ok(None))
            }
            ERROR_RESPONSE => {
                let error = self.conn.error_response(frame.body);
                self.fail(error)
            }
            _ => {
                let error = self.conn.unexpected(&frame, "in the WAL stream");
                self.fail(error)
            }
        }
    }

    fn fail<T>(&mut self, error: Error) -> Poll<Result<T>> {
        let usable = error.server_error().is_some_and(|e| !e.is_fatal());
        self.state = State::Failed { usable };
        Poll::Ready(Err(error))
    }

    /// Sends a standby status update and flushes it. The caller decides the
    /// positions: a synchronous archiver reports `flush` only for WAL that is
    /// durable in its store. Answer keepalives that ask for a reply, and send
    /// one at least every `wal_sender_timeout / 2` (the default timeout is
    /// 60 s; pg_receivewal sends every 10 s).
    ///
    /// # Errors
    /// [`Error::InvalidState`] once the stream has ended on our side or
    /// failed; [`Error::Io`] if the connection broke.
    pub async fn send_status(&mut self, status: StandbyStatus) -> Result<()> {
        match self.state {
            State::Streaming | State::ServerDone => {}
            State::Ended(_) | State::Failed { .. } => {
                return Err(Error::InvalidState {
                    reason: "the WAL stream has ended",
                });
            }
        }
        encode_status(&status, Timestamp::now(), self.conn.wbuf());
        self.conn.flush().await
    }

    /// Ends the stream: sends CopyDone (unless there was nothing to stream),
    /// skips WAL still in flight, and reads the server's closing answer.
    /// Returns the client for more commands, and where the next timeline
    /// begins if the streamed timeline has ended.
    ///
    /// # Errors
    /// The server's error, [`Error::Io`] if the connection broke,
    /// [`Error::InvalidState`] after a failure that left the connection unusable.
    pub async fn finish(mut self) -> Result<(ReplicationClient, Option<TimelineEnded>)> {
        let mut server_done = match self.state {
            State::Ended(end) => return Ok((ReplicationClient::from_conn(self.conn), end)),
            State::Failed { usable: true } => {
                if let Some(error) = self.conn.drain_to_ready().await? {
                    return Err(error);
                }
                return Ok((ReplicationClient::from_conn(self.conn), None));
            }
            State::Failed { usable: false } => {
                return Err(Error::InvalidState {
                    reason: "the WAL stream's connection broke; connect again",
                });
            }
            State::Streaming => false,
            State::ServerDone => true,
        };
        postgres_protocol::message::frontend::copy_done(self.conn.wbuf());
        self.conn.flush().await?;
        let mut timeline_end = None;
        let mut failure = None;
        loop {
            let frame = self.conn.frame().await?;
            match frame.tag {
                COPY_DATA if !server_done => {}
                COPY_DONE if !server_done => server_done = true,
                ROW_DESCRIPTION | COMMAND_COMPLETE if server_done => {}
                DATA_ROW if server_done => {
                    timeline_end =
                        Some(timeline_row(frame.body).map_err(|m| self.conn.malformed(m))?);
                }
                ERROR_RESPONSE => {
                    let error = self.conn.error_response(frame.body);
                    if error.server_error().is_some_and(|e| e.is_fatal()) {
                        return Err(error);
                    }
                    failure.get_or_insert(error);
                    // The server left COPY; what follows is ReadyForQuery.
                    server_done = true;
                }
                READY_FOR_QUERY => {
                    if let Some(error) = failure {
                        return Err(error);
                    }
                    return Ok((ReplicationClient::from_conn(self.conn), timeline_end));
                }
                _ => return Err(self.conn.unexpected(&frame, "while ending the WAL stream")),
            }
        }
    }
}

/// A `w` or `k` payload.
fn parse_server_message(payload: Bytes) -> Result<WalEvent, Malformed> {
    let mut r = Reader::new(payload, "WAL stream CopyData");
    let time = |micros: i64| {
        from_pg_micros(micros)
            .ok_or_else(|| Malformed(format!("server time {micros} is out of range")))
    };
    match r.u8()? {
        b'w' => {
            let start = Lsn::new(r.u64()?);
            let end_of_wal = Lsn::new(r.u64()?);
            let server_time = time(r.i64()?)?;
            Ok(WalEvent::XLogData(XLogData {
                start,
                end_of_wal,
                server_time,
                data: r.rest(),
            }))
        }
        b'k' => {
            let end_of_wal = Lsn::new(r.u64()?);
            let server_time = time(r.i64()?)?;
            let reply_requested = r.u8()? != 0;
            r.finish()?;
            Ok(WalEvent::Keepalive(Keepalive {
                end_of_wal,
                server_time,
                reply_requested,
            }))
        }
        other => Err(Malformed(format!(
            "WAL stream CopyData of unknown type {other:#04x}"
        ))),
    }
}

/// Appends a CopyData message holding an `r` standby status update.
fn encode_status(status: &StandbyStatus, now: Timestamp, out: &mut bytes::BytesMut) {
    const PAYLOAD: i32 = 1 + 8 + 8 + 8 + 8 + 1;
    out.put_u8(COPY_DATA);
    out.put_i32(4 + PAYLOAD);
    out.put_u8(b'r');
    out.put_u64(status.write.as_u64());
    out.put_u64(status.flush.as_u64());
    out.put_u64(status.apply.as_u64());
    out.put_i64(to_pg_micros(now));
    out.put_u8(u8::from(status.reply_requested));
}

/// `(next_tli int8, next_tli_startpos text)`.
fn timeline_row(body: Bytes) -> Result<TimelineEnded, Malformed> {
    let row = message::parse_data_row(body)?;
    let text = |i: usize| {
        row.get(i)
            .and_then(|v| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .ok_or_else(|| Malformed("the next-timeline row is incomplete".into()))
    };
    if row.len() != 2 {
        return Err(Malformed(format!(
            "the next-timeline row has {} columns, expected 2",
            row.len()
        )));
    }
    let tli = text(0)?;
    let next_timeline = tli
        .parse()
        .map_err(|_| Malformed(format!("next timeline {tli:?} is not a timeline")))?;
    let lsn = text(1)?;
    let next_start = lsn
        .parse()
        .map_err(|_| Malformed(format!("next timeline start {lsn:?} is not an LSN")))?;
    Ok(TimelineEnded {
        next_timeline,
        next_start,
    })
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    #[test]
    fn xlogdata_and_keepalive_decode() {
        let mut w = BytesMut::new();
        w.put_u8(b'w');
        w.put_u64(0x0100_0000);
        w.put_u64(0x0100_0010);
        w.put_i64(0);
        w.put_slice(b"0123456789abcdef");
        let WalEvent::XLogData(data) = parse_server_message(w.freeze()).unwrap() else {
            panic!("not XLogData");
        };
        assert_eq!(data.start, Lsn::new(0x0100_0000));
        assert_eq!(data.end(), Lsn::new(0x0100_0010));
        assert_eq!(data.server_time.to_string(), "2000-01-01T00:00:00Z");

        let mut k = BytesMut::new();
        k.put_u8(b'k');
        k.put_u64(42);
        k.put_i64(1_000_000);
        k.put_u8(1);
        let WalEvent::Keepalive(keepalive) = parse_server_message(k.freeze()).unwrap() else {
            panic!("not a keepalive");
        };
        assert!(keepalive.reply_requested);
        assert_eq!(keepalive.server_time.to_string(), "2000-01-01T00:00:01Z");

        assert!(parse_server_message(Bytes::from_static(b"k\0\0")).is_err());
        assert!(parse_server_message(Bytes::from_static(b"x")).is_err());
        let mut far = BytesMut::new();
        far.put_u8(b'k');
        far.put_u64(0);
        far.put_i64(i64::MAX);
        far.put_u8(0);
        assert!(parse_server_message(far.freeze()).is_err());
    }

    #[test]
    fn status_updates_encode() {
        let status = StandbyStatus::new(Lsn::new(3), Lsn::new(2), Lsn::ZERO).reply_requested(true);
        let now: Timestamp = "2000-01-01T00:00:02Z".parse().unwrap();
        let mut out = BytesMut::new();
        encode_status(&status, now, &mut out);
        assert_eq!(out.len(), 1 + 4 + 34);
        assert_eq!(&out[..6], &[b'd', 0, 0, 0, 38, b'r']);
        assert_eq!(&out[6..14], &3u64.to_be_bytes());
        assert_eq!(&out[14..22], &2u64.to_be_bytes());
        assert_eq!(&out[22..30], &0u64.to_be_bytes());
        assert_eq!(&out[30..38], &2_000_000i64.to_be_bytes());
        assert_eq!(out[38], 1);
    }

    #[test]
    fn next_timeline_rows() {
        let mut body = BytesMut::new();
        body.put_i16(2);
        body.put_i32(1);
        body.put_slice(b"2");
        body.put_i32(9);
        body.put_slice(b"0/3000060");
        assert_eq!(
            timeline_row(body.freeze()).unwrap(),
            TimelineEnded {
                next_timeline: 2,
                next_start: "0/3000060".parse().unwrap()
            }
        );
    }
}
