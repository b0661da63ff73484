//! A pipe of owned pieces between a fetch and the store: the fetch hands
//! over the `Bytes` it received, and the store reads them as a byte stream,
//! so each byte is copied once (into the store's buffer), not twice as
//! through a byte pipe's ring buffer.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// A pipe holding at most `depth` pieces in flight.
pub(crate) fn pipe(depth: usize) -> (PieceWriter, PieceReader) {
    let (tx, rx) = mpsc::channel(depth.max(1));
    (
        PieceWriter { tx },
        PieceReader {
            rx,
            current: Bytes::new(),
        },
    )
}

/// The writing end. Dropping it ends the stream.
#[derive(Debug)]
pub(crate) struct PieceWriter {
    tx: mpsc::Sender<Bytes>,
}

/// The reader has gone: nothing more will be read.
#[derive(Debug)]
pub(crate) struct ReaderGone;

impl PieceWriter {
    /// Sends `piece`, waiting while the pipe is full.
    ///
    /// # Errors
    /// [`ReaderGone`] once the reading end was dropped.
    pub(crate) async fn send(&self, piece: Bytes) -> Result<(), ReaderGone> {
        if piece.is_empty() {
            return Ok(());
        }
        self.tx.send(piece).await.map_err(|_| ReaderGone)
    }
}

/// The reading end: the pieces, in order, as one byte stream that ends when
/// the writer is dropped.
#[derive(Debug)]
pub(crate) struct PieceReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl AsyncRead for PieceReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.current.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(piece)) => self.current = piece,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.current.len().min(buf.remaining());
        buf.put_slice(&self.current[..n]);
        self.current.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn pieces_arrive_in_order_as_one_stream_that_ends_with_the_writer() {
        let (writer, mut reader) = pipe(2);
        let send = async move {
            for piece in ["ab", "", "cde", "f"] {
                writer.send(Bytes::from(piece)).await.unwrap();
            }
        };
        let mut read = Vec::new();
        let (_, n) = tokio::join!(send, reader.read_to_end(&mut read));
        assert_eq!(n.unwrap(), 6);
        assert_eq!(read, b"abcdef");
    }

    #[tokio::test]
    async fn a_reader_that_reads_less_than_a_piece_gets_the_rest_next() {
        let (writer, mut reader) = pipe(1);
        writer.send(Bytes::from_static(b"hello")).await.unwrap();
        drop(writer);
        let mut two = [0u8; 2];
        reader.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"he");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"llo");
    }

    #[tokio::test]
    async fn the_writer_learns_that_the_reader_has_gone() {
        let (writer, reader) = pipe(1);
        drop(reader);
        assert!(writer.send(Bytes::from_static(b"x")).await.is_err());
    }
}
