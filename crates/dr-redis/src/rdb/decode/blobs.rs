//! The compact encodings Redis stores as one string: listpack, ziplist,
//! intset and zipmap. Each is checked whole (its own length, its end
//! marker, its element count, each entry's back length) while it is read.
//!
//! Errors carry offsets within the value: `base` is where the blob starts in it.

use bytes::Bytes;

use crate::rdb::wire::{Cursor, Read, Stop};

/// An element of a listpack or ziplist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Elem<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl Elem<'_> {
    /// The element as Redis shows it: the bytes, or the integer in decimal.
    /// `base` must hold the blob.
    pub(crate) fn to_bytes(self, base: &Bytes) -> Bytes {
        match self {
            Elem::Str([]) => Bytes::new(),
            Elem::Str(bytes) => base.slice_ref(bytes),
            Elem::Int(value) => Bytes::from(value.to_string()),
        }
    }

    /// The element as an integer, if it is one (or is text that is one).
    pub(crate) fn to_int(self) -> Option<i64> {
        match self {
            Elem::Int(value) => Some(value),
            Elem::Str(text) => crate::rdb::wire::parse_int(text),
        }
    }

    /// The element as a score.
    pub(crate) fn to_f64(self) -> Option<f64> {
        match self {
            Elem::Int(value) => Some(value as f64),
            Elem::Str(text) => crate::rdb::wire::parse_double(text),
        }
    }
}

/// What listpacks and ziplists share: a blob that states its own size and
/// element count in its header and ends with `0xFF`.
pub(crate) struct Counted<'a> {
    data: &'a [u8],
    base: usize,
    declared: Option<u16>,
    seen: u64,
    what: &'static str,
}

impl<'a> Counted<'a> {
    /// Checks the header's total size and the end marker after a header of
    /// `header` bytes.
    fn new(
        what: &'static str,
        data: &'a [u8],
        base: usize,
        total: u32,
        count: u16,
        header: usize,
    ) -> Read<Self> {
        if total as usize != data.len() {
            return Err(Stop::bad(
                base,
                format!(
                    "{what} says it has {total} bytes, its string has {}",
                    data.len()
                ),
            ));
        }
        if data.len() <= header || data[data.len() - 1] != 0xff {
            return Err(Stop::bad(base, format!("{what} without its end marker")));
        }
        Ok(Self {
            data,
            base,
            // The count field's largest value means "too many to say".
            declared: (count != u16::MAX).then_some(count),
            seen: 0,
            what,
        })
    }

    fn bad(&self, at: usize, reason: impl Into<std::borrow::Cow<'static, str>>) -> Stop {
        Stop::bad(self.base + at, reason)
    }

    /// The end marker at `at`: it must be the last byte, after as many
    /// elements as the header said.
    fn end(&self, at: usize) -> Read<Option<Elem<'a>>> {
        if at != self.data.len() - 1 {
            return Err(self.bad(at, format!("{} end marker before its end", self.what)));
        }
        if let Some(declared) = self.declared
            && u64::from(declared) != self.seen
        {
            return Err(self.bad(
                0,
                format!(
                    "{} says it has {declared} elements, it has {}",
                    self.what, self.seen
                ),
            ));
        }
        Ok(None)
    }

    /// An entry from `at` to `end` was read: the end marker must still follow.
    fn entry(&mut self, at: usize, end: usize) -> Read<()> {
        if end >= self.data.len() {
            return Err(self.bad(at, format!("{} entry runs over its end marker", self.what)));
        }
        self.seen += 1;
        Ok(())
    }
}

/// Readers of elements one after the other.
pub(crate) trait Elements<'a>: Sized {
    /// The next element, `None` at the end marker.
    fn next(&mut self) -> Read<Option<Elem<'a>>>;
}

/// A 24-bit two's complement integer, little-endian.
fn int24([a, b, c]: [u8; 3]) -> i64 {
    i64::from(i32::from_le_bytes([0, a, b, c]) >> 8)
}

