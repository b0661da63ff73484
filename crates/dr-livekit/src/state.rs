//! [`LiveKitState`]: what a LiveKit server holds that a restore can give
//! back, read through its API ([`LiveKitState::read`]), and its canonical
//! bytes.

use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use livekit_api::services::egress::{EgressListFilter, EgressListOptions};
use livekit_api::services::ingress::IngressListFilter;
use livekit_api::services::sip::{
    ListSIPDispatchRuleFilter, ListSIPInboundTrunkFilter, ListSIPOutboundTrunkFilter,
};
use livekit_protocol as proto;
use serde::{Deserialize, Serialize};

use crate::client::{LiveKit, calls};
use crate::error::{Error, Result};
use crate::registry::DesiredRooms;

/// The format of [`LiveKitState`] this drkit writes and reads.
pub const STATE_FORMAT: u32 = 1;

/// What a LiveKit server holds that can be given back through its API, as
/// read at one time: each part sorted by name or id, with the fields that
/// change by themselves (times, counts, media state) left out, so that the
/// same state reads the same.
///
/// Media (tracks, connections) cannot be restored by anyone: clients
/// reconnect and publish again. Secrets the server holds (SIP trunks'
/// passwords) are in it; keep snapshots in an encrypted repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveKitState {
    /// [`STATE_FORMAT`] when written.
    pub format: u32,
    /// Every room, by name.
    pub rooms: Vec<RoomState>,
    /// Every ingress (its `state` left out), by id. Their ids and stream
    /// keys are the server's: recreated through the API, they change.
    pub ingress: Vec<proto::IngressInfo>,
    /// SIP inbound trunks (`created_at` and `updated_at` left out), by id.
    pub sip_inbound_trunks: Vec<proto::SipInboundTrunkInfo>,
    /// SIP outbound trunks, likewise.
    pub sip_outbound_trunks: Vec<proto::SipOutboundTrunkInfo>,
    /// SIP dispatch rules, likewise; they name trunks by id.
    pub sip_dispatch_rules: Vec<proto::SipDispatchRuleInfo>,
    /// What could not be read, and why (a server without SIP, a key
    /// without the grant, a room gone while it was read).
    pub unreadable: Vec<Unreadable>,
}

/// One room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomState {
    /// Its name, which clients join by.
    pub name: String,
    /// The server's id for it (`RM_…`); a room created again gets another.
    pub sid: String,
    /// Its metadata.
    pub metadata: String,
    /// Seconds it stays open with nobody in it (0: the server's default).
    pub empty_timeout: u32,
    /// Seconds it stays open after the last participant left.
    pub departure_timeout: u32,
    /// At most this many participants (0: no limit).
    pub max_participants: u32,
    /// The request the service created it with, from its
    /// [`DesiredRooms`] registry: what the API cannot read back (automatic
    /// egress, agent dispatches, playout delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<proto::CreateRoomRequest>,
    /// Who was in it, by identity.
    pub participants: Vec<ParticipantState>,
    /// Its egress that was running (starting, active or ending), by id:
    /// the id, the room, the status and the request that started it.
    pub egress: Vec<proto::EgressInfo>,
    /// Its agent dispatches (their `state` left out), by id.
    pub agent_dispatches: Vec<proto::AgentDispatch>,
}

/// One participant: what the server lets a restore set again once the
/// participant has rejoined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantState {
    /// Its identity, unique in the room.
    pub identity: String,
    /// Its display name.
    pub name: String,
    /// Its metadata.
    pub metadata: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// What it may do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<proto::ParticipantPermission>,
}

/// A part of the state that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unreadable {
    /// What (`egress`, `sip inbound trunks`, `room standup`).
    pub what: String,
    /// Why, as the server said it.
    pub reason: String,
}

/// How many of each thing a state holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateCounts {
    /// Rooms.
    pub rooms: usize,
    /// Participants in all rooms.
    pub participants: usize,
    /// Egress running.
    pub egress: usize,
    /// Agent dispatches.
    pub agent_dispatches: usize,
    /// Ingress.
    pub ingress: usize,
    /// SIP inbound and outbound trunks.
    pub sip_trunks: usize,
    /// SIP dispatch rules.
    pub sip_dispatch_rules: usize,
    /// Rooms with a recorded desired request.
    pub desired_rooms: usize,
    /// Parts that could not be read.
    pub unreadable: usize,
}

