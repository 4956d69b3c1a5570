//! The in-memory backend, the default: every room behind its own
//! `std::sync::Mutex`, found through a concurrent map. Everything about one
//! room (members, capacity, lock, inboxes) changes under that one lock, so a
//! join or leave is atomic and two rooms never wait for each other. No lock
//! is held across `.await`.
//!
//! Lock order: a map shard, then a room. A room's lock is never held while a
//! `rooms` shard is taken, which is why an emptied room is removed from the
//! map only after its lock is released (and marked `closed` before, so a
//! join that raced to it retries on a fresh room).
//!
//! What a call may do is decided by the rules of `domain::room`, under the
//! room's lock; what is left here is keeping rooms, tokens and readers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tracing::info;
use uuid::Uuid;

use std::future::{Future, ready};
use std::task::{Context, Poll};

use super::drawn::Drawn;
use super::places::{MemberPlaces, Place};
use super::wake::Readers;
use super::{
    Backend, InboxReader, JoinSpec, Joined, MemberChange, MemberRef, ReaderKind, RoomSpec, Settings,
};
use crate::domain::Refusal;
use crate::domain::event::EventBody;
use crate::domain::inbox::{Batch, Inbox, Limits};
use crate::domain::notice::{Listener, Notice};
use crate::domain::room::{
    self, Actor, Admission, EmptyTimeout, Occupancy, Recipients, Roster, Sender,
};
use crate::domain::token::{NewToken, Secret, Token};
use crate::model::{
    LeaveReason, MemberJoinedData, MemberLeftData, MemberUpdatedData, MemberView, RoomId,
    RoomSummary, RoomUpdatedData, RoomView, Timestamp,
};

/// The in-memory state. Cheap to clone.
#[derive(Clone)]
pub struct MemoryHub {
    inner: Arc<Memory>,
}

struct Memory {
    rooms: DashMap<RoomId, Arc<Mutex<Room>>>,
    /// Token selector (its secret's first 8 bytes) to the secret and the
    /// member it opens: one lookup per request, without the room's lock.
    tokens: DashMap<u64, Issued, Drawn>,
    settings: Settings,
    /// Members in every room; bounded by `max_members`.
    members: AtomicUsize,
    /// Rooms the service made in advance; bounded by `max_kept_rooms`.
    kept: AtomicUsize,
    /// Open readers; bounded by `max_readers`. Shared with each
    /// `Subscription`, which gives its place back when dropped.
    readers: Arc<AtomicUsize>,
    /// Who hears of rooms made and closed and members in and out.
    listener: Option<Arc<dyn Listener>>,
}

/// What the index keeps of a token it issued.
struct Issued {
    secret: Secret,
    /// `Token::room_fingerprint` of the token as issued.
    room: u64,
    member: MemberRef,
}

struct Room {
    id: RoomId,
    capacity: u32,
    locked: bool,
    /// `None` while no member may own it.
    owner: Option<Uuid>,
    /// Its password's hash, a PHC string; never shown.
    password: Option<String>,
    created_at: Timestamp,
    /// Oldest first. A room holds at most `--max-capacity` members, so a
    /// linear search beats a map here.
    members: Vec<Member>,
    /// For a room the service made in advance: how long it stays without
    /// members (`room::empty_room_closes`).
    keep: Option<EmptyTimeout>,
    /// Since when a kept room has had no members.
    empty_since: Instant,
    /// Set when the room closed: it is about to leave the map.
    closed: bool,
    /// Members that left or were removed while readers of theirs were
    /// open, until those end: bounded by the open readers.
    departed: Vec<Departed>,
}

/// What a member that went leaves its open readers: its inbox, its own
/// `member-left` last, for each to read what it had not, and end.
struct Departed {
    id: Uuid,
    /// Its live stream's generation when it went.
    stream: u64,
    inbox: Inbox,
    places: Arc<MemberPlaces>,
}

