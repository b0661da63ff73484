//! [`Progress`]: how far a long operation has come, reported as it goes to
//! a [`ProgressSink`] the caller hands in (a progress bar, a log line, a
//! metric), so that an hour-long backup or restore is not silent.

use std::fmt;

/// How far a long operation has come within its current step.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// The step under way, named as the operation's timeline names it.
    pub step: String,
    /// Bytes done in this step so far.
    pub bytes_done: u64,
    /// The step's total, when known beforehand (for a base backup, the
    /// server's estimate, which the end may exceed).
    pub bytes_total: Option<u64>,
}

impl Progress {
    /// `bytes_done` of the step `step`, out of `bytes_total` if known.
    pub fn new(step: impl Into<String>, bytes_done: u64, bytes_total: Option<u64>) -> Self {
        Self {
            step: step.into(),
            bytes_done,
            bytes_total,
        }
    }

    /// The fraction done, from 0.0 to 1.0, when the total is known.
    pub fn fraction(&self) -> Option<f64> {
        let total = self.bytes_total.filter(|t| *t > 0)?;
        Some((self.bytes_done as f64 / total as f64).min(1.0))
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} bytes", self.step, self.bytes_done)?;
        if let Some(fraction) = self.fraction() {
            write!(f, " ({:.0}%)", fraction * 100.0)?;
        }
        Ok(())
    }
}

/// Receives an operation's progress. It is called from the operation's own
/// task, often: keep it quick (update a bar, send on a channel with
/// `try_send`). Any `Fn(&Progress)` is one.
pub trait ProgressSink: Send + Sync {
    /// The operation has come this far.
    fn report(&self, progress: &Progress);
}

impl<F: Fn(&Progress) + Send + Sync> ProgressSink for F {
    fn report(&self, progress: &Progress) {
        self(progress);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn closures_receive_progress_and_fractions_stay_in_range() {
        let seen = Mutex::new(Vec::new());
        let sink = |p: &Progress| seen.lock().unwrap().push(p.to_string());
        let sink: &dyn ProgressSink = &sink;
        sink.report(&Progress::new("stream archives", 512, Some(1024)));
        sink.report(&Progress::new("stream archives", 2048, Some(1024)));
        sink.report(&Progress::new("extract", 7, None));
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "stream archives: 512 bytes (50%)",
                "stream archives: 2048 bytes (100%)",
                "extract: 7 bytes"
            ]
        );
        assert_eq!(Progress::new("x", 1, Some(0)).fraction(), None);
    }
}
