//! drkit for Redis. For now: Redis's RDB format, read by a parser of our
//! own that streams, so that a snapshot can be checked while it arrives from
//! a server and stored without ever being held whole.
//!
//! - [`RdbParser`]: push bytes in pieces of any size, take [`Event`]s out in
//!   file order: the [`Header`], AUX fields, function libraries, module data
//!   ([`ModuleAux`], raw), databases, resize and slot hints, each key as a
//!   [`KeyEntry`] (database, key, expiry, LRU/LFU hints, [`ValueType`] and
//!   the raw value bytes, sliced from the parser's buffer, not copied), and
//!   the [`Eof`] with its CRC-64 checked. [`RdbReader`] runs it over an
//!   `AsyncRead`, [`events`] over bytes in memory. RDB versions 1 to 12
//!   (Redis up to 8.4) are read; version 13 (Redis 8.6) and Valkey 9's
//!   `VALKEY080` are refused with an error that names them.
//! - [`DumpPayload`]: what `DUMP` gives and `RESTORE` takes, built from a
//!   framed key's raw bytes or checked (length, version, CRC-64).
//! - [`decode_value`]: a [`Value`] from a type byte and raw bytes: strings
//!   (integer and LZF encodings), lists (ziplists, quicklists), sets
//!   (intsets, listpacks), sorted sets, hashes (zipmaps, ziplists,
//!   listpacks, with field expiries), [`Stream`]s with their consumer
//!   groups, and module values ([`ModuleValue`], read without the module).
//! - [`verify`] (and [`Verifier`], [`verify_slice`]): a whole RDB framed,
//!   decoded and checked, summed up in an [`RdbSummary`] whose
//!   [`KeyCounts`] compare with those recorded at backup time.
//! - [`RedisServer::begin_rdb`]: an RDB fetched over the replication
//!   protocol as `redis-cli --rdb` does ([`RdbTransfer`]: `PSYNC`, either
//!   [`Framing`], keep-alives, an idle timeout rather than a total one;
//!   TLS with [`RedisServer::tls`]).
//! - [`RedisServer::begin_logical`]: for servers that refuse `SYNC`, every
//!   key read with `SCAN`, `DUMP` and `PTTL` and written out as an RDB
//!   ([`LogicalDump`]).
//! - [`RdbSnapshot`] ([`dr_core::Backup`]): that RDB stored as a snapshot
//!   as it arrives, framed and checksummed on the way
//!   ([`Verifier::framing_only`]), committed only whole; its
//!   [`RdbSnapshotDetails`] keep the key counts and the server's version,
//!   its recovery point the replication id and offset.
//! - [`FileSnapshot`] ([`dr_core::Backup`]): Redis's own files from a path
//!   (an RDB file, or a Redis 7 `appendonlydir`), for a sidecar that mounts
//!   the data volume; the RDB checked as it is stored.
//! - [`RdbRestore`] ([`dr_core::Restore`]): a snapshot written into a
//!   running server as pipelined `RESTORE … ABSTTL`s built from the raw
//!   value bytes, after a first pass that checks the whole snapshot and the
//!   target's conflicting keys ([`Conflict`]) so that a damaged snapshot or
//!   a refused conflict writes nothing; a target older than the snapshot's
//!   RDB version gets plain commands rebuilding each decoded value.
//!   [`RestoreCounts`] says what was written, kept and skipped.
//!   [`RdbRestore::into_cluster`] routes keys to a Cluster's masters by slot.
//!   [`RdbFileRestore`]: a cold restore, the RDB written whole where a
//!   stopped server loads it.
//! - [`ClusterSnapshot`] ([`dr_core::Backup`]): every shard of a Redis
//!   Cluster at once, from a replica of each where one is in sync, with the
//!   [`ClusterLayout`] in the same snapshot ([`ClusterSnapshotDetails`]);
//!   optionally with writes paused on every master until each shard has
//!   forked, for one consistent cut.
//! - [`ClusterRebuild`] ([`dr_core::Restore`]): a whole cluster rebuilt on
//!   empty nodes from its snapshot: slots, replicas, data, checks.
//! - [`RedisServer::replicate`]: following a master as a replica does
//!   ([`Replication`]: a [`FullSync`]'s RDB then the stream, or the
//!   history continued from a [`HistoryPoint`]); a [`ReplicaLink`] yields
//!   the master's writes as [`StreamCommand`]s with their replication
//!   offsets ([`CommandSplitter`]) and acknowledges only what it is told.
//! - [`CommandArchiver`]: a master's writes archived as they arrive, in
//!   segments of records of whole commands with their offsets and arrival
//!   times ([`read_segment`]), acknowledged to the master only once durable;
//!   a full synchronization it must take is stored as a snapshot first.
//!   [`ArchiveRestore`] ([`dr_core::Restore`], point in time and position):
//!   the newest snapshot before the target and the archived commands up to
//!   it, served to an empty server that replicates from us as from its
//!   master, then `REPLICAOF NO ONE`.
//! - [`RedisFailover`] ([`dr_core::Failover`]): a standalone master's
//!   replicas assessed by their offsets, the most advanced promoted
//!   (`REPLICAOF NO ONE`) and the others pointed at it, or a planned
//!   switchover with `FAILOVER TO`; [`PauseWrites`] fences a master that
//!   still answers (paused, or made the replica of a newer master), so that
//!   dr-core's `Monitor` can fail a lost master over by itself and demote
//!   it when it comes back. [`ClusterFailover`]: one shard of a Cluster by a
//!   manual failover on its most advanced replica (`CLUSTER FAILOVER`,
//!   `FORCE` for a lost master, then `TAKEOVER`), confirmed by the node's
//!   own `CLUSTER NODES`. [`SentinelFailover`]: a master Sentinel watches,
//!   failed over through `SENTINEL FAILOVER`, so that Sentinels and their
//!   clients agree on the new master.
//! - [`verify_snapshot`]: a stored snapshot (a server's or a cluster's)
//!   read back whole, every value decoded, against what was recorded;
//!   [`inspect`]: keys per type and database, the biggest keys and an
//!   expiry histogram of an RDB.
//! - [`Error`]: one error type, saying where (byte offset, database, key,
//!   type); it converts into [`dr_core::Error`] with a kind a caller can act
//!   on ([`Corrupt`](dr_core::ErrorKind::Corrupt),
//!   [`UnsupportedVersion`](dr_core::ErrorKind::UnsupportedVersion)).
//!
//! Malformed input gives an error, never a panic, a hang or memory beyond
//! what was fed: a fuzz target (`crates/dr-redis/fuzz`) holds the parser to it.
//!
//! # Example
//!
//! Framing an RDB as it arrives, each key's value decoded, and a DUMP
//! payload made from one key:
//!
//! ```
//! use dr_redis::{DumpPayload, Event, RdbParser, Value, decode_value};
//!
//! // An RDB 11 with one key, "greeting" = "hello", expiring at a time.
//! let mut rdb = b"REDIS0011\xfe\x00\xfc".to_vec();
//! rdb.extend(1_900_000_000_000i64.to_le_bytes());
//! rdb.extend(b"\x00\x08greeting\x05hello\xff");
//! rdb.extend([0; 8]); // a checksum of zero: "not computed"
//!
//! let mut parser = RdbParser::new();
//! let mut version = 0;
//! for piece in rdb.chunks(5) {
//!     parser.feed(piece);
//!     while let Some(event) = parser.next_event()? {
//!         match event {
//!             Event::Header(header) => version = header.version,
//!             Event::Key(key) => {
//!                 assert_eq!(key.key, "greeting");
//!                 assert_eq!(key.expire_at_ms, Some(1_900_000_000_000));
//!                 let value = decode_value(key.value_type, &key.value, version)?;
//!                 assert_eq!(value, Value::String("hello".into()));
//!                 let payload = DumpPayload::from_key(&key, version);
//!                 assert_eq!(payload.decode()?, value);
//!             }
//!             _ => {}
//!         }
//!     }
//! }
//! parser.end_input();
//! assert!(parser.next_event()?.is_none() && parser.is_done());
//!
//! // The same file checked whole.
//! let summary = dr_redis::verify_slice(&rdb)?;
//! assert_eq!((summary.rdb_version, summary.counts.keys(), summary.counts.expires()), (11, 1, 1));
//! # Ok::<(), dr_redis::Error>(())
//! ```

