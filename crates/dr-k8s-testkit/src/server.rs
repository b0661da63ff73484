//! The HTTP/1.1 server on loopback and its handle.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::api::{self, ApiReply, ApiRequest};
use crate::error::{Error, Result};
use crate::status::ApiError;
use crate::store::Store;

/// The largest request body taken, as etcd's limit on an object (1.5 MiB) with room for a
/// patch's overhead.
const MAX_BODY: usize = 3 << 20;

/// A Kubernetes API server on 127.0.0.1, in memory, for tests.
///
/// It serves discovery, the built-in resources listed in the crate docs, and their `status`
/// and `scale` subresources, in JSON. Dropping the handle stops it: the accept loop and every
/// open connection are aborted. It starts no process and writes no file but the kubeconfig it
/// is asked for.
#[derive(Debug)]
pub struct KubeApiServer {
    address: SocketAddr,
    accept: JoinHandle<()>,
}

impl KubeApiServer {
    /// Binds a free port on 127.0.0.1 and serves on it from a task of the current tokio
    /// runtime, with the namespaces a new cluster has (`default`, `kube-system`,
    /// `kube-public`, `kube-node-lease`) and nothing else.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] if no port can be bound.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| Error::Bind { source })?;
        let address = listener
            .local_addr()
            .map_err(|source| Error::Bind { source })?;
        let now = jiff::Timestamp::now().as_nanosecond();
        // Only for uids and generated names: the low bits of the clock and the port.
        let seed = (now as u64) ^ u64::from(address.port()).rotate_left(48);
        let store = Arc::new(Mutex::new(Store::new(seed)));
        let accept = tokio::spawn(serve(listener, store));
        Ok(KubeApiServer { address, accept })
    }

    /// `http://127.0.0.1:PORT`, the server's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The address the server listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Writes `dir/kubeconfig`, a kubeconfig whose one context, `test` (the current one),
    /// points at this server with a user that has no credentials: what `kubectl
    /// --kubeconfig` reads. Returns its path.
    ///
    /// # Errors
    ///
    /// [`Error::WriteKubeconfig`] if the file cannot be written.
    pub async fn kubeconfig(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: test\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: test\n  user: {{}}\n\
             contexts:\n\
             - name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\n\
             current-context: test\n\
             preferences: {{}}\n",
            url = self.url()
        );
        tokio::fs::write(&path, text)
            .await
            .map_err(|source| Error::WriteKubeconfig {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Accepts connections until aborted; the connections live in a `JoinSet` owned by this
/// future, so aborting it aborts them too.
async fn serve(listener: TcpListener, store: Arc<Mutex<Store>>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: yield rather than spin.
            tokio::task::yield_now().await;
            continue;
        };
        while connections.try_join_next().is_some() {}
        let store = store.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let store = store.clone();
                async move { Ok::<_, Infallible>(respond(request, &store).await) }
            });
            // A client that goes away mid-request is no concern of the server's.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(request: Request<Incoming>, store: &Mutex<Store>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let content_type = header(CONTENT_TYPE);
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let reply = match body.collect().await {
        Err(e) => ApiError::bad_request(format!("reading the request body: {e}")).into(),
        Ok(collected) => {
            let body = collected.to_bytes();
            if body.len() > MAX_BODY {
                ApiReply::from(ApiError {
                    code: 413,
                    reason: "RequestEntityTooLarge",
                    message: format!("the request body is larger than {MAX_BODY} bytes"),
                    details: None,
                })
            } else {
                let request = ApiRequest {
                    method: parts.method,
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or("").to_owned(),
                    content_type: media_type,
                    accept: header(ACCEPT),
                    body,
                };
                // A panic elsewhere cannot leave the store half-written: every write
                // replaces whole objects.
                let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
                api::handle(&mut store, &request)
            }
        }
    };
    let body = serde_json::to_vec(&reply.body).expect("a JSON value serializes");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
