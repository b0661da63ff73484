//! [`LiveKit`]: how to reach one LiveKit server's API, and every call made
//! through it with its errors named.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use livekit_api::access_token::{AccessToken, SIPGrants, VideoGrants};
use livekit_api::services::{LiveKitApi, ServerError, ServiceError};

use crate::error::{Error, Result};

/// How long one API call may take, unless set otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Twirp's protobuf content type.
pub(crate) const PROTOBUF: &str = "application/protobuf";

/// How many API calls are in flight at once when many rooms are read or
/// restored, unless set otherwise.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// The grants of a token for a call of dr-livekit's own.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grants {
    pub(crate) video: VideoGrants,
    pub(crate) sip_admin: bool,
}

impl Grants {
    pub(crate) fn video(video: VideoGrants) -> Self {
        Self {
            video,
            sip_admin: false,
        }
    }

    pub(crate) fn sip_admin() -> Self {
        Self {
            video: VideoGrants::default(),
            sip_admin: true,
        }
    }
}

/// One Twirp call: its service and method, and the grant LiveKit wants for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) service: &'static str,
    pub(crate) method: &'static str,
    pub(crate) grant: &'static str,
}

impl Call {
    pub(crate) const fn new(
        service: &'static str,
        method: &'static str,
        grant: &'static str,
    ) -> Self {
        Self {
            service,
            method,
            grant,
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.service, self.method)
    }
}

/// The calls dr-livekit makes, with LiveKit's grant for each.
pub(crate) mod calls {
    use super::Call;

    const ROOM: &str = "RoomService";
    const ROOM_ADMIN: &str = "roomAdmin (for the room)";
    pub(crate) const CREATE_ROOM: Call = Call::new(ROOM, "CreateRoom", "roomCreate");
    pub(crate) const LIST_ROOMS: Call = Call::new(ROOM, "ListRooms", "roomList");
    pub(crate) const UPDATE_ROOM_METADATA: Call = Call::new(ROOM, "UpdateRoomMetadata", ROOM_ADMIN);
    pub(crate) const LIST_PARTICIPANTS: Call = Call::new(ROOM, "ListParticipants", ROOM_ADMIN);
    pub(crate) const UPDATE_PARTICIPANT: Call = Call::new(ROOM, "UpdateParticipant", ROOM_ADMIN);
    pub(crate) const LIST_EGRESS: Call = Call::new("Egress", "ListEgress", "roomRecord");
    pub(crate) const START_ROOM_COMPOSITE_EGRESS: Call =
        Call::new("Egress", "StartRoomCompositeEgress", "roomRecord");
    pub(crate) const START_WEB_EGRESS: Call = Call::new("Egress", "StartWebEgress", "roomRecord");
    pub(crate) const START_PARTICIPANT_EGRESS: Call =
        Call::new("Egress", "StartParticipantEgress", "roomRecord");
    pub(crate) const START_TRACK_COMPOSITE_EGRESS: Call =
        Call::new("Egress", "StartTrackCompositeEgress", "roomRecord");
    pub(crate) const START_TRACK_EGRESS: Call =
        Call::new("Egress", "StartTrackEgress", "roomRecord");
    pub(crate) const START_EGRESS: Call = Call::new("Egress", "StartEgress", "roomRecord");
    pub(crate) const LIST_INGRESS: Call = Call::new("Ingress", "ListIngress", "ingressAdmin");
    pub(crate) const CREATE_INGRESS: Call = Call::new("Ingress", "CreateIngress", "ingressAdmin");
    pub(crate) const LIST_INBOUND_TRUNKS: Call =
        Call::new("SIP", "ListSIPInboundTrunk", "sip.admin");
    pub(crate) const LIST_OUTBOUND_TRUNKS: Call =
        Call::new("SIP", "ListSIPOutboundTrunk", "sip.admin");
    pub(crate) const LIST_DISPATCH_RULES: Call =
        Call::new("SIP", "ListSIPDispatchRule", "sip.admin");
    pub(crate) const CREATE_INBOUND_TRUNK: Call =
        Call::new("SIP", "CreateSIPInboundTrunk", "sip.admin");
    pub(crate) const CREATE_OUTBOUND_TRUNK: Call =
        Call::new("SIP", "CreateSIPOutboundTrunk", "sip.admin");
    pub(crate) const CREATE_DISPATCH_RULE: Call =
        Call::new("SIP", "CreateSIPDispatchRule", "sip.admin");
    const AGENT: &str = "AgentDispatchService";
    pub(crate) const LIST_DISPATCH: Call = Call::new(AGENT, "ListDispatch", ROOM_ADMIN);
    pub(crate) const CREATE_DISPATCH: Call = Call::new(AGENT, "CreateDispatch", ROOM_ADMIN);
}

