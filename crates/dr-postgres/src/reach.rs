//! Whether archived WAL reaches a target time, which only its records can
//! tell.
//!
//! PostgreSQL stops a time-targeted recovery at the first transaction that
//! committed or aborted after the target time (`recovery_target_inclusive`
//! is on); where the WAL ends before that, or the stop comes before the
//! base backup's end (the consistent point), it fails only at the end of
//! recovery, after the data directory was written. [`TargetReach`] reads
//! the staged WAL's records first, with [`WalRecordReader`], so that
//! [`PitrRestore`](crate::PitrRestore) refuses such a target before it
//! touches anything. (A named restore point is looked for while the base
//! backup is chosen; see `PitrRestore::choose_for_restore_point`.)

use bytes::Bytes;
use dr_core::{ComponentId, Lsn, RecoveryTarget};
use jiff::Timestamp;

use crate::wal::WalSegmentSize;
use crate::wal_records::{WalRecordEvent, WalRecordReader};

/// Reads the segment starting at `start` with `reader` on a blocking
/// thread, and hands the reader back with the segment's events.
///
/// # Errors
/// The reader's errors: segments out of order, WAL of another cluster, a
/// malformed record.
pub(crate) async fn read_records(
    mut reader: WalRecordReader,
    start: Lsn,
    bytes: Bytes,
) -> dr_core::Result<(WalRecordReader, Vec<WalRecordEvent>)> {
    tokio::task::spawn_blocking(move || {
        let events = reader.feed_segment(start, &bytes)?;
        Ok((reader, events))
    })
    .await
    .map_err(|e| dr_core::Error::io("reading WAL records", std::io::Error::other(e)))?
}

/// Where recovery would stop, as read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    /// At this record, at or after the consistent point.
    Reached { at: Lsn },
    /// At this record, before the consistent point: recovery would fail.
    TooEarly { at: Lsn },
}

/// Reads a restore's WAL, segment by segment in order, for where recovery
/// to a target time stops (see the module docs).
#[derive(Debug)]
pub(crate) struct TargetReach {
    reader: WalRecordReader,
    /// The target time: recovery stops at the first transaction after it.
    after: Timestamp,
    /// The base backup's end: recovery is consistent from here on.
    consistent: Lsn,
    stop: Option<Stop>,
    /// The last commit or abort read: its time and where it ends.
    last_transaction: Option<(Timestamp, Lsn)>,
}

impl TargetReach {
    /// A reader for `target`, for WAL of a backup that ends at `consistent`;
    /// `None` for targets other than a time.
    pub(crate) fn for_target(
        target: &RecoveryTarget,
        consistent: Lsn,
        segment_size: WalSegmentSize,
    ) -> Option<Self> {
        let RecoveryTarget::Time(after) = target else {
            return None;
        };
        Some(Self {
            reader: WalRecordReader::new(segment_size),
            after: *after,
            consistent,
            stop: None,
            last_transaction: None,
        })
    }

    /// The target time.
    pub(crate) fn target_time(&self) -> Timestamp {
        self.after
    }

    /// Whether more WAL can change the verdict: once recovery's stop is
    /// found, or the valid WAL has ended, no later WAL is needed.
    pub(crate) fn needs_more(&self) -> bool {
        self.stop.is_none() && self.reader.end_reason().is_none()
    }

    /// Reads the next segment of the restore's WAL (the first one is the
    /// segment the backup starts in); nothing once the verdict is settled.
    ///
    /// # Errors
    /// As [`read_records`].
    pub(crate) async fn read_segment(mut self, start: Lsn, bytes: Bytes) -> dr_core::Result<Self> {
        if !self.needs_more() {
            return Ok(self);
        }
        let events;
        (self.reader, events) = read_records(self.reader, start, bytes).await?;
        for event in &events {
            self.observe(event);
        }
        Ok(self)
    }

