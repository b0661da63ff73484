//! Streams (types 15, 19, 21): listpack nodes of delta-encoded entries,
//! then the stream's metadata and its consumer groups.

use bytes::Bytes;

use super::blobs::{Elements, Listpack};
use super::{StreamId, reserve};
use crate::rdb::wire::{Cursor, Read, Stop};

/// An entry's flags in a stream listpack (`t_stream.c`).
const FLAG_DELETED: i64 = 1;
const FLAG_SAME_FIELDS: i64 = 2;

/// A stream: its entries and its consumer groups.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stream {
    /// The entries, oldest first (deleted ones left out).
    pub entries: Vec<StreamEntry>,
    /// The number of entries, as stored (`XLEN`).
    pub length: u64,
    /// The last id ever given out.
    pub last_id: StreamId,
    /// The first entry's id (type 19 and later).
    pub first_id: Option<StreamId>,
    /// The largest id deleted (type 19 and later).
    pub max_deleted_id: Option<StreamId>,
    /// How many entries were ever added (type 19 and later).
    pub entries_added: Option<u64>,
    /// The consumer groups.
    pub groups: Vec<ConsumerGroup>,
}

/// One stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamEntry {
    /// Its id.
    pub id: StreamId,
    /// Its fields and values, in order.
    pub fields: Vec<(Bytes, Bytes)>,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerGroup {
    /// Its name.
    pub name: Bytes,
    /// The last id delivered to it.
    pub last_id: StreamId,
    /// Its logical read counter (type 19 and later).
    pub entries_read: Option<u64>,
    /// Entries delivered and not yet acknowledged.
    pub pending: Vec<PendingEntry>,
    /// Its consumers.
    pub consumers: Vec<Consumer>,
}

/// An entry delivered to a group and not acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingEntry {
    /// The entry.
    pub id: StreamId,
    /// When it was last delivered, Unix milliseconds.
    pub delivery_time_ms: u64,
    /// How many times it was delivered.
    pub delivery_count: u64,
}

/// A consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Consumer {
    /// Its name.
    pub name: Bytes,
    /// When it was last seen, Unix milliseconds.
    pub seen_time_ms: u64,
    /// When it last read successfully, Unix milliseconds (type 21).
    pub active_time_ms: Option<u64>,
    /// The pending entries it owns.
    pub pending: Vec<StreamId>,
}

fn raw_id(cursor: &mut Cursor<'_>) -> Read<StreamId> {
    let bytes: [u8; 16] = cursor.array()?;
    Ok(StreamId {
        ms: u64::from_be_bytes(bytes[..8].try_into().expect("eight bytes")),
        seq: u64::from_be_bytes(bytes[8..].try_into().expect("eight bytes")),
    })
}

fn len_id(cursor: &mut Cursor<'_>) -> Read<StreamId> {
    Ok(StreamId {
        ms: cursor.len()?,
        seq: cursor.len()?,
    })
}

