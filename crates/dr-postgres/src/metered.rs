//! [`Meter`]: a long step's bytes counted as they are read, reported to the
//! caller's [`ProgressSink`] every [`REPORT_EVERY`] bytes and at the end.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use dr_core::{Progress, ProgressSink};
use tokio::io::{AsyncRead, ReadBuf};

/// How many bytes pass between two reports.
pub(crate) const REPORT_EVERY: u64 = 8 << 20;

/// Counts one step's bytes for a caller who asked for progress.
pub(crate) struct Meter<'a> {
    sink: Option<&'a dyn ProgressSink>,
    step: &'static str,
    total: Option<u64>,
    done: AtomicU64,
    reported: AtomicU64,
}

impl<'a> Meter<'a> {
    /// A meter for `step`, out of `total` bytes if known; with no sink it
    /// only counts.
    pub(crate) fn new(
        sink: Option<&'a dyn ProgressSink>,
        step: &'static str,
        total: Option<u64>,
    ) -> Self {
        Self {
            sink,
            step,
            total,
            done: AtomicU64::new(0),
            reported: AtomicU64::new(0),
        }
    }

    /// Counts `n` more bytes, reporting once [`REPORT_EVERY`] have passed
    /// since the last report.
    pub(crate) fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let reported = self.reported.load(Ordering::Relaxed);
        if done - reported >= REPORT_EVERY
            && self
                .reported
                .compare_exchange(reported, done, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.report(done);
        }
    }

    /// Reports where the step ended.
    pub(crate) fn finish(&self) {
        self.report(self.done.load(Ordering::Relaxed));
    }

    fn report(&self, done: u64) {
        if let Some(sink) = self.sink {
            sink.report(&Progress::new(self.step, done, self.total));
        }
    }

    /// `inner`, with every byte read from it counted here.
    pub(crate) fn reader<R>(&self, inner: R) -> Metered<'_, 'a, R> {
        Metered { inner, meter: self }
    }
}

/// A reader whose bytes a [`Meter`] counts.
pub(crate) struct Metered<'m, 'a, R> {
    inner: R,
    meter: &'m Meter<'a>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Metered<'_, '_, R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.meter.add((buf.filled().len() - before) as u64);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn reports_come_every_few_mebibytes_and_at_the_end() {
        let seen = Mutex::new(Vec::new());
        let sink = |p: &Progress| seen.lock().unwrap().push((p.bytes_done, p.bytes_total));
        let data = vec![7u8; (2 * REPORT_EVERY + 5) as usize];
        let meter = Meter::new(Some(&sink), "extract base backup", Some(data.len() as u64));
        let mut read = Vec::new();
        meter
            .reader(&data[..])
            .read_to_end(&mut read)
            .await
            .unwrap();
        meter.finish();
        assert_eq!(read, data);
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen[0].0 >= REPORT_EVERY && seen[1].0 >= 2 * REPORT_EVERY);
        assert_eq!(seen[2], (data.len() as u64, Some(data.len() as u64)));
    }
}