impl LiveKitState {
    /// Reads the state of `livekit` through its API: the rooms, then each
    /// room's participants and agent dispatches (up to
    /// [`LiveKit::concurrency`] calls at once), the running egress, the
    /// ingress, the SIP trunks and dispatch rules. Each room takes the
    /// request `desired` recorded for it, if any.
    ///
    /// A part the server does not offer (`unimplemented`) or the key may
    /// not read (`permission_denied`) is recorded in
    /// [`LiveKitState::unreadable`], as is a room deleted while it was read.
    ///
    /// # Errors
    /// Any other failure: the server unreachable, the key refused, an
    /// answer that is not LiveKit's.
    pub async fn read(livekit: &LiveKit, desired: Option<&DesiredRooms>) -> Result<Self> {
        let api = livekit.api();
        let listed = livekit
            .call(calls::LIST_ROOMS, api.room().list_rooms(Vec::new()))
            .await?;
        let mut unreadable = Vec::new();
        let running = tolerate(
            "egress",
            livekit
                .call(
                    calls::LIST_EGRESS,
                    api.egress().list_egress(EgressListOptions {
                        filter: EgressListFilter::All,
                        active: true,
                        page_token: None,
                    }),
                )
                .await,
            &mut unreadable,
        )?
        .unwrap_or_default();
        let mut egress_by_room: BTreeMap<String, Vec<proto::EgressInfo>> = BTreeMap::new();
        for info in running {
            egress_by_room
                .entry(info.room_name.clone())
                .or_default()
                .push(kept_egress(info));
        }
        // The futures made first, then run a few at a time (a closure
        // making them inside the stream would not be `Send` for every
        // lifetime, as dr-core's `Backup` needs).
        let reading: Vec<_> = listed
            .into_iter()
            .map(|room| read_room(livekit, room))
            .collect();
        let rooms: Vec<(proto::Room, Option<RoomParts>)> = stream::iter(reading)
            .buffer_unordered(livekit.concurrency())
            .try_collect()
            .await?;
        let mut room_states = Vec::with_capacity(rooms.len());
        for (room, parts) in rooms {
            let Some(parts) = parts else {
                unreadable.push(Unreadable {
                    what: format!("room {}", room.name),
                    reason: "deleted while the state was read".into(),
                });
                continue;
            };
            let mut egress = egress_by_room.remove(&room.name).unwrap_or_default();
            egress.sort_by(|a, b| a.egress_id.cmp(&b.egress_id));
            room_states.push(RoomState {
                desired: desired.and_then(|d| d.get(&room.name)),
                name: room.name,
                sid: room.sid,
                metadata: room.metadata,
                empty_timeout: room.empty_timeout,
                departure_timeout: room.departure_timeout,
                max_participants: room.max_participants,
                participants: parts.participants,
                egress,
                agent_dispatches: parts.dispatches,
            });
        }
        room_states.sort_by(|a, b| a.name.cmp(&b.name));

        let mut ingress = tolerate(
            "ingress",
            livekit
                .call(
                    calls::LIST_INGRESS,
                    api.ingress().list_ingress(IngressListFilter::All),
                )
                .await,
            &mut unreadable,
        )?
        .unwrap_or_default();
        for info in &mut ingress {
            info.state = None;
        }
        ingress.sort_by(|a, b| a.ingress_id.cmp(&b.ingress_id));

        let mut inbound = tolerate(
            "sip inbound trunks",
            livekit
                .call(
                    calls::LIST_INBOUND_TRUNKS,
                    api.sip()
                        .list_sip_inbound_trunk(ListSIPInboundTrunkFilter::All),
                )
                .await,
            &mut unreadable,
        )?
        .unwrap_or_default();
        for trunk in &mut inbound {
            trunk.created_at = None;
            trunk.updated_at = None;
        }
        inbound.sort_by(|a, b| a.sip_trunk_id.cmp(&b.sip_trunk_id));
        let mut outbound = tolerate(
            "sip outbound trunks",
            livekit
                .call(
                    calls::LIST_OUTBOUND_TRUNKS,
                    api.sip()
                        .list_sip_outbound_trunk(ListSIPOutboundTrunkFilter::All),
                )
                .await,
            &mut unreadable,
        )?
        .unwrap_or_default();
        for trunk in &mut outbound {
            trunk.created_at = None;
            trunk.updated_at = None;
        }
        outbound.sort_by(|a, b| a.sip_trunk_id.cmp(&b.sip_trunk_id));
        let mut rules = tolerate(
            "sip dispatch rules",
            livekit
                .call(
                    calls::LIST_DISPATCH_RULES,
                    api.sip()
                        .list_sip_dispatch_rule(ListSIPDispatchRuleFilter::All),
                )
                .await,
            &mut unreadable,
        )?
        .unwrap_or_default();
        for rule in &mut rules {
            rule.created_at = None;
            rule.updated_at = None;
        }
        rules.sort_by(|a, b| a.sip_dispatch_rule_id.cmp(&b.sip_dispatch_rule_id));

        // Egress of rooms not listed (created in between): not part of a
        // room that is restored, and said so.
        for room in egress_by_room.into_keys() {
            unreadable.push(Unreadable {
                what: format!("egress of room {room}"),
                reason: "the room was not listed when the state was read".into(),
            });
        }
        Ok(Self {
            format: STATE_FORMAT,
            rooms: room_states,
            ingress,
            sip_inbound_trunks: inbound,
            sip_outbound_trunks: outbound,
            sip_dispatch_rules: rules,
            unreadable,
        })
    }

