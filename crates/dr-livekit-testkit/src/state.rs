//! What the server holds, and the services' semantics over it (`pkg/service/*.go`,
//! `pkg/rtc/room.go` of livekit/livekit, read, not copied).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use livekit_protocol as lk;
use livekit_protocol::egress_info::Request as EgressRequest;
use tokio::sync::mpsc::UnboundedSender;

use crate::ids::{Ids, now_ms, now_ns, now_s};
use crate::twirp::{Code, TwirpError, TwirpResult};

const ROOM_NOT_FOUND: &str = "requested room does not exist";
const PARTICIPANT_NOT_FOUND: &str = "participant does not exist";
const EGRESS_NOT_FOUND: &str = "egress does not exist";
const INGRESS_NOT_FOUND: &str = "ingress does not exist";
const TRUNK_NOT_FOUND: &str = "requested sip trunk does not exist";
const RULE_NOT_FOUND: &str = "requested sip dispatch rule does not exist";

/// A room, its participants, its agent dispatches, and what its `CreateRoomRequest`s asked
/// for that LiveKit keeps in `RoomInternal` and no API returns.
#[derive(Debug)]
pub(crate) struct RoomEntry {
    pub(crate) room: lk::Room,
    pub(crate) config: lk::CreateRoomRequest,
    pub(crate) participants: BTreeMap<String, lk::ParticipantInfo>,
    pub(crate) dispatches: BTreeMap<String, lk::AgentDispatch>,
}

/// Everything the server holds, behind the server's one lock.
#[derive(Debug)]
pub(crate) struct State {
    ids: Ids,
    rtmp_url: String,
    whip_url: String,
    rooms: BTreeMap<String, RoomEntry>,
    participants: usize,
    egress: BTreeMap<String, lk::EgressInfo>,
    egress_by_room: HashMap<String, BTreeSet<String>>,
    ingress: BTreeMap<String, lk::IngressInfo>,
    inbound: BTreeMap<String, lk::SipInboundTrunkInfo>,
    outbound: BTreeMap<String, lk::SipOutboundTrunkInfo>,
    rules: BTreeMap<String, lk::SipDispatchRuleInfo>,
    webhooks: Option<UnboundedSender<lk::WebhookEvent>>,
}

fn status_name(status: i32) -> &'static str {
    lk::EgressStatus::try_from(status)
        .map(|s| s.as_str_name())
        .unwrap_or("EGRESS_STARTING")
}

fn is_active(status: i32) -> bool {
    status == lk::EgressStatus::EgressStarting as i32
        || status == lk::EgressStatus::EgressActive as i32
        || status == lk::EgressStatus::EgressEnding as i32
}

fn is_ended(status: i32) -> bool {
    !is_active(status)
}

/// Sets a protobuf `Timestamp` (pbjson's, not named here) to now, to the whole second:
/// pbjson writes a fraction as `.123456789+00:00`, which protobuf-es (the Node SDK) refuses
/// (Go writes `Z`); whole seconds come out as `+00:00`, which it takes.
macro_rules! stamp {
    ($field:expr) => {{
        let ts = $field.get_or_insert_with(Default::default);
        ts.seconds = now_s();
        ts.nanos = 0;
    }};
}

/// LiveKit's `ListUpdate`: `set` replaces (or `clear` empties), then `remove`, then `add`
/// (without duplicates).
fn apply_list(list: &mut Vec<String>, update: &lk::ListUpdate) {
    if update.clear {
        list.clear();
    }
    if !update.set.is_empty() {
        list.clone_from(&update.set);
    }
    list.retain(|item| !update.remove.contains(item));
    for item in &update.add {
        if !list.contains(item) {
            list.push(item.clone());
        }
    }
}

impl State {
    pub(crate) fn new(
        rtmp_url: String,
        whip_url: String,
        webhooks: Option<UnboundedSender<lk::WebhookEvent>>,
    ) -> Self {
        State {
            ids: Ids::new(),
            rtmp_url,
            whip_url,
            rooms: BTreeMap::new(),
            participants: 0,
            egress: BTreeMap::new(),
            egress_by_room: HashMap::new(),
            ingress: BTreeMap::new(),
            inbound: BTreeMap::new(),
            outbound: BTreeMap::new(),
            rules: BTreeMap::new(),
            webhooks,
        }
    }

    pub(crate) fn room_count(&self) -> usize {
        self.rooms.len()
    }

    pub(crate) fn participant_count(&self) -> usize {
        self.participants
    }

    /// Queues a webhook, if a URL is set; delivery happens on another task.
    fn notify(&mut self, event: &str, fill: impl FnOnce(&mut lk::WebhookEvent)) {
        let Some(sender) = &self.webhooks else {
            return;
        };
        let mut e = lk::WebhookEvent {
            event: event.to_owned(),
            id: self.ids.id("EV_"),
            created_at: now_s(),
            ..Default::default()
        };
        fill(&mut e);
        let _ = sender.send(e);
    }

