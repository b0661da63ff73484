//! The data offsets of a custom-format dump that was written into a pipe.
//!
//! `pg_dump --format=custom` records in its table of contents where each
//! table's data begins, but only when it can seek back to write them: into
//! a pipe, as a logical backup streams, every entry says "position not
//! set". `pg_restore --jobs` still reads such a file, but it must scan for
//! each block (through every row's chunk header) and, not knowing the
//! blocks' sizes, cannot start the largest tables first; on the benchmark's
//! database that costs it a fifth of its time.
//!
//! [`OffsetScanner`] is fed the dump as it is spooled to a file, finds
//! where each data block starts, and then says which bytes to write over
//! the table of contents ([`OffsetScanner::patches`]) so that the spooled
//! file carries the offsets `pg_dump` would have written into a file.
//! Anything it does not understand (a format version it does not know, a
//! malformed or truncated dump) makes it give up: the file is left as it
//! was, which `pg_restore` reads as before. `pg_restore` checks the block
//! id found at each offset, so a wrong offset could not restore wrong data.
//!
//! The layout follows PostgreSQL's `pg_backup_archiver.c` and
//! `pg_backup_custom.c`: integers are a sign byte and `int_size`
//! little-endian bytes, strings a length (−1 for none) and their bytes,
//! offsets a flag byte and `off_size` little-endian bytes; after the header
//! and the table of contents come the data blocks, each a type byte, the
//! entry's dump id and length-prefixed chunks ending with an empty one
//! (large-object blocks: per object, its OID and such chunks, ending with
//! OID 0).

use std::collections::HashMap;

/// Versions of the archive format whose table of contents this reads:
/// 1.10 (PostgreSQL 8.4) to 1.16 (PostgreSQL 17).
const OLDEST: (u8, u8) = (1, 10);
const NEWEST: (u8, u8) = (1, 16);

/// `pg_dump`'s custom format (`archCustom`).
const FORMAT_CUSTOM: u8 = 1;
/// Offset flags.
const OFFSET_NOT_SET: u8 = 1;
const OFFSET_SET: u8 = 2;
/// Block types.
const BLOCK_DATA: u8 = 1;
const BLOCK_LARGE_OBJECTS: u8 = 3;

/// Bytes to write at an offset of the spooled file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Patch {
    pub(crate) at: u64,
    pub(crate) bytes: Vec<u8>,
}

/// Why the scanner gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreadable(pub(crate) String);

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn unreadable<T>(why: impl Into<String>) -> Result<T, Unreadable> {
    Err(Unreadable(why.into()))
}

/// The header's sizes and the table of contents' offset fields.
#[derive(Debug)]
struct Toc {
    int_size: usize,
    off_size: usize,
    /// Where each entry's offset field is (its flag byte), by dump id, for
    /// the entries whose position was not set.
    unset: HashMap<i64, u64>,
    /// Where the data blocks begin.
    end: u64,
}

/// Where the scanner is among the data blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a block's type byte, or at the end of the dump.
    BlockStart,
    /// At a block's dump id, after its type byte.
    BlockId { kind: u8 },
    /// At a chunk's length, in a block of data or of a large object.
    ChunkLength { large_objects: bool },
    /// Inside a chunk, this many bytes before its end.
    Chunk { left: u64, large_objects: bool },
    /// At the OID of a large-object block's next object (0 ends it).
    LargeObject,
}

/// Reads a dump as it passes and works out its data offsets.
#[derive(Debug)]
pub(crate) struct OffsetScanner {
    /// The dump's start, kept until the table of contents reads whole.
    head: Vec<u8>,
    toc: Option<Toc>,
    state: State,
    /// The start of an integer or type byte split between two pieces.
    carry: Vec<u8>,
    /// The stream position of `carry`'s first byte, or of the next byte.
    at: u64,
    /// The block whose header is being read began here.
    block_at: u64,
    found: HashMap<i64, u64>,
    failed: Option<Unreadable>,
}

