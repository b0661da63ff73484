//! [`LiveKitHealth`]: whether a LiveKit server serves, from its readiness
//! endpoint, a short API call and its Prometheus metrics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use livekit_api::access_token::VideoGrants;
use serde::{Deserialize, Serialize};

use crate::client::{Grants, LiveKit, calls, describe_request_error};
use crate::error::Error;

/// How long each part of a probe may take, unless set otherwise.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What `GET /` said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "readiness")]
pub enum Readiness {
    /// 200: the node updated its stats within the last seconds.
    Ready,
    /// 406 `Not Ready`: the node is up and not serving (starting,
    /// draining, its stats stale).
    NotReady,
    /// Anything else: no answer, another status, not LiveKit's answer.
    Failed {
        /// What happened.
        reason: String,
    },
}

/// What the server's `/metrics` said, where the probe read them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveKitMetrics {
    /// `livekit_room_total`, summed over nodes.
    pub rooms: Option<f64>,
    /// `livekit_participant_total`, summed over nodes.
    pub participants: Option<f64>,
    /// `livekit_node_twirp_request_status`, summed by its `status` label
    /// (`ok`, `error`, ...).
    pub twirp_requests: BTreeMap<String, f64>,
}

/// One look at a LiveKit server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveKitHealth {
    /// The server.
    pub url: String,
    /// When it was looked at.
    pub checked_at: Timestamp,
    /// `GET /`.
    #[serde(flatten)]
    pub readiness: Readiness,
    /// How long a `ListRooms` (of no room) took, or why it failed.
    pub api: Result<Duration, String>,
    /// The metrics, if a metrics URL was given and they read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Result<LiveKitMetrics, String>>,
}

impl LiveKitHealth {
    /// Whether it serves: ready, and its API answered.
    pub fn is_healthy(&self) -> bool {
        self.readiness == Readiness::Ready && self.api.is_ok()
    }

    /// Why it does not serve, in words; `None` if it does.
    pub fn problem(&self) -> Option<String> {
        let mut problems = Vec::new();
        match &self.readiness {
            Readiness::Ready => {}
            Readiness::NotReady => problems.push("GET / answered 406 Not Ready".to_owned()),
            Readiness::Failed { reason } => problems.push(format!("GET /: {reason}")),
        }
        if let Err(reason) = &self.api {
            problems.push(format!("ListRooms: {reason}"));
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

/// Looks at LiveKit servers: readiness (`GET /`, 200 or 406), a short
/// Twirp `ListRooms` of no room (which proves the key and that the answer
/// is LiveKit's), and, where given, the Prometheus metrics LiveKit serves
/// on its own port.
///
/// ```no_run
/// # async fn demo() -> Result<(), dr_livekit::Error> {
/// use dr_livekit::{LiveKit, LiveKitProbe};
///
/// let sfu = LiveKit::new("http://livekit:7880", "APIkey", "secret")?;
/// let probe = LiveKitProbe::new().metrics_url("http://livekit:6789/metrics");
/// let health = probe.check(&sfu).await;
/// if let Some(problem) = health.problem() {
///     eprintln!("{}: {problem}", health.url);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LiveKitProbe {
    timeout: Duration,
    metrics_url: Option<String>,
}

impl Default for LiveKitProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveKitProbe {
    /// A probe whose parts each take at most [`DEFAULT_PROBE_TIMEOUT`].
    pub fn new() -> Self {
        Self {
            timeout: DEFAULT_PROBE_TIMEOUT,
            metrics_url: None,
        }
    }

    /// Each part may take at most `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads the metrics at `url` too (LiveKit's `prometheus.port`).
    #[must_use]
    pub fn metrics_url(mut self, url: impl Into<String>) -> Self {
        self.metrics_url = Some(url.into());
        self
    }

    /// Looks at `livekit` now; its parts at once. Never fails: what did
    /// not answer is in the health.
    pub async fn check(&self, livekit: &LiveKit) -> LiveKitHealth {
        let checked_at = Timestamp::now();
        let (readiness, api, metrics) =
            tokio::join!(self.readiness(livekit), self.api(livekit), async {
                match &self.metrics_url {
                    Some(url) => Some(self.metrics(livekit, url).await),
                    None => None,
                }
            });
        LiveKitHealth {
            url: livekit.url().to_owned(),
            checked_at,
            readiness,
            api,
            metrics,
        }
    }

    async fn readiness(&self, livekit: &LiveKit) -> Readiness {
        let answer = livekit
            .http()
            .get(format!("{}/", livekit.url()))
            .timeout(self.timeout)
            .send()
            .await;
        match answer {
            Ok(response) => match response.status().as_u16() {
                200 => Readiness::Ready,
                406 => Readiness::NotReady,
                other => Readiness::Failed {
                    reason: format!("it answered HTTP {other}"),
                },
            },
            Err(e) => Readiness::Failed {
                reason: describe_request_error(&e),
            },
        }
    }

    async fn api(&self, livekit: &LiveKit) -> Result<Duration, String> {
        let started = Instant::now();
        let short = livekit.clone().with_request_timeout(self.timeout);
        // No room of this name: the answer is small however many rooms
        // there are. JSON, so that its content type proves a Twirp server.
        let body = br#"{"names":["drkit-probe-no-such-room"]}"#.to_vec();
        let answer = short
            .post_twirp(
                calls::LIST_ROOMS,
                body,
                "application/json",
                Grants::video(VideoGrants {
                    room_list: true,
                    ..Default::default()
                }),
            )
            .await
            .and_then(|body| {
                serde_json::from_slice::<serde_json::Value>(&body)
                    .map_err(|e| Error::NotLiveKit {
                        url: livekit.url().to_owned(),
                        call: calls::LIST_ROOMS.to_string(),
                        reason: format!("its JSON does not read: {e}"),
                    })
                    .map(|_| ())
            });
        answer
            .map(|()| started.elapsed())
            .map_err(|e| e.to_string())
    }

    async fn metrics(&self, livekit: &LiveKit, url: &str) -> Result<LiveKitMetrics, String> {
        let response = livekit
            .http()
            .get(url)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| describe_request_error(&e))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered HTTP {}", response.status()));
        }
        let text = response
            .text()
            .await
            .map_err(|e| describe_request_error(&e))?;
        parse_metrics(&text)
    }
}

