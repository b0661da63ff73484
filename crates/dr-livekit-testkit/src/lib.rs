//! A LiveKit server's API for tests: the real wire protocol (Twirp over HTTP/1.1, bodies in
//! protobuf or JSON) on 127.0.0.1, state in memory. No livekit-server can be installed where
//! drkit is tested, so the tests of `dr-livekit` run against this one; its fidelity is
//! checked by two clients nobody here wrote, LiveKit's Rust `livekit-api` and LiveKit's
//! Node `livekit-server-sdk`.
//!
//! [`LiveKitServer::start`] binds a free port with a random API key and secret
//! ([`LiveKitServer::url`], [`LiveKitServer::api_key`], [`LiveKitServer::api_secret`]) and a
//! second port for Prometheus ([`LiveKitServer::metrics_url`]), as LiveKit serves metrics on
//! its own port. [`LiveKitServer::start_with`] takes [`LiveKitServerOptions`]: the key and
//! secret, a webhook URL, a node id, the ingress URLs. Dropping the handle stops it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use livekit_api::services::room::{CreateRoomOptions, RoomClient};
//!
//! let server = dr_livekit_testkit::LiveKitServer::start().await?;
//! let rooms = RoomClient::with_api_key(&server.url(), server.api_key(), server.api_secret());
//! rooms.create_room("standup", CreateRoomOptions::default()).await?;
//! server.join(
//!     "standup",
//!     livekit_protocol::ParticipantInfo { identity: "ada".into(), ..Default::default() },
//! )?;
//! assert_eq!(rooms.list_participants("standup").await?.len(), 1);
//! drop(server); // stopped
//! # Ok(()) }
//! ```
//!
//! # What is served
//!
//! `POST /twirp/livekit.<Service>/<Method>` with a body in protobuf (`application/protobuf`,
//! what `livekit-api` sends) or JSON (`application/json`, parameters such as `;charset=UTF-8`
//! ignored, what the Node SDK sends; camelCase or snake_case field names, through
//! `livekit-protocol`'s pbjson impls), answered in the same encoding (JSON in camelCase,
//! default values left out). Errors are Twirp's `{"code": ..., "msg": ...}` as
//! `application/json` with Twirp's status (not_found 404, already_exists 409,
//! permission_denied 403, unauthenticated 401, invalid_argument and malformed 400,
//! bad_route 404, failed_precondition 412, unavailable 503, internal 500, unimplemented 501)
//! and LiveKit's messages (`requested room does not exist`, `participant does not exist`,
//! `egress does not exist`, ...). A path outside the services, or a method not listed, is
//! 404 bad_route; a GET 404 bad_route; another content type 404 bad_route; a body that
//! does not decode 400 malformed.
//!
//! - **RoomService**: `CreateRoom` is LiveKit's upsert (`StandardRoomAllocator.CreateRoom`):
//!   a new room gets a sid `RM_` + 12 base-62 characters, `creation_time`,
//!   `creation_time_ms`, LiveKit's default config (empty timeout 300 s, departure timeout
//!   20 s) and a `turn_password`; an existing room keeps its fields and takes only the
//!   request's non-zero, non-empty ones (`empty_timeout`, `departure_timeout`,
//!   `max_participants`, `metadata`). The request's `egress`, `agents`, playout delays and
//!   `sync_streams` are kept where LiveKit keeps them (`RoomInternal`), which no API reads
//!   back: [`LiveKitServer::room_config`] shows them. A room starts its agent dispatches as
//!   `rtc.NewRoom` does: one per `agents` entry, or one for the unnamed agent (`""`) when
//!   it asked for none. `ListRooms` (the `names` filter in the order given, missing names
//!   skipped; empty: every room by name), `DeleteRoom` (missing: not_found; its
//!   participants leave, its dispatches go, its active egress ends `EGRESS_ABORTED`),
//!   `UpdateRoomMetadata` (set or cleared), `ListParticipants` (a missing room: none, as
//!   LiveKit's store answers), `GetParticipant`, `RemoveParticipant`, `UpdateParticipant`
//!   (`ParticipantImpl.UpdateMetadata` from an admin: the name and the metadata when not
//!   empty, attributes merged with an empty value removing the key, then the permission if
//!   given; `version` bumped); a missing participant is not_found.
//!   `MutePublishedTrack` mutes a track the participant has (the stand-in's participants
//!   publish none, so: not_found `track is not found`) and refuses an unmute
//!   (failed_precondition `remote unmute not enabled`, LiveKit's default);
//!   `UpdateSubscriptions` and `SendData` check the participant or room and do nothing
//!   else; `ForwardParticipant` and `MoveParticipant` answer LiveKit's open-source
//!   `internal` `not implemented` after their grant check; `PerformRpc` is 501.
//! - **Egress**: `StartRoomCompositeEgress`, `StartWebEgress`, `StartParticipantEgress`,
//!   `StartTrackCompositeEgress`, `StartTrackEgress` and `StartEgress` (the unified request)
//!   answer an `EgressInfo` with an `EG_…` id, the room's name and sid, `EGRESS_STARTING`,
//!   `updated_at`, the source type, and the request in its `request` oneof (so a client can
//!   start it again elsewhere). A room-based egress for a missing room is not_found, as
//!   LiveKit's launcher's `LoadRoom` answers; web egress needs no room. `ListEgress`
//!   (`egress_id`, which must exist; `room_name`; `active`: starting, active or ending),
//!   `StopEgress` (starting or active → `EGRESS_ENDING`; any other status is
//!   failed_precondition `egress with status EGRESS_COMPLETE cannot be stopped`; missing:
//!   not_found). `UpdateLayout` and `UpdateStream` are 501. No egress worker runs: the test
//!   moves an egress on with [`LiveKitServer::set_egress_status`].
//! - **Ingress**: `CreateIngress` (a fresh `IN_…` id and a fresh 12-character stream key for
//!   RTMP and WHIP; the URL from [`LiveKitServerOptions::rtmp_url`] or
//!   [`LiveKitServerOptions::whip_url`]; URL input takes the request's URL and has no key;
//!   `reusable`, `enable_transcoding` and `bypass_transcoding` as LiveKit sets them; state
//!   `ENDPOINT_INACTIVE`), `UpdateIngress` (the request's non-empty fields; a URL-input
//!   ingress is not reusable: invalid_argument), `ListIngress` (`ingress_id`, which must
//!   exist, or `room_name`), `DeleteIngress` (missing: not_found).
//! - **SIP**: `CreateSIPInboundTrunk` and `CreateSIPOutboundTrunk` assign `ST_…` ids and
//!   `created_at`; **a request carrying a trunk id is refused** (invalid_argument `trunk ID
//!   must be empty`), as LiveKit's `sip.go` does. `UpdateSIP*Trunk` (`replace`, or `update`
//!   with LiveKit's `ListUpdate` for lists; missing: not_found), `GetSIP*Trunk`,
//!   `ListSIP*Trunk` (`trunk_ids`, `numbers`), `DeleteSIPTrunk` (of any kind; a missing id
//!   is no error, as LiveKit's store deletes without looking; an empty one is
//!   invalid_argument). `CreateSIPDispatchRule` takes the `dispatch_rule` message or the
//!   legacy top-level fields, needs a rule, assigns `SDR_…`; `UpdateSIPDispatchRule`,
//!   `ListSIPDispatchRule` (`dispatch_rule_ids`, `trunk_ids`), `DeleteSIPDispatchRule`
//!   (missing: not_found). `ListSIPTrunk`, `CreateSIPParticipant` and
//!   `TransferSIPParticipant` are 501 after their grant check.
//! - **AgentDispatchService**: `CreateDispatch` (creates a missing room, as LiveKit's
//!   `room.auto_create` does; an `AD_…` id, `state.created_at`), `DeleteDispatch`
//!   (missing room or dispatch: not_found), `ListDispatch` (per room, optionally one
//!   `dispatch_id`; a missing room is not_found).
//!
//! **Auth** as LiveKit's `APIKeyAuthMiddleware` and services (`pkg/service/auth.go`): a
//! token in `Authorization: Bearer <jwt>`, HS256 with the secret, `iss` the key, verified
//! with `livekit_api::access_token::TokenVerifier`. A header without `Bearer `, a token that
//! does not verify (bad signature, expired, not yet valid) or names another key is answered
//! by the middleware before Twirp: **401 with a plain-text body** (`invalid authorization
//! token: ...`, `invalid API key`), not Twirp JSON, exactly as LiveKit does (so
//! `livekit-api` reports a body that is not JSON, and the Node SDK the text as the
//! message). A call without a token, or whose token lacks the grant, is answered by the
//! service with Twirp **`unauthenticated` (401) `permissions denied`**: LiveKit's
//! `twirpAuthError` wraps every failed grant check that way; it never answers
//! `permission_denied`. The grants: `CreateRoom` and `DeleteRoom` `roomCreate`;
//! `ListRooms` `roomList`; every other RoomService call `roomAdmin` with the token's `room`
//! equal to the request's room (`ForwardParticipant` and `MoveParticipant` also
//! `destinationRoom`); Egress `roomRecord`; Ingress `ingressAdmin`; SIP trunks and dispatch
//! rules `sip.admin`; `CreateSIPParticipant` and `TransferSIPParticipant` `sip.call`;
//! AgentDispatchService `roomAdmin` for the request's room.
//!
//! **Health**: `GET /` answers 200 `OK`, or 406 `Not Ready` while not ready or down.
//! **Metrics** (the second port, `GET /metrics`, Prometheus text format, with LiveKit's
//! const labels `node_id` and `node_type="SERVER"`): `livekit_room_total` and
//! `livekit_participant_total` (gauges), `livekit_node_twirp_request_status` (counter,
//! labels `service`, `method`, `status` — `"200"`, `"4xx"` or `"5xx"` — and `code`, empty on
//! success, as `pkg/service/twirp.go` records them; requests the middleware turns away are
//! not counted, as in LiveKit).
//!
//! **Webhooks** (with [`LiveKitServerOptions::webhook_url`], `http://` only): LiveKit's
//! `WebhookEvent` as protobuf JSON, `Content-Type: application/webhook+json`,
//! `Authorization: <jwt>` (no `Bearer`) signed with the key and secret and carrying the
//! `sha256` claim (base64 of the body's SHA-256), what
//! `livekit_api::webhooks::WebhookReceiver` verifies; for `room_started`,
//! `room_finished`, `participant_joined`, `participant_left`, `egress_started`,
//! `egress_updated` and `egress_ended`. They are posted in order from a task of their own on
//! one kept-alive connection, so no call waits for them; one that cannot be delivered
//! (after one reconnect) is dropped.
//!
//! # Test controls and chaos knobs (a real server has none of these)
//!
//! [`LiveKitServer::join`] and [`LiveKitServer::leave`] (participants, since no client can
//! join over WebRTC here), [`LiveKitServer::set_egress_status`] (what an egress worker
//! reports), [`LiveKitServer::room_config`] (the kept `CreateRoomRequest` fields),
//! [`LiveKitServer::request_count`] and [`LiveKitServer::request_counts`],
//! [`LiveKitServer::counts`]; [`LiveKitServer::set_ready`], [`LiveKitServer::set_down`],
//! [`LiveKitServer::set_delay`], [`LiveKitServer::set_html`] and [`LiveKitServer::restart`]
//! (ephemeral state gone, durable state kept).
//!
//! # Scale
//!
//! One lock over the state, held only for a call's own work: rooms are a map by name, each
//! with a map of its participants; egress is indexed by room. A call costs a map lookup, not
//! a scan (only the unfiltered lists walk everything). HTTP/1.1 keep-alive is served.
//!
//! # What is not done
//!
//! No media, WebRTC or signalling (`/rtc`): participants exist only through
//! [`LiveKitServer::join`], and publish no tracks. No timers: rooms are not closed after
//! their empty or departure timeout, egress and ingress never move by themselves, ended
//! egress is never purged. No room presets (`room_preset`), no `node_id` routing, no
//! `num_publishers` or `active_recording`, no `enabled_codecs`, no agent jobs or workers
//! (dispatches are listed, nothing runs them), no automatic egress started from a room's
//! `egress` config, no pagination (`page_token`, SIP `page`: everything in one page). No
//! limits are checked (name lengths, metadata and attribute sizes, max participants), nor
//! SIP's validation beyond the trunk id and a rule being present (LiveKit also refuses
//! conflicting trunks and rules). `access_token` as a query parameter is not read. Not
//! served: `PerformRpc`, `UpdateLayout`, `UpdateStream`, `ListSIPTrunk`,
//! `CreateSIPParticipant`, `TransferSIPParticipant` (501), the `/settings/regions` and
//! other non-Twirp endpoints, TLS, HTTP/2, webhooks to `https://`, basic auth on metrics.
//! JSON answers leave default values out (Go's Twirp may emit them); both SDKs read either.

pub(crate) mod auth;
pub(crate) mod error;
pub(crate) mod ids;
pub(crate) mod server;
pub(crate) mod services;
pub(crate) mod state;
pub(crate) mod twirp;
pub(crate) mod webhook;

pub use crate::error::{Error, Result};
pub use crate::server::{LiveKitServer, LiveKitServerOptions};
