//! HTTP/2 connections (RFC 9113) over TLS, served by the server itself.
//!
//! Browsers reach a public server over HTTPS, and over HTTPS they speak
//! HTTP/2: most members' inboxes are streams on such connections. The `h2`
//! crate under hyper keeps about 30 KiB of fixed buffers for every
//! connection, none of them a setting, several times what the rest of an
//! idle member costs. So the simple case is served here, as `http1` serves
//! HTTP/1.1: frames read from and written to the socket, headers decoded
//! (`hpack`) and encoded as plain literals, each request through the
//! same router, and nothing held while a connection waits but what its
//! streams need: no read buffer, no write buffer, one decoder table.
//!
//! What it keeps of hyper's limits: at most 200 streams at a time, a head
//! of at most `--max-header-bytes` (answered 431, as over HTTP/1.1), a body
//! read up to the payload limit (the router answers 413 past it), a write
//! blocked for the write timeout closes the connection, and a connection
//! with no stream for the header timeout is closed. A client that breaks
//! the protocol gets GOAWAY; a stream that does, RST_STREAM.

mod frame;
mod headers;
mod hpack;
mod stream;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::Method;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_write_buf;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::ServiceExt;
use tracing::debug;

use self::frame::{Code, Head, flag, kind, setting};
use self::headers::Refused;
use self::stream::{Incoming, Out, Stream, Turn, Wakes};
use super::http1::{Socket, poll_read_some};
use super::{App, ConnectionLimits, Unreadable};

/// Streams a client may have open at a time: hyper's default.
const MAX_STREAMS: usize = 200;

/// The window this server gives the connection and each stream: a body
/// up to the payload limit comes without waiting for a WINDOW_UPDATE.
const WINDOW: i64 = 1 << 20;

/// Past this many bytes waiting to be written, the connection stops
/// reading and stops asking its streams for more, until the client reads.
const HIGH_WATER: usize = 64 * 1024;

/// Room for one poll's frames, taken at once rather than grown a few bytes
/// at a time.
const WRITE_ROOM: usize = 4096;

/// Turns of reading, answering and writing one poll of the connection
/// takes before it yields to the other tasks.
const TURNS_PER_POLL: usize = 16;

/// Streams refused as malformed before the client is taken for an
/// attacker and its connection closed.
const MAX_REFUSALS: u32 = 100;

/// Whether `bytes` start as HTTP/2's preface does: its request line, which
/// no HTTP/1.1 server could read.
pub fn is_preface(bytes: &[u8]) -> bool {
    const LINE: usize = b"PRI * HTTP/2.0\r\n".len();
    bytes.len() >= LINE && bytes[..LINE] == frame::PREFACE[..LINE]
}

/// Serves HTTP/2 on `socket` until it closes; `read` is what was read
/// from it before, the preface or part of it (h2c with prior knowledge).
pub async fn serve<S: Socket>(
    socket: S,
    read: Bytes,
    peer: SocketAddr,
    app: impl App,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
) {
    let mut connection = Connection::new(socket, read, peer, app, limits, shutdown);
    if let Err(code) = connection.frames() {
        connection.fail(code);
    }
    let ended = std::future::poll_fn(|cx| connection.poll(cx)).await;
    if let Ended::Close = ended {
        // TLS's close_notify waits no longer than a write may.
        let _ = tokio::time::timeout(limits.write_timeout, connection.socket.shutdown()).await;
    }
}

enum Ended {
    /// The client went away or stopped reading.
    Gone,
    /// Everything is written: the connection is to be closed.
    Close,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// GOAWAY said: the streams under way finish, no new one starts.
    GoingAway,
    /// What is written goes out, then the connection closes.
    Closing,
}

/// A header block that CONTINUATION frames are still adding to.
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: BytesMut,
}