    // ---- rooms ------------------------------------------------------------------------

    /// The room, created as LiveKit's `StandardRoomAllocator.CreateRoom` creates a missing
    /// one (the default config: empty timeout 300 s, departure timeout 20 s), with its agent
    /// dispatches as `rtc.NewRoom` makes them.
    fn ensure_room(&mut self, name: &str) -> bool {
        if self.rooms.contains_key(name) {
            return false;
        }
        let room = lk::Room {
            sid: self.ids.id("RM_"),
            name: name.to_owned(),
            empty_timeout: 300,
            departure_timeout: 20,
            creation_time: now_s(),
            creation_time_ms: now_ms(),
            turn_password: self.ids.with_len("", 32),
            ..Default::default()
        };
        let started = room.clone();
        self.rooms.insert(
            name.to_owned(),
            RoomEntry {
                room,
                config: lk::CreateRoomRequest {
                    name: name.to_owned(),
                    ..Default::default()
                },
                participants: BTreeMap::new(),
                dispatches: BTreeMap::new(),
            },
        );
        self.notify("room_started", |e| e.room = Some(started));
        true
    }

    /// `createAgentDispatchesFromRoomAgent`: one dispatch per `agents` entry, or one for
    /// the unnamed agent when the room asked for none.
    fn dispatch_room_agents(&mut self, name: &str) {
        let Some(entry) = self.rooms.get(name) else {
            return;
        };
        let mut wanted = entry.config.agents.clone();
        if wanted.is_empty() {
            wanted.push(lk::RoomAgentDispatch::default());
        }
        let made: Vec<lk::AgentDispatch> = wanted
            .into_iter()
            .map(|a| lk::AgentDispatch {
                id: self.ids.id("AD_"),
                agent_name: a.agent_name,
                room: name.to_owned(),
                metadata: a.metadata,
                restart_policy: a.restart_policy,
                deployment: a.deployment,
                attributes: a.attributes,
                state: Some(lk::AgentDispatchState {
                    created_at: now_ns(),
                    ..Default::default()
                }),
            })
            .collect();
        if let Some(entry) = self.rooms.get_mut(name) {
            for d in made {
                entry.dispatches.insert(d.id.clone(), d);
            }
        }
    }

    pub(crate) fn create_room(&mut self, req: lk::CreateRoomRequest) -> TwirpResult<lk::Room> {
        let created = self.ensure_room(&req.name);
        let entry = self.rooms.get_mut(&req.name).expect("just ensured");
        let room = &mut entry.room;
        if req.empty_timeout > 0 {
            room.empty_timeout = req.empty_timeout;
        }
        if req.departure_timeout > 0 {
            room.departure_timeout = req.departure_timeout;
        }
        if req.max_participants > 0 {
            room.max_participants = req.max_participants;
        }
        if !req.metadata.is_empty() {
            room.metadata.clone_from(&req.metadata);
        }
        let config = &mut entry.config;
        if let Some(egress) = req.egress {
            let kept = config.egress.get_or_insert_with(Default::default);
            if egress.room.is_some() {
                kept.room = egress.room;
            }
            if egress.participant.is_some() {
                kept.participant = egress.participant;
            }
            if egress.tracks.is_some() {
                kept.tracks = egress.tracks;
            }
        }
        if !req.agents.is_empty() {
            config.agents = req.agents;
        }
        if req.min_playout_delay > 0 || req.max_playout_delay > 0 {
            config.min_playout_delay = req.min_playout_delay;
            config.max_playout_delay = req.max_playout_delay;
        }
        if req.sync_streams {
            config.sync_streams = true;
        }
        let room = room.clone();
        if created {
            self.dispatch_room_agents(&req.name);
        }
        Ok(room)
    }

    pub(crate) fn list_rooms(&self, req: &lk::ListRoomsRequest) -> lk::ListRoomsResponse {
        let rooms = if req.names.is_empty() {
            self.rooms.values().map(|e| e.room.clone()).collect()
        } else {
            req.names
                .iter()
                .filter_map(|n| self.rooms.get(n))
                .map(|e| e.room.clone())
                .collect()
        };
        lk::ListRoomsResponse { rooms }
    }

