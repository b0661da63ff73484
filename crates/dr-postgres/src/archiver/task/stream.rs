//! Streaming: WAL into the segment being received, and its pieces and whole segments into the archive.

use std::time::Instant;

use dr_core::{Error, ErrorKind};
use tokio::task::JoinError;

use crate::archive::{ArchivedWal, fetch_wal};
use crate::replication::{WalEvent, WalStream};
use crate::wal::{WalSegment, WalSegmentSize};

use super::{Current, MAX_SEGMENT_STORES, Pause, SYNC_BATCH_MAX, SegmentStore, Task, sleep_until};
use crate::archiver::handle::Stop;

impl Task {
    /// Receives and stores until a stop is requested or the server ends the
    /// stream.
    pub(super) async fn stream(
        &mut self,
        stream: &mut WalStream,
        current: &mut Current,
        stop: &mut Stop,
    ) -> dr_core::Result<Pause> {
        let options = self.archiver.options.clone();
        let mut status_due = tokio::time::Instant::now() + options.status_interval;
        let mut coverage_due = options
            .coverage_interval
            .map(|every| tokio::time::Instant::now() + every);
        loop {
            while let Some(joined) = self.segment_stores.try_join_next() {
                self.segment_store_done(joined)?;
            }
            if options.synchronous && current.unstored() > 0 {
                // Take what is already there, then store it all at once.
                let ready = tokio::select! {
                    biased;
                    event = stream.next() => Some(event),
                    () = std::future::ready(()) => None,
                };
                if let Some(event) = ready {
                    if let Some(pause) = self.handle(event?, stream, current).await? {
                        return Ok(pause);
                    }
                    if current.unstored() < SYNC_BATCH_MAX {
                        // A completed segment may have moved the flush position.
                        self.publish();
                        continue;
                    }
                }
                self.store_piece(current).await?;
                stream.send_status(self.standby_status()).await?;
                status_due = tokio::time::Instant::now() + options.status_interval;
                self.publish();
                continue;
            }
            let piece_due = match (options.piece_interval, current.unstored_since) {
                (Some(interval), Some(since)) if !options.synchronous => {
                    Some(tokio::time::Instant::from_std(since + interval))
                }
                _ => None,
            };
            tokio::select! {
                biased;
                () = stop.wait() => return Ok(Pause::Stop),
                event = stream.next() => {
                    if let Some(pause) = self.handle(event?, stream, current).await? {
                        return Ok(pause);
                    }
                }
                () = sleep_until(piece_due), if piece_due.is_some() => {
                    self.store_piece(current).await?;
                    stream.send_status(self.standby_status()).await?;
                    status_due = tokio::time::Instant::now() + options.status_interval;
                }
                () = tokio::time::sleep_until(status_due) => {
                    stream.send_status(self.standby_status()).await?;
                    status_due = tokio::time::Instant::now() + options.status_interval;
                }
                () = sleep_until(coverage_due), if coverage_due.is_some() => {
                    self.record_coverage();
                    // The server's answer dates the next record.
                    stream.send_status(self.standby_status().reply_requested(true)).await?;
                    coverage_due = options
                        .coverage_interval
                        .map(|every| tokio::time::Instant::now() + every);
                }
                Some(joined) = self.segment_stores.join_next(),
                    if !self.segment_stores.is_empty() =>
                {
                    self.segment_store_done(joined)?;
                }
            }
            self.publish();
        }
    }

    /// Handles one message; `Some` when the server has ended the stream.
    async fn handle(
        &mut self,
        event: Option<WalEvent>,
        stream: &mut WalStream,
        current: &mut Current,
    ) -> dr_core::Result<Option<Pause>> {
        match event {
            None => Ok(Some(Pause::ServerDone)),
            Some(WalEvent::Keepalive(keepalive)) => {
                self.server_reported(keepalive.end_of_wal, keepalive.server_time);
                if keepalive.reply_requested {
                    stream.send_status(self.standby_status()).await?;
                }
                Ok(None)
            }
            Some(WalEvent::XLogData(data)) => {
                let expected = current.received();
                if data.start != expected {
                    return Err(Error::other(
                        ErrorKind::Internal,
                        format!(
                            "WAL arrived from {} when {expected} was expected",
                            data.start
                        ),
                        crate::Error::InvalidState {
                            reason: "a gap or overlap in the WAL stream",
                        },
                    ));
                }
                self.server_reported(data.end_of_wal.max(data.end()), data.server_time);
                let segment_len = current.size.bytes() as usize;
                let mut bytes = &data.data[..];
                while !bytes.is_empty() {
                    let take = (segment_len - current.buf.len()).min(bytes.len());
                    current.buf.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if current.unstored() > 0 && current.unstored_since.is_none() {
                        current.unstored_since = Some(Instant::now());
                    }
                    if current.buf.len() == segment_len {
                        let whole = self.complete_segment(current).await?;
                        stream.send_status(self.standby_status()).await?;
                        if let Some((segment, data)) = whole {
                            self.store_whole_later(segment, Some(data), current.size)
                                .await?;
                        }
                    }
                }
                self.status.received = current.received();
                Ok(None)
            }
        }
    }

