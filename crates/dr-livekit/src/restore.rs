//! [`LiveKitRestore`]: dr-core's `Restore` of a [`LiveKitState`] onto the
//! same server or a standby, through the API, with the [`Remap`] of the
//! ids the server assigned anew.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use dr_core::{
    Capabilities, ComponentId, Manifest, Operation, RecoveryReport, RecoveryTarget, Restore,
    RestoreRequest, SnapshotId, SnapshotSource, SnapshotSourceExt, StreamName, Timeline,
};
use futures_util::stream::{self, StreamExt};
use jiff::Timestamp;
use livekit_api::access_token::VideoGrants;
use livekit_api::services::egress::{EgressListFilter, EgressListOptions};
use livekit_api::services::ingress::IngressListFilter;
use livekit_api::services::room::CreateRoomOptions;
use livekit_api::services::sip::{
    ListSIPDispatchRuleFilter, ListSIPInboundTrunkFilter, ListSIPOutboundTrunkFilter,
};
use livekit_protocol as proto;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::client::{Call, Grants, LiveKit, calls};
use crate::error::{Error, Result};
use crate::rejoin::Rejoin;
use crate::snapshot::{LiveKitSnapshotDetails, STATE_STREAM};
use crate::state::{LiveKitState, RoomState};

/// What kind of thing a restore gave back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A room.
    Room,
    /// A running egress, started again.
    Egress,
    /// An agent dispatch.
    AgentDispatch,
    /// An ingress.
    Ingress,
    /// A SIP inbound trunk.
    SipInboundTrunk,
    /// A SIP outbound trunk.
    SipOutboundTrunk,
    /// A SIP dispatch rule.
    SipDispatchRule,
}

/// What a restore did with one thing of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// It was not there and was made (under a new id, in [`Remap`]).
    Created,
    /// It was there and was set as in the snapshot.
    Updated,
    /// It was there as in the snapshot (the same id, or the same thing).
    Unchanged,
    /// It could not be given back: the server's answer.
    Failed {
        /// Why.
        reason: String,
    },
}

/// One thing of the snapshot and what the restore did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restored {
    /// What kind of thing.
    pub kind: ItemKind,
    /// Its name or id in the snapshot (a room's name, an ingress's id).
    pub name: String,
    /// What was done.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// An id the server assigned anew: what the snapshot had, what the target
/// has now. Clients that keep ids (an ingress's stream key in an encoder,
/// a trunk id in a SIP provider's settings) must be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remapped {
    /// What kind of thing.
    pub kind: ItemKind,
    /// Its name (a room's, an ingress's or trunk's, an agent's).
    pub name: String,
    /// Its id in the snapshot.
    pub old_id: String,
    /// Its id on the target.
    pub new_id: String,
    /// An ingress's stream key in the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_stream_key: Option<String>,
    /// An ingress's stream key on the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_stream_key: Option<String>,
}

/// Every id a restore saw assigned anew, in the order given back.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remap {
    /// The ids.
    pub entries: Vec<Remapped>,
}

impl Remap {
    /// The new id of the `kind` whose id was `old_id`.
    pub fn new_id(&self, kind: ItemKind, old_id: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.kind == kind && e.old_id == old_id)
            .map(|e| e.new_id.as_str())
    }

    /// The new stream key of the ingress whose stream key was `old_key`.
    pub fn new_stream_key(&self, old_key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.old_stream_key.as_deref() == Some(old_key))
            .and_then(|e| e.new_stream_key.as_deref())
    }

    /// The entries of `kind`.
    pub fn of_kind(&self, kind: ItemKind) -> impl Iterator<Item = &Remapped> {
        self.entries.iter().filter(move |e| e.kind == kind)
    }

    fn push(&mut self, kind: ItemKind, name: &str, old_id: &str, new_id: &str) {
        if old_id != new_id {
            self.entries.push(Remapped {
                kind,
                name: name.to_owned(),
                old_id: old_id.to_owned(),
                new_id: new_id.to_owned(),
                old_stream_key: None,
                new_stream_key: None,
            });
        }
    }
}

