//! The kit's own tests: every server starts, answers a real client, survives
//! kill -9 and restart where it persists, and leaves no process or directory behind.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dr_testkit::{
    Auth, Error, Persistence, Postgres, PostgresOptions, Redis, RedisCluster, RedisOptions,
    RedisVersion, S3, S3Options, process_exists,
};
use redis::AsyncCommands;

/// Asserts that a handle's process and directory are gone.
fn assert_cleaned_up(pid: u32, dir: PathBuf) {
    assert!(!process_exists(pid), "process {pid} still running");
    assert!(!dir.exists(), "{} still exists", dir.display());
}

async fn count_rows(pg: &Postgres) -> i64 {
    let client = pg.connect("postgres").await.unwrap();
    client
        .query_one("SELECT count(*) FROM drill", &[])
        .await
        .unwrap()
        .get(0)
}

async fn postgres_round_trip() {
    let mut pg = Postgres::start().await.unwrap();
    let client = pg.connect("postgres").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE drill (id int); INSERT INTO drill SELECT generate_series(1, 100)",
        )
        .await
        .unwrap();
    let settings = client
        .query_one(
            "SELECT current_setting('wal_level'), current_setting('max_wal_senders')::int",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(settings.get::<_, String>(0), "replica");
    assert!(settings.get::<_, i32>(1) > 0);
    drop(client);

    let crashed = pg.pid().unwrap();
    pg.kill9();
    assert!(!process_exists(crashed));
    assert!(
        pg.connect("postgres").await.is_err(),
        "still answering after kill -9"
    );
    pg.restart().await.unwrap();
    assert_eq!(
        count_rows(&pg).await,
        100,
        "committed rows lost in the crash"
    );

    pg.stop().await;
    pg.restart().await.unwrap();
    assert_eq!(count_rows(&pg).await, 100);

    let (pid, dir) = (pg.pid().unwrap(), pg.dir().to_owned());
    drop(pg);
    assert_cleaned_up(pid, dir);
}

#[tokio::test]
async fn postgres_starts_answers_survives_kill9_and_cleans_up() {
    postgres_round_trip().await;
}

/// Runs the round trip as an unprivileged user. Run as root, the test binary
/// re-runs just this test as the `postgres` OS user, so both the root path
/// (servers run as `postgres`) and the normal-user path are exercised.
#[tokio::test]
async fn postgres_starts_as_a_normal_user() {
    if !nix::unistd::Uid::effective().is_root() {
        postgres_round_trip().await;
        return;
    }
    let user = nix::unistd::User::from_name("postgres")
        .unwrap()
        .expect("OS user postgres");
    // A copy of this binary where the unprivileged user can run it, whatever
    // the permissions of the checkout.
    let dir = tempfile::Builder::new()
        .prefix(dr_testkit::TEMP_PREFIX)
        .tempdir()
        .unwrap();
    let exe = dir.path().join("servers-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw())).unwrap();
    let output = tokio::process::Command::new(&exe)
        .args([
            "--exact",
            "servers::postgres_starts_as_a_normal_user",
            "--nocapture",
            "--test-threads=1",
        ])
        .uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .env("HOME", dir.path())
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "as user postgres:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the test did not run as user postgres:\n{text}"
    );
}

#[tokio::test]
async fn postgres_replica_streams_and_promotes() {
    let primary = Postgres::start().await.unwrap();
    let replica = primary.start_replica().await.unwrap();
    assert_ne!(primary.port(), replica.port());

    let writer = primary.connect("postgres").await.unwrap();
    writer
        .batch_execute(
            "CREATE TABLE drill (id int); INSERT INTO drill SELECT generate_series(1, 10)",
        )
        .await
        .unwrap();
    let reader = replica.connect("postgres").await.unwrap();
    let in_recovery: bool = reader
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery);

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = reader
            .query_opt("SELECT count(*) FROM drill", &[])
            .await
            .ok()
            .flatten()
            .map(|row| row.get::<_, i64>(0));
        if seen == Some(10) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica never caught up: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let senders: i64 = writer
        .query_one(
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(senders, 1);

    replica.promote().await.unwrap();
    reader
        .batch_execute("INSERT INTO drill VALUES (11)")
        .await
        .unwrap();
    let in_recovery: bool = reader
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!in_recovery, "still a replica after promotion");
    let (pid, dir) = (replica.pid().unwrap(), replica.dir().to_owned());
    drop(reader);
    drop(replica);
    assert_cleaned_up(pid, dir);
}

