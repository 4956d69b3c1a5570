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

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, Version, header};
use bytes::Buf;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

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
    app: Router,
    write_timeout: Duration,
) {
    // Boxed so that the router's future does not size this one, which lives
    // as long as the stream.
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
    // The response's headers (a map of several hundred bytes) and the head
    // written from them are gone before the stream starts: whatever lives
    // across the awaits below lives as long as the member's stream.
    drop(parts);
    if !send(&mut socket, &head[..], write_timeout).await {
        return;
    }
    drop(head);

    let mut body = body.into_data_stream();
    let (mut reader, mut writer) = socket.split();
    // Nothing may follow a stream's request; a read only tells when the
    // client has gone, and whatever it sent is dropped.
    let mut scratch = [0; 64];
    loop {
        tokio::select! {
            frame = body.next() => match frame {
                Some(Ok(data)) if data.is_empty() => {}
                Some(Ok(data)) => {
                    // The chunk's size line, the data and its CRLF leave in
                    // one vectored write, without copying the data.
                    let mut size = [0; SIZE_LINE];
                    let mut line = &mut size[..];
                    let _ = write!(line, "{:x}\r\n", data.len());
                    let used = SIZE_LINE - line.len();
                    let chunk = Buf::chain(Buf::chain(&size[..used], &data[..]), &b"\r\n"[..]);
                    if !send(&mut writer, chunk, write_timeout).await {
                        return;
                    }
                }
                Some(Err(_)) => return,
                None => {
                    // The last chunk: the answer is complete.
                    if send(&mut writer, &b"0\r\n\r\n"[..], write_timeout).await {
                        break;
                    }
                    return;
                }
            },
            read = reader.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
    let _ = tokio::time::timeout(write_timeout, writer.shutdown()).await;
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
