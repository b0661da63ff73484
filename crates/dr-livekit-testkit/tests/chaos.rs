//! Health and the chaos knobs.

use std::time::{Duration, Instant};

use dr_livekit_testkit::LiveKitServer;
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use livekit_protocol as lk;

use crate::common::{code, http, participant};

#[tokio::test]
async fn health_ready_down_html_and_delay() {
    let server = LiveKitServer::start().await.unwrap();
    let rooms = RoomClient::with_api_key(&server.url(), server.api_key(), server.api_secret());
    let health = format!("{}/", server.url());
    let ok = http("GET", &health, &[], "").await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "OK"));

    server.set_ready(false);
    let answer = http("GET", &health, &[], "").await;
    assert_eq!((answer.status, answer.body.as_str()), (406, "Not Ready"));
    rooms.list_rooms(vec![]).await.unwrap();
    server.set_ready(true);

    server.set_down(true);
    assert_eq!(http("GET", &health, &[], "").await.status, 406);
    let e = rooms.list_rooms(vec![]).await.unwrap_err();
    assert_eq!(code(&e), Some("unavailable"));
    server.set_down(false);

    server.set_html(true);
    let page = http("GET", &health, &[], "").await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    assert!(
        rooms.list_rooms(vec![]).await.is_err(),
        "HTML is no protobuf"
    );
    server.set_html(false);

    server.set_delay(Duration::from_millis(150));
    let started = Instant::now();
    rooms.list_rooms(vec![]).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    server.set_delay(Duration::ZERO);
}

#[tokio::test]
async fn restart_wipes_rooms_and_aborts_their_egress() {
    let server = LiveKitServer::start().await.unwrap();
    let rooms = RoomClient::with_api_key(&server.url(), server.api_key(), server.api_secret());
    let before = rooms
        .create_room("r", CreateRoomOptions::default())
        .await
        .unwrap();
    server.join("r", participant("p")).unwrap();
    let egress = livekit_api::services::egress::EgressClient::with_api_key(
        &server.url(),
        server.api_key(),
        server.api_secret(),
    );
    let info = egress
        .start_egress(lk::StartEgressRequest {
            room_name: "r".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    server.restart();
    assert!(rooms.list_rooms(vec![]).await.unwrap().is_empty());
    assert_eq!(server.counts(), (0, 0));
    let ended = egress
        .list_egress(Default::default())
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.egress_id == info.egress_id)
        .unwrap();
    assert_eq!(ended.status, lk::EgressStatus::EgressAborted as i32);
    let after = rooms
        .create_room("r", CreateRoomOptions::default())
        .await
        .unwrap();
    assert_ne!(after.sid, before.sid, "a recreated room gets a new sid");
}
