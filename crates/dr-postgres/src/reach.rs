//! Whether archived WAL reaches a recovery target that only its records
//! can tell: a time, or a named restore point.
//!
//! PostgreSQL stops a time-targeted recovery at the first transaction that
//! committed or aborted after the target time (`recovery_target_inclusive`
//! is on), and a name-targeted one after the first restore point of that
//! name; where the WAL ends before that, or the stop comes before the base
//! backup's end (the consistent point), it fails only at the end of
//! recovery, after the data directory was written. [`TargetReach`] reads
//! the staged WAL's records first, with [`WalRecordReader`], so that
//! [`PitrRestore`](crate::PitrRestore) refuses such a target before it
//! touches anything.

use bytes::Bytes;
use dr_core::{ComponentId, Lsn, RecoveryTarget};
use jiff::Timestamp;

use crate::wal::WalSegmentSize;
use crate::wal_records::{WalRecordEvent, WalRecordReader};

/// What the WAL must hold for the target to be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    /// A commit or abort later than this.
    After(Timestamp),
    /// A restore point of this name, after the consistent point.
    Named(String),
}

/// Where recovery would stop, as read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    /// At this record, at or after the consistent point.
    Reached { at: Lsn },
    /// At this record, before the consistent point: recovery would fail.
    TooEarly { at: Lsn },
}

/// Reads a restore's WAL, segment by segment in order, for where its
/// recovery target is (see the module docs).
#[derive(Debug)]
pub(crate) struct TargetReach {
    reader: WalRecordReader,
    wanted: Wanted,
    /// The base backup's end: recovery is consistent from here on.
    consistent: Lsn,
    stop: Option<Stop>,
    /// The last commit or abort read: its time and where it ends.
    last_transaction: Option<(Timestamp, Lsn)>,
}

impl TargetReach {
    /// A reader for `target`, for WAL of a backup that ends at `consistent`;
    /// `None` for targets the archive's segments alone decide (the latest
    /// WAL, an LSN, the backup itself).
    pub(crate) fn for_target(
        target: &RecoveryTarget,
        consistent: Lsn,
        segment_size: WalSegmentSize,
    ) -> Option<Self> {
        let wanted = match target {
            RecoveryTarget::Time(at) => Wanted::After(*at),
            RecoveryTarget::RestorePoint(name) => Wanted::Named(name.clone()),
            _ => return None,
        };
        Some(Self {
            reader: WalRecordReader::new(segment_size),
            wanted,
            consistent,
            stop: None,
            last_transaction: None,
        })
    }

    /// Whether more WAL can change the verdict.
    pub(crate) fn needs_more(&self) -> bool {
        self.stop.is_none() && self.reader.end_reason().is_none()
    }

    /// Reads the next segment of the restore's WAL (the first one is the
    /// segment the backup starts in).
    ///
    /// # Errors
    /// The reader's errors: segments out of order, WAL of another cluster,
    /// a malformed record.
    pub(crate) fn feed(&mut self, start: Lsn, bytes: &[u8]) -> dr_core::Result<()> {
        if !self.needs_more() {
            return Ok(());
        }
        for event in self.reader.feed_segment(start, bytes)? {
            self.observe(&event);
        }
        Ok(())
    }

    /// [`feed`](Self::feed) on a blocking thread, for a segment's worth of
    /// records; nothing is read once the verdict is settled.
    ///
    /// # Errors
    /// As [`feed`](Self::feed).
    pub(crate) async fn read_segment(mut self, start: Lsn, bytes: Bytes) -> dr_core::Result<Self> {
        if !self.needs_more() {
            return Ok(self);
        }
        tokio::task::spawn_blocking(move || self.feed(start, &bytes).map(|()| self))
            .await
            .map_err(|e| dr_core::Error::io("reading WAL records", std::io::Error::other(e)))?
    }

