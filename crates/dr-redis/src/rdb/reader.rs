//! The parser over a whole RDB in memory ([`Events`]) and over an
//! `AsyncRead` ([`RdbReader`]).

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};
use crate::rdb::frame::{Event, RdbParser};

/// How much an [`RdbReader`] asks its reader for at a time.
const READ_SIZE: usize = 256 * 1024;

/// The events of an RDB held whole in memory, as an iterator: it ends after
/// [`Event::Eof`], or after the first error.
///
/// ```
/// let rdb = b"REDIS0011\xfa\x09redis-ver\x057.2.4\xff\x00\x00\x00\x00\x00\x00\x00\x00";
/// let events: Vec<_> = dr_redis::events(rdb).collect::<Result<_, _>>()?;
/// assert_eq!(events.len(), 3); // header, AUX, EOF
/// # Ok::<(), dr_redis::Error>(())
/// ```
pub fn events(rdb: &[u8]) -> Events {
    let mut parser = RdbParser::new();
    parser.feed(rdb);
    parser.end_input();
    Events {
        parser,
        finished: false,
    }
}

/// The iterator [`events`] returns.
#[derive(Debug)]
pub struct Events {
    parser: RdbParser,
    finished: bool,
}

impl Events {
    /// The parser, for what follows the RDB ([`RdbParser::remainder`]).
    pub fn parser(&self) -> &RdbParser {
        &self.parser
    }
}

impl Iterator for Events {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.parser.next_event() {
            Ok(Some(event)) => Some(Ok(event)),
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(err) => {
                self.finished = true;
                Some(Err(err))
            }
        }
    }
}

/// The parser over an `AsyncRead`: reads as the parser needs bytes, straight
/// into its buffer, and stops reading at the RDB's end.
///
/// ```no_run
/// use dr_redis::{Event, RdbReader};
///
/// # async fn demo() -> Result<(), dr_redis::Error> {
/// let file = tokio::fs::File::open("dump.rdb").await.map_err(|source| dr_redis::Error::Io { offset: 0, source })?;
/// let mut reader = RdbReader::new(file);
/// while let Some(event) = reader.next_event().await? {
///     if let Event::Key(key) = event {
///         println!("{} in db {}: {} bytes", key.printable_key(), key.db, key.value.len());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RdbReader<R> {
    reader: R,
    parser: RdbParser,
    read: u64,
}

impl<R: AsyncRead + Unpin> RdbReader<R> {
    /// A reader at the start of an RDB.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            parser: RdbParser::new(),
            read: 0,
        }
    }

    /// The next event; `None` after [`Event::Eof`].
    ///
    /// # Errors
    /// As [`RdbParser::next_event`]; [`Error::Io`] when the reader fails; a
    /// reader that ends before the RDB does gives [`Error::Truncated`].
    pub async fn next_event(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(event) = self.parser.next_event()? {
                return Ok(Some(event));
            }
            if self.parser.is_done() {
                return Ok(None);
            }
            let buffer = self.parser.buffer_for_read(READ_SIZE);
            let read = self
                .reader
                .read_buf(buffer)
                .await
                .map_err(|source| Error::Io {
                    offset: self.read,
                    source,
                })?;
            self.read += read as u64;
            if read == 0 {
                self.parser.end_input();
            }
        }
    }

    /// Bytes read from the reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// The parser, for its version and what was read past the RDB's end.
    pub fn parser(&self) -> &RdbParser {
        &self.parser
    }

    /// The reader back.
    pub fn into_inner(self) -> R {
        self.reader
    }
}
