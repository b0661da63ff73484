//! Locks between processes that cannot see each other, locks broken by
//! hand, read-only opens, and what killed writes leave behind.
//!
//! The other processes are this test binary run again (the ignored test
//! `lock_process`), some of them in a PID namespace of their own
//! (`unshare --pid --mount-proc`), as two containers of one pod are: the
//! same host name, and neither sees the other's processes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dr_core::{
    ComponentId, ErrorKind, Manifest, RecoveryPoint, SnapshotCommit, SnapshotSink, StreamName,
};
use dr_storage::{
    Error, FsBackend, PruneOptions, ReadBackend, ReadBackendExt, Repository, Secret,
    SnapshotFilter, Unlock, WriteBackend,
};

const REPO_ENV: &str = "DRKIT_LOCK_TEST_REPO";
const MODE_ENV: &str = "DRKIT_LOCK_TEST_MODE";
use crate::common::{PASSWORD, noise as data, small as options};

fn component() -> ComponentId {
    crate::common::component("postgres/main")
}

fn stream() -> StreamName {
    crate::common::stream("data")
}

async fn open(dir: &Path) -> Repository {
    let backend: Arc<dyn WriteBackend> = Arc::new(FsBackend::new(dir).unwrap());
    Repository::open(backend, Some(&Secret::password(PASSWORD)))
        .await
        .unwrap()
        .with_lock_wait(Duration::from_secs(2))
}

/// A new repository in a temporary directory, opened as the tests' other
/// processes open it.
async fn fresh() -> (tempfile::TempDir, Arc<dyn WriteBackend>, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn WriteBackend> = Arc::new(FsBackend::new(dir.path()).unwrap());
    Repository::init(backend.clone(), options()).await.unwrap();
    let repo = open(dir.path()).await;
    (dir, backend, repo)
}

async fn backup(repo: &Repository, bytes: &[u8]) -> Manifest {
    crate::common::backup_at(
        repo,
        &component(),
        jiff::Timestamp::now(),
        &[("data", bytes)],
        &[],
    )
    .await
}

async fn restore(repo: &Repository, manifest: &Manifest) -> Vec<u8> {
    crate::common::read(repo, &manifest.id, "data")
        .await
        .unwrap()
}

/// The other process: prunes (`prune`), or begins a backup and waits to be
/// killed (`hold`). It says what happened on one line of its output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a process of the tests in this file, which run it"]
async fn lock_process() {
    let dir = std::env::var(REPO_ENV).expect("run by the tests in locks.rs only");
    let repo = open(dir.as_ref()).await;
    match std::env::var(MODE_ENV).unwrap().as_str() {
        "prune" => match repo.prune(&PruneOptions::default()).await {
            Ok(report) => println!("pruned {} packs", report.packs_deleted),
            Err(Error::Locked { reason, .. }) => println!("locked: {reason}"),
            Err(e) => println!("failed: {e}"),
        },
        "hold" => {
            let mut writer = repo
                .begin(&component(), jiff::Timestamp::now())
                .await
                .unwrap();
            writer
                .add_stream(&stream(), &mut &data(99, 300_000)[..])
                .await
                .unwrap();
            println!("holding");
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        other => panic!("unknown mode {other}"),
    }
}

/// Runs `lock_process` in `mode` against the repository in `dir`, in a PID
/// namespace of its own if `own_pid_namespace`.
fn spawn(dir: &Path, mode: &str, own_pid_namespace: bool) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut command = if own_pid_namespace {
        let mut unshare = Command::new("unshare");
        // As root a PID namespace needs nothing more; otherwise a user
        // namespace of our own grants it.
        if !running_as_root() {
            unshare.args(["--user", "--map-root-user"]);
        }
        unshare.args(["--pid", "--fork", "--mount-proc"]).arg(exe);
        unshare
    } else {
        Command::new(exe)
    };
    command
        .args(["locks::lock_process", "--exact", "--ignored", "--nocapture"])
        .env(REPO_ENV, dir)
        .env(MODE_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare (util-linux) runs")
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The first line of the process's output that is its own (libtest's lines aside).
fn said(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| {
            ["pruned", "locked", "failed", "holding"]
                .iter()
                .any(|w| l.starts_with(w))
        })
        .unwrap_or_else(|| "(nothing)".to_owned())
}

