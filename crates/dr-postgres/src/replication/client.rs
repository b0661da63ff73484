//! The replication client and its one-shot commands.

use bytes::Bytes;
use dr_core::Lsn;

use crate::error::{Error, Result};
use crate::replication::base_backup::{BaseBackupOptions, BaseBackupStream};
use crate::replication::conn::Conn;
use crate::replication::row::Row;
use crate::replication::startup;
use crate::replication::tls::Tls;
use crate::replication::wal::WalStream;

/// A physical replication connection (`replication=true`) to one PostgreSQL
/// server: the walsender's commands, a base backup, or a WAL stream.
///
/// Commands that stream ([`ReplicationClient::base_backup`],
/// [`ReplicationClient::start_replication`]) take the client and hand it back
/// when the stream has ended; dropping a stream closes the connection, which
/// makes the server abandon what it was sending.
pub struct ReplicationClient {
    conn: Conn,
}

impl std::fmt::Debug for ReplicationClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationClient")
            .field("addr", &self.conn.addr())
            .field("tls", &self.conn.is_tls())
            .finish_non_exhaustive()
    }
}

impl ReplicationClient {
    /// Opens a replication connection with the settings of a
    /// `tokio_postgres::Config`: its hosts (TCP, or Unix socket directories)
    /// and ports, tried in order; `hostaddr`; `user`, `password` (trust,
    /// cleartext, md5 and SCRAM-SHA-256); `application_name`; `options`;
    /// `connect_timeout` (for each host, covering TLS and authentication);
    /// `sslmode` (`disable`, `prefer`, `require`) with `tls` saying how to
    /// check the server's certificate. `dbname`, `target_session_attrs`, TCP
    /// keepalive settings and `load_balance_hosts` are not used.
    ///
    /// # Errors
    /// [`Error::Connect`] if no host could be reached (the last host's error),
    /// [`Error::Timeout`], [`Error::Tls`], [`Error::Server`] if the server
    /// refused (SQLSTATE `28P01` for a wrong password), [`Error::Auth`] if
    /// authentication failed on our side, [`Error::Config`] for unusable settings.
    pub async fn connect(config: &tokio_postgres::Config, tls: &Tls) -> Result<Self> {
        Ok(Self {
            conn: startup::connect(config, tls).await?,
        })
    }

    pub(crate) fn from_conn(conn: Conn) -> Self {
        Self { conn }
    }

    /// The server's address: `host:port`, or the socket path.
    pub fn addr(&self) -> &str {
        self.conn.addr()
    }