/// A table of contents longer than this is not waited for.
const MAX_HEAD: usize = 256 << 20;

impl OffsetScanner {
    pub(crate) fn new() -> Self {
        Self {
            head: Vec::new(),
            toc: None,
            state: State::BlockStart,
            carry: Vec::new(),
            at: 0,
            block_at: 0,
            found: HashMap::new(),
            failed: None,
        }
    }

    /// Takes the next piece of the dump.
    pub(crate) fn feed(&mut self, piece: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if let Err(e) = self.take(piece) {
            self.failed = Some(e);
            self.head = Vec::new();
        }
    }

    /// The bytes that set each data entry's offset, once the whole dump was
    /// fed; the reason when there are none to trust.
    pub(crate) fn patches(self) -> Result<Vec<Patch>, Unreadable> {
        if let Some(failed) = self.failed {
            return Err(failed);
        }
        let Some(toc) = self.toc else {
            return unreadable("the dump ends inside its table of contents");
        };
        if self.state != State::BlockStart || !self.carry.is_empty() {
            return unreadable("the dump ends inside a data block");
        }
        let mut patches = Vec::with_capacity(self.found.len());
        for (id, field) in &toc.unset {
            let Some(&offset) = self.found.get(id) else {
                continue;
            };
            let mut bytes = vec![OFFSET_SET];
            for i in 0..toc.off_size {
                bytes.push(if i < 8 { (offset >> (8 * i)) as u8 } else { 0 });
            }
            if toc.off_size < 8 && offset >> (8 * toc.off_size) != 0 {
                return unreadable(format!(
                    "offset {offset} does not fit the dump's {}-byte offsets",
                    toc.off_size
                ));
            }
            patches.push(Patch { at: *field, bytes });
        }
        patches.sort_by_key(|p| p.at);
        Ok(patches)
    }

    fn take(&mut self, mut piece: &[u8]) -> Result<(), Unreadable> {
        if self.toc.is_none() {
            if self.head.len() + piece.len() > MAX_HEAD {
                return unreadable("the table of contents is larger than 256 MiB");
            }
            self.head.extend_from_slice(piece);
            let Some(toc) = read_toc(&self.head)? else {
                return Ok(());
            };
            let end = usize::try_from(toc.end).unwrap_or(usize::MAX);
            let rest = std::mem::take(&mut self.head).split_off(end);
            self.at = toc.end;
            self.toc = Some(toc);
            return self.blocks(&rest);
        }
        if !self.carry.is_empty() {
            // Complete the integer split between the pieces first.
            let int_len = 1 + self.toc.as_ref().map_or(4, |t| t.int_size);
            let n = (int_len - self.carry.len()).min(piece.len());
            self.carry.extend_from_slice(&piece[..n]);
            piece = &piece[n..];
            if self.carry.len() < int_len {
                return Ok(());
            }
            let joined = std::mem::take(&mut self.carry);
            self.blocks(&joined)?;
        }
        self.blocks(piece)
    }

    /// Walks the data blocks in `bytes`, which begin at `self.at`.
    fn blocks(&mut self, bytes: &[u8]) -> Result<(), Unreadable> {
        let int_size = self.toc.as_ref().map_or(4, |t| t.int_size);
        let int_len = 1 + int_size;
        let mut i = 0usize;
        while i < bytes.len() {
            match self.state {
                State::Chunk {
                    left,
                    large_objects,
                } => {
                    let have = (bytes.len() - i) as u64;
                    if have < left {
                        i = bytes.len();
                        self.state = State::Chunk {
                            left: left - have,
                            large_objects,
                        };
                    } else {
                        i += usize::try_from(left).unwrap_or(usize::MAX);
                        self.state = State::ChunkLength { large_objects };
                    }
                }
                State::BlockStart => {
                    self.block_at = self.at + i as u64;
                    let kind = bytes[i];
                    if kind != BLOCK_DATA && kind != BLOCK_LARGE_OBJECTS {
                        return unreadable(format!(
                            "unknown block type {kind} at byte {}",
                            self.block_at
                        ));
                    }
                    i += 1;
                    self.state = State::BlockId { kind };
                }
                State::BlockId { .. } | State::ChunkLength { .. } | State::LargeObject => {
                    if bytes.len() - i < int_len {
                        self.carry = bytes[i..].to_vec();
                        self.at += i as u64;
                        return Ok(());
                    }
                    let value = int_at(&bytes[i..i + int_len], int_size)?;
                    i += int_len;
                    self.state = self.after_int(value)?;
                }
            }
        }
        self.at += bytes.len() as u64;
        Ok(())
    }

