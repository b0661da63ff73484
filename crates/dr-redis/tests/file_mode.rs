//! File mode against a real Redis 7.0's own files: an RDB file, and an
//! append-only directory stored and put back under a fresh server, which
//! loads every key; damaged or foreign files leave no snapshot.

use std::sync::Arc;
use std::time::Duration;

use dr_core::{
    BackupExt, ErrorKind, Objectives, RecoveryTarget, Restore, RestoreRequest, SnapshotSource,
    SnapshotSourceExt,
};
use dr_redis::{
    AOF_STREAM_PREFIX, FileSnapshot, RdbFileRestore, RdbRestore, RdbSnapshotDetails, RedisServer,
};
use dr_storage::{FsBackend, InitOptions, KdfParams, Repository, Secret};
use dr_testkit::{Persistence, Redis, RedisOptions, RedisVersion, eventually};

use redis::aio::MultiplexedConnection;
use tokio::io::AsyncReadExt;

async fn repository(dir: &tempfile::TempDir) -> Repository {
    let backend = Arc::new(FsBackend::new(dir.path()).unwrap());
    let options = InitOptions::encrypted(Secret::password("rdb")).kdf(KdfParams::INSECURE_FAST);
    Repository::init(backend, options).await.unwrap()
}

async fn set_many(con: &mut MultiplexedConnection, prefix: &str, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET").arg(format!("{prefix}:{i}")).arg(i).ignore();
    }
    let (): () = pipe.query_async(con).await.unwrap();
}

async fn info(con: &mut MultiplexedConnection, field: &str) -> String {
    let text: String = redis::cmd("INFO")
        .arg("persistence")
        .query_async(con)
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rdb_file_is_stored_whole_and_counted() {
    let redis = Redis::start_with(RedisOptions::default().persistence(Persistence::Rdb))
        .await
        .unwrap();
    let mut con = redis.connection().await.unwrap();
    set_many(&mut con, "k", 500).await;
    let (): () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
    let file = redis.dir().join("dump.rdb");

    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let report = FileSnapshot::new("redis/files".parse().unwrap(), &file)
        .backup_to(&repo)
        .await
        .unwrap();
    let details = RdbSnapshotDetails::of(&report.manifest).unwrap();
    assert_eq!(
        (details.framing.as_str(), details.counts.keys()),
        ("file", 500)
    );
    assert!(details.server_version.starts_with("7."), "{details:?}");
    let mut stored = Vec::new();
    repo.open_stream(&report.manifest.id, &"rdb".parse().unwrap())
        .await
        .unwrap()
        .read_to_end(&mut stored)
        .await
        .unwrap();
    assert_eq!(stored, std::fs::read(&file).unwrap());

    // Restored online into a fresh server: every key.
    let fresh = Redis::start().await.unwrap();
    let latest = RecoveryTarget::Latest;
    let objectives = Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap());
    let (_, counts) = RdbRestore::new(
        "redis/files".parse().unwrap(),
        RedisServer::new("127.0.0.1", fresh.port()),
    )
    .restore_counted(RestoreRequest::new(&repo, &latest, objectives))
    .await
    .unwrap();
    assert_eq!(counts.restored, 500);
    let mut con = fresh.connection().await.unwrap();
    let value: String = redis::cmd("GET")
        .arg("k:499")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(value, "499");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_only_directory_put_back_loads_every_key() {
    let aof = RedisOptions::default()
        .persistence(Persistence::Aof)
        .setting("appendfsync", "always");
    let redis = Redis::start_with(aof.clone()).await.unwrap();
    let mut con = redis.connection().await.unwrap();
    set_many(&mut con, "before", 300).await;
    // The first 300 into a new RDB base, the next 200 into the incremental file.
    let _: String = redis::cmd("BGREWRITEAOF")
        .query_async(&mut con)
        .await
        .unwrap();
    eventually("the AOF rewrite", Duration::from_secs(30), || {
        let mut con = con.clone();
        async move {
            let done = info(&mut con, "aof_rewrite_in_progress").await == "0"
                && info(&mut con, "aof_rewrite_scheduled").await == "0";
            done.then_some(())
        }
    })
    .await;
    set_many(&mut con, "after", 200).await;

    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let component: dr_core::ComponentId = "redis/files".parse().unwrap();
    let report = FileSnapshot::new(component.clone(), redis.dir().join("appendonlydir"))
        .backup_to(&repo)
        .await
        .unwrap();
    let details = RdbSnapshotDetails::of(&report.manifest).unwrap();
    assert_eq!(details.framing, "appendonlydir");
    assert_eq!(
        details.counts.keys(),
        300,
        "the base holds the rewritten keys"
    );
    let names: Vec<String> = report
        .manifest
        .streams
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert!(
        names.iter().all(|n| n.starts_with(AOF_STREAM_PREFIX)),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with(".manifest")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(".base.rdb")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(".incr.aof")), "{names:?}");

    // Restored as files under a fresh server's directory (emptied): it
    // loads all 500 keys.
    let mut fresh = Redis::start_with(aof).await.unwrap();
    fresh.stop().await;
    let target = fresh.dir().join("appendonlydir");
    std::fs::remove_dir_all(&target).unwrap();
    std::fs::create_dir(&target).unwrap();
    let latest = RecoveryTarget::Latest;
    let objectives = Objectives::new("5m".parse().unwrap(), "1m".parse().unwrap());
    RdbFileRestore::new(component.clone(), &target)
        .restore(RestoreRequest::new(&repo, &latest, objectives))
        .await
        .unwrap();
    // Online, it would need its incremental AOF replayed: refused, clearly.
    let err = RdbRestore::new(component, RedisServer::new("127.0.0.1", redis.port()))
        .restore(RestoreRequest::new(&repo, &latest, objectives))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("append-only directory"), "{err}");
    fresh.restart().await.unwrap();
    let mut con = fresh.connection().await.unwrap();
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(keys, 500);
    let value: String = redis::cmd("GET")
        .arg("after:199")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(value, "199");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_foreign_files_leave_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let component: dr_core::ComponentId = "redis/files".parse().unwrap();
    let files = tempfile::tempdir().unwrap();

    // An RDB whose checksum does not hold.
    let mut rdb = b"REDIS0010\xfe\x00\x00\x01k\x01v\xff".to_vec();
    rdb.extend(1u64.to_le_bytes());
    let damaged = files.path().join("dump.rdb");
    std::fs::write(&damaged, &rdb).unwrap();
    let err = FileSnapshot::new(component.clone(), &damaged)
        .backup_to(&repo)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    // Redis's own checker refuses it too.
    let (sound, said) = crate::common::redis_check_rdb(RedisVersion::System, &rdb);
    assert!(!sound, "{said}");

    // A directory with no append-only manifest.
    let err = FileSnapshot::new(component.clone(), files.path())
        .backup_to(&repo)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("manifest"), "{err}");

    // A manifest naming a file outside its directory.
    std::fs::write(
        files.path().join("appendonly.aof.manifest"),
        "file ../dump.rdb seq 1 type b\n",
    )
    .unwrap();
    let err = FileSnapshot::new(component.clone(), files.path())
        .backup_to(&repo)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    assert!(repo.snapshots(&component).await.unwrap().is_empty());
}
