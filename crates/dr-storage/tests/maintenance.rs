//! Keeping a repository tidy without losing anything: listing and filtering
//! snapshots, forget by retention policy, prune (with repacking), check,
//! partial verify, locks against concurrent backups, and Object Lock.

use std::sync::Arc;
use std::time::Duration;

use dr_core::{
    ComponentId, ErrorKind, Manifest, RecoveryPoint, RetentionPolicy, SnapshotCommit, SnapshotId,
    SnapshotSink, SnapshotSource,
};
use dr_storage::{
    Error, FsBackend, MemoryBackend, ObjectLock, PruneOptions, ReadBackendExt, Repository,
    RetentionMode, S3Backend, S3Options, Secret, SnapshotFilter, VerifyOptions, WriteBackend,
};
use jiff::{Timestamp, ToSpan};

use crate::common::{component, data, small};

/// Commits a snapshot of one stream, `data`.
async fn backup_at(
    repo: &Repository,
    component: &ComponentId,
    at: Timestamp,
    bytes: &[u8],
    labels: &[(&str, &str)],
) -> Manifest {
    crate::common::backup_at(repo, component, at, &[("data", bytes)], labels).await
}

async fn restore(repo: &Repository, manifest: &Manifest) -> Vec<u8> {
    crate::common::read(repo, &manifest.id, "data")
        .await
        .unwrap()
}

/// Bytes of packs in the store.
async fn stored(backend: &dyn WriteBackend) -> u64 {
    crate::common::stored_bytes(backend, "data/").await
}

/// Waits until the packs in the store stop changing: a dropped writer's
/// uploads already under way may still land.
/// Waits until a dropped writer's packs are in the store: more than the
/// `before` packs there were when it began, and no more arriving for 300 ms.
/// Uploads it had started may still finish after the drop, and on a loaded
/// machine they can take longer than any fixed wait.
async fn settle(backend: &dyn WriteBackend, before: usize) {
    let packs = || async { backend.list("data/").await.unwrap().len() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = packs().await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = packs().await;
        if now == last && now > before {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dropped writer's packs never reached the store ({now} packs, {before} before it)"
        );
        last = now;
    }
}

fn hours_ago(now: Timestamp, hours: i64) -> Timestamp {
    now.checked_sub(hours.hours()).unwrap()
}

#[tokio::test]
async fn snapshots_are_listed_by_component_time_and_label() {
    let repo = Repository::init(Arc::new(MemoryBackend::new()), small())
        .await
        .unwrap();
    let now = Timestamp::now();
    let pg = component("postgres/main");
    let redis = component("redis/cache");
    let a = backup_at(&repo, &pg, hours_ago(now, 3), b"a", &[("kind", "full")]).await;
    let b = backup_at(&repo, &redis, hours_ago(now, 2), b"b", &[("kind", "full")]).await;
    let c = backup_at(&repo, &pg, hours_ago(now, 1), b"c", &[("kind", "drill")]).await;
    let ids = |ms: Vec<Manifest>| ms.into_iter().map(|m| m.id).collect::<Vec<_>>();

    let all = repo
        .snapshots_matching(&SnapshotFilter::new())
        .await
        .unwrap();
    assert_eq!(ids(all), [a.id, b.id, c.id]);
    let of_pg = SnapshotFilter::new().component(pg.clone());
    assert_eq!(
        ids(repo.snapshots_matching(&of_pg).await.unwrap()),
        [a.id, c.id]
    );
    let recent = SnapshotFilter::new().since(hours_ago(now, 2));
    assert_eq!(
        ids(repo.snapshots_matching(&recent).await.unwrap()),
        [b.id, c.id]
    );
    let older = SnapshotFilter::new().until(hours_ago(now, 2));
    assert_eq!(ids(repo.snapshots_matching(&older).await.unwrap()), [a.id]);
    let full_pg = SnapshotFilter::new().component(pg).label("kind", "full");
    assert_eq!(
        ids(repo.snapshots_matching(&full_pg).await.unwrap()),
        [a.id]
    );
}