#[tokio::test]
async fn postgres_auth_methods_refuse_wrong_passwords() {
    for auth in [Auth::Md5, Auth::ScramSha256] {
        let pg = Postgres::start_with(PostgresOptions::default().auth(auth).password("s3cret"))
            .await
            .unwrap();
        pg.connect("postgres").await.unwrap();
        let mut wrong = pg.config("postgres");
        wrong.password("not-the-password");
        let err = wrong
            .connect(tokio_postgres::NoTls)
            .await
            .err()
            .expect("wrong password accepted");
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
            "{auth:?}: {err}"
        );
    }
    let pg = Postgres::start_with(PostgresOptions::default().auth(Auth::Trust))
        .await
        .unwrap();
    let mut any = pg.config("postgres");
    any.password("anything");
    assert!(any.connect(tokio_postgres::NoTls).await.is_ok());
}

#[tokio::test]
async fn redis_persists_across_kill9_and_restart() {
    let options = RedisOptions::default()
        .persistence(Persistence::Aof)
        .setting("appendfsync", "always");
    let mut redis = Redis::start_with(options).await.unwrap();
    let mut con = redis.connection().await.unwrap();
    let _: () = con.set("session:1", "alice").await.unwrap();
    let port = redis.port();
    redis.kill9();
    assert!(
        redis.connection().await.is_err(),
        "still answering after kill -9"
    );
    redis.restart().await.unwrap();
    assert_eq!(redis.port(), port, "restart should keep the port");
    let mut con = redis.connection().await.unwrap();
    let value: Option<String> = con.get("session:1").await.unwrap();
    assert_eq!(value.as_deref(), Some("alice"));

    let (pid, dir) = (redis.pid().unwrap(), redis.dir().to_owned());
    drop(redis);
    assert_cleaned_up(pid, dir);
}

/// Both Redis versions run, write the RDB version they are known for, and
/// their own `redis-check-rdb` accepts it.
#[tokio::test]
async fn redis_7_and_8_write_their_rdb_versions() {
    for (version, server, rdb) in [
        (RedisVersion::System, "redis_version:7.", "REDIS0010"),
        (RedisVersion::Redis8, "redis_version:8.2", "REDIS0012"),
    ] {
        let redis = Redis::start_with(RedisOptions::default().version(version))
            .await
            .unwrap();
        assert_eq!(redis.version(), version);
        let mut con = redis.connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(info.contains(server), "{version:?}: {info}");
        let _: () = con.set("k", "v").await.unwrap();
        let _: () = redis::cmd("SAVE").query_async(&mut con).await.unwrap();
        let file = redis.dir().join("dump.rdb");
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(&bytes[..9], rdb.as_bytes(), "{version:?}");
        let checked = std::process::Command::new(version.check_rdb().unwrap())
            .arg(&file)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&checked.stdout);
        assert!(
            checked.status.success() && said.contains("RDB looks OK"),
            "{version:?}: {said}"
        );
    }
}

#[tokio::test]
async fn redis_without_persistence_loses_data_on_kill9() {
    let mut redis = Redis::start().await.unwrap();
    let mut con = redis.connection().await.unwrap();
    let _: () = con.set("k", "v").await.unwrap();
    redis.kill9();
    redis.restart().await.unwrap();
    let mut con = redis.connection().await.unwrap();
    let value: Option<String> = con.get("k").await.unwrap();
    assert_eq!(value, None);
}