/// Two containers of one pod: a prune in its own PID namespace, under the
/// same host name, must not take a live backup's lock for a dead one, and
/// the backup commits a snapshot whose every pack is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_in_another_pid_namespace_waits_for_a_live_backup() {
    let (dir, backend, repo) = fresh().await;

    let bytes = data(1, 2_000_000);
    let mut writer = repo
        .begin(&component(), jiff::Timestamp::now())
        .await
        .unwrap();
    writer.add_stream(&stream(), &mut &bytes[..]).await.unwrap();
    // Most of the stream's packs are stored, none indexed yet.
    assert!(backend.list("data/").await.unwrap().len() >= 4);

    let mut prune = spawn(dir.path(), "prune", true);
    let outcome = said(&mut prune);
    prune.wait().unwrap();
    assert!(
        outcome.starts_with("locked: the repository is locked: a shared lock of process"),
        "the prune in another PID namespace did not wait for the live backup: {outcome}"
    );

    let manifest = writer
        .commit(SnapshotCommit::new(RecoveryPoint::new(
            jiff::Timestamp::now(),
        )))
        .await
        .unwrap();
    let check = repo.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert_eq!(restore(&repo, &manifest).await, bytes);
}

/// A backup whose lock was removed (by unlock, or by anyone who took it for
/// dead) commits nothing, and leaves nothing that later backups would trust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_whose_lock_was_removed_does_not_commit() {
    let (_dir, backend, repo) = fresh().await;

    let bytes = data(2, 1_000_000);
    let mut writer = repo
        .begin(&component(), jiff::Timestamp::now())
        .await
        .unwrap();
    writer.add_stream(&stream(), &mut &bytes[..]).await.unwrap();
    let locks = repo.locks().await.unwrap();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert!(!locks[0].exclusive && !locks[0].stale, "{}", locks[0]);
    assert_eq!(locks[0].pid, std::process::id());
    let removed = repo
        .unlock(Unlock::Key(locks[0].key.clone()))
        .await
        .unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].key, locks[0].key);

    let err = writer
        .commit(SnapshotCommit::new(RecoveryPoint::new(
            jiff::Timestamp::now(),
        )))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("was removed"), "{err}");
    assert!(
        repo.snapshots_matching(&SnapshotFilter::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(backend.list("index/").await.unwrap().is_empty());
    // The same bytes backed up again are stored again, not taken for stored.
    let manifest = backup(&repo, &bytes).await;
    repo.prune(&PruneOptions::default()).await.unwrap();
    assert!(repo.check().await.unwrap().is_ok());
    assert_eq!(restore(&repo, &manifest).await, bytes);
}

/// A backup killed in another container leaves a lock nobody here can judge
/// dead: it holds prunes up, names its owner and age, and `unlock` by key
/// frees the repository. A lock of a killed process in our own namespace is
/// deleted by the next process that meets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_locks_are_named_broken_by_hand_or_cleaned_up_where_known_dead() {
    let (dir, _backend, repo) = fresh().await;
    let kept = backup(&repo, &data(3, 300_000)).await;

    // Killed in its own PID namespace.
    let mut holder = spawn(dir.path(), "hold", true);
    assert_eq!(said(&mut holder), "holding");
    holder.kill().unwrap();
    holder.wait().unwrap();
    let locks = repo.locks().await.unwrap();
    assert_eq!(locks.len(), 1, "{locks:?}");
    let dead = &locks[0];
    assert!(
        !dead.stale,
        "judged dead from outside its namespace: {dead}"
    );
    assert!(dead.pid_namespace.is_some(), "{dead}");
    let err = repo.prune(&PruneOptions::default()).await.unwrap_err();
    assert!(
        err.to_string().contains(&dead.key) && err.to_string().contains("unlock"),
        "{err}"
    );
    assert!(repo.unlock(Unlock::Stale).await.unwrap().is_empty());
    let removed = repo.unlock(Unlock::Key(dead.key.clone())).await.unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].key, dead.key);
    let err = repo
        .unlock(Unlock::Key(dead.key.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let report = repo.prune(&PruneOptions::default()).await.unwrap();
    assert!(
        report.packs_deleted > 0,
        "the dead backup's packs: {report:?}"
    );

    // Killed in ours: the next backup deletes its lock on the way.
    let mut holder = spawn(dir.path(), "hold", false);
    assert_eq!(said(&mut holder), "holding");
    holder.kill().unwrap();
    holder.wait().unwrap();
    let locks = repo.locks().await.unwrap();
    assert!(locks.len() == 1 && locks[0].stale, "{locks:?}");
    backup(&repo, &data(4, 100_000)).await;
    assert_eq!(repo.locks().await.unwrap(), vec![]);
    assert_eq!(restore(&repo, &kept).await, data(3, 300_000));
}

/// Credentials that may only read open a repository, restore and verify
/// from it, and nothing is written to the store; writes fail saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_open_restores_and_verifies_and_writes_nothing() {
    let (dir, _backend, repo) = fresh().await;
    let bytes = data(5, 700_000);
    let manifest = backup(&repo, &bytes).await;
    let before = everything(dir.path());

    let reader: Arc<dyn ReadBackend> = Arc::new(FsBackend::new(dir.path()).unwrap());
    let read_only = Repository::open_read_only(reader, Some(&Secret::password(PASSWORD)))
        .await
        .unwrap();
    assert!(read_only.is_read_only());
    assert_eq!(restore(&read_only, &manifest).await, bytes);
    assert!(read_only.verify().await.unwrap().damaged.is_empty());
    assert!(read_only.check().await.unwrap().is_ok());
    for err in [
        read_only
            .begin(&component(), jiff::Timestamp::now())
            .await
            .map(|_| ())
            .unwrap_err(),
        read_only
            .prune(&PruneOptions::default())
            .await
            .map(|_| ())
            .unwrap_err()
            .into(),
        read_only
            .unlock(Unlock::All)
            .await
            .map(|_| ())
            .unwrap_err()
            .into(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert!(err.to_string().contains("read-only"), "{err}");
    }
    assert_eq!(everything(dir.path()), before, "a read-only open wrote");

    let err = Repository::open_read_only(
        Arc::new(FsBackend::new(dir.path()).unwrap()),
        Some(&Secret::password("wrong")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::WrongPassword { .. }), "{err}");
}

/// Every file under `dir` with its modification time.
fn everything(dir: &Path) -> Vec<(String, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path().display().to_string(), meta.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A write killed half-way leaves a temporary file: check reports it, and
/// prune removes it once it is older than its grace, not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_removes_temporary_files_of_killed_writes_once_old() {
    let (dir, _backend, repo) = fresh().await;
    let manifest = backup(&repo, &data(6, 400_000)).await;
    // What a pack write killed before its rename leaves.
    let pack_dir = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let leftover = pack_dir.join("~tmp.4242.7.123456789");
    std::fs::write(&leftover, data(7, 100_000)).unwrap();

    let check = repo.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert_eq!(check.unfinished_writes.len(), 1, "{check:?}");
    assert!(
        check.unfinished_writes[0]
            .name
            .ends_with("~tmp.4242.7.123456789"),
        "{check:?}"
    );
    let report = repo.prune(&PruneOptions::default()).await.unwrap();
    assert!(report.unfinished_removed.is_empty(), "{report:?}");
    assert!(
        leftover.exists(),
        "a fresh temporary file may be a write in progress"
    );

    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&leftover)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
    let dry = repo
        .prune(&PruneOptions::default().dry_run())
        .await
        .unwrap();
    assert_eq!(dry.unfinished_removed.len(), 1, "{dry:?}");
    assert!(leftover.exists(), "a dry run removed it");
    let report = repo.prune(&PruneOptions::default()).await.unwrap();
    assert_eq!(report.unfinished_removed.len(), 1, "{report:?}");
    assert!(!leftover.exists());
    assert!(repo.check().await.unwrap().unfinished_writes.is_empty());
    assert_eq!(restore(&repo, &manifest).await, data(6, 400_000));
}

