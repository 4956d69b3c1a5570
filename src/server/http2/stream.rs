//! One HTTP/2 stream: its request while it comes in, the application's
//! answer while it is made, and the answer's body while it goes out within
//! the client's flow-control windows.
//!
//! The connection polls each stream's future or body itself, with a waker
//! of the stream's own that queues the stream's id for the connection's
//! next turn: no task and no channel per stream, so an idle inbox stream
//! holds its body, its window and this waker, and nothing else.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use axum::body::{Body, HttpBody};
use axum::http::{Request, Response, StatusCode};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::task::AtomicWaker;

use super::frame::{self, flag, kind};
use super::headers;

/// The application's answer being made.
pub type Answering = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// Body frames one stream may write in one turn before the others get theirs.
const FRAMES_PER_TURN: usize = 16;

/// The connection's sending side: the bytes to write, and what the client
/// lets it send.
pub struct Out {
    pub bytes: BytesMut,
    /// The connection's flow-control window (§6.9).
    pub window: i64,
    /// The client's `SETTINGS_MAX_FRAME_SIZE`.
    pub max_frame: usize,
}

/// The streams' wake-ups, for the connection to take on its next turn.
#[derive(Default)]
pub struct Wakes {
    ready: Mutex<Vec<u32>>,
    pub connection: AtomicWaker,
}

impl Wakes {
    /// The ids woken since the last call, appended to `into`.
    pub fn take(&self, into: &mut Vec<u32>) {
        let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
        into.append(&mut ready);
    }

    pub fn any(&self) -> bool {
        !self
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

struct StreamWake {
    id: u32,
    queued: AtomicBool,
    wakes: Arc<Wakes>,
}

impl Wake for StreamWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.wakes
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.id);
            self.wakes.connection.wake();
        }
    }
}

/// A request whose body is still coming.
pub struct Incoming {
    pub head: Request<()>,
    /// What `content-length` said.
    pub length: Option<u64>,
    /// The body, up to one byte past the payload limit: enough for the
    /// router to refuse it.
    pub data: BytesMut,
    /// All the body's bytes so far, kept or not.
    pub received: u64,
    /// When the head came: the body has the header timeout to follow it.
    pub since: tokio::time::Instant,
}

enum Task {
    /// The request's body is coming.
    Receiving,
    Calling(Answering),
    Sending {
        body: Body,
        /// Data that waits for window, and whether it ends the stream.
        parked: Option<(Bytes, bool)>,
    },
}

pub struct Stream {
    pub id: u32,
    /// What the client lets this stream send.
    pub window: i64,
    /// What this stream may still receive.
    pub recv_window: i64,
    /// The client has not ended its side.
    pub open: bool,
    /// A `HEAD`: the answer's head says what the body would be, and
    /// carries none.
    pub head_only: bool,
    pub incoming: Option<Box<Incoming>>,
    task: Task,
    wake: Arc<StreamWake>,
    waker: Waker,
}

/// Where a stream stands after a turn.
pub enum Turn {
    /// Waiting for its body, its window or its request.
    Waiting,
    /// More to do, after the other streams' turns.
    Again,
    /// The answer has ended the stream.
    Done,
    /// The answer failed: the stream is reset.
    Failed,
}

impl Stream {
    pub fn new(id: u32, window: i64, recv_window: i64, open: bool, wakes: &Arc<Wakes>) -> Self {
        let wake = Arc::new(StreamWake {
            id,
            queued: AtomicBool::new(false),
            wakes: Arc::clone(wakes),
        });
        let waker = Waker::from(Arc::clone(&wake));
        Self {
            id,
            window,
            recv_window,
            open,
            head_only: false,
            incoming: None,
            task: Task::Receiving,
            wake,
            waker,
        }
    }

    pub fn call(&mut self, answering: Answering) {
        self.task = Task::Calling(answering);
    }

    /// Whether data waits for window.
    pub fn parked(&self) -> bool {
        matches!(
            self.task,
            Task::Sending {
                parked: Some(_),
                ..
            }
        )
    }

