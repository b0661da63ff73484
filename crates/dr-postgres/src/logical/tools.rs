//! PostgreSQL's own programs (`pg_dump`, `pg_dumpall`, `pg_restore`): where
//! they are, their versions, and the libpq environment that makes them
//! connect where a `tokio_postgres::Config` points.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_postgres::config::{Host, SslMode};

use crate::error::{Error, Result, ToolProblem};
use crate::replication::client::major_version;

/// Where PostgreSQL's client programs are: a directory (`pg_config
/// --bindir`, `/usr/lib/postgresql/15/bin`), or the `PATH`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgTools {
    dir: Option<PathBuf>,
}

impl PgTools {
    /// The programs the `PATH` finds.
    pub fn from_path() -> Self {
        Self { dir: None }
    }

    /// The programs in `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
        }
    }

    /// The directory, if one was given.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The path of `program`.
    ///
    /// # Errors
    /// [`Error::Tool`] with [`ToolProblem::Missing`], naming the package.
    pub(crate) fn program(&self, program: &str) -> Result<PathBuf> {
        let found = match &self.dir {
            Some(dir) => Some(dir.join(program)).filter(|p| p.is_file()),
            None => std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join(program))
                    .find(|p| p.is_file())
            }),
        };
        found.ok_or_else(|| Error::Tool {
            program: program.to_owned(),
            problem: ToolProblem::Missing,
            reason: format!(
                "not found in {}; it comes with PostgreSQL's client programs \
                 (Debian and Ubuntu: postgresql-client-<major>; RHEL: postgresql<major>), \
                 of the server's major version or newer",
                self.dir
                    .as_ref()
                    .map_or_else(|| "the PATH".to_owned(), |d| d.display().to_string())
            ),
        })
    }

    /// `program --version`: its version text and major version.
    ///
    /// # Errors
    /// [`Error::Tool`]: missing, or it did not say its version.
    pub(crate) async fn version(&self, program: &str) -> Result<(String, u32)> {
        let path = self.program(program)?;
        let output = tokio::process::Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| failed(program, format!("running {}: {e}", path.display())))?;
        let text = String::from_utf8_lossy(&output.stdout);
        // "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        let version = text
            .trim()
            .rsplit_once(") ")
            .map_or(text.trim(), |(_, v)| v)
            .to_owned();
        match major_version(&version) {
            Some(major) if output.status.success() => Ok((version, major)),
            _ => Err(failed(
                program,
                format!("{} --version said {:?}", path.display(), text.trim()),
            )),
        }
    }

    /// Checks that `program` can serve a server of `server_major`: libpq's
    /// programs read older servers, never newer ones.
    ///
    /// # Errors
    /// [`Error::Tool`] with [`ToolProblem::Version`] naming both versions.
    pub(crate) async fn check_version(
        &self,
        program: &str,
        server_version: &str,
        server_major: u32,
    ) -> Result<String> {
        let (version, major) = self.version(program).await?;
        if major < server_major {
            return Err(Error::Tool {
                program: program.to_owned(),
                problem: ToolProblem::Version,
                reason: format!(
                    "version {version} cannot dump or restore the server's {server_version}: \
                     install the client programs of PostgreSQL {server_major} or newer"
                ),
            });
        }
        Ok(version)
    }
}

/// A failure of `program`.
pub(crate) fn failed(program: &str, reason: String) -> Error {
    Error::Tool {
        program: program.to_owned(),
        problem: ToolProblem::Failed,
        reason,
    }
}

/// How libpq's programs check the server's certificate and present the
/// client's: the settings a `tokio_postgres::Config` has no room for,
/// passed as `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT` and `PGSSLKEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibpqTls {
    mode: &'static str,
    root_cert: Option<PathBuf>,
    client: Option<(PathBuf, PathBuf)>,
}

impl LibpqTls {
    /// No TLS (`sslmode=disable`).
    pub fn disable() -> Self {
        Self::with_mode("disable", None)
    }

    /// TLS without checking the certificate (`sslmode=require`).
    pub fn require() -> Self {
        Self::with_mode("require", None)
    }

    /// The certificate must chain to `root_cert` (`sslmode=verify-ca`).
    pub fn verify_ca(root_cert: impl Into<PathBuf>) -> Self {
        Self::with_mode("verify-ca", Some(root_cert.into()))
    }

    /// As [`LibpqTls::verify_ca`], and name the host (`sslmode=verify-full`).
    pub fn verify_full(root_cert: impl Into<PathBuf>) -> Self {
        Self::with_mode("verify-full", Some(root_cert.into()))
    }

