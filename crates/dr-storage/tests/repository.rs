//! The repository through dr-core's traits: bit-exact round trips, dedup,
//! encryption, invisible unfinished backups, damage detected, archives.

use std::sync::Arc;
use std::time::Duration;

use dr_core::{
    ArchiveSink, ArchiveSource, ComponentId, ErrorKind, JournalSink, JournalSource, RecoveryPoint,
    SnapshotCommit, SnapshotSink, SnapshotSource, SnapshotSourceExt, StreamCheck,
};
use dr_storage::{
    Cipher, Error, FaultInjection, FaultOptions, FsBackend, InitOptions, MemoryBackend,
    ReadBackendExt, Repository, Retry, RetryOptions, Secret, WriteBackend,
};
use proptest::prelude::*;
use tokio::io::AsyncReadExt;

use crate::common::{data, read, read_checked, small, stored_bytes, stream};

fn component() -> ComponentId {
    crate::common::component("postgres/main")
}

async fn backup(repo: &Repository, streams: &[(&str, &[u8])]) -> dr_core::Manifest {
    crate::common::backup_at(repo, &component(), jiff::Timestamp::now(), streams, &[]).await
}

#[tokio::test]
async fn streams_round_trip_bit_exact() {
    for options in [small(), InitOptions::unencrypted().pack_size(256 * 1024)] {
        let backend = Arc::new(MemoryBackend::new());
        let repo = Repository::init(backend, options).await.unwrap();
        let big = data(1, 3 * 1024 * 1024 + 17);
        let manifest = backup(
            &repo,
            &[
                ("base.tar", &big),
                ("empty", b""),
                ("backup_manifest", b"{}"),
            ],
        )
        .await;
        assert_eq!(manifest.streams.len(), 3);
        assert_eq!(manifest.total_size(), big.len() as u64 + 2);
        assert_eq!(read(&repo, &manifest.id, "base.tar").await.unwrap(), big);
        assert_eq!(read(&repo, &manifest.id, "empty").await.unwrap(), b"");
        assert_eq!(
            repo.snapshots(&component()).await.unwrap(),
            vec![manifest.clone()]
        );
        assert_eq!(repo.manifest(&manifest.id).await.unwrap(), manifest);
        let other: ComponentId = "redis/master-0".parse().unwrap();
        assert!(repo.snapshots(&other).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn identical_data_is_stored_once() {
    let backend = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), small()).await.unwrap();
    let bytes = data(2, 2 * 1024 * 1024);
    backup(&repo, &[("a", &bytes)]).await;
    let first = stored_bytes(backend.as_ref(), "data/").await;
    assert!(
        first < bytes.len() as u64,
        "compressible data should shrink: {first}"
    );
    let second = backup(&repo, &[("a", &bytes), ("b", &bytes)]).await;
    assert_eq!(
        stored_bytes(backend.as_ref(), "data/").await,
        first,
        "nothing new to store"
    );
    assert_eq!(read(&repo, &second.id, "b").await.unwrap(), bytes);

    // A small change in place stores little.
    let mut changed = bytes.clone();
    for b in &mut changed[1_000_000..1_000_100] {
        *b = b.wrapping_add(1);
    }
    backup(&repo, &[("a", &changed)]).await;
    let third = stored_bytes(backend.as_ref(), "data/").await;
    assert!(
        third - first < 200 * 1024,
        "a 100-byte change stored {} bytes",
        third - first
    );
}

#[tokio::test]
async fn encrypted_repositories_need_the_right_secret() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(FsBackend::new(dir.path()).unwrap());
    let repo = Repository::init(backend.clone(), small()).await.unwrap();
    let bytes = data(3, 100_000);
    let manifest = backup(&repo, &[("s", &bytes)]).await;

    let wrong = Repository::open(backend.clone(), Some(&Secret::password("nope"))).await;
    assert!(
        matches!(wrong, Err(Error::WrongPassword { .. })),
        "{wrong:?}"
    );
    let none = Repository::open(backend.clone(), None).await;
    assert!(matches!(none, Err(Error::InvalidInput { .. })), "{none:?}");

    let reopened = Repository::open(backend.clone(), Some(&Secret::password("pw")))
        .await
        .unwrap();
    assert_eq!(read(&reopened, &manifest.id, "s").await.unwrap(), bytes);

    // Nothing readable is stored in the clear.
    for object in backend.list("").await.unwrap() {
        let raw = backend.get_all(&object.key).await.unwrap();
        assert!(
            !raw.windows(9).any(|w| w == b"log line "),
            "{} holds plaintext",
            object.key
        );
    }
}

