//! A `postgres-dump` component driven through `drkit` against a real
//! PostgreSQL: the config, a logical backup, its verification and status,
//! restores whole, of one table and over a damaged database, a restore test
//! into a scratch server, and the flags that do not apply to a dump.

use crate::common::{Setup, text};
use dr_testkit::Postgres;

const DUMP: &str = "postgres-dump/main";

/// A config whose component dumps the database `app` of `pg`, with the
/// server's own programs.
fn dump_setup(pg: &Postgres) -> Setup {
    let setup = Setup::new(pg.port(), pg.password(), r#"{ rto = "30m", rpo = "24h" }"#);
    let config = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("id = \"postgres/main\"", &format!("id = \"{DUMP}\""))
        .replace("kind = \"postgres\"", "kind = \"postgres-dump\"")
        .replace(
            "wal_archiving = true",
            &format!(
                "databases = [\"app\"]\npg_bin = \"{}\"",
                pg.binaries().dir().display()
            ),
        );
    std::fs::write(&setup.config, config).unwrap();
    setup
}

async fn digest(pg: &Postgres, database: &str, table: &str) -> String {
    let client = pg.connect(database).await.unwrap();
    client
        .query_one(
            &format!("SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_component_backs_up_verifies_restores_and_tests_restores() {
    let pg = Postgres::start().await.unwrap();
    let admin = pg.connect("postgres").await.unwrap();
    admin.batch_execute("CREATE DATABASE app").await.unwrap();
    let app = pg.connect("app").await.unwrap();
    app.batch_execute(
        "CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE NOT NULL);
         CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users, total int);
         INSERT INTO users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 500) g;
         INSERT INTO orders SELECT g, 1 + g % 500, g FROM generate_series(1, 2000) g",
    )
    .await
    .unwrap();
    let setup = dump_setup(&pg);

    let init = setup.drkit(&["init"]).await;
    assert!(init.status.success(), "{}", text(&init));
    let check = setup.drkit(&["config", "check"]).await;
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("can dump it"), "{}", text(&check));
    assert!(text(&check).contains("pg_dump of app"), "{}", text(&check));

    let backup = setup.drkit(&["backup", DUMP]).await;
    assert!(backup.status.success(), "{}", text(&backup));
    let delta = setup.drkit(&["backup", DUMP, "--delta"]).await;
    assert_eq!(delta.status.code(), Some(2), "{}", text(&delta));
    let verify = setup.drkit(&["verify", "--component", DUMP]).await;
    assert!(verify.status.success(), "{}", text(&verify));
    let status = setup.drkit(&["--json", "status"]).await;
    assert!(status.status.success(), "{}", text(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["rpo"]["state"], "met", "{status}");

    // Whole, into a new database, with a check of ours.
    let (users, orders) = (
        digest(&pg, "app", "users").await,
        digest(&pg, "app", "orders").await,
    );
    let restore = setup
        .drkit(&[
            "restore",
            DUMP,
            "--to",
            "latest",
            "--into",
            "app_copy",
            "--jobs",
            "2",
            "--check",
            "users=SELECT count(*) FROM users",
        ])
        .await;
    assert!(restore.status.success(), "{}", text(&restore));
    assert!(text(&restore).contains("ok   users"), "{}", text(&restore));
    assert_eq!(digest(&pg, "app_copy", "users").await, users);
    assert_eq!(digest(&pg, "app_copy", "orders").await, orders);

    // One table, over the database where a bad deploy damaged it: first a
    // copy beside it to compare, then the table itself.
    app.batch_execute("UPDATE orders SET total = 0 WHERE id % 3 = 0")
        .await
        .unwrap();
    let copy = setup
        .drkit(&[
            "restore",
            DUMP,
            "--table",
            "public.orders",
            "--rename",
            "orders_before_deploy",
            "--over",
            "app",
        ])
        .await;
    assert!(copy.status.success(), "{}", text(&copy));
    assert_eq!(digest(&pg, "app", "orders_before_deploy").await, orders);
    assert_ne!(digest(&pg, "app", "orders").await, orders);
    let table = setup
        .drkit(&["restore", DUMP, "--table", "orders", "--over", "app"])
        .await;
    assert!(table.status.success(), "{}", text(&table));
    assert_eq!(digest(&pg, "app", "orders").await, orders);
    assert_eq!(digest(&pg, "app", "users").await, users);

    // A check that fails is exit 1, naming it.
    let failing = setup
        .drkit(&[
            "restore",
            DUMP,
            "--into",
            "app_checked",
            "--check",
            "admins=SELECT count(*) FROM users WHERE email LIKE 'admin%'",
        ])
        .await;
    assert_eq!(failing.status.code(), Some(1), "{}", text(&failing));
    assert!(text(&failing).contains("FAIL admins"), "{}", text(&failing));

    // What a dump cannot do is a usage error.
    let lsn = setup
        .drkit(&["restore", DUMP, "--to", "lsn:0/3000000", "--into", "x"])
        .await;
    assert_eq!(lsn.status.code(), Some(2), "{}", text(&lsn));
    assert!(text(&lsn).contains("as it was taken"), "{}", text(&lsn));

    // The restore test: a scratch server, the checks, and it is gone.
    let tested = setup
        .drkit(&[
            "restore-test",
            DUMP,
            "--check",
            "orders=SELECT count(*) = 2000 FROM orders",
        ])
        .await;
    assert!(tested.status.success(), "{}", text(&tested));
    assert!(
        text(&tested).contains("ok   app: orders"),
        "{}",
        text(&tested)
    );
    assert!(
        text(&tested).contains("restored snapshot"),
        "{}",
        text(&tested)
    );
}

#[tokio::test]
async fn dump_settings_are_checked_by_field() {
    let pg_port = 5432;
    let setup = Setup::new(pg_port, "pg", r#"{ rto = "30m", rpo = "24h" }"#);
    let original = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("id = \"postgres/main\"", &format!("id = \"{DUMP}\""))
        .replace("kind = \"postgres\"", "kind = \"postgres-dump\"");
    for (wrong, field) in [
        (
            original.replace("wal_archiving = true", "databases = \"some\""),
            "databases",
        ),
        (
            original.replace("wal_archiving = true", "databases = []"),
            "databases",
        ),
        (original.clone(), "wal_archiving"),
        (
            original.replace(
                "wal_archiving = true",
                "databases = \"all\"\npg_bin = \"bin\"",
            ),
            "pg_bin",
        ),
    ] {
        std::fs::write(&setup.config, &wrong).unwrap();
        let output = setup.drkit(&["config", "check"]).await;
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(text(&output).contains(field), "{field}: {}", text(&output));
    }
}