/// What giving a state back through the API did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Applied {
    /// Each thing of the state and its outcome, rooms first, then agent
    /// dispatches, egress, ingress, trunks and dispatch rules.
    pub items: Vec<Restored>,
    /// The ids assigned anew.
    pub remap: Remap,
}

impl Applied {
    /// How many things of `kind` had the outcome `outcome` (reasons
    /// ignored).
    pub fn count(&self, kind: ItemKind, outcome: &Outcome) -> usize {
        self.items
            .iter()
            .filter(|i| {
                i.kind == kind
                    && std::mem::discriminant(&i.outcome) == std::mem::discriminant(outcome)
            })
            .count()
    }

    /// The things that could not be given back.
    pub fn failed(&self) -> impl Iterator<Item = &Restored> {
        self.items
            .iter()
            .filter(|i| matches!(i.outcome, Outcome::Failed { .. }))
    }

    fn record(&mut self, kind: ItemKind, name: &str, outcome: Outcome) {
        self.items.push(Restored {
            kind,
            name: name.to_owned(),
            outcome,
        });
    }
}

/// How a LiveKit restore gave the state back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMethod {
    /// Through the API: rooms and their settings as they were, egress
    /// started again, ingress and SIP made again under new ids and stream
    /// keys ([`Remap`]).
    Api,
    /// LiveKit's durable keys written back into its Redis: the same ids and
    /// stream keys (drkit does this one, through dr-redis).
    RedisKeys,
}

/// What [`LiveKitRestore::restore_state`] did.
#[derive(Debug, Clone)]
pub struct LiveKitRestoreReport {
    /// Its timeline, RTO and data loss.
    pub recovery: RecoveryReport,
    /// The snapshot restored.
    pub snapshot: SnapshotId,
    /// The state's time: what was restored is the state as it was then.
    pub recovered_to: Timestamp,
    /// How it was given back.
    pub method: RestoreMethod,
    /// What was done with each thing, and the ids assigned anew.
    pub applied: Applied,
    /// The participants to set again as each rejoins.
    pub rejoin: Rejoin,
}

/// Restores LiveKit snapshots onto `target`: the server they came from, or
/// a standby at another URL.
///
/// Rooms are created (`CreateRoom`, LiveKit's upsert; sent whole where the
/// snapshot holds the service's request) and their metadata set exactly;
/// agent dispatches not there are created; egress that was running and is
/// not is started again with the request that started it; ingress, SIP
/// trunks and dispatch rules not there (by id) are made again, and the new
/// ids and stream keys returned in a [`Remap`] (dispatch rules name the
/// new trunk ids). Participants cannot be made by anyone but themselves:
/// [`LiveKitRestoreReport::rejoin`] sets each one's name, metadata,
/// attributes and permission again when it rejoins.
///
/// Each thing's failure is its [`Outcome`], and the rest go on; a target
/// that cannot be reached or refuses the key stops the restore.
#[derive(Debug, Clone)]
pub struct LiveKitRestore {
    component: ComponentId,
    target: LiveKit,
}

impl LiveKitRestore {
    /// Restores `component`'s snapshots onto `target`.
    pub fn new(component: ComponentId, target: LiveKit) -> Self {
        Self { component, target }
    }

    /// The server restored onto.
    pub fn target(&self) -> &LiveKit {
        &self.target
    }

