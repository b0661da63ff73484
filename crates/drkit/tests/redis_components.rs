//! `drkit` with Redis components, as an operator drives it against real
//! Redis 7.0 servers and a real Cluster: the config checked, a snapshot
//! taken, verified and inspected, restored into another server, refused on
//! conflicts, skipped, written as a file; a cluster's snapshot inspected by
//! shard and the whole cluster rebuilt on empty nodes; flags of the other
//! kind refused; a master and its replicas switched over with `drkit
//! failover`, then failed over by the agent's monitor when killed; the
//! agent archiving a master's commands, and a restore to a time between
//! two writes.

use std::path::Path;

use crate::common::{BIN, PASSWORD, text};
use dr_testkit::{Redis, RedisCluster, RedisOptions};

const SESSIONS: &str = "redis/sessions";
const CACHE: &str = "redis-cluster/cache";

/// A config with a repository, the password-protected server `source` as
/// `redis/sessions`, and, where given, the cluster of `seed` as
/// `redis-cluster/cache`.
fn config(dir: &Path, source: &Redis, seed: Option<u16>) -> std::path::PathBuf {
    let pass = dir.join("repository.pass");
    std::fs::write(&pass, format!("{PASSWORD}\n")).unwrap();
    let redis_pass = dir.join("redis.pass");
    std::fs::write(&redis_pass, "s3cret\n").unwrap();
    let mut text = format!(
        r#"[repository]
location = "{repo}"
password = {{ file = "{pass}" }}

[[component]]
id = "{SESSIONS}"
kind = "redis"
objectives = {{ rto = "5m", rpo = "6h" }}
retention = "within=7d"
schedule = [{{ job = "backup", cron = "0 */6 * * *" }}]

[component.redis]
address = "127.0.0.1:{port}"
password = {{ file = "{redis_pass}" }}
tls = {{ mode = "disable" }}
"#,
        repo = dir.join("repo").display(),
        pass = pass.display(),
        port = source.port(),
        redis_pass = redis_pass.display(),
    );
    if let Some(seed) = seed {
        text.push_str(&format!(
            r#"
[[component]]
id = "{CACHE}"
kind = "redis-cluster"
objectives = {{ rto = "5m", rpo = "1h" }}
retention = "last=3"

[component.redis]
seeds = ["127.0.0.1:{seed}"]
tls = {{ mode = "disable" }}
pause_writes = "5s"
"#
        ));
    }
    let path = dir.join("drkit.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn drkit(config: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("DRKIT_CONFIG")
        .env_remove("DRKIT_KEY_CACHE")
        .env("XDG_CACHE_HOME", config.parent().unwrap().join("cache"))
        .output()
        .await
        .unwrap()
}

async fn dbsize(redis: &Redis) -> i64 {
    let mut con = redis.connection().await.unwrap();
    redis::cmd("DBSIZE").query_async(&mut con).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_server_backed_up_verified_inspected_and_restored() {
    let options = RedisOptions::default().password("s3cret");
    let source = Redis::start_with(options.clone()).await.unwrap();
    let mut con = source.connection().await.unwrap();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("session:{i}")).arg(i).ignore();
    }
    pipe.cmd("HSET")
        .arg("user:1")
        .arg("name")
        .arg("ada")
        .ignore();
    pipe.cmd("SET")
        .arg("big")
        .arg(vec![b'x'; 20_000])
        .arg("PX")
        .arg(600_000)
        .ignore();
    let (): () = pipe.query_async(&mut con).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &source, None);

    let init = drkit(&config, &["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    let check = drkit(&config, &["config", "check"]).await;
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("Redis 7.0"), "{}", text(&check));
    assert!(text(&check).contains("502 keys"), "{}", text(&check));

    let backup = drkit(&config, &["backup", SESSIONS]).await;
    assert!(backup.status.success(), "{}", text(&backup));
    let listed = drkit(&config, &["--json", "snapshots", "--component", SESSIONS]).await;
    let snapshots: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let id = snapshots[0]["id"].as_str().unwrap().to_owned();

    let verify = drkit(&config, &["verify", "--component", SESSIONS]).await;
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains("502 items"), "{}", text(&verify));
    let status = drkit(&config, &["--json", "status"]).await;
    assert!(status.status.success(), "{}", text(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["component"], SESSIONS);
    assert_eq!(status[0]["last_backup"]["id"], id.as_str());
    assert_eq!(status[0]["rpo"]["state"], "met", "{status}");

    let inspect = drkit(&config, &["--json", "redis", "inspect", &id, "--top", "1"]).await;
    assert!(inspect.status.success(), "{}", text(&inspect));
    let seen: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(seen["keys"]["0"]["string"], 501);
    assert_eq!(seen["keys"]["0"]["hash"], 1);
    assert_eq!(seen["biggest"][0]["key"], "\"big\"");
    assert_eq!(seen["expiry"]["within_hour"], 1);

    // Into another server with the same password.
    let target = Redis::start_with(options).await.unwrap();
    let into = format!("127.0.0.1:{}", target.port());
    let restore = drkit(&config, &["restore", SESSIONS, "--server", &into]).await;
    assert!(restore.status.success(), "{}", text(&restore));
    assert!(
        text(&restore).contains("502 keys restored"),
        "{}",
        text(&restore)
    );
    assert!(
        text(&restore).contains("RTO achieved"),
        "{}",
        text(&restore)
    );
    assert_eq!(dbsize(&target).await, 502);

    // Again: every key conflicts; nothing is written; skip is asked for.
    let again = drkit(&config, &["restore", SESSIONS, "--server", &into]).await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        text(&again).contains("502 keys of the snapshot already exist"),
        "{}",
        text(&again)
    );
    let skip = drkit(
        &config,
        &["restore", SESSIONS, "--server", &into, "--conflict", "skip"],
    )
    .await;
    assert!(skip.status.success(), "{}", text(&skip));
    assert!(text(&skip).contains("502 kept"), "{}", text(&skip));
    let once = drkit(
        &config,
        &[
            "restore",
            SESSIONS,
            "--server",
            &into,
            "--conflict",
            "replace",
            "--single-pass",
        ],
    )
    .await;
    assert!(once.status.success(), "{}", text(&once));
    assert!(
        !text(&once).contains("check the snapshot"),
        "{}",
        text(&once)
    );

    // A cold restore: the file, inspected without a config.
    let file = dir.path().join("dump.rdb");
    let cold = drkit(
        &config,
        &["restore", SESSIONS, "--file", file.to_str().unwrap()],
    )
    .await;
    assert!(cold.status.success(), "{}", text(&cold));
    let local = tokio::process::Command::new(BIN)
        .args(["redis", "inspect", "--file", file.to_str().unwrap()])
        .env("DRKIT_CONFIG", "/nonexistent/drkit.toml")
        .output()
        .await
        .unwrap();
    assert!(local.status.success(), "{}", text(&local));
    assert!(text(&local).contains("db 0: 502 keys"), "{}", text(&local));

    // The other kind's flags, and a delta, are usage errors.
    for args in [
        &["restore", SESSIONS, "--target", "/tmp/x"][..],
        &["backup", SESSIONS, "--delta"][..],
        &["restore", SESSIONS, "--to", "lsn:0/1"][..],
    ] {
        let refused = drkit(&config, args).await;
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&refused)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_backed_up_and_rebuilt_on_empty_nodes() {
    let server = Redis::start_with(RedisOptions::default().password("s3cret"))
        .await
        .unwrap();
    let cluster = RedisCluster::start(3, 0).await.unwrap();
    for (i, master) in cluster.masters().iter().enumerate() {
        // Keys each master owns: found by asking it.
        let mut con = master.connection().await.unwrap();
        let mut written = 0;
        let mut n = 0;
        while written < 50 {
            let key = format!("k{i}:{n}");
            n += 1;
            // A key of another master's slot is refused (MOVED).
            if redis::cmd("SET")
                .arg(&key)
                .arg(n)
                .query_async::<()>(&mut con)
                .await
                .is_ok()
            {
                written += 1;
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &server, Some(cluster.masters()[0].port()));
    assert!(drkit(&config, &["init"]).await.status.success());
    let check = drkit(&config, &["config", "check"]).await;
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("cluster node"), "{}", text(&check));

    let backup = drkit(&config, &["backup", CACHE]).await;
    assert!(backup.status.success(), "{}", text(&backup));
    let listed = drkit(&config, &["--json", "snapshots", "--component", CACHE]).await;
    let snapshots: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let id = snapshots[0]["id"].as_str().unwrap().to_owned();

    let verify = drkit(&config, &["verify", "--component", CACHE]).await;
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains("150 items"), "{}", text(&verify));

    // A cluster snapshot's RDB is a shard's.
    let no_shard = drkit(&config, &["redis", "inspect", &id]).await;
    assert_eq!(no_shard.status.code(), Some(2), "{}", text(&no_shard));
    let first = format!("127.0.0.1:{}", cluster.masters()[0].port());
    let shard = drkit(&config, &["redis", "inspect", &id, "--shard", &first]).await;
    assert!(shard.status.success(), "{}", text(&shard));
    assert!(text(&shard).contains("db 0: 50 keys"), "{}", text(&shard));

    // Every machine lost: three empty nodes.
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(
            Redis::start_cluster_node(RedisOptions::default())
                .await
                .unwrap(),
        );
    }
    let on: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let rebuild = drkit(&config, &["restore", CACHE, "--rebuild-on", &on.join(",")]).await;
    assert!(rebuild.status.success(), "{}", text(&rebuild));
    assert!(text(&rebuild).contains("150 keys"), "{}", text(&rebuild));
    for node in &nodes {
        assert_eq!(dbsize(node).await, 50);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_backs_a_redis_component_up_and_verifies_it() {
    let source = Redis::start_with(RedisOptions::default().password("s3cret"))
        .await
        .unwrap();
    let mut con = source.connection().await.unwrap();
    let (): () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &source, None);
    // Every few seconds, and the agent's table.
    let text_of = std::fs::read_to_string(&config).unwrap().replace(
        r#"schedule = [{ job = "backup", cron = "0 */6 * * *" }]"#,
        r#"schedule = [{ job = "backup", cron = "*/3 * * * * *" }, { job = "verify", cron = "*/4 * * * * *" }]"#,
    );
    std::fs::write(
        &config,
        format!("{text_of}\n[agent]\nlisten = \"127.0.0.1:0\"\nprune = {{ cron = \"0 4 * * 0\" }}\nrefresh = \"1s\"\n"),
    )
    .unwrap();
    assert!(drkit(&config, &["init"]).await.status.success());

    let agent = crate::common::agent::Agent::start_with(&config, dir.path(), "redis-agent").await;
    let done = |scrape: &prometheus_parse::Scrape, job: &str| {
        crate::common::agent::value(
            scrape,
            "drkit_job_runs_total",
            &[("component", SESSIONS), ("job", job), ("result", "success")],
        )
        .unwrap_or(0.0)
    };
    let scrape = dr_testkit::eventually(
        "a backup and a verify",
        std::time::Duration::from_secs(60),
        || async {
            let scrape = agent.scrape().await;
            (done(&scrape, "backup") >= 1.0 && done(&scrape, "verify") >= 1.0).then_some(scrape)
        },
    )
    .await;
    assert_eq!(
        crate::common::agent::value(
            &scrape,
            "drkit_rpo_compliance",
            &[("component", SESSIONS), ("state", "met")]
        ),
        Some(1.0),
        "{}",
        agent.log()
    );
    let (code, log) = agent.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

/// A master and two replicas as `redis/main` with a `[component.failover]`
/// table: `drkit failover` refuses while the master answers, switches over
/// to the replica asked for, and the agent's monitor fails the new master
/// over by itself once it is killed, fencing it with the fence_command and
/// pointing clients with the rewire_command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_master_switched_over_by_drkit_and_failed_over_by_its_agent() {
    let first = Redis::start().await.unwrap();
    let replicas = [
        first.start_replica().await.unwrap(),
        first.start_replica().await.unwrap(),
    ];
    let mut r1 = replicas[0].connection().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (fenced, rewired) = (dir.path().join("fenced"), dir.path().join("rewired"));
    let config = main_config(
        dir.path(),
        first.port(),
        "",
        &format!(
            r#"[component.failover]
members = [
  {{ name = "r-0", host = "127.0.0.1", port = {p0} }},
  {{ name = "r-1", host = "127.0.0.1", port = {p1} }},
  {{ name = "r-2", host = "127.0.0.1", port = {p2} }},
]
loss_limit = "1MB"
fence_command = ["/bin/sh", "-c", "echo {{member}} > {fenced}"]
rewire_command = ["/bin/sh", "-c", "echo {{member}} > {rewired}"]
automatic = {{ interval = "200ms", timeout = "500ms", failures = 3 }}
"#,
            p0 = first.port(),
            p1 = replicas[0].port(),
            p2 = replicas[1].port(),
            fenced = fenced.display(),
            rewired = rewired.display(),
        ),
    );
    assert!(drkit(&config, &["init"]).await.status.success());

    // The master answers: a failover is refused, a switchover is planned.
    let refused = drkit(&config, &["failover", "redis/main", "--dry-run"]).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("answers as the master"),
        "{}",
        text(&refused)
    );
    let moved = drkit(
        &config,
        &["failover", "redis/main", "--switchover", "--to", "r-1"],
    )
    .await;
    assert!(moved.status.success(), "{}", text(&moved));
    let role: String = redis::cmd("ROLE")
        .query_async::<redis::Value>(&mut r1)
        .await
        .map(|v| format!("{v:?}"))
        .unwrap();
    assert!(role.contains("master"), "{role}");
    let (): () = redis::cmd("SET")
        .arg("written")
        .arg("on r-1")
        .query_async(&mut r1)
        .await
        .unwrap();
    // Status shows each member (no backup yet: the RPO is missed, exit 3).
    let status = drkit(&config, &["status"]).await;
    let shown = text(&status);
    assert!(shown.contains("  replication"), "{shown}");
    let line = |name: &str| {
        shown
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {shown}"))
            .to_owned()
    };
    assert!(line("r-1").contains("master"), "{shown}");
    assert!(line("r-0").contains("replica"), "{shown}");
    assert!(line("r-2").contains("replica"), "{shown}");

    // The agent watches the new master; killed, it is failed over.
    let agent = crate::common::agent::Agent::start_with(&config, dir.path(), "agent").await;
    let metric = |scrape: &prometheus_parse::Scrape, name: &str| {
        crate::common::agent::value(scrape, name, &[("component", "redis/main")])
    };
    dr_testkit::eventually(
        "the monitor to see the master",
        std::time::Duration::from_secs(30),
        || async {
            (metric(&agent.scrape().await, "drkit_cluster_primary_up") == Some(1.0)).then_some(())
        },
    )
    .await;
    let mut replicas = replicas;
    replicas[0].kill9();
    dr_testkit::eventually(
        "the agent to fail over",
        std::time::Duration::from_secs(30),
        || async {
            let scrape = agent.scrape().await;
            (metric(&scrape, "drkit_failovers_total") == Some(1.0)
                && metric(&scrape, "drkit_cluster_primary_up") == Some(1.0))
            .then_some(())
        },
    )
    .await;
    assert_eq!(std::fs::read_to_string(&fenced).unwrap().trim(), "r-1");
    let promoted = std::fs::read_to_string(&rewired).unwrap().trim().to_owned();
    let new_master = match promoted.as_str() {
        "r-0" => &first,
        "r-2" => &replicas[1],
        other => panic!("{other} was promoted"),
    };
    let mut con = new_master.connection().await.unwrap();
    let kept: String = redis::cmd("GET")
        .arg("written")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(kept, "on r-1");
    let (): () = redis::cmd("SET")
        .arg("after")
        .arg(1)
        .query_async(&mut con)
        .await
        .unwrap();
    let (code, log) = agent.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("failed over"), "{log}");
}

