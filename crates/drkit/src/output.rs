//! What the commands print: text for people (progress on standard error,
//! a bar on a terminal), or JSON for scripts (`--json`).

use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use dr_core::{Progress, ProgressSink};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::failure::{Failure, Outcome};

/// How output is printed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    /// Listings and reports as JSON on standard output.
    pub(crate) json: bool,
    /// No progress and no informational lines.
    pub(crate) quiet: bool,
}

impl Output {
    /// A line for people on standard output (nothing under `--json`, which
    /// prints only the JSON document).
    pub(crate) fn line(&self, text: impl fmt::Display) {
        if !self.json {
            println!("{text}");
        }
    }

    /// `value` as one JSON document on standard output.
    pub(crate) fn json<T: Serialize + ?Sized>(&self, value: &T) -> Outcome {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, value)
            .map_err(|e| Failure::of("printing JSON", &e))?;
        writeln!(stdout).map_err(|e| Failure::of("printing JSON", &e))
    }

    /// Where a long operation reports its progress: a bar on a terminal,
    /// a line every few seconds otherwise; `None` under `--quiet`.
    pub(crate) fn progress(&self, step: &str) -> Option<Reporter> {
        if self.quiet {
            return None;
        }
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(step.to_owned());
            bar
        });
        Some(Reporter {
            bar,
            last_line: Mutex::new(None),
        })
    }
}

/// A [`ProgressSink`] for a terminal's bar or plain lines.
pub(crate) struct Reporter {
    bar: Option<ProgressBar>,
    /// When the last plain line was printed.
    last_line: Mutex<Option<std::time::Instant>>,
}

/// How often plain progress lines come.
const LINE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl ProgressSink for Reporter {
    fn report(&self, progress: &Progress) {
        match &self.bar {
            Some(bar) => {
                if let Some(total) = progress.bytes_total {
                    bar.set_length(total.max(progress.bytes_done));
                }
                bar.set_message(progress.step.clone());
                bar.set_position(progress.bytes_done);
            }
            None => {
                let mut last = self
                    .last_line
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if last.is_none_or(|at| at.elapsed() >= LINE_EVERY) {
                    *last = Some(std::time::Instant::now());
                    eprintln!("{progress}");
                }
            }
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A byte count as people read it: `1.5 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
