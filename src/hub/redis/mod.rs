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
//! themselves; while Redis is unreachable, calls answer 503 at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncCommands, Client, ProtocolVersion, PushInfo, PushKind, Script, Value};
use dashmap::DashMap;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{error, info, warn};
use uuid::Uuid;

use super::{Actor, JoinSpec, MemberPlaces, MemberRef, Readers, Settings};
use crate::auth::Token;
use crate::error::ApiError;
use crate::inbox::{Batch, Entry, EventBody, Item, SIGNAL};
use crate::model::{
    JoinResponse, MemberJoinedData, MemberView, RoomId, RoomSummary, RoomView, Timestamp,
};

const PRELUDE: &str = include_str!("prelude.lua");

/// The scripts, each with the prelude in front.
struct Scripts {
    join: Script,
    remove: Script,
    signal: Script,
    open: Script,
    read: Script,
    touch: Script,
    room: Script,
    /// Drops a room from the room index only if it is still the emptied
    /// one: a join may have made a new room with that id since.
    forget_room: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Self {
            join: with_prelude(include_str!("join.lua")),
            remove: with_prelude(include_str!("remove.lua")),
            signal: with_prelude(include_str!("signal.lua")),
            open: with_prelude(include_str!("open.lua")),
            read: with_prelude(include_str!("read.lua")),
            touch: with_prelude(include_str!("touch.lua")),
            room: with_prelude(include_str!("room.lua")),
            forget_room: Script::new(
                "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then \
                   return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0",
            ),
        }
    }
}

/// How a Redis outage looks to a client.
const UNREACHABLE: ApiError =
    ApiError::ServerBusy("the shared state cannot be reached just now; retry later");

fn unreachable(error: ::redis::RedisError) -> ApiError {
    warn!(%error, "redis call failed");
    UNREACHABLE
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
}

#[derive(Default)]
struct LocalMember {
    wake: Arc<Readers>,
    /// Its readers on this node; the entry goes with the last.
    places: Arc<MemberPlaces>,
}

/// What a script answered: its outcome and the rest, once the members of
/// this node it names are woken and the events it dropped counted.
struct Reply {
    status: String,
    rest: Vec<Value>,
}

