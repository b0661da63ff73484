//! The segment journals of synchronous mode (see the [module docs](super::super)).

use std::sync::Arc;

use dr_core::{ComponentId, JournalSink, SegmentJournal};
use tokio::task::JoinHandle;

use crate::archive::ArchivedWal;
use crate::wal::{WalSegment, WalSegmentSize};

use super::Task;

/// A journal being opened (created, if need be) in the background.
type OpeningJournal = JoinHandle<dr_core::Result<Box<dyn SegmentJournal>>>;

/// The segment journals of synchronous mode (see the module docs).
#[derive(Default)]
pub(super) struct Journals {
    /// A journal has been opened: pieces went to journals.
    pub(super) used: bool,
    /// The open journal of the segment being received.
    pub(super) current: Option<(WalSegment, Box<dyn SegmentJournal>)>,
    /// The next segment's journal, opened ahead of need.
    pub(super) next: Option<(WalSegment, OpeningJournal)>,
}

impl Drop for Journals {
    fn drop(&mut self) {
        if let Some((_, opening)) = self.next.take() {
            opening.abort();
        }
    }
}

impl Task {
    /// The open journal of `segment`, in synchronous mode where the
    /// archiver was handed journals; opening it (or taking the one opened
    /// ahead) if it is not open yet, and then opening the next segment's
    /// ahead of need.
    pub(super) async fn journal(
        &mut self,
        segment: WalSegment,
        size: WalSegmentSize,
    ) -> dr_core::Result<Option<&mut Box<dyn SegmentJournal>>> {
        let journals = &mut self.journals;
        let Some(sink) = &self.archiver.journal_sink else {
            return Ok(None);
        };
        if !self.archiver.options.synchronous {
            return Ok(None);
        }
        if journals.current.as_ref().is_none_or(|(s, _)| *s != segment) {
            journals.current = None;
            let ahead = match journals.next.take() {
                Some((next, opening)) if next == segment => opening.await.ok().and_then(Result::ok),
                Some((_, opening)) => {
                    opening.abort();
                    None
                }
                None => None,
            };
            let journal = match ahead {
                Some(opened) => opened,
                // Not opened ahead, or that failed: open it now, to see why.
                None => open_journal(sink, &self.archiver.component, segment, size).await?,
            };
            journals.used = true;
            journals.current = Some((segment, journal));
            let next = segment.next();
            let (sink, component) = (sink.clone(), self.archiver.component.clone());
            journals.next = Some((
                next,
                tokio::spawn(async move { open_journal(&sink, &component, next, size).await }),
            ));
        }
        Ok(journals.current.as_mut().map(|(_, journal)| journal))
    }
}

/// Opens (creating it, if need be) `segment`'s journal, with room for the
/// segment and the records' overhead.
async fn open_journal(
    sink: &Arc<dyn JournalSink>,
    component: &ComponentId,
    segment: WalSegment,
    size: WalSegmentSize,
) -> dr_core::Result<Box<dyn SegmentJournal>> {
    let name = ArchivedWal::Segment(segment).name(size);
    sink.open_journal(component, &name, size.bytes() + size.bytes() / 8)
        .await
}
