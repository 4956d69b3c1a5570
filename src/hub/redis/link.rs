//! The links to Redis: where the primary is (one URL, Sentinel, or a
//! Cluster), the command connection, and the subscription that brings this
//! node its wake-ups.
//!
//! On one Redis (or a Sentinel's primary) each node has a channel of its
//! own, `<prefix>:wake:<node>`, subscribed once. On a Cluster, a function
//! may only publish in its room's slot, and a plain `PUBLISH` would reach
//! every shard: a wake-up goes to the room's own shard channel for that
//! node, `<prefix>:{<room>}:w:<node>`, which the node subscribes to
//! (`SSUBSCRIBE`) while it holds a reader in the room (`ShardChannels`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::io::tcp::TcpSettings;
use ::redis::{
    Client, Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, PushKind, RedisError,
    RedisFuture, Value,
};
use dashmap::DashMap;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::lane::Lane;
use super::local::LocalMember;
use super::tail::Tails;
use crate::domain::event::{EventBody, SIGNAL};
use crate::hub::drawn::{Drawn, MemberKey};
use crate::model::RoomId;

/// Where the primary is: one fixed URL, wherever Sentinel says, or a
/// Cluster's primaries.
#[derive(Clone)]
pub enum Primary {
    Url(String),
    /// `host:port` of each Sentinel, and the name they monitor the primary
    /// under.
    Sentinel {
        sentinels: Vec<String>,
        name: String,
    },
    /// Some nodes of a Redis Cluster; the rest are found from them.
    Cluster(Vec<String>),
}

/// How long one Sentinel may take to name the primary.
const SENTINEL_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a node may wait for a connection, and for an answer: past it
/// the call is refused (`Refusal::Unavailable`), 503 with `Retry-After`.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// `TCP_NODELAY` on every connection to Redis, which redis-rs leaves off:
/// with Nagle's algorithm a command written while the one before is still
/// unacknowledged waits for that acknowledgement, a round trip more for a
/// signal that comes at once after another.
fn tcp_settings() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

impl Primary {
    /// The primary's URL now: the fixed one, the first answer of a
    /// Sentinel, or the Cluster's seeds.
    pub(super) async fn url(&self) -> Result<String, RedisError> {
        let (sentinels, name) = match self {
            Primary::Url(url) => return Ok(url.clone()),
            Primary::Cluster(seeds) => return Ok(seeds.join(",")),
            Primary::Sentinel { sentinels, name } => (sentinels, name),
        };
        let mut last = None;
        for sentinel in sentinels {
            let asked = async {
                let client = Client::open(format!("redis://{sentinel}"))?;
                let mut connection = client.get_multiplexed_async_connection().await?;
                ::redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(name)
                    .query_async::<Option<(String, u16)>>(&mut connection)
                    .await
            };
            match tokio::time::timeout(SENTINEL_TIMEOUT, asked).await {
                Ok(Ok(Some((host, port)))) => return Ok(format!("redis://{host}:{port}")),
                Ok(Ok(None)) => {
                    last = Some(RedisError::from((
                        ::redis::ErrorKind::InvalidClientConfig,
                        "no Sentinel monitors this name",
                        name.clone(),
                    )));
                }
                Ok(Err(error)) => last = Some(error),
                Err(_) => {}
            }
        }
        Err(last.unwrap_or_else(|| {
            RedisError::from((::redis::ErrorKind::Io, "no Sentinel answered in time"))
        }))
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Primary::Cluster(_))
    }
}

