//! RDB snapshots of real Redis 7.0 and 8.2 servers stored in a real
//! repository, what a second snapshot after a few keys changed stores, and
//! what a broken transfer or refused credentials leave: no snapshot at all.

use std::sync::Arc;

use dr_core::{BackupExt, ErrorKind, Position, SnapshotSource, SnapshotSourceExt, StreamName};
use dr_redis::{RDB_STREAM, RdbSnapshot, RdbSnapshotDetails, RedisServer, verify_slice};
use dr_storage::{FsBackend, InitOptions, KdfParams, Repository, Secret};
use dr_testkit::{Redis, RedisOptions, RedisVersion, noise};
use tokio::io::AsyncReadExt;

use crate::common::fake_master::{fake_master, small_rdb};

async fn repository(dir: &tempfile::TempDir) -> Repository {
    let backend = Arc::new(FsBackend::new(dir.path()).unwrap());
    let options = InitOptions::encrypted(Secret::password("rdb")).kdf(KdfParams::INSECURE_FAST);
    Repository::init(backend, options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_stores_the_whole_rdb_with_its_counts_and_position() {
    for (version, rdb_version) in [(RedisVersion::System, 10), (RedisVersion::Redis8, 12)] {
        let redis = Redis::start_with(RedisOptions::default().version(version))
            .await
            .unwrap();
        let mut con = redis.connection().await.unwrap();
        let mut pipe = redis::pipe();
        for i in 0..3000 {
            pipe.cmd("HSET")
                .arg(format!("user:{i}"))
                .arg("name")
                .arg(format!("user number {i}"))
                .ignore();
        }
        pipe.cmd("SET")
            .arg("session")
            .arg("x")
            .arg("PX")
            .arg(600_000)
            .ignore();
        let (): () = pipe.query_async(&mut con).await.unwrap();

        let dir = tempfile::tempdir().unwrap();
        let repo = repository(&dir).await;
        let component = "redis/main".parse().unwrap();
        let snapshot = RdbSnapshot::new(component, RedisServer::new("127.0.0.1", redis.port()));
        let report = snapshot.backup_to(&repo).await.unwrap();

        let details = RdbSnapshotDetails::of(&report.manifest).unwrap();
        assert_eq!(details.rdb_version, rdb_version);
        assert_eq!(details.counts.keys(), 3001);
        assert_eq!(details.counts.expires(), 1);
        let Some(Position::Redis { offset, .. }) = &report.manifest.recovery_point.position else {
            panic!("{:?}", report.manifest.recovery_point)
        };
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut con)
            .await
            .unwrap();
        // The offset the server stood at when it forked (a replica PING
        // since may have moved it on by a few bytes).
        let now: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        assert!(*offset <= now && now - offset < 1024, "{offset}: {info}");

        // The stored stream is the RDB, whole: its counts are the recorded ones.
        let mut stream = repo
            .open_stream(
                &report.manifest.id,
                &RDB_STREAM.parse::<StreamName>().unwrap(),
            )
            .await
            .unwrap();
        let mut rdb = Vec::new();
        stream.read_to_end(&mut rdb).await.unwrap();
        let summary = verify_slice(&rdb).unwrap();
        assert!(summary.counts.differences(&details.counts).is_empty());
        // Redis's own checker of the same version agrees.
        let (sound, said) = crate::common::redis_check_rdb(version, &rdb);
        assert!(sound, "{version:?}: {said}");
        assert_eq!(summary.bytes, details.bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_transfer_or_a_refused_password_leaves_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let component: dr_core::ComponentId = "redis/main".parse().unwrap();

    // Cut short after 12 of 1000 bytes.
    let port = fake_master(
        vec![b"$1000\r\n".to_vec(), small_rdb()[..12].to_vec()],
        true,
    )
    .await;
    let err = RdbSnapshot::new(component.clone(), RedisServer::new("127.0.0.1", port))
        .backup_to(&repo)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    // Whole in length, but damaged inside: the checksum catches it.
    let mut damaged = small_rdb();
    let crc = damaged.len() - 8;
    damaged[crc..].copy_from_slice(&1u64.to_le_bytes());
    let mut sent = format!("${}\r\n", damaged.len()).into_bytes();
    sent.extend_from_slice(&damaged);
    let port = fake_master(vec![sent], true).await;
    let err = RdbSnapshot::new(component.clone(), RedisServer::new("127.0.0.1", port))
        .backup_to(&repo)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");

    // A refused password.
    let redis = Redis::start_with(RedisOptions::default().password("secret"))
        .await
        .unwrap();
    let err = RdbSnapshot::new(
        component.clone(),
        RedisServer::new("127.0.0.1", redis.port()).auth(None, "wrong"),
    )
    .backup_to(&repo)
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");

    assert!(repo.snapshots(&component).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_snapshot_stores_little_more_than_the_keys_that_changed() {
    let redis = Redis::start().await.unwrap();
    let mut con = redis.connection().await.unwrap();
    // 4000 keys of 100 B to 4 KiB that do not compress: about 8 MB.
    let value = |i: u64, version: u64| noise(i * 2 + version, 100 + (i as usize * 997) % 4000);
    let mut pipe = redis::pipe();
    for i in 0..4000u64 {
        if i % 3 == 0 {
            pipe.cmd("HSET")
                .arg(format!("hash:{i}"))
                .arg("a")
                .arg(value(i, 0))
                .arg("b")
                .arg(noise(i + 1_000_000, 80))
                .ignore();
        } else {
            pipe.cmd("SET")
                .arg(format!("string:{i}"))
                .arg(value(i, 0))
                .ignore();
        }
    }
    let (): () = pipe.query_async(&mut con).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let snapshot = RdbSnapshot::new(
        "redis/main".parse().unwrap(),
        RedisServer::new("127.0.0.1", redis.port()),
    );
    let first = snapshot.backup_to(&repo).await.unwrap();
    let after_first = crate::common::stored_bytes(dir.path());

    // 20 string keys rewritten, with values of other sizes.
    let mut pipe = redis::pipe();
    for i in (1..4000u64).filter(|i| i % 3 != 0).step_by(133).take(20) {
        pipe.cmd("SET")
            .arg(format!("string:{i}"))
            .arg(noise(i * 2 + 1, 100 + (i as usize * 31) % 4000))
            .ignore();
    }
    let (): () = pipe.query_async(&mut con).await.unwrap();
    let second = snapshot.backup_to(&repo).await.unwrap();
    let added = crate::common::stored_bytes(dir.path()) - after_first;

    let rdb = RdbSnapshotDetails::of(&second.manifest).unwrap().bytes;
    eprintln!("second snapshot: {added} bytes stored, RDB of {rdb} bytes");
    assert!(rdb > 7_000_000, "{rdb}");
    assert_eq!(
        RdbSnapshotDetails::of(&first.manifest)
            .unwrap()
            .counts
            .keys(),
        4000
    );
    // 20 keys of 4000 rewritten: what is stored again is their chunks (a
    // few KiB each), the snapshot's list of chunks and the index of the new
    // ones; far less than the RDB.
    assert!(
        added * 20 < rdb,
        "the second snapshot stored {added} bytes of an RDB of {rdb}"
    );
}