#[tokio::test]
async fn an_unfinished_backup_is_invisible_and_the_next_one_succeeds() {
    let backend = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), small()).await.unwrap();
    let bytes = data(4, 1024 * 1024);
    {
        let mut writer = repo
            .begin(&component(), jiff::Timestamp::now())
            .await
            .unwrap();
        let mut reader: &[u8] = &bytes;
        writer.add_stream(&stream("s"), &mut reader).await.unwrap();
        // Dropped without commit: the process died here.
    }
    assert!(repo.snapshots(&component()).await.unwrap().is_empty());
    let mut writer = repo
        .begin(&component(), jiff::Timestamp::now())
        .await
        .unwrap();
    let mut reader: &[u8] = &bytes;
    writer.add_stream(&stream("s"), &mut reader).await.unwrap();
    writer.abort().await.unwrap();
    assert!(repo.snapshots(&component()).await.unwrap().is_empty());

    let manifest = backup(&repo, &[("s", &bytes)]).await;
    assert_eq!(repo.snapshots(&component()).await.unwrap().len(), 1);
    assert_eq!(read(&repo, &manifest.id, "s").await.unwrap(), bytes);
}

#[tokio::test]
async fn damaged_packs_fail_reads_instead_of_returning_wrong_bytes() {
    for options in [small(), InitOptions::unencrypted().pack_size(256 * 1024)] {
        let backend = Arc::new(MemoryBackend::new());
        let repo = Repository::init(backend.clone(), options).await.unwrap();
        let bytes = data(5, 1024 * 1024);
        let manifest = backup(&repo, &[("s", &bytes)]).await;
        let packs = backend.list("data/").await.unwrap();
        let victim = &packs[0].key;
        let mut raw = backend.get_all(victim).await.unwrap().to_vec();
        raw[100] ^= 0x01;
        backend
            .put(victim, raw.into(), dr_storage::PutOptions::OVERWRITE)
            .await
            .unwrap();
        // Without the stream's SHA-256 too: each piece is checked on its own.
        for check in [StreamCheck::Digest, StreamCheck::Pieces] {
            let err = read_checked(&repo, &manifest.id, "s", check)
                .await
                .expect_err("damage went unnoticed");
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
            assert!(err.to_string().contains("corrupt"), "{err}");
            // A reader of the stream that wraps what it read as its own I/O
            // trouble still reports damage, naming the pack and what to do.
            let err = dr_core::Error::io("reading s", err);
            assert_eq!(err.kind(), dr_core::ErrorKind::Corrupt, "{err}");
            let message = err.to_string();
            let pack = victim.rsplit('/').next().unwrap();
            assert!(
                message.contains(pack)
                    && message.contains(&format!("stream s of snapshot {}", manifest.id))
                    && message.contains("verify")
                    && message.contains("older snapshot"),
                "{message}"
            );
        }
        // A pack gone from the store is damage too.
        backend.delete(victim).await.unwrap();
        let err = read_checked(&repo, &manifest.id, "s", StreamCheck::Digest)
            .await
            .expect_err("a missing pack went unnoticed");
        let err = dr_core::Error::io("reading s", err);
        assert_eq!(err.kind(), dr_core::ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("missing from the store"), "{err}");
    }
}

#[tokio::test]
async fn streams_read_by_their_pieces_are_whole() {
    for options in [small(), InitOptions::unencrypted().pack_size(256 * 1024)] {
        let repo = Repository::init(Arc::new(MemoryBackend::new()), options)
            .await
            .unwrap();
        let bytes = data(6, 3 * 1024 * 1024 + 17);
        let manifest = backup(&repo, &[("s", &bytes), ("empty", b"")]).await;
        for name in ["s", "empty"] {
            let read = read_checked(&repo, &manifest.id, name, StreamCheck::Pieces)
                .await
                .unwrap();
            let expected: &[u8] = if name == "s" { &bytes } else { b"" };
            assert!(read == expected, "{name} read back differs");
        }
    }
}

