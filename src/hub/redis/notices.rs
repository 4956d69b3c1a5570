//! The rooms' notices for webhooks, on Redis: on one Redis or a Cluster
//! alike. Each room's functions append its notices to a stream among the
//! room's keys (`notify` in the prelude), in the same call as the change,
//! so a node that dies loses none and a room's notices keep its order.
//!
//! Which rooms have notices waiting is the `noticed` index outside rooms:
//! room to when to look at it. A node marks the room there before calling
//! a function that may notify, and again once it answered, so the room is
//! looked at at once; the first mark covers a node that dies in between.
//! One node at a time, the one holding the lease, looks at the marked
//! rooms, posts each room's notices in order, and takes each off once
//! posted (the stream goes with its last notice). A room it looked at is
//! looked at once more `RECHECK_MS` later, for a notice whose call was
//! still on its way, and then leaves the index if that found nothing (a
//! `settle` on the index, which a new mark overrides). A holder that dies
//! leaves its notices for the next: each notice is posted by the service
//! once, and at least once across a node's death, with the same id.

use ::redis::{AsyncCommands, Value};

use super::members::unix_ms;
use super::script::{into_array, into_string, into_u64};
use super::{RedisHub, unavailable};
use crate::domain::Refusal;
use crate::model::RoomId;

/// The index of rooms with notices waiting, among the keys outside rooms.
pub(super) const NOTICED: &str = "noticed";

/// How long the lease lasts unless renewed: the holder renews it before
/// every read and every attempt to post, so only a holder that died (or
/// stalled this long) loses it.
const LEASE_MS: u64 = 10_000;

/// How long after a look a room is looked at once more: longer than any
/// call takes to reach Redis after its node marked the room.
const RECHECK_MS: u64 = 30_000;

/// A notice as its room's stream keeps it.
#[derive(Debug, Clone)]
pub struct StoredNotice {
    /// Its entry in its room's stream: unique there, and with the room its
    /// webhook id.
    pub entry: String,
    /// `room-created`, `member-joined`, `member-left` or `room-closed`.
    pub kind: String,
    /// When it happened, in milliseconds since 1970 (Redis's clock).
    pub at_ms: u64,
    /// Its data, JSON.
    pub data: String,
}

/// A room marked in the `noticed` index, as the lease holder found it.
#[derive(Debug, Clone)]
pub struct NoticedRoom {
    pub room: RoomId,
    /// Its mark when found: `settle` leaves a room marked since alone.
    mark: String,
}

impl RedisHub {
    /// The key of a room's stream of notices.
    pub(super) fn notices_key(&self, room: &RoomId) -> String {
        self.room_key(room, "notices")
    }

    /// Marks `room` to be looked at now: it has, or is about to have, a
    /// notice waiting.
    pub(super) async fn mark_noticed(&self, room: &RoomId) -> Result<(), Refusal> {
        self.connection()
            .zadd(self.key(NOTICED), room.as_str(), unix_ms())
            .await
            .map_err(unavailable)
    }

    /// Takes or renews the lease on posting the notices; whether this node
    /// holds it now.
    pub async fn hold_notices(&self) -> Result<bool, Refusal> {
        let held: i64 = self
            .inner
            .scripts
            .hold_notices
            .key(self.key("notices-lease"))
            .arg(&self.inner.node)
            .arg(LEASE_MS)
            .invoke_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        Ok(held > 0)
    }

    /// Up to `count` rooms due to be looked at, those marked longest ago
    /// first. Call only while holding the lease.
    pub async fn noticed_rooms(&self, count: usize) -> Result<Vec<NoticedRoom>, Refusal> {
        let due: Vec<(String, String)> = ::redis::cmd("ZRANGE")
            .arg(self.key(NOTICED))
            .arg("-inf")
            .arg(unix_ms())
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .arg("WITHSCORES")
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        let mut rooms = Vec::with_capacity(due.len());
        for (room, mark) in due {
            match RoomId::parse(&room) {
                Ok(room) => rooms.push(NoticedRoom { room, mark }),
                Err(_) => {
                    let _: Result<(), _> = self.connection().zrem(self.key(NOTICED), &room).await;
                }
            }
        }
        Ok(rooms)
    }

