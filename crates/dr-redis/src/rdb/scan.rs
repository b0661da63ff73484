//! Finding where a value ends without decoding it: each value type is a
//! small program of steps (a length, a string, fixed bytes, a counted
//! repetition of steps), run by [`Scan`] over bytes as they arrive. A scan
//! stops between steps when bytes run out and resumes there, so a value fed
//! in many pieces is walked once, and nested repetitions use a fixed-depth
//! stack: no recursion, no allocation.

use crate::rdb::wire::{Cursor, Read, Stop};

/// One step of a value's layout.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A length (or any number stored as one).
    Len,
    /// A string in any encoding.
    Str,
    /// Fixed bytes.
    Raw(u8),
    /// A type-3 score: one length byte and that much text.
    AsciiDouble,
    /// A length `n`, then the steps `n` times.
    Each(&'static [Step]),
    /// A module value's opcode-tagged fields up to their end opcode.
    ModuleFields,
}

use Step::{AsciiDouble, Each, Len, ModuleFields, Raw, Str};

const STRING: &[Step] = &[Str];
const STRINGS: &[Step] = &[Each(&[Str])];
const ZSET: &[Step] = &[Each(&[Str, AsciiDouble])];
const PAIRS: &[Step] = &[Each(&[Str, Str])];
const ZSET_2: &[Step] = &[Each(&[Str, Raw(8)])];
const MODULE_2: &[Step] = &[Len, ModuleFields];
const QUICKLIST_2: &[Step] = &[Each(&[Len, Str])];
/// A stream's nodes: master id and listpack.
const NODES: Step = Each(&[Str, Str]);
const PEL: &[Step] = &[Raw(16), Raw(8), Len];
const CONSUMER_PEL: &[Step] = &[Raw(16)];
const CONSUMER_1: &[Step] = &[Str, Raw(8), Each(CONSUMER_PEL)];
const CONSUMER_3: &[Step] = &[Str, Raw(8), Raw(8), Each(CONSUMER_PEL)];
const GROUP_1: &[Step] = &[Str, Len, Len, Each(PEL), Each(CONSUMER_1)];
const GROUP_2: &[Step] = &[Str, Len, Len, Len, Each(PEL), Each(CONSUMER_1)];
const GROUP_3: &[Step] = &[Str, Len, Len, Len, Each(PEL), Each(CONSUMER_3)];
const STREAM_1: &[Step] = &[NODES, Len, Len, Len, Each(GROUP_1)];
const STREAM_2: &[Step] = &[NODES, Len, Len, Len, Len, Len, Len, Len, Len, Each(GROUP_2)];
const STREAM_3: &[Step] = &[NODES, Len, Len, Len, Len, Len, Len, Len, Len, Each(GROUP_3)];
const HASH_METADATA_PRE_GA: &[Step] = &[Each(&[Len, Str, Str])];
const HASH_METADATA: &[Step] = &[Raw(8), Each(&[Len, Str, Str])];
const HASH_LISTPACK_EX: &[Step] = &[Raw(8), Str];
/// `MODULE_AUX` after its opcode: module id, the 'when' opcode and value, fields.
const MODULE_AUX: &[Step] = &[Len, Len, Len, ModuleFields];

/// The layout of a value type, or `None` for types this build does not read.
fn program(value_type: u8) -> Option<&'static [Step]> {
    Some(match value_type {
        0 | 9..=13 | 16 | 17 | 20 | 23 => STRING,
        1 | 2 | 14 => STRINGS,
        3 => ZSET,
        4 => PAIRS,
        5 => ZSET_2,
        7 => MODULE_2,
        15 => STREAM_1,
        18 => QUICKLIST_2,
        19 => STREAM_2,
        21 => STREAM_3,
        22 => HASH_METADATA_PRE_GA,
        24 => HASH_METADATA,
        25 => HASH_LISTPACK_EX,
        _ => return None,
    })
}

/// The deepest nesting of `Each` in any program, plus the program itself.
const DEPTH: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Frame {
    steps: &'static [Step],
    next: usize,
    /// Repetitions left, this one included.
    left: u64,
}

/// Where a value scan stands: which step of which repetition, and how far
/// into the bytes.
#[derive(Debug, Clone)]
pub(crate) struct Scan {
    frames: [Frame; DEPTH],
    depth: usize,
    /// Bytes of the value walked so far.
    pos: usize,
}

impl Scan {
    /// A scan of a value of `value_type`, or `None` if the type is unknown.
    pub(crate) fn new(value_type: u8) -> Option<Self> {
        program(value_type).map(Self::of)
    }

    fn of(steps: &'static [Step]) -> Self {
        let frame = Frame {
            steps,
            next: 0,
            left: 1,
        };
        Self {
            frames: [frame; DEPTH],
            depth: 1,
            pos: 0,
        }
    }

    /// A scan of a `MODULE_AUX` item after its opcode.
    pub(crate) fn module_aux() -> Self {
        Self::of(MODULE_AUX)
    }