    /// Restores the snapshot `request` names and says what was done with
    /// each thing.
    ///
    /// # Errors
    /// No such snapshot; the snapshot does not read; the target cannot be
    /// reached, refuses the key, or is not LiveKit.
    pub async fn restore_state(
        &self,
        request: RestoreRequest<'_>,
    ) -> dr_core::Result<LiveKitRestoreReport> {
        let mut timeline = Timeline::start_now();
        let (manifest, details) = timeline
            .step_named(
                choose(request.snapshots, &self.component, request.target),
                |(m, _)| format!("choose snapshot {}", m.id),
            )
            .await?;
        let state = timeline
            .step(
                "read the state",
                read_state(request.snapshots, &manifest, &details),
            )
            .await?;
        let applied = timeline
            .step(format!("give it back to {}", self.target.url()), async {
                Ok::<_, dr_core::Error>(self.apply(&state).await?)
            })
            .await?;
        let recovered_to = manifest.recovery_point.at;
        let mut recovery = RecoveryReport::new(
            self.component.clone(),
            Operation::Restore,
            request.objectives,
            timeline,
        );
        let wanted = request
            .incident_at
            .unwrap_or(recovery.timeline.started_at());
        if let Some(at) = request.incident_at {
            recovery = recovery.with_incident_at(at);
        }
        let recovery = recovery.with_data_loss_between(recovered_to, wanted);
        Ok(LiveKitRestoreReport {
            recovery,
            snapshot: manifest.id,
            recovered_to,
            method: RestoreMethod::Api,
            applied,
            rejoin: Rejoin::new(self.target.clone(), &state),
        })
    }

    /// Gives `state` back to the target through its API.
    ///
    /// # Errors
    /// The target cannot be reached, refuses the key or is not LiveKit.
    /// Other refusals are each thing's [`Outcome::Failed`].
    pub async fn apply(&self, state: &LiveKitState) -> Result<Applied> {
        let mut applied = Applied::default();
        let existing = self.existing_rooms().await?;
        // The futures made first, then run a few at a time: a closure
        // making them inside the stream would not be `Send` for every
        // lifetime, as dr-core's `Restore` needs.
        let restoring: Vec<_> = state
            .rooms
            .iter()
            .map(|room| self.restore_room(room, existing.get(&room.name)))
            .collect();
        let rooms: Vec<Result<(Outcome, String)>> = stream::iter(restoring)
            .buffered(self.target.concurrency())
            .collect()
            .await;
        let mut present: HashSet<&str> = HashSet::new();
        for (restored, room) in rooms.into_iter().zip(&state.rooms) {
            match restored {
                Ok((outcome, new_sid)) => {
                    present.insert(&room.name);
                    applied
                        .remap
                        .push(ItemKind::Room, &room.name, &room.sid, &new_sid);
                    applied.record(ItemKind::Room, &room.name, outcome);
                }
                Err(e) => applied.record(ItemKind::Room, &room.name, failed(e)?),
            }
        }

        let dispatching: Vec<_> = state
            .rooms
            .iter()
            .filter(|r| !r.agent_dispatches.is_empty() && present.contains(r.name.as_str()))
            .map(|room| self.restore_dispatches(room))
            .collect();
        let dispatched: Vec<Result<Vec<DispatchRestored>>> = stream::iter(dispatching)
            .buffered(self.target.concurrency())
            .collect()
            .await;
        for room in dispatched {
            for d in room? {
                applied
                    .remap
                    .push(ItemKind::AgentDispatch, &d.agent, &d.old_id, &d.new_id);
                applied.record(ItemKind::AgentDispatch, &d.old_id, d.outcome);
            }
        }

        self.restore_egress(state, &present, &mut applied).await?;
        self.restore_ingress(state, &mut applied).await?;
        self.restore_sip(state, &mut applied).await?;
        Ok(applied)
    }

    /// The target's rooms by name.
    async fn existing_rooms(&self) -> Result<HashMap<String, proto::Room>> {
        let api = self.target.api();
        let rooms = self
            .target
            .call(calls::LIST_ROOMS, api.room().list_rooms(Vec::new()))
            .await?;
        Ok(rooms.into_iter().map(|r| (r.name.clone(), r)).collect())
    }

