//! Wire types: the JSON bodies of docs/API.md with their OpenAPI schemas, and the
//! checked newtypes (`RoomId`, `SignalType`) that cannot hold an invalid value.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

/// Longest room id, in characters.
pub const ROOM_ID_MAX: usize = 64;
/// Longest member name, in characters.
pub const NAME_MAX: usize = 64;
/// Longest user id (a grant's `sub`), in characters.
pub const USER_ID_MAX: usize = 255;
/// Largest member metadata, in bytes of compact JSON.
pub const METADATA_MAX: usize = 4096;
/// Longest signal type, in characters.
pub const SIGNAL_TYPE_MAX: usize = 32;

/// A room id that passed the rules of docs/API.md. Cheap to clone: rooms, token
/// entries and events all share the one allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

impl RoomId {
    /// 1 to 64 characters of `A-Z a-z 0-9 . _ ~ -`, and not `.` or `..`.
    pub fn parse(text: &str) -> Result<Self, InvalidRoomId> {
        let valid_chars = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
        if text.is_empty()
            || text.len() > ROOM_ID_MAX
            || !valid_chars
            || text == "."
            || text == ".."
        {
            return Err(InvalidRoomId);
        }
        Ok(Self(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for RoomId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A text that is no room id; its message says what one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a room id is 1 to {ROOM_ID_MAX} characters of A-Z a-z 0-9 . _ ~ - (and not `.` or `..`)")]
pub struct InvalidRoomId;

/// A text that is no signal type; its message says what one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("`type` is 1 to {SIGNAL_TYPE_MAX} characters of a-z 0-9 -")]
pub struct InvalidSignalType;

/// A signal type: 1 to 32 characters of `a-z 0-9 -`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalType(Box<str>);

impl SignalType {
    pub fn parse(text: &str) -> Result<Self, InvalidSignalType> {
        let valid_chars = text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if text.is_empty() || text.len() > SIGNAL_TYPE_MAX || !valid_chars {
            return Err(InvalidSignalType);
        }
        Ok(Self(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A point in time, written as RFC 3339 in UTC with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    pub fn now() -> Self {
        Self(SystemTime::now())
    }

    /// Reads the RFC 3339 text `Serialize` writes.
    pub fn parse(text: &str) -> Option<Self> {
        humantime::parse_rfc3339(text).ok().map(Self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_rfc3339_millis(self.0).fmt(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Body of `POST /rooms/{room_id}/join`; every field is optional.
// No derived `Debug`: it would print the password.
#[derive(Default, Deserialize, ToSchema)]
#[schema(example = json!({"name": "alice", "metadata": {"avatar": "🦊"}, "capacity": 4}))]
pub struct JoinRequest {
    /// Display name, at most 64 characters.
    #[schema(max_length = 64)]
    pub name: Option<String>,
    /// Any JSON object of at most 4 KiB, shown to the other members.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The new room's capacity, from 2 to the server's `--max-capacity`.
    /// Counts only when this join creates the room.
    #[schema(minimum = 2)]
    pub capacity: Option<i64>,
    /// The room's password, 1 to 256 bytes: a join that creates the room
    /// sets it; a join to a room that has one must give it (403
    /// `forbidden` otherwise). Never shown or logged.
    #[schema(min_length = 1, max_length = 256)]
    pub password: Option<String>,
}

/// A member as the other members see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    pub id: Uuid,
    /// `null` when the join named none.
    #[schema(required = true)]
    pub name: Option<String>,
    /// The application's id for this user: the `sub` of the join grant
    /// (on a server that asks for grants), `null` when it had none.
    #[schema(required = true)]
    pub user_id: Option<String>,
    /// The metadata given at join, `{}` when none was.
    #[schema(value_type = Object)]
    pub metadata: Box<RawValue>,
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: Timestamp,
}

/// Answer of a successful join.
// No `Debug`, so that the token cannot reach a log line through it.
#[derive(Serialize, ToSchema)]
pub struct JoinResponse {
    #[schema(value_type = String, example = "lobby")]
    pub room_id: RoomId,
    pub member: MemberView,
    /// The member's secret: `Authorization: Bearer <token>` or `?token=<token>`. Shown only once.
    pub token: String,
    /// Whether this member owns the room (it created it).
    pub owner: bool,
    pub capacity: u32,
    /// The other members, oldest first.
    pub members: Vec<MemberView>,
    /// Path of this member's SSE inbox (add the token).
    pub events_url: String,
    /// Path of this member's long-poll inbox (add the token).
    pub poll_url: String,
}

impl JoinResponse {
    /// The answer to a join that made `member`, with the URLs of its inbox.
    pub fn new(
        room_id: RoomId,
        member: MemberView,
        token: String,
        owner: bool,
        capacity: u32,
        members: Vec<MemberView>,
    ) -> Self {
        let base = format!("/rooms/{}/members/{}", room_id, member.id);
        Self {
            room_id,
            member,
            token,
            owner,
            capacity,
            members,
            events_url: format!("{base}/events"),
            poll_url: format!("{base}/poll"),
        }
    }
}

/// Body of `POST /signals`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"to": "6f1c2b0e-3a4d-4e5f-9a8b-7c6d5e4f3a2b", "type": "offer", "payload": {"type": "offer", "sdp": "v=0…"}}))]
pub struct SignalRequest {
    /// The recipient; omitted or `null` sends to every other member of the room.
    pub to: Option<Uuid>,
    /// `offer`, `answer`, `candidate`, or any 1 to 32 characters of `a-z 0-9 -`.
    #[serde(rename = "type")]
    #[schema(pattern = r"^[a-z0-9-]{1,32}$")]
    pub signal_type: String,
    /// Any JSON value, relayed as it is; `null` when omitted.
    #[schema(value_type = Option<Value>)]
    pub payload: Option<Box<RawValue>>,
}

/// Answer of an accepted signal: it is in every recipient's inbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalAccepted {
    pub recipients: usize,
}

/// A room and its members.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomView {
    #[schema(value_type = String, example = "lobby")]
    pub id: RoomId,
    pub capacity: u32,
    pub locked: bool,
    /// The owner's member id; `null` while no member may own the room
    /// (their join grants said `"owner": false`).
    #[schema(required = true)]
    pub owner: Option<Uuid>,
    /// Oldest first.
    pub members: Vec<MemberView>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// Body of `PUT /rooms/{room_id}`, which makes a room before anyone
/// joins; every field is optional.
// No derived `Debug`: it would print the password.
#[derive(Default, Deserialize, ToSchema)]
#[schema(example = json!({"capacity": 8, "locked": false, "password": "s3cret", "empty_timeout": 3600}))]
pub struct RoomCreate {
    /// From 2 to the server's `--max-capacity`; its `--default-capacity`
    /// when left out.
    #[schema(minimum = 2)]
    pub capacity: Option<i64>,
    /// `true` refuses every join with 423 `room_locked` until the owner or
    /// the admin unlocks it.
    pub locked: Option<bool>,
    /// A password every join must give, 1 to 256 bytes (403 `forbidden`
    /// otherwise). Never shown or logged.
    #[schema(min_length = 1, max_length = 256)]
    pub password: Option<String>,
    /// Seconds the room stays without members before it closes: from 1 to
    /// 604800 (a week), 300 when left out. It counts from the room's making
    /// and again from each time its last member leaves.
    #[schema(minimum = 1, maximum = 604800)]
    pub empty_timeout: Option<u64>,
}

/// Body of `PATCH /rooms/{room_id}/members/{member_id}`: what the member
/// shows the others. A field left out stays as it is.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({"metadata": {"audio": false, "video": true}}))]
pub struct MemberPatch {
    /// Display name, at most 64 characters; `null` takes it away.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 64)]
    pub name: Option<Option<String>>,
    /// Any JSON object of at most 4 KiB, in place of the one there.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// Body of `PATCH /rooms/{room_id}`.
// No derived `Debug`: it would print the password.
#[derive(Deserialize, ToSchema)]
pub struct RoomPatch {
    /// `true` refuses every new join with 423 `room_locked`.
    pub locked: Option<bool>,
    /// A new password for the room (1 to 256 bytes), or `null` to take it
    /// away; left out, the password stays as it is.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 256)]
    pub password: Option<Option<String>>,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("name", &self.name)
            .field("metadata", &self.metadata)
            .field("capacity", &self.capacity)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl std::fmt::Debug for RoomPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let password = self
            .password
            .as_ref()
            .map(|password| password.as_ref().map(|_| "[redacted]"));
        f.debug_struct("RoomPatch")
            .field("locked", &self.locked)
            .field("password", &password)
            .finish()
    }
}

/// A field that is there, even as `null` (`Some(None)`), against one left
/// out (`None`, by `#[serde(default)]`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// One line of `GET /rooms`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomSummary {
    #[schema(value_type = String, example = "lobby")]
    pub id: RoomId,
    pub capacity: u32,
    pub locked: bool,
    pub member_count: usize,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// Answer of `GET /rooms`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<RoomSummary>,
}

/// One inbox event as long-poll returns it; SSE carries the same three fields
/// as `id:`, `event:` and `data:`. The OpenAPI document describes it typed,
/// one schema per event (`http::api::events`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PolledEvent {
    pub id: u64,
    /// `member-joined`, `member-left`, `member-updated`, `signal`,
    /// `room-updated`, or `gap` (whose `id` is its `to`).
    pub event: &'static str,
    /// The event's data; see the `*Data` schemas.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
}

/// Answer of a long-poll.
// The handler writes it by hand (`http::poll::write_answer`): this
// type is its schema in the OpenAPI document, and what a test holds the
// written bytes to.
#[derive(Debug, Serialize, ToSchema)]
pub struct PollResponse {
    pub events: Vec<PolledEvent>,
}

/// Data of `member-joined`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberJoinedData<'a> {
    pub member: &'a MemberView,
}

/// Data of `member-updated`: the member as it is now.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberUpdatedData<'a> {
    pub member: &'a MemberView,
}

/// Why a member left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LeaveReason {
    /// It left by itself.
    Left,
    /// The room's owner or the admin removed it.
    Removed,
    /// Nobody read its inbox for longer than the member timeout.
    Timeout,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Left => "left",
            Self::Removed => "removed",
            Self::Timeout => "timeout",
        }
    }
}

/// Data of `member-left`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberLeftData {
    pub member_id: Uuid,
    pub reason: LeaveReason,
}

/// Data of `signal`.
// `EventBody::signal` writes the same JSON without serde_json; a test holds
// the two to the same bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalData<'a> {
    /// The sender, `null` for a signal the application's back end sent
    /// (`POST /rooms/{room_id}/signals`).
    #[schema(required = true)]
    pub from: Option<Uuid>,
    /// The recipient, `null` for a signal sent to the whole room.
    #[schema(required = true)]
    pub to: Option<Uuid>,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub signal_type: &'a str,
    /// The sender's payload as it was sent: any JSON value, `null` when it sent none.
    #[schema(value_type = Value)]
    pub payload: &'a RawValue,
    #[schema(value_type = String, format = DateTime)]
    pub sent_at: Timestamp,
}