    /// Takes in one event; recovery stops at the first that matches.
    fn observe(&mut self, event: &WalRecordEvent) {
        if self.stop.is_some() {
            return;
        }
        let (WalRecordEvent::Commit { time, end, .. } | WalRecordEvent::Abort { time, end, .. }) =
            event
        else {
            return;
        };
        self.last_transaction = Some((*time, *end));
        if *time > self.after {
            let at = *end;
            self.stop = Some(if at > self.consistent {
                Stop::Reached { at }
            } else {
                Stop::TooEarly { at }
            });
        }
    }

    /// Whether recovery would reach the target in the WAL read.
    ///
    /// # Errors
    /// [`dr_core::ErrorKind::NotFound`] when the WAL ends before the target:
    /// no transaction after the target time (with the last one's time);
    /// [`dr_core::ErrorKind::InvalidInput`] when the first transaction after
    /// it comes before the base backup is consistent.
    pub(crate) fn verdict(&self, component: &ComponentId) -> dr_core::Result<Lsn> {
        match &self.stop {
            Some(Stop::Reached { at }) => Ok(*at),
            Some(Stop::TooEarly { at }) => Err(dr_core::Error::invalid(
                "recovery target",
                format!(
                    "the first transaction after {} is at {at}, before the base backup of \
                     {component} is consistent (at {}); an older base backup is needed",
                    self.after, self.consistent
                ),
            )),
            None => Err(dr_core::Error::not_found(format!(
                "a transaction of {component} after the target time {}: {}; the archived WAL \
                 ends at {}. Restore to the latest WAL instead, or once later WAL is archived",
                self.after,
                match self.last_transaction {
                    Some((time, end)) => format!("the last one ended at {end}, at {time}"),
                    None => "the archived WAL holds no transaction after the base backup".into(),
                },
                self.reader
                    .last_record_end()
                    .map_or_else(|| "its start".to_owned(), |end| end.to_string()),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn reach(target: RecoveryTarget) -> TargetReach {
        TargetReach::for_target(
            &target,
            Lsn::from(0x1000),
            WalSegmentSize::new(16 << 20).unwrap(),
        )
        .unwrap()
    }

    fn commit(second: i64, end: u64) -> WalRecordEvent {
        WalRecordEvent::Commit {
            start: Lsn::from(end - 64),
            end: Lsn::from(end),
            xid: 700,
            prepared: false,
            time: at(second),
        }
    }

    fn component() -> ComponentId {
        "postgres/main".parse().unwrap()
    }

    #[test]
    fn a_time_is_reached_by_the_first_transaction_after_it() {
        let mut r = reach(RecoveryTarget::Time(at(10)));
        r.observe(&commit(5, 0x2000));
        r.observe(&commit(10, 0x3000));
        assert_eq!(
            r.stop, None,
            "a commit at the target time itself is replayed"
        );
        r.observe(&commit(11, 0x4000));
        assert_eq!(r.verdict(&component()).unwrap(), Lsn::from(0x4000));
    }

    #[test]
    fn a_time_after_the_last_transaction_names_it() {
        let mut r = reach(RecoveryTarget::Time(at(100)));
        r.observe(&commit(5, 0x2000));
        let err = r.verdict(&component()).unwrap_err();
        assert_eq!(err.kind(), dr_core::ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("0/2000"), "{err}");
    }

    #[test]
    fn a_first_transaction_after_the_time_before_the_backup_is_consistent_is_refused() {
        let mut r = reach(RecoveryTarget::Time(at(0)));
        r.observe(&commit(1, 0x0900));
        r.observe(&commit(2, 0x3000));
        let err = r.verdict(&component()).unwrap_err();
        assert_eq!(err.kind(), dr_core::ErrorKind::InvalidInput, "{err}");
    }

    #[test]
    fn other_targets_need_no_records() {
        let size = WalSegmentSize::new(16 << 20).unwrap();
        assert!(TargetReach::for_target(&RecoveryTarget::Latest, Lsn::ZERO, size).is_none());
        let name = RecoveryTarget::RestorePoint("before-drop".into());
        assert!(TargetReach::for_target(&name, Lsn::ZERO, size).is_none());
    }
}
