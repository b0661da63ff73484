//! Point-in-time restores from a real Redis 7.0's (and 8.2's) snapshot and
//! command archive, the writes plain, in transactions and from Lua: the target server replicates from the restore, which plays the
//! master. Writes are made 150 ms apart and archived every 50 ms, so a
//! target time 100 ms after a write's acknowledgement falls between the
//! record holding it and the next: the archive's receive-time precision is
//! its interval. `INCR` on keys with a TTL replays as the master did it;
//! after kill -9 of the master, the latest point loses only the last
//! moments' writes.

use std::sync::Arc;
use std::time::Duration;

use dr_core::{ErrorKind, Objectives, RecoveryTarget, Restore, RestoreRequest};
use dr_redis::{ArchiveRestore, CommandArchiver, RedisServer};
use dr_storage::{FsBackend, InitOptions, KdfParams, Repository, Secret};
use dr_testkit::{Redis, RedisOptions, RedisVersion};
use jiff::Timestamp;
use redis::aio::MultiplexedConnection;

use crate::common::{acknowledged_by, spawn_archiver};

async fn repository(dir: &tempfile::TempDir) -> Repository {
    let backend = Arc::new(FsBackend::new(dir.path()).unwrap());
    let options = InitOptions::encrypted(Secret::password("rdb")).kdf(KdfParams::INSECURE_FAST);
    Repository::init(backend, options).await.unwrap()
}

async fn keys(con: &mut MultiplexedConnection) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("w*").query_async(con).await.unwrap();
    keys.sort_by_key(|k| k[1..].parse::<u32>().unwrap());
    keys
}

fn names(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("w{i}")).collect()
}

