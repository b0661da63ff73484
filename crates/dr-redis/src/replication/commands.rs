//! The replication stream split into commands: a master sends its writes to
//! its replicas as RESP arrays of bulk strings, back to back, and a
//! replica's offset counts their bytes. [`CommandSplitter`] finds where
//! each command starts and ends in the stream's offsets, from pieces of any
//! size, without copying them.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Place, Result};

/// The longest argument accepted: Redis's own `proto-max-bulk-len` default.
const MAX_BULK: u64 = 512 << 20;
/// The most arguments accepted in one command.
const MAX_ARGS: u64 = 1 << 24;
/// The longest header line (`*<n>` or `$<n>`) accepted.
const MAX_LINE: usize = 32;

/// One command of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCommand {
    /// Where it starts and ends, in the stream's replication offsets.
    pub offsets: Range<u64>,
    /// Its exact bytes, as the master sent them.
    pub raw: Bytes,
    /// Its arguments, as ranges of `raw`.
    args: Vec<Range<usize>>,
}

impl StreamCommand {
    /// The command's name, as sent (`SET`, `MULTI`, `PING` …).
    pub fn name(&self) -> &[u8] {
        self.arg(0).unwrap_or_default()
    }

    /// Argument `i` (0 is the name).
    pub fn arg(&self, i: usize) -> Option<&[u8]> {
        self.args.get(i).map(|r| &self.raw[r.clone()])
    }

    /// How many arguments it has, its name included.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// Whether it has no arguments at all (`*0`), which Redis never sends.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// Whether it is named `name`, in any case.
    pub fn is(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name.as_bytes())
    }
}

/// Splits a replication stream into [`StreamCommand`]s: bytes go in with
/// [`feed`](Self::feed), commands come out of [`next_command`](Self::next_command) once
/// whole, each with its offsets.
///
/// ```
/// use dr_redis::CommandSplitter;
///
/// let mut split = CommandSplitter::new(1000);
/// split.feed(b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk");
/// let ping = split.next_command()?.unwrap();
/// assert!(ping.is("ping"));
/// assert_eq!(ping.offsets, 1000..1014);
/// assert!(split.next_command()?.is_none()); // the SET is not whole yet
/// split.feed(b"\r\n$1\r\nv\r\n");
/// let set = split.next_command()?.unwrap();
/// assert_eq!((set.arg(1), set.arg(2)), (Some(&b"k"[..]), Some(&b"v"[..])));
/// assert_eq!(set.offsets.start, 1014);
/// assert_eq!(split.offset(), set.offsets.end);
/// # Ok::<(), dr_redis::Error>(())
/// ```
#[derive(Debug)]
pub struct CommandSplitter {
    buf: BytesMut,
    /// The offset of `buf[0]`.
    offset: u64,
}

impl CommandSplitter {
    /// A splitter of a stream whose next byte has replication offset `offset`.
    pub fn new(offset: u64) -> Self {
        Self {
            buf: BytesMut::new(),
            offset,
        }
    }

    /// Appends the stream's next bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The offset up to which commands were handed out: where the next one
    /// starts.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes fed and not yet handed out as a whole command.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole command, or `None` until more bytes are fed.
    ///
    /// # Errors
    /// [`Error::Corrupt`] for bytes that are not a RESP array of bulk
    /// strings (with the offset where it went wrong), or lengths beyond
    /// Redis's own limits.
    pub fn next_command(&mut self) -> Result<Option<StreamCommand>> {
        let Some((len, args)) = self.measure()? else {
            return Ok(None);
        };
        let raw = self.buf.split_to(len).freeze();
        let start = self.offset;
        self.offset += len as u64;
        Ok(Some(StreamCommand {
            offsets: start..self.offset,
            raw,
            args,
        }))
    }

