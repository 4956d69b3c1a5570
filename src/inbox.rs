//! One member's inbox: the ordered events the server holds for it, their ids,
//! what was delivered and acknowledged, the bounds, and the gaps left by
//! events that are no longer held.
//!
//! Ids start at 1 and grow by 1; the held events always have contiguous ids,
//! from `first_held()` to `last_id`. An event is *delivered* once a stream or
//! poll hands it out, and *acknowledged* once a reader asks for events after
//! it; acknowledged events are forgotten, delivered ones are kept for a
//! resume until newer events need their room.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::value::RawValue;

/// What every inbox that receives an event shares: its kind and its data,
/// serialized once however many inboxes hold it.
#[derive(Debug)]
pub struct EventBody {
    pub kind: &'static str,
    pub data: Box<RawValue>,
}

impl EventBody {
    pub fn new(kind: &'static str, data: &impl serde::Serialize) -> Arc<Self> {
        let text = serde_json::to_string(data).expect("event data always serializes");
        let data = RawValue::from_string(text).expect("serde_json writes valid JSON");
        Arc::new(Self { kind, data })
    }

    /// Bytes counted against `--inbox-bytes`.
    pub fn size(&self) -> usize {
        self.data.get().len()
    }
}

/// One held event.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u64,
    pub body: Arc<EventBody>,
}

/// How much an inbox may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Undelivered events (`--inbox-limit`).
    pub events: usize,
    /// Undelivered bytes of event data (`--inbox-bytes`).
    pub bytes: usize,
}

impl Limits {
    /// Events that are never refused (membership and room changes) may take
    /// the inbox past its limits, up to this multiple; past it the oldest
    /// events are dropped even undelivered, and the reader is told of the gap.
    const HARD_FACTOR: usize = 2;
}

/// Refusal of a signal that would take an inbox past its limits.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// What one read hands out.
#[derive(Debug, Default)]
pub struct Batch {
    /// Ids after the reader's cursor that are no longer held (`from..=to`).
    pub gap: Option<(u64, u64)>,
    pub entries: Vec<Entry>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.gap.is_none() && self.entries.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct Inbox {
    held: VecDeque<Entry>,
    /// Id of the newest event ever accepted; 0 before the first.
    last_id: u64,
    /// Highest id handed to a reader.
    delivered: u64,
    /// Highest id a reader acknowledged.
    acked: u64,
    /// Bytes of all held events.
    held_bytes: usize,
    /// Bytes of held events with an id above `delivered`.
    undelivered_bytes: usize,
}

impl Inbox {
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    fn first_held(&self) -> u64 {
        self.last_id + 1 - self.held.len() as u64
    }

    fn undelivered_len(&self) -> usize {
        self.held
            .len()
            .min((self.last_id - self.delivered) as usize)
    }

    /// Whether a signal of `size` bytes fits: the check that lets a broadcast
    /// refuse before it writes to any inbox.
    pub fn can_accept(&self, size: usize, limits: Limits) -> bool {
        self.undelivered_len() < limits.events && self.undelivered_bytes + size <= limits.bytes
    }

    /// Accepts a signal, or refuses it when the inbox is full.
    pub fn push_signal(&mut self, body: Arc<EventBody>, limits: Limits) -> Result<u64, Full> {
        if !self.can_accept(body.size(), limits) {
            return Err(Full);
        }
        Ok(self.push(body, limits))
    }

    /// Accepts an event that is never refused.
    pub fn push(&mut self, body: Arc<EventBody>, limits: Limits) -> u64 {
        let size = body.size();
        // Delivered events only wait for a resume: they give way first.
        while self.front_is_delivered()
            && (self.held.len() >= limits.events || self.held_bytes + size > limits.bytes)
        {
            self.pop_front();
        }
        let hard_events = limits.events.saturating_mul(Limits::HARD_FACTOR);
        let hard_bytes = limits.bytes.saturating_mul(Limits::HARD_FACTOR);
        while !self.held.is_empty()
            && (self.held.len() >= hard_events || self.held_bytes + size > hard_bytes)
        {
            self.pop_front();
        }
        self.last_id += 1;
        self.held_bytes += size;
        self.undelivered_bytes += size;
        self.held.push_back(Entry {
            id: self.last_id,
            body,
        });
        self.last_id
    }

