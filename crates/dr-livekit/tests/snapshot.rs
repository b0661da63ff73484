//! Snapshots: every part of the state in one snapshot, and a state found
//! unchanged confirmed for next to nothing. Stand-in only: participants join
//! through its test control.

use dr_core::{Backup, BackupBase, BackupExt, BackupRequest};
use dr_livekit::{LiveKitSnapshot, LiveKitSnapshotDetails};
use dr_livekit_testkit::LiveKitServer;

use crate::common::{client, dir_bytes, populate, repository_in};

#[tokio::test]
async fn a_snapshot_holds_rooms_participants_egress_agents_ingress_and_sip() {
    let server = LiveKitServer::start().await.unwrap();
    let livekit = client(&server);
    let desired = populate(&server, &livekit).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository_in(dir.path()).await;
    let snapshot = LiveKitSnapshot::new("livekit/sfu".parse().unwrap(), livekit.clone())
        .desired_rooms(desired);
    let report = snapshot.backup_to(repo.as_ref()).await.unwrap();
    let details = LiveKitSnapshotDetails::of(&report.manifest)
        .unwrap()
        .unwrap();
    let counts = details.counts;
    assert_eq!(counts.rooms, 2);
    assert_eq!(counts.participants, 3);
    assert_eq!(counts.egress, 1);
    assert!(counts.agent_dispatches >= 1, "{counts:?}");
    assert_eq!(counts.ingress, 1);
    assert_eq!(counts.sip_trunks, 2);
    assert_eq!(counts.sip_dispatch_rules, 1);
    assert_eq!(counts.desired_rooms, 1);
    assert_eq!(counts.unreadable, 0, "{:?}", details.unreadable);
    assert!(details.unchanged_since.is_none());
    assert_eq!(details.url, server.url());
}

#[tokio::test]
async fn an_unchanged_state_is_confirmed_in_under_a_kibibyte_and_a_change_is_stored() {
    let server = LiveKitServer::start().await.unwrap();
    let livekit = client(&server);
    let desired = populate(&server, &livekit).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository_in(dir.path()).await;
    let snapshot = LiveKitSnapshot::new("livekit/sfu".parse().unwrap(), livekit.clone())
        .desired_rooms(desired);
    let every_minute =
        || BackupRequest::new(repo.as_ref()).base(BackupBase::LatestFull(repo.as_ref()));
    let first = snapshot.backup(every_minute()).await.unwrap().manifest;
    let before = dir_bytes(dir.path());
    let second = snapshot.backup(every_minute()).await.unwrap().manifest;
    let third = snapshot.backup(every_minute()).await.unwrap().manifest;
    let grown = dir_bytes(dir.path()) - before;
    for confirmation in [&second, &third] {
        let details = LiveKitSnapshotDetails::of(confirmation).unwrap().unwrap();
        assert_eq!(details.unchanged_since, Some(first.id));
        assert_eq!(confirmation.depends_on, Some(first.id));
        assert!(confirmation.streams.is_empty());
    }
    assert!(grown < 2 * 1024, "two confirmations took {grown} bytes");

    // Participants' metadata changes: the state is stored again.
    server
        .join("standup", crate::common::participant("alice", "presenter"))
        .unwrap();
    let fourth = snapshot.backup(every_minute()).await.unwrap().manifest;
    let details = LiveKitSnapshotDetails::of(&fourth).unwrap().unwrap();
    assert!(details.unchanged_since.is_none());
    assert_eq!(fourth.streams.len(), 1);
}