/// A reader of the elements of a listpack (`listpack.c`'s layout):
/// `<u32 total bytes><u16 count>` entries `0xFF`, each entry its encoding,
/// its data and its length written backwards.
pub(crate) struct Listpack<'a> {
    blob: Counted<'a>,
    pos: usize,
}

impl<'a> Listpack<'a> {
    pub(crate) fn new(data: &'a [u8], base: usize) -> Read<Self> {
        let mut cursor = Cursor::new(data);
        let short = |_| Stop::bad(base, "listpack shorter than its header");
        let total = cursor.u32_le().map_err(short)?;
        let count = cursor.u16_le().map_err(short)?;
        Ok(Self {
            blob: Counted::new("listpack", data, base, total, count, 6)?,
            pos: 6,
        })
    }

    /// The next element, which must be there.
    pub(crate) fn expect(&mut self, what: &'static str) -> Read<Elem<'a>> {
        let at = self.pos;
        self.next()?.ok_or_else(|| {
            self.blob
                .bad(at, format!("listpack ends before its {what}"))
        })
    }

    /// The next element as an integer.
    pub(crate) fn int(&mut self, what: &'static str) -> Read<i64> {
        let at = self.pos;
        self.expect(what)?.to_int().ok_or_else(|| {
            self.blob
                .bad(at, format!("listpack {what} is not an integer"))
        })
    }

    /// The offset of the next entry in the value, for errors.
    pub(crate) fn offset(&self) -> usize {
        self.blob.base + self.pos
    }

    /// How many elements the listpack can hold at most: each takes two
    /// bytes at least.
    pub(crate) fn capacity_hint(&self) -> usize {
        self.blob.data.len() / 2
    }
}

impl<'a> Elements<'a> for Listpack<'a> {
    fn next(&mut self) -> Read<Option<Elem<'a>>> {
        let at = self.pos;
        let mut cursor = Cursor::at(self.blob.data, at);
        let cut = |_| self.blob.bad(at, "listpack entry runs past its end");
        let first = cursor.u8().map_err(cut)?;
        let elem = match first {
            0x00..=0x7f => Elem::Int(i64::from(first)),
            0x80..=0xbf => Elem::Str(cursor.take(u64::from(first & 0x3f)).map_err(cut)?),
            0xc0..=0xdf => {
                let raw = (u16::from(first & 0x1f) << 8) | u16::from(cursor.u8().map_err(cut)?);
                // 13-bit two's complement.
                Elem::Int(i64::from(((raw << 3) as i16) >> 3))
            }
            0xe0..=0xef => {
                let len = (u64::from(first & 0x0f) << 8) | u64::from(cursor.u8().map_err(cut)?);
                Elem::Str(cursor.take(len).map_err(cut)?)
            }
            0xf0 => {
                let len = cursor.u32_le().map_err(cut)?;
                Elem::Str(cursor.take(u64::from(len)).map_err(cut)?)
            }
            0xf1 => Elem::Int(i64::from(i16::from_le_bytes(cursor.array().map_err(cut)?))),
            0xf2 => Elem::Int(int24(cursor.array().map_err(cut)?)),
            0xf3 => Elem::Int(i64::from(i32::from_le_bytes(cursor.array().map_err(cut)?))),
            0xf4 => Elem::Int(cursor.i64_le().map_err(cut)?),
            0xff => return self.blob.end(at),
            other => {
                return Err(self
                    .blob
                    .bad(at, format!("unknown listpack encoding {other:#04x}")));
            }
        };
        let entry_len = (cursor.pos() - at) as u64;
        let (backlen, size) = encode_backlen(entry_len);
        let stored = cursor.take(size as u64).map_err(cut)?;
        // Compared byte by byte: a call to memcmp costs more than these few.
        if stored.iter().zip(&backlen[..size]).any(|(a, b)| a != b) {
            return Err(self
                .blob
                .bad(at, "listpack entry's back length does not match it"));
        }
        self.blob.entry(at, cursor.pos())?;
        self.pos = cursor.pos();
        Ok(Some(elem))
    }
}

