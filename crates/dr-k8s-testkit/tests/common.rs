//! What the tests share: kubectl as a child process, and a raw HTTP/1.1 client.

use std::path::{Path, PathBuf};
use std::process::Output;

use dr_k8s_testkit::{KubeApiServer, KubeApiServerOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The manifest the kubectl tests apply: namespace `shop`, ConfigMap `web-settings`,
/// Deployment `web` (containers `web` and `sidecar`), Service `web`.
pub(crate) fn manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests/web.yaml")
}

/// kubectl on PATH, or `None` after saying plainly that the test is skipped.
fn find_kubectl(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        eprintln!("SKIPPED {test}: kubectl is not on PATH; install kubectl 1.32 to run it");
    }
    found
}

/// A server with kubectl pointed at it through a kubeconfig in a temp dir.
pub(crate) struct Kubectl {
    pub(crate) server: KubeApiServer,
    program: PathBuf,
    kubeconfig: PathBuf,
    pub(crate) dir: tempfile::TempDir,
}

/// What a kubectl run printed, and whether it succeeded.
pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Run {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// stdout, after checking that kubectl succeeded.
    #[track_caller]
    pub(crate) fn out(&self) -> &str {
        assert!(self.ok, "kubectl failed: {}{}", self.stdout, self.stderr);
        &self.stdout
    }

    /// stdout parsed as JSON, after checking that kubectl succeeded.
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(self.out()).expect("kubectl printed JSON")
    }
}

impl Kubectl {
    /// Starts a server; `None` (the test skips) when kubectl is not installed.
    pub(crate) async fn start(test: &str) -> Option<Self> {
        Self::start_with(test, KubeApiServerOptions::default()).await
    }

    /// Starts a server with `options`; `None` (the test skips) when kubectl is not installed.
    pub(crate) async fn start_with(test: &str, options: KubeApiServerOptions) -> Option<Self> {
        let program = find_kubectl(test)?;
        let server = KubeApiServer::start_with(options)
            .await
            .expect("the server starts");
        let dir = tempfile::tempdir().expect("a temp dir");
        let kubeconfig = server.kubeconfig(dir.path()).await.expect("kubeconfig");
        Some(Kubectl {
            server,
            program,
            kubeconfig,
            dir,
        })
    }