#[tokio::test]
async fn missing_snapshots_and_streams_are_not_found() {
    let repo = Repository::init(Arc::new(MemoryBackend::new()), small())
        .await
        .unwrap();
    let manifest = backup(&repo, &[("s", b"x")]).await;
    let missing = dr_core::SnapshotId::new(jiff::Timestamp::now()).unwrap();
    assert_eq!(
        repo.manifest(&missing).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let err = repo
        .open_stream(&manifest.id, &stream("nope"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn a_repository_is_created_once_and_newer_formats_are_refused() {
    let backend = Arc::new(MemoryBackend::new());
    Repository::init(backend.clone(), small()).await.unwrap();
    let again = Repository::init(backend.clone(), small()).await;
    assert!(
        matches!(again, Err(Error::AlreadyExists { .. })),
        "{again:?}"
    );

    rewrite_config(&backend, |v| v["format"] = 99.into()).await;
    let err = Repository::open(backend, Some(&Secret::password("pw")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { found: 99, .. }),
        "{err:?}"
    );
}

/// A repository of format 2 (its objects sealed with XChaCha20-Poly1305, its
/// config naming no cipher) still opens, reads and takes backups; a format
/// 3 repository names its cipher, AES-256-GCM unless asked otherwise, and
/// one whose config drops it is refused as damaged.
#[tokio::test]
async fn both_ciphers_read_back_and_format_2_repositories_still_open() {
    let payload = data(11, 3 << 20);
    for cipher in [Cipher::Aes256GcmDerived, Cipher::XChaCha20Poly1305] {
        let backend = Arc::new(MemoryBackend::new());
        let repo = Repository::init(backend.clone(), small().cipher(cipher))
            .await
            .unwrap();
        let first = backup(&repo, &[("a", &payload)]).await;
        let config: serde_json::Value =
            serde_json::from_slice(&backend.get_all("config").await.unwrap()).unwrap();
        assert_eq!(config["format"], 3);
        assert_eq!(config["cipher"], serde_json::to_value(cipher).unwrap());
        drop(repo);

        if cipher == Cipher::XChaCha20Poly1305 {
            // As the format 2 build wrote it.
            rewrite_config(&backend, |v| {
                v["format"] = 2.into();
                v.as_object_mut().unwrap().remove("cipher");
            })
            .await;
        }
        let repo = Repository::open(backend.clone(), Some(&Secret::password("pw")))
            .await
            .unwrap();
        assert_eq!(
            read(&repo, &first.id, "a").await.unwrap(),
            payload,
            "{cipher}"
        );
        let second = backup(&repo, &[("b", &payload[..1 << 20])]).await;
        assert_eq!(
            read(&repo, &second.id, "b").await.unwrap(),
            payload[..1 << 20],
            "{cipher}"
        );
        drop(repo);

        // The cipher dropped from a format 3 config: damage, not a guess.
        rewrite_config(&backend, |v| {
            v["format"] = 3.into();
            v.as_object_mut().unwrap().remove("cipher");
        })
        .await;
        let err = Repository::open(backend, Some(&Secret::password("pw")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("does not name a cipher"), "{err}");
    }
}

/// Edits the repository's config in place.
async fn rewrite_config(backend: &MemoryBackend, edit: impl Fn(&mut serde_json::Value)) {
    let config = backend.get_all("config").await.unwrap();
    let mut value: serde_json::Value = serde_json::from_slice(&config).unwrap();
    edit(&mut value);
    backend
        .put(
            "config",
            serde_json::to_vec(&value).unwrap().into(),
            dr_storage::PutOptions::OVERWRITE,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn archive_segments_are_write_once() {
    let repo = Repository::init(Arc::new(MemoryBackend::new()), small())
        .await
        .unwrap();
    let c = component();
    let seg = data(6, 16 * 1024 * 1024);
    let name: dr_core::SegmentName = "000000010000000000000003".parse().unwrap();
    let info = repo
        .put_segment(&c, &name, &mut seg.as_slice())
        .await
        .unwrap();
    assert_eq!(info.size, seg.len() as u64);
    // The same bytes again: fine. Other bytes: refused, original kept.
    repo.put_segment(&c, &name, &mut seg.as_slice())
        .await
        .unwrap();
    let err = repo
        .put_segment(&c, &name, &mut &b"other"[..])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let history: dr_core::SegmentName = "00000002.history".parse().unwrap();
    repo.put_segment(
        &c,
        &history,
        &mut &b"1\t0/3000000\tno recovery target\n"[..],
    )
    .await
    .unwrap();

    assert_eq!(
        repo.segments(&c, "").await.unwrap(),
        vec![name.clone(), history.clone()]
    );
    assert_eq!(
        repo.segments(&c, "00000001").await.unwrap(),
        vec![name.clone()]
    );
    let mut back = Vec::new();
    repo.open_segment(&c, &name)
        .await
        .unwrap()
        .read_to_end(&mut back)
        .await
        .unwrap();
    assert_eq!(back, seg);
    let missing: dr_core::SegmentName = "000000010000000000000004".parse().unwrap();
    assert_eq!(
        repo.open_segment(&c, &missing).await.err().unwrap().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn journals_append_in_place_and_reopen_at_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(FsBackend::new(dir.path()).unwrap());
    let repo = Repository::init(backend.clone(), small()).await.unwrap();
    let c = component();
    let name: dr_core::SegmentName = "000000010000000000000003".parse().unwrap();
    let (a, b, tail) = (data(1, 5000), data(2, 70_000), data(3, 300));

    let journals = repo
        .segment_journals()
        .expect("a directory appends in place");
    let mut journal = journals.open_journal(&c, &name, 1 << 20).await.unwrap();
    journal.append(0, &a).await.unwrap();
    journal.append(5000, &b).await.unwrap();
    drop(journal);
    let on_disk =
        std::fs::metadata(dir.path().join("journal/postgres/main").join(name.as_str())).unwrap();
    assert_eq!(on_disk.len(), 1 << 20, "allocated up front");

    // Reopened (as after a restart), it appends after what it holds.
    let mut journal = journals.open_journal(&c, &name, 1 << 20).await.unwrap();
    journal.append(75_000, &tail).await.unwrap();
    let records = journals.read_journal(&c, &name).await.unwrap();
    let spans: Vec<(u64, u64)> = records.iter().map(|r| (r.start, r.end())).collect();
    assert_eq!(spans, vec![(0, 5000), (5000, 75_000), (75_000, 75_300)]);
    assert_eq!(
        [a, b, tail].concat(),
        records
            .iter()
            .flat_map(|r| r.data.clone())
            .collect::<Vec<_>>()
    );

    assert_eq!(journals.journals(&c, "").await.unwrap(), vec![name.clone()]);

    // Read-only, the journals are read all the same, and never written.
    let read_only = Repository::open_read_only(
        backend.clone(),
        Some(&Secret::password(crate::common::PASSWORD)),
    )
    .await
    .unwrap();
    let read_only_journals = read_only.segment_journals().unwrap();
    assert_eq!(
        read_only_journals.read_journal(&c, &name).await.unwrap(),
        records
    );
    let refused = read_only_journals
        .open_journal(&c, &name, 1 << 20)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.kind(), ErrorKind::Unsupported, "{refused}");
    assert_eq!(
        read_only_journals
            .remove_journal(&c, &name)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unsupported
    );
    assert!(
        repo.segments(&c, "").await.unwrap().is_empty(),
        "a journal is not a segment"
    );
    let report = repo.verify().await.unwrap();
    assert_eq!((report.journals, report.damaged.len()), (1, 0));
    assert_eq!(repo.check().await.unwrap().journals, 1);

    // Damage inside a whole record, with another one after it, is found.
    let path = dir.path().join("journal/postgres/main").join(name.as_str());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let err = journals.read_journal(&c, &name).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(repo.verify().await.unwrap().damaged.len(), 1);

    // Forgetting the segment takes its journal along; removing is idempotent.
    repo.forget_segments(&c, std::slice::from_ref(&name))
        .await
        .unwrap();
    assert!(journals.journals(&c, "").await.unwrap().is_empty());
    journals.remove_journal(&c, &name).await.unwrap();
    assert_eq!(
        journals.read_journal(&c, &name).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // An object store has none: the caller stores pieces instead.
    let memory = Repository::init(Arc::new(MemoryBackend::new()), small())
        .await
        .unwrap();
    assert!(memory.segment_journals().is_none());
}

#[tokio::test]
async fn a_directory_behind_wrappers_still_keeps_journals() {
    let dir = tempfile::tempdir().unwrap();
    let wrapped = Retry::new(
        FaultInjection::new(FsBackend::new(dir.path()).unwrap(), FaultOptions::new(3)),
        RetryOptions::new(2, Duration::from_millis(1), Duration::from_millis(4)),
    );
    let repo = Repository::init(Arc::new(wrapped), small()).await.unwrap();
    let c = component();
    let name: dr_core::SegmentName = "000000010000000000000007".parse().unwrap();
    let journals = repo
        .segment_journals()
        .expect("wrappers forward the directory's in-place writes");
    let mut journal = journals.open_journal(&c, &name, 64 * 1024).await.unwrap();
    journal.append(0, &data(4, 3000)).await.unwrap();
    let records = journals.read_journal(&c, &name).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].data, data(4, 3000));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn random_streams_round_trip(seed in any::<u64>(), len in 0usize..600_000, copies in 1usize..3) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let backend = Arc::new(MemoryBackend::new());
            let repo = Repository::init(backend.clone(), small()).await.unwrap();
            let bytes = data(seed, len);
            let streams: Vec<(String, Vec<u8>)> = (0..copies).map(|i| (format!("s{i}"), bytes.clone())).collect();
            let refs: Vec<(&str, &[u8])> = streams.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
            let manifest = backup(&repo, &refs).await;
            for (name, expected) in &streams {
                assert_eq!(&read(&repo, &manifest.id, name).await.unwrap(), expected);
            }
            let one_copy = stored_bytes(backend.as_ref(), "data/").await;
            backup(&repo, &refs).await;
            assert_eq!(stored_bytes(backend.as_ref(), "data/").await, one_copy);
        });
    }
}

#[tokio::test]
async fn verify_names_every_damaged_object() {
    let backend = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), small()).await.unwrap();
    backup(&repo, &[("s", &data(7, 2 * 1024 * 1024))]).await;
    let clean = repo.verify().await.unwrap();
    assert!(clean.packs >= 2 && clean.blobs > 0, "{clean:?}");
    assert!(clean.damaged.is_empty(), "{clean:?}");

    let packs = backend.list("data/").await.unwrap();
    let (flipped, truncated) = (&packs[0].key, &packs[1].key);
    let mut raw = backend.get_all(flipped).await.unwrap().to_vec();
    raw[10] ^= 0x80;
    backend
        .put(flipped, raw.into(), dr_storage::PutOptions::OVERWRITE)
        .await
        .unwrap();
    let raw = backend.get_all(truncated).await.unwrap();
    backend
        .put(
            truncated,
            raw.slice(..raw.len() / 2),
            dr_storage::PutOptions::OVERWRITE,
        )
        .await
        .unwrap();

    let report = repo.verify().await.unwrap();
    let named: std::collections::BTreeSet<&str> = report
        .damaged
        .iter()
        .map(|d| d.object.split('#').next().unwrap())
        .collect();
    assert_eq!(
        named,
        [flipped.as_str(), truncated.as_str()].into_iter().collect(),
        "{report:?}"
    );
    assert!(
        report
            .damaged
            .iter()
            .any(|d| d.object.starts_with(&format!("{flipped}#"))),
        "the damaged blob is named"
    );
}

/// Components named the way their systems name them (a LiveKit room with
/// spaces and an emoji, a Redis-like name with ':', a name like another's
/// storage form) keep their snapshots and archives apart, on a directory
/// and on S3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_with_any_names_keep_their_data_apart() {
    let dir = tempfile::tempdir().unwrap();
    let server = dr_testkit::S3::start().await.unwrap();
    let s3 = dr_storage::S3Options::new(server.bucket(), server.region())
        .endpoint(server.endpoint())
        .static_credentials(server.access_key_id(), server.secret_access_key());
    let backends: [Arc<dyn dr_storage::WriteBackend>; 2] = [
        Arc::new(dr_storage::FsBackend::new(dir.path()).unwrap()),
        Arc::new(dr_storage::S3Backend::new(s3).await.unwrap()),
    ];
    let names = [
        "livekit/Team Standup 🎥",
        "livekit/Team%20Standup%20%F0%9F%8E%A5",
        "redis/user:1000",
        "k8s/prod/.config",
    ];
    for backend in backends {
        let repo = Repository::init(backend, small()).await.unwrap();
        let segment: dr_core::SegmentName = "appendonly.aof.1.incr.aof".parse().unwrap();
        for (i, name) in names.iter().enumerate() {
            let component: ComponentId = name.parse().unwrap();
            let bytes = data(40 + i as u64, 10_000);
            repo.put_segment(&component, &segment, &mut bytes.as_slice())
                .await
                .unwrap();
            let mut writer = repo
                .begin(&component, jiff::Timestamp::now())
                .await
                .unwrap();
            writer
                .add_stream(&stream("rooms/state.json"), &mut bytes.as_slice())
                .await
                .unwrap();
            writer
                .commit(SnapshotCommit::new(RecoveryPoint::new(
                    jiff::Timestamp::now(),
                )))
                .await
                .unwrap();
        }
        for (i, name) in names.iter().enumerate() {
            let component: ComponentId = name.parse().unwrap();
            let mut stored = Vec::new();
            repo.open_segment(&component, &segment)
                .await
                .unwrap()
                .read_to_end(&mut stored)
                .await
                .unwrap();
            assert_eq!(stored, data(40 + i as u64, 10_000), "{name}");
            let listed = repo.segments(&component, "").await.unwrap();
            assert_eq!(listed, vec![segment.clone()], "{name}");
            let snapshots = repo.snapshots(&component).await.unwrap();
            assert_eq!(snapshots.len(), 1, "{name}");
            assert_eq!(snapshots[0].component, component);
        }
        assert!(repo.check().await.unwrap().is_ok());
    }
}

