//! Cleartext HTTP/1.1 connections, served without hyper for as long as
//! they ask only for what this module does.
//!
//! An open stream or a waiting poll is most of what a busy server holds:
//! one per member, idle for minutes. hyper keeps a read and a write buffer
//! of 8 KiB each for the life of every HTTP/1 connection, more than
//! everything else an idle member costs put together, and a browser opens
//! a member's stream on the connection that carried its join. So every
//! cleartext connection starts here, and each request on it goes the same
//! way: the head is parsed by `httparse` (hyper's own parser), a body is
//! read by its `Content-Length`, the request goes through the same router
//! as every other, and the answer is written straight to the socket. A
//! connection waiting for its next request, or for the answer to a poll,
//! holds no buffer at all. An answer of unknown length (an inbox stream) is
//! written chunked and is the connection's last.
//!
//! Whatever else HTTP/1.1 allows goes to hyper, with the rest of the
//! connection and the bytes already read: HTTP/2 and HTTP/1.0, `HEAD`,
//! `CONNECT`, upgrades, chunked request bodies, an `Expect` other than
//! `100-continue`, a body over the payload limit (the router's 413 then
//! comes through hyper). Once there, the connection stays hyper's. A head
//! over `--max-header-bytes`, one that no server could parse, or one not
//! sent in time is answered here, as problem+json like every error, and
//! the connection closed.

