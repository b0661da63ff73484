//! RoomService through `livekit_api::services::room::RoomClient`, and CreateRoom in JSON.

use std::collections::HashMap;

use dr_livekit_testkit::LiveKitServer;
use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_api::services::agent_dispatch::AgentDispatchClient;
use livekit_api::services::room::{CreateRoomOptions, RoomClient, UpdateParticipantOptions};
use livekit_protocol as lk;

use crate::common::{code, msg, participant, twirp_json};

fn client(server: &LiveKitServer) -> RoomClient {
    RoomClient::with_api_key(&server.url(), server.api_key(), server.api_secret())
}

#[tokio::test]
async fn create_is_an_upsert_of_non_zero_fields() {
    let server = LiveKitServer::start().await.unwrap();
    let rooms = client(&server);
    let made = rooms
        .create_room(
            "standup",
            CreateRoomOptions {
                empty_timeout: 600,
                max_participants: 10,
                metadata: "v1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        made.sid.starts_with("RM_") && made.sid.len() == 15,
        "{}",
        made.sid
    );
    assert!(made.creation_time > 0 && made.creation_time_ms >= made.creation_time * 1000);
    assert_eq!((made.empty_timeout, made.departure_timeout), (600, 20));
    // Zero and empty fields leave the room as it was; the sid stays.
    let again = rooms
        .create_room(
            "standup",
            CreateRoomOptions {
                departure_timeout: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(again.sid, made.sid);
    assert_eq!(
        (
            again.empty_timeout,
            again.departure_timeout,
            again.max_participants
        ),
        (600, 5, 10)
    );
    assert_eq!(again.metadata, "v1");

    rooms
        .create_room("other", CreateRoomOptions::default())
        .await
        .unwrap();
    let all = rooms.list_rooms(vec![]).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["other", "standup"]
    );
    let some = rooms
        .list_rooms(vec!["standup".into(), "missing".into()])
        .await
        .unwrap();
    assert_eq!(some.len(), 1);
    assert_eq!(some[0].metadata, "v1");

    let updated = rooms.update_room_metadata("standup", "v2").await.unwrap();
    assert_eq!(updated.metadata, "v2");
    let e = rooms
        .update_room_metadata("missing", "x")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some("not_found"));

    rooms.delete_room("other").await.unwrap();
    let e = rooms.delete_room("other").await.unwrap_err();
    assert_eq!(code(&e), Some("not_found"));
    assert_eq!(msg(&e), Some("requested room does not exist"));
    assert_eq!(rooms.list_rooms(vec![]).await.unwrap().len(), 1);
    assert_eq!(server.request_count("RoomService", "CreateRoom"), 3);
}

#[tokio::test]
async fn participants_joined_by_the_test_are_listed_updated_and_removed() {
    let server = LiveKitServer::start().await.unwrap();
    let rooms = client(&server);
    // Joining creates the room, as LiveKit's auto_create does.
    let ada = server.join("class", participant("ada")).unwrap();
    assert!(ada.sid.starts_with("PA_"));
    assert_eq!(ada.state, lk::participant_info::State::Active as i32);
    server.join("class", participant("bob")).unwrap();
    assert_eq!(
        rooms.list_rooms(vec![]).await.unwrap()[0].num_participants,
        2
    );

    let listed = rooms.list_participants("class").await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(rooms.list_participants("nowhere").await.unwrap().is_empty());
    let got = rooms.get_participant("class", "ada").await.unwrap();
    assert_eq!(got.sid, ada.sid);
    let e = rooms.get_participant("class", "zed").await.unwrap_err();
    assert_eq!(code(&e), Some("not_found"));

    let mut attributes = HashMap::new();
    attributes.insert("role".to_owned(), "teacher".to_owned());
    attributes.insert("desk".to_owned(), "3".to_owned());
    let updated = rooms
        .update_participant(
            "class",
            "ada",
            UpdateParticipantOptions {
                name: "Ada L.".into(),
                attributes,
                permission: Some(lk::ParticipantPermission {
                    can_publish: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "Ada L.");
    assert_eq!(updated.metadata, ada.metadata, "empty metadata leaves it");
    assert!(updated.permission.unwrap().can_publish);
    // An empty value removes the key; the others merge.
    let mut attributes = HashMap::new();
    attributes.insert("desk".to_owned(), String::new());
    let updated = rooms
        .update_participant(
            "class",
            "ada",
            UpdateParticipantOptions {
                metadata: "m2".into(),
                attributes,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.metadata, "m2");
    assert_eq!(updated.attributes.len(), 1);
    assert_eq!(updated.attributes["role"], "teacher");
    assert_eq!(updated.name, "Ada L.");
    let e = rooms
        .update_participant("class", "zed", UpdateParticipantOptions::default())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some("not_found"));

    rooms.remove_participant("class", "bob").await.unwrap();
    let e = rooms.remove_participant("class", "bob").await.unwrap_err();
    assert_eq!(code(&e), Some("not_found"));
    server.leave("class", "ada").unwrap();
    assert!(server.leave("class", "ada").is_err());
    assert_eq!(server.counts(), (1, 0));
}

#[tokio::test]
async fn room_config_keeps_egress_and_agents_that_the_api_does_not_return() {
    let server = LiveKitServer::start().await.unwrap();
    let token = AccessToken::with_api_key(server.api_key(), server.api_secret())
        .with_grants(VideoGrants {
            room_create: true,
            ..Default::default()
        })
        .to_jwt()
        .unwrap();
    // JSON, camelCase, as the Node SDK sends it.
    let answer = twirp_json(
        &server.url(),
        "RoomService/CreateRoom",
        &token,
        r#"{"name":"kept","emptyTimeout":60,
            "egress":{"tracks":{"filepath":"/out/{track_id}"}},
            "agents":[{"agentName":"scribe","metadata":"m"}]}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.content_type, "application/json");
    let room: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(room["name"], "kept");
    assert_eq!(room["emptyTimeout"], 60);
    assert!(room.get("egress").is_none() && room.get("agents").is_none());

    let config = server.room_config("kept").unwrap();
    assert_eq!(
        config.egress.unwrap().tracks.unwrap().filepath,
        "/out/{track_id}"
    );
    assert_eq!(config.agents.len(), 1);
    assert_eq!(config.agents[0].agent_name, "scribe");
    assert!(server.room_config("missing").is_none());

    // The room started a dispatch per agent it asked for.
    let dispatches =
        AgentDispatchClient::with_api_key(&server.url(), server.api_key(), server.api_secret())
            .list_dispatch("kept")
            .await
            .unwrap();
    assert_eq!(dispatches.len(), 1);
    assert_eq!(dispatches[0].agent_name, "scribe");
    assert!(dispatches[0].id.starts_with("AD_"));

    // snake_case is read too.
    let answer = twirp_json(
        &server.url(),
        "RoomService/CreateRoom",
        &token,
        r#"{"name":"snake","max_participants":7}"#,
    )
    .await;
    let room: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(room["maxParticipants"], 7);
}

#[tokio::test]
async fn deleting_a_room_removes_its_participants_and_aborts_its_egress() {
    let server = LiveKitServer::start().await.unwrap();
    let rooms = client(&server);
    server.join("gone", participant("ada")).unwrap();
    let egress = livekit_api::services::egress::EgressClient::with_api_key(
        &server.url(),
        server.api_key(),
        server.api_secret(),
    );
    let info = egress
        .start_room_composite_egress(
            "gone",
            vec![],
            livekit_api::services::egress::RoomCompositeOptions::default(),
        )
        .await
        .unwrap();
    rooms.delete_room("gone").await.unwrap();
    assert!(rooms.list_participants("gone").await.unwrap().is_empty());
    let after = egress
        .list_egress(livekit_api::services::egress::EgressListOptions {
            filter: livekit_api::services::egress::EgressListFilter::Egress(info.egress_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after[0].status, lk::EgressStatus::EgressAborted as i32);
    assert!(after[0].ended_at > 0);
    assert_eq!(server.counts(), (0, 0));
}