/// Members the reaper looks at in one round trip, and the most round
/// trips it makes in one tick.
const REAP_BATCH: usize = 256;
const REAP_BATCHES: usize = 16;

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
            }),
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    fn connection(&self) -> ConnectionManager {
        self.inner.connection.clone()
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.inner.prefix)
    }

    fn token_key(&self, selector: u64) -> String {
        self.key(&format!("token:{selector:016x}"))
    }

    fn idle_entry(room: &RoomId, member: Uuid) -> String {
        format!("{room} {member}")
    }

    /// Runs a room script with the prelude's arguments, then `args`, and
    /// wakes the readers of this node it names.
    async fn run(&self, script: &Script, room: &RoomId, args: &[&str]) -> Result<Reply, ApiError> {
        let shared = &*self.inner;
        let limits = shared.settings.limits;
        let mut invocation = script.key(format!("{}:{{{room}}}:", shared.prefix));
        invocation
            .arg(limits.events)
            .arg(limits.bytes)
            .arg(limits.headroom)
            .arg(&shared.node)
            .arg(&shared.wake_prefix)
            .arg(room.as_str());
        for arg in args {
            invocation.arg(*arg);
        }
        let value: Value = invocation
            .invoke_async(&mut self.connection())
            .await
            .map_err(unreachable)?;
        let mut parts = into_array(value).into_iter();
        let status = parts.next().and_then(into_string).unwrap_or_default();
        for member in parts
            .next()
            .map(into_array)
            .unwrap_or_default()
            .into_iter()
            .filter_map(into_string)
        {
            if let Ok(member) = member.parse::<Uuid>() {
                self.wake_local(room, member);
            }
        }
        if let Some(dropped) = parts.next().as_ref().and_then(into_u64)
            && dropped > 0
        {
            metrics::counter!(crate::metrics::EVENTS_DROPPED).increment(dropped);
        }
        Ok(Reply {
            status,
            rest: parts.collect(),
        })
    }

    /// Runs `call` on a clone of this hub, on a task of its own, and waits
    /// for it. The caller's future may be dropped (its client hung up); the
    /// task is not, so a call of several dependent round trips makes all of
    /// them, or undoes what it made, whatever happens to the request.
    async fn detached<T, F>(&self, call: impl FnOnce(RedisHub) -> F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        tokio::spawn(call(self.clone()))
            .await
            .unwrap_or_else(|cause| {
                error!(%cause, "a redis call's task failed");
                Err(ApiError::Internal)
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
    pub async fn ping(&self) -> Result<(), ApiError> {
        for connection in [&self.inner.connection, &self.inner.subscriber] {
            let pong: String = ::redis::cmd("PING")
                .query_async(&mut connection.clone())
                .await
                .map_err(unreachable)?;
            if pong != "PONG" {
                return Err(UNREACHABLE);
            }
        }
        Ok(())
    }

    pub async fn authenticate(&self, token: &Token) -> Result<Option<MemberRef>, ApiError> {
        // HGETALL, which no script uses, so that `INFO commandstats` tells
        // the token lookups apart (a test counts them).
        let mut fields: std::collections::HashMap<String, Vec<u8>> = self
            .connection()
            .hgetall(self.token_key(token.selector()))
            .await
            .map_err(unreachable)?;
        let (Some(room), Some(member), Some(digest)) = (
            fields
                .remove("room")
                .and_then(|room| String::from_utf8(room).ok()),
            fields
                .remove("member")
                .and_then(|member| String::from_utf8(member).ok()),
            fields.remove("digest"),
        ) else {
            return Ok(None);
        };
        let presented = token_digest(token);
        if !bool::from(presented.as_slice().ct_eq(&digest)) {
            return Ok(None);
        }
        let (Ok(room), Ok(member)) = (RoomId::parse(&room), member.parse()) else {
            return Ok(None);
        };
        Ok(Some(MemberRef { room, member }))
    }

    pub async fn join(&self, room_id: RoomId, spec: JoinSpec) -> Result<JoinResponse, ApiError> {
        self.detached(|hub| async move { hub.add_member(room_id, spec).await })
            .await
    }

    /// Counts the member, indexes its token and idle clock, runs the join
    /// script, and indexes a room it creates; or undoes the first step.
    async fn add_member(&self, room_id: RoomId, spec: JoinSpec) -> Result<JoinResponse, ApiError> {
        let settings = &self.inner.settings;

        let capacity = settings.new_room_capacity(spec.capacity);
        let view = spec.into_view();
        let token = Token::generate();
        let token_key = self.token_key(token.selector());
        let idle_entry = Self::idle_entry(&room_id, view.id);
        let count_key = self.key("members");
        let idle_key = self.key("idle");

        // The token and the idle index first: should this node die before
        // the room script runs, they point at no member and are cleaned up;
        // should it die after, the member is still reaped.
        let (count,): (u64,) = ::redis::pipe()
            .incr(&count_key, 1)
            .hset_multiple(
                &token_key,
                &[
                    ("room", room_id.as_str().as_bytes()),
                    ("member", view.id.to_string().as_bytes()),
                    ("digest", token_digest(&token).as_slice()),
                ],
            )
            .ignore()
            .zadd(&idle_key, &idle_entry, unix_ms())
            .ignore()
            .query_async(&mut self.connection())
            .await
            .map_err(unreachable)?;
        let undo = || async {
            let _: Result<(), _> = ::redis::pipe()
                .decr(&count_key, 1)
                .del(&token_key)
                .zrem(&idle_key, &idle_entry)
                .query_async(&mut self.connection())
                .await;
        };
        if count > settings.max_members as u64 {
            undo().await;
            return Err(ApiError::ServerBusy(
                "the service holds as many members as it may; retry later",
            ));
        }

        let view_json = serde_json::to_string(&view).map_err(|_| UNREACHABLE)?;
        let joined = EventBody::new("member-joined", &MemberJoinedData { member: &view });
        let capacity_arg = capacity
            .as_ref()
            .map_or_else(|_| "bad".to_owned(), u32::to_string);
        let created_at = serde_json::to_value(Timestamp::now())
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        let epoch = Uuid::new_v4().simple().to_string();
        let member_id = view.id.to_string();
        let selector = format!("{:016x}", token.selector());
        let reply = self
            .run(
                &self.inner.scripts.join,
                &room_id,
                &[
                    &member_id,
                    &view_json,
                    &joined.json(),
                    &capacity_arg,
                    &created_at,
                    &epoch,
                    &selector,
                ],
            )
            .await;
        let reply = match reply {
            Ok(reply) if reply.status == "ok" => reply,
            Ok(reply) => {
                undo().await;
                return Err(match reply.status.as_str() {
                    "invalid_capacity" => capacity.err().unwrap_or(UNREACHABLE),
                    "room_locked" => ApiError::RoomLocked,
                    "room_full" => ApiError::RoomFull {
                        capacity: reply.rest.first().and_then(into_u64).unwrap_or(0) as u32,
                    },
                    other => unexpected(other),
                });
            }
            Err(error) => {
                undo().await;
                return Err(error);
            }
        };
        let mut rest = reply.rest.into_iter();
        let capacity = rest.next().as_ref().and_then(into_u64).unwrap_or(0) as u32;
        let creating = rest.next().as_ref().and_then(into_u64) == Some(1);
        let epoch = rest.next().and_then(into_string).unwrap_or_default();
        let members = rest.next().map(parse_views).unwrap_or_default();
        if creating {
            let _: () = self
                .connection()
                .hset(self.key("rooms"), room_id.as_str(), &epoch)
                .await
                .map_err(unreachable)?;
        }
        info!(room = %room_id, member = %view.id, created = creating, "member joined");
        Ok(JoinResponse::new(
            room_id,
            view,
            token.reveal(),
            creating,
            capacity,
            members,
        ))
    }

    pub async fn remove_member(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
    ) -> Result<(), ApiError> {
        let actor = match actor {
            Actor::Admin => "admin".to_owned(),
            Actor::Member(caller) => format!("member:{caller}"),
        };
        match self.remove(room_id, target, &actor).await?.as_str() {
            "ok" => Ok(()),
            "room_not_found" => Err(ApiError::RoomNotFound),
            "unauthorized" => Err(ApiError::Unauthorized),
            "forbidden" => Err(ApiError::Forbidden),
            "member_not_found" => Err(ApiError::MemberNotFound),
            other => Err(unexpected(other)),
        }
    }

    /// Runs the remove script and, when it removed, lets go of what the
    /// member held outside its room. Returns the script's status.
    async fn remove(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: &str,
    ) -> Result<String, ApiError> {
        let (room_id, actor) = (room_id.clone(), actor.to_owned());
        self.detached(|hub| async move { hub.remove_now(&room_id, target, &actor).await })
            .await
    }

    /// `remove`, on the caller's task.
    async fn remove_now(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: &str,
    ) -> Result<String, ApiError> {
        let timeout_ms = self.inner.settings.member_timeout.as_millis().to_string();
        let reply = self
            .run(
                &self.inner.scripts.remove,
                room_id,
                &[&target.to_string(), actor, &timeout_ms],
            )
            .await?;
        if reply.status == "busy" {
            // Read since it was indexed: index it at its last read.
            if let Some(seen) = reply.rest.first().and_then(into_u64) {
                let _: Result<(), _> = self
                    .connection()
                    .zadd(self.key("idle"), Self::idle_entry(room_id, target), seen)
                    .await;
            }
            return Ok(reply.status);
        }
        if reply.status == "gone" {
            let _: Result<(), _> = self
                .connection()
                .zrem(self.key("idle"), Self::idle_entry(room_id, target))
                .await;
            return Ok(reply.status);
        }
        if reply.status != "ok" {
            return Ok(reply.status);
        }
        let mut rest = reply.rest.into_iter();
        let selector = rest.next().and_then(into_string).unwrap_or_default();
        let epoch = rest.next().and_then(into_string).unwrap_or_default();
        let reason = rest.next().and_then(into_string).unwrap_or_default();
        let mut pipe = ::redis::pipe();
        pipe.del(self.key(&format!("token:{selector}")))
            .ignore()
            .zrem(self.key("idle"), Self::idle_entry(room_id, target))
            .ignore()
            .decr(self.key("members"), 1)
            .ignore();
        let _: () = pipe
            .query_async(&mut self.connection())
            .await
            .map_err(unreachable)?;
        if !epoch.is_empty() {
            // Alone, not in the pipeline: `invoke_async` loads the script
            // when Redis does not know it yet (a pipeline would not).
            let _: i64 = self
                .inner
                .scripts
                .forget_room
                .key(self.key("rooms"))
                .arg(room_id.as_str())
                .arg(&epoch)
                .invoke_async(&mut self.connection())
                .await
                .map_err(unreachable)?;
        }
        info!(room = %room_id, member = %target, reason, "member left");
        Ok(reply.status)
    }

    pub async fn send_signal(
        &self,
        from: &MemberRef,
        to: Option<Uuid>,
        body: Arc<EventBody>,
    ) -> Result<usize, ApiError> {
        let to = to.map(|to| to.to_string()).unwrap_or_default();
        let reply = self
            .run(
                &self.inner.scripts.signal,
                &from.room,
                &[&from.member.to_string(), &to, &body.json()],
            )
            .await?;
        match reply.status.as_str() {
            "ok" => Ok(reply.rest.first().and_then(into_u64).unwrap_or(0) as usize),
            "unauthorized" => Err(ApiError::Unauthorized),
            "member_not_found" => Err(ApiError::MemberNotFound),
            "inbox_full" => Err(ApiError::InboxFull),
            other => Err(unexpected(other)),
        }
    }

    async fn room_script(
        &self,
        room_id: &RoomId,
        actor: Actor,
        op: &str,
    ) -> Result<RoomView, ApiError> {
        let actor = match actor {
            Actor::Admin => "admin".to_owned(),
            Actor::Member(caller) => caller.to_string(),
        };
        let reply = self
            .run(&self.inner.scripts.room, room_id, &[&actor, op])
            .await?;
        match reply.status.as_str() {
            "ok" => {}
            "room_not_found" => return Err(ApiError::RoomNotFound),
            "forbidden" => return Err(ApiError::Forbidden),
            other => return Err(unexpected(other)),
        }
        let mut rest = reply.rest.into_iter();
        let capacity = rest.next().as_ref().and_then(into_u64).unwrap_or(0) as u32;
        let locked = rest.next().and_then(into_string).as_deref() == Some("1");
        let owner = rest
            .next()
            .and_then(into_string)
            .and_then(|owner| owner.parse().ok())
            .unwrap_or_default();
        let created_at = rest
            .next()
            .and_then(into_string)
            .and_then(|text| Timestamp::parse(&text))
            .unwrap_or_else(Timestamp::now);
        Ok(RoomView {
            id: room_id.clone(),
            capacity,
            locked,
            owner,
            members: rest.next().map(parse_views).unwrap_or_default(),
            created_at,
        })
    }

    pub async fn room_view(&self, room_id: &RoomId, actor: Actor) -> Result<RoomView, ApiError> {
        self.room_script(room_id, actor, "view").await
    }

    pub async fn set_locked(
        &self,
        room_id: &RoomId,
        actor: Actor,
        locked: bool,
    ) -> Result<RoomView, ApiError> {
        self.room_script(room_id, actor, if locked { "lock" } else { "unlock" })
            .await
    }

    pub async fn counts(&self) -> Result<(usize, usize), ApiError> {
        let (rooms, members): (usize, Option<i64>) = ::redis::pipe()
            .hlen(self.key("rooms"))
            .get(self.key("members"))
            .query_async(&mut self.connection())
            .await
            .map_err(unreachable)?;
        Ok((rooms, members.map_or(0, |count| count.max(0) as usize)))
    }

    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, ApiError> {
        let mut connection = self.connection();
        let ids: Vec<String> = connection
            .hkeys(self.key("rooms"))
            .await
            .map_err(unreachable)?;
        let ids: Vec<RoomId> = ids.iter().filter_map(|id| RoomId::parse(id).ok()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for id in &ids {
            let room = format!("{}:{{{id}}}:", self.inner.prefix);
            pipe.hmget(format!("{room}room"), &["capacity", "locked", "created_at"])
                .zcard(format!("{room}members"));
        }
        let answers: Vec<(RoomFields, usize)> = pipe
            .query_async::<Vec<Value>>(&mut connection)
            .await
            .map_err(unreachable)?
            .chunks(2)
            .map(|pair| {
                (
                    ::redis::from_redis_value_ref(&pair[0]).unwrap_or((None, None, None)),
                    ::redis::from_redis_value_ref(&pair[1]).unwrap_or(0),
                )
            })
            .collect();
        let mut rooms: Vec<RoomSummary> = ids
            .into_iter()
            .zip(answers)
            .filter(|(_, (_, members))| *members > 0)
            .map(
                |(id, ((capacity, locked, created_at), member_count))| RoomSummary {
                    id,
                    capacity: capacity.unwrap_or(0),
                    locked: locked.as_deref() == Some("1"),
                    member_count,
                    created_at: created_at
                        .as_deref()
                        .and_then(Timestamp::parse)
                        .unwrap_or_else(Timestamp::now),
                },
            )
            .collect();
        rooms.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(rooms)
    }

    pub async fn open_stream(
        &self,
        member: &MemberRef,
        last_event_id: Option<u64>,
    ) -> Result<RedisSubscription, ApiError> {
        self.open(member, "stream", last_event_id).await
    }

    pub async fn open_poll(
        &self,
        member: &MemberRef,
        after: Option<u64>,
    ) -> Result<RedisSubscription, ApiError> {
        self.open(member, "poll", after).await
    }

    async fn open(
        &self,
        member_ref: &MemberRef,
        mode: &'static str,
        given: Option<u64>,
    ) -> Result<RedisSubscription, ApiError> {
        // A subscription the task made after its caller left is dropped
        // with the task's output, and closes what the script opened.
        let member_ref = member_ref.clone();
        self.detached(move |hub| async move { hub.open_now(&member_ref, mode, given).await })
            .await
    }

    /// `open`, on the caller's task.
    async fn open_now(
        &self,
        member_ref: &MemberRef,
        mode: &str,
        given: Option<u64>,
    ) -> Result<RedisSubscription, ApiError> {
        let shared = &*self.inner;
        let streaming = mode == "stream";
        let key = (member_ref.room.clone(), member_ref.member);
        // Registered before the script runs, so a wake-up published between
        // the script and the first read is not missed.
        let (wake, places) = {
            let local = shared.local.entry(key.clone()).or_default();
            let entered =
                local
                    .places
                    .enter(streaming, &shared.readers, shared.settings.max_readers);
            if let Err(refusal) = entered {
                drop(local);
                shared
                    .local
                    .remove_if(&key, |_, local| local.places.open() == 0);
                return Err(refusal);
            }
            (Arc::clone(&local.wake), Arc::clone(&local.places))
        };
        let mut subscription = RedisSubscription {
            hub: self.clone(),
            opened: false,
            member: member_ref.clone(),
            generation: None,
            streaming,
            places,
            cursor: 0,
            wake,
        };
        let given = given.map(|id| id.to_string()).unwrap_or_default();
        let reply = self
            .run(
                &shared.scripts.open,
                &member_ref.room,
                &[&member_ref.member.to_string(), mode, &given],
            )
            .await?;
        match reply.status.as_str() {
            "ok" => {}
            "unauthorized" => return Err(ApiError::Unauthorized),
            other => return Err(unexpected(other)),
        }
        subscription.opened = true;
        let mut rest = reply.rest.iter();
        subscription.cursor = rest.next().and_then(into_u64).unwrap_or(0);
        let generation = rest.next().and_then(into_u64).unwrap_or(0);
        subscription.generation = (mode == "stream").then_some(generation);
        Ok(subscription)
    }

    /// Removes the members nobody has read for longer than the member
    /// timeout. Every node runs it; the script removes each member once.
    pub async fn reap(&self) -> Result<usize, ApiError> {
        // First, so that after an outage the subscription is back within a
        // tick even on a node nobody sends requests to.
        self.ping().await?;
        let mut connection = self.connection();
        let (secs, micros): (u64, u64) = ::redis::cmd("TIME")
            .query_async(&mut connection)
            .await
            .map_err(unreachable)?;
        let now = secs * 1000 + micros / 1000;
        let timeout = self.inner.settings.member_timeout.as_millis() as u64;
        let mut reaped = 0;
        // Batch after batch while they come full and are reaped: members
        // whose inbox nobody reads may time out faster than one batch a
        // tick, and would pile up to `--max-members`. Bounded, so that a
        // tick ends.
        for _ in 0..REAP_BATCHES {
            let candidates: Vec<String> = connection
                .zrangebyscore_limit(
                    self.key("idle"),
                    "-inf",
                    now.saturating_sub(timeout),
                    0,
                    REAP_BATCH as isize,
                )
                .await
                .map_err(unreachable)?;
            let full = candidates.len() == REAP_BATCH;
            let before = reaped;
            for candidate in candidates {
                let Some((room, member)) = candidate.split_once(' ') else {
                    continue;
                };
                let (Ok(room), Ok(member)) = (RoomId::parse(room), member.parse()) else {
                    let _: Result<(), _> = connection.zrem(self.key("idle"), &candidate).await;
                    continue;
                };
                if self.remove(&room, member, "timeout").await? == "ok" {
                    reaped += 1;
                }
            }
            // A batch that reaped nothing would come back the same.
            if !full || reaped == before {
                break;
            }
        }
        // A quarter of the timeout apart: a reader's member is renewed three
        // times before anyone may reap it.
        let due = {
            let mut last = self
                .inner
                .last_heartbeat
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due =
                last.is_none_or(|last| last.elapsed() >= self.inner.settings.member_timeout / 4);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            self.heartbeat().await;
        }
        Ok(reaped)
    }

    /// Resets the idle clock of every member with a reader on this node, so
    /// that no node reaps it; a node that dies stops doing so, and its
    /// members are reaped a member timeout later.
    async fn heartbeat(&self) {
        let members: Vec<(RoomId, Uuid)> = self
            .inner
            .local
            .iter()
            .map(|entry| entry.key().clone())
            .collect();
        futures_util::stream::iter(members)
            .for_each_concurrent(16, |(room, member)| async move {
                let _ = self.touch(&room, member, "keep").await;
            })
            .await;
    }

    async fn touch(&self, room: &RoomId, member: Uuid, how: &str) -> Result<(), ApiError> {
        self.run(&self.inner.scripts.touch, room, &[&member.to_string(), how])
            .await
            .map(drop)
    }
}

/// A room hash's capacity, lock and creation time, as `GET /rooms` lists them.
type RoomFields = (Option<u32>, Option<String>, Option<String>);

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

/// What Redis keeps of a token: its SHA-256, so that Redis's data, dumps
/// and `MONITOR` never hold one that opens anything.
fn token_digest(token: &Token) -> [u8; 32] {
    Sha256::digest(token.reveal().as_bytes()).into()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn unexpected(status: &str) -> ApiError {
    warn!(status, "a redis script answered something unexpected");
    UNREACHABLE
}

fn into_array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => Vec::new(),
    }
}

fn into_string(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        Value::Int(number) => Some(number.to_string()),
        _ => None,
    }
}

fn into_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(number) => u64::try_from(*number).ok(),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

fn parse_views(value: Value) -> Vec<MemberView> {
    into_array(value)
        .into_iter()
        .filter_map(into_string)
        .filter_map(|text| serde_json::from_str(&text).ok())
        .collect()
}

/// The kinds an inbox holds, as the `&'static str` the SSE writer takes.
fn event_kind(kind: &str) -> Option<&'static str> {
    ["member-joined", "member-left", "room-updated", SIGNAL]
        .into_iter()
        .find(|known| *known == kind)
}

