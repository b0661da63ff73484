//! Who owns a test-kit directory, and clearing away what dead owners left.
//!
//! Every kit directory (`drkit-tk-*`) holds an owner record, `.drkit-owner`:
//! the process that made it (pid and start time), that process's ancestors,
//! and the process group of every server started in it. A run of the suite
//! that was killed leaves directories and servers behind; [`sweep`] removes
//! those whose owner is gone, and only those, so that a second checkout's
//! suite running at the same time, or anyone else's server, is never
//! touched. [`leftovers`] finds what one run (named by the pid of a process
//! it ran under, such as `scripts/test`) left behind.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// The owner record's file name inside a kit directory.
pub(crate) const OWNER_FILE: &str = ".drkit-owner";
const FORMAT_LINE: &str = "drkit-testkit-owner 1";
/// A kit directory without an owner record (made by an older kit) is taken
/// for abandoned once untouched this long.
const UNOWNED_AFTER: Duration = Duration::from_secs(3600);

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Process {
    pid: u32,
    start_ticks: u64,
}

impl Process {
    fn of(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            start_ticks: stat_field(pid, 22)?.parse().ok()?,
        })
    }

    fn is_running(self) -> bool {
        Self::of(self.pid) == Some(self)
    }
}

/// Field `n` (1-based, as `proc(5)` numbers them) of `/proc/<pid>/stat`;
/// fields are counted after the command name, which may hold spaces.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace()
        .nth(n.checked_sub(3)?)
        .map(str::to_owned)
}

/// This process's ancestors, nearest first.
fn ancestors() -> Vec<u32> {
    let mut out = Vec::new();
    let mut pid = std::process::id();
    while let Some(parent) = stat_field(pid, 4).and_then(|p| p.parse::<u32>().ok()) {
        if parent <= 1 || out.contains(&parent) {
            break;
        }
        out.push(parent);
        pid = parent;
    }
    out
}

/// Writes the owner record of a new kit directory: this process and its ancestors.
pub(crate) fn record_owner(dir: &Path) -> Result<()> {
    let me = Process::of(std::process::id()).ok_or_else(|| {
        Error::io(
            "reading /proc/self/stat",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    let ancestors: Vec<String> = ancestors().iter().map(u32::to_string).collect();
    let text = format!(
        "{FORMAT_LINE}\nowner {} {}\nancestors {}\n",
        me.pid,
        me.start_ticks,
        ancestors.join(" ")
    );
    let path = dir.join(OWNER_FILE);
    fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Adds a server's process group to the owner record of the kit directory
/// it runs in, if that directory has one.
pub(crate) fn record_server(dir: &Path, pid: u32) -> Result<()> {
    let path = dir.join(OWNER_FILE);
    if !path.exists() {
        return Ok(());
    }
    let Some(server) = Process::of(pid) else {
        return Ok(());
    };
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    writeln!(file, "server {} {}", server.pid, server.start_ticks)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// What a kit directory's owner record says.
#[derive(Debug, Default)]
struct Owner {
    owner: Option<Process>,
    ancestors: Vec<u32>,
    servers: Vec<Process>,
}

fn read_owner(dir: &Path) -> Option<Owner> {
    let text = fs::read_to_string(dir.join(OWNER_FILE)).ok()?;
    let mut lines = text.lines();
    if lines.next() != Some(FORMAT_LINE) {
        return None;
    }
    let mut owner = Owner::default();
    let process = |fields: &[&str]| -> Option<Process> {
        Some(Process {
            pid: fields.first()?.parse().ok()?,
            start_ticks: fields.get(1)?.parse().ok()?,
        })
    };
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.split_first() {
            Some((&"owner", rest)) => owner.owner = process(rest),
            Some((&"ancestors", rest)) => {
                owner.ancestors = rest.iter().filter_map(|p| p.parse().ok()).collect();
            }
            Some((&"server", rest)) => owner.servers.extend(process(rest)),
            _ => {}
        }
    }
    Some(owner)
}

/// What [`sweep`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepReport {
    /// Kit directories of dead owners, removed.
    pub removed: Vec<PathBuf>,
    /// Server processes of dead owners, killed.
    pub killed: Vec<u32>,
    /// Kit directories whose owner still runs, left alone.
    pub kept: Vec<PathBuf>,
}

/// The kit directories under `tmp`.
fn kit_dirs(tmp: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(tmp) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", tmp.display()), e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", tmp.display()), e))?;
        let is_kit = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(crate::TEMP_PREFIX));
        if is_kit && entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Servers running from `dir`: the recorded process groups still led by
/// the process that started them, and PostgreSQL servers started there by
/// other means (a `postmaster.pid` naming a running postmaster of that
/// directory).
fn running_servers(dir: &Path, owner: Option<&Owner>) -> Vec<u32> {
    let mut pids: Vec<u32> = owner
        .map(|o| {
            o.servers
                .iter()
                .filter(|s| s.is_running())
                .map(|s| s.pid)
                .collect()
        })
        .unwrap_or_default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if entry.file_name() == "postmaster.pid"
                && let Some(pid) = fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.lines().next()?.trim().parse::<u32>().ok())
                && runs_from(pid, dir)
                && !pids.contains(&pid)
            {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Whether process `pid` runs with `dir` in its command line.
fn runs_from(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = dir.as_os_str().as_encoded_bytes();
    cmdline.windows(needle.len()).any(|w| w == needle)
}

/// Removes, under `tmp`, the kit directories whose owner process is gone,
/// after killing the servers still running from them; directories of live
/// owners are left alone. A directory without an owner record is removed
/// once untouched for an hour.
///
/// # Errors
/// `tmp` cannot be listed, or a directory cannot be removed.
pub fn sweep(tmp: &Path) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    for dir in kit_dirs(tmp)? {
        let owner = read_owner(&dir);
        let abandoned = match &owner {
            Some(owner) => !owner.owner.is_some_and(Process::is_running),
            None => fs::metadata(&dir)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > UNOWNED_AFTER),
        };
        if !abandoned {
            report.kept.push(dir);
            continue;
        }
        for pid in running_servers(&dir, owner.as_ref()) {
            let raw = Pid::from_raw(pid as i32);
            let _ = killpg(raw, Signal::SIGKILL);
            let _ = kill(raw, Signal::SIGKILL);
            report.killed.push(pid);
        }
        fs::remove_dir_all(&dir)
            .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
        report.removed.push(dir);
    }
    Ok(report)
}

/// What the run of process `run` (a process the kits' owners ran under,
/// such as the `scripts/test` shell) left under `tmp`: its kit directories
/// and the servers still running from them. Other runs' kits are not
/// looked at.
///
/// # Errors
/// `tmp` cannot be listed.
pub fn leftovers(tmp: &Path, run: u32) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for dir in kit_dirs(tmp)? {
        let Some(owner) = read_owner(&dir) else {
            continue;
        };
        let ours = owner.ancestors.contains(&run) || owner.owner.is_some_and(|o| o.pid == run);
        if !ours {
            continue;
        }
        found.push(format!("directory {}", dir.display()));
        for pid in running_servers(&dir, Some(&owner)) {
            found.push(format!("server process {pid} of {}", dir.display()));
        }
    }
    Ok(found)
}