    /// Removes a room as a closing room goes: its participants leave, its active egress
    /// ends ABORTED, its dispatches go with it.
    fn close_room(&mut self, name: &str) -> Option<RoomEntry> {
        let entry = self.rooms.remove(name)?;
        self.participants -= entry.participants.len();
        for p in entry.participants.values() {
            let (room, p) = (entry.room.clone(), p.clone());
            self.notify("participant_left", |e| {
                e.room = Some(room);
                e.participant = Some(p);
            });
        }
        let active: Vec<String> = self
            .egress_by_room
            .get(name)
            .into_iter()
            .flatten()
            .filter(|id| self.egress.get(*id).is_some_and(|i| is_active(i.status)))
            .cloned()
            .collect();
        for id in active {
            let _ = self.set_egress_status(&id, lk::EgressStatus::EgressAborted);
        }
        let mut finished = entry.room.clone();
        finished.num_participants = 0;
        self.notify("room_finished", |e| e.room = Some(finished));
        Some(entry)
    }

    pub(crate) fn delete_room(&mut self, req: &lk::DeleteRoomRequest) -> TwirpResult<()> {
        self.close_room(&req.room)
            .map(|_| ())
            .ok_or_else(|| TwirpError::not_found(ROOM_NOT_FOUND))
    }

    pub(crate) fn update_room_metadata(
        &mut self,
        req: lk::UpdateRoomMetadataRequest,
    ) -> TwirpResult<lk::Room> {
        let entry = self
            .rooms
            .get_mut(&req.room)
            .ok_or_else(|| TwirpError::not_found(ROOM_NOT_FOUND))?;
        entry.room.metadata = req.metadata;
        Ok(entry.room.clone())
    }

    pub(crate) fn list_participants(&self, room: &str) -> lk::ListParticipantsResponse {
        lk::ListParticipantsResponse {
            participants: self
                .rooms
                .get(room)
                .map(|e| e.participants.values().cloned().collect())
                .unwrap_or_default(),
        }
    }

    fn participant_mut(
        &mut self,
        room: &str,
        identity: &str,
    ) -> TwirpResult<&mut lk::ParticipantInfo> {
        self.rooms
            .get_mut(room)
            .and_then(|e| e.participants.get_mut(identity))
            .ok_or_else(|| TwirpError::not_found(PARTICIPANT_NOT_FOUND))
    }

    pub(crate) fn get_participant(
        &mut self,
        room: &str,
        identity: &str,
    ) -> TwirpResult<lk::ParticipantInfo> {
        self.participant_mut(room, identity).map(|p| p.clone())
    }

    pub(crate) fn remove_participant(&mut self, room: &str, identity: &str) -> TwirpResult<()> {
        let entry = self
            .rooms
            .get_mut(room)
            .ok_or_else(|| TwirpError::not_found(PARTICIPANT_NOT_FOUND))?;
        let mut gone = entry
            .participants
            .remove(identity)
            .ok_or_else(|| TwirpError::not_found(PARTICIPANT_NOT_FOUND))?;
        entry.room.num_participants = entry.participants.len() as u32;
        let room = entry.room.clone();
        self.participants -= 1;
        gone.state = lk::participant_info::State::Disconnected as i32;
        self.notify("participant_left", |e| {
            e.room = Some(room);
            e.participant = Some(gone);
        });
        Ok(())
    }

    /// `ParticipantImpl.UpdateMetadata` from an admin: the name and metadata when not
    /// empty, attributes merged (an empty value removes the key); then the permission.
    pub(crate) fn update_participant(
        &mut self,
        req: lk::UpdateParticipantRequest,
    ) -> TwirpResult<lk::ParticipantInfo> {
        let p = self.participant_mut(&req.room, &req.identity)?;
        if !req.name.is_empty() {
            p.name = req.name;
        }
        if !req.metadata.is_empty() {
            p.metadata = req.metadata;
        }
        for (k, v) in req.attributes {
            if v.is_empty() {
                p.attributes.remove(&k);
            } else {
                p.attributes.insert(k, v);
            }
        }
        if req.permission.is_some() {
            p.permission = req.permission;
        }
        p.version += 1;
        Ok(p.clone())
    }

    /// `RoomManager.MutePublishedTrack`: remote unmute is off by default.
    pub(crate) fn mute_published_track(
        &mut self,
        req: &lk::MuteRoomTrackRequest,
    ) -> TwirpResult<lk::MuteRoomTrackResponse> {
        let p = self.participant_mut(&req.room, &req.identity)?;
        if !req.muted {
            return Err(TwirpError::new(
                Code::FailedPrecondition,
                "remote unmute not enabled",
            ));
        }
        let track = p
            .tracks
            .iter_mut()
            .find(|t| t.sid == req.track_sid)
            .ok_or_else(|| TwirpError::not_found("track is not found"))?;
        track.muted = true;
        Ok(lk::MuteRoomTrackResponse {
            track: Some(track.clone()),
        })
    }

    pub(crate) fn require_participant(&mut self, room: &str, identity: &str) -> TwirpResult<()> {
        self.participant_mut(room, identity).map(|_| ())
    }

