//! `BASE_BACKUP` with the PostgreSQL 15 protocol, as a pull-based stream.
//!
//! The server answers with a result row (start LSN, timeline), the tablespace
//! list, then one COPY OUT whose CopyData payloads start with a type byte:
//! `n` a new archive (name, tablespace location), `d` data of the current
//! archive or of the manifest, `p` progress, `m` the manifest follows. After
//! CopyDone comes the end row (end LSN, timeline), then CommandComplete.
//! Nothing is buffered beyond one message: each `Data` shares the buffer its
//! message was read into, so memory stays bounded by what the caller holds.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use dr_core::Lsn;
use tokio::io::{AsyncRead, ReadBuf};

use crate::error::{Error, Result};
use crate::replication::client::{ReplicationClient, quote_literal};
use crate::replication::conn::Conn;
use crate::replication::message::{
    self, COMMAND_COMPLETE, COPY_DATA, COPY_DONE, COPY_OUT_RESPONSE, DATA_ROW, ERROR_RESPONSE,
    Malformed, READY_FOR_QUERY, ROW_DESCRIPTION, Reader,
};

/// The lowest and highest `MAX_RATE` the server accepts, in kB/s.
const MAX_RATE_RANGE: std::ops::RangeInclusive<u32> = 32..=1_048_576;

/// What `BASE_BACKUP` is asked to do. Always `TARGET 'client'`: the archives
/// come over this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BaseBackupOptions {
    /// The backup's label, written into `backup_label`.
    pub label: String,
    /// `CHECKPOINT 'fast'`: an immediate checkpoint instead of a spread one.
    pub fast_checkpoint: bool,
    /// `MANIFEST 'yes'` with these file checksums; `None` for no manifest.
    pub manifest: Option<ManifestChecksums>,
    /// `MAX_RATE`: the server's send rate limit in kB/s (32 to 1048576).
    pub max_rate_kbps: Option<u32>,
    /// `PROGRESS`: have the server size each tablespace first (for
    /// [`Tablespace::size_kib`]); costs a scan of the data directory.
    pub progress: bool,
    /// `WAIT`: wait until the WAL the backup needs is archived (default true);
    /// off when the WAL is streamed separately.
    pub wait_for_archive: bool,
    /// `WAL`: include the WAL the backup needs in the base archive (default
    /// false; drkit streams WAL separately).
    pub include_wal: bool,
    /// `VERIFY_CHECKSUMS`: check data page checksums while reading (default true).
    pub verify_checksums: bool,
    /// `TABLESPACE_MAP`: write `tablespace_map` instead of symlinks in `pg_tblspc`.
    pub tablespace_map: bool,
}