    /// Whether the connection is encrypted with TLS.
    pub fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// A parameter the server reported at startup or since, such as
    /// `server_version` or `integer_datetimes`.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.conn.parameter(name)
    }

    /// The server's version string, such as `15.18 (Debian 15.18-0+deb12u1)`.
    pub fn server_version(&self) -> Option<&str> {
        self.parameter("server_version")
    }

    /// The server's major version, such as 15.
    pub fn server_major_version(&self) -> Option<u32> {
        major_version(self.server_version()?)
    }

    /// Requires a server of at least `needs` for `feature`.
    fn require_major(&self, feature: &'static str, needs: u32) -> Result<()> {
        match self.server_major_version() {
            Some(major) if major >= needs => Ok(()),
            _ => Err(Error::Unsupported {
                addr: self.addr().to_owned(),
                feature,
                needs,
                server_version: self.server_version().unwrap_or("unknown").to_owned(),
            }),
        }
    }

    /// `IDENTIFY_SYSTEM`: which cluster this is, its current timeline, and how
    /// far its WAL is flushed.
    ///
    /// # Errors
    /// [`Error::Server`], [`Error::Io`], or [`Error::Protocol`] if the answer
    /// does not have the documented shape.
    pub async fn identify_system(&mut self) -> Result<SystemIdentity> {
        let row = self.single_row("IDENTIFY_SYSTEM", 4).await?;
        Ok(SystemIdentity {
            system_id: self.parse_column(&row, 0, "systemid")?,
            timeline: self.parse_column(&row, 1, "timeline")?,
            xlogpos: self.lsn_column(&row, 2, "xlogpos")?,
            dbname: self.text_column(&row, 3, "dbname")?.map(str::to_owned),
        })
    }

    /// `SHOW name`: a server setting as text, such as `16MB` for `wal_segment_size`.
    ///
    /// # Errors
    /// [`Error::Server`] with SQLSTATE `42704` for an unknown setting.
    pub async fn show(&mut self, name: &str) -> Result<String> {
        let command = format!("SHOW {}", quote_ident(name)?);
        let row = self.single_row(&command, 1).await?;
        Ok(self
            .text_column(&row, 0, name)?
            .unwrap_or_default()
            .to_owned())
    }

    /// The WAL segment size in bytes (`SHOW wal_segment_size`).
    ///
    /// # Errors
    /// As [`ReplicationClient::show`], or [`Error::Protocol`] if the value is
    /// not a size.
    pub async fn wal_segment_size(&mut self) -> Result<u64> {
        let text = self.show("wal_segment_size").await?;
        crate::wal::parse_size(&text).ok_or_else(|| {
            self.conn
                .protocol(format!("wal_segment_size {text:?} is not a size"))
        })
    }

    /// `TIMELINE_HISTORY tli`: the history file of a timeline (there is none for timeline 1).
    ///
    /// # Errors
    /// [`Error::Server`] (`58P01`) if the server has no such history file.
    pub async fn timeline_history(&mut self, timeline: u32) -> Result<TimelineHistory> {
        let row = self
            .single_row(&format!("TIMELINE_HISTORY {timeline}"), 2)
            .await?;
        let filename = self
            .text_column(&row, 0, "filename")?
            .ok_or_else(|| self.conn.protocol("TIMELINE_HISTORY returned no filename"))?
            .to_owned();
        let content = row.get_bytes(1).unwrap_or_default();
        Ok(TimelineHistory { filename, content })
    }

    /// `CREATE_REPLICATION_SLOT name [TEMPORARY] PHYSICAL [(RESERVE_WAL)]`.
    /// A temporary slot lives as long as this connection.
    ///
    /// # Errors
    /// [`Error::Server`]: `42710` if the slot exists, `42602` for an invalid
    /// name (slot names are lower-case letters, digits and underscores),
    /// `53400` if `max_replication_slots` are in use.
    pub async fn create_physical_slot(
        &mut self,
        name: &str,
        options: &CreateSlotOptions,
    ) -> Result<SlotInfo> {
        let mut command = format!("CREATE_REPLICATION_SLOT {}", quote_ident(name)?);
        if options.temporary {
            command.push_str(" TEMPORARY");
        }
        command.push_str(" PHYSICAL");
        if options.reserve_wal {
            command.push_str(" RESERVE_WAL");
        }
        let row = self.single_row(&command, 4).await?;
        let name = self
            .text_column(&row, 0, "slot_name")?
            .unwrap_or(name)
            .to_owned();
        let consistent_point = match self.text_column(&row, 1, "consistent_point")? {
            None => None,
            Some(text) => {
                Some(self.parse_lsn(text, "consistent_point")?).filter(|l| *l != Lsn::ZERO)
            }
        };
        Ok(SlotInfo {
            name,
            consistent_point,
        })
    }

    /// `READ_REPLICATION_SLOT name` (PostgreSQL 15): where a physical slot
    /// holds WAL from; `None` if there is no such slot.
    ///
    /// # Errors
    /// [`Error::Unsupported`] before PostgreSQL 15; [`Error::Server`] for a
    /// logical slot.
    pub async fn read_replication_slot(&mut self, name: &str) -> Result<Option<SlotPosition>> {
        self.require_major("READ_REPLICATION_SLOT", 15)?;
        let command = format!("READ_REPLICATION_SLOT {}", quote_ident(name)?);
        let row = self.single_row(&command, 3).await?;
        if row.get(0).is_none() {
            return Ok(None);
        }
        let restart_lsn = match self.text_column(&row, 1, "restart_lsn")? {
            Some(text) => Some(self.parse_lsn(text, "restart_lsn")?),
            None => None,
        };
        let restart_timeline = match self.text_column(&row, 2, "restart_tli")? {
            Some(text) => Some(self.parse_text(text, "restart_tli")?),
            None => None,
        };
        Ok(Some(SlotPosition {
            restart_lsn,
            restart_timeline,
        }))
    }

    /// `DROP_REPLICATION_SLOT name [WAIT]`. With `wait`, waits for a slot in
    /// use by another connection to be released instead of failing.
    ///
    /// # Errors
    /// [`Error::Server`]: `42704` if there is no such slot, `55006` if it is
    /// in use and `wait` is false.
    pub async fn drop_slot(&mut self, name: &str, wait: bool) -> Result<()> {
        let mut command = format!("DROP_REPLICATION_SLOT {}", quote_ident(name)?);
        if wait {
            command.push_str(" WAIT");
        }
        self.conn.simple_query(&command).await.map(drop)
    }

    /// Runs a replication command that answers with rows (or nothing), such
    /// as `SHOW` or a command this client has no method for, and returns
    /// every row. Commands that start COPY are refused by the server's answer
    /// and leave the connection unusable: use the methods made for them.
    ///
    /// # Errors
    /// [`Error::Server`] with the SQLSTATE (`42601` for an unknown command).
    pub async fn simple_query(&mut self, command: &str) -> Result<Vec<Row>> {
        self.conn.simple_query(command).await
    }

    /// Starts a base backup (PostgreSQL 15 or later) and returns its stream
    /// once the server has finished the checkpoint and sent the backup's
    /// start position and tablespace list.
    ///
    /// # Errors
    /// [`Error::Unsupported`] before PostgreSQL 15, [`Error::InvalidInput`]
    /// for unusable options, [`Error::Server`] if the server refused
    /// (`42501` without the REPLICATION attribute, `55000` when another
    /// backup is starting).
    pub async fn base_backup(self, options: &BaseBackupOptions) -> Result<BaseBackupStream> {
        self.require_major("BASE_BACKUP with the PostgreSQL 15 protocol", 15)?;
        let command = options.to_command()?;
        BaseBackupStream::start(self.conn, &command).await
    }

    /// `START_REPLICATION [SLOT slot] PHYSICAL start [TIMELINE tli]`: streams
    /// WAL from `start` (the start of a WAL page, as the walsender sends
    /// whole pages) on `timeline` (default: the server's current one).
    ///
    /// # Errors
    /// [`Error::Server`]: `42704` for an unknown slot, `55006` if the slot is
    /// in use, and an error if `start` is ahead of the server's flush position
    /// or on a timeline not in its history.
    pub async fn start_replication(
        self,
        slot: Option<&str>,
        start: Lsn,
        timeline: Option<u32>,
    ) -> Result<WalStream> {
        let mut command = String::from("START_REPLICATION");
        if let Some(slot) = slot {
            command.push_str(" SLOT ");
            command.push_str(&quote_ident(slot)?);
        }
        command.push_str(&format!(" PHYSICAL {start}"));
        if let Some(timeline) = timeline {
            command.push_str(&format!(" TIMELINE {timeline}"));
        }
        WalStream::start(self.conn, &command, start).await
    }

    /// Says goodbye (Terminate) and closes the connection.
    ///
    /// # Errors
    /// [`Error::Io`] if the goodbye could not be written; the connection is
    /// closed either way.
    pub async fn close(self) -> Result<()> {
        self.conn.terminate().await
    }

    /// Runs `command` and expects exactly one row of `columns` values.
    async fn single_row(&mut self, command: &str, columns: usize) -> Result<Row> {
        let mut rows = self.conn.simple_query(command).await?;
        if rows.len() != 1 || rows[0].len() != columns {
            let got = rows.first().map_or(0, Row::len);
            return Err(self.conn.protocol(format!(
                "{} answered {} rows of {got} columns, expected 1 row of {columns}",
                command.split(' ').next().unwrap_or(command),
                rows.len()
            )));
        }
        Ok(rows.swap_remove(0))
    }

    fn text_column<'r>(&self, row: &'r Row, idx: usize, name: &str) -> Result<Option<&'r str>> {
        row.get_str(idx)
            .map_err(|_| self.conn.protocol(format!("{name} is not UTF-8")))
    }

    fn parse_text<T: std::str::FromStr>(&self, text: &str, name: &str) -> Result<T> {
        text.parse().map_err(|_| {
            self.conn
                .protocol(format!("{name} {text:?} is not a number"))
        })
    }

    fn parse_column<T: std::str::FromStr>(&self, row: &Row, idx: usize, name: &str) -> Result<T> {
        let text = self
            .text_column(row, idx, name)?
            .ok_or_else(|| self.conn.protocol(format!("{name} is NULL")))?;
        self.parse_text(text, name)
    }

    fn parse_lsn(&self, text: &str, name: &str) -> Result<Lsn> {
        text.parse()
            .map_err(|_| self.conn.protocol(format!("{name} {text:?} is not an LSN")))
    }

    fn lsn_column(&self, row: &Row, idx: usize, name: &str) -> Result<Lsn> {
        let text = self
            .text_column(row, idx, name)?
            .ok_or_else(|| self.conn.protocol(format!("{name} is NULL")))?;
        self.parse_lsn(text, name)
    }
}