struct Connection<'a, S, A> {
    socket: S,
    peer: SocketAddr,
    app: A,
    limits: &'a ConnectionLimits,
    read: BytesMut,
    out: Out,
    unflushed: bool,
    preface_read: bool,
    settings_read: bool,
    decoder: hpack::Decoder,
    streams: Vec<Stream>,
    wakes: Arc<Wakes>,
    /// Streams to turn again: woken, given window, or given a request.
    again: Vec<u32>,
    /// The streams of the turn under way.
    turning: Vec<u32>,
    /// The highest stream id the client has opened.
    last_stream: u32,
    /// What the client may still send on the connection.
    recv_window: i64,
    /// The window this server gives the connection and each stream.
    window: i64,
    /// The client's `SETTINGS_INITIAL_WINDOW_SIZE`.
    peer_window: i64,
    block: Option<Block>,
    refusals: u32,
    phase: Phase,
    peer_going_away: bool,
    /// Runs while the connection has no stream.
    idle: Pin<Box<Sleep>>,
    /// Runs while a write waits for the client to read.
    stalled: Option<Pin<Box<Sleep>>>,
    /// Runs while a request's body is coming, until the header timeout
    /// after the oldest such request's head.
    slow: Option<Pin<Box<Sleep>>>,
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<'a, S: Socket, A: App> Connection<'a, S, A> {
    fn new(
        socket: S,
        read: Bytes,
        peer: SocketAddr,
        app: A,
        limits: &'a ConnectionLimits,
        shutdown: &CancellationToken,
    ) -> Self {
        let mut out = Out {
            bytes: BytesMut::new(),
            window: frame::DEFAULT_WINDOW,
            max_frame: frame::DEFAULT_MAX_FRAME,
        };
        let window = Self::window(limits);
        let max_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
        frame::settings(
            &mut out.bytes,
            &[
                (setting::MAX_CONCURRENT_STREAMS, MAX_STREAMS as u32),
                (setting::INITIAL_WINDOW_SIZE, window as u32),
                (setting::MAX_HEADER_LIST_SIZE, max_list),
            ],
        );
        frame::window_update(&mut out.bytes, 0, (window - frame::DEFAULT_WINDOW) as u32);
        Self {
            socket,
            peer,
            app,
            limits,
            read: BytesMut::from(read),
            out,
            unflushed: false,
            preface_read: false,
            settings_read: false,
            decoder: hpack::Decoder::default(),
            streams: Vec::new(),
            wakes: Arc::default(),
            again: Vec::new(),
            turning: Vec::new(),
            last_stream: 0,
            recv_window: window,
            window,
            peer_window: frame::DEFAULT_WINDOW,
            block: None,
            refusals: 0,
            phase: Phase::Open,
            peer_going_away: false,
            idle: Box::pin(tokio::time::sleep(limits.header_timeout)),
            stalled: None,
            slow: None,
            stopping: Box::pin(shutdown.clone().cancelled_owned()),
        }
    }

    /// The window of the connection and of each stream: room for a whole
    /// body at the payload limit and a byte more, at least hyper's.
    fn window(limits: &ConnectionLimits) -> i64 {
        let body = i64::try_from(limits.max_body).unwrap_or(frame::MAX_WINDOW);
        body.saturating_add(1).clamp(WINDOW, frame::MAX_WINDOW)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        // Given back when all is written, so that a connection that waits
        // holds no buffer.
        self.out.bytes.reserve(WRITE_ROOM);
        let polled = self.poll_turns(cx);
        if self.out.bytes.is_empty() {
            self.out.bytes = BytesMut::new();
        }
        polled
    }

    fn poll_turns(&mut self, cx: &mut Context<'_>) -> Poll<Ended> {
        self.wakes.connection.register(cx.waker());
        for _ in 0..TURNS_PER_POLL {
            self.turn_streams();
            match self.poll_write(cx) {
                Poll::Ready(Err(())) => return Poll::Ready(Ended::Gone),
                Poll::Ready(Ok(())) if self.phase == Phase::Closing => {
                    return Poll::Ready(Ended::Close);
                }
                _ => {}
            }
            let mut progress = false;
            if self.phase != Phase::Closing && self.out.bytes.len() < HIGH_WATER {
                match poll_read_some(&mut self.socket, cx, &mut self.read) {
                    Poll::Ready(false) => return Poll::Ready(Ended::Gone),
                    Poll::Ready(true) => {
                        progress = true;
                        if let Err(code) = self.frames() {
                            self.fail(code);
                        }
                    }
                    Poll::Pending => {}
                }
            }
            if self.poll_slow(cx) {
                progress = true;
            }
            if self.phase == Phase::Open && self.stopping.as_mut().poll(cx).is_ready() {
                self.go_away(Code::NoError);
                progress = true;
            }
            if self.streams.is_empty() && self.block.is_none() && self.phase != Phase::Closing {
                let idle = self.phase == Phase::Open
                    && !self.peer_going_away
                    && self.idle.as_mut().poll(cx).is_pending();
                if !idle {
                    if self.phase == Phase::Open {
                        debug!(peer = %self.peer, "no stream for the header timeout; closing");
                        self.go_away(Code::NoError);
                    }
                    self.phase = Phase::Closing;
                    progress = true;
                }
            }
            let more =
                self.out.bytes.len() < HIGH_WATER && (!self.again.is_empty() || self.wakes.any());
            if !progress && !more {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Answers 408 for every request whose body has not come within the
    /// header timeout of its head, as HTTP/1.1 does; true if there was one.
    /// The streams are looked at only when the timer, armed for the oldest
    /// such request, fires.
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timer) = &mut self.slow else {
            return false;
        };
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        let timeout = self.limits.header_timeout;
        let now = Instant::now();
        let mut answered = false;
        let mut oldest = None::<Instant>;
        for stream in &mut self.streams {
            let Some(since) = stream.incoming.as_ref().map(|incoming| incoming.since) else {
                continue;
            };
            if since + timeout > now {
                oldest = Some(oldest.map_or(since, |oldest| oldest.min(since)));
                continue;
            }
            stream.incoming = None;
            let refusal = (self.limits.unreadable)(Unreadable::TooSlow);
            stream.call(Box::pin(std::future::ready(Ok(refusal))));
            self.again.push(stream.id);
            answered = true;
        }
        match oldest {
            Some(oldest) => timer.as_mut().reset(oldest + timeout),
            None => self.slow = None,
        }
        answered
    }

    /// Turns every stream that was woken or given something to do.
    fn turn_streams(&mut self) {
        // Swapped with a list kept for it, so that no turn allocates one.
        std::mem::swap(&mut self.again, &mut self.turning);
        self.wakes.take(&mut self.turning);
        for next in 0..self.turning.len() {
            let id = self.turning[next];
            let Some(at) = self.index(id) else { continue };
            match self.streams[at].turn(&mut self.out, HIGH_WATER) {
                Turn::Waiting => {}
                Turn::Again => self.again.push(id),
                Turn::Done => self.finish(at),
                Turn::Failed => self.reset(at, Code::Internal),
            }
        }
        self.turning.clear();
    }

    fn index(&self, id: u32) -> Option<usize> {
        self.streams.iter().position(|stream| stream.id == id)
    }

    /// The answer ended stream `at`: a request body still coming is not
    /// wanted any more (§8.1).
    fn finish(&mut self, at: usize) {
        if self.streams[at].open {
            frame::rst_stream(&mut self.out.bytes, self.streams[at].id, Code::NoError);
        }
        self.remove(at);
    }

    fn reset(&mut self, at: usize, code: Code) {
        frame::rst_stream(&mut self.out.bytes, self.streams[at].id, code);
        self.remove(at);
    }

    fn remove(&mut self, at: usize) {
        // Drops the answer or body under way: an inbox stream's reader
        // goes with it.
        self.streams.swap_remove(at);
        if self.streams.is_empty() {
            self.idle
                .as_mut()
                .reset(Instant::now() + self.limits.header_timeout);
        }
    }

    /// Says GOAWAY: with no error, the streams under way finish.
    fn go_away(&mut self, code: Code) {
        frame::goaway(&mut self.out.bytes, self.last_stream, code);
        self.phase = Phase::GoingAway;
    }

    /// The client broke the protocol: GOAWAY, and nothing more.
    fn fail(&mut self, code: Code) {
        debug!(peer = %self.peer, ?code, "HTTP/2 connection error");
        if self.phase != Phase::Closing {
            self.go_away(code);
        }
        self.streams.clear();
        self.block = None;
        self.phase = Phase::Closing;
    }

    /// Writes what waits, and flushes it; `Err` when the client is gone
    /// or has not read for the write timeout.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        while !self.out.bytes.is_empty() {
            match poll_write_buf(Pin::new(&mut self.socket), cx, &mut self.out.bytes) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Err(())),
                Poll::Ready(Ok(_)) => {
                    self.stalled = None;
                    self.unflushed = true;
                }
                Poll::Pending => return self.stall(cx),
            }
        }
        if self.unflushed {
            match Pin::new(&mut self.socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    self.stalled = None;
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
                Poll::Pending => return self.stall(cx),
            }
        }
        Poll::Ready(Ok(()))
    }

    fn stall(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        let timeout = self.limits.write_timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            debug!(peer = %self.peer, "the client stopped reading; closing");
            return Poll::Ready(Err(()));
        }
        Poll::Pending
    }

    /// Handles every whole frame read; `Err` is a connection error.
    fn frames(&mut self) -> Result<(), Code> {
        if !self.preface_read {
            let have = self.read.len().min(frame::PREFACE.len());
            if self.read[..have] != frame::PREFACE[..have] {
                return Err(Code::Protocol);
            }
            if have < frame::PREFACE.len() {
                return Ok(());
            }
            self.read.advance(frame::PREFACE.len());
            self.preface_read = true;
        }
        while let Some(head) = Head::parse(&self.read) {
            if head.len > frame::DEFAULT_MAX_FRAME {
                return Err(Code::FrameSize);
            }
            let whole = frame::HEADER_LEN + head.len;
            if self.read.len() < whole {
                self.read.reserve(whole - self.read.len());
                break;
            }
            let mut payload = self.read.split_to(whole).freeze();
            payload.advance(frame::HEADER_LEN);
            self.frame(head, payload)?;
            if self.phase == Phase::Closing {
                break;
            }
        }
        if self.read.is_empty() {
            self.read = BytesMut::new();
        }
        Ok(())
    }

    fn frame(&mut self, head: Head, payload: Bytes) -> Result<(), Code> {
        if !self.settings_read && (head.kind != kind::SETTINGS || head.has(flag::ACK)) {
            // §3.4: the preface ends with the client's SETTINGS.
            return Err(Code::Protocol);
        }
        if let Some(block) = &self.block {
            // §6.10: nothing comes between a header block's frames.
            if head.kind != kind::CONTINUATION || head.stream != block.stream {
                return Err(Code::Protocol);
            }
        }
        match head.kind {
            kind::DATA => self.data(head, &payload),
            kind::HEADERS => self.headers(head, payload),
            kind::CONTINUATION => self.continuation(head, &payload),
            kind::PRIORITY => {
                if head.stream == 0 {
                    return Err(Code::Protocol);
                }
                if head.len != 5 {
                    self.stream_error(head.stream, Code::FrameSize);
                }
                Ok(())
            }
            kind::RST_STREAM => {
                if head.stream == 0 || head.stream > self.last_stream {
                    return Err(Code::Protocol);
                }
                if head.len != 4 {
                    return Err(Code::FrameSize);
                }
                if let Some(at) = self.index(head.stream) {
                    self.remove(at);
                }
                Ok(())
            }
            kind::SETTINGS => self.settings(head, &payload),
            kind::PING => {
                if head.stream != 0 {
                    return Err(Code::Protocol);
                }
                if head.len != 8 {
                    return Err(Code::FrameSize);
                }
                if !head.has(flag::ACK) {
                    frame::ping_ack(&mut self.out.bytes, &payload);
                }
                Ok(())
            }
            kind::GOAWAY => {
                if head.stream != 0 {
                    return Err(Code::Protocol);
                }
                self.peer_going_away = true;
                Ok(())
            }
            kind::WINDOW_UPDATE => self.window_update(head, &payload),
            // A server's push has no place in a client's frames.
            kind::PUSH_PROMISE => Err(Code::Protocol),
            // §5.5: frames of unknown types are ignored.
            _ => Ok(()),
        }
    }

    fn settings(&mut self, head: Head, payload: &[u8]) -> Result<(), Code> {
        if head.stream != 0 {
            return Err(Code::Protocol);
        }
        if head.has(flag::ACK) {
            return if head.len == 0 {
                Ok(())
            } else {
                Err(Code::FrameSize)
            };
        }
        if !head.len.is_multiple_of(6) {
            return Err(Code::FrameSize);
        }
        for entry in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([entry[0], entry[1]]);
            let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
            match id {
                setting::ENABLE_PUSH if value > 1 => return Err(Code::Protocol),
                setting::INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return Err(Code::FlowControl);
                    }
                    let delta = value - self.peer_window;
                    self.peer_window = value;
                    for stream in &mut self.streams {
                        stream.window += delta;
                        if stream.window > frame::MAX_WINDOW {
                            return Err(Code::FlowControl);
                        }
                        if delta > 0 && stream.parked() {
                            self.again.push(stream.id);
                        }
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME..1 << 24).contains(&(value as usize)) {
                        return Err(Code::Protocol);
                    }
                    self.out.max_frame = value as usize;
                }
                // The table size concerns an encoder that indexes nothing;
                // the rest concern what a server does not do.
                _ => {}
            }
        }
        self.settings_read = true;
        frame::settings_ack(&mut self.out.bytes);
        Ok(())
    }

    fn window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), Code> {
        let Ok(increment) = <[u8; 4]>::try_from(payload) else {
            return Err(Code::FrameSize);
        };
        let increment = i64::from(u32::from_be_bytes(increment) & 0x7fff_ffff);
        if head.stream == 0 {
            if increment == 0 {
                return Err(Code::Protocol);
            }
            self.out.window += increment;
            if self.out.window > frame::MAX_WINDOW {
                return Err(Code::FlowControl);
            }
            let parked = self.streams.iter().filter(|stream| stream.parked());
            self.again.extend(parked.map(|stream| stream.id));
            return Ok(());
        }
        if head.stream > self.last_stream {
            return Err(Code::Protocol);
        }
        let Some(at) = self.index(head.stream) else {
            return Ok(());
        };
        if increment == 0 {
            self.reset(at, Code::Protocol);
            return Ok(());
        }
        let stream = &mut self.streams[at];
        stream.window += increment;
        if stream.window > frame::MAX_WINDOW {
            self.reset(at, Code::FlowControl);
        } else if stream.parked() {
            self.again.push(head.stream);
        }
        Ok(())
    }

    fn headers(&mut self, head: Head, payload: Bytes) -> Result<(), Code> {
        if head.stream == 0 || head.stream.is_multiple_of(2) {
            return Err(Code::Protocol);
        }
        let (mut start, end) = frame::unpadded(&head, &payload).ok_or(Code::Protocol)?;
        if head.has(flag::PRIORITY) {
            start += 5;
            if start > end {
                return Err(Code::Protocol);
            }
        }
        let fragment = &payload[start..end];
        if head.has(flag::END_HEADERS) {
            return self.head(head.stream, head.has(flag::END_STREAM), fragment);
        }
        self.check_block_size(fragment.len())?;
        self.block = Some(Block {
            stream: head.stream,
            end_stream: head.has(flag::END_STREAM),
            bytes: BytesMut::from(fragment),
        });
        Ok(())
    }

    fn continuation(&mut self, head: Head, payload: &[u8]) -> Result<(), Code> {
        let Some(block) = &mut self.block else {
            return Err(Code::Protocol);
        };
        block.bytes.extend_from_slice(payload);
        let size = block.bytes.len();
        self.check_block_size(size)?;
        if head.has(flag::END_HEADERS) {
            let Some(block) = self.block.take() else {
                return Err(Code::Protocol);
            };
            return self.head(block.stream, block.end_stream, &block.bytes);
        }
        Ok(())
    }

    /// A header block is held whole until it ends, so its size is bounded:
    /// twice the head limit leaves room for any encoding of a head the
    /// limit lets through.
    fn check_block_size(&self, size: usize) -> Result<(), Code> {
        let limit = self
            .limits
            .max_header_bytes
            .saturating_mul(2)
            .max(frame::DEFAULT_MAX_FRAME);
        if size > limit {
            return Err(Code::EnhanceYourCalm);
        }
        Ok(())
    }

    /// A whole header block on stream `id`: a new request, or trailers.
    fn head(&mut self, id: u32, end_stream: bool, block: &[u8]) -> Result<(), Code> {
        let decoded = headers::request(
            &mut self.decoder,
            block,
            self.limits.max_header_bytes,
            self.peer,
        )
        .map_err(|_| Code::Compression)?;
        if id <= self.last_stream {
            // Trailers end a body; on a stream already closed they are
            // what was sent before the client saw it close.
            if let Some(at) = self.index(id) {
                if !self.streams[at].open {
                    self.reset(at, Code::StreamClosed);
                } else if !end_stream {
                    self.reset(at, Code::Protocol);
                } else {
                    self.streams[at].open = false;
                    self.body_ended(at);
                }
            }
            return Ok(());
        }
        self.last_stream = id;
        if self.phase != Phase::Open || self.streams.len() >= MAX_STREAMS {
            frame::rst_stream(&mut self.out.bytes, id, Code::RefusedStream);
            return Ok(());
        }
        let mut stream = Stream::new(id, self.peer_window, self.window, !end_stream, &self.wakes);
        stream.head_only = decoded
            .as_ref()
            .is_ok_and(|head| head.request.method() == Method::HEAD);
        match decoded {
            Err(Refused::Malformed(why)) => {
                debug!(peer = %self.peer, why, "a malformed HTTP/2 request");
                frame::rst_stream(&mut self.out.bytes, id, Code::Protocol);
                self.refusals += 1;
                if self.refusals > MAX_REFUSALS {
                    return Err(Code::EnhanceYourCalm);
                }
                return Ok(());
            }
            Err(Refused::TooLarge) => {
                let limit = self.limits.max_header_bytes;
                let refusal = (self.limits.unreadable)(Unreadable::HeadTooLarge { limit });
                stream.call(Box::pin(std::future::ready(Ok(refusal))));
            }
            Ok(head) if end_stream => {
                if head.length.is_some_and(|length| length != 0) {
                    frame::rst_stream(&mut self.out.bytes, id, Code::Protocol);
                    return Ok(());
                }
                stream.call(self.answer(head.request.map(|()| Body::empty())));
            }
            Ok(head) => {
                let since = Instant::now();
                stream.incoming = Some(Box::new(Incoming {
                    head: head.request,
                    length: head.length,
                    data: BytesMut::new(),
                    received: 0,
                    since,
                }));
                if self.slow.is_none() {
                    let due = since + self.limits.header_timeout;
                    self.slow = Some(Box::pin(tokio::time::sleep_until(due)));
                }
            }
        }
        self.streams.push(stream);
        self.again.push(id);
        Ok(())
    }

    fn answer(&self, request: axum::http::Request<Body>) -> stream::Answering {
        Box::pin(self.app.clone().oneshot(request))
    }

    fn data(&mut self, head: Head, payload: &[u8]) -> Result<(), Code> {
        if head.stream == 0 {
            return Err(Code::Protocol);
        }
        // Flow control counts the whole payload, padding too (§6.9).
        let len = head.len as i64;
        self.recv_window -= len;
        if self.recv_window < 0 {
            return Err(Code::FlowControl);
        }
        if self.recv_window <= self.window / 2 {
            let increment = (self.window - self.recv_window) as u32;
            frame::window_update(&mut self.out.bytes, 0, increment);
            self.recv_window = self.window;
        }
        let (start, end) = frame::unpadded(&head, payload).ok_or(Code::Protocol)?;
        let Some(at) = self.index(head.stream) else {
            if head.stream > self.last_stream {
                return Err(Code::Protocol);
            }
            // A stream this server has closed: the data was on its way.
            return Ok(());
        };
        let max_body = self.limits.max_body;
        let stream = &mut self.streams[at];
        if !stream.open {
            self.reset(at, Code::StreamClosed);
            return Ok(());
        }
        stream.recv_window -= len;
        if stream.recv_window < 0 {
            self.reset(at, Code::FlowControl);
            return Ok(());
        }
        if let Some(incoming) = &mut stream.incoming {
            let data = &payload[start..end];
            incoming.received += data.len() as u64;
            let room = (max_body + 1).saturating_sub(incoming.data.len());
            incoming
                .data
                .extend_from_slice(&data[..data.len().min(room)]);
            if incoming.data.len() > max_body {
                // Enough for the router to refuse; the rest is not read.
                self.call(at);
            }
        }
        if head.has(flag::END_STREAM) {
            self.streams[at].open = false;
            self.body_ended(at);
        }
        Ok(())
    }

    /// The client ended stream `at`'s body.
    fn body_ended(&mut self, at: usize) {
        let Some(incoming) = &self.streams[at].incoming else {
            return;
        };
        if incoming
            .length
            .is_some_and(|length| length != incoming.received)
        {
            // §8.1.1: the body is not what `content-length` said.
            self.reset(at, Code::Protocol);
            return;
        }
        self.call(at);
    }

    /// Hands stream `at`'s request, with what was read of its body, to the
    /// application.
    fn call(&mut self, at: usize) {
        let Some(incoming) = self.streams[at].incoming.take() else {
            return;
        };
        let Incoming { head, data, .. } = *incoming;
        let answering = self.answer(head.map(|()| Body::from(data.freeze())));
        let stream = &mut self.streams[at];
        stream.call(answering);
        self.again.push(stream.id);
    }

    /// A stream error on `id` (§5.4.2).
    fn stream_error(&mut self, id: u32, code: Code) {
        match self.index(id) {
            Some(at) => self.reset(at, code),
            None => frame::rst_stream(&mut self.out.bytes, id, code),
        }
    }
}