impl BaseBackupOptions {
    /// A backup labelled `label` with the server's defaults (spread
    /// checkpoint, wait for archiving, verify checksums, no WAL) and a
    /// manifest with SHA-256 file checksums.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            fast_checkpoint: false,
            manifest: Some(ManifestChecksums::Sha256),
            max_rate_kbps: None,
            progress: false,
            wait_for_archive: true,
            include_wal: false,
            verify_checksums: true,
            tablespace_map: false,
        }
    }

    /// Sets an immediate checkpoint.
    pub fn fast_checkpoint(mut self, on: bool) -> Self {
        self.fast_checkpoint = on;
        self
    }

    /// Sets the manifest's checksums, or no manifest.
    pub fn manifest(mut self, checksums: Option<ManifestChecksums>) -> Self {
        self.manifest = checksums;
        self
    }

    /// Limits the server's send rate, in kB/s.
    pub fn max_rate_kbps(mut self, rate: Option<u32>) -> Self {
        self.max_rate_kbps = rate;
        self
    }

    /// Sets whether tablespaces are sized first.
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Sets whether the server waits for WAL archiving before ending.
    pub fn wait_for_archive(mut self, on: bool) -> Self {
        self.wait_for_archive = on;
        self
    }

    /// Sets whether the needed WAL is included in the base archive.
    pub fn include_wal(mut self, on: bool) -> Self {
        self.include_wal = on;
        self
    }

    /// Sets whether page checksums are verified.
    pub fn verify_checksums(mut self, on: bool) -> Self {
        self.verify_checksums = on;
        self
    }

    /// Sets whether a `tablespace_map` file is written.
    pub fn tablespace_map(mut self, on: bool) -> Self {
        self.tablespace_map = on;
        self
    }

    /// The command, in PostgreSQL 15's option syntax.
    pub(crate) fn to_command(&self) -> Result<String> {
        let mut options = vec![format!("LABEL {}", quote_literal(&self.label)?)];
        if self.progress {
            options.push("PROGRESS".into());
        }
        if self.include_wal {
            options.push("WAL".into());
        }
        if self.fast_checkpoint {
            options.push("CHECKPOINT 'fast'".into());
        }
        if !self.wait_for_archive {
            options.push("WAIT 0".into());
        }
        if let Some(rate) = self.max_rate_kbps {
            if !MAX_RATE_RANGE.contains(&rate) {
                return Err(Error::InvalidInput {
                    what: "MAX_RATE",
                    reason: format!(
                        "{rate} kB/s is outside {}..={} kB/s",
                        MAX_RATE_RANGE.start(),
                        MAX_RATE_RANGE.end()
                    ),
                });
            }
            options.push(format!("MAX_RATE {rate}"));
        }
        if self.tablespace_map {
            options.push("TABLESPACE_MAP".into());
        }
        if !self.verify_checksums {
            options.push("VERIFY_CHECKSUMS 0".into());
        }
        if let Some(checksums) = self.manifest {
            options.push("MANIFEST 'yes'".into());
            options.push(format!("MANIFEST_CHECKSUMS '{}'", checksums.as_str()));
        }
        options.push("TARGET 'client'".into());
        Ok(format!("BASE_BACKUP ({})", options.join(", ")))
    }
}

/// The checksum the backup manifest records for each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ManifestChecksums {
    /// No file checksums (the manifest still has sizes and its own SHA-256).
    None,
    /// CRC-32C, the server's default: fast, catches accidents only.
    Crc32c,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl ManifestChecksums {
    /// The name `MANIFEST_CHECKSUMS` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            ManifestChecksums::None => "NONE",
            ManifestChecksums::Crc32c => "CRC32C",
            ManifestChecksums::Sha224 => "SHA224",
            ManifestChecksums::Sha256 => "SHA256",
            ManifestChecksums::Sha384 => "SHA384",
            ManifestChecksums::Sha512 => "SHA512",
        }
    }
}

/// One tablespace of the backup, from the list the server sends first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tablespace {
    /// The tablespace's OID; `None` for the data directory.
    pub oid: Option<u32>,
    /// Where the tablespace lives on the server; `None` for the data directory.
    pub location: Option<String>,
    /// Its size in KiB, when `PROGRESS` was asked for.
    pub size_kib: Option<u64>,
}