    pub(crate) fn require_room(&self, room: &str) -> TwirpResult<()> {
        if self.rooms.contains_key(room) {
            Ok(())
        } else {
            Err(TwirpError::not_found(ROOM_NOT_FOUND))
        }
    }

    /// A participant joins (a test control): the room is created if missing, as
    /// `room.auto_create` (on by default) does.
    pub(crate) fn join(
        &mut self,
        room: &str,
        mut p: lk::ParticipantInfo,
    ) -> (lk::Room, lk::ParticipantInfo) {
        if self.ensure_room(room) {
            self.dispatch_room_agents(room);
        }
        p.sid = self.ids.id("PA_");
        p.state = lk::participant_info::State::Active as i32;
        p.joined_at = now_s();
        p.joined_at_ms = now_ms();
        let entry = self.rooms.get_mut(room).expect("just ensured");
        if entry
            .participants
            .insert(p.identity.clone(), p.clone())
            .is_none()
        {
            self.participants += 1;
        }
        entry.room.num_participants = entry.participants.len() as u32;
        let r = entry.room.clone();
        let (room_info, joined) = (r.clone(), p.clone());
        self.notify("participant_joined", |e| {
            e.room = Some(room_info);
            e.participant = Some(joined);
        });
        (r, p)
    }

    pub(crate) fn room_config(&self, room: &str) -> Option<lk::CreateRoomRequest> {
        self.rooms.get(room).map(|e| e.config.clone())
    }

    /// Wipes what a LiveKit node (or its Redis) loses on a restart: rooms, participants,
    /// agent dispatches; their active egress ends ABORTED.
    pub(crate) fn restart(&mut self) {
        let names: Vec<String> = self.rooms.keys().cloned().collect();
        for name in names {
            self.close_room(&name);
        }
    }

    // ---- egress -----------------------------------------------------------------------

    pub(crate) fn start_egress(
        &mut self,
        room_name: &str,
        source_type: lk::EgressSourceType,
        request: EgressRequest,
    ) -> TwirpResult<lk::EgressInfo> {
        let room_id = if room_name.is_empty() {
            String::new()
        } else {
            self.rooms
                .get(room_name)
                .ok_or_else(|| TwirpError::not_found(ROOM_NOT_FOUND))?
                .room
                .sid
                .clone()
        };
        let info = lk::EgressInfo {
            egress_id: self.ids.id("EG_"),
            room_id,
            room_name: room_name.to_owned(),
            source_type: source_type as i32,
            status: lk::EgressStatus::EgressStarting as i32,
            updated_at: now_ns(),
            request: Some(request),
            ..Default::default()
        };
        if !room_name.is_empty() {
            self.egress_by_room
                .entry(room_name.to_owned())
                .or_default()
                .insert(info.egress_id.clone());
        }
        self.egress.insert(info.egress_id.clone(), info.clone());
        let started = info.clone();
        self.notify("egress_started", |e| e.egress_info = Some(started));
        Ok(info)
    }

    pub(crate) fn list_egress(
        &self,
        req: &lk::ListEgressRequest,
    ) -> TwirpResult<lk::ListEgressResponse> {
        let keep = |i: &&lk::EgressInfo| {
            (!req.active || is_active(i.status))
                && (req.room_name.is_empty() || i.room_name == req.room_name)
        };
        let items: Vec<lk::EgressInfo> = if !req.egress_id.is_empty() {
            let info = self
                .egress
                .get(&req.egress_id)
                .ok_or_else(|| TwirpError::not_found(EGRESS_NOT_FOUND))?;
            std::iter::once(info).filter(keep).cloned().collect()
        } else if !req.room_name.is_empty() {
            self.egress_by_room
                .get(&req.room_name)
                .into_iter()
                .flatten()
                .filter_map(|id| self.egress.get(id))
                .filter(keep)
                .cloned()
                .collect()
        } else {
            self.egress.values().filter(keep).cloned().collect()
        };
        Ok(lk::ListEgressResponse {
            items,
            ..Default::default()
        })
    }

    /// StopEgress: a starting or active egress goes ENDING; any other is a
    /// failed_precondition, as LiveKit answers when the worker no longer has it.
    pub(crate) fn stop_egress(&mut self, egress_id: &str) -> TwirpResult<lk::EgressInfo> {
        let info = self
            .egress
            .get(egress_id)
            .ok_or_else(|| TwirpError::not_found(EGRESS_NOT_FOUND))?;
        if info.status != lk::EgressStatus::EgressStarting as i32
            && info.status != lk::EgressStatus::EgressActive as i32
        {
            return Err(TwirpError::new(
                Code::FailedPrecondition,
                format!(
                    "egress with status {} cannot be stopped",
                    status_name(info.status)
                ),
            ));
        }
        self.set_egress_status(egress_id, lk::EgressStatus::EgressEnding)
            .ok_or_else(|| TwirpError::not_found(EGRESS_NOT_FOUND))
    }