/// One open reader on this node.
pub struct RedisSubscription {
    hub: RedisHub,
    /// Whether Redis counts this reader (the open script ran).
    opened: bool,
    member: MemberRef,
    /// The stream generation, for streams; polls never supersede anything.
    generation: Option<u64>,
    /// Whether it is a stream (the generation comes once it is open).
    streaming: bool,
    /// The member's reader places on this node, this one's among them.
    places: Arc<MemberPlaces>,
    cursor: u64,
    wake: Arc<Readers>,
}

impl RedisSubscription {
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Reads once without waiting: the events after the cursor there are
    /// now, possibly none, and the cursor that reading them moves to;
    /// `None` when the reader is done. Owns what it needs, so that a
    /// subscription can hold it while the round trip lasts.
    pub fn read(&self) -> impl Future<Output = Option<(u64, Batch)>> + Send + 'static {
        let hub = self.hub.clone();
        let room = self.member.room.clone();
        let member = self.member.member.to_string();
        let generation = self
            .generation
            .map(|generation| generation.to_string())
            .unwrap_or_default();
        let after = self.cursor;
        async move {
            let cursor = after.to_string();
            let reply = hub
                .run(
                    &hub.inner.scripts.read,
                    &room,
                    &[&member, &cursor, &generation],
                )
                .await
                .ok()?;
            if reply.status != "ok" {
                return None;
            }
            let mut rest = reply.rest.into_iter();
            let last = rest.next().as_ref().and_then(into_u64).unwrap_or(0);
            let batch = batch_after(after, last, rest.next().map(into_array).unwrap_or_default());
            Some((last, batch))
        }
    }

    /// Where the next read starts: after what `read` last returned.
    pub fn set_cursor(&mut self, cursor: u64) {
        self.cursor = cursor;
    }

    /// The readers of this member's inbox on this node, for `Subscription`.
    pub fn readers(&self) -> Arc<Readers> {
        Arc::clone(&self.wake)
    }
}

