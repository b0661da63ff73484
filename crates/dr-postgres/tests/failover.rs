//! Failover of a real primary to one of two streaming replicas: the cluster
//! assessed, the plan and its loss guard, the fence, the promotion, and the
//! remaining replica following the new primary.

use std::sync::Mutex;
use std::time::Duration;

use dr_core::{
    Failover, FailoverHooks, FailoverMode, FailoverRequest, Fence, LossLimit, Member, Monitor,
    MonitorEvent, MonitorOptions, Objectives, Rpo, async_trait,
};
use dr_postgres::{
    MemberStatus, PgCluster, PgFailover, PgMember, PgTools, Rejoin, RejoinMethod, SqlFence, Tls,
};
use dr_testkit::{Postgres, PostgresOptions, eventually};

use crate::common::{WAIT, lsn};

/// A primary and two streaming replicas, with a table written on the primary.
/// The primary keeps WAL for a rewind of its own after it is lost (a
/// crash recovery's checkpoint would otherwise recycle what pg_rewind
/// reads).
async fn three() -> (Postgres, Postgres, Postgres) {
    three_with(PostgresOptions::default().setting("wal_keep_size", "256MB")).await
}

async fn three_with(options: PostgresOptions) -> (Postgres, Postgres, Postgres) {
    let primary = Postgres::start_with(options).await.unwrap();
    primary
        .connect("postgres")
        .await
        .unwrap()
        .batch_execute("CREATE TABLE events (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
        .await
        .unwrap();
    let one = primary.start_replica().await.unwrap();
    let two = primary.start_replica().await.unwrap();
    (primary, one, two)
}

fn cluster(members: &[(&str, &Postgres)]) -> PgCluster {
    members.iter().fold(
        PgCluster::new("postgres/main".parse().unwrap(), Tls::none())
            .probe_timeout(Duration::from_secs(3)),
        |cluster, (name, pg)| cluster.member(PgMember::new(*name, pg.config("postgres"))),
    )
}

/// The hooks of a failover that fences with `fence` alone.
fn fenced(fence: &dyn Fence) -> FailoverHooks<'_> {
    FailoverHooks {
        fence: Some(fence),
        ..FailoverHooks::default()
    }
}

/// `ALTER SYSTEM SET setting = 'value'` on `pg`, then a reload.
async fn alter_system(pg: &Postgres, setting: &str, value: &str) {
    let session = pg.connect("postgres").await.unwrap();
    let value = value.replace('\'', "''");
    session
        .batch_execute(&format!("ALTER SYSTEM SET {setting} = '{value}'"))
        .await
        .unwrap();
    session
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
}

fn request(limit: LossLimit) -> FailoverRequest {
    let objectives = Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap());
    FailoverRequest::new(FailoverMode::Failover, objectives, limit)
}

async fn write(pg: &Postgres, rows: u32) {
    pg.connect("postgres")
        .await
        .unwrap()
        .execute(
            "INSERT INTO events (at) SELECT now() FROM generate_series(1, $1)",
            &[&i32::try_from(rows).unwrap()],
        )
        .await
        .unwrap();
}

async fn count(pg: &Postgres) -> i64 {
    pg.connect("postgres")
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0)
}

/// Inserts into `events` on `pg` one row after another until an insert
/// fails; the task returns how many were acknowledged.
async fn acknowledged_writes(pg: &Postgres) -> tokio::task::JoinHandle<i64> {
    let writer = pg.connect("postgres").await.unwrap();
    tokio::spawn(async move {
        let mut acknowledged = 0;
        while writer
            .execute("INSERT INTO events DEFAULT VALUES", &[])
            .await
            .is_ok()
        {
            acknowledged += 1;
        }
        acknowledged
    })
}

