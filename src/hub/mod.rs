//! The shared state behind one seam: rooms, their members and inboxes, and
//! the token index.
//!
//! `Hub` is what every handler holds. Its methods speak only in API.md's
//! terms, and it stands for one of two backends that keep the same rules:
//!
//! - `memory`: one process holds everything (the default);
//! - `redis`: every node of a cluster shares the state in Redis, so a
//!   member may join on one node, stream on another and signal through a
//!   third (`--redis-url`).
//!
//! Handlers never know which one serves them.

mod memory;
mod redis;
mod wake;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use serde_json::value::RawValue;
use uuid::Uuid;

pub use self::memory::{MemoryHub, MemorySubscription};
pub use self::redis::{RedisHub, RedisSubscription};
use self::wake::{ReaderWake, Readers};
use crate::auth::Token;
use crate::error::ApiError;
use crate::inbox::{Batch, EventBody, Limits};
use crate::metrics::OpenStream;
use crate::model::{
    JoinResponse, MemberView, RoomId, RoomSummary, RoomView, SignalType, Timestamp,
};

/// The settings the state enforces.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_capacity: u32,
    pub max_capacity: u32,
    pub limits: Limits,
    pub member_timeout: Duration,
    /// Members the whole service may hold.
    pub max_members: usize,
    /// Open readers (streams and waiting polls) one node may hold.
    pub max_readers: usize,
}

impl Settings {
    /// The capacity a join gives the room if it creates it.
    fn new_room_capacity(&self, asked: Option<i64>) -> Result<u32, ApiError> {
        asked.map_or(Ok(self.default_capacity), |asked| {
            u32::try_from(asked)
                .ok()
                .filter(|capacity| (2..=self.max_capacity).contains(capacity))
                .ok_or_else(|| {
                    ApiError::InvalidRequest(format!(
                        "`capacity` must be from 2 to {}",
                        self.max_capacity
                    ))
                })
        })
    }
}

/// A join, validated at the edge except for the capacity, which counts only
/// if the join creates the room.
#[derive(Debug)]
pub struct JoinSpec {
    pub name: Option<String>,
    pub metadata: Box<RawValue>,
    pub capacity: Option<i64>,
}

impl JoinSpec {
    /// The joining member as the others will see it: a fresh id, joined now.
    fn into_view(self) -> MemberView {
        MemberView {
            id: Uuid::new_v4(),
            name: self.name,
            metadata: self.metadata,
            joined_at: Timestamp::now(),
        }
    }
}

/// The member a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    pub room: RoomId,
    pub member: Uuid,
}

/// Who asks for a room-level change.
#[derive(Debug, Clone, Copy)]
pub enum Actor {
    Admin,
    /// A member of the room named in the call.
    Member(Uuid),
}

/// The state handle given to every handler. Cheap to clone.
#[derive(Clone)]
pub enum Hub {
    Memory(MemoryHub),
    Redis(RedisHub),
}

/// Calls the same method on whichever backend serves.
macro_rules! each_backend {
    ($hub:expr, $backend:ident => $call:expr) => {
        match $hub {
            Hub::Memory($backend) => $call,
            Hub::Redis($backend) => $call,
        }
    };
}

impl Hub {
    /// The in-memory backend.
    pub fn memory(settings: Settings) -> Self {
        Self::Memory(MemoryHub::new(settings))
    }

    pub fn settings(&self) -> &Settings {
        each_backend!(self, hub => hub.settings())
    }

    /// Whether the state can be reached: always for memory, a round trip
    /// for Redis.
    pub async fn ready(&self) -> Result<(), ApiError> {
        match self {
            Hub::Memory(_) => Ok(()),
            Hub::Redis(hub) => hub.ping().await,
        }
    }

    /// The member this token opens, if any. The lookup uses the token's
    /// first 8 bytes; the whole token is then compared in constant time.
    pub async fn authenticate(&self, token: &Token) -> Result<Option<MemberRef>, ApiError> {
        match self {
            Hub::Memory(hub) => Ok(hub.authenticate(token)),
            Hub::Redis(hub) => hub.authenticate(token).await,
        }
    }