/// A listpack entry's length as stored after it: big-endian groups of seven
/// bits, every byte but the first with its top bit set.
fn encode_backlen(len: u64) -> ([u8; 5], usize) {
    let size = match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        2_097_152..=268_435_455 => 4,
        _ => 5,
    };
    let mut out = [0u8; 5];
    for (i, byte) in out[..size].iter_mut().enumerate() {
        let shift = 7 * (size - 1 - i);
        *byte = ((len >> shift) & 127) as u8 | if i == 0 { 0 } else { 128 };
    }
    (out, size)
}

/// A reader of the elements of a ziplist (`ziplist.c`'s layout):
/// `<u32 bytes><u32 tail><u16 count>` entries `0xFF`, each entry the previous
/// entry's length, its encoding and its data.
pub(crate) struct Ziplist<'a> {
    blob: Counted<'a>,
    pos: usize,
    previous_len: usize,
}

impl<'a> Ziplist<'a> {
    pub(crate) fn new(data: &'a [u8], base: usize) -> Read<Self> {
        let mut cursor = Cursor::new(data);
        let short = |_| Stop::bad(base, "ziplist shorter than its header");
        let total = cursor.u32_le().map_err(short)?;
        let tail = cursor.u32_le().map_err(short)?;
        let count = cursor.u16_le().map_err(short)?;
        let blob = Counted::new("ziplist", data, base, total, count, 10)?;
        if tail as usize >= data.len() {
            return Err(Stop::bad(base, "ziplist's tail offset past its end"));
        }
        Ok(Self {
            blob,
            pos: 10,
            previous_len: 0,
        })
    }
}

impl<'a> Elements<'a> for Ziplist<'a> {
    fn next(&mut self) -> Read<Option<Elem<'a>>> {
        let at = self.pos;
        let mut cursor = Cursor::at(self.blob.data, at);
        let cut = |_| self.blob.bad(at, "ziplist entry runs past its end");
        let first = cursor.u8().map_err(cut)?;
        if first == 0xff {
            return self.blob.end(at);
        }
        let previous = if first == 0xfe {
            cursor.u32_le().map_err(cut)? as usize
        } else {
            usize::from(first)
        };
        if previous != self.previous_len {
            return Err(self.blob.bad(
                at,
                format!(
                    "ziplist entry says the one before has {previous} bytes, it has {}",
                    self.previous_len
                ),
            ));
        }
        let encoding = cursor.u8().map_err(cut)?;
        let elem = match encoding >> 6 {
            0 => Elem::Str(cursor.take(u64::from(encoding & 0x3f)).map_err(cut)?),
            1 => {
                let len = (u64::from(encoding & 0x3f) << 8) | u64::from(cursor.u8().map_err(cut)?);
                Elem::Str(cursor.take(len).map_err(cut)?)
            }
            2 if encoding == 0x80 => {
                let len = u32::from_be_bytes(cursor.array().map_err(cut)?);
                Elem::Str(cursor.take(u64::from(len)).map_err(cut)?)
            }
            _ => match encoding {
                0xc0 => Elem::Int(i64::from(i16::from_le_bytes(cursor.array().map_err(cut)?))),
                0xd0 => Elem::Int(i64::from(i32::from_le_bytes(cursor.array().map_err(cut)?))),
                0xe0 => Elem::Int(cursor.i64_le().map_err(cut)?),
                0xf0 => Elem::Int(int24(cursor.array().map_err(cut)?)),
                0xfe => Elem::Int(i64::from(cursor.u8().map_err(cut)? as i8)),
                0xf1..=0xfd => Elem::Int(i64::from(encoding & 0x0f) - 1),
                other => {
                    return Err(self
                        .blob
                        .bad(at, format!("unknown ziplist encoding {other:#04x}")));
                }
            },
        };
        self.blob.entry(at, cursor.pos())?;
        self.previous_len = cursor.pos() - at;
        self.pos = cursor.pos();
        Ok(Some(elem))
    }
}

