//! Logical backups against a real PostgreSQL: several databases dumped into
//! one snapshot while a writer runs, each table's recorded row count that of
//! the dump's own snapshot (a restored dump has exactly as many rows), the
//! globals stored, a second dump after a small change storing little, and
//! the errors of a missing database, a wrong password and missing programs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dr_core::{
    Backup, BackupRequest, ComponentId, ErrorKind, RecoveryTarget, Restore, RestoreRequest,
    SnapshotSource, SnapshotSourceExt,
};
use dr_postgres::{
    Databases, LibpqTls, LogicalBackup, LogicalBackupDetails, LogicalRestore, PgTools, RestoreInto,
    RestoreTest, RestoreTestKind, ScratchOptions, Selection, SmokeCheck, Tls, is_logical_backup,
    smoke_check, verify_logical_backup,
};
use dr_storage::{
    ChunkerParams, FsBackend, InitOptions, KdfParams, Repository, Secret, WriteBackend,
};
use dr_testkit::Postgres;

fn component() -> ComponentId {
    "postgres/apps".parse().unwrap()
}

/// A repository with chunks small enough that a dump of a few megabytes
/// makes many: what a change touches is then measurable.
async fn repository(dir: &tempfile::TempDir) -> Repository {
    let backend: Arc<dyn WriteBackend> = Arc::new(FsBackend::new(dir.path()).unwrap());
    let options = InitOptions::encrypted(Secret::password("pw"))
        .kdf(KdfParams::INSECURE_FAST)
        .chunker(ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        });
    Repository::init(backend, options).await.unwrap()
}

fn tools(pg: &Postgres) -> PgTools {
    PgTools::in_dir(pg.binaries().dir())
}

fn dump_of(pg: &Postgres) -> LogicalBackup {
    LogicalBackup::new(
        component(),
        pg.config("postgres"),
        Tls::none(),
        LibpqTls::disable(),
    )
    .tools(PgTools::in_dir(pg.binaries().dir()))
}

/// Creates the databases `app1` (a table the writer appends to) and `app2`
/// (a quoted schema and table), with rows.
async fn databases(pg: &Postgres) {
    let admin = pg.connect("postgres").await.unwrap();
    admin.batch_execute("CREATE DATABASE app1").await.unwrap();
    admin.batch_execute("CREATE DATABASE app2").await.unwrap();
    let app1 = pg.connect("app1").await.unwrap();
    app1.batch_execute(
        "CREATE TABLE events (id bigserial PRIMARY KEY, body text NOT NULL);
         INSERT INTO events (body) SELECT md5(g::text) || md5((g * 3)::text) FROM generate_series(1, 200000) g",
    )
    .await
    .unwrap();
    let app2 = pg.connect("app2").await.unwrap();
    app2.batch_execute(
        "CREATE SCHEMA \"Sales\";
         CREATE TABLE \"Sales\".\"Orders\" (id int PRIMARY KEY, total numeric(10,2) DEFAULT 0);
         INSERT INTO \"Sales\".\"Orders\" SELECT g, g * 1.5 FROM generate_series(1, 3000) g;
         CREATE INDEX orders_total ON \"Sales\".\"Orders\" (total)",
    )
    .await
    .unwrap();
}

/// A stored stream, whole.
async fn read(
    repo: &Repository,
    snapshot: &dr_core::SnapshotId,
    stream: &dr_core::StreamName,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut reader = repo.open_stream(snapshot, stream).await.unwrap();
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).await.unwrap();
    bytes
}

/// Bytes the repository's store holds.
async fn stored(repo: &Repository) -> u64 {
    repo.usage().await.unwrap().total_bytes()
}