struct Member {
    view: MemberView,
    token_selector: u64,
    inbox: Inbox,
    /// Woken whenever the inbox gains an event, a newer stream opens, or the
    /// member is removed.
    wake: Arc<Readers>,
    /// Its open streams and polls. The member timeout runs only while it
    /// has none.
    places: Arc<MemberPlaces>,
    idle_since: Instant,
    /// Whether it may own the room (`room::owner_after_join`).
    may_own: bool,
    /// Generation of the live stream; a stream whose generation is older
    /// ends at its next wake-up.
    stream: u64,
}

/// The most members a new room makes room for before its first join.
const MEMBERS_RESERVED: usize = 4;

fn lock(room: &Mutex<Room>) -> MutexGuard<'_, Room> {
    // Nothing under a room lock panics on client input; if a bug ever does,
    // the room's state is still structurally sound, so keep serving it.
    room.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Room {
    fn new(id: RoomId) -> Self {
        Self {
            id,
            capacity: 0,
            locked: false,
            owner: None,
            password: None,
            created_at: Timestamp::now(),
            members: Vec::new(),
            keep: None,
            empty_since: Instant::now(),
            closed: false,
            departed: Vec::new(),
        }
    }

    /// Room for the members it will hold, given its capacity: a `Vec`'s
    /// first push makes room for four, and a room of two (a call between
    /// two people, the common case) would carry two `Member`s it never
    /// holds, 464 bytes. A larger room still starts at four and grows.
    fn reserve_members(&mut self) {
        self.members
            .reserve_exact((self.capacity as usize).min(MEMBERS_RESERVED));
    }

    /// The room as the rules see it: `None` once its last member left.
    fn roster(&self) -> Option<&Self> {
        (!self.closed).then_some(self)
    }

    fn member(&self, id: Uuid) -> Option<&Member> {
        self.members.iter().find(|member| member.view.id == id)
    }

    fn member_mut(&mut self, id: Uuid) -> Option<&mut Member> {
        self.members.iter_mut().find(|member| member.view.id == id)
    }

    fn view(&self) -> RoomView {
        RoomView {
            id: self.id.clone(),
            capacity: self.capacity,
            locked: self.locked,
            owner: self.owner,
            members: self
                .members
                .iter()
                .map(|member| member.view.clone())
                .collect(),
            created_at: self.created_at,
        }
    }

    /// Puts a never-refused event in every member's inbox but `except`'s.
    fn broadcast(&mut self, body: &Arc<EventBody>, except: Option<Uuid>, limits: Limits) {
        for member in self
            .members
            .iter_mut()
            .filter(|member| Some(member.view.id) != except)
        {
            member.inbox.push(Arc::clone(body), limits);
            member.wake.wake();
        }
    }

    fn room_updated(&mut self, limits: Limits) {
        let body = EventBody::new(
            "room-updated",
            &RoomUpdatedData {
                room_id: &self.id,
                locked: self.locked,
                capacity: self.capacity,
                owner: self.owner,
            },
        );
        self.broadcast(&body, None, limits);
    }

    /// Removes a member and tells the others; the caller drops the token and,
    /// if the room is now closed, the map entry.
    fn remove(&mut self, index: usize, reason: LeaveReason, limits: Limits) -> Member {
        let mut gone = self.members.remove(index);
        let body = EventBody::new(
            "member-left",
            &MemberLeftData {
                member_id: gone.view.id,
                reason,
            },
        );
        // A member that timed out had no reader open.
        if gone.places.open() > 0 {
            let mut inbox = std::mem::take(&mut gone.inbox);
            inbox.push(Arc::clone(&body), limits);
            self.departed.push(Departed {
                id: gone.view.id,
                stream: gone.stream,
                inbox,
                places: Arc::clone(&gone.places),
            });
        }
        gone.wake.wake();
        self.broadcast(&body, None, limits);
        let heir = self
            .members
            .iter()
            .find(|member| member.may_own)
            .map(|member| member.view.id);
        let owner = room::owner_after_leave(self.owner, gone.view.id, heir);
        if owner != self.owner {
            self.owner = owner;
            self.room_updated(limits);
        }
        if self.members.is_empty() {
            self.closed = room::empty_room_closes(self.keep, Duration::ZERO);
            self.empty_since = Instant::now();
        }
        info!(room = %self.id, member = %gone.view.id, reason = reason.as_str(), "member left");
        gone
    }
}