#[tokio::test]
async fn forget_and_prune_free_space_and_keep_what_the_policy_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn WriteBackend> = Arc::new(FsBackend::new(dir.path()).unwrap());
    let repo = Repository::init(backend.clone(), small()).await.unwrap();
    let now = Timestamp::now();
    let pg = component("postgres/main");
    let redis = component("redis/cache");
    // Ten daily database backups, each with its own data, and one Redis snapshot.
    let mut daily = Vec::new();
    for day in 0..10i64 {
        let bytes = data(day as u64, 300_000);
        let m = backup_at(&repo, &pg, hours_ago(now, 24 * (9 - day) + 1), &bytes, &[]).await;
        daily.push((m, bytes));
    }
    let cache = data(99, 100_000);
    let redis_snapshot = backup_at(&repo, &redis, hours_ago(now, 5), &cache, &[]).await;
    let before = stored(backend.as_ref()).await;

    // An empty policy would forget everything: refused.
    let err = repo
        .plan_forget(&SnapshotFilter::new(), &RetentionPolicy::new(), now)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");

    let policy: RetentionPolicy = "last=3".parse().unwrap();
    let filter = SnapshotFilter::new().component(pg.clone());
    let plan = repo.plan_forget(&filter, &policy, now).await.unwrap();
    assert_eq!(plan.keep.len(), 3);
    assert_eq!(plan.forget.len(), 7);
    let kept: Vec<_> = plan.keep.iter().map(|(m, _)| m.id).collect();
    assert_eq!(
        kept,
        daily[7..].iter().map(|(m, _)| m.id).collect::<Vec<_>>()
    );
    // Planning deleted nothing.
    assert_eq!(repo.snapshots_matching(&filter).await.unwrap().len(), 10);

    let report = repo.forget(&plan).await.unwrap();
    assert_eq!(report.forgotten.len(), 7);
    assert!(report.retained.is_empty());
    let left = repo
        .snapshots_matching(&SnapshotFilter::new())
        .await
        .unwrap();
    assert_eq!(left.len(), 4);

    let pruned = repo.prune(&PruneOptions::default()).await.unwrap();
    assert_eq!(pruned.snapshots, 4);
    assert!(
        pruned.packs_deleted + pruned.packs_repacked > 0,
        "{pruned:?}"
    );
    let after = stored(backend.as_ref()).await;
    assert!(
        after * 2 < before,
        "prune should free most of the space: {before} -> {after}"
    );

    // What was kept restores bit-exact, from a fresh handle too.
    let reopened = Repository::open(backend.clone(), Some(&Secret::password("pw")))
        .await
        .unwrap();
    for (manifest, bytes) in &daily[7..] {
        assert_eq!(restore(&reopened, manifest).await, *bytes);
        assert_eq!(restore(&repo, manifest).await, *bytes);
    }
    assert_eq!(restore(&reopened, &redis_snapshot).await, cache);
    let check = reopened.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert_eq!(check.snapshots, 4);
    assert_eq!(check.unindexed_packs, 0);
    let verify = reopened.verify().await.unwrap();
    assert!(verify.damaged.is_empty(), "{verify:?}");

    // A second prune finds nothing to do.
    let again = repo.prune(&PruneOptions::default()).await.unwrap();
    assert_eq!(again.packs_deleted + again.packs_repacked, 0, "{again:?}");
}

