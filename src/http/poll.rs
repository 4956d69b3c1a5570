//! The long-poll answer's wire format: `PollResponse`'s JSON, written
//! beside the stream's (`sse`) from the same batches.

use crate::domain::inbox::Item;
use crate::model::GapData;

/// Writes a poll's answer, `PollResponse`'s JSON, by hand: a signal's data
/// is held in parts around its payload (`EventBody`), and serde would need
/// them joined and parsed again into one `RawValue` for every event.
pub fn write_answer(out: &mut Vec<u8>, items: &[Item]) {
    let mut digits = itoa::Buffer::new();
    out.reserve(
        16 + items
            .iter()
            .map(|item| match item {
                Item::Gap { .. } => 80,
                Item::Event(entry) => 48 + entry.body.size(),
            })
            .sum::<usize>(),
    );
    out.extend_from_slice(b"{\"events\":[");
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        // Event kinds are fixed lowercase names: nothing in them needs escaping.
        match item {
            Item::Gap { from, to } => {
                out.extend_from_slice(digits.format(*to).as_bytes());
                out.extend_from_slice(b",\"event\":\"gap\",\"data\":");
                // As the stream writes it: a gap is rare, serde is fine.
                let gap = GapData {
                    from: *from,
                    to: *to,
                };
                serde_json::to_writer(&mut *out, &gap).expect("gap data serializes");
            }
            Item::Event(entry) => {
                out.extend_from_slice(digits.format(entry.id).as_bytes());
                out.extend_from_slice(b",\"event\":\"");
                out.extend_from_slice(entry.body.kind.as_bytes());
                out.extend_from_slice(b"\",\"data\":");
                entry.body.write_json(out);
            }
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::value::{RawValue, to_raw_value};
    use uuid::Uuid;

    use super::*;
    use crate::domain::event::EventBody;
    use crate::domain::inbox::Entry;
    use crate::model::{PollResponse, PolledEvent, SignalType, Timestamp};

    #[test]
    fn a_poll_answer_is_what_serde_json_writes_of_it() {
        let signal_type = SignalType::parse("candidate").unwrap();
        let payload =
            r#"{"candidate":"candidate:1 1 udp 2 10.0.0.1 9 typ host","note":"\u00e9 \"q\""}"#;
        let signal = EventBody::signal(
            Some(Uuid::new_v4()),
            Some(Uuid::new_v4()),
            &signal_type,
            RawValue::from_string(payload.to_owned()).unwrap(),
            Timestamp::now(),
        );
        let joined = EventBody::new("member-joined", &serde_json::json!({"member": {"id": "x"}}));
        let entry = |id, body: &Arc<EventBody>| {
            Item::Event(Entry {
                id,
                body: Arc::clone(body),
            })
        };
        let polled = |id, event, data: &str| PolledEvent {
            id,
            event,
            data: RawValue::from_string(data.to_owned()).unwrap(),
        };
        let cases = [
            (vec![], vec![]),
            (
                vec![entry(7, &signal)],
                vec![polled(7, "signal", &signal.json())],
            ),
            (
                vec![
                    Item::Gap { from: 1, to: 12 },
                    entry(13, &joined),
                    entry(u64::MAX, &signal),
                ],
                vec![
                    PolledEvent {
                        id: 12,
                        event: "gap",
                        data: to_raw_value(&GapData { from: 1, to: 12 }).unwrap(),
                    },
                    polled(13, "member-joined", &joined.json()),
                    polled(u64::MAX, "signal", &signal.json()),
                ],
            ),
        ];
        for (items, events) in cases {
            let mut written = Vec::new();
            write_answer(&mut written, &items);
            let expected = serde_json::to_string(&PollResponse { events }).unwrap();
            assert_eq!(String::from_utf8(written).unwrap(), expected);
        }
    }
}
