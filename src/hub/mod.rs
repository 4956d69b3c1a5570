//! The shared state behind one seam: rooms, their members and inboxes, and
//! the token index.
//!
//! `Backend` is every operation on that state. Two backends keep the same
//! rules (`domain::room`, `domain::inbox`):
//!
//! - `memory`: one process holds everything (the default);
//! - `redis`: every node of a cluster shares the state in Redis, so a
//!   member may join on one node, stream on another and signal through a
//!   third (`--redis-url`).
//!
//! `Hub` is what every handler holds: whichever backend serves, called
//! without dynamic dispatch. Its methods speak only in docs/API.md's terms, and
//! refuse with `Refusal`; handlers never know which backend serves them.

mod drawn;
mod memory;
mod places;
mod redis;
mod subscription;
mod wake;

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use uuid::Uuid;

pub use self::memory::MemoryHub;
pub use self::places::POLLS_PER_MEMBER;
pub use self::redis::{NoticedRoom, Primary as RedisPrimary, RedisHub, StoredNotice};
use self::subscription::AnyReader;
pub use self::subscription::{InboxReader, ReaderKind, Subscription};
use crate::domain::Refusal;
use crate::domain::event::EventBody;
use crate::domain::inbox::Limits;
use crate::domain::notice::Listener;
pub use crate::domain::room::Actor;
use crate::domain::room::{CapacityBounds, EmptyTimeout, Sender};
pub use crate::domain::token::MemberRef;
use crate::domain::token::{NewToken, Token};
use crate::model::{MemberView, RoomId, RoomSummary, RoomView, SignalType, Timestamp};

/// The settings the state enforces.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_capacity: u32,
    pub max_capacity: u32,
    pub limits: Limits,
    pub member_timeout: Duration,
    /// Members the whole service may hold.
    pub max_members: usize,
    /// Rooms the service made in advance it may keep at once.
    pub max_kept_rooms: usize,
    /// Open readers (streams and waiting polls) one node may hold.
    pub max_readers: usize,
    /// Whether the rooms' notices are kept for webhooks (`domain::notice`):
    /// on Redis, in a stream the join and remove functions append to.
    pub notices: bool,
}

impl Settings {
    /// The capacities a new room may have.
    fn capacity_bounds(&self) -> CapacityBounds {
        CapacityBounds {
            default: self.default_capacity,
            max: self.max_capacity,
        }
    }
}

/// A join, validated at the edge except for the capacity, which counts only
/// if the join creates the room.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub name: Option<String>,
    pub user_id: Option<String>,
    /// The room's password hash the join checked its password against
    /// (`room::password_unchanged`); `None` when it found none.
    pub password_checked: Option<String>,
    /// The hash of the join's password, for a room it creates.
    pub password_hash: Option<String>,
    /// Whether the member may own the room (`room::owner_after_join`).
    pub may_own: bool,
    pub metadata: Box<RawValue>,
    pub capacity: Option<i64>,
}

impl JoinSpec {
    /// The joining member as the others will see it: a fresh id, joined now.
    fn into_view(self) -> MemberView {
        MemberView {
            id: Uuid::new_v4(),
            name: self.name,
            user_id: self.user_id,
            metadata: self.metadata,
            joined_at: Timestamp::now(),
        }
    }
}

/// A room the service makes in advance, validated at the edge except for
/// the capacity.
// No `Debug`: it holds the password's hash.
pub struct RoomSpec {
    pub capacity: Option<i64>,
    pub locked: bool,
    /// The hash of the room's password, if it has one.
    pub password_hash: Option<String>,
    pub empty_timeout: EmptyTimeout,
}

/// A change to what a member shows the others, validated at the edge: a
/// field left `None` stays as it is.
#[derive(Debug, Clone, Default)]
pub struct MemberChange {
    /// `Some(None)` takes the name away.
    pub name: Option<Option<String>>,
    pub metadata: Option<Box<RawValue>>,
}