#[tokio::test]
async fn prune_repacks_partly_used_packs_and_removes_leftovers_of_dead_backups() {
    let backend: Arc<dyn WriteBackend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), small().pack_size(1 << 20))
        .await
        .unwrap();
    let pg = component("postgres/main");
    let now = Timestamp::now();
    // The old snapshot's two streams share one pack; the kept snapshot uses
    // one of them, so forgetting the old one leaves that pack half used.
    let first = data(1, 400_000);
    let second = data(2, 400_000);
    let mut writer = repo.begin(&pg, hours_ago(now, 2)).await.unwrap();
    writer
        .add_stream(&crate::common::stream("data"), &mut &first[..])
        .await
        .unwrap();
    writer
        .add_stream(&"other".parse().unwrap(), &mut &second[..])
        .await
        .unwrap();
    let old = writer
        .commit(SnapshotCommit::new(RecoveryPoint::new(now)))
        .await
        .unwrap();
    let kept = backup_at(&repo, &pg, hours_ago(now, 1), &first, &[]).await;
    assert_eq!(repo.check().await.unwrap().packs, 1);
    // A backup that died after uploading packs: they are in no index. Its
    // stream fills several packs, so that some were uploaded (the writer
    // waits for all but the last one) before it dies: an upload still
    // under way when a writer is dropped is stopped.
    let packs_before = backend.list("data/").await.unwrap().len();
    let mut dead = repo.begin(&pg, now).await.unwrap();
    dead.add_stream(&crate::common::stream("data"), &mut &data(3, 8_000_000)[..])
        .await
        .unwrap();
    drop(dead);
    settle(backend.as_ref(), packs_before).await;
    let unindexed = repo.check().await.unwrap().unindexed_packs;
    assert!(unindexed > 0);

    repo.forget_snapshots(&[old.id]).await.unwrap();
    let dry = repo
        .prune(&PruneOptions::default().max_unused(0.0).unwrap().dry_run())
        .await
        .unwrap();
    assert_eq!(dry.packs_written, 0);
    assert_eq!(repo.check().await.unwrap().unindexed_packs, unindexed);

    let before = stored(backend.as_ref()).await;
    let report = repo
        .prune(&PruneOptions::default().max_unused(0.0).unwrap())
        .await
        .unwrap();
    assert!(report.packs_repacked >= 1, "{report:?}");
    assert!(report.packs_written >= 1, "{report:?}");
    assert!(report.packs_deleted >= unindexed, "{report:?}");
    assert!(stored(backend.as_ref()).await < before);
    assert_eq!(restore(&repo, &kept).await, first);
    let check = repo.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert_eq!(check.unindexed_packs, 0);
}