    /// How many of each thing it holds.
    pub fn counts(&self) -> StateCounts {
        StateCounts {
            rooms: self.rooms.len(),
            participants: self.rooms.iter().map(|r| r.participants.len()).sum(),
            egress: self.rooms.iter().map(|r| r.egress.len()).sum(),
            agent_dispatches: self.rooms.iter().map(|r| r.agent_dispatches.len()).sum(),
            ingress: self.ingress.len(),
            sip_trunks: self.sip_inbound_trunks.len() + self.sip_outbound_trunks.len(),
            sip_dispatch_rules: self.sip_dispatch_rules.len(),
            desired_rooms: self.rooms.iter().filter(|r| r.desired.is_some()).count(),
            unreadable: self.unreadable.len(),
        }
    }

    /// The room named `name`.
    pub fn room(&self, name: &str) -> Option<&RoomState> {
        self.rooms
            .binary_search_by(|r| r.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.rooms[i])
    }

    /// The state as canonical JSON: object keys sorted at every level, no
    /// spaces. The same state always gives the same bytes (maps in
    /// LiveKit's messages have no order of their own), so an unchanged
    /// state is recognised by its digest and stored chunks are reused.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if it does not serialize (it always does).
    pub fn to_canonical_json(&self) -> Result<Vec<u8>> {
        let value = serde_json::to_value(self).map_err(|e| Error::Corrupt {
            snapshot: "(new)".into(),
            reason: format!("the state does not serialize: {e}"),
        })?;
        let mut out = Vec::new();
        write_canonical(&value, &mut out);
        Ok(out)
    }

    /// Reads a state from its JSON.
    ///
    /// # Errors
    /// [`Error::UnknownFormat`] for a format this drkit does not know,
    /// [`Error::Corrupt`] for anything else that does not read.
    pub fn from_json(json: &[u8], snapshot: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        let format: Format = serde_json::from_slice(json).map_err(|e| Error::Corrupt {
            snapshot: snapshot.to_owned(),
            reason: format!("its state does not read: {e}"),
        })?;
        if format.format != STATE_FORMAT {
            return Err(Error::UnknownFormat {
                snapshot: snapshot.to_owned(),
                found: format.format,
                known: STATE_FORMAT,
            });
        }
        serde_json::from_slice(json).map_err(|e| Error::Corrupt {
            snapshot: snapshot.to_owned(),
            reason: format!("its state does not read: {e}"),
        })
    }
}

/// A room's participants and agent dispatches.
struct RoomParts {
    participants: Vec<ParticipantState>,
    dispatches: Vec<proto::AgentDispatch>,
}

/// Reads `room`'s parts; `None` if it was deleted in between.
async fn read_room(
    livekit: &LiveKit,
    room: proto::Room,
) -> Result<(proto::Room, Option<RoomParts>)> {
    let parts = read_parts(livekit, &room.name).await?;
    Ok((room, parts))
}

