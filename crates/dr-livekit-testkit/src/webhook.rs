//! Webhooks as LiveKit's `webhook.URLNotifier` posts them: the event as protobuf JSON,
//! `Content-Type: application/webhook+json`, and `Authorization: <jwt>` (no `Bearer`)
//! signed with the API key and secret, whose `sha256` claim is the base64 of the body's
//! SHA-256.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use livekit_api::access_token::AccessToken;
use livekit_protocol as lk;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::error::{Error, Result};

/// An `http://host:port/path` URL, split.
#[derive(Debug, Clone)]
pub(crate) struct WebhookUrl {
    pub(crate) authority: String,
    pub(crate) path: String,
}

impl WebhookUrl {
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let bad = || Error::WebhookUrl {
            url: url.to_owned(),
        };
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad());
        }
        let authority = if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(WebhookUrl {
            authority,
            path: path.to_owned(),
        })
    }
}

/// The body and `Authorization` value of one event.
pub(crate) fn sign(event: &lk::WebhookEvent, key: &str, secret: &str) -> (String, String) {
    let body = serde_json::to_string(event).unwrap_or_default();
    let digest = Sha256::digest(body.as_bytes());
    let sha = base64::engine::general_purpose::STANDARD.encode(digest);
    let token = AccessToken::with_api_key(key, secret)
        .with_ttl(Duration::from_secs(300))
        .with_sha256(&sha)
        .to_jwt()
        .unwrap_or_default();
    (body, token)
}

/// Posts each event in order, on one kept-alive connection opened again when it breaks; an
/// event that cannot be delivered is dropped (LiveKit's notifier drops too, when its queue
/// is full), so a receiver that is gone never stalls the server.
pub(crate) async fn deliver(
    url: WebhookUrl,
    key: String,
    secret: String,
    mut events: UnboundedReceiver<lk::WebhookEvent>,
) {
    let mut sender: Option<http1::SendRequest<Full<Bytes>>> = None;
    while let Some(event) = events.recv().await {
        let (body, token) = sign(&event, &key, &secret);
        for _attempt in 0..2 {
            if sender.as_ref().is_none_or(|s| s.is_closed()) {
                sender = connect(&url.authority).await;
            }
            let Some(s) = sender.as_mut() else { break };
            let request = Request::post(url.path.as_str())
                .header(hyper::header::HOST, url.authority.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/webhook+json")
                .header(hyper::header::AUTHORIZATION, token.as_str())
                .body(Full::new(Bytes::from(body.clone())));
            let Ok(request) = request else { break };
            if s.ready().await.is_err() {
                sender = None;
                continue;
            }
            match tokio::time::timeout(Duration::from_secs(5), s.send_request(request)).await {
                Ok(Ok(response)) => {
                    use http_body_util::BodyExt;
                    let _ = response.into_body().collect().await;
                    break;
                }
                _ => sender = None,
            }
        }
    }
}

async fn connect(authority: &str) -> Option<http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(authority))
        .await
        .ok()?
        .ok()?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}
