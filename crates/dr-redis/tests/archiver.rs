//! The command archiver against real Redis 7.0 and 8.2: from nothing, a
//! full synchronization stored as a snapshot, then every write archived in
//! records whose offsets run on from the snapshot's, sealed into segments;
//! acknowledged only once archived; resumed from the archive's end, or
//! from a new snapshot where the master's backlog moved past it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dr_core::{ArchiveSource, Position, SnapshotSource};
use dr_redis::{
    CommandArchiver, CommandSplitter, RdbSnapshotDetails, RedisServer, parse_name, read_segment,
};
use dr_storage::{FsBackend, InitOptions, KdfParams, Repository, Secret};
use dr_testkit::{Redis, RedisOptions, RedisVersion};
use tokio::io::AsyncReadExt;

use crate::common::{acknowledged_by, spawn_archiver};

async fn repository(dir: &tempfile::TempDir) -> Repository {
    let backend = Arc::new(FsBackend::new(dir.path()).unwrap());
    let options = InitOptions::encrypted(Secret::password("rdb")).kdf(KdfParams::INSECURE_FAST);
    Repository::init(backend, options).await.unwrap()
}

/// Every archived command of `component`, in offset order, checked to run
/// on from `start` without a gap: (offset, name, first argument).
async fn archived(
    repo: &Repository,
    component: &dr_core::ComponentId,
    start: u64,
) -> Vec<(u64, String, Vec<u8>)> {
    let mut segments = Vec::new();
    for name in repo.segments(component, "").await.unwrap() {
        let header = parse_name(&name).unwrap();
        let mut bytes = Vec::new();
        repo.open_segment(component, &name)
            .await
            .unwrap()
            .read_to_end(&mut bytes)
            .await
            .unwrap();
        let (read_header, records) = read_segment(Bytes::from(bytes)).unwrap();
        assert_eq!(read_header, header);
        segments.push((header.start, records));
    }
    segments.sort_by_key(|(start, _)| *start);
    let mut next = start;
    let mut commands = Vec::new();
    for (_, records) in segments {
        for record in records {
            assert_eq!(record.start, next, "no gap, no overlap");
            let mut split = CommandSplitter::new(record.start);
            split.feed(&record.data);
            while let Some(command) = split.next_command().unwrap() {
                commands.push((
                    command.offsets.start,
                    String::from_utf8_lossy(command.name()).to_uppercase(),
                    command.arg(1).unwrap_or_default().to_vec(),
                ));
            }
            assert_eq!(split.pending(), 0, "records hold whole commands");
            next = record.offsets().end;
        }
    }
    commands
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_archived_after_a_snapshot_and_acknowledged_once_durable() {
    for version in [RedisVersion::System, RedisVersion::Redis8] {
        let master = Redis::start_with(RedisOptions::default().version(version))
            .await
            .unwrap();
        let mut con = master.connection().await.unwrap();
        let (): () = redis::cmd("SET")
            .arg("before")
            .arg(1)
            .query_async(&mut con)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let repo = repository(&dir).await;
        let journals = repo.segment_journals().unwrap();
        let component: dr_core::ComponentId = "redis/archived".parse().unwrap();
        let archiver = CommandArchiver::new(
            component.clone(),
            RedisServer::new("127.0.0.1", master.port()),
        )
        .interval(Duration::from_millis(50))
        .seal_at(400, Duration::from_secs(600));
        let (stop, run) = spawn_archiver(&archiver, &repo, true, None);

        // The full synchronization became a snapshot first.
        let snapshot =
            dr_testkit::eventually("the archiver's snapshot", Duration::from_secs(30), || {
                let (repo, component) = (repo.clone(), component.clone());
                async move { repo.snapshots(&component).await.unwrap().pop() }
            })
            .await;
        let details = RdbSnapshotDetails::of(&snapshot).unwrap();
        assert_eq!(details.counts.keys(), 1);
        let Some(Position::Redis {
            replication_id,
            offset,
        }) = snapshot.recovery_point.position.clone()
        else {
            panic!("{:?}", snapshot.recovery_point)
        };
        assert_eq!(
            snapshot.labels.get("trigger").map(String::as_str),
            Some("archiver")
        );

        for i in 0..40 {
            let (): () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(i)
                .query_async(&mut con)
                .await
                .unwrap();
        }
        // WAIT counts the archiver once the writes are durable.
        acknowledged_by(&con, 1).await;
        let (): () = redis::cmd("INCR")
            .arg("n")
            .query_async(&mut con)
            .await
            .unwrap();
        acknowledged_by(&con, 1).await;

        stop.send(true).unwrap();
        let stopped = run.await.unwrap().unwrap();
        assert_eq!(stopped.snapshots_taken, 1);
        assert_eq!(stopped.archived.replication_id, replication_id.to_string());
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut con)
            .await
            .unwrap();
        let master_offset: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        assert!(
            stopped.archived.offset <= master_offset
                && master_offset - stopped.archived.offset < 100
        );

        let commands = archived(&repo, &component, offset).await;
        let sets: Vec<&(u64, String, Vec<u8>)> = commands.iter().filter(|c| c.1 == "SET").collect();
        assert_eq!(sets.len(), 40, "{version:?}: {commands:?}");
        assert_eq!(sets[0].2, b"k0");
        assert!(commands.iter().any(|c| c.1 == "INCR"));
        // Small seals: several segments; the journals were removed.
        assert!(repo.segments(&component, "").await.unwrap().len() > 1);
        let open = dr_core::JournalSource::journals(&journals, &component, "")
            .await
            .unwrap();
        assert!(open.is_empty(), "{open:?}");

        // Resumed from where the archive ends: no new snapshot, and the
        // writes since run on from the same offsets.
        let (stop, run) = spawn_archiver(&archiver, &repo, true, Some(stopped.archived.clone()));
        for i in 0..5 {
            let (): () = redis::cmd("SET")
                .arg(format!("r{i}"))
                .arg(i)
                .query_async(&mut con)
                .await
                .unwrap();
        }
        acknowledged_by(&con, 1).await;
        stop.send(true).unwrap();
        let again = run.await.unwrap().unwrap();
        assert_eq!(again.snapshots_taken, 0);
        let commands = archived(&repo, &component, offset).await;
        let resumed = commands
            .iter()
            .filter(|c| c.1 == "SET" && c.2.starts_with(b"r"))
            .count();
        assert_eq!(resumed, 5, "{version:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archiving_continues_across_a_failover_without_a_gap() {
    let mut master = Redis::start().await.unwrap();
    let replica = master.start_replica().await.unwrap();
    let mut con = master.connection().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let component: dr_core::ComponentId = "redis/failover".parse().unwrap();
    let archiver = CommandArchiver::new(
        component.clone(),
        RedisServer::new("127.0.0.1", master.port()),
    )
    .candidates(vec![RedisServer::new("127.0.0.1", replica.port())])
    .interval(Duration::from_millis(50))
    .reconnect_for(Duration::from_secs(30));
    let (stop, run) = spawn_archiver(&archiver, &repo, true, None);
    // Both follow the master before the writes begin.
    acknowledged_by(&con, 2).await;
    for i in 0..10 {
        let (): () = redis::cmd("SET")
            .arg(format!("before{i}"))
            .arg(i)
            .query_async(&mut con)
            .await
            .unwrap();
    }
    // The replica and the archiver both have every write.
    acknowledged_by(&con, 2).await;
    let snapshot = repo.snapshots(&component).await.unwrap().pop().unwrap();
    let Some(Position::Redis { offset, .. }) = snapshot.recovery_point.position.clone() else {
        panic!("{:?}", snapshot.recovery_point)
    };

    // The master dies; its replica is promoted and takes writes.
    master.kill9();
    let mut promoted = replica.connection().await.unwrap();
    let (): () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut promoted)
        .await
        .unwrap();
    for i in 0..10 {
        let (): () = redis::cmd("SET")
            .arg(format!("after{i}"))
            .arg(i)
            .query_async(&mut promoted)
            .await
            .unwrap();
    }
    // The archiver follows the new master: it acknowledges there.
    acknowledged_by(&promoted, 1).await;
    stop.send(true).unwrap();
    let stopped = run.await.unwrap().unwrap();
    assert_eq!(
        stopped.snapshots_taken, 1,
        "the new master continued the history"
    );

    let commands = archived(&repo, &component, offset).await;
    let sets: Vec<String> = commands
        .iter()
        .filter(|c| c.1 == "SET")
        .map(|c| String::from_utf8_lossy(&c.2).into_owned())
        .collect();
    let expected: Vec<String> = (0..10)
        .map(|i| format!("before{i}"))
        .chain((0..10).map(|i| format!("after{i}")))
        .collect();
    assert_eq!(sets, expected);
    // Two histories: the old master's id, then the promoted replica's.
    let ids: std::collections::BTreeSet<String> = repo
        .segments(&component, "")
        .await
        .unwrap()
        .iter()
        .map(|name| parse_name(name).unwrap().replication_id)
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
}

/// An archiver resumed after the master's backlog moved past the archive's
/// end (a small `repl-backlog-size`, and more writes than it holds while no
/// archiver ran) cannot continue the history: the master sends a full
/// synchronization, which is stored as a new snapshot, and the archiver
/// says so (`snapshots_taken`); the archive runs on from the new snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_past_the_archive_takes_a_new_snapshot_and_says_so() {
    let master = Redis::start_with(RedisOptions::default().setting("repl-backlog-size", "16kb"))
        .await
        .unwrap();
    let con = master.connection().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let component: dr_core::ComponentId = "redis/backlog".parse().unwrap();
    let archiver = CommandArchiver::new(
        component.clone(),
        RedisServer::new("127.0.0.1", master.port()),
    )
    .interval(Duration::from_millis(50))
    .reconnect_for(Duration::from_secs(5));
    let run = |from| spawn_archiver(&archiver, &repo, true, from);
    let (stop, task) = run(None);
    let (): () = redis::cmd("SET")
        .arg("first")
        .arg(1)
        .query_async(&mut con.clone())
        .await
        .unwrap();
    acknowledged_by(&con, 1).await;
    stop.send(true).unwrap();
    let first = task.await.unwrap().unwrap();
    assert_eq!(first.snapshots_taken, 1);

    // 64 KiB of writes while nobody archives: four times the backlog.
    let value = "x".repeat(1024);
    for i in 0..64 {
        let (): () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .query_async(&mut con.clone())
            .await
            .unwrap();
    }
    let (stop, task) = run(Some(first.archived.clone()));
    let (): () = redis::cmd("SET")
        .arg("after")
        .arg(1)
        .query_async(&mut con.clone())
        .await
        .unwrap();
    acknowledged_by(&con, 1).await;
    stop.send(true).unwrap();
    let second = task.await.unwrap().unwrap();
    assert_eq!(second.snapshots_taken, 1, "a new full synchronization");
    assert!(second.archived.offset > first.archived.offset);
    let snapshots = repo.snapshots(&component).await.unwrap();
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    let newest = snapshots.iter().max_by_key(|m| m.id).unwrap();
    let details = RdbSnapshotDetails::of(newest).unwrap();
    // first and k0..k63, and `after` if the synchronization began later.
    assert!(details.counts.keys() >= 65, "{details:?}");
}