/// One step of a base backup stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BaseBackupEvent {
    /// A new tar archive begins: `base.tar` for the data directory (sent
    /// last), `<oid>.tar` for a tablespace. `Data` up to the next event is its content.
    ArchiveStart {
        /// The archive's name.
        name: String,
        /// The tablespace's location on the server; `None` for the data directory.
        tablespace: Option<String>,
    },
    /// A piece of the current archive, or of the manifest after `ManifestStart`.
    Data(Bytes),
    /// How many bytes the server has sent so far, as it counts them.
    Progress {
        /// Bytes done.
        bytes_done: u64,
    },
    /// The backup manifest (JSON) follows as `Data`.
    ManifestStart,
    /// The backup is complete: restoring it needs WAL up to `end`.
    End {
        /// The end of the WAL the backup needs.
        end: Lsn,
        /// The timeline of `end`.
        timeline: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inside the COPY OUT.
    Copy,
    /// After CopyDone: the end row, CommandComplete, ReadyForQuery.
    AfterCopy,
    /// `End` was returned; the connection is idle.
    Done,
    /// An error ended the backup. `usable`: the connection can be drained to
    /// ReadyForQuery and reused; `drained`: it has been.
    Failed { drained: bool, usable: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Archive,
    Manifest,
}

/// A running base backup: pull events with [`BaseBackupStream::next`], or
/// read one archive at a time with [`BaseBackupStream::reader`].
///
/// `next` is cancellation-safe. Dropping the stream before `End` closes the
/// connection and the server abandons the backup.
pub struct BaseBackupStream {
    conn: Conn,
    start: Lsn,
    timeline: u32,
    tablespaces: Vec<Tablespace>,
    state: State,
    section: Section,
    /// An event a reader stopped at, returned by the next `next`.
    pending: Option<BaseBackupEvent>,
    /// Data a reader has not handed out yet.
    leftover: Bytes,
    end: Option<(Lsn, u32)>,
    failure: Option<Error>,
    bytes_done: u64,
}

impl std::fmt::Debug for BaseBackupStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseBackupStream")
            .field("addr", &self.conn.addr())
            .field("start", &self.start)
            .field("timeline", &self.timeline)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl BaseBackupStream {
    /// Sends the command and reads up to the start of COPY.
    pub(crate) async fn start(mut conn: Conn, command: &str) -> Result<Self> {
        conn.send_query(command).await?;
        let mut sets: Vec<Vec<Vec<Option<Bytes>>>> = Vec::new();
        let mut open = false;
        loop {
            let frame = conn.frame().await?;
            match frame.tag {
                ROW_DESCRIPTION => {
                    sets.push(Vec::new());
                    open = true;
                }
                DATA_ROW if open => {
                    let values =
                        message::parse_data_row(frame.body).map_err(|m| conn.malformed(m))?;
                    if let Some(set) = sets.last_mut() {
                        set.push(values);
                    }
                }
                COMMAND_COMPLETE => open = false,
                COPY_OUT_RESPONSE => break,
                ERROR_RESPONSE => return Err(conn.error_response(frame.body)),
                _ => return Err(conn.unexpected(&frame, "before the base backup's COPY")),
            }
        }
        let [start_set, tablespace_set] = <[_; 2]>::try_from(sets).map_err(|sets| {
            conn.protocol(format!(
                "BASE_BACKUP sent {} result sets before COPY, expected 2",
                sets.len()
            ))
        })?;
        let (start, timeline) = match start_set.as_slice() {
            [row] => position_row(row).map_err(|m| conn.malformed(m))?,
            _ => return Err(conn.protocol("BASE_BACKUP's start position is not one row")),
        };
        let tablespaces = tablespace_set
            .iter()
            .map(|row| tablespace_row(row).map_err(|m| conn.malformed(m)))
            .collect::<Result<_>>()?;
        Ok(Self {
            conn,
            start,
            timeline,
            tablespaces,
            state: State::Copy,
            section: Section::None,
            pending: None,
            leftover: Bytes::new(),
            end: None,
            failure: None,
            bytes_done: 0,
        })
    }

    /// Where the backup starts: WAL from here on is needed to restore it.
    pub fn start_lsn(&self) -> Lsn {
        self.start
    }

    /// The timeline of the start position.
    pub fn timeline(&self) -> u32 {
        self.timeline
    }

    /// The tablespaces, in the order their archives come (the data directory last).
    pub fn tablespaces(&self) -> &[Tablespace] {
        &self.tablespaces
    }

    /// The latest progress count the server sent.
    pub fn bytes_done(&self) -> u64 {
        self.bytes_done
    }

    /// The next event; `None` after `End`.
    ///
    /// Cancellation-safe: a dropped call loses no event.
    ///
    /// # Errors
    /// [`Error::Server`] if the backup failed on the server (SQLSTATE `XX001`
    /// for a page checksum failure, reported at the end), [`Error::Io`] if the
    /// connection broke, [`Error::Protocol`] for a malformed stream.
    pub async fn next(&mut self) -> Result<Option<BaseBackupEvent>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<BaseBackupEvent>>> {
        if !self.leftover.is_empty() {
            return Poll::Ready(Ok(Some(BaseBackupEvent::Data(std::mem::take(
                &mut self.leftover,
            )))));
        }
        if let Some(event) = self.pending.take() {
            return Poll::Ready(Ok(Some(event)));
        }
        self.poll_wire(cx)
    }

    /// An [`AsyncRead`] over the `Data` of the current archive (or manifest):
    /// it ends where the next `ArchiveStart`, `ManifestStart` or `End` begins,
    /// which the following [`BaseBackupStream::next`] returns. Progress events
    /// in between are only counted ([`BaseBackupStream::bytes_done`]).
    ///
    /// A failure ends the read with an [`io::Error`] whose inner error is
    /// this crate's [`Error`].
    pub fn reader(&mut self) -> BaseBackupReader<'_> {
        BaseBackupReader { stream: self }
    }

    /// The client again, once the stream has returned `End` (or failed with a
    /// server error that left the connection usable).
    ///
    /// # Errors
    /// [`Error::InvalidState`] while the backup is still running: drop the
    /// stream to abandon it. The connection's error if it broke.
    pub async fn into_client(mut self) -> Result<ReplicationClient> {
        match self.state {
            State::Done
            | State::Failed {
                drained: true,
                usable: true,
            } => {}
            State::Failed {
                drained: false,
                usable: true,
            } => {
                self.conn.drain_to_ready().await?;
            }
            State::Failed { usable: false, .. } => {
                return Err(Error::InvalidState {
                    reason: "the base backup's connection broke; connect again",
                });
            }
            State::Copy | State::AfterCopy => {
                return Err(Error::InvalidState {
                    reason: "the base backup has not ended; drop the stream to abandon it",
                });
            }
        }
        Ok(ReplicationClient::from_conn(self.conn))
    }

    /// Ends the stream with `error`. `drained`: ReadyForQuery has been read.
    fn fail(&mut self, error: Error, drained: bool) -> Poll<Result<Option<BaseBackupEvent>>> {
        // After a server's ERROR the walsender leaves COPY and sends
        // ReadyForQuery; after anything else the connection's state is unknown.
        let usable = error.server_error().is_some_and(|e| !e.is_fatal());
        self.state = State::Failed { drained, usable };
        Poll::Ready(Err(error))
    }

    /// Reads messages until one makes an event.
    fn poll_wire(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<BaseBackupEvent>>> {
        loop {
            match self.state {
                State::Done => return Poll::Ready(Ok(None)),
                State::Failed { .. } => {
                    return Poll::Ready(Err(Error::InvalidState {
                        reason: "the base backup failed; its stream has ended",
                    }));
                }
                State::Copy | State::AfterCopy => {}
            }
            let frame = match ready!(self.conn.poll_frame(cx)) {
                Ok(frame) => frame,
                Err(e) => return self.fail(e, false),
            };
            if self.state == State::Copy {
                match frame.tag {
                    COPY_DATA => match self.copy_data(frame.body) {
                        Ok(Some(event)) => return Poll::Ready(Ok(Some(event))),
                        Ok(None) => continue,
                        Err(e) => return self.fail(e, false),
                    },
                    COPY_DONE => self.state = State::AfterCopy,
                    ERROR_RESPONSE => {
                        let error = self.conn.error_response(frame.body);
                        return self.fail(error, false);
                    }
                    _ => {
                        let error = self.conn.unexpected(&frame, "in the base backup's COPY");
                        return self.fail(error, false);
                    }
                }
                continue;
            }
            match frame.tag {
                ROW_DESCRIPTION | COMMAND_COMPLETE => {}
                DATA_ROW => {
                    let end =
                        message::parse_data_row(frame.body).and_then(|row| position_row(&row));
                    match end {
                        Ok(end) => self.end = Some(end),
                        Err(m) => {
                            let error = self.conn.malformed(m);
                            return self.fail(error, false);
                        }
                    }
                }
                ERROR_RESPONSE => {
                    let error = self.conn.error_response(frame.body);
                    if error.server_error().is_some_and(|e| !e.is_fatal()) {
                        // Keep reading to ReadyForQuery, then report it.
                        self.failure.get_or_insert(error);
                    } else {
                        return self.fail(error, false);
                    }
                }
                READY_FOR_QUERY => {
                    if let Some(error) = self.failure.take() {
                        return self.fail(error, true);
                    }
                    let Some((end, timeline)) = self.end else {
                        let error = self
                            .conn
                            .protocol("BASE_BACKUP ended without its end position");
                        return self.fail(error, true);
                    };
                    self.state = State::Done;
                    return Poll::Ready(Ok(Some(BaseBackupEvent::End { end, timeline })));
                }
                _ => {
                    let error = self.conn.unexpected(&frame, "after the base backup's COPY");
                    return self.fail(error, false);
                }
            }
        }
    }

    /// One CopyData payload; `None` for nothing to report.
    fn copy_data(&mut self, payload: Bytes) -> Result<Option<BaseBackupEvent>> {
        let mut r = Reader::new(payload, "base backup CopyData");
        let kind = r.u8().map_err(|m| self.conn.malformed(m))?;
        let event = match kind {
            b'n' => {
                let (name, location) = (|| {
                    let name = r.string()?;
                    let location = r.string()?;
                    Ok::<_, Malformed>((name, location))
                })()
                .map_err(|m| self.conn.malformed(m))?;
                if self.section == Section::Manifest {
                    return Err(self
                        .conn
                        .protocol("a base backup archive after the manifest"));
                }
                // Callers name files and streams after it, as pg_basebackup does.
                if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
                    return Err(self
                        .conn
                        .protocol(format!("invalid base backup archive name {name:?}")));
                }
                self.section = Section::Archive;
                BaseBackupEvent::ArchiveStart {
                    name,
                    tablespace: Some(location).filter(|l| !l.is_empty()),
                }
            }
            b'd' => {
                if self.section == Section::None {
                    return Err(self.conn.protocol("base backup data before any archive"));
                }
                let data = r.rest();
                if data.is_empty() {
                    return Ok(None);
                }
                BaseBackupEvent::Data(data)
            }
            b'p' => {
                let bytes_done = r.u64().map_err(|m| self.conn.malformed(m))?;
                self.bytes_done = bytes_done;
                BaseBackupEvent::Progress { bytes_done }
            }
            b'm' => {
                self.section = Section::Manifest;
                BaseBackupEvent::ManifestStart
            }
            other => {
                return Err(self
                    .conn
                    .protocol(format!("base backup CopyData of unknown type {other:#04x}")));
            }
        };
        r.finish().map_err(|m| self.conn.malformed(m))?;
        Ok(Some(event))
    }
}

