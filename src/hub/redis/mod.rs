//! The Redis backend: the state of every room lives in Redis, shared by all
//! the nodes that point at it, so a load balancer may send any request to
//! any node.
//!
//! What lives where:
//!
//! - per room, under the hash tag `{room}` so a Redis Cluster keeps a room in
//!   one slot: the room hash, the members in join order, and per member a
//!   hash (view, inbox counters, idle clock, stream generation), the inbox
//!   as a Redis stream, the nodes holding one of its readers, and its
//!   token's entry; with webhooks, the room's notices;
//! - outside any room, under the hash tag `{index}`: the room index (for
//!   `GET /rooms`), the idle index the reaper scans, which is also the
//!   member count, the index of the rooms the service made in advance
//!   (`kept`), and, with webhooks, the index of the rooms with notices
//!   waiting (`noticed`) and the lease on posting them;
//! - on each node, only what cannot be shared: its open readers, what wakes
//!   them and the signals that came with the wake-ups (`local`), and the
//!   token entries it looked up lately.
//!
//! Every change to a room is one call of a Lua function (`*.lua` beside
//! this file, one library loaded by each node), so it is atomic however
//! many nodes race: capacity, lock, inbox bounds. The one exception is a
//! member's signal to one member once this node knows the end of the
//! recipient's inbox from a function's answer: a plain append that Redis
//! takes only if nothing entered the inbox since (`tail`). Either way a
//! relayed signal costs one round trip; its token was looked up by an
//! earlier one (`members::TokenCache`). A function that puts an event in
//! an inbox wakes that member's readers, a signal travelling with its
//! wake-up: on this node in the function's answer, on the others in a
//! message on their channel (`link`).
//!
//! A call that takes more than one round trip and must make all of them
//! (a join, a removal, opening a reader) runs to its end whatever its
//! request does (`finish`): a request is dropped when its client hangs
//! up, and Redis would be left half-changed (a member counted and never
//! removed, a room gone but still indexed, a reader counted that nobody
//! closes).
//!
//! A node keeps a fixed set of Redis connections whatever it serves: one
//! for commands and one for its subscription, each multiplexed (to one
//! Redis) or routing by slot (to a Cluster), and on one Redis a third that
//! carries only the signals' plain appends (`lane`). All reconnect by
//! themselves; while Redis is unreachable, calls are refused at once
//! (`Refusal::Unavailable`).
//!
//! The code is split by concern: `link` connects and subscribes; `script`
//! runs the Lua functions and reads their answers; `members` holds the
//! token lookups, joins and removals; `notices` the notices kept for
//! webhooks; `kept` the rooms the service makes and ends; `rooms` signals, room views, locks
//! and the room list; `tail` appends a member's signal to an inbox whose
//! end this node knows, on one Redis through `lane`, a connection of its
//! own; `readers` opens, reads and closes this node's inbox
//! readers, and `local` is what it keeps of their members; `reap` removes
//! idle members; `format` keeps nodes that write another format off this
//! node's prefix; `finish` runs a call to its end when its request is
//! dropped.

mod finish;
mod format;
mod kept;
mod lane;
mod link;
mod local;
mod members;
mod notices;
mod readers;
mod reap;
mod rooms;
mod script;
mod tail;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Instant;

use tracing::{info, warn};
use uuid::Uuid;

use self::finish::Finish;
pub use self::link::Primary;
use self::link::{Conn, Links, LocalMembers, ShardChannels, wake_all};
pub use self::notices::{NoticedRoom, StoredNotice};
pub use self::readers::RedisReader;
use self::script::Scripts;
use super::{Backend, JoinSpec, Joined, MemberChange, MemberRef, ReaderKind, RoomSpec, Settings};
use crate::domain::Refusal;
use crate::domain::event::EventBody;
use crate::domain::room::{Actor, Sender};
use crate::domain::token::Token;
use crate::hub::drawn::MemberKey;
use crate::model::{MemberView, RoomId, RoomSummary, RoomView};

/// A Redis call failed: logged here, and to the client the shared state
/// cannot be reached just now.
fn unavailable(error: ::redis::RedisError) -> Refusal {
    warn!(%error, "redis call failed");
    Refusal::Unavailable
}

/// The handle every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct RedisHub {
    inner: Arc<Shared>,
}

