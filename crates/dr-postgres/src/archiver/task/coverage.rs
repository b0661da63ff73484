//! Coverage records, and whether the server waits for this archiver on every commit.

use std::time::Instant;

use dr_core::Lsn;
use jiff::Timestamp;
use tokio::task::JoinHandle;

use crate::replication::ReplicationClient;

use super::super::ErrorSummary;
use super::Task;

/// Coverage records (see [`ArchiverOptions::coverage_interval`](crate::ArchiverOptions::coverage_interval)).
#[derive(Default)]
pub(super) struct CoverageRecords {
    /// The write in flight: at most one.
    pub(super) writing: Option<JoinHandle<dr_core::Result<()>>>,
    /// The `seen_at` of the last record written.
    pub(super) recorded: Option<Timestamp>,
    /// A fresh read of `synchronous_standby_names` in flight, and when the
    /// last one began: the setting changes with a reload, which a stream
    /// does not say.
    pub(super) checking: Option<JoinHandle<Option<bool>>>,
    pub(super) checked_at: Option<Instant>,
}

/// How many coverage intervals pass between reads of
/// `synchronous_standby_names` while streaming.
const SYNC_CHECK_EVERY: u32 = 5;

impl Task {
    /// Records in the archive, in the background, that it holds everything
    /// the server had written when it last reported, if it does and that
    /// report is newer than the last record. A failed record is kept as the
    /// last error; archiving goes on.
    pub(super) fn record_coverage(&mut self) {
        self.check_synchronous();
        if let Some(writing) = &self.coverage.writing {
            if !writing.is_finished() {
                return;
            }
            if let Some(Ok(Err(e))) = self
                .coverage
                .writing
                .take()
                .and_then(futures_util::FutureExt::now_or_never)
            {
                tracing::warn!(error = %e, "writing the archive's coverage record failed");
                self.status.last_error = Some(ErrorSummary::of(&e));
            }
        }
        let (Some(seen_at), Some(system_identifier), Some(timeline)) = (
            self.reported_at,
            self.status.system_id,
            self.status.timeline,
        ) else {
            return;
        };
        let end = self.status.server_end;
        if self.status.flushed < end || end == Lsn::ZERO || self.coverage.recorded >= Some(seen_at)
        {
            return;
        }
        let coverage = dr_core::ArchiveCoverage {
            position: dr_core::Position::Postgres {
                system_identifier,
                timeline,
                lsn: end,
            },
            seen_at,
            synchronous: self.archiver.options.synchronous && self.required_for_commits,
        };
        self.coverage.recorded = Some(seen_at);
        let (sink, component) = (self.archiver.sink.clone(), self.archiver.component.clone());
        self.coverage.writing = Some(tokio::spawn(async move {
            sink.record_coverage(&component, &coverage).await
        }));
    }

    /// Takes the answer of a finished read of `synchronous_standby_names`,
    /// and starts the next one when due (only where it matters: in
    /// synchronous mode), on a connection of its own.
    fn check_synchronous(&mut self) {
        let options = &self.archiver.options;
        let (Some(every), true) = (options.coverage_interval, options.synchronous) else {
            return;
        };
        if let Some(checking) = &self.coverage.checking {
            if !checking.is_finished() {
                return;
            }
            if let Some(Ok(Some(required))) = self
                .coverage
                .checking
                .take()
                .and_then(futures_util::FutureExt::now_or_never)
            {
                if required != self.required_for_commits {
                    tracing::info!(
                        required,
                        "the server's synchronous_standby_names changed whether commits wait for this archiver"
                    );
                }
                self.required_for_commits = required;
            }
        }
        if self
            .coverage
            .checked_at
            .is_some_and(|at| at.elapsed() < every * SYNC_CHECK_EVERY)
        {
            return;
        }
        self.coverage.checked_at = Some(Instant::now());
        let (config, tls) = (self.archiver.config.clone(), self.archiver.tls.clone());
        self.coverage.checking = Some(tokio::spawn(async move {
            let mut client = ReplicationClient::connect(&config, &tls).await.ok()?;
            let names = client.show("synchronous_standby_names").await.ok()?;
            let application = config.get_application_name().unwrap_or("drkit_wal");
            Some(waits_for_every_commit(&names, application))
        }));
    }
}

/// Whether a server with this `synchronous_standby_names` waits for the
/// standby `application` on every commit (given that it is connected): it is
/// among the first `n` of `FIRST n (...)` (or of a plain list, which is
/// `FIRST 1`), or `ANY n (...)` needs every name listed and it is one. A
/// `*` anywhere, or a setting that does not parse, is a no.
pub(super) fn waits_for_every_commit(setting: &str, application: &str) -> bool {
    let setting = setting.trim();
    if setting.is_empty() {
        return false;
    }
    let (method, rest) = match setting.split_once(char::is_whitespace) {
        Some((word, rest)) if word.eq_ignore_ascii_case("first") => ("first", rest.trim_start()),
        Some((word, rest)) if word.eq_ignore_ascii_case("any") => ("any", rest.trim_start()),
        _ => ("first", setting),
    };
    let (count, list) = match rest.split_once('(') {
        Some((count, list)) if !count.trim().is_empty() => {
            let Ok(count) = count.trim().parse::<usize>() else {
                return false;
            };
            let Some(list) = list.trim_end().strip_suffix(')') else {
                return false;
            };
            (count, list)
        }
        Some(_) => return false,
        None if method == "first" => (1, rest),
        None => return false,
    };
    let names: Vec<String> = list
        .split(',')
        .map(|name| {
            let name = name.trim();
            name.strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .map_or_else(
                    || name.to_ascii_lowercase(),
                    |quoted| quoted.replace("\"\"", "\""),
                )
        })
        .collect();
    if names.iter().any(|n| n == "*" || n.is_empty()) {
        return false;
    }
    let Some(position) = names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(application))
    else {
        return false;
    };
    match method {
        "any" => count >= names.len(),
        _ => position < count,
    }
}

#[cfg(test)]
mod tests {
    use super::waits_for_every_commit;

    #[test]
    fn synchronous_standby_names_that_wait_for_this_archiver() {
        for (setting, waits) in [
            ("drkit_wal", true),
            ("DRKIT_WAL", true),
            ("\"drkit_wal\"", true),
            ("drkit_wal, replica", true),
            ("replica, drkit_wal", false),
            ("FIRST 1 (drkit_wal, replica)", true),
            ("first 2 (replica, drkit_wal)", true),
            ("2 (replica, drkit_wal)", true),
            ("FIRST 1 (replica, drkit_wal)", false),
            ("ANY 1 (drkit_wal, replica)", false),
            ("ANY 2 (drkit_wal, replica)", true),
            ("ANY 1 (drkit_wal)", true),
            ("*", false),
            ("FIRST 1 (*, drkit_wal)", false),
            ("drkit_wal, *", false),
            ("", false),
            ("replica", false),
            ("FIRST x (drkit_wal)", false),
            ("FIRST 1 (drkit_wal", false),
            ("ANY drkit_wal", false),
        ] {
            assert_eq!(
                waits_for_every_commit(setting, "drkit_wal"),
                waits,
                "{setting}"
            );
        }
    }
}