    /// Takes in one event; recovery stops at the first that matches.
    fn observe(&mut self, event: &WalRecordEvent) {
        if self.stop.is_some() {
            return;
        }
        let stops = match (event, &self.wanted) {
            (
                WalRecordEvent::Commit { time, end, .. } | WalRecordEvent::Abort { time, end, .. },
                wanted,
            ) => {
                self.last_transaction = Some((*time, *end));
                matches!(wanted, Wanted::After(at) if time > at)
            }
            (WalRecordEvent::RestorePoint { name, .. }, Wanted::Named(wanted)) => name == wanted,
            _ => false,
        };
        if stops {
            let at = event.end();
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
    /// no transaction after the target time (with the last one's time), or
    /// no restore point of that name; [`dr_core::ErrorKind::InvalidInput`]
    /// when the target comes before the base backup is consistent.
    pub(crate) fn verdict(&self, component: &ComponentId) -> dr_core::Result<Lsn> {
        let wal_end = self
            .reader
            .last_record_end()
            .map_or_else(|| "its start".to_owned(), |end| end.to_string());
        match (&self.stop, &self.wanted) {
            (Some(Stop::Reached { at }), _) => Ok(*at),
            (Some(Stop::TooEarly { at }), wanted) => Err(dr_core::Error::invalid(
                "recovery target",
                format!(
                    "{} is at {at}, before the base backup of {component} is consistent (at {}); \
                     an older base backup is needed",
                    describe(wanted),
                    self.consistent
                ),
            )),
            (None, Wanted::After(at)) => Err(dr_core::Error::not_found(format!(
                "a transaction of {component} after the target time {at}: {}; the archived WAL \
                 ends at {wal_end}. Restore to the latest WAL instead, or once later WAL is archived",
                match self.last_transaction {
                    Some((time, end)) => format!("the last one ended at {end}, at {time}"),
                    None =>
                        "the archived WAL holds no transaction after the base backup".to_owned(),
                }
            ))),
            (None, wanted @ Wanted::Named(_)) => Err(dr_core::Error::not_found(format!(
                "{} in the archived WAL of {component} from the base backup's start to {wal_end}",
                describe(wanted)
            ))),
        }
    }
}

fn describe(wanted: &Wanted) -> String {
    match wanted {
        Wanted::After(at) => format!("the first transaction after {at}"),
        Wanted::Named(name) => format!("the restore point {name:?}"),
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

    fn point(name: &str, end: u64) -> WalRecordEvent {
        WalRecordEvent::RestorePoint {
            start: Lsn::from(end - 88),
            end: Lsn::from(end),
            name: name.into(),
            time: at(0),
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
        r.observe(&point("nightly", 0x2800));
        let err = r.verdict(&component()).unwrap_err();
        assert_eq!(err.kind(), dr_core::ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("0/2000"), "{err}");
    }

    #[test]
    fn a_name_is_reached_by_its_first_restore_point_after_the_backup() {
        let mut r = reach(RecoveryTarget::RestorePoint("before-drop".into()));
        r.observe(&point("other", 0x2000));
        assert!(r.needs_more());
        r.observe(&point("before-drop", 0x3000));
        assert!(!r.needs_more());
        assert_eq!(r.verdict(&component()).unwrap(), Lsn::from(0x3000));

        let missing = reach(RecoveryTarget::RestorePoint("nope".into()));
        let err = missing.verdict(&component()).unwrap_err();
        assert_eq!(err.kind(), dr_core::ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }

    #[test]
    fn a_stop_before_the_backup_is_consistent_is_refused() {
        let mut r = reach(RecoveryTarget::RestorePoint("early".into()));
        r.observe(&point("early", 0x0800));
        r.observe(&point("early", 0x3000));
        let err = r.verdict(&component()).unwrap_err();
        assert_eq!(err.kind(), dr_core::ErrorKind::InvalidInput, "{err}");

        let mut r = reach(RecoveryTarget::Time(at(0)));
        r.observe(&commit(1, 0x0900));
        assert!(r.verdict(&component()).is_err());
    }

    #[test]
    fn other_targets_need_no_records() {
        let size = WalSegmentSize::new(16 << 20).unwrap();
        assert!(TargetReach::for_target(&RecoveryTarget::Latest, Lsn::ZERO, size).is_none());
    }
}
