//! The HTTP/1.1 listeners on loopback (the API and Prometheus's) and the handle.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use livekit_protocol as lk;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::auth::Keys;
use crate::error::{Error, Result};
use crate::ids::Ids;
use crate::services;
use crate::state::State;
use crate::twirp::{Code, Encoding, TwirpError};
use crate::webhook::{self, WebhookUrl};

/// The largest request body taken (LiveKit's `limit.max_api_request_body_size` is of this
/// order; nothing the tests send comes near it).
const MAX_BODY: usize = 4 << 20;

/// What a misconfigured reverse proxy answers in place of the API.
const HTML_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>Welcome</title></head>\
<body><h1>It works!</h1><p>This is not LiveKit.</p></body></html>\n";

/// How a [`LiveKitServer`] is set up: its API key and secret, where webhooks go, its node
/// id, and the ingress URLs it hands out.
///
/// ```
/// let options = dr_livekit_testkit::LiveKitServerOptions::default()
///     .api_key("devkey", "a-secret-of-at-least-32-characters!")
///     .webhook_url("http://127.0.0.1:9999/hook")
///     .node_id("ND_test");
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LiveKitServerOptions {
    keys: Option<(String, String)>,
    webhook_url: Option<String>,
    node_id: Option<String>,
    rtmp_url: Option<String>,
    whip_url: Option<String>,
}

impl LiveKitServerOptions {
    /// The one API key and its secret the server takes (default: a random `API…` key and
    /// a random 32-character secret).
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>, secret: impl Into<String>) -> Self {
        self.keys = Some((key.into(), secret.into()));
        self
    }

    /// Where webhooks are posted (`http://` only); none by default.
    #[must_use]
    pub fn webhook_url(mut self, url: impl Into<String>) -> Self {
        self.webhook_url = Some(url.into());
        self
    }

    /// The node id in the metrics' `node_id` label (default: a random `ND_…`).
    #[must_use]
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// The `url` of RTMP ingress (LiveKit's `ingress.rtmp_base_url`; default
    /// `rtmp://127.0.0.1:1935/x`).
    #[must_use]
    pub fn rtmp_url(mut self, url: impl Into<String>) -> Self {
        self.rtmp_url = Some(url.into());
        self
    }

    /// The `url` of WHIP ingress (LiveKit's `ingress.whip_base_url`; default
    /// `http://127.0.0.1:8080/w`).
    #[must_use]
    pub fn whip_url(mut self, url: impl Into<String>) -> Self {
        self.whip_url = Some(url.into());
        self
    }
}

/// The counters behind `/metrics` and [`LiveKitServer::request_count`].
#[derive(Debug, Default)]
struct Counters {
    /// Requests per known route, whatever their answer.
    requests: BTreeMap<(&'static str, &'static str), u64>,
    /// `livekit_node_twirp_request_status`: service, method, status family, code.
    status: BTreeMap<(&'static str, &'static str, &'static str, &'static str), u64>,
}

/// Everything under the server's one lock.
#[derive(Debug)]
struct Inner {
    state: State,
    counters: Counters,
}

