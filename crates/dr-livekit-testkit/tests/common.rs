//! What the tests share: clients for a server, error codes, and a raw HTTP/1.1 client.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use livekit_api::services::{ServerError, ServiceError};
use livekit_protocol as lk;
use tokio::net::TcpStream;

/// The Twirp code of a client error, if the server answered one.
pub(crate) fn code(e: &ServiceError) -> Option<&str> {
    match e {
        ServiceError::Twirp(ServerError::Twirp(c)) => Some(c.code.as_str()),
        _ => None,
    }
}

/// The Twirp message of a client error, if the server answered one.
pub(crate) fn msg(e: &ServiceError) -> Option<&str> {
    match e {
        ServiceError::Twirp(ServerError::Twirp(c)) => Some(c.msg.as_str()),
        _ => None,
    }
}

/// A participant with just an identity, name and metadata.
pub(crate) fn participant(identity: &str) -> lk::ParticipantInfo {
    lk::ParticipantInfo {
        identity: identity.to_owned(),
        name: format!("{identity} name"),
        metadata: format!("{{\"who\":\"{identity}\"}}"),
        ..Default::default()
    }
}

/// An HTTP answer: status, content type, body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: String,
}

/// One request over a fresh connection to `url` (`http://host:port/path`).
pub(crate) async fn http(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let stream = TcpStream::connect(authority).await.expect("connects");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(if path.is_empty() { "/" } else { path })
        .header("host", authority);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let response = sender.send_request(request).await.expect("answer");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A Twirp call in JSON (as the Node SDK makes it) with a bearer token.
pub(crate) async fn twirp_json(url: &str, route: &str, token: &str, body: &str) -> Answer {
    let auth = format!("Bearer {token}");
    http(
        "POST",
        &format!("{url}/twirp/livekit.{route}"),
        &[
            ("content-type", "application/json;charset=UTF-8"),
            ("authorization", &auth),
        ],
        body,
    )
    .await
}