async fn restore_to(
    repo: &Repository,
    target: RecoveryTarget,
    version: RedisVersion,
) -> (dr_core::Result<dr_core::RecoveryReport>, Redis) {
    let into = Redis::start_with(RedisOptions::default().version(version))
        .await
        .unwrap();
    let restore = ArchiveRestore::new(
        "redis/pitr".parse().unwrap(),
        RedisServer::new("127.0.0.1", into.port()),
    )
    .wait(Duration::from_secs(60));
    let objectives = Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap());
    let request = RestoreRequest::new(repo, &target, objectives).archive(repo);
    (restore.restore(request).await, into)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_to_a_time_a_position_or_the_latest_replay_exactly_what_was_acknowledged() {
    scenario(RedisVersion::System).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_redis_8() {
    scenario(RedisVersion::Redis8).await;
}

/// Writes (plain, in MULTI/EXEC, from Lua), a FLUSHALL, more writes; then
/// restores to several points and checks each holds exactly what it should.
async fn scenario(version: RedisVersion) {
    let master = Redis::start_with(RedisOptions::default().version(version))
        .await
        .unwrap();
    let mut con = master.connection().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    // Small segments, so that one can go missing.
    let archiver = CommandArchiver::new(
        "redis/pitr".parse().unwrap(),
        RedisServer::new("127.0.0.1", master.port()),
    )
    .interval(Duration::from_millis(50))
    .seal_at(300, Duration::from_secs(600));
    let (stop, run) = spawn_archiver(&archiver, &repo, true, None);
    // The archiver's snapshot first: WAIT returns once it follows.
    acknowledged_by(&con, 1).await;

    let mut acked = Vec::new();
    for i in 0..25u32 {
        if i == 20 {
            // The disaster replication cannot fix.
            let (): () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();
            acked.push(Timestamp::now());
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let key = format!("w{i}");
        match i % 5 {
            // A script's writes are replicated as their effects.
            1 => {
                let _: redis::Value = redis::cmd("EVAL")
                    .arg("return redis.call('SET', KEYS[1], ARGV[1])")
                    .arg(1)
                    .arg(&key)
                    .arg(i)
                    .query_async(&mut con)
                    .await
                    .unwrap();
            }
            // A transaction comes whole.
            2 => {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("SET")
                    .arg(&key)
                    .arg(i)
                    .cmd("INCR")
                    .arg("counter");
                let _: redis::Value = pipe.query_async(&mut con).await.unwrap();
                let (): () = redis::cmd("DEL")
                    .arg("counter")
                    .query_async(&mut con)
                    .await
                    .unwrap();
            }
            _ => {
                let (): () = redis::cmd("SET")
                    .arg(&key)
                    .arg(i)
                    .query_async(&mut con)
                    .await
                    .unwrap();
            }
        }
        acked.push(Timestamp::now());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    acknowledged_by(&con, 1).await;
    stop.send(true).unwrap();
    let archived = run.await.unwrap().unwrap();
    let after = |i: usize| acked[i] + Duration::from_millis(100);

    // Just after w9: w0 to w9, nothing later.
    let (report, into) = restore_to(&repo, RecoveryTarget::Time(after(9)), version).await;
    let report = report.unwrap();
    let mut restored = into.connection().await.unwrap();
    assert_eq!(keys(&mut restored).await, names(0..10));
    let role: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut restored)
        .await
        .unwrap();
    assert!(role.contains("role:master"), "{role}");
    assert!(report.achieved_rpo().is_some(), "{report}");

    // Just before the FLUSHALL (acked[20]): everything written before it.
    let (report, into) = restore_to(&repo, RecoveryTarget::Time(after(19)), version).await;
    report.unwrap();
    assert_eq!(
        keys(&mut into.connection().await.unwrap()).await,
        names(0..20)
    );

    // The latest: the FLUSHALL replayed, and what came after it.
    let (report, into) = restore_to(&repo, RecoveryTarget::Latest, version).await;
    report.unwrap();
    assert_eq!(
        keys(&mut into.connection().await.unwrap()).await,
        names(20..25)
    );

    // The archive's end as a position: the same.
    let position = dr_core::Position::Redis {
        replication_id: archived.archived.replication_id.parse().unwrap(),
        offset: archived.archived.offset,
    };
    let (report, into) = restore_to(&repo, RecoveryTarget::Position(position), version).await;
    report.unwrap();
    assert_eq!(
        keys(&mut into.connection().await.unwrap()).await,
        names(20..25)
    );

    // A time the archive does not reach, or a target holding keys: refused
    // before the target is touched.
    let (report, into) = restore_to(
        &repo,
        RecoveryTarget::Time(Timestamp::now() + Duration::from_secs(3600)),
        version,
    )
    .await;
    let err = report.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("does not reach"), "{err}");
    let mut untouched = into.connection().await.unwrap();
    let role: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut untouched)
        .await
        .unwrap();
    assert!(role.contains("role:master"), "{role}");
    let (): () = redis::cmd("SET")
        .arg("mine")
        .arg(1)
        .query_async(&mut untouched)
        .await
        .unwrap();
    let restore = ArchiveRestore::new(
        "redis/pitr".parse().unwrap(),
        RedisServer::new("127.0.0.1", into.port()),
    );
    let latest = RecoveryTarget::Latest;
    let objectives = Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap());
    let err = restore
        .restore(RestoreRequest::new(&repo, &latest, objectives).archive(&repo))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("holds keys"), "{err}");

    // A segment gone from the middle of the archive: a gap, refused before
    // the target is touched.
    let component: dr_core::ComponentId = "redis/pitr".parse().unwrap();
    let mut segments = dr_core::ArchiveSource::segments(&repo, &component, "")
        .await
        .unwrap();
    segments.sort_by_key(|name| dr_redis::parse_name(name).unwrap().start);
    assert!(segments.len() > 2, "{segments:?}");
    repo.forget_segments(&component, &segments[1..2])
        .await
        .unwrap();
    let (report, into) = restore_to(&repo, RecoveryTarget::Latest, version).await;
    let err = report.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        err.to_string().contains("has no record from offset"),
        "{err}"
    );
    let mut untouched = into.connection().await.unwrap();
    let role: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut untouched)
        .await
        .unwrap();
    assert!(role.contains("role:master"), "{role}");
}

/// Follows `master` into a new repository every 50 ms until the returned
/// sender says stop; the archiver's snapshot is taken before it returns.
async fn archiving(
    master: &Redis,
    dir: &tempfile::TempDir,
) -> (
    Repository,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<dr_core::Result<dr_redis::ArchiverStop>>,
) {
    let repo = repository(dir).await;
    let archiver = CommandArchiver::new(
        "redis/pitr".parse().unwrap(),
        RedisServer::new("127.0.0.1", master.port()),
    )
    .interval(Duration::from_millis(50))
    .reconnect_for(Duration::from_millis(500));
    let (stop, run) = spawn_archiver(&archiver, &repo, true, None);
    let con = master.connection().await.unwrap();
    acknowledged_by(&con, 1).await;
    (repo, stop, run)
}