#[tokio::test]
async fn prune_waits_for_running_backups_and_backups_wait_for_prune() {
    let repo = Repository::init(Arc::new(MemoryBackend::new()), small())
        .await
        .unwrap();
    let pg = component("postgres/main");
    let impatient = repo.clone().with_lock_wait(Duration::from_millis(300));

    let mut running = repo.begin(&pg, Timestamp::now()).await.unwrap();
    running
        .add_stream(&crate::common::stream("data"), &mut &data(7, 200_000)[..])
        .await
        .unwrap();
    let err = impatient.prune(&PruneOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert_eq!(dr_core::Error::from(err).kind(), ErrorKind::Unavailable);
    // Another backup is not blocked by the first.
    let other = backup_at(&impatient, &pg, Timestamp::now(), b"other", &[]).await;

    // A patient prune finishes once the backup commits, and keeps its data.
    let patient = repo.clone().with_lock_wait(Duration::from_secs(30));
    let prune = tokio::spawn(async move { patient.prune(&PruneOptions::default()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!prune.is_finished());
    let committed = running
        .commit(SnapshotCommit::new(RecoveryPoint::new(Timestamp::now())))
        .await
        .unwrap();
    prune.await.unwrap().unwrap();
    assert_eq!(restore(&repo, &committed).await, data(7, 200_000));
    assert_eq!(restore(&repo, &other).await, b"other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_backups_and_prunes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn WriteBackend> = Arc::new(FsBackend::new(dir.path()).unwrap());
    Repository::init(backend.clone(), small()).await.unwrap();
    let pg = component("postgres/main");
    let mut writers = Vec::new();
    for w in 0..3u64 {
        // Each writer is its own handle, as separate processes would be.
        let repo = Repository::open(backend.clone(), Some(&Secret::password("pw")))
            .await
            .unwrap();
        let pg = pg.clone();
        writers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for round in 0..6u64 {
                // Rounds share most data, so dedup and prune interact.
                let mut bytes = data(w, 150_000);
                bytes.extend(data(100 + round, 50_000));
                let m = backup_at(&repo, &pg, Timestamp::now(), &bytes, &[]).await;
                done.push((m, bytes));
            }
            done
        }));
    }
    let pruner = {
        let repo = Repository::open(backend.clone(), Some(&Secret::password("pw")))
            .await
            .unwrap();
        let pg = pg.clone();
        tokio::spawn(async move {
            for _ in 0..4 {
                let plan = repo
                    .plan_forget(
                        &SnapshotFilter::new().component(pg.clone()),
                        &"last=4".parse().unwrap(),
                        Timestamp::now(),
                    )
                    .await
                    .unwrap();
                repo.forget(&plan).await.unwrap();
                repo.prune(&PruneOptions::default().max_unused(0.0).unwrap())
                    .await
                    .unwrap();
            }
        })
    };
    let mut committed = Vec::new();
    for w in writers {
        committed.extend(w.await.unwrap());
    }
    pruner.await.unwrap();

    let repo = Repository::open(backend.clone(), Some(&Secret::password("pw")))
        .await
        .unwrap();
    let listed = repo
        .snapshots_matching(&SnapshotFilter::new())
        .await
        .unwrap();
    assert!(listed.len() >= 4);
    // Every snapshot still listed restores exactly what was backed up.
    for manifest in &listed {
        let (_, bytes) = committed
            .iter()
            .find(|(m, _)| m.id == manifest.id)
            .expect("listed snapshots were committed by a writer");
        assert_eq!(restore(&repo, manifest).await, *bytes);
    }
    let check = repo.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    let verify = repo.verify().await.unwrap();
    assert!(verify.damaged.is_empty(), "{verify:?}");
}

#[tokio::test]
async fn snapshots_stored_against_others_keep_them() {
    let backend: Arc<dyn WriteBackend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), small()).await.unwrap();
    let now = Timestamp::now();
    let pg = component("postgres/main");
    let full = backup_at(&repo, &pg, hours_ago(now, 30), &data(1, 50_000), &[]).await;
    let other = backup_at(&repo, &pg, hours_ago(now, 20), &data(2, 50_000), &[]).await;
    let delta_at = hours_ago(now, 10);
    let mut writer = repo.begin(&pg, delta_at).await.unwrap();
    writer
        .add_stream(&crate::common::stream("data"), &mut &b"d"[..])
        .await
        .unwrap();
    let delta = writer
        .commit(SnapshotCommit::new(RecoveryPoint::new(delta_at)).depends_on(full.id))
        .await
        .unwrap();
    assert_eq!(delta.depends_on, Some(full.id));
    assert_eq!(
        repo.manifest(&delta.id).await.unwrap().depends_on,
        Some(full.id)
    );

    // A commit against a snapshot that is not there is refused, and invisible.
    let mut writer = repo.begin(&pg, now).await.unwrap();
    writer
        .add_stream(&crate::common::stream("data"), &mut &b"e"[..])
        .await
        .unwrap();
    let err = writer
        .commit(
            SnapshotCommit::new(RecoveryPoint::new(now)).depends_on(SnapshotId::new(now).unwrap()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(repo.snapshots(&pg).await.unwrap().len(), 3);

    // "last=1" keeps the delta, and with it the snapshot it is stored against.
    let policy: RetentionPolicy = "last=1".parse().unwrap();
    let plan = repo
        .plan_forget(&SnapshotFilter::new(), &policy, now)
        .await
        .unwrap();
    let kept: Vec<_> = plan.keep.iter().map(|(m, r)| (m.id, r.clone())).collect();
    assert_eq!(
        kept,
        [
            (full.id, vec![dr_core::KeepReason::Dependency]),
            (delta.id, vec![dr_core::KeepReason::Last]),
        ]
    );
    assert_eq!(
        plan.forget.iter().map(|m| m.id).collect::<Vec<_>>(),
        [other.id]
    );

    // Forgetting the base alone is refused and forgets nothing; with its delta it goes.
    let err = repo
        .forget_snapshots(&[full.id, other.id])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    assert!(err.to_string().contains(&delta.id.to_string()), "{err}");
    assert_eq!(repo.snapshots(&pg).await.unwrap().len(), 3);
    let report = repo.forget_snapshots(&[delta.id, full.id]).await.unwrap();
    assert_eq!(report.forgotten, [delta.id, full.id]);

    // A snapshot whose base went missing behind the repository's back is named by check.
    let mut writer = repo.begin(&pg, now).await.unwrap();
    writer
        .add_stream(&crate::common::stream("data"), &mut &b"f"[..])
        .await
        .unwrap();
    let orphan = writer
        .commit(SnapshotCommit::new(RecoveryPoint::new(now)).depends_on(other.id))
        .await
        .unwrap();
    backend
        .delete(&format!("snapshots/{}", other.id))
        .await
        .unwrap();
    let report = repo.check().await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.object == format!("snapshots/{}", orphan.id)
                && p.reason.contains(&other.id.to_string())),
        "{report:?}"
    );
}