impl MemberChange {
    /// `view` with the change made.
    pub fn apply(&self, view: &mut MemberView) {
        if let Some(name) = &self.name {
            view.name.clone_from(name);
        }
        if let Some(metadata) = &self.metadata {
            view.metadata.clone_from(metadata);
        }
    }
}

/// A member a join made.
// No `Debug`: it holds the member's token.
pub struct Joined {
    pub room_id: RoomId,
    pub member: MemberView,
    /// The member's secret, handed to it once.
    pub token: NewToken,
    /// Whether this join created the room, and so owns it.
    pub owner: bool,
    pub capacity: u32,
    /// The other members, oldest first.
    pub members: Vec<MemberView>,
}

/// Every operation on the shared state, as each backend offers it.
///
/// Futures are `Send`: handlers run on any worker thread.
pub trait Backend: Clone + Send + Sync + 'static {
    /// One open reader of an inbox kept by this backend.
    type Reader: InboxReader;

    fn settings(&self) -> &Settings;

    /// Whether the state can be reached now.
    fn ready(&self) -> impl Future<Output = Result<(), Refusal>> + Send;

    /// The member this token opens, if any: the one it names, if that
    /// member is still there and the token's secret is its own (compared in
    /// constant time).
    fn authenticate(
        &self,
        token: &Token<'_>,
    ) -> impl Future<Output = Result<Option<MemberRef>, Refusal>> + Send;

    /// `authenticate`, for an operation that checks its caller again as it
    /// runs (a signal, opening a reader, leaving): a backend whose state is
    /// remote may answer from what it looked up a few seconds ago, since a
    /// member removed meanwhile is refused by the operation all the same.
    /// A backend that is never behind keeps this default.
    fn authenticate_recent(
        &self,
        token: &Token<'_>,
    ) -> impl Future<Output = Result<Option<MemberRef>, Refusal>> + Send {
        self.authenticate(token)
    }

    /// Joins `room_id`, creating the room if needed, as `room::admit`
    /// allows; every other member hears of it.
    fn join(
        &self,
        room_id: RoomId,
        spec: JoinSpec,
    ) -> impl Future<Output = Result<Joined, Refusal>> + Send;

    /// Makes a room without members for the service, as
    /// `room::may_create` allows; it stays while it has members, and
    /// closes once it has had none for its empty timeout.
    fn create_room(
        &self,
        room_id: RoomId,
        spec: RoomSpec,
    ) -> impl Future<Output = Result<RoomView, Refusal>> + Send;

    /// Ends the room for the service: every member is removed (each hears
    /// of those removed before it, and of itself), then the room closes.
    fn end_room(&self, room_id: &RoomId) -> impl Future<Output = Result<(), Refusal>> + Send;

    /// Changes what `target` shows the others, as `room::may_update`
    /// allows; every other member hears of it (`member-updated`).
    fn update_member(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
        change: MemberChange,
    ) -> impl Future<Output = Result<MemberView, Refusal>> + Send;

    /// Removes `target`, as `room::removal` allows; every other member
    /// hears of it, and of a new owner.
    fn remove_member(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
    ) -> impl Future<Output = Result<(), Refusal>> + Send;

    /// Puts a signal's event in the inbox of every recipient
    /// (`room::recipients`), or in none if one of them cannot take it.
    /// Returns how many took it.
    fn send_signal(
        &self,
        room_id: &RoomId,
        from: Sender,
        to: Option<Uuid>,
        body: Arc<EventBody>,
    ) -> impl Future<Output = Result<usize, Refusal>> + Send;

    /// The room, as `room::may_view` allows.
    fn room_view(
        &self,
        room_id: &RoomId,
        actor: Actor,
    ) -> impl Future<Output = Result<RoomView, Refusal>> + Send;

    /// The hash of the room's password, if it has one (`None` also when
    /// there is no such room).
    fn room_password(
        &self,
        room_id: &RoomId,
    ) -> impl Future<Output = Result<Option<String>, Refusal>> + Send;

    /// Sets (`Some` hash) or clears the room's password, as `room::may_lock`
    /// allows. Nobody hears of it: the password is no one's business but
    /// the joins'.
    fn set_password(
        &self,
        room_id: &RoomId,
        actor: Actor,
        hash: Option<String>,
    ) -> impl Future<Output = Result<RoomView, Refusal>> + Send;

    /// Locks or unlocks the room, as `room::may_lock` allows; every member
    /// hears of a change.
    fn set_locked(
        &self,
        room_id: &RoomId,
        actor: Actor,
        locked: bool,
    ) -> impl Future<Output = Result<RoomView, Refusal>> + Send;

    /// How many rooms and members the state holds.
    fn counts(&self) -> impl Future<Output = Result<(usize, usize), Refusal>> + Send;

    /// Every room, ordered by id.
    fn rooms(&self) -> impl Future<Output = Result<Vec<RoomSummary>, Refusal>> + Send;

    /// Opens a reader of the member's inbox, after `after` when given.
    ///
    /// A stream closes the member's older one; it resumes after `after`
    /// and acknowledges up to it, or, without, starts after the last
    /// delivered event. A poll reads after `after` (default: the last
    /// acknowledged id), acknowledging up to it.
    fn open_reader(
        &self,
        member: &MemberRef,
        kind: ReaderKind,
        after: Option<u64>,
    ) -> impl Future<Output = Result<Self::Reader, Refusal>> + Send;

    /// Removes every member whose inbox nobody has read for longer than the
    /// member timeout. Returns how many it removed.
    fn reap(&self) -> impl Future<Output = Result<usize, Refusal>> + Send;
}

