//! The rooms' notices for webhooks, on Redis. The join and remove
//! functions append them to one stream (`notify` in the prelude), in the
//! same call as their change, so a node that dies loses none. One node at
//! a time, the one holding the lease, hands them out to be posted, through
//! a consumer group with a single consumer name that every holder shares:
//! a notice handed out and not yet taken off (its holder died, or lost the
//! lease) is pending for that name, and the next holder hands it out first.
//! So each notice is posted by the service once, and at least once across
//! a node's death, with the same id.

use ::redis::Value;

use super::script::{into_array, into_string, into_u64};
use super::{RedisHub, unavailable};
use crate::domain::Refusal;

/// The stream's name among the keys outside rooms.
pub(super) const NOTICES: &str = "notices";

/// The consumer group, and the one consumer name its holders share.
const GROUP: &str = "webhooks";
const CONSUMER: &str = "poster";

/// How long the lease lasts unless renewed: the holder renews it before
/// every read and every attempt to post, so only a holder that died (or
/// stalled this long) loses it.
const LEASE_MS: u64 = 10_000;

/// A notice as the stream keeps it.
#[derive(Debug, Clone)]
pub struct StoredNotice {
    /// Its entry in the stream: unique there, and so its webhook id.
    pub entry: String,
    /// `room-created`, `member-joined`, `member-left` or `room-closed`.
    pub kind: String,
    /// When it happened, in milliseconds since 1970 (Redis's clock).
    pub at_ms: u64,
    /// Its data, JSON.
    pub data: String,
}

impl RedisHub {
    /// Takes or renews the lease on posting the notices; whether this node
    /// holds it now.
    pub(in crate::hub) async fn hold_notices(&self) -> Result<bool, Refusal> {
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
        if held == 2 {
            // Just taken: the group may not be there yet (a fresh Redis).
            let created: Result<(), _> = ::redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.key(NOTICES))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut self.connection())
                .await;
            if let Err(error) = created
                && error.code() != Some("BUSYGROUP")
            {
                return Err(unavailable(error));
            }
        }
        Ok(held > 0)
    }

    /// Up to `count` notices to post, oldest first: those handed out before
    /// and not taken off first, then new ones. Call only while holding the
    /// lease.
    pub(in crate::hub) async fn notices_due(
        &self,
        count: usize,
    ) -> Result<Vec<StoredNotice>, Refusal> {
        for from in ["0", ">"] {
            let value: Value = ::redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(CONSUMER)
                .arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(self.key(NOTICES))
                .arg(from)
                .query_async(&mut self.connection())
                .await
                .map_err(unavailable)?;
            let notices = parse_read(value);
            if !notices.is_empty() {
                return Ok(notices);
            }
        }
        Ok(Vec::new())
    }

    /// Takes a posted notice (or one given up on) off the stream.
    pub(in crate::hub) async fn notice_posted(&self, entry: &str) -> Result<(), Refusal> {
        ::redis::pipe()
            .cmd("XACK")
            .arg(self.key(NOTICES))
            .arg(GROUP)
            .arg(entry)
            .ignore()
            .cmd("XDEL")
            .arg(self.key(NOTICES))
            .arg(entry)
            .ignore()
            .query_async::<()>(&mut self.connection())
            .await
            .map_err(unavailable)
    }
}

/// An `XREADGROUP` answer: `[[stream, [[entry, [field, value, …]], …]]]`
/// (RESP2), or a map of stream to entries (RESP3). An entry already
/// deleted comes back with no fields: it is passed over.
fn parse_read(value: Value) -> Vec<StoredNotice> {
    let streams: Vec<Value> = match value {
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        other => into_array(other)
            .into_iter()
            .filter_map(|stream| into_array(stream).into_iter().nth(1))
            .collect(),
    };
    let mut notices = Vec::new();
    for entries in streams {
        for entry in into_array(entries) {
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
    fn a_read_is_parsed_from_resp2_and_resp3_and_deleted_entries_come_without_fields() {
        let entries = Value::Array(vec![
            Value::Array(vec![text("1-0"), Value::Array(fields())]),
            Value::Array(vec![text("2-0"), Value::Nil]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![text("s"), entries.clone()])]);
        let resp3 = Value::Map(vec![(text("s"), entries)]);
        for read in [resp2, resp3] {
            let notices = parse_read(read);
            assert_eq!(notices.len(), 2);
            assert_eq!(notices[0].entry, "1-0");
            assert_eq!(notices[0].kind, "room-closed");
            assert_eq!(notices[0].at_ms, 1_700_000_000_000);
            assert_eq!(notices[0].data, r#"{"room_id":"r"}"#);
            assert_eq!(
                (notices[1].entry.as_str(), notices[1].kind.as_str()),
                ("2-0", "")
            );
        }
    }
}