/// Reads the data of one archive (or the manifest) of a [`BaseBackupStream`];
/// see [`BaseBackupStream::reader`].
#[derive(Debug)]
pub struct BaseBackupReader<'a> {
    stream: &'a mut BaseBackupStream,
}

impl AsyncRead for BaseBackupReader<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let stream = &mut *self.get_mut().stream;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !stream.leftover.is_empty() {
                let n = buf.remaining().min(stream.leftover.len());
                buf.put_slice(&stream.leftover.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if stream.pending.is_some() {
                return Poll::Ready(Ok(()));
            }
            match ready!(stream.poll_wire(cx)) {
                Ok(Some(BaseBackupEvent::Data(data))) => stream.leftover = data,
                Ok(Some(BaseBackupEvent::Progress { .. })) => {}
                Ok(Some(event)) => stream.pending = Some(event),
                Ok(None) => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(io::Error::other(e))),
            }
        }
    }
}

/// `(recptr text, tli int8)`: a position row.
fn position_row(row: &[Option<Bytes>]) -> Result<(Lsn, u32), Malformed> {
    let text = |i: usize, name: &str| {
        row.get(i)
            .and_then(|v| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .ok_or_else(|| Malformed(format!("base backup position row has no {name}")))
    };
    if row.len() != 2 {
        return Err(Malformed(format!(
            "base backup position row has {} columns, expected 2",
            row.len()
        )));
    }
    let lsn = text(0, "LSN")?;
    let lsn = lsn
        .parse()
        .map_err(|_| Malformed(format!("base backup position {lsn:?} is not an LSN")))?;
    let tli = text(1, "timeline")?;
    let tli = tli
        .parse()
        .map_err(|_| Malformed(format!("base backup timeline {tli:?} is not a timeline")))?;
    Ok((lsn, tli))
}

/// `(spcoid oid, spclocation text, size int8)`: a tablespace row.
fn tablespace_row(row: &[Option<Bytes>]) -> Result<Tablespace, Malformed> {
    if row.len() != 3 {
        return Err(Malformed(format!(
            "tablespace row has {} columns, expected 3",
            row.len()
        )));
    }
    let text = |i: usize| -> Result<Option<&str>, Malformed> {
        row[i]
            .as_deref()
            .map(|v| {
                std::str::from_utf8(v).map_err(|_| Malformed("tablespace row is not UTF-8".into()))
            })
            .transpose()
    };
    let number = |i: usize| -> Result<Option<u64>, Malformed> {
        text(i)?
            .map(|t| {
                t.parse()
                    .map_err(|_| Malformed(format!("tablespace value {t:?} is not a number")))
            })
            .transpose()
    };
    Ok(Tablespace {
        oid: number(0)?
            .map(|oid| u32::try_from(oid).map_err(|_| Malformed(format!("OID {oid} is too big"))))
            .transpose()?,
        location: text(1)?.map(str::to_owned),
        size_kib: number(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_use_the_option_syntax() {
        let options = BaseBackupOptions::new("drkit 'nightly'")
            .fast_checkpoint(true)
            .wait_for_archive(false)
            .max_rate_kbps(Some(1024));
        assert_eq!(
            options.to_command().unwrap(),
            "BASE_BACKUP (LABEL 'drkit ''nightly''', CHECKPOINT 'fast', WAIT 0, MAX_RATE 1024, \
             MANIFEST 'yes', MANIFEST_CHECKSUMS 'SHA256', TARGET 'client')"
        );
        let plain = BaseBackupOptions::new("x")
            .manifest(None)
            .progress(true)
            .verify_checksums(false);
        assert_eq!(
            plain.to_command().unwrap(),
            "BASE_BACKUP (LABEL 'x', PROGRESS, VERIFY_CHECKSUMS 0, TARGET 'client')"
        );
        assert!(
            BaseBackupOptions::new("x")
                .max_rate_kbps(Some(1))
                .to_command()
                .is_err()
        );
        assert!(BaseBackupOptions::new("a\0b").to_command().is_err());
    }

    #[test]
    fn rows_parse() {
        let row = vec![
            Some(Bytes::from_static(b"0/2000028")),
            Some(Bytes::from_static(b"1")),
        ];
        assert_eq!(
            position_row(&row).unwrap(),
            ("0/2000028".parse().unwrap(), 1)
        );
        assert!(position_row(&row[..1]).is_err());

        let base = vec![None, None, Some(Bytes::from_static(b"30000"))];
        assert_eq!(
            tablespace_row(&base).unwrap(),
            Tablespace {
                oid: None,
                location: None,
                size_kib: Some(30000)
            }
        );
        let other = vec![
            Some(Bytes::from_static(b"16384")),
            Some(Bytes::from_static(b"/srv/ts")),
            None,
        ];
        assert_eq!(tablespace_row(&other).unwrap().oid, Some(16384));
    }
}