/// `archiving = true`: the agent follows the master (its first full
/// synchronization stored as a snapshot) and archives every write; its
/// acknowledgements count for `WAIT`. `drkit status` says how far the
/// archive reaches, and a restore to a time between two batches of writes
/// gives a fresh server exactly the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_archives_a_masters_commands_for_a_restore_to_a_time() {
    let source = Redis::start().await.unwrap();
    let target = Redis::start().await.unwrap();
    let con = source.connection().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = main_config(dir.path(), source.port(), "archiving = true\n", "");
    assert!(drkit(&config, &["init"]).await.status.success());
    let agent = crate::common::agent::Agent::start_with(&config, dir.path(), "agent").await;
    let metric = |scrape: &prometheus_parse::Scrape, name: &str| {
        crate::common::agent::value(scrape, name, &[("component", "redis/main")])
    };
    dr_testkit::eventually(
        "the archiver to follow the master",
        std::time::Duration::from_secs(30),
        || async {
            let scrape = agent.scrape().await;
            (metric(&scrape, "drkit_redis_archiver_up") == Some(1.0)
                && metric(&scrape, "drkit_redis_archived_offset").is_some()
                && metric(&scrape, "drkit_redis_archive_lag_bytes").is_some())
            .then_some(())
        },
    )
    .await;
    // Acknowledged by the archiver only once archived.
    let write_archived = |prefix: &'static str| {
        let mut con = con.clone();
        async move {
            for i in 0..5 {
                let (): () = redis::cmd("SET")
                    .arg(format!("{prefix}{i}"))
                    .arg(i)
                    .query_async(&mut con)
                    .await
                    .unwrap();
            }
            acknowledged_by_the_archiver(&con).await;
        }
    };
    write_archived("a").await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let between = jiff::Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    write_archived("b").await;
    let scrape = agent.scrape().await;
    let lag = metric(&scrape, "drkit_redis_archive_lag_seconds");
    assert!(lag.is_some_and(|s| s < 5.0), "{lag:?}");
    // Its first full synchronization, and no other.
    assert_eq!(metric(&scrape, "drkit_redis_archiver_snapshots"), Some(1.0));
    let (code, log) = agent.terminate().await;
    assert_eq!(code, Some(0), "{log}");

    let status = drkit(&config, &["status"]).await;
    assert!(
        text(&status).contains("archive reaches")
            && text(&status).contains("bytes of the master's stream not yet archived"),
        "{}",
        text(&status)
    );
    let restored = drkit(
        &config,
        &[
            "restore",
            "redis/main",
            "--server",
            &format!("127.0.0.1:{}", target.port()),
            "--to",
            &between.to_string(),
            "--listen",
            "127.0.0.1:0",
            "--advertise",
            "127.0.0.1",
        ],
    )
    .await;
    assert!(restored.status.success(), "{}", text(&restored));
    let mut restored_con = target.connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut restored_con)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys, ["a0", "a1", "a2", "a3", "a4"]);
}

