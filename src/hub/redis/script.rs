//! Running a room's Lua function: the library of them with their shared
//! prelude, the arguments every one takes, and reading what they answer.

use std::sync::Arc;

use ::redis::{Script, Value};
use sha1::Digest;
use tracing::warn;
use uuid::Uuid;

use super::{RedisHub, unavailable};
use crate::domain::Refusal;
use crate::domain::event::EventBody;
use crate::domain::room::Actor;
use crate::model::{MemberView, RoomId};
use crate::observe::metrics;

const PRELUDE: &str = include_str!("prelude.lua");

/// The room functions, each a `*.lua` file beside this one, run after the
/// prelude's `setup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RoomFn {
    Join,
    Remove,
    Signal,
    Open,
    Read,
    Touch,
    Room,
    Create,
    Close,
    Update,
}

impl RoomFn {
    const ALL: [RoomFn; 10] = [
        RoomFn::Join,
        RoomFn::Remove,
        RoomFn::Signal,
        RoomFn::Open,
        RoomFn::Read,
        RoomFn::Touch,
        RoomFn::Room,
        RoomFn::Create,
        RoomFn::Close,
        RoomFn::Update,
    ];

    fn name(self) -> &'static str {
        match self {
            RoomFn::Join => "join",
            RoomFn::Remove => "remove",
            RoomFn::Signal => "signal",
            RoomFn::Open => "open",
            RoomFn::Read => "read",
            RoomFn::Touch => "touch",
            RoomFn::Room => "room",
            RoomFn::Create => "create",
            RoomFn::Close => "close",
            RoomFn::Update => "update",
        }
    }

    fn body(self) -> &'static str {
        match self {
            RoomFn::Join => include_str!("join.lua"),
            RoomFn::Remove => include_str!("remove.lua"),
            RoomFn::Signal => include_str!("signal.lua"),
            RoomFn::Open => include_str!("open.lua"),
            RoomFn::Read => include_str!("read.lua"),
            RoomFn::Touch => include_str!("touch.lua"),
            RoomFn::Room => include_str!("room.lua"),
            RoomFn::Create => include_str!("create.lua"),
            RoomFn::Close => include_str!("close.lua"),
            RoomFn::Update => include_str!("update.lua"),
        }
    }
}

/// The Lua that runs in Redis.
///
/// The room functions are one library (`FUNCTION LOAD`), not scripts: a
/// script ran the prelude again at every call, defining its thirty
/// functions, 6 µs of Redis's time a call out of the 9 that a call of an
/// empty script with the prelude took (`redis-benchmark`).
pub(super) struct Scripts {
    /// The library's code.
    library: String,
    /// Every room function's name in Redis, in `RoomFn::ALL` order. Each
    /// ends with the library's version, a hash of its code, so that one
    /// version's library does not replace another's. Nodes from before
    /// signals were appended plainly (`tail.rs`) cannot share a Redis with
    /// later ones (docs/scaling.md, "Upgrading").
    names: [String; 10],
    /// Drops a room from the room index only if it is still the emptied
    /// one: a join may have made a new room with that id since.
    pub(super) forget_room: Script,
    /// Points a room's index entry at the room's epoch, if it still points
    /// at the one a reconciliation read.
    pub(super) reindex_room: Script,
    /// Takes (2) or renews (1) the lease on posting the notices, or finds
    /// another node holding it (0) (`notices.rs`).
    pub(super) hold_notices: Script,
    /// Takes a posted notice off its room's stream, and the stream with
    /// its last notice (`notices.rs`).
    pub(super) notice_posted: Script,
    /// Schedules a room's second look, or takes it out of the `noticed`
    /// index after that look found nothing, unless it was marked since
    /// (`notices.rs`). A second look's time ends in `.5`: a mark, whole
    /// milliseconds, never does.
    pub(super) settle_noticed: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let mut code = String::from(PRELUDE);
        for function in RoomFn::ALL {
            code.push_str(&format!(
                "\nredis.register_function('{}_VERSION', function(KEYS, ARGV)\nsetup(KEYS, ARGV)\n{}\nend)\n",
                function.name(),
                function.body()
            ));
        }
        let version: String = sha1::Sha1::digest(code.as_bytes())[..6]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let library = format!(
            "#!lua name=signalpost_{version}\n{}",
            code.replace("_VERSION'", &format!("_{version}'"))
        );
        Self {
            library,
            names: RoomFn::ALL.map(|function| format!("{}_{version}", function.name())),
            forget_room: Script::new(
                "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then \
                   return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0",
            ),
            hold_notices: Script::new(
                "local holder = redis.call('GET', KEYS[1]) \
                 if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end \
                 if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end \
                 return 0",
            ),
            notice_posted: Script::new(
                "redis.call('XDEL', KEYS[1], ARGV[1]) \
                 if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end return 1",
            ),
            settle_noticed: Script::new(
                "local mark = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1])) \
                 local seen = tonumber(ARGV[2]) \
                 if mark ~= seen then return 0 end \
                 if ARGV[3] == '0' and seen % 1 ~= 0 then return redis.call('ZREM', KEYS[1], ARGV[1]) end \
                 redis.call('ZADD', KEYS[1], tonumber(ARGV[4]) + 0.5, ARGV[1]) return 1",
            ),
            reindex_room: Script::new(
                "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then \
                   return redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end return 0",
            ),
        }
    }

    fn name(&self, function: RoomFn) -> &str {
        &self.names[function as usize]
    }

    /// Loads the library into the Redis behind `connection` (again, if it is
    /// there: the same code replaces itself).
    pub(super) async fn load(
        &self,
        connection: &mut super::link::Conn,
    ) -> Result<(), ::redis::RedisError> {
        ::redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(&self.library)
            .query_async::<String>(connection)
            .await
            .map(drop)
    }
}

