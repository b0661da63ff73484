//! The push parser: bytes in, in pieces of any size, [`Event`]s out, in the
//! order of the file. Values are not decoded, only walked ([`Scan`]) to find
//! their end; each key's value comes out as the exact bytes that follow the
//! key in the RDB, a slice of the parser's buffer.
//!
//! **The buffer holds only what was fed and not yet handed out**: nothing is
//! reserved by a length the data claims. **The checksum covers exactly the
//! bytes up to and including the EOF opcode**, updated as each item is handed
//! out.

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Place, Result, printable};
use crate::rdb::crc::Crc64;
use crate::rdb::scan::{self, Scan};
use crate::rdb::wire::{Cursor, Read, Stop};
use crate::rdb::{MAX_RDB_VERSION, ValueType, opcode};

/// The first version whose files end with a CRC-64.
const FIRST_CHECKSUMMED_VERSION: u16 = 5;

/// The start of an RDB: magic and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// The RDB version (`REDIS0011` is 11).
    pub version: u16,
}

/// A module type's 64-bit id: a nine-character name and a 10-bit encoding
/// version (`moduleTypeEncodeId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModuleId(pub u64);

impl ModuleId {
    /// The module type's name, such as `"ReJSON-RL"`.
    pub fn name(self) -> String {
        const CHARSET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..9)
            .rev()
            .map(|i| char::from(CHARSET[((self.0 >> (10 + 6 * i)) & 63) as usize]))
            .collect()
    }

    /// The module's encoding version of its values.
    pub fn encoding_version(self) -> u16 {
        (self.0 & 1023) as u16
    }
}

impl std::fmt::Display for ModuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (encoding {})", self.name(), self.encoding_version())
    }
}

/// A module's data that is not a key (`MODULE_AUX`), carried raw: loading
/// it needs the module.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModuleAux {
    /// The module type.
    pub module: ModuleId,
    /// When the module saved it: 1 before the keys, 2 after.
    pub when: u64,
    /// Every byte after the opcode: module id, when, the module's
    /// opcode-tagged fields and their end.
    pub raw: Bytes,
}

/// One key of the RDB, its value framed but not decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyEntry {
    /// The database (`SELECTDB`), 0 if none was selected.
    pub db: u64,
    /// The key.
    pub key: Bytes,
    /// When the key expires, in Unix milliseconds (`EXPIRETIME_MS`, or the
    /// legacy `EXPIRETIME` in seconds times 1000).
    pub expire_at_ms: Option<i64>,
    /// Seconds since last access (`IDLE`, with an LRU eviction policy).
    pub idle_seconds: Option<u64>,
    /// The LFU access frequency (`FREQ`, with an LFU eviction policy).
    pub lfu_freq: Option<u8>,
    /// The value's type byte.
    pub value_type: ValueType,
    /// The value's bytes as they follow the key in the RDB: what a DUMP
    /// payload carries.
    pub value: Bytes,
    /// Where the value starts in the RDB.
    pub value_offset: u64,
}

impl KeyEntry {
    /// The key, printable.
    pub fn printable_key(&self) -> String {
        printable(&self.key)
    }
}

/// The end of the RDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Eof {
    /// The checksum the RDB ends with, checked against its contents; `None`
    /// when the file has none (version < 5) or it was not computed (0,
    /// `rdbchecksum no`).
    pub checksum: Option<u64>,
    /// The RDB's size in bytes, checksum included.
    pub size: u64,
}

