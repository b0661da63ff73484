//! The HTTP/1.1 server on loopback and its handle.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue, IF_NONE_MATCH, RETRY_AFTER, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::api::{self, ApiReply, ApiRequest, Outcome};
use crate::error::{Error, Result};
use crate::fault::{Fault, Faults};
use crate::status::ApiError;
use crate::store::Store;
use crate::watch::{self, Pacing, ResponseBody};

/// The largest request body taken, as etcd's limit on an object (1.5 MiB) with room for a
/// patch's overhead.
const MAX_BODY: usize = 3 << 20;

/// How a [`KubeApiServer`] behaves: whether its controllers run, how much watch history it
/// keeps, how often watches get bookmarks.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// let options = dr_k8s_testkit::KubeApiServerOptions::default()
///     .controllers(false)
///     .watch_history(100)
///     .bookmark_interval(Duration::from_millis(200))
///     .aggregated_discovery(true);
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct KubeApiServerOptions {
    controllers: bool,
    watch_history: usize,
    bookmark_interval: Duration,
    aggregated_discovery: bool,
}

impl Default for KubeApiServerOptions {
    /// Controllers on, 10 000 changes of watch history, a bookmark every second, aggregated
    /// discovery served.
    fn default() -> Self {
        KubeApiServerOptions {
            controllers: true,
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(1),
            aggregated_discovery: true,
        }
    }
}

impl KubeApiServerOptions {
    /// Whether the controllers run (deployments make replica sets, replica sets and stateful
    /// sets make pods, pods start): on by default. Off, the server is an API server alone, as
    /// a real one without its controller manager and kubelets.
    #[must_use]
    pub fn controllers(mut self, on: bool) -> Self {
        self.controllers = on;
        self
    }

    /// How many changes the server keeps for watches that start from an older
    /// resourceVersion (at least 1); a watch from before them is answered 410 Expired.
    #[must_use]
    pub fn watch_history(mut self, changes: usize) -> Self {
        self.watch_history = changes.max(1);
        self
    }

    /// How often a watch that asked for them (`allowWatchBookmarks=true`) gets a BOOKMARK
    /// event. A real server sends one about every minute; a second suits short tests.
    #[must_use]
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Whether `/api` and `/apis` answer aggregated discovery (`apidiscovery.k8s.io/v2`) to a
    /// client that asks for it: on by default, as a server of 1.30 or later. Off, they
    /// answer the legacy documents whatever the client asks, as a server before aggregated
    /// discovery, and clients (kubectl, client-go) fall back to one request per group
    /// version.
    #[must_use]
    pub fn aggregated_discovery(mut self, on: bool) -> Self {
        self.aggregated_discovery = on;
        self
    }
}

/// A Kubernetes API server on 127.0.0.1, in memory, for tests.
///
/// It serves discovery, the built-in resources listed in the crate docs, their `status`
/// and `scale` subresources, and watches, in JSON, and runs the small controllers the crate
/// docs describe. Dropping the handle stops it: the accept loop, the controllers and every
/// open connection (watches included) are aborted. It starts no process and writes no file
/// but the kubeconfig it is asked for.
#[derive(Debug)]
pub struct KubeApiServer {
    address: SocketAddr,
    accept: JoinHandle<()>,
    controllers: Option<JoinHandle<()>>,
    faults: Arc<Mutex<Faults>>,
    store: Arc<Mutex<Store>>,
}

impl KubeApiServer {
    /// [`KubeApiServer::start_with`] the default options: controllers on.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] if no port can be bound.
    pub async fn start() -> Result<Self> {
        Self::start_with(KubeApiServerOptions::default()).await
    }