    /// Moves an egress to `status` (a test control, and the server's own transitions):
    /// ACTIVE sets `started_at`, an ended status `ended_at`; webhooks `egress_updated` or
    /// `egress_ended`.
    pub(crate) fn set_egress_status(
        &mut self,
        egress_id: &str,
        status: lk::EgressStatus,
    ) -> Option<lk::EgressInfo> {
        let info = self.egress.get_mut(egress_id)?;
        let now = now_ns();
        info.status = status as i32;
        info.updated_at = now;
        if status == lk::EgressStatus::EgressActive && info.started_at == 0 {
            info.started_at = now;
        }
        if is_ended(info.status) && info.ended_at == 0 {
            info.ended_at = now;
        }
        let info = info.clone();
        let event = if is_ended(info.status) {
            "egress_ended"
        } else {
            "egress_updated"
        };
        let sent = info.clone();
        self.notify(event, |e| e.egress_info = Some(sent));
        Some(info)
    }

    // ---- ingress ----------------------------------------------------------------------

    pub(crate) fn create_ingress(
        &mut self,
        req: lk::CreateIngressRequest,
    ) -> TwirpResult<lk::IngressInfo> {
        let input = lk::IngressInput::try_from(req.input_type)
            .map_err(|_| TwirpError::invalid("invalid ingress type"))?;
        let (url, stream_key) = match input {
            lk::IngressInput::RtmpInput => (self.rtmp_url.clone(), self.ids.id("")),
            lk::IngressInput::WhipInput => (self.whip_url.clone(), self.ids.id("")),
            lk::IngressInput::UrlInput => {
                if req.url.is_empty() {
                    return Err(TwirpError::invalid("missing URL parameter"));
                }
                (req.url.clone(), String::new())
            }
        };
        let mut info = lk::IngressInfo {
            ingress_id: self.ids.id("IN_"),
            name: req.name,
            stream_key,
            url,
            input_type: req.input_type,
            audio: req.audio,
            video: req.video,
            enable_transcoding: req.enable_transcoding,
            room_name: req.room_name,
            participant_identity: req.participant_identity,
            participant_name: req.participant_name,
            participant_metadata: req.participant_metadata,
            reusable: input != lk::IngressInput::UrlInput,
            state: Some(lk::IngressState::default()),
            enabled: req.enabled,
            ..Default::default()
        };
        update_enable_transcoding(&mut info);
        self.ingress.insert(info.ingress_id.clone(), info.clone());
        Ok(info)
    }

    pub(crate) fn update_ingress(
        &mut self,
        req: lk::UpdateIngressRequest,
    ) -> TwirpResult<lk::IngressInfo> {
        let info = self
            .ingress
            .get_mut(&req.ingress_id)
            .ok_or_else(|| TwirpError::not_found(INGRESS_NOT_FOUND))?;
        if !info.reusable {
            return Err(TwirpError::invalid(
                "ingress is not reusable and cannot be modified",
            ));
        }
        if !req.name.is_empty() {
            info.name = req.name;
        }
        if !req.room_name.is_empty() {
            info.room_name = req.room_name;
        }
        if !req.participant_identity.is_empty() {
            info.participant_identity = req.participant_identity;
        }
        if !req.participant_name.is_empty() {
            info.participant_name = req.participant_name;
        }
        if req.enable_transcoding.is_some() {
            info.enable_transcoding = req.enable_transcoding;
        }
        if !req.participant_metadata.is_empty() {
            info.participant_metadata = req.participant_metadata;
        }
        if req.audio.is_some() {
            info.audio = req.audio;
        }
        if req.video.is_some() {
            info.video = req.video;
        }
        if req.enabled.is_some() {
            info.enabled = req.enabled;
        }
        update_enable_transcoding(info);
        Ok(info.clone())
    }

    pub(crate) fn list_ingress(
        &self,
        req: &lk::ListIngressRequest,
    ) -> TwirpResult<lk::ListIngressResponse> {
        let items = if !req.ingress_id.is_empty() {
            vec![
                self.ingress
                    .get(&req.ingress_id)
                    .cloned()
                    .ok_or_else(|| TwirpError::not_found(INGRESS_NOT_FOUND))?,
            ]
        } else {
            self.ingress
                .values()
                .filter(|i| req.room_name.is_empty() || i.room_name == req.room_name)
                .cloned()
                .collect()
        };
        Ok(lk::ListIngressResponse {
            items,
            ..Default::default()
        })
    }

