//! The WAL record reader against the WAL of a real PostgreSQL from
//! dr-testkit: the commits, the abort and the restore point a workload made
//! are found with their transaction ids, times and positions, across page
//! and segment boundaries and a WAL switch, in agreement with `pg_waldump`,
//! and reading can start at a middle segment.

use std::path::Path;

use crate::common::lsn;
use dr_core::Lsn;
use dr_postgres::{DEFAULT_SEGMENT_SIZE, WalRecordEvent, WalRecordReader, WalSegment};
use dr_testkit::{Postgres, PostgresOptions};
use jiff::Timestamp;
use tokio_postgres::Client;

const PAGE: u64 = 8192;

/// A transaction the test committed or rolled back, and the client's clock
/// just before and after it ended.
struct Ended {
    xid: u32,
    before: Timestamp,
    after: Timestamp,
}

/// Runs `sql` in a transaction and ends it with `end` (`COMMIT` or `ROLLBACK`).
async fn transaction(client: &Client, sql: &str, end: &str) -> Ended {
    client.batch_execute("BEGIN").await.unwrap();
    client.batch_execute(sql).await.unwrap();
    let xid: i64 = client
        .query_one("SELECT txid_current()", &[])
        .await
        .unwrap()
        .get(0);
    let before = Timestamp::now();
    client.batch_execute(end).await.unwrap();
    let after = Timestamp::now();
    Ended {
        // The low 32 bits are the xid; the epoch above them is 0 in a new cluster.
        xid: u32::try_from(xid).unwrap(),
        before,
        after,
    }
}

/// The segments from the one holding `from` to the one holding `to`, as
/// (start, bytes), read from the server's `pg_wal`.
async fn segments(pg_wal: &Path, from: Lsn, to: Lsn) -> Vec<(Lsn, Vec<u8>)> {
    let size = DEFAULT_SEGMENT_SIZE;
    let (first, last) = (
        WalSegment::containing(1, from, size),
        WalSegment::containing(1, to, size),
    );
    let mut segments = Vec::new();
    let mut segment = first;
    while segment <= last {
        let bytes = tokio::fs::read(pg_wal.join(segment.file_name(size)))
            .await
            .unwrap();
        segments.push((segment.start(size), bytes));
        segment = segment.next();
    }
    segments
}

fn read(segments: &[(Lsn, Vec<u8>)]) -> (Vec<WalRecordEvent>, WalRecordReader) {
    let mut reader = WalRecordReader::new(DEFAULT_SEGMENT_SIZE);
    let mut events = Vec::new();
    for (start, bytes) in segments {
        events.extend(reader.feed_segment(*start, bytes).unwrap());
    }
    (events, reader)
}