    /// Binds a free port on 127.0.0.1 and serves on it from a task of the current tokio
    /// runtime, with the namespaces a new cluster has (`default`, `kube-system`,
    /// `kube-public`, `kube-node-lease`) and nothing else; the controllers, if on, run in
    /// another task.
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] if no port can be bound.
    pub async fn start_with(options: KubeApiServerOptions) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| Error::Bind { source })?;
        let address = listener
            .local_addr()
            .map_err(|source| Error::Bind { source })?;
        let now = jiff::Timestamp::now().as_nanosecond();
        // Only for uids and generated names: the low bits of the clock and the port.
        let seed = (now as u64) ^ u64::from(address.port()).rotate_left(48);
        let store = Arc::new(Mutex::new(Store::new(seed, options.watch_history)));
        let controllers = options
            .controllers
            .then(|| tokio::spawn(crate::controller::run(store.clone())));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let shared = Shared {
            store: store.clone(),
            faults: faults.clone(),
            bookmark_interval: options.bookmark_interval,
            aggregated_discovery: options.aggregated_discovery,
        };
        let accept = tokio::spawn(serve(listener, Arc::new(shared)));
        Ok(KubeApiServer {
            address,
            accept,
            controllers,
            faults,
            store,
        })
    }

    /// Appends a line to the log of a pod's container, written now: what `GET
    /// .../pods/{pod}/log` (`kubectl logs`) then serves. A newline is added if the line has
    /// none.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchPod`] if the pod does not exist, [`Error::NoSuchContainer`] if it has
    /// no such container (or init container).
    pub fn append_log(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        line: &str,
    ) -> Result<()> {
        self.append_log_at(namespace, pod, container, SystemTime::now(), line)
    }

    /// [`KubeApiServer::append_log`] with the time the line was written (what `sinceTime`,
    /// `sinceSeconds` and `timestamps=true` see). Lines are served in the order appended.
    ///
    /// # Errors
    ///
    /// As [`KubeApiServer::append_log`].
    pub fn append_log_at(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        time: SystemTime,
        line: &str,
    ) -> Result<()> {
        // Before the epoch or past jiff's range: the nearest time it has.
        let time = jiff::Timestamp::try_from(time).unwrap_or(if time < SystemTime::UNIX_EPOCH {
            jiff::Timestamp::MIN
        } else {
            jiff::Timestamp::MAX
        });
        let mut store = lock(&self.store);
        let uid = container_uid(&store, namespace, pod, container)?;
        store.logs.append(&uid, container, time, line);
        Ok(())
    }

    /// Restarts a pod's container, as after a crash: its log so far becomes the previous
    /// container's (`previous=true`, `kubectl logs -p`), the new one starts empty, and the
    /// pod's `status` counts the restart (`restartCount`, `lastState.terminated`), a change
    /// that watches see.
    ///
    /// # Errors
    ///
    /// As [`KubeApiServer::append_log`].
    pub fn restart_container(&self, namespace: &str, pod: &str, container: &str) -> Result<()> {
        let mut store = lock(&self.store);
        let uid = container_uid(&store, namespace, pod, container)?;
        store.logs.restart(&uid, container);
        store.restart_container(namespace, pod, container);
        Ok(())
    }

    /// Makes the next requests that match `fault` fail (or come late) as it says; faults
    /// injected earlier are tried first.
    ///
    /// ```no_run
    /// # async fn demo() -> dr_k8s_testkit::Result<()> {
    /// use dr_k8s_testkit::{Fault, KubeApiServer};
    /// let server = KubeApiServer::start().await?;
    /// server.inject(Fault::status(429).method("POST").path_contains("/eviction").times(2));
    /// # Ok(()) }
    /// ```
    pub fn inject(&self, fault: Fault) {
        lock(&self.faults).inject(fault);
    }

    /// Makes an API group (`apps`, `policy`, a custom resource's group) unavailable, or
    /// available again: every path under `/apis/{group}` (its discovery documents and its
    /// resources) is answered 503 `ServiceUnavailable`, as the aggregator answers for an
    /// API service that is down, while `/apis` still lists the group. The core group (`/api`)
    /// cannot be made unavailable.
    pub fn set_group_unavailable(&self, group: &str, unavailable: bool) {
        lock(&self.faults).set_group_unavailable(group, unavailable);
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
        if let Some(controllers) = &self.controllers {
            controllers.abort();
        }
    }
}

