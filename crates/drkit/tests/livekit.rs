//! `livekit` components: a snapshot, a second that only confirms the
//! unchanged state, verify, and restores onto the server after a restart
//! and onto its standby, with the remap saved; bad settings refused.

use dr_livekit_testkit::LiveKitServer;
use livekit_protocol as proto;

use crate::common::{Setup, text};

const COMPONENT: &str = "livekit/sfu";

/// A config whose component backs up `primary` (secret from a file) with
/// `standby` as its standby, and its repository created.
async fn setup(primary: &LiveKitServer, standby: &LiveKitServer) -> Setup {
    setup_with(primary, standby, "").await
}

/// As [`setup`], with more lines of `[component.livekit]`.
async fn setup_with(primary: &LiveKitServer, standby: &LiveKitServer, more: &str) -> Setup {
    let setup = Setup::with_components(|dir| {
        let secret = dir.join("livekit.secret");
        std::fs::write(&secret, format!("{}\n", primary.api_secret())).unwrap();
        format!(
            "[[component]]\nid = \"{COMPONENT}\"\nkind = \"livekit\"\n\
             objectives = {{ rto = \"5m\", rpo = \"1m\" }}\nretention = \"last=10\"\n\n\
             [component.livekit]\nurl = \"{url}\"\napi_key = \"{key}\"\n\
             api_secret = {{ file = \"{secret}\" }}\nstandby_url = \"{standby}\"\n{more}\n",
            url = primary.url(),
            key = primary.api_key(),
            secret = secret.display(),
            standby = standby.url(),
        )
    });
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    setup
}

/// Rooms with participants, an egress and an ingress on `server`.
async fn populate(server: &LiveKitServer) {
    let api = livekit_api::services::LiveKitApi::with_api_key(
        &server.url(),
        server.api_key(),
        server.api_secret(),
    );
    for (room, metadata) in [("standup", "daily"), ("all-hands", "quarterly")] {
        api.room()
            .create_room(
                room,
                livekit_api::services::room::CreateRoomOptions {
                    metadata: metadata.into(),
                    max_participants: 50,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    for identity in ["alice", "bob"] {
        server
            .join(
                "standup",
                proto::ParticipantInfo {
                    identity: identity.into(),
                    metadata: format!("{identity}-meta"),
                    ..Default::default()
                },
            )
            .unwrap();
    }
    api.ingress()
        .create_ingress(
            proto::IngressInput::RtmpInput,
            livekit_api::services::ingress::CreateIngressOptions {
                name: "studio".into(),
                room_name: "all-hands".into(),
                participant_identity: "studio".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_livekit_component_is_snapshotted_confirmed_verified_and_restored() {
    let primary = LiveKitServer::start().await.unwrap();
    // The standby shares the primary's key and secret, as a warm standby does.
    let standby = LiveKitServer::start_with(
        dr_livekit_testkit::LiveKitServerOptions::default()
            .api_key(primary.api_key(), primary.api_secret()),
    )
    .await
    .unwrap();
    populate(&primary).await;
    let setup = setup(&primary, &standby).await;

    let first = setup.drkit(&["backup", COMPONENT]).await;
    assert!(first.status.success(), "{}", text(&first));
    let printed = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(printed.contains("2 rooms, 2 participants"), "{printed}");

    let second = setup.drkit(&["backup", COMPONENT]).await;
    assert!(second.status.success(), "{}", text(&second));
    let printed = String::from_utf8_lossy(&second.stdout).to_string();
    assert!(printed.contains("unchanged since"), "{printed}");

    let verify = setup.drkit(&["verify", "--component", COMPONENT]).await;
    assert!(verify.status.success(), "{}", text(&verify));

    // The SFU restarts: its rooms are gone, its ingress stays.
    primary.restart();
    let restore = setup.drkit(&["restore", COMPONENT]).await;
    assert!(restore.status.success(), "{}", text(&restore));
    assert_eq!(primary.counts().0, 2);
    let printed = String::from_utf8_lossy(&restore.stdout).to_string();
    assert!(printed.contains("2 participants to set again"), "{printed}");

    // The region is gone: the standby gets everything, the ingress anew.
    let remap = setup.dir.path().join("remap.json");
    let onto_standby = setup
        .drkit(&[
            "restore",
            COMPONENT,
            "--standby",
            "--remap",
            remap.to_str().unwrap(),
        ])
        .await;
    assert!(onto_standby.status.success(), "{}", text(&onto_standby));
    assert_eq!(standby.counts().0, 2);
    let remap: serde_json::Value = serde_json::from_slice(&std::fs::read(&remap).unwrap()).unwrap();
    let ingress: Vec<&serde_json::Value> = remap["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "ingress")
        .collect();
    assert_eq!(ingress.len(), 1, "{remap}");
    assert_ne!(ingress[0]["old_stream_key"], ingress[0]["new_stream_key"]);

    // A flag of another kind is refused.
    let wrong = setup.drkit(&["restore", COMPONENT, "--single-pass"]).await;
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
}

#[tokio::test]
async fn a_wrong_secret_fails_the_backup_and_names_the_server() {
    let primary = LiveKitServer::start().await.unwrap();
    let standby = LiveKitServer::start().await.unwrap();
    let setup = setup(&primary, &standby).await;
    std::fs::write(setup.dir.path().join("livekit.secret"), "wrong\n").unwrap();
    let backup = setup.drkit(&["backup", COMPONENT]).await;
    assert!(!backup.status.success(), "{}", text(&backup));
    let err = String::from_utf8_lossy(&backup.stderr).to_string();
    assert!(err.contains(&primary.url()), "{err}");
    assert!(err.contains("refused the API key or secret"), "{err}");
}

#[tokio::test]
async fn a_dead_sfu_is_failed_over_to_its_standby_and_clients_pointed_there() {
    let primary = LiveKitServer::start().await.unwrap();
    let standby = LiveKitServer::start_with(
        dr_livekit_testkit::LiveKitServerOptions::default()
            .api_key(primary.api_key(), primary.api_secret()),
    )
    .await
    .unwrap();
    populate(&primary).await;
    let pointed = tempfile::NamedTempFile::new().unwrap();
    let rewire = format!(
        "rewire_command = [\"sh\", \"-c\", \"echo {{url}} > {}\"]",
        pointed.path().display()
    );
    let setup = setup_with(&primary, &standby, &rewire).await;
    let backup = setup.drkit(&["backup", COMPONENT]).await;
    assert!(backup.status.success(), "{}", text(&backup));

    drop(primary);
    let plan = setup.drkit(&["failover", COMPONENT, "--dry-run"]).await;
    assert!(plan.status.success(), "{}", text(&plan));
    let printed = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(printed.contains(&format!("promote  {}", standby.url())), "{printed}");
    assert_eq!(standby.counts().0, 0, "a dry run changes nothing");

    let failover = setup.drkit(&["failover", COMPONENT]).await;
    assert!(failover.status.success(), "{}", text(&failover));
    assert_eq!(standby.counts().0, 2);
    assert_eq!(
        std::fs::read_to_string(pointed.path()).unwrap().trim(),
        standby.url()
    );
    let printed = String::from_utf8_lossy(&failover.stdout).to_string();
    assert!(printed.contains("remapped Ingress"), "{printed}");
}
