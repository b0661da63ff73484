//! An S3 server on loopback: moto's server (from PyPI), with a fresh bucket.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::process::kit_dir;
use crate::process::{RunAs, ServerProcess, free_port, is_executable, on_path, wait_ready};

/// Where `scripts/test` installs moto's server, relative to the workspace root.
pub const MOTO_VENV: &str = "target/drkit-venv";

const BINARY: &str = "moto_server";

/// How to set up the kit's S3 server.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct S3Options {
    /// Create the bucket with S3 Object Lock enabled (which also turns on versioning).
    pub object_lock: bool,
    /// The `moto_server` program to run; by default PATH, then the workspace's venv.
    pub moto_server: Option<PathBuf>,
}

impl S3Options {
    /// Enables Object Lock on the bucket.
    pub fn object_lock(mut self, on: bool) -> Self {
        self.object_lock = on;
        self
    }
}

/// moto's S3 server on 127.0.0.1 with one fresh bucket, owning its process and temp dir.
/// moto keeps objects in memory: a restarted server is empty (the kit creates the bucket again).
///
/// ```no_run
/// # async fn demo() -> dr_testkit::Result<()> {
/// let s3 = dr_testkit::S3::start().await?;
/// let client = s3.client();
/// client.put_object().bucket(s3.bucket()).key("k").body(b"v".to_vec().into()).send().await.unwrap();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct S3 {
    // Field order: the process is stopped before the directory is removed.
    process: Option<ServerProcess>,
    port: u16,
    options: S3Options,
    binary: PathBuf,
    bucket: String,
    dir: TempDir,
}

impl S3 {
    /// Starts the server and creates a bucket.
    ///
    /// # Errors
    /// moto's server is not installed or did not start (the error holds its log).
    pub async fn start() -> Result<Self> {
        Self::start_with(S3Options::default()).await
    }

    /// Starts the server and creates a bucket as `options` say.
    ///
    /// # Errors
    /// As [`S3::start`].
    pub async fn start_with(options: S3Options) -> Result<Self> {
        let binary = find_moto(options.moto_server.as_deref())?;
        let dir = kit_dir(&RunAs::current())?;
        let suffix = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let bucket: String = format!("drkit-{suffix}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let mut s3 = Self {
            process: None,
            port: 0,
            options,
            binary,
            bucket,
            dir,
        };
        s3.launch().await?;
        Ok(s3)
    }

    async fn launch(&mut self) -> Result<()> {
        let port = if self.port != 0 {
            self.port
        } else {
            free_port(None)?
        };
        let log = self.dir.path().join("moto.log");
        let mut command = Command::new(&self.binary);
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(self.dir.path());
        let mut process = ServerProcess::spawn(command, &log, Signal::SIGKILL)?;
        wait_ready(
            &mut process,
            "moto S3 server",
            Duration::from_secs(60),
            || http_ok(port),
        )
        .await?;
        self.port = port;
        self.process = Some(process);
        let mut create = self.client().create_bucket().bucket(&self.bucket);
        if self.options.object_lock {
            create = create.object_lock_enabled_for_bucket(true);
        }
        create.send().await.map_err(|e| Error::Server {
            server: "moto S3 server".into(),
            reason: format!(
                "creating bucket {}: {}",
                self.bucket,
                aws_sdk_s3::error::DisplayErrorContext(e)
            ),
        })?;
        Ok(())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bucket created for this instance.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The region to sign for.
    pub fn region(&self) -> &str {
        "us-east-1"
    }

    /// The access key id (moto accepts any).
    pub fn access_key_id(&self) -> &str {
        "drkit-test-access-key"
    }

    /// The secret access key (moto accepts any).
    pub fn secret_access_key(&self) -> &str {
        "drkit-test-secret-key"
    }

    /// The server's pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ServerProcess::pid)
    }

    /// The kit's temp dir (holding the server log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(ServerProcess::log_tail)
            .unwrap_or_default()
    }

    /// An `aws-sdk-s3` config for this server: path-style, static credentials,
    /// checksums only where an operation requires them.
    pub fn sdk_config(&self) -> aws_sdk_s3::Config {
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region().to_owned()))
            .credentials_provider(Credentials::new(
                self.access_key_id(),
                self.secret_access_key(),
                None,
                None,
                "dr-testkit",
            ))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build()
    }

    /// An `aws-sdk-s3` client for this server.
    pub fn client(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(self.sdk_config())
    }

    /// Kills the server with SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill9();
        }
    }

    /// Starts the server again on the same port with an empty, freshly created bucket.
    ///
    /// # Errors
    /// The server did not start.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill9();
        self.launch().await
    }
}

fn find_moto(explicit: Option<&Path>) -> Result<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(MOTO_VENV)
        .join("bin")
        .join(BINARY);
    explicit
        .map(Path::to_owned)
        .or_else(|| on_path(BINARY))
        .or(Some(venv))
        .filter(|p| is_executable(p))
        .ok_or_else(|| Error::MissingBinary {
            binary: BINARY.into(),
            hint: format!(
                "run scripts/test, which installs it, or: python3 -m venv {MOTO_VENV} && \
                 {MOTO_VENV}/bin/pip install 'moto[server]'"
            ),
        })
}

/// Whether an HTTP server answers on the port.
async fn http_ok(port: u16) -> std::result::Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 5];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|e| e.to_string())?;
    if &head == b"HTTP/" {
        Ok(())
    } else {
        Err(format!("not HTTP: {head:?}"))
    }
}