/// The uid of a pod that has the container.
fn container_uid(store: &Store, namespace: &str, pod: &str, container: &str) -> Result<String> {
    let pods = crate::registry::find("", "v1", "pods").expect("pods are served");
    let object = store
        .get(pods, Some(namespace), pod)
        .map_err(|_| Error::NoSuchPod {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
        })?;
    let spec = &object["spec"];
    let has = ["containers", "initContainers"].iter().any(|field| {
        spec[field]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] == container)
    });
    if !has {
        return Err(Error::NoSuchContainer {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            container: container.to_owned(),
        });
    }
    Ok(object["metadata"]["uid"].as_str().unwrap_or("").to_owned())
}

/// A mutex's contents, even if a panic poisoned it: every write replaces whole values.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every connection shares.
struct Shared {
    store: Arc<Mutex<Store>>,
    faults: Arc<Mutex<Faults>>,
    bookmark_interval: Duration,
    aggregated_discovery: bool,
}

/// Accepts connections until aborted; the connections live in a `JoinSet` owned by this
/// future, so aborting it aborts them too.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: yield rather than spin.
            tokio::task::yield_now().await;
            continue;
        };
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(respond(request, &shared).await) }
            });
            // A client that goes away mid-request is no concern of the server's.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(request: Request<Incoming>, shared: &Shared) -> Response<ResponseBody> {
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
    let (injected, unavailable_groups) = {
        let mut faults = lock(&shared.faults);
        let injected = faults.take(parts.method.as_str(), parts.uri.path());
        (injected, faults.unavailable_groups().clone())
    };
    if let Some(delay) = injected.as_ref().map(|i| i.delay) {
        tokio::time::sleep(delay).await;
    }
    let outcome = match body.collect().await {
        Err(e) => ApiReply::from(ApiError::bad_request(format!(
            "reading the request body: {e}"
        )))
        .into(),
        Ok(collected) => {
            let body = collected.to_bytes();
            if body.len() > MAX_BODY {
                ApiReply::from(ApiError {
                    code: 413,
                    reason: "RequestEntityTooLarge",
                    message: format!("the request body is larger than {MAX_BODY} bytes"),
                    details: None,
                })
                .into()
            } else if let Some(error) = injected.and_then(|i| i.error) {
                ApiReply::from(error).into()
            } else {
                let request = ApiRequest {
                    method: parts.method,
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().unwrap_or("").to_owned(),
                    content_type: media_type,
                    accept: header(ACCEPT),
                    user_agent: header(USER_AGENT),
                    if_none_match: header(IF_NONE_MATCH),
                    aggregated_discovery: shared.aggregated_discovery,
                    unavailable_groups,
                    body,
                };
                api::handle(&mut lock(&shared.store), &request)
            }
        }
    };
    let mut retry_after = None;
    let mut reply_type = "application/json";
    let mut headers = Vec::new();
    let (code, body) = match outcome {
        Outcome::Reply(reply) => {
            retry_after = reply.body["details"]["retryAfterSeconds"]
                .as_u64()
                .filter(|s| *s > 0);
            headers = reply.headers;
            reply_type = reply.content_type;
            if reply.code == 304 {
                (reply.code, ResponseBody::Full(None))
            } else {
                let body = serde_json::to_vec(&reply.body).expect("a JSON value serializes");
                (reply.code, ResponseBody::Full(Some(Bytes::from(body))))
            }
        }
        Outcome::Text(text) => {
            reply_type = "text/plain";
            (200, ResponseBody::Full(Some(Bytes::from(text))))
        }
        Outcome::Watch(watch, timeout) => {
            let pacing = Pacing {
                bookmark_interval: shared.bookmark_interval,
                timeout,
            };
            (200, watch::stream(watch, pacing))
        }
    };
    let mut response = Response::new(body);
    for (name, value) in headers {
        // A value that is no header value (a control character) is left out.
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(name, value);
        }
    }
    if let Some(seconds) = retry_after {
        // As the real server: a Status that suggests a wait says so in the header too.
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code != 304 {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(reply_type));
    }
    response
}
