//! Failover from a dead SFU to a warm standby. Stand-in only: the primary dies with
//! its handle, the standby goes down with a chaos knob.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use dr_core::{
    BackupExt, ComponentId, FailoverHooks, FailoverMode, FailoverRequest, LossLimit, Member,
    Objectives, Rewire, Role,
};
use dr_livekit::{LiveKitFailover, LiveKitSnapshot};
use dr_livekit_testkit::LiveKitServer;

use crate::common::{client, populated_snapshot, repository};

/// Records where clients were pointed.
#[derive(Default)]
struct Pointed(Mutex<Vec<String>>);

#[async_trait]
impl Rewire for Pointed {
    async fn rewire(&self, _: &ComponentId, primary: &Member) -> dr_core::Result<()> {
        self.0.lock().unwrap().push(primary.name.clone());
        Ok(())
    }
}

fn objectives() -> Objectives {
    Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap())
}

#[tokio::test]
async fn a_dead_sfu_fails_over_to_the_standby_with_its_rooms_and_an_honest_report() {
    let primary = LiveKitServer::start().await.unwrap();
    let standby = LiveKitServer::start().await.unwrap();
    let (livekit, repo) = populated_snapshot(&primary).await;
    let failover = LiveKitFailover::new(
        "livekit/sfu".parse().unwrap(),
        livekit.clone(),
        client(&standby),
        repo.clone(),
        objectives(),
    );
    let healthy = dr_core::Failover::assess(&failover).await.unwrap();
    assert_eq!(healthy.primary().unwrap().name, primary.url());

    // A planned switchover is possible while both serve; a failover of a
    // healthy primary is refused by nobody, so the test kills it first.
    drop(primary);
    let assessment = dr_core::Failover::assess(&failover).await.unwrap();
    assert!(assessment.primary().is_none(), "{assessment:?}");
    let standby_member = assessment.member(&standby.url()).unwrap();
    assert_eq!(standby_member.role, Role::Replica);
    assert!(standby_member.reachable);
    assert!(standby_member.lag.unwrap().behind.is_some());

    let pointed = Pointed::default();
    let request = FailoverRequest::new(
        FailoverMode::Failover,
        objectives(),
        LossLimit::Within("1m".parse().unwrap()),
    );
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        dr_core::execute(
            &failover,
            &request,
            FailoverHooks {
                rewire: Some(&pointed),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("the failover took longer than 20 s")
    .unwrap();
    assert_eq!(outcome.plan.promote.name, standby.url());
    assert_eq!(*pointed.0.lock().unwrap(), vec![standby.url()]);
    assert!(outcome.report.data_loss.is_some());
    assert!(outcome.report.data_loss.unwrap().as_duration() < Duration::from_secs(60));
    let restored = failover.last_restore().unwrap();
    assert_eq!(
        restored.applied.failed().count(),
        0,
        "{:?}",
        restored.applied.items
    );
    assert_eq!(standby.counts().0, 2, "both rooms are on the standby");
    // Now the standby serves.
    let after = dr_core::Failover::assess(&failover).await.unwrap();
    assert_eq!(after.primary().unwrap().name, standby.url());
}

#[tokio::test]
async fn a_failover_without_a_snapshot_or_to_an_unhealthy_standby_is_refused() {
    let primary = LiveKitServer::start().await.unwrap();
    let standby = LiveKitServer::start().await.unwrap();
    let repo = repository().await;
    let failover = LiveKitFailover::new(
        "livekit/sfu".parse().unwrap(),
        client(&primary),
        client(&standby),
        repo.clone(),
        objectives(),
    );
    let request = FailoverRequest::new(
        FailoverMode::Failover,
        objectives(),
        LossLimit::Within("1m".parse().unwrap()),
    );
    let err = dr_core::dry_run(&failover, &request).await.unwrap_err();
    assert!(err.to_string().contains("no snapshot"), "{err}");

    LiveKitSnapshot::new("livekit/sfu".parse().unwrap(), client(&primary))
        .backup_to(repo.as_ref())
        .await
        .unwrap();
    standby.set_down(true);
    let err = dr_core::dry_run(&failover, &request).await.unwrap_err();
    assert!(err.to_string().contains("not healthy"), "{err}");
    standby.set_down(false);
    let plan = dr_core::dry_run(&failover, &request).await.unwrap();
    assert_eq!(plan.promote.name, standby.url());
    assert!(plan.fence.is_empty());
}