#[tokio::test]
async fn check_names_missing_packs_and_unindexed_chunks() {
    let backend: Arc<dyn WriteBackend> = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), small()).await.unwrap();
    let pg = component("postgres/main");
    let first = backup_at(&repo, &pg, Timestamp::now(), &data(1, 600_000), &[]).await;
    assert!(repo.check().await.unwrap().is_ok());

    let pack = backend.list("data/").await.unwrap().remove(0).key;
    backend.delete(&pack).await.unwrap();
    let report = repo.check().await.unwrap();
    let name = pack.rsplit('/').next().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.object == format!("pack {name}")),
        "{report:?}"
    );

    for index in backend.list("index/").await.unwrap() {
        backend.delete(&index.key).await.unwrap();
    }
    let report = repo.check().await.unwrap();
    let stream = format!("stream data of snapshot {}", first.id);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.object == stream && p.reason.contains("in no index")),
        "{report:?}"
    );
    // Prune refuses to delete anything in a damaged repository.
    let err = repo.prune(&PruneOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(!backend.list("data/").await.unwrap().is_empty());
}

#[tokio::test]
async fn verify_can_read_a_fraction() {
    let repo = Repository::init(Arc::new(MemoryBackend::new()), small())
        .await
        .unwrap();
    backup_at(
        &repo,
        &component("postgres/main"),
        Timestamp::now(),
        &data(5, 3_000_000),
        &[],
    )
    .await;
    let all = repo.verify().await.unwrap();
    assert!(all.packs >= 4, "{all:?}");
    let part = repo
        .verify_with(VerifyOptions::fraction(0.25).unwrap())
        .await
        .unwrap();
    assert_eq!(part.packs, all.packs.div_ceil(4));
    assert!(part.damaged.is_empty());
    assert!(VerifyOptions::fraction(0.0).is_err());
    assert!(VerifyOptions::fraction(1.5).is_err());

    // Progress: bytes read, one report per object, ending at the total.
    let reported = std::sync::Mutex::new(Vec::new());
    let sink = |p: &dr_core::Progress| reported.lock().unwrap().push(p.clone());
    let again = repo
        .verify_reporting(VerifyOptions::ALL, Some(&sink))
        .await
        .unwrap();
    let reported = reported.into_inner().unwrap();
    assert_eq!(
        reported.len(),
        again.packs + again.segments + again.journals
    );
    let last = reported.last().unwrap();
    assert_eq!(Some(last.bytes_done), last.bytes_total);
    assert!(
        reported
            .windows(2)
            .all(|w| w[0].bytes_done < w[1].bytes_done)
    );
}

#[tokio::test]
async fn object_lock_needs_a_store_that_supports_it() {
    let lock = ObjectLock::new(RetentionMode::Governance, Duration::from_secs(3600));
    let err = Repository::init(Arc::new(MemoryBackend::new()), small().object_lock(lock))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
}