/// Waits until every replica has replayed what the primary flushed.
async fn caught_up(failover: &PgFailover) {
    eventually("the replicas to catch up", WAIT, || async {
        let state = failover.state().await.unwrap();
        state
            .replicas()
            .all(|(_, r)| r.lag.is_some_and(|l| l.replay_bytes == 0))
            .then_some(())
    })
    .await;
}

/// A fence that records what it was asked to fence, and fails if told to.
#[derive(Default)]
struct RecordingFence {
    fenced: Mutex<Vec<String>>,
    fail: bool,
}

#[async_trait]
impl Fence for RecordingFence {
    async fn fence(&self, member: &Member) -> dr_core::Result<()> {
        if self.fail {
            return Err(dr_core::Error::invalid(
                "fence",
                "the power switch did not answer",
            ));
        }
        self.fenced.lock().unwrap().push(member.name.clone());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_assessed_with_each_replicas_lag() {
    let (primary, one, two) = three().await;
    let failover = PgFailover::new(cluster(&[
        ("pg-1", &primary),
        ("pg-2", &one),
        ("pg-3", &two),
    ]));
    write(&primary, 100).await;
    caught_up(&failover).await;

    let state = failover.state().await.unwrap();
    let (member, p) = state.primary().expect("one primary");
    assert_eq!(member.name, "pg-1");
    assert!(p.writable);
    assert_eq!(p.timeline, 1);
    assert_eq!(p.standbys.len(), 2);
    assert!(p.standbys.iter().all(|s| s.state == "streaming"));
    for (_, replica) in state.replicas() {
        assert_eq!(replica.system_identifier, p.system_identifier);
        assert_eq!(replica.timeline, 1);
        assert_eq!(replica.receiver.as_deref(), Some("streaming"));
        let lag = replica.lag.expect("measured against the primary");
        assert_eq!(lag.receive_bytes, 0);
        assert_eq!(lag.replay_seconds, Some(0.0));
    }
    assert!(state.problems().is_empty(), "{:?}", state.problems());
    let text = state.to_string();
    assert!(text.contains("pg-1") && text.contains("primary"), "{text}");
    // Serializable, for `drkit status --json`.
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["members"][0]["status"]["role"], "primary");

    // The members' shared view, for dr-core's failover.
    let assessment = failover.assess().await.unwrap();
    assert_eq!(assessment.primary().unwrap().name, "pg-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_members_and_wrong_credentials_are_told_apart() {
    let (primary, one, two) = three().await;
    let stranger = Postgres::start().await.unwrap();
    let mut wrong = one.config("postgres");
    wrong.password("not-the-password");
    let members = cluster(&[("pg-1", &primary), ("pg-3", &two), ("stranger", &stranger)])
        .member(PgMember::new("pg-2", wrong))
        .member(PgMember::new(
            "gone",
            "host=127.0.0.1 port=1 user=postgres password=x"
                .parse()
                .unwrap(),
        ));
    let failover = PgFailover::new(members);
    let state = failover.state().await.unwrap();
    let status = |name: &str| &state.member(name).unwrap().status;
    match status("pg-2") {
        MemberStatus::Unreachable { error } => {
            assert!(
                error.contains("password") || error.contains("auth"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(status("gone"), MemberStatus::Unreachable { .. }));
    let problems = state.problems().join("\n");
    // A second primary, of another cluster.
    assert!(problems.contains("more than one primary"), "{problems}");
    assert!(
        problems.contains("stranger belongs to another cluster"),
        "{problems}"
    );

    // Two primaries: what a promotion would lose cannot be told.
    let refused = failover
        .plan(
            &failover.assess().await.unwrap(),
            &request(LossLimit::Bytes(0)),
        )
        .unwrap_err();
    assert!(refused.to_string().contains("cannot be told"), "{refused}");

    // Nothing to promote: the only replica is unreachable.
    let mut wrong = one.config("postgres");
    wrong.password("not-the-password");
    let failover =
        PgFailover::new(cluster(&[("pg-1", &primary)]).member(PgMember::new("pg-2", wrong)));
    let refused = failover
        .plan(
            &failover.assess().await.unwrap(),
            &request(LossLimit::Bytes(0)),
        )
        .unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains("no replica can be promoted; pg-2: unreachable"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_lost_the_most_advanced_replica_is_promoted_and_the_other_follows() {
    let (mut primary, one, two) = three().await;
    let failover = PgFailover::new(cluster(&[
        ("pg-1", &primary),
        ("pg-2", &one),
        ("pg-3", &two),
    ]));
    write(&primary, 500).await;
    caught_up(&failover).await;
    let before = count(&primary).await;

    primary.kill9();
    // A dry run: the plan, nothing done.
    let plan = dr_core::dry_run(&failover, &request(LossLimit::Bytes(0)))
        .await
        .unwrap();
    assert_eq!(plan.promote.name, "pg-2", "{plan}");
    assert_eq!(plan.expected_loss.bytes, Some(0));
    // Asynchronous: nothing promises that acknowledged commits are kept.
    assert_eq!(plan.acknowledged_kept, None, "{plan}");
    assert_eq!(
        plan.fence
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["pg-1"]
    );
    assert!(failover.state().await.unwrap().primary().is_none());

    // A fence that fails stops it.
    let broken = RecordingFence {
        fail: true,
        ..RecordingFence::default()
    };
    let hooks = fenced(&broken);
    let stopped = dr_core::execute(&failover, &request(LossLimit::Bytes(0)), hooks)
        .await
        .unwrap_err();
    assert!(
        stopped.to_string().contains("fencing pg-1 failed"),
        "{stopped}"
    );
    assert!(failover.state().await.unwrap().primary().is_none());

    let fence = RecordingFence::default();
    let hooks = fenced(&fence);
    let outcome = dr_core::execute(&failover, &request(LossLimit::Bytes(0)), hooks)
        .await
        .unwrap();
    assert_eq!(*fence.fenced.lock().unwrap(), ["pg-1"]);
    assert_eq!(outcome.plan.promote.name, "pg-2");
    let steps: Vec<&str> = outcome
        .report
        .timeline
        .steps()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        steps.iter().any(|s| s.starts_with("promote pg-2")),
        "{steps:?}"
    );
    // The check wrote on pg-2, and waited for pg-3 to stream from it; the
    // RTO runs to that write.
    assert_eq!(steps.last(), Some(&"check pg-2"), "{steps:?}");
    let first_write = outcome.report.restored_at.expect("a first write");
    assert!(first_write <= outcome.report.timeline.finished_at());
    let state = failover.state().await.unwrap();
    let (_, pg3) = state.replicas().find(|(m, _)| m.name == "pg-3").unwrap();
    assert_eq!(
        pg3.seen_by_primary.as_ref().map(|v| v.state.as_str()),
        Some("streaming")
    );

    // Everything written before the loss is there, and it takes writes.
    assert_eq!(count(&one).await, before);
    write(&one, 10).await;

    // The other replica follows it on the new timeline.
    eventually("pg-3 to stream from pg-2", WAIT, || async {
        let state = failover.state().await.unwrap();
        let (_, p) = state.primary()?;
        let (_, r) = state.replicas().find(|(m, _)| m.name == "pg-3")?;
        (p.timeline == 2
            && r.timeline == 2
            && r.seen_by_primary
                .as_ref()
                .is_some_and(|v| v.state == "streaming")
            && r.lag.is_some_and(|l| l.replay_bytes == 0))
        .then_some(())
    })
    .await;
    assert_eq!(count(&two).await, before + 10);
    // Through a slot of its own on the new primary, which keeps its WAL.
    let active: bool = one
        .connect("postgres")
        .await
        .unwrap()
        .query_one(
            "SELECT active FROM pg_replication_slots WHERE slot_name = 'drkit_pg_3'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(active);
}

/// A promoted replica whose commits wait for a standby that does not exist
/// takes no write: the check after the promotion says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_primary_that_takes_no_write_fails_the_check() {
    let (mut primary, one, two) = three().await;
    let failover = PgFailover::new(cluster(&[
        ("pg-1", &primary),
        ("pg-2", &one),
        ("pg-3", &two),
    ]))
    .verify_wait(Duration::from_secs(2));
    write(&primary, 10).await;
    caught_up(&failover).await;
    // Read at the promotion: only a standby named `nobody` may acknowledge.
    alter_system(&one, "synchronous_standby_names", "nobody").await;
    primary.kill9();
    let fence = RecordingFence::default();
    let hooks = fenced(&fence);
    let err = dr_core::execute(&failover, &request(LossLimit::Bytes(0)), hooks)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("a write on pg-2 was not acknowledged within 2 s"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loss_guard_refuses_a_replica_that_did_not_receive_everything() {
    let (primary, one, _two) = three().await;
    let failover = PgFailover::new(cluster(&[("pg-1", &primary), ("pg-2", &one)]));
    caught_up(&failover).await;

    // Replay paused: what it received is still replayed when promoted, so
    // nothing would be lost and nothing is refused.
    let replica = one.connect("postgres").await.unwrap();
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    write(&primary, 200).await;
    eventually("pg-2 to receive the rows", WAIT, || async {
        let state = failover.state().await.unwrap();
        let (_, r) = state.replicas().next()?;
        let lag = r.lag?;
        (lag.receive_bytes == 0 && lag.replay_bytes > 0).then_some(())
    })
    .await;
    let plan = failover
        .plan(
            &failover.assess().await.unwrap(),
            &request(LossLimit::Bytes(1024)),
        )
        .unwrap();
    assert!(plan.expected_loss.bytes.unwrap() < 1024, "{plan}");

    // Its WAL receiver stopped (a paused replay would hold the change
    // back): what the primary writes now never reaches it.
    replica
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    alter_system(&one, "primary_conninfo", "").await;
    eventually("pg-2's receiver to stop", WAIT, || async {
        let state = failover.state().await.unwrap();
        let (_, r) = state.replicas().next()?;
        r.receiver.is_none().then_some(())
    })
    .await;
    write(&primary, 200).await;
    // What it would lose, measured on both servers around the assessment.
    let on_primary = primary.connect("postgres").await.unwrap();
    let flushed = || lsn(&on_primary, "SELECT pg_current_wal_flush_lsn()::text");
    let received = lsn(&replica, "SELECT pg_last_wal_receive_lsn()::text").await;
    let before = flushed().await;
    let assessment = failover.assess().await.unwrap();
    let after = flushed().await;
    let refused = failover
        .plan(&assessment, &request(LossLimit::Bytes(1024)))
        .unwrap_err();
    let text = refused.to_string();
    assert!(text.contains("promoting pg-2 would lose"), "{text}");
    assert!(text.contains("more than the 1024 allowed"), "{text}");

    // Forced, it is promoted: the rows it received are there, the later ones not.
    let plan = failover
        .plan(&assessment, &request(LossLimit::Bytes(1024)).force())
        .unwrap();
    let lost = plan.expected_loss.bytes.unwrap();
    assert!(lost > 1024);
    let measured = (before.as_u64() - received.as_u64())..=(after.as_u64() - received.as_u64());
    assert!(
        measured.contains(&lost),
        "{lost} bytes, measured {measured:?}"
    );
    failover.promote(&plan).await.unwrap();
    assert_eq!(count(&one).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_answers_is_fenced_read_only_and_one_that_does_not_is_not() {
    let (mut primary, one, _two) = three().await;
    let cluster = cluster(&[("pg-1", &primary), ("pg-2", &one)]);
    let failover = PgFailover::new(cluster.clone());
    let fence = SqlFence::new(cluster);
    let writer = primary.connect("postgres").await.unwrap();
    let assessment = failover.assess().await.unwrap();
    let pg1 = assessment.member("pg-1").unwrap();
    fence.fence(pg1).await.unwrap();
    // The session that was open is gone; a new one cannot write.
    assert!(
        writer
            .execute("INSERT INTO events DEFAULT VALUES", &[])
            .await
            .is_err()
    );
    let refused = primary
        .connect("postgres")
        .await
        .unwrap()
        .execute("INSERT INTO events DEFAULT VALUES", &[])
        .await
        .unwrap_err();
    let message = refused.as_db_error().map(|e| e.message().to_owned());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("read-only")),
        "{refused:?}"
    );
    let state = failover.state().await.unwrap();
    assert!(matches!(
        &state.member("pg-1").unwrap().status,
        MemberStatus::Primary(p) if !p.writable
    ));

    primary.kill9();
    assert!(fence.fence(pg1).await.is_err());
}

fn switchover(to: Option<&str>) -> FailoverRequest {
    let objectives = Objectives::new("5m".parse().unwrap(), "0s".parse().unwrap());
    let request = FailoverRequest::new(FailoverMode::Switchover, objectives, LossLimit::Bytes(0));
    match to {
        Some(name) => request.to(name),
        None => request,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_under_writes_loses_no_acknowledged_commit() {
    let (primary, one, two) = three().await;
    let members = cluster(&[("pg-1", &primary), ("pg-2", &one), ("pg-3", &two)]);
    let failover = PgFailover::new(members.clone());
    let fence = SqlFence::new(members);

    // A writer that counts the commits the old primary acknowledged.
    let writing = acknowledged_writes(&primary).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let hooks = fenced(&fence);
    let outcome = dr_core::execute(&failover, &switchover(Some("pg-3")), hooks)
        .await
        .unwrap();
    let written = writing.await.unwrap();
    assert_eq!(outcome.plan.promote.name, "pg-3");
    assert_eq!(
        outcome
            .plan
            .fence
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["pg-1"]
    );
    assert_eq!(outcome.report.achieved_rpo(), Some("0s".parse().unwrap()));
    assert!(written > 0);
    // Every acknowledged commit; at most one more, whose answer the fence
    // cut off after it committed.
    let rows = count(&two).await;
    assert!(
        (written..=written + 1).contains(&rows),
        "{rows} rows, {written} acknowledged"
    );

    // The old primary is fenced, awaiting a rejoin; pg-2 follows pg-3.
    eventually("pg-2 to stream from pg-3", WAIT, || async {
        let state = failover.state().await.unwrap();
        let (m, p) = state.primary()?;
        let (_, r) = state.replicas().find(|(m, _)| m.name == "pg-2")?;
        (m.name == "pg-3"
            && r.timeline == p.timeline
            && r.seen_by_primary
                .as_ref()
                .is_some_and(|v| v.state == "streaming"))
        .then_some(())
    })
    .await;
    let state = failover.state().await.unwrap();
    assert_eq!(state.fenced().next().unwrap().0.name, "pg-1");
    let problems = state.problems().join("\n");
    assert!(
        problems.contains("pg-1 is a primary fenced read-only"),
        "{problems}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_whose_replica_cannot_catch_up_gives_the_primary_back() {
    let (primary, one, _two) = three().await;
    let members = cluster(&[("pg-1", &primary), ("pg-2", &one)]);
    let failover = PgFailover::new(members.clone()).catch_up_wait(Duration::from_secs(1));
    let fence = SqlFence::new(members);
    caught_up(&failover).await;
    one.connect("postgres")
        .await
        .unwrap()
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    write(&primary, 50).await;

    let hooks = fenced(&fence);
    let refused = dr_core::execute(&failover, &switchover(None), hooks)
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("did not replay"), "{refused}");
    assert!(refused.contains("pg-1 takes writes again"), "{refused}");
    eventually("pg-1 to take writes", WAIT, || async {
        let state = failover.state().await.unwrap();
        state
            .primary()
            .is_some_and(|(m, _)| m.name == "pg-1")
            .then_some(())
    })
    .await;
    write(&primary, 1).await;

    // A named member that cannot be promoted is refused by name.
    let assessment = failover.assess().await.unwrap();
    let refused = failover
        .plan(&assessment, &switchover(Some("pg-1")))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("pg-1 cannot be promoted: it is the primary"),
        "{refused}"
    );
}

/// Stops a replica's WAL receiver: what the primary writes next never
/// reaches it.
async fn cut_off(replica: &Postgres) {
    alter_system(replica, "primary_conninfo", "").await;
    let client = replica.connect("postgres").await.unwrap();
    eventually("the WAL receiver to stop", WAIT, || async {
        let row = client
            .query_one("SELECT count(*) FROM pg_stat_wal_receiver", &[])
            .await
            .ok()?;
        (row.get::<_, i64>(0) == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverged_old_primary_is_rewound_and_follows_the_new_one() {
    rejoin_after_divergence(true).await;
}

/// Without the WAL pg_rewind needs (the old primary's crash recovery
/// recycles it), the old directory is kept aside and a fresh copy follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_primary_that_cannot_be_rewound_is_copied_afresh() {
    rejoin_after_divergence(false).await;
}

async fn rejoin_after_divergence(keep_wal: bool) {
    let options = match keep_wal {
        true => PostgresOptions::default().setting("wal_keep_size", "256MB"),
        false => PostgresOptions::default(),
    };
    let (mut primary, one, two) = three_with(options).await;
    let failover = PgFailover::new(cluster(&[
        ("pg-1", &primary),
        ("pg-2", &one),
        ("pg-3", &two),
    ]));
    write(&primary, 100).await;
    caught_up(&failover).await;

    // The old primary writes what no replica receives, then is lost.
    cut_off(&one).await;
    cut_off(&two).await;
    write(&primary, 40).await;
    assert_eq!(count(&primary).await, 140);
    primary.kill9();
    let fence = RecordingFence::default();
    let hooks = fenced(&fence);
    dr_core::execute(&failover, &request(LossLimit::Bytes(0)).force(), hooks)
        .await
        .unwrap();
    write(&one, 5).await;

    // A running server is refused; the stopped one is rewound.
    let bindir = PgTools::in_dir(primary.binaries().dir());
    let refused = Rejoin::new("pg-2", one.data_dir())
        .tools(bindir.clone())
        .run(&one.config("postgres"))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("stop it first"), "{refused}");
    let report = Rejoin::new("pg-1", primary.data_dir())
        .tools(bindir)
        .run(&one.config("postgres"))
        .await
        .unwrap();
    match (&report.method, keep_wal) {
        (RejoinMethod::Rewound, true) => {}
        (
            RejoinMethod::Cloned {
                kept_aside,
                rewind_failed,
            },
            false,
        ) => {
            assert!(rewind_failed.contains("pg_rewind"), "{rewind_failed}");
            assert!(kept_aside.join("PG_VERSION").exists());
            std::fs::remove_dir_all(kept_aside).unwrap();
        }
        (method, _) => panic!("{method:?}"),
    }
    primary.restart().await.unwrap();

    // It follows pg-2: its own 40 rows are gone, pg-2's are there.
    eventually("pg-1 to stream from pg-2", WAIT, || async {
        let state = failover.state().await.unwrap();
        let (m, _) = state.primary()?;
        let (_, r) = state.replicas().find(|(m, _)| m.name == "pg-1")?;
        (m.name == "pg-2"
            && r.seen_by_primary
                .as_ref()
                .is_some_and(|v| v.state == "streaming")
            && r.lag.is_some_and(|l| l.replay_bytes == 0))
        .then_some(())
    })
    .await;
    assert_eq!(count(&primary).await, 105);
    let state = failover.state().await.unwrap();
    if !state.problems().is_empty() {
        let log = two.log();
        eprintln!("DEBUG {}", &log[log.len().saturating_sub(2500)..]);
    }
    assert!(state.problems().is_empty(), "{:?}", state.problems());
}

/// The test's power switch: a member that answers is fenced read-only; one
/// that does not was killed by the test, which is as good as fenced.
struct PowerFence {
    sql: SqlFence,
    fenced: Mutex<Vec<String>>,
}

#[async_trait]
impl Fence for PowerFence {
    async fn fence(&self, member: &Member) -> dr_core::Result<()> {
        if member.reachable {
            self.sql.fence(member).await?;
        }
        self.fenced.lock().unwrap().push(member.name.clone());
        Ok(())
    }
}

async fn lease_store() -> std::sync::Arc<dr_storage::Repository> {
    use dr_storage::{InitOptions, KdfParams, MemoryBackend, Repository, Secret};
    let options = InitOptions::encrypted(Secret::password("lease")).kdf(KdfParams::INSECURE_FAST);
    std::sync::Arc::new(
        Repository::init(std::sync::Arc::new(MemoryBackend::new()), options)
            .await
            .unwrap(),
    )
}

fn monitor(
    members: &PgCluster,
    lease: std::sync::Arc<dr_storage::Repository>,
    holder: &str,
) -> (dr_core::MonitorHandle, std::sync::Arc<PowerFence>) {
    let fence = std::sync::Arc::new(PowerFence {
        sql: SqlFence::new(members.clone()),
        fenced: Mutex::new(Vec::new()),
    });
    let options = MonitorOptions::new(Duration::from_millis(200), Duration::from_millis(500), 3);
    let handle = Monitor::new(
        std::sync::Arc::new(PgFailover::new(members.clone())),
        options,
    )
    .fail_over_automatically(
        request(LossLimit::Bytes(1 << 20)),
        fence.clone(),
        lease,
        holder,
    )
    .spawn();
    (handle, fence)
}

/// The events until `done` says so, within `WAIT`.
async fn events_until(
    handle: &mut dr_core::MonitorHandle,
    mut done: impl FnMut(&MonitorEvent) -> bool,
) -> Vec<MonitorEvent> {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(event) = handle.next_event().await {
            let stop = done(&event);
            seen.push(event);
            if stop {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("waited {WAIT:?}; saw {seen:?}"));
    seen
}

/// Makes `replica` connect as `name`, so that the primary's
/// `pg_stat_replication` tells it apart (pg_basebackup -R names every
/// replica `walreceiver`).
async fn name_replica(replica: &Postgres, name: &str) {
    let session = replica.connect("postgres").await.unwrap();
    let conninfo: String = session
        .query_one("SHOW primary_conninfo", &[])
        .await
        .unwrap()
        .get(0);
    let named = format!("{conninfo} application_name={name}");
    alter_system(replica, "primary_conninfo", &named).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_fails_a_killed_primary_over_by_itself_losing_no_synchronous_commit() {
    let (mut primary, one, two) = three().await;
    name_replica(&one, "pg-2").await;
    name_replica(&two, "pg-3").await;
    // Synchronous once the replicas stream (a commit would wait forever
    // before).
    alter_system(&primary, "synchronous_standby_names", "ANY 1 (*)").await;
    let members = cluster(&[("pg-1", &primary), ("pg-2", &one), ("pg-3", &two)]);
    eventually("a synchronous standby", WAIT, || async {
        let state = PgFailover::new(members.clone()).state().await.unwrap();
        let quorum = state
            .replicas()
            .filter(|(_, r)| {
                r.seen_by_primary
                    .as_ref()
                    .is_some_and(|v| v.sync_state == "quorum")
            })
            .count();
        (quorum == 2).then_some(())
    })
    .await;
    let (mut handle, fence) = monitor(&members, lease_store().await, "monitor-a");

    // Writes acknowledged by the primary, each only once a replica has it.
    let writing = acknowledged_writes(&primary).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    primary.kill9();
    let written = writing.await.unwrap();
    assert!(written > 0);

    let events = events_until(&mut handle, |e| matches!(e, MonitorEvent::FailedOver(_))).await;
    let downs = events
        .iter()
        .filter(|e| matches!(e, MonitorEvent::PrimaryDown { .. }))
        .count();
    assert!(downs >= 3, "{events:?}");
    let Some(MonitorEvent::FailedOver(outcome)) = events.last() else {
        unreachable!()
    };
    assert_eq!(*fence.fenced.lock().unwrap(), ["pg-1"]);
    // The RTO counts from the first failed probe: three probes 200 ms apart.
    assert!(
        outcome.report.achieved_rto().as_duration() >= Duration::from_millis(400),
        "{}",
        outcome.report
    );
    let new_primary = match outcome.plan.promote.name.as_str() {
        "pg-2" => &one,
        "pg-3" => &two,
        other => panic!("{other}"),
    };
    assert!(count(new_primary).await >= written);
    write(new_primary, 1).await;
    // What the plan promised, and the report says: no acknowledged commit lost.
    let kept = outcome
        .plan
        .acknowledged_kept
        .as_deref()
        .unwrap_or_default();
    assert!(
        kept.contains("every commit waited for 1 of the 2 synchronous standbys"),
        "{}",
        outcome.plan
    );
    assert_eq!(outcome.report.data_loss, Some(Rpo::new(Duration::ZERO)));

    // The old primary comes back writable: the monitor fences it again.
    primary.restart().await.unwrap();
    let events = events_until(&mut handle, |e| matches!(e, MonitorEvent::Refenced { .. })).await;
    let Some(MonitorEvent::Refenced { name, result }) = events.last() else {
        unreachable!()
    };
    assert_eq!(name, "pg-1");
    assert_eq!(*result, Ok(()));
    let state = PgFailover::new(members).state().await.unwrap();
    assert_eq!(state.primary().unwrap().0.name, outcome.plan.promote.name);
    assert_eq!(state.fenced().next().unwrap().0.name, "pg-1");
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_monitors_racing_promote_one_replica() {
    let (mut primary, one, two) = three().await;
    let members = cluster(&[("pg-1", &primary), ("pg-2", &one), ("pg-3", &two)]);
    let lease = lease_store().await;
    let (mut a, _) = monitor(&members, lease.clone(), "monitor-a");
    let (mut b, _) = monitor(&members, lease, "monitor-b");
    write(&primary, 10).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    primary.kill9();

    // Each monitor either fails over or, once the other did, finds a
    // primary again (or is refused the lease meanwhile).
    let settled = |e: &MonitorEvent| match e {
        MonitorEvent::FailedOver(_) => true,
        MonitorEvent::PrimaryUp { name } => name != "pg-1",
        _ => false,
    };
    let (seen_a, seen_b) = tokio::join!(
        events_until(&mut a, |e| settled(e)
            || matches!(e, MonitorEvent::FailoverFailed { .. })),
        events_until(&mut b, |e| settled(e)
            || matches!(e, MonitorEvent::FailoverFailed { .. })),
    );
    let failed_over = seen_a
        .iter()
        .chain(&seen_b)
        .filter(|e| matches!(e, MonitorEvent::FailedOver(_)))
        .count();
    eventually("one primary", WAIT, || async {
        let state = PgFailover::new(members.clone()).state().await.unwrap();
        (state.primaries().count() == 1).then_some(())
    })
    .await;
    assert_eq!(failed_over, 1, "{seen_a:?}\n{seen_b:?}");
    let state = PgFailover::new(members.clone()).state().await.unwrap();
    assert_eq!(state.primaries().count(), 1, "{state}");
    assert_eq!(state.replicas().count(), 1, "{state}");
    a.stop().await;
    b.stop().await;
}