    /// Up to `count` of the room's notices, oldest first.
    pub async fn room_notices(
        &self,
        room: &RoomId,
        count: usize,
    ) -> Result<Vec<StoredNotice>, Refusal> {
        let entries: Value = ::redis::cmd("XRANGE")
            .arg(self.notices_key(room))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        Ok(parse_entries(entries))
    }

    /// Takes a posted notice (or one given up on) off its room's stream.
    pub async fn notice_posted(&self, room: &RoomId, entry: &str) -> Result<(), Refusal> {
        self.inner
            .scripts
            .notice_posted
            .key(self.notices_key(room))
            .arg(entry)
            .invoke_async::<i64>(&mut self.connection())
            .await
            .map(drop)
            .map_err(unavailable)
    }

    /// After a look at `noticed` that posted what its stream held (`posted`:
    /// whether there was anything): unless it was marked since, it is
    /// looked at again later, or, if this was that later look and it found
    /// nothing, it leaves the index.
    pub async fn settle_noticed(&self, noticed: &NoticedRoom, posted: bool) -> Result<(), Refusal> {
        self.inner
            .scripts
            .settle_noticed
            .key(self.key(NOTICED))
            .arg(noticed.room.as_str())
            .arg(&noticed.mark)
            .arg(if posted { "1" } else { "0" })
            .arg(unix_ms() + RECHECK_MS)
            .invoke_async::<i64>(&mut self.connection())
            .await
            .map(drop)
            .map_err(unavailable)
    }
}

/// An `XRANGE` answer: `[[entry, [field, value, …]], …]` (RESP2, and the
/// fields as a map in RESP3).
fn parse_entries(value: Value) -> Vec<StoredNotice> {
    let mut notices = Vec::new();
    for entry in into_array(value) {
        let mut parts = into_array(entry).into_iter();
        let Some(id) = parts.next().and_then(into_string) else {
            continue;
        };
        let fields = match parts.next() {
            Some(Value::Map(fields)) => fields
                .into_iter()
                .flat_map(|(name, value)| [name, value])
                .collect(),
            Some(fields) => into_array(fields),
            None => Vec::new(),
        };
        let mut notice = StoredNotice {
            entry: id,
            kind: String::new(),
            at_ms: 0,
            data: String::new(),
        };
        let mut fields = fields.into_iter();
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            match into_string(name).as_deref() {
                Some("k") => notice.kind = into_string(value).unwrap_or_default(),
                Some("at") => notice.at_ms = into_u64(&value).unwrap_or(0),
                Some("d") => notice.data = into_string(value).unwrap_or_default(),
                _ => {}
            }
        }
        notices.push(notice);
    }
    notices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    fn fields() -> Vec<Value> {
        [
            "k",
            "room-closed",
            "at",
            "1700000000000",
            "d",
            r#"{"room_id":"r"}"#,
        ]
        .map(text)
        .to_vec()
    }

    #[test]
    fn a_range_is_parsed_from_resp2_and_resp3() {
        let as_map = || {
            let fields = fields();
            Value::Map(
                fields
                    .chunks_exact(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect(),
            )
        };
        for fields in [Value::Array(fields()), as_map()] {
            let range = Value::Array(vec![Value::Array(vec![text("1-0"), fields])]);
            let notices = parse_entries(range);
            assert_eq!(notices.len(), 1);
            assert_eq!(notices[0].entry, "1-0");
            assert_eq!(notices[0].kind, "room-closed");
            assert_eq!(notices[0].at_ms, 1_700_000_000_000);
            assert_eq!(notices[0].data, r#"{"room_id":"r"}"#);
        }
    }
}