struct Shared {
    settings: Settings,
    /// Where the primary is.
    primary: Primary,
    /// The connections to it: replaced when Sentinel names another.
    links: std::sync::RwLock<Links>,
    scripts: Scripts,
    /// Key prefix, `--redis-prefix`.
    prefix: String,
    /// This process's name among the nodes, fresh at every start.
    node: String,
    /// `<prefix>:wake:`, which a node's id completes into its channel.
    wake_prefix: String,
    /// Open readers on this node, by member.
    local: Arc<LocalMembers>,
    /// On a Cluster, the rooms whose wake-up channel this node subscribes to.
    shards: ShardChannels,
    /// Token entries looked up lately (`members::TokenCache`).
    tokens: members::TokenCache,
    /// The inboxes' tails this node knows, to append signals to (`tail`).
    tails: Arc<tail::Tails>,
    /// Open readers on this node; bounded by `max_readers`.
    readers: AtomicUsize,
    /// When `heartbeat` last ran.
    last_heartbeat: std::sync::Mutex<Option<Instant>>,
    /// Where the next reconciliation of the room index starts (`HSCAN`).
    index_cursor: AtomicU64,
    /// Room index entries seen naming no room, with their epoch and since
    /// when; at most `rooms::MISSING_ROOMS_MAX`.
    missing_rooms: std::sync::Mutex<HashMap<RoomId, (String, Instant)>>,
}

