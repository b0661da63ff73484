//! Point-in-time recovery against real PostgreSQL: a base backup and WAL
//! streamed into a repository while a workload writes, then restores to
//! random moments of that workload, to the latest point after kill -9, and
//! across a timeline switch, and to a named restore point; missing or damaged
//! WAL, and targets the archived WAL does not reach, fail early, leaving the
//! target directory untouched.

use std::sync::Arc;
use std::time::Duration;

use crate::common::flushed;
use dr_core::{
    ArchiveSource, Backup, BackupBase, BackupExt, BackupRequest, ComponentId, ErrorKind,
    JournalSource, Lsn, Objectives, Progress, RecoveryTarget, Restore, RestoreRequest, Rpo, Verify,
};
use dr_postgres::{
    ArchiverHandle, ArchiverOptions, BaseBackup, BaseBackupDetails, BaseBackupVerifier,
    DEFAULT_SEGMENT_SIZE, PgCtl, PitrRestore, Tls, WalArchiver, WalRecordEvent, WalSegment,
    verify_base_backup,
};
use dr_postgres::{PgTools, RestoreTest, RestoreTestKind, ScratchOptions, SmokeCheck};
use dr_storage::{
    FsBackend, InitOptions, KdfParams, ReadBackendExt, Repository, RepositoryJournals, Secret,
    WriteBackend,
};
use dr_testkit::{Postgres, PostgresOptions, RestoreSlot};
use drkit_examples::kept_at;
use jiff::Timestamp;

fn component() -> ComponentId {
    "postgres/main".parse().unwrap()
}

fn options() -> PostgresOptions {
    PostgresOptions::default().setting("track_commit_timestamp", "on")
}

fn objectives() -> Objectives {
    Objectives::new("30m".parse().unwrap(), "15m".parse().unwrap())
}

struct Setup {
    pg: Postgres,
    repo: Arc<Repository>,
    /// The repository's segment journals: a directory keeps them.
    journals: Arc<RepositoryJournals>,
    backend: Arc<dyn WriteBackend>,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// The journals, as listings, fetches and restores take them.
    fn journals(&self) -> &dyn JournalSource {
        self.journals.as_ref()
    }
}

