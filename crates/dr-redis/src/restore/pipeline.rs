//! Commands pipelined on one connection with a bounded window: commands are
//! gathered into batches of about [`BATCH_BYTES`], each written in one go,
//! and at most `window` batches are on their way before the replies of the
//! oldest are read. The server works on one batch while the next is being
//! prepared and sent; memory stays bounded by the window.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::fetch::conn::{Conn, Reply};

/// About this many bytes of commands go out in one write.
pub(crate) const BATCH_BYTES: usize = 1 << 20;
/// And at most this many commands.
const BATCH_COMMANDS: usize = 8192;

/// What a command's reply means for the restore, decided by the caller when
/// the command is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A `RESTORE`: `+OK` restores the key; `BUSYKEY` means it existed (the
    /// caller asked not to replace it).
    Restore,
    /// One of the commands that rebuild a value (or a function); the last
    /// of a key's carries `last`: it counts the key as restored.
    Step { last: bool },
    /// An `EXISTS`: the reply is 1 or 0.
    Exists,
    /// The pipeline's own `SELECT`.
    Select,
}

/// A command sent and not yet answered.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// The database it runs in.
    pub(crate) db: u64,
    /// The key it is about (empty for a function).
    pub(crate) key: Bytes,
    /// Its encoded bytes, to send again elsewhere (a Cluster's redirection).
    pub(crate) command: Bytes,
    pub(crate) expect: Expect,
    /// How many times it was sent before (a Cluster's redirections).
    pub(crate) tries: u8,
}

/// How one reply came out.
#[derive(Debug)]
pub(crate) enum Answer {
    /// Done as asked; for `EXISTS`, whether the key exists.
    Done { exists: bool },
    /// `BUSYKEY`: the key exists and was left as it was.
    Busy,
    /// Any other error reply, with its text.
    Refused(String),
}

/// One connection's queue of commands.
pub(crate) struct Pipeline {
    conn: Conn,
    out: Vec<u8>,
    /// Commands sent (or gathered), oldest first.
    sent: VecDeque<Sent>,
    /// How many of `sent` each batch written holds, oldest first.
    batches: VecDeque<usize>,
    /// Commands gathered in `out`, not written yet.
    gathered: usize,
    window: usize,
    /// The database the connection's later commands run in, once known.
    db: Option<u64>,
}

impl Pipeline {
    /// A pipeline on `conn` (its first command selects its database) keeping at most `window`
    /// batches unanswered (at least 1).
    pub(crate) fn new(conn: Conn, window: usize) -> Self {
        Self {
            conn,
            out: Vec::with_capacity(BATCH_BYTES + 64 * 1024),
            sent: VecDeque::new(),
            batches: VecDeque::new(),
            gathered: 0,
            window: window.max(1),
            db: None,
        }
    }

    /// The connection, for a command of its own between batches: only
    /// once [`Pipeline::finish`] has read every answer.
    pub(crate) fn conn_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Queues `sent`, writing a batch once enough is gathered; the answers
    /// of batches read to keep within the window go to `answered`.
    pub(crate) async fn push(
        &mut self,
        sent: Sent,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        self.select(sent.db);
        self.out.extend_from_slice(&sent.command);
        self.sent.push_back(sent);
        self.gathered += 1;
        self.written_if_full(answered).await
    }

    /// Queues a command that `encode` appends to the outgoing batch itself
    /// (no copy of its own kept: it is never sent again), as `sent` says
    /// (whose `command` stays empty).
    pub(crate) async fn push_encoded(
        &mut self,
        sent: Sent,
        encode: impl FnOnce(&mut Vec<u8>),
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        self.select(sent.db);
        encode(&mut self.out);
        self.sent.push_back(sent);
        self.gathered += 1;
        self.written_if_full(answered).await
    }

    /// A `SELECT` first where the next command runs in another database.
    fn select(&mut self, db: u64) {
        if self.db != Some(db) {
            let name = db.to_string();
            super::commands::encode(&mut self.out, &[b"SELECT", name.as_bytes()]);
            self.db = Some(db);
            self.sent.push_back(Sent {
                db,
                key: Bytes::new(),
                command: Bytes::new(),
                expect: Expect::Select,
                tries: 0,
            });
            self.gathered += 1;
        }
    }

    /// Writes the batch once it is full, and reads the answers of the
    /// oldest batches beyond the window.
    async fn written_if_full(
        &mut self,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        if self.out.len() >= BATCH_BYTES || self.gathered >= BATCH_COMMANDS {
            self.write_batch().await?;
            while self.batches.len() > self.window {
                self.read_batch(answered).await?;
            }
        }
        Ok(())
    }

    /// Writes what is gathered and reads every answer still due.
    pub(crate) async fn finish(
        &mut self,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        self.write_batch().await?;
        while !self.batches.is_empty() {
            self.read_batch(answered).await?;
        }
        Ok(())
    }

    async fn write_batch(&mut self) -> Result<()> {
        if self.gathered == 0 {
            return Ok(());
        }
        self.conn.send_raw(&self.out).await?;
        self.out.clear();
        self.batches.push_back(self.gathered);
        self.gathered = 0;
        Ok(())
    }

    async fn read_batch(
        &mut self,
        answered: &mut (dyn FnMut(Sent, Answer) -> Result<()> + Send),
    ) -> Result<()> {
        let Some(count) = self.batches.pop_front() else {
            return Ok(());
        };
        for _ in 0..count {
            let answer = match self.conn.reply("RESTORE").await {
                Ok(Reply::Integer(n)) => Answer::Done { exists: n > 0 },
                Ok(_) => Answer::Done { exists: false },
                Err(Error::ServerRefused { message, .. }) if message.starts_with("BUSYKEY") => {
                    Answer::Busy
                }
                Err(Error::ServerRefused { message, .. }) => Answer::Refused(message),
                Err(other) => return Err(other),
            };
            let Some(sent) = self.sent.pop_front() else {
                return Err(Error::NotRedis {
                    addr: self.conn.addr().to_owned(),
                    reason: "more replies than commands sent".into(),
                });
            };
            if sent.expect == Expect::Select {
                if let Answer::Refused(message) = answer {
                    return Err(Error::ServerRefused {
                        addr: self.conn.addr().to_owned(),
                        command: "SELECT",
                        message,
                    });
                }
                continue;
            }
            answered(sent, answer)?;
        }
        Ok(())
    }
}