/// The state handle given to every handler: whichever backend serves.
/// Cheap to clone.
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

    /// The in-memory backend, whose rooms' changes `listener` hears of.
    pub fn memory_heard(settings: Settings, listener: Arc<dyn Listener>) -> Self {
        Self::Memory(MemoryHub::with_listener(settings, Some(listener)))
    }

    /// The Redis backend on `primary`, its keys under `prefix`.
    pub async fn redis(
        primary: RedisPrimary,
        prefix: String,
        settings: Settings,
    ) -> std::io::Result<Self> {
        RedisHub::connect(primary, prefix, settings)
            .await
            .map(Self::Redis)
            .map_err(|error| std::io::Error::other(format!("cannot use redis: {error}")))
    }

    pub fn settings(&self) -> &Settings {
        each_backend!(self, hub => hub.settings())
    }

    /// Whether the state can be reached: always for memory, a round trip
    /// for Redis.
    pub async fn ready(&self) -> Result<(), Refusal> {
        each_backend!(self, hub => hub.ready().await)
    }

    /// See `Backend::authenticate`.
    pub async fn authenticate(&self, token: &Token<'_>) -> Result<Option<MemberRef>, Refusal> {
        each_backend!(self, hub => hub.authenticate(token).await)
    }

    /// See `Backend::authenticate_recent`.
    pub async fn authenticate_recent(
        &self,
        token: &Token<'_>,
    ) -> Result<Option<MemberRef>, Refusal> {
        each_backend!(self, hub => hub.authenticate_recent(token).await)
    }

    /// See `Backend::join`.
    pub async fn join(&self, room_id: RoomId, spec: JoinSpec) -> Result<Joined, Refusal> {
        each_backend!(self, hub => hub.join(room_id, spec).await)
    }

    /// See `Backend::create_room`.
    pub async fn create_room(&self, room_id: RoomId, spec: RoomSpec) -> Result<RoomView, Refusal> {
        each_backend!(self, hub => hub.create_room(room_id, spec).await)
    }

    /// See `Backend::end_room`.
    pub async fn end_room(&self, room_id: &RoomId) -> Result<(), Refusal> {
        each_backend!(self, hub => hub.end_room(room_id).await)
    }

    /// See `Backend::update_member`.
    pub async fn update_member(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
        change: MemberChange,
    ) -> Result<MemberView, Refusal> {
        each_backend!(self, hub => hub.update_member(room_id, target, actor, change).await)
    }

    /// See `Backend::remove_member`.
    pub async fn remove_member(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
    ) -> Result<(), Refusal> {
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
    ) -> Result<usize, Refusal> {
        // Made once, here, for every recipient and either backend.
        let sender = Sender::Member(from.member);
        self.signal(&from.room, sender, to, signal_type, payload)
            .await
    }

    /// Sends a signal as the service (`"from": null`) to one member of
    /// `room_id` or to all of them.
    pub async fn send_service_signal(
        &self,
        room_id: &RoomId,
        to: Option<Uuid>,
        signal_type: &SignalType,
        payload: Box<RawValue>,
    ) -> Result<usize, Refusal> {
        self.signal(room_id, Sender::Service, to, signal_type, payload)
            .await
    }

    async fn signal(
        &self,
        room_id: &RoomId,
        from: Sender,
        to: Option<Uuid>,
        signal_type: &SignalType,
        payload: Box<RawValue>,
    ) -> Result<usize, Refusal> {
        // Made once, here, for every recipient and either backend.
        let body = EventBody::signal(from.member(), to, signal_type, payload, Timestamp::now());
        let limit = self.settings().limits.bytes;
        if body.size() > limit {
            return Err(Refusal::SignalTooLarge {
                size: body.size(),
                limit,
            });
        }
        each_backend!(self, hub => hub.send_signal(room_id, from, to, body).await)
    }

    /// See `Backend::room_view`.
    pub async fn room_view(&self, room_id: &RoomId, actor: Actor) -> Result<RoomView, Refusal> {
        each_backend!(self, hub => hub.room_view(room_id, actor).await)
    }

    /// See `Backend::set_locked`.
    pub async fn set_locked(
        &self,
        room_id: &RoomId,
        actor: Actor,
        locked: bool,
    ) -> Result<RoomView, Refusal> {
        each_backend!(self, hub => hub.set_locked(room_id, actor, locked).await)
    }

    /// See `Backend::room_password`.
    pub async fn room_password(&self, room_id: &RoomId) -> Result<Option<String>, Refusal> {
        each_backend!(self, hub => hub.room_password(room_id).await)
    }

    /// See `Backend::set_password`.
    pub async fn set_password(
        &self,
        room_id: &RoomId,
        actor: Actor,
        hash: Option<String>,
    ) -> Result<RoomView, Refusal> {
        each_backend!(self, hub => hub.set_password(room_id, actor, hash).await)
    }

    /// See `Backend::counts`.
    pub async fn counts(&self) -> Result<(usize, usize), Refusal> {
        each_backend!(self, hub => hub.counts().await)
    }

    /// See `Backend::rooms`.
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, Refusal> {
        each_backend!(self, hub => hub.rooms().await)
    }

    /// Opens the member's live stream, closing any older one. With
    /// `last_event_id`, resumes after it and acknowledges up to it;
    /// without, starts after the last delivered event.
    pub async fn open_stream(
        &self,
        member: &MemberRef,
        last_event_id: Option<u64>,
    ) -> Result<Subscription, Refusal> {
        self.open(member, ReaderKind::Stream, last_event_id).await
    }

    /// Opens a long-poll reader after `after` (default: the last
    /// acknowledged id), acknowledging up to it.
    pub async fn open_poll(
        &self,
        member: &MemberRef,
        after: Option<u64>,
    ) -> Result<Subscription, Refusal> {
        self.open(member, ReaderKind::Poll, after).await
    }

    async fn open(
        &self,
        member: &MemberRef,
        kind: ReaderKind,
        after: Option<u64>,
    ) -> Result<Subscription, Refusal> {
        let reader = match self {
            Hub::Memory(hub) => AnyReader::Memory(hub.open_reader(member, kind, after).await?),
            Hub::Redis(hub) => AnyReader::Redis(hub.open_reader(member, kind, after).await?),
        };
        Ok(Subscription::new(reader, kind))
    }

    /// See `Backend::reap`.
    pub async fn reap(&self) -> Result<usize, Refusal> {
        each_backend!(self, hub => hub.reap().await)
    }
}
