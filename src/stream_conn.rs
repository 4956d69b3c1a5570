//! Connections whose first request opens an inbox stream, served without
//! hyper.
//!
//! An open stream is most of what a busy server holds: one per member, idle
//! for minutes. hyper keeps a read and a write buffer of 8 KiB each for the
//! life of every HTTP/1 connection, more than everything else an idle member
//! costs put together. A connection that arrives with a complete
//! `GET …/events` head, and nothing that would need a body, is therefore
//! answered here instead: the head is parsed by `httparse` (hyper's own
//! parser), the request goes through the same router as every other, and its
//! answer is written straight to the socket, chunked, with
//! `Connection: close`. All that stays for the life of the stream is the
//! socket, the response body and a few bytes. Every other connection, and
//! every stream that arrives on a connection that already served a request,
//! is hyper's.

use std::io::{Cursor, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, Version, header};
use bytes::buf::{Chain, Take};
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_util::io::poll_write_buf;
use tower::ServiceExt;

use crate::app::App;

/// The most header lines a stream request may have to be served here;
/// browsers send about a dozen.
const MAX_HEADERS: usize = 48;

/// Room for a chunk's size line: 16 hex digits and CRLF.
const SIZE_LINE: usize = 20;

/// What the first bytes of a connection asked for.
pub enum FirstRequest {
    /// A stream request, read off the socket and ready for the router.
    Stream(Box<Request<Body>>),
    /// Anything else, still unread: hyper's.
    Other,
    /// Nothing within the header timeout, or the client went away.
    Gone,
}

/// Looks at the bytes the client sent first, without taking them unless the
/// request is a stream request, complete in what has arrived.
pub async fn first_request(
    socket: &mut TcpStream,
    peer: SocketAddr,
    max_head: usize,
    header_timeout: Duration,
) -> FirstRequest {
    let mut buffer = vec![0; max_head];
    let peeked = match tokio::time::timeout(header_timeout, socket.peek(&mut buffer)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return FirstRequest::Gone,
    };
    let Some((request, head_len)) = parse_stream_request(&buffer[..peeked], peer) else {
        return FirstRequest::Other;
    };
    // The head is all in the socket's buffer already: this read cannot wait.
    match socket.read_exact(&mut buffer[..head_len]).await {
        Ok(_) => FirstRequest::Stream(Box::new(request)),
        Err(_) => FirstRequest::Gone,
    }
}

/// A complete `GET …/events` HTTP/1.1 head with no body, as a request for
/// the router, and the head's length; `None` for anything else.
fn parse_stream_request(bytes: &[u8], peer: SocketAddr) -> Option<(Request<Body>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head_len) = head.parse(bytes).ok()? else {
        return None;
    };
    let path = head.path?;
    let route = path.split('?').next().unwrap_or(path);
    if head.method != Some("GET")
        || head.version != Some(1)
        || !route.starts_with("/rooms/")
        || !route.ends_with("/events")
    {
        return None;
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11);
    for line in head.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes()).ok()?;
        // A body, an upgrade or a `100 Continue` is more than this path does.
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
            header::EXPECT,
        ]
        .contains(&name)
        {
            return None;
        }
        request = request.header(name, HeaderValue::from_bytes(line.value).ok()?);
    }
    let mut request = request.body(Body::empty()).ok()?;
    request.extensions_mut().insert(ConnectInfo(peer));
    Some((request, head_len))
}

/// Answers `request` through `app` and writes the answer to `socket` until
/// its body ends, the client goes away, or a write stays blocked for
/// `write_timeout`.
pub async fn serve(
    mut socket: TcpStream,
    request: Box<Request<Body>>,
    app: App,
    write_timeout: Duration,
) {
    // The head in a future of its own, boxed and gone before the stream
    // starts: what this future holds lives as long as the member's stream,
    // so it is only what the body's loop needs.
    let head = Box::pin(answer_head(&mut socket, request, app, write_timeout));
    if let Some(body) = head.await {
        StreamBody {
            socket,
            body: body.into_data_stream(),
            write_timeout,
            chunk: None,
            stalled: None,
            last: false,
        }
        .await;
    }
}

/// Answers `request` through `app` and writes the answer's head; the body
/// to stream, or `None` when the client is gone.
async fn answer_head(
    socket: &mut TcpStream,
    request: Box<Request<Body>>,
    app: App,
    write_timeout: Duration,
) -> Option<Body> {
    // Boxed so that the router's future does not size this one.
    let response = match Box::pin(app.oneshot(*request)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let mut head = Vec::with_capacity(256);
    // Writing into a Vec cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &parts.headers {
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
        ]
        .contains(name)
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    drop(parts);
    send(socket, &head[..], write_timeout).await.then_some(body)
}

/// Writes `body` to `socket` as chunks until it ends, the client goes
/// away, or a write stays blocked for `write_timeout`.
///
/// A future polled by hand, not an async fn: it lives as long as the
/// member's stream, and an async fn kept room for the state of each of its
/// awaits, a write timer's among them (a stream's whole state was 768
/// bytes with it, 304 with this).
struct StreamBody {
    socket: TcpStream,
    body: BodyDataStream,
    write_timeout: Duration,
    /// The chunk being written: its size line, its data, its CRLF, in one
    /// vectored write without copying the data.
    chunk: Option<Chunk>,
    /// Set while a write waits for the client to read.
    stalled: Option<Pin<Box<Sleep>>>,
    /// The body has ended: the chunk being written is the last.
    last: bool,
}

type Chunk = Chain<Chain<Take<Cursor<[u8; SIZE_LINE]>>, Bytes>, &'static [u8]>;

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

impl StreamBody {
    /// Ready when the client has gone: a stream's request is its
    /// connection's last, so whatever else arrives is read and dropped.
    fn poll_client_gone(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut scratch = [0; 64];
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

impl Future for StreamBody {
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
                    Poll::Ready(Ok(_)) if chunk.has_remaining() => continue,
                    Poll::Ready(Ok(_)) => {
                        this.chunk = None;
                        this.stalled = None;
                        if this.last {
                            // The answer is complete; a shutdown of a TCP
                            // socket does not wait.
                            let _ = Pin::new(&mut this.socket).poll_shutdown(cx);
                            return Poll::Ready(());
                        }
                    }
                    Poll::Pending => {
                        // Only a write that waits gets a timer.
                        let write_timeout = this.write_timeout;
                        let stalled = this
                            .stalled
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(write_timeout)));
                        return match stalled.as_mut().poll(cx) {
                            // The client reads nothing: the stream ends, and
                            // its events stay held for a resume.
                            Poll::Ready(()) => Poll::Ready(()),
                            Poll::Pending => Poll::Pending,
                        };
                    }
                }
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
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Writes all of `bytes`; false when the client is gone or has read
/// nothing for `write_timeout`. Either way the stream ends, and its events
/// stay held for a resume.
async fn send(
    writer: &mut (impl tokio::io::AsyncWrite + Unpin),
    mut bytes: impl Buf,
    write_timeout: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(write_timeout, writer.write_all_buf(&mut bytes)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
