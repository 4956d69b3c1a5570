//! Properties that must hold for every input, checked on generated ones:
//! which strings are room ids and signal types, that no name, metadata or
//! payload can break the `text/event-stream` framing, and that an inbox
//! numbers, bounds and hands out its events as docs/API.md says.
//!
//! The seed is fixed (unless `PROPTEST_RNG_SEED` names another) so that CI
//! sees the same cases on every run, and nothing is persisted: a failure
//! prints its minimized input, which is all a fix needs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use eventsource_stream::Eventsource;
use futures_util::{FutureExt, StreamExt};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{RngSeed, TestCaseError};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use signalpost::domain::event::{EventBody, SIGNAL};
use signalpost::domain::inbox::{Batch, Entry, Inbox, Item, Limits};
use signalpost::http::error::ApiError;
use signalpost::http::sse::{EventStream, KEEP_ALIVE, ready_frame, write_batch};
use signalpost::hub::{Actor, Hub, JoinSpec, MemberRef, Settings};
use signalpost::model::{
    LeaveReason, MemberJoinedData, MemberLeftData, MemberView, ReadyData, RoomId, RoomUpdatedData,
    SignalData, SignalRequest, SignalType, Timestamp, single_line_json,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// `cases` unless `PROPTEST_CASES` asks for another count; a fixed seed
/// unless `PROPTEST_RNG_SEED` names one; never a persistence file.
fn config(cases: u32) -> ProptestConfig {
    let from_env = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            from_env.cases
        } else {
            cases
        },
        rng_seed: match from_env.rng_seed {
            RngSeed::Random => RngSeed::Fixed(0x5167_a1b0_57ed),
            chosen => chosen,
        },
        failure_persistence: None,
        ..from_env
    }
}

// ---------------------------------------------------------------------------
// Room ids and signal types
// ---------------------------------------------------------------------------

const ROOM_ID_CHARS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";
const SIGNAL_TYPE_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789-";

/// Characters a careless check lets through: Unicode letters and digits
/// (`char::is_alphanumeric` says yes), look-alikes of allowed ones,
/// separators, percent-encoding, line breaks and NUL; and upper case and `_`,
/// which room ids allow and signal types do not.
const NEAR_MISSES: &[char] = &[
    ' ', '/', '%', '+', '!', '*', ':', '@', '\\', '?', '#', '\n', '\r', '\0', '\t', '\u{7f}', 'é',
    'ß', 'İ', '\u{212a}', 'ａ', '٣', '²', '\u{2028}', '\u{301}', '\u{feff}', 'A', 'Z', '_',
];

/// docs/API.md's room id rule, written from its text: 1 to 64 characters of the
/// listed set, and not `.` or `..`.
fn is_room_id(text: &str) -> bool {
    let length = text.chars().count();
    (1..=64).contains(&length)
        && text.chars().all(|c| ROOM_ID_CHARS.contains(c))
        && text != "."
        && text != ".."
}

/// docs/API.md's signal type rule: 1 to 32 characters of `a-z 0-9 -`.
fn is_signal_type(text: &str) -> bool {
    let length = text.chars().count();
    (1..=32).contains(&length) && text.chars().all(|c| SIGNAL_TYPE_CHARS.contains(c))
}

/// Mostly characters of `alphabet`, some near misses, some anything.
fn candidate(alphabet: &str, max_len: usize) -> impl Strategy<Value = String> + use<> {
    let allowed: Vec<char> = alphabet.chars().collect();
    let one = prop_oneof![
        16 => prop::sample::select(allowed.clone()),
        2 => prop::sample::select(NEAR_MISSES),
        1 => any::<char>(),
    ];
    prop_oneof![
        prop::collection::vec(one, 0..=max_len + 6).prop_map(String::from_iter),
        prop::collection::vec(prop::sample::select(allowed.clone()), 0..=max_len + 6)
            .prop_map(String::from_iter),
        // Around the length limit, where off-by-one errors live.
        prop::collection::vec(prop::sample::select(allowed), max_len - 2..=max_len + 2)
            .prop_map(String::from_iter),
        "[.]{0,3}",
        any::<String>(),
    ]
}

