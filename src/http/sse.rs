//! The `text/event-stream` wire format: frames for inbox events, `ready`,
//! `gap` and keep-alive comments, and the body streams of one open inbox
//! and of several inboxes shared on one connection.
//!
//! Every `data:` line is JSON that serde_json wrote, or a signal's data
//! (`EventBody::signal`): our own text around a payload that
//! `single_line_json` flattened. It never holds a line break, so no payload
//! can break the framing. Kinds are our own constants, ids are integers.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::domain::inbox::{Batch, Item};
use crate::hub::Subscription;
use crate::model::{GapData, ReadyData};
use uuid::Uuid;

/// Sent when a stream has been idle for `--keep-alive`.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// The `ready` event that opens every stream; no `id:`, not in the inbox.
pub fn ready_frame(ready: &ReadyData) -> Vec<u8> {
    let mut frame = Vec::with_capacity(96);
    frame.extend_from_slice(b"event: ready\ndata: ");
    serde_json::to_writer(&mut frame, ready).expect("ready data serializes");
    frame.extend_from_slice(b"\n\n");
    frame
}

/// Appends one batch: gaps (no `id:`) and events, in inbox order.
pub fn write_batch(frame: &mut Vec<u8>, batch: &Batch) {
    write_items(frame, batch, None);
}

/// Appends one batch of `member`'s inbox on a shared stream, where every
/// frame says whose inbox it is and where in it: `id: <member>/<place>`,
/// the place being the event's id, a gap's `to`, or `ready`'s resume point.
pub fn write_shared_batch(frame: &mut Vec<u8>, member: &Uuid, batch: &Batch) {
    write_items(frame, batch, Some(member));
}

/// `ready` for `member`'s inbox on a shared stream, with its `id:`.
pub fn write_shared_ready(frame: &mut Vec<u8>, ready: &ReadyData) {
    write_shared_id(frame, &ready.member_id, ready.last_event_id);
    frame.extend_from_slice(&ready_frame(ready));
}

fn write_shared_id(frame: &mut Vec<u8>, member: &Uuid, place: u64) {
    frame.extend_from_slice(b"id: ");
    frame.extend_from_slice(
        member
            .hyphenated()
            .encode_lower(&mut Uuid::encode_buffer())
            .as_bytes(),
    );
    frame.push(b'/');
    frame.extend_from_slice(itoa::Buffer::new().format(place).as_bytes());
    frame.push(b'\n');
}

fn write_items(frame: &mut Vec<u8>, batch: &Batch, shared: Option<&Uuid>) {
    for item in &batch.items {
        match item {
            Item::Gap { from, to } => {
                if let Some(member) = shared {
                    write_shared_id(frame, member, *to);
                }
                frame.extend_from_slice(b"event: gap\ndata: ");
                serde_json::to_writer(
                    &mut *frame,
                    &GapData {
                        from: *from,
                        to: *to,
                    },
                )
                .expect("gap data serializes");
                frame.extend_from_slice(b"\n\n");
            }
            Item::Event(entry) => {
                frame.reserve(entry.body.size() + entry.body.kind.len() + 40);
                match shared {
                    Some(member) => write_shared_id(frame, member, entry.id),
                    None => {
                        // itoa, not `write!`: the formatting machinery was
                        // most of the framing's cost.
                        frame.extend_from_slice(b"id: ");
                        frame.extend_from_slice(itoa::Buffer::new().format(entry.id).as_bytes());
                        frame.push(b'\n');
                    }
                }
                frame.extend_from_slice(b"event: ");
                frame.extend_from_slice(entry.body.kind.as_bytes());
                frame.extend_from_slice(b"\ndata: ");
                entry.body.write_json(frame);
                frame.extend_from_slice(b"\n\n");
            }
        }
    }
}

/// The body of an open inbox stream: `first` (the `ready` event and any
/// backlog), then live events as they arrive, a keep-alive comment whenever
/// the stream idles for `keep_alive`, and the end when the member is gone,
/// a newer stream replaces this one, or the server shuts down.
///
/// Polled by hand, as the subscription is: it lives as long as the stream.
/// The async block it replaces, with a `select!` made again for every
/// event, behind two adapters to make it a body, cost (with the
/// subscription's async fn) a tenth of the instructions of every copy a
/// broadcast delivers.
pub struct EventStream {
    subscription: Subscription,
    around: AroundEvents,
}

