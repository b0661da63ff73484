//! What runs unchanged against a real LiveKit (`DRKIT_TEST_LIVEKIT_URL`,
//! `_KEY`, `_SECRET`), the stand-in otherwise: only API calls, only the
//! test's own rooms. The other tests use the stand-in's controls
//! (participants joined by the test, restarts, chaos knobs) and run
//! against it only.

use dr_core::{BackupExt, Objectives, RecoveryTarget, RestoreRequest};
use dr_livekit::{ItemKind, LiveKit, LiveKitProbe, LiveKitRestore, LiveKitSnapshot, Outcome};
use livekit_api::services::room::CreateRoomOptions;

use crate::common::{Sfu, repository, run_prefix};

#[tokio::test]
async fn rooms_deleted_through_the_api_come_back_with_their_settings() {
    let sfu = Sfu::start().await;
    let api = sfu.api();
    let prefix = run_prefix();
    let names: Vec<String> = (0..3).map(|i| format!("{prefix}{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        api.room()
            .create_room(
                name,
                CreateRoomOptions {
                    metadata: format!("{{\"n\":{i}}}"),
                    max_participants: 10 + i as u32,
                    empty_timeout: 600,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let component = format!("livekit/{}", prefix.trim_end_matches('-'));
    let repo = repository().await;
    LiveKitSnapshot::new(component.parse().unwrap(), sfu.client())
        .backup_to(repo.as_ref())
        .await
        .unwrap();
    let before = api.room().list_rooms(names.clone()).await.unwrap();
    assert_eq!(before.len(), 3);
    for name in &names[..2] {
        api.room().delete_room(name).await.unwrap();
    }

    let restore = LiveKitRestore::new(component.parse().unwrap(), sfu.client());
    let target = RecoveryTarget::Latest;
    let report = restore
        .restore_state(RestoreRequest::new(
            repo.as_ref(),
            &target,
            Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap()),
        ))
        .await
        .unwrap();
    let mine = |kind: ItemKind, outcome: &Outcome| {
        report
            .applied
            .items
            .iter()
            .filter(|i| i.kind == kind && i.name.starts_with(&prefix))
            .filter(|i| std::mem::discriminant(&i.outcome) == std::mem::discriminant(outcome))
            .count()
    };
    assert_eq!(mine(ItemKind::Room, &Outcome::Created), 2);
    assert_eq!(mine(ItemKind::Room, &Outcome::Unchanged), 1);
    let after = api.room().list_rooms(names.clone()).await.unwrap();
    for was in &before {
        let is = after.iter().find(|r| r.name == was.name).unwrap();
        assert_eq!(is.metadata, was.metadata);
        assert_eq!(is.max_participants, was.max_participants);
        assert_eq!(is.empty_timeout, was.empty_timeout);
    }
    for name in &names {
        api.room().delete_room(name).await.ok();
    }
}

#[tokio::test]
async fn a_healthy_server_probes_healthy_and_a_wrong_secret_is_refused() {
    let sfu = Sfu::start().await;
    let health = LiveKitProbe::new().check(&sfu.client()).await;
    assert!(health.is_healthy(), "{health:?}");
    let wrong = LiveKit::new(&sfu.url(), sfu.key(), "not-the-secret").unwrap();
    let err = dr_livekit::LiveKitState::read(&wrong, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, dr_livekit::Error::Unauthenticated { .. }),
        "{err}"
    );
    assert!(!LiveKitProbe::new().check(&wrong).await.is_healthy());
}