    pub(crate) fn delete_ingress(&mut self, ingress_id: &str) -> TwirpResult<lk::IngressInfo> {
        let mut info = self
            .ingress
            .remove(ingress_id)
            .ok_or_else(|| TwirpError::not_found(INGRESS_NOT_FOUND))?;
        info.state.get_or_insert_with(Default::default).status =
            lk::ingress_state::Status::EndpointInactive as i32;
        Ok(info)
    }

    // ---- SIP --------------------------------------------------------------------------

    pub(crate) fn create_inbound_trunk(
        &mut self,
        trunk: Option<lk::SipInboundTrunkInfo>,
    ) -> TwirpResult<lk::SipInboundTrunkInfo> {
        let mut info = trunk.ok_or_else(|| TwirpError::invalid("trunk is required"))?;
        if !info.sip_trunk_id.is_empty() {
            return Err(TwirpError::invalid("trunk ID must be empty"));
        }
        info.sip_trunk_id = self.ids.id("ST_");
        stamp!(info.created_at);
        self.inbound.insert(info.sip_trunk_id.clone(), info.clone());
        Ok(info)
    }

    pub(crate) fn create_outbound_trunk(
        &mut self,
        trunk: Option<lk::SipOutboundTrunkInfo>,
    ) -> TwirpResult<lk::SipOutboundTrunkInfo> {
        let mut info = trunk.ok_or_else(|| TwirpError::invalid("trunk is required"))?;
        if !info.sip_trunk_id.is_empty() {
            return Err(TwirpError::invalid("trunk ID must be empty"));
        }
        info.sip_trunk_id = self.ids.id("ST_");
        stamp!(info.created_at);
        self.outbound
            .insert(info.sip_trunk_id.clone(), info.clone());
        Ok(info)
    }

    // LiveKit still reads and writes the deprecated `media_encryption` fields.
    #[allow(deprecated)]
    pub(crate) fn update_inbound_trunk(
        &mut self,
        req: lk::UpdateSipInboundTrunkRequest,
    ) -> TwirpResult<lk::SipInboundTrunkInfo> {
        use lk::update_sip_inbound_trunk_request::Action;
        let info = self
            .inbound
            .get_mut(&req.sip_trunk_id)
            .ok_or_else(|| TwirpError::not_found(TRUNK_NOT_FOUND))?;
        match req.action {
            Some(Action::Replace(mut new)) => {
                new.sip_trunk_id.clone_from(&info.sip_trunk_id);
                new.created_at = info.created_at;
                *info = new;
            }
            Some(Action::Update(u)) => {
                if let Some(l) = &u.numbers {
                    apply_list(&mut info.numbers, l);
                }
                if let Some(l) = &u.allowed_addresses {
                    apply_list(&mut info.allowed_addresses, l);
                }
                if let Some(l) = &u.allowed_numbers {
                    apply_list(&mut info.allowed_numbers, l);
                }
                if let Some(v) = u.auth_username {
                    info.auth_username = v;
                }
                if let Some(v) = u.auth_password {
                    info.auth_password = v;
                }
                if let Some(v) = u.auth_realm {
                    info.auth_realm = v;
                }
                if let Some(v) = u.name {
                    info.name = v;
                }
                if let Some(v) = u.metadata {
                    info.metadata = v;
                }
                if let Some(v) = u.media_encryption {
                    info.media_encryption = v;
                }
                if u.media.is_some() {
                    info.media = u.media;
                }
            }
            None => {
                return Err(TwirpError::new(
                    Code::Internal,
                    "missing or unsupported action",
                ));
            }
        }
        stamp!(info.updated_at);
        Ok(info.clone())
    }

    // LiveKit still reads and writes the deprecated `media_encryption` fields.
    #[allow(deprecated)]
    pub(crate) fn update_outbound_trunk(
        &mut self,
        req: lk::UpdateSipOutboundTrunkRequest,
    ) -> TwirpResult<lk::SipOutboundTrunkInfo> {
        use lk::update_sip_outbound_trunk_request::Action;
        let info = self
            .outbound
            .get_mut(&req.sip_trunk_id)
            .ok_or_else(|| TwirpError::not_found(TRUNK_NOT_FOUND))?;
        match req.action {
            Some(Action::Replace(mut new)) => {
                new.sip_trunk_id.clone_from(&info.sip_trunk_id);
                new.created_at = info.created_at;
                *info = new;
            }
            Some(Action::Update(u)) => {
                if let Some(v) = u.address {
                    info.address = v;
                }
                if let Some(v) = u.transport {
                    info.transport = v;
                }
                if let Some(v) = u.destination_country {
                    info.destination_country = v;
                }
                if let Some(l) = &u.numbers {
                    apply_list(&mut info.numbers, l);
                }
                if let Some(v) = u.auth_username {
                    info.auth_username = v;
                }
                if let Some(v) = u.auth_password {
                    info.auth_password = v;
                }
                if let Some(v) = u.name {
                    info.name = v;
                }
                if let Some(v) = u.metadata {
                    info.metadata = v;
                }
                if let Some(v) = u.media_encryption {
                    info.media_encryption = v;
                }
                if u.media.is_some() {
                    info.media = u.media;
                }
                if let Some(v) = u.from_host {
                    info.from_host = v;
                }
            }
            None => {
                return Err(TwirpError::new(
                    Code::Internal,
                    "missing or unsupported action",
                ));
            }
        }
        stamp!(info.updated_at);
        Ok(info.clone())
    }