    /// Joins `room_id`, creating the room if needed.
    pub async fn join(&self, room_id: RoomId, spec: JoinSpec) -> Result<JoinResponse, ApiError> {
        each_backend!(self, hub => hub.join(room_id, spec).await)
    }

    /// Removes `target` from the room: by itself (`left`), or by the owner
    /// or the admin (`removed`).
    pub async fn remove_member(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
    ) -> Result<(), ApiError> {
        each_backend!(self, hub => hub.remove_member(room_id, target, actor).await)
    }

    /// Puts a signal in the recipient's inbox, or in every other member's;
    /// either all of them take it or none does. Returns how many did.
    pub async fn send_signal(
        &self,
        from: &MemberRef,
        to: Option<Uuid>,
        signal_type: &SignalType,
        payload: Box<RawValue>,
    ) -> Result<usize, ApiError> {
        // Made once, here, for every recipient and either backend.
        let body = EventBody::signal(from.member, to, signal_type, payload, Timestamp::now());
        let limit = self.settings().limits.bytes;
        if body.size() > limit {
            return Err(ApiError::SignalOverInbox {
                size: body.size(),
                limit,
            });
        }
        each_backend!(self, hub => hub.send_signal(from, to, body).await)
    }

    /// The room, for one of its members or the admin.
    pub async fn room_view(&self, room_id: &RoomId, actor: Actor) -> Result<RoomView, ApiError> {
        each_backend!(self, hub => hub.room_view(room_id, actor).await)
    }

    /// Locks or unlocks the room, for its owner or the admin; every member
    /// hears of a change.
    pub async fn set_locked(
        &self,
        room_id: &RoomId,
        actor: Actor,
        locked: bool,
    ) -> Result<RoomView, ApiError> {
        each_backend!(self, hub => hub.set_locked(room_id, actor, locked).await)
    }

    /// How many rooms and members the state holds.
    pub async fn counts(&self) -> Result<(usize, usize), ApiError> {
        match self {
            Hub::Memory(hub) => Ok(hub.counts()),
            Hub::Redis(hub) => hub.counts().await,
        }
    }

    /// Every room, ordered by id.
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, ApiError> {
        match self {
            Hub::Memory(hub) => Ok(hub.rooms()),
            Hub::Redis(hub) => hub.rooms().await,
        }
    }

    /// Opens the member's live stream, closing any older one. With
    /// `last_event_id`, resumes after it and acknowledges up to it;
    /// without, starts after the last delivered event.
    pub async fn open_stream(
        &self,
        member: &MemberRef,
        last_event_id: Option<u64>,
    ) -> Result<Subscription, ApiError> {
        let reader = match self {
            Hub::Memory(hub) => Reader::Memory(hub.open_stream(member, last_event_id)?),
            Hub::Redis(hub) => Reader::Redis(hub.open_stream(member, last_event_id).await?),
        };
        Ok(Subscription::new(reader, "sse"))
    }

    /// Opens a long-poll reader after `after` (default: the last
    /// acknowledged id), acknowledging up to it.
    pub async fn open_poll(
        &self,
        member: &MemberRef,
        after: Option<u64>,
    ) -> Result<Subscription, ApiError> {
        let reader = match self {
            Hub::Memory(hub) => Reader::Memory(hub.open_poll(member, after)?),
            Hub::Redis(hub) => Reader::Redis(hub.open_poll(member, after).await?),
        };
        Ok(Subscription::new(reader, "poll"))
    }

    /// Removes every member whose inbox nobody has read for longer than the
    /// member timeout. Returns how many it removed.
    pub async fn reap(&self) -> Result<usize, ApiError> {
        match self {
            Hub::Memory(hub) => Ok(hub.reap(std::time::Instant::now())),
            Hub::Redis(hub) => hub.reap().await,
        }
    }
}

