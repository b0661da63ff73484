//! Redis's RDB format: framing (`frame`, `scan`), primitives (`wire`),
//! values (`decode`), DUMP payloads (`dump`) and whole-file checks (`verify`).

use std::fmt;

pub(crate) mod crc;
pub(crate) mod decode;
pub(crate) mod dump;
pub(crate) mod frame;
pub(crate) mod lzf;
pub(crate) mod reader;
pub(crate) mod scan;
pub(crate) mod verify;
pub(crate) mod wire;

/// The newest RDB version this build reads (Redis 7.4 to 8.4).
pub const MAX_RDB_VERSION: u16 = 12;

/// Opcodes of the RDB's top level (`rdb.h`).
pub(crate) mod opcode {
    pub(crate) const KEY_META: u8 = 243;
    pub(crate) const SLOT_INFO: u8 = 244;
    pub(crate) const FUNCTION2: u8 = 245;
    pub(crate) const FUNCTION_PRE_GA: u8 = 246;
    pub(crate) const MODULE_AUX: u8 = 247;
    pub(crate) const IDLE: u8 = 248;
    pub(crate) const FREQ: u8 = 249;
    pub(crate) const AUX: u8 = 250;
    pub(crate) const RESIZEDB: u8 = 251;
    pub(crate) const EXPIRETIME_MS: u8 = 252;
    pub(crate) const EXPIRETIME: u8 = 253;
    pub(crate) const SELECTDB: u8 = 254;
    pub(crate) const EOF: u8 = 255;
}

/// A value's type byte in an RDB or a DUMP payload: which kind of value it
/// is and how it is encoded (a hash as a listpack, a set as an intset...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueType(pub u8);

impl ValueType {
    /// A string (0).
    pub const STRING: Self = Self(0);
    /// A list of strings, Redis 2.x (1).
    pub const LIST: Self = Self(1);
    /// A set as a hash table (2).
    pub const SET: Self = Self(2);
    /// A sorted set with scores as text (3).
    pub const ZSET: Self = Self(3);
    /// A hash as a hash table (4).
    pub const HASH: Self = Self(4);
    /// A sorted set with binary scores (5).
    pub const ZSET_2: Self = Self(5);
    /// A module value of Redis 4.0's release candidates (6): refused.
    pub const MODULE_PRE_GA: Self = Self(6);
    /// A module value with opcode-tagged fields (7).
    pub const MODULE_2: Self = Self(7);
    /// A hash as a zipmap (9).
    pub const HASH_ZIPMAP: Self = Self(9);
    /// A list as a ziplist (10).
    pub const LIST_ZIPLIST: Self = Self(10);
    /// A set of integers as an intset (11).
    pub const SET_INTSET: Self = Self(11);
    /// A sorted set as a ziplist (12).
    pub const ZSET_ZIPLIST: Self = Self(12);
    /// A hash as a ziplist (13).
    pub const HASH_ZIPLIST: Self = Self(13);
    /// A list as a quicklist of ziplists (14).
    pub const LIST_QUICKLIST: Self = Self(14);
    /// A stream, first layout (15).
    pub const STREAM_LISTPACKS: Self = Self(15);
    /// A hash as a listpack (16).
    pub const HASH_LISTPACK: Self = Self(16);
    /// A sorted set as a listpack (17).
    pub const ZSET_LISTPACK: Self = Self(17);
    /// A list as a quicklist of listpacks and plain nodes (18).
    pub const LIST_QUICKLIST_2: Self = Self(18);
    /// A stream with first id, max deleted id and entries added (19).
    pub const STREAM_LISTPACKS_2: Self = Self(19);
    /// A set as a listpack (20).
    pub const SET_LISTPACK: Self = Self(20);
    /// A stream with consumers' active times (21).
    pub const STREAM_LISTPACKS_3: Self = Self(21);
    /// A hash with field expiry, Redis 7.4 release candidates (22).
    pub const HASH_METADATA_PRE_GA: Self = Self(22);
    /// A listpack hash with field expiry, Redis 7.4 release candidates (23).
    pub const HASH_LISTPACK_EX_PRE_GA: Self = Self(23);
    /// A hash with field expiry (24).
    pub const HASH_METADATA: Self = Self(24);
    /// A listpack hash with field expiry (25).
    pub const HASH_LISTPACK_EX: Self = Self(25);

    /// The type's name, as Redis's sources name it, in lower case.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "string",
            1 => "list",
            2 => "set",
            3 => "zset",
            4 => "hash",
            5 => "zset 2",
            6 => "module pre-GA",
            7 => "module",
            9 => "hash zipmap",
            10 => "list ziplist",
            11 => "set intset",
            12 => "zset ziplist",
            13 => "hash ziplist",
            14 => "list quicklist",
            15 => "stream listpacks",
            16 => "hash listpack",
            17 => "zset listpack",
            18 => "list quicklist 2",
            19 => "stream listpacks 2",
            20 => "set listpack",
            21 => "stream listpacks 3",
            22 => "hash metadata pre-GA",
            23 => "hash listpack ex pre-GA",
            24 => "hash metadata",
            25 => "hash listpack ex",
            26 => "stream listpacks 4",
            _ => "unknown",
        }
    }

    /// The kind of value it holds, whatever its encoding; `None` for type
    /// bytes this build does not read.
    pub fn kind(self) -> Option<KeyKind> {
        Some(match self.0 {
            0 => KeyKind::String,
            1 | 10 | 14 | 18 => KeyKind::List,
            2 | 11 | 20 => KeyKind::Set,
            3 | 5 | 12 | 17 => KeyKind::SortedSet,
            4 | 9 | 13 | 16 | 22..=25 => KeyKind::Hash,
            15 | 19 | 21 => KeyKind::Stream,
            7 => KeyKind::Module,
            _ => return None,
        })
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// The kind of a key's value, whatever its encoding: what `TYPE key` says.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyKind {
    /// `string`.
    String,
    /// `list`.
    List,
    /// `set`.
    Set,
    /// `zset`.
    SortedSet,
    /// `hash`.
    Hash,
    /// `stream`.
    Stream,
    /// A module's type.
    Module,
}

impl KeyKind {
    /// The name `TYPE` answers (`"module"` for every module type).
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::String => "string",
            KeyKind::List => "list",
            KeyKind::Set => "set",
            KeyKind::SortedSet => "zset",
            KeyKind::Hash => "hash",
            KeyKind::Stream => "stream",
            KeyKind::Module => "module",
        }
    }
}
