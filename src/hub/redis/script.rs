//! Running a room's Lua script: the scripts with their shared prelude,
//! the arguments every one takes, and reading what they answer.

use ::redis::{Script, Value};
use tracing::warn;
use uuid::Uuid;

use super::{RedisHub, unavailable};
use crate::domain::Refusal;
use crate::model::{MemberView, RoomId};
use crate::observe::metrics;

const PRELUDE: &str = include_str!("prelude.lua");

/// The scripts, each with the prelude in front.
pub(super) struct Scripts {
    pub(super) join: Script,
    pub(super) remove: Script,
    pub(super) signal: Script,
    pub(super) open: Script,
    pub(super) read: Script,
    pub(super) touch: Script,
    pub(super) room: Script,
    /// Drops a room from the room index only if it is still the emptied
    /// one: a join may have made a new room with that id since.
    pub(super) forget_room: Script,
    /// Points a room's index entry at the room's epoch, if it still points
    /// at the one a reconciliation read.
    pub(super) reindex_room: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
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
            reindex_room: Script::new(
                "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then \
                   return redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end return 0",
            ),
        }
    }
}

/// What a script answered: its outcome and the rest, once the members of
/// this node it names are woken and the events it dropped counted.
pub(super) struct Reply {
    pub(super) status: String,
    pub(super) rest: Vec<Value>,
}

impl RedisHub {
    /// Runs a room script with the prelude's arguments, then `args`, and
    /// wakes the readers of this node it names.
    pub(super) async fn run(
        &self,
        script: &Script,
        room: &RoomId,
        args: &[&str],
    ) -> Result<Reply, Refusal> {
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
            .map_err(unavailable)?;
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
            metrics::events_dropped(dropped);
        }
        Ok(Reply {
            status,
            rest: parts.collect(),
        })
    }
}

/// The refusal a script's status names (the scripts answer with API.md's
/// problem codes). Any other status is a bug between a script and this
/// file: logged, and to the client the state cannot be served now.
pub(super) fn refusal(status: &str) -> Refusal {
    match status {
        "unauthorized" => Refusal::CallerGone,
        "forbidden" => Refusal::NotAllowed,
        "room_not_found" => Refusal::RoomNotFound,
        "member_not_found" => Refusal::MemberNotFound,
        "room_locked" => Refusal::RoomLocked,
        "inbox_full" => Refusal::InboxFull,
        other => {
            warn!(
                status = other,
                "a redis script answered something unexpected"
            );
            Refusal::Unavailable
        }
    }
}

pub(super) fn into_array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => Vec::new(),
    }
}

pub(super) fn into_string(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        Value::Int(number) => Some(number.to_string()),
        _ => None,
    }
}

pub(super) fn into_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(number) => u64::try_from(*number).ok(),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

pub(super) fn parse_views(value: Value) -> Vec<MemberView> {
    into_array(value)
        .into_iter()
        .filter_map(into_string)
        .filter_map(|text| serde_json::from_str(&text).ok())
        .collect()
}