impl Roster for Room {
    fn owner(&self) -> Option<Uuid> {
        self.owner
    }

    fn has(&self, member: Uuid) -> bool {
        self.member(member).is_some()
    }
}

impl MemoryHub {
    pub fn new(settings: Settings) -> Self {
        Self::with_listener(settings, None)
    }

    /// A hub whose rooms' changes `listener` hears of.
    pub fn with_listener(settings: Settings, listener: Option<Arc<dyn Listener>>) -> Self {
        Self {
            inner: Arc::new(Memory {
                rooms: DashMap::new(),
                tokens: DashMap::default(),
                settings,
                members: AtomicUsize::new(0),
                kept: AtomicUsize::new(0),
                readers: Arc::new(AtomicUsize::new(0)),
                listener,
            }),
        }
    }

    /// Tells the listener that `member` left `room`, and that the room
    /// closed if it did.
    fn notify_left(&self, room: &Room, member: Uuid, reason: LeaveReason) {
        self.notify(|| Notice::MemberLeft {
            room: room.id.clone(),
            member,
            reason,
        });
        if room.closed {
            self.notify(|| Notice::RoomClosed {
                room: room.id.clone(),
            });
        }
    }

    /// Tells the listener, if there is one; called with the room's lock
    /// held, so that it hears one room's changes in their order.
    fn notify(&self, notice: impl FnOnce() -> Notice) {
        if let Some(listener) = &self.inner.listener {
            listener.hear(notice());
        }
    }

    /// The member `token` opens, if it was issued and its member is there.
    fn member_of_token(&self, token: &Token<'_>) -> Option<MemberRef> {
        let issued = self.inner.tokens.get(&token.secret().selector())?;
        (issued.secret.matches(token.secret()) && issued.room == token.room_fingerprint())
            .then(|| issued.member.clone())
    }

    fn issue_token(&self, member: MemberRef) -> NewToken {
        loop {
            // A selector is 64 random bits: a clash is all but impossible, but
            // it would hand one member's lookups to another, so draw again.
            let new = NewToken::generate(&member.room);
            let token = new.token();
            let selector = token.secret().selector();
            if let dashmap::Entry::Vacant(slot) = self.inner.tokens.entry(selector) {
                slot.insert(Issued {
                    secret: token.secret().clone(),
                    room: token.room_fingerprint(),
                    member,
                });
                return new;
            }
        }
    }

    /// Lets go of what a removed member held outside its room.
    fn forget_member(&self, gone: &Member) {
        self.inner.tokens.remove(&gone.token_selector);
        self.inner.members.fetch_sub(1, Ordering::Relaxed);
    }