/// A `redis-cluster` component with `archiving = true`: the agent archives
/// each shard (`/metrics` labels each archiver with its shard), `drkit
/// status` says how far the archive of every shard reaches, and `drkit
/// restore --to <time> --cluster` gives a fresh Cluster of another shape
/// exactly the keys written by then, each shard replayed on a staging
/// redis-server drkit starts and removes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_archives_every_shard_of_a_cluster_for_a_restore_to_a_time() {
    let source = RedisCluster::start(3, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("repository.pass");
    std::fs::write(&pass, format!("{PASSWORD}\n")).unwrap();
    let config = dir.path().join("drkit.toml");
    std::fs::write(
        &config,
        format!(
            r#"[repository]
location = "{repo}"
password = {{ file = "{pass}" }}

[[component]]
id = "{CACHE}"
kind = "redis-cluster"
objectives = {{ rto = "5m", rpo = "1m" }}
retention = "last=3"

[component.redis]
seeds = ["127.0.0.1:{seed}"]
tls = {{ mode = "disable" }}
archiving = true

[agent]
listen = "127.0.0.1:0"
prune = {{ cron = "0 4 * * 0" }}
refresh = "1s"
"#,
            repo = dir.path().join("repo").display(),
            pass = pass.display(),
            seed = source.masters()[0].port(),
        ),
    )
    .unwrap();
    assert!(drkit(&config, &["init"]).await.status.success());
    let agent = crate::common::agent::Agent::start_with(&config, dir.path(), "agent").await;
    let shards = ["00000", "05461", "10922"].map(|first| format!("{CACHE}-slots-{first}"));
    dr_testkit::eventually(
        "an archiver to follow each master",
        std::time::Duration::from_secs(30),
        || async {
            let scrape = agent.scrape().await;
            shards
                .iter()
                .all(|shard| {
                    let labels = [("component", CACHE), ("shard", shard.as_str())];
                    crate::common::agent::value(&scrape, "drkit_redis_archiver_up", &labels)
                        == Some(1.0)
                        && crate::common::agent::value(
                            &scrape,
                            "drkit_redis_archived_offset",
                            &labels,
                        )
                        .is_some()
                })
                .then_some(())
        },
    )
    .await;
    let mut connections = Vec::new();
    for master in source.masters() {
        connections.push(master.connection().await.unwrap());
    }
    let connections = &connections;
    // Every key acknowledged by its shard's archiver (WAIT on the
    // connection that wrote it), so archived.
    let write_archived = |prefix: &'static str| async move {
        for i in 0..10 {
            let key = format!("{prefix}{i}");
            let slot = u32::from(dr_redis::slot_of(key.as_bytes()));
            let index = (0..3usize)
                .find(|i| slot < u32::from(dr_redis::SLOTS) * (*i as u32 + 1) / 3)
                .unwrap();
            let (): () = redis::cmd("SET")
                .arg(&key)
                .arg(i)
                .query_async(&mut connections[index].clone())
                .await
                .unwrap();
        }
        for con in connections {
            acknowledged_by_the_archiver(con).await;
        }
    };
    write_archived("a").await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let between = jiff::Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    write_archived("b").await;
    let (code, log) = agent.terminate().await;
    assert_eq!(code, Some(0), "{log}");

    let status = drkit(&config, &["status"]).await;
    assert!(
        text(&status).contains("archive reaches"),
        "{}",
        text(&status)
    );
    let target = RedisCluster::start(2, 0).await.unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let restored = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args([
            "restore",
            CACHE,
            "--cluster",
            &format!("127.0.0.1:{}", target.masters()[1].port()),
            "--to",
            &between.to_string(),
        ])
        .env_remove("DRKIT_CONFIG")
        .env_remove("DRKIT_KEY_CACHE")
        .env("TMPDIR", scratch.path())
        .output()
        .await
        .unwrap();
    assert!(restored.status.success(), "{}", text(&restored));
    let mut found = Vec::new();
    for master in target.masters() {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut master.connection().await.unwrap())
            .await
            .unwrap();
        found.extend(keys);
    }
    found.sort();
    let expected: Vec<String> = (0..10).map(|i| format!("a{i}")).collect();
    assert_eq!(found, expected, "{}", text(&restored));
    assert!(
        text(&restored).contains("restored 10 keys from 3 shards"),
        "{}",
        text(&restored)
    );
    // The staging server and the shards' RDB files are gone.
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Waits until the archiver (the one replica) has acknowledged `con`'s
/// writes: `WAIT` counts those of the connection it is sent on.
async fn acknowledged_by_the_archiver(con: &redis::aio::MultiplexedConnection) {
    dr_testkit::eventually("the archive", std::time::Duration::from_secs(30), || {
        let mut con = con.clone();
        async move {
            let acked: i64 = redis::cmd("WAIT")
                .arg(1)
                .arg(200)
                .query_async(&mut con)
                .await
                .unwrap();
            (acked >= 1).then_some(())
        }
    })
    .await;
}

/// A config with a repository and the server at `port` as `redis/main`
/// (its `[component.redis]` ending with `redis_extra`, then `tables`), and
/// the agent's table.
fn main_config(dir: &Path, port: u16, redis_extra: &str, tables: &str) -> std::path::PathBuf {
    let pass = dir.join("repository.pass");
    std::fs::write(&pass, format!("{PASSWORD}\n")).unwrap();
    let path = dir.join("drkit.toml");
    std::fs::write(
        &path,
        format!(
            r#"[repository]
location = "{repo}"
password = {{ file = "{pass}" }}

[[component]]
id = "redis/main"
kind = "redis"
objectives = {{ rto = "5m", rpo = "1m" }}
retention = "last=3"

[component.redis]
address = "127.0.0.1:{port}"
tls = {{ mode = "disable" }}
{redis_extra}
{tables}
[agent]
listen = "127.0.0.1:0"
prune = {{ cron = "0 4 * * 0" }}
refresh = "1s"
"#,
            repo = dir.join("repo").display(),
            pass = pass.display(),
        ),
    )
    .unwrap();
    path
}