/// A connection for commands: to one Redis, reconnecting by itself, or to
/// a Cluster, which routes each command to its key's primary.
#[derive(Clone)]
pub(super) enum Conn {
    One(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::One(connection) => connection.req_packed_command(cmd),
            Conn::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::One(connection) => connection.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::One(connection) => connection.get_db(),
            Conn::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The readers on this node, by member.
pub(super) type LocalMembers = DashMap<MemberKey, Arc<LocalMember>, Drawn>;

/// The connections: commands, appends (on one Redis), and this node's subscription.
pub(super) struct Links {
    /// The primary they go to (the seeds, for a Cluster).
    pub(super) url: String,
    pub(super) connection: Conn,
    /// On one Redis, the appends' own connection (`lane`).
    pub(super) lane: Option<Arc<Lane>>,
    /// The subscription's connection, pinged at every reaper tick so that
    /// it reconnects after an outage even though nothing else is sent on it.
    pub(super) subscriber: Conn,
}

impl Links {
    /// Connects to `primary` at `url`; on one Redis, subscribes to
    /// `channel`. Messages wake the readers in `local`. Subscribes to
    /// `presence` too, which shows this node's format (`format.rs`).
    pub(super) async fn open(
        primary: &Primary,
        url: &str,
        channel: &str,
        presence: &str,
        local: &Arc<LocalMembers>,
        tails: &Arc<Tails>,
    ) -> Result<Self, RedisError> {
        let wake_local = Arc::clone(local);
        let tails = Arc::clone(tails);
        let lost = Arc::new(AtomicBool::new(false));
        // Runs on the connection's own task, for each message: nothing
        // queues, whatever the rate of wake-ups.
        let on_push = move |push: PushInfo| {
            match push.kind {
                PushKind::Message | PushKind::SMessage => {
                    if let Some(Value::BulkString(text)) = push.data.get(1) {
                        wake_from_message(&wake_local, text);
                    }
                }
                // Redis may come back without the last entries of the
                // inboxes' tails known here (`tail.rs`).
                PushKind::Disconnection => {
                    tails.forget_all();
                    lost.store(true, Ordering::Relaxed);
                }
                // Subscribed again after an outage: whatever was published
                // meanwhile is lost, so every reader here looks again.
                PushKind::Subscribe | PushKind::SSubscribe
                    if lost.swap(false, Ordering::Relaxed) =>
                {
                    wake_all(&wake_local);
                }
                _ => {}
            }
            Ok::<(), ::redis::aio::SendError>(())
        };
        if primary.is_cluster() {
            let seeds: Vec<&str> = url.split(',').collect();
            let builder = || {
                ClusterClientBuilder::new(seeds.iter().copied())
                    .use_protocol(ProtocolVersion::RESP3)
                    .tcp_settings(tcp_settings())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .retries(1)
            };
            let connection = builder().build()?.get_async_connection().await?;
            let mut subscriber = builder()
                .push_sender(on_push)
                .build()?
                .get_async_connection()
                .await?;
            subscriber.ssubscribe(presence).await?;
            return Ok(Self {
                url: url.to_owned(),
                connection: Conn::Cluster(connection),
                lane: None,
                subscriber: Conn::Cluster(subscriber),
            });
        }
        let info = url.into_connection_info()?;
        // RESP3, for the subscription's messages on a multiplexed connection.
        let redis_settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(
            info.set_redis_settings(redis_settings)
                .set_tcp_settings(tcp_settings()),
        )?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        let mut subscriber = ConnectionManager::new_with_config(
            client,
            config
                .set_push_sender(on_push)
                .set_automatic_resubscription(),
        )
        .await?;
        subscriber.subscribe(&[channel, presence]).await?;
        Ok(Self {
            url: url.to_owned(),
            connection: Conn::One(connection),
            lane: Lane::open(url).await.map(Arc::new),
            subscriber: Conn::One(subscriber),
        })
    }
}

/// On a Cluster, the rooms whose shard channel for this node is subscribed,
/// with the readers this node holds in each. A room's channel stays
/// subscribed while its count is 0 until the next upkeep tick drops it
/// (`drop_idle`), so that a room whose reader comes and goes costs no
/// command each time.
#[derive(Default)]
pub(super) struct ShardChannels {
    rooms: Mutex<HashMap<RoomId, usize>>,
    /// Held while a subscription changes, so that an `SSUBSCRIBE` and the
    /// `SUNSUBSCRIBE` of the same channel reach Redis in the order they
    /// were decided in.
    changing: tokio::sync::Mutex<()>,
}

impl ShardChannels {
    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomId, usize>> {
        // Nothing panics while holding it; a poisoned map is still whole.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a reader in `room`, subscribing to the room's channel for
    /// this node first if it is not yet: returns once wake-ups reach here.
    pub(super) async fn enter(
        &self,
        room: &RoomId,
        channel: impl FnOnce() -> String,
        subscriber: &Conn,
    ) -> Result<(), RedisError> {
        if let Some(count) = self.rooms().get_mut(room) {
            *count += 1;
            return Ok(());
        }
        let _changing = self.changing.lock().await;
        if let Some(count) = self.rooms().get_mut(room) {
            *count += 1;
            return Ok(());
        }
        if let Conn::Cluster(subscriber) = subscriber {
            subscriber.clone().ssubscribe(channel()).await?;
        }
        self.rooms().insert(room.clone(), 1);
        Ok(())
    }

    /// A reader in `room` ended.
    pub(super) fn leave(&self, room: &RoomId) {
        if let Some(count) = self.rooms().get_mut(room) {
            *count = count.saturating_sub(1);
        }
    }

    /// Unsubscribes from the channels of rooms where this node holds no
    /// reader any more.
    pub(super) async fn drop_idle(
        &self,
        channel: impl Fn(&RoomId) -> String,
        subscriber: &Conn,
    ) -> Result<(), RedisError> {
        let _changing = self.changing.lock().await;
        let idle: Vec<RoomId> = {
            let mut rooms = self.rooms();
            let idle: Vec<RoomId> = rooms
                .iter()
                .filter(|(_, count)| **count == 0)
                .map(|(room, _)| room.clone())
                .collect();
            for room in &idle {
                rooms.remove(room);
            }
            idle
        };
        if let Conn::Cluster(subscriber) = subscriber {
            for room in idle {
                subscriber.clone().sunsubscribe(channel(&room)).await?;
            }
        }
        Ok(())
    }
}

/// Wakes every reader on this node: what was published to it may be lost.
pub(super) fn wake_all(local: &LocalMembers) {
    for member in local.iter() {
        member.wake_plain();
    }
}

/// Wakes the readers a message names: `<room> <member>`, or a signal's
/// `<room> <member> <id> <data>` (`wake` in `prelude.lua`).
fn wake_from_message(local: &LocalMembers, text: &[u8]) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let mut parts = text.splitn(4, ' ');
    let (Some(Ok(room)), Some(Ok(member))) = (
        parts.next().map(RoomId::parse),
        parts.next().map(str::parse::<Uuid>),
    ) else {
        return;
    };
    let Some(local) = local.get(&MemberKey { room, member }) else {
        return;
    };
    let event = parts.next().and_then(|id| id.parse::<u64>().ok()).zip(
        parts
            .next()
            .and_then(|data| RawValue::from_string(data.to_owned()).ok()),
    );
    match event {
        Some((id, data)) => local.wake_with(id, EventBody::from_json(SIGNAL, data)),
        None => local.wake_plain(),
    }
}
