//! What dr-postgres's integration tests share: reading positions and waiting
//! for the archiver. Each test file uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

use dr_core::Lsn;
use dr_postgres::{ArchiverHandle, ArchiverStatus};

/// How long a test waits for a condition before failing: generous, as it
/// only turns a hang into a clear failure.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// The position a query returns as text (`pg_current_wal_lsn()::text`).
pub(crate) async fn lsn(client: &tokio_postgres::Client, query: &str) -> Lsn {
    let text: String = client.query_one(query, &[]).await.unwrap().get(0);
    text.parse().unwrap()
}

/// Waits until the archiver has made the WAL up to `lsn` durable, failing
/// the test after `within`.
pub(crate) async fn flushed(
    handle: &ArchiverHandle,
    lsn: Lsn,
    within: Duration,
) -> dr_core::Result<ArchiverStatus> {
    tokio::time::timeout(within, handle.wait_for_flush(lsn))
        .await
        .unwrap_or_else(|_| panic!("the archiver did not flush {lsn} within {within:?}"))
}
