//! The Twirp routes: `livekit.<Service>/<Method>` to its grant check and its handler.

use livekit_protocol as lk;
use livekit_protocol::egress_info::Request as EgressRequest;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{self, Grants};
use crate::state::State;
use crate::twirp::{Code, Encoding, TwirpError, TwirpResult};

/// The methods a LiveKit server registers, by service, in `pkg/service/server.go`'s order.
/// A path naming one of these is a known route (so a 501 for those not served here, not a
/// bad_route).
pub(crate) const METHODS: &[(&str, &[&str])] = &[
    (
        "RoomService",
        &[
            "CreateRoom",
            "ListRooms",
            "DeleteRoom",
            "ListParticipants",
            "GetParticipant",
            "RemoveParticipant",
            "MutePublishedTrack",
            "UpdateParticipant",
            "UpdateSubscriptions",
            "SendData",
            "UpdateRoomMetadata",
            "ForwardParticipant",
            "MoveParticipant",
            "PerformRpc",
        ],
    ),
    (
        "AgentDispatchService",
        &["CreateDispatch", "DeleteDispatch", "ListDispatch"],
    ),
    (
        "Egress",
        &[
            "StartRoomCompositeEgress",
            "StartWebEgress",
            "StartParticipantEgress",
            "StartTrackCompositeEgress",
            "StartTrackEgress",
            "StartEgress",
            "UpdateLayout",
            "UpdateStream",
            "ListEgress",
            "StopEgress",
        ],
    ),
    (
        "Ingress",
        &[
            "CreateIngress",
            "UpdateIngress",
            "ListIngress",
            "DeleteIngress",
        ],
    ),
    (
        "SIP",
        &[
            "ListSIPTrunk",
            "CreateSIPInboundTrunk",
            "CreateSIPOutboundTrunk",
            "UpdateSIPInboundTrunk",
            "UpdateSIPOutboundTrunk",
            "GetSIPInboundTrunk",
            "GetSIPOutboundTrunk",
            "ListSIPInboundTrunk",
            "ListSIPOutboundTrunk",
            "DeleteSIPTrunk",
            "CreateSIPDispatchRule",
            "UpdateSIPDispatchRule",
            "ListSIPDispatchRule",
            "DeleteSIPDispatchRule",
            "CreateSIPParticipant",
            "TransferSIPParticipant",
        ],
    ),
];

/// The known route for `service`/`method`, as `'static` names (for the counters).
pub(crate) fn route(service: &str, method: &str) -> Option<(&'static str, &'static str)> {
    METHODS
        .iter()
        .find(|(s, _)| *s == service)
        .and_then(|(s, ms)| ms.iter().find(|m| **m == method).map(|m| (*s, *m)))
}

/// One call: decode the request, run `f`, encode its answer in the request's encoding.
fn call<Req, Resp>(
    enc: Encoding,
    body: &[u8],
    f: impl FnOnce(Req) -> TwirpResult<Resp>,
) -> TwirpResult<Vec<u8>>
where
    Req: Message + Default + DeserializeOwned,
    Resp: Message + Serialize,
{
    let req = enc.decode::<Req>(body)?;
    enc.encode(&f(req)?)
}

fn unimplemented(method: &str) -> TwirpError {
    TwirpError::new(
        Code::Unimplemented,
        format!("{method} is not served by the drkit LiveKit stand-in"),
    )
}

/// Serves one call of a known route.
pub(crate) fn serve(
    st: &mut State,
    g: Grants<'_>,
    service: &str,
    method: &str,
    enc: Encoding,
    body: &[u8],
) -> TwirpResult<Vec<u8>> {
    match service {
        "RoomService" => room(st, g, method, enc, body),
        "Egress" => egress(st, g, method, enc, body),
        "Ingress" => ingress(st, g, method, enc, body),
        "SIP" => sip(st, g, method, enc, body),
        "AgentDispatchService" => agents(st, g, method, enc, body),
        _ => Err(unimplemented(method)),
    }
}