fn outside(alphabet: &'static str) -> impl Strategy<Value = char> {
    prop_oneof![prop::sample::select(NEAR_MISSES), any::<char>()]
        .prop_filter("a character outside the set", move |c| {
            !alphabet.contains(*c)
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_string_is_a_room_id_exactly_when_api_md_allows_it(text in candidate(ROOM_ID_CHARS, 64)) {
        match RoomId::parse(&text) {
            Ok(id) => {
                prop_assert!(is_room_id(&text), "{text:?} was accepted");
                prop_assert_eq!(id.as_str(), text.as_str());
                prop_assert_eq!(id.to_string(), text);
            }
            Err(error) => {
                prop_assert!(!is_room_id(&text), "{text:?} was rejected");
                prop_assert_eq!(ApiError::from(error).code(), "invalid_room_id");
            }
        }
    }

    #[test]
    fn one_to_64_allowed_characters_are_a_room_id_unless_dot_or_dot_dot(
        text in "[A-Za-z0-9._~-]{1,64}",
    ) {
        prop_assert_eq!(RoomId::parse(&text).is_ok(), text != "." && text != "..");
    }

    #[test]
    fn one_character_outside_the_set_makes_a_room_id_invalid(
        id in "[A-Za-z0-9._~-]{0,63}",
        at in any::<Index>(),
        stray in outside(ROOM_ID_CHARS),
    ) {
        let mut text = id;
        // Every allowed character is ASCII, so any byte index is a boundary.
        text.insert(at.index(text.len() + 1), stray);
        prop_assert!(RoomId::parse(&text).is_err(), "{:?} was accepted", text);
    }

    #[test]
    fn more_than_64_characters_are_never_a_room_id(text in "[A-Za-z0-9._~-]{65,300}") {
        prop_assert!(RoomId::parse(&text).is_err());
    }

    #[test]
    fn room_ids_are_equal_and_ordered_exactly_as_their_text(
        a in "[aA.~]{1,3}",
        b in "[aA.~]{1,3}",
    ) {
        // A small alphabet, so that equal and case-folded pairs come up often.
        if let (Ok(x), Ok(y)) = (RoomId::parse(&a), RoomId::parse(&b)) {
            prop_assert_eq!(x == y, a == b);
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }
    }

    #[test]
    fn a_string_is_a_signal_type_exactly_when_api_md_allows_it(
        text in candidate(SIGNAL_TYPE_CHARS, 32),
    ) {
        match SignalType::parse(&text) {
            Ok(signal_type) => {
                prop_assert!(is_signal_type(&text), "{text:?} was accepted");
                prop_assert_eq!(signal_type.as_str(), text.as_str());
            }
            Err(error) => {
                prop_assert!(!is_signal_type(&text), "{text:?} was rejected");
                prop_assert_eq!(ApiError::from(error).code(), "invalid_request");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// An event-stream parser, written from the WHATWG "interpret an event
// stream" steps rather than from our writer.
// ---------------------------------------------------------------------------

/// One event as a browser's `EventSource` dispatches it.
#[derive(Debug, Clone, PartialEq)]
struct Dispatched {
    event_type: String,
    data: String,
    /// How many `data:` lines made it: a payload that broke its line shows
    /// here even when the joined data happens to look right.
    data_lines: usize,
    /// The `id:` field of this event's own block, when it had one.
    own_id: Option<String>,
    /// The stream's last event ID once this event is dispatched; it carries
    /// over events that have no `id:`.
    last_event_id: String,
}

#[derive(Debug, Default)]
struct Parsed {
    events: Vec<Dispatched>,
    comments: Vec<String>,
    /// Fields other than `event`, `data` and `id`: clients ignore them, and
    /// the server never means to write one.
    other_fields: Vec<String>,
    /// Text after the last line end, or a block never ended by a blank
    /// line: a client drops both, so a complete stream has neither.
    unfinished: String,
}

fn parse_event_stream(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut rest = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut event_type = String::new();
    let mut data = String::new();
    let mut data_lines = 0;
    let mut own_id = None;
    let mut last_event_id = String::new();
    let mut block_start = rest;
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let terminator = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + terminator..];
        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                parsed.events.push(Dispatched {
                    event_type: if event_type.is_empty() {
                        "message".to_owned()
                    } else {
                        std::mem::take(&mut event_type)
                    },
                    data: std::mem::take(&mut data),
                    data_lines,
                    own_id: own_id.take(),
                    last_event_id: last_event_id.clone(),
                });
            }
            event_type.clear();
            data.clear();
            data_lines = 0;
            own_id = None;
            block_start = rest;
            continue;
        }
        if let Some(comment) = line.strip_prefix(':') {
            parsed.comments.push(comment.to_owned());
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event_type = value.to_owned(),
            "data" => {
                data.push_str(value);
                data.push('\n');
                data_lines += 1;
            }
            "id" => {
                own_id = Some(value.to_owned());
                if !value.contains('\0') {
                    last_event_id = value.to_owned();
                }
            }
            other => parsed.other_fields.push(other.to_owned()),
        }
    }
    parsed.unfinished = block_start.to_owned();
    parsed
}

/// The same bytes through eventsource-stream, cut into chunks at `cuts`
/// (which may fall inside a UTF-8 sequence), as a network would.
fn parse_with_eventsource_stream(bytes: &[u8], cuts: &[Index]) -> Vec<(String, String, String)> {
    let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    let chunks: Vec<Result<Vec<u8>, Infallible>> = at
        .windows(2)
        .map(|pair| Ok(bytes[pair[0]..pair[1]].to_vec()))
        .collect();
    futures_util::stream::iter(chunks)
        .eventsource()
        .map(|event| {
            let event = event.expect("eventsource-stream parses the stream");
            (event.event, event.data, event.id)
        })
        .collect::<Vec<_>>()
        .now_or_never()
        .expect("an in-memory stream is always ready")
}

// ---------------------------------------------------------------------------
// Event data: everything a client controls, full of line breaks.
// ---------------------------------------------------------------------------

/// Characters that end an SSE line, or that some parser might take for one,
/// and any other.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => prop::sample::select(
            &[
                '\n', '\r', '\u{2028}', '\u{2029}', '\u{85}', '\u{b}', '\u{c}', '\0', '\u{feff}',
                '"', '\\', ':', ' ', '\t', '\u{1b}',
            ][..]
        ),
    ]
}

/// Strings made of tricky characters and of pieces that try to close the
/// current event and forge another.
fn tricky_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => tricky_char().prop_map(String::from),
        1 => prop::sample::select(
            &[
                "\r\n",
                "\n\n",
                "\r\r",
                "\n\nevent: gap\ndata: {\"from\":1,\"to\":9}\n\n",
                "\r\nid: 999\r\n",
                "\ndata: forged",
                ": keep-alive\n\n",
            ][..]
        )
        .prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|pieces| pieces.concat())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Eighths print exactly, so their text parses back to the same number.
        any::<i32>().prop_map(|n| Value::from(f64::from(n) / 8.0)),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((tricky_string(), inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

fn metadata() -> impl Strategy<Value = Value> {
    prop::collection::vec((tricky_string(), json_value()), 0..4)
        .prop_map(|entries| Value::Object(entries.into_iter().collect()))
}

/// Runs of JSON whitespace, line breaks included, to put between tokens.
fn whitespace() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[ \t\r\n]{0,3}", 1..8)
}

/// `value` as JSON text with `spaces` (used in turn) around every token, as a
/// client that pretty-prints, on any platform, would send it.
fn spaced_json(value: &Value, spaces: &[String]) -> String {
    let mut spaces = spaces.iter().map(String::as_str).cycle();
    let mut out = String::new();
    write_spaced(value, &mut spaces, &mut out);
    out
}

fn space<'a>(spaces: &mut impl Iterator<Item = &'a str>, out: &mut String) {
    out.push_str(spaces.next().unwrap_or_default());
}

fn write_spaced<'a>(value: &Value, spaces: &mut impl Iterator<Item = &'a str>, out: &mut String) {
    space(spaces, out);
    match value {
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_spaced(item, spaces, out);
            }
            space(spaces, out);
            out.push(']');
        }
        Value::Object(entries) => {
            out.push('{');
            for (index, (key, item)) in entries.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                space(spaces, out);
                out.push_str(&serde_json::to_string(key).expect("a string serializes"));
                space(spaces, out);
                out.push(':');
                write_spaced(item, spaces, out);
            }
            space(spaces, out);
            out.push('}');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).expect("a scalar serializes")),
    }
    space(spaces, out);
}

