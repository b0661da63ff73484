//! Egress, Ingress, SIP and AgentDispatchService through `livekit_api`'s clients.

use dr_livekit_testkit::LiveKitServer;
use livekit_api::services::agent_dispatch::AgentDispatchClient;
use livekit_api::services::egress::{
    EgressClient, EgressListFilter, EgressListOptions, EgressOutput, ParticipantEgressOptions,
    RoomCompositeOptions, TrackEgressOutput, WebOptions,
};
use livekit_api::services::ingress::{
    CreateIngressOptions, IngressClient, IngressListFilter, UpdateIngressOptions,
};
use livekit_api::services::sip::{
    CreateSIPDispatchRuleOptions, CreateSIPInboundTrunkOptions, CreateSIPOutboundTrunkOptions,
    ListSIPDispatchRuleFilter, ListSIPInboundTrunkFilter, ListSIPOutboundTrunkFilter, SIPClient,
};
use livekit_protocol as lk;
use livekit_protocol::egress_info::Request as EgressRequest;

use crate::common::{code, msg, participant};

#[tokio::test]
async fn egress_starts_lists_stops_and_keeps_its_request() {
    let server = LiveKitServer::start().await.unwrap();
    let egress = EgressClient::with_api_key(&server.url(), server.api_key(), server.api_secret());
    let file = EgressOutput::File(lk::EncodedFileOutput {
        filepath: "/rec/{room_name}.mp4".into(),
        ..Default::default()
    });
    // A room-based egress needs its room.
    let e = egress
        .start_room_composite_egress("nope", vec![file.clone()], RoomCompositeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some("not_found"));

    server.join("show", participant("host")).unwrap();
    let composite = egress
        .start_room_composite_egress(
            "show",
            vec![file.clone()],
            RoomCompositeOptions {
                layout: "speaker".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(composite.egress_id.starts_with("EG_"));
    assert_eq!(composite.status, lk::EgressStatus::EgressStarting as i32);
    assert_eq!(composite.room_name, "show");
    assert!(composite.room_id.starts_with("RM_"));
    match &composite.request {
        Some(EgressRequest::RoomComposite(r)) => {
            assert_eq!(
                (r.room_name.as_str(), r.layout.as_str()),
                ("show", "speaker")
            );
            assert_eq!(r.file_outputs[0].filepath, "/rec/{room_name}.mp4");
        }
        other => panic!("request kept as {other:?}"),
    }
    let web = egress
        .start_web_egress(
            "https://example.org/",
            vec![file.clone()],
            WebOptions::default(),
        )
        .await
        .unwrap();
    assert!(web.room_name.is_empty());
    assert!(matches!(web.request, Some(EgressRequest::Web(_))));
    let part = egress
        .start_participant_egress(
            "show",
            "host",
            vec![file],
            ParticipantEgressOptions::default(),
        )
        .await
        .unwrap();
    assert!(matches!(part.request, Some(EgressRequest::Participant(_))));
    let track = egress
        .start_track_egress(
            "show",
            TrackEgressOutput::WebSocket("ws://x".into()),
            "TR_1",
        )
        .await
        .unwrap();
    assert!(matches!(track.request, Some(EgressRequest::Track(_))));
    let v2 = egress
        .start_egress(lk::StartEgressRequest {
            room_name: "show".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(matches!(v2.request, Some(EgressRequest::Egress(_))));

    let all = egress
        .list_egress(EgressListOptions::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    let in_room = egress
        .list_egress(EgressListOptions {
            filter: EgressListFilter::Room("show".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(in_room.len(), 4);

    let stopped = egress.stop_egress(&composite.egress_id).await.unwrap();
    assert_eq!(stopped.status, lk::EgressStatus::EgressEnding as i32);
    server
        .set_egress_status(&composite.egress_id, lk::EgressStatus::EgressComplete)
        .unwrap();
    let e = egress.stop_egress(&composite.egress_id).await.unwrap_err();
    assert_eq!(code(&e), Some("failed_precondition"));
    assert_eq!(
        msg(&e),
        Some("egress with status EGRESS_COMPLETE cannot be stopped")
    );
    let e = egress.stop_egress("EG_missing").await.unwrap_err();
    assert_eq!(code(&e), Some("not_found"));
    let active = egress
        .list_egress(EgressListOptions {
            active: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(active.len(), 4);
    let one = server
        .set_egress_status(&web.egress_id, lk::EgressStatus::EgressActive)
        .unwrap();
    assert!(one.started_at > 0 && one.ended_at == 0);
    let e = egress
        .update_layout(&web.egress_id, "grid")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some("unimplemented"));
}

#[tokio::test]
async fn ingress_gets_fresh_ids_and_stream_keys() {
    let server = LiveKitServer::start().await.unwrap();
    let ingress = IngressClient::with_api_key(&server.url(), server.api_key(), server.api_secret());
    let options = CreateIngressOptions {
        name: "cam".into(),
        room_name: "show".into(),
        participant_identity: "cam-1".into(),
        ..Default::default()
    };
    let a = ingress
        .create_ingress(lk::IngressInput::RtmpInput, options.clone())
        .await
        .unwrap();
    let b = ingress
        .create_ingress(lk::IngressInput::RtmpInput, options)
        .await
        .unwrap();
    assert!(a.ingress_id.starts_with("IN_"));
    assert_ne!(a.ingress_id, b.ingress_id);
    assert_eq!(a.stream_key.len(), 12);
    assert_ne!(a.stream_key, b.stream_key);
    assert_eq!(a.url, "rtmp://127.0.0.1:1935/x");
    assert!(a.reusable);

    let updated = ingress
        .update_ingress(
            &a.ingress_id,
            UpdateIngressOptions {
                name: "cam 2".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.room_name.as_str()),
        ("cam 2", "show")
    );

    let listed = ingress
        .list_ingress(IngressListFilter::Room("show".into()))
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    let one = ingress
        .list_ingress(IngressListFilter::IngressId(b.ingress_id.clone()))
        .await
        .unwrap();
    assert_eq!(one[0].stream_key, b.stream_key);
    ingress.delete_ingress(&b.ingress_id).await.unwrap();
    let e = ingress.delete_ingress(&b.ingress_id).await.unwrap_err();
    assert_eq!(code(&e), Some("not_found"));
    // Ingress is durable: a restart keeps it.
    server.restart();
    assert_eq!(
        ingress
            .list_ingress(IngressListFilter::All)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn sip_trunks_and_dispatch_rules() {
    let server = LiveKitServer::start().await.unwrap();
    let sip = SIPClient::with_api_key(&server.url(), server.api_key(), server.api_secret());
    let inbound = sip
        .create_sip_inbound_trunk(
            "in".into(),
            vec!["+15550100".into()],
            CreateSIPInboundTrunkOptions::default(),
        )
        .await
        .unwrap();
    assert!(inbound.sip_trunk_id.starts_with("ST_"));
    let outbound = sip
        .create_sip_outbound_trunk(
            "out".into(),
            "sip.example.org".into(),
            vec!["+15550199".into()],
            CreateSIPOutboundTrunkOptions::default(),
        )
        .await
        .unwrap();
    let updated = sip
        .update_sip_inbound_trunk(
            inbound.sip_trunk_id.clone(),
            lk::SipInboundTrunkUpdate {
                name: Some("in 2".into()),
                numbers: Some(lk::ListUpdate {
                    add: vec!["+15550101".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "in 2");
    assert_eq!(updated.numbers, ["+15550100", "+15550101"]);
    let e = sip
        .update_sip_inbound_trunk("ST_missing".into(), lk::SipInboundTrunkUpdate::default())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some("not_found"));
    assert_eq!(
        sip.list_sip_inbound_trunk(ListSIPInboundTrunkFilter::All)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        sip.list_sip_outbound_trunk(ListSIPOutboundTrunkFilter::All)
            .await
            .unwrap()[0]
            .address,
        "sip.example.org"
    );

    let rule = sip
        .create_sip_dispatch_rule(
            lk::sip_dispatch_rule::Rule::DispatchRuleIndividual(lk::SipDispatchRuleIndividual {
                room_prefix: "call-".into(),
                ..Default::default()
            }),
            CreateSIPDispatchRuleOptions {
                name: "calls".into(),
                trunk_ids: vec![inbound.sip_trunk_id.clone()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(rule.sip_dispatch_rule_id.starts_with("SDR_"));
    assert_eq!(rule.trunk_ids, [inbound.sip_trunk_id.as_str()]);
    let renamed = sip
        .update_sip_dispatch_rule(
            rule.sip_dispatch_rule_id.clone(),
            lk::SipDispatchRuleUpdate {
                name: Some("calls 2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name, "calls 2");
    let rules = sip
        .list_sip_dispatch_rule(ListSIPDispatchRuleFilter::All)
        .await
        .unwrap();
    assert_eq!(rules.len(), 1);

    // Durable across a restart, as in LiveKit's Redis.
    server.restart();
    assert_eq!(
        sip.list_sip_dispatch_rule(ListSIPDispatchRuleFilter::All)
            .await
            .unwrap()
            .len(),
        1
    );
    sip.delete_sip_dispatch_rule(&rule.sip_dispatch_rule_id)
        .await
        .unwrap();
    let e = sip
        .delete_sip_dispatch_rule(&rule.sip_dispatch_rule_id)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some("not_found"));
    sip.delete_sip_trunk(&outbound.sip_trunk_id).await.unwrap();
    // LiveKit's store deletes without looking: a missing trunk is no error.
    sip.delete_sip_trunk(&outbound.sip_trunk_id).await.unwrap();
    assert!(
        sip.list_sip_outbound_trunk(ListSIPOutboundTrunkFilter::All)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn agent_dispatches_per_room() {
    let server = LiveKitServer::start().await.unwrap();
    let agents =
        AgentDispatchClient::with_api_key(&server.url(), server.api_key(), server.api_secret());
    // CreateDispatch makes the room (auto_create), which starts the unnamed agent's dispatch.
    let made = agents
        .create_dispatch(lk::CreateAgentDispatchRequest {
            agent_name: "helper".into(),
            room: "desk".into(),
            metadata: "{}".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(made.id.starts_with("AD_"));
    assert!(made.state.unwrap().created_at > 0);
    let listed = agents.list_dispatch("desk").await.unwrap();
    let mut names: Vec<_> = listed.iter().map(|d| d.agent_name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["", "helper"]);
    agents.delete_dispatch(&made.id, "desk").await.unwrap();
    let e = agents.delete_dispatch(&made.id, "desk").await.unwrap_err();
    assert_eq!(code(&e), Some("not_found"));
    let e = agents.list_dispatch("nowhere").await.unwrap_err();
    assert_eq!(code(&e), Some("not_found"));
    // Dispatches are ephemeral: a restart takes them with their rooms.
    server.restart();
    let e = agents.list_dispatch("desk").await.unwrap_err();
    assert_eq!(code(&e), Some("not_found"));
}
