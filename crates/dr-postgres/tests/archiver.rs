//! The WAL archiver against real PostgreSQL servers from dr-testkit:
//! segments byte for byte, pieces within their interval, whole segments
//! stored in the background (slow or failing), synchronous commits that
//! survive kill -9, resuming without gaps or overlaps, a timeline switch
//! after promotion, refused credentials and clusters, and the archiver of a
//! cluster holding WAL on the replicas through a failover.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{WAIT, flushed, lsn};
use dr_core::{
    ArchiveSink, ArchiveSource, ByteStream, ComponentId, ErrorKind, JournalRecord, JournalSink,
    JournalSource, Lsn, SegmentInfo, SegmentJournal, SegmentName,
};
use dr_postgres::{
    ArchiveListing, ArchivedWal, ArchiverHandle, ArchiverOptions, ArchiverState, Coverage,
    DEFAULT_SEGMENT_SIZE, PgCluster, PgMember, StandbySlotState, Tls, WalArchiver, WalSegment,
    fetch_wal, list_archive,
};
use dr_storage::{
    FsBackend, InitOptions, KdfParams, MemoryBackend, Repository, RepositoryJournals, Secret,
    WriteBackend,
};
use dr_testkit::eventually;
use dr_testkit::{CapturedEvents, Postgres, PostgresOptions};

const SIZE: dr_postgres::WalSegmentSize = DEFAULT_SEGMENT_SIZE;

async fn repository(backend: Arc<dyn WriteBackend>) -> Arc<Repository> {
    let options = InitOptions::encrypted(Secret::password("archive")).kdf(KdfParams::INSECURE_FAST);
    Arc::new(Repository::init(backend, options).await.unwrap())
}

async fn memory_repository() -> Arc<Repository> {
    repository(Arc::new(MemoryBackend::new())).await
}

/// Quick pieces, statuses and reconnects, for tests.
fn options(slot: &str) -> ArchiverOptions {
    ArchiverOptions::new()
        .slot(slot)
        .piece_interval(Some(Duration::from_millis(200)))
        .status_interval(Duration::from_secs(1))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
}

/// An archiver into `repo`, with its segment journals where it has them.
fn archiver(
    pg: &Postgres,
    repo: &Arc<Repository>,
    component: &ComponentId,
    options: ArchiverOptions,
) -> ArchiverHandle {
    let archiver = WalArchiver::new(
        pg.config("postgres"),
        Tls::none(),
        repo.clone(),
        component.clone(),
        options,
    );
    match repo.segment_journals() {
        Some(journals) => archiver.journals(Arc::new(journals)),
        None => archiver,
    }
    .spawn()
}

/// What `repo` holds for `component`, its journals read where it has them.
async fn list(repo: &Repository, component: &ComponentId) -> ArchiveListing {
    let journals = repo.segment_journals();
    list_archive(repo, journals.as_ref().map(|j| j as _), component, SIZE)
        .await
        .unwrap()
}

fn pg_wal_file(data_dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(data_dir.join("pg_wal").join(name)).unwrap()
}

async fn fetch(repo: &Repository, component: &ComponentId, name: &str) -> Vec<u8> {
    let journals = repo.segment_journals();
    fetch_wal(
        repo,
        journals.as_ref().map(|j| j as _),
        component,
        name,
        SIZE,
    )
    .await
    .unwrap()
    .unwrap_or_else(|| panic!("{name} is not archived"))
    .to_vec()
}

/// Every piece of every segment, by segment: (start, end), in name order.
async fn pieces(
    repo: &Repository,
    component: &ComponentId,
) -> BTreeMap<WalSegment, Vec<(u32, u32)>> {
    let mut pieces: BTreeMap<WalSegment, Vec<(u32, u32)>> = BTreeMap::new();
    for name in repo.segments(component, "").await.unwrap() {
        if let Some(ArchivedWal::Piece {
            segment,
            start,
            end,
        }) = ArchivedWal::parse(name.as_str(), SIZE)
        {
            pieces.entry(segment).or_default().push((start, end));
        }
    }
    pieces
}

