//! The Redis backend: the state of every room lives in Redis, shared by all
//! the nodes that point at it, so a load balancer may send any request to
//! any node.
//!
//! What lives where:
//!
//! - per room, under the hash tag `{room}` so a Redis Cluster keeps a room in
//!   one slot: the room hash, the members in join order, and per member a
//!   hash (view, inbox counters, idle clock, stream generation), the inbox
//!   as a Redis stream, and the set of nodes holding one of its readers;
//! - outside any room: the token index, the room index (for `GET /rooms`),
//!   the idle index the reaper scans, and the member count;
//! - on each node, only what cannot be shared: its open readers and the
//!   `Readers` that wakes them.
//!
//! Every change to a room is one Lua script (`*.lua` beside this file), so
//! it is atomic however many nodes race: capacity, lock, inbox bounds. A
//! relayed signal costs two round trips: the token lookup and the script.
//! A script that puts an event in an inbox wakes that member's readers: on
//! this node directly, on the others by publishing to their own channel.
//!
//! A call that takes more than one round trip and must make all of them
//! (a join, a removal, opening a reader) runs on a task of its own: a
//! request is dropped when its client hangs up, and Redis would be left
//! half-changed (a member counted and never removed, a room gone but still
//! indexed, a reader counted that nobody closes).
//!
//! A node keeps two Redis connections whatever it serves: one multiplexed
//! connection for commands and one for its subscription. Both reconnect by
//! themselves; while Redis is unreachable, calls are refused at once
//! (`Refusal::Unavailable`).

//!
//! The code is split by concern: `script` runs the Lua scripts and reads
//! their answers; `members` holds the token index, joins and removals;
//! `rooms` signals, room views, locks and the room list; `readers` opens,
//! reads and closes this node's inbox readers; `reap` removes idle members.

mod members;
mod readers;
mod reap;
mod rooms;
mod script;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ProtocolVersion, PushInfo, PushKind, Value};
use dashmap::DashMap;
use tracing::{error, info, warn};
use uuid::Uuid;

pub use self::readers::RedisReader;
use self::script::Scripts;
use super::places::MemberPlaces;
use super::wake::Readers;
use super::{Backend, JoinSpec, Joined, MemberRef, ReaderKind, Settings};
use crate::domain::Refusal;
use crate::domain::event::EventBody;
use crate::domain::room::Actor;
use crate::domain::token::Token;
use crate::model::{RoomId, RoomSummary, RoomView};

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
    connection: ConnectionManager,
    /// The subscription's connection, pinged at every reaper tick so that
    /// it reconnects after an outage even though nothing else is sent on it.
    subscriber: ConnectionManager,
    scripts: Scripts,
    /// Key prefix, `--redis-prefix`.
    prefix: String,
    /// This process's name among the nodes, fresh at every start.
    node: String,
    /// `<prefix>:wake:`, which a node's id completes into its channel.
    wake_prefix: String,
    /// Open readers on this node, by member.
    local: Arc<DashMap<(RoomId, Uuid), LocalMember>>,
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

#[derive(Default)]
struct LocalMember {
    wake: Arc<Readers>,
    /// Its readers on this node; the entry goes with the last.
    places: Arc<MemberPlaces>,
}

impl RedisHub {
    /// Connects to Redis at `url` and subscribes to this node's channel.
    pub async fn connect(
        url: &str,
        prefix: String,
        settings: Settings,
    ) -> Result<Self, ::redis::RedisError> {
        let info = ::redis::IntoConnectionInfo::into_connection_info(url)?;
        // RESP3, for the subscription's messages on a multiplexed connection.
        let redis_settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(redis_settings))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;