    /// Creates or updates one room; its outcome and its sid on the target.
    async fn restore_room(
        &self,
        room: &RoomState,
        existing: Option<&proto::Room>,
    ) -> Result<(Outcome, String)> {
        let api = self.target.api();
        if let Some(there) = existing
            && there.metadata == room.metadata
            && there.empty_timeout == room.empty_timeout
            && there.departure_timeout == room.departure_timeout
            && there.max_participants == room.max_participants
        {
            return Ok((Outcome::Unchanged, there.sid.clone()));
        }
        let created: proto::Room = match &room.desired {
            Some(request) => {
                // The service's request, with the room's settings as they
                // were when read (a later UpdateRoomMetadata among them).
                let mut request = request.clone();
                request.name = room.name.clone();
                request.metadata = room.metadata.clone();
                request.empty_timeout = room.empty_timeout;
                request.departure_timeout = room.departure_timeout;
                request.max_participants = room.max_participants;
                self.target
                    .twirp(
                        calls::CREATE_ROOM,
                        &request,
                        Grants::video(VideoGrants {
                            room_create: true,
                            ..Default::default()
                        }),
                    )
                    .await?
            }
            None => {
                self.target
                    .call(
                        calls::CREATE_ROOM,
                        api.room().create_room(
                            &room.name,
                            CreateRoomOptions {
                                empty_timeout: room.empty_timeout,
                                departure_timeout: room.departure_timeout,
                                max_participants: room.max_participants,
                                metadata: room.metadata.clone(),
                                ..Default::default()
                            },
                        ),
                    )
                    .await?
            }
        };
        // CreateRoom takes only non-empty fields: metadata emptied since
        // the room was made is set here.
        if created.metadata != room.metadata {
            self.target
                .call(
                    calls::UPDATE_ROOM_METADATA,
                    api.room().update_room_metadata(&room.name, &room.metadata),
                )
                .await?;
        }
        let outcome = if existing.is_some() {
            Outcome::Updated
        } else {
            Outcome::Created
        };
        Ok((outcome, created.sid))
    }

    /// Creates a room's agent dispatches not on the target (the same agent
    /// with the same metadata): (agent, old id, new id, outcome) for each.
    async fn restore_dispatches(&self, room: &RoomState) -> Result<Vec<DispatchRestored>> {
        let api = self.target.api();
        let listed = self
            .target
            .call(
                calls::LIST_DISPATCH,
                api.agent_dispatch().list_dispatch(&room.name),
            )
            .await;
        let there = match listed {
            Ok(there) => there,
            Err(e) => {
                let outcome = failed(e)?;
                return Ok(room
                    .agent_dispatches
                    .iter()
                    .map(|d| DispatchRestored {
                        agent: d.agent_name.clone(),
                        old_id: d.id.clone(),
                        new_id: d.id.clone(),
                        outcome: outcome.clone(),
                    })
                    .collect());
            }
        };
        let mut taken: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for saved in &room.agent_dispatches {
            let same = there.iter().find(|d| {
                !taken.contains(d.id.as_str())
                    && d.agent_name == saved.agent_name
                    && d.metadata == saved.metadata
            });
            if let Some(same) = same {
                taken.insert(&same.id);
                out.push(DispatchRestored {
                    agent: saved.agent_name.clone(),
                    old_id: saved.id.clone(),
                    new_id: same.id.clone(),
                    outcome: Outcome::Unchanged,
                });
                continue;
            }
            let created = self
                .target
                .call(
                    calls::CREATE_DISPATCH,
                    api.agent_dispatch()
                        .create_dispatch(proto::CreateAgentDispatchRequest {
                            agent_name: saved.agent_name.clone(),
                            room: room.name.clone(),
                            metadata: saved.metadata.clone(),
                            restart_policy: saved.restart_policy,
                            deployment: saved.deployment.clone(),
                            attributes: saved.attributes.clone(),
                        }),
                )
                .await;
            let (new_id, outcome) = match created {
                Ok(dispatch) => (dispatch.id, Outcome::Created),
                Err(e) => (saved.id.clone(), failed(e)?),
            };
            out.push(DispatchRestored {
                agent: saved.agent_name.clone(),
                old_id: saved.id.clone(),
                new_id,
                outcome,
            });
        }
        Ok(out)
    }