async fn setup(pg_options: PostgresOptions) -> Setup {
    let pg = Postgres::start_with(pg_options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn WriteBackend> = Arc::new(FsBackend::new(dir.path()).unwrap());
    let options = InitOptions::encrypted(Secret::password("pw")).kdf(KdfParams::INSECURE_FAST);
    let repo = Arc::new(Repository::init(backend.clone(), options).await.unwrap());
    let client = pg.connect("postgres").await.unwrap();
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
        .await
        .unwrap();
    let journals = Arc::new(repo.segment_journals().expect("a directory keeps journals"));
    Setup {
        pg,
        repo,
        journals,
        backend,
        _dir: dir,
    }
}

fn archiver(setup: &Setup, options: ArchiverOptions) -> ArchiverHandle {
    WalArchiver::new(
        setup.pg.config("postgres"),
        Tls::none(),
        setup.repo.clone(),
        component(),
        options,
    )
    .journals(setup.journals.clone())
    .spawn()
}

/// Waits until the archiver holds the server's WAL as of now, then shuts
/// it down.
async fn archive_everything(setup: &Setup, archiver: ArchiverHandle) {
    flushed(
        &archiver,
        current_lsn(&setup.pg).await,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    archiver.shutdown().await.unwrap();
}

/// Inserts rows `from..to` one transaction each, a little apart.
async fn write_rows(pg: &Postgres, from: i32, to: i32) {
    let client = pg.connect("postgres").await.unwrap();
    for id in from..to {
        client
            .execute("INSERT INTO t VALUES ($1, repeat('x', 200))", &[&id])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// Each row's commit time, as PostgreSQL recorded it.
async fn commit_times(pg: &Postgres) -> Vec<(i32, Timestamp)> {
    let client = pg.connect("postgres").await.unwrap();
    client
        .query(
            "SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 FROM t ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let secs: f64 = r.get(1);
            (
                r.get(0),
                Timestamp::from_microsecond((secs * 1e6).round() as i64).unwrap(),
            )
        })
        .collect()
}

/// The moment halfway between two commits.
fn halfway(before: Timestamp, after: Timestamp) -> Timestamp {
    before
        .checked_add(jiff::SignedDuration::from_nanos(
            after.duration_since(before).as_nanos() as i64 / 2,
        ))
        .unwrap()
}

async fn current_lsn(pg: &Postgres) -> Lsn {
    let client = pg.connect("postgres").await.unwrap();
    let text: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    text.parse().unwrap()
}

/// A restored server: a dr-testkit slot (which stops the server and removes
/// the directory when the test ends), started by dr-postgres's [`PgCtl`].
struct Restored {
    slot: RestoreSlot,
}

impl Restored {
    fn new() -> Self {
        Self {
            slot: Postgres::restore_slot(options()).unwrap(),
        }
    }

    fn pg_ctl(&self) -> PgCtl {
        PgCtl::new(
            self.slot.binaries().dir(),
            self.slot.port(),
            self.slot.socket_dir(),
            self.slot.config("postgres"),
        )
        .listen_addresses("127.0.0.1")
    }

    fn restore(&self) -> PitrRestore {
        let restore = PitrRestore::new(component(), self.slot.data_dir());
        match self.slot.owner() {
            Some((uid, gid)) => restore.owner(uid, gid),
            None => restore,
        }
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = self
            .slot
            .config("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    async fn rows(&self) -> Vec<i32> {
        self.client()
            .await
            .query("SELECT id FROM t ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

/// Restores to `target` into a fresh kit directory, starts it with
/// [`PgCtl`], and returns it.
async fn restore(
    setup: &Setup,
    target: RecoveryTarget,
    incident_at: Option<Timestamp>,
) -> (Restored, dr_core::RecoveryReport) {
    let restored = Restored::new();
    let restore = restored.restore().start_with(restored.pg_ctl());
    let extracted = std::sync::Mutex::new(None);
    let progress = |p: &Progress| *extracted.lock().unwrap() = Some(p.clone());
    let mut request = RestoreRequest::new(setup.repo.as_ref(), &target, objectives())
        .archive(setup.repo.as_ref())
        .journals(setup.journals())
        .progress(&progress);
    request.incident_at = incident_at;
    let restoring = restore.restore(request);
    let report = tokio::time::timeout(Duration::from_secs(120), restoring)
        .await
        .expect("the restore to finish within 2 minutes")
        .unwrap();
    let last = extracted
        .into_inner()
        .unwrap()
        .expect("progress was reported");
    assert_eq!(last.step, "extract base backup");
    assert!(last.bytes_done > 0, "{last:?}");
    // Recovery is over: its staged WAL is gone.
    assert!(!restore.staging_dir().exists());
    (restored, report)
}

/// Each row with the transaction that inserted it.
async fn row_xids(pg: &Postgres) -> Vec<(i32, u32)> {
    let client = pg.connect("postgres").await.unwrap();
    client
        .query("SELECT id, xmin::text FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get::<_, String>(1).parse().unwrap()))
        .collect()
}

/// Every commit and abort in the archived WAL from the segment holding
/// `from` on, in WAL order, as far as the archive's WAL runs without a gap
/// (the drill's own reading of it).
async fn transaction_ends(setup: &Setup, from: Lsn) -> Vec<WalRecordEvent> {
    drkit_examples::transaction_ends(
        setup.repo.as_ref(),
        Some(setup.journals()),
        &component(),
        from,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_to_random_moments_of_a_workload_and_to_the_latest_after_kill_9() {
    let mut setup = setup(options()).await;
    let archiver = archiver(
        &setup,
        ArchiverOptions::new()
            .slot("drkit_pitr")
            .piece_interval(Some(Duration::from_millis(200)))
            .coverage_interval(Some(Duration::from_millis(200))),
    );
    write_rows(&setup.pg, 0, 20).await;

    // The base backup runs while the workload writes.
    let writer = {
        let config = setup.pg.config("postgres");
        tokio::spawn(async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            for id in 20..60 {
                client
                    .execute("INSERT INTO t VALUES ($1, repeat('y', 200))", &[&id])
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };
    let backup = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none());
    let reported = std::sync::Mutex::new(Vec::new());
    let progress = |p: &Progress| reported.lock().unwrap().push(p.clone());
    let report = backup
        .backup(BackupRequest::new(setup.repo.as_ref()).progress(&progress))
        .await
        .unwrap();
    writer.await.unwrap();
    // Progress ends at every byte of the archives, against the server's estimate.
    let reported = reported.into_inner().unwrap();
    let last = reported.last().expect("progress was reported");
    assert_eq!(last.step, "stream archives");
    let streamed: u64 = report
        .manifest
        .streams
        .iter()
        .filter(|s| s.name.as_str().ends_with(".tar"))
        .map(|s| s.size)
        .sum();
    assert_eq!(last.bytes_done, streamed);
    assert!(last.bytes_total.is_some_and(|t| t > 0), "{last:?}");
    assert!(
        reported
            .windows(2)
            .all(|w| w[0].bytes_done <= w[1].bytes_done)
    );
    write_rows(&setup.pg, 60, 120).await;
    // Checked without restoring it, through dr-core's Verify.
    let verifier = BaseBackupVerifier::new(component());
    let check = verifier
        .verify(setup.repo.as_ref(), &report.manifest.id)
        .await
        .unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert!(check.checked > 100, "{check:?}");
    // Timed: the manifest read, then each archive checked.
    let steps: Vec<&str> = check
        .timeline
        .steps()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        steps.first(),
        Some(&"read the backup manifest"),
        "{steps:?}"
    );
    assert!(steps.contains(&"check base.tar"), "{steps:?}");
    let err = BaseBackupVerifier::new("postgres/other".parse().unwrap())
        .verify(setup.repo.as_ref(), &report.manifest.id)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    flushed(
        &archiver,
        current_lsn(&setup.pg).await,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let times = commit_times(&setup.pg).await;
    assert_eq!(times.len(), 120);
    let rows = row_xids(&setup.pg).await;
    // Quiet for a while: nothing is written, so nothing of it can be lost.
    let quiet = Duration::from_secs(2);
    tokio::time::sleep(quiet).await;
    // The disaster: the primary dies and its data directory is lost.
    let incident = Timestamp::now();
    setup.pg.kill9();
    archiver.shutdown().await.ok();

    // Three moments after the backup finished, each between two commits.
    let backup_done = report.manifest.recovery_point.at;
    let start: Lsn = BaseBackupDetails::of(&report.manifest).unwrap().start_lsn;
    let ends = transaction_ends(&setup, start).await;
    // What monitoring reads as the newest restorable transaction is the
    // last one the archive holds.
    let newest = dr_postgres::newest_archived_transaction(
        setup.repo.as_ref(),
        Some(setup.journals()),
        &component(),
        DEFAULT_SEGMENT_SIZE,
    )
    .await
    .unwrap();
    assert_eq!(newest.as_ref(), ends.last());
    let candidates: Vec<usize> = (1..times.len())
        .filter(|&i| times[i - 1].1 > backup_done)
        .collect();
    let seed = Timestamp::now().as_nanosecond() as usize;
    for k in 0..3 {
        let i = candidates[(seed / (k + 1) + k * 7) % candidates.len()];
        let target = halfway(times[i - 1].1, times[i].1);
        let (kit, report) = restore(&setup, RecoveryTarget::Time(target), None).await;
        let expected = kept_at(target, &ends, &rows);
        assert_eq!(kit.rows().await, expected, "restored to {target}");
        // Every commit up to the target is there, however long before it
        // the last one was.
        assert_eq!(
            report.achieved_rpo(),
            Some(Rpo::new(Duration::ZERO)),
            "{report}"
        );
    }

    let (kit, report) = restore(&setup, RecoveryTarget::Latest, Some(incident)).await;
    assert_eq!(kit.rows().await, (0..120).collect::<Vec<_>>());
    assert!(report.objectives_met(), "{report}");
    // Measured from when the archiver last saw it held everything, not from
    // the last commit: the quiet time before the incident is not counted lost.
    let lost = report.achieved_rpo().unwrap().as_duration();
    assert!(lost < quiet - Duration::from_millis(500), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_archiving_loses_no_acknowledged_commit() {
    let mut setup = setup(options()).await;
    let archiver = archiver(
        &setup,
        ArchiverOptions::new()
            .slot("drkit_sync")
            .application_name("drkit_sync")
            .synchronous(true)
            .coverage_interval(Some(Duration::from_millis(200))),
    );
    // From here on a commit returns only once the archive has its WAL.
    let admin = setup.pg.connect("postgres").await.unwrap();
    for statement in [
        "ALTER SYSTEM SET synchronous_standby_names = 'drkit_sync'",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(statement).await.unwrap();
    }
    let mut synced = false;
    for _ in 0..200 {
        let state: Option<String> = admin
            .query_opt(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'drkit_sync'",
                &[],
            )
            .await
            .unwrap()
            .map(|r| r.get(0));
        if state.as_deref() == Some("sync") {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(synced, "the archiver never became the synchronous standby");
    let backup = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none());
    backup.backup_to(setup.repo.as_ref()).await.unwrap();
    let client = setup.pg.connect("postgres").await.unwrap();
    let mut acknowledged = Vec::new();
    for id in 0..40 {
        client
            .execute("INSERT INTO t VALUES ($1, 'sync')", &[&id])
            .await
            .unwrap();
        acknowledged.push(id);
    }
    // The archiver records that it covers everything, as a synchronous
    // archive the server waits for on every commit (it reads the setting
    // changed above again while it streams).
    let mut coverage = None;
    for _ in 0..100 {
        coverage = setup.repo.coverage(&component()).await.unwrap();
        if coverage.as_ref().is_some_and(|c| c.synchronous) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        coverage.as_ref().is_some_and(|c| c.synchronous),
        "{coverage:?}"
    );
    // No waiting for the archive: what was acknowledged must already be in it.
    let incident = Timestamp::now();
    setup.pg.kill9();
    drop(client);
    archiver.shutdown().await.ok();
    let (kit, report) = restore(&setup, RecoveryTarget::Latest, Some(incident)).await;
    assert_eq!(kit.rows().await, acknowledged);
    // Nothing acknowledged was lost, and the report says so.
    assert_eq!(
        report.achieved_rpo(),
        Some(Rpo::new(Duration::ZERO)),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_damaged_wal_fails_before_the_target_is_touched() {
    let setup = setup(options()).await;
    let archiver = archiver(&setup, ArchiverOptions::new().slot("drkit_missing"));
    let backup = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none());
    backup.backup_to(setup.repo.as_ref()).await.unwrap();
    let client = setup.pg.connect("postgres").await.unwrap();
    for round in 0..3 {
        client
            .batch_execute(&format!(
                "INSERT INTO t SELECT g, 'z' FROM generate_series({}, {}) g; SELECT pg_switch_wal()",
                round * 100,
                round * 100 + 99
            ))
            .await
            .unwrap();
    }
    archive_everything(&setup, archiver).await;

    // Damage one complete segment in the store.
    let segments = setup.repo.segments(&component(), "").await.unwrap();
    let complete: Vec<_> = segments.iter().filter(|s| s.as_str().len() == 24).collect();
    assert!(complete.len() >= 3, "{segments:?}");
    let victim = complete[1].clone();
    let key = format!("archive/{}/{}", component(), victim);
    let stored = setup.backend.get_all(&key).await.unwrap();
    let mut damaged = stored.to_vec();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    setup.backend.delete(&key).await.unwrap();
    setup
        .backend
        .put(&key, damaged.into(), dr_storage::PutOptions::CREATE)
        .await
        .unwrap();

    let target_parent = tempfile::tempdir().unwrap();
    let data_dir = target_parent.path().join("restored");
    let attempt = PitrRestore::new(component(), &data_dir)
        .restore(
            RestoreRequest::new(setup.repo.as_ref(), &RecoveryTarget::Latest, objectives())
                .archive(setup.repo.as_ref())
                .journals(setup.journals()),
        )
        .await
        .unwrap_err();
    assert_eq!(attempt.kind(), ErrorKind::Corrupt, "{attempt}");
    assert!(!data_dir.exists(), "the target directory was touched");
    assert_eq!(std::fs::read_dir(target_parent.path()).unwrap().count(), 0);

    // A segment gone: the error names it, before anything is written.
    setup.backend.delete(&key).await.unwrap();
    let err = PitrRestore::new(component(), &data_dir)
        .restore(
            RestoreRequest::new(setup.repo.as_ref(), &RecoveryTarget::Latest, objectives())
                .archive(setup.repo.as_ref())
                .journals(setup.journals()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(victim.as_str()), "{err}");
    assert!(!data_dir.exists());
}

/// A restore that must fail before anything is written: its error, with
/// the target's parent left empty.
async fn refused_restore(setup: &Setup, target: RecoveryTarget) -> dr_core::Error {
    let target_parent = tempfile::tempdir().unwrap();
    let data_dir = target_parent.path().join("restored");
    let err = PitrRestore::new(component(), &data_dir)
        .restore(
            RestoreRequest::new(setup.repo.as_ref(), &target, objectives())
                .archive(setup.repo.as_ref())
                .journals(setup.journals()),
        )
        .await
        .unwrap_err();
    assert_eq!(
        std::fs::read_dir(target_parent.path()).unwrap().count(),
        0,
        "the restore to {target:?} left something behind: {err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_to_a_named_restore_point_from_the_backup_before_it_and_refuses_targets_the_wal_does_not_reach()
 {
    let setup = setup(options()).await;
    let archiver = archiver(&setup, ArchiverOptions::new().slot("drkit_named"));
    let backup = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none());
    backup.backup_to(setup.repo.as_ref()).await.unwrap();
    write_rows(&setup.pg, 0, 30).await;
    let client = setup.pg.connect("postgres").await.unwrap();
    client
        .batch_execute("SELECT pg_create_restore_point('before-delete')")
        .await
        .unwrap();
    client
        .batch_execute("DELETE FROM t WHERE id % 2 = 0")
        .await
        .unwrap();
    // A newer base backup, taken after the restore point: recovery to the
    // point must start from the older one.
    backup.backup_to(setup.repo.as_ref()).await.unwrap();
    write_rows(&setup.pg, 100, 110).await;
    let last_commit = commit_times(&setup.pg).await.last().unwrap().1;
    archive_everything(&setup, archiver).await;

    let (kit, _) = restore(
        &setup,
        RecoveryTarget::RestorePoint("before-delete".into()),
        None,
    )
    .await;
    assert_eq!(kit.rows().await, (0..30).collect::<Vec<_>>());

    // No such restore point: refused by name, nothing written.
    let err = refused_restore(&setup, RecoveryTarget::RestorePoint("after-lunch".into())).await;
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("\"after-lunch\""), "{err}");

    // A time after the last archived transaction: PostgreSQL would fail at
    // the end of recovery; the restore refuses it first, naming the last one.
    let later = last_commit
        .checked_add(jiff::SignedDuration::from_secs(3600))
        .unwrap();
    let err = refused_restore(&setup, RecoveryTarget::Time(later)).await;
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("after the target time"), "{err}");
    assert!(err.to_string().contains("the last one ended at"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_checks_every_file_against_the_servers_backup_manifest() {
    use dr_core::{SnapshotCommit, SnapshotSink, SnapshotSourceExt};
    use tokio::io::AsyncReadExt;

    let setup = setup(options()).await;
    let archiver = archiver(&setup, ArchiverOptions::new().slot("drkit_files"));
    let backup = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none());
    let taken = backup
        .backup_to(setup.repo.as_ref())
        .await
        .unwrap()
        .manifest;
    archive_everything(&setup, archiver).await;

    // The same backup stored again with one file's bytes changed in its
    // archive: every stream is whole and matches its own SHA-256, so only
    // the server's backup manifest can tell.
    let read = |name: &str| {
        let (repo, id, name) = (setup.repo.clone(), taken.id, name.parse().unwrap());
        async move {
            let mut bytes = Vec::new();
            let mut stream = repo.open_stream(&id, &name).await.unwrap();
            stream.read_to_end(&mut bytes).await.unwrap();
            bytes
        }
    };
    let mut base = read("base.tar").await;
    let header = base
        .chunks(512)
        .position(|block| block.starts_with(b"PG_VERSION\0"))
        .expect("PG_VERSION in base.tar");
    let content = (header + 1) * 512;
    assert_eq!(&base[content..content + 3], b"15\n");
    base[content + 1] = b'6';
    let mut writer = setup
        .repo
        .begin(&component(), taken.started_at)
        .await
        .unwrap();
    for entry in &taken.streams {
        let bytes = match entry.name.as_str() {
            "base.tar" => base.clone(),
            other => read(other).await,
        };
        writer
            .add_stream(&entry.name, &mut &bytes[..])
            .await
            .unwrap();
    }
    let mut commit = SnapshotCommit::new(taken.recovery_point.clone());
    commit.labels = taken.labels.clone();
    commit.metadata = taken.metadata.clone();
    let tampered = writer.commit(commit).await.unwrap();

    let err = refused_restore(&setup, RecoveryTarget::Snapshot(tampered.id)).await;
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("PG_VERSION"), "{err}");
    // Verified without a restore, it is found too, as a finding on that file.
    let report = BaseBackupVerifier::new(component())
        .verify(setup.repo.as_ref(), &tampered.id)
        .await
        .unwrap();
    assert_eq!(report.findings.len(), 1, "{report:?}");
    assert_eq!(report.findings[0].object, "PG_VERSION", "{report:?}");
    assert!(
        matches!(
            report.findings[0].problem,
            dr_core::Problem::ChecksumMismatch { .. }
        ),
        "{report:?}"
    );
    // The backup as taken restores.
    let (kit, _) = restore(&setup, RecoveryTarget::Snapshot(taken.id), None).await;
    assert!(kit.rows().await.is_empty());

    // Packs damaged in the store: the restore fails as damage, naming the
    // pack and saying what to do, and leaves nothing behind.
    let packs = setup.backend.list("data/").await.unwrap();
    for pack in &packs {
        let mut raw = setup.backend.get_all(&pack.key).await.unwrap().to_vec();
        let middle = raw.len() / 2;
        raw[middle] ^= 0x20;
        setup
            .backend
            .put(&pack.key, raw.into(), dr_storage::PutOptions::OVERWRITE)
            .await
            .unwrap();
    }
    let err = refused_restore(&setup, RecoveryTarget::Snapshot(taken.id)).await;
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let message = err.to_string();
    assert!(
        packs
            .iter()
            .any(|p| message.contains(p.key.rsplit('/').next().unwrap()))
            && message.contains("verify")
            && message.contains("older snapshot"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_of_unreachable_servers_and_with_wrong_passwords_fail_clearly() {
    let setup = setup(options()).await;
    let mut wrong = setup.pg.config("postgres");
    wrong.password("not-the-password");
    let err = BaseBackup::new(component(), wrong, Tls::none())
        .backup_to(setup.repo.as_ref())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");

    let mut closed = tokio_postgres::Config::new();
    closed
        .host("127.0.0.1")
        .port(1)
        .user("postgres")
        .password(setup.pg.password());
    let err = BaseBackup::new(component(), closed, Tls::none())
        .backup_to(setup.repo.as_ref())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        setup.repo.all_snapshots().await.unwrap().is_empty(),
        "a failed backup left a snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_across_a_timeline_switch() {
    let setup = setup(options()).await;
    let first = archiver(&setup, ArchiverOptions::new().slot("drkit_tl"));
    let backup = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none());
    backup.backup_to(setup.repo.as_ref()).await.unwrap();
    write_rows(&setup.pg, 0, 30).await;
    let replica = setup.pg.start_replica().await.unwrap();
    write_rows(&setup.pg, 30, 40).await;
    // Let the replica catch up, then fail over to it.
    let lsn = current_lsn(&setup.pg).await;
    flushed(&first, lsn, Duration::from_secs(30)).await.unwrap();
    let rc = replica.connect("postgres").await.unwrap();
    for _ in 0..300 {
        let text: String = rc
            .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        if text.parse::<Lsn>().unwrap() >= lsn {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.shutdown().await.ok();
    replica.promote().await.unwrap();
    write_rows(&replica, 40, 60).await;

    let second = WalArchiver::new(
        replica.config("postgres"),
        Tls::none(),
        setup.repo.clone(),
        component(),
        ArchiverOptions::new().slot("drkit_tl2"),
    )
    .journals(setup.journals.clone())
    .spawn();
    flushed(
        &second,
        current_lsn(&replica).await,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    second.shutdown().await.ok();
    let names = setup.repo.segments(&component(), "00000002").await.unwrap();
    assert!(
        names.iter().any(|n| n.as_str() == "00000002.history"),
        "{names:?}"
    );

    let (kit, _) = restore(&setup, RecoveryTarget::Latest, None).await;
    assert_eq!(kit.rows().await, (0..60).collect::<Vec<_>>());

    // A moment on the new timeline: the WAL's records are read across the
    // switch before the restore is let through.
    let times = commit_times(&replica).await;
    assert_eq!(times.len(), 60);
    let target = halfway(times[49].1, times[50].1);
    let (kit, _) = restore(&setup, RecoveryTarget::Time(target), None).await;
    assert_eq!(kit.rows().await, (0..50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_old_base_backups_removes_only_the_wal_they_alone_needed() {
    let setup = setup(options()).await;
    let archiver = archiver(&setup, ArchiverOptions::new().slot("drkit_retention"));
    let backup = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none());
    let old = backup
        .backup_to(setup.repo.as_ref())
        .await
        .unwrap()
        .manifest;
    let client = setup.pg.connect("postgres").await.unwrap();
    for round in 0..3 {
        client
            .batch_execute(&format!(
                "INSERT INTO t SELECT g, 'r' FROM generate_series({}, {}) g; SELECT pg_switch_wal()",
                round * 10,
                round * 10 + 9
            ))
            .await
            .unwrap();
    }
    let kept = backup
        .backup_to(setup.repo.as_ref())
        .await
        .unwrap()
        .manifest;
    write_rows(&setup.pg, 30, 40).await;
    archive_everything(&setup, archiver).await;

    setup.repo.forget_snapshots(&[old.id]).await.unwrap();
    let unneeded = dr_postgres::unneeded_wal(
        setup.repo.as_ref(),
        Some(setup.journals()),
        &component(),
        std::slice::from_ref(&kept),
    )
    .await
    .unwrap();
    assert!(!unneeded.is_empty());
    let start: Lsn = BaseBackupDetails::of(&kept).unwrap().start_lsn;
    let size = dr_postgres::DEFAULT_SEGMENT_SIZE;
    for name in &unneeded {
        match dr_postgres::ArchivedWal::parse(name.as_str(), size).unwrap() {
            dr_postgres::ArchivedWal::Segment(s) => assert!(s.end(size) <= start, "{name}"),
            dr_postgres::ArchivedWal::Piece { .. } => {}
            dr_postgres::ArchivedWal::History(_) => panic!("history {name} would be forgotten"),
        }
    }
    setup
        .repo
        .forget_segments(&component(), &unneeded)
        .await
        .unwrap();
    // Nothing a kept backup needs was removed: the latest restore still works.
    let (kit, _) = restore(&setup, RecoveryTarget::Latest, None).await;
    assert_eq!(kit.rows().await, (0..40).collect::<Vec<_>>());
    // And with no kept backup, nothing is declared unneeded.
    assert!(
        dr_postgres::unneeded_wal(
            setup.repo.as_ref(),
            Some(setup.journals()),
            &component(),
            &[]
        )
        .await
        .unwrap()
        .is_empty()
    );
}

/// Every row's content, folded into one digest.
async fn table_digest(client: &tokio_postgres::Client) -> String {
    client
        .query_one(
            "SELECT md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM t",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn stored_bytes(backend: &dyn WriteBackend) -> u64 {
    backend
        .list("data/")
        .await
        .unwrap()
        .iter()
        .map(|o| o.size)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_backups_store_changed_bytes_and_restore_exactly() {
    let setup = setup(options()).await;
    let archiver = archiver(&setup, ArchiverOptions::new().slot("drkit_delta"));
    let client = setup.pg.connect("postgres").await.unwrap();
    client
        .batch_execute(
            "INSERT INTO t SELECT g, md5(g::text) || repeat('n', 100) FROM generate_series(1, 40000) g",
        )
        .await
        .unwrap();
    let before = stored_bytes(setup.backend.as_ref()).await;
    let full = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none())
        .backup_to(setup.repo.as_ref())
        .await
        .unwrap()
        .manifest;
    assert_eq!(full.depends_on, None);
    let full_cost = stored_bytes(setup.backend.as_ref()).await - before;

    // Backed up again unchanged, the cluster stores almost nothing new: the
    // tar is cut at its members, and only a few small files differ.
    let before = stored_bytes(setup.backend.as_ref()).await;
    let again = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none())
        .backup_to(setup.repo.as_ref())
        .await
        .unwrap()
        .manifest;
    let again_cost = stored_bytes(setup.backend.as_ref()).await - before;
    assert!(
        again_cost * 10 < full_cost,
        "a full backup stored {full_cost} bytes, the same cluster again {again_cost}"
    );

    // Touch every page of the table a little, and add some rows.
    client
        .batch_execute(
            "UPDATE t SET note = 'changed' || note WHERE id % 40 = 0;
             INSERT INTO t SELECT g, 'new' FROM generate_series(40001, 41000) g;
             CHECKPOINT",
        )
        .await
        .unwrap();
    let expected = table_digest(&client).await;
    let before = stored_bytes(setup.backend.as_ref()).await;
    let repo: &Repository = setup.repo.as_ref();
    let delta = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none())
        .backup(BackupRequest::new(repo).base(BackupBase::LatestFull(repo)))
        .await
        .unwrap()
        .manifest;
    let delta_cost = stored_bytes(setup.backend.as_ref()).await - before;
    // Against the latest full backup.
    assert_eq!(delta.depends_on, Some(again.id));
    assert!(
        delta
            .stream(&dr_postgres::DELTA_STREAM.parse().unwrap())
            .is_some()
    );

    // The same state backed up whole, for comparison: deduplication alone
    // stores every touched page again.
    let before = stored_bytes(setup.backend.as_ref()).await;
    BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none())
        .backup_to(setup.repo.as_ref())
        .await
        .unwrap();
    let dedup_cost = stored_bytes(setup.backend.as_ref()).await - before;
    assert!(
        delta_cost * 2 < dedup_cost,
        "a delta backup stored {delta_cost} bytes, a deduplicated one {dedup_cost}"
    );

    // Checked against its backup manifest as the restore rebuilds it.
    let check = verify_base_backup(setup.repo.as_ref(), &delta.id)
        .await
        .unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert!(check.checked > 100, "{check:?}");

    archive_everything(&setup, archiver).await;
    let (kit, _) = restore(&setup, RecoveryTarget::Snapshot(delta.id), None).await;
    assert_eq!(table_digest(&kit.client().await).await, expected);

    // The full backup stays as long as the delta does.
    let err = setup.repo.forget_snapshots(&[again.id]).await.unwrap_err();
    assert!(err.to_string().contains(&delta.id.to_string()), "{err}");

    // A base named by id: a full backup of the cluster, with the request's
    // labels; a delta is no base for another.
    let backup = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none());
    let named = backup
        .backup(
            BackupRequest::new(repo)
                .base(BackupBase::Snapshot(repo, again.id))
                .label("trigger", "drill"),
        )
        .await
        .unwrap()
        .manifest;
    assert_eq!(named.depends_on, Some(again.id));
    assert_eq!(named.labels["trigger"], "drill");
    let err = backup
        .backup(BackupRequest::new(repo).base(BackupBase::Snapshot(repo, delta.id)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// Writers on connections of their own, each inserting `per_writer` rows
/// (ids `base + writer * 1_000 + n`) as fast as it can, all at once; beside
/// them, a session writes large WAL records. A commit takes its time before
/// it takes a WAL insertion lock, and one such lock is held while a large
/// record is copied in: a commit waiting for it reaches the WAL after
/// commits that took their time later, as happens under load.
async fn concurrent_writers(pg: &Postgres, base: i32, writers: i32, per_writer: i32) {
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let large = {
        let config = pg.config("postgres");
        let writing = writing.clone();
        tokio::spawn(async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                client
                    .batch_execute(
                        "SELECT pg_logical_emit_message(false, 'drkit', repeat('x', 8 << 20))",
                    )
                    .await
                    .unwrap();
            }
        })
    };
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let config = pg.config("postgres");
            tokio::spawn(async move {
                let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(conn);
                for n in 0..per_writer {
                    client
                        .execute("INSERT INTO t VALUES ($1, 'w')", &[&(base + w * 1_000 + n)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    large.await.unwrap();
}

/// A commit that reached the WAL after one with a later commit time: a
/// time between the two is where PostgreSQL's rule (stop at the first
/// transaction in WAL order after the target) and "every commit up to the
/// target" disagree. Returns the later one's time, which is the target.
fn out_of_order_commit(ends: &[WalRecordEvent], after: Lsn) -> Option<Timestamp> {
    ends.windows(2)
        .filter(|pair| pair[0].start() > after)
        .find(|pair| {
            matches!(pair[1], WalRecordEvent::Commit { .. }) && pair[1].time() < pair[0].time()
        })
        .map(|pair| pair[1].time())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_restore_by_wal_order_with_measured_rpo_and_a_checkable_directory() {
    let setup = setup(options()).await;
    let archiver = archiver(
        &setup,
        ArchiverOptions::new()
            .slot("drkit_concurrent")
            .piece_interval(Some(Duration::from_millis(200))),
    );
    let backup = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none());
    let taken = backup
        .backup_to(setup.repo.as_ref())
        .await
        .unwrap()
        .manifest;
    let start: Lsn = BaseBackupDetails::of(&taken).unwrap().start_lsn;
    let end: Lsn = BaseBackupDetails::of(&taken).unwrap().end_lsn;

    // Rounds of concurrent writers until a commit lands in the WAL after
    // one with a later commit time (on two cores, it takes a round or two).
    let mut inverted = None;
    for round in 0..30 {
        concurrent_writers(&setup.pg, round * 100_000, 12, 40).await;
        flushed(
            &archiver,
            current_lsn(&setup.pg).await,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        let ends = transaction_ends(&setup, start).await;
        if let Some(target) = out_of_order_commit(&ends, end) {
            inverted = Some(target);
            break;
        }
        eprintln!("round {round}: every commit reached the WAL in time order");
    }
    let target = inverted.expect("concurrent commits reached the WAL out of time order");
    // One more, so that the archived WAL has a transaction after everything.
    write_rows(&setup.pg, -1, 0).await;
    archive_everything(&setup, archiver).await;
    let rows = row_xids(&setup.pg).await;
    let ends = transaction_ends(&setup, start).await;

    // The target is the commit time of a commit that came after a later
    // one in WAL order: recovery stops before that later one, so this
    // commit is not replayed although its time is the target's.
    let expected = kept_at(target, &ends, &rows);
    let by_time: Vec<i32> = rows
        .iter()
        .filter(|(_, xid)| {
            ends.iter().any(|e| {
                matches!(e, WalRecordEvent::Commit { xid: x, .. } if x == xid) && e.time() <= target
            }) || !ends
                .iter()
                .any(|e| matches!(e, WalRecordEvent::Commit { xid: x, .. } if x == xid))
        })
        .map(|(id, _)| *id)
        .collect();
    assert_ne!(
        expected, by_time,
        "the target does not tell the rules apart"
    );
    let (kit, report) = restore(&setup, RecoveryTarget::Time(target), None).await;
    assert_eq!(kit.rows().await, expected, "restored to {target}");
    assert!(report.achieved_rpo().is_some(), "{report}");

    // An LSN target: recovery replays the record starting there and stops;
    // all it asked for is there, so nothing was lost.
    let middle = &ends[ends.len() / 2];
    let WalRecordEvent::Commit {
        xid: middle_xid, ..
    } = middle
    else {
        panic!("the middle transaction end is an abort: {middle:?}");
    };
    let position = dr_core::Position::Postgres {
        system_identifier: BaseBackupDetails::of(&taken).unwrap().system_identifier,
        timeline: 1,
        lsn: middle.start(),
    };
    let (kit, report) = restore(&setup, RecoveryTarget::Position(position), None).await;
    let restored = kit.rows().await;
    let middle_row = rows.iter().find(|(_, x)| x == middle_xid).unwrap().0;
    assert!(restored.contains(&middle_row), "{restored:?}");
    assert_eq!(
        report.achieved_rpo(),
        Some(dr_core::Rpo::from_secs(0)),
        "{report}"
    );
    assert!(report.objectives_met(), "{report}");

    // Restored without starting: the data directory holds exactly what the
    // backup's manifest lists, and its WAL lies beside it.
    let restored = Restored::new();
    let restore = restored.restore();
    restore
        .restore(
            RestoreRequest::new(setup.repo.as_ref(), &RecoveryTarget::Latest, objectives())
                .archive(setup.repo.as_ref())
                .journals(setup.journals()),
        )
        .await
        .unwrap();
    let output = tokio::process::Command::new(restored.slot.binaries().path("pg_verifybackup"))
        .arg("--wal-directory")
        .arg(restore.staging_dir())
        .arg(restored.slot.data_dir())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "pg_verifybackup: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Removes every object of segment `name` from the store: whole and pieces.
async fn remove_segment(setup: &Setup, name: &str) {
    let names = setup.repo.segments(&component(), name).await.unwrap();
    assert!(!names.is_empty(), "{name} is not archived");
    for stored in names {
        let key = format!("archive/{}/{}", component(), stored);
        setup.backend.delete(&key).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_middle_segment_blocks_only_targets_beyond_it_and_damaged_whole_segments_fall_back_to_pieces()
 {
    let setup = setup(options()).await;
    let archiver = archiver(
        &setup,
        ArchiverOptions::new()
            .slot("drkit_gap")
            .piece_interval(Some(Duration::from_millis(200))),
    );
    let backup = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none());
    let taken = backup
        .backup_to(setup.repo.as_ref())
        .await
        .unwrap()
        .manifest;
    let start: Lsn = BaseBackupDetails::of(&taken).unwrap().start_lsn;
    let client = setup.pg.connect("postgres").await.unwrap();
    // Three rounds of writes, each in a segment of its own, stored as
    // pieces before the segment is switched (then whole as well).
    for round in 0..3 {
        write_rows(&setup.pg, round * 100, round * 100 + 10).await;
        flushed(
            &archiver,
            current_lsn(&setup.pg).await,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        client
            .batch_execute("SELECT pg_switch_wal()")
            .await
            .unwrap();
    }
    write_rows(&setup.pg, 1000, 1001).await;
    archive_everything(&setup, archiver).await;
    let rows = row_xids(&setup.pg).await;
    let ends = transaction_ends(&setup, start).await;
    let size = DEFAULT_SEGMENT_SIZE;
    let segment_of = |id: i32| {
        let xid = rows.iter().find(|(r, _)| *r == id).unwrap().1;
        let commit = ends
            .iter()
            .find(|e| matches!(e, WalRecordEvent::Commit { xid: x, .. } if *x == xid))
            .unwrap();
        (
            WalSegment::containing(1, commit.end(), size).file_name(size),
            commit.time(),
        )
    };
    let (first, fifth) = (segment_of(4), segment_of(5));
    let (gap, _) = segment_of(100);
    let (last, after_gap) = (segment_of(204), segment_of(205));
    assert_eq!(first.0, fifth.0);
    assert!(first.0 < gap && gap < last.0, "{first:?} {gap} {last:?}");

    // The whole object of the first round's segment cut short; its pieces,
    // stored as it was streamed, stay intact.
    let key = format!("archive/{}/{}", component(), first.0);
    let stored = setup.backend.get_all(&key).await.unwrap();
    let pieces = setup
        .repo
        .segments(&component(), &format!("{}.partial.", first.0))
        .await
        .unwrap();
    assert!(!pieces.is_empty(), "{} has no pieces", first.0);
    setup.backend.delete(&key).await.unwrap();
    setup
        .backend
        .put(
            &key,
            stored.slice(..stored.len() / 2),
            dr_storage::PutOptions::CREATE,
        )
        .await
        .unwrap();
    // And the second round's segment gone altogether.
    remove_segment(&setup, &gap).await;

    // Before the gap: restored exactly, from the pieces, and said so.
    let before_gap = halfway(first.1, fifth.1);
    let (kit, report) = restore(&setup, RecoveryTarget::Time(before_gap), None).await;
    assert_eq!(kit.rows().await, kept_at(before_gap, &ends, &rows));
    assert_eq!(kit.rows().await, (0..5).collect::<Vec<_>>());
    assert!(
        report
            .timeline
            .steps()
            .iter()
            .any(|s| s.name.contains(&first.0) && s.name.contains("pieces")),
        "{report}"
    );

    // Beyond it: refused before anything is written, naming the segment.
    let err = refused_restore(&setup, RecoveryTarget::Time(halfway(last.1, after_gap.1))).await;
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&gap), "{err}");
    let err = refused_restore(&setup, RecoveryTarget::Latest).await;
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&gap), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_test_restores_into_a_scratch_server_checks_it_and_removes_it() {
    let setup = setup(options()).await;
    let archiver = archiver(&setup, ArchiverOptions::new().slot("drkit_restore_test"));
    let backup = BaseBackup::new(component(), setup.pg.config("postgres"), Tls::none());
    let taken = backup
        .backup_to(setup.repo.as_ref())
        .await
        .unwrap()
        .manifest;
    write_rows(&setup.pg, 0, 20).await;
    archive_everything(&setup, archiver).await;

    let parent = tempfile::tempdir().unwrap();
    let mut scratch = ScratchOptions::new().parent(parent.path());
    if let Some((uid, gid)) = Postgres::restore_slot(options()).unwrap().owner() {
        std::os::unix::fs::chown(parent.path(), Some(uid), Some(gid)).unwrap();
        scratch = scratch.run_as(uid, gid);
    }
    let mut connect = tokio_postgres::Config::new();
    connect.user("postgres").dbname("postgres");
    let test = RestoreTest::new(
        component(),
        RestoreTestKind::Physical(Box::new(connect)),
        PgTools::in_dir(setup.pg.binaries().dir()),
    )
    .scratch(scratch)
    .check(SmokeCheck::new("every row", "SELECT count(*) = 20 FROM t"))
    .check(SmokeCheck::new(
        "no such table",
        "SELECT count(*) FROM nope",
    ));
    let request = RestoreRequest::new(setup.repo.as_ref(), &RecoveryTarget::Latest, objectives())
        .archive(setup.repo.as_ref())
        .journals(setup.journals());
    let report = test.run(request).await.unwrap();
    assert_eq!(report.snapshot, Some(taken.id));
    let outcomes: Vec<(&str, bool)> = report
        .smoke
        .outcomes
        .iter()
        .map(|o| (o.name.as_str(), o.passed))
        .collect();
    assert_eq!(outcomes, [("every row", true), ("no such table", false)]);
    assert!(!report.is_ok());
    assert!(
        report
            .recovery
            .timeline
            .steps()
            .iter()
            .any(|s| s.name == "replay WAL and promote"),
        "{}",
        report.recovery
    );
    // The scratch server is gone, and its directory with it.
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
}
