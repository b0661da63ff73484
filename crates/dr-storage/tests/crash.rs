//! A writing process killed with SIGKILL at random points loses nothing that
//! was committed and leaves nothing half-visible: afterwards `check` passes,
//! every listed snapshot restores exactly, and prune is not held up by the
//! dead writer's lock.
//!
//! The writer is this test binary run again as a child process (the ignored
//! test `writer_process`), so the kill lands in real I/O, not in a simulation.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dr_core::{RecoveryPoint, SnapshotCommit, SnapshotSink, SnapshotSourceExt, StreamName};
use dr_storage::{
    ChunkerParams, FsBackend, InitOptions, KdfParams, PruneOptions, Repository, Secret,
    SnapshotFilter, WriteBackend,
};
use tokio::io::AsyncReadExt;

const REPO_ENV: &str = "DRKIT_CRASH_TEST_REPO";
const PASSWORD: &str = "crash-test";

fn stream() -> StreamName {
    "data".parse().unwrap()
}

/// The bytes of the snapshot with this seed: 0.5 to 3 MB, partly shared
/// between seeds so that dedup is exercised.
fn data(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let len = 500_000 + (seed % 5) as usize * 600_000;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match (i / 65_536) % 3 {
                0 => (i / 65_536 % 251) as u8 ^ (i as u8),
                _ => x as u8,
            }
        })
        .collect()
}

async fn open(dir: &std::path::Path) -> Repository {
    let backend: Arc<dyn WriteBackend> = Arc::new(FsBackend::new(dir).unwrap());
    Repository::open(backend, Some(&Secret::password(PASSWORD)))
        .await
        .unwrap()
}

/// The child: backs up snapshots until it is killed, printing each commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the writer process of `killed_writers_lose_nothing_committed`, which runs it"]
async fn writer_process() {
    let dir = std::env::var(REPO_ENV).expect("run by killed_writers_lose_nothing_committed only");
    let base: u64 = std::env::var("DRKIT_CRASH_TEST_SEED")
        .unwrap()
        .parse()
        .unwrap();
    let repo = open(dir.as_ref()).await;
    let component = "postgres/main".parse().unwrap();
    for i in 0.. {
        let seed = base + i;
        let bytes = data(seed);
        let mut writer = repo
            .begin(&component, jiff::Timestamp::now())
            .await
            .unwrap();
        writer.add_stream(&stream(), &mut &bytes[..]).await.unwrap();
        let commit = SnapshotCommit::new(RecoveryPoint::new(jiff::Timestamp::now()))
            .label("seed", seed.to_string());
        let manifest = writer.commit(commit).await.unwrap();
        println!("committed {} {seed}", manifest.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_lose_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn WriteBackend> = Arc::new(FsBackend::new(dir.path()).unwrap());
    let options = InitOptions::encrypted(Secret::password(PASSWORD))
        .kdf(KdfParams::INSECURE_FAST)
        .chunker(ChunkerParams {
            min: 8 * 1024,
            avg: 32 * 1024,
            max: 128 * 1024,
        })
        .pack_size(512 * 1024);
    Repository::init(backend, options).await.unwrap();

    let mut rng = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill times seeded with {rng}");
    let mut next = move |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let committed = Arc::new(Mutex::new(Vec::new()));
    for round in 0..6u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::writer_process",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(REPO_ENV, dir.path())
            .env("DRKIT_CRASH_TEST_SEED", (round * 1000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let sink = committed.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("committed ") {
                    sink.lock().unwrap().push(rest.to_owned());
                }
            }
        });
        // Anywhere from start-up to several commits in.
        tokio::time::sleep(Duration::from_millis(200 + next(2500))).await;
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
    }

    let repo = open(dir.path())
        .await
        .with_lock_wait(Duration::from_secs(2));
    let check = repo.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    let listed = repo
        .snapshots_matching(&SnapshotFilter::new())
        .await
        .unwrap();
    let reported = committed.lock().unwrap().clone();
    assert!(!reported.is_empty(), "no writer got to commit anything");
    for line in &reported {
        let id = line.split(' ').next().unwrap();
        assert!(
            listed.iter().any(|m| m.id.to_string() == id),
            "committed snapshot {id} is missing"
        );
    }
    let restore_all = |repo: Repository, listed: Vec<dr_core::Manifest>| async move {
        for manifest in listed {
            let seed: u64 = manifest.labels["seed"].parse().unwrap();
            let mut out = Vec::new();
            repo.open_stream(&manifest.id, &stream())
                .await
                .unwrap()
                .read_to_end(&mut out)
                .await
                .unwrap();
            assert!(
                out == data(seed),
                "snapshot {} restored other bytes",
                manifest.id
            );
        }
    };
    restore_all(repo.clone(), listed.clone()).await;

    // The dead writers' locks do not hold prune up; afterwards all is still there.
    let report = repo.prune(&PruneOptions::default()).await.unwrap();
    assert_eq!(report.snapshots, listed.len());
    let check = repo.check().await.unwrap();
    assert!(check.is_ok(), "{check:?}");
    assert_eq!(check.unindexed_packs, 0);
    restore_all(repo, listed).await;
}
