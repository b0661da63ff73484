//! `drkit-tk-sweep`: clears away the test-kit directories and servers that
//! dead owners left (a killed run of the suite), or lists what one run left.
//!
//! ```text
//! drkit-tk-sweep [--tmp DIR]                   remove what dead owners left
//! drkit-tk-sweep [--tmp DIR] --leftovers-of PID  list what the run of PID left; exit 1 if anything
//! ```
//!
//! `DIR` defaults to `$TMPDIR`, else `/tmp`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut tmp = std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let mut run = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--tmp", Some(dir)) => tmp = PathBuf::from(dir),
            ("--leftovers-of", Some(pid)) => match pid.parse::<u32>() {
                Ok(pid) => run = Some(pid),
                Err(_) => return usage(&format!("--leftovers-of {pid:?} is not a process id")),
            },
            (other, _) => return usage(&format!("unknown or incomplete option {other}")),
        }
    }
    match run {
        Some(run) => match dr_testkit::leftovers(&tmp, run) {
            Ok(found) if found.is_empty() => ExitCode::SUCCESS,
            Ok(found) => {
                for line in found {
                    println!("{line}");
                }
                ExitCode::FAILURE
            }
            Err(e) => failed(&e),
        },
        None => match dr_testkit::sweep(&tmp) {
            Ok(report) => {
                for dir in &report.removed {
                    println!("removed {}", dir.display());
                }
                for pid in &report.killed {
                    println!("killed server process {pid}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => failed(&e),
        },
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("drkit-tk-sweep: {problem}");
    eprintln!("usage: drkit-tk-sweep [--tmp DIR] [--leftovers-of PID]");
    ExitCode::from(2)
}

fn failed(error: &dr_testkit::Error) -> ExitCode {
    eprintln!("drkit-tk-sweep: {error}");
    ExitCode::FAILURE
}