        let local: Arc<DashMap<(RoomId, Uuid), LocalMember>> = Arc::new(DashMap::new());
        let node = Uuid::new_v4().simple().to_string();
        let wake_prefix = format!("{prefix}:wake:");
        let channel = format!("{wake_prefix}{node}");
        let wake_local = Arc::clone(&local);
        let lost = Arc::new(AtomicBool::new(false));
        // Runs on the connection's own task, for each message: nothing
        // queues, whatever the rate of wake-ups.
        let on_push = move |push: PushInfo| {
            match push.kind {
                PushKind::Message => {
                    if let Some(Value::BulkString(text)) = push.data.get(1) {
                        wake_from_message(&wake_local, text);
                    }
                }
                PushKind::Disconnection => lost.store(true, Ordering::Relaxed),
                // Subscribed again after an outage: whatever was published
                // meanwhile is lost, so every reader here looks again.
                PushKind::Subscribe if lost.swap(false, Ordering::Relaxed) => {
                    for member in wake_local.iter() {
                        member.wake.wake();
                    }
                }
                _ => {}
            }
            Ok::<(), ::redis::aio::SendError>(())
        };
        let mut subscriber = ConnectionManager::new_with_config(
            client,
            config
                .set_push_sender(on_push)
                .set_automatic_resubscription(),
        )
        .await?;
        subscriber.subscribe(&channel).await?;
        info!(%node, "connected to redis");
        Ok(Self {
            inner: Arc::new(Shared {
                settings,
                connection,
                subscriber,
                scripts: Scripts::new(),
                prefix,
                node,
                local,
                wake_prefix,
                readers: AtomicUsize::new(0),
                last_heartbeat: std::sync::Mutex::new(None),
                index_cursor: AtomicU64::new(0),
                missing_rooms: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    fn connection(&self) -> ConnectionManager {
        self.inner.connection.clone()
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.inner.prefix)
    }

    /// The key of a token's entry among its room's keys.
    fn token_key(&self, room: &RoomId, token: &Token<'_>) -> String {
        format!(
            "{}:{{{room}}}:t:{:016x}",
            self.inner.prefix,
            token.secret().selector()
        )
    }

    fn idle_entry(room: &RoomId, member: Uuid) -> String {
        format!("{room} {member}")
    }

    /// Runs `call` on a clone of this hub, on a task of its own, and waits
    /// for it. The caller's future may be dropped (its client hung up); the
    /// task is not, so a call of several dependent round trips makes all of
    /// them, or undoes what it made, whatever happens to the request.
    async fn detached<T, F>(&self, call: impl FnOnce(RedisHub) -> F) -> Result<T, Refusal>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Refusal>> + Send + 'static,
    {
        tokio::spawn(call(self.clone()))
            .await
            .unwrap_or_else(|cause| {
                error!(%cause, "a redis call's task failed");
                Err(Refusal::Internal)
            })
    }

    fn wake_local(&self, room: &RoomId, member: Uuid) {
        if let Some(local) = self.inner.local.get(&(room.clone(), member)) {
            local.wake.wake();
        }
    }

    /// Whether Redis answers on both connections: the subscription's too,
    /// or wake-ups from other nodes would be lost. A PING on a broken
    /// connection also makes it reconnect (and subscribe again).
    async fn ping(&self) -> Result<(), Refusal> {
        for connection in [&self.inner.connection, &self.inner.subscriber] {
            let pong: String = ::redis::cmd("PING")
                .query_async(&mut connection.clone())
                .await
                .map_err(unavailable)?;
            if pong != "PONG" {
                return Err(Refusal::Unavailable);
            }
        }
        Ok(())
    }
}

fn wake_from_message(local: &DashMap<(RoomId, Uuid), LocalMember>, text: &[u8]) {
    let Some((room, member)) = std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.split_once(' '))
    else {
        return;
    };
    let (Ok(room), Ok(member)) = (RoomId::parse(room), member.parse::<Uuid>()) else {
        return;
    };
    if let Some(local) = local.get(&(room, member)) {
        local.wake.wake();
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
        self.member_of_token(token).await
    }

    async fn join(&self, room_id: RoomId, spec: JoinSpec) -> Result<Joined, Refusal> {
        self.detached(|hub| async move { hub.add_member(room_id, spec).await })
            .await
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
        from: &MemberRef,
        to: Option<Uuid>,
        body: Arc<EventBody>,
    ) -> Result<usize, Refusal> {
        self.signal(from, to, body).await
    }

    async fn room_view(&self, room_id: &RoomId, actor: Actor) -> Result<RoomView, Refusal> {
        self.room_script(room_id, actor, "view").await
    }

    async fn set_locked(
        &self,
        room_id: &RoomId,
        actor: Actor,
        locked: bool,
    ) -> Result<RoomView, Refusal> {
        self.room_script(room_id, actor, if locked { "lock" } else { "unlock" })
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
