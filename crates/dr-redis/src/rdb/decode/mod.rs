//! Typed values from a value's type byte and raw bytes: every encoding
//! Redis has written since 2.x, down to each element.
//!
//! **Memory follows the bytes**: a count the data claims reserves at most as
//! many elements as the remaining bytes could hold; strings are slices of
//! the raw value, not copies (integers and LZF strings excepted). **Every
//! value is checked whole**: blob lengths, counts, end markers, no bytes left
//! over, no empty collection (Redis never writes one).

pub(crate) mod blobs;
mod stream;

use std::fmt;

use bytes::Bytes;

use crate::error::{Error, Place, Result};
use crate::rdb::frame::ModuleId;
use crate::rdb::lzf;
use crate::rdb::wire::{Cursor, RdbStr, Read, Stop};
use crate::rdb::{KeyKind, ValueType};
use blobs::{Elem, Elements, Listpack, Ziplist};
pub use stream::{Consumer, ConsumerGroup, PendingEntry, Stream, StreamEntry};

/// A stream entry id, `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A hash field, its value and its expiry (Redis 7.4's `HEXPIRE`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HashField {
    /// The field.
    pub field: Bytes,
    /// Its value.
    pub value: Bytes,
    /// When it expires, Unix milliseconds.
    pub expire_at_ms: Option<u64>,
}

/// One field of a module value, as the module saved it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ModuleField {
    /// `RedisModule_SaveSigned`.
    Signed(i64),
    /// `RedisModule_SaveUnsigned`.
    Unsigned(u64),
    /// `RedisModule_SaveFloat`.
    Float(f32),
    /// `RedisModule_SaveDouble`.
    Double(f64),
    /// `RedisModule_SaveStringBuffer`.
    String(Bytes),
}

/// A module type's value: its module named, its fields read without the
/// module, its bytes kept for a `RESTORE` into a server that has it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModuleValue {
    /// The module type.
    pub module: ModuleId,
    /// The fields, in order.
    pub fields: Vec<ModuleField>,
}

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A string.
    String(Bytes),
    /// A list, head first.
    List(Vec<Bytes>),
    /// A set's members, in stored order.
    Set(Vec<Bytes>),
    /// A sorted set's members and scores, in stored order (ascending for
    /// compact encodings, descending for type 5).
    SortedSet(Vec<(Bytes, f64)>),
    /// A hash's fields, in stored order.
    Hash(Vec<HashField>),
    /// A stream.
    Stream(Box<Stream>),
    /// A module type's value.
    Module(ModuleValue),
}

impl Value {
    /// The kind of value, as `TYPE` names it.
    pub fn kind(&self) -> KeyKind {
        match self {
            Value::String(_) => KeyKind::String,
            Value::List(_) => KeyKind::List,
            Value::Set(_) => KeyKind::Set,
            Value::SortedSet(_) => KeyKind::SortedSet,
            Value::Hash(_) => KeyKind::Hash,
            Value::Stream(_) => KeyKind::Stream,
            Value::Module(_) => KeyKind::Module,
        }
    }
}

/// Decodes a value from its type byte and raw bytes (a [`KeyEntry`]'s
/// `value`, or a DUMP payload's), written by an RDB of `rdb_version`.
///
/// [`KeyEntry`]: crate::KeyEntry
///
/// # Errors
/// [`Error::Corrupt`] when the bytes do not hold a whole value of the type
/// (with the offset in the value), [`Error::UnsupportedType`] for a type this
/// build does not read.
pub fn decode_value(value_type: ValueType, raw: &Bytes, rdb_version: u16) -> Result<Value> {
    let mut build = Build::default();
    let kind = walk_value(value_type, raw, rdb_version, &mut build)?;
    Ok(build.finish(kind))
}

/// Checks a value as [`decode_value`] does, every element walked and every
/// check made, without building it: its kind when it is sound.
///
/// # Errors
/// As [`decode_value`].
pub(crate) fn check_value(value_type: ValueType, raw: &Bytes, rdb_version: u16) -> Result<KeyKind> {
    walk_value(value_type, raw, rdb_version, &mut Check)
}