/// `INCR` on keys with a TTL, replayed as the master did it, whatever
/// today's clock says: `t` is counted up while it lives and then made
/// persistent, so the restore holds its 13 with no TTL (commands run again
/// by today's clock would find it expired at its first `INCR` and count
/// from nothing to 3); `e` expires on the master (its `DEL` replicated) and
/// is counted again from nothing, so the restore holds 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incr_on_expiring_keys_replays_as_the_master_did_it() {
    let master = Redis::start().await.unwrap();
    let mut con = master.connection().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (repo, stop, run) = archiving(&master, &dir).await;
    for key in ["t", "e"] {
        let (): () = redis::cmd("SET")
            .arg(key)
            .arg(10)
            .arg("PX")
            .arg(600)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    for _ in 0..3 {
        let _: i64 = redis::cmd("INCR")
            .arg("t")
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let kept: i64 = redis::cmd("PERSIST")
        .arg("t")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    tokio::time::sleep(Duration::from_millis(900)).await;
    // Read after its expiry: the master deletes it (and replicates the DEL).
    let gone: Option<String> = redis::cmd("GET")
        .arg("e")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(gone, None);
    let fresh: i64 = redis::cmd("INCR")
        .arg("e")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(fresh, 1);
    let done = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    run.await.unwrap().unwrap();

    // Past the newest record: the archive's coverage (recorded as the
    // archiver stopped) says nothing came between.
    let (report, into) = restore_to(
        &repo,
        RecoveryTarget::Time(done + Duration::from_millis(100)),
        RedisVersion::System,
    )
    .await;
    report.unwrap();
    let mut restored = into.connection().await.unwrap();
    for (key, expected) in [("t", "13"), ("e", "1")] {
        let value: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut restored)
            .await
            .unwrap();
        assert_eq!(value.as_deref(), Some(expected), "{key}");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut restored)
            .await
            .unwrap();
        assert_eq!(ttl, -1, "{key}");
    }
}

/// A point-in-time restore whose result is an RDB file: replayed on a
/// staging server as always, then fetched from it, checked and written
/// whole; the staging server is empty again after. A target the archive
/// does not reach writes no file at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_into_an_rdb_file_holds_what_the_master_had_then() {
    let master = Redis::start().await.unwrap();
    let mut con = master.connection().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (repo, stop, run) = archiving(&master, &dir).await;
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg("a").arg(1).ignore();
    pipe.cmd("SET")
        .arg("b")
        .arg(2)
        .arg("PX")
        .arg(3_600_000)
        .ignore();
    for _ in 0..3 {
        pipe.cmd("INCR").arg("c").ignore();
    }
    let (): () = pipe.query_async(&mut con).await.unwrap();
    acknowledged_by(&con, 1).await;
    let before_flush = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (): () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();
    acknowledged_by(&con, 1).await;
    stop.send(true).unwrap();
    run.await.unwrap().unwrap();

    let staging = Redis::start().await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("dump.rdb");
    let restore_at = |target: RecoveryTarget| {
        let restore = ArchiveRestore::new(
            "redis/pitr".parse().unwrap(),
            RedisServer::new("127.0.0.1", staging.port()),
        )
        .into_file(&file)
        .wait(Duration::from_secs(60));
        let repo = &repo;
        async move {
            let objectives = Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap());
            let request = RestoreRequest::new(repo, &target, objectives).archive(repo);
            restore.restore(request).await
        }
    };

    let beyond = restore_at(RecoveryTarget::Time(
        Timestamp::now() + Duration::from_secs(3600),
    ))
    .await
    .unwrap_err();
    assert_eq!(beyond.kind(), ErrorKind::InvalidInput, "{beyond}");
    assert!(beyond.to_string().contains("does not reach"), "{beyond}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);

    let report = restore_at(RecoveryTarget::Time(
        before_flush + Duration::from_millis(50),
    ))
    .await
    .unwrap();
    assert!(
        report.to_string().contains("write the RDB file"),
        "{report}"
    );
    let rdb = std::fs::read(&file).unwrap();
    let (sound, said) = crate::common::redis_check_rdb(RedisVersion::System, &rdb);
    assert!(sound, "{said}");
    let mut found = std::collections::BTreeMap::new();
    for event in dr_redis::events(&rdb) {
        if let dr_redis::Event::Key(key) = event.unwrap() {
            let value = dr_redis::decode_value(key.value_type, &key.value, 10).unwrap();
            found.insert(
                String::from_utf8(key.key.to_vec()).unwrap(),
                (value, key.expire_at_ms.is_some()),
            );
        }
    }
    let string = |s: &str| dr_redis::Value::String(s.as_bytes().to_vec().into());
    assert_eq!(
        found,
        [
            ("a".to_owned(), (string("1"), false)),
            ("b".to_owned(), (string("2"), true)),
            ("c".to_owned(), (string("3"), false)),
        ]
        .into(),
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);
    let left: i64 = redis::cmd("DBSIZE")
        .query_async(&mut staging.connection().await.unwrap())
        .await
        .unwrap();
    assert_eq!(left, 0, "the staging server is emptied");
}