#[derive(Debug)]
struct Shared {
    keys: Keys,
    node_id: String,
    inner: Mutex<Inner>,
    ready: AtomicBool,
    down: AtomicBool,
    html: AtomicBool,
    delay_us: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic in a handler leaves the state as it was between calls: keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A LiveKit server's API on 127.0.0.1, in memory, for tests.
///
/// It serves the Twirp services the crate docs list, `GET /` health, and Prometheus
/// metrics on a second port. Dropping the handle stops it: both accept loops, every open
/// connection and the webhook sender are aborted.
#[derive(Debug)]
pub struct LiveKitServer {
    address: SocketAddr,
    metrics_address: SocketAddr,
    secret: String,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for LiveKitServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl LiveKitServer {
    /// [`LiveKitServer::start_with`] the default options: a random key and secret, no
    /// webhooks.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] if no port can be bound.
    pub async fn start() -> Result<Self> {
        Self::start_with(LiveKitServerOptions::default()).await
    }

    /// A warm standby of this server: another stand-in, empty, taking this one's API key
    /// and secret, as a standby SFU in a second region does.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] if no port can be bound.
    pub async fn start_standby(&self) -> Result<Self> {
        Self::start_with(LiveKitServerOptions::default().api_key(self.api_key(), self.api_secret()))
            .await
    }

    /// Binds two free ports on 127.0.0.1, the API's and the metrics', and serves them from
    /// tasks of the current tokio runtime, holding nothing yet.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] if no port can be bound, [`Error::WebhookUrl`] if the webhook URL is
    /// not `http://`.
    pub async fn start_with(options: LiveKitServerOptions) -> Result<Self> {
        let mut ids = Ids::new();
        let (key, secret) = options
            .keys
            .unwrap_or_else(|| (ids.id("API"), ids.with_len("", 32)));
        let webhook_url = options
            .webhook_url
            .as_deref()
            .map(WebhookUrl::parse)
            .transpose()?;
        let bind = |source| Error::Bind { source };
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(bind)?;
        let address = listener.local_addr().map_err(bind)?;
        let metrics = TcpListener::bind(("127.0.0.1", 0)).await.map_err(bind)?;
        let metrics_address = metrics.local_addr().map_err(bind)?;

        let mut tasks = Vec::new();
        let sender = webhook_url.map(|url| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tasks.push(tokio::spawn(webhook::deliver(
                url,
                key.clone(),
                secret.clone(),
                rx,
            )));
            tx
        });
        let state = State::new(
            options
                .rtmp_url
                .unwrap_or_else(|| "rtmp://127.0.0.1:1935/x".to_owned()),
            options
                .whip_url
                .unwrap_or_else(|| "http://127.0.0.1:8080/w".to_owned()),
            sender,
        );
        let shared = Arc::new(Shared {
            keys: Keys::new(&key, &secret),
            node_id: options.node_id.unwrap_or_else(|| ids.id("ND_")),
            inner: Mutex::new(Inner {
                state,
                counters: Counters::default(),
            }),
            ready: AtomicBool::new(true),
            down: AtomicBool::new(false),
            html: AtomicBool::new(false),
            delay_us: AtomicU64::new(0),
        });
        tasks.push(tokio::spawn(accept(listener, shared.clone(), false)));
        tasks.push(tokio::spawn(accept(metrics, shared.clone(), true)));
        Ok(LiveKitServer {
            address,
            metrics_address,
            secret,
            shared,
            tasks,
        })
    }

