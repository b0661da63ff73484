//! Requests tried again where the server says to come back: 429 Too Many
//! Requests and the 5xx answers of a server that is busy or restarting.

use std::future::Future;
use std::time::Duration;

/// Tries after the first: three more, backing off.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_millis(1600),
];

/// Whether `error` is an answer worth waiting out.
pub(crate) fn is_transient(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if matches!(status.code, 429 | 500 | 502 | 503 | 504))
}

/// `request`, made again after a pause while the server answers 429 or a
/// 5xx, four times in all; the last answer.
pub(crate) async fn retrying<T, F, Fut>(mut request: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = kube::Result<T>>,
{
    for pause in BACKOFF {
        match request().await {
            Err(e) if is_transient(&e) => tokio::time::sleep(pause).await,
            done => return done,
        }
    }
    request().await
}
