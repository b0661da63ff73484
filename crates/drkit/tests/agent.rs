//! `drkit agent` against a real PostgreSQL and a repository on disk: its
//! schedules fire (cron expressions with seconds), retention follows each
//! backup, `/metrics` is read as Prometheus reads it, the RPO gauge moves to
//! missed once the archiver and the backups can no longer reach the server,
//! a backup missed while the agent was down runs once at start (found from
//! the repository), and SIGTERM aborts a running backup without leaving a
//! snapshot, and a postgres-dump component dumped and restore-tested by it.

use std::time::Duration;

use crate::common::agent::{Agent, value};
use crate::common::{COMPONENT, Setup, text};
use dr_testkit::{Postgres, eventually};
use prometheus_parse::Scrape;

const AGENT_USER: &str = "drkit_agent";
const AGENT_PASSWORD: &str = "agent-password";

/// A role that may log in and replicate, which the config connects as.
async fn agent_role(pg: &Postgres) {
    let client = pg.connect("postgres").await.unwrap();
    client
        .batch_execute(&format!(
            "CREATE ROLE {AGENT_USER} LOGIN REPLICATION PASSWORD '{AGENT_PASSWORD}'"
        ))
        .await
        .unwrap();
}

/// A config for the agent: the component connects as [`AGENT_USER`], with
/// these schedule and `[agent]` lines.
fn agent_setup(pg: &Postgres, rpo: &str, schedules: &str, agent: &str) -> Setup {
    let setup = Setup::new(
        pg.port(),
        AGENT_PASSWORD,
        &format!(r#"{{ rto = "30m", rpo = "{rpo}" }}"#),
    );
    let config = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("user = \"postgres\"", &format!("user = \"{AGENT_USER}\""));
    std::fs::write(
        &setup.config,
        format!("{config}\n{schedules}\n[agent]\nlisten = \"127.0.0.1:0\"\n{agent}\n"),
    )
    .unwrap();
    setup
}

fn runs(scrape: &Scrape, job: &str, result: &str) -> f64 {
    let labels: Vec<(&str, &str)> = match job {
        "prune" => vec![("job", job), ("result", result)],
        _ => vec![("component", COMPONENT), ("job", job), ("result", result)],
    };
    value(scrape, "drkit_job_runs_total", &labels).unwrap_or(0.0)
}

fn rpo_state(scrape: &Scrape) -> Option<String> {
    ["met", "at_risk", "missed"]
        .into_iter()
        .find(|state| {
            value(
                scrape,
                "drkit_rpo_compliance",
                &[("component", COMPONENT), ("state", state)],
            ) == Some(1.0)
        })
        .map(str::to_owned)
}

async fn snapshot_count(setup: &Setup) -> usize {
    let listed = setup.drkit(&["--json", "snapshots"]).await;
    assert!(listed.status.success(), "{}", text(&listed));
    let snapshots: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    snapshots.as_array().unwrap().len()
}

/// Schedules every few seconds: backups with retention, a verify, a prune,
/// and the WAL archiver; all of it on /metrics; then the server refuses the
/// agent's role and the RPO gauge goes from met to missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_fire_and_metrics_follow_the_rpo_to_missed() {
    let pg = Postgres::start().await.unwrap();
    agent_role(&pg).await;
    let setup = agent_setup(
        &pg,
        "30s",
        r#"[[component.schedule]]
job = "backup"
cron = "*/3 * * * * *"

[[component.schedule]]
job = "verify"
cron = "*/5 * * * * *"
"#,
        r#"prune = { cron = "*/7 * * * * *" }
retry = "1s"
refresh = "1s"
shutdown_grace = "30s""#,
    );
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    let client = pg.connect("postgres").await.unwrap();
    client
        .batch_execute("CREATE TABLE t (id int, pad text); INSERT INTO t SELECT g, 'x' FROM generate_series(1, 1000) g")
        .await
        .unwrap();

    let started = jiff::Timestamp::now().as_second() as f64;
    let agent = Agent::start(&setup, "agent").await;
    let (status, body) = agent.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(agent.get("/nothing").await.0, 404);

    // Four backups, a verify and a prune, each on its schedule.
    let scrape = eventually(
        "four backups, a verify and a prune",
        Duration::from_secs(120),
        || async {
            let scrape = agent.scrape().await;
            (runs(&scrape, "backup", "success") >= 4.0
                && runs(&scrape, "verify", "success") >= 1.0
                && runs(&scrape, "prune", "success") >= 1.0)
                .then_some(scrape)
        },
    )
    .await;
    let labels = [("component", COMPONENT), ("job", "backup")];
    let last_success = value(&scrape, "drkit_job_last_success_timestamp_seconds", &labels).unwrap();
    assert!(last_success >= started, "{last_success} < {started}");
    assert!(
        value(
            &scrape,
            "drkit_backup_last_bytes",
            &[("component", COMPONENT)]
        )
        .unwrap()
            > 1e6
    );
    assert!(
        value(
            &scrape,
            "drkit_backup_last_duration_seconds",
            &[("component", COMPONENT)]
        )
        .unwrap()
            > 0.0
    );
    assert!(value(&scrape, "drkit_job_next_run_timestamp_seconds", &labels).unwrap() > started);
    assert!(
        value(
            &scrape,
            "drkit_repository_stored_bytes",
            &[("kind", "packs")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(value(&scrape, "drkit_up", &[]), Some(1.0));
    assert_eq!(
        value(
            &scrape,
            "drkit_rpo_objective_seconds",
            &[("component", COMPONENT)]
        ),
        Some(30.0)
    );
    assert_eq!(runs(&scrape, "backup", "failure"), 0.0, "{}", agent.log());
    // Retention ("last=3") follows every backup.
    let snapshots = snapshot_count(&setup).await;
    assert!(
        (1..=3).contains(&snapshots),
        "{snapshots} snapshots: {}",
        agent.log()
    );

    // The archiver streams; with it and the backups the RPO is met.
    client
        .batch_execute("INSERT INTO t SELECT g, 'y' FROM generate_series(1, 1000) g")
        .await
        .unwrap();
    eventually(
        "the archiver streaming and the RPO met",
        Duration::from_secs(60),
        || async {
            let scrape = agent.scrape().await;
            (value(
                &scrape,
                "drkit_wal_archiver_up",
                &[("component", COMPONENT)],
            ) == Some(1.0)
                && rpo_state(&scrape).as_deref() == Some("met"))
            .then_some(())
        },
    )
    .await;

    // The server refuses the agent's role: no archiving, no backups.
    client
        .batch_execute(&format!(
            "ALTER ROLE {AGENT_USER} NOLOGIN;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{AGENT_USER}'"
        ))
        .await
        .unwrap();
    let scrape = eventually("the RPO missed", Duration::from_secs(120), || async {
        let scrape = agent.scrape().await;
        (rpo_state(&scrape).as_deref() == Some("missed")).then_some(scrape)
    })
    .await;
    assert_eq!(
        value(
            &scrape,
            "drkit_wal_archiver_up",
            &[("component", COMPONENT)]
        ),
        Some(0.0)
    );
    let exposure = value(
        &scrape,
        "drkit_rpo_exposure_seconds",
        &[("component", COMPONENT)],
    )
    .unwrap();
    assert!(exposure > 30.0, "{exposure}");
    assert!(runs(&scrape, "backup", "failure") >= 1.0);
    assert!(value(&scrape, "drkit_job_last_failure_timestamp_seconds", &labels).is_some());
    assert!(
        agent.log().contains("the WAL archiver is not running"),
        "{}",
        agent.log()
    );

    let (code, log) = agent.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    let check = setup.drkit(&["check"]).await;
    assert!(check.status.success(), "{}", text(&check));
}

/// A daily backup with none in the repository runs once at start; SIGTERM
/// with a short grace aborts it and leaves no snapshot; the next agent runs
/// it to the end; the one after finds it and runs nothing until the
/// schedule's next time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_backup_runs_once_and_sigterm_aborts_a_running_one() {
    let pg = Postgres::start().await.unwrap();
    agent_role(&pg).await;
    let client = pg.connect("postgres").await.unwrap();
    // Enough data that the backup is still running when SIGTERM comes.
    client
        .batch_execute(
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS pad
             FROM generate_series(1, 1500000) g",
        )
        .await
        .unwrap();
    let schedules = r#"[[component.schedule]]
job = "backup"
cron = "0 3 * * *"
"#;
    let short = agent_setup(
        &pg,
        "1h",
        schedules,
        "prune = { cron = \"0 4 * * 0\" }\nshutdown_grace = \"50ms\"",
    );
    let init = short.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));

    // No backup yet: one runs at start; SIGTERM aborts it after the grace.
    let agent = Agent::start(&short, "aborted").await;
    eventually("the backup running", Duration::from_secs(60), || async {
        let scrape = agent.scrape().await;
        (value(
            &scrape,
            "drkit_job_running",
            &[("component", COMPONENT), ("job", "backup")],
        ) == Some(1.0))
        .then_some(())
    })
    .await;
    let (code, log) = agent.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("aborting the running jobs"), "{log}");
    assert_eq!(
        snapshot_count(&short).await,
        0,
        "an aborted backup is invisible"
    );
    let check = short.drkit(&["check"]).await;
    assert!(check.status.success(), "{}", text(&check));

    // The next agent makes up for it, once.
    let patient = std::fs::read_to_string(&short.config).unwrap().replace(
        "shutdown_grace = \"50ms\"",
        "shutdown_grace = \"5m\"\nrefresh = \"1s\"",
    );
    std::fs::write(&short.config, patient).unwrap();
    let agent = Agent::start(&short, "catch-up").await;
    let scrape = eventually("the missed backup", Duration::from_secs(120), || async {
        let scrape = agent.scrape().await;
        (runs(&scrape, "backup", "success") >= 1.0).then_some(scrape)
    })
    .await;
    assert_eq!(runs(&scrape, "backup", "failure"), 0.0, "{}", agent.log());
    let (code, log) = agent.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(snapshot_count(&short).await, 1);

    // A new agent finds that backup in the repository: nothing to make up.
    let agent = Agent::start(&short, "up-to-date").await;
    let scrape = eventually("the repository read", Duration::from_secs(30), || async {
        let scrape = agent.scrape().await;
        value(
            &scrape,
            "drkit_repository_snapshots",
            &[("component", COMPONENT)],
        )
        .is_some()
        .then_some(scrape)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let scrape_later = agent.scrape().await;
    for scrape in [&scrape, &scrape_later] {
        assert_eq!(runs(scrape, "backup", "success"), 0.0, "{}", agent.log());
        let running = value(
            scrape,
            "drkit_job_running",
            &[("component", COMPONENT), ("job", "backup")],
        );
        assert_ne!(running, Some(1.0), "{}", agent.log());
    }
    let next = value(
        &scrape_later,
        "drkit_job_next_run_timestamp_seconds",
        &[("component", COMPONENT), ("job", "backup")],
    )
    .unwrap();
    let next = jiff::Timestamp::from_second(next as i64).unwrap();
    assert_eq!(next.strftime("%H:%M:%S").to_string(), "03:00:00", "{next}");
    let (code, log) = agent.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(snapshot_count(&short).await, 1);
}

/// Without an `[agent]` table the agent refuses to start, saying what to add.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_its_table_is_a_config_error() {
    let setup = Setup::new(5432, "unused", r#"{ rto = "30m", rpo = "15m" }"#);
    let output = setup.drkit(&["agent"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("[agent]"), "{}", text(&output));
}

/// A `postgres-dump` component under the agent: the missing dump taken at
/// start, then restore tests on their schedule, passed, in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_component_is_dumped_and_restore_tested_by_the_agent() {
    let pg = Postgres::start().await.unwrap();
    let admin = pg.connect("postgres").await.unwrap();
    for statement in [
        "CREATE DATABASE app",
        "CREATE ROLE drkit_agent LOGIN SUPERUSER PASSWORD 'agent-password'",
    ] {
        admin.batch_execute(statement).await.unwrap();
    }
    let app = pg.connect("app").await.unwrap();
    app.batch_execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
        .await
        .unwrap();
    let setup = agent_setup(
        &pg,
        "24h",
        r#"[[component.schedule]]
job = "backup"
cron = "0 3 * * *"

[[component.schedule]]
job = "restore-test"
cron = "*/4 * * * * *"
"#,
        "prune = { cron = \"0 4 * * 0\" }\nrefresh = \"1s\"",
    );
    let dump = "postgres-dump/main";
    let config = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("id = \"postgres/main\"", &format!("id = \"{dump}\""))
        .replace("kind = \"postgres\"", "kind = \"postgres-dump\"")
        .replace(
            "wal_archiving = true",
            &format!(
                "databases = [\"app\"]\npg_bin = \"{}\"",
                pg.binaries().dir().display()
            ),
        );
    std::fs::write(&setup.config, config).unwrap();
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));

    let agent = Agent::start(&setup, "dump-agent").await;
    let labels = |job: &'static str| [("component", dump), ("job", job), ("result", "success")];
    let scrape = eventually(
        "a dump and a restore test",
        Duration::from_secs(120),
        || async {
            let scrape = agent.scrape().await;
            let done = |job| value(&scrape, "drkit_job_runs_total", &labels(job)).unwrap_or(0.0);
            (done("backup") >= 1.0 && done("restore-test") >= 1.0).then_some(scrape)
        },
    )
    .await;
    assert_eq!(
        value(&scrape, "drkit_restore_test_passed", &[("component", dump)]),
        Some(1.0),
        "{}",
        agent.log()
    );
    assert!(
        value(
            &scrape,
            "drkit_restore_test_rto_seconds",
            &[("component", dump)]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        value(&scrape, "drkit_job_runs_total", &labels("backup")),
        Some(1.0),
        "one dump at start, then none until 03:00"
    );
    let (code, log) = agent.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

/// A cluster whose `[component.failover]` asks for automatic failover: the
/// agent's monitor sees the primary, and once it is killed fences it with
/// the command and promotes the replica by itself; `/metrics` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_fails_a_lost_primary_over_by_itself() {
    let mut primary = Postgres::start().await.unwrap();
    let replica = primary.start_replica().await.unwrap();
    let setup = Setup::cluster(&primary, &replica, |dir| {
        format!(
            r#"loss_limit = "1MB"
fence_command = ["/bin/sh", "-c", "echo {{member}} > {fenced}"]
rewire_command = ["/bin/sh", "-c", "echo {{member}} > {rewired}"]
automatic = {{ interval = "200ms", timeout = "500ms", failures = 3 }}

[agent]
listen = "127.0.0.1:0"
prune = {{ cron = "0 4 * * 0" }}"#,
            fenced = dir.join("fenced").display(),
            rewired = dir.join("rewired").display(),
        )
    });
    let fenced = setup.dir.path().join("fenced");
    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    let agent = Agent::start(&setup, "agent").await;
    let up = |scrape: &Scrape| {
        value(
            scrape,
            "drkit_cluster_primary_up",
            &[("component", COMPONENT)],
        )
    };
    eventually(
        "the monitor to see the primary",
        Duration::from_secs(30),
        || async { (up(&agent.scrape().await) == Some(1.0)).then_some(()) },
    )
    .await;
    // The archiver streams from the primary and holds WAL on the replica.
    let archiving = |scrape: &Scrape| {
        let of = |name| value(scrape, name, &[("component", COMPONENT)]);
        of("drkit_wal_archiver_up") == Some(1.0) && of("drkit_wal_archive_lag_bytes") == Some(0.0)
    };
    eventually(
        "the replica to hold WAL for the archive",
        Duration::from_secs(30),
        || async {
            let scrape = agent.scrape().await;
            let held = value(
                &scrape,
                "drkit_wal_standby_slot_held",
                &[("component", COMPONENT), ("member", "pg-2")],
            );
            (held == Some(1.0) && archiving(&scrape)).then_some(())
        },
    )
    .await;

    primary.kill9();
    eventually(
        "the agent to fail over",
        Duration::from_secs(30),
        || async {
            let scrape = agent.scrape().await;
            let done = value(
                &scrape,
                "drkit_failovers_total",
                &[("component", COMPONENT)],
            );
            (done == Some(1.0) && up(&scrape) == Some(1.0)).then_some(())
        },
    )
    .await;
    assert_eq!(std::fs::read_to_string(&fenced).unwrap().trim(), "pg-1");
    let rewired = setup.dir.path().join("rewired");
    assert_eq!(std::fs::read_to_string(&rewired).unwrap().trim(), "pg-2");
    let promoted = replica.connect("postgres").await.unwrap();
    promoted
        .batch_execute("CREATE TABLE written_after_the_failover (id int); SELECT pg_switch_wal()")
        .await
        .unwrap();
    // The archiver went on with the new primary, through the slot it kept there.
    eventually(
        "the archiver to stream from the new primary",
        Duration::from_secs(30),
        || async {
            let streaming: i64 = promoted
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication r JOIN pg_replication_slots s
                        ON s.active_pid = r.pid
                      WHERE s.slot_name = 'drkit_wal' AND r.state = 'streaming'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (streaming == 1 && archiving(&agent.scrape().await)).then_some(())
        },
    )
    .await;
    let (status, log) = agent.terminate().await;
    assert_eq!(status, Some(0), "{log}");
    assert!(log.contains("failed over"), "{log}");
}