/// LiveKit's metrics out of Prometheus's text format.
pub(crate) fn parse_metrics(text: &str) -> Result<LiveKitMetrics, String> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines)
        .map_err(|e| format!("the metrics do not read: {e}"))?;
    let mut metrics = LiveKitMetrics::default();
    for sample in &scrape.samples {
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        match sample.metric.as_str() {
            "livekit_room_total" => *metrics.rooms.get_or_insert(0.0) += value,
            "livekit_participant_total" => *metrics.participants.get_or_insert(0.0) += value,
            "livekit_node_twirp_request_status" => {
                let status = sample.labels.get("status").unwrap_or("").to_owned();
                *metrics.twirp_requests.entry(status).or_insert(0.0) += value;
            }
            _ => {}
        }
    }
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn livekit_s_metrics_are_summed_over_nodes() {
        let text = "\
# HELP livekit_room_total number of rooms
# TYPE livekit_room_total gauge
livekit_room_total{node_id=\"ND_a\",node_type=\"SERVER\"} 3
livekit_room_total{node_id=\"ND_b\",node_type=\"SERVER\"} 2
# TYPE livekit_participant_total gauge
livekit_participant_total{node_id=\"ND_a\",node_type=\"SERVER\"} 7
# TYPE livekit_node_twirp_request_status counter
livekit_node_twirp_request_status{node_id=\"ND_a\",node_type=\"SERVER\",service=\"RoomService\",method=\"ListRooms\",status=\"ok\",code=\"\"} 10
livekit_node_twirp_request_status{node_id=\"ND_a\",node_type=\"SERVER\",service=\"RoomService\",method=\"CreateRoom\",status=\"error\",code=\"not_found\"} 1
";
        let metrics = parse_metrics(text).unwrap();
        assert_eq!(metrics.rooms, Some(5.0));
        assert_eq!(metrics.participants, Some(7.0));
        assert_eq!(metrics.twirp_requests["ok"], 10.0);
        assert_eq!(metrics.twirp_requests["error"], 1.0);
    }
}