/// What a script answered: its outcome and the rest, once the members of
/// this node it names are woken and the events it dropped counted.
pub(super) struct Reply {
    pub(super) status: String,
    pub(super) rest: Vec<Value>,
}

impl RedisHub {
    /// Calls a room function with the prelude's arguments, then `args`, and
    /// wakes the readers of this node it names.
    pub(super) async fn run(
        &self,
        function: RoomFn,
        room: &RoomId,
        args: &[&str],
    ) -> Result<Reply, Refusal> {
        self.run_carrying(function, room, args, None).await
    }

    /// `run`, for a function that puts the signal `signal` in inboxes: the
    /// readers here it names get it with their wake-up.
    pub(super) async fn run_carrying(
        &self,
        function: RoomFn,
        room: &RoomId,
        args: &[&str],
        signal: Option<&Arc<EventBody>>,
    ) -> Result<Reply, Refusal> {
        let shared = &*self.inner;
        let limits = shared.settings.limits;
        let mut call = ::redis::cmd("FCALL");
        call.arg(shared.scripts.name(function));
        let notifies = shared.settings.notices
            && matches!(
                function,
                RoomFn::Join | RoomFn::Remove | RoomFn::Create | RoomFn::Close
            );
        if notifies {
            // Marked before the call, so that a node dying after it leaves
            // its notices found (`notices.rs`).
            self.mark_noticed(room).await?;
            call.arg(2)
                .arg(self.room_key(room, ""))
                .arg(self.notices_key(room));
        } else {
            call.arg(1).arg(self.room_key(room, ""));
        }
        call.arg(limits.events)
            .arg(limits.bytes)
            .arg(limits.headroom)
            .arg(&shared.node)
            .arg(&shared.wake_prefix)
            .arg(room.as_str());
        for arg in args {
            call.arg(*arg);
        }
        let mut connection = self.connection();
        let value: Value = match call.query_async(&mut connection).await {
            Ok(value) => value,
            // A Redis that lost its functions (restarted empty): load
            // them, and call once more.
            Err(error) if error.to_string().contains("Function not found") => {
                shared
                    .scripts
                    .load(&mut connection)
                    .await
                    .map_err(unavailable)?;
                call.query_async(&mut connection)
                    .await
                    .map_err(unavailable)?
            }
            Err(error) => return Err(unavailable(error)),
        };
        let mut parts = into_array(value).into_iter();
        let status = parts.next().and_then(into_string).unwrap_or_default();
        // `<member>`, or `<member> <id>` of the signal.
        for wake in parts
            .next()
            .map(into_array)
            .unwrap_or_default()
            .into_iter()
            .filter_map(into_string)
        {
            let (member, id) = match wake.split_once(' ') {
                Some((member, id)) => (member, id.parse::<u64>().ok()),
                None => (wake.as_str(), None),
            };
            if let Ok(member) = member.parse::<Uuid>() {
                self.wake_local(room, member, id.zip(signal));
            }
        }
        if let Some(dropped) = parts.next().as_ref().and_then(into_u64)
            && dropped > 0
        {
            metrics::events_dropped(dropped);
        }
        if notifies && status == "ok" {
            // Marked again: the lease holder looks at it now.
            self.mark_noticed(room).await?;
        }
        Ok(Reply {
            status,
            rest: parts.collect(),
        })
    }
}

/// Who acts, as `room.lua` and `update.lua` take it: `admin`, or the
/// calling member's id.
pub(super) fn actor_arg(actor: Actor) -> String {
    match actor {
        Actor::Admin => "admin".to_owned(),
        Actor::Member(caller) => caller.to_string(),
    }
}

/// The refusal a script's status names (the scripts answer with docs/API.md's
/// problem codes). Any other status is a bug between a script and this
/// file: logged, and to the client the state cannot be served now.
pub(super) fn refusal(status: &str) -> Refusal {
    match status {
        "unauthorized" => Refusal::CallerGone,
        "forbidden" => Refusal::NotAllowed,
        "room_not_found" => Refusal::RoomNotFound,
        "room_exists" => Refusal::RoomExists,
        "member_not_found" => Refusal::MemberNotFound,
        "room_locked" => Refusal::RoomLocked,
        "inbox_full" => Refusal::InboxFull,
        "password_changed" => Refusal::PasswordChanged,
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
