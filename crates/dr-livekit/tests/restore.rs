//! Restores: onto the same server after a restart, onto a standby, and
//! participants set again on rejoin through a signed webhook. Stand-in only: participants join
//! through its test control, and a restart wipes its rooms.

use std::time::Duration;

use dr_core::{BackupExt, Objectives, RecoveryTarget, RestoreRequest};
use dr_livekit::proto;
use dr_livekit::{ItemKind, LiveKitRestore, LiveKitSnapshot, Outcome, RestoreMethod};
use dr_livekit_testkit::{LiveKitServer, LiveKitServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{client, populate, populated_snapshot, repository};

fn objectives() -> Objectives {
    Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap())
}

fn room<'a>(rooms: &'a [proto::Room], name: &str) -> &'a proto::Room {
    rooms
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no room {name} in {rooms:?}"))
}

#[tokio::test]
async fn a_restarted_server_gets_its_rooms_egress_and_agents_back() {
    let server = LiveKitServer::start().await.unwrap();
    let livekit = client(&server);
    let desired = populate(&server, &livekit).await;
    let repo = repository().await;
    let component = "livekit/sfu".parse().unwrap();
    let snapshot = LiveKitSnapshot::new(component, livekit.clone()).desired_rooms(desired);
    snapshot.backup_to(repo.as_ref()).await.unwrap();
    let api = server.api();
    let before = api.room().list_rooms(Vec::new()).await.unwrap();
    let egress_before = api
        .egress()
        .list_egress(livekit_api::services::egress::EgressListOptions {
            active: true,
            ..Default::default()
        })
        .await
        .unwrap();

    server.restart();
    assert_eq!(server.counts().0, 0);

    let restore = LiveKitRestore::new("livekit/sfu".parse().unwrap(), livekit.clone());
    let target = RecoveryTarget::Latest;
    let report = restore
        .restore_state(RestoreRequest::new(repo.as_ref(), &target, objectives()))
        .await
        .unwrap();
    assert_eq!(report.method, RestoreMethod::Api);
    assert_eq!(
        report.applied.failed().count(),
        0,
        "{:?}",
        report.applied.items
    );
    assert_eq!(report.applied.count(ItemKind::Room, &Outcome::Created), 2);

    let after = api.room().list_rooms(Vec::new()).await.unwrap();
    for name in ["standup", "all-hands"] {
        let (was, is) = (room(&before, name), room(&after, name));
        assert_eq!(is.metadata, was.metadata);
        assert_eq!(is.empty_timeout, was.empty_timeout);
        assert_eq!(is.departure_timeout, was.departure_timeout);
        assert_eq!(is.max_participants, was.max_participants);
        assert_ne!(is.sid, was.sid, "a room made again has a new sid");
        assert_eq!(
            report.applied.remap.new_id(ItemKind::Room, &was.sid),
            Some(is.sid.as_str())
        );
    }
    // What only the registry knew went back whole.
    let config = server.room_config("standup").unwrap();
    assert_eq!(config.max_playout_delay, 400);
    assert_eq!(config.agents.len(), 1);
    assert_eq!(config.agents[0].agent_name, "notes");

    // The egress runs again, with the request that started it.
    let egress_after = api
        .egress()
        .list_egress(livekit_api::services::egress::EgressListOptions {
            active: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(egress_after.len(), 1);
    assert_eq!(egress_after[0].request, egress_before[0].request);
    assert_eq!(
        report
            .applied
            .remap
            .new_id(ItemKind::Egress, &egress_before[0].egress_id),
        Some(egress_after[0].egress_id.as_str())
    );
    // The agent dispatch is back.
    let dispatches = api
        .agent_dispatch()
        .list_dispatch("all-hands")
        .await
        .unwrap();
    assert!(
        dispatches
            .iter()
            .any(|d| d.agent_name == "translator" && d.metadata == "fr")
    );
    // Ingress and SIP live on (a restart keeps them): the same ids.
    assert_eq!(
        report.applied.count(ItemKind::Ingress, &Outcome::Unchanged),
        1
    );
    assert_eq!(
        report
            .applied
            .count(ItemKind::SipInboundTrunk, &Outcome::Unchanged),
        1
    );
    assert_eq!(
        report
            .applied
            .count(ItemKind::SipDispatchRule, &Outcome::Unchanged),
        1
    );
    assert_eq!(report.applied.remap.of_kind(ItemKind::Ingress).count(), 0);
    // The data lost is the time since the snapshot.
    assert!(report.recovery.data_loss.is_some());

    // A second restore finds everything there.
    let again = restore
        .restore_state(RestoreRequest::new(repo.as_ref(), &target, objectives()))
        .await
        .unwrap();
    assert_eq!(again.applied.count(ItemKind::Room, &Outcome::Unchanged), 2);
    assert_eq!(
        again.applied.count(ItemKind::Egress, &Outcome::Unchanged),
        1
    );
    assert_eq!(
        again
            .applied
            .count(ItemKind::AgentDispatch, &Outcome::Created),
        0
    );
}

#[tokio::test]
async fn a_standby_gets_new_ids_and_stream_keys_and_dispatch_rules_follow_their_trunks() {
    let primary = LiveKitServer::start().await.unwrap();
    let (_, repo) = populated_snapshot(&primary).await;
    let primary_api = primary.api();
    let old_ingress = primary_api
        .ingress()
        .list_ingress(livekit_api::services::ingress::IngressListFilter::All)
        .await
        .unwrap();
    drop(primary);

    // Another server, with keys of its own.
    let standby = LiveKitServer::start().await.unwrap();
    let target_client = client(&standby);
    let restore = LiveKitRestore::new("livekit/sfu".parse().unwrap(), target_client);
    let target = RecoveryTarget::Latest;
    let report = restore
        .restore_state(RestoreRequest::new(repo.as_ref(), &target, objectives()))
        .await
        .unwrap();
    assert_eq!(
        report.applied.failed().count(),
        0,
        "{:?}",
        report.applied.items
    );

    let api = standby.api();
    let ingress = api
        .ingress()
        .list_ingress(livekit_api::services::ingress::IngressListFilter::All)
        .await
        .unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0].name, "studio");
    assert_eq!(ingress[0].room_name, "all-hands");
    let moved = report
        .applied
        .remap
        .of_kind(ItemKind::Ingress)
        .next()
        .unwrap();
    assert_eq!(moved.old_id, old_ingress[0].ingress_id);
    assert_eq!(moved.new_id, ingress[0].ingress_id);
    assert_eq!(
        report
            .applied
            .remap
            .new_stream_key(&old_ingress[0].stream_key),
        Some(ingress[0].stream_key.as_str())
    );
    assert_ne!(ingress[0].stream_key, old_ingress[0].stream_key);

    let inbound = api
        .sip()
        .list_sip_inbound_trunk(livekit_api::services::sip::ListSIPInboundTrunkFilter::All)
        .await
        .unwrap();
    let rules = api
        .sip()
        .list_sip_dispatch_rule(livekit_api::services::sip::ListSIPDispatchRuleFilter::All)
        .await
        .unwrap();
    assert_eq!(inbound.len(), 1);
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].trunk_ids, vec![inbound[0].sip_trunk_id.clone()]);
    assert_eq!(
        report
            .applied
            .count(ItemKind::SipOutboundTrunk, &Outcome::Created),
        1
    );
    let rooms = api.room().list_rooms(Vec::new()).await.unwrap();
    assert_eq!(rooms.len(), 2);
}