/// How to reach one LiveKit server's API: its URL and an API key and
/// secret. Cheap to clone (the HTTP connections are shared).
///
/// ```
/// use std::time::Duration;
///
/// let sfu = dr_livekit::LiveKit::new("wss://sfu.example.com", "APIkey", "secret")?
///     .with_request_timeout(Duration::from_secs(5));
/// assert_eq!(sfu.url(), "https://sfu.example.com");
/// # Ok::<(), dr_livekit::Error>(())
/// ```
#[derive(Clone)]
pub struct LiveKit {
    url: String,
    auth: Auth,
    timeout: Duration,
    concurrency: usize,
    api: Arc<LiveKitApi>,
    http: reqwest::Client,
}

/// How calls are signed.
#[derive(Clone)]
enum Auth {
    /// A token minted per call, with the grants it needs.
    Secret { key: String, secret: String },
    /// One token the caller made, sent as it is; its key, from its `iss`.
    Token { token: String, key: String },
}

impl fmt::Debug for LiveKit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret, nor the token.
        f.debug_struct("LiveKit")
            .field("url", &self.url)
            .field("api_key", &self.api_key())
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl LiveKit {
    /// The server at `url` (`http(s)://` or `ws(s)://`, as clients are
    /// given it), with an API key and its secret.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a URL of another scheme, or an empty
    /// key or secret.
    pub fn new(url: &str, api_key: &str, api_secret: &str) -> Result<Self> {
        let url = http_url(url)?;
        if api_key.is_empty() || api_secret.is_empty() {
            return Err(Error::InvalidConfig {
                reason: format!("the API key and secret for {url} must not be empty"),
            });
        }
        let auth = Auth::Secret {
            key: api_key.to_owned(),
            secret: api_secret.to_owned(),
        };
        Self::with_auth(url, auth)
    }

    /// The server at `url`, every call signed with `token` as it is: for
    /// an operator given a token with only the grants a job needs (a
    /// snapshot needs `roomList`, `roomAdmin` for each room, `roomRecord`,
    /// `ingressAdmin` and `sip.admin`), not the secret. A call the token
    /// has no grant for is [`Error::PermissionDenied`], naming the grant;
    /// webhooks cannot be verified without the secret.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a URL of another scheme, or a token that
    /// is not a JWT.
    pub fn with_token(url: &str, token: &str) -> Result<Self> {
        let url = http_url(url)?;
        let claims = livekit_api::access_token::Claims::from_unverified(token).map_err(|e| {
            Error::InvalidConfig {
                reason: format!("the token for {url} is not a LiveKit access token: {e}"),
            }
        })?;
        let auth = Auth::Token {
            token: token.to_owned(),
            key: claims.iss,
        };
        Self::with_auth(url, auth)
    }

    fn with_auth(url: String, auth: Auth) -> Result<Self> {
        let http = http_client()?;
        let api = build_api(&url, &auth, DEFAULT_REQUEST_TIMEOUT);
        Ok(Self {
            url,
            auth,
            timeout: DEFAULT_REQUEST_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            api: Arc::new(api),
            http,
        })
    }

    /// How long each API call may take (10 s unless set).
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.api = Arc::new(build_api(&self.url, &self.auth, timeout));
        self
    }

    /// How many calls are in flight at once when many rooms are read or
    /// restored (16 unless set; at least 1).
    #[must_use]
    pub fn with_concurrency(mut self, calls: usize) -> Self {
        self.concurrency = calls.max(1);
        self
    }

    /// The server's URL, `http(s)://`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The API key (never the secret): a token's issuer where calls are
    /// signed with one.
    pub fn api_key(&self) -> &str {
        match &self.auth {
            Auth::Secret { key, .. } | Auth::Token { key, .. } => key,
        }
    }

    /// How long each call may take.
    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// Calls in flight at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    pub(crate) fn api(&self) -> &LiveKitApi {
        &self.api
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The API secret; `None` where calls are signed with a given token.
    pub(crate) fn api_secret(&self) -> Option<&str> {
        match &self.auth {
            Auth::Secret { secret, .. } => Some(secret),
            Auth::Token { .. } => None,
        }
    }

    /// A token for a call of our own: signed with the key and secret, or
    /// the one given.
    pub(crate) fn token(&self, grants: Grants) -> Result<String> {
        let (key, secret) = match &self.auth {
            Auth::Secret { key, secret } => (key, secret),
            Auth::Token { token, .. } => return Ok(token.clone()),
        };
        let mut token = AccessToken::with_api_key(key, secret)
            .with_grants(grants.video)
            .with_ttl(Duration::from_secs(600));
        if grants.sip_admin {
            token = token.with_sip_grants(SIPGrants {
                admin: true,
                ..Default::default()
            });
        }
        token.to_jwt().map_err(|e| Error::InvalidConfig {
            reason: format!("an access token for {} cannot be made: {e}", self.url),
        })
    }

    /// Runs `request`, the call `call`, naming this server and the call in
    /// its error.
    pub(crate) async fn call<T>(
        &self,
        call: Call,
        request: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<T> {
        match request.await {
            Ok(answer) => Ok(answer),
            // livekit-api reads every error answer as Twirp's JSON; LiveKit
            // answers a token it cannot verify (a wrong secret, an unknown
            // key) with a plain-text 401 before Twirp sees the request, so
            // the status is lost. A call of our own tells the two apart.
            Err(ServiceError::Twirp(ServerError::Request(e))) if e.is_decode() => {
                Err(self.diagnose(call, &e).await)
            }
            Err(e) => Err(self.error(call, e)),
        }
    }

    /// Why `call`'s answer did not read: a `ListRooms` of no room, made
    /// here, says whether the key is refused or the server is not LiveKit.
    async fn diagnose(&self, call: Call, error: &reqwest::Error) -> Error {
        let body = br#"{"names":["drkit-probe-no-such-room"]}"#.to_vec();
        let grants = Grants::video(VideoGrants {
            room_list: true,
            ..Default::default()
        });
        let named = |e: Error| match e {
            Error::Unauthenticated { url, message, .. } => Error::Unauthenticated {
                url,
                call: call.to_string(),
                message,
            },
            other => other,
        };
        match self
            .post_twirp(calls::LIST_ROOMS, body, "application/json", grants)
            .await
        {
            Err(e @ (Error::Unauthenticated { .. } | Error::NotLiveKit { .. })) => named(e),
            _ => Error::NotLiveKit {
                url: self.url.clone(),
                call: call.to_string(),
                reason: format!("its body does not read as a Twirp answer: {error}"),
            },
        }
    }

    /// Sends `request` whole as the call `call`, with a token of
    /// `grants`, and reads its answer: for what livekit-api's helpers
    /// cannot send as it is (a `CreateRoom` with its agents and playout
    /// delay, an egress's request as it was started). The answer must be
    /// Twirp's protobuf.
    pub(crate) async fn twirp<Resp: prost::Message + Default>(
        &self,
        call: Call,
        request: &impl prost::Message,
        grants: Grants,
    ) -> Result<Resp> {
        let body = self
            .post_twirp(call, request.encode_to_vec(), PROTOBUF, grants)
            .await?;
        Resp::decode(body.as_slice()).map_err(|e| Error::NotLiveKit {
            url: self.url.clone(),
            call: call.to_string(),
            reason: format!("its body is not the call's protobuf message: {e}"),
        })
    }

    /// POSTs `body` of `content_type` to the call's Twirp route; the
    /// answer's body if it is a 200 of the same content type.
    pub(crate) async fn post_twirp(
        &self,
        call: Call,
        body: Vec<u8>,
        content_type: &'static str,
        grants: Grants,
    ) -> Result<Vec<u8>> {
        let token = self.token(grants)?;
        let route = format!(
            "{}/twirp/livekit.{}/{}",
            self.url, call.service, call.method
        );
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            url: self.url.clone(),
            call: call.to_string(),
            reason: describe_request_error(&e),
        };
        let response = self
            .http
            .post(&route)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .timeout(self.timeout)
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let answered = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no content type")
            .to_owned();
        let body = response.bytes().await.map_err(unreachable)?.to_vec();
        if status == reqwest::StatusCode::UNAUTHORIZED && !answered.starts_with("application/json")
        {
            // LiveKit's own check of the token, before Twirp: plain text.
            return Err(Error::Unauthenticated {
                url: self.url.clone(),
                call: call.to_string(),
                message: String::from_utf8_lossy(&body).trim().to_owned(),
            });
        }
        if status == reqwest::StatusCode::OK {
            if !answered.starts_with(content_type) {
                return Err(Error::NotLiveKit {
                    url: self.url.clone(),
                    call: call.to_string(),
                    reason: format!("it answered 200 with {answered}, not {content_type}"),
                });
            }
            return Ok(body);
        }
        #[derive(serde::Deserialize)]
        struct TwirpAnswer {
            code: String,
            #[serde(default)]
            msg: String,
        }
        match serde_json::from_slice::<TwirpAnswer>(&body) {
            Ok(answer) => Err(self.twirp_error(call, answer.code, answer.msg)),
            Err(_) => Err(Error::NotLiveKit {
                url: self.url.clone(),
                call: call.to_string(),
                reason: format!("it answered HTTP {status} with {answered}, not a Twirp error"),
            }),
        }
    }

    /// A Twirp error answer to `call` as an [`Error`].
    fn twirp_error(&self, call: Call, code: String, message: String) -> Error {
        let url = self.url.clone();
        let call_name = call.to_string();
        match code.as_str() {
            // LiveKit's services answer a token without the grant so
            // (`permissions denied`), not with `permission_denied`.
            "unauthenticated" | "permission_denied" if message.contains("permission") => {
                Error::PermissionDenied {
                    url,
                    call: call_name,
                    grant: call.grant,
                    message,
                }
            }
            "unauthenticated" => Error::Unauthenticated {
                url,
                call: call_name,
                message,
            },
            "permission_denied" => Error::PermissionDenied {
                url,
                call: call_name,
                grant: call.grant,
                message,
            },
            _ => Error::Server {
                url,
                call: call_name,
                code,
                message,
            },
        }
    }

    fn error(&self, call: Call, error: ServiceError) -> Error {
        let url = self.url.clone();
        let call_name = call.to_string();
        match error {
            ServiceError::Twirp(ServerError::Twirp(answer)) => {
                self.twirp_error(call, answer.code, answer.msg)
            }
            ServiceError::Twirp(ServerError::Request(e)) if e.is_decode() => Error::NotLiveKit {
                url,
                call: call_name,
                reason: format!("its body does not read as a Twirp answer: {e}"),
            },
            ServiceError::Twirp(ServerError::Request(e)) => Error::Unreachable {
                url,
                call: call_name,
                reason: describe_request_error(&e),
            },
            ServiceError::Twirp(ServerError::Prost(e)) => Error::NotLiveKit {
                url,
                call: call_name,
                reason: format!("its body is not the call's protobuf message: {e}"),
            },
            ServiceError::Twirp(ServerError::Url(e)) => Error::InvalidConfig {
                reason: format!("the URL {url}: {e}"),
            },
            ServiceError::AccessToken(e) => Error::InvalidConfig {
                reason: format!("an access token for {url} cannot be made: {e}"),
            },
            ServiceError::Env(e) => Error::InvalidConfig {
                reason: format!("the environment: {e}"),
            },
        }
    }
}

