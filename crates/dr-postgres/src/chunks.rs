//! [`ChannelReader`]: the bytes a task sends over a channel, as an
//! `AsyncRead`. A base backup's read-ahead and a delta's transform both hand
//! their output to a snapshot writer this way.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// What an item received means to the reader.
pub(crate) enum Piece<T> {
    /// Bytes to read.
    Bytes(Bytes),
    /// Nothing to read; go on.
    Skip,
    /// The end of these bytes: the reader reads no further (end of file)
    /// and keeps the item for its owner ([`ChannelReader::take_stop`]).
    Stop(T),
    /// A failure: the read fails with it.
    Fail(io::Error),
}

/// Reads the bytes of the items received on a channel, in order. The channel
/// closing is the end of the bytes.
pub(crate) struct ChannelReader<T> {
    rx: mpsc::Receiver<T>,
    classify: fn(T) -> Piece<T>,
    /// The rest of the bytes received last.
    current: Bytes,
    /// The item that stopped the reading.
    stop: Option<T>,
}

impl<T> ChannelReader<T> {
    /// Reads `rx`, each item's meaning given by `classify`.
    pub(crate) fn new(rx: mpsc::Receiver<T>, classify: fn(T) -> Piece<T>) -> Self {
        Self {
            rx,
            classify,
            current: Bytes::new(),
            stop: None,
        }
    }

    /// The item after the bytes read: the one that stopped them, else the
    /// next on the channel (the rest of the bytes received last is
    /// dropped); `None` once the channel closed.
    pub(crate) async fn next_item(&mut self) -> Option<T> {
        if let Some(item) = self.stop.take() {
            return Some(item);
        }
        self.current = Bytes::new();
        self.rx.recv().await
    }
}

impl<T> AsyncRead for ChannelReader<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.current.is_empty() {
                let n = buf.remaining().min(this.current.len());
                buf.put_slice(&this.current.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.stop.is_some() || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let Some(item) = ready!(this.rx.poll_recv(cx)) else {
                return Poll::Ready(Ok(()));
            };
            match (this.classify)(item) {
                Piece::Bytes(bytes) => this.current = bytes,
                Piece::Skip => {}
                Piece::Stop(item) => this.stop = Some(item),
                Piece::Fail(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<T> Unpin for ChannelReader<T> {}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn classify(
        item: Result<&'static str, &'static str>,
    ) -> Piece<Result<&'static str, &'static str>> {
        match item {
            Ok("skip") => Piece::Skip,
            Ok("stop") => Piece::Stop(item),
            Ok(text) => Piece::Bytes(Bytes::from_static(text.as_bytes())),
            Err(why) => Piece::Fail(io::Error::other(why)),
        }
    }

    #[tokio::test]
    async fn bytes_end_at_a_stop_and_the_stop_comes_next() {
        let (tx, rx) = mpsc::channel(8);
        for item in [Ok("ab"), Ok("skip"), Ok("cd"), Ok("stop"), Ok("ef")] {
            tx.send(item).await.unwrap();
        }
        drop(tx);
        let mut reader = ChannelReader::new(rx, classify);
        let mut read = String::new();
        reader.read_to_string(&mut read).await.unwrap();
        assert_eq!(read, "abcd");
        assert_eq!(reader.next_item().await, Some(Ok("stop")));
        assert_eq!(reader.next_item().await, Some(Ok("ef")));
        assert_eq!(reader.next_item().await, None);
    }

    #[tokio::test]
    async fn a_failure_fails_the_read() {
        let (tx, rx) = mpsc::channel(8);
        tx.send(Ok("ab")).await.unwrap();
        tx.send(Err("the server went away")).await.unwrap();
        let mut reader = ChannelReader::new(rx, classify);
        let mut read = Vec::new();
        let err = reader.read_to_end(&mut read).await.unwrap_err();
        assert_eq!(err.to_string(), "the server went away");
        assert_eq!(read, b"ab");
    }
}