/// The archive holds the WAL of `timeline` without gaps or overlaps: every
/// segment but the last complete, each segment's pieces back to back from 0.
async fn assert_contiguous(
    repo: &Repository,
    component: &ComponentId,
    listing: &ArchiveListing,
    timeline: u32,
) {
    let segments: Vec<(WalSegment, Coverage)> = listing
        .segments
        .iter()
        .filter(|(s, _)| s.timeline == timeline)
        .map(|(s, c)| (*s, *c))
        .collect();
    assert!(!segments.is_empty());
    for pair in segments.windows(2) {
        assert_eq!(
            pair[1].0.number,
            pair[0].0.number + 1,
            "a missing segment after {:?}",
            pair[0]
        );
        assert_eq!(
            pair[0].1,
            Coverage::Complete,
            "{:?} is not complete",
            pair[0].0
        );
    }
    for (segment, mut ranges) in pieces(repo, component).await {
        if segment.timeline != timeline {
            continue;
        }
        ranges.sort();
        let mut end = 0;
        for (start, stop) in ranges {
            assert_eq!(start, end, "pieces of {segment:?} overlap or leave a gap");
            end = stop;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_and_pieces_match_pg_wal() {
    let pg = Postgres::start().await.unwrap();
    let control = pg.connect("postgres").await.unwrap();
    let repo = memory_repository().await;
    let component: ComponentId = "postgres/stream".parse().unwrap();
    let handle = archiver(&pg, &repo, &component, options("drkit_stream"));

    // A write workload while streaming, then a segment switch.
    control
        .batch_execute("CREATE TABLE t (id int, pad text)")
        .await
        .unwrap();
    for batch in 0..5 {
        control
            .batch_execute(&format!(
                "INSERT INTO t SELECT g, repeat('x', 300) FROM generate_series({}, {}) g",
                batch * 4000,
                batch * 4000 + 3999
            ))
            .await
            .unwrap();
    }
    let switched = lsn(&control, "SELECT pg_switch_wal()::text").await;
    let last_full = WalSegment::containing(1, Lsn::new(switched.as_u64() - 1), SIZE);
    flushed(&handle, last_full.end(SIZE), Duration::from_secs(20))
        .await
        .unwrap();

    // Every complete segment is the server's file, byte for byte.
    let listing = list(&repo, &component).await;
    let complete: Vec<WalSegment> = listing
        .segments
        .iter()
        .filter(|(_, c)| **c == Coverage::Complete)
        .map(|(s, _)| *s)
        .collect();
    assert!(complete.contains(&last_full), "{listing:?}");
    for segment in &complete {
        let name = segment.file_name(SIZE);
        assert!(
            fetch(&repo, &component, &name).await == pg_wal_file(&pg.data_dir(), &name),
            "{name} differs from pg_wal"
        );
    }
    assert_contiguous(&repo, &component, &listing, 1).await;

    // A little more WAL: it is archived as a piece within the interval, and
    // restore_command's view is the streamed prefix padded with zeros.
    control
        .batch_execute("INSERT INTO t SELECT g, 'tail' FROM generate_series(1, 100) g")
        .await
        .unwrap();
    let committed = lsn(&control, "SELECT pg_current_wal_lsn()::text").await;
    let started = Instant::now();
    let status = flushed(&handle, committed, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(status.pieces_stored > 0);
    let open = WalSegment::containing(1, committed, SIZE);
    let listing = list(&repo, &component).await;
    let Some(Coverage::Partial { end }) = listing.segments.get(&open).copied() else {
        panic!("{open:?} is not in pieces: {listing:?}");
    };
    let offset = (committed.as_u64() - open.start(SIZE).as_u64()) as usize;
    assert!(end as usize >= offset);
    let assembled = fetch(&repo, &component, &open.file_name(SIZE)).await;
    assert_eq!(assembled.len() as u64, SIZE.bytes());
    let on_disk = pg_wal_file(&pg.data_dir(), &open.file_name(SIZE));
    assert!(
        assembled[..end as usize] == on_disk[..end as usize],
        "the pieces differ from pg_wal"
    );
    assert!(assembled[end as usize..].iter().all(|&b| b == 0));

    // Idle, the lag goes to zero, and the slot holds back only what is not archived.
    let idle = eventually("the lag to reach zero", WAIT, || {
        let status = handle.status();
        std::future::ready(
            (status.lag_bytes() == 0 && status.lag() < Duration::from_secs(1)).then_some(status),
        )
    })
    .await;
    assert_eq!(idle.state, ArchiverState::Streaming);
    assert_eq!(idle.timeline, Some(1));
    assert!(
        idle.slot_retained_bytes.is_some_and(|b| b < SIZE.bytes()),
        "{idle:?}"
    );
    assert!(!idle.slot_warning);
    let restart = eventually("the slot to follow the archive", WAIT, || async {
        let row = control
            .query_one(
                "SELECT restart_lsn::text, slot_type FROM pg_replication_slots \
                 WHERE slot_name = 'drkit_stream'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(1), "physical");
        let restart: Lsn = row.get::<_, String>(0).parse().unwrap();
        (restart >= committed).then_some(restart)
    })
    .await;
    assert!(restart <= handle.status().flushed);

    let last = handle.shutdown().await.unwrap();
    assert_eq!(last.state, ArchiverState::Stopped);
    assert!(last.flushed >= committed);
    assert!(last.segments_stored >= complete.len() as u64, "{last:?}");
    assert!(last.last_error.is_none(), "{last:?}");
}

/// Which WAL stores a [`StoreFaults`] slows and fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Faulty {
    /// Whole segments.
    Segments,
    /// Pieces stored as objects (the archive keeps no journals).
    Pieces,
    /// Records appended to segment journals; of a failing one, the first
    /// half is appended before the failure is reported.
    JournalRecords,
}

/// The repository, with one kind of WAL store slowed by `delay`, and the
/// stores of that kind numbered in `failing` (counting from 0) failing: a
/// slow or failing store, as the archiver meets it. Other stores pass
/// straight through.
struct StoreFaults {
    repo: Arc<Repository>,
    faulty: Faulty,
    faults: Arc<Faults>,
}

struct Faults {
    delay: Duration,
    stores: AtomicUsize,
    failing: std::ops::Range<usize>,
}

impl Faults {
    /// Counts one store of the faulty kind, after the delay: whether it fails.
    async fn fails(&self) -> bool {
        let n = self.stores.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.failing.contains(&n)
    }
}

fn injected() -> dr_core::Error {
    dr_core::Error::Unavailable {
        target: "the test's store".into(),
        source: "an injected failure".into(),
    }
}

impl StoreFaults {
    /// Whole segments slowed, the first `failures` of them failing.
    fn whole_segments(repo: &Arc<Repository>, delay: Duration, failures: usize) -> Arc<Self> {
        Self::new(repo, Faulty::Segments, delay, 0..failures)
    }

    /// Pieces (objects or journal records) slowed, the `n`-th of them failing.
    fn pieces(repo: &Arc<Repository>, faulty: Faulty, delay: Duration, n: usize) -> Arc<Self> {
        Self::new(repo, faulty, delay, n..n + 1)
    }

    fn new(
        repo: &Arc<Repository>,
        faulty: Faulty,
        delay: Duration,
        failing: std::ops::Range<usize>,
    ) -> Arc<Self> {
        Arc::new(Self {
            repo: repo.clone(),
            faulty,
            faults: Arc::new(Faults {
                delay,
                stores: AtomicUsize::new(0),
                failing,
            }),
        })
    }

    fn stores(&self) -> usize {
        self.faults.stores.load(Ordering::SeqCst)
    }

    /// The repository's journals: a test of [`Faulty::JournalRecords`]
    /// runs over a directory.
    fn journals(&self) -> RepositoryJournals {
        self.repo
            .segment_journals()
            .expect("journal faults need a store that writes in place")
    }
}

#[dr_core::async_trait]
impl ArchiveSink for StoreFaults {
    async fn put_segment(
        &self,
        component: &ComponentId,
        name: &SegmentName,
        data: &mut (dyn tokio::io::AsyncRead + Send + Unpin),
    ) -> dr_core::Result<SegmentInfo> {
        let kind = match ArchivedWal::parse(name.as_str(), SIZE) {
            Some(ArchivedWal::Segment(_)) => Some(Faulty::Segments),
            Some(ArchivedWal::Piece { .. }) => Some(Faulty::Pieces),
            _ => None,
        };
        if kind == Some(self.faulty) && self.faults.fails().await {
            return Err(injected());
        }
        self.repo.put_segment(component, name, data).await
    }

    async fn record_coverage(
        &self,
        component: &ComponentId,
        coverage: &dr_core::ArchiveCoverage,
    ) -> dr_core::Result<()> {
        self.repo.record_coverage(component, coverage).await
    }
}

/// The repository's journals, their records failing as `faulty` says (the
/// archiver is handed them only for [`Faulty::JournalRecords`]).
#[dr_core::async_trait]
impl JournalSink for StoreFaults {
    async fn open_journal(
        &self,
        component: &ComponentId,
        name: &SegmentName,
        capacity: u64,
    ) -> dr_core::Result<Box<dyn SegmentJournal>> {
        let inner = self
            .journals()
            .open_journal(component, name, capacity)
            .await?;
        Ok(Box::new(FaultyJournal {
            inner,
            faults: self.faults.clone(),
        }))
    }

    async fn remove_journal(
        &self,
        component: &ComponentId,
        name: &SegmentName,
    ) -> dr_core::Result<()> {
        self.journals().remove_journal(component, name).await
    }
}

#[dr_core::async_trait]
impl JournalSource for StoreFaults {
    async fn journals(
        &self,
        component: &ComponentId,
        prefix: &str,
    ) -> dr_core::Result<Vec<SegmentName>> {
        self.journals().journals(component, prefix).await
    }

    async fn read_journal(
        &self,
        component: &ComponentId,
        name: &SegmentName,
    ) -> dr_core::Result<Vec<JournalRecord>> {
        self.journals().read_journal(component, name).await
    }
}

struct FaultyJournal {
    inner: Box<dyn SegmentJournal>,
    faults: Arc<Faults>,
}

#[dr_core::async_trait]
impl SegmentJournal for FaultyJournal {
    async fn append(&mut self, start: u64, data: &[u8]) -> dr_core::Result<()> {
        if self.faults.fails().await {
            // Half of it made it to disk.
            self.inner.append(start, &data[..data.len() / 2]).await?;
            return Err(injected());
        }
        self.inner.append(start, data).await
    }
}

#[dr_core::async_trait]
impl ArchiveSource for StoreFaults {
    async fn segments(
        &self,
        component: &ComponentId,
        prefix: &str,
    ) -> dr_core::Result<Vec<SegmentName>> {
        self.repo.segments(component, prefix).await
    }

    async fn open_segment(
        &self,
        component: &ComponentId,
        name: &SegmentName,
    ) -> dr_core::Result<ByteStream> {
        self.repo.open_segment(component, name).await
    }

    async fn coverage(
        &self,
        component: &ComponentId,
    ) -> dr_core::Result<Option<dr_core::ArchiveCoverage>> {
        self.repo.coverage(component).await
    }
}

/// An archiver into `archive`, handed its journals when they are what fails.
fn faulty_archiver(
    pg: &Postgres,
    archive: &Arc<StoreFaults>,
    component: &ComponentId,
    options: ArchiverOptions,
) -> ArchiverHandle {
    let archiver = WalArchiver::new(
        pg.config("postgres"),
        Tls::none(),
        archive.clone(),
        component.clone(),
        options,
    );
    match archive.faulty {
        Faulty::JournalRecords => archiver.journals(archive.clone()),
        Faulty::Segments | Faulty::Pieces => archiver,
    }
    .spawn()
}

/// Whether the archive holds `segment` stored whole (not only in pieces).
async fn stored_whole(repo: &Repository, component: &ComponentId, segment: WalSegment) -> bool {
    let name = segment.file_name(SIZE);
    let names = repo.segments(component, &name).await.unwrap();
    names.iter().any(|n| n.as_str() == name)
}

/// Some WAL, archived in pieces, then a segment switch: the segment completed.
async fn pieces_then_switch(
    control: &tokio_postgres::Client,
    handle: &ArchiverHandle,
) -> WalSegment {
    control
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS t (id int, pad text); \
             INSERT INTO t SELECT g, repeat('p', 200) FROM generate_series(1, 2000) g",
        )
        .await
        .unwrap();
    let written = lsn(control, "SELECT pg_current_wal_lsn()::text").await;
    flushed(handle, written, Duration::from_secs(10))
        .await
        .unwrap();
    let switched = lsn(control, "SELECT pg_switch_wal()::text").await;
    let full = WalSegment::containing(1, Lsn::new(switched.as_u64() - 1), SIZE);
    assert_eq!(full, WalSegment::containing(1, written, SIZE));
    full
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_is_durable_before_it_is_stored_whole() {
    let pg = Postgres::start().await.unwrap();
    let control = pg.connect("postgres").await.unwrap();
    let repo = memory_repository().await;
    let component: ComponentId = "postgres/slow".parse().unwrap();
    // Whole segments take 5 s to store; pieces no longer than usual.
    let archive = StoreFaults::whole_segments(&repo, Duration::from_secs(5), 0);
    let handle = faulty_archiver(&pg, &archive, &component, options("drkit_slow"));

    // The flush reaches the segment's end without waiting for its whole
    // store: its last piece made it durable, and it reads back complete.
    let full = pieces_then_switch(&control, &handle).await;
    flushed(&handle, full.end(SIZE), Duration::from_secs(4))
        .await
        .unwrap();
    assert!(!stored_whole(&repo, &component, full).await);
    let listing = list(&repo, &component).await;
    assert_eq!(listing.segments.get(&full), Some(&Coverage::Complete));
    assert!(listing.complete_in_pieces.contains(&full), "{listing:?}");
    assert_eq!(listing.end_of(1, SIZE), Some(full.end(SIZE)));
    let name = full.file_name(SIZE);
    let on_disk = pg_wal_file(&pg.data_dir(), &name);
    assert!(
        fetch(&repo, &component, &name).await == on_disk,
        "{name} assembled from its pieces differs from pg_wal"
    );

    // Shutting down waits for the whole store.
    let last = handle.shutdown().await.unwrap();
    assert!(last.last_error.is_none(), "{last:?}");
    assert!(last.segments_stored >= 1, "{last:?}");
    assert!(stored_whole(&repo, &component, full).await);
    let listing = list(&repo, &component).await;
    assert!(listing.complete_in_pieces.is_empty(), "{listing:?}");
    assert_contiguous(&repo, &component, &listing, 1).await;
    assert!(
        fetch(&repo, &component, &name).await == on_disk,
        "{name} differs from pg_wal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_whole_segment_store_shows_and_is_stored_again_after_reconnecting() {
    let pg = Postgres::start().await.unwrap();
    let control = pg.connect("postgres").await.unwrap();
    let repo = memory_repository().await;
    let component: ComponentId = "postgres/failing".parse().unwrap();
    // The first whole segment fails to store.
    let archive = StoreFaults::whole_segments(&repo, Duration::ZERO, 1);
    let handle = faulty_archiver(&pg, &archive, &component, options("drkit_failing"));

    // The segment is durable in pieces all the same; the failure ends the
    // connection, and the next one stores the segment whole from its pieces.
    let full = pieces_then_switch(&control, &handle).await;
    flushed(&handle, full.end(SIZE), Duration::from_secs(10))
        .await
        .unwrap();
    let status = eventually(
        "the segment to be stored whole after the failure",
        WAIT,
        || async {
            let status = handle.status();
            let failed = status
                .last_error
                .as_ref()
                .is_some_and(|e| e.message.contains("an injected failure"));
            (failed && stored_whole(&repo, &component, full).await).then_some(status)
        },
    )
    .await;
    assert_eq!(
        status.last_error.as_ref().map(|e| e.kind),
        Some(ErrorKind::Unavailable)
    );
    assert!(status.connections >= 2, "{status:?}");
    // The failing store was reached, and a later one stored the segment.
    assert!(archive.stores() >= 2);

    let last = handle.shutdown().await.unwrap();
    assert!(last.segments_stored >= 1, "{last:?}");
    let listing = list(&repo, &component).await;
    assert!(listing.complete_in_pieces.is_empty(), "{listing:?}");
    assert_contiguous(&repo, &component, &listing, 1).await;
    let name = full.file_name(SIZE);
    assert!(
        fetch(&repo, &component, &name).await == pg_wal_file(&pg.data_dir(), &name),
        "{name} differs from pg_wal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_commits_survive_kill_9_and_a_restart_resumes() {
    let mut pg = Postgres::start_with(PostgresOptions::default().setting("autovacuum", "off"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(Arc::new(FsBackend::new(dir.path()).unwrap())).await;
    let component: ComponentId = "postgres/sync".parse().unwrap();
    let sync = || {
        options("drkit_sync")
            .synchronous(true)
            .application_name("drkit_sync")
            // Only what synchronous mode stores, no timed pieces.
            .piece_interval(None)
    };
    let handle = archiver(&pg, &repo, &component, sync());

    let control = pg.connect("postgres").await.unwrap();
    control
        .batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'drkit_sync'")
        .await
        .unwrap();
    control
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
    eventually(
        "the archiver to be the synchronous standby",
        WAIT,
        || async {
            let rows = control
            .query(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'drkit_sync'",
                &[],
            )
            .await
            .unwrap();
            rows.first()
                .is_some_and(|r| r.get::<_, String>(0) == "sync")
                .then_some(())
        },
    )
    .await;

    // Each acknowledged commit: its WAL position right after.
    control
        .batch_execute("CREATE TABLE orders (id int, note text)")
        .await
        .unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        control
            .execute("INSERT INTO orders VALUES ($1, repeat('o', 500))", &[&i])
            .await
            .unwrap();
        acknowledged.push(lsn(&control, "SELECT pg_current_wal_lsn()::text").await);
    }
    // One large transaction, more than a batch.
    control
        .batch_execute(
            "INSERT INTO orders SELECT g, repeat('b', 1000) FROM generate_series(1, 5000) g",
        )
        .await
        .unwrap();
    acknowledged.push(lsn(&control, "SELECT pg_current_wal_lsn()::text").await);
    let last_commit = *acknowledged.iter().max().unwrap();
    drop(control);

    pg.kill9();
    let stopped = handle.shutdown().await.unwrap();
    assert!(stopped.flushed >= last_commit, "{stopped:?}");

    // The archive alone holds every acknowledged commit.
    let listing = list(&repo, &component).await;
    let end = listing.end_of(1, SIZE).unwrap();
    assert!(
        end >= last_commit,
        "archive ends at {end}, a commit at {last_commit}"
    );
    let segment = WalSegment::containing(1, Lsn::new(last_commit.as_u64() - 1), SIZE);
    let covered = (last_commit.as_u64() - segment.start(SIZE).as_u64()) as usize;
    let archived = fetch(&repo, &component, &segment.file_name(SIZE)).await;
    let on_disk = pg_wal_file(&pg.data_dir(), &segment.file_name(SIZE));
    assert!(
        archived[..covered] == on_disk[..covered],
        "the archived commits differ"
    );
    assert_contiguous(&repo, &component, &listing, 1).await;
    // A directory keeps journals: the pieces went there, not into objects.
    assert!(listing.journals.contains(&segment), "{listing:?}");
    assert!(pieces(&repo, &component).await.is_empty());

    // After crash recovery, a new archiver resumes where the archive ends
    // (commits wait for it, the server still lists it as synchronous).
    pg.restart().await.unwrap();
    let handle = archiver(&pg, &repo, &component, sync());
    let control = pg.connect("postgres").await.unwrap();
    control
        .batch_execute("INSERT INTO orders SELECT g, 'after' FROM generate_series(1, 1000) g")
        .await
        .unwrap();
    let switched = lsn(&control, "SELECT pg_switch_wal()::text").await;
    let full = WalSegment::containing(1, Lsn::new(switched.as_u64() - 1), SIZE);
    let status = flushed(&handle, full.end(SIZE), Duration::from_secs(20))
        .await
        .unwrap();
    assert!(status.connections >= 1);
    handle.shutdown().await.unwrap();

    let listing = list(&repo, &component).await;
    assert_contiguous(&repo, &component, &listing, 1).await;
    assert_eq!(listing.segments.get(&full), Some(&Coverage::Complete));
    // Stored whole, so its journal is gone, and so is every earlier one.
    assert!(
        listing.journals.iter().all(|j| j.number > full.number),
        "{:?}",
        listing.journals
    );
    for segment in listing.segments.keys().filter(|s| s.number <= full.number) {
        let name = segment.file_name(SIZE);
        assert!(
            fetch(&repo, &component, &name).await == pg_wal_file(&pg.data_dir(), &name),
            "{name} differs from pg_wal"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_switches_are_followed_to_a_promoted_replica() {
    let mut primary = Postgres::start().await.unwrap();
    let replica = primary.start_replica().await.unwrap();
    let repo = memory_repository().await;
    let component: ComponentId = "postgres/failover".parse().unwrap();

    // Complete segments only: the archive ends behind the switch point.
    let first = archiver(
        &primary,
        &repo,
        &component,
        options("drkit_tl").piece_interval(None),
    );
    let control = primary.connect("postgres").await.unwrap();
    control
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10000)")
        .await
        .unwrap();
    let switched = lsn(&control, "SELECT pg_switch_wal()::text").await;
    let full = WalSegment::containing(1, Lsn::new(switched.as_u64() - 1), SIZE);
    flushed(&first, full.end(SIZE), Duration::from_secs(20))
        .await
        .unwrap();
    control
        .batch_execute("INSERT INTO t SELECT generate_series(1, 1000)")
        .await
        .unwrap();
    let first_end = first.shutdown().await.unwrap().flushed;
    // More WAL on timeline 1 that only the replica gets.
    control
        .batch_execute("INSERT INTO t SELECT generate_series(1, 1000)")
        .await
        .unwrap();
    let primary_end = lsn(&control, "SELECT pg_current_wal_lsn()::text").await;
    let standby = replica.connect("postgres").await.unwrap();
    eventually("the replica to replay", WAIT, || async {
        (lsn(&standby, "SELECT pg_last_wal_replay_lsn()::text").await >= primary_end).then_some(())
    })
    .await;
    drop(control);
    primary.stop().await;
    replica.promote().await.unwrap();

    // The archiver pointed at the promoted replica: it finishes timeline 1
    // up to the switch point, stores 00000002.history, goes on with timeline 2.
    let second = archiver(&replica, &repo, &component, options("drkit_tl"));
    let (full, status) = a_segment_on_timeline_2(&replica, &second).await;
    assert!(status.histories_stored >= 1, "{status:?}");
    second.shutdown().await.unwrap();

    let history = std::fs::read(replica.data_dir().join("pg_wal/00000002.history")).unwrap();
    assert_eq!(fetch(&repo, &component, "00000002.history").await, history);
    let text = String::from_utf8(history).unwrap();
    let switch: Lsn = text.split('\t').nth(1).unwrap().parse().unwrap();
    // The second archiver streamed the end of timeline 1 until the server ended it.
    assert!(first_end < switch, "{first_end} {switch}");

    let listing = list(&repo, &component).await;
    assert!(listing.histories.contains(&2));
    assert_eq!(listing.end_of(1, SIZE), Some(switch), "{listing:?}");
    assert_contiguous(&repo, &component, &listing, 1).await;
    assert_eq!(listing.segments.get(&full), Some(&Coverage::Complete));
    let name = full.file_name(SIZE);
    assert!(
        fetch(&repo, &component, &name).await == pg_wal_file(&replica.data_dir(), &name),
        "{name} differs from pg_wal"
    );
    // The segment of the switch is archived on timeline 2 from its start.
    let at_switch = WalSegment::containing(2, switch, SIZE);
    assert_eq!(listing.segments.get(&at_switch), Some(&Coverage::Complete));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_stops_the_archiver() {
    let pg = Postgres::start().await.unwrap();
    let repo = memory_repository().await;
    let mut config = pg.config("postgres");
    config.password("not-the-password");
    let handle = WalArchiver::new(
        config,
        Tls::none(),
        repo,
        "postgres/auth".parse().unwrap(),
        options("drkit_auth"),
    )
    .spawn();
    eventually("the archiver to stop", WAIT, || async {
        handle.is_finished().then_some(())
    })
    .await;
    let status = handle.status();
    assert_eq!(status.state, ArchiverState::Stopped);
    assert_eq!(
        status.last_error.as_ref().map(|e| e.kind),
        Some(ErrorKind::Auth)
    );
    assert!(status.last_error.unwrap().message.contains("28P01"));
    let err = handle.shutdown().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cluster_is_refused() {
    let (one, other) = tokio::join!(Postgres::start(), Postgres::start());
    let (one, other) = (one.unwrap(), other.unwrap());
    let repo = memory_repository().await;
    let component: ComponentId = "postgres/one".parse().unwrap();

    let handle = archiver(&one, &repo, &component, options("drkit_one"));
    let control = one.connect("postgres").await.unwrap();
    let now = lsn(&control, "SELECT pg_current_wal_lsn()::text").await;
    flushed(&handle, now, Duration::from_secs(10))
        .await
        .unwrap();
    handle.shutdown().await.unwrap();

    let handle = archiver(&other, &repo, &component, options("drkit_one"));
    eventually("the archiver to stop", WAIT, || async {
        handle.is_finished().then_some(())
    })
    .await;
    let err = handle.shutdown().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("system identifier"), "{err}");
    // Nothing of the other cluster was stored.
    let listing = list(&repo, &component).await;
    assert_eq!(listing.latest_timeline(), Some(1));
    assert!(listing.end_of(1, SIZE).unwrap() >= now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_host_archiver_reconnects_to_the_promoted_standby() {
    let mut primary = Postgres::start().await.unwrap();
    let replica = primary.start_replica().await.unwrap();
    let repo = memory_repository().await;
    let component: ComponentId = "postgres/hosts".parse().unwrap();
    // Both servers, tried in order, as a service lists its cluster.
    let mut config = primary.config("postgres");
    config.host("127.0.0.1").port(replica.port());
    let handle = WalArchiver::new(
        config,
        Tls::none(),
        repo.clone(),
        component.clone(),
        options("drkit_hosts"),
    )
    .spawn();

    let control = primary.connect("postgres").await.unwrap();
    control
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 5000)")
        .await
        .unwrap();
    let written = lsn(&control, "SELECT pg_current_wal_lsn()::text").await;
    flushed(&handle, written, Duration::from_secs(10))
        .await
        .unwrap();
    drop(control);

    // The primary dies; the archiver moves to the standby, which is promoted.
    primary.kill9();
    replica.promote().await.unwrap();
    let (full, status) = a_segment_on_timeline_2(&replica, &handle).await;
    assert!(status.connections >= 2, "{status:?}");
    assert!(
        status.last_error.is_some(),
        "the lost primary shows: {status:?}"
    );
    handle.shutdown().await.unwrap();

    let listing = list(&repo, &component).await;
    assert!(listing.histories.contains(&2));
    assert_contiguous(&repo, &component, &listing, 1).await;
    assert_eq!(listing.segments.get(&full), Some(&Coverage::Complete));
    let name = full.file_name(SIZE);
    assert!(
        fetch(&repo, &component, &name).await == pg_wal_file(&replica.data_dir(), &name),
        "{name} differs from pg_wal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_lost_with_the_old_primary_is_not_reported_flushed_on_the_new_timeline() {
    let mut primary = Postgres::start().await.unwrap();
    let mut replica = primary.start_replica().await.unwrap();
    let repo = memory_repository().await;
    let component: ComponentId = "postgres/tail".parse().unwrap();
    let mut config = primary.config("postgres");
    config.host("127.0.0.1").port(replica.port());
    let handle = WalArchiver::new(
        config,
        Tls::none(),
        repo.clone(),
        component.clone(),
        options("drkit_tail"),
    )
    .spawn();

    // The replica stops; the archive gets WAL the replica never sees.
    let control = primary.connect("postgres").await.unwrap();
    control
        .batch_execute("CREATE TABLE t (id int, pad text)")
        .await
        .unwrap();
    let shared = lsn(&control, "SELECT pg_current_wal_lsn()::text").await;
    let standby = replica.connect("postgres").await.unwrap();
    eventually("the replica to replay", WAIT, || async {
        (lsn(&standby, "SELECT pg_last_wal_replay_lsn()::text").await >= shared).then_some(())
    })
    .await;
    drop(standby);
    replica.stop().await;
    control
        .batch_execute("INSERT INTO t SELECT g, repeat('l', 500) FROM generate_series(1, 3000) g")
        .await
        .unwrap();
    let tail = lsn(&control, "SELECT pg_current_wal_lsn()::text").await;
    flushed(&handle, tail, Duration::from_secs(10))
        .await
        .unwrap();
    drop(control);

    // The primary dies with that tail; the replica is promoted without it.
    primary.kill9();
    replica.restart().await.unwrap();
    replica.promote().await.unwrap();
    let status = eventually("the archiver on timeline 2", WAIT, || {
        let status = handle.status();
        std::future::ready(
            (status.timeline == Some(2) && status.state == ArchiverState::Streaming)
                .then_some(status),
        )
    })
    .await;
    assert!(status.flushed < tail, "{status:?}");

    // What the new primary hears as flushed is WAL of its own timeline.
    let control = replica.connect("postgres").await.unwrap();
    control
        .batch_execute("INSERT INTO t SELECT g, 'new' FROM generate_series(1, 100) g")
        .await
        .unwrap();
    let written = lsn(&control, "SELECT pg_current_wal_lsn()::text").await;
    flushed(&handle, written, Duration::from_secs(10))
        .await
        .unwrap();
    // The server hears the flush position with the archiver's next status
    // (none yet, on a connection just opened, under load): wait for one.
    let (reported, current) =
        eventually("the new primary to hear a flush position", WAIT, || async {
            let row = control
                .query_one(
                    "SELECT flush_lsn::text, pg_current_wal_lsn()::text FROM pg_stat_replication \
                 WHERE application_name = 'drkit_wal'",
                    &[],
                )
                .await
                .unwrap();
            let reported: Lsn = row.get::<_, Option<String>>(0)?.parse().unwrap();
            let current: Lsn = row.get::<_, String>(1).parse().unwrap();
            Some((reported, current))
        })
        .await;
    assert!(
        reported <= current,
        "flush {reported} beyond the server's {current}"
    );
    handle.shutdown().await.unwrap();

    // Both timelines are kept: timeline 1 with its tail, timeline 2 from its switch point.
    let listing = list(&repo, &component).await;
    assert!(listing.end_of(1, SIZE).unwrap() >= tail);
    assert!(listing.end_of(2, SIZE).unwrap() >= written);
    assert!(listing.histories.contains(&2));
    let switch = WalSegment::containing(2, status.flushed, SIZE);
    let assembled = fetch(&repo, &component, &switch.file_name(SIZE)).await;
    let on_disk = pg_wal_file(&replica.data_dir(), &switch.file_name(SIZE));
    let covered = (written.as_u64() - switch.start(SIZE).as_u64()) as usize;
    assert!(
        assembled[..covered] == on_disk[..covered],
        "timeline 2 differs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_synchronous_piece_is_never_reported_flushed() {
    let repo = memory_repository().await;
    failed_synchronous_piece(repo, Faulty::Pieces).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_journal_record_is_never_reported_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(Arc::new(FsBackend::new(dir.path()).unwrap())).await;
    failed_synchronous_piece(repo, Faulty::JournalRecords).await;
}

/// Synchronous archiving through a store whose `faulty` piece stores are
/// slow and one of them fails: no commit is lost, none is acknowledged
/// before it is durable.
async fn failed_synchronous_piece(repo: Arc<Repository>, faulty: Faulty) {
    let mut pg = Postgres::start_with(PostgresOptions::default().setting("autovacuum", "off"))
        .await
        .unwrap();
    let component: ComponentId = "postgres/sync-faults".parse().unwrap();
    // Slow pieces, so that WAL queues up behind the store that fails.
    let sink = StoreFaults::pieces(&repo, faulty, Duration::from_millis(40), 6);
    let handle = faulty_archiver(
        &pg,
        &sink,
        &component,
        options("drkit_sync_faults")
            .synchronous(true)
            .application_name("drkit_sync_faults")
            .piece_interval(None),
    );
    let control = pg.connect("postgres").await.unwrap();
    for statement in [
        "ALTER SYSTEM SET synchronous_standby_names = 'drkit_sync_faults'",
        "SELECT pg_reload_conf()",
        "CREATE TABLE t (id int, note text)",
    ] {
        control.batch_execute(statement).await.unwrap();
    }
    eventually("the archiver to be the synchronous standby", WAIT, || async {
        let rows = control
            .query(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'drkit_sync_faults'",
                &[],
            )
            .await
            .unwrap();
        rows.first()
            .is_some_and(|r| r.get::<_, String>(0) == "sync")
            .then_some(())
    })
    .await;
    // Commits from two sessions at once keep pieces coming back to back.
    let writer = {
        let config = pg.config("postgres");
        tokio::spawn(async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            for i in 0..60 {
                client
                    .execute("INSERT INTO t VALUES ($1, repeat('w', 300))", &[&i])
                    .await
                    .unwrap();
            }
        })
    };
    for i in 0..60 {
        control
            .execute("INSERT INTO t VALUES ($1, repeat('c', 300))", &[&i])
            .await
            .unwrap();
    }
    writer.await.unwrap();
    let last_commit = lsn(&control, "SELECT pg_current_wal_lsn()::text").await;
    drop(control);
    assert!(sink.stores() > 6, "the failing store was never reached");

    pg.kill9();
    let stopped = handle.shutdown().await.unwrap();
    assert!(
        stopped.connections >= 2,
        "no reconnect after the failure: {stopped:?}"
    );
    assert!(stopped.flushed >= last_commit, "{stopped:?}");

    // Every acknowledged commit is in the archive, byte for byte, the
    // failed piece's range included (stored again after reconnecting).
    let listing = list(&repo, &component).await;
    let end = listing.end_of(1, SIZE).unwrap();
    assert!(
        end >= last_commit,
        "archive ends at {end}, a commit at {last_commit}"
    );
    let segment = WalSegment::containing(1, Lsn::new(last_commit.as_u64() - 1), SIZE);
    let covered = (last_commit.as_u64() - segment.start(SIZE).as_u64()) as usize;
    let archived = fetch(&repo, &component, &segment.file_name(SIZE)).await;
    let on_disk = pg_wal_file(&pg.data_dir(), &segment.file_name(SIZE));
    assert!(
        archived[..covered] == on_disk[..covered],
        "the archived commits differ"
    );
}

/// A lost connection is a warning that names the error, each session says
/// where it streams from, and no event carries the password. (A
/// current-thread runtime: the capture sees the archiver's task.)
#[tokio::test]
async fn a_reconnect_is_a_warning_and_each_session_says_where_it_streams_from() {
    let events = CapturedEvents::new();
    let _capture = events.capture();
    let mut pg = Postgres::start().await.unwrap();
    let repo = memory_repository().await;
    let component: ComponentId = "postgres/traced".parse().unwrap();
    let handle = archiver(&pg, &repo, &component, options("drkit_traced"));
    let sessions = |events: &CapturedEvents| {
        events
            .lines()
            .iter()
            .filter(|l| l.starts_with("INFO") && l.contains("streaming WAL into the archive"))
            .count()
    };
    eventually("the archiver to stream", WAIT, || async {
        (sessions(&events) == 1).then_some(())
    })
    .await;

    pg.restart().await.unwrap();
    eventually("a warning about the lost connection", WAIT, || async {
        events
            .any(|l| l.starts_with("WARN") && l.contains("reconnecting") && l.contains("error="))
            .then_some(())
    })
    .await;
    eventually("a second session", WAIT, || async {
        (sessions(&events) >= 2).then_some(())
    })
    .await;
    handle.shutdown().await.unwrap();
    assert!(!events.any(|l| l.contains(pg.password())), "{events:?}");
}

/// Writes on `promoted` (on timeline 2) and switches segments; returns the
/// segment completed, once `handle` has archived it, and the status then.
async fn a_segment_on_timeline_2(
    promoted: &Postgres,
    handle: &ArchiverHandle,
) -> (WalSegment, dr_postgres::ArchiverStatus) {
    let control = promoted.connect("postgres").await.unwrap();
    control
        .batch_execute("INSERT INTO t SELECT generate_series(1, 5000)")
        .await
        .unwrap();
    let switched = lsn(&control, "SELECT pg_switch_wal()::text").await;
    let full = WalSegment::containing(2, Lsn::new(switched.as_u64() - 1), SIZE);
    let status = flushed(handle, full.end(SIZE), WAIT).await.unwrap();
    assert_eq!(status.timeline, Some(2));
    (full, status)
}

/// Whether `data_dir`'s `pg_wal` has the timeline-1 segment holding `lsn`.
fn has_segment(data_dir: &Path, lsn: Lsn) -> bool {
    let name = WalSegment::containing(1, lsn, SIZE).file_name(SIZE);
    data_dir.join("pg_wal").join(name).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_archiver_holds_wal_on_the_replicas_and_resumes_on_the_promoted_one_without_a_gap()
 {
    let mut primary = Postgres::start().await.unwrap();
    let replica = primary.start_replica().await.unwrap();
    let other = primary.start_replica().await.unwrap();
    let repo = memory_repository().await;
    let component: ComponentId = "postgres/cluster".parse().unwrap();
    let cluster = PgCluster::new(component.clone(), Tls::none())
        .member(PgMember::new("a", primary.config("postgres")))
        .member(PgMember::new("b", replica.config("postgres")))
        .member(PgMember::new("c", other.config("postgres")))
        .probe_timeout(Duration::from_secs(2));
    // The connection settings name the archiver only: the cluster says where to go.
    let named = primary.config("postgres");
    let start = || {
        WalArchiver::new(
            named.clone(),
            Tls::none(),
            repo.clone(),
            component.clone(),
            options("drkit_wal"),
        )
        .cluster(cluster.clone())
        .spawn()
    };
    let held = |handle: &ArchiverHandle, member: &str| {
        handle
            .standby_slots()
            .into_iter()
            .find(|s| s.member == member)
            .map(|s| s.state)
    };

    let first = start();
    let control = primary.connect("postgres").await.unwrap();
    control
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10000)")
        .await
        .unwrap();
    let written = lsn(&control, "SELECT pg_current_wal_lsn()::text").await;
    flushed(&first, written, WAIT).await.unwrap();
    // Both replicas hold WAL from what the archive holds, no further back.
    for member in ["b", "c"] {
        eventually("the replica's slot to follow the archive", WAIT, || async {
            match held(&first, member) {
                Some(StandbySlotState::Held { restart_lsn }) if restart_lsn >= written => Some(()),
                _ => None,
            }
        })
        .await;
    }
    assert_eq!(held(&first, "a"), Some(StandbySlotState::NotReplica));
    // The archiver stops (its host is replaced, say) while writes go on.
    let archived = first.shutdown().await.unwrap().flushed;

    for _ in 0..4 {
        control
            .batch_execute("INSERT INTO t SELECT generate_series(1, 20000); SELECT pg_switch_wal()")
            .await
            .unwrap();
    }
    control.batch_execute("CHECKPOINT").await.unwrap();
    let primary_end = lsn(&control, "SELECT pg_current_wal_lsn()::text").await;
    for standby in [&replica, &other] {
        let session = standby.connect("postgres").await.unwrap();
        eventually("the replica to replay", WAIT, || async {
            (lsn(&session, "SELECT pg_last_wal_replay_lsn()::text").await >= primary_end)
                .then_some(())
        })
        .await;
        // A restartpoint, which recycles every segment no slot holds.
        session.batch_execute("CHECKPOINT").await.unwrap();
        assert!(
            has_segment(&standby.data_dir(), archived),
            "the replica kept the segment the archive ends in"
        );
    }
    drop(control);

    // The primary dies; a replica is promoted; the archiver starts again.
    primary.kill9();
    replica.promote().await.unwrap();
    let second = start();
    a_segment_on_timeline_2(&replica, &second).await;
    eventually(
        "the promoted member to be seen as the primary",
        WAIT,
        || async { (held(&second, "b") == Some(StandbySlotState::NotReplica)).then_some(()) },
    )
    .await;
    assert!(matches!(
        held(&second, "a"),
        Some(StandbySlotState::Failed { .. })
    ));
    second.shutdown().await.unwrap();

    // Timeline 1 is whole up to the switch, then timeline 2 goes on.
    let listing = list(&repo, &component).await;
    let history = std::fs::read(replica.data_dir().join("pg_wal/00000002.history")).unwrap();
    let text = String::from_utf8(history).unwrap();
    let switch: Lsn = text.split('\t').nth(1).unwrap().parse().unwrap();
    assert!(switch >= primary_end, "{switch} {primary_end}");
    assert_eq!(listing.end_of(1, SIZE), Some(switch), "{listing:?}");
    assert_contiguous(&repo, &component, &listing, 1).await;
    assert_contiguous(&repo, &component, &listing, 2).await;
    let first_segment = listing.segments.keys().find(|s| s.timeline == 1).unwrap();
    assert!(first_segment.start(SIZE) <= archived);
    let at_switch = WalSegment::containing(2, switch, SIZE);
    assert_eq!(listing.segments.get(&at_switch), Some(&Coverage::Complete));
}