    fn front_is_delivered(&self) -> bool {
        self.held
            .front()
            .is_some_and(|entry| entry.id <= self.delivered)
    }

    fn pop_front(&mut self) {
        if let Some(entry) = self.held.pop_front() {
            self.held_bytes -= entry.body.size();
            if entry.id > self.delivered {
                self.undelivered_bytes -= entry.body.size();
            }
        }
    }

    /// Acknowledges every event up to `id` (clamped to the newest): they are
    /// forgotten, and count as delivered.
    pub fn acknowledge(&mut self, id: u64) {
        let id = id.min(self.last_id);
        self.acked = self.acked.max(id);
        while self
            .held
            .front()
            .is_some_and(|entry| entry.id <= self.acked)
        {
            self.pop_front();
        }
        self.mark_delivered(self.acked);
    }

    fn mark_delivered(&mut self, id: u64) {
        if id <= self.delivered {
            return;
        }
        let first = self.first_held();
        for entry in self
            .held
            .iter()
            .skip(self.delivered.saturating_sub(first - 1) as usize)
        {
            if entry.id > id {
                break;
            }
            self.undelivered_bytes -= entry.body.size();
        }
        self.delivered = id;
    }

    /// Hands out every held event after `after` (clamped to the newest), with
    /// the gap before them if some are no longer held, and marks them
    /// delivered. Returns the cursor to read after next time.
    pub fn read_after(&mut self, after: u64) -> (Batch, u64) {
        let after = after.min(self.last_id);
        let first = self.first_held();
        let gap = (after + 1 < first).then(|| (after + 1, first - 1));
        let skip = (after + 1).saturating_sub(first) as usize;
        let entries: Vec<Entry> = self.held.iter().skip(skip).cloned().collect();
        let cursor = entries
            .last()
            .map_or(after.max(first - 1), |entry| entry.id);
        self.mark_delivered(cursor);
        (Batch { gap, entries }, cursor)
    }

    /// Bytes this inbox holds, for the bounds' tests and for metrics.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    pub fn held_len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        events: 3,
        bytes: 1000,
    };

    fn body(text: &str) -> Arc<EventBody> {
        EventBody::new("signal", &text)
    }

    fn ids(batch: &Batch) -> Vec<u64> {
        batch.entries.iter().map(|entry| entry.id).collect()
    }

    #[test]
    fn ids_start_at_one_and_grow_by_one() {
        let mut inbox = Inbox::default();
        assert_eq!(inbox.push_signal(body("a"), LIMITS), Ok(1));
        assert_eq!(inbox.push_signal(body("b"), LIMITS), Ok(2));
        let (batch, cursor) = inbox.read_after(0);
        assert_eq!(ids(&batch), [1, 2]);
        assert_eq!(cursor, 2);
        assert!(batch.gap.is_none());
    }

    #[test]
    fn a_signal_past_the_event_limit_is_refused_and_changes_nothing() {
        let mut inbox = Inbox::default();
        for _ in 0..3 {
            inbox.push_signal(body("x"), LIMITS).unwrap();
        }
        assert_eq!(inbox.push_signal(body("y"), LIMITS), Err(Full));
        assert_eq!(inbox.last_id(), 3);
        assert_eq!(inbox.held_len(), 3);
    }

    #[test]
    fn a_signal_past_the_byte_limit_is_refused() {
        let limits = Limits {
            events: 100,
            bytes: 10,
        };
        let mut inbox = Inbox::default();
        inbox.push_signal(body("12345"), limits).unwrap(); // 7 bytes with quotes
        assert_eq!(inbox.push_signal(body("12"), limits), Err(Full));
        inbox.push_signal(body("1"), limits).unwrap(); // exactly 10
    }

    #[test]
    fn delivered_events_make_room_for_new_ones() {
        let mut inbox = Inbox::default();
        for _ in 0..3 {
            inbox.push_signal(body("x"), LIMITS).unwrap();
        }
        inbox.read_after(0);
        for _ in 0..3 {
            inbox.push_signal(body("y"), LIMITS).unwrap();
        }
        assert_eq!(inbox.held_len(), 3);
        // A resume from the start learns that 1..=3 are gone.
        let (batch, _) = inbox.read_after(0);
        assert_eq!(batch.gap, Some((1, 3)));
        assert_eq!(ids(&batch), [4, 5, 6]);
    }