/// The events a read returned, with a gap wherever ids after `after` are
/// no longer held: `Inbox::read_after`'s answer.
fn batch_after(after: u64, last: u64, entries: Vec<Value>) -> Batch {
    let after = after.min(last);
    let mut items = Vec::new();
    let mut next = after + 1;
    for entry in entries {
        let mut entry = into_array(entry).into_iter();
        let Some(id) = entry
            .next()
            .and_then(into_string)
            .and_then(|id| id.strip_prefix("0-").and_then(|id| id.parse::<u64>().ok()))
        else {
            continue;
        };
        let fields: Vec<String> = entry
            .next()
            .map(into_array)
            .unwrap_or_default()
            .into_iter()
            .filter_map(into_string)
            .collect();
        let [_, kind, _, data] = fields.as_slice() else {
            continue;
        };
        let (Some(kind), Ok(data)) = (event_kind(kind), RawValue::from_string(data.clone())) else {
            warn!(id, "an inbox entry in redis is not an event; skipped");
            continue;
        };
        if id > next {
            items.push(Item::Gap {
                from: next,
                to: id - 1,
            });
        }
        items.push(Item::Event(Entry {
            id,
            body: EventBody::from_json(kind, data),
        }));
        next = id + 1;
    }
    if next <= last {
        items.push(Item::Gap {
            from: next,
            to: last,
        });
    }
    Batch { items }
}

impl Drop for RedisSubscription {
    fn drop(&mut self) {
        let shared = &self.hub.inner;
        let key = (self.member.room.clone(), self.member.member);
        let leave = || self.places.leave(self.streaming, &shared.readers);
        // Under the entry's lock, under which readers take their places.
        let mut left = false;
        shared.local.remove_if_mut(&key, |_, local| {
            leave();
            left = true;
            local.places.open() == 0
        });
        if !left {
            leave();
        }
        // The idle clock starts again now, and Redis counts one reader less
        // here; neither can wait for an await.
        if self.opened
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let hub = self.hub.clone();
            let (room, member) = key;
            runtime.spawn(async move {
                let _ = hub.touch(&room, member, "close").await;
            });
        }
    }
}