/// Data of `room-updated`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomUpdatedData<'a> {
    #[schema(value_type = String)]
    pub room_id: &'a RoomId,
    pub locked: bool,
    pub capacity: u32,
    /// `null` while no member may own the room.
    #[schema(required = true)]
    pub owner: Option<Uuid>,
}

/// Body of `POST /streams`: several members' inboxes to read on one stream.
// No derived `Debug`: it would print the tokens.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"inboxes": [
    {"room_id": "lobby", "member_id": "6f1c2b0e-3a4d-4e5f-9a8b-7c6d5e4f3a2b", "token": "tok_…", "last_event_id": 0},
    {"room_id": "standup", "member_id": "0b7e5d2a-1c3f-4a6b-8d9e-2f4a6c8e0b1d", "token": "tok_…", "last_event_id": 12}
]}))]
pub struct SharedStreamRequest {
    /// 1 to 32 inboxes, each another member's.
    pub inboxes: Vec<SharedInbox>,
    /// Seconds between keep-alive comments, as `keep_alive` of one
    /// inbox's stream: 1 or more; the server's `--keep-alive` at most.
    #[schema(value_type = Option<u64>, minimum = 1)]
    pub keep_alive: Option<KeepAlive>,
}

/// A stream's keep-alive interval asked for in whole seconds, checked while
/// the query or body is parsed. A value above the server's own interval is
/// no error: the server's interval is the most it sends, and a client that
/// learnt its proxy's limit on another server need not know this one's.
#[derive(Debug)]
pub struct KeepAlive(u64);

