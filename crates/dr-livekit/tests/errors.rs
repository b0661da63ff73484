//! Bad settings and broken servers: clear errors, never a snapshot or a
//! restore that pretends; and the health probe. Stand-in only: the
//! servers are made to fail with its chaos knobs (down, slow, HTML).

use std::time::Duration;

use dr_core::{BackupExt, ErrorKind};
use dr_livekit::{Error, LiveKit, LiveKitProbe, LiveKitSnapshot, LiveKitState, Readiness};
use dr_livekit_testkit::LiveKitServer;

use crate::common::{client, populate, repository};

fn snapshot_of(livekit: LiveKit) -> LiveKitSnapshot {
    LiveKitSnapshot::new("livekit/sfu".parse().unwrap(), livekit)
}

#[tokio::test]
async fn a_wrong_secret_is_an_auth_error_and_stores_nothing() {
    let server = LiveKitServer::start().await.unwrap();
    let wrong = LiveKit::new(&server.url(), server.api_key(), "not-the-secret").unwrap();
    let err = LiveKitState::read(&wrong, None).await.unwrap_err();
    assert!(matches!(err, Error::Unauthenticated { .. }), "{err}");
    assert!(err.to_string().contains("RoomService.ListRooms"), "{err}");
    let repo = repository().await;
    let err = snapshot_of(wrong)
        .backup_to(repo.as_ref())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let listed = dr_core::SnapshotSource::snapshots(repo.as_ref(), &"livekit/sfu".parse().unwrap())
        .await
        .unwrap();
    assert!(listed.is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // A port nothing listens on: bound, then closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let gone = LiveKit::new(&format!("http://127.0.0.1:{port}"), "key", "secret")
        .unwrap()
        .with_request_timeout(Duration::from_secs(2));
    let err = LiveKitState::read(&gone, None).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(err.is_retryable());
    let err: dr_core::Error = err.into();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
}

#[tokio::test]
async fn an_html_page_instead_of_twirp_is_not_taken_for_livekit() {
    let server = LiveKitServer::start().await.unwrap();
    let livekit = client(&server);
    populate(&server, &livekit).await;
    server.set_html(true);
    let err = LiveKitState::read(&livekit, None).await.unwrap_err();
    assert!(matches!(err, Error::NotLiveKit { .. }), "{err}");
    let health = LiveKitProbe::new().check(&livekit).await;
    assert!(!health.is_healthy());
    assert!(
        health.problem().unwrap().contains("ListRooms"),
        "{health:?}"
    );
}

#[tokio::test]
async fn a_server_that_is_down_is_a_retryable_error_and_an_unhealthy_probe() {
    let server = LiveKitServer::start().await.unwrap();
    let livekit = client(&server);
    let probe = LiveKitProbe::new().metrics_url(server.metrics_url());
    let healthy = probe.check(&livekit).await;
    assert!(healthy.is_healthy(), "{healthy:?}");
    let metrics = healthy.metrics.unwrap().unwrap();
    assert_eq!(metrics.rooms, Some(0.0));

    server.set_ready(false);
    let not_ready = probe.check(&livekit).await;
    assert_eq!(not_ready.readiness, Readiness::NotReady);
    assert!(!not_ready.is_healthy());
    server.set_ready(true);

    server.set_down(true);
    let err = LiveKitState::read(&livekit, None).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(&err, Error::Server { code, .. } if code == "unavailable"),
        "{err}"
    );
    assert!(!probe.check(&livekit).await.is_healthy());
}

#[tokio::test]
async fn a_slow_server_times_out_within_the_request_timeout() {
    let server = LiveKitServer::start().await.unwrap();
    server.set_delay(Duration::from_secs(3));
    let livekit = client(&server).with_request_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = LiveKitState::read(&livekit, None).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_token_without_a_grant_the_snapshot_needs_names_the_grant() {
    use livekit_api::access_token::{AccessToken, VideoGrants};

    let server = LiveKitServer::start().await.unwrap();
    let full = client(&server);
    populate(&server, &full).await;
    // Only the list of rooms: not the rooms' participants.
    let token = AccessToken::with_api_key(server.api_key(), server.api_secret())
        .with_grants(VideoGrants {
            room_list: true,
            ..Default::default()
        })
        .to_jwt()
        .unwrap();
    let limited = LiveKit::with_token(&server.url(), &token).unwrap();
    assert_eq!(limited.api_key(), server.api_key());
    let err = LiveKitState::read(&limited, None).await.unwrap_err();
    match &err {
        Error::PermissionDenied { call, grant, .. } => {
            assert!(grant.contains("roomAdmin"), "{err}");
            assert!(
                call.contains("ListParticipants") || call.contains("ListDispatch"),
                "{err}"
            );
        }
        other => panic!("{other}"),
    }
    let err: dr_core::Error = err.into();
    assert_eq!(err.kind(), ErrorKind::Auth);
    // Not a token at all.
    assert!(matches!(
        LiveKit::with_token(&server.url(), "not-a-jwt"),
        Err(Error::InvalidConfig { .. })
    ));
}
