//! `/metrics` (the Prometheus text format) and `/healthz` over HTTP/1.1.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::metrics::Metrics;

/// What Prometheus reads: the text format, version 0.0.4.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// A client that sends no request head within this long is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&request, &metrics);
                async move { Ok::<_, Infallible>(response) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("serving a connection: {e}");
            }
        });
    }
}

fn respond(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let readable = matches!(*request.method(), Method::GET | Method::HEAD);
    let mut response = match path {
        "/metrics" | "/healthz" if !readable => {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT,
                "GET or HEAD only\n".into(),
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        "/metrics" => reply(
            StatusCode::OK,
            METRICS_TYPE,
            metrics.render(jiff::Timestamp::now()),
        ),
        "/healthz" if metrics.is_stopping() => {
            reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, "stopping\n".into())
        }
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /metrics or /healthz\n".into(),
        ),
    };
    if *request.method() == Method::HEAD {
        *response.body_mut() = Full::default();
    }
    response
}

const TEXT: &str = "text/plain; charset=utf-8";

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