    /// Starts again the egress that was running and is not.
    async fn restore_egress(
        &self,
        state: &LiveKitState,
        present: &HashSet<&str>,
        applied: &mut Applied,
    ) -> Result<()> {
        let saved: Vec<(&RoomState, &proto::EgressInfo)> = state
            .rooms
            .iter()
            .flat_map(|room| room.egress.iter().map(move |e| (room, e)))
            .collect();
        if saved.is_empty() {
            return Ok(());
        }
        let api = self.target.api();
        let running = self
            .target
            .call(
                calls::LIST_EGRESS,
                api.egress().list_egress(EgressListOptions {
                    filter: EgressListFilter::All,
                    active: true,
                    page_token: None,
                }),
            )
            .await;
        let running = match running {
            Ok(running) => running,
            Err(e) if !is_fatal(&e) => {
                for (_, egress) in saved {
                    applied.record(
                        ItemKind::Egress,
                        &egress.egress_id,
                        Outcome::Failed {
                            reason: e.to_string(),
                        },
                    );
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut taken: HashSet<&str> = HashSet::new();
        for (room, egress) in saved {
            let same = running.iter().find(|r| {
                !taken.contains(r.egress_id.as_str())
                    && (r.egress_id == egress.egress_id
                        || (r.room_name == room.name && r.request == egress.request))
            });
            if let Some(same) = same {
                taken.insert(&same.egress_id);
                applied.remap.push(
                    ItemKind::Egress,
                    &room.name,
                    &egress.egress_id,
                    &same.egress_id,
                );
                applied.record(ItemKind::Egress, &egress.egress_id, Outcome::Unchanged);
                continue;
            }
            if !present.contains(room.name.as_str()) {
                applied.record(
                    ItemKind::Egress,
                    &egress.egress_id,
                    Outcome::Failed {
                        reason: format!("its room {} was not restored", room.name),
                    },
                );
                continue;
            }
            let outcome = match self.start_egress(egress).await {
                Ok(started) => {
                    applied.remap.push(
                        ItemKind::Egress,
                        &room.name,
                        &egress.egress_id,
                        &started.egress_id,
                    );
                    Outcome::Created
                }
                Err(e) => settle(failed(e))?,
            };
            applied.record(ItemKind::Egress, &egress.egress_id, outcome);
        }
        Ok(())
    }

    /// Starts `egress` again with the request that started it, sent whole.
    async fn start_egress(&self, egress: &proto::EgressInfo) -> Result<proto::EgressInfo> {
        use proto::egress_info::Request;
        let grants = Grants::video(VideoGrants {
            room_record: true,
            ..Default::default()
        });
        let target = &self.target;
        match &egress.request {
            Some(Request::RoomComposite(r)) => {
                target
                    .twirp(calls::START_ROOM_COMPOSITE_EGRESS, r, grants)
                    .await
            }
            Some(Request::Web(r)) => target.twirp(calls::START_WEB_EGRESS, r, grants).await,
            Some(Request::Participant(r)) => {
                target
                    .twirp(calls::START_PARTICIPANT_EGRESS, r, grants)
                    .await
            }
            Some(Request::TrackComposite(r)) => {
                target
                    .twirp(calls::START_TRACK_COMPOSITE_EGRESS, r, grants)
                    .await
            }
            Some(Request::Track(r)) => target.twirp(calls::START_TRACK_EGRESS, r, grants).await,
            Some(Request::Egress(r)) => target.twirp(calls::START_EGRESS, r, grants).await,
            Some(Request::Replay(_)) => Err(Error::Server {
                url: target.url().to_owned(),
                call: "Egress.StartEgress".into(),
                code: "unimplemented".into(),
                message: "a replay export is not started again".into(),
            }),
            None => Err(Error::Server {
                url: target.url().to_owned(),
                call: "Egress.StartEgress".into(),
                code: "invalid_argument".into(),
                message: "the snapshot holds no request for this egress".into(),
            }),
        }
    }

    /// Makes again the ingress not on the target (by id).
    async fn restore_ingress(&self, state: &LiveKitState, applied: &mut Applied) -> Result<()> {
        if state.ingress.is_empty() {
            return Ok(());
        }
        let api = self.target.api();
        let there = self
            .target
            .call(
                calls::LIST_INGRESS,
                api.ingress().list_ingress(IngressListFilter::All),
            )
            .await;
        let there: HashSet<String> = match there {
            Ok(list) => list.into_iter().map(|i| i.ingress_id).collect(),
            Err(e) => {
                let e = settle(failed(e))?;
                for ingress in &state.ingress {
                    applied.record(ItemKind::Ingress, &ingress.ingress_id, e.clone());
                }
                return Ok(());
            }
        };
        for saved in &state.ingress {
            if there.contains(&saved.ingress_id) {
                applied.record(ItemKind::Ingress, &saved.ingress_id, Outcome::Unchanged);
                continue;
            }
            // `bypass_transcoding` is deprecated for `enable_transcoding`;
            // an ingress made with it is made again as it was.
            #[allow(deprecated)]
            let request = proto::CreateIngressRequest {
                input_type: saved.input_type,
                url: if saved.input_type == proto::IngressInput::UrlInput as i32 {
                    saved.url.clone()
                } else {
                    String::new()
                },
                name: saved.name.clone(),
                room_name: saved.room_name.clone(),
                participant_identity: saved.participant_identity.clone(),
                participant_name: saved.participant_name.clone(),
                participant_metadata: saved.participant_metadata.clone(),
                bypass_transcoding: saved.bypass_transcoding,
                enable_transcoding: saved.enable_transcoding,
                audio: saved.audio.clone(),
                video: saved.video.clone(),
                enabled: saved.enabled,
            };
            let created: Result<proto::IngressInfo> = self
                .target
                .twirp(
                    calls::CREATE_INGRESS,
                    &request,
                    Grants::video(VideoGrants {
                        ingress_admin: true,
                        ..Default::default()
                    }),
                )
                .await;
            let outcome = match created {
                Ok(made) => {
                    applied.remap.entries.push(Remapped {
                        kind: ItemKind::Ingress,
                        name: saved.name.clone(),
                        old_id: saved.ingress_id.clone(),
                        new_id: made.ingress_id,
                        old_stream_key: Some(saved.stream_key.clone()),
                        new_stream_key: Some(made.stream_key),
                    });
                    Outcome::Created
                }
                Err(e) => settle(failed(e))?,
            };
            applied.record(ItemKind::Ingress, &saved.ingress_id, outcome);
        }
        Ok(())
    }

    /// Makes again the SIP trunks, then the dispatch rules (naming the new
    /// trunk ids), not on the target (by id).
    async fn restore_sip(&self, state: &LiveKitState, applied: &mut Applied) -> Result<()> {
        if state.sip_inbound_trunks.is_empty()
            && state.sip_outbound_trunks.is_empty()
            && state.sip_dispatch_rules.is_empty()
        {
            return Ok(());
        }
        let api = self.target.api();
        let sip = api.sip();
        let inbound = self
            .target
            .call(
                calls::LIST_INBOUND_TRUNKS,
                sip.list_sip_inbound_trunk(ListSIPInboundTrunkFilter::All),
            )
            .await
            .map(|list| ids(list.into_iter().map(|t| t.sip_trunk_id)));
        let inbound = listed(inbound)?;
        let outbound = self
            .target
            .call(
                calls::LIST_OUTBOUND_TRUNKS,
                sip.list_sip_outbound_trunk(ListSIPOutboundTrunkFilter::All),
            )
            .await
            .map(|list| ids(list.into_iter().map(|t| t.sip_trunk_id)));
        let outbound = listed(outbound)?;
        let rules = self
            .target
            .call(
                calls::LIST_DISPATCH_RULES,
                sip.list_sip_dispatch_rule(ListSIPDispatchRuleFilter::All),
            )
            .await
            .map(|list| ids(list.into_iter().map(|r| r.sip_dispatch_rule_id)));
        let rules = listed(rules)?;

        for saved in &state.sip_inbound_trunks {
            let trunk = proto::SipInboundTrunkInfo {
                sip_trunk_id: String::new(),
                ..saved.clone()
            };
            let outcome = self
                .make_again(
                    &inbound,
                    &saved.sip_trunk_id,
                    calls::CREATE_INBOUND_TRUNK,
                    &proto::CreateSipInboundTrunkRequest { trunk: Some(trunk) },
                    |made: proto::SipInboundTrunkInfo| made.sip_trunk_id,
                )
                .await?;
            record_made(
                applied,
                ItemKind::SipInboundTrunk,
                &saved.name,
                &saved.sip_trunk_id,
                outcome,
            );
        }
        for saved in &state.sip_outbound_trunks {
            let trunk = proto::SipOutboundTrunkInfo {
                sip_trunk_id: String::new(),
                ..saved.clone()
            };
            let outcome = self
                .make_again(
                    &outbound,
                    &saved.sip_trunk_id,
                    calls::CREATE_OUTBOUND_TRUNK,
                    &proto::CreateSipOutboundTrunkRequest { trunk: Some(trunk) },
                    |made: proto::SipOutboundTrunkInfo| made.sip_trunk_id,
                )
                .await?;
            record_made(
                applied,
                ItemKind::SipOutboundTrunk,
                &saved.name,
                &saved.sip_trunk_id,
                outcome,
            );
        }
        for saved in &state.sip_dispatch_rules {
            let trunk_ids = saved
                .trunk_ids
                .iter()
                .map(|id| {
                    applied
                        .remap
                        .new_id(ItemKind::SipInboundTrunk, id)
                        .or_else(|| applied.remap.new_id(ItemKind::SipOutboundTrunk, id))
                        .unwrap_or(id)
                        .to_owned()
                })
                .collect();
            let rule = proto::SipDispatchRuleInfo {
                sip_dispatch_rule_id: String::new(),
                trunk_ids,
                ..saved.clone()
            };
            let outcome = self
                .make_again(
                    &rules,
                    &saved.sip_dispatch_rule_id,
                    calls::CREATE_DISPATCH_RULE,
                    &proto::CreateSipDispatchRuleRequest {
                        dispatch_rule: Some(rule),
                        ..Default::default()
                    },
                    |made: proto::SipDispatchRuleInfo| made.sip_dispatch_rule_id,
                )
                .await?;
            record_made(
                applied,
                ItemKind::SipDispatchRule,
                &saved.name,
                &saved.sip_dispatch_rule_id,
                outcome,
            );
        }
        Ok(())
    }

    /// Makes a SIP object again unless `there` (the target's ids, or why
    /// they could not be listed) has its id: its outcome, and its new id
    /// when made.
    async fn make_again<Resp: prost::Message + Default>(
        &self,
        there: &Listed,
        id: &str,
        call: Call,
        request: &impl prost::Message,
        new_id: impl FnOnce(Resp) -> String,
    ) -> Result<(Outcome, Option<String>)> {
        match there {
            Listed::Ids(ids) if ids.contains(id) => return Ok((Outcome::Unchanged, None)),
            Listed::Ids(_) => {}
            Listed::Unlisted(reason) => {
                return Ok((
                    Outcome::Failed {
                        reason: reason.clone(),
                    },
                    None,
                ));
            }
        }
        match self.target.twirp(call, request, Grants::sip_admin()).await {
            Ok(made) => Ok((Outcome::Created, Some(new_id(made)))),
            Err(e) => Ok((settle(failed(e))?, None)),
        }
    }
}

#[async_trait]
impl Restore for LiveKitRestore {
    fn component(&self) -> &ComponentId {
        &self.component
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    async fn restore(&self, request: RestoreRequest<'_>) -> dr_core::Result<RecoveryReport> {
        Ok(self.restore_state(request).await?.recovery)
    }
}

/// The snapshot `target` names among `component`'s LiveKit snapshots.
pub(crate) async fn choose(
    source: &dyn SnapshotSource,
    component: &ComponentId,
    target: &RecoveryTarget,
) -> dr_core::Result<(Manifest, LiveKitSnapshotDetails)> {
    if matches!(
        target,
        RecoveryTarget::Position(_) | RecoveryTarget::RestorePoint(_)
    ) {
        return Err(dr_core::Error::invalid(
            format!("restore of {component}"),
            format!("a LiveKit snapshot restores as it was taken, not to {target:?}"),
        ));
    }
    let mut snapshots = source.snapshots(component).await?;
    let mut details = BTreeMap::new();
    for manifest in &snapshots {
        if let Some(d) = LiveKitSnapshotDetails::of(manifest)? {
            details.insert(manifest.id, d);
        }
    }
    if let RecoveryTarget::Snapshot(id) = target
        && snapshots.iter().any(|m| m.id == *id)
        && !details.contains_key(id)
    {
        return Err(dr_core::Error::corrupt(
            format!("snapshot {id}"),
            "it records no LiveKit details: it is not a LiveKit snapshot",
        ));
    }
    snapshots.retain(|m| details.contains_key(&m.id));
    let chosen = target.snapshot_among(&snapshots).cloned().ok_or_else(|| {
        dr_core::Error::not_found(format!("a snapshot of {component} for {target:?}"))
    })?;
    let chosen_details = details.remove(&chosen.id).ok_or_else(|| {
        dr_core::Error::corrupt(format!("snapshot {}", chosen.id), "its details vanished")
    })?;
    Ok((chosen, chosen_details))
}

/// Reads the state a LiveKit snapshot holds (a confirmation's from the
/// snapshot it confirms), checking it against the recorded digest.
pub(crate) async fn read_state(
    source: &dyn SnapshotSource,
    manifest: &Manifest,
    details: &LiveKitSnapshotDetails,
) -> dr_core::Result<LiveKitState> {
    let holder = details.state_snapshot(manifest);
    let name: StreamName = STATE_STREAM.parse()?;
    let mut stream = source.open_stream(&holder, &name).await?;
    let mut json = Vec::new();
    stream
        .read_to_end(&mut json)
        .await
        .map_err(|e| dr_core::Error::io(format!("reading snapshot {holder}"), e))?;
    let hex = crate::snapshot::sha256_hex(&json);
    if hex != details.sha256 {
        return Err(Error::Corrupt {
            snapshot: manifest.id.to_string(),
            reason: format!(
                "the state in snapshot {holder} has SHA-256 {hex}, not the {} recorded",
                details.sha256
            ),
        }
        .into());
    }
    Ok(LiveKitState::from_json(&json, &manifest.id.to_string())?)
}

/// Whether `error` stops a whole restore: the target unreachable, the key
/// refused, an answer that is not LiveKit's.
fn is_fatal(error: &Error) -> bool {
    matches!(
        error,
        Error::Unreachable { .. } | Error::Unauthenticated { .. } | Error::NotLiveKit { .. }
    )
}

/// A thing's failure: fatal errors stay errors, the rest are its outcome.
fn failed(error: Error) -> Result<Outcome> {
    if is_fatal(&error) {
        Err(error)
    } else {
        Ok(Outcome::Failed {
            reason: error.to_string(),
        })
    }
}

/// An outcome, with a refusal of the thing made its [`Outcome::Failed`].
fn settle(outcome: Result<Outcome>) -> Result<Outcome> {
    match outcome {
        Ok(outcome) => Ok(outcome),
        Err(e) => failed(e),
    }
}

fn ids(ids: impl Iterator<Item = String>) -> HashSet<String> {
    ids.collect()
}

/// What was done with one agent dispatch.
struct DispatchRestored {
    agent: String,
    old_id: String,
    new_id: String,
    outcome: Outcome,
}

/// The ids of one kind of thing on the target, or why they could not be
/// listed (then none of that kind is made).
enum Listed {
    Ids(HashSet<String>),
    Unlisted(String),
}

/// `listing` as [`Listed`]; a fatal error stays an error.
fn listed(listing: Result<HashSet<String>>) -> Result<Listed> {
    match listing {
        Ok(ids) => Ok(Listed::Ids(ids)),
        Err(e) if is_fatal(&e) => Err(e),
        Err(e) => Ok(Listed::Unlisted(e.to_string())),
    }
}

fn record_made(
    applied: &mut Applied,
    kind: ItemKind,
    name: &str,
    old_id: &str,
    (outcome, new_id): (Outcome, Option<String>),
) {
    if let Some(new_id) = new_id {
        applied.remap.push(kind, name, old_id, &new_id);
    }
    applied.record(kind, old_id, outcome);
}
