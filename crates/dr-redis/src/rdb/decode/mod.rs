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
use crate::rdb::wire::{Cursor, Read, Stop};
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
    if value_type.kind().is_none() {
        return Err(Error::UnsupportedType {
            value_type: value_type.0,
            place: Box::new(Place::default()),
        });
    }
    let mut cursor = Cursor::new(raw);
    let decoded = decode(&mut cursor, value_type.0, raw).and_then(|value| {
        if cursor.is_at_end() {
            Ok(value)
        } else {
            Err(Stop::bad(cursor.pos(), "bytes left after the value"))
        }
    });
    decoded.map_err(|stop| {
        let (at, reason) = match stop {
            Stop::Incomplete => (raw.len(), "the value ends early".into()),
            Stop::Bad { at, reason } => (at, reason),
        };
        let mut place = Place::in_value(at as u64);
        place.value_type = Some(value_type.0);
        Error::corrupt(place, reason)
    })
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

fn decode(cursor: &mut Cursor<'_>, value_type: u8, raw: &Bytes) -> Read<Value> {
    Ok(match value_type {
        0 => Value::String(cursor.string()?.to_bytes(raw)?),
        1 | 2 => {
            let count = cursor.len()?;
            let mut items = Vec::with_capacity(reserve(count, cursor.remaining(), 1));
            for _ in 0..count {
                items.push(cursor.string()?.to_bytes(raw)?);
            }
            nonempty(&items, 0, if value_type == 1 { "list" } else { "set" })?;
            if value_type == 1 {
                Value::List(items)
            } else {
                Value::Set(items)
            }
        }
        3 | 5 => {
            let count = cursor.len()?;
            let mut items = Vec::with_capacity(reserve(count, cursor.remaining(), 2));
            for _ in 0..count {
                let member = cursor.string()?.to_bytes(raw)?;
                let at = cursor.pos();
                let score = if value_type == 3 {
                    cursor.ascii_double()?
                } else {
                    cursor.f64_le()?
                };
                if score.is_nan() && value_type == 5 {
                    return Err(Stop::bad(at, "a score that is not a number"));
                }
                items.push((member, score));
            }
            nonempty(&items, 0, "sorted set")?;
            Value::SortedSet(items)
        }
        4 => {
            let count = cursor.len()?;
            let mut fields = Vec::with_capacity(reserve(count, cursor.remaining(), 2));
            for _ in 0..count {
                fields.push(HashField {
                    field: cursor.string()?.to_bytes(raw)?,
                    value: cursor.string()?.to_bytes(raw)?,
                    expire_at_ms: None,
                });
            }
            nonempty(&fields, 0, "hash")?;
            Value::Hash(fields)
        }
        7 => Value::Module(module(cursor, raw)?),
        9 => {
            let (blob, base) = blob(cursor, raw)?;
            let pairs = blobs::zipmap(&blob, base)?;
            nonempty(&pairs, base, "hash")?;
            Value::Hash(
                pairs
                    .into_iter()
                    .map(|(field, value)| HashField {
                        field: slice(&blob, field),
                        value: slice(&blob, value),
                        expire_at_ms: None,
                    })
                    .collect(),
            )
        }
        10 => {
            let (blob, base) = blob(cursor, raw)?;
            let items = ziplist(&blob, base)?;
            nonempty(&items, base, "list")?;
            Value::List(items)
        }
        11 => {
            let (blob, base) = blob(cursor, raw)?;
            let ints = blobs::intset(&blob, base)?;
            nonempty(&ints, base, "set")?;
            Value::Set(
                ints.into_iter()
                    .map(|i| Bytes::from(i.to_string()))
                    .collect(),
            )
        }
        12 | 17 => {
            let (blob, base) = blob(cursor, raw)?;
            let items = if value_type == 12 {
                ziplist_elems(&blob, base)?
            } else {
                listpack_elems(&blob, base)?
            };
            let pairs = pairs(&items, base, "sorted set")?;
            let mut out = Vec::with_capacity(pairs.len());
            for (member, score) in pairs {
                let score = score
                    .to_f64()
                    .ok_or_else(|| Stop::bad(base, "a score that is not a number"))?;
                out.push((member.to_bytes(&blob), score));
            }
            Value::SortedSet(out)
        }
        13 | 16 => {
            let (blob, base) = blob(cursor, raw)?;
            let items = if value_type == 13 {
                ziplist_elems(&blob, base)?
            } else {
                listpack_elems(&blob, base)?
            };
            let fields = pairs(&items, base, "hash")?
                .into_iter()
                .map(|(field, value)| HashField {
                    field: field.to_bytes(&blob),
                    value: value.to_bytes(&blob),
                    expire_at_ms: None,
                })
                .collect();
            Value::Hash(fields)
        }
        14 => {
            let nodes = cursor.len()?;
            let mut items = Vec::new();
            for _ in 0..nodes {
                let (blob, base) = blob(cursor, raw)?;
                let node = ziplist(&blob, base)?;
                nonempty(&node, base, "quicklist node")?;
                items.extend(node);
            }
            nonempty(&items, 0, "list")?;
            Value::List(items)
        }
        18 => {
            let nodes = cursor.len()?;
            let mut items = Vec::new();
            for _ in 0..nodes {
                let at = cursor.pos();
                match cursor.len()? {
                    // PLAIN: the node is one element.
                    1 => items.push(cursor.string()?.to_bytes(raw)?),
                    // PACKED: a listpack of elements.
                    2 => {
                        let (blob, base) = blob(cursor, raw)?;
                        let node = listpack_elems(&blob, base)?;
                        nonempty(&node, base, "quicklist node")?;
                        items.extend(node.into_iter().map(|elem| elem.to_bytes(&blob)));
                    }
                    other => {
                        return Err(Stop::bad(at, format!("quicklist node container {other}")));
                    }
                }
            }
            nonempty(&items, 0, "list")?;
            Value::List(items)
        }
        15 | 19 | 21 => {
            let layout = match value_type {
                15 => 1,
                19 => 2,
                _ => 3,
            };
            Value::Stream(Box::new(stream::decode(cursor, raw, layout)?))
        }
        20 => {
            let (blob, base) = blob(cursor, raw)?;
            let items = listpack_elems(&blob, base)?;
            nonempty(&items, base, "set")?;
            Value::Set(items.into_iter().map(|elem| elem.to_bytes(&blob)).collect())
        }
        22 | 24 => {
            let min_expire = if value_type == 24 {
                Some(cursor.u64_le()?)
            } else {
                None
            };
            let count = cursor.len()?;
            let mut fields = Vec::with_capacity(reserve(count, cursor.remaining(), 3));
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
                fields.push(HashField {
                    field: cursor.string()?.to_bytes(raw)?,
                    value: cursor.string()?.to_bytes(raw)?,
                    expire_at_ms,
                });
            }
            nonempty(&fields, 0, "hash")?;
            Value::Hash(fields)
        }
        23 | 25 => {
            if value_type == 25 {
                // The smallest field expiry, kept for later use by Redis itself.
                cursor.u64_le()?;
            }
            let (blob, base) = blob(cursor, raw)?;
            let items = listpack_elems(&blob, base)?;
            if items.is_empty() || !items.len().is_multiple_of(3) {
                return Err(Stop::bad(
                    base,
                    format!(
                        "hash listpack with expiries of {} elements, not triples",
                        items.len()
                    ),
                ));
            }
            let mut fields = Vec::with_capacity(items.len() / 3);
            for triple in items.chunks_exact(3) {
                let expire_at_ms = match triple[2].to_int() {
                    Some(0) => None,
                    Some(ms) if ms > 0 => Some(ms as u64),
                    _ => return Err(Stop::bad(base, "hash field expiry is not a time")),
                };
                check_expiry(expire_at_ms, base)?;
                fields.push(HashField {
                    field: triple[0].to_bytes(&blob),
                    value: triple[1].to_bytes(&blob),
                    expire_at_ms,
                });
            }
            Value::Hash(fields)
        }
        other => return Err(Stop::bad(0, format!("unsupported value type {other}"))),
    })
}

