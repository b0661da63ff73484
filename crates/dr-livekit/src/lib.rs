//! drkit for LiveKit: the SFU's room state backed up through its API and
//! given back to the same server or a standby, and its health.
//!
//! LiveKit keeps rooms, participants, egress, ingress, SIP trunks and
//! dispatch rules and agent dispatches in memory (one node) or in Redis
//! (several); the media itself cannot be backed up by anyone. This crate
//! reads what its API returns and gives it back through the API, on
//! LiveKit's own client, the `livekit-api` crate:
//!
//! - [`LiveKit`]: one server, from its URL, API key and secret (or a token
//!   with only the grants a job needs, [`LiveKit::with_token`]); every call
//!   made through it names the server and the call in its [`Error`], and
//!   a refusal for a missing grant names the grant.
//! - [`LiveKitState`]: what the API returns that can be given back, read
//!   in one go ([`LiveKitState::read`]): rooms with their settings,
//!   participants (identity, name, metadata, attributes, permission),
//!   running egress with the request that started it, agent dispatches,
//!   ingress, SIP trunks and dispatch rules; what could not be read and why.
//! - [`DesiredRooms`]: the `CreateRoomRequest`s the service made, which
//!   LiveKit's API cannot read back (automatic egress, agents, playout
//!   delay): a snapshot takes them along, a restore creates rooms with them.
//! - [`LiveKitSnapshot`]: dr-core's `Backup`. A state found unchanged since
//!   the base snapshot stores only a confirmation of a few hundred bytes
//!   that is a restorable point of its own: a snapshot every minute costs
//!   next to nothing while nothing changes.
//! - [`LiveKitRestore`]: dr-core's `Restore`, onto the same server or a
//!   standby: rooms created (LiveKit's upsert) with their metadata set
//!   exactly, egress started again, agent dispatches, ingress, trunks and
//!   dispatch rules made again where they are missing, under new ids and
//!   stream keys returned as a [`Remap`] (dispatch rules follow their
//!   trunks' new ids); an [`Outcome`] for each thing.
//! - [`Rejoin`]: participants cannot be restored, only set again once they
//!   rejoin: from the service's `participant_joined` webhook, verified.
//! - [`LiveKitProbe`]: readiness (`GET /`, 200 or 406), a short `ListRooms`
//!   and the Prometheus metrics ([`LiveKitHealth`]).
//! - [`LiveKitFailover`]: dr-core's `Failover` from a dead SFU to a warm
//!   standby: both probed, the latest snapshot restored onto the standby,
//!   clients pointed at it by the caller's `Rewire` hook; the report's data
//!   loss is the snapshot's age.
//!
//! Where LiveKit runs on several nodes, its durable state (ingress, SIP,
//! agent dispatches) is in Redis: restoring those keys keeps every id and
//! stream key ([`RestoreMethod::RedisKeys`]); that restore goes through
//! dr-redis and lives in `drkit`, as this crate depends on no other
//! system's crate.
//!
//! ```no_run
//! # async fn demo(repo: &dr_storage::Repository) -> dr_core::Result<()> {
//! use dr_core::{BackupExt, Objectives, RecoveryTarget, RestoreRequest};
//! use dr_livekit::{LiveKit, LiveKitRestore, LiveKitSnapshot};
//!
//! let primary = LiveKit::new("http://livekit.livekit:7880", "APIkey", "secret")?;
//! let standby = LiveKit::new("http://livekit.dr:7880", "APIkey", "secret")?;
//! LiveKitSnapshot::new("livekit/sfu".parse()?, primary).backup_to(repo).await?;
//!
//! // The primary region is gone: give its rooms to the standby.
//! let restore = LiveKitRestore::new("livekit/sfu".parse()?, standby);
//! let target = RecoveryTarget::Latest;
//! let report = restore
//!     .restore_state(RestoreRequest::new(repo, &target, Objectives::new("5m".parse()?, "1m".parse()?)))
//!     .await?;
//! for moved in &report.applied.remap.entries {
//!     println!("{:?} {}: {} -> {}", moved.kind, moved.name, moved.old_id, moved.new_id);
//! }
//! # Ok(()) }
//! ```

mod client;
mod error;
mod failover;
mod health;
mod registry;
mod rejoin;
mod restore;
mod snapshot;
mod state;

pub use client::{DEFAULT_CONCURRENCY, DEFAULT_REQUEST_TIMEOUT, LiveKit};
pub use error::{Error, Result};
pub use failover::LiveKitFailover;
pub use health::{DEFAULT_PROBE_TIMEOUT, LiveKitHealth, LiveKitMetrics, LiveKitProbe, Readiness};
pub use registry::DesiredRooms;
pub use rejoin::{Reapplied, Rejoin};
pub use restore::{
    Applied, ItemKind, LiveKitRestore, LiveKitRestoreReport, Outcome, Remap, Remapped,
    RestoreMethod, Restored,
};
pub use snapshot::{
    LiveKitSnapshot, LiveKitSnapshotDetails, STATE_STREAM, is_livekit_snapshot, livekit_snapshots,
    verify_snapshot,
};
pub use state::{LiveKitState, ParticipantState, RoomState, STATE_FORMAT, StateCounts, Unreadable};

/// The keys of LiveKit's Redis (a multi-node LiveKit's shared store) that
/// outlive its rooms, as Redis glob patterns: ingress with their stream
/// keys and states, SIP trunks and dispatch rules, agent dispatches
/// (LiveKit's `redisstore.go` and `redisstore_sip.go`). Written back from a
/// Redis snapshot, they keep every id and stream key, which a restore
/// through the API cannot ([`RestoreMethod::RedisKeys`]); rooms and
/// participants (`rooms`, `room_internal`, `room_participants:*`) are left
/// to the restore through the API, as a node that restarts would.
pub const REDIS_DURABLE_KEYS: &[&str] = &[
    "ingress",
    "{ingress}_stream_key",
    "{ingress}_state:*",
    "room_{ingress}:*",
    "sip_trunk",
    "sip_inbound_trunk",
    "sip_outbound_trunk",
    "sip_dispatch_rule",
    "agent_dispatch:*",
    "agent_job:*",
];

/// LiveKit's protobuf messages, as this crate uses them.
pub use livekit_protocol as proto;