fn room(
    st: &mut State,
    g: Grants<'_>,
    method: &str,
    enc: Encoding,
    body: &[u8],
) -> TwirpResult<Vec<u8>> {
    match method {
        "CreateRoom" => call(enc, body, |r: lk::CreateRoomRequest| {
            auth::room_create(g)?;
            st.create_room(r)
        }),
        "ListRooms" => call(enc, body, |r: lk::ListRoomsRequest| {
            auth::room_list(g)?;
            Ok(st.list_rooms(&r))
        }),
        "DeleteRoom" => call(enc, body, |r: lk::DeleteRoomRequest| {
            auth::room_create(g)?;
            st.delete_room(&r).map(|()| lk::DeleteRoomResponse {})
        }),
        "UpdateRoomMetadata" => call(enc, body, |r: lk::UpdateRoomMetadataRequest| {
            auth::room_admin(g, &r.room)?;
            st.update_room_metadata(r)
        }),
        "ListParticipants" => call(enc, body, |r: lk::ListParticipantsRequest| {
            auth::room_admin(g, &r.room)?;
            Ok(st.list_participants(&r.room))
        }),
        "GetParticipant" => call(enc, body, |r: lk::RoomParticipantIdentity| {
            auth::room_admin(g, &r.room)?;
            st.get_participant(&r.room, &r.identity)
        }),
        "RemoveParticipant" => call(enc, body, |r: lk::RoomParticipantIdentity| {
            auth::room_admin(g, &r.room)?;
            st.remove_participant(&r.room, &r.identity)
                .map(|()| lk::RemoveParticipantResponse {})
        }),
        "UpdateParticipant" => call(enc, body, |r: lk::UpdateParticipantRequest| {
            auth::room_admin(g, &r.room)?;
            st.update_participant(r)
        }),
        "MutePublishedTrack" => call(enc, body, |r: lk::MuteRoomTrackRequest| {
            auth::room_admin(g, &r.room)?;
            st.mute_published_track(&r)
        }),
        "UpdateSubscriptions" => call(enc, body, |r: lk::UpdateSubscriptionsRequest| {
            auth::room_admin(g, &r.room)?;
            st.require_participant(&r.room, &r.identity)?;
            Ok(lk::UpdateSubscriptionsResponse {})
        }),
        "SendData" => call(enc, body, |r: lk::SendDataRequest| {
            auth::room_admin(g, &r.room)?;
            if !r.nonce.is_empty() && r.nonce.len() != 16 {
                return Err(TwirpError::invalid(format!(
                    "nonce should be 16-bytes or not present, got: {} bytes",
                    r.nonce.len()
                )));
            }
            st.require_room(&r.room)?;
            Ok(lk::SendDataResponse {})
        }),
        "ForwardParticipant" => call(enc, body, |r: lk::ForwardParticipantRequest| {
            auth::destination_room(g, &r.room, &r.destination_room)?;
            if r.room == r.destination_room {
                return Err(TwirpError::invalid(
                    "destination room cannot be the same as source room",
                ));
            }
            // LiveKit's open-source RoomManager answers errors.New("not implemented").
            Err::<lk::ForwardParticipantResponse, _>(TwirpError::new(
                Code::Internal,
                "not implemented",
            ))
        }),
        "MoveParticipant" => call(enc, body, |r: lk::MoveParticipantRequest| {
            auth::destination_room(g, &r.room, &r.destination_room)?;
            if r.room == r.destination_room {
                return Err(TwirpError::invalid(
                    "destination room cannot be the same as source room",
                ));
            }
            Err::<lk::MoveParticipantResponse, _>(TwirpError::new(
                Code::Internal,
                "not implemented",
            ))
        }),
        "PerformRpc" => call(enc, body, |r: lk::PerformRpcRequest| {
            auth::room_admin(g, &r.room)?;
            if r.destination_identity.is_empty() {
                return Err(TwirpError::invalid("destination identity is required"));
            }
            Err::<lk::PerformRpcResponse, _>(unimplemented("PerformRpc"))
        }),
        _ => Err(unimplemented(method)),
    }
}