/// The largest field expiry Redis keeps (`EB_EXPIRE_TIME_MAX`, 2^48 - 1).
const MAX_FIELD_EXPIRY: u64 = (1 << 48) - 1;

fn check_expiry(expire_at_ms: Option<u64>, at: usize) -> Read<()> {
    match expire_at_ms {
        Some(ms) if ms > MAX_FIELD_EXPIRY => Err(Stop::bad(at, "field expiry out of range")),
        _ => Ok(()),
    }
}

fn nonempty<T>(items: &[T], at: usize, what: &str) -> Read<()> {
    if items.is_empty() {
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

fn slice(base: &Bytes, bytes: &[u8]) -> Bytes {
    if bytes.is_empty() {
        Bytes::new()
    } else {
        base.slice_ref(bytes)
    }
}

fn listpack_elems(blob: &Bytes, base: usize) -> Read<Vec<Elem<'_>>> {
    Listpack::new(blob, base)?.all()
}

fn ziplist_elems(blob: &Bytes, base: usize) -> Read<Vec<Elem<'_>>> {
    Ziplist::new(blob, base)?.all()
}

fn ziplist(blob: &Bytes, base: usize) -> Read<Vec<Bytes>> {
    Ok(ziplist_elems(blob, base)?
        .into_iter()
        .map(|elem| elem.to_bytes(blob))
        .collect())
}

/// Elements taken two by two; an odd count or none at all is an error.
fn pairs<'a>(items: &[Elem<'a>], base: usize, what: &str) -> Read<Vec<(Elem<'a>, Elem<'a>)>> {
    if items.is_empty() {
        return Err(empty(base, what));
    }
    if !items.len().is_multiple_of(2) {
        return Err(Stop::bad(
            base,
            format!("{what} of {} elements, not pairs", items.len()),
        ));
    }
    Ok(items
        .chunks_exact(2)
        .map(|pair| (pair[0], pair[1]))
        .collect())
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