#[tokio::test]
async fn archive_coverage_is_replaced_and_kept_apart_per_component() {
    use dr_core::{ArchiveCoverage, Lsn, Position};

    let backend = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), small()).await.unwrap();
    let (outer, inner): (ComponentId, ComponentId) = (
        "k8s/prod".parse().unwrap(),
        "k8s/prod/.latest".parse().unwrap(),
    );
    assert_eq!(repo.coverage(&outer).await.unwrap(), None);
    let at = |lsn: u64, secs: i64| ArchiveCoverage {
        position: Position::Postgres {
            system_identifier: 7,
            timeline: 1,
            lsn: Lsn::new(lsn),
        },
        seen_at: jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap(),
        synchronous: lsn.is_multiple_of(2),
    };
    repo.record_coverage(&outer, &at(100, 0)).await.unwrap();
    repo.record_coverage(&outer, &at(201, 5)).await.unwrap();
    repo.record_coverage(&inner, &at(50, 9)).await.unwrap();
    assert_eq!(repo.coverage(&outer).await.unwrap(), Some(at(201, 5)));
    assert_eq!(repo.coverage(&inner).await.unwrap(), Some(at(50, 9)));
    // Sealed like everything else: a damaged record is an error, not a guess.
    let key = "coverage/k8s/prod/.latest";
    let mut raw = backend.get_all(key).await.unwrap().to_vec();
    raw[20] ^= 1;
    backend
        .put(key, raw.into(), dr_storage::PutOptions::OVERWRITE)
        .await
        .unwrap();
    let err = repo.coverage(&outer).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

