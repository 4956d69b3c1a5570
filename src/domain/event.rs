//! An event's body: its kind and its data as JSON on one line, made once
//! however many inboxes hold it.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::value::RawValue;
use uuid::Uuid;

use crate::model::{SignalType, Timestamp};

/// What every inbox that receives an event shares: its kind and its data,
/// JSON on one line, made once however many inboxes hold it.
#[derive(Debug)]
pub struct EventBody {
    pub kind: &'static str,
    data: Data,
}

#[derive(Debug)]
enum Data {
    /// Written by serde_json, or read back from Redis.
    Json(Box<RawValue>),
    /// A relayed signal's data: the text around its payload, and the payload
    /// as the sender's request held it. The payload is the one part of any
    /// size; it moves from the request into the inbox, and is copied once
    /// more, into the stream, instead of being written into a new JSON text
    /// first (serde_json's writer, and the growing buffer under it, were a
    /// tenth of a relayed signal's instructions).
    Signal {
        /// `{"from":…,"payload":` and `,"sent_at":…}`, split at `split`.
        around: Box<str>,
        split: usize,
        payload: Box<RawValue>,
    },
}

impl EventBody {
    pub fn new(kind: &'static str, data: &impl serde::Serialize) -> Arc<Self> {
        // Not `RawValue::from_string`, which would parse again, relayed
        // payload included, what serde_json has just written.
        let data = serde_json::value::to_raw_value(data).expect("event data always serializes");
        Self::from_json(kind, data)
    }

    /// An event whose data is already JSON.
    pub fn from_json(kind: &'static str, data: Box<RawValue>) -> Arc<Self> {
        Arc::new(Self {
            kind,
            data: Data::Json(data),
        })
    }

    /// A `signal` event; its data is what `SignalData` serializes to.
    /// `payload` must be on one line (`single_line_json`).
    pub fn signal(
        from: Option<Uuid>,
        to: Option<Uuid>,
        signal_type: &SignalType,
        payload: Box<RawValue>,
        sent_at: Timestamp,
    ) -> Arc<Self> {
        let mut uuid = [0; uuid::fmt::Hyphenated::LENGTH];
        // The exact length, so that the box below takes the buffer as it is.
        const FIXED: usize = r#"{"from":,"to":,"type":"","payload":,"sent_at":""}"#.len();
        const UUID: usize = uuid::fmt::Hyphenated::LENGTH;
        const QUOTED_UUID: usize = UUID + 2;
        const RFC3339_MILLIS: usize = "2000-01-01T00:00:00.000Z".len();
        let id_len = |id: Option<Uuid>| {
            if id.is_some() {
                QUOTED_UUID
            } else {
                "null".len()
            }
        };
        let mut around = String::with_capacity(
            FIXED + id_len(from) + id_len(to) + signal_type.as_str().len() + RFC3339_MILLIS,
        );
        let mut push_id = |around: &mut String, id: Option<Uuid>| match id {
            Some(id) => {
                around.push('"');
                around.push_str(id.hyphenated().encode_lower(&mut uuid));
                around.push('"');
            }
            None => around.push_str("null"),
        };
        around.push_str("{\"from\":");
        push_id(&mut around, from);
        around.push_str(",\"to\":");
        push_id(&mut around, to);
        // A signal type is `a-z 0-9 -`: nothing in it needs escaping.
        around.push_str(",\"type\":\"");
        around.push_str(signal_type.as_str());
        around.push_str("\",\"payload\":");
        let split = around.len();
        around.push_str(",\"sent_at\":\"");
        write!(around, "{sent_at}").expect("writing to a String does not fail");
        around.push_str("\"}");
        debug_assert_eq!(around.len(), around.capacity(), "{around}");
        Arc::new(Self {
            kind: SIGNAL,
            data: Data::Signal {
                around: around.into_boxed_str(),
                split,
                payload,
            },
        })
    }

    /// Bytes counted against `--inbox-bytes`: the length of the data's JSON.
    pub fn size(&self) -> usize {
        match &self.data {
            Data::Json(data) => data.get().len(),
            Data::Signal {
                around, payload, ..
            } => around.len() + payload.get().len(),
        }
    }

    /// The data's JSON in the parts it is kept in, to be written one after
    /// the other: a copy into one text would be a copy more, and its UTF-8
    /// checked again.
    pub fn json_parts(&self) -> [&str; 3] {
        match &self.data {
            Data::Json(data) => [data.get(), "", ""],
            Data::Signal {
                around,
                split,
                payload,
            } => {
                let (before, after) = around.split_at(*split);
                [before, payload.get(), after]
            }
        }
    }

    /// Appends the data's JSON to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.reserve(self.size());
        for part in self.json_parts() {
            out.extend_from_slice(part.as_bytes());
        }
    }

    /// The data's JSON as one text.
    pub fn json(&self) -> Cow<'_, str> {
        match &self.data {
            Data::Json(data) => Cow::Borrowed(data.get()),
            Data::Signal { .. } => Cow::Owned(self.json_parts().concat()),
        }
    }
}

/// The kind of relayed messages; every other kind is never refused.
pub const SIGNAL: &str = "signal";

#[cfg(test)]
mod tests {
    use super::*;

    fn signal_event(
        from: Option<Uuid>,
        to: Option<Uuid>,
        payload: &str,
    ) -> (Arc<EventBody>, String) {
        let signal_type = SignalType::parse("ice-candidate-2").unwrap();
        let payload = RawValue::from_string(payload.to_owned()).unwrap();
        let sent_at = Timestamp::now();
        let expected = serde_json::to_string(&crate::model::SignalData {
            from,
            to,
            signal_type: signal_type.as_str(),
            payload: &payload,
            sent_at,
        })
        .unwrap();
        let event = EventBody::signal(from, to, &signal_type, payload, sent_at);
        (event, expected)
    }

    #[test]
    fn a_signal_event_is_what_serde_json_writes_of_its_data() {
        let payloads = [
            "null",
            r#"{"candidate":"candidate:1 1 udp 2 10.0.0.1 9 typ host","sdpMid":"0"}"#,
            r#""a \"quoted\" \u00e9 string""#,
            "[1,2.5,true,{}]",
        ];
        let ids = [None, Some(Uuid::new_v4())];
        for (from, to) in ids.iter().flat_map(|&from| ids.map(|to| (from, to))) {
            for payload in payloads {
                let (event, expected) = signal_event(from, to, payload);
                assert_eq!(event.kind, SIGNAL);
                assert_eq!(event.json(), expected);
                assert_eq!(event.size(), expected.len());
                let mut written = b"data: ".to_vec();
                event.write_json(&mut written);
                assert_eq!(written, [b"data: ", expected.as_bytes()].concat());
            }
        }
    }
}
