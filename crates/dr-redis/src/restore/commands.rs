//! The commands a restore sends: `RESTORE … ABSTTL` built straight from a
//! framed key's raw bytes (no decoding, no copy of the value beyond the
//! outgoing buffer), and, for a server too old for the payload, the plain
//! commands that rebuild a decoded value.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::rdb::crc::Crc64;
use crate::rdb::decode::{Stream, StreamId, Value};
use crate::rdb::frame::KeyEntry;

/// Elements per command when a large value is rebuilt piece by piece.
const PIECE: usize = 512;

/// Appends `*<n>` or `$<n>` and CRLF.
fn put_header(out: &mut Vec<u8>, marker: u8, n: usize) {
    out.push(marker);
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// Appends one command, as RESP's array of bulk strings.
pub(crate) fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    put_header(out, b'*', args.len());
    for arg in args {
        put_header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// `RESTORE key <expiry> <payload> [REPLACE] ABSTTL [IDLETIME s | FREQ f]`
/// for `key`, its payload made of the raw bytes as an RDB of `rdb_version`
/// holds them. An expiry of 0 is none.
pub(crate) fn restore(key: &KeyEntry, rdb_version: u16, replace: bool) -> Bytes {
    let mut out = Vec::with_capacity(1 + key.value.len() + 10 + key.key.len() + 96);
    restore_into(&mut out, key, rdb_version, replace);
    Bytes::from(out)
}

/// [`restore`], appended to `out`: a pipeline's outgoing batch takes each
/// value with one copy.
pub(crate) fn restore_into(out: &mut Vec<u8>, key: &KeyEntry, rdb_version: u16, replace: bool) {
    let expiry = key.expire_at_ms.unwrap_or(0).max(0).to_string();
    let hint = match (key.lfu_freq, key.idle_seconds) {
        (Some(freq), _) => Some((&b"FREQ"[..], freq.to_string())),
        (None, Some(idle)) => Some((&b"IDLETIME"[..], idle.to_string())),
        (None, None) => None,
    };
    let args = 4 + usize::from(replace) + 1 + if hint.is_some() { 2 } else { 0 };
    let payload_len = 1 + key.value.len() + 10;
    put_header(out, b'*', args);
    for arg in [&b"RESTORE"[..], &key.key, expiry.as_bytes()] {
        put_header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    // The payload: type, value, version, CRC-64 of the three.
    put_header(out, b'$', payload_len);
    let start = out.len();
    out.push(key.value_type.0);
    out.extend_from_slice(&key.value);
    out.extend_from_slice(&rdb_version.to_le_bytes());
    let mut crc = Crc64::new();
    crc.update(&out[start..]);
    out.extend_from_slice(&crc.value().to_le_bytes());
    out.extend_from_slice(b"\r\n");
    if replace {
        put_header(out, b'$', 7);
        out.extend_from_slice(b"REPLACE\r\n");
    }
    put_header(out, b'$', 6);
    out.extend_from_slice(b"ABSTTL\r\n");
    if let Some((name, value)) = hint {
        for arg in [name, value.as_bytes()] {
            put_header(out, b'$', arg.len());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The name of an encoded command, for messages.
pub(crate) fn name_of(command: &[u8]) -> String {
    let mut lines = command.split(|&b| b == b'\n');
    let name = lines.nth(2).unwrap_or_default();
    String::from_utf8_lossy(name.strip_suffix(b"\r").unwrap_or(name)).into_owned()
}

/// One encoded command.
fn command(args: &[&[u8]]) -> Bytes {
    let mut out = Vec::with_capacity(args.iter().map(|a| a.len() + 16).sum::<usize>() + 16);
    encode(&mut out, args);
    Bytes::from(out)
}

/// A command of a head and many items, sent `PIECE` items at a time.
fn pieces<'a>(
    commands: &mut Vec<Bytes>,
    head: &[&'a [u8]],
    items: impl Iterator<Item = Vec<&'a [u8]>>,
) {
    let mut args: Vec<&[u8]> = head.to_vec();
    let mut count = 0;
    for item in items {
        args.extend(item);
        count += 1;
        if count == PIECE {
            commands.push(command(&args));
            args.truncate(head.len());
            count = 0;
        }
    }
    if count > 0 {
        commands.push(command(&args));
    }
}

/// What a server of `target_version` (its `redis_version`, as major and
/// minor) can rebuild from plain commands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rebuilder {
    /// Hash field expiry (`HPEXPIREAT`): Redis 7.4 and later.
    pub(crate) field_expiry: bool,
}

impl Rebuilder {
    pub(crate) fn for_version(major: u32, minor: u32) -> Self {
        Self {
            field_expiry: (major, minor) >= (7, 4),
        }
    }

    /// Whether `value` can be rebuilt; if not, why.
    ///
    /// # Errors
    /// [`Error::CannotCarry`] naming what the target lacks.
    pub(crate) fn check(&self, key: &KeyEntry, value: &Value) -> Result<()> {
        let refuse = |what: String| {
            Err(Error::CannotCarry {
                key: crate::error::printable(&key.key),
                what,
            })
        };
        match value {
            Value::Hash(fields) if !self.field_expiry => {
                if fields.iter().any(|f| f.expire_at_ms.is_some()) {
                    return refuse(
                        "hash fields with their own expiry (HPEXPIREAT needs Redis 7.4 or later)"
                            .into(),
                    );
                }
                Ok(())
            }
            Value::Module(module) => refuse(format!(
                "a value of the module type {:?}, which has no plain commands",
                module.module.name()
            )),
            Value::Stream(stream) => {
                for group in &stream.groups {
                    for pending in &group.pending {
                        if !stream.entries.iter().any(|e| e.id == pending.id) {
                            return refuse(format!(
                                "a pending entry {} of group {:?} whose message was deleted \
                                 (XCLAIM only claims messages in the stream)",
                                pending.id,
                                String::from_utf8_lossy(&group.name)
                            ));
                        }
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The commands that rebuild `value` under `key` (after a `DEL` where
    /// `replace`), with its expiry.
    ///
    /// # Errors
    /// As [`Rebuilder::check`].
    pub(crate) fn commands(
        &self,
        key: &KeyEntry,
        value: &Value,
        replace: bool,
    ) -> Result<Vec<Bytes>> {
        self.check(key, value)?;
        let k: &[u8] = &key.key;
        let mut commands = Vec::new();
        if replace {
            commands.push(command(&[b"DEL", k]));
        }
        match value {
            Value::String(v) => commands.push(command(&[b"SET", k, v])),
            Value::List(items) => {
                pieces(
                    &mut commands,
                    &[b"RPUSH", k],
                    items.iter().map(|i| vec![&i[..]]),
                );
            }
            Value::Set(members) => {
                pieces(
                    &mut commands,
                    &[b"SADD", k],
                    members.iter().map(|m| vec![&m[..]]),
                );
            }
            Value::SortedSet(members) => {
                let scores: Vec<String> = members.iter().map(|(_, s)| score(*s)).collect();
                pieces(
                    &mut commands,
                    &[b"ZADD", k],
                    members
                        .iter()
                        .zip(&scores)
                        .map(|((m, _), s)| vec![s.as_bytes(), &m[..]]),
                );
            }
            Value::Hash(fields) => {
                pieces(
                    &mut commands,
                    &[b"HSET", k],
                    fields.iter().map(|f| vec![&f.field[..], &f.value[..]]),
                );
                for field in fields {
                    if let Some(at) = field.expire_at_ms {
                        let at = at.to_string();
                        commands.push(command(&[
                            b"HPEXPIREAT",
                            k,
                            at.as_bytes(),
                            b"FIELDS",
                            b"1",
                            &field.field,
                        ]));
                    }
                }
            }
            Value::Stream(stream) => stream_commands(&mut commands, k, stream),
            Value::Module(_) => unreachable_module(key)?,
        }
        if let Some(at) = key.expire_at_ms {
            let at = at.to_string();
            commands.push(command(&[b"PEXPIREAT", k, at.as_bytes()]));
        }
        Ok(commands)
    }
}

/// `check` refuses module values before commands are built.
fn unreachable_module(key: &KeyEntry) -> Result<()> {
    Err(Error::CannotCarry {
        key: crate::error::printable(&key.key),
        what: "a module value".into(),
    })
}

/// A score as `ZADD` reads it back exactly.
fn score(score: f64) -> String {
    if score.is_infinite() {
        if score > 0.0 { "+inf" } else { "-inf" }.to_owned()
    } else {
        // Rust prints the shortest text that reads back as the same f64.
        format!("{score:?}")
    }
}

/// A stream: its entries (`XADD` with their ids), its counters (`XSETID`),
/// its groups (`XGROUP CREATE … ENTRIESREAD`), consumers, and each pending
/// entry claimed by its consumer with its delivery time and count.
fn stream_commands(commands: &mut Vec<Bytes>, k: &[u8], stream: &Stream) {
    for entry in &stream.entries {
        let id = entry.id.to_string();
        let mut args: Vec<&[u8]> = vec![b"XADD", k, id.as_bytes()];
        for (field, value) in &entry.fields {
            args.push(field);
            args.push(value);
        }
        commands.push(command(&args));
    }
    if stream.entries.is_empty() {
        // An empty stream still exists: an entry added and trimmed at once.
        let id = stream.last_id.max(StreamId { ms: 0, seq: 1 }).to_string();
        commands.push(command(&[
            b"XADD",
            k,
            b"MAXLEN",
            b"0",
            id.as_bytes(),
            b"f",
            b"v",
        ]));
    }
    let last = stream.last_id.to_string();
    let added = stream.entries_added.unwrap_or(stream.length).to_string();
    let deleted = stream
        .max_deleted_id
        .unwrap_or(StreamId { ms: 0, seq: 0 })
        .to_string();
    commands.push(command(&[
        b"XSETID",
        k,
        last.as_bytes(),
        b"ENTRIESADDED",
        added.as_bytes(),
        b"MAXDELETEDID",
        deleted.as_bytes(),
    ]));
    for group in &stream.groups {
        let last = group.last_id.to_string();
        let mut args: Vec<&[u8]> = vec![b"XGROUP", b"CREATE", k, &group.name, last.as_bytes()];
        // Redis stores "not known" (-1) as the largest length.
        let read = group
            .entries_read
            .filter(|&n| i64::try_from(n).is_ok())
            .map(|n| n.to_string());
        if let Some(read) = &read {
            args.push(b"ENTRIESREAD");
            args.push(read.as_bytes());
        }
        commands.push(command(&args));
        for consumer in &group.consumers {
            commands.push(command(&[
                b"XGROUP",
                b"CREATECONSUMER",
                k,
                &group.name,
                &consumer.name,
            ]));
            for id in &consumer.pending {
                let Some(pending) = group.pending.iter().find(|p| p.id == *id) else {
                    continue;
                };
                let id = id.to_string();
                let time = pending.delivery_time_ms.to_string();
                let count = pending.delivery_count.to_string();
                commands.push(command(&[
                    b"XCLAIM",
                    k,
                    &group.name,
                    &consumer.name,
                    b"0",
                    id.as_bytes(),
                    b"TIME",
                    time.as_bytes(),
                    b"RETRYCOUNT",
                    count.as_bytes(),
                    b"FORCE",
                    b"JUSTID",
                ]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays() {
        let mut out = Vec::new();
        encode(&mut out, &[b"SET", b"k", b"0123456789"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n0123456789\r\n");
    }

    #[test]
    fn names_of_commands() {
        assert_eq!(name_of(&command(&[b"XADD", b"k", b"1-1"])), "XADD");
        assert_eq!(name_of(b""), "");
    }

    #[test]
    fn scores_read_back_exactly() {
        for s in [0.1, -2.5, 1e300, 3.0, f64::MIN_POSITIVE] {
            assert_eq!(score(s).parse::<f64>().ok(), Some(s));
        }
        assert_eq!(score(f64::INFINITY), "+inf");
        assert_eq!(score(f64::NEG_INFINITY), "-inf");
    }
}