    /// Walks `value` (the value's bytes so far, from its start) as far as
    /// they go: `Ok(Some(len))` when the value ends after `len` bytes,
    /// `Ok(None)` when more bytes are needed.
    pub(crate) fn run(&mut self, value: &[u8]) -> Read<Option<usize>> {
        loop {
            if self.depth == 0 {
                return Ok(Some(self.pos));
            }
            let frame = &mut self.frames[self.depth - 1];
            let Some(&step) = frame.steps.get(frame.next) else {
                frame.left -= 1;
                if frame.left == 0 {
                    self.depth -= 1;
                } else {
                    frame.next = 0;
                }
                continue;
            };
            let mut cursor = Cursor::at(value, self.pos);
            let repeat = match Self::step(&mut cursor, step) {
                Ok(repeat) => repeat,
                Err(Stop::Incomplete) => return Ok(None),
                Err(bad) => return Err(bad),
            };
            self.pos = cursor.pos();
            let frame = &mut self.frames[self.depth - 1];
            match (step, repeat) {
                (ModuleFields, Some(0)) | (Len | Str | Raw(_) | AsciiDouble, _) => frame.next += 1,
                // Another field: the step runs again.
                (ModuleFields, _) => {}
                (Each(_), Some(0) | None) => frame.next += 1,
                (Each(body), Some(times)) => {
                    frame.next += 1;
                    if self.depth == DEPTH {
                        return Err(Stop::bad(self.pos, "value nested too deep"));
                    }
                    self.frames[self.depth] = Frame {
                        steps: body,
                        next: 0,
                        left: times,
                    };
                    self.depth += 1;
                }
            }
        }
    }

    /// Reads one step whole or not at all; an `Each` gives its count, a
    /// module field its opcode.
    fn step(cursor: &mut Cursor<'_>, step: Step) -> Read<Option<u64>> {
        match step {
            Len => cursor.len().map(|_| None),
            Str => cursor.string().map(|_| None),
            Raw(n) => cursor.take(u64::from(n)).map(|_| None),
            AsciiDouble => {
                let len = cursor.u8()?;
                if len < 253 {
                    cursor.take(u64::from(len))?;
                }
                Ok(None)
            }
            Each(_) => cursor.len().map(Some),
            ModuleFields => {
                let at = cursor.pos();
                let opcode = cursor.len()?;
                match opcode {
                    0 => {}
                    1 | 2 => {
                        cursor.len()?;
                    }
                    3 => {
                        cursor.take(4)?;
                    }
                    4 => {
                        cursor.take(8)?;
                    }
                    5 => {
                        cursor.string()?;
                    }
                    other => {
                        return Err(Stop::bad(
                            at,
                            format!("unknown module field opcode {other}"),
                        ));
                    }
                }
                Ok(Some(opcode))
            }
        }
    }
}

/// Whether the scanner knows `value_type`.
pub(crate) fn known(value_type: u8) -> bool {
    program(value_type).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(value_type: u8, bytes: &[u8]) -> Read<Option<usize>> {
        Scan::new(value_type).unwrap().run(bytes)
    }

    #[test]
    fn values_end_where_they_should() {
        // A hash of one pair, then trailing bytes.
        assert_eq!(scan_all(4, &[1, 1, b'f', 1, b'v', 0xff]), Ok(Some(5)));
        // A zset with an ASCII score and the three special ones.
        assert_eq!(
            scan_all(
                3,
                &[
                    4, 1, b'a', 1, b'1', 1, b'b', 253, 1, b'c', 254, 1, b'd', 255
                ]
            ),
            Ok(Some(14))
        );
        // A module value: id, an unsigned, a string, end.
        assert_eq!(scan_all(7, &[5, 2, 9, 5, 1, b'x', 0, 0xaa]), Ok(Some(7)));
        assert!(matches!(scan_all(7, &[5, 9]), Err(Stop::Bad { .. })));
        // An empty list.
        assert_eq!(scan_all(1, &[0]), Ok(Some(1)));
    }

    #[test]
    fn byte_by_byte_gives_the_same_end() {
        // A stream v3 with one node, one group with one pending entry and
        // one consumer owning it.
        let mut value = vec![1, 16];
        value.extend([0; 16]);
        value.extend([2, b'l', b'p']);
        value.extend([1, 5, 0]); // length, last id
        value.extend([5, 0, 0, 0, 1]); // first id, max deleted id, entries added
        value.extend([1, 1, b'g', 5, 0, 1]); // one group "g", last id, entries read
        value.push(1);
        value.extend([0; 16 + 8]);
        value.push(1); // one pending entry, delivered once
        value.extend([1, 1, b'c']);
        value.extend([0; 16]); // seen, active
        value.push(1);
        value.extend([0; 16]);
        let whole = scan_all(21, &value).unwrap();
        assert_eq!(whole, Some(value.len()));
        let mut scan = Scan::new(21).unwrap();
        for end in 0..value.len() {
            assert_eq!(scan.run(&value[..end]), Ok(None), "at {end}");
        }
        assert_eq!(scan.run(&value), Ok(Some(value.len())));
    }
}