impl KeepAlive {
    /// The interval a stream gets: the one asked for, the server's at most.
    pub fn interval(asked: Option<Self>, server: Duration) -> Duration {
        asked.map_or(server, |Self(secs)| server.min(Duration::from_secs(secs)))
    }
}

impl<'de> Deserialize<'de> for KeepAlive {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let secs = u64::deserialize(deserializer)?;
        if secs == 0 {
            return Err(serde::de::Error::custom(
                "`keep_alive` is a whole number of seconds, 1 or more",
            ));
        }
        Ok(Self(secs))
    }
}

/// One inbox of a `SharedStreamRequest`.
#[derive(Deserialize, ToSchema)]
pub struct SharedInbox {
    /// The room the member is in.
    pub room_id: String,
    pub member_id: Uuid,
    /// The member's token, as its join answered it: each inbox is opened by its own.
    pub token: String,
    /// Resume after this event id, as `Last-Event-ID` does on one inbox's
    /// stream (acknowledging every event up to it); omitted, after the last
    /// one acknowledged.
    pub last_event_id: Option<u64>,
}

/// Data of `ready`, the first event of every stream (not part of the inbox).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyData {
    pub member_id: Uuid,
    /// The id this stream resumes after; 0 for the start.
    pub last_event_id: u64,
    /// Seconds of silence after which this stream carries a keep-alive comment.
    pub keep_alive: f64,
}