/// Streams stored at once on one writer read back whole, their shared
/// chunks stored once; a name twice or one already added is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_stored_at_once_read_back() {
    let backend = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend.clone(), small()).await.unwrap();
    let a = data(11, 2 * 1024 * 1024 + 5);
    let b = data(12, 1024 * 1024);
    // The same bytes as `a`: stored once.
    let c = a.clone();
    let mut writer = repo
        .begin(&component(), jiff::Timestamp::now())
        .await
        .unwrap();
    let (mut ra, mut rb, mut rc) = (a.as_slice(), b.as_slice(), c.as_slice());
    let entries = writer
        .add_streams(vec![
            (
                stream("a"),
                &mut ra as &mut (dyn tokio::io::AsyncRead + Send + Unpin),
            ),
            (stream("b"), &mut rb),
            (stream("c"), &mut rc),
        ])
        .await
        .unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(entries[0].sha256, entries[2].sha256);
    let mut again = b"x".as_slice();
    let twice = writer
        .add_streams(vec![(
            stream("a"),
            &mut again as &mut (dyn tokio::io::AsyncRead + Send + Unpin),
        )])
        .await
        .unwrap_err();
    assert_eq!(twice.kind(), ErrorKind::InvalidInput, "{twice}");
    let (mut x, mut y) = (b"1".as_slice(), b"2".as_slice());
    let duplicate = writer
        .add_streams(vec![
            (
                stream("d"),
                &mut x as &mut (dyn tokio::io::AsyncRead + Send + Unpin),
            ),
            (stream("d"), &mut y),
        ])
        .await
        .unwrap_err();
    assert_eq!(duplicate.kind(), ErrorKind::InvalidInput, "{duplicate}");
    let manifest = writer
        .commit(SnapshotCommit::new(RecoveryPoint::new(
            jiff::Timestamp::now(),
        )))
        .await
        .unwrap();
    for (name, bytes) in [("a", &a), ("b", &b), ("c", &c)] {
        assert_eq!(&read(&repo, &manifest.id, name).await.unwrap(), bytes);
    }
    let packed = stored_bytes(backend.as_ref(), "data/").await;
    assert!(
        packed < (a.len() + b.len()) as u64 + (a.len() / 2) as u64,
        "{packed} bytes packed: the copy of a was stored again"
    );
}