/// The start of every commit and abort record `pg_waldump` shows between
/// `from` and `to`, with whether it committed.
async fn waldump(pg: &Postgres, from: Lsn, to: Lsn) -> Vec<(Lsn, bool)> {
    let output = pg
        .command("pg_waldump")
        .arg(format!("--path={}", pg.data_dir().join("pg_wal").display()))
        .arg(format!("--start={from}"))
        .arg(format!("--end={to}"))
        .arg("--rmgr=Transaction")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let lsn = line
                .split("lsn: ")
                .nth(1)?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            let desc = line.split("desc: ").nth(1)?;
            if desc.starts_with("COMMIT") {
                Some((lsn, true))
            } else if desc.starts_with("ABORT") {
                Some((lsn, false))
            } else {
                None
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_what_recovery_targets_stop_at() {
    // No checkpoint may recycle the segments the test reads.
    let options = PostgresOptions::default().setting("checkpoint_timeout", "1h");
    let pg = Postgres::start_with(options).await.unwrap();
    let client = pg.connect("postgres").await.unwrap();
    client
        .batch_execute("CREATE TABLE t (id int, note text); CREATE TABLE bulk (id int, note text)")
        .await
        .unwrap();
    let from = lsn(&client, "SELECT pg_current_wal_insert_lsn()::text").await;

    let mut commits = Vec::new();
    for i in 0..5 {
        let insert = format!("INSERT INTO t VALUES ({i}, 'row')");
        commits.push(transaction(&client, &insert, "COMMIT").await);
    }
    let aborted = transaction(&client, "INSERT INTO t VALUES (100, 'gone')", "ROLLBACK").await;
    let restore_point = lsn(
        &client,
        "SELECT pg_create_restore_point('before-drop')::text",
    )
    .await;
    // 3000 subtransactions: their xids make a 12 kB commit record.
    let subtransactions = "DO $$ BEGIN FOR i IN 1..3000 LOOP \
        BEGIN INSERT INTO t VALUES (i, 'sub'); EXCEPTION WHEN others THEN NULL; END; \
        END LOOP; END $$";
    commits.push(transaction(&client, subtransactions, "COMMIT").await);
    client
        .batch_execute("SELECT pg_logical_emit_message(false, 'drkit', repeat('m', 20000))")
        .await
        .unwrap();
    client
        .batch_execute("SELECT pg_switch_wal()")
        .await
        .unwrap();
    commits.push(transaction(&client, "INSERT INTO t VALUES (200, 'next')", "COMMIT").await);
    // About 20 MB of WAL: at least one segment boundary crossed on the way.
    let bulk = "INSERT INTO bulk SELECT g, repeat('y', 100) FROM generate_series(1, 120000) g";
    commits.push(transaction(&client, bulk, "COMMIT").await);
    commits.push(transaction(&client, "INSERT INTO t VALUES (300, 'last')", "COMMIT").await);
    let to = lsn(&client, "SELECT pg_current_wal_insert_lsn()::text").await;

    let pg_wal = pg.data_dir().join("pg_wal");
    let segments = segments(&pg_wal, from, to).await;
    assert!(segments.len() >= 3, "{} segments", segments.len());
    let (events, reader) = read(&segments);

    // Every transaction the test ended, once, at the time it ended.
    for (ended, committed) in commits.iter().map(|c| (c, true)).chain([(&aborted, false)]) {
        let found: Vec<&WalRecordEvent> = events
            .iter()
            .filter(|e| match e {
                WalRecordEvent::Commit { xid, .. } => committed && *xid == ended.xid,
                WalRecordEvent::Abort { xid, .. } => !committed && *xid == ended.xid,
                _ => false,
            })
            .collect();
        assert_eq!(found.len(), 1, "xid {}: {found:?}", ended.xid);
        // PostgreSQL keeps microseconds; the client's clock is finer.
        let before = Timestamp::from_microsecond(ended.before.as_microsecond()).unwrap();
        let time = found[0].time();
        assert!(
            before <= time && time <= ended.after,
            "xid {}: {time} not within {before}..{}",
            ended.xid,
            ended.after
        );
    }

    // pg_create_restore_point returns the end of its record.
    let points: Vec<&WalRecordEvent> = events
        .iter()
        .filter(|e| matches!(e, WalRecordEvent::RestorePoint { .. }))
        .collect();
    assert_eq!(points.len(), 1, "{points:?}");
    let WalRecordEvent::RestorePoint {
        start, end, name, ..
    } = points[0]
    else {
        unreachable!()
    };
    assert_eq!(name, "before-drop");
    assert_eq!(*end, restore_point, "starts at {start}");
    assert!(commits[4].after <= points[0].time() && points[0].time() <= commits[5].before);

    // The commit with 3000 subtransactions spans pages.
    let big = events
        .iter()
        .find(|e| matches!(e, WalRecordEvent::Commit { xid, .. } if *xid == commits[5].xid))
        .unwrap();
    assert!(
        u64::from(big.end()) - u64::from(big.start()) > PAGE,
        "{big:?}"
    );

    // The same commits and aborts, at the same places, as pg_waldump sees.
    let ours: Vec<(Lsn, bool)> = events
        .iter()
        .filter(|e| e.start() >= from && e.start() < to)
        .filter_map(|e| match e {
            WalRecordEvent::Commit { start, .. } => Some((*start, true)),
            WalRecordEvent::Abort { start, .. } => Some((*start, false)),
            _ => None,
        })
        .collect();
    let theirs = waldump(&pg, from, to).await;
    assert!(theirs.len() > commits.len(), "{theirs:?}");
    assert_eq!(ours, theirs);

    // The valid WAL goes on to the last commit at least, and then ends.
    let last = events.iter().rev().find(|e| e.start() < to).unwrap();
    assert!(reader.last_record_end() >= Some(last.end()));
    assert!(reader.end_reason().is_some());

    // Reading from a later segment skips what began before it and finds the rest.
    for first in 1..segments.len() {
        let (later, _) = read(&segments[first..]);
        let expected: Vec<WalRecordEvent> = events
            .iter()
            .filter(|e| e.start() >= segments[first].0)
            .cloned()
            .collect();
        assert_eq!(later, expected, "from segment {first}");
        // The last commit is among them.
        let last_xid = commits[8].xid;
        assert!(
            later
                .iter()
                .any(|e| matches!(e, WalRecordEvent::Commit { xid, .. } if *xid == last_xid))
        );
    }
}
