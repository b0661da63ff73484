//! The RDB's primitives over a byte slice: lengths, strings (raw, integer,
//! LZF), little-endian integers. Every read either succeeds, says the slice
//! ends too early ([`Stop::Incomplete`]: the framing waits for more bytes,
//! a decoder calls the value truncated), or says the bytes are bad.

use std::borrow::Cow;

use bytes::Bytes;

use crate::rdb::lzf;

/// Why a read stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The slice ends before the item does.
    Incomplete,
    /// The bytes break the format at `at` (an offset into the slice).
    Bad {
        at: usize,
        reason: Cow<'static, str>,
    },
}

impl Stop {
    pub(crate) fn bad(at: usize, reason: impl Into<Cow<'static, str>>) -> Self {
        Stop::Bad {
            at,
            reason: reason.into(),
        }
    }
}

/// The result of a read.
pub(crate) type Read<T> = Result<T, Stop>;

/// A length, or the special encoding that stands in for a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Length {
    Plain(u64),
    Encoded(u8),
}

/// A string as the RDB stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RdbStr<'a> {
    /// The bytes themselves.
    Raw(&'a [u8]),
    /// An integer stored in 1, 2 or 4 bytes; the string is its decimal form.
    Int(i64),
    /// LZF-compressed bytes and the length they expand to.
    Lzf { data: &'a [u8], len: u64, at: usize },
}

impl<'a> RdbStr<'a> {
    /// The string's bytes: a slice of `base` when stored raw (`base` must
    /// hold the bytes the cursor read), a new buffer otherwise.
    pub(crate) fn to_bytes(self, base: &Bytes) -> Read<Bytes> {
        match self {
            RdbStr::Raw([]) => Ok(Bytes::new()),
            RdbStr::Raw(raw) => Ok(base.slice_ref(raw)),
            RdbStr::Int(value) => Ok(Bytes::from(value.to_string())),
            RdbStr::Lzf { data, len, at } => lzf::decompress(data, len)
                .map(Bytes::from)
                .map_err(|reason| Stop::bad(at, reason)),
        }
    }

    /// The string's bytes, borrowed when raw.
    pub(crate) fn to_cow(self) -> Read<Cow<'a, [u8]>> {
        match self {
            RdbStr::Raw(raw) => Ok(Cow::Borrowed(raw)),
            RdbStr::Int(value) => Ok(Cow::Owned(value.to_string().into_bytes())),
            RdbStr::Lzf { data, len, at } => lzf::decompress(data, len)
                .map(Cow::Owned)
                .map_err(|reason| Stop::bad(at, reason)),
        }
    }
}