pub(crate) fn decode(cursor: &mut Cursor<'_>, value: &Bytes, version: u8) -> Read<Stream> {
    let nodes = cursor.len()?;
    let mut entries = Vec::new();
    for _ in 0..nodes {
        let at = cursor.pos();
        let master = cursor.string()?;
        let master = master.to_cow()?;
        let master: [u8; 16] = master
            .as_ref()
            .try_into()
            .map_err(|_| Stop::bad(at, "stream node key is not a 16-byte id"))?;
        let mut id_cursor = Cursor::new(&master);
        let master = raw_id(&mut id_cursor)?;
        let node = cursor.blob(value)?;
        let base = cursor.pos().saturating_sub(node.len());
        node_entries(&node, base, master, &mut entries)?;
    }
    let length = cursor.len()?;
    let last_id = len_id(cursor)?;
    let (first_id, max_deleted_id, entries_added) = if version >= 2 {
        (
            Some(len_id(cursor)?),
            Some(len_id(cursor)?),
            Some(cursor.len()?),
        )
    } else {
        (None, None, None)
    };
    if entries.len() as u64 != length {
        return Err(Stop::bad(
            cursor.pos(),
            format!(
                "stream says it has {length} entries, its nodes hold {}",
                entries.len()
            ),
        ));
    }
    let group_count = cursor.len()?;
    let mut groups = Vec::with_capacity(reserve(group_count, cursor.remaining(), 4));
    for _ in 0..group_count {
        let name = cursor.blob(value)?;
        let last_id = len_id(cursor)?;
        let entries_read = if version >= 2 {
            Some(cursor.len()?)
        } else {
            None
        };
        let pel_count = cursor.len()?;
        let mut pending = Vec::with_capacity(reserve(pel_count, cursor.remaining(), 25));
        for _ in 0..pel_count {
            pending.push(PendingEntry {
                id: raw_id(cursor)?,
                delivery_time_ms: cursor.u64_le()?,
                delivery_count: cursor.len()?,
            });
        }
        // Sorted, to check each consumer's entries against the group's.
        let mut pending_ids: Vec<StreamId> = pending.iter().map(|entry| entry.id).collect();
        pending_ids.sort_unstable();
        let consumer_count = cursor.len()?;
        let mut consumers = Vec::with_capacity(reserve(consumer_count, cursor.remaining(), 10));
        for _ in 0..consumer_count {
            let name = cursor.blob(value)?;
            let seen_time_ms = cursor.u64_le()?;
            let active_time_ms = if version >= 3 {
                Some(cursor.u64_le()?)
            } else {
                None
            };
            let owned = cursor.len()?;
            let mut ids = Vec::with_capacity(reserve(owned, cursor.remaining(), 16));
            for _ in 0..owned {
                let at = cursor.pos();
                let id = raw_id(cursor)?;
                if pending_ids.binary_search(&id).is_err() {
                    return Err(Stop::bad(
                        at,
                        format!("consumer owns {id}, which is not pending"),
                    ));
                }
                ids.push(id);
            }
            consumers.push(Consumer {
                name,
                seen_time_ms,
                active_time_ms,
                pending: ids,
            });
        }
        groups.push(ConsumerGroup {
            name,
            last_id,
            entries_read,
            pending,
            consumers,
        });
    }
    Ok(Stream {
        entries,
        length,
        last_id,
        first_id,
        max_deleted_id,
        entries_added,
        groups,
    })
}

/// The live entries of one node's listpack.
fn node_entries(
    node: &Bytes,
    base: usize,
    master: StreamId,
    out: &mut Vec<StreamEntry>,
) -> Read<()> {
    let mut lp = Listpack::new(node, base)?;
    let count = lp.int("entry count")?;
    let deleted = lp.int("deleted count")?;
    let field_count = lp.int("master field count")?;
    let at = lp.offset();
    let field_count = usize::try_from(field_count)
        .ok()
        .filter(|&n| n <= lp.capacity_hint())
        .ok_or_else(|| Stop::bad(at, "impossible master field count"))?;
    let mut master_fields = Vec::with_capacity(reserve(field_count as u64, node.len(), 2));
    for _ in 0..field_count {
        master_fields.push(lp.expect("master field")?.to_bytes(node));
    }
    if lp.int("master terminator")? != 0 {
        return Err(Stop::bad(
            lp.offset(),
            "stream master entry not terminated by 0",
        ));
    }
    let (mut live, mut dead) = (0i64, 0i64);
    loop {
        let at = lp.offset();
        let Some(flags) = lp.next()? else { break };
        let flags = flags
            .to_int()
            .ok_or_else(|| Stop::bad(at, "stream entry flags are not an integer"))?;
        let ms = lp.int("entry id")?;
        let seq = lp.int("entry id")?;
        let id = StreamId {
            ms: master.ms.wrapping_add(ms as u64),
            seq: master.seq.wrapping_add(seq as u64),
        };
        let fields = if flags & FLAG_SAME_FIELDS != 0 {
            let mut fields = Vec::with_capacity(master_fields.len());
            for field in &master_fields {
                fields.push((field.clone(), lp.expect("entry value")?.to_bytes(node)));
            }
            fields
        } else {
            let at = lp.offset();
            let n = lp.int("entry field count")?;
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= lp.capacity_hint())
                .ok_or_else(|| Stop::bad(at, "impossible entry field count"))?;
            let mut fields = Vec::with_capacity(reserve(n as u64, node.len(), 4));
            for _ in 0..n {
                let field = lp.expect("entry field")?.to_bytes(node);
                let value = lp.expect("entry value")?.to_bytes(node);
                fields.push((field, value));
            }
            fields
        };
        lp.int("entry element count")?;
        if flags & FLAG_DELETED != 0 {
            dead += 1;
        } else {
            live += 1;
            out.push(StreamEntry { id, fields });
        }
    }
    if (live, dead) != (count, deleted) {
        return Err(Stop::bad(
            base,
            format!(
                "stream node says {count} entries and {deleted} deleted, it holds {live} and {dead}"
            ),
        ));
    }
    Ok(())
}