    /// Makes the complete segment durable and moves on to the next. If
    /// pieces hold its start, the rest is stored as its last piece, and the
    /// segment is returned to be stored whole off the critical path (see
    /// [`Task::store_whole_later`]); else it is stored whole here, there
    /// being nothing smaller to store.
    async fn complete_segment(
        &mut self,
        current: &mut Current,
    ) -> dr_core::Result<Option<(WalSegment, Vec<u8>)>> {
        let segment = current.segment;
        let whole = if current.stored > 0 {
            self.store_piece(current).await?;
            let next = match self.spare_buffer.take() {
                Some(buffer) => buffer,
                None => Vec::with_capacity(current.buf.capacity()),
            };
            // Done with: removed once the segment is stored whole.
            self.journals.current.take_if(|(s, _)| *s == segment);
            Some((segment, std::mem::replace(&mut current.buf, next)))
        } else {
            let name = ArchivedWal::Segment(segment).name(current.size);
            self.archiver
                .sink
                .put_segment(&self.archiver.component, &name, &mut &current.buf[..])
                .await?;
            self.status.segments_stored += 1;
            current.buf.clear();
            None
        };
        self.status.flushed = self.status.flushed.max(segment.end(current.size));
        current.segment = segment.next();
        current.stored = 0;
        current.unstored_since = None;
        self.status.received = current.received();
        Ok(whole)
    }

    /// Stores whole, in the background, a segment its pieces already hold:
    /// `data`, or else the pieces read back from the archive. Waits first
    /// while [`MAX_SEGMENT_STORES`] are under way.
    ///
    /// The pieces would do for a restore; the whole segment is one object to
    /// read instead of many, and lets retention drop the pieces.
    pub(super) async fn store_whole_later(
        &mut self,
        segment: WalSegment,
        data: Option<Vec<u8>>,
        size: WalSegmentSize,
    ) -> dr_core::Result<()> {
        while self.segment_stores.len() >= MAX_SEGMENT_STORES {
            if let Some(joined) = self.segment_stores.join_next().await {
                self.segment_store_done(joined)?;
            }
        }
        let sink = self.archiver.sink.clone();
        let source = self.archiver.source.clone();
        let journal_source = self.archiver.journal_source.clone();
        let component = self.archiver.component.clone();
        // Read back from the archive, the pieces may be a journal's records.
        let journaled = if data.is_none() || self.journals.used {
            self.archiver.journal_sink.clone()
        } else {
            None
        };
        self.segment_stores.spawn(async move {
            let name = ArchivedWal::Segment(segment).name(size);
            let mut stored = match &data {
                Some(data) => sink.put_segment(&component, &name, &mut &data[..]).await,
                None => match fetch_wal(
                    source.as_ref(),
                    journal_source.as_deref(),
                    &component,
                    name.as_str(),
                    size,
                )
                .await
                {
                    Ok(Some(pieces)) => sink.put_segment(&component, &name, &mut &pieces[..]).await,
                    Ok(None) => Err(Error::not_found(format!("the pieces of {name}"))),
                    Err(error) => Err(error),
                },
            }
            .map(drop);
            if stored.is_ok()
                && let Some(journals) = journaled
            {
                stored = journals.remove_journal(&component, &name).await;
            }
            let result = stored.map_err(|error| {
                // Of the same kind, so it is as fatal as any other store's failure.
                Error::other(
                    error.kind(),
                    format!("storing WAL segment {name} of {component} whole"),
                    error,
                )
            });
            (result, data.unwrap_or_default())
        });
        Ok(())
    }

    /// Takes in the end of a background whole-segment store.
    fn segment_store_done(
        &mut self,
        joined: Result<SegmentStore, JoinError>,
    ) -> dr_core::Result<()> {
        let (result, mut buffer) = joined.map_err(|error| {
            Error::other(
                ErrorKind::Internal,
                "storing a whole WAL segment in the background failed",
                error,
            )
        })?;
        if buffer.capacity() > 0 && self.spare_buffer.is_none() {
            buffer.clear();
            self.spare_buffer = Some(buffer);
        }
        if let Err(error) = &result {
            tracing::warn!(
                %error,
                "storing a whole WAL segment failed; it is durable in pieces and is stored \
                 whole after reconnecting"
            );
        }
        result?;
        self.status.segments_stored += 1;
        Ok(())
    }

    /// Waits for every background whole-segment store to end; the first
    /// failure, after all have ended.
    pub(super) async fn finish_segment_stores(&mut self) -> dr_core::Result<()> {
        let mut result = Ok(());
        while let Some(joined) = self.segment_stores.join_next().await {
            let done = self.segment_store_done(joined);
            if result.is_ok() {
                result = done;
            }
        }
        self.publish();
        result
    }

    /// Stores the bytes received since the last store as a piece: appended
    /// to the segment's journal where there is one, else as an object.
    pub(super) async fn store_piece(&mut self, current: &mut Current) -> dr_core::Result<()> {
        if current.unstored() == 0 {
            return Ok(());
        }
        let (start, end) = (current.stored, current.buf.len());
        if let Some(journal) = self.journal(current.segment, current.size).await? {
            journal
                .append(start as u64, &current.buf[start..end])
                .await?;
        } else {
            let name = ArchivedWal::Piece {
                segment: current.segment,
                start: start as u32,
                end: end as u32,
            }
            .name(current.size);
            self.archiver
                .sink
                .put_segment(
                    &self.archiver.component,
                    &name,
                    &mut &current.buf[start..end],
                )
                .await?;
        }
        self.status.pieces_stored += 1;
        current.stored = end;
        current.unstored_since = None;
        self.status.flushed = self.status.flushed.max(current.received());
        Ok(())
    }
}