/// A reading position in a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn at(data: &'a [u8], pos: usize) -> Self {
        Self { data, pos }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn is_at_end(&self) -> bool {
        self.pos == self.data.len()
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: u64) -> Read<&'a [u8]> {
        if n > self.remaining() as u64 {
            return Err(Stop::Incomplete);
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.data[start..self.pos])
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Read<[u8; N]> {
        let bytes = self.take(N as u64)?;
        let mut array = [0; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    pub(crate) fn u8(&mut self) -> Read<u8> {
        let [byte] = self.array()?;
        Ok(byte)
    }

    pub(crate) fn u16_le(&mut self) -> Read<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32_le(&mut self) -> Read<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64_le(&mut self) -> Read<u64> {
        self.array().map(u64::from_le_bytes)
    }

    pub(crate) fn i64_le(&mut self) -> Read<i64> {
        self.array().map(i64::from_le_bytes)
    }

    pub(crate) fn f64_le(&mut self) -> Read<f64> {
        self.array().map(f64::from_le_bytes)
    }

    /// A length or a string's special encoding (`rdbLoadLenByRef`).
    pub(crate) fn length(&mut self) -> Read<Length> {
        let at = self.pos;
        let first = self.u8()?;
        Ok(match first >> 6 {
            0 => Length::Plain(u64::from(first & 0x3f)),
            1 => Length::Plain(u64::from(first & 0x3f) << 8 | u64::from(self.u8()?)),
            2 => match first {
                0x80 => Length::Plain(u64::from(u32::from_be_bytes(self.array()?))),
                0x81 => Length::Plain(u64::from_be_bytes(self.array()?)),
                _ => {
                    return Err(Stop::bad(
                        at,
                        format!("unknown length encoding {first:#04x}"),
                    ));
                }
            },
            _ => Length::Encoded(first & 0x3f),
        })
    }

    /// A plain length.
    pub(crate) fn len(&mut self) -> Read<u64> {
        let at = self.pos;
        match self.length()? {
            Length::Plain(len) => Ok(len),
            Length::Encoded(_) => Err(Stop::bad(at, "a string encoding where a length belongs")),
        }
    }

    /// A string (`rdbGenericLoadStringObject`).
    pub(crate) fn string(&mut self) -> Read<RdbStr<'a>> {
        let at = self.pos;
        match self.length()? {
            Length::Plain(len) => self.take(len).map(RdbStr::Raw),
            Length::Encoded(0) => Ok(RdbStr::Int(i64::from(self.u8()? as i8))),
            Length::Encoded(1) => Ok(RdbStr::Int(i64::from(i16::from_le_bytes(self.array()?)))),
            Length::Encoded(2) => Ok(RdbStr::Int(i64::from(i32::from_le_bytes(self.array()?)))),
            Length::Encoded(3) => {
                let compressed = self.len()?;
                let len = self.len()?;
                let data = self.take(compressed)?;
                Ok(RdbStr::Lzf { data, len, at })
            }
            Length::Encoded(other) => {
                Err(Stop::bad(at, format!("unknown string encoding {other}")))
            }
        }
    }

    /// A string whose bytes must be stored raw (a blob such as a listpack),
    /// as a slice of `base`.
    pub(crate) fn blob(&mut self, base: &Bytes) -> Read<Bytes> {
        self.string()?.to_bytes(base)
    }

    /// A score of type 3: one length byte and ASCII, or 253/254/255 for
    /// NaN, +inf and -inf (`rdbLoadDoubleValue`).
    pub(crate) fn ascii_double(&mut self) -> Read<f64> {
        let at = self.pos;
        match self.u8()? {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            len => {
                let text = self.take(u64::from(len))?;
                parse_double(text).ok_or_else(|| Stop::bad(at, "a score that is not a number"))
            }
        }
    }
}

/// A decimal integer as Redis writes it (`string2ll`): no spaces, no plus sign.
pub(crate) fn parse_int(text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    if text.starts_with('+') || text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

/// A double as Redis writes it in text (`%.17g`, "inf", "-inf", "nan").
pub(crate) fn parse_double(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    match text {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" | "-nan" => Some(f64::NAN),
        _ => text.parse().ok().filter(|value: &f64| !value.is_nan()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        let cases: &[(&[u8], u64)] = &[
            (&[0x05], 5),
            (&[0x41, 0x02], 0x102),
            (&[0x80, 0, 1, 0, 0], 65536),
            (&[0x81, 0, 0, 0, 1, 0, 0, 0, 0], 1 << 32),
        ];
        for (bytes, len) in cases {
            assert_eq!(Cursor::new(bytes).len(), Ok(*len));
            assert_eq!(
                Cursor::new(&bytes[..bytes.len() - 1]).len().err(),
                Some(Stop::Incomplete)
            );
        }
        assert!(matches!(Cursor::new(&[0x82]).len(), Err(Stop::Bad { .. })));
        assert!(matches!(
            Cursor::new(&[0xc0, 1]).len(),
            Err(Stop::Bad { .. })
        ));
    }

    #[test]
    fn integer_strings() {
        let base =
            Bytes::from_static(&[0xc0, 0xfe, 0xc1, 0x00, 0x80, 0xc2, 0xff, 0xff, 0xff, 0x7f]);
        let mut cursor = Cursor::new(&base);
        let mut next = || cursor.string().unwrap().to_bytes(&base).unwrap();
        assert_eq!(next(), "-2");
        assert_eq!(next(), "-32768");
        assert_eq!(next(), "2147483647");
    }

    #[test]
    fn numbers_in_text() {
        assert_eq!(parse_int(b"-12"), Some(-12));
        assert_eq!(parse_int(b"012"), None);
        assert_eq!(parse_int(b"+1"), None);
        assert_eq!(parse_double(b"1.5"), Some(1.5));
        assert!(parse_double(b"nan").unwrap().is_nan());
        assert_eq!(parse_double(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_double(b"x"), None);
    }
}
