//! Waiting for a condition in a test, without sleeping for a guessed time.

use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] asks again.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Polls `check` until it returns `Some`, and returns that value. It panics
/// naming `what` once `within` has passed: the limit only turns a hang into a
/// clear test failure, so give it room.
///
/// ```no_run
/// # async fn demo(pg: &dr_testkit::Postgres) {
/// use std::time::Duration;
///
/// let client = pg.connect("postgres").await.unwrap();
/// let rows = dr_testkit::eventually("a row in t", Duration::from_secs(30), || async {
///     let n: i64 = client.query_one("SELECT count(*) FROM t", &[]).await.ok()?.get(0);
///     (n > 0).then_some(n)
/// })
/// .await;
/// # }
/// ```
///
/// # Panics
/// When `within` passes first.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {within:?} for {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}