    /// `kubectl --kubeconfig <file> args...` with stdin closed, killed when dropped.
    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            // No cache of discovery or OpenAPI documents shared between servers.
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs `kubectl --kubeconfig <file> args...` with stdin closed.
    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().await.expect("kubectl runs");
        Run::from(output)
    }

    /// Writes `text` to `name` in the temp dir and applies it, client-side, validated by the
    /// server (`fieldValidation=Strict`); a JSON `List` with `--validate=false`, since kubectl
    /// validates a list itself, with `/openapi/v2`, which is not served.
    pub(crate) async fn apply(&self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        tokio::fs::write(&path, text)
            .await
            .expect("write a manifest");
        let list = serde_json::from_str::<Value>(text).is_ok_and(|v| v["kind"] == "List");
        let mut args = vec!["apply", "-f", path.to_str().expect("a UTF-8 path")];
        if list {
            args.push("--validate=false");
        }
        self.run(&args).await.out();
    }

    /// `kubectl get <args> -o json`, retried every 50 ms for up to 10 s until `done` holds of
    /// it (the controllers work after the write that wakes them); the last one read.
    pub(crate) async fn get_until(&self, args: &[&str], done: impl Fn(&Value) -> bool) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        let mut last = Value::Null;
        for _ in 0..200 {
            let run = self.run(&args).await;
            if run.ok {
                last = run.json();
                if done(&last) {
                    return last;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("kubectl get {args:?} never got there; last:\n{last:#}");
    }

    /// Applies the test manifest, client-side (kubectl validates with the OpenAPI documents
    /// and `fieldValidation=Strict`).
    pub(crate) async fn apply_manifest(&self) {
        let manifest = manifest();
        let run = self
            .run(&[
                "apply",
                "--server-side=false",
                "-f",
                manifest.to_str().expect("a UTF-8 path"),
            ])
            .await;
        run.out();
    }
}

/// A response read off the wire.
pub(crate) struct Reply {
    pub(crate) code: u16,
    pub(crate) content_type: String,
    /// The status line and headers.
    pub(crate) head: String,
    pub(crate) body: Value,
}

/// A response read off the wire, its body as text.
pub(crate) struct RawReply {
    pub(crate) code: u16,
    pub(crate) content_type: String,
    /// The status line and headers.
    pub(crate) head: String,
    pub(crate) body: String,
}

/// One HTTP/1.1 request, `Connection: close`, the response read to its end.
pub(crate) async fn exchange(
    server: &KubeApiServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> RawReply {
    let headers = [
        ("Accept", "application/json"),
        ("Content-Type", content_type),
    ];
    exchange_with(server, method, path, &headers, body).await
}

/// [`exchange`] with the request headers given (besides `Host`, `Content-Length` and
/// `Connection`).
pub(crate) async fn exchange_with(
    server: &KubeApiServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawReply {
    let mut stream = TcpStream::connect(server.address()).await.expect("connect");
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let code = head[9..12].parse().expect("a status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    RawReply {
        code,
        content_type,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// [`exchange`], its body parsed as JSON.
pub(crate) async fn request(
    server: &KubeApiServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Reply {
    let raw = exchange(server, method, path, content_type, body).await;
    Reply {
        code: raw.code,
        content_type: raw.content_type,
        head: raw.head,
        body: serde_json::from_str(&raw.body).expect("a JSON body"),
    }
}

/// GET `path`.
pub(crate) async fn get(server: &KubeApiServer, path: &str) -> Reply {
    request(server, "GET", path, "application/json", "").await
}

/// POST a JSON body to `path`.
pub(crate) async fn post(server: &KubeApiServer, path: &str, body: &Value) -> Reply {
    request(server, "POST", path, "application/json", &body.to_string()).await
}

/// A watch read off the wire: a GET whose chunked response stays open, read one
/// newline-delimited JSON event at a time.
pub(crate) struct WatchStream {
    stream: TcpStream,
    /// Bytes read and not yet decoded from chunks.
    raw: Vec<u8>,
    /// Decoded body bytes not yet taken as lines.
    body: Vec<u8>,
    /// Whether the last chunk (size 0) came.
    ended: bool,
    pub(crate) code: u16,
    pub(crate) head: String,
}

impl WatchStream {
    /// Sends `GET path` and reads the response head.
    pub(crate) async fn open(server: &KubeApiServer, path: &str) -> Self {
        let mut stream = TcpStream::connect(server.address()).await.expect("connect");
        let head =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut watch = WatchStream {
            stream,
            raw: Vec::new(),
            body: Vec::new(),
            ended: false,
            code: 0,
            head: String::new(),
        };
        while !watch.raw.windows(4).any(|w| w == b"\r\n\r\n") {
            assert!(watch.fill().await, "the connection closed before the head");
        }
        let end = watch.raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        watch.head = String::from_utf8(watch.raw[..end].to_vec()).expect("a UTF-8 head");
        watch.raw.drain(..end + 4);
        watch.code = watch.head[9..12].parse().expect("a status code");
        watch
    }

    async fn fill(&mut self) -> bool {
        let mut buffer = [0_u8; 8192];
        let n = self.stream.read(&mut buffer).await.expect("read");
        self.raw.extend_from_slice(&buffer[..n]);
        n > 0
    }

    /// Moves whole chunks from `raw` to `body`.
    fn decode(&mut self) {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = std::str::from_utf8(&self.raw[..line_end]).expect("a chunk size");
            let size = usize::from_str_radix(size_text.trim(), 16).expect("a hex chunk size");
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            let start = line_end + 2;
            self.body.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
            if size == 0 {
                self.ended = true;
                return;
            }
        }
    }

    /// The next event, or `None` when the response ends; panics after `wait` without one.
    pub(crate) async fn next(&mut self, wait: std::time::Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.decode();
            if let Some(end) = self.body.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.body.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("an event is JSON"));
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(true) => {}
                Ok(false) => return None,
                Err(_) => panic!("no watch event within {wait:?}"),
            }
        }
    }
}

/// `GET path`, retried every 20 ms for up to 10 s until `done` holds of its body (the
/// controllers work after the write that wakes them); the last body read.
pub(crate) async fn get_until(
    server: &KubeApiServer,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..500 {
        last = get(server, path).await.body;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("GET {path} never got there; last:\n{last:#}");
}

/// A JSON body sent with `method` and `content_type`.
pub(crate) async fn send(
    server: &KubeApiServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> Reply {
    request(server, method, path, content_type, &body.to_string()).await
}

/// The names of a list's items.
pub(crate) fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// A Node with a name and labels, as a kubelet would register it (Ready, one internal
/// address).
pub(crate) fn node(name: &str, address: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
    })
    .as_object()
    .map(|n| {
        let mut n = Value::Object(n.clone());
        n["status"] = serde_json::json!({
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": address}],
        });
        n
    })
    .expect("an object")
}