fn egress(
    st: &mut State,
    g: Grants<'_>,
    method: &str,
    enc: Encoding,
    body: &[u8],
) -> TwirpResult<Vec<u8>> {
    use lk::EgressSourceType::{Sdk, Web};
    match method {
        "StartRoomCompositeEgress" => call(enc, body, |r: lk::RoomCompositeEgressRequest| {
            auth::room_record(g)?;
            st.start_egress(&r.room_name.clone(), Web, EgressRequest::RoomComposite(r))
        }),
        "StartWebEgress" => call(enc, body, |r: lk::WebEgressRequest| {
            auth::room_record(g)?;
            st.start_egress("", Web, EgressRequest::Web(r))
        }),
        "StartParticipantEgress" => call(enc, body, |r: lk::ParticipantEgressRequest| {
            auth::room_record(g)?;
            st.start_egress(&r.room_name.clone(), Sdk, EgressRequest::Participant(r))
        }),
        "StartTrackCompositeEgress" => call(enc, body, |r: lk::TrackCompositeEgressRequest| {
            auth::room_record(g)?;
            st.start_egress(&r.room_name.clone(), Sdk, EgressRequest::TrackComposite(r))
        }),
        "StartTrackEgress" => call(enc, body, |r: lk::TrackEgressRequest| {
            auth::room_record(g)?;
            st.start_egress(&r.room_name.clone(), Sdk, EgressRequest::Track(r))
        }),
        "StartEgress" => call(enc, body, |r: lk::StartEgressRequest| {
            auth::room_record(g)?;
            let source = match r.source {
                Some(lk::start_egress_request::Source::Media(_)) => Sdk,
                _ => Web,
            };
            st.start_egress(&r.room_name.clone(), source, EgressRequest::Egress(r))
        }),
        "ListEgress" => call(enc, body, |r: lk::ListEgressRequest| {
            auth::room_record(g)?;
            st.list_egress(&r)
        }),
        "StopEgress" => call(enc, body, |r: lk::StopEgressRequest| {
            auth::room_record(g)?;
            st.stop_egress(&r.egress_id)
        }),
        "UpdateLayout" => call(enc, body, |_: lk::UpdateLayoutRequest| {
            auth::room_record(g)?;
            Err::<lk::EgressInfo, _>(unimplemented(method))
        }),
        "UpdateStream" => call(enc, body, |_: lk::UpdateStreamRequest| {
            auth::room_record(g)?;
            Err::<lk::EgressInfo, _>(unimplemented(method))
        }),
        _ => Err(unimplemented(method)),
    }
}

fn ingress(
    st: &mut State,
    g: Grants<'_>,
    method: &str,
    enc: Encoding,
    body: &[u8],
) -> TwirpResult<Vec<u8>> {
    match method {
        "CreateIngress" => call(enc, body, |r: lk::CreateIngressRequest| {
            auth::ingress_admin(g)?;
            st.create_ingress(r)
        }),
        "UpdateIngress" => call(enc, body, |r: lk::UpdateIngressRequest| {
            auth::ingress_admin(g)?;
            st.update_ingress(r)
        }),
        "ListIngress" => call(enc, body, |r: lk::ListIngressRequest| {
            auth::ingress_admin(g)?;
            st.list_ingress(&r)
        }),
        "DeleteIngress" => call(enc, body, |r: lk::DeleteIngressRequest| {
            auth::ingress_admin(g)?;
            st.delete_ingress(&r.ingress_id)
        }),
        _ => Err(unimplemented(method)),
    }
}

