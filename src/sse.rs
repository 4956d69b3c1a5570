//! The `text/event-stream` wire format: frames for inbox events, `ready`,
//! `gap` and keep-alive comments, and the body stream of one open inbox.
//!
//! Every `data:` line is JSON that serde_json wrote, or relayed JSON that
//! `single_line_json` flattened, so it never holds a line break: no payload
//! can break the framing. Kinds are our own constants, ids are integers.

use std::convert::Infallible;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio_util::sync::CancellationToken;

use crate::hub::Subscription;
use crate::inbox::{Batch, Item};
use crate::model::{GapData, ReadyData};

/// Sent when a stream has been idle for `--keep-alive`.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// The `ready` event that opens every stream; no `id:`, not in the inbox.
pub fn ready_frame(ready: &ReadyData) -> Vec<u8> {
    let mut frame = Vec::with_capacity(96);
    frame.extend_from_slice(b"event: ready\ndata: ");
    serde_json::to_writer(&mut frame, ready).expect("ready data serializes");
    frame.extend_from_slice(b"\n\n");
    frame
}

/// Appends one batch: gaps (no `id:`) and events, in inbox order.
pub fn write_batch(frame: &mut Vec<u8>, batch: &Batch) {
    for item in &batch.items {
        match item {
            Item::Gap { from, to } => {
                frame.extend_from_slice(b"event: gap\ndata: ");
                serde_json::to_writer(
                    &mut *frame,
                    &GapData {
                        from: *from,
                        to: *to,
                    },
                )
                .expect("gap data serializes");
                frame.extend_from_slice(b"\n\n");
            }
            Item::Event(entry) => {
                let data = entry.body.data.get();
                frame.reserve(data.len() + entry.body.kind.len() + 40);
                // Writing to a Vec cannot fail.
                let _ = write!(
                    frame,
                    "id: {}\nevent: {}\ndata: ",
                    entry.id, entry.body.kind
                );
                frame.extend_from_slice(data.as_bytes());
                frame.extend_from_slice(b"\n\n");
            }
        }
    }
}

/// The body of an open inbox stream: `first` (the `ready` event and any
/// backlog), then live events as they arrive, a keep-alive comment whenever
/// the stream idles for `keep_alive`, and the end when the member is gone,
/// a newer stream replaces this one, or the server shuts down.
pub fn event_stream(
    first: Vec<u8>,
    subscription: Subscription,
    keep_alive: Duration,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    struct Open {
        first: Option<Vec<u8>>,
        subscription: Subscription,
        keep_alive: Duration,
        shutdown: CancellationToken,
    }
    let open = Open {
        first: Some(first),
        subscription,
        keep_alive,
        shutdown,
    };
    futures_util::stream::unfold(Some(open), |state| async move {
        let mut open = state?;
        if let Some(first) = open.first.take() {
            return Some((Ok(Bytes::from(first)), Some(open)));
        }
        let Open {
            subscription,
            keep_alive,
            shutdown,
            ..
        } = &mut open;
        let chunk = tokio::select! {
            batch = subscription.next() => {
                let mut frame = Vec::new();
                write_batch(&mut frame, &batch?);
                Bytes::from(frame)
            }
            () = tokio::time::sleep(*keep_alive) => Bytes::from_static(KEEP_ALIVE),
            () = shutdown.cancelled() => return None,
        };
        Some((Ok(chunk), Some(open)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::{Entry, EventBody};

    #[test]
    fn events_are_framed_with_id_kind_and_one_data_line() {
        let body = EventBody::new("signal", &serde_json::json!({"sdp": "v=0\r\na=x\n"}));
        let batch = Batch {
            items: vec![
                Item::Gap { from: 1, to: 2 },
                Item::Event(Entry { id: 3, body }),
            ],
        };
        let mut frame = Vec::new();
        write_batch(&mut frame, &batch);
        let text = String::from_utf8(frame).unwrap();
        assert_eq!(
            text,
            "event: gap\ndata: {\"from\":1,\"to\":2}\n\nid: 3\nevent: signal\ndata: {\"sdp\":\"v=0\\r\\na=x\\n\"}\n\n"
        );
    }

    #[test]
    fn ready_has_no_id() {
        let ready = ready_frame(&ReadyData {
            member_id: uuid::Uuid::nil(),
            last_event_id: 0,
        });
        let text = String::from_utf8(ready).unwrap();
        assert!(text.starts_with("event: ready\ndata: {"));
        assert!(!text.contains("id: "));
    }
}
