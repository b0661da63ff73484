//! Fault injection: requests answered with an error (or late) on the test's say-so, and API
//! groups made unavailable, as an aggregated API server that is down makes them.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::status::ApiError;

/// What a fault's path must be like.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathMatch {
    Any,
    Prefix(String),
    Contains(String),
}

/// A fault for [`KubeApiServer::inject`](crate::KubeApiServer::inject): the next requests
/// that match a method and a path are answered with an error status (a `meta/v1` `Status`,
/// as a real server's errors are), or answered as usual but late.
///
/// A fault matches every request until narrowed by [`Fault::method`] and
/// [`Fault::path_prefix`] or [`Fault::path_contains`] (the path without the query), and is
/// used up after one matching request unless [`Fault::times`] says more.
///
/// ```
/// use std::time::Duration;
/// use dr_k8s_testkit::Fault;
/// // The next two evictions are refused as a busy server refuses them.
/// let busy = Fault::status(429).method("POST").path_contains("/eviction").times(2);
/// // The next list of pods takes a second and then fails.
/// let slow = Fault::status(500).method("GET").path_prefix("/api/v1/pods")
///     .delay(Duration::from_secs(1));
/// // The next request of any kind is answered as usual, 200 ms late.
/// let late = Fault::latency(Duration::from_millis(200));
/// # let _ = (busy, slow, late);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `None`: answered as usual, after `delay`.
    code: Option<u16>,
    /// Uppercase; `None` for any method.
    method: Option<String>,
    path: PathMatch,
    times: usize,
    delay: Duration,
    message: Option<String>,
    retry_after: Option<u32>,
}

impl Fault {
    /// Answers with HTTP status `code` and a `Status` whose `reason` is the one Kubernetes
    /// gives that code (`InternalError` for 500, `TooManyRequests` for 429, `Conflict` for
    /// 409, `ServiceUnavailable` for 503, `Timeout` for 504, ...). A code that is not an HTTP
    /// status (outside 100–599) is sent as 500.
    pub fn status(code: u16) -> Self {
        Fault {
            code: Some(code),
            method: None,
            path: PathMatch::Any,
            times: 1,
            delay: Duration::ZERO,
            message: None,
            retry_after: None,
        }
    }

    /// Answers as usual, `delay` late.
    pub fn latency(delay: Duration) -> Self {
        Fault {
            code: None,
            delay,
            ..Self::status(0)
        }
    }

    /// Only requests with this method (`GET`, `POST`, ..., any case).
    #[must_use]
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests whose path starts with `prefix`.
    #[must_use]
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path = PathMatch::Prefix(prefix.into());
        self
    }

    /// Only requests whose path contains `part`.
    #[must_use]
    pub fn path_contains(mut self, part: impl Into<String>) -> Self {
        self.path = PathMatch::Contains(part.into());
        self
    }

    /// The fault holds for this many matching requests (1 by default; 0 makes it hold for
    /// none).
    #[must_use]
    pub fn times(mut self, count: usize) -> Self {
        self.times = count;
        self
    }

    /// Waits this long before answering.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The `message` of the `Status` (by default one naming the fault and the request).
    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sends `Retry-After: seconds` and `details.retryAfterSeconds`, as a real server does
    /// with some 429 and 503 answers (client-go then retries by itself).
    #[must_use]
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && match &self.path {
                PathMatch::Any => true,
                PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
                PathMatch::Contains(part) => path.contains(part.as_str()),
            }
    }

    fn error(&self, method: &str, path: &str) -> Option<ApiError> {
        let code = self.code?;
        let code = if (100..=599).contains(&code) {
            code
        } else {
            500
        };
        let message = self
            .message
            .clone()
            .unwrap_or_else(|| format!("injected fault: {code} for {method} {path}"));
        let details = self
            .retry_after
            .map(|seconds| json!({"retryAfterSeconds": seconds}));
        Some(ApiError {
            code,
            reason: reason(code),
            message,
            details,
        })
    }
}

/// The `reason` Kubernetes gives an HTTP status code in a `Status`.
fn reason(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    }
}

/// What an injected fault does to one request.
#[derive(Debug)]
pub(crate) struct Injected {
    pub(crate) delay: Duration,
    /// The answer instead of the real one; `None` to answer as usual.
    pub(crate) error: Option<ApiError>,
}

/// The faults waiting for requests, and the groups made unavailable.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pending: Vec<Fault>,
    unavailable: BTreeSet<String>,
}

impl Faults {
    pub(crate) fn inject(&mut self, fault: Fault) {
        if fault.times > 0 {
            self.pending.push(fault);
        }
    }

    pub(crate) fn set_group_unavailable(&mut self, group: &str, unavailable: bool) {
        if unavailable {
            self.unavailable.insert(group.to_owned());
        } else {
            self.unavailable.remove(group);
        }
    }

    /// The groups made unavailable.
    pub(crate) fn unavailable_groups(&self) -> &BTreeSet<String> {
        &self.unavailable
    }

    /// What happens to a request: the first fault injected that matches it (used up once
    /// its count runs out), else 503 if it is under an unavailable group, else nothing.
    pub(crate) fn take(&mut self, method: &str, path: &str) -> Option<Injected> {
        if let Some(at) = self.pending.iter().position(|f| f.matches(method, path)) {
            let fault = &mut self.pending[at];
            fault.times -= 1;
            let injected = Injected {
                delay: fault.delay,
                error: fault.error(method, path),
            };
            if fault.times == 0 {
                self.pending.remove(at);
            }
            return Some(injected);
        }
        let group = path.strip_prefix("/apis/")?.split('/').next()?;
        self.unavailable.contains(group).then(|| Injected {
            delay: Duration::ZERO,
            // The words of the aggregator for an API service that does not answer.
            error: Some(ApiError {
                code: 503,
                reason: "ServiceUnavailable",
                message: "the server is currently unable to handle the request".into(),
                details: None,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_used_up_by_the_requests_it_matches() {
        let mut faults = Faults::default();
        faults.inject(
            Fault::status(429)
                .method("post")
                .path_contains("/eviction")
                .times(2),
        );
        assert!(faults.take("GET", "/api/v1/pods/x/eviction").is_none());
        assert!(faults.take("POST", "/api/v1/pods").is_none());
        for _ in 0..2 {
            let error = faults
                .take("POST", "/api/v1/namespaces/a/pods/x/eviction")
                .and_then(|i| i.error)
                .expect("the fault holds");
            assert_eq!((error.code, error.reason), (429, "TooManyRequests"));
        }
        assert!(
            faults
                .take("POST", "/api/v1/namespaces/a/pods/x/eviction")
                .is_none()
        );
        faults.inject(Fault::status(500).times(0));
        assert!(faults.take("GET", "/api").is_none());
    }

    #[test]
    fn an_unavailable_group_answers_503_under_its_path_only() {
        let mut faults = Faults::default();
        faults.set_group_unavailable("apps", true);
        let code = |faults: &mut Faults, path| faults.take("GET", path).and_then(|i| i.error);
        assert_eq!(
            code(&mut faults, "/apis/apps/v1").map(|e| e.code),
            Some(503)
        );
        assert_eq!(code(&mut faults, "/apis/apps").map(|e| e.code), Some(503));
        assert!(code(&mut faults, "/apis").is_none());
        assert!(code(&mut faults, "/apis/apps.example/v1").is_none());
        faults.set_group_unavailable("apps", false);
        assert!(code(&mut faults, "/apis/apps/v1").is_none());
    }
}
