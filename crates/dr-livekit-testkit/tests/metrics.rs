//! Prometheus metrics on their own port, with LiveKit's names and labels.

use dr_livekit_testkit::{LiveKitServer, LiveKitServerOptions};
use livekit_api::services::room::{CreateRoomOptions, RoomClient};

use crate::common::{http, participant};

#[tokio::test]
async fn rooms_participants_and_twirp_statuses() {
    let server = LiveKitServer::start_with(LiveKitServerOptions::default().node_id("ND_test"))
        .await
        .unwrap();
    assert_ne!(server.metrics_url(), format!("{}/metrics", server.url()));
    let rooms = RoomClient::with_api_key(&server.url(), server.api_key(), server.api_secret());
    rooms
        .create_room("a", CreateRoomOptions::default())
        .await
        .unwrap();
    server.join("b", participant("x")).unwrap();
    server.join("b", participant("y")).unwrap();
    rooms.list_rooms(vec![]).await.unwrap();
    rooms.list_rooms(vec![]).await.unwrap();
    let _ = rooms.delete_room("missing").await.unwrap_err();

    let answer = http("GET", &server.metrics_url(), &[], "").await;
    assert_eq!(answer.status, 200);
    let lines = answer.body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    let node = [("node_id", "ND_test"), ("node_type", "SERVER")];
    assert_eq!(value("livekit_room_total", &node), Some(2.0));
    assert_eq!(value("livekit_participant_total", &node), Some(2.0));
    let ok = [
        ("service", "RoomService"),
        ("method", "ListRooms"),
        ("status", "200"),
        ("code", ""),
        ("node_id", "ND_test"),
    ];
    assert_eq!(value("livekit_node_twirp_request_status", &ok), Some(2.0));
    let missing = [
        ("method", "DeleteRoom"),
        ("status", "4xx"),
        ("code", "not_found"),
    ];
    assert_eq!(
        value("livekit_node_twirp_request_status", &missing),
        Some(1.0)
    );
    assert_eq!(server.request_count("RoomService", "ListRooms"), 2);
    assert_eq!(server.request_counts()["RoomService/DeleteRoom"], 1);
    assert_eq!(
        http("GET", &format!("{}/other", server.metrics_url()), &[], "")
            .await
            .status,
        404
    );
}