/// One open reader of an inbox (a stream, or a poll while it waits). While
/// it exists, the member is not reaped.
///
/// Polled by hand (`poll_next`), not an async fn: an open stream waits here
/// for all of its life, and the async fn made its futures again for every
/// event.
pub struct Subscription {
    reader: Reader,
    /// Says whether the inbox changed since the last read (a new reader's
    /// has), and wakes the task when it does: a stream polls once more
    /// after every batch, and reads again only if something came.
    wake: ReaderWake,
    /// A Redis read under way: a round trip, polled to its end before the
    /// next; it moves the cursor only as its batch is returned.
    reading: Option<Pin<Box<RedisRead>>>,
    _open: OpenStream,
}

/// A Redis read: the batch after the cursor and the cursor it moves to.
type RedisRead = dyn Future<Output = Option<(u64, Batch)>> + Send;

enum Reader {
    Memory(MemorySubscription),
    Redis(RedisSubscription),
}

impl Reader {
    /// The inbox's readers, this one among them from `Subscription::new`.
    fn readers(&self) -> Arc<Readers> {
        match self {
            Reader::Memory(subscription) => subscription.readers(),
            Reader::Redis(subscription) => subscription.readers(),
        }
    }
}

impl Subscription {
    fn new(reader: Reader, transport: &'static str) -> Self {
        let wake = ReaderWake::join(reader.readers());
        Self {
            reader,
            wake,
            reading: None,
            _open: OpenStream::new(transport),
        }
    }

    /// The id this reader reads after.
    pub fn cursor(&self) -> u64 {
        match &self.reader {
            Reader::Memory(subscription) => subscription.cursor(),
            Reader::Redis(subscription) => subscription.cursor(),
        }
    }

    fn depth(batch: Option<Batch>) -> Option<Batch> {
        if let Some(batch) = &batch
            && !batch.is_empty()
        {
            crate::metrics::inbox_depth().record(batch.items.len() as f64);
        }
        batch
    }

    /// Reads once without waiting: the events there are now, possibly
    /// none. `None` when the reader is done, as for `next`.
    pub async fn read_now(&mut self) -> Option<Batch> {
        std::future::poll_fn(|cx| self.poll_read(cx)).await
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        let batch = match &mut self.reader {
            Reader::Memory(subscription) => subscription.read_now(),
            Reader::Redis(subscription) => {
                let reading = self
                    .reading
                    .get_or_insert_with(|| Box::pin(subscription.read()));
                let read = ready!(reading.as_mut().poll(cx));
                self.reading = None;
                read.map(|(cursor, batch)| {
                    subscription.set_cursor(cursor);
                    batch
                })
            }
        };
        Poll::Ready(Self::depth(batch))
    }

    /// The next events, once there are any. `None` when the reader is done:
    /// the member is gone, a newer stream replaced this one, or (Redis) the
    /// state cannot be reached. Returns `Pending` with `cx` woken by the next
    /// event, as a `Stream` does.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        loop {
            // A Redis read under way is finished first: it may have begun
            // before the change, so the change is looked at only after it.
            if self.reading.is_none() && !self.wake.changed(cx) {
                return Poll::Pending;
            }
            let Some(batch) = ready!(self.poll_read(cx)) else {
                return Poll::Ready(None);
            };
            if !batch.is_empty() {
                return Poll::Ready(Some(batch));
            }
        }
    }

    /// `poll_next` as a future. Cancel-safe: the cursor moves only together
    /// with a returned batch.
    pub async fn next(&mut self) -> Option<Batch> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

/// Waiting polls one member may hold at once. A client has one in flight;
/// a few more cover polls whose client went away unseen behind a proxy.
/// Past it a poll answers 429: without it one member could hold every
/// place of `max_readers`, and each event to it would wake them all.
pub const POLLS_PER_MEMBER: u32 = 4;

/// The reader places one member holds (on this node, with Redis): its
/// streams, the live one and any still ending, and its waiting polls.
///
/// A newer stream replaces the older at once, but the older ends only when
/// its task next runs: until then both are open. The newer takes the
/// older's place over instead of a new one of the server's, so a member can
/// always replace its own stream, even while the server holds
/// `max_readers`; the older then gives its place to the newer when it
/// ends, not back to the server. Shared with the member's readers, so that
/// it outlives the member.
#[derive(Default)]
pub struct MemberPlaces {
    streams: AtomicU32,
    polls: AtomicU32,
    /// Places of ending streams that newer streams have taken over.
    handed_over: AtomicU32,
}