/// Walks a value, handing each element to `visit`: the one reading of
/// values that both decoding and checking run.
fn walk_value<V: Visit>(
    value_type: ValueType,
    raw: &Bytes,
    rdb_version: u16,
    visit: &mut V,
) -> Result<KeyKind> {
    if let Some(since) = introduced(value_type.0)
        && rdb_version < since
    {
        return Err(Error::corrupt(
            Place {
                value_type: Some(value_type.0),
                ..Place::default()
            },
            format!("type {value_type} in an RDB of version {rdb_version}, older than the type"),
        ));
    }
    let Some(kind) = value_type.kind() else {
        return Err(Error::UnsupportedType {
            value_type: value_type.0,
            place: Box::new(Place::default()),
        });
    };
    let mut cursor = Cursor::new(raw);
    let walked = walk(&mut cursor, value_type.0, raw, visit).and_then(|()| {
        if cursor.is_at_end() {
            Ok(kind)
        } else {
            Err(Stop::bad(cursor.pos(), "bytes left after the value"))
        }
    });
    walked.map_err(|stop| {
        let (at, reason) = match stop {
            Stop::Incomplete => (raw.len(), "the value ends early".into()),
            Stop::Bad { at, reason } => (at, reason),
        };
        let mut place = Place::in_value(at as u64);
        place.value_type = Some(value_type.0);
        Error::corrupt(place, reason)
    })
}

/// A string of a value as the walk finds it.
pub(crate) enum Text<'a> {
    /// Bytes of the blob or value being walked (the `base` passed along).
    Slice(&'a [u8]),
    /// An integer, which Redis shows in decimal.
    Int(i64),
    /// Bytes decompressed from LZF.
    Owned(Vec<u8>),
}

impl Text<'_> {
    /// The string's bytes; `base` must hold a [`Text::Slice`]'s.
    fn into_bytes(self, base: &Bytes) -> Bytes {
        match self {
            Text::Slice([]) => Bytes::new(),
            Text::Slice(bytes) => base.slice_ref(bytes),
            Text::Int(value) => Bytes::from(value.to_string()),
            Text::Owned(bytes) => Bytes::from(bytes),
        }
    }
}

impl<'a> From<Elem<'a>> for Text<'a> {
    fn from(elem: Elem<'a>) -> Self {
        match elem {
            Elem::Str(bytes) => Text::Slice(bytes),
            Elem::Int(value) => Text::Int(value),
        }
    }
}

