//! Streaming an answer of unknown length (an inbox stream) as chunks,
//! until it ends, the client goes away, or stops reading.

use std::io::Cursor;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use bytes::buf::{Chain, Take};
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::io::poll_write_buf;

/// Room for a chunk's size line: 16 hex digits and CRLF.
const SIZE_LINE: usize = 20;

/// Writes `body` to `socket` as chunks until it ends, the client goes
/// away, or a write stays blocked for `write_timeout`.
///
/// A future polled by hand, not an async fn: it lives as long as the
/// member's stream, and an async fn kept room for the state of each of its
/// awaits, a write timer's among them (a stream's whole state was 768
/// bytes with it, 304 with this).
pub(super) struct StreamBody<S = TcpStream> {
    socket: S,
    body: BodyDataStream,
    write_timeout: Duration,
    /// The chunk being written: its size line, its data, its CRLF, in one
    /// vectored write without copying the data.
    chunk: Option<Chunk>,
    /// Set while a write waits for the client to read.
    stalled: Option<Pin<Box<Sleep>>>,
    /// A chunk was written that TLS may still hold back: it is flushed
    /// before the stream waits for its next event.
    unflushed: bool,
    /// The body has ended: the chunk being written is the last.
    last: bool,
}

pub(super) type Chunk = Chain<Chain<Take<Cursor<[u8; SIZE_LINE]>>, Bytes>, &'static [u8]>;

/// Reads a client may make a stream's connection do in one poll before it
/// yields to the other tasks.
const READS_PER_POLL: usize = 16;

fn chunk(data: Bytes) -> Chunk {
    Buf::chain(Buf::chain(size_line(data.len()), data), &b"\r\n"[..])
}

/// `len` in lower-case hex and CRLF. By hand: `write!` and the formatting
/// machinery cost ten times as much, for every event of every stream.
fn size_line(len: usize) -> Take<Cursor<[u8; SIZE_LINE]>> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    let mut line = [0; SIZE_LINE];
    for (at, byte) in line[..digits].iter_mut().enumerate() {
        *byte = HEX[(len >> (4 * (digits - 1 - at))) & 0xf];
    }
    line[digits..digits + 2].copy_from_slice(b"\r\n");
    Buf::take(Cursor::new(line), digits + 2)
}

impl<S> StreamBody<S> {
    pub(super) fn new(socket: S, body: Body, write_timeout: Duration) -> Self {
        Self {
            socket,
            body: body.into_data_stream(),
            write_timeout,
            chunk: None,
            stalled: None,
            unflushed: false,
            last: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamBody<S> {
    /// Ready when the client has gone: a streamed answer is its
    /// connection's last, so whatever else arrives is read and dropped.
    fn poll_client_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Large enough that a client sending on costs a read per KiB, not
        // per handful of bytes.
        let mut scratch = [0; 1024];
        for _ in 0..READS_PER_POLL {
            let mut read = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.socket).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
        // Still more to drop: later, after the other tasks.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamBody<S> {
    /// Ready when a write that waits for the client has waited for the
    /// write timeout: the client reads nothing, and the stream ends (its
    /// events stay held for a resume). Only a write that waits gets a
    /// timer.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let write_timeout = self.write_timeout;
        self.stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(write_timeout)))
            .as_mut()
            .poll(cx)
    }