    /// Presents this client certificate (with its chain) and key.
    #[must_use]
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client = Some((cert.into(), key.into()));
        self
    }

    fn with_mode(mode: &'static str, root_cert: Option<PathBuf>) -> Self {
        Self {
            mode,
            root_cert,
            client: None,
        }
    }
}

/// Variables of the caller's environment that would change where or how a
/// program connects; they are removed so that only `config` decides.
const CLEARED: [&str; 12] = [
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGHOSTADDR",
    "PGREQUIRESSL",
    "PGSSLCRL",
    "PGSSLCOMPRESSION",
    "PGTARGETSESSIONATTRS",
    "PGGSSENCMODE",
    "PGCHANNELBINDING",
    "PGSSLNEGOTIATION",
    "PGREQUIREAUTH",
];

/// The libpq environment of a program that connects to `database` where
/// `config` points, with `tls`.
///
/// # Errors
/// [`Error::Config`] for settings libpq's variables cannot carry (no host,
/// a password that is not UTF-8).
pub(crate) fn environment(
    config: &tokio_postgres::Config,
    tls: &LibpqTls,
    database: &str,
) -> Result<Environment> {
    let mut set: Vec<(&'static str, OsString)> = Vec::new();
    let hosts: Vec<OsString> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            Host::Tcp(name) => OsString::from(name),
            #[cfg(unix)]
            Host::Unix(dir) => dir.as_os_str().to_owned(),
        })
        .collect();
    if hosts.is_empty() {
        return Err(Error::Config {
            reason: "no host is set".into(),
        });
    }
    set.push(("PGHOST", join(&hosts)));
    let ports: Vec<OsString> = config
        .get_ports()
        .iter()
        .map(|p| OsString::from(p.to_string()))
        .collect();
    if !ports.is_empty() {
        set.push(("PGPORT", join(&ports)));
    }
    if !config.get_hostaddrs().is_empty() {
        let addrs: Vec<OsString> = config
            .get_hostaddrs()
            .iter()
            .map(|a| OsString::from(a.to_string()))
            .collect();
        set.push(("PGHOSTADDR", join(&addrs)));
    }
    let user = config.get_user().ok_or_else(|| Error::Config {
        reason: "no user is set".into(),
    })?;
    set.push(("PGUSER", user.into()));
    if let Some(password) = config.get_password() {
        let password = std::str::from_utf8(password).map_err(|_| Error::Config {
            reason: "the password is not UTF-8, which libpq's programs cannot be given".into(),
        })?;
        set.push(("PGPASSWORD", password.into()));
    }
    set.push(("PGDATABASE", database.into()));
    set.push((
        "PGAPPNAME",
        config.get_application_name().unwrap_or("drkit").into(),
    ));
    if let Some(timeout) = config.get_connect_timeout() {
        set.push((
            "PGCONNECT_TIMEOUT",
            timeout.as_secs().max(1).to_string().into(),
        ));
    }
    // tokio-postgres's `require` without a certificate check is libpq's too;
    // the stricter modes are the caller's LibpqTls.
    let mode = match (config.get_ssl_mode(), tls.mode) {
        (SslMode::Disable, _) => "disable",
        (_, mode) => mode,
    };
    set.push(("PGSSLMODE", mode.into()));
    if let Some(root) = &tls.root_cert {
        set.push(("PGSSLROOTCERT", root.as_os_str().to_owned()));
    }
    if let Some((cert, key)) = &tls.client {
        set.push(("PGSSLCERT", cert.as_os_str().to_owned()));
        set.push(("PGSSLKEY", key.as_os_str().to_owned()));
    }
    Ok(Environment { set })
}

fn join(items: &[OsString]) -> OsString {
    let mut out = OsString::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(",");
        }
        out.push(item);
    }
    out
}

/// The variables a program is started with.
#[derive(Clone)]
pub(crate) struct Environment {
    set: Vec<(&'static str, OsString)>,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.set.iter().map(|(name, _)| *name).collect();
        f.debug_struct("Environment").field("set", &names).finish()
    }
}

impl Environment {
    /// Applies the variables to `command`, removing the caller's that would
    /// interfere.
    pub(crate) fn apply(&self, command: &mut tokio::process::Command) {
        for name in CLEARED {
            command.env_remove(name);
        }
        for (name, value) in &self.set {
            command.env(name, value);
        }
    }

    /// The same, for another database.
    pub(crate) fn database(&self, database: &str) -> Self {
        let mut copy = self.clone();
        for (name, value) in &mut copy.set {
            if *name == "PGDATABASE" {
                *value = database.into();
            }
        }
        copy
    }
}