    /// Drops a closed room from the map, unless a new room took its id.
    fn forget_room(&self, room_id: &RoomId, room_arc: &Arc<Mutex<Room>>) {
        let removed = self
            .inner
            .rooms
            .remove_if(room_id, |_, current| Arc::ptr_eq(current, room_arc));
        // Its place among the kept rooms goes with it, once.
        if removed.is_some() && lock(room_arc).keep.is_some() {
            self.inner.kept.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn room(&self, room_id: &RoomId) -> Option<Arc<Mutex<Room>>> {
        self.inner.rooms.get(room_id).map(|room| Arc::clone(&room))
    }

    /// Runs `change` on the room under its lock, after `rule` allowed it
    /// (`None` to the rule when the room is not there).
    fn with_room<T>(
        &self,
        room_id: &RoomId,
        rule: impl FnOnce(Option<&Room>) -> Result<(), Refusal>,
        change: impl FnOnce(&mut Room) -> T,
    ) -> Result<T, Refusal> {
        let Some(room_arc) = self.room(room_id) else {
            // Nothing to change, whatever the rule says of no room.
            rule(None)?;
            return Err(Refusal::RoomNotFound);
        };
        let mut room = lock(&room_arc);
        rule(room.roster())?;
        Ok(change(&mut room))
    }

    fn join_now(&self, room_id: RoomId, spec: JoinSpec) -> Result<Joined, Refusal> {
        let memory = &*self.inner;
        let settings = &memory.settings;
        let place =
            Place::take(&memory.members, settings.max_members).ok_or(Refusal::TooManyMembers)?;
        loop {
            let room_arc = Arc::clone(
                &memory
                    .rooms
                    .entry(room_id.clone())
                    .or_insert_with(|| Arc::new(Mutex::new(Room::new(room_id.clone())))),
            );
            let mut room = lock(&room_arc);
            if room.closed {
                // Its last member left between our lookup and our lock.
                drop(room);
                self.forget_room(&room_id, &room_arc);
                continue;
            }
            // A room the service keeps is there without members too.
            let occupancy = (!room.members.is_empty() || room.keep.is_some()).then(|| Occupancy {
                members: room.members.len(),
                capacity: room.capacity,
                locked: room.locked,
            });
            let admitted = room::admit(occupancy, spec.capacity, settings.capacity_bounds())
                .and_then(|admission| {
                    let creating = matches!(admission, Admission::Create { .. });
                    room::password_unchanged(
                        spec.password_checked.as_deref(),
                        room.password.as_deref(),
                        creating,
                    )?;
                    Ok(admission)
                });
            let creating = match admitted {
                Ok(Admission::Create { capacity }) => {
                    room.capacity = capacity;
                    room.reserve_members();
                    room.created_at = Timestamp::now();
                    room.password = spec.password_hash.clone();
                    true
                }
                Ok(Admission::Enter) => false,
                Err(refusal) => {
                    if occupancy.is_none() {
                        // The room was made for this join only.
                        room.closed = true;
                        drop(room);
                        self.forget_room(&room_id, &room_arc);
                    }
                    return Err(refusal);
                }
            };

            let may_own = spec.may_own;
            let view = spec.into_view();
            let member_ref = MemberRef {
                room: room_id.clone(),
                member: view.id,
            };
            let token = self.issue_token(member_ref);
            let joined = EventBody::new("member-joined", &MemberJoinedData { member: &view });
            room.broadcast(&joined, None, settings.limits);
            let owner = room::owner_after_join(room.owner, view.id, may_own);
            let owns = owner == Some(view.id);
            if owner != room.owner {
                room.owner = owner;
                if !creating {
                    room.room_updated(settings.limits);
                }
            }
            let others = room
                .members
                .iter()
                .map(|member| member.view.clone())
                .collect();
            if creating {
                self.notify(|| Notice::RoomCreated {
                    room: room_id.clone(),
                });
            }
            self.notify(|| Notice::MemberJoined {
                room: room_id.clone(),
                member: view.clone(),
            });
            room.members.push(Member {
                view: view.clone(),
                token_selector: token.token().secret().selector(),
                inbox: Inbox::default(),
                wake: Arc::default(),
                places: Arc::default(),
                idle_since: Instant::now(),
                may_own,
                stream: 0,
            });
            place.keep();
            info!(room = %room_id, member = %view.id, created = creating, "member joined");
            return Ok(Joined {
                room_id: room_id.clone(),
                member: view,
                token,
                owner: owns,
                capacity: room.capacity,
                members: others,
            });
        }
    }

    fn create_now(&self, room_id: RoomId, spec: RoomSpec) -> Result<RoomView, Refusal> {
        let memory = &*self.inner;
        let capacity = room::new_room_capacity(spec.capacity, memory.settings.capacity_bounds())?;
        let mut room = Room::new(room_id.clone());
        room.capacity = capacity;
        room.reserve_members();
        room.locked = spec.locked;
        room.password = spec.password_hash;
        room.keep = Some(spec.empty_timeout);
        let view = room.view();
        let room_arc = Arc::new(Mutex::new(room));
        loop {
            let slot = memory.rooms.entry(room_id.clone());
            if let dashmap::Entry::Occupied(taken) = &slot {
                let there = Arc::clone(taken.get());
                if lock(&there).closed {
                    // On its way out of the map: see it out, as a join does.
                    drop(slot);
                    self.forget_room(&room_id, &there);
                    continue;
                }
            }
            let exists = matches!(slot, dashmap::Entry::Occupied(_));
            let place = (!exists)
                .then(|| Place::take(&memory.kept, memory.settings.max_kept_rooms))
                .flatten();
            room::may_create(exists, place.is_some())?;
            // Under the map's shard: nobody reaches the room before its
            // notice is out.
            let guard = lock(&room_arc);
            slot.insert(Arc::clone(&room_arc));
            if let Some(place) = place {
                place.keep();
            }
            self.notify(|| Notice::RoomCreated {
                room: room_id.clone(),
            });
            drop(guard);
            info!(room = %room_id, "room made in advance");
            return Ok(view);
        }
    }

    fn end_now(&self, room_id: &RoomId) -> Result<(), Refusal> {
        let limits = self.inner.settings.limits;
        let room_arc = self.room(room_id).ok_or(Refusal::RoomNotFound)?;
        let mut room = lock(&room_arc);
        if room.closed {
            return Err(Refusal::RoomNotFound);
        }
        // Nobody is to own a room that is ending: no owner passes on as
        // its members go (`close.lua` passes none on either).
        room.owner = None;
        while !room.members.is_empty() {
            let gone = room.remove(0, LeaveReason::Removed, limits);
            self.notify_left(&room, gone.view.id, LeaveReason::Removed);
            self.forget_member(&gone);
        }
        // A kept room outlives its last member: it closes here.
        if !room.closed {
            room.closed = true;
            self.notify(|| Notice::RoomClosed {
                room: room_id.clone(),
            });
        }
        drop(room);
        self.forget_room(room_id, &room_arc);
        info!(room = %room_id, "room ended");
        Ok(())
    }

    fn update_now(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
        change: &MemberChange,
    ) -> Result<MemberView, Refusal> {
        let limits = self.inner.settings.limits;
        self.with_room(
            room_id,
            |room| room::may_update(actor, target, room),
            |room| {
                let member = room.member_mut(target)?;
                change.apply(&mut member.view);
                let view = member.view.clone();
                let body = EventBody::new("member-updated", &MemberUpdatedData { member: &view });
                room.broadcast(&body, Some(target), limits);
                Some(view)
            },
        )?
        .ok_or(Refusal::MemberNotFound)
    }

    fn remove_now(&self, room_id: &RoomId, target: Uuid, actor: Actor) -> Result<(), Refusal> {
        let Some(room_arc) = self.room(room_id) else {
            return room::removal(actor, target, None::<&Room>).map(drop);
        };
        let mut room = lock(&room_arc);
        let reason = room::removal(actor, target, room.roster())?;
        let index = room
            .members
            .iter()
            .position(|member| member.view.id == target)
            .ok_or(Refusal::MemberNotFound)?;
        let gone = room.remove(index, reason, self.inner.settings.limits);
        let closed = room.closed;
        self.notify_left(&room, gone.view.id, reason);
        drop(room);
        self.forget_member(&gone);
        if closed {
            self.forget_room(room_id, &room_arc);
        }
        Ok(())
    }

    fn send_now(
        &self,
        room_id: &RoomId,
        from: Sender,
        to: Option<Uuid>,
        body: Arc<EventBody>,
    ) -> Result<usize, Refusal> {
        let limits = self.inner.settings.limits;
        let Some(room_arc) = self.room(room_id) else {
            return room::recipients(from, to, None::<&Room>).map(|_| 0);
        };
        let mut room = lock(&room_arc);
        match room::recipients(from, to, room.roster())? {
            Recipients::One(to) => {
                let recipient = room.member_mut(to).ok_or(Refusal::MemberNotFound)?;
                recipient
                    .inbox
                    .push_signal(body, limits)
                    .map_err(|_| Refusal::InboxFull)?;
                recipient.wake.wake();
                Ok(1)
            }
            Recipients::AllBut(sender) => {
                let size = body.size();
                let recipients = || {
                    room.members
                        .iter()
                        .filter(|member| Some(member.view.id) != sender)
                };
                if !recipients().all(|member| member.inbox.can_accept(size, limits)) {
                    return Err(Refusal::InboxFull);
                }
                let mut count = 0;
                for member in room
                    .members
                    .iter_mut()
                    .filter(|member| Some(member.view.id) != sender)
                {
                    member.inbox.push(Arc::clone(&body), limits);
                    member.wake.wake();
                    count += 1;
                }
                Ok(count)
            }
        }
    }

    fn rooms_now(&self) -> Vec<RoomSummary> {
        let arcs: Vec<_> = self
            .inner
            .rooms
            .iter()
            .map(|entry| Arc::clone(entry.value()))
            .collect();
        let mut rooms: Vec<RoomSummary> = arcs
            .iter()
            .filter_map(|room_arc| {
                let room = lock(room_arc);
                // A room a join is making has no member yet, nor a keep.
                (!room.members.is_empty() || (room.keep.is_some() && !room.closed)).then(|| {
                    RoomSummary {
                        id: room.id.clone(),
                        capacity: room.capacity,
                        locked: room.locked,
                        member_count: room.members.len(),
                        created_at: room.created_at,
                    }
                })
            })
            .collect();
        rooms.sort_by(|a, b| a.id.cmp(&b.id));
        rooms
    }

    fn open_now(
        &self,
        member_ref: &MemberRef,
        kind: ReaderKind,
        after: Option<u64>,
    ) -> Result<MemoryReader, Refusal> {
        let streaming = kind == ReaderKind::Stream;
        let room_arc = self.room(&member_ref.room).ok_or(Refusal::CallerGone)?;
        let mut room = lock(&room_arc);
        let member = room
            .member_mut(member_ref.member)
            .ok_or(Refusal::CallerGone)?;
        member.places.enter(
            streaming,
            &self.inner.readers,
            self.inner.settings.max_readers,
        )?;
        let inbox = &mut member.inbox;
        let (cursor, stream) = match (kind, after) {
            (ReaderKind::Stream, resume) => {
                member.stream += 1;
                let cursor = match resume {
                    Some(id) => {
                        inbox.acknowledge(id);
                        id.min(inbox.last_id())
                    }
                    None => inbox.delivered(),
                };
                (cursor, Some(member.stream))
            }
            (ReaderKind::Poll, after) => {
                let after = after.unwrap_or(inbox.acked());
                inbox.acknowledge(after);
                (after.min(inbox.last_id()), None)
            }
        };
        let places = Arc::clone(&member.places);
        let wake = Arc::clone(&member.wake);
        // Ends the stream this one replaces.
        wake.wake();
        drop(room);
        Ok(MemoryReader {
            readers: Arc::clone(&self.inner.readers),
            room: room_arc,
            member: member_ref.member,
            stream,
            places,
            cursor,
            wake,
            ended: false,
        })
    }

    /// Removes the members nobody has read for the member timeout by `now`.
    fn reap_at(&self, now: Instant) -> usize {
        let timeout = self.inner.settings.member_timeout;
        let limits = self.inner.settings.limits;
        let arcs: Vec<_> = self
            .inner
            .rooms
            .iter()
            .map(|entry| (entry.key().clone(), Arc::clone(entry.value())))
            .collect();
        let mut reaped = 0;
        for (room_id, room_arc) in arcs {
            let mut room = lock(&room_arc);
            while let Some(index) = room.members.iter().position(|member| {
                member.places.open() == 0
                    && now.saturating_duration_since(member.idle_since) >= timeout
            }) {
                let gone = room.remove(index, LeaveReason::Timeout, limits);
                self.notify_left(&room, gone.view.id, LeaveReason::Timeout);
                self.forget_member(&gone);
                reaped += 1;
            }
            if !room.closed
                && room.members.is_empty()
                && room::empty_room_closes(
                    room.keep,
                    now.saturating_duration_since(room.empty_since),
                )
            {
                room.closed = true;
                self.notify(|| Notice::RoomClosed {
                    room: room_id.clone(),
                });
                info!(room = %room_id, "kept room closed, empty for its timeout");
            }
            let closed = room.closed;
            drop(room);
            if closed {
                self.forget_room(&room_id, &room_arc);
            }
        }
        reaped
    }
}

/// Every call is done under one room's lock, without waiting: each returns
/// a future that is ready as it is made, so that calling the memory backend
/// through the trait costs no more than calling the function.
impl Backend for MemoryHub {
    type Reader = MemoryReader;

    fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    fn ready(&self) -> impl Future<Output = Result<(), Refusal>> + Send {
        ready(Ok(()))
    }

    fn authenticate(
        &self,
        token: &Token<'_>,
    ) -> impl Future<Output = Result<Option<MemberRef>, Refusal>> + Send {
        ready(Ok(self.member_of_token(token)))
    }

    fn join(
        &self,
        room_id: RoomId,
        spec: JoinSpec,
    ) -> impl Future<Output = Result<Joined, Refusal>> + Send {
        ready(self.join_now(room_id, spec))
    }

    fn create_room(
        &self,
        room_id: RoomId,
        spec: RoomSpec,
    ) -> impl Future<Output = Result<RoomView, Refusal>> + Send {
        ready(self.create_now(room_id, spec))
    }

    fn end_room(&self, room_id: &RoomId) -> impl Future<Output = Result<(), Refusal>> + Send {
        ready(self.end_now(room_id))
    }

    fn update_member(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
        change: MemberChange,
    ) -> impl Future<Output = Result<MemberView, Refusal>> + Send {
        ready(self.update_now(room_id, target, actor, &change))
    }

    fn remove_member(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
    ) -> impl Future<Output = Result<(), Refusal>> + Send {
        ready(self.remove_now(room_id, target, actor))
    }

    fn send_signal(
        &self,
        room_id: &RoomId,
        from: Sender,
        to: Option<Uuid>,
        body: Arc<EventBody>,
    ) -> impl Future<Output = Result<usize, Refusal>> + Send {
        ready(self.send_now(room_id, from, to, body))
    }

    fn room_view(
        &self,
        room_id: &RoomId,
        actor: Actor,
    ) -> impl Future<Output = Result<RoomView, Refusal>> + Send {
        ready(self.with_room(
            room_id,
            |room| room::may_view(actor, room),
            |room| room.view(),
        ))
    }

    fn set_locked(
        &self,
        room_id: &RoomId,
        actor: Actor,
        locked: bool,
    ) -> impl Future<Output = Result<RoomView, Refusal>> + Send {
        let limits = self.inner.settings.limits;
        ready(self.with_room(
            room_id,
            |room| room::may_lock(actor, room),
            |room| {
                if room.locked != locked {
                    room.locked = locked;
                    room.room_updated(limits);
                }
                room.view()
            },
        ))
    }

    fn room_password(
        &self,
        room_id: &RoomId,
    ) -> impl Future<Output = Result<Option<String>, Refusal>> + Send {
        let password = self.room(room_id).and_then(|room| {
            let room = lock(&room);
            room.roster().and(room.password.clone())
        });
        ready(Ok(password))
    }

    fn set_password(
        &self,
        room_id: &RoomId,
        actor: Actor,
        hash: Option<String>,
    ) -> impl Future<Output = Result<RoomView, Refusal>> + Send {
        ready(self.with_room(
            room_id,
            |room| room::may_lock(actor, room),
            |room| {
                room.password = hash;
                room.view()
            },
        ))
    }

    fn counts(&self) -> impl Future<Output = Result<(usize, usize), Refusal>> + Send {
        ready(Ok((
            self.inner.rooms.len(),
            self.inner.members.load(Ordering::Relaxed),
        )))
    }

    fn rooms(&self) -> impl Future<Output = Result<Vec<RoomSummary>, Refusal>> + Send {
        ready(Ok(self.rooms_now()))
    }

    fn open_reader(
        &self,
        member: &MemberRef,
        kind: ReaderKind,
        after: Option<u64>,
    ) -> impl Future<Output = Result<MemoryReader, Refusal>> + Send {
        ready(self.open_now(member, kind, after))
    }

    fn reap(&self) -> impl Future<Output = Result<usize, Refusal>> + Send {
        ready(Ok(self.reap_at(Instant::now())))
    }
}

/// One open reader of an inbox in memory. While it exists, the member is
/// not reaped.
pub struct MemoryReader {
    /// The server's count of open readers, given back on drop.
    readers: Arc<AtomicUsize>,
    room: Arc<Mutex<Room>>,
    member: Uuid,
    /// The stream generation, for streams; polls never supersede anything.
    stream: Option<u64>,
    /// The member's reader places, this one's among them.
    places: Arc<MemberPlaces>,
    cursor: u64,
    wake: Arc<Readers>,
    /// Whether it read what its member left it (`Departed`): it is done.
    ended: bool,
}

/// The rest of the inbox `member` left its reader (`Departed`), if it went
/// with the reader open, once: `ended` says the reader had it; then the
/// reader is done.
fn last_read(
    room: &mut Room,
    member: Uuid,
    stream: Option<u64>,
    cursor: &mut u64,
    ended: &mut bool,
    wake: &Readers,
) -> Option<Batch> {
    if std::mem::replace(ended, true) {
        return None;
    }
    let departed = room.departed.iter_mut().find(|departed| {
        departed.id == member && stream.is_none_or(|stream| stream == departed.stream)
    })?;
    let (batch, moved) = departed.inbox.read_after(*cursor);
    *cursor = moved;
    // Looked at again, to end: nothing else will wake it.
    wake.wake();
    (!batch.is_empty()).then_some(batch)
}

impl InboxReader for MemoryReader {
    fn cursor(&self) -> u64 {
        self.cursor
    }

    fn readers(&self) -> Arc<Readers> {
        Arc::clone(&self.wake)
    }

    /// Always ready: the inbox is behind a lock, not a round trip.
    fn poll_read(&mut self, _: &mut Context<'_>) -> Poll<Option<Batch>> {
        let Self {
            room,
            member: id,
            stream,
            cursor,
            wake,
            ended,
            ..
        } = self;
        let mut room = lock(room);
        let Some(member) = room.member_mut(*id) else {
            return Poll::Ready(last_read(&mut room, *id, *stream, cursor, ended, wake));
        };
        if stream.is_some_and(|stream| stream != member.stream) {
            return Poll::Ready(None);
        }
        let (batch, moved) = member.inbox.read_after(*cursor);
        *cursor = moved;
        Poll::Ready(Some(batch))
    }

    fn is_reading(&self) -> bool {
        false
    }
}

impl Drop for MemoryReader {
    fn drop(&mut self) {
        let mut room = lock(&self.room);
        // Under the lock under which readers take their places.
        self.places.leave(self.stream.is_some(), &self.readers);
        if let Some(member) = room.member_mut(self.member) {
            if member.places.open() == 0 {
                member.idle_since = Instant::now();
            }
        } else {
            // The last of a departed member's readers takes its inbox away.
            room.departed.retain(|departed| {
                !(departed.id == self.member && Arc::ptr_eq(&departed.places, &self.places))
                    || departed.places.open() > 0
            });
        }
    }
}
