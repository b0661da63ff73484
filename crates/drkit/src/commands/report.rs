//! `drkit report <file>`: prints a recovery report saved by `drkit restore
//! --report`, and exits 3 if it missed an objective.

use std::path::Path;

use dr_core::RecoveryReport;

use crate::commands::restore::{print, verdict};
use crate::failure::{Failure, Outcome};
use crate::output::Output;

/// Reads, prints and judges the report.
pub(crate) fn run(path: &Path, out: &Output) -> Outcome {
    let text = std::fs::read(path)
        .map_err(|e| Failure::Usage(format!("reading {}: {e}", path.display())))?;
    let report: RecoveryReport = serde_json::from_slice(&text).map_err(|e| {
        Failure::Usage(format!(
            "{} is not a drkit recovery report: {e}",
            path.display()
        ))
    })?;
    print(&report, out)?;
    verdict(&report)
}
