//! Webhooks, received by a tiny hyper server and verified by `WebhookReceiver`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use dr_livekit_testkit::{LiveKitServer, LiveKitServerOptions};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use livekit_api::access_token::TokenVerifier;
use livekit_api::services::egress::EgressClient;
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use livekit_api::webhooks::WebhookReceiver;
use livekit_protocol as lk;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::common::participant;

/// What one POST carried: content type, `Authorization`, body.
type Posted = (String, String, String);

async fn receiver() -> (
    String,
    mpsc::UnboundedReceiver<Posted>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/livekit/webhook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let header = |name: &str| {
                            request
                                .headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned()
                        };
                        let (ct, auth) = (header("content-type"), header("authorization"));
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let _ = tx.send((ct, auth, String::from_utf8_lossy(&body).into_owned()));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, rx, task)
}

#[tokio::test]
async fn events_are_signed_as_livekit_signs_them() {
    let (url, mut posted, task) = receiver().await;
    let server = LiveKitServer::start_with(LiveKitServerOptions::default().webhook_url(url))
        .await
        .unwrap();
    let verify = WebhookReceiver::new(TokenVerifier::with_api_key(
        server.api_key(),
        server.api_secret(),
    ));
    let rooms = RoomClient::with_api_key(&server.url(), server.api_key(), server.api_secret());
    rooms
        .create_room("hooked", CreateRoomOptions::default())
        .await
        .unwrap();
    server.join("hooked", participant("ada")).unwrap();
    let egress = EgressClient::with_api_key(&server.url(), server.api_key(), server.api_secret());
    let info = egress
        .start_egress(lk::StartEgressRequest {
            room_name: "hooked".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    server
        .set_egress_status(&info.egress_id, lk::EgressStatus::EgressActive)
        .unwrap();
    rooms.remove_participant("hooked", "ada").await.unwrap();
    rooms.delete_room("hooked").await.unwrap();

    let expected = [
        "room_started",
        "participant_joined",
        "egress_started",
        "egress_updated",
        "participant_left",
        "egress_ended",
        "room_finished",
    ];
    for want in expected {
        let (content_type, auth, body) =
            tokio::time::timeout(Duration::from_secs(5), posted.recv())
                .await
                .expect("a webhook in time")
                .unwrap();
        assert_eq!(content_type, "application/webhook+json");
        assert!(!auth.starts_with("Bearer"));
        let event = verify.receive(&body, &auth).expect("verifies");
        assert_eq!(event.event, want);
        assert!(event.id.starts_with("EV_") && event.created_at > 0);
        match want {
            "participant_joined" | "participant_left" => {
                assert_eq!(event.participant.unwrap().identity, "ada");
                assert_eq!(event.room.unwrap().name, "hooked");
            }
            "egress_ended" => {
                assert_eq!(
                    event.egress_info.unwrap().status,
                    lk::EgressStatus::EgressAborted as i32
                );
            }
            "room_started" | "room_finished" => assert_eq!(event.room.unwrap().name, "hooked"),
            _ => assert_eq!(event.egress_info.unwrap().egress_id, info.egress_id),
        }
        // A tampered body fails the sha256 claim.
        assert!(verify.receive(&format!("{body} "), &auth).is_err());
    }
    task.abort();
}

#[tokio::test]
async fn a_missing_receiver_does_not_block_calls() {
    // Nothing listens on this port once the listener is dropped.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = LiveKitServer::start_with(
        LiveKitServerOptions::default().webhook_url(format!("http://127.0.0.1:{port}/")),
    )
    .await
    .unwrap();
    let rooms = RoomClient::with_api_key(&server.url(), server.api_key(), server.api_secret());
    for i in 0..20 {
        rooms
            .create_room(&format!("r{i}"), CreateRoomOptions::default())
            .await
            .unwrap();
    }
    assert!(
        LiveKitServer::start_with(LiveKitServerOptions::default().webhook_url("https://x/"))
            .await
            .is_err()
    );
}