/// Data of `gap`: events `from` to `to` (inclusive) are no longer held.
#[derive(Debug, Serialize, ToSchema)]
pub struct GapData {
    pub from: u64,
    pub to: u64,
}

/// Removes JSON whitespace outside strings when it holds a line break, so that
/// relayed JSON can always be written on one SSE `data:` line.
/// Almost every payload has none, and is then borrowed as it is.
pub fn single_line_json(raw: &RawValue) -> Cow<'_, RawValue> {
    let text = raw.get();
    // memchr scans a word at a time; `str::contains` with a char set, one
    // char at a time, was a twentieth of the relay's instructions.
    if memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    Cow::Owned(
        RawValue::from_string(out).expect("removing whitespace between JSON tokens keeps it valid"),
    )
}

/// `single_line_json` of a payload the caller owns, which is moved through
/// as it is when it has no line break.
pub fn into_single_line_json(raw: Box<RawValue>) -> Box<RawValue> {
    if let Cow::Owned(flat) = single_line_json(&raw) {
        return flat;
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_follow_the_contract() {
        for ok in ["a", "lobby", "Room-1_x.y~z", &"x".repeat(64), "...", ".a"] {
            assert!(RoomId::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in [
            "",
            ".",
            "..",
            &"x".repeat(65),
            "a b",
            "a/b",
            "é",
            "a%20b",
            "a\nb",
        ] {
            assert!(RoomId::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn room_ids_are_case_sensitive() {
        assert_ne!(
            RoomId::parse("Room").unwrap(),
            RoomId::parse("room").unwrap()
        );
    }

    #[test]
    fn signal_types_follow_the_contract() {
        for ok in ["offer", "answer", "candidate", "chat-1", &"a".repeat(32)] {
            assert!(SignalType::parse(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", "Offer", "a_b", "a b", &"a".repeat(33), "é"] {
            assert!(SignalType::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn single_line_json_keeps_strings_and_drops_line_breaks() {
        let raw =
            RawValue::from_string("{\n \"a\" : \"x \\\" \\n y\",\r\n\t\"b\": [1, 2]\n}".into())
                .unwrap();
        let flat = single_line_json(&raw);
        assert!(!flat.get().contains(['\n', '\r']));
        let before: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
        let after: serde_json::Value = serde_json::from_str(flat.get()).unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let text = serde_json::to_string(&Timestamp(SystemTime::UNIX_EPOCH)).unwrap();
        assert_eq!(text, "\"1970-01-01T00:00:00.000Z\"");
    }
}
