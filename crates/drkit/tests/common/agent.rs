//! A running `drkit agent`, and reading its `/metrics`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use prometheus_parse::{Sample, Scrape, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::Setup;

/// A running `drkit agent` and the address it serves on.
pub(crate) struct Agent {
    child: Child,
    address: String,
    log: std::path::PathBuf,
}

impl Agent {
    /// Starts `drkit agent` on `setup`'s config.
    pub(crate) async fn start(setup: &Setup, name: &str) -> Self {
        Self::start_with(&setup.config, setup.dir.path(), name).await
    }

    /// Starts `drkit --config <config> agent`, its log in `dir`.
    pub(crate) async fn start_with(config: &Path, dir: &Path, name: &str) -> Self {
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new(super::BIN)
            .arg("--config")
            .arg(config)
            .arg("agent")
            .env_remove("DRKIT_CONFIG")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the agent says where it serves within a minute")
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "the agent exited: {}",
                    std::fs::read_to_string(&log).unwrap()
                )
            });
        let address = first.rsplit("http://").next().unwrap().trim().to_owned();
        assert!(first.contains("/metrics"), "{first}");
        Self {
            child,
            address,
            log,
        }
    }

    /// `GET path`: the status code and the body.
    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(&self.address).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_owned())
    }

    /// `/metrics`, parsed.
    pub(crate) async fn scrape(&self) -> Scrape {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// SIGTERM, then the exit status.
    pub(crate) async fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().unwrap();
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the agent stops within a minute of SIGTERM")
            .unwrap();
        (status.code(), self.log())
    }
}

/// The value of the sample of `name` whose labels include `labels`.
pub(crate) fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s: &&Sample| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is neither a counter nor a gauge"),
        })
}