/// How a program fed from a stream ended.
pub(crate) struct Fed {
    pub(crate) status: std::process::ExitStatus,
    /// Its standard output, whole (for `--list`), or empty when not kept.
    pub(crate) stdout: Vec<u8>,
    /// The end of its standard error.
    pub(crate) stderr: String,
    /// Reading `input` failed (damaged stored data): the program was cut
    /// off, and this says why.
    pub(crate) input_error: Option<std::io::Error>,
}

/// Runs `command` with `input` on its standard input, keeping its standard
/// output when `keep_stdout` (else discarding it). A failure to read
/// `input` closes the program's input and is returned in [`Fed`], with
/// whatever the program made of it.
pub(crate) async fn feed(
    program: &str,
    mut command: tokio::process::Command,
    input: &mut (dyn AsyncRead + Send + Unpin),
    keep_stdout: bool,
) -> Result<Fed> {
    use tokio::io::AsyncWriteExt;
    command
        .stdin(Stdio::piped())
        .stdout(if keep_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| failed(program, format!("starting it: {e}")))?;
    let (Some(mut stdin), Some(stderr)) = (child.stdin.take(), child.stderr.take()) else {
        return Err(failed(
            program,
            "its input and output could not be opened".into(),
        ));
    };
    let stdout = child.stdout.take();
    let said = tokio::spawn(tail(stderr));
    let output = tokio::spawn(async move {
        let mut kept = Vec::new();
        if let Some(mut stdout) = stdout {
            let _ = stdout.read_to_end(&mut kept).await;
        }
        kept
    });
    let mut input_error = None;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match input.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                input_error = Some(e);
                break;
            }
        };
        // The program may stop reading early (it failed): its error says why.
        if stdin.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    drop(stdin);
    if input_error.is_some() {
        // Whatever it does with a cut-off input must not count.
        child.kill().await.ok();
    }
    let status = child
        .wait()
        .await
        .map_err(|e| failed(program, format!("waiting for it: {e}")))?;
    Ok(Fed {
        status,
        stdout: output.await.unwrap_or_default(),
        stderr: said.await.unwrap_or_default(),
        input_error,
    })
}

/// What a program wrote on its standard error, the last 16 KiB of it.
pub(crate) async fn tail(mut stderr: impl AsyncRead + Unpin) -> String {
    const KEEP: usize = 16 * 1024;
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * KEEP {
                    kept.drain(..kept.len() - KEEP);
                }
            }
        }
    }
    if kept.len() > KEEP {
        kept.drain(..kept.len() - KEEP);
    }
    String::from_utf8_lossy(&kept).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_carries_the_config() {
        let config: tokio_postgres::Config =
            "host=db1,db2 port=5433,5434 user=backup password=s3cret application_name=nightly sslmode=require"
                .parse()
                .unwrap();
        let env = environment(&config, &LibpqTls::verify_full("/etc/ca.pem"), "app").unwrap();
        let get = |name: &str| {
            env.set
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("PGHOST").as_deref(), Some("db1,db2"));
        assert_eq!(get("PGPORT").as_deref(), Some("5433,5434"));
        assert_eq!(get("PGUSER").as_deref(), Some("backup"));
        assert_eq!(get("PGPASSWORD").as_deref(), Some("s3cret"));
        assert_eq!(get("PGDATABASE").as_deref(), Some("app"));
        assert_eq!(get("PGAPPNAME").as_deref(), Some("nightly"));
        assert_eq!(get("PGSSLMODE").as_deref(), Some("verify-full"));
        assert_eq!(get("PGSSLROOTCERT").as_deref(), Some("/etc/ca.pem"));
        assert!(!format!("{env:?}").contains("s3cret"));
        let other = env.database("other");
        assert_eq!(
            other
                .set
                .iter()
                .find(|(n, _)| *n == "PGDATABASE")
                .unwrap()
                .1,
            "other"
        );
        // sslmode=disable in the config wins over the TLS settings.
        let plain: tokio_postgres::Config = "host=db user=u sslmode=disable".parse().unwrap();
        let env = environment(&plain, &LibpqTls::require(), "app").unwrap();
        assert!(env.set.contains(&("PGSSLMODE", "disable".into())));
    }

    #[test]
    fn a_missing_program_names_the_package() {
        let tools = PgTools::in_dir("/nonexistent/bin");
        let err = tools.program("pg_dump").unwrap_err();
        assert_eq!(err.kind(), dr_core::ErrorKind::NotFound);
        assert!(err.to_string().contains("postgresql-client-"), "{err}");
    }
}