mod archive;
mod cluster;
mod error;
mod failover;
mod fetch;
mod files;
mod inspect;
mod pieces;
mod rdb;
mod replication;
mod restore;
mod sentinel;
mod snapshot;

pub use archive::archiver::{ArchiveProgress, ArchiverStop, CommandArchiver};
pub use archive::cluster::{
    ArchivedShard, ClusterArchiveRestore, ClusterArchiver, ShardArchive, archived_shards,
};
pub use archive::replay::{ArchiveRestore, archive_end, rolled_up_segments};
pub use archive::segment::{
    HEADER_LEN, Record, SEGMENT_MAGIC, SegmentHeader, encode_record, parse_any_name, parse_name,
    read_segment,
};
pub use cluster::failover::ClusterFailover;
pub use cluster::layout::{ClusterLayout, ClusterNode, NodeRole, SLOTS, slot_of};
pub use cluster::rebuild::{ClusterRebuild, RebuildOutcome};
pub use cluster::snapshot::{ClusterSnapshot, ClusterSnapshotDetails, ShardSnapshot};
pub use error::{Error, Place, Result, SUPPORTED_VERSIONS};
pub use failover::{PauseWrites, RedisFailover};
pub use fetch::{Framing, LogicalDump, RdbTransfer, RedisServer, ServerProbe};
pub use files::{AOF_STREAM_PREFIX, FileSnapshot};
pub use inspect::{
    BigKey, ExpiryHistogram, Inspection, inspect, is_redis_snapshot, redis_snapshots,
    verify_snapshot,
};
pub use rdb::decode::{
    Consumer, ConsumerGroup, HashField, ModuleField, ModuleValue, PendingEntry, Stream,
    StreamEntry, StreamId, Value, decode_value,
};
pub use rdb::dump::DumpPayload;
pub use rdb::frame::{Eof, Event, Header, KeyEntry, ModuleAux, ModuleId, RdbParser};
pub use rdb::reader::{Events, RdbReader, events};
pub use rdb::verify::{
    DbCounts, KeyCounts, RdbSummary, Verifier, verify, verify_file, verify_slice,
};
pub use rdb::{KeyKind, MAX_RDB_VERSION, ValueType};
pub use replication::commands::{CommandSplitter, StreamCommand};
pub use replication::link::{FullSync, HistoryPoint, ReplicaLink, Replication};
pub use restore::{Conflict, KeyPatterns, RdbFileRestore, RdbRestore, RestoreCounts};
pub use sentinel::SentinelFailover;
pub use snapshot::{RDB_STREAM, RdbSnapshot, RdbSnapshotDetails, SnapshotMode};