    /// Makes the stream's answer go as far as it can.
    pub fn turn(&mut self, out: &mut Out, high_water: usize) -> Turn {
        self.wake.queued.store(false, Ordering::Release);
        let mut cx = Context::from_waker(&self.waker);
        for _ in 0..FRAMES_PER_TURN {
            if out.bytes.len() >= high_water {
                return Turn::Again;
            }
            match &mut self.task {
                Task::Receiving => return Turn::Waiting,
                Task::Calling(answering) => {
                    let response = match answering.as_mut().poll(&mut cx) {
                        Poll::Ready(Ok(response)) => response,
                        Poll::Ready(Err(never)) => match never {},
                        Poll::Pending => return Turn::Waiting,
                    };
                    let (parts, body) = response.into_parts();
                    let bodiless = parts.status == StatusCode::NO_CONTENT
                        || parts.status == StatusCode::NOT_MODIFIED;
                    let length = if bodiless {
                        None
                    } else {
                        body.size_hint().exact()
                    };
                    let end = bodiless || body.is_end_stream();
                    answer_head(out, self.id, end, |block| {
                        headers::answer(block, parts.status, &parts.headers, length);
                    });
                    if end {
                        return Turn::Done;
                    }
                    self.task = Task::Sending { body, parked: None };
                }
                Task::Sending { body, parked } => {
                    if let Some((data, end)) = parked.take() {
                        match send(out, self.id, &mut self.window, data, end) {
                            Some(rest) => {
                                *parked = Some((rest, end));
                                return Turn::Waiting;
                            }
                            None if end => return Turn::Done,
                            None => {}
                        }
                    }
                    match Pin::new(&mut *body).poll_frame(&mut cx) {
                        Poll::Pending => return Turn::Waiting,
                        Poll::Ready(None) => {
                            frame::data(&mut out.bytes, self.id, &[], true);
                            return Turn::Done;
                        }
                        Poll::Ready(Some(Err(_))) => return Turn::Failed,
                        Poll::Ready(Some(Ok(frame))) => {
                            // Trailers: nothing here sends them.
                            let Ok(data) = frame.into_data() else {
                                continue;
                            };
                            // The last frame ends the stream itself, without
                            // an empty one after it.
                            let end = body.is_end_stream();
                            if data.is_empty() && !end {
                                continue;
                            }
                            if let Some(rest) = send(out, self.id, &mut self.window, data, end) {
                                *parked = Some((rest, end));
                                return Turn::Waiting;
                            }
                            if end {
                                return Turn::Done;
                            }
                        }
                    }
                }
            }
        }
        Turn::Again
    }
}

/// Writes `data` as DATA frames as far as the windows let it; what they
/// do not is handed back.
fn send(out: &mut Out, id: u32, window: &mut i64, mut data: Bytes, end: bool) -> Option<Bytes> {
    if data.is_empty() {
        frame::data(&mut out.bytes, id, &[], end);
        return None;
    }
    while !data.is_empty() {
        let room = out.window.min(*window).min(out.max_frame as i64);
        if room <= 0 {
            return Some(data);
        }
        let part = data.split_to(data.len().min(room as usize));
        frame::data(&mut out.bytes, id, &part, end && data.is_empty());
        out.window -= part.len() as i64;
        *window -= part.len() as i64;
    }
    None
}

/// Writes a HEADERS frame whose block `block` writes, and CONTINUATIONs
/// when the block is larger than the client's frames.
fn answer_head(out: &mut Out, id: u32, end: bool, block: impl FnOnce(&mut BytesMut)) {
    let start = out.bytes.len();
    out.bytes.put_bytes(0, frame::HEADER_LEN);
    block(&mut out.bytes);
    let len = out.bytes.len() - start - frame::HEADER_LEN;
    let end_stream = if end { flag::END_STREAM } else { 0 };
    if len <= out.max_frame {
        let head = frame::header(len, kind::HEADERS, flag::END_HEADERS | end_stream, id);
        out.bytes[start..start + frame::HEADER_LEN].copy_from_slice(&head);
        return;
    }
    let block = out.bytes.split_off(start + frame::HEADER_LEN).freeze();
    out.bytes.truncate(start);
    let mut parts = block.chunks(out.max_frame).peekable();
    let mut first = true;
    while let Some(part) = parts.next() {
        let last = if parts.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        let (frame_kind, flags) = if first {
            (kind::HEADERS, last | end_stream)
        } else {
            (kind::CONTINUATION, last)
        };
        first = false;
        frame::head(&mut out.bytes, part.len(), frame_kind, flags, id);
        out.bytes.put_slice(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frame::Head;

    fn out(window: i64) -> Out {
        Out {
            bytes: BytesMut::new(),
            window,
            max_frame: 10,
        }
    }

    #[test]
    fn data_goes_as_far_as_the_windows_let_it() {
        let mut out = out(25);
        let mut window = 100;
        let rest = send(&mut out, 1, &mut window, Bytes::from(vec![b'x'; 30]), true);
        assert_eq!(rest.map(|rest| rest.len()), Some(5));
        assert_eq!((out.window, window), (0, 75));
        // Three frames of at most the client's frame size, none ending the stream.
        let mut at = 0;
        let mut sizes = Vec::new();
        while let Some(head) = Head::parse(&out.bytes[at..]) {
            assert_eq!(head.flags & flag::END_STREAM, 0);
            sizes.push(head.len);
            at += frame::HEADER_LEN + head.len;
        }
        assert_eq!(sizes, [10, 10, 5]);
    }

    #[test]
    fn a_large_head_continues() {
        let mut out = out(100);
        answer_head(&mut out, 3, true, |block| block.put_slice(&[7; 25]));
        let first = Head::parse(&out.bytes).expect("a frame");
        assert_eq!((first.kind, first.len), (kind::HEADERS, 10));
        assert_eq!(first.flags, flag::END_STREAM);
        let second = Head::parse(&out.bytes[19..]).expect("a frame");
        assert_eq!(
            (second.kind, second.len, second.flags),
            (kind::CONTINUATION, 10, 0)
        );
        let third = Head::parse(&out.bytes[38..]).expect("a frame");
        assert_eq!(
            (third.kind, third.len, third.flags),
            (kind::CONTINUATION, 5, flag::END_HEADERS)
        );
        assert_eq!(out.bytes.len(), 3 * 9 + 25);
    }
}