use std::cell::RefCell;
use std::io::{self, Cursor};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, BodyDataStream, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::response::Parts;
use axum::http::{Method, Request, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use bytes::buf::{Chain, Take};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use memchr::memmem;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_write_buf;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use crate::app::App;
use crate::error::ApiError;
use crate::serve::ConnectionLimits;

/// The most header lines a request may have, as in hyper.
const MAX_HEADERS: usize = 100;

/// What a read asks the socket for at least. Heads and bodies are mostly
/// well under it, so one read takes a whole request.
const READ_SIZE: usize = 4096;

/// Room for a chunk's size line: 16 hex digits and CRLF.
const SIZE_LINE: usize = 20;

/// Finds the blank line that ends a head. Built once: building the
/// searcher cost more than a search.
static BLANK_LINE: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\r\n\r\n"));

/// The same with bare line feeds, as a request typed by hand (`nc`) ends;
/// httparse reads such a head, as hyper does.
static BARE_BLANK_LINE: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\n\n"));

/// How a connection served here ended.
pub enum Ended {
    /// It is closed, or the client went away.
    Closed,
    /// It needs hyper from here on: the socket, with what was read from it
    /// and not used.
    Hyper(Bytes, TcpStream),
}

/// Serves requests on `socket` until it closes, a stream takes it over, or
/// a request needs hyper.
pub async fn serve(
    mut socket: TcpStream,
    peer: SocketAddr,
    app: &mut App,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
) -> Ended {
    let mut read = BytesMut::new();
    // Boxed, once for all the connection's requests, and gone before a
    // stream starts: what this future holds lives as long as the member's
    // stream, so it is only the socket and what the stream's loop needs.
    let last = Box::pin(async {
        let mut timer = std::pin::pin!(tokio::time::sleep(limits.header_timeout));
        loop {
            let timer = timer.as_mut();
            match exchange(&mut socket, &mut read, peer, app, limits, shutdown, timer).await {
                Next::KeepAlive => {}
                last => return last,
            }
        }
    })
    .await;
    let body = match last {
        // The loop above ends on anything but `KeepAlive`.
        Next::KeepAlive | Next::Gone => return Ended::Closed,
        Next::Close => {
            // A shutdown of a TCP socket does not wait.
            let _ = socket.shutdown().await;
            return Ended::Closed;
        }
        Next::Hyper => return Ended::Hyper(read.freeze(), socket),
        Next::Stream(body) => body,
    };
    StreamBody {
        socket,
        body: body.into_data_stream(),
        write_timeout: limits.write_timeout,
        chunk: None,
        stalled: None,
        last: false,
    }
    .await;
    Ended::Closed
}

/// What is next for a connection after one request.
enum Next {
    /// Its next request.
    KeepAlive,
    /// Closing: the answer said so, or the server is shutting down.
    Close,
    /// The client went away, or did not send its request in time (and
    /// was told so).
    Gone,
    /// hyper, for what this module does not do.
    Hyper,
    /// The answer's body, to be streamed as chunks until it ends.
    Stream(Body),
}

/// Reads one request, answers it, and says what comes next.
async fn exchange(
    socket: &mut TcpStream,
    read: &mut BytesMut,
    peer: SocketAddr,
    app: &mut App,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
    timer: Pin<&mut Sleep>,
) -> Next {
    let (request, close) = match read_request(socket, read, peer, limits, shutdown, timer).await {
        Ok(read) => read,
        Err(NotRead::Gone) => return Next::Gone,
        Err(NotRead::Hyper) => return Next::Hyper,
    };
    // Nothing more of this connection is needed until the answer: holding
    // no buffer while a poll waits is most of what this module is for.
    if read.is_empty() {
        *read = BytesMut::new();
    }
    let answering = match app.ready().await {
        Ok(app) => app.call(request),
        Err(never) => match never {},
    };
    let response = tokio::select! {
        biased;
        response = answering => match response {
            Ok(response) => response,
            Err(never) => match never {},
        },
        // A poll may wait for a minute; the client may not.
        () = closed(socket) => return Next::Gone,
    };
    answer(
        socket,
        response,
        close || shutdown.is_cancelled(),
        limits.write_timeout,
    )
    .await
}

/// Ready when the client has closed its side of the connection. Bytes
/// waiting to be read are the next request, sent early: the connection is
/// then not watched until it is read.
async fn closed(socket: &TcpStream) {
    let mut probe = [0; 1];
    match socket.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Why no request was read.
enum NotRead {
    /// The client went away, or sent too little too slowly.
    Gone,
    /// It sent something for hyper, all of it still in `read`.
    Hyper,
}

/// Reads the next request's head, and its body if it has one: the request,
/// and whether the client asked to close the connection after it.
async fn read_request(
    socket: &mut TcpStream,
    read: &mut BytesMut,
    peer: SocketAddr,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
    mut timer: Pin<&mut Sleep>,
) -> Result<(Request<Body>, bool), NotRead> {
    // The whole head within the header timeout, counted from the end of
    // the last answer: an idle connection is closed after it, as hyper
    // closes its own.
    let deadline = Instant::now() + limits.header_timeout;
    let mut searched = 0;
    let head_len = loop {
        if let Some(at) = BLANK_LINE.find(&read[searched..]) {
            break searched + at + 4;
        }
        if let Some(at) = BARE_BLANK_LINE.find(&read[searched..]) {
            break searched + at + 2;
        }
        if read.len() >= limits.max_header_bytes {
            return Err(refuse(socket, head_too_large(limits), limits).await);
        }
        // A blank line may straddle two reads.
        searched = read.len().saturating_sub(3);
        if !fill(socket, read, deadline, timer.as_mut(), Some(shutdown)).await {
            // A connection idle between requests just closes.
            if !read.is_empty() {
                too_slow(socket, deadline, limits).await;
            }
            return Err(NotRead::Gone);
        }
    };
    // One read may bring more than the limit.
    if head_len > limits.max_header_bytes {
        return Err(refuse(socket, head_too_large(limits), limits).await);
    }
    // Everything read so far, as bytes the request's parts can share.
    let bytes = read.split().freeze();
    let head = match take_head(&bytes, peer, limits.max_body) {
        Ok(head) => head,
        Err(NotHead::Hyper) => {
            let mut all = BytesMut::from(&bytes[..]);
            all.extend_from_slice(read);
            *read = all;
            return Err(NotRead::Hyper);
        }
        Err(NotHead::Malformed(httparse::Error::TooManyHeaders)) => {
            return Err(refuse(socket, head_too_large(limits), limits).await);
        }
        Err(NotHead::Malformed(_)) => {
            return Err(refuse(socket, ApiError::MalformedHead, limits).await);
        }
    };
    let (mut request, body_len) = (head.request, head.body_len);
    let after = bytes.slice(head.len..);
    if after.len() >= body_len {
        // The usual case: the body came with the head.
        *request.body_mut() = Body::from(after.slice(..body_len));
        read.extend_from_slice(&after[body_len..]);
        return Ok((request, head.close));
    }
    read.extend_from_slice(&after);
    if head.continue_first {
        let sent = send(
            socket,
            &b"HTTP/1.1 100 Continue\r\n\r\n"[..],
            limits.write_timeout,
        )
        .await;
        if !sent {
            return Err(NotRead::Gone);
        }
    }
    // The body gets a header timeout of its own.
    let deadline = Instant::now() + limits.header_timeout;
    while read.len() < body_len {
        if !fill(socket, read, deadline, timer.as_mut(), None).await {
            too_slow(socket, deadline, limits).await;
            return Err(NotRead::Gone);
        }
    }
    *request.body_mut() = Body::from(read.split_to(body_len).freeze());
    Ok((request, head.close))
}

/// Says 408, as hyper does, when a request begun was not finished by
/// `deadline` (rather than cut off by the client); the connection closes
/// after it either way.
async fn too_slow(socket: &mut TcpStream, deadline: Instant, limits: &ConnectionLimits) {
    if Instant::now() >= deadline {
        refuse(socket, ApiError::RequestTimeout, limits).await;
    }
}

fn head_too_large(limits: &ConnectionLimits) -> ApiError {
    ApiError::HeadTooLarge {
        limit: limits.max_header_bytes,
    }
}

/// Answers a request that cannot be read, as problem+json like every
/// error, and closes the connection: what follows the bad bytes cannot be
/// told apart from them.
async fn refuse(socket: &mut TcpStream, error: ApiError, limits: &ConnectionLimits) -> NotRead {
    if matches!(
        answer(socket, error.into_response(), true, limits.write_timeout).await,
        Next::Gone
    ) {
        return NotRead::Gone;
    }
    // A socket closed with bytes unread is reset, and the reset can reach
    // the client before it has read the answer: say that nothing more
    // comes, then take in what the client still sends, for a moment.
    let _ = socket.shutdown().await;
    let deadline = Instant::now() + LINGER;
    let mut scratch = [0; 4096];
    for _ in 0..LINGER_READS {
        match tokio::time::timeout_at(
            deadline,
            tokio::io::AsyncReadExt::read(socket, &mut scratch),
        )
        .await
        {
            Ok(Ok(read)) if read > 0 => {}
            _ => break,
        }
    }
    NotRead::Gone
}

/// How long, and for how many reads, a refused client's remaining bytes
/// are taken in before its connection closes.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_READS: usize = 64;

/// Reads what the client has sent into `read`; false when it sent nothing
/// more before `deadline`, has gone, or (with `shutdown`, while no request
/// has begun) the server is shutting down.
async fn fill(
    socket: &mut TcpStream,
    read: &mut BytesMut,
    deadline: Instant,
    mut timer: Pin<&mut Sleep>,
    shutdown: Option<&CancellationToken>,
) -> bool {
    loop {
        let shutdown = shutdown.filter(|_| read.is_empty());
        let ready = tokio::select! {
            biased;
            ready = std::future::poll_fn(|cx| socket.poll_read_ready(cx)) => ready.is_ok(),
            () = async {
                match shutdown {
                    Some(shutdown) => shutdown.cancelled().await,
                    None => std::future::pending().await,
                }
            } => false,
            () = passed(timer.as_mut(), deadline) => false,
        };
        if !ready {
            return false;
        }
        // Room only once there is something to read: a connection waiting
        // for its next request holds no buffer.
        read.reserve(READ_SIZE);
        // Through `poll_read`, not `try_read`: after a read that did not
        // fill the room, it forgets the socket's readiness, so the wait for
        // the next request goes to epoll rather than to one more read that
        // finds nothing, a system call per request.
        let once = std::future::poll_fn(|cx| {
            Poll::Ready(tokio_util::io::poll_read_buf(
                Pin::new(&mut *socket),
                cx,
                read,
            ))
        });
        match once.await {
            Poll::Ready(Ok(0)) => return false,
            Poll::Ready(Ok(_)) => return true,
            // Nothing after all: wait again, without the room.
            Poll::Pending => {
                if read.is_empty() {
                    *read = BytesMut::new();
                }
            }
            Poll::Ready(Err(_)) => return false,
        }
    }
}

/// Ready once `deadline` has passed. `timer` is the connection's one timer
/// for it, for all its requests: it is moved only when it fires before the
/// deadline of the request being read. A timer of its own for every
/// request was an insertion into tokio's timer wheel, and a removal, for
/// every request.
async fn passed(mut timer: Pin<&mut Sleep>, deadline: Instant) {
    loop {
        timer.as_mut().await;
        if timer.deadline() >= deadline {
            return;
        }
        timer.as_mut().reset(deadline);
    }
}

/// A request whose head has been read; its body, if it has one, not yet.
struct Head {
    request: Request<Body>,
    /// The head's length, blank line included.
    len: usize,
    body_len: usize,
    /// `Expect: 100-continue`: the client waits for a word before the body.
    continue_first: bool,
    /// `Connection: close`.
    close: bool,
}

/// The request whose head starts `bytes`, with its path and header values
/// sharing them; `None` for anything this module leaves to hyper.
fn take_head(bytes: &Bytes, peer: SocketAddr, max_body: usize) -> Result<Head, NotHead> {
    let mut lines = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(bytes, &mut lines) {
        Ok(httparse::Status::Complete(len)) => len,
        // HTTP/2 with prior knowledge is hyper's.
        Err(httparse::Error::Version) if bytes.starts_with(b"PRI * HTTP/2.0\r\n") => {
            return Err(NotHead::Hyper);
        }
        // hyper's parser, as hyper configures it: what it refuses, hyper
        // would refuse too, with no body to say why.
        Err(error) => return Err(NotHead::Malformed(error)),
        // A blank line came before a whole head only if the head starts
        // with empty lines, which browsers do not send.
        Ok(httparse::Status::Partial) => return Err(NotHead::Hyper),
    };
    head(parsed, len, bytes, peer, max_body).ok_or(NotHead::Hyper)
}

/// Why `take_head` made no request of a head.
enum NotHead {
    /// It is something for hyper.
    Hyper,
    /// No server could read it.
    Malformed(httparse::Error),
}

/// The request of a parsed head, or `None` when hyper is to serve it.
fn head(
    parsed: httparse::Request<'_, '_>,
    len: usize,
    bytes: &Bytes,
    peer: SocketAddr,
    max_body: usize,
) -> Option<Head> {
    let (Some(method), Some(path), Some(1)) = (parsed.method, parsed.path, parsed.version) else {
        return None;
    };
    let method = Method::from_bytes(method.as_bytes())
        .ok()
        .filter(|method| method != Method::HEAD && method != Method::CONNECT)?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut body_len = None;
    let (mut continue_first, mut close) = (false, false);
    for line in parsed.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes()).ok()?;
        let value = line.value;
        if name == header::CONTENT_LENGTH {
            // One plain decimal length; two, even equal, or anything else
            // is hyper's to judge.
            if body_len.is_some() || value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return None;
            }
            body_len = Some(
                std::str::from_utf8(value)
                    .ok()?
                    .parse::<usize>()
                    .ok()
                    .filter(|&len| len <= max_body)?,
            );
        } else if name == header::TRANSFER_ENCODING || name == header::UPGRADE {
            return None;
        } else if name == header::EXPECT {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return None;
            }
            continue_first = true;
        } else if name == header::CONNECTION {
            close |= value
                .split(|&byte| byte == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        headers.append(
            name,
            HeaderValue::from_maybe_shared(bytes.slice_ref(value)).ok()?,
        );
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = Uri::from_maybe_shared(bytes.slice_ref(path.as_bytes())).ok()?;
    *request.headers_mut() = headers;
    request.extensions_mut().insert(ConnectInfo(peer));
    let body_len = body_len.unwrap_or(0);
    Some(Head {
        request,
        len,
        body_len,
        continue_first: continue_first && body_len > 0,
        close,
    })
}

/// Writes `response`'s head, and its body when its length is known; says
/// what comes next.
async fn answer(
    socket: &mut TcpStream,
    response: Response<Body>,
    close: bool,
    write_timeout: Duration,
) -> Next {
    let (parts, body) = response.into_parts();
    let close = close
        || parts
            .headers
            .get(header::CONNECTION)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
    let (length, data) = if parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED
    {
        (Length::None, Bytes::new())
    } else if body.size_hint().exact().is_none() {
        // A stream: chunked, and the connection's last answer.
        let head = write_head(&parts, Length::Chunked, true);
        return if send(socket, &head[..], write_timeout).await {
            Next::Stream(body)
        } else {
            Next::Gone
        };
    } else {
        match whole(body).await {
            // The length said is the length written, whatever the hint was.
            Some(data) => (Length::Known(data.len() as u64), data),
            None => return Next::Gone,
        }
    };
    let head = write_head(&parts, length, close);
    match (
        send(socket, Buf::chain(&head[..], data), write_timeout).await,
        close,
    ) {
        (false, _) => Next::Gone,
        (true, true) => Next::Close,
        (true, false) => Next::KeepAlive,
    }
}

/// The whole of a body known to end soon; `None` if it fails.
async fn whole(body: Body) -> Option<Bytes> {
    let mut data = body.into_data_stream();
    let Some(first) = data.next().await else {
        return Some(Bytes::new());
    };
    let first = first.ok()?;
    let Some(second) = data.next().await else {
        // The usual case: one piece, not copied.
        return Some(first);
    };
    let mut joined = BytesMut::from(&first[..]);
    joined.extend_from_slice(&second.ok()?);
    while let Some(more) = data.next().await {
        joined.extend_from_slice(&more.ok()?);
    }
    Some(joined.freeze())
}

/// How an answer's body is delimited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Length {
    /// No body (204, 304).
    None,
    Known(u64),
    Chunked,
}