/// Without journals (an object store), each interval's record is stored
/// as a segment of its own, and sealing rolls them up into one segment:
/// restores read each record once while both are there, and once the
/// rolled-up segments are forgotten the archive is a handful of objects
/// that still restore every write and end where the archiver stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_segments_are_rolled_up_and_forgotten_without_losing_a_record() {
    let master = Redis::start().await.unwrap();
    let mut con = master.connection().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let component: dr_core::ComponentId = "redis/pitr".parse().unwrap();
    let archiver = CommandArchiver::new(
        component.clone(),
        RedisServer::new("127.0.0.1", master.port()),
    )
    .interval(Duration::from_millis(20))
    .seal_at(1 << 20, Duration::from_millis(300));
    let (stop, run) = spawn_archiver(&archiver, &repo, false, None);
    for i in 0..40 {
        let (): () = redis::cmd("SET")
            .arg(format!("w{i}"))
            .arg(i)
            .query_async(&mut con)
            .await
            .unwrap();
        acknowledged_by(&con, 1).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let written = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(true).unwrap();
    let stopped = run.await.unwrap().unwrap();

    use dr_core::ArchiveSource;
    let before = repo.segments(&component, "").await.unwrap();
    let rolled = dr_redis::rolled_up_segments(&repo, &component)
        .await
        .unwrap();
    assert!(
        rolled.len() >= 30,
        "{} of {} rolled up",
        rolled.len(),
        before.len()
    );
    let rollups = before
        .iter()
        .filter(|n| matches!(dr_redis::parse_any_name(n), Some((_, Some(_)))))
        .count();
    assert!(rollups >= 2, "{before:?}");

    let (report, into) = restore_to(
        &repo,
        RecoveryTarget::Time(written + Duration::from_millis(50)),
        RedisVersion::System,
    )
    .await;
    report.unwrap();
    assert_eq!(
        keys(&mut into.connection().await.unwrap()).await,
        names(0..40)
    );

    let forgotten = repo.forget_segments(&component, &rolled).await.unwrap();
    assert_eq!(forgotten.forgotten.len(), rolled.len());
    let after = repo.segments(&component, "").await.unwrap();
    assert!(after.len() < before.len() / 4, "{after:?}");
    assert!(
        dr_redis::rolled_up_segments(&repo, &component)
            .await
            .unwrap()
            .is_empty()
    );
    let (end, _) = dr_redis::archive_end(&repo, &component)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, stopped.archived);

    let (report, into) = restore_to(&repo, RecoveryTarget::Latest, RedisVersion::System).await;
    report.unwrap();
    assert_eq!(
        keys(&mut into.connection().await.unwrap()).await,
        names(0..40)
    );
}