    pub(crate) fn get_inbound_trunk(&self, id: &str) -> TwirpResult<lk::SipInboundTrunkInfo> {
        self.inbound
            .get(id)
            .cloned()
            .ok_or_else(|| TwirpError::not_found(TRUNK_NOT_FOUND))
    }

    pub(crate) fn get_outbound_trunk(&self, id: &str) -> TwirpResult<lk::SipOutboundTrunkInfo> {
        self.outbound
            .get(id)
            .cloned()
            .ok_or_else(|| TwirpError::not_found(TRUNK_NOT_FOUND))
    }

    pub(crate) fn list_inbound_trunks(
        &self,
        req: &lk::ListSipInboundTrunkRequest,
    ) -> Vec<lk::SipInboundTrunkInfo> {
        self.inbound
            .values()
            .filter(|t| req.trunk_ids.is_empty() || req.trunk_ids.contains(&t.sip_trunk_id))
            .filter(|t| {
                req.numbers.is_empty()
                    || t.numbers.is_empty()
                    || t.numbers.iter().any(|n| req.numbers.contains(n))
            })
            .cloned()
            .collect()
    }

    pub(crate) fn list_outbound_trunks(
        &self,
        req: &lk::ListSipOutboundTrunkRequest,
    ) -> Vec<lk::SipOutboundTrunkInfo> {
        self.outbound
            .values()
            .filter(|t| req.trunk_ids.is_empty() || req.trunk_ids.contains(&t.sip_trunk_id))
            .filter(|t| req.numbers.is_empty() || t.numbers.iter().any(|n| req.numbers.contains(n)))
            .cloned()
            .collect()
    }

    /// DeleteSIPTrunk removes the id from every kind of trunk; a missing one is no error
    /// (LiveKit's store deletes hash fields without looking).
    pub(crate) fn delete_trunk(&mut self, id: &str) -> TwirpResult<lk::SipTrunkInfo> {
        if id.is_empty() {
            return Err(TwirpError::invalid("trunk ID is required"));
        }
        self.inbound.remove(id);
        self.outbound.remove(id);
        Ok(lk::SipTrunkInfo {
            sip_trunk_id: id.to_owned(),
            ..Default::default()
        })
    }

    pub(crate) fn create_dispatch_rule(
        &mut self,
        req: lk::CreateSipDispatchRuleRequest,
    ) -> TwirpResult<lk::SipDispatchRuleInfo> {
        #[allow(deprecated)]
        let mut info = match req.dispatch_rule {
            Some(rule) => rule,
            None => lk::SipDispatchRuleInfo {
                rule: req.rule,
                trunk_ids: req.trunk_ids,
                hide_phone_number: req.hide_phone_number,
                inbound_numbers: req.inbound_numbers,
                name: req.name,
                metadata: req.metadata,
                attributes: req.attributes,
                room_preset: req.room_preset,
                room_config: req.room_config,
                ..Default::default()
            },
        };
        if info.rule.as_ref().and_then(|r| r.rule.as_ref()).is_none() {
            return Err(TwirpError::invalid("missing rule"));
        }
        info.sip_dispatch_rule_id = self.ids.id("SDR_");
        stamp!(info.created_at);
        self.rules
            .insert(info.sip_dispatch_rule_id.clone(), info.clone());
        Ok(info)
    }