/// What an RDB says, item by item.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Magic and version: always first.
    Header(Header),
    /// An `AUX` field, such as `redis-ver` or `repl-offset`.
    Aux {
        /// Its name.
        key: Bytes,
        /// Its value.
        value: Bytes,
    },
    /// A function library's source (`FUNCTION2`), what `FUNCTION LOAD` takes.
    Function(Bytes),
    /// A module's data that is not a key.
    ModuleAux(ModuleAux),
    /// The keys that follow are in this database.
    SelectDb(u64),
    /// How many keys, and keys with an expiry, the database holds (`RESIZEDB`).
    ResizeDb {
        /// Keys.
        keys: u64,
        /// Keys with an expiry.
        expires: u64,
    },
    /// A cluster slot's key counts (`SLOT_INFO`, Redis 7.4+ in cluster mode).
    SlotInfo {
        /// The slot.
        slot: u64,
        /// Keys in it.
        keys: u64,
        /// Keys with an expiry in it.
        expires: u64,
    },
    /// A key and its value.
    Key(KeyEntry),
    /// The end, its checksum checked: always last.
    Eof(Eof),
}

/// Per-key opcodes met before the key's type byte.
#[derive(Debug, Clone, Copy, Default)]
struct KeyMeta {
    /// Where the key's record starts: its first per-key opcode.
    start: Option<u64>,
    expire_at_ms: Option<i64>,
    idle_seconds: Option<u64>,
    lfu_freq: Option<u8>,
}

#[derive(Debug)]
struct PendingValue {
    scan: Scan,
    key: Bytes,
    value_type: u8,
    meta: KeyMeta,
}

#[derive(Debug)]
enum State {
    Header,
    Items,
    Value(Box<PendingValue>),
    ModuleAux(Scan),
    Checksum,
    Done,
}

/// A push parser of RDB files: [`feed`](Self::feed) it bytes as they arrive,
/// take [`Event`]s with [`next_event`](Self::next_event), and say when the
/// input ends with [`end_input`](Self::end_input).
///
/// ```
/// use dr_redis::{Event, RdbParser};
///
/// let rdb = b"REDIS0011\xfe\x00\x00\x01k\x01v\xff\x00\x00\x00\x00\x00\x00\x00\x00";
/// let mut parser = RdbParser::new();
/// let mut keys = 0;
/// for chunk in rdb.chunks(3) {
///     parser.feed(chunk);
///     while let Some(event) = parser.next_event()? {
///         if let Event::Key(key) = event {
///             assert_eq!(key.key, "k");
///             keys += 1;
///         }
///     }
/// }
/// parser.end_input();
/// assert!(parser.next_event()?.is_none() && parser.is_done());
/// assert_eq!(keys, 1);
/// # Ok::<(), dr_redis::Error>(())
/// ```
#[derive(Debug)]
pub struct RdbParser {
    buf: BytesMut,
    /// The RDB offset of `buf[0]`.
    offset: u64,
    state: State,
    version: u16,
    db: u64,
    meta: KeyMeta,
    crc: Crc64,
    ended: bool,
    failed: bool,
    misfed: bool,
    /// Where each key's record starts, once its type and name are read,
    /// when asked for ([`RdbParser::collect_record_starts`]).
    record_starts: Option<Vec<u64>>,
}

impl Default for RdbParser {
    fn default() -> Self {
        Self::new()
    }
}

impl RdbParser {
    /// A parser at the start of an RDB.
    pub fn new() -> Self {
        Self {
            buf: BytesMut::new(),
            offset: 0,
            state: State::Header,
            version: 0,
            db: 0,
            meta: KeyMeta::default(),
            crc: Crc64::new(),
            ended: false,
            failed: false,
            misfed: false,
            record_starts: None,
        }
    }

    /// From now on, keeps where each key's record starts (its first per-key
    /// opcode, or its type byte), for [`RdbParser::take_record_starts`].
    pub(crate) fn collect_record_starts(&mut self) {
        self.record_starts.get_or_insert_with(Vec::new);
    }

    /// Moves the record starts found since the last call into `out`.
    pub(crate) fn take_record_starts(&mut self, out: &mut Vec<u64>) {
        if let Some(starts) = &mut self.record_starts {
            out.append(starts);
        }
    }