/// kill -9 of the master while it takes writes: a restore to the latest
/// point holds every write the archiver acknowledged (`WAIT`), and of the
/// others loses only those acknowledged in the last moments before the
/// kill: the archive stores what arrived every 50 ms; this test allows
/// 600 ms for a loaded machine, of the 1.2 s or more that the 60 writes
/// after the last `WAIT` take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_point_after_a_kill_loses_only_the_last_moments() {
    let mut master = Redis::start().await.unwrap();
    let mut con = master.connection().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (repo, stop, run) = archiving(&master, &dir).await;
    let mut acked: Vec<(String, std::time::Instant)> = Vec::new();
    for i in 0..90u32 {
        let key = format!("w{i}");
        let (): () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .query_async(&mut con)
            .await
            .unwrap();
        acked.push((key, std::time::Instant::now()));
        if i == 29 {
            // The first half is known archived (short WAITs: the client
            // gives up on a reply that takes long).
            acknowledged_by(&con, 1).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = std::time::Instant::now();
    master.kill9();
    // The archiver seals what it received; it finds no master to go on with.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(true).unwrap();
    let _ = run.await.unwrap();

    let (report, into) = restore_to(&repo, RecoveryTarget::Latest, RedisVersion::System).await;
    let report = report.unwrap();
    let restored = keys(&mut into.connection().await.unwrap()).await;
    let missing: Vec<&(String, std::time::Instant)> = acked
        .iter()
        .filter(|(key, _)| !restored.contains(key))
        .collect();
    assert!(
        missing.iter().all(|(key, at)| {
            key[1..].parse::<u32>().unwrap() >= 30 && killed - *at < Duration::from_millis(600)
        }),
        "lost {missing:?} of {}; {report}",
        acked.len()
    );
    // What it holds is a prefix of the writes: nothing after a gap.
    assert_eq!(restored, names(0..restored.len() as u32));
}

/// A failover to a replica that is behind the archive: the replica was
/// stopped (SIGSTOP, its link cut) while the master took writes the
/// archiver archived,
/// then the master was killed and the replica promoted. It cannot continue
/// the archive's history, so the archiver stores its full synchronization
/// as a new snapshot and marks where the history forked. The writes only
/// the old master had are never replayed: not at the latest point, nor at
/// a time just after them (the restore stops at the fork and says what it
/// left out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_history_never_replays_the_old_masters_lost_writes() {
    let mut master = Redis::start().await.unwrap();
    let replica = master.start_replica().await.unwrap();
    let con = master.connection().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let archiver = CommandArchiver::new(
        "redis/pitr".parse().unwrap(),
        RedisServer::new("127.0.0.1", master.port()),
    )
    .candidates(vec![RedisServer::new("127.0.0.1", replica.port())])
    .interval(Duration::from_millis(50))
    .reconnect_for(Duration::from_secs(30));
    let (stop, run) = spawn_archiver(&archiver, &repo, true, None);
    let set = |key: &'static str| {
        let mut con = con.clone();
        async move {
            let (): () = redis::cmd("SET")
                .arg(key)
                .arg(1)
                .query_async(&mut con)
                .await
                .unwrap();
        }
    };
    set("a").await;
    acknowledged_by(&con, 2).await;

    // The replica stops; the archiver alone takes b.
    let pid = replica.pid().unwrap().to_string();
    let signal = |which: &str| {
        let sent = std::process::Command::new("kill")
            .args([which, pid.as_str()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {which} {pid}");
    };
    signal("-STOP");
    // Its link cut too (what it had buffered would reach it otherwise);
    // the archiver's is cut with it and continues at once.
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query_async(&mut con.clone())
        .await
        .unwrap();
    set("b").await;
    acknowledged_by(&con, 1).await;
    let after_b = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    master.kill9();
    signal("-CONT");
    let mut promoted = replica.connection().await.unwrap();
    let (): () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut promoted)
        .await
        .unwrap();
    let (): () = redis::cmd("SET")
        .arg("c")
        .arg(1)
        .query_async(&mut promoted)
        .await
        .unwrap();
    acknowledged_by(&promoted, 1).await;
    stop.send(true).unwrap();
    let archived = run.await.unwrap().unwrap();
    assert_eq!(
        archived.snapshots_taken, 2,
        "the first, and the new master's"
    );
    drop(con);

    let (report, into) = restore_to(&repo, RecoveryTarget::Latest, RedisVersion::System).await;
    report.unwrap();
    let mut restored = into.connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut restored)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys, ["a", "c"]);

    let (report, into) = restore_to(
        &repo,
        RecoveryTarget::Time(after_b + Duration::from_millis(50)),
        RedisVersion::System,
    )
    .await;
    let report = report.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut into.connection().await.unwrap())
        .await
        .unwrap();
    assert_eq!(keys, ["a"], "{report}");
    assert!(report.to_string().contains("past a fork"), "{report}");
}