impl MemberPlaces {
    /// Takes a place for a new stream or poll: one an ending stream hands
    /// over, or one of the server's `max` (`taken` counts those). Called
    /// under the lock that guards the member's readers, as `leave` is.
    fn enter(&self, streaming: bool, taken: &AtomicUsize, max: usize) -> Result<(), ApiError> {
        let count = if streaming {
            let streams = self.streams.load(Ordering::Relaxed);
            let took_over = self
                .handed_over
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |handed| {
                    (streams > handed).then_some(handed + 1)
                })
                .is_ok();
            if !took_over {
                server_place(taken, max)?;
            }
            &self.streams
        } else {
            if self.polls.load(Ordering::Relaxed) >= POLLS_PER_MEMBER {
                return Err(ApiError::RateLimited {
                    retry_after: Duration::from_secs(1),
                });
            }
            server_place(taken, max)?;
            &self.polls
        };
        count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A reader's end: its place goes on to a newer stream that took it
    /// over, or back to the server.
    fn leave(&self, streaming: bool, taken: &AtomicUsize) {
        let handed_over = streaming
            && self
                .handed_over
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |handed| {
                    handed.checked_sub(1)
                })
                .is_ok();
        let count = if streaming {
            &self.streams
        } else {
            &self.polls
        };
        count.fetch_sub(1, Ordering::Relaxed);
        if !handed_over {
            taken.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Open streams and polls.
    fn open(&self) -> u32 {
        self.streams.load(Ordering::Relaxed) + self.polls.load(Ordering::Relaxed)
    }
}

/// One of the server's `max` reader places, counted in `taken`.
fn server_place(taken: &AtomicUsize, max: usize) -> Result<(), ApiError> {
    Place::take(taken, max)
        .map(Place::keep)
        .ok_or(ApiError::ServerBusy(
            "the server holds as many open streams as it may; retry later",
        ))
}

/// A place taken under a bound, given back on drop unless kept.
struct Place<'a> {
    count: &'a AtomicUsize,
    kept: bool,
}

impl<'a> Place<'a> {
    /// Takes a place if fewer than `max` are taken.
    fn take(count: &'a AtomicUsize, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |taken| {
                (taken < max).then_some(taken + 1)
            })
            .ok()
            .map(|_| Self { count, kept: false })
    }

    /// The place now belongs to whatever was made with it.
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_stream_takes_the_older_ones_place_and_every_place_comes_back() {
        let taken = AtomicUsize::new(0);
        let places = MemberPlaces::default();
        places.enter(true, &taken, 1).expect("the first stream");
        // The server is full, yet the member replaces its stream twice
        // before the older ones end.
        places.enter(true, &taken, 1).expect("a newer stream");
        places.enter(true, &taken, 1).expect("a newer one still");
        assert_eq!(taken.load(Ordering::Relaxed), 1);
        assert!(matches!(
            places.enter(false, &taken, 1),
            Err(ApiError::ServerBusy(_))
        ));
        for _ in 0..3 {
            places.leave(true, &taken);
        }
        assert_eq!((places.open(), taken.load(Ordering::Relaxed)), (0, 0));
    }

    #[test]
    fn a_member_has_at_most_its_polls_and_a_stream_beside_them() {
        let taken = AtomicUsize::new(0);
        let places = MemberPlaces::default();
        for _ in 0..POLLS_PER_MEMBER {
            places.enter(false, &taken, 100).expect("a poll");
        }
        assert!(matches!(
            places.enter(false, &taken, 100),
            Err(ApiError::RateLimited { .. })
        ));
        places.enter(true, &taken, 100).expect("a stream");
        assert_eq!(places.open(), POLLS_PER_MEMBER + 1);
        places.leave(false, &taken);
        places
            .enter(false, &taken, 100)
            .expect("a poll in the place freed");
    }
}