    /// The offset below which every record start in the bytes fed has been
    /// found: the start of an item not yet whole, else the end of what was
    /// fed (no record starts inside a value, the header or the checksum).
    pub(crate) fn settled(&self) -> u64 {
        match self.state {
            State::Items => self.offset,
            _ => self.offset + self.buf.len() as u64,
        }
    }

    /// Adds the next bytes of the input.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.ended {
            self.misfed = true;
            return;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer to read the next bytes into (with room for `additional`
    /// more), for readers that fill it in place.
    pub(crate) fn buffer_for_read(&mut self, additional: usize) -> &mut BytesMut {
        self.buf.reserve(additional);
        &mut self.buf
    }

    /// Says that no more bytes will come: from now on, an RDB that is not
    /// whole is an error.
    pub fn end_input(&mut self) {
        self.ended = true;
    }

    /// Whether the RDB's end (EOF and checksum) has been read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The RDB version, once the header has been read.
    pub fn version(&self) -> Option<u16> {
        (!matches!(self.state, State::Header)).then_some(self.version)
    }

    /// Bytes of the RDB handed out as events so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes fed after the RDB's end (such as an AOF's tail after its RDB
    /// preamble), or not yet parsed.
    pub fn remainder(&self) -> &[u8] {
        &self.buf
    }

    /// The next event: `Ok(None)` when more bytes are needed (or the RDB has
    /// ended: see [`is_done`](Self::is_done)).
    ///
    /// # Errors
    /// The bytes are not an RDB this build reads: [`Error::Corrupt`],
    /// [`Error::Truncated`] (after [`end_input`](Self::end_input)),
    /// [`Error::Checksum`], [`Error::UnsupportedVersion`],
    /// [`Error::UnsupportedFormat`] or [`Error::UnsupportedType`]. After an
    /// error the parser only answers [`Error::InvalidState`].
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        if self.failed {
            return Err(Error::InvalidState {
                reason: "the parser failed earlier",
            });
        }
        if self.misfed {
            self.failed = true;
            return Err(Error::InvalidState {
                reason: "bytes fed after the input ended",
            });
        }
        let next = self.step();
        if next.is_err() {
            self.failed = true;
        }
        next
    }

    fn step(&mut self) -> Result<Option<Event>> {
        loop {
            let event = match self.state {
                State::Header => self.header()?,
                State::Items => self.item()?,
                State::Value(_) => self.value()?,
                State::ModuleAux(_) => self.module_aux()?,
                State::Checksum => self.checksum()?,
                State::Done => return Ok(None),
            };
            match event {
                Progress::Event(event) => return Ok(Some(event)),
                Progress::Again => {}
                Progress::NeedMore(what) if self.ended => {
                    return Err(Error::Truncated {
                        place: Box::new(self.place_at(self.buf.len())),
                        reason: what,
                    });
                }
                Progress::NeedMore(_) => return Ok(None),
            }
        }
    }

    /// The place `at` bytes into the buffer, with the key being read.
    fn place_at(&self, at: usize) -> Place {
        let mut place = Place::at(self.offset + at as u64);
        if let State::Value(pending) = &self.state {
            place.db = Some(self.db);
            place.key = Some(printable(&pending.key));
            place.value_type = Some(pending.value_type);
        }
        place
    }

    /// The error for a bad read, or "need more" for an incomplete one.
    fn stopped(&self, stop: Stop, what: &'static str) -> Result<Progress> {
        match stop {
            Stop::Incomplete => Ok(Progress::NeedMore(what)),
            Stop::Bad { at, reason } => Err(Error::corrupt(self.place_at(at), reason)),
        }
    }

    /// Hands out the first `n` bytes of the buffer, into the checksum.
    fn consume(&mut self, n: usize) -> Bytes {
        let bytes = self.buf.split_to(n).freeze();
        self.crc.update(&bytes);
        self.offset += n as u64;
        bytes
    }