/// A string read with the cursor, LZF decompressed.
fn text(string: RdbStr<'_>) -> Read<Text<'_>> {
    Ok(match string {
        RdbStr::Raw(bytes) => Text::Slice(bytes),
        RdbStr::Int(value) => Text::Int(value),
        RdbStr::Lzf { data, len, at } => {
            Text::Owned(lzf::decompress(data, len).map_err(|reason| Stop::bad(at, reason))?)
        }
    })
}

/// What a value's walk finds, element by element. Each string comes with
/// `base`, the bytes its [`Text::Slice`] lies in.
pub(crate) trait Visit {
    /// About `n` elements follow.
    fn reserve(&mut self, n: usize);
    /// A string value, or one element of a list or set.
    fn item(&mut self, base: &Bytes, item: Text<'_>);
    /// A sorted set's member and its score.
    fn scored(&mut self, base: &Bytes, member: Text<'_>, score: f64);
    /// A hash's field, its value and its expiry.
    fn field(&mut self, base: &Bytes, field: Text<'_>, value: Text<'_>, expire_at_ms: Option<u64>);
    /// A stream or a module value, read whole.
    fn whole(&mut self, value: Value);
}

/// Builds the [`Value`] a walk finds.
#[derive(Default)]
struct Build {
    items: Vec<Bytes>,
    scored: Vec<(Bytes, f64)>,
    fields: Vec<HashField>,
    whole: Option<Value>,
}

impl Build {
    fn finish(self, kind: KeyKind) -> Value {
        match kind {
            KeyKind::String => Value::String(self.items.into_iter().next().unwrap_or_default()),
            KeyKind::List => Value::List(self.items),
            KeyKind::Set => Value::Set(self.items),
            KeyKind::SortedSet => Value::SortedSet(self.scored),
            KeyKind::Hash => Value::Hash(self.fields),
            // Walked whole: streams and module values.
            KeyKind::Stream | KeyKind::Module => {
                self.whole.unwrap_or_else(|| Value::String(Bytes::new()))
            }
        }
    }
}

impl Visit for Build {
    fn reserve(&mut self, n: usize) {
        self.items.reserve(n);
    }

    fn item(&mut self, base: &Bytes, item: Text<'_>) {
        self.items.push(item.into_bytes(base));
    }

    fn scored(&mut self, base: &Bytes, member: Text<'_>, score: f64) {
        self.scored.push((member.into_bytes(base), score));
    }

    fn field(&mut self, base: &Bytes, field: Text<'_>, value: Text<'_>, expire_at_ms: Option<u64>) {
        self.fields.push(HashField {
            field: field.into_bytes(base),
            value: value.into_bytes(base),
            expire_at_ms,
        });
    }

    fn whole(&mut self, value: Value) {
        self.whole = Some(value);
    }
}

/// Checks without building: every string is read (LZF decompressed), and
/// dropped.
struct Check;

impl Visit for Check {
    fn reserve(&mut self, _: usize) {}
    fn item(&mut self, _: &Bytes, _: Text<'_>) {}
    fn scored(&mut self, _: &Bytes, _: Text<'_>, _: f64) {}
    fn field(&mut self, _: &Bytes, _: Text<'_>, _: Text<'_>, _: Option<u64>) {}
    fn whole(&mut self, _: Value) {}
}

/// The first RDB version with each newer type.
fn introduced(value_type: u8) -> Option<u16> {
    match value_type {
        16..=19 => Some(10),
        20 | 21 => Some(11),
        22..=25 => Some(12),
        _ => None,
    }
}

/// The most elements reserved ahead for any collection; beyond it a vector
/// grows as elements are actually read.
const MAX_RESERVE: usize = 1 << 16;

/// How many elements to reserve for a claimed `count` when `remaining`
/// bytes are left and each element takes at least `min_size` of them.
pub(crate) fn reserve(count: u64, remaining: usize, min_size: usize) -> usize {
    usize::try_from(count)
        .unwrap_or(usize::MAX)
        .min(remaining / min_size.max(1))
        .min(MAX_RESERVE)
}

fn empty(at: usize, what: &str) -> Stop {
    Stop::bad(at, format!("empty {what}: Redis never writes an empty key"))
}

fn walk<V: Visit>(cursor: &mut Cursor<'_>, value_type: u8, raw: &Bytes, v: &mut V) -> Read<()> {
    match value_type {
        0 => v.item(raw, text(cursor.string()?)?),
        1 | 2 => {
            let count = cursor.len()?;
            v.reserve(reserve(count, cursor.remaining(), 1));
            for _ in 0..count {
                v.item(raw, text(cursor.string()?)?);
            }
            nonempty(count, 0, if value_type == 1 { "list" } else { "set" })?;
        }
        3 | 5 => {
            let count = cursor.len()?;
            for _ in 0..count {
                let member = text(cursor.string()?)?;
                let at = cursor.pos();
                let score = if value_type == 3 {
                    cursor.ascii_double()?
                } else {
                    cursor.f64_le()?
                };
                if score.is_nan() && value_type == 5 {
                    return Err(Stop::bad(at, "a score that is not a number"));
                }
                v.scored(raw, member, score);
            }
            nonempty(count, 0, "sorted set")?;
        }
        4 => {
            let count = cursor.len()?;
            for _ in 0..count {
                let field = text(cursor.string()?)?;
                let value = text(cursor.string()?)?;
                v.field(raw, field, value, None);
            }
            nonempty(count, 0, "hash")?;
        }
        7 => v.whole(Value::Module(module(cursor, raw)?)),
        9 => {
            let (blob, base) = blob(cursor, raw)?;
            let pairs = blobs::zipmap(&blob, base)?;
            nonempty(pairs.len() as u64, base, "hash")?;
            for (field, value) in pairs {
                v.field(&blob, Text::Slice(field), Text::Slice(value), None);
            }
        }
        10 => {
            let (blob, base) = blob(cursor, raw)?;
            let count = each(Ziplist::new(&blob, base)?, |elem| {
                v.item(&blob, elem.into());
                Ok(())
            })?;
            nonempty(count, base, "list")?;
        }
        11 => {
            let (blob, base) = blob(cursor, raw)?;
            let count = blobs::intset(&blob, base, |int| v.item(&blob, Text::Int(int)))?;
            nonempty(count, base, "set")?;
        }
        12 | 17 => {
            let (blob, base) = blob(cursor, raw)?;
            let mut scored = |member: Elem<'_>, score: Elem<'_>| {
                let score = score
                    .to_f64()
                    .ok_or_else(|| Stop::bad(base, "a score that is not a number"))?;
                v.scored(&blob, member.into(), score);
                Ok(())
            };
            if value_type == 12 {
                pairs(Ziplist::new(&blob, base)?, base, "sorted set", &mut scored)?;
            } else {
                pairs(Listpack::new(&blob, base)?, base, "sorted set", &mut scored)?;
            }
        }
        13 | 16 => {
            let (blob, base) = blob(cursor, raw)?;
            let mut field = |field: Elem<'_>, value: Elem<'_>| {
                v.field(&blob, field.into(), value.into(), None);
                Ok(())
            };
            if value_type == 13 {
                pairs(Ziplist::new(&blob, base)?, base, "hash", &mut field)?;
            } else {
                pairs(Listpack::new(&blob, base)?, base, "hash", &mut field)?;
            }
        }
        14 => {
            let nodes = cursor.len()?;
            let mut count = 0;
            for _ in 0..nodes {
                let (blob, base) = blob(cursor, raw)?;
                let node = each(Ziplist::new(&blob, base)?, |elem| {
                    v.item(&blob, elem.into());
                    Ok(())
                })?;
                nonempty(node, base, "quicklist node")?;
                count += node;
            }
            nonempty(count, 0, "list")?;
        }
        18 => {
            let nodes = cursor.len()?;
            let mut count = 0;
            for _ in 0..nodes {
                let at = cursor.pos();
                match cursor.len()? {
                    // PLAIN: the node is one element.
                    1 => {
                        v.item(raw, text(cursor.string()?)?);
                        count += 1;
                    }
                    // PACKED: a listpack of elements.
                    2 => {
                        let (blob, base) = blob(cursor, raw)?;
                        let node = each(Listpack::new(&blob, base)?, |elem| {
                            v.item(&blob, elem.into());
                            Ok(())
                        })?;
                        nonempty(node, base, "quicklist node")?;
                        count += node;
                    }
                    other => {
                        return Err(Stop::bad(at, format!("quicklist node container {other}")));
                    }
                }
            }
            nonempty(count, 0, "list")?;
        }
        15 | 19 | 21 => {
            let layout = match value_type {
                15 => 1,
                19 => 2,
                _ => 3,
            };
            v.whole(Value::Stream(Box::new(stream::decode(
                cursor, raw, layout,
            )?)));
        }
        20 => {
            let (blob, base) = blob(cursor, raw)?;
            let count = each(Listpack::new(&blob, base)?, |elem| {
                v.item(&blob, elem.into());
                Ok(())
            })?;
            nonempty(count, base, "set")?;
        }
        22 | 24 => {
            let min_expire = if value_type == 24 {
                Some(cursor.u64_le()?)
            } else {
                None
            };
            let count = cursor.len()?;
            for _ in 0..count {
                let at = cursor.pos();
                let ttl = cursor.len()?;
                let expire_at_ms = match (ttl, min_expire) {
                    (0, _) => None,
                    (ttl, None) => Some(ttl),
                    // Relative to the smallest expiry, plus one so that 0 means none.
                    (ttl, Some(min)) => Some(
                        (ttl - 1)
                            .checked_add(min)
                            .ok_or_else(|| Stop::bad(at, "field expiry out of range"))?,
                    ),
                };
                check_expiry(expire_at_ms, at)?;
                let field = text(cursor.string()?)?;
                let value = text(cursor.string()?)?;
                v.field(raw, field, value, expire_at_ms);
            }
            nonempty(count, 0, "hash")?;
        }
        23 | 25 => {
            if value_type == 25 {
                // The smallest field expiry, kept for later use by Redis itself.
                cursor.u64_le()?;
            }
            let (blob, base) = blob(cursor, raw)?;
            let mut elems = Listpack::new(&blob, base)?;
            let mut count = 0u64;
            let not_triples = |count: u64| {
                Stop::bad(
                    base,
                    format!("hash listpack with expiries of {count} elements, not triples"),
                )
            };
            while let Some(field) = elems.next()? {
                let value = elems.next()?;
                let expiry = if value.is_some() { elems.next()? } else { None };
                let (Some(value), Some(expiry)) = (value, expiry) else {
                    return Err(not_triples(count + 1 + u64::from(value.is_some())));
                };
                count += 3;
                let expire_at_ms = match expiry.to_int() {
                    Some(0) => None,
                    Some(ms) if ms > 0 => Some(ms as u64),
                    _ => return Err(Stop::bad(base, "hash field expiry is not a time")),
                };
                check_expiry(expire_at_ms, base)?;
                v.field(&blob, field.into(), value.into(), expire_at_ms);
            }
            if count == 0 {
                return Err(not_triples(0));
            }
        }
        other => return Err(Stop::bad(0, format!("unsupported value type {other}"))),
    }
    Ok(())
}

/// The largest field expiry Redis keeps (`EB_EXPIRE_TIME_MAX`, 2^48 - 1).
const MAX_FIELD_EXPIRY: u64 = (1 << 48) - 1;

fn check_expiry(expire_at_ms: Option<u64>, at: usize) -> Read<()> {
    match expire_at_ms {
        Some(ms) if ms > MAX_FIELD_EXPIRY => Err(Stop::bad(at, "field expiry out of range")),
        _ => Ok(()),
    }
}

fn nonempty(count: u64, at: usize, what: &str) -> Read<()> {
    if count == 0 {
        Err(empty(at, what))
    } else {
        Ok(())
    }
}

/// A string holding an encoded blob, and where its bytes start in the value.
fn blob(cursor: &mut Cursor<'_>, raw: &Bytes) -> Read<(Bytes, usize)> {
    let blob = cursor.blob(raw)?;
    Ok((blob.clone(), cursor.pos().saturating_sub(blob.len())))
}

/// Hands every element to `f`; how many there were.
fn each<'a, E: Elements<'a>>(mut elems: E, mut f: impl FnMut(Elem<'a>) -> Read<()>) -> Read<u64> {
    let mut count = 0;
    while let Some(elem) = elems.next()? {
        f(elem)?;
        count += 1;
    }
    Ok(count)
}

/// Hands the elements to `f` two by two; an odd count or none at all is an
/// error.
fn pairs<'a, E: Elements<'a>>(
    mut elems: E,
    base: usize,
    what: &str,
    f: &mut impl FnMut(Elem<'a>, Elem<'a>) -> Read<()>,
) -> Read<()> {
    let mut count = 0u64;
    while let Some(first) = elems.next()? {
        let Some(second) = elems.next()? else {
            return Err(Stop::bad(
                base,
                format!("{what} of {} elements, not pairs", count + 1),
            ));
        };
        count += 2;
        f(first, second)?;
    }
    if count == 0 {
        return Err(empty(base, what));
    }
    Ok(())
}

fn module(cursor: &mut Cursor<'_>, raw: &Bytes) -> Read<ModuleValue> {
    let module = ModuleId(cursor.len()?);
    let mut fields = Vec::new();
    loop {
        let at = cursor.pos();
        let field = match cursor.len()? {
            0 => break,
            1 => ModuleField::Signed(cursor.len()? as i64),
            2 => ModuleField::Unsigned(cursor.len()?),
            3 => ModuleField::Float(f32::from_le_bytes(cursor.array()?)),
            4 => ModuleField::Double(cursor.f64_le()?),
            5 => ModuleField::String(cursor.string()?.to_bytes(raw)?),
            other => {
                return Err(Stop::bad(
                    at,
                    format!("module {module}: unknown field opcode {other}"),
                ));
            }
        };
        fields.push(field);
    }
    Ok(ModuleValue { module, fields })
}
