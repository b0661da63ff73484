//! LiveKit's token check and grant table.

use dr_livekit_testkit::{LiveKitServer, LiveKitServerOptions};
use livekit_api::access_token::{AccessToken, SIPGrants, VideoGrants};
use livekit_api::services::ServiceError;
use livekit_api::services::agent_dispatch::AgentDispatchClient;
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use livekit_api::services::sip::{ListSIPInboundTrunkFilter, SIPClient};

use crate::common::{code, http, msg, twirp_json};

fn token(server: &LiveKitServer, grants: VideoGrants) -> String {
    AccessToken::with_api_key(server.api_key(), server.api_secret())
        .with_grants(grants)
        .to_jwt()
        .unwrap()
}

#[tokio::test]
async fn a_token_that_does_not_verify_is_a_plain_text_401() {
    let server = LiveKitServer::start_with(
        LiveKitServerOptions::default().api_key("devkey", "secret-of-32-characters-or-more!"),
    )
    .await
    .unwrap();
    assert_eq!(server.api_key(), "devkey");
    let wrong =
        RoomClient::with_api_key(&server.url(), "devkey", "another-secret-32-characters-long");
    let e = wrong.list_rooms(vec![]).await.unwrap_err();
    // LiveKit's middleware answers before Twirp, in plain text: the client cannot read JSON.
    assert!(
        matches!(
            e,
            ServiceError::Twirp(livekit_api::services::ServerError::Request(_))
        ),
        "{e:?}"
    );

    let bad = AccessToken::with_api_key("devkey", "another-secret-32-characters-long")
        .with_grants(VideoGrants {
            room_list: true,
            ..Default::default()
        })
        .to_jwt()
        .unwrap();
    let answer = twirp_json(&server.url(), "RoomService/ListRooms", &bad, "{}").await;
    assert_eq!(answer.status, 401);
    assert!(answer.content_type.starts_with("text/plain"));
    assert!(
        answer.body.starts_with("invalid authorization token"),
        "{}",
        answer.body
    );

    let other_key = AccessToken::with_api_key("otherkey", "secret-of-32-characters-or-more!")
        .to_jwt()
        .unwrap();
    let answer = twirp_json(&server.url(), "RoomService/ListRooms", &other_key, "{}").await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (401, "invalid API key")
    );

    let answer = http(
        "POST",
        &format!("{}/twirp/livekit.RoomService/ListRooms", server.url()),
        &[
            ("content-type", "application/json"),
            ("authorization", "Basic x"),
        ],
        "{}",
    )
    .await;
    assert_eq!(answer.status, 401);
    assert!(answer.body.starts_with("invalid authorization header"));
}

#[tokio::test]
async fn a_missing_grant_is_unauthenticated_permissions_denied() {
    let server = LiveKitServer::start().await.unwrap();
    // A token with every grant but the one ListRooms needs.
    let no_list = token(
        &server,
        VideoGrants {
            room_create: true,
            room_admin: true,
            room: "a".into(),
            ..Default::default()
        },
    );
    let rooms = RoomClient::with_token(&server.url(), &no_list);
    rooms
        .create_room("a", CreateRoomOptions::default())
        .await
        .unwrap();
    let e = rooms.list_rooms(vec![]).await.unwrap_err();
    // LiveKit's twirpAuthError: unauthenticated (401), never permission_denied.
    assert_eq!(code(&e), Some("unauthenticated"));
    assert_eq!(msg(&e), Some("permissions denied"));

    // roomAdmin for room "a" does not reach room "b".
    rooms.list_participants("a").await.unwrap();
    let e = rooms.list_participants("b").await.unwrap_err();
    assert_eq!(code(&e), Some("unauthenticated"));
    let agents = AgentDispatchClient::with_token(&server.url(), &no_list);
    let e = agents.list_dispatch("b").await.unwrap_err();
    assert_eq!(code(&e), Some("unauthenticated"));
    agents.list_dispatch("a").await.unwrap();

    // SIP wants sip.admin, which video grants do not give; sip.call is not enough.
    let call_only = AccessToken::with_api_key(server.api_key(), server.api_secret())
        .with_sip_grants(SIPGrants {
            call: true,
            ..Default::default()
        })
        .to_jwt()
        .unwrap();
    let e = SIPClient::with_token(&server.url(), &call_only)
        .list_sip_inbound_trunk(ListSIPInboundTrunkFilter::All)
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some("unauthenticated"));

    // No token at all: the service denies, in Twirp JSON.
    let answer = http(
        "POST",
        &format!("{}/twirp/livekit.RoomService/ListRooms", server.url()),
        &[("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["code"], "unauthenticated");
}

#[tokio::test]
async fn routes_methods_and_bodies_are_checked_as_twirp_does() {
    let server = LiveKitServer::start().await.unwrap();
    let t = token(
        &server,
        VideoGrants {
            room_list: true,
            ..Default::default()
        },
    );
    let answer = twirp_json(&server.url(), "RoomService/NoSuchMethod", &t, "{}").await;
    assert_eq!(answer.status, 404);
    assert!(answer.body.contains("bad_route"), "{}", answer.body);
    let answer = twirp_json(&server.url(), "RoomService/ListRooms", &t, "{not json").await;
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("malformed"), "{}", answer.body);
    let answer = twirp_json(
        &server.url(),
        "RoomService/ListRooms",
        &t,
        r#"{"names":[]}"#,
    )
    .await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "{}"));
    let auth = format!("Bearer {t}");
    let answer = http(
        "POST",
        &format!("{}/twirp/livekit.RoomService/ListRooms", server.url()),
        &[("content-type", "text/plain"), ("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(answer.status, 404);
    let answer = http(
        "GET",
        &format!("{}/twirp/livekit.RoomService/ListRooms", server.url()),
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(answer.status, 404);
    assert!(answer.body.contains("only POST"), "{}", answer.body);
}