/// What `IDENTIFY_SYSTEM` says about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SystemIdentity {
    /// The database system identifier from `pg_control`; two clusters never share one.
    pub system_id: u64,
    /// The current timeline.
    pub timeline: u32,
    /// The WAL flush position.
    pub xlogpos: Lsn,
    /// The database connected to; `None` on a physical replication connection.
    pub dbname: Option<String>,
}

/// A timeline history file, as `TIMELINE_HISTORY` sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimelineHistory {
    /// The file's name in `pg_wal`, such as `00000002.history`.
    pub filename: String,
    /// The file's bytes.
    pub content: Bytes,
}

impl TimelineHistory {
    /// The switch points the file records, oldest first: each line says
    /// which timeline ended where.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if a line is not `timeline<TAB>lsn<TAB>reason`.
    pub fn entries(&self) -> Result<Vec<HistoryEntry>> {
        let text = std::str::from_utf8(&self.content).map_err(|_| Error::InvalidInput {
            what: "timeline history",
            reason: format!("{} is not UTF-8", self.filename),
        })?;
        let bad = |line: &str| Error::InvalidInput {
            what: "timeline history",
            reason: format!("{}: bad line {line:?}", self.filename),
        };
        let mut entries = Vec::new();
        for line in text.lines() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut fields = trimmed.splitn(3, char::is_whitespace);
            let timeline = fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad(line))?;
            let switch_point = fields
                .next()
                .map(str::trim)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad(line))?;
            let reason = fields.next().unwrap_or("").trim().to_owned();
            entries.push(HistoryEntry {
                timeline,
                switch_point,
                reason,
            });
        }
        Ok(entries)
    }
}