    fn header(&mut self) -> Result<Progress> {
        const LEN: usize = 9;
        if self.buf.len() < LEN {
            // Input that ended early names what it was, if it was not an RDB.
            // (Not sooner: the answer must not depend on how bytes were cut.)
            if self.ended && !b"REDIS".starts_with(&self.buf[..self.buf.len().min(5)]) {
                return Err(self.unknown_magic());
            }
            return Ok(Progress::NeedMore("the header"));
        }
        let magic = &self.buf[..LEN];
        if !magic.starts_with(b"REDIS") || !magic[5..].iter().all(u8::is_ascii_digit) {
            return Err(self.unknown_magic());
        }
        let version = magic[5..]
            .iter()
            .fold(0u16, |v, digit| v * 10 + u16::from(digit - b'0'));
        if version == 0 || version > MAX_RDB_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "RDB",
                version: u32::from(version),
            });
        }
        self.version = version;
        self.consume(LEN);
        self.state = State::Items;
        Ok(Progress::Event(Event::Header(Header { version })))
    }

    fn unknown_magic(&self) -> Error {
        let shown = &self.buf[..self.buf.len().min(9)];
        if shown.starts_with(b"VALKEY") {
            Error::UnsupportedFormat {
                magic: shown.escape_ascii().to_string(),
                reason: "Valkey 9's RDB format is not read yet",
            }
        } else {
            Error::UnsupportedFormat {
                magic: shown.escape_ascii().to_string(),
                reason: "not an RDB: it does not start with REDIS and a four-digit version",
            }
        }
    }

    fn item(&mut self) -> Result<Progress> {
        let Some(&kind) = self.buf.first() else {
            return Ok(Progress::NeedMore("an opcode"));
        };
        if kind < opcode::KEY_META && !scan::known(kind) {
            return Err(Error::UnsupportedType {
                value_type: kind,
                place: Box::new(self.place_at(0)),
            });
        }
        let mut cursor = Cursor::at(&self.buf, 1);
        match Self::measure(&mut cursor, kind) {
            Ok(()) => {}
            Err(stop) => return self.stopped(stop, "an item"),
        }
        let len = cursor.pos();
        let starts_record = matches!(
            kind,
            opcode::EXPIRETIME_MS | opcode::EXPIRETIME | opcode::IDLE | opcode::FREQ
        ) || kind < opcode::KEY_META;
        if starts_record && self.meta.start.is_none() {
            self.meta.start = Some(self.offset);
            if let Some(starts) = &mut self.record_starts {
                starts.push(self.offset);
            }
        }
        match kind {
            opcode::FUNCTION_PRE_GA => Err(Error::corrupt(
                self.place_at(0),
                "a function of Redis 7.0's release candidates (opcode 246), which Redis itself refuses",
            )),
            opcode::KEY_META => Err(Error::UnsupportedType {
                value_type: kind,
                place: Box::new(self.place_at(0)),
            }),
            opcode::MODULE_AUX => {
                self.consume(1);
                self.state = State::ModuleAux(Scan::module_aux());
                Ok(Progress::Again)
            }
            opcode::EOF => {
                self.consume(1);
                if self.version >= FIRST_CHECKSUMMED_VERSION {
                    self.state = State::Checksum;
                    Ok(Progress::Again)
                } else {
                    self.state = State::Done;
                    Ok(Progress::Event(Event::Eof(Eof {
                        checksum: None,
                        size: self.offset,
                    })))
                }
            }
            _ if kind < opcode::KEY_META => {
                let item = self.consume(len);
                let mut cursor = Cursor::at(&item, 1);
                let key = match cursor.string().and_then(|key| key.to_bytes(&item)) {
                    Ok(key) => key,
                    Err(stop) => {
                        // Measured already: only LZF can fail here.
                        let at = self.offset - len as u64;
                        return Err(self.bad_at(at, stop));
                    }
                };
                let meta = std::mem::take(&mut self.meta);
                let scan = Scan::new(kind).expect("measure checked the type");
                self.state = State::Value(Box::new(PendingValue {
                    scan,
                    key,
                    value_type: kind,
                    meta,
                }));
                Ok(Progress::Again)
            }
            _ => {
                let item = self.consume(len);
                let mut cursor = Cursor::at(&item, 1);
                let at = self.offset - len as u64;
                self.opcode(&mut cursor, kind, &item)
                    .map_err(|stop| self.bad_at(at, stop))
            }
        }
    }

    fn bad_at(&self, item_offset: u64, stop: Stop) -> Error {
        match stop {
            Stop::Bad { at, reason } => Error::corrupt(Place::at(item_offset + at as u64), reason),
            Stop::Incomplete => {
                Error::corrupt(Place::at(item_offset), "item shorter than measured")
            }
        }
    }

    /// Checks that a whole item is in the buffer: its opcode's arguments,
    /// or a key's type and name. Values are scanned separately.
    fn measure(cursor: &mut Cursor<'_>, kind: u8) -> Read<()> {
        match kind {
            opcode::AUX => {
                cursor.string()?;
                cursor.string()?;
            }
            opcode::FUNCTION2 => {
                cursor.string()?;
            }
            opcode::SELECTDB | opcode::IDLE => {
                cursor.len()?;
            }
            opcode::RESIZEDB => {
                cursor.len()?;
                cursor.len()?;
            }
            opcode::SLOT_INFO => {
                cursor.len()?;
                cursor.len()?;
                cursor.len()?;
            }
            opcode::EXPIRETIME_MS => {
                cursor.take(8)?;
            }
            opcode::EXPIRETIME => {
                cursor.take(4)?;
            }
            opcode::FREQ => {
                cursor.take(1)?;
            }
            opcode::MODULE_AUX | opcode::EOF | opcode::FUNCTION_PRE_GA | opcode::KEY_META => {}
            value_type if scan::known(value_type) => {
                cursor.string()?;
            }
            other => return Err(Stop::bad(0, format!("unknown opcode {other}"))),
        }
        Ok(())
    }

    /// Reads an opcode's arguments from `item` (which holds all of them).
    fn opcode(&mut self, cursor: &mut Cursor<'_>, kind: u8, item: &Bytes) -> Read<Progress> {
        let event = match kind {
            opcode::AUX => Event::Aux {
                key: cursor.string()?.to_bytes(item)?,
                value: cursor.string()?.to_bytes(item)?,
            },
            opcode::FUNCTION2 => Event::Function(cursor.string()?.to_bytes(item)?),
            opcode::SELECTDB => {
                self.db = cursor.len()?;
                Event::SelectDb(self.db)
            }
            opcode::RESIZEDB => Event::ResizeDb {
                keys: cursor.len()?,
                expires: cursor.len()?,
            },
            opcode::SLOT_INFO => Event::SlotInfo {
                slot: cursor.len()?,
                keys: cursor.len()?,
                expires: cursor.len()?,
            },
            opcode::EXPIRETIME_MS => {
                self.meta.expire_at_ms = Some(cursor.i64_le()?);
                return Ok(Progress::Again);
            }
            opcode::EXPIRETIME => {
                let seconds = i32::from_le_bytes(cursor.array()?);
                self.meta.expire_at_ms = Some(i64::from(seconds) * 1000);
                return Ok(Progress::Again);
            }
            opcode::IDLE => {
                self.meta.idle_seconds = Some(cursor.len()?);
                return Ok(Progress::Again);
            }
            opcode::FREQ => {
                self.meta.lfu_freq = Some(cursor.u8()?);
                return Ok(Progress::Again);
            }
            other => return Err(Stop::bad(0, format!("opcode {other} out of place"))),
        };
        Ok(Progress::Event(event))
    }

    fn value(&mut self) -> Result<Progress> {
        let State::Value(pending) = &mut self.state else {
            unreachable!("called in the value state")
        };
        match pending.scan.run(&self.buf) {
            Ok(Some(len)) => {
                let value_offset = self.offset;
                let value = self.consume(len);
                let State::Value(pending) = std::mem::replace(&mut self.state, State::Items) else {
                    unreachable!("still in the value state")
                };
                let PendingValue {
                    key,
                    value_type,
                    meta,
                    ..
                } = *pending;
                Ok(Progress::Event(Event::Key(KeyEntry {
                    db: self.db,
                    key,
                    expire_at_ms: meta.expire_at_ms,
                    idle_seconds: meta.idle_seconds,
                    lfu_freq: meta.lfu_freq,
                    value_type: ValueType(value_type),
                    value,
                    value_offset,
                })))
            }
            Ok(None) => Ok(Progress::NeedMore("a value")),
            Err(stop) => self.stopped(stop, "a value"),
        }
    }

    fn module_aux(&mut self) -> Result<Progress> {
        let State::ModuleAux(scan) = &mut self.state else {
            unreachable!("called in the module aux state")
        };
        let len = match scan.run(&self.buf) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(Progress::NeedMore("module data")),
            Err(stop) => return self.stopped(stop, "module data"),
        };
        let at = self.offset;
        let raw = self.consume(len);
        self.state = State::Items;
        let (module, when_opcode, when) =
            Self::module_aux_head(&raw).map_err(|stop| self.bad_at(at, stop))?;
        if when_opcode != 2 {
            return Err(Error::corrupt(
                Place::at(at),
                format!("module data with 'when' opcode {when_opcode}, not 2"),
            ));
        }
        Ok(Progress::Event(Event::ModuleAux(ModuleAux {
            module: ModuleId(module),
            when,
            raw,
        })))
    }

    /// A `MODULE_AUX` item's module id, 'when' opcode and 'when'.
    fn module_aux_head(raw: &[u8]) -> Read<(u64, u64, u64)> {
        let mut cursor = Cursor::new(raw);
        Ok((cursor.len()?, cursor.len()?, cursor.len()?))
    }

    fn checksum(&mut self) -> Result<Progress> {
        if self.buf.len() < 8 {
            return Ok(Progress::NeedMore("the checksum"));
        }
        let stored = u64::from_le_bytes(self.buf[..8].try_into().expect("eight bytes"));
        let computed = self.crc.value();
        if stored != 0 && stored != computed {
            return Err(Error::Checksum {
                what: "RDB",
                expected: stored,
                computed,
            });
        }
        let _ = self.buf.split_to(8);
        self.offset += 8;
        self.state = State::Done;
        Ok(Progress::Event(Event::Eof(Eof {
            checksum: (stored != 0).then_some(stored),
            size: self.offset,
        })))
    }
}