/// On S3, an upload of a writer killed between its parts is an incomplete
/// multipart upload: check reports it and prune aborts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_aborts_incomplete_multipart_uploads_on_s3() {
    let server = dr_testkit::S3::start().await.unwrap();
    let backend = crate::common::s3_backend(&server, "prod").await;
    let repo = Repository::init(backend.clone(), options())
        .await
        .unwrap()
        .with_lock_wait(Duration::from_secs(2));
    let manifest = backup(&repo, &data(8, 400_000)).await;

    let client = server.client();
    let key = "prod/data/ab/abandoned";
    let upload = client
        .create_multipart_upload()
        .bucket(server.bucket())
        .key(key)
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap().to_owned();
    client
        .upload_part()
        .bucket(server.bucket())
        .key(key)
        .upload_id(&upload_id)
        .part_number(1)
        .body(data(9, 5 << 20).into())
        .send()
        .await
        .unwrap();
    // An upload outside the repository's prefix is not the repository's.
    let other = client
        .create_multipart_upload()
        .bucket(server.bucket())
        .key("elsewhere/object")
        .send()
        .await
        .unwrap();

    let check = repo.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert_eq!(check.unfinished_writes.len(), 1, "{check:?}");
    assert_eq!(check.unfinished_writes[0].name, "data/ab/abandoned");
    assert_eq!(
        check.unfinished_writes[0].upload_id.as_deref(),
        Some(upload_id.as_str())
    );
    let report = repo
        .prune(&PruneOptions::default().unfinished_after(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(report.unfinished_removed.len(), 1, "{report:?}");
    let left = client
        .list_multipart_uploads()
        .bucket(server.bucket())
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = left
        .uploads()
        .iter()
        .filter_map(|u| u.upload_id())
        .collect();
    assert_eq!(ids, vec![other.upload_id().unwrap()]);
    assert_eq!(restore(&repo, &manifest).await, data(8, 400_000));
}

/// Two monitors sharing a repository and nothing else: one holds the
/// failover lease at a time, racing takers get one winner, terms only grow,
/// and a holder whose grant lapsed and was taken over is refused.
async fn lease_keeps_one_holder(repo: &Repository) {
    use dr_core::{FailoverLease, LeaseGrant};

    let pg: ComponentId = "postgres/main".parse().unwrap();
    let minute = Duration::from_secs(60);
    let a = repo.acquire(&pg, "monitor-a", minute).await.unwrap();
    assert_eq!(a.term, 1);
    repo.confirm(&a).await.unwrap();
    let err = repo.acquire(&pg, "monitor-b", minute).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert!(
        err.to_string().contains("monitor-a holds it (term 1)"),
        "{err}"
    );
    // Renewed by its holder: the next term, and the old grant no longer counts.
    let a2 = repo.acquire(&pg, "monitor-a", minute).await.unwrap();
    assert_eq!(a2.term, 2);
    assert!(repo.confirm(&a).await.is_err());
    repo.release(&a2).await.unwrap();
    assert!(repo.confirm(&a2).await.is_err());

    // Racing for the free lease: exactly one wins (by the create-only
    // write of the same term, or by seeing the other's grant).
    let (b, c) = tokio::join!(
        repo.acquire(&pg, "monitor-b", minute),
        repo.acquire(&pg, "monitor-c", minute)
    );
    let won: Vec<LeaseGrant> = [b, c].into_iter().filter_map(Result::ok).collect();
    assert_eq!(won.len(), 1, "{won:?}");
    repo.release(&won[0]).await.unwrap();
    let b = repo
        .acquire(&pg, "monitor-b", Duration::ZERO)
        .await
        .unwrap();
    // Lapsed at once (a TTL of zero): refused to its holder, free to take.
    let err = repo.confirm(&b).await.unwrap_err();
    assert!(err.to_string().contains("lapsed"), "{err}");
    let d = repo.acquire(&pg, "monitor-d", minute).await.unwrap();
    assert!(d.term > b.term);
    let err = repo.confirm(&b).await.unwrap_err();
    assert!(err.to_string().contains("superseded"), "{err}");
    repo.confirm(&d).await.unwrap();
    // Another component's lease is its own.
    let redis: ComponentId = "redis/cache".parse().unwrap();
    assert_eq!(
        repo.acquire(&redis, "monitor-a", minute)
            .await
            .unwrap()
            .term,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failover_lease_keeps_one_holder_on_a_directory_and_on_s3() {
    let (_dir, _backend, repo) = fresh().await;
    lease_keeps_one_holder(&repo).await;

    let server = dr_testkit::S3::start().await.unwrap();
    let backend = crate::common::s3_backend(&server, "").await;
    let repo = Repository::init(backend, options()).await.unwrap();
    lease_keeps_one_holder(&repo).await;
}
