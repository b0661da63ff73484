//! What the tests share: kubectl as a child process, and a raw HTTP/1.1 client.

use std::path::{Path, PathBuf};
use std::process::Output;

use dr_k8s_testkit::KubeApiServer;
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
        let program = find_kubectl(test)?;
        let server = KubeApiServer::start().await.expect("the server starts");
        let dir = tempfile::tempdir().expect("a temp dir");
        let kubeconfig = server.kubeconfig(dir.path()).await.expect("kubeconfig");
        Some(Kubectl {
            server,
            program,
            kubeconfig,
            dir,
        })
    }

    /// Runs `kubectl --kubeconfig <file> args...` with stdin closed.
    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        let output = tokio::process::Command::new(&self.program)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            // No cache of discovery or OpenAPI documents shared between servers.
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("kubectl runs");
        Run::from(output)
    }

    /// Applies the test manifest, client-side and without validation (no OpenAPI served).
    pub(crate) async fn apply_manifest(&self) {
        let manifest = manifest();
        let run = self
            .run(&[
                "apply",
                "--validate=false",
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
    pub(crate) body: Value,
}

/// One HTTP/1.1 request, `Connection: close`, the response read to its end.
pub(crate) async fn request(
    server: &KubeApiServer,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> Reply {
    let mut stream = TcpStream::connect(server.address()).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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
    let body = serde_json::from_str(body).expect("a JSON body");
    Reply {
        code,
        content_type,
        body,
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