/// Reads `room`'s participants and agent dispatches; `None` if it was
/// deleted in between.
async fn read_parts(livekit: &LiveKit, room: &str) -> Result<Option<RoomParts>> {
    let api = livekit.api();
    let (participants, dispatches) = tokio::join!(
        livekit.call(calls::LIST_PARTICIPANTS, api.room().list_participants(room)),
        livekit.call(
            calls::LIST_DISPATCH,
            api.agent_dispatch().list_dispatch(room)
        ),
    );
    let participants = match participants {
        Ok(list) => list,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let dispatches = match dispatches {
        Ok(list) => list,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut participants: Vec<ParticipantState> = participants
        .into_iter()
        .map(|p| ParticipantState {
            identity: p.identity,
            name: p.name,
            metadata: p.metadata,
            attributes: p.attributes.into_iter().collect(),
            permission: p.permission,
        })
        .collect();
    participants.sort_by(|a, b| a.identity.cmp(&b.identity));
    let mut dispatches: Vec<proto::AgentDispatch> = dispatches
        .into_iter()
        .map(|mut d| {
            d.state = None;
            d
        })
        .collect();
    dispatches.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Some(RoomParts {
        participants,
        dispatches,
    }))
}

/// What of a running egress is kept: its id, room, status and request.
fn kept_egress(info: proto::EgressInfo) -> proto::EgressInfo {
    proto::EgressInfo {
        egress_id: info.egress_id,
        room_id: info.room_id,
        room_name: info.room_name,
        source_type: info.source_type,
        status: info.status,
        request: info.request,
        ..Default::default()
    }
}

/// A part's answer: the part, or `None` recorded in `unreadable` where
/// the server does not offer it or the key may not read it.
fn tolerate<T>(
    what: &str,
    answer: Result<T>,
    unreadable: &mut Vec<Unreadable>,
) -> Result<Option<T>> {
    match answer {
        Ok(part) => Ok(Some(part)),
        Err(e @ Error::PermissionDenied { .. }) => {
            unreadable.push(Unreadable {
                what: what.to_owned(),
                reason: e.to_string(),
            });
            Ok(None)
        }
        Err(e) if e.is_unimplemented() => {
            unreadable.push(Unreadable {
                what: what.to_owned(),
                reason: e.to_string(),
            });
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Writes `value` as JSON with every object's keys sorted.
fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // A string always serializes.
                out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> LiveKitState {
        let mut attributes = std::collections::HashMap::new();
        for i in 0..20 {
            attributes.insert(format!("k{i}"), format!("v{i}"));
        }
        LiveKitState {
            format: STATE_FORMAT,
            rooms: vec![RoomState {
                name: "standup".into(),
                sid: "RM_abc".into(),
                metadata: "{\"topic\":\"x\"}".into(),
                empty_timeout: 300,
                departure_timeout: 20,
                max_participants: 50,
                desired: Some(proto::CreateRoomRequest {
                    name: "standup".into(),
                    tags: attributes.clone(),
                    ..Default::default()
                }),
                participants: vec![ParticipantState {
                    identity: "alice".into(),
                    name: "Alice".into(),
                    metadata: String::new(),
                    attributes: BTreeMap::from([("role".into(), "host".into())]),
                    permission: Some(proto::ParticipantPermission {
                        can_publish: true,
                        ..Default::default()
                    }),
                }],
                egress: Vec::new(),
                agent_dispatches: Vec::new(),
            }],
            ingress: Vec::new(),
            sip_inbound_trunks: vec![proto::SipInboundTrunkInfo {
                sip_trunk_id: "ST_1".into(),
                headers: attributes,
                ..Default::default()
            }],
            sip_outbound_trunks: Vec::new(),
            sip_dispatch_rules: Vec::new(),
            unreadable: Vec::new(),
        }
    }

    #[test]
    fn the_same_state_gives_the_same_bytes_and_reads_back() {
        let a = state().to_canonical_json().unwrap();
        // The maps inside are hash maps: a clone iterates in another order.
        for _ in 0..5 {
            assert_eq!(state().to_canonical_json().unwrap(), a);
        }
        let back = LiveKitState::from_json(&a, "s").unwrap();
        assert_eq!(back, state());
        assert_eq!(back.counts().participants, 1);
        assert_eq!(back.counts().desired_rooms, 1);
        assert!(back.room("standup").is_some());
        assert!(back.room("nope").is_none());
    }

    #[test]
    fn unknown_formats_and_damage_are_errors() {
        let mut json: serde_json::Value =
            serde_json::from_slice(&state().to_canonical_json().unwrap()).unwrap();
        json["format"] = 2.into();
        let err = LiveKitState::from_json(json.to_string().as_bytes(), "s").unwrap_err();
        assert!(
            matches!(err, Error::UnknownFormat { found: 2, .. }),
            "{err}"
        );
        let whole = state().to_canonical_json().unwrap();
        let err = LiveKitState::from_json(&whole[..whole.len() / 2], "s").unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }
}