enum Progress {
    Event(Event),
    Again,
    NeedMore(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names() {
        // "ReJSON-RL" with encoding version 3, as moduleTypeEncodeId makes it.
        let charset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let id = "ReJSON-RL"
            .chars()
            .fold(0u64, |id, c| id << 6 | charset.find(c).unwrap() as u64);
        let id = ModuleId(id << 10 | 3);
        assert_eq!(id.name(), "ReJSON-RL");
        assert_eq!(id.encoding_version(), 3);
    }

    #[test]
    fn magic_is_checked() {
        let mut parser = RdbParser::new();
        parser.feed(b"VALKEY080");
        let err = parser.next_event().unwrap_err();
        assert!(err.to_string().contains("Valkey"), "{err}");
        let mut parser = RdbParser::new();
        parser.feed(b"GET");
        assert!(matches!(parser.next_event(), Ok(None)));
        parser.end_input();
        assert!(matches!(
            parser.next_event(),
            Err(Error::UnsupportedFormat { .. })
        ));
        let mut parser = RdbParser::new();
        parser.feed(b"REDIS0013");
        let err = parser.next_event().unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedVersion { version: 13, .. }),
            "{err}"
        );
        assert!(matches!(
            parser.next_event(),
            Err(Error::InvalidState { .. })
        ));
    }
}
