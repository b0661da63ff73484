//! Shared plumbing: server processes in their own process group, OS users,
//! binaries, ports and logs.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Gid, Pid, Uid, User};

use crate::error::{Error, Result};

/// The OS user a server runs as: the current one, or (when the kit runs as
/// root, which PostgreSQL refuses) a named unprivileged user.
#[derive(Debug, Clone)]
pub(crate) struct RunAs {
    ids: Option<(Uid, Gid)>,
}

impl RunAs {
    /// The user and group ids to run as, if not the current ones.
    pub(crate) fn ids(&self) -> Option<(u32, u32)> {
        self.ids.map(|(uid, gid)| (uid.as_raw(), gid.as_raw()))
    }

    /// Runs as the current user.
    pub(crate) fn current() -> Self {
        Self { ids: None }
    }

    /// Runs as `user` if the kit is root, else as the current user.
    pub(crate) fn unprivileged(user: &str, package: &str) -> Result<Self> {
        if !Uid::effective().is_root() {
            return Ok(Self::current());
        }
        let found = User::from_name(user)
            .map_err(|e| Error::User(format!("looking up OS user {user}: {e}")))?
            .ok_or_else(|| {
                Error::User(format!(
                    "running as root, so the server must run as the OS user `{user}`, which does not exist \
                     (installing `{package}` creates it: apt-get install -y {package})"
                ))
            })?;
        Ok(Self {
            ids: Some((found.uid, found.gid)),
        })
    }

    /// Gives `path` to the server's user (no-op when running as ourselves).
    pub(crate) fn chown(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw()))
                .map_err(|e| Error::io(format!("chown {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Makes `command` run as the server's user.
    pub(crate) fn apply(&self, command: &mut Command) {
        if let Some((uid, gid)) = self.ids {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
    }

    /// The same, for a tokio command.
    pub(crate) fn apply_tokio(&self, command: &mut tokio::process::Command) {
        if let Some((uid, gid)) = self.ids {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
    }
}

/// A fresh temp dir for one server, owned by the user the server runs as,
/// with its owner record (see `sweep`).
pub(crate) fn kit_dir(run_as: &RunAs) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(crate::TEMP_PREFIX)
        .tempdir()
        .map_err(|e| Error::io("creating a temp dir", e))?;
    crate::sweep::record_owner(dir.path())?;
    run_as.chown(dir.path())?;
    Ok(dir)
}

/// A running server: the process leads its own process group, so a kill
/// reaches every process it forked. Dropping it kills the group and reaps it.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    log: PathBuf,
    /// The signal that stops the server quickly when the handle is dropped.
    stop_signal: Signal,
}

impl ServerProcess {
    /// Starts `command` with stdout and stderr appended to `log`.
    pub(crate) fn spawn(mut command: Command, log: &Path, stop_signal: Signal) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("opening log {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::io(format!("opening log {}", log.display()), e))?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .spawn()
            .map_err(|e| Error::io(format!("starting {program}"), e))?;
        // The kit directory holding the log learns of its server, so that a
        // sweep after its owner died can stop it.
        if let Some(dir) = log.parent() {
            crate::sweep::record_server(dir, child.id())?;
        }
        Ok(Self {
            child,
            log: log.to_owned(),
            stop_signal,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn pgid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Whether the process has exited (reaping it if so).
    pub(crate) fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL to the whole group, then reap: a crash of the machine, as the server sees it.
    pub(crate) fn kill9(&mut self) {
        let _ = killpg(self.pgid(), Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// Sends `signal` and waits up to `grace` for an exit, then kills the group.
    /// Returns whether the server stopped by itself.
    pub(crate) async fn stop(&mut self, signal: Signal, grace: Duration) -> bool {
        let _ = kill(self.pgid(), signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.has_exited() {
                // Children of the leader may linger briefly.
                let _ = killpg(self.pgid(), Signal::SIGKILL);
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill9();
        false
    }

    /// The end of the server's log.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// A startup error naming the server, with its log.
    pub(crate) fn startup_error(&self, server: &str, reason: impl Into<String>) -> Error {
        Error::Startup {
            server: server.to_owned(),
            reason: reason.into(),
            log: self.log.clone(),
            log_tail: self.log_tail(),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.has_exited() {
            let _ = killpg(self.pgid(), Signal::SIGKILL);
            return;
        }
        // An orderly stop lets PostgreSQL release its shared memory; then make sure.
        let _ = kill(self.pgid(), self.stop_signal);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.has_exited() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill9();
    }
}

/// The last lines of a log file.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A TCP port on 127.0.0.1 that was free a moment ago. With `also_free_at`,
/// `port + offset` must be free too (Redis Cluster's bus port).
pub(crate) fn free_port(also_free_at: Option<u16>) -> Result<u16> {
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io("finding a free port", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("finding a free port", e))?
            .port();
        match also_free_at {
            None => return Ok(port),
            Some(offset) => {
                let Some(other) = port.checked_add(offset) else {
                    continue;
                };
                if TcpListener::bind((Ipv4Addr::LOCALHOST, other)).is_ok() {
                    return Ok(port);
                }
            }
        }
    }
    Err(Error::io(
        "finding a free port",
        std::io::Error::from(std::io::ErrorKind::AddrInUse),
    ))
}

/// Whether a server log says its port was taken (so a retry on another port may work).
pub(crate) fn port_was_taken(log: &str) -> bool {
    log.contains("Address already in use") || log.contains("could not bind")
}

/// Finds `binary` on PATH.
pub(crate) fn on_path(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs a set-up command to completion; a failure carries its output.
pub(crate) async fn run(mut command: tokio::process::Command) -> Result<String> {
    let line = format!("{:?}", command.as_std());
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::io(format!("running {line}"), e))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        return Err(Error::Command {
            command: line,
            status: output.status.to_string(),
            output: text,
        });
    }
    Ok(text)
}

/// Polls `probe` every 50 ms until it succeeds, the process exits, or `timeout` passes.
pub(crate) async fn wait_ready<F, Fut, T>(
    process: &mut ServerProcess,
    server: &str,
    timeout: Duration,
    mut probe: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt made");
    while Instant::now() < deadline {
        if process.has_exited() {
            return Err(process.startup_error(
                server,
                format!("exited during start-up (last probe: {last})"),
            ));
        }
        match probe().await {
            Ok(value) => return Ok(value),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(process.startup_error(
        server,
        format!("not ready after {timeout:?} (last probe: {last})"),
    ))
}

/// Whether a process with this pid exists.
pub fn process_exists(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}