/// The integers of an intset, each handed to `f`, and how many there were:
/// `<u32 width><u32 count>` and `count` little-endian integers of `width`
/// bytes, sorted.
pub(crate) fn intset(data: &[u8], base: usize, mut f: impl FnMut(i64)) -> Read<u64> {
    let mut cursor = Cursor::new(data);
    let short = |_| Stop::bad(base, "intset shorter than its header");
    let width = cursor.u32_le().map_err(short)?;
    let count = cursor.u32_le().map_err(short)?;
    if !matches!(width, 2 | 4 | 8) {
        return Err(Stop::bad(
            base,
            format!("intset with {width}-byte integers"),
        ));
    }
    if u64::from(count) * u64::from(width) != cursor.remaining() as u64 {
        return Err(Stop::bad(
            base,
            format!(
                "intset of {count} {width}-byte integers in {} bytes",
                cursor.remaining()
            ),
        ));
    }
    let mut previous = None;
    // Sign-extended from `width` bytes.
    let shift = 64 - 8 * width;
    for int in data[8..].chunks_exact(width as usize) {
        let mut word = [0u8; 8];
        word[..int.len()].copy_from_slice(int);
        let value = (i64::from_le_bytes(word) << shift) >> shift;
        if previous.is_some_and(|previous| previous >= value) {
            return Err(Stop::bad(base, "intset not sorted or with duplicates"));
        }
        previous = Some(value);
        f(value);
    }
    Ok(u64::from(count))
}

/// The pairs of a zipmap (Redis 2.x hashes): `<u8 count>` then per pair
/// `<len>key<len><u8 free>value<free bytes>`, then `0xFF`; a length is one
/// byte below 254, or 254 and four bytes.
pub(crate) fn zipmap(data: &[u8], base: usize) -> Read<Vec<(&[u8], &[u8])>> {
    let mut cursor = Cursor::new(data);
    let cut = |_| Stop::bad(base, "zipmap runs past its end");
    cursor.u8().map_err(cut)?;
    let mut pairs = Vec::new();
    loop {
        let at = base + cursor.pos();
        let Some(key_len) = zipmap_len(&mut cursor).map_err(cut)? else {
            break;
        };
        let key = cursor.take(key_len).map_err(cut)?;
        let value_len = zipmap_len(&mut cursor)
            .map_err(cut)?
            .ok_or_else(|| Stop::bad(at, "zipmap key without a value"))?;
        let free = cursor.u8().map_err(cut)?;
        let value = cursor.take(value_len).map_err(cut)?;
        cursor.take(u64::from(free)).map_err(cut)?;
        pairs.push((key, value));
    }
    if !cursor.is_at_end() {
        return Err(Stop::bad(
            base + cursor.pos(),
            "bytes after the zipmap's end",
        ));
    }
    Ok(pairs)
}