/// Receives one HTTP POST on `listener`: its body and `Authorization`.
async fn receive_webhook(listener: &tokio::net::TcpListener) -> (String, String) {
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "the webhook ended early");
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_string();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case(name)
                            .then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default()
            };
            let length: usize = header("content-length").parse().unwrap();
            if raw.len() >= end + 4 + length {
                let body = String::from_utf8(raw[end + 4..end + 4 + length].to_vec()).unwrap();
                socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
                return (body, header("authorization"));
            }
        }
    }
}

#[tokio::test]
async fn participants_are_set_again_when_they_rejoin_through_a_signed_webhook() {
    let primary = LiveKitServer::start().await.unwrap();
    let (_, repo) = populated_snapshot(&primary).await;

    let hooks = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let standby = LiveKitServer::start_with(
        LiveKitServerOptions::default()
            .webhook_url(format!("http://{}/livekit", hooks.local_addr().unwrap())),
    )
    .await
    .unwrap();
    let restore = LiveKitRestore::new("livekit/sfu".parse().unwrap(), client(&standby));
    let target = RecoveryTarget::Latest;
    let report = restore
        .restore_state(RestoreRequest::new(repo.as_ref(), &target, objectives()))
        .await
        .unwrap();
    let rejoin = report.rejoin.clone();
    assert_eq!(rejoin.pending(), 3);

    // Alice reconnects to the standby with a plain token: no metadata.
    standby
        .join(
            "standup",
            proto::ParticipantInfo {
                identity: "alice".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let applied = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (body, auth) = receive_webhook(&hooks).await;
            if let Some(applied) = rejoin.webhook(&body, &auth).await.unwrap() {
                return applied;
            }
        }
    })
    .await
    .expect("no participant_joined webhook came");
    assert_eq!(applied.room, "standup");
    assert_eq!(applied.participant.identity, "alice");
    assert_eq!(applied.participant.metadata, "host");
    assert_eq!(applied.participant.name, "ALICE");
    assert_eq!(
        applied
            .participant
            .attributes
            .get("team")
            .map(String::as_str),
        Some("blue")
    );
    assert!(applied.participant.permission.as_ref().unwrap().can_publish);
    assert_eq!(rejoin.pending(), 2);

    // A webhook signed with another secret is refused.
    let err = rejoin
        .webhook("{\"event\":\"participant_joined\"}", "not-a-token")
        .await
        .unwrap_err();
    assert!(matches!(err, dr_livekit::Error::Webhook { .. }), "{err}");
}
