//! Two test kits in two processes, as two checkouts' suites running at
//! once: a sweep clears away what the killed one left (its directory and
//! its server, which outlived it in a process group of its own), and leaves
//! the live one's running; the live one still cleans up after itself.
//!
//! The kit processes are this test binary run again (the ignored test
//! `kit_process`).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use dr_testkit::{Redis, process_exists};

/// The other process: starts a Redis kit, says where, and drops it when its
/// standard input closes.
#[tokio::test]
#[ignore = "a kit process of `a_sweep_clears_away_only_what_dead_owners_left`, which runs it"]
async fn kit_process() {
    let redis = Redis::start().await.unwrap();
    println!("kit {} {}", redis.dir().display(), redis.pid().unwrap());
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).ok();
    drop(redis);
    println!("dropped");
}

struct Kit {
    child: Child,
    out: BufReader<ChildStdout>,
    dir: PathBuf,
    server: u32,
}

impl Kit {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["sweep::kit_process", "--exact", "--ignored", "--nocapture"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let line = said(&mut out, "kit ");
        let mut fields = line.split_whitespace().skip(1);
        let dir = PathBuf::from(fields.next().unwrap());
        let server = fields.next().unwrap().parse().unwrap();
        Self {
            child,
            out,
            dir,
            server,
        }
    }
}

/// The first line the process says that starts with `prefix`.
fn said(out: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    out.lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("the kit process never said {prefix:?}"))
}

/// Waits until process `pid` is gone (reaped by whoever inherited it).
fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !process_exists(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn a_sweep_clears_away_only_what_dead_owners_left() {
    let tmp = std::env::temp_dir();
    let mut dead = Kit::start();
    let mut live = Kit::start();

    // One suite killed: its kit's server outlives it, directory and all.
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    assert!(process_exists(dead.server) && dead.dir.exists());

    let report = dr_testkit::sweep(&tmp).unwrap();
    assert!(report.removed.contains(&dead.dir), "{report:?}");
    assert!(report.killed.contains(&dead.server), "{report:?}");
    assert!(gone(dead.server), "the dead owner's server still runs");
    assert!(!dead.dir.exists());
    // The other suite's kit runs on, untouched, and is its own run's.
    assert!(report.kept.contains(&live.dir), "{report:?}");
    assert!(process_exists(live.server) && live.dir.exists());
    let left = dr_testkit::leftovers(&tmp, live.child.id()).unwrap();
    assert!(
        left.iter()
            .any(|l| l.contains(&live.dir.display().to_string())),
        "{left:?}"
    );
    assert!(
        dr_testkit::leftovers(&tmp, dead.child.id())
            .unwrap()
            .is_empty()
    );

    // And it still cleans up after itself.
    live.child.stdin.take().unwrap().write_all(b"\n").unwrap();
    said(&mut live.out, "dropped");
    live.child.wait().unwrap();
    assert!(gone(live.server) && !live.dir.exists());
}