/// The clients of every service, on one connection pool.
fn build_api(url: &str, auth: &Auth, timeout: Duration) -> LiveKitApi {
    match auth {
        Auth::Secret { key, secret } => LiveKitApi::with_api_key(url, key, secret),
        Auth::Token { token, .. } => LiveKitApi::with_token(url, token),
    }
    // Region failover is for LiveKit Cloud hosts only; a DR tool
    // decides itself where it goes.
    .with_failover(false)
    .with_request_timeout(timeout)
}

/// A reqwest error in words: what a person needs to tell an unreachable
/// server from a slow one.
pub(crate) fn describe_request_error(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    let mut reason = what.to_owned();
    let mut source = error.source();
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// `url` as the API's base: `ws(s)://` becomes `http(s)://`, no trailing
/// slash.
fn http_url(url: &str) -> Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| Error::InvalidConfig {
            reason: format!("{url:?} is not a URL (http://, https://, ws:// or wss://)"),
        })?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        other => {
            return Err(Error::InvalidConfig {
                reason: format!("{url:?}: the scheme {other:?} is not http, https, ws or wss"),
            });
        }
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(Error::InvalidConfig {
            reason: format!("{url:?} names no host"),
        });
    }
    Ok(format!("{scheme}://{rest}"))
}

/// The HTTP client of dr-livekit's own requests (health, metrics, the
/// handshake): TLS through rustls with aws-lc-rs and the system's roots.
fn http_client() -> Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidConfig {
            reason: format!("TLS: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|e| Error::InvalidConfig {
            reason: format!("an HTTP client cannot be made: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_the_api_s_base() {
        assert_eq!(
            http_url("ws://127.0.0.1:7880/").unwrap(),
            "http://127.0.0.1:7880"
        );
        assert_eq!(
            http_url("WSS://sfu.example.com").unwrap(),
            "https://sfu.example.com"
        );
        assert_eq!(
            http_url("https://sfu.example.com").unwrap(),
            "https://sfu.example.com"
        );
        assert!(http_url("sfu.example.com").is_err());
        assert!(http_url("ftp://sfu").is_err());
        assert!(http_url("http://").is_err());
    }

    #[test]
    fn empty_credentials_are_refused_and_the_secret_is_never_printed() {
        assert!(LiveKit::new("http://127.0.0.1:7880", "", "s").is_err());
        let sfu = LiveKit::new("http://127.0.0.1:7880", "key", "very-secret").unwrap();
        assert!(!format!("{sfu:?}").contains("very-secret"));
    }
}