fn zipmap_len(cursor: &mut Cursor<'_>) -> Read<Option<u64>> {
    match cursor.u8()? {
        255 => Ok(None),
        254 => Ok(Some(u64::from(cursor.u32_le()?))),
        len => Ok(Some(u64::from(len))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listpack of the given entries (encoding and data), back lengths added.
    pub(crate) fn listpack(entries: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        for entry in entries {
            body.extend_from_slice(entry);
            let (backlen, size) = encode_backlen(entry.len() as u64);
            body.extend_from_slice(&backlen[..size]);
        }
        let total = 6 + body.len() + 1;
        let mut out = Vec::new();
        out.extend((total as u32).to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend(body);
        out.push(0xff);
        out
    }

    fn ints(data: &[u8]) -> Vec<i64> {
        let mut lp = Listpack::new(data, 0).unwrap();
        let mut out = Vec::new();
        while let Some(elem) = lp.next().unwrap() {
            out.push(elem.to_int().unwrap());
        }
        out
    }

    #[test]
    fn listpack_integers_of_every_width() {
        let data = listpack(&[
            &[0x7f],                                                 // 127, 7-bit
            &[0xc0 | 0x1f, 0xff],                                    // -1, 13-bit
            &[0xd0, 0x00],                                           // -4096, 13-bit
            &[0xcf, 0xff],                                           // 4095, 13-bit
            &[0xf1, 0x00, 0x80],                                     // -32768, 16-bit
            &[0xf2, 0xff, 0xff, 0xff],                               // -1, 24-bit
            &[0xf2, 0x00, 0x00, 0x80],                               // -8388608, 24-bit
            &[0xf2, 0xff, 0xff, 0x7f],                               // 8388607, 24-bit
            &[0xf3, 0x00, 0x00, 0x00, 0x80],                         // i32::MIN
            &[0xf4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], // i64::MAX
        ]);
        assert_eq!(
            ints(&data),
            [
                127,
                -1,
                -4096,
                4095,
                -32768,
                -1,
                -8_388_608,
                8_388_607,
                i64::from(i32::MIN),
                i64::MAX
            ]
        );
    }

    #[test]
    fn listpack_strings_and_damage() {
        let long = vec![b'x'; 200];
        let mut entry = vec![0xe0, 200];
        entry.extend(&long);
        let data = listpack(&[&[0x83, b'a', b'b', b'c'], &entry]);
        let mut lp = Listpack::new(&data, 0).unwrap();
        assert_eq!(lp.next().unwrap(), Some(Elem::Str(b"abc")));
        assert_eq!(lp.next().unwrap(), Some(Elem::Str(&long)));
        assert_eq!(lp.next().unwrap(), None);

        // A wrong back length, a wrong count, a wrong total.
        let mut bad = data.clone();
        bad[10] = 9;
        let mut lp = Listpack::new(&bad, 0).unwrap();
        assert!(lp.next().is_err());
        let mut bad = data.clone();
        bad[4] = 3;
        let mut lp = Listpack::new(&bad, 0).unwrap();
        while let Ok(Some(_)) = lp.next() {}
        assert!(lp.next().is_err());
        assert!(Listpack::new(&data[..data.len() - 1], 0).is_err());
    }

    #[test]
    fn backlens() {
        assert_eq!(encode_backlen(5), ([5, 0, 0, 0, 0], 1));
        assert_eq!(encode_backlen(200), ([1, 128 | 72, 0, 0, 0], 2));
    }

    #[test]
    fn intsets() {
        let mut data = vec![2, 0, 0, 0, 2, 0, 0, 0];
        data.extend((-5i16).to_le_bytes());
        data.extend(7i16.to_le_bytes());
        let mut ints = Vec::new();
        assert_eq!(intset(&data, 0, |int| ints.push(int)).unwrap(), 2);
        assert_eq!(ints, [-5, 7]);
        data[4] = 3;
        assert!(intset(&data, 0, |_| {}).is_err());
        // Not sorted.
        data[4] = 2;
        data[10] = 0xfb;
        data[11] = 0xff;
        assert!(intset(&data, 0, |_| {}).is_err());
    }

    #[test]
    fn ziplists() {
        // Entries: "ab", 12 (immediate), -2 (i8), i24 -1.
        let mut body = vec![0x00, 0x02, b'a', b'b'];
        body.extend([4, 0xfd]);
        body.extend([2, 0xfe, 0xfe]);
        body.extend([3, 0xf0, 0xff, 0xff, 0xff]);
        let total = 10 + body.len() + 1;
        let mut data = Vec::new();
        data.extend((total as u32).to_le_bytes());
        data.extend(((total - 6) as u32).to_le_bytes());
        data.extend(4u16.to_le_bytes());
        data.extend(body);
        data.push(0xff);
        let mut zl = Ziplist::new(&data, 0).unwrap();
        let mut out = Vec::new();
        while let Some(elem) = zl.next().unwrap() {
            out.push(elem);
        }
        assert_eq!(
            out,
            [
                Elem::Str(b"ab"),
                Elem::Int(12),
                Elem::Int(-2),
                Elem::Int(-1)
            ]
        );
        data[14] = 5; // the second entry's previous length
        let mut zl = Ziplist::new(&data, 0).unwrap();
        zl.next().unwrap();
        assert!(zl.next().is_err());
    }
}