    #[test]
    fn acknowledging_forgets_events_and_frees_room() {
        let mut inbox = Inbox::default();
        for _ in 0..3 {
            inbox.push_signal(body("x"), LIMITS).unwrap();
        }
        inbox.acknowledge(2);
        assert_eq!(inbox.held_len(), 1);
        assert_eq!(inbox.acked(), 2);
        assert_eq!(inbox.delivered(), 2);
        inbox.push_signal(body("y"), LIMITS).unwrap();
        inbox.push_signal(body("z"), LIMITS).unwrap();
        assert_eq!(inbox.push_signal(body("w"), LIMITS), Err(Full));
        let (batch, _) = inbox.read_after(2);
        assert_eq!(ids(&batch), [3, 4, 5]);
    }

    #[test]
    fn acknowledging_beyond_the_newest_is_clamped() {
        let mut inbox = Inbox::default();
        inbox.push_signal(body("x"), LIMITS).unwrap();
        inbox.acknowledge(99);
        assert_eq!(inbox.acked(), 1);
        let (batch, cursor) = inbox.read_after(99);
        assert!(batch.is_empty());
        assert_eq!(cursor, 1);
        assert_eq!(inbox.push_signal(body("y"), LIMITS), Ok(2));
    }

    #[test]
    fn resume_after_n_gives_every_later_event_once() {
        let mut inbox = Inbox::default();
        for _ in 0..3 {
            inbox.push_signal(body("x"), LIMITS).unwrap();
        }
        let (batch, cursor) = inbox.read_after(1);
        assert_eq!(ids(&batch), [2, 3]);
        let (again, _) = inbox.read_after(cursor);
        assert!(again.is_empty());
    }

    #[test]
    fn acknowledged_events_read_again_show_as_a_gap() {
        let mut inbox = Inbox::default();
        for _ in 0..3 {
            inbox.push_signal(body("x"), LIMITS).unwrap();
        }
        inbox.acknowledge(2);
        let (batch, _) = inbox.read_after(0);
        assert_eq!(batch.gap, Some((1, 2)));
        assert_eq!(ids(&batch), [3]);
    }

    #[test]
    fn never_refused_events_pass_the_limit_up_to_the_hard_bound_then_leave_a_gap() {
        let mut inbox = Inbox::default();
        for _ in 0..3 {
            inbox.push(body("m"), LIMITS);
        }
        assert_eq!(inbox.push_signal(body("s"), LIMITS), Err(Full));
        for _ in 0..10 {
            inbox.push(body("m"), LIMITS);
        }
        assert_eq!(inbox.held_len(), 6);
        let (batch, cursor) = inbox.read_after(0);
        assert_eq!(batch.gap, Some((1, 7)));
        assert_eq!(ids(&batch), [8, 9, 10, 11, 12, 13]);
        assert_eq!(cursor, 13);
    }

    #[test]
    fn byte_counts_stay_consistent_through_every_operation() {
        let mut inbox = Inbox::default();
        let limits = Limits {
            events: 4,
            bytes: 40,
        };
        for round in 0..50u64 {
            let _ = inbox.push_signal(body("abc"), limits);
            inbox.push(body("z"), limits);
            if round % 3 == 0 {
                inbox.read_after(inbox.delivered());
            }
            if round % 7 == 0 {
                inbox.acknowledge(inbox.delivered().saturating_sub(1));
            }
            let held: usize = inbox.held.iter().map(|e| e.body.size()).sum();
            let undelivered: usize = inbox
                .held
                .iter()
                .filter(|e| e.id > inbox.delivered)
                .map(|e| e.body.size())
                .sum();
            assert_eq!(inbox.held_bytes(), held);
            assert_eq!(inbox.undelivered_bytes, undelivered);
            assert!(inbox.held_len() <= limits.events * Limits::HARD_FACTOR);
        }
    }

    #[test]
    fn reading_an_empty_inbox_keeps_the_cursor() {
        let mut inbox = Inbox::default();
        let (batch, cursor) = inbox.read_after(0);
        assert!(batch.is_empty());
        assert_eq!(cursor, 0);
    }
}