    /// Where an integer just read leads.
    fn after_int(&mut self, value: i64) -> Result<State, Unreadable> {
        Ok(match self.state {
            State::BlockId { kind } => {
                if self.found.insert(value, self.block_at).is_some() {
                    return unreadable(format!("two data blocks for entry {value}"));
                }
                if kind == BLOCK_DATA {
                    State::ChunkLength {
                        large_objects: false,
                    }
                } else {
                    State::LargeObject
                }
            }
            State::ChunkLength { large_objects } => match value {
                0 if large_objects => State::LargeObject,
                0 => State::BlockStart,
                n if n > 0 => State::Chunk {
                    left: n.unsigned_abs(),
                    large_objects,
                },
                n => return unreadable(format!("a chunk of length {n}")),
            },
            State::LargeObject if value == 0 => State::BlockStart,
            State::LargeObject => State::ChunkLength {
                large_objects: true,
            },
            State::BlockStart | State::Chunk { .. } => {
                return unreadable("an integer where none belongs");
            }
        })
    }
}

/// An archive integer: a sign byte, then `int_size` little-endian bytes.
fn int_at(bytes: &[u8], int_size: usize) -> Result<i64, Unreadable> {
    let mut magnitude: u64 = 0;
    for (k, byte) in bytes[1..=int_size].iter().enumerate() {
        if k >= 8 {
            if *byte != 0 {
                return unreadable("an integer wider than 64 bits");
            }
        } else {
            magnitude |= u64::from(*byte) << (8 * k);
        }
    }
    let magnitude =
        i64::try_from(magnitude).map_err(|_| Unreadable("an integer out of range".into()))?;
    Ok(match bytes[0] {
        0 => magnitude,
        _ => -magnitude,
    })
}

/// Reads the header and the table of contents from the start of a dump:
/// `None` while more of it is needed.
fn read_toc(head: &[u8]) -> Result<Option<Toc>, Unreadable> {
    let mut r = Reader { bytes: head, at: 0 };
    match parse_toc(&mut r) {
        Ok(toc) => Ok(Some(toc)),
        Err(Short::More) => Ok(None),
        Err(Short::Bad(why)) => Err(why),
    }
}

/// A read past what is there yet, or something that cannot be read at all.
enum Short {
    More,
    Bad(Unreadable),
}

impl From<Unreadable> for Short {
    fn from(e: Unreadable) -> Self {
        Self::Bad(e)
    }
}