#[tokio::test]
async fn redis_replica_follows_its_master() {
    let master = Redis::start_with(RedisOptions::default().password("pw"))
        .await
        .unwrap();
    let mut con = master.connection().await.unwrap();
    let _: () = con.set("before", "1").await.unwrap();
    let replica = master.start_replica().await.unwrap();
    let _: () = con.set("after", "2").await.unwrap();
    let mut rcon = replica.connection().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got: (Option<String>, Option<String>) = redis::pipe()
            .get("before")
            .get("after")
            .query_async(&mut rcon)
            .await
            .unwrap();
        if got == (Some("1".into()), Some("2".into())) {
            break;
        }
        assert!(Instant::now() < deadline, "replica has {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let role: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut rcon)
        .await
        .unwrap();
    assert!(role.contains("role:slave"), "{role}");
}

#[tokio::test]
async fn redis_cluster_of_three_masters_and_three_replicas() {
    let cluster = RedisCluster::start(3, 1).await.unwrap();
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);

    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let mut con = client.get_async_connection().await.unwrap();
    for i in 0..300 {
        let _: () = con.set(format!("room:{i}"), i).await.unwrap();
    }
    for i in (0..300).step_by(37) {
        let value: i32 = con.get(format!("room:{i}")).await.unwrap();
        assert_eq!(value, i);
    }
    // Keys spread over every master.
    for master in cluster.masters() {
        let mut direct = master.connection().await.unwrap();
        let size: i64 = redis::cmd("DBSIZE").query_async(&mut direct).await.unwrap();
        assert!(size > 0, "master on port {} holds no keys", master.port());
    }
    let pids: Vec<(u32, PathBuf)> = cluster
        .nodes()
        .map(|n| (n.pid().unwrap(), n.dir().to_owned()))
        .collect();
    drop(con);
    drop(cluster);
    for (pid, dir) in pids {
        assert_cleaned_up(pid, dir);
    }
}

#[tokio::test]
async fn s3_server_serves_a_fresh_bucket() {
    let mut s3 = S3::start().await.unwrap();
    let client = s3.client();
    client
        .put_object()
        .bucket(s3.bucket())
        .key("backups/one")
        .body(b"payload".to_vec().into())
        .send()
        .await
        .unwrap();
    let got = client
        .get_object()
        .bucket(s3.bucket())
        .key("backups/one")
        .send()
        .await
        .unwrap();
    let body = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"payload");

    s3.kill9();
    assert!(
        client.list_buckets().send().await.is_err(),
        "still answering after kill -9"
    );
    s3.restart().await.unwrap();
    let listed = client
        .list_objects_v2()
        .bucket(s3.bucket())
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.key_count(),
        Some(0),
        "moto keeps nothing across a restart"
    );

    let (pid, dir) = (s3.pid().unwrap(), s3.dir().to_owned());
    drop(s3);
    assert_cleaned_up(pid, dir);
}

#[tokio::test]
async fn s3_bucket_with_object_lock() {
    let s3 = S3::start_with(S3Options::default().object_lock(true))
        .await
        .unwrap();
    let config = s3
        .client()
        .get_object_lock_configuration()
        .bucket(s3.bucket())
        .send()
        .await
        .unwrap();
    let enabled = config
        .object_lock_configuration()
        .and_then(|c| c.object_lock_enabled());
    assert_eq!(enabled.map(|e| e.as_str()), Some("Enabled"));
}

#[tokio::test]
async fn missing_programs_say_what_to_install() {
    let mut options = S3Options::default();
    options.moto_server = Some("/nonexistent/moto_server".into());
    match S3::start_with(options).await {
        Err(Error::MissingBinary { binary, hint }) => {
            assert_eq!(binary, "moto_server");
            assert!(hint.contains("pip install 'moto[server]'"), "{hint}");
        }
        other => panic!("expected MissingBinary, got {other:?}"),
    }
}