/// Restores the stored dump `stream` of `snapshot` into the new database
/// `into` with `pg_restore`, as an operator would.
async fn pg_restore(
    pg: &Postgres,
    repo: &Repository,
    snapshot: &dr_core::SnapshotId,
    stream: &dr_core::StreamName,
    into: &str,
) {
    let bytes = read(repo, snapshot, stream).await;
    let admin = pg.connect("postgres").await.unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {into}"))
        .await
        .unwrap();
    let mut restore = pg.command("pg_restore");
    restore
        .arg(format!("--dbname={}", pg.connection_string(into)))
        .arg("--exit-on-error")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = restore.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        stdin.write_all(&bytes).await.unwrap();
    });
    let output = child.wait_with_output().await.unwrap();
    feed.await.unwrap();
    assert!(
        output.status.success(),
        "pg_restore: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn count(pg: &Postgres, database: &str, table: &str) -> i64 {
    let client = pg.connect(database).await.unwrap();
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_database_is_dumped_with_the_row_counts_of_its_own_snapshot() {
    let pg = Postgres::start().await.unwrap();
    databases(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;

    // A writer appends to app1 all through the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let client = pg.connect("app1").await.unwrap();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut batches = 0u64;
            while !stop.load(Ordering::Relaxed) {
                client
                    .batch_execute(
                        "INSERT INTO events (body) SELECT 'late' FROM generate_series(1, 200)",
                    )
                    .await
                    .unwrap();
                batches += 1;
            }
            batches
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let report = dump_of(&pg)
        .backup(BackupRequest::new(&repo).label("trigger", "test"))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(
        writer.await.unwrap() > 0,
        "the writer wrote during the backup"
    );

    let manifest = &report.manifest;
    assert!(is_logical_backup(manifest));
    assert_eq!(
        manifest.labels.get("trigger").map(String::as_str),
        Some("test")
    );
    let details = LogicalBackupDetails::of(manifest).unwrap();
    let names: Vec<&str> = details.databases.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["app1", "app2", "postgres"]);
    // Two at a time, by default.
    let steps: Vec<&str> = report
        .timeline
        .steps()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(steps.contains(&"dump app1, app2"), "{steps:?}");
    assert!(steps.contains(&"dump postgres"), "{steps:?}");
    assert!(details.server_version.starts_with(char::is_numeric));
    assert!(details.pg_dump_version.starts_with(char::is_numeric));
    assert!(manifest.recovery_point.position.is_some());

    // app1: the recorded count is the dump's; the table has grown since.
    let app1 = details.database("app1").unwrap();
    let events = app1.tables.iter().find(|t| t.name == "events").unwrap();
    assert!(events.rows >= 200_000, "{}", events.rows);
    pg_restore(&pg, &repo, &manifest.id, &app1.stream, "app1_restored").await;
    assert_eq!(
        count(&pg, "app1_restored", "events").await as u64,
        events.rows
    );
    assert!(count(&pg, "app1", "events").await as u64 > events.rows);

    // app2: quoted names, their definition fingerprinted.
    let app2 = details.database("app2").unwrap();
    let orders = app2.tables.iter().find(|t| t.name == "Orders").unwrap();
    assert_eq!((orders.schema.as_str(), orders.rows), ("Sales", 3000));
    assert_eq!(orders.qualified_name(), "\"Sales\".\"Orders\"");
    assert_eq!(orders.fingerprint.len(), 64);
    pg_restore(&pg, &repo, &manifest.id, &app2.stream, "app2_restored").await;
    assert_eq!(
        count(&pg, "app2_restored", "\"Sales\".\"Orders\"").await,
        3000
    );

    // The globals: the roles.
    let globals = read(&repo, &manifest.id, details.globals.as_ref().unwrap()).await;
    assert!(String::from_utf8_lossy(&globals).contains("CREATE ROLE"));

    // Verified without restoring: every recorded table is in its dump.
    let verified = verify_logical_backup(&repo, &manifest.id, &tools(&pg))
        .await
        .unwrap();
    assert!(verified.is_ok(), "{:?}", verified.findings);
    let tables: usize = details.databases.iter().map(|d| d.tables.len()).sum();
    assert_eq!(verified.checked as usize, tables + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_damaged_dump() {
    let pg = Postgres::start().await.unwrap();
    databases(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let report = dump_of(&pg)
        .databases(Databases::Named(vec!["app2".into()]))
        .globals(false)
        .backup(BackupRequest::new(&repo))
        .await
        .unwrap();
    // A byte flipped in the middle of every pack.
    let mut damaged = 0;
    for entry in walk(&dir.path().join("data")) {
        let mut bytes = std::fs::read(&entry).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&entry, bytes).unwrap();
        damaged += 1;
    }
    assert!(damaged > 0);
    let verified = verify_logical_backup(&repo, &report.manifest.id, &tools(&pg))
        .await
        .unwrap();
    assert!(!verified.is_ok());
    assert!(
        verified.findings[0]
            .object
            .starts_with("databases/app2.dump"),
        "{:?}",
        verified.findings
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_dump_after_a_small_change_stores_little() {
    let pg = Postgres::start().await.unwrap();
    databases(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let dump = dump_of(&pg).databases(Databases::Named(vec!["app1".into()]));

    let empty = stored(&repo).await;
    dump.backup(BackupRequest::new(&repo)).await.unwrap();
    let first = stored(&repo).await - empty;
    let app1 = pg.connect("app1").await.unwrap();
    // Rows like the others: they go to the table's end, as a day's appends
    // do (short rows would fill the pages' gaps everywhere).
    app1.batch_execute(
        "INSERT INTO events (body) SELECT md5(g::text) || md5((g * 5)::text) FROM generate_series(1, 500) g",
    )
        .await
        .unwrap();
    let report = dump.backup(BackupRequest::new(&repo)).await.unwrap();
    let second = stored(&repo).await - empty - first;
    assert!(
        second * 10 < first,
        "the second dump stored {second} bytes, the first {first}"
    );
    let details = LogicalBackupDetails::of(&report.manifest).unwrap();
    assert_eq!(details.databases.len(), 1);
    assert_eq!(details.databases[0].tables[0].rows, 200_500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_leaves_no_snapshot() {
    let pg = Postgres::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;

    let missing = dump_of(&pg)
        .databases(Databases::Named(vec!["nope".into()]))
        .backup(BackupRequest::new(&repo))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::InvalidInput, "{missing}");
    assert!(missing.to_string().contains("\"nope\""), "{missing}");

    let mut wrong = pg.config("postgres");
    wrong.password("not the password");
    let refused = LogicalBackup::new(component(), wrong, Tls::none(), LibpqTls::disable())
        .tools(PgTools::in_dir(pg.binaries().dir()))
        .backup(BackupRequest::new(&repo))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Auth, "{refused}");

    let no_tools = dump_of(&pg)
        .tools(PgTools::in_dir(dir.path().join("no-bin")))
        .backup(BackupRequest::new(&repo))
        .await
        .unwrap_err();
    assert_eq!(no_tools.kind(), ErrorKind::NotFound, "{no_tools}");
    assert!(
        no_tools.to_string().contains("postgresql-client"),
        "{no_tools}"
    );

    assert!(repo.snapshots(&component()).await.unwrap().is_empty());
}

/// A request for the latest backup in `repo`.
fn latest(repo: &Repository) -> RestoreRequest<'_> {
    RestoreRequest::new(repo, &RecoveryTarget::Latest, objectives())
}

fn objectives() -> dr_core::Objectives {
    dr_core::Objectives::new("30m".parse().unwrap(), "24h".parse().unwrap())
}

fn restore_of(pg: &Postgres, database: &str, into: RestoreInto) -> LogicalRestore {
    LogicalRestore::new(
        component(),
        pg.config("postgres"),
        Tls::none(),
        LibpqTls::disable(),
        database,
        into,
    )
    .tools(tools(pg))
}

/// A digest of a table's rows in order: equal digests, equal rows.
async fn digest(pg: &Postgres, database: &str, table: &str) -> String {
    let client = pg.connect(database).await.unwrap();
    client
        .query_one(
            &format!(
                "SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn exists(pg: &Postgres, database: &str) -> bool {
    let client = pg.connect("postgres").await.unwrap();
    client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_whole_one_table_and_over_a_damaged_database() {
    let pg = Postgres::start().await.unwrap();
    databases(&pg).await;
    let app2 = pg.connect("app2").await.unwrap();
    app2.batch_execute(
        "CREATE TABLE customers (id serial PRIMARY KEY, name text UNIQUE);
         INSERT INTO customers (name) SELECT 'c' || g FROM generate_series(1, 100) g",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    dump_of(&pg)
        .databases(Databases::Named(vec!["app1".into(), "app2".into()]))
        .backup(BackupRequest::new(&repo))
        .await
        .unwrap();
    let orders = "\"Sales\".\"Orders\"";
    let (orders_before, customers_before) = (
        digest(&pg, "app2", orders).await,
        digest(&pg, "app2", "customers").await,
    );

    // Whole, into a new database: every row, the smoke checks passed.
    let (report, smoke) = restore_of(&pg, "app2", RestoreInto::NewDatabase("app2_copy".into()))
        .check(SmokeCheck::new(
            "customers exist",
            "SELECT count(*) FROM customers",
        ))
        .restore_checked(latest(&repo))
        .await
        .unwrap();
    assert!(smoke.is_ok(), "{smoke:?}");
    assert_eq!(smoke.outcomes.len(), 3);
    assert!(report.data_loss.is_some());
    let pg_restore = report
        .timeline
        .steps()
        .iter()
        .find(|s| s.name == "pg_restore")
        .unwrap();
    assert!(!pg_restore.duration().is_zero(), "pg_restore is timed");
    assert_eq!(digest(&pg, "app2_copy", orders).await, orders_before);
    assert_eq!(
        digest(&pg, "app2_copy", "customers").await,
        customers_before
    );

    // In parallel, from a spooled copy of the dump, removed afterwards.
    let spool = tempfile::tempdir().unwrap();
    restore_of(
        &pg,
        "app2",
        RestoreInto::NewDatabase("app2_parallel".into()),
    )
    .parallel(2, spool.path())
    .restore(latest(&repo))
    .await
    .unwrap();
    assert_eq!(digest(&pg, "app2_parallel", orders).await, orders_before);
    assert_eq!(
        digest(&pg, "app2_parallel", "customers").await,
        customers_before
    );
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);

    // One table alone, with its index and its sequence.
    let table = Selection::Table {
        schema: "public".into(),
        name: "customers".into(),
    };
    restore_of(
        &pg,
        "app2",
        RestoreInto::NewDatabase("customers_only".into()),
    )
    .selection(table)
    .restore(latest(&repo))
    .await
    .unwrap();
    assert_eq!(
        digest(&pg, "customers_only", "customers").await,
        customers_before
    );
    let only = pg.connect("customers_only").await.unwrap();
    let tables: i64 = only
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 1);
    let unique: i64 = only
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'customers'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        unique, 2,
        "the primary key and the unique constraint's index"
    );
    // The sequence goes on from where it was.
    let next: i32 = only
        .query_one(
            "INSERT INTO customers (name) VALUES ('new') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 101);

    // Over a damaged database: rows deleted, an index dropped; restored.
    app2.batch_execute(
        "DELETE FROM customers WHERE id % 2 = 0; DROP INDEX \"Sales\".orders_total;
         UPDATE \"Sales\".\"Orders\" SET total = 0",
    )
    .await
    .unwrap();
    // First a copy of the damaged table beside it, under another name,
    // with its indexes and sequence renamed too.
    restore_of(&pg, "app2", RestoreInto::Over("app2".into()))
        .selection(Selection::Table {
            schema: "public".into(),
            name: "customers".into(),
        })
        .rename_table("customers_restored")
        .restore(latest(&repo))
        .await
        .unwrap();
    assert_eq!(
        digest(&pg, "app2", "customers_restored").await,
        customers_before
    );
    assert_ne!(digest(&pg, "app2", "customers").await, customers_before);
    let indexes: Vec<String> = app2
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'customers_restored' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        indexes,
        ["customers_restored_name_key", "customers_restored_pkey"]
    );
    let scratch: i64 = app2
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'drkit_scratch_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(scratch, 0, "the scratch database is dropped");
    drop(app2);
    restore_of(&pg, "app2", RestoreInto::Over("app2".into()))
        .restore(latest(&repo))
        .await
        .unwrap();
    assert_eq!(digest(&pg, "app2", orders).await, orders_before);
    assert_eq!(digest(&pg, "app2", "customers").await, customers_before);

    // A table not in the dump, a database that exists: said, nothing done.
    let missing = restore_of(&pg, "app2", RestoreInto::NewDatabase("nothing".into()))
        .selection(Selection::Table {
            schema: "public".into(),
            name: "nope".into(),
        })
        .restore(latest(&repo))
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("public.nope"), "{missing}");
    let exists_already = restore_of(&pg, "app2", RestoreInto::NewDatabase("app1".into()))
        .restore(latest(&repo))
        .await
        .unwrap_err();
    assert!(
        exists_already.to_string().contains("exists already"),
        "{exists_already}"
    );
    assert!(!exists(&pg, "nothing").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_checks_and_damaged_dumps_fail_the_restore() {
    let pg = Postgres::start().await.unwrap();
    databases(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    dump_of(&pg)
        .databases(Databases::Named(vec!["app2".into()]))
        .globals(false)
        .backup(BackupRequest::new(&repo))
        .await
        .unwrap();

    // A caller's check that does not hold fails the restore, saying which.
    let failed = restore_of(&pg, "app2", RestoreInto::NewDatabase("checked".into()))
        .check(SmokeCheck::new("users exist", "SELECT count(*) FROM users"))
        .restore(latest(&repo))
        .await
        .unwrap_err();
    assert!(failed.to_string().contains("users exist"), "{failed}");

    // The restore itself went through: checked against the record now, a
    // count that differs and a table that is gone fail, each named.
    let details =
        LogicalBackupDetails::of(&repo.snapshots(&component()).await.unwrap()[0]).unwrap();
    let tables = &details.database("app2").unwrap().tables;
    let config = pg.config("postgres");
    let sound = smoke_check(&config, &Tls::none(), "checked", tables, &[])
        .await
        .unwrap();
    assert!(sound.is_ok(), "{sound:?}");
    let checked = pg.connect("checked").await.unwrap();
    checked
        .batch_execute("DELETE FROM \"Sales\".\"Orders\" WHERE id > 2990")
        .await
        .unwrap();
    let fewer = smoke_check(&config, &Tls::none(), "checked", tables, &[])
        .await
        .unwrap();
    let failures: Vec<_> = fewer.failures().collect();
    assert_eq!(failures.len(), 1, "{fewer:?}");
    assert!(
        failures[0]
            .detail
            .contains("2990 rows; the backup recorded 3000"),
        "{fewer:?}"
    );

    // Restored over it, with a check of the caller's that holds.
    drop(checked);
    let (_, over) = restore_of(&pg, "app2", RestoreInto::Over("checked".into()))
        .check(SmokeCheck::new(
            "no order is negative",
            "SELECT bool_and(total >= 0) FROM \"Sales\".\"Orders\"",
        ))
        .restore_checked(latest(&repo))
        .await
        .unwrap();
    assert!(over.is_ok(), "{over:?}");
    let checked = pg.connect("checked").await.unwrap();
    checked
        .batch_execute("DROP TABLE \"Sales\".\"Orders\"")
        .await
        .unwrap();
    drop(checked);
    let gone = smoke_check(&config, &Tls::none(), "checked", tables, &[])
        .await
        .unwrap();
    assert!(
        gone.failures()
            .next()
            .unwrap()
            .detail
            .contains("not readable"),
        "{gone:?}"
    );
    // The table restored alone over the database it was dropped from.
    restore_of(&pg, "app2", RestoreInto::Over("checked".into()))
        .selection(Selection::Table {
            schema: "Sales".into(),
            name: "Orders".into(),
        })
        .restore(latest(&repo))
        .await
        .unwrap();

    // Damaged stored data: a new database is dropped again; over an
    // existing one, nothing is touched.
    for entry in walk(&dir.path().join("data")) {
        let mut bytes = std::fs::read(&entry).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&entry, bytes).unwrap();
    }
    let broken = restore_of(&pg, "app2", RestoreInto::NewDatabase("broken".into()))
        .restore(latest(&repo))
        .await
        .unwrap_err();
    assert_eq!(broken.kind(), ErrorKind::Corrupt, "{broken}");
    assert!(!exists(&pg, "broken").await);
    let before = digest(&pg, "checked", "\"Sales\".\"Orders\"").await;
    let over = restore_of(&pg, "app2", RestoreInto::Over("checked".into()))
        .restore(latest(&repo))
        .await
        .unwrap_err();
    assert_eq!(over.kind(), ErrorKind::Corrupt, "{over}");
    assert_eq!(digest(&pg, "checked", "\"Sales\".\"Orders\"").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_test_restores_every_database_into_a_scratch_server() {
    let pg = Postgres::start().await.unwrap();
    databases(&pg).await;
    let admin = pg.connect("postgres").await.unwrap();
    admin
        .batch_execute(
            "CREATE ROLE reporting LOGIN;
             ALTER DATABASE app2 OWNER TO reporting",
        )
        .await
        .unwrap();
    let app2 = pg.connect("app2").await.unwrap();
    app2.batch_execute("ALTER TABLE \"Sales\".\"Orders\" OWNER TO reporting")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(&dir).await;
    let taken = dump_of(&pg)
        .backup(BackupRequest::new(&repo))
        .await
        .unwrap()
        .manifest;

    let parent = tempfile::tempdir().unwrap();
    let mut scratch = ScratchOptions::new().parent(parent.path());
    if let Some((uid, gid)) = Postgres::restore_slot(Default::default()).unwrap().owner() {
        std::os::unix::fs::chown(parent.path(), Some(uid), Some(gid)).unwrap();
        scratch = scratch.run_as(uid, gid);
    }
    let report = RestoreTest::new(component(), RestoreTestKind::Logical, tools(&pg))
        .scratch(scratch)
        .check(
            SmokeCheck::new(
                "orders have totals",
                "SELECT bool_and(total > 0) FROM \"Sales\".\"Orders\"",
            )
            .database("app2"),
        )
        .run(latest(&repo))
        .await
        .unwrap();
    assert_eq!(report.snapshot, Some(taken.id));
    assert!(report.is_ok(), "{:?}", report.smoke);
    let names: Vec<&str> = report
        .smoke
        .outcomes
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    assert!(names.contains(&"app1: rows of public.events"), "{names:?}");
    assert!(names.contains(&"app2: orders have totals"), "{names:?}");
    assert!(report.recovery.data_loss.is_some());
    let steps: Vec<&str> = report
        .recovery
        .timeline
        .steps()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "start a scratch server",
            "restore app1",
            "restore app2",
            "restore postgres"
        ]
    );
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
}

/// A `pg_dump` older than the server is refused before anything is dumped,
/// naming both versions. (Only one PostgreSQL is installed here: the old
/// `pg_dump` is a script that answers `--version` as a 14 would.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_older_than_the_server_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let pg = Postgres::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for program in ["pg_dump", "pg_dumpall"] {
        let path = bin.join(program);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho '{program} (PostgreSQL) 14.13'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let repo = repository(&dir).await;
    let err = dump_of(&pg)
        .tools(PgTools::in_dir(&bin))
        .backup(BackupRequest::new(&repo))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("14.13") && text.contains("server's 15"),
        "{text}"
    );
    assert!(repo.snapshots(&component()).await.unwrap().is_empty());
}