/// One line of a timeline history file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// The timeline that ended.
    pub timeline: u32,
    /// Where it ended: the next timeline starts here.
    pub switch_point: Lsn,
    /// Why, as the server wrote it ("no recovery target specified").
    pub reason: String,
}

/// How to create a physical replication slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreateSlotOptions {
    /// Reserve WAL from now on, rather than from the first time the slot is used.
    pub reserve_wal: bool,
    /// Drop the slot when this connection ends.
    pub temporary: bool,
}

impl CreateSlotOptions {
    /// A permanent slot that reserves no WAL until first used.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets whether the slot reserves WAL at once.
    pub fn reserve_wal(mut self, on: bool) -> Self {
        self.reserve_wal = on;
        self
    }

    /// Sets whether the slot is dropped with this connection.
    pub fn temporary(mut self, on: bool) -> Self {
        self.temporary = on;
        self
    }
}

/// A slot `CREATE_REPLICATION_SLOT` made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotInfo {
    /// The slot's name.
    pub name: String,
    /// The consistent point the server reports; physical slots have none.
    pub consistent_point: Option<Lsn>,
}

/// Where a physical slot holds WAL from (`READ_REPLICATION_SLOT`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotPosition {
    /// The oldest WAL the slot keeps; `None` if it reserves none yet.
    pub restart_lsn: Option<Lsn>,
    /// The timeline of `restart_lsn`.
    pub restart_timeline: Option<u32>,
}

/// `"name"`, with embedded quotes doubled: the walsender's grammar takes
/// quoted identifiers, so a name can never end the command early. The server
/// still checks the name (slot names are `[a-z0-9_]{1,63}`).
pub(crate) fn quote_ident(name: &str) -> Result<String> {
    if name.contains('\0') {
        return Err(Error::InvalidInput {
            what: "name",
            reason: format!("{name:?} contains a NUL byte"),
        });
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `'text'`, with embedded quotes doubled (the walsender's grammar has no
/// backslash escapes).
pub(crate) fn quote_literal(text: &str) -> Result<String> {
    if text.contains('\0') {
        return Err(Error::InvalidInput {
            what: "string",
            reason: format!("{text:?} contains a NUL byte"),
        });
    }
    Ok(format!("'{}'", text.replace('\'', "''")))
}

/// The major version from `server_version`: `15.18 (Debian ...)` is 15,
/// `9.6.24` is 9, `17beta1` is 17.
pub(crate) fn major_version(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("slot_1").unwrap(), "\"slot_1\"");
        assert_eq!(quote_ident("a\"b").unwrap(), "\"a\"\"b\"");
        assert!(quote_ident("a\0b").is_err());
        assert_eq!(quote_literal("it's").unwrap(), "'it''s'");
        assert_eq!(quote_literal("back\\slash").unwrap(), "'back\\slash'");
    }

    #[test]
    fn versions_and_sizes() {
        assert_eq!(major_version("15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(major_version("17beta1"), Some(17));
        assert_eq!(major_version("9.6.24"), Some(9));
        assert_eq!(major_version("devel"), None);
        use crate::wal::parse_size;
        assert_eq!(parse_size("16MB"), Some(16 << 20));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("8192"), Some(8192));
        assert_eq!(parse_size("16 MB"), Some(16 << 20));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn history_lines() {
        let history = TimelineHistory {
            filename: "00000003.history".into(),
            content: Bytes::from_static(
                b"1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tbefore 2026-11-21 14:30:00+00\n",
            ),
        };
        let entries = history.entries().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].timeline, 1);
        assert_eq!(entries[0].switch_point, "0/3000060".parse().unwrap());
        assert_eq!(entries[0].reason, "no recovery target specified");
        assert_eq!(entries[1].timeline, 2);

        let bad = TimelineHistory {
            filename: "x".into(),
            content: Bytes::from_static(b"one\t0/1\n"),
        };
        assert!(bad.entries().is_err());
    }
}