    // LiveKit still reads and writes the deprecated `media_encryption` fields.
    #[allow(deprecated)]
    pub(crate) fn update_dispatch_rule(
        &mut self,
        req: lk::UpdateSipDispatchRuleRequest,
    ) -> TwirpResult<lk::SipDispatchRuleInfo> {
        use lk::update_sip_dispatch_rule_request::Action;
        let info = self
            .rules
            .get_mut(&req.sip_dispatch_rule_id)
            .ok_or_else(|| TwirpError::not_found(RULE_NOT_FOUND))?;
        match req.action {
            Some(Action::Replace(mut new)) => {
                new.sip_dispatch_rule_id
                    .clone_from(&info.sip_dispatch_rule_id);
                new.created_at = info.created_at;
                *info = new;
            }
            Some(Action::Update(u)) => {
                if let Some(l) = &u.trunk_ids {
                    apply_list(&mut info.trunk_ids, l);
                }
                if u.rule.is_some() {
                    info.rule = u.rule;
                }
                if let Some(v) = u.name {
                    info.name = v;
                }
                if let Some(v) = u.metadata {
                    info.metadata = v;
                }
                for (k, v) in u.attributes {
                    if v.is_empty() {
                        info.attributes.remove(&k);
                    } else {
                        info.attributes.insert(k, v);
                    }
                }
                if let Some(v) = u.media_encryption {
                    info.media_encryption = v;
                }
                if u.media.is_some() {
                    info.media = u.media;
                }
            }
            None => {
                return Err(TwirpError::new(
                    Code::Internal,
                    "missing or unsupported action",
                ));
            }
        }
        Ok(info.clone())
    }

    pub(crate) fn list_dispatch_rules(
        &self,
        req: &lk::ListSipDispatchRuleRequest,
    ) -> Vec<lk::SipDispatchRuleInfo> {
        self.rules
            .values()
            .filter(|r| {
                req.dispatch_rule_ids.is_empty()
                    || req.dispatch_rule_ids.contains(&r.sip_dispatch_rule_id)
            })
            .filter(|r| {
                req.trunk_ids.is_empty()
                    || r.trunk_ids.is_empty()
                    || r.trunk_ids.iter().any(|t| req.trunk_ids.contains(t))
            })
            .cloned()
            .collect()
    }

    pub(crate) fn delete_dispatch_rule(
        &mut self,
        id: &str,
    ) -> TwirpResult<lk::SipDispatchRuleInfo> {
        if id.is_empty() {
            return Err(TwirpError::invalid("dispatch rule ID is required"));
        }
        self.rules
            .remove(id)
            .ok_or_else(|| TwirpError::not_found(RULE_NOT_FOUND))
    }

    // ---- agent dispatch ---------------------------------------------------------------

    /// CreateDispatch creates the room if missing (`room.auto_create`), then the dispatch.
    pub(crate) fn create_dispatch(
        &mut self,
        req: lk::CreateAgentDispatchRequest,
    ) -> TwirpResult<lk::AgentDispatch> {
        if self.ensure_room(&req.room) {
            self.dispatch_room_agents(&req.room);
        }
        let dispatch = lk::AgentDispatch {
            id: self.ids.id("AD_"),
            agent_name: req.agent_name,
            room: req.room.clone(),
            metadata: req.metadata,
            restart_policy: req.restart_policy,
            deployment: req.deployment,
            attributes: req.attributes,
            state: Some(lk::AgentDispatchState {
                created_at: now_ns(),
                ..Default::default()
            }),
        };
        let entry = self.rooms.get_mut(&req.room).expect("just ensured");
        entry
            .dispatches
            .insert(dispatch.id.clone(), dispatch.clone());
        Ok(dispatch)
    }

    pub(crate) fn delete_dispatch(
        &mut self,
        req: &lk::DeleteAgentDispatchRequest,
    ) -> TwirpResult<lk::AgentDispatch> {
        let entry = self
            .rooms
            .get_mut(&req.room)
            .ok_or_else(|| TwirpError::not_found(ROOM_NOT_FOUND))?;
        entry
            .dispatches
            .remove(&req.dispatch_id)
            .ok_or_else(|| TwirpError::not_found("dispatch ID not found"))
    }

    pub(crate) fn list_dispatch(
        &self,
        req: &lk::ListAgentDispatchRequest,
    ) -> TwirpResult<lk::ListAgentDispatchResponse> {
        let entry = self
            .rooms
            .get(&req.room)
            .ok_or_else(|| TwirpError::not_found(ROOM_NOT_FOUND))?;
        Ok(lk::ListAgentDispatchResponse {
            agent_dispatches: entry
                .dispatches
                .values()
                .filter(|d| req.dispatch_id.is_empty() || d.id == req.dispatch_id)
                .cloned()
                .collect(),
        })
    }
}

/// `updateEnableTranscoding`: an explicit choice wins; else WHIP bypasses, the rest
/// transcode.
// `bypass_transcoding` is deprecated, and still set by LiveKit.
#[allow(deprecated)]
fn update_enable_transcoding(info: &mut lk::IngressInfo) {
    if let Some(on) = info.enable_transcoding {
        info.bypass_transcoding = !on;
        return;
    }
    if info.input_type == lk::IngressInput::WhipInput as i32 {
        info.enable_transcoding = Some(false);
        info.bypass_transcoding = true;
    } else {
        info.enable_transcoding = Some(true);
    }
}