fn sip(
    st: &mut State,
    g: Grants<'_>,
    method: &str,
    enc: Encoding,
    body: &[u8],
) -> TwirpResult<Vec<u8>> {
    match method {
        "CreateSIPInboundTrunk" => call(enc, body, |r: lk::CreateSipInboundTrunkRequest| {
            auth::sip_admin(g)?;
            st.create_inbound_trunk(r.trunk)
        }),
        "CreateSIPOutboundTrunk" => call(enc, body, |r: lk::CreateSipOutboundTrunkRequest| {
            auth::sip_admin(g)?;
            st.create_outbound_trunk(r.trunk)
        }),
        "UpdateSIPInboundTrunk" => call(enc, body, |r: lk::UpdateSipInboundTrunkRequest| {
            auth::sip_admin(g)?;
            st.update_inbound_trunk(r)
        }),
        "UpdateSIPOutboundTrunk" => call(enc, body, |r: lk::UpdateSipOutboundTrunkRequest| {
            auth::sip_admin(g)?;
            st.update_outbound_trunk(r)
        }),
        "GetSIPInboundTrunk" => call(enc, body, |r: lk::GetSipInboundTrunkRequest| {
            auth::sip_admin(g)?;
            st.get_inbound_trunk(&r.sip_trunk_id)
                .map(|t| lk::GetSipInboundTrunkResponse { trunk: Some(t) })
        }),
        "GetSIPOutboundTrunk" => call(enc, body, |r: lk::GetSipOutboundTrunkRequest| {
            auth::sip_admin(g)?;
            st.get_outbound_trunk(&r.sip_trunk_id)
                .map(|t| lk::GetSipOutboundTrunkResponse { trunk: Some(t) })
        }),
        "ListSIPInboundTrunk" => call(enc, body, |r: lk::ListSipInboundTrunkRequest| {
            auth::sip_admin(g)?;
            Ok(lk::ListSipInboundTrunkResponse {
                items: st.list_inbound_trunks(&r),
            })
        }),
        "ListSIPOutboundTrunk" => call(enc, body, |r: lk::ListSipOutboundTrunkRequest| {
            auth::sip_admin(g)?;
            Ok(lk::ListSipOutboundTrunkResponse {
                items: st.list_outbound_trunks(&r),
            })
        }),
        "DeleteSIPTrunk" => call(enc, body, |r: lk::DeleteSipTrunkRequest| {
            auth::sip_admin(g)?;
            st.delete_trunk(&r.sip_trunk_id)
        }),
        "CreateSIPDispatchRule" => call(enc, body, |r: lk::CreateSipDispatchRuleRequest| {
            auth::sip_admin(g)?;
            st.create_dispatch_rule(r)
        }),
        "UpdateSIPDispatchRule" => call(enc, body, |r: lk::UpdateSipDispatchRuleRequest| {
            auth::sip_admin(g)?;
            st.update_dispatch_rule(r)
        }),
        "ListSIPDispatchRule" => call(enc, body, |r: lk::ListSipDispatchRuleRequest| {
            auth::sip_admin(g)?;
            Ok(lk::ListSipDispatchRuleResponse {
                items: st.list_dispatch_rules(&r),
            })
        }),
        "DeleteSIPDispatchRule" => call(enc, body, |r: lk::DeleteSipDispatchRuleRequest| {
            auth::sip_admin(g)?;
            st.delete_dispatch_rule(&r.sip_dispatch_rule_id)
        }),
        "ListSIPTrunk" => call(enc, body, |_: lk::ListSipTrunkRequest| {
            auth::sip_admin(g)?;
            Err::<lk::ListSipTrunkResponse, _>(unimplemented(method))
        }),
        "CreateSIPParticipant" => call(enc, body, |_: lk::CreateSipParticipantRequest| {
            auth::sip_call(g)?;
            Err::<lk::SipParticipantInfo, _>(unimplemented(method))
        }),
        "TransferSIPParticipant" => call(enc, body, |_: lk::TransferSipParticipantRequest| {
            auth::sip_call(g)?;
            Err::<lk::SipParticipantInfo, _>(unimplemented(method))
        }),
        _ => Err(unimplemented(method)),
    }
}

fn agents(
    st: &mut State,
    g: Grants<'_>,
    method: &str,
    enc: Encoding,
    body: &[u8],
) -> TwirpResult<Vec<u8>> {
    match method {
        "CreateDispatch" => call(enc, body, |r: lk::CreateAgentDispatchRequest| {
            auth::room_admin(g, &r.room)?;
            st.create_dispatch(r)
        }),
        "DeleteDispatch" => call(enc, body, |r: lk::DeleteAgentDispatchRequest| {
            auth::room_admin(g, &r.room)?;
            st.delete_dispatch(&r)
        }),
        "ListDispatch" => call(enc, body, |r: lk::ListAgentDispatchRequest| {
            auth::room_admin(g, &r.room)?;
            st.list_dispatch(&r)
        }),
        _ => Err(unimplemented(method)),
    }
}