    /// Sends what TLS held back of the chunks written: ready with whether
    /// the stream goes on.
    fn poll_flushed(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if !self.unflushed {
            return Poll::Ready(true);
        }
        match Pin::new(&mut self.socket).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.unflushed = false;
                self.stalled = None;
                Poll::Ready(true)
            }
            Poll::Ready(Err(_)) => Poll::Ready(false),
            Poll::Pending => self.poll_stalled(cx).map(|()| false),
        }
    }

    /// The last chunk is written: flushed, then the answer is complete.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.poll_flushed(cx) {
            Poll::Ready(true) => {
                // A shutdown of a TCP socket does not wait, and TLS's
                // close_notify need not arrive: the chunks said where the
                // answer ends.
                let _ = Pin::new(&mut self.socket).poll_shutdown(cx);
                Poll::Ready(())
            }
            Poll::Ready(false) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for StreamBody<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.poll_client_gone(cx).is_ready() {
            return Poll::Ready(());
        }
        loop {
            if let Some(chunk) = &mut this.chunk {
                match poll_write_buf(Pin::new(&mut this.socket), cx, chunk) {
                    Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(_)) if chunk.has_remaining() => {
                        // The timeout is for each write, as in `send`: a
                        // client that keeps reading a large chunk slowly
                        // keeps its stream.
                        this.stalled = None;
                        continue;
                    }
                    Poll::Ready(Ok(_)) => {
                        this.chunk = None;
                        this.stalled = None;
                        this.unflushed = true;
                    }
                    Poll::Pending => return this.poll_stalled(cx),
                }
            }
            if this.last {
                return this.poll_finish(cx);
            }
            match this.body.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(data))) if data.is_empty() => {}
                Poll::Ready(Some(Ok(data))) => this.chunk = Some(chunk(data)),
                Poll::Ready(Some(Err(_))) => return Poll::Ready(()),
                Poll::Ready(None) => {
                    // The last chunk: no data.
                    this.chunk = Some(chunk(Bytes::new()));
                    this.last = true;
                }
                // Nothing more for now: what TLS held back goes out before
                // the stream waits.
                Poll::Pending => {
                    return match this.poll_flushed(cx) {
                        Poll::Ready(false) => Poll::Ready(()),
                        Poll::Ready(true) | Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::http1::tests::read_slowly;
    use tokio::time::Instant;

    fn framed(data: &[u8]) -> Vec<u8> {
        let mut chunk = chunk(Bytes::copy_from_slice(data));
        chunk.copy_to_bytes(chunk.remaining()).to_vec()
    }

    #[test]
    fn chunks_carry_their_size_in_hex_and_end_with_crlf() {
        assert_eq!(framed(b"hi"), b"2\r\nhi\r\n");
        let big = vec![b'x'; 300];
        let mut expected = b"12c\r\n".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"\r\n");
        assert_eq!(framed(&big), expected);
    }

    #[test]
    fn size_lines_are_what_format_writes() {
        for len in [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            4095,
            4096,
            65_535,
            usize::MAX,
        ] {
            let mut line = size_line(len);
            let written = line.copy_to_bytes(line.remaining());
            assert_eq!(written, format!("{len:x}\r\n").as_bytes());
        }
    }

    #[test]
    fn the_empty_chunk_is_the_last_chunk() {
        assert_eq!(framed(b""), b"0\r\n\r\n");
    }

    /// What the writer holds back (TLS's records, here a `BufWriter`) goes
    /// out before the stream waits for its next event.
    #[tokio::test]
    async fn what_the_writer_holds_back_goes_out_before_the_stream_waits() {
        use tokio::io::AsyncReadExt;
        let (server, mut client) = tokio::io::duplex(64 * 1024);
        let (events, waiting) =
            tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(1);
        let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(waiting));
        let stream = StreamBody::new(
            tokio::io::BufWriter::new(server),
            body,
            Duration::from_secs(5),
        );
        let streaming = tokio::spawn(stream);
        events
            .send(Ok(Bytes::from_static(b"data: hi\n\n")))
            .await
            .expect("the stream takes the event");
        let mut got = [0; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut got))
            .await
            .expect("the event goes out while the stream waits for the next")
            .expect("the client reads");
        assert_eq!(&got[..read], b"a\r\ndata: hi\n\n\r\n");
        drop(events);
        streaming.await.expect("the stream ends");
    }

    /// A stream's chunk, written the same way as `send` writes: a client
    /// that reads a large backlog slowly but on and on keeps its stream.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_gets_the_whole_chunk() {
        let (server, client) = tokio::io::duplex(4096);
        let data = vec![b'x'; 64 * 1024];
        let stream = StreamBody {
            socket: server,
            body: Body::from(data.clone()).into_data_stream(),
            write_timeout: Duration::from_secs(1),
            chunk: None,
            stalled: None,
            unflushed: false,
            last: false,
        };
        let reader = tokio::spawn(read_slowly(client));
        let started = Instant::now();
        stream.await;
        assert!(started.elapsed() > Duration::from_secs(5));
        let mut expected = b"10000\r\n".to_vec();
        expected.extend_from_slice(&data);
        expected.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(reader.await.expect("the reader ends"), expected);
    }
}