    /// The API's base URL, `http://127.0.0.1:<port>`, for `livekit_api`'s clients and the
    /// Node SDK.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Prometheus's URL, `http://127.0.0.1:<other port>/metrics`.
    #[must_use]
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_address)
    }

    /// The API key the server takes.
    #[must_use]
    pub fn api_key(&self) -> &str {
        &self.shared.keys.key
    }

    /// The API key's secret.
    #[must_use]
    pub fn api_secret(&self) -> &str {
        &self.secret
    }

    /// LiveKit's own client (`livekit-api`) of this server, with its key and
    /// secret: how a test sets the server up as a service would.
    #[must_use]
    pub fn api(&self) -> livekit_api::services::LiveKitApi {
        livekit_api::services::LiveKitApi::with_api_key(
            &self.url(),
            self.api_key(),
            self.api_secret(),
        )
    }

    /// The node id in the metrics' `node_id` label.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// **Test control** (a real server has none): a participant joins `room`, as a client
    /// with a join token would. The room is created if missing, as LiveKit's
    /// `room.auto_create` (on by default) does. `participant` gives the identity (required),
    /// name, metadata, attributes, permission and kind; the server sets its `PA_…` sid,
    /// state `ACTIVE` and `joined_at`. A participant of the same identity is replaced.
    /// Webhooks: `room_started` if the room was made, `participant_joined`.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyIdentity`] if the identity is empty.
    pub fn join(
        &self,
        room: &str,
        participant: lk::ParticipantInfo,
    ) -> Result<lk::ParticipantInfo> {
        if participant.identity.is_empty() {
            return Err(Error::EmptyIdentity {
                room: room.to_owned(),
            });
        }
        Ok(self.shared.lock().state.join(room, participant).1)
    }

    /// **Test control**: the participant leaves (webhook `participant_left`); the room
    /// stays (LiveKit closes it only after its empty timeout, which this server does not
    /// run).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchParticipant`] if no such participant is in the room.
    pub fn leave(&self, room: &str, identity: &str) -> Result<()> {
        self.shared
            .lock()
            .state
            .remove_participant(room, identity)
            .map_err(|_| Error::NoSuchParticipant {
                room: room.to_owned(),
                identity: identity.to_owned(),
            })
    }

    /// **Test control**: moves an egress to `status`, as its egress worker would report
    /// it. `EGRESS_ACTIVE` sets `started_at`; the ended statuses (`COMPLETE`, `FAILED`,
    /// `ABORTED`, `LIMIT_REACHED`) set `ended_at`. Webhook `egress_updated`, or
    /// `egress_ended` for an ended status.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchEgress`] if there is no egress of that id.
    pub fn set_egress_status(
        &self,
        egress_id: &str,
        status: lk::EgressStatus,
    ) -> Result<lk::EgressInfo> {
        self.shared
            .lock()
            .state
            .set_egress_status(egress_id, status)
            .ok_or_else(|| Error::NoSuchEgress {
                egress_id: egress_id.to_owned(),
            })
    }

    /// **Test control**: what the room's `CreateRoomRequest`s asked for that LiveKit keeps
    /// (in `RoomInternal`) and no API returns: `egress`, `agents`, the playout delays,
    /// `sync_streams`, with `name`; the rest of the request is in its `Room`. `None` if
    /// there is no such room.
    #[must_use]
    pub fn room_config(&self, room: &str) -> Option<lk::CreateRoomRequest> {
        self.shared.lock().state.room_config(room)
    }

    /// **Test control**: how many rooms and participants the server holds.
    #[must_use]
    pub fn counts(&self) -> (usize, usize) {
        let inner = self.shared.lock();
        (inner.state.room_count(), inner.state.participant_count())
    }

    /// **Test control**: how many requests reached `livekit.<service>/<method>` (e.g.
    /// `("RoomService", "ListRooms")`), whatever their answer, those turned away by the
    /// token check or a chaos knob included.
    #[must_use]
    pub fn request_count(&self, service: &str, method: &str) -> u64 {
        services::route(service, method)
            .and_then(|r| self.shared.lock().counters.requests.get(&r).copied())
            .unwrap_or(0)
    }

    /// **Test control**: every route's request count, keyed `"<Service>/<Method>"`.
    #[must_use]
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.shared
            .lock()
            .counters
            .requests
            .iter()
            .map(|((s, m), n)| (format!("{s}/{m}"), *n))
            .collect()
    }

    /// **Chaos knob**: not ready makes `GET /` answer 406 `Not Ready`, as a node whose
    /// stats are stale; the API still answers, as LiveKit's does.
    pub fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::SeqCst);
    }

    /// **Chaos knob**: down makes every Twirp call answer 503 `unavailable` and `GET /`
    /// 406, as a node that lost its Redis or its routing.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// **Chaos knob**: every Twirp answer waits this long first (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.delay_us.store(us, Ordering::SeqCst);
    }

    /// **Chaos knob**: every answer of the API port (health included) becomes a 200
    /// `text/html` page, as a misconfigured proxy in front of LiveKit gives.
    pub fn set_html(&self, html: bool) {
        self.shared.html.store(html, Ordering::SeqCst);
    }

    /// **Chaos knob**: a node restart (or a Redis flush of the ephemeral keys). Rooms,
    /// participants and agent dispatches are gone (webhooks `participant_left` and
    /// `room_finished`); the active egress of those rooms ends `EGRESS_ABORTED`. What a
    /// multi-node LiveKit keeps in Redis stays: ingress, SIP trunks and dispatch rules,
    /// and the egress records. Rooms made again get new sids, as on a real server.
    pub fn restart(&self) {
        self.shared.lock().state.restart();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, metrics: bool) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let shared = shared.clone();
                async move {
                    let response = if metrics {
                        serve_metrics(&shared, &request)
                    } else {
                        serve(&shared, request).await
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn text(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

fn twirp_error(e: &TwirpError) -> Response<Full<Bytes>> {
    text(e.code.status(), "application/json", e.body())
}

async fn serve(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if shared.html.load(Ordering::SeqCst) {
        return text(200, "text/html; charset=utf-8", HTML_PAGE);
    }
    let path = request.uri().path().to_owned();
    if path == "/" {
        let healthy = shared.ready.load(Ordering::SeqCst) && !shared.down.load(Ordering::SeqCst);
        return if healthy {
            text(200, "text/plain; charset=utf-8", "OK")
        } else {
            text(406, "text/plain; charset=utf-8", "Not Ready")
        };
    }
    let Some(rest) = path.strip_prefix("/twirp/") else {
        return text(404, "text/plain; charset=utf-8", "404 page not found\n");
    };
    let route = rest
        .strip_prefix("livekit.")
        .and_then(|r| r.split_once('/'))
        .and_then(|(s, m)| services::route(s, m));
    if let Some(r) = route {
        *shared.lock().counters.requests.entry(r).or_default() += 1;
    }
    let delay = Duration::from_micros(shared.delay_us.load(Ordering::SeqCst));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if shared.down.load(Ordering::SeqCst) {
        let e = TwirpError::new(Code::Unavailable, "no available nodes");
        if let Some((s, m)) = route {
            record(shared, s, m, Some(&e));
        }
        return twirp_error(&e);
    }
    // LiveKit's APIKeyAuthMiddleware runs before Twirp: a bad token is a plain-text 401.
    let grants = match shared
        .keys
        .authenticate(request.headers().get(AUTHORIZATION).map(|v| v.as_bytes()))
    {
        Ok(grants) => grants,
        Err(rejected) => return text(401, "text/plain; charset=utf-8", rejected.0),
    };
    let Some((service, method)) = route else {
        return twirp_error(&TwirpError::new(
            Code::BadRoute,
            format!("no handler for path \"{path}\""),
        ));
    };
    let result = async {
        if request.method() != Method::POST {
            return Err(TwirpError::new(
                Code::BadRoute,
                format!(
                    "unsupported method {} (only POST is allowed)",
                    request.method()
                ),
            ));
        }
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let enc = Encoding::from_content_type(&content_type).ok_or_else(|| {
            TwirpError::new(
                Code::BadRoute,
                format!("unexpected Content-Type: \"{content_type}\""),
            )
        })?;
        let body = Limited::new(request.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                TwirpError::new(Code::Malformed, format!("failed to read request body: {e}"))
            })?
            .to_bytes();
        let mut inner = shared.lock();
        let answer = services::serve(
            &mut inner.state,
            grants.as_ref(),
            service,
            method,
            enc,
            &body,
        );
        Ok((enc, answer))
    }
    .await;
    match result {
        Ok((enc, Ok(body))) => {
            record(shared, service, method, None);
            text(200, enc.content_type(), body)
        }
        Ok((_, Err(e))) | Err(e) => {
            record(shared, service, method, Some(&e));
            twirp_error(&e)
        }
    }
}

/// `TwirpRequestStatusReporter`: the status family ("200", "4xx", "5xx") and the code
/// ("" on success).
fn record(shared: &Shared, service: &'static str, method: &'static str, e: Option<&TwirpError>) {
    let (family, code) = match e {
        None => ("200", ""),
        Some(e) if e.code.status() >= 500 => ("5xx", e.code.as_str()),
        Some(e) => ("4xx", e.code.as_str()),
    };
    *shared
        .lock()
        .counters
        .status
        .entry((service, method, family, code))
        .or_default() += 1;
}

fn serve_metrics(shared: &Shared, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return text(404, "text/plain; charset=utf-8", "404 page not found\n");
    }
    let labels = format!(
        "node_id=\"{}\",node_type=\"SERVER\"",
        escape(&shared.node_id)
    );
    let inner = shared.lock();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP livekit_node_twirp_request_status ");
    let _ = writeln!(out, "# TYPE livekit_node_twirp_request_status counter");
    for ((service, method, status, code), n) in &inner.counters.status {
        let _ = writeln!(
            out,
            "livekit_node_twirp_request_status{{code=\"{code}\",method=\"{method}\",{labels},service=\"{service}\",status=\"{status}\"}} {n}"
        );
    }
    let _ = writeln!(out, "# HELP livekit_participant_total ");
    let _ = writeln!(out, "# TYPE livekit_participant_total gauge");
    let _ = writeln!(
        out,
        "livekit_participant_total{{{labels}}} {}",
        inner.state.participant_count()
    );
    let _ = writeln!(out, "# HELP livekit_room_total ");
    let _ = writeln!(out, "# TYPE livekit_room_total gauge");
    let _ = writeln!(
        out,
        "livekit_room_total{{{labels}}} {}",
        inner.state.room_count()
    );
    drop(inner);
    text(200, "text/plain; version=0.0.4; charset=utf-8", out)
}

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