fn bad<T>(why: impl Into<String>) -> Result<T, Short> {
    Err(Short::Bad(Unreadable(why.into())))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Short> {
        let end = self.at.checked_add(n).ok_or(Short::More)?;
        let slice = self.bytes.get(self.at..end).ok_or(Short::More)?;
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, Short> {
        Ok(self.take(1)?[0])
    }

    fn int(&mut self, int_size: usize) -> Result<i64, Short> {
        let bytes = self.take(1 + int_size)?;
        Ok(int_at(bytes, int_size)?)
    }

    /// Skips a string; false for the absent string (length −1).
    fn string(&mut self, int_size: usize) -> Result<bool, Short> {
        match self.int(int_size)? {
            -1 => Ok(false),
            n if n >= 0 => {
                let n = usize::try_from(n).map_err(|_| Short::More)?;
                self.take(n)?;
                Ok(true)
            }
            n => bad(format!("a string of length {n}")),
        }
    }
}

fn parse_toc(r: &mut Reader<'_>) -> Result<Toc, Short> {
    if r.take(5)? != b"PGDMP" {
        return bad("not a custom-format dump: no PGDMP at its start");
    }
    let version = (r.byte()?, r.byte()?);
    let _revision = r.byte()?;
    if version < OLDEST || version > NEWEST {
        return bad(format!(
            "archive format {}.{} is not one this reads ({}.{} to {}.{})",
            version.0, version.1, OLDEST.0, OLDEST.1, NEWEST.0, NEWEST.1
        ));
    }
    let at_least = |minor: u8| version >= (1, minor);
    let int_size = usize::from(r.byte()?);
    let off_size = usize::from(r.byte()?);
    if !(1..=16).contains(&int_size) || !(1..=16).contains(&off_size) {
        return bad(format!(
            "integers of {int_size} bytes and offsets of {off_size} bytes"
        ));
    }
    if r.byte()? != FORMAT_CUSTOM {
        return bad("not the custom format");
    }
    if at_least(15) {
        r.byte()?; // the compression algorithm
    } else {
        r.int(int_size)?; // the compression level
    }
    for _ in 0..7 {
        r.int(int_size)?; // the creation time's fields
    }
    r.string(int_size)?; // the database's name
    r.string(int_size)?; // the server's version
    r.string(int_size)?; // pg_dump's version
    let count = r.int(int_size)?;
    if count < 0 {
        return bad(format!("{count} entries in the table of contents"));
    }
    let mut unset = HashMap::new();
    for _ in 0..count {
        let id = r.int(int_size)?;
        if id <= 0 {
            return bad(format!("entry id {id}"));
        }
        r.int(int_size)?; // had a dumper
        r.string(int_size)?; // table OID
        r.string(int_size)?; // OID
        r.string(int_size)?; // tag
        r.string(int_size)?; // description
        if at_least(11) {
            r.int(int_size)?; // section
        }
        r.string(int_size)?; // definition
        r.string(int_size)?; // drop statement
        r.string(int_size)?; // copy statement
        r.string(int_size)?; // namespace
        r.string(int_size)?; // tablespace
        if at_least(14) {
            r.string(int_size)?; // table access method
        }
        if at_least(16) {
            r.int(int_size)?; // relkind
        }
        r.string(int_size)?; // owner
        r.string(int_size)?; // with OIDs
        while r.string(int_size)? {} // dependencies, ended by no string
        let field = r.at as u64;
        let flag = r.byte()?;
        r.take(off_size)?;
        if flag == OFFSET_NOT_SET && unset.insert(id, field).is_some() {
            return bad(format!("entry id {id} appears twice"));
        }
    }
    Ok(Toc {
        int_size,
        off_size,
        unset,
        end: r.at as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes archives the way pg_dump does, for the tests.
    struct Writer {
        out: Vec<u8>,
    }

    impl Writer {
        fn int(&mut self, v: i64) {
            self.out.push(u8::from(v < 0));
            self.out
                .extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        }
        fn string(&mut self, s: Option<&str>) {
            match s {
                None => self.int(-1),
                Some(s) => {
                    self.int(s.len() as i64);
                    self.out.extend_from_slice(s.as_bytes());
                }
            }
        }
    }

    /// A version 1.14 archive (PostgreSQL 15) with a schema entry and data
    /// entries 7 and 9 (whose rows are `rows`), and large objects as entry
    /// 11; its offsets unset, as pg_dump writes into a pipe. Also returns
    /// where each offset field and each block is.
    /// Positions by dump id.
    type Positions = Vec<(i64, usize)>;

    fn archive(rows: &[&str]) -> (Vec<u8>, Positions, Positions) {
        let mut w = Writer { out: Vec::new() };
        w.out.extend_from_slice(b"PGDMP");
        w.out.extend_from_slice(&[1, 14, 0, 4, 8, FORMAT_CUSTOM]);
        w.int(0); // compression level
        for v in [1, 2, 3, 4, 5, 126, 0] {
            w.int(v);
        }
        w.string(Some("app"));
        w.string(Some("15.18"));
        w.string(Some("15.18"));
        let entries = [(3, false), (7, true), (9, true), (11, true)];
        w.int(entries.len() as i64);
        let mut fields = Vec::new();
        for (id, data) in entries {
            w.int(id);
            w.int(i64::from(data));
            w.string(Some("1259"));
            w.string(Some("16384"));
            w.string(Some("orders"));
            w.string(Some(if data { "TABLE DATA" } else { "TABLE" }));
            w.int(2);
            w.string(Some(""));
            w.string(Some(""));
            w.string(data.then_some("COPY public.orders (id) FROM stdin;\n"));
            w.string(Some("public"));
            w.string(Some(""));
            w.string(Some("heap"));
            w.string(Some("postgres"));
            w.string(Some("false"));
            w.string(Some("3"));
            w.string(None);
            fields.push((id, w.out.len()));
            w.out.push(if data { OFFSET_NOT_SET } else { 3 });
            w.out.extend_from_slice(&[0; 8]);
        }
        let mut blocks = Vec::new();
        for id in [7, 9] {
            blocks.push((id, w.out.len()));
            w.out.push(BLOCK_DATA);
            w.int(id);
            for row in rows {
                w.int(row.len() as i64);
                w.out.extend_from_slice(row.as_bytes());
            }
            w.int(0);
        }
        blocks.push((11, w.out.len()));
        w.out.push(BLOCK_LARGE_OBJECTS);
        w.int(11);
        for oid in [16500, 16501] {
            w.int(oid);
            w.int(3);
            w.out.extend_from_slice(b"abc");
            w.int(0);
        }
        w.int(0);
        (w.out, fields, blocks)
    }

    fn scan(pieces: &[&[u8]]) -> Result<Vec<Patch>, Unreadable> {
        let mut scanner = OffsetScanner::new();
        for piece in pieces {
            scanner.feed(piece);
        }
        scanner.patches()
    }

    #[test]
    fn every_data_block_is_found_whatever_the_pieces() {
        let (dump, fields, blocks) = archive(&["1\n", "2\n", "3\n"]);
        let expected: Vec<Patch> = fields
            .iter()
            .filter_map(|(id, field)| {
                let (_, at) = blocks.iter().find(|(b, _)| b == id)?;
                let mut bytes = vec![OFFSET_SET];
                bytes.extend_from_slice(&(*at as u64).to_le_bytes());
                Some(Patch {
                    at: *field as u64,
                    bytes,
                })
            })
            .collect();
        assert_eq!(expected.len(), 3);
        assert_eq!(scan(&[&dump]).unwrap(), expected);
        for size in [1, 2, 3, 5, 7, 64] {
            let pieces: Vec<&[u8]> = dump.chunks(size).collect();
            assert_eq!(scan(&pieces).unwrap(), expected, "pieces of {size}");
        }
        for split in 0..dump.len() {
            let (a, b) = dump.split_at(split);
            assert_eq!(scan(&[a, b]).unwrap(), expected, "split at {split}");
        }
    }

    #[test]
    fn a_dump_cut_short_gives_no_patches_unless_cut_between_blocks() {
        // The format has no end mark: a dump cut between two blocks reads
        // as a whole one with fewer (the repository's length and digest
        // checks catch that cut).
        let (dump, _, blocks) = archive(&["1\n", "22\n"]);
        for end in 0..dump.len() {
            let scanned = scan(&[&dump[..end]]);
            match blocks.iter().position(|(_, at)| *at == end) {
                Some(before) => {
                    let patches = scanned.unwrap();
                    assert_eq!(patches.len(), before.min(2), "cut at {end}");
                }
                None => assert!(scanned.is_err(), "cut at {end}"),
            }
        }
    }

    #[test]
    fn unknown_versions_and_damage_give_no_patches() {
        let (dump, _, _) = archive(&["1\n"]);
        let mut newer = dump.clone();
        newer[6] = 17;
        assert!(scan(&[&newer]).unwrap_err().0.contains("1.17"));
        let mut directory = dump.clone();
        directory[10] = 3;
        assert!(scan(&[&directory]).is_err());
        let mut extra = dump.clone();
        extra.push(9);
        assert!(scan(&[&extra]).is_err());
    }

    /// The offsets found in a dump written into a pipe are those pg_dump
    /// writes into a file of the same database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_offsets_are_those_pg_dump_writes_into_a_file() {
        let pg = dr_testkit::Postgres::start().await.unwrap();
        let client = pg.connect("postgres").await.unwrap();
        client
            .batch_execute(
                "CREATE TABLE small (id int PRIMARY KEY, v text);
                 INSERT INTO small SELECT g, repeat('x', g % 50) FROM generate_series(1, 3000) g;
                 CREATE TABLE empty (id int);
                 CREATE TABLE wide (id int, v bytea);
                 INSERT INTO wide SELECT g, decode(repeat('ab', 4000), 'hex')
                     FROM generate_series(1, 200) g;
                 CREATE SEQUENCE counter;
                 SELECT setval('counter', 42);
                 SELECT lo_from_bytea(0, 'large object');",
            )
            .await
            .unwrap();
        let dump = |file: Option<&str>| {
            let mut command = pg.command("pg_dump");
            command
                .args(["--format=custom", "--compress=0"])
                .arg(format!("--dbname={}", pg.connection_string("postgres")));
            if let Some(file) = file {
                command.arg(format!("--file={file}"));
            }
            command.stderr(std::process::Stdio::inherit());
            command.output()
        };
        let piped = dump(None).await.unwrap();
        assert!(piped.status.success());
        let written = dump(Some("written.dump")).await.unwrap();
        assert!(written.status.success());
        let written = std::fs::read(pg.dir().join("written.dump")).unwrap();
        assert_eq!(piped.stdout.len(), written.len());

        let mut scanner = OffsetScanner::new();
        for piece in piped.stdout.chunks(8191) {
            scanner.feed(piece);
        }
        let patches = scanner.patches().unwrap();
        // small, empty, wide, the sequence's value has no block; the large
        // object's block.
        assert_eq!(patches.len(), 4);
        for patch in &patches {
            let at = usize::try_from(patch.at).unwrap();
            assert_eq!(piped.stdout[at], OFFSET_NOT_SET);
            assert_eq!(written[at..at + patch.bytes.len()], patch.bytes[..]);
        }
    }

    proptest::proptest! {
        /// Whatever the bytes after a valid start, and however they are cut
        /// into pieces, the scanner answers without panicking.
        #[test]
        fn arbitrary_bytes_never_panic(
            keep in 0usize..400,
            garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            cuts in proptest::collection::vec(1usize..97, 1..8),
        ) {
            let (dump, _, _) = archive(&["1\n", "2\n"]);
            let mut bytes = dump[..keep.min(dump.len())].to_vec();
            bytes.extend_from_slice(&garbage);
            let mut pieces = Vec::new();
            let mut rest = &bytes[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (piece, after) = rest.split_at((*cut).min(rest.len()));
                pieces.push(piece);
                rest = after;
            }
            let _ = scan(&pieces);
        }

        /// Any rows, any piece size: the same offsets as the whole dump gives.
        #[test]
        fn pieces_do_not_change_the_offsets(
            rows in proptest::collection::vec("[a-z0-9\t]{0,40}\n", 0..30),
            size in 1usize..300,
        ) {
            let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
            let (dump, _, _) = archive(&rows);
            let whole = scan(&[&dump]).unwrap();
            let pieces: Vec<&[u8]> = dump.chunks(size).collect();
            proptest::prop_assert_eq!(scan(&pieces).unwrap(), whole);
        }
    }
}