impl Shared {
    fn missing_rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, (String, Instant)>> {
        // Nothing panics while holding it; a poisoned map is still whole.
        self.missing_rooms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RedisHub {
    /// Connects to the primary and subscribes to this node's channel.
    pub async fn connect(
        primary: Primary,
        prefix: String,
        settings: Settings,
    ) -> Result<Self, ::redis::RedisError> {
        let local: Arc<LocalMembers> = Arc::default();
        let tails = Arc::new(tail::Tails::default());
        let node = Uuid::new_v4().simple().to_string();
        // Empty on a Cluster: wake-ups go to each room's shard channel.
        let wake_prefix = if primary.is_cluster() {
            String::new()
        } else {
            format!("{prefix}:wake:")
        };
        let presence = format::channel(&prefix, format::FORMAT);
        let mut links = Links::open(
            &primary,
            &primary.url().await?,
            &format!("{wake_prefix}{node}"),
            &presence,
            &local,
            &tails,
        )
        .await?;
        let present = format::present(&mut links.connection, &prefix, primary.is_cluster()).await?;
        format::check(&prefix, &present)?;
        let scripts = Scripts::new();
        scripts.load(&mut links.connection.clone()).await?;
        info!(%node, "connected to redis");
        Ok(Self {
            inner: Arc::new(Shared {
                settings,
                primary,
                links: std::sync::RwLock::new(links),
                scripts,
                prefix,
                node,
                local,
                shards: ShardChannels::default(),
                tokens: members::TokenCache::default(),
                tails,
                wake_prefix,
                readers: AtomicUsize::new(0),
                last_heartbeat: std::sync::Mutex::new(None),
                index_cursor: AtomicU64::new(0),
                missing_rooms: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The links as they are now; held only to clone what a call needs,
    /// never across an await.
    fn links(&self) -> std::sync::RwLockReadGuard<'_, Links> {
        // Nothing panics while holding it; poisoned links still connect.
        self.inner
            .links
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// With Sentinel: moves to the primary Sentinel names, when it is
    /// another than the one this node talks to (a failover), and has every
    /// reader here look again. Called at every reaper tick.
    async fn follow_primary(&self) -> Result<(), Refusal> {
        if !matches!(self.inner.primary, Primary::Sentinel { .. }) {
            return Ok(());
        }
        let url = self.inner.primary.url().await.map_err(unavailable)?;
        if url == self.links().url {
            return Ok(());
        }
        let channel = format!("{}{}", self.inner.wake_prefix, self.inner.node);
        let links = Links::open(
            &self.inner.primary,
            &url,
            &channel,
            &format::channel(&self.inner.prefix, format::FORMAT),
            &self.inner.local,
            &self.inner.tails,
        )
        .await
        .map_err(unavailable)?;
        // Replicas have the functions already; a primary put in by hand may not.
        self.inner
            .scripts
            .load(&mut links.connection.clone())
            .await
            .map_err(unavailable)?;
        *self
            .inner
            .links
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = links;
        warn!(primary = %url, "redis failed over; following the new primary");
        // It may have lost the last entries of the tails known here.
        self.inner.tails.forget_all();
        wake_all(&self.inner.local);
        Ok(())
    }

    fn connection(&self) -> Conn {
        self.links().connection.clone()
    }

    /// The appends' own connection, on one Redis (`lane`).
    fn lane(&self) -> Option<Arc<lane::Lane>> {
        self.links().lane.clone()
    }

    fn subscriber(&self) -> Conn {
        self.links().subscriber.clone()
    }

    /// The channel of `room` that brings this node its wake-ups on a
    /// Cluster (`link.rs`).
    fn shard_channel(&self, room: &RoomId) -> String {
        self.shard_channel_of(room, &self.inner.node)
    }

    /// The channel of `room` that brings `node` its wake-ups on a Cluster.
    fn shard_channel_of(&self, room: &RoomId, node: &str) -> String {
        self.room_key(room, format_args!("w:{node}"))
    }

    /// A key among `room`'s: `room`, `m:<member>`…; with an empty `name`,
    /// the prefix they share, hash tag included, which the functions take
    /// as KEYS[1] (`prelude.lua`). `name` is written into the key as it is
    /// (`format_args!`), so that a signal's keys cost one string each.
    fn room_key(&self, room: &RoomId, name: impl std::fmt::Display) -> String {
        room_key(&self.inner.prefix, room, name)
    }

    /// A member's key among `room`'s: `i:<member>`, its inbox,
    /// `n:<member>`, its readers' nodes, or `m:<member>`, its view.
    fn member_key(&self, room: &RoomId, kind: &str, member: Uuid) -> String {
        member_key(&self.inner.prefix, room, kind, member)
    }

    /// A key outside any room: `idle` or `rooms`. Both share the hash tag
    /// `{index}`, so that on a Cluster the pipeline of a join that touches
    /// both stays in one slot.
    fn key(&self, name: &str) -> String {
        format!("{}:{{index}}:{name}", self.inner.prefix)
    }

    /// The key of a token's entry among its room's keys.
    fn token_key(&self, room: &RoomId, token: &Token<'_>) -> String {
        self.room_key(room, format_args!("t:{:016x}", token.secret().selector()))
    }

    fn idle_entry(room: &RoomId, member: Uuid) -> String {
        format!("{room} {member}")
    }

    /// Runs `call` on a clone of this hub and waits for it. The caller's
    /// future may be dropped (its client hung up); the call is not
    /// (`finish.rs`), so a call of several dependent round trips makes all
    /// of them, or undoes what it made, whatever happens to the request.
    async fn detached<T, F>(&self, call: impl FnOnce(RedisHub) -> F) -> Result<T, Refusal>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Refusal>> + Send + 'static,
    {
        Finish::new(call(self.clone())).await
    }

    /// Wakes a member's readers on this node, with the signal `event`
    /// (its id and body) when there is one.
    fn wake_local(&self, room: &RoomId, member: Uuid, event: Option<(u64, &Arc<EventBody>)>) {
        if let Some(local) = self.inner.local.get(&MemberKey::new(room, member)) {
            match event {
                Some((id, body)) => local.wake_with(id, Arc::clone(body)),
                None => local.wake_plain(),
            }
        }
    }

    /// Whether Redis answers on both connections: the subscription's too,
    /// or wake-ups from other nodes would be lost. A PING on a broken
    /// connection also makes it reconnect (and subscribe again).
    async fn ping(&self) -> Result<(), Refusal> {
        for mut connection in [self.connection(), self.subscriber()] {
            let pong: String = ::redis::cmd("PING")
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            if pong != "PONG" {
                return Err(Refusal::Unavailable);
            }
        }
        Ok(())
    }
}

impl Backend for RedisHub {
    type Reader = RedisReader;

    fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    async fn ready(&self) -> Result<(), Refusal> {
        self.ping().await
    }

    async fn authenticate(&self, token: &Token<'_>) -> Result<Option<MemberRef>, Refusal> {
        self.member_of_token(token, false).await
    }

    async fn authenticate_recent(&self, token: &Token<'_>) -> Result<Option<MemberRef>, Refusal> {
        self.member_of_token(token, true).await
    }

    async fn join(&self, room_id: RoomId, spec: JoinSpec) -> Result<Joined, Refusal> {
        self.detached(|hub| async move { hub.add_member(room_id, spec).await })
            .await
    }

    async fn create_room(&self, room_id: RoomId, spec: RoomSpec) -> Result<RoomView, Refusal> {
        self.detached(|hub| async move { hub.create(room_id, spec).await })
            .await
    }

    async fn end_room(&self, room_id: &RoomId) -> Result<(), Refusal> {
        self.end(room_id).await
    }

    async fn update_member(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
        change: MemberChange,
    ) -> Result<MemberView, Refusal> {
        self.update(room_id, target, actor, &change).await
    }

    async fn remove_member(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
    ) -> Result<(), Refusal> {
        self.remove_by(room_id, target, actor).await
    }

    async fn send_signal(
        &self,
        room_id: &RoomId,
        from: Sender,
        to: Option<Uuid>,
        body: Arc<EventBody>,
    ) -> Result<usize, Refusal> {
        // To its end: once Redis may have taken the signal, its readers
        // are woken whether or not the client waits for the 202.
        let room_id = room_id.clone();
        self.detached(|hub| async move { hub.signal(&room_id, from, to, body).await })
            .await
    }

    async fn room_view(&self, room_id: &RoomId, actor: Actor) -> Result<RoomView, Refusal> {
        self.room_script(room_id, actor, "view", None).await
    }

    async fn set_locked(
        &self,
        room_id: &RoomId,
        actor: Actor,
        locked: bool,
    ) -> Result<RoomView, Refusal> {
        self.room_script(room_id, actor, if locked { "lock" } else { "unlock" }, None)
            .await
    }

    async fn room_password(&self, room_id: &RoomId) -> Result<Option<String>, Refusal> {
        ::redis::cmd("HGET")
            .arg(self.room_key(room_id, "room"))
            .arg("pw")
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)
    }

    async fn set_password(
        &self,
        room_id: &RoomId,
        actor: Actor,
        hash: Option<String>,
    ) -> Result<RoomView, Refusal> {
        let hash = hash.unwrap_or_default();
        self.room_script(room_id, actor, "password", Some(&hash))
            .await
    }

    async fn counts(&self) -> Result<(usize, usize), Refusal> {
        self.count_all().await
    }

    async fn rooms(&self) -> Result<Vec<RoomSummary>, Refusal> {
        self.list_rooms().await
    }

    async fn open_reader(
        &self,
        member: &MemberRef,
        kind: ReaderKind,
        after: Option<u64>,
    ) -> Result<RedisReader, Refusal> {
        self.open(member, kind, after).await
    }

    async fn reap(&self) -> Result<usize, Refusal> {
        self.reap_idle().await
    }
}

/// See `RedisHub::room_key`.
fn room_key(prefix: &str, room: &RoomId, name: impl std::fmt::Display) -> String {
    format!("{prefix}:{{{room}}}:{name}")
}

/// `room_key(prefix, room, "<kind>:<member>")`, written without `format!`,
/// which spent a thousand instructions on a key, two keys on every signal
/// (bench/HISTORY.md, round 17).
fn member_key(prefix: &str, room: &RoomId, kind: &str, member: Uuid) -> String {
    let mut uuid = Uuid::encode_buffer();
    member_key_parts(
        prefix,
        room,
        kind,
        member.hyphenated().encode_lower(&mut uuid),
    )
    .concat()
}

/// The parts `member_key` joins, `member` written out: the appends' own
/// connection writes them into its command as they are (`tail::Append`).
fn member_key_parts<'a>(
    prefix: &'a str,
    room: &'a RoomId,
    kind: &'a str,
    member: &'a str,
) -> [&'a str; 7] {
    [prefix, ":{", room.as_str(), "}:", kind, ":", member]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_key_is_the_room_key_of_its_kind_and_id() {
        let room = RoomId::parse("lobby.1").expect("a room id");
        let member = Uuid::new_v4();
        for kind in ["i", "n", "m"] {
            assert_eq!(
                member_key("sp", &room, kind, member),
                room_key("sp", &room, format_args!("{kind}:{member}")),
            );
        }
        assert_eq!(
            member_key("sp", &room, "i", member),
            format!("sp:{{lobby.1}}:i:{member}")
        );
    }
}
