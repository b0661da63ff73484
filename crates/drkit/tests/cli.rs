//! `drkit` driven as an operator drives it, against a real PostgreSQL and a
//! repository on disk: init, WAL archived through `drkit wal push` as the
//! server's `archive_command`, a base backup, the snapshot listing, a
//! restore to the latest point that a server then starts on with every row,
//! the exit codes, bad input that changes nothing, and the same path with
//! the repository on the S3 server.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::{BIN, COMPONENT, PASSWORD, Setup, give_tree, owner_of, rows, text};
use dr_testkit::{Postgres, PostgresOptions, eventually};

/// The operator's whole path: a repository created, WAL archived by the
/// server through `drkit wal push`, a base backup, the listing, and a
/// restore to the latest point on which a server starts with every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_archive_backup_list_and_restore_to_the_latest_point() {
    let mut pg = Postgres::start().await.unwrap();
    let setup = Setup::new(pg.port(), pg.password(), r#"{ rto = "30m", rpo = "15m" }"#);
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    let again = setup.drkit(&["init"]).await;
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("already"), "{}", text(&again));

    // Before the server archives through drkit, the check says so.
    let check = setup.drkit(&["config", "check"]).await;
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(text(&check).contains("wal push"), "{}", text(&check));

    // The server's user runs archive_command: it gets the files, and caches
    // the repository's key beside them.
    let server_cache = setup.dir.path().join("server-cache");
    archive_through_drkit(
        &mut pg,
        &setup,
        &format!("XDG_CACHE_HOME={} ", server_cache.display()),
    )
    .await;
    let client = pg.connect("postgres").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE t (id int, pad text);
             INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 5000) g",
        )
        .await
        .unwrap();

    let backup = setup
        .drkit(&["backup", COMPONENT, "--label", "trigger=test"])
        .await;
    assert!(backup.status.success(), "{}", text(&backup));
    client
        .batch_execute("INSERT INTO t SELECT g, 'after' FROM generate_series(5001, 6000) g")
        .await
        .unwrap();
    switch_and_wait_archived(&client).await;
    let cached: Vec<_> = std::fs::read_dir(server_cache.join("drkit/keys"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1, "the server's user cached the key");

    let listed = setup
        .drkit(&["--json", "snapshots", "--component", COMPONENT])
        .await;
    assert!(listed.status.success(), "{}", text(&listed));
    let snapshots: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let snapshots = snapshots.as_array().unwrap();
    assert_eq!(snapshots.len(), 1, "{}", text(&listed));
    assert_eq!(snapshots[0]["component"], COMPONENT);
    assert_eq!(snapshots[0]["labels"]["trigger"], "test");

    // Status: the backup, the archived WAL beyond it, the RPO kept.
    let status = setup.drkit(&["--json", "status"]).await;
    assert!(status.status.success(), "{}", text(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let main = &status[0];
    assert_eq!(main["component"], COMPONENT);
    assert_eq!(main["last_backup"]["id"], snapshots[0]["id"]);
    assert_eq!(
        main["wal_reaches"]["from"],
        "the newest archived transaction"
    );
    assert_eq!(main["rpo"]["state"], "met", "{status}");

    let slot = Postgres::restore_slot(PostgresOptions::default()).unwrap();
    let target = slot.data_dir();
    let report_file = setup.dir.path().join("report.json");
    let mut args = vec![
        "restore".to_owned(),
        COMPONENT.to_owned(),
        "--to".to_owned(),
        "latest".to_owned(),
        "--target".to_owned(),
        target.display().to_string(),
        "--report".to_owned(),
        report_file.display().to_string(),
    ];
    if let Some((uid, gid)) = slot.owner() {
        args.extend(["--owner".to_owned(), format!("{uid}:{gid}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restore = setup.drkit(&args).await;
    assert!(restore.status.success(), "{}", text(&restore));
    assert!(
        text(&restore).contains("RTO achieved"),
        "{}",
        text(&restore)
    );
    let shown = setup
        .drkit(&["report", report_file.to_str().unwrap()])
        .await;
    assert!(shown.status.success(), "{}", text(&shown));

    // The same backup and WAL restored into a scratch server, checked, gone.
    let tested = setup
        .drkit(&[
            "restore-test",
            COMPONENT,
            "--check",
            "every row=SELECT count(*) = 6000 FROM t",
        ])
        .await;
    assert!(tested.status.success(), "{}", text(&tested));
    assert!(
        text(&tested).contains("ok   every row"),
        "{}",
        text(&tested)
    );

    let restored = slot.start().await.unwrap();
    let restored_client = restored.connect("postgres").await.unwrap();
    eventually(
        "the restored server to promote",
        Duration::from_secs(60),
        || async {
            let recovering: bool = restored_client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .ok()?
                .get(0);
            (!recovering).then_some(())
        },
    )
    .await;
    assert_eq!(rows(&restored_client).await, 6000);

    // Upkeep: the data reads back, the structure holds, retention keeps
    // the one backup, and prune finds nothing to remove.
    for args in [
        &["verify"][..],
        &["check"][..],
        &["forget", "--dry-run"][..],
        &["prune"][..],
    ] {
        let output = setup.drkit(args).await;
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
    let verified = setup.drkit(&["--json", "verify"]).await;
    let verified: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert!(verified["packs"].as_u64().unwrap() > 0, "{verified}");
    assert_eq!(verified["damaged"], serde_json::json!([]));
    let latest = setup.drkit(&["verify", "--component", COMPONENT]).await;
    assert!(latest.status.success(), "{}", text(&latest));
    assert!(text(&latest).contains("sound"), "{}", text(&latest));

    // An objective tighter than the data's age: status says MISSED, exit 3.
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        config.replace(r#"rpo = "15m""#, r#"rpo = "1s""#),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = setup.drkit(&["status"]).await;
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
    assert!(text(&status).contains("MISSED"), "{}", text(&status));
    std::fs::write(&setup.config, config).unwrap();

    // A damaged pack: verify fails and names it.
    let pack = std::fs::read_dir(setup.repo.join("data"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .next()
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&pack, bytes).unwrap();
    let output = setup.drkit(&["verify"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let latest = setup.drkit(&["verify", "--component", COMPONENT]).await;
    assert_eq!(latest.status.code(), Some(1), "{}", text(&latest));
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(text(&output).contains(name), "{}", text(&output));
}

/// Bad input gets a message naming what is wrong and the documented exit
/// code, and changes nothing in the repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_with_its_exit_code_and_changes_nothing() {
    let pg = Postgres::start().await.unwrap();
    let setup = Setup::new(pg.port(), pg.password(), r#"{ rto = "30m", rpo = "15m" }"#);
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    let objects = || {
        let mut all = Vec::new();
        let mut stack = vec![setup.repo.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    all.push(path);
                }
            }
        }
        all.sort();
        all
    };
    let before = objects();
    let original = std::fs::read_to_string(&setup.config).unwrap();

    // Config errors: exit 2, naming the file, the line and the field.
    for (wrong, field) in [
        (original.replace("retention = ", "retenton = "), "retenton"),
        (
            original.replace(r#"rpo = "15m""#, r#"rpo = "15 fortnights""#),
            "objectives.rpo",
        ),
        (
            format!(
                "{original}\n[[component.schedule]]\njob = \"backup\"\ncron = \"61 * * * *\"\n"
            ),
            "schedule",
        ),
    ] {
        std::fs::write(&setup.config, &wrong).unwrap();
        let output = setup.drkit(&["backup", COMPONENT]).await;
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        let said = text(&output);
        assert!(
            said.contains("drkit.toml:") && said.contains(field),
            "{said}"
        );
    }
    std::fs::write(&setup.config, &original).unwrap();

    // A missing password file: exit 2, naming it.
    let password_file = setup.dir.path().join("repository.pass");
    std::fs::rename(&password_file, setup.dir.path().join("moved")).unwrap();
    let output = setup.drkit(&["backup", COMPONENT]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("repository.pass"),
        "{}",
        text(&output)
    );

    // A wrong password: exit 1, saying so.
    std::fs::write(&password_file, "not-the-password\n").unwrap();
    let output = setup.drkit(&["snapshots"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("password"), "{}", text(&output));
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();

    // An unknown component and a bad target: exit 2.
    let output = setup.drkit(&["backup", "postgres/other"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("postgres/other"),
        "{}",
        text(&output)
    );
    let output = setup
        .drkit(&[
            "restore",
            COMPONENT,
            "--to",
            "yesterday",
            "--target",
            "/tmp/x",
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));

    // An unreachable server: exit 1, naming it; no snapshot appears.
    drop(pg);
    let output = setup.drkit(&["backup", COMPONENT]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("127.0.0.1"), "{}", text(&output));

    let listed = setup.drkit(&["--json", "snapshots"]).await;
    assert!(listed.status.success(), "{}", text(&listed));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&listed.stdout).unwrap(),
        serde_json::json!([])
    );
    let after: Vec<PathBuf> = objects()
        .into_iter()
        .filter(|p| !p.starts_with(setup.repo.join("locks")))
        .collect();
    let before: Vec<PathBuf> = before
        .into_iter()
        .filter(|p| !p.starts_with(setup.repo.join("locks")))
        .collect();
    assert_eq!(after, before, "the repository changed");
}

/// Interrupted mid-backup (Ctrl-C), a backup leaves no snapshot, and the
/// next one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backup_leaves_no_snapshot_and_the_next_one_succeeds() {
    let pg = Postgres::start().await.unwrap();
    let setup = Setup::new(pg.port(), pg.password(), r#"{ rto = "30m", rpo = "15m" }"#);
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    let client = pg.connect("postgres").await.unwrap();
    // Enough data, and little of it compressible, that the backup has many
    // packs to store after its first.
    client
        .batch_execute(
            "CREATE TABLE t (id int, pad text);
             INSERT INTO t SELECT g, (SELECT string_agg(md5((g * 16 + i)::text), '')
                                      FROM generate_series(1, 12) i)
             FROM generate_series(1, 500000) g",
        )
        .await
        .unwrap();
    let mut backup = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&setup.config)
        .args(["--quiet", "backup", COMPONENT])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted once it has stored its first pack, mid-stream (a fixed
    // wait would race a backup that gets faster).
    let data = setup.repo.join("data");
    eventually("the backup's first pack", Duration::from_secs(60), || {
        let data = data.clone();
        async move {
            let mut stack = vec![data];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        return Some(());
                    }
                }
            }
            None
        }
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(backup.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = backup.wait().await.unwrap();
    assert!(
        !status.success(),
        "the backup finished before it was interrupted"
    );

    let listed = setup.drkit(&["--json", "snapshots"]).await;
    assert!(listed.status.success(), "{}", text(&listed));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&listed.stdout).unwrap(),
        serde_json::json!([])
    );
    let again = setup.drkit(&["backup", COMPONENT]).await;
    assert!(again.status.success(), "{}", text(&again));
    // Backups with --forget keep what the retention ("last=3") keeps.
    for _ in 0..3 {
        let output = setup.drkit(&["backup", COMPONENT, "--forget"]).await;
        assert!(output.status.success(), "{}", text(&output));
        assert!(text(&output).contains("forgot"), "{}", text(&output));
    }
    let listed = setup.drkit(&["--json", "snapshots"]).await;
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    let check = setup.drkit(&["check"]).await;
    assert!(check.status.success(), "{}", text(&check));
}

/// The operator's path with the repository on the S3 server, credentials
/// from the standard chain (the environment): init, a backup, the listing,
/// verify, a restore to the snapshot on which a server starts with every
/// row, status, forget and prune.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_on_s3_backs_up_and_restores() {
    let mut pg = Postgres::start().await.unwrap();
    let s3 = dr_testkit::S3::start().await.unwrap();
    let setup = Setup::new(pg.port(), pg.password(), r#"{ rto = "30m", rpo = "15m" }"#);
    let env = setup.use_s3(&s3, "drkit");
    let drkit = |args: &'static [&'static str]| setup.drkit_with(args, &env);
    let init = drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    // The server archives through drkit, with the credentials in the
    // command (archive_command runs through the shell).
    let credentials = env.map(|(name, value)| format!("{name}={value} ")).concat();
    archive_through_drkit(&mut pg, &setup, &credentials).await;
    let client = pg.connect("postgres").await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE t (id int, pad text);
             INSERT INTO t SELECT g, repeat('s', 100) FROM generate_series(1, 3000) g",
        )
        .await
        .unwrap();
    let backup = drkit(&["backup", COMPONENT]).await;
    assert!(backup.status.success(), "{}", text(&backup));
    client
        .batch_execute("INSERT INTO t SELECT g, 'after' FROM generate_series(3001, 4000) g")
        .await
        .unwrap();
    switch_and_wait_archived(&client).await;
    let listed = drkit(&["--json", "snapshots", "--component", COMPONENT]).await;
    assert!(listed.status.success(), "{}", text(&listed));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    for args in [
        &["verify"][..],
        &["verify", "--component", COMPONENT][..],
        &["check"][..],
        &["status"][..],
    ] {
        let output = setup.drkit_with(args, &env).await;
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }

    let slot = Postgres::restore_slot(PostgresOptions::default()).unwrap();
    let target = slot.data_dir().display().to_string();
    // drkit starts the restored server and waits for its promotion (the
    // slot stops it when dropped).
    let port = slot.port().to_string();
    let socket_dir = slot.socket_dir().display().to_string();
    let pg_bin = slot.binaries().dir().display().to_string();
    let mut args = vec![
        "restore",
        COMPONENT,
        "--to",
        "latest",
        "--target",
        &target,
        "--start",
        "--port",
        &port,
        "--socket-dir",
        &socket_dir,
        "--pg-bin",
        &pg_bin,
    ];
    let owner = slot.owner().map(|(uid, gid)| format!("{uid}:{gid}"));
    if let Some(owner) = &owner {
        args.extend(["--owner", owner]);
    }
    let restore = setup.drkit_with(&args, &env).await;
    assert!(restore.status.success(), "{}", text(&restore));
    assert!(text(&restore).contains("promot"), "{}", text(&restore));
    let (restored_client, connection) = slot
        .config("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let recovering: bool = restored_client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!recovering, "the restore returned before the promotion");
    let restored_rows: i64 = restored_client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(restored_rows, 4000);

    for args in [&["forget"][..], &["prune"][..]] {
        let output = setup.drkit_with(args, &env).await;
        assert!(output.status.success(), "{args:?}: {}", text(&output));
    }
    // Without credentials the store refuses: a failure, not a panic.
    let denied = setup.drkit(&["snapshots"]).await;
    assert_eq!(denied.status.code(), Some(1), "{}", text(&denied));
}

/// Sets the server's `archive_command` to `drkit wal push` (after
/// `prefix`, such as variable assignments), with the config's files given
/// to the server's user, and restarts it.
async fn archive_through_drkit(pg: &mut Postgres, setup: &Setup, prefix: &str) {
    give_tree(owner_of(&pg.data_dir()), setup.dir.path());
    let archive_command = format!(
        "{prefix}{BIN} --config {} wal push %p",
        setup.config.display()
    );
    let control = pg.connect("postgres").await.unwrap();
    for setting in [
        "ALTER SYSTEM SET archive_mode = on".to_owned(),
        format!(
            "ALTER SYSTEM SET archive_command = '{}'",
            archive_command.replace('\'', "''")
        ),
    ] {
        control.batch_execute(&setting).await.unwrap();
    }
    drop(control);
    pg.restart().await.unwrap();
}

/// Switches to a new WAL segment and waits until the server has archived
/// the one it closed.
async fn switch_and_wait_archived(client: &tokio_postgres::Client) {
    let switched: String = client
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await
        .unwrap()
        .get(0);
    eventually(
        "the switched segment to be archived",
        Duration::from_secs(60),
        || async {
            let archived: Option<String> = client
                .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
                .await
                .ok()?
                .get(0);
            (archived.as_deref() >= Some(switched.as_str())).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_cluster_and_failover_promotes_the_replica() {
    let mut primary = Postgres::start().await.unwrap();
    let replica = primary.start_replica().await.unwrap();
    let setup = Setup::cluster(&primary, &replica, |dir| {
        format!(
            "loss_limit = \"1MB\"\nfence_command = [\"/bin/sh\", \"-c\", \
             \"echo fenced {{member}} at {{address}} >> {log}\"]\n\
             rewire_command = [\"/bin/sh\", \"-c\", \
             \"echo clients to {{member}} at {{address}} >> {log}\"]",
            log = dir.join("hooks.log").display()
        )
    });
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));

    let status = setup.drkit(&["status"]).await;
    let shown = text(&status);
    assert!(
        shown.contains("pg-1") && shown.contains("primary"),
        "{shown}"
    );
    assert!(
        shown.contains("pg-2") && shown.contains("replica"),
        "{shown}"
    );

    let plan = setup.drkit(&["failover", COMPONENT, "--dry-run"]).await;
    let shown = text(&plan);
    assert!(plan.status.success(), "{shown}");
    assert!(
        shown.contains("promote  pg-2") && shown.contains("dry run"),
        "{shown}"
    );
    // A named member that is not a replica is refused, and nothing changes.
    let refused = setup
        .drkit(&["failover", COMPONENT, "--dry-run", "--to", "pg-1"])
        .await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("pg-1 cannot be promoted"),
        "{}",
        text(&refused)
    );
    let in_recovery: bool = replica
        .connect("postgres")
        .await
        .unwrap()
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery);

    // The primary lost: fenced by the command, the replica promoted.
    primary.kill9();
    // This process never saw the primary: what would be lost is not known.
    let refused = setup.drkit(&["failover", COMPONENT]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("cannot be told"),
        "{}",
        text(&refused)
    );
    let done = setup.drkit(&["failover", COMPONENT, "--force"]).await;
    let shown = text(&done);
    assert!(done.status.success(), "{shown}");
    assert!(shown.contains("promote pg-2"), "{shown}");
    assert!(shown.contains("point clients at pg-2"), "{shown}");
    // The fence ran before the promotion, the rewire after it.
    let hooks = std::fs::read_to_string(setup.dir.path().join("hooks.log")).unwrap();
    assert_eq!(
        hooks.lines().collect::<Vec<_>>(),
        [
            format!("fenced pg-1 at 127.0.0.1:{}", primary.port()),
            format!("clients to pg-2 at 127.0.0.1:{}", replica.port()),
        ]
    );
    replica
        .connect("postgres")
        .await
        .unwrap()
        .batch_execute("CREATE TABLE after_failover (id int)")
        .await
        .unwrap();
    let status = setup.drkit(&["--json", "status"]).await;
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let members = &json[0]["cluster"]["members"];
    assert_eq!(members[1]["status"]["role"], "primary", "{json}");

    // The old primary, its server stopped, rejoins as a replica of pg-2.
    let data_dir = primary.data_dir();
    let rejoined = setup
        .drkit(&[
            "rejoin",
            COMPONENT,
            "pg-1",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ])
        .await;
    let shown = text(&rejoined);
    assert!(rejoined.status.success(), "{shown}");
    assert!(shown.contains("it follows pg-2 once started"), "{shown}");
    primary.restart().await.unwrap();
    eventually("pg-1 to follow pg-2", Duration::from_secs(30), || async {
        let status = setup.drkit(&["--json", "status"]).await;
        let json: serde_json::Value = serde_json::from_slice(&status.stdout).ok()?;
        let pg1 = &json[0]["cluster"]["members"][0]["status"];
        (pg1["role"] == "replica" && pg1["seen_by_primary"]["state"] == "streaming").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_moves_the_primary_and_fences_the_old_one() {
    let primary = Postgres::start().await.unwrap();
    let replica = primary.start_replica().await.unwrap();
    let setup = Setup::cluster(&primary, &replica, |_| "loss_limit = \"0\"".to_owned());
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    primary
        .connect("postgres")
        .await
        .unwrap()
        .batch_execute("CREATE TABLE before_the_switchover (id int); INSERT INTO before_the_switchover VALUES (1)")
        .await
        .unwrap();

    let moved = setup
        .drkit(&["failover", COMPONENT, "--switchover", "--to", "pg-2"])
        .await;
    let shown = text(&moved);
    assert!(moved.status.success(), "{shown}");
    assert!(
        shown.contains("switchover of postgres/main") && shown.contains("promote  pg-2"),
        "{shown}"
    );
    let new_primary = replica.connect("postgres").await.unwrap();
    let rows: i64 = new_primary
        .query_one("SELECT count(*) FROM before_the_switchover", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    new_primary
        .batch_execute("INSERT INTO before_the_switchover VALUES (2)")
        .await
        .unwrap();
    // The old primary takes no writes, and status says it awaits a rejoin.
    let refused = primary
        .connect("postgres")
        .await
        .unwrap()
        .batch_execute("INSERT INTO before_the_switchover VALUES (3)")
        .await
        .unwrap_err();
    assert!(format!("{refused:?}").contains("read-only"), "{refused:?}");
    let status = text(&setup.drkit(&["status"]).await);
    assert!(
        status.contains("pg-1 is a primary fenced read-only"),
        "{status}"
    );
}