async fn s3_backend(server: &dr_testkit::S3) -> Arc<dyn WriteBackend> {
    crate::common::s3_backend(server, "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_backups_forget_prune_and_check_work() {
    let server = dr_testkit::S3::start().await.unwrap();
    let backend = s3_backend(&server).await;
    let repo = Repository::init(backend.clone(), small()).await.unwrap();
    let pg = component("postgres/main");
    let old = backup_at(
        &repo,
        &pg,
        hours_ago(Timestamp::now(), 2),
        &data(1, 500_000),
        &[],
    )
    .await;
    let new_bytes = data(2, 500_000);
    let new = backup_at(&repo, &pg, Timestamp::now(), &new_bytes, &[]).await;
    repo.forget_snapshots(&[old.id]).await.unwrap();
    let report = repo.prune(&PruneOptions::default()).await.unwrap();
    assert!(report.packs_deleted > 0, "{report:?}");
    let reopened = Repository::open(backend, Some(&Secret::password("pw")))
        .await
        .unwrap();
    assert_eq!(restore(&reopened, &new).await, new_bytes);
    assert!(reopened.check().await.unwrap().is_ok());
    assert!(reopened.verify().await.unwrap().damaged.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_keeps_backups_that_forget_and_prune_may_not_delete_yet() {
    let server = dr_testkit::S3::start_with(dr_testkit::S3Options::default().object_lock(true))
        .await
        .unwrap();
    let backend: Arc<dyn WriteBackend> = {
        let options = S3Options::new(server.bucket(), server.region())
            .endpoint(server.endpoint())
            .static_credentials(server.access_key_id(), server.secret_access_key())
            .object_lock(true);
        Arc::new(S3Backend::new(options).await.unwrap())
    };
    let lock = ObjectLock::new(RetentionMode::Compliance, Duration::from_secs(3600));
    let repo = Repository::init(backend.clone(), small().object_lock(lock))
        .await
        .unwrap();
    let pg = component("postgres/main");
    let bytes = data(4, 400_000);
    let m = backup_at(&repo, &pg, Timestamp::now(), &bytes, &[]).await;

    // With stolen credentials: forgetting and deleting fail to destroy it.
    let report = repo.forget_snapshots(&[m.id]).await.unwrap();
    assert_eq!(report.retained, [m.id]);
    assert!(report.forgotten.is_empty());
    let pack = backend.list("data/").await.unwrap().remove(0).key;
    let err = backend.delete(&pack).await.unwrap_err();
    assert!(matches!(err, Error::Retained { .. }), "{err}");
    // The packs of a backup that died are retained too: prune reports them, not an error.
    // Its stream is many packs long, more than a writer uploads at once, so
    // some are stored before it dies: those still uploading may be lost with it.
    let packs_of_kept = backend.list("data/").await.unwrap().len();
    let mut dead = repo.begin(&pg, Timestamp::now()).await.unwrap();
    dead.add_stream(&crate::common::stream("data"), &mut &data(5, 4_000_000)[..])
        .await
        .unwrap();
    drop(dead);
    settle(backend.as_ref(), packs_of_kept).await;
    let packs_before = backend.list("data/").await.unwrap().len();
    let pruned = repo.prune(&PruneOptions::default()).await.unwrap();
    assert!(pruned.packs_deleted > 0, "{pruned:?}");
    assert!(
        pruned.retained.iter().any(|key| key.starts_with("data/")),
        "{pruned:?}"
    );
    assert_eq!(backend.list("data/").await.unwrap().len(), packs_before);

    let reopened = Repository::open(backend, Some(&Secret::password("pw")))
        .await
        .unwrap();
    assert_eq!(restore(&reopened, &m).await, bytes);
    assert!(reopened.check().await.unwrap().is_ok());
}

#[tokio::test]
async fn archive_segments_can_be_forgotten() {
    use dr_core::{ArchiveSink, ArchiveSource};
    let repo = Repository::init(Arc::new(MemoryBackend::new()), small())
        .await
        .unwrap();
    let pg = component("postgres/main");
    let names: Vec<dr_core::SegmentName> = (1..=4)
        .map(|n| format!("00000001000000000000000{n}").parse().unwrap())
        .collect();
    for name in &names {
        repo.put_segment(&pg, name, &mut &b"wal"[..]).await.unwrap();
    }
    let report = repo.forget_segments(&pg, &names[..2]).await.unwrap();
    assert_eq!(report.forgotten, names[..2]);
    assert_eq!(repo.segments(&pg, "").await.unwrap(), names[2..]);
}

#[tokio::test]
async fn usage_counts_packs_archive_and_the_rest_from_one_listing() {
    use dr_core::ArchiveSink;
    let backend = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), small()).await.unwrap();
    let empty = repo.usage().await.unwrap();
    assert_eq!((empty.packs, empty.archive_objects), (0, 0));
    assert!(empty.metadata_bytes > 0, "the config and key are metadata");

    let pg = component("postgres/main");
    backup_at(&repo, &pg, Timestamp::now(), &data(7, 200_000), &[]).await;
    for name in ["000000010000000000000001", "000000010000000000000002"] {
        let name = name.parse().unwrap();
        repo.put_segment(&pg, &name, &mut &[9u8; 4096][..])
            .await
            .unwrap();
    }
    let usage = repo.usage().await.unwrap();
    let listed = |prefix: &'static str| {
        let backend = backend.clone();
        async move {
            let objects = backend.list(prefix).await.unwrap();
            (
                objects.len() as u64,
                objects.iter().map(|o| o.size).sum::<u64>(),
            )
        }
    };
    assert_eq!((usage.packs, usage.pack_bytes), listed("data/").await);
    assert!(usage.packs > 0);
    assert_eq!(
        (usage.archive_objects, usage.archive_bytes),
        listed("archive/").await
    );
    assert_eq!(usage.archive_objects, 2);
    let (_, all) = listed("").await;
    assert_eq!(usage.total_bytes(), all);
    assert!(
        usage.metadata_bytes > empty.metadata_bytes,
        "a snapshot and an index were added"
    );
}