/// The payload as `POST /signals` relays it: read from a request body by the
/// wire type, then flattened (the two steps of the handler).
fn relayed_payload(payload_text: &str) -> Box<RawValue> {
    let body = format!("{{\"type\":\"offer\",\r\n\"payload\":{payload_text}\n}}");
    let request: SignalRequest = serde_json::from_str(&body).expect("generated JSON is valid");
    match request.payload {
        Some(raw) => single_line_json(&raw).into_owned(),
        None => RawValue::from_string("null".into()).expect("null is JSON"),
    }
}

/// Metadata as the join handler keeps it: compact JSON text.
fn stored_metadata(metadata: &Value) -> Box<RawValue> {
    let text = serde_json::to_string(metadata).expect("a JSON value serializes");
    RawValue::from_string(text).expect("serde_json writes valid JSON")
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // Up to the year 2100: RFC 3339 has four-digit years.
    (0..4_102_444_800_000u64)
        .prop_map(|ms| Timestamp(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)))
}

fn room_id() -> impl Strategy<Value = RoomId> {
    "[A-Za-z0-9._~-]{1,64}".prop_filter_map("not . or ..", |text| RoomId::parse(&text).ok())
}

/// What a client must find in an event's data: JSON pointer, value.
type Expected = Vec<(&'static str, Value)>;

/// An inbox event of every kind, built from the same wire types the server
/// uses, with client-controlled fields drawn from `tricky_string`.
fn event_body() -> impl Strategy<Value = (Arc<EventBody>, Expected)> {
    prop_oneof![
        (
            uuid(),
            prop::option::of(tricky_string()),
            metadata(),
            timestamp()
        )
            .prop_map(|(id, name, metadata, joined_at)| {
                let view = MemberView {
                    id,
                    name: name.clone(),
                    user_id: None,
                    metadata: stored_metadata(&metadata),
                    joined_at,
                };
                let body = EventBody::new("member-joined", &MemberJoinedData { member: &view });
                let expected = vec![
                    ("/member/id", json!(id)),
                    ("/member/name", json!(name)),
                    ("/member/metadata", metadata),
                ];
                (body, expected)
            }),
        (
            uuid(),
            prop::sample::select(
                &[
                    LeaveReason::Left,
                    LeaveReason::Removed,
                    LeaveReason::Timeout
                ][..]
            )
        )
            .prop_map(|(member_id, reason)| {
                let body = EventBody::new("member-left", &MemberLeftData { member_id, reason });
                let expected = vec![
                    ("/member_id", json!(member_id)),
                    ("/reason", json!(reason.as_str())),
                ];
                (body, expected)
            }),
        (
            uuid(),
            prop::option::of(uuid()),
            "[a-z0-9-]{1,32}",
            json_value(),
            whitespace(),
            timestamp(),
        )
            .prop_map(|(from, to, signal_type, payload, spaces, sent_at)| {
                let raw = relayed_payload(&spaced_json(&payload, &spaces));
                let data = SignalData {
                    from: Some(from),
                    to,
                    signal_type: &signal_type,
                    payload: &raw,
                    sent_at,
                };
                let body = EventBody::new(SIGNAL, &data);
                let expected = vec![
                    ("/from", json!(from)),
                    ("/to", json!(to)),
                    ("/type", json!(signal_type)),
                    ("/payload", payload),
                ];
                (body, expected)
            }),
        (room_id(), any::<bool>(), any::<u32>(), uuid()).prop_map(
            |(room_id, locked, capacity, owner)| {
                let data = RoomUpdatedData {
                    room_id: &room_id,
                    locked,
                    capacity,
                    owner: Some(owner),
                };
                let body = EventBody::new("room-updated", &data);
                let expected = vec![
                    ("/room_id", json!(room_id.as_str())),
                    ("/locked", json!(locked)),
                    ("/capacity", json!(capacity)),
                    ("/owner", json!(owner)),
                ];
                (body, expected)
            }
        ),
    ]
}

/// One item of a batch, with what a client must read back from it.
#[derive(Debug, Clone)]
enum Sent {
    Gap {
        from: u64,
        to: u64,
    },
    Event {
        id: u64,
        body: Arc<EventBody>,
        expected: Expected,
    },
}

fn sent_item() -> impl Strategy<Value = Sent> {
    prop_oneof![
        1 => (any::<u64>(), any::<u64>()).prop_map(|(from, to)| Sent::Gap { from, to }),
        4 => (any::<u64>(), event_body())
            .prop_map(|(id, (body, expected))| Sent::Event { id, body, expected }),
    ]
}

fn batch_of(items: &[Sent]) -> Batch {
    Batch {
        items: items
            .iter()
            .map(|item| match item {
                Sent::Gap { from, to } => Item::Gap {
                    from: *from,
                    to: *to,
                },
                Sent::Event { id, body, .. } => Item::Event(Entry {
                    id: *id,
                    body: Arc::clone(body),
                }),
            })
            .collect(),
    }
}

fn parse_json(data: &str) -> Result<Value, TestCaseError> {
    serde_json::from_str(data)
        .map_err(|error| TestCaseError::fail(format!("data {data:?} is not JSON: {error}")))
}

/// Checks that `events` are exactly `sent`, in order, as a client reads
/// them; `last_event_id` is the client's last event ID before the first.
fn check_events(
    events: &[Dispatched],
    sent: &[Sent],
    last_event_id: &mut String,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(events.len(), sent.len(), "events read: {:#?}", events);
    for (event, item) in events.iter().zip(sent) {
        prop_assert_eq!(event.data_lines, 1, "{:?}", event);
        match item {
            Sent::Gap { from, to } => {
                prop_assert_eq!(&event.event_type, "gap");
                prop_assert_eq!(&event.own_id, &None, "a gap has no id of its own");
                prop_assert_eq!(parse_json(&event.data)?, json!({"from": from, "to": to}));
            }
            Sent::Event { id, body, expected } => {
                *last_event_id = id.to_string();
                prop_assert_eq!(event.event_type.as_str(), body.kind);
                prop_assert_eq!(event.own_id.as_deref(), Some(last_event_id.as_str()));
                prop_assert_eq!(event.data.as_str(), body.json());
                let data = parse_json(&event.data)?;
                for (pointer, value) in expected {
                    prop_assert_eq!(data.pointer(pointer), Some(value), "at {}", pointer);
                }
            }
        }
        prop_assert_eq!(&event.last_event_id, &*last_event_id);
    }
    Ok(())
}

fn check_ready(event: &Dispatched, member_id: Uuid, cursor: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(&event.event_type, "ready");
    prop_assert_eq!(&event.own_id, &None, "ready has no id");
    prop_assert_eq!(event.data_lines, 1);
    prop_assert_eq!(
        parse_json(&event.data)?,
        json!({"member_id": member_id, "last_event_id": cursor, "keep_alive": 15.0})
    );
    Ok(())
}

/// A whole stream body: `ready`, then batches, each maybe followed by a
/// keep-alive comment.
fn stream_bytes(member_id: Uuid, cursor: u64, batches: &[(Vec<Sent>, bool)]) -> Vec<u8> {
    let mut bytes = ready_frame(&ReadyData {
        member_id,
        last_event_id: cursor,
        keep_alive: 15.0,
    });
    for (items, keep_alive) in batches {
        write_batch(&mut bytes, &batch_of(items));
        if *keep_alive {
            bytes.extend_from_slice(KEEP_ALIVE);
        }
    }
    bytes
}

fn batches() -> impl Strategy<Value = Vec<(Vec<Sent>, bool)>> {
    prop::collection::vec(
        (prop::collection::vec(sent_item(), 0..5), any::<bool>()),
        0..4,
    )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn a_batch_reads_back_as_exactly_its_items_whatever_their_data_holds(
        items in prop::collection::vec(sent_item(), 0..8),
    ) {
        let mut frame = Vec::new();
        write_batch(&mut frame, &batch_of(&items));
        let text = String::from_utf8(frame).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed = parse_event_stream(&text);
        prop_assert_eq!(&parsed.unfinished, "", "{:?}", text);
        prop_assert!(parsed.other_fields.is_empty(), "{:?}", parsed.other_fields);
        prop_assert!(parsed.comments.is_empty(), "{:?}", parsed.comments);
        check_events(&parsed.events, &items, &mut String::new())?;
    }

    #[test]
    fn the_ready_frame_is_one_ready_event_without_an_id(
        member_id in uuid(),
        cursor in any::<u64>(),
    ) {
        let frame = ready_frame(&ReadyData { member_id, last_event_id: cursor, keep_alive: 15.0 });
        let text = String::from_utf8(frame).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed = parse_event_stream(&text);
        prop_assert_eq!(parsed.events.len(), 1, "{:?}", text);
        prop_assert_eq!(&parsed.unfinished, "");
        prop_assert!(parsed.other_fields.is_empty() && parsed.comments.is_empty());
        check_ready(&parsed.events[0], member_id, cursor)?;
        prop_assert_eq!(&parsed.events[0].last_event_id, "");
    }

    #[test]
    fn a_stream_reads_back_as_ready_then_every_item_in_order(
        member_id in uuid(),
        cursor in any::<u64>(),
        batches in batches(),
    ) {
        let bytes = stream_bytes(member_id, cursor, &batches);
        let text = String::from_utf8(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed = parse_event_stream(&text);
        prop_assert_eq!(&parsed.unfinished, "");
        prop_assert!(parsed.other_fields.is_empty(), "{:?}", parsed.other_fields);
        let keep_alives = batches.iter().filter(|(_, keep_alive)| *keep_alive).count();
        prop_assert_eq!(parsed.comments.len(), keep_alives);
        prop_assert!(parsed.comments.iter().all(|comment| comment == " keep-alive"));
        let (ready, rest) = parsed
            .events
            .split_first()
            .ok_or_else(|| TestCaseError::fail("no ready event"))?;
        check_ready(ready, member_id, cursor)?;
        let sent: Vec<Sent> = batches.into_iter().flat_map(|(items, _)| items).collect();
        check_events(rest, &sent, &mut String::new())?;
    }

    #[test]
    fn eventsource_stream_reads_any_chunking_of_a_stream_as_the_reference_parser_does(
        member_id in uuid(),
        cursor in any::<u64>(),
        batches in batches(),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let bytes = stream_bytes(member_id, cursor, &batches);
        let text = String::from_utf8(bytes.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let reference: Vec<(String, String, String)> = parse_event_stream(&text)
            .events
            .into_iter()
            .map(|event| (event.event_type, event.data, event.last_event_id))
            .collect();
        prop_assert_eq!(parse_with_eventsource_stream(&bytes, &cuts), reference);
    }

    #[test]
    fn relayed_json_never_keeps_a_line_break_and_keeps_its_value(
        value in json_value(),
        spaces in whitespace(),
    ) {
        let text = spaced_json(&value, &spaces);
        let raw = RawValue::from_string(text.clone()).expect("spaced_json writes valid JSON");
        let flat = single_line_json(&raw);
        prop_assert!(!flat.get().contains(['\n', '\r']), "{:?}", flat.get());
        prop_assert_eq!(parse_json(flat.get())?, value);
        if !raw.get().contains(['\n', '\r']) {
            prop_assert_eq!(flat.get(), raw.get(), "JSON without a line break is relayed as it is");
        }
    }
}

// ---------------------------------------------------------------------------
// The same, through the hub and the stream body a client receives.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Someone {
    name: Option<String>,
    metadata: Value,
}

#[derive(Debug, Clone)]
struct Sending {
    to_everyone: bool,
    signal_type: String,
    payload: Value,
    spaces: Vec<String>,
}

fn someone() -> impl Strategy<Value = Someone> {
    (prop::option::of(tricky_string()), metadata())
        .prop_map(|(name, metadata)| Someone { name, metadata })
}

fn sending() -> impl Strategy<Value = Sending> {
    (any::<bool>(), "[a-z0-9-]{1,32}", json_value(), whitespace()).prop_map(
        |(to_everyone, signal_type, payload, spaces)| Sending {
            to_everyone,
            signal_type,
            payload,
            spaces,
        },
    )
}

fn join_spec(who: &Someone) -> JoinSpec {
    JoinSpec {
        name: who.name.clone(),
        user_id: None,
        password_checked: None,
        password_hash: None,
        may_own: true,
        metadata: stored_metadata(&who.metadata),
        capacity: None,
    }
}

/// What Alice's stream carries after Bob joins, sends `signals` and leaves:
/// the body bytes, Alice's id and Bob's.
async fn alice_stream(
    room: RoomId,
    alice: &Someone,
    bob: &Someone,
    signals: &[Sending],
) -> (Vec<u8>, Uuid, Uuid) {
    let hub = Hub::memory(Settings {
        default_capacity: 4,
        max_capacity: 4,
        limits: Limits {
            events: 64,
            bytes: 1 << 20,
            headroom: 10,
        },
        member_timeout: Duration::from_secs(3600),
        max_members: 16,
        max_kept_rooms: 16,
        max_readers: 16,
        notices: false,
    });
    let alice = hub
        .join(room.clone(), join_spec(alice))
        .await
        .expect("an empty room takes a member")
        .member
        .id;
    let bob = hub
        .join(room.clone(), join_spec(bob))
        .await
        .expect("a room of one takes another")
        .member
        .id;
    let from = MemberRef {
        room: room.clone(),
        member: bob,
    };
    for signal in signals {
        let raw = relayed_payload(&spaced_json(&signal.payload, &signal.spaces));
        let signal_type = SignalType::parse(&signal.signal_type).expect("drawn from the set");
        let to = (!signal.to_everyone).then_some(alice);
        hub.send_signal(&from, to, &signal_type, raw)
            .await
            .expect("a few signals fit the inbox");
    }
    hub.remove_member(&room, bob, Actor::Member(bob))
        .await
        .expect("a member may leave");
    let subscription = hub
        .open_stream(
            &MemberRef {
                room,
                member: alice,
            },
            None,
        )
        .await
        .expect("a member may open its stream");
    let first = ready_frame(&ReadyData {
        member_id: alice,
        last_event_id: subscription.cursor(),
        keep_alive: 15.0,
    });
    let shutdown = CancellationToken::new();
    let body = EventStream::new(
        first,
        subscription,
        Duration::from_secs(3600),
        shutdown.clone(),
    );
    let mut body = axum::body::Body::new(body).into_data_stream();
    let mut bytes = Vec::new();
    // `ready`, then one batch with everything the inbox held.
    for _ in 0..2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("held events are sent at once")
            .expect("the stream stays open until shutdown");
        bytes.extend_from_slice(&chunk.expect("the body never fails"));
    }
    shutdown.cancel();
    assert!(body.next().await.is_none(), "shutdown ends the stream");
    (bytes, alice, bob)
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn names_metadata_and_payloads_reach_an_open_stream_intact(
        room in room_id(),
        alice in someone(),
        bob in someone(),
        signals in prop::collection::vec(sending(), 0..5),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a test runtime starts");
        let (bytes, alice_id, bob_id) =
            runtime.block_on(alice_stream(room, &alice, &bob, &signals));
        let text = String::from_utf8(bytes.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let parsed = parse_event_stream(&text);
        prop_assert_eq!(&parsed.unfinished, "");
        prop_assert!(parsed.other_fields.is_empty(), "{:?}", parsed.other_fields);
        prop_assert_eq!(parsed.events.len(), signals.len() + 3, "{:#?}", parsed.events);
        check_ready(&parsed.events[0], alice_id, 0)?;

        let events = &parsed.events[1..];
        for (index, event) in events.iter().enumerate() {
            prop_assert_eq!(event.own_id.clone(), Some((index + 1).to_string()));
            prop_assert_eq!(event.data_lines, 1);
        }
        let joined = parse_json(&events[0].data)?;
        prop_assert_eq!(&events[0].event_type, "member-joined");
        prop_assert_eq!(&joined["member"]["id"], &json!(bob_id));
        prop_assert_eq!(&joined["member"]["name"], &json!(bob.name));
        prop_assert_eq!(&joined["member"]["metadata"], &bob.metadata);
        for (event, signal) in events[1..].iter().zip(&signals) {
            let data = parse_json(&event.data)?;
            prop_assert_eq!(&event.event_type, "signal");
            prop_assert_eq!(&data["from"], &json!(bob_id));
            let to = (!signal.to_everyone).then_some(alice_id);
            prop_assert_eq!(&data["to"], &json!(to));
            prop_assert_eq!(&data["type"], &json!(signal.signal_type));
            prop_assert_eq!(&data["payload"], &signal.payload);
        }
        let left = &events[signals.len() + 1];
        prop_assert_eq!(&left.event_type, "member-left");
        prop_assert_eq!(
            parse_json(&left.data)?,
            json!({"member_id": bob_id, "reason": "left"})
        );

        let client = parse_with_eventsource_stream(&bytes, &[]);
        let reference: Vec<(String, String, String)> = parsed
            .events
            .into_iter()
            .map(|event| (event.event_type, event.data, event.last_event_id))
            .collect();
        prop_assert_eq!(client, reference);
    }
}

// ---------------------------------------------------------------------------
// The inbox against a reference model.
// ---------------------------------------------------------------------------

/// The largest membership event `Limits::headroom` is sized for, as
/// `inbox.rs` documents it: 4 KiB of metadata and a name.
const MEMBER_EVENT_MAX: usize = 4096 + 512;

/// An event id named relative to the newest, so that generated ids land
/// where they matter.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Zero,
    Back(u8),
    Ahead(u8),
}

impl Mark {
    fn resolve(self, last_id: u64) -> u64 {
        match self {
            Mark::Zero => 0,
            Mark::Back(n) => last_id.saturating_sub(n.into()),
            Mark::Ahead(n) => last_id + u64::from(n),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// A signal to this member alone (`push_signal`); the size is of its data.
    Signal(usize),
    /// A signal to the whole room: `can_accept`, then `push`, as the hub does.
    Broadcast(usize),
    /// A membership or room event, never refused.
    Membership(&'static str, usize),
    /// A stream opens, resuming after `Last-Event-ID` or else after the
    /// delivered mark, and reads at once; it replaces any older stream.
    OpenStream(Option<Mark>),
    /// The open stream wakes up and reads after its cursor.
    StreamReads,
    /// The open stream's connection dies before its last batch arrives: the
    /// client comes back with the `Last-Event-ID` it had before that batch.
    Reconnect,
    /// A long-poll after `after`, by default the acknowledged id.
    Poll(Option<Mark>),
    Acknowledge(Mark),
}

fn mark() -> impl Strategy<Value = Mark> {
    prop_oneof![
        Just(Mark::Zero),
        (0u8..4).prop_map(Mark::Back),
        (0u8..3).prop_map(Mark::Ahead),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Bodies are JSON strings: two quotes around the characters.
    let signal_size = (0usize..=120).prop_map(|len| len + 2);
    let membership_size = prop_oneof![
        6 => (0usize..=60).prop_map(|len| len + 2),
        // Big joins, so that the byte side of the hard bound is reached too.
        1 => (MEMBER_EVENT_MAX - 200)..=MEMBER_EVENT_MAX,
    ];
    let kind = prop::sample::select(&["member-joined", "member-left", "room-updated"][..]);
    prop_oneof![
        4 => signal_size.clone().prop_map(Op::Signal),
        2 => signal_size.prop_map(Op::Broadcast),
        3 => (kind, membership_size).prop_map(|(kind, size)| Op::Membership(kind, size)),
        1 => prop::option::of(mark()).prop_map(Op::OpenStream),
        2 => Just(Op::StreamReads),
        1 => Just(Op::Reconnect),
        1 => prop::option::of(mark()).prop_map(Op::Poll),
        1 => mark().prop_map(Op::Acknowledge),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (1usize..=6, 8usize..=400, 1usize..=4).prop_map(|(events, bytes, headroom)| Limits {
        events,
        bytes,
        headroom,
    })
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..60)
}

thread_local! {
    /// Data by size: serializing and checking 4 KiB strings for every push
    /// would take most of a debug run.
    static DATA: RefCell<HashMap<usize, Box<RawValue>>> = RefCell::default();
}

/// A new body (its own allocation, so reads can be traced back to the
/// push) with exactly `size` bytes of data: what `EventBody::new` makes of
/// a string of `size - 2` characters.
fn body_of(kind: &'static str, size: usize) -> Arc<EventBody> {
    let data = DATA.with(|cache| {
        cache
            .borrow_mut()
            .entry(size)
            .or_insert_with(|| {
                serde_json::value::to_raw_value(&"x".repeat(size - 2)).expect("a string serializes")
            })
            .clone()
    });
    assert_eq!(
        data.get().len(),
        size,
        "a JSON string is its characters and two quotes"
    );
    EventBody::from_json(kind, data)
}

/// What the public surface of an inbox shows.
#[derive(Debug, Clone, PartialEq)]
struct State {
    last_id: u64,
    delivered: u64,
    acked: u64,
    held_len: usize,
    held_bytes: usize,
}

impl State {
    fn of(inbox: &Inbox) -> Self {
        Self {
            last_id: inbox.last_id(),
            delivered: inbox.delivered(),
            acked: inbox.acked(),
            held_len: inbox.held_len(),
            held_bytes: inbox.held_bytes(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Gap(u64, u64),
    Event(u64),
    /// An event whose body is not the one pushed under its id.
    Misfiled(u64),
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Pushed {
        id: Option<u64>,
        /// For a refusal: whether the whole inbox (its `Debug`, every field)
        /// is as it was.
        unchanged: bool,
    },
    Read {
        /// The cursor asked for, before any clamping.
        after: u64,
        /// The delivered mark when the read starts (after any acknowledge).
        delivered_before: u64,
        items: Vec<Shape>,
        cursor: u64,
    },
    Acknowledged,
    /// `StreamReads` or `Reconnect` with no stream open.
    Nothing,
}

/// One operation: what the inbox did, and what the model says it should have.
#[derive(Debug)]
struct Record {
    op: Op,
    before: State,
    after: State,
    outcome: Outcome,
    expected: Outcome,
    expected_after: State,
}

/// The inbox rules of docs/API.md and of `inbox.rs`'s documentation as a plain
/// list: no counters, no cached totals, everything recomputed.
struct Model {
    limits: Limits,
    /// Held events, oldest first: id, whether it is a signal, its size.
    held: Vec<(u64, bool, usize)>,
    last_id: u64,
    delivered: u64,
    acked: u64,
}

impl Model {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            held: Vec::new(),
            last_id: 0,
            delivered: 0,
            acked: 0,
        }
    }

    fn held_bytes(&self) -> usize {
        self.held.iter().map(|&(_, _, size)| size).sum()
    }

    /// Held events that are undelivered (`true`) or delivered (`false`).
    fn part(&self, undelivered: bool) -> impl Iterator<Item = &(u64, bool, usize)> {
        self.held
            .iter()
            .filter(move |&&(id, _, _)| (id > self.delivered) == undelivered)
    }

    fn count(&self, undelivered: bool) -> usize {
        self.part(undelivered).count()
    }

    fn bytes(&self, undelivered: bool) -> usize {
        self.part(undelivered).map(|&(_, _, size)| size).sum()
    }

    fn push_signal(&mut self, size: usize) -> Option<u64> {
        let too_many = self.count(true) + 1 > self.limits.events;
        let too_big = self.bytes(true) + size > self.limits.bytes;
        (!too_many && !too_big).then(|| self.push(true, size))
    }

    fn push(&mut self, signal: bool, size: usize) -> u64 {
        let Limits {
            events,
            bytes,
            headroom,
        } = self.limits;
        // Delivered events wait for a resume in a window as large as the
        // hard bound on undelivered ones; when an event arrives, the oldest
        // give way.
        while self
            .held
            .first()
            .is_some_and(|&(id, _, _)| id <= self.delivered)
            && (self.count(false) > events + headroom
                || self.bytes(false) > bytes + headroom * MEMBER_EVENT_MAX)
        {
            self.held.remove(0);
        }
        // Past the hard bound only churn remains: the oldest undelivered
        // membership event goes. A signal never does: it was answered 202.
        while self.count(true) >= events + headroom
            || self.bytes(true) + size > bytes + headroom * MEMBER_EVENT_MAX
        {
            let Some(index) = self
                .held
                .iter()
                .position(|&(id, signal, _)| id > self.delivered && !signal)
            else {
                break;
            };
            self.held.remove(index);
        }
        self.last_id += 1;
        self.held.push((self.last_id, signal, size));
        self.last_id
    }

    fn acknowledge(&mut self, id: u64) {
        self.acked = self.acked.max(id.min(self.last_id));
        let acked = self.acked;
        self.held.retain(|&(id, _, _)| id > acked);
        self.delivered = self.delivered.max(acked);
    }

    fn read_after(&mut self, after: u64) -> Outcome {
        let delivered_before = self.delivered;
        let mut items = Vec::new();
        for id in after.min(self.last_id) + 1..=self.last_id {
            if self.held.iter().any(|&(held, _, _)| held == id) {
                items.push(Shape::Event(id));
            } else if let Some(Shape::Gap(_, to)) = items.last_mut()
                && *to + 1 == id
            {
                *to = id;
            } else {
                items.push(Shape::Gap(id, id));
            }
        }
        self.delivered = self.last_id;
        Outcome::Read {
            after,
            delivered_before,
            items,
            cursor: self.last_id,
        }
    }

    fn state(&self) -> State {
        State {
            last_id: self.last_id,
            delivered: self.delivered,
            acked: self.acked,
            held_len: self.held.len(),
            held_bytes: self.held_bytes(),
        }
    }
}

/// Reads after `after` from both, naming each event by its id, and checking
/// it carries the body pushed under that id.
fn read_both(
    inbox: &mut Inbox,
    model: &mut Model,
    bodies: &[Arc<EventBody>],
    after: u64,
) -> (Outcome, Outcome) {
    let delivered_before = inbox.delivered();
    let (batch, cursor) = inbox.read_after(after);
    let items = batch
        .items
        .iter()
        .map(|item| match item {
            Item::Gap { from, to } => Shape::Gap(*from, *to),
            Item::Event(entry) => {
                let pushed = usize::try_from(entry.id - 1)
                    .ok()
                    .and_then(|index| bodies.get(index));
                if pushed.is_some_and(|body| Arc::ptr_eq(body, &entry.body)) {
                    Shape::Event(entry.id)
                } else {
                    Shape::Misfiled(entry.id)
                }
            }
        })
        .collect();
    let outcome = Outcome::Read {
        after,
        delivered_before,
        items,
        cursor,
    };
    (outcome, model.read_after(after))
}

/// Runs `ops` on an inbox, reading as the hub's streams and polls do, and
/// on the model.
fn run(limits: Limits, ops: &[Op]) -> Vec<Record> {
    let mut inbox = Inbox::default();
    let mut model = Model::new(limits);
    // The body of event `id` is at `id - 1`.
    let mut bodies: Vec<Arc<EventBody>> = Vec::new();
    // The open stream: its cursor, and the cursor of its last read (what
    // the client still has if that batch never reached it).
    let mut stream: Option<(u64, u64)> = None;
    let mut records = Vec::with_capacity(ops.len());
    for op in ops {
        let before = State::of(&inbox);
        let (outcome, expected) = match *op {
            Op::Signal(size) | Op::Broadcast(size) => {
                let body = body_of(SIGNAL, size);
                let snapshot = format!("{inbox:?}");
                let id = if let Op::Signal(_) = op {
                    inbox.push_signal(Arc::clone(&body), limits).ok()
                } else if inbox.can_accept(size, limits) {
                    Some(inbox.push(Arc::clone(&body), limits))
                } else {
                    None
                };
                if id.is_some() {
                    bodies.push(body);
                }
                let unchanged = id.is_none() && format!("{inbox:?}") == snapshot;
                let expected = model.push_signal(size);
                (
                    Outcome::Pushed { id, unchanged },
                    Outcome::Pushed {
                        id: expected,
                        unchanged: expected.is_none(),
                    },
                )
            }
            Op::Membership(kind, size) => {
                let body = body_of(kind, size);
                let id = inbox.push(Arc::clone(&body), limits);
                bodies.push(body);
                (
                    Outcome::Pushed {
                        id: Some(id),
                        unchanged: false,
                    },
                    Outcome::Pushed {
                        id: Some(model.push(false, size)),
                        unchanged: false,
                    },
                )
            }
            Op::OpenStream(resume) => {
                // As `Hub::open_stream`: a resume acknowledges up to its id.
                let cursor = match resume {
                    Some(mark) => {
                        let id = mark.resolve(inbox.last_id());
                        inbox.acknowledge(id);
                        model.acknowledge(id);
                        id.min(inbox.last_id())
                    }
                    None => inbox.delivered(),
                };
                let read = read_both(&mut inbox, &mut model, &bodies, cursor);
                stream = Some((inbox.last_id(), cursor));
                read
            }
            Op::StreamReads => match stream {
                Some((cursor, resume)) => {
                    let read = read_both(&mut inbox, &mut model, &bodies, cursor);
                    // An empty read writes nothing: the client's last batch
                    // is still the one before.
                    let resume = if inbox.last_id() > cursor {
                        cursor
                    } else {
                        resume
                    };
                    stream = Some((inbox.last_id(), resume));
                    read
                }
                None => (Outcome::Nothing, Outcome::Nothing),
            },
            Op::Reconnect => match stream {
                Some((_, resume)) => {
                    // As `Hub::open_stream` with `Last-Event-ID: resume`.
                    inbox.acknowledge(resume);
                    model.acknowledge(resume);
                    let read = read_both(&mut inbox, &mut model, &bodies, resume);
                    stream = Some((inbox.last_id(), resume));
                    read
                }
                None => (Outcome::Nothing, Outcome::Nothing),
            },
            Op::Poll(after) => {
                // As `Hub::open_poll`, then one read.
                let after = after.map_or(inbox.acked(), |mark| mark.resolve(inbox.last_id()));
                inbox.acknowledge(after);
                model.acknowledge(after);
                let cursor = after.min(inbox.last_id());
                read_both(&mut inbox, &mut model, &bodies, cursor)
            }
            Op::Acknowledge(mark) => {
                let id = mark.resolve(inbox.last_id());
                inbox.acknowledge(id);
                model.acknowledge(id);
                (Outcome::Acknowledged, Outcome::Acknowledged)
            }
        };
        records.push(Record {
            op: op.clone(),
            before,
            after: State::of(&inbox),
            outcome,
            expected,
            expected_after: model.state(),
        });
    }
    records
}

/// The events of a read that no read had handed out before it.
fn fresh_ids(items: &[Shape], delivered_before: u64) -> Vec<u64> {
    event_ids(items)
        .into_iter()
        .filter(|&id| id > delivered_before)
        .collect()
}

fn event_ids(items: &[Shape]) -> Vec<u64> {
    items
        .iter()
        .filter_map(|item| match *item {
            Shape::Event(id) | Shape::Misfiled(id) => Some(id),
            Shape::Gap(..) => None,
        })
        .collect()
}

/// Ids of the accepted signals.
fn signal_ids(records: &[Record]) -> Vec<u64> {
    records
        .iter()
        .filter_map(|record| match (&record.op, &record.outcome) {
            (Op::Signal(_) | Op::Broadcast(_), Outcome::Pushed { id, .. }) => *id,
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn an_inbox_agrees_with_its_reference_model(limits in limits(), ops in ops()) {
        for (step, record) in run(limits, &ops).iter().enumerate() {
            prop_assert_eq!(&record.outcome, &record.expected, "step {}: {:?}", step, record);
            prop_assert_eq!(&record.after, &record.expected_after, "step {}: {:?}", step, record);
        }
    }

    #[test]
    fn accepted_events_are_numbered_from_one_up_by_one(limits in limits(), ops in ops()) {
        let mut last_id = 0;
        for (step, record) in run(limits, &ops).iter().enumerate() {
            if let Outcome::Pushed { id: Some(id), .. } = record.outcome {
                prop_assert_eq!(id, last_id + 1, "step {}: {:?}", step, record);
                last_id = id;
            }
            prop_assert_eq!(record.after.last_id, last_id, "step {}: {:?}", step, record);
        }
    }

    #[test]
    fn a_refused_signal_changes_nothing(limits in limits(), ops in ops()) {
        for (step, record) in run(limits, &ops).iter().enumerate() {
            if let Outcome::Pushed { id: None, unchanged } = record.outcome {
                prop_assert!(unchanged, "step {}: {:?}", step, record);
                prop_assert_eq!(&record.before, &record.after, "step {}", step);
            }
        }
    }

    #[test]
    fn delivered_events_always_make_room_for_a_signal_that_fits_alone(
        limits in limits(),
        ops in ops(),
    ) {
        for (step, record) in run(limits, &ops).iter().enumerate() {
            if let (Op::Signal(size) | Op::Broadcast(size), Outcome::Pushed { id, .. }) =
                (&record.op, &record.outcome)
            {
                let all_delivered = record.before.delivered == record.before.last_id;
                if all_delivered && *size <= limits.bytes {
                    prop_assert!(id.is_some(), "step {}: {:?}", step, record);
                }
            }
        }
    }

    #[test]
    fn a_read_covers_every_id_after_its_cursor_once_as_an_event_or_inside_a_gap(
        limits in limits(),
        ops in ops(),
    ) {
        for (step, record) in run(limits, &ops).iter().enumerate() {
            let Outcome::Read { after, items, cursor, .. } = &record.outcome else {
                continue;
            };
            let last_id = record.after.last_id;
            prop_assert_eq!(*cursor, last_id, "step {}", step);
            let mut next = (*after).min(last_id) + 1;
            let mut previous_was_gap = false;
            for item in items {
                match *item {
                    Shape::Gap(from, to) => {
                        prop_assert!(
                            from == next && from <= to && !previous_was_gap,
                            "step {}: {:?}", step, record
                        );
                        next = to + 1;
                        previous_was_gap = true;
                    }
                    Shape::Event(id) | Shape::Misfiled(id) => {
                        prop_assert_eq!(id, next, "step {}: {:?}", step, record);
                        next = id + 1;
                        previous_was_gap = false;
                    }
                }
            }
            prop_assert_eq!(next, last_id + 1, "step {}: {:?}", step, record);
            prop_assert!(
                !items.iter().any(|item| matches!(item, Shape::Misfiled(_))),
                "step {}: {:?}", step, record
            );
        }
    }

    #[test]
    fn an_undelivered_signal_is_never_lost(limits in limits(), ops in ops()) {
        let records = run(limits, &ops);
        let signals = signal_ids(&records);
        for (step, record) in records.iter().enumerate() {
            let Outcome::Read { delivered_before, items, .. } = &record.outcome else {
                continue;
            };
            for item in items {
                if let Shape::Gap(from, to) = *item {
                    let lost = signals
                        .iter()
                        .find(|&&id| id > *delivered_before && (from..=to).contains(&id));
                    prop_assert!(lost.is_none(), "step {}: signal {:?} in {:?}", step, lost, record);
                }
            }
        }
    }

    #[test]
    // README and `Inbox::trim_delivered` promise it for the events a read
    // delivered for the first time; events it sent again (a resume from
    // further back) may give way to the window, with a gap.
    fn the_batch_a_dead_connection_lost_is_held_whole_when_the_client_resumes(
        limits in limits(),
        ops in ops(),
    ) {
        // The events of the stream's last batch, while nothing but new
        // events has happened since: a poll or an acknowledgement may
        // forget events for good reason.
        let mut last_batch: Option<Vec<u64>> = None;
        for (step, record) in run(limits, &ops).iter().enumerate() {
            // Acknowledged events may be forgotten: the client has them.
            if let Some(batch) = &mut last_batch {
                batch.retain(|&id| id > record.before.acked);
            }
            match (&record.op, &record.outcome) {
                (Op::Reconnect | Op::OpenStream(_), Outcome::Read { items, after, .. }) => {
                    // A stream that starts after an id says the client has
                    // processed it: those may be forgotten.
                    for id in last_batch.iter().flatten().filter(|&&id| id > *after) {
                        prop_assert!(
                            items.contains(&Shape::Event(*id)),
                            "step {}: event {} is gone: {:?}", step, id, record
                        );
                    }
                    if !items.is_empty() {
                        last_batch = Some(fresh_ids(items, record.before.delivered));
                    }
                }
                (Op::StreamReads, Outcome::Read { items, .. }) => {
                    if !items.is_empty() {
                        last_batch = Some(fresh_ids(items, record.before.delivered));
                    }
                }
                (Op::Signal(_) | Op::Broadcast(_) | Op::Membership(..), _)
                | (_, Outcome::Nothing) => {}
                _ => last_batch = None,
            }
        }
    }

    #[test]
    fn an_inbox_never_holds_more_than_its_hard_bound_and_a_window_of_delivered_events(
        limits in limits(),
        ops in ops(),
    ) {
        // Undelivered events up to the hard bound, and delivered ones as
        // many: a read moves at most the hard bound from one to the other,
        // and the next event trims the delivered back to it.
        let max_events = 2 * (limits.events + limits.headroom);
        let max_bytes = 2 * (limits.bytes + limits.headroom * MEMBER_EVENT_MAX);
        for (step, record) in run(limits, &ops).iter().enumerate() {
            prop_assert!(
                record.after.held_len <= max_events && record.after.held_bytes <= max_bytes,
                "step {}: {:?}", step, record
            );
        }
    }
}