/// The answer's head: its status line, the router's headers, `Date`, the
/// framing, and `Connection: close` when this answer is the last.
fn write_head(parts: &Parts, length: Length, close: bool) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::DATE,
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
    head.extend_from_slice(b"date: ");
    DATE.with_borrow_mut(|date| head.extend_from_slice(date.now()));
    head.extend_from_slice(b"\r\n");
    match length {
        Length::None => {}
        Length::Known(length) => {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        Length::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if close {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

thread_local! {
    /// Formatting a date costs more than the rest of a head; it changes
    /// once a second.
    static DATE: RefCell<CachedDate> = const { RefCell::new(CachedDate { second: u64::MAX, text: [0; 29] }) };
}

/// The `Date` of answers written in `second`.
struct CachedDate {
    second: u64,
    text: [u8; 29],
}

impl CachedDate {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if second != self.second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == self.text.len() {
                self.text.copy_from_slice(text.as_bytes());
                self.second = second;
            }
        }
        &self.text
    }
}

/// Writes `body` to `socket` as chunks until it ends, the client goes
/// away, or a write stays blocked for `write_timeout`.
///
/// A future polled by hand, not an async fn: it lives as long as the
/// member's stream, and an async fn kept room for the state of each of its
/// awaits, a write timer's among them (a stream's whole state was 768
/// bytes with it, 304 with this).
struct StreamBody<S = TcpStream> {
    socket: S,
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

/// Writes all of `bytes`, vectored; false when the client is gone or has
/// read nothing for `write_timeout`. The timeout is for each write, not
/// the whole: a slow client that keeps reading gets a large answer whole.
async fn send(
    writer: &mut (impl tokio::io::AsyncWrite + Unpin),
    mut bytes: impl Buf,
    write_timeout: Duration,
) -> bool {
    while bytes.has_remaining() {
        let write =
            std::future::poll_fn(|cx| poll_write_buf(Pin::new(&mut *writer), cx, &mut bytes));
        match tokio::time::timeout(write_timeout, write).await {
            Ok(Ok(written)) if written > 0 => {}
            _ => return false,
        }
    }
    true
}

/// A connection handed to hyper: the bytes already read from it come
/// first.
pub struct Rewind<T> {
    read: Bytes,
    io: T,
}

impl<T> Rewind<T> {
    pub fn new(read: Bytes, io: T) -> Self {
        Self { read, io }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read[..n]);
        this.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

    fn take(bytes: &str) -> Option<Head> {
        take_head(&Bytes::copy_from_slice(bytes.as_bytes()), PEER, 100).ok()
    }

    fn malformed(bytes: &str) -> Option<httparse::Error> {
        match take_head(&Bytes::copy_from_slice(bytes.as_bytes()), PEER, 100) {
            Err(NotHead::Malformed(error)) => Some(error),
            Ok(_) | Err(NotHead::Hyper) => None,
        }
    }

    #[test]
    fn a_head_becomes_the_request_and_what_follows_it_is_not_taken() {
        let text = "POST /rooms/a/join?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nX-Two: a\r\nx-two: b\r\nConnection: keep-alive, Close\r\n\r\n";
        let head = take(&format!("{text}{{}}GET")).expect("a head");
        assert_eq!(head.len, text.len());
        assert_eq!(head.request.method(), Method::POST);
        assert_eq!(head.request.uri().path(), "/rooms/a/join");
        assert_eq!(head.request.uri().query(), Some("x=1"));
        let twos: Vec<_> = head.request.headers().get_all("x-two").iter().collect();
        assert_eq!(twos, ["a", "b"]);
        assert_eq!(head.body_len, 2);
        assert!(head.close);
        assert!(!head.continue_first);
        assert_eq!(
            head.request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
            Some(PEER)
        );
    }

    #[test]
    fn what_this_path_does_not_do_is_left_to_hyper() {
        for head in [
            "GET / HTTP/1.0\r\n\r\n",
            "HEAD / HTTP/1.1\r\n\r\n",
            "CONNECT h:1 HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "\r\n\r\nGET / HTTP/1.1\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            "POST / HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}",
            "POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: something-else\r\nContent-Length: 2\r\n\r\n",
        ] {
            assert!(take(head).is_none(), "{head:?}");
            assert!(malformed(head).is_none(), "{head:?}");
        }
    }

    #[test]
    fn what_no_server_could_read_is_malformed() {
        for head in [
            "not http at all\r\n\r\n",
            "GET / HTTP/1.1\r\nX Space: v\r\n\r\n",
            "GET / HTTP/1.1\r\nx-folded: a\r\n b\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
        ] {
            assert!(malformed(head).is_some(), "{head:?}");
        }
        let many: String = (0..=MAX_HEADERS)
            .map(|at| format!("x-{at}: v\r\n"))
            .collect();
        assert_eq!(
            malformed(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Some(httparse::Error::TooManyHeaders)
        );
    }

    #[test]
    fn a_client_that_expects_100_continue_gets_it_only_for_a_body() {
        let head = take("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n");
        assert!(head.is_some_and(|head| head.continue_first));
        let head = take("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n");
        assert!(head.is_some_and(|head| !head.continue_first));
    }

    fn head_text(response: Response<Body>, length: Length, close: bool) -> String {
        let (parts, _) = response.into_parts();
        String::from_utf8(write_head(&parts, length, close)).expect("a head is text")
    }

    #[test]
    fn an_answer_head_frames_the_body_and_names_the_date() {
        let response = Response::builder()
            .status(StatusCode::ACCEPTED)
            .header("content-type", "application/json")
            .header("content-length", "999")
            .header("connection", "keep-alive")
            .body(Body::empty())
            .expect("a response");
        let text = head_text(response, Length::Known(12), false);
        let date = httpdate::fmt_http_date(SystemTime::now());
        assert!(
            text.starts_with("HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ndate: "),
            "{text}"
        );
        assert!(text.ends_with("\r\ncontent-length: 12\r\n\r\n"), "{text}");
        assert_eq!(text.matches("content-length").count(), 1, "{text}");
        assert!(!text.contains("keep-alive"), "{text}");
        // The date is this second's, or the next one's.
        let said = text
            .split("date: ")
            .nth(1)
            .and_then(|rest| rest.split("\r\n").next());
        let said = said.and_then(|said| httpdate::parse_http_date(said).ok());
        let now = httpdate::parse_http_date(&date).expect("a date");
        assert!(
            said.is_some_and(|said| said >= now && said <= now + Duration::from_secs(1)),
            "{text}"
        );
    }

    #[test]
    fn a_streamed_or_last_answer_says_so() {
        let response = || Response::new(Body::empty());
        let text = head_text(response(), Length::Chunked, true);
        assert!(
            text.ends_with("transfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
            "{text}"
        );
        let text = head_text(response(), Length::None, false);
        assert!(
            !text.contains("content-length") && !text.contains("transfer-encoding"),
            "{text}"
        );
    }

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

    /// A client reading 4 KiB every half second, until the end: all it got.
    async fn read_slowly(mut client: tokio::io::DuplexStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut piece = [0; 4096];
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match client.read(&mut piece).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&piece[..n]),
            }
        }
    }

    /// A slow reader is never stalled for the write timeout, though the
    /// whole answer takes far longer.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_gets_the_whole_answer() {
        let (mut server, client) = tokio::io::duplex(4096);
        let answer = vec![b'x'; 64 * 1024];
        let reader = tokio::spawn(read_slowly(client));
        let started = Instant::now();
        let sent = send(
            &mut server,
            Bytes::from(answer.clone()),
            Duration::from_secs(1),
        )
        .await;
        assert!(sent, "the answer is written");
        assert!(started.elapsed() > Duration::from_secs(5));
        drop(server);
        assert_eq!(reader.await.expect("the reader ends"), answer);
    }

    /// A stream's chunk, written the same way: a client that reads a
    /// large backlog slowly but on and on keeps its stream.
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

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_is_cut_off_after_the_write_timeout() {
        let (mut server, _client) = tokio::io::duplex(4096);
        let sent = send(
            &mut server,
            Bytes::from(vec![b'x'; 64 * 1024]),
            Duration::from_secs(1),
        )
        .await;
        assert!(!sent);
    }

    #[tokio::test]
    async fn hyper_reads_what_was_read_before_it_then_the_connection() {
        use tokio::io::AsyncReadExt;
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.expect("a write");
        drop(client);
        let mut rewound = Rewind::new(Bytes::from_static(b"hello"), server);
        let mut all = String::new();
        rewound.read_to_string(&mut all).await.expect("a read");
        assert_eq!(all, "hello world");
    }
}