impl EventStream {
    pub fn new(
        first: Vec<u8>,
        subscription: Subscription,
        keep_alive: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            subscription,
            around: AroundEvents::new(first, keep_alive, shutdown),
        }
    }
}

impl HttpBody for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let subscription = &mut this.subscription;
        this.around.poll_frame(cx, |cx| {
            subscription.poll_next(cx).map(|batch| {
                batch.map(|batch| {
                    let mut frame = Vec::new();
                    write_batch(&mut frame, &batch);
                    frame
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.around.done
    }
}

/// The body of a stream of several inboxes (`POST /streams`): `first`
/// (each inbox's `ready` and backlog), then each inbox's live events as
/// they arrive, framed by `write_shared_batch`, and a keep-alive comment
/// whenever the whole stream idles for `keep_alive`. An inbox whose member
/// is gone, or whose reader a newer one replaced, drops out after its last
/// event; the stream ends when none is left, or the server shuts down.
pub struct SharedStream {
    inboxes: Vec<(Uuid, Subscription)>,
    around: AroundEvents,
}

impl SharedStream {
    pub fn new(
        first: Vec<u8>,
        inboxes: Vec<(Uuid, Subscription)>,
        keep_alive: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inboxes,
            around: AroundEvents::new(first, keep_alive, shutdown),
        }
    }
}

impl HttpBody for SharedStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let inboxes = &mut this.inboxes;
        this.around.poll_frame(cx, |cx| {
            // One batch of each inbox that has one, so a busy inbox cannot
            // hold the others back.
            let mut frame = Vec::new();
            let mut at = 0;
            while let Some((member, subscription)) = inboxes.get_mut(at) {
                match subscription.poll_next(cx) {
                    Poll::Ready(Some(batch)) => {
                        write_shared_batch(&mut frame, member, &batch);
                        at += 1;
                    }
                    Poll::Ready(None) => {
                        inboxes.swap_remove(at);
                    }
                    Poll::Pending => at += 1,
                }
            }
            if !frame.is_empty() {
                Poll::Ready(Some(frame))
            } else if inboxes.is_empty() {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.around.done
    }
}

/// What every stream body writes around its inboxes' events: the first
/// chunk, a keep-alive comment whenever it idles, and its end.
struct AroundEvents {
    first: Option<Bytes>,
    keep_alive: KeepAliveTimer,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
}

impl AroundEvents {
    fn new(first: Vec<u8>, keep_alive: Duration, shutdown: CancellationToken) -> Self {
        Self {
            first: Some(Bytes::from(first)),
            keep_alive: KeepAliveTimer::new(keep_alive),
            shutdown: Box::pin(shutdown.cancelled_owned()),
            done: false,
        }
    }

    /// The next chunk of the body. `events` polls the inboxes: a frame of
    /// their events, `None` once none is left to read, or pending.
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
        events: impl FnOnce(&mut Context<'_>) -> Poll<Option<Vec<u8>>>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        // Events first, then the keep-alive, then shutdown: a stream ends
        // only once what was there to read has been written.
        let chunk = match events(cx) {
            Poll::Ready(Some(frame)) => {
                self.keep_alive.sent();
                Some(Bytes::from(frame))
            }
            Poll::Ready(None) => None,
            Poll::Pending => match self.keep_alive.poll(cx) {
                Poll::Ready(comment) => Some(comment),
                Poll::Pending if self.shutdown.as_mut().poll(cx).is_ready() => None,
                Poll::Pending => return Poll::Pending,
            },
        };
        self.done = chunk.is_none();
        Poll::Ready(chunk.map(|chunk| Ok(Frame::data(chunk))))
    }
}

/// When a stream is due a keep-alive comment.
struct KeepAliveTimer {
    every: Duration,
    /// When the stream last sent something.
    sent_at: Instant,
    /// Fires at `sent_at + every` or earlier. One timer for the stream's
    /// life, moved only when it fires: a new one per event was a
    /// registration in the timer wheel and its removal, for every event of
    /// every stream.
    timer: Pin<Box<Sleep>>,
}

impl KeepAliveTimer {
    fn new(every: Duration) -> Self {
        Self {
            every,
            sent_at: Instant::now(),
            timer: Box::pin(tokio::time::sleep(every)),
        }
    }

    fn sent(&mut self) {
        self.sent_at = Instant::now();
    }

    /// A keep-alive comment if the stream has been silent for `every`.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Bytes> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let now = Instant::now();
            let due = self.sent_at + self.every;
            if now < due {
                // Events went out since the timer was set.
                self.timer.as_mut().reset(due);
                continue;
            }
            self.sent_at = now;
            self.timer.as_mut().reset(now + self.every);
            return Poll::Ready(Bytes::from_static(KEEP_ALIVE));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::EventBody;
    use crate::domain::inbox::Entry;

    #[test]
    fn events_are_framed_with_id_kind_and_one_data_line() {
        let body = EventBody::new("signal", &serde_json::json!({"sdp": "v=0\r\na=x\n"}));
        let batch = Batch {
            items: vec![
                Item::Gap { from: 1, to: 2 },
                Item::Event(Entry { id: 3, body }),
            ],
        };
        let mut frame = Vec::new();
        write_batch(&mut frame, &batch);
        let text = String::from_utf8(frame).unwrap();
        assert_eq!(
            text,
            "event: gap\ndata: {\"from\":1,\"to\":2}\n\nid: 3\nevent: signal\ndata: {\"sdp\":\"v=0\\r\\na=x\\n\"}\n\n"
        );
    }

    /// Alice's open stream (with `keep_alive`) and a way for Bob to signal her.
    async fn alice_and_bob(
        keep_alive: Duration,
    ) -> (impl futures_util::Stream<Item = Bytes>, impl AsyncFn()) {
        use crate::domain::inbox::Limits;
        use crate::hub::{Hub, JoinSpec, MemberRef, Settings};
        use crate::model::{RoomId, SignalType};
        let hub = Hub::memory(Settings {
            default_capacity: 2,
            max_capacity: 2,
            limits: Limits {
                events: 16,
                bytes: 1 << 16,
                headroom: 6,
            },
            member_timeout: Duration::from_secs(3600),
            max_members: 4,
            max_kept_rooms: 4,
            max_readers: 4,
            notices: false,
        });
        let room = RoomId::parse("lobby").unwrap();
        let spec = || JoinSpec {
            name: None,
            user_id: None,
            password_checked: None,
            password_hash: None,
            may_own: true,
            metadata: serde_json::value::to_raw_value(&serde_json::json!({})).unwrap(),
            capacity: None,
        };
        let alice = hub.join(room.clone(), spec()).await.unwrap().member.id;
        let bob = hub.join(room.clone(), spec()).await.unwrap().member.id;
        let at = |member| MemberRef {
            room: room.clone(),
            member,
        };
        let subscription = hub.open_stream(&at(alice), None).await.unwrap();
        let stream = EventStream::new(
            Vec::new(),
            subscription,
            keep_alive,
            CancellationToken::new(),
        );
        let stream = axum::body::Body::new(stream).into_data_stream();
        let from = at(bob);
        let send = async move || {
            let payload = serde_json::value::to_raw_value(&1).unwrap();
            let offer = SignalType::parse("offer").unwrap();
            hub.send_signal(&from, Some(alice), &offer, payload)
                .await
                .unwrap();
        };
        (futures_util::StreamExt::map(stream, Result::unwrap), send)
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_comes_after_keep_alive_of_silence_counted_from_the_last_event() {
        use futures_util::StreamExt;
        let keep_alive = Duration::from_secs(10);
        let (stream, send) = alice_and_bob(keep_alive).await;
        let mut stream = std::pin::pin!(stream);
        let started = Instant::now();
        assert!(
            stream.next().await.unwrap().is_empty(),
            "the empty first chunk"
        );
        // The backlog: Bob's `member-joined`.
        assert!(stream.next().await.unwrap().starts_with(b"id: 1\n"));

        tokio::time::sleep(Duration::from_secs(6)).await;
        send().await;
        let event = stream.next().await.unwrap();
        assert!(event.starts_with(b"id: 2\nevent: signal\n"), "{event:?}");
        // The timer set at the start fires at 10 s; the event at 6 s moves
        // the keep-alive to 16 s.
        assert_eq!(stream.next().await.unwrap(), KEEP_ALIVE);
        assert_eq!(started.elapsed(), Duration::from_secs(16));
        assert_eq!(stream.next().await.unwrap(), KEEP_ALIVE);
        assert_eq!(started.elapsed(), Duration::from_secs(26));
    }

    #[test]
    fn ready_has_no_id() {
        let ready = ready_frame(&ReadyData {
            member_id: uuid::Uuid::nil(),
            last_event_id: 0,
            keep_alive: 15.0,
        });
        let text = String::from_utf8(ready).unwrap();
        assert!(text.starts_with("event: ready\ndata: {"));
        assert!(!text.contains("id: "));
    }
}