    /// The length of the command at the buffer's start and its arguments'
    /// ranges, if it is whole.
    fn measure(&self) -> Result<Option<(usize, Vec<Range<usize>>)>> {
        let buf = &self.buf[..];
        let mut at = 0;
        let Some(count) = self.header(buf, &mut at, b'*', MAX_ARGS)? else {
            return Ok(None);
        };
        let mut args = Vec::with_capacity(count.min(64) as usize);
        for _ in 0..count {
            let Some(len) = self.header(buf, &mut at, b'$', MAX_BULK)? else {
                return Ok(None);
            };
            let len = len as usize;
            if buf.len() < at + len + 2 {
                return Ok(None);
            }
            if &buf[at + len..at + len + 2] != b"\r\n" {
                return Err(self.bad(at + len, "a bulk string not ended by CRLF"));
            }
            args.push(at..at + len);
            at += len + 2;
        }
        Ok(Some((at, args)))
    }

    /// Reads `<marker><n>\r\n` at `at`, moving `at` past it.
    fn header(&self, buf: &[u8], at: &mut usize, marker: u8, max: u64) -> Result<Option<u64>> {
        let rest = &buf[*at..];
        let Some(&first) = rest.first() else {
            return Ok(None);
        };
        if first != marker {
            return Err(self.bad(
                *at,
                if marker == b'*' {
                    "a command that is not a RESP array"
                } else {
                    "an argument that is not a bulk string"
                },
            ));
        }
        let Some(end) = rest.iter().take(MAX_LINE).position(|&b| b == b'\n') else {
            if rest.len() >= MAX_LINE {
                return Err(self.bad(*at, "a header line too long"));
            }
            return Ok(None);
        };
        let digits = rest[1..end]
            .strip_suffix(b"\r")
            .ok_or_else(|| self.bad(*at + end, "a header line not ended by CRLF"))?;
        let n = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
            .filter(|&n| n <= max)
            .ok_or_else(|| self.bad(*at, "a length that does not read or is too large"))?;
        *at += end + 1;
        Ok(Some(n))
    }

    fn bad(&self, at: usize, reason: &str) -> Error {
        Error::corrupt(
            Place::at(self.offset + at as u64),
            format!("replication stream: {reason}"),
        )
    }

    /// Drops what was fed and not handed out, for a stream that starts
    /// again at `offset`.
    pub fn reset(&mut self, offset: u64) {
        self.buf.clear();
        self.offset = offset;
    }

    /// Takes what was fed and not handed out (a command cut by a
    /// disconnection), leaving the splitter empty at the same offset.
    pub fn take_pending(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend(b"\r\n");
        }
        out
    }

    #[test]
    fn bad_streams_are_errors_with_their_offset() {
        for (bytes, at) in [
            (&b"+OK\r\n"[..], 100),
            (b"*1\r\n:5\r\n", 104),
            (b"*1\r\n$3\r\nabcd\r\n", 111),
            (b"*x\r\n", 100),
            (b"*1\n", 102),
        ] {
            let mut split = CommandSplitter::new(100);
            split.feed(bytes);
            let err = split.next_command().unwrap_err();
            assert!(
                err.to_string().contains(&format!("byte {at}")),
                "{bytes:?}: {err}"
            );
        }
        let mut split = CommandSplitter::new(0);
        split.feed(b"*99999999999\r\n");
        assert!(split.next_command().is_err());
    }

    proptest! {
        #[test]
        fn any_cut_gives_the_same_commands(
            commands in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..5),
                1..20,
            ),
            cuts in prop::collection::vec(1usize..50, 1..30),
        ) {
            let mut stream = Vec::new();
            let mut expected = Vec::new();
            let mut offset = 7;
            for args in &commands {
                let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                let bytes = encode(&args);
                expected.push((offset..offset + bytes.len() as u64, args.iter().map(|a| a.to_vec()).collect::<Vec<_>>()));
                offset += bytes.len() as u64;
                stream.extend(bytes);
            }
            let mut split = CommandSplitter::new(7);
            let mut got = Vec::new();
            let mut rest = &stream[..];
            let mut cuts = cuts.into_iter().cycle();
            while !rest.is_empty() {
                let n = cuts.next().unwrap().min(rest.len());
                split.feed(&rest[..n]);
                rest = &rest[n..];
                while let Some(command) = split.next_command().unwrap() {
                    let args = (0..command.len()).map(|i| command.arg(i).unwrap().to_vec()).collect::<Vec<_>>();
                    got.push((command.offsets.clone(), args));
                }
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(split.pending(), 0);
            prop_assert_eq!(split.offset(), offset);
        }
    }
}
