//! One member's inbox: the ordered events the server holds for it, their ids,
//! what was delivered and acknowledged, the bounds, and the gaps left by
//! events that are no longer held.
//!
//! Ids start at 1 and grow by 1. An event is *delivered* once a stream or
//! poll hands it out, and *acknowledged* once a reader asks for events after
//! it; acknowledged events are forgotten, delivered ones are kept for a
//! resume until newer events need their room.

use std::collections::VecDeque;
use std::sync::Arc;

use super::event::{EventBody, SIGNAL};

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
    /// How far events that are never refused (membership and room changes)
    /// may take the inbox past `events`, and past `bytes` by that many
    /// largest member events. Sized from the room capacity, so that a full
    /// room's joins and leaves always fit; past it only churn remains, and
    /// the oldest undelivered such events are dropped (the reader gets a
    /// `gap`). Undelivered signals are never dropped: they were answered 202.
    pub headroom: usize,
}

impl Limits {
    /// The largest membership event: a `member-joined` with 4 KiB of
    /// metadata and a 64-character name.
    const MEMBER_EVENT_MAX: usize = 4096 + 512;

    fn hard_events(&self) -> usize {
        self.events.saturating_add(self.headroom)
    }

    fn hard_bytes(&self) -> usize {
        self.bytes
            .saturating_add(self.headroom.saturating_mul(Self::MEMBER_EVENT_MAX))
    }
}

/// Refusal of a signal that would take an inbox past its limits.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

/// One thing a read hands out, in inbox order.
#[derive(Debug)]
pub enum Item {
    /// Events `from..=to` are no longer held.
    Gap {
        from: u64,
        to: u64,
    },
    Event(Entry),
}

/// What one read hands out: events, with a gap wherever events after the
/// reader's cursor are no longer held.
#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Item>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct Inbox {
    /// Held events, ids increasing. Ids are contiguous except where an
    /// undelivered membership event was dropped past the hard bound.
    held: VecDeque<Entry>,
    /// Id of the newest event ever accepted; 0 before the first.
    last_id: u64,
    /// Highest id handed to a reader.
    delivered: u64,
    /// Highest id a reader acknowledged.
    acked: u64,
    /// Bytes of all held events.
    held_bytes: usize,
    /// Held events with an id above `delivered`, and their bytes.
    undelivered_len: usize,
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

    /// Index of the first held event with an id above `id`.
    fn index_after(&self, id: u64) -> usize {
        self.held.partition_point(|entry| entry.id <= id)
    }

    /// Whether a signal of `size` bytes fits: the check that lets a broadcast
    /// refuse before it writes to any inbox.
    pub fn can_accept(&self, size: usize, limits: Limits) -> bool {
        self.undelivered_len < limits.events && self.undelivered_bytes + size <= limits.bytes
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
        self.trim_delivered(limits);
        while self.undelivered_len >= limits.hard_events()
            || self.undelivered_bytes + size > limits.hard_bytes()
        {
            let oldest_membership = self
                .held
                .iter()
                .skip(self.index_after(self.delivered))
                .position(|entry| entry.body.kind != SIGNAL)
                .map(|offset| offset + self.index_after(self.delivered));
            match oldest_membership {
                Some(index) => {
                    crate::observe::metrics::events_dropped(1);
                    self.remove(index);
                }
                // Only signals left, and they are bounded by `can_accept`.
                None => break,
            }
        }
        self.last_id += 1;
        self.held_bytes += size;
        self.undelivered_len += 1;
        self.undelivered_bytes += size;
        self.held.push_back(Entry {
            id: self.last_id,
            body,
        });
        self.last_id
    }

    /// Delivered events wait for a resume in a window of their own, as large
    /// as the hard bound on undelivered ones, the oldest giving way first
    /// when an event arrives. A read hands out at most the hard bound of
    /// events never delivered before, so those of the last read, the batch a
    /// dying connection may have swallowed, are always still held when the
    /// client resumes. Events a read sent again (a resume from further back)
    /// stay while the window has room; past it the client gets a `gap`.
    fn trim_delivered(&mut self, limits: Limits) {
        while self
            .held
            .front()
            .is_some_and(|entry| entry.id <= self.delivered)
            && (self.held.len() - self.undelivered_len > limits.hard_events()
                || self.held_bytes - self.undelivered_bytes > limits.hard_bytes())
        {
            self.remove(0);
        }
    }

    fn remove(&mut self, index: usize) {
        if let Some(entry) = self.held.remove(index) {
            self.held_bytes -= entry.body.size();
            if entry.id > self.delivered {
                self.undelivered_len -= 1;
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
            self.remove(0);
        }
        self.mark_delivered(self.acked);
    }

    fn mark_delivered(&mut self, id: u64) {
        if id <= self.delivered {
            return;
        }
        for entry in self.held.range(self.index_after(self.delivered)..) {
            if entry.id > id {
                break;
            }
            self.undelivered_len -= 1;
            self.undelivered_bytes -= entry.body.size();
        }
        self.delivered = id;
    }

    /// Hands out everything after `after` (clamped to the newest): each held
    /// event, and a gap for each run of ids no longer held. Marks them
    /// delivered and returns the cursor to read after next time.
    pub fn read_after(&mut self, after: u64) -> (Batch, u64) {
        let after = after.min(self.last_id);
        let mut items = Vec::new();
        let mut next = after + 1;
        for entry in self.held.range(self.index_after(after)..) {
            if entry.id > next {
                items.push(Item::Gap {
                    from: next,
                    to: entry.id - 1,
                });
            }
            items.push(Item::Event(entry.clone()));
            next = entry.id + 1;
        }
        if next <= self.last_id {
            items.push(Item::Gap {
                from: next,
                to: self.last_id,
            });
        }
        self.mark_delivered(self.last_id);
        (Batch { items }, self.last_id)
    }

    /// Bytes this inbox holds.
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
        headroom: 3,
    };

    fn signal(text: &str) -> Arc<EventBody> {
        EventBody::new(SIGNAL, &text)
    }

    fn membership() -> Arc<EventBody> {
        EventBody::new("member-left", &"m")
    }

    /// The batch as text: event ids, and gaps as `from-to`.
    fn shape(batch: &Batch) -> Vec<String> {
        batch
            .items
            .iter()
            .map(|item| match item {
                Item::Gap { from, to } => format!("{from}-{to}"),
                Item::Event(entry) => entry.id.to_string(),
            })
            .collect()
    }

    fn check_counters(inbox: &Inbox) {
        let held: usize = inbox.held.iter().map(|e| e.body.size()).sum();
        let undelivered: Vec<_> = inbox
            .held
            .iter()
            .filter(|e| e.id > inbox.delivered)
            .collect();
        assert_eq!(inbox.held_bytes, held);
        assert_eq!(inbox.undelivered_len, undelivered.len());
        assert_eq!(
            inbox.undelivered_bytes,
            undelivered.iter().map(|e| e.body.size()).sum::<usize>()
        );
        assert!(
            inbox
                .held
                .iter()
                .zip(inbox.held.iter().skip(1))
                .all(|(a, b)| a.id < b.id)
        );
    }

    #[test]
    fn ids_start_at_one_and_grow_by_one() {
        let mut inbox = Inbox::default();
        assert_eq!(inbox.push_signal(signal("a"), LIMITS), Ok(1));
        assert_eq!(inbox.push_signal(signal("b"), LIMITS), Ok(2));
        let (batch, cursor) = inbox.read_after(0);
        assert_eq!(shape(&batch), ["1", "2"]);
        assert_eq!(cursor, 2);
    }

    #[test]
    fn a_signal_past_the_event_limit_is_refused_and_changes_nothing() {
        let mut inbox = Inbox::default();
        for _ in 0..3 {
            inbox.push_signal(signal("x"), LIMITS).unwrap();
        }
        assert_eq!(inbox.push_signal(signal("y"), LIMITS), Err(Full));
        assert_eq!(inbox.last_id(), 3);
        assert_eq!(inbox.held_len(), 3);
        check_counters(&inbox);
    }

    #[test]
    fn a_signal_past_the_byte_limit_is_refused() {
        let limits = Limits {
            events: 100,
            bytes: 10,
            headroom: 0,
        };
        let mut inbox = Inbox::default();
        inbox.push_signal(signal("12345"), limits).unwrap(); // 7 bytes with quotes
        assert_eq!(inbox.push_signal(signal("12"), limits), Err(Full));
        inbox.push_signal(signal("1"), limits).unwrap(); // exactly 10
    }

    /// Accepts `count` signals, which must fit.
    fn push_signals(inbox: &mut Inbox, count: usize) {
        for _ in 0..count {
            inbox.push_signal(signal("x"), LIMITS).unwrap();
        }
    }

    #[test]
    fn delivered_events_wait_for_a_resume_in_a_window_of_their_own() {
        let mut inbox = Inbox::default();
        push_signals(&mut inbox, 3);
        inbox.read_after(0);
        push_signals(&mut inbox, 3);
        // The delivered 1..=3 do not count against the undelivered limit.
        assert_eq!(inbox.held_len(), 6);
        inbox.read_after(3);
        push_signals(&mut inbox, 1);
        // Six delivered fill the window (3 + a headroom of 3) exactly.
        assert_eq!(inbox.held_len(), 7);
        inbox.read_after(6);
        push_signals(&mut inbox, 1);
        // Seven delivered do not fit: the oldest gave way.
        assert_eq!(inbox.held_len(), 7);
        // A resume from the start learns that 1 is gone.
        let (batch, _) = inbox.read_after(0);
        assert_eq!(shape(&batch), ["1-1", "2", "3", "4", "5", "6", "7", "8"]);
        check_counters(&inbox);
    }

    #[test]
    fn a_batch_larger_than_the_limit_is_held_whole_for_a_resume() {
        let mut inbox = Inbox::default();
        // Membership events take the inbox past its limit of 3.
        push_signals(&mut inbox, 3);
        inbox.push(membership(), LIMITS);
        inbox.push(membership(), LIMITS);
        // 1..=5 go into a connection that dies; a signal arrives meanwhile.
        inbox.read_after(0);
        push_signals(&mut inbox, 1);
        let (batch, _) = inbox.read_after(0);
        assert_eq!(shape(&batch), ["1", "2", "3", "4", "5", "6"]);
        check_counters(&inbox);
    }

    #[test]
    fn acknowledging_forgets_events_and_frees_room() {
        let mut inbox = Inbox::default();
        for _ in 0..3 {
            inbox.push_signal(signal("x"), LIMITS).unwrap();
        }
        inbox.acknowledge(2);
        assert_eq!(inbox.held_len(), 1);
        assert_eq!(inbox.acked(), 2);
        assert_eq!(inbox.delivered(), 2);
        inbox.push_signal(signal("y"), LIMITS).unwrap();
        inbox.push_signal(signal("z"), LIMITS).unwrap();
        assert_eq!(inbox.push_signal(signal("w"), LIMITS), Err(Full));
        let (batch, _) = inbox.read_after(2);
        assert_eq!(shape(&batch), ["3", "4", "5"]);
        check_counters(&inbox);
    }

    #[test]
    fn acknowledging_beyond_the_newest_is_clamped() {
        let mut inbox = Inbox::default();
        inbox.push_signal(signal("x"), LIMITS).unwrap();
        inbox.acknowledge(99);
        assert_eq!(inbox.acked(), 1);
        let (batch, cursor) = inbox.read_after(99);
        assert!(batch.is_empty());
        assert_eq!(cursor, 1);
        assert_eq!(inbox.push_signal(signal("y"), LIMITS), Ok(2));
    }

    #[test]
    fn resume_after_n_gives_every_later_event_once() {
        let mut inbox = Inbox::default();
        for _ in 0..3 {
            inbox.push_signal(signal("x"), LIMITS).unwrap();
        }
        let (batch, cursor) = inbox.read_after(1);
        assert_eq!(shape(&batch), ["2", "3"]);
        let (again, _) = inbox.read_after(cursor);
        assert!(again.is_empty());
    }

    #[test]
    fn acknowledged_events_read_again_show_as_a_gap() {
        let mut inbox = Inbox::default();
        for _ in 0..3 {
            inbox.push_signal(signal("x"), LIMITS).unwrap();
        }
        inbox.acknowledge(2);
        let (batch, _) = inbox.read_after(0);
        assert_eq!(shape(&batch), ["1-2", "3"]);
        inbox.acknowledge(3);
        let (batch, cursor) = inbox.read_after(1);
        assert_eq!(shape(&batch), ["2-3"]);
        assert_eq!(cursor, 3);
    }

    #[test]
    fn membership_events_are_never_refused_up_to_the_headroom() {
        let mut inbox = Inbox::default();
        for _ in 0..6 {
            inbox.push(membership(), LIMITS);
        }
        assert_eq!(inbox.push_signal(signal("s"), LIMITS), Err(Full));
        let (batch, _) = inbox.read_after(0);
        assert_eq!(shape(&batch), ["1", "2", "3", "4", "5", "6"]);
    }

    #[test]
    fn churn_past_the_hard_bound_drops_membership_events_but_never_an_undelivered_signal() {
        let mut inbox = Inbox::default();
        inbox.push_signal(signal("a"), LIMITS).unwrap();
        inbox.push_signal(signal("b"), LIMITS).unwrap();
        for _ in 0..20 {
            inbox.push(membership(), LIMITS);
            check_counters(&inbox);
            assert!(inbox.held_len() <= LIMITS.hard_events());
        }
        let (batch, cursor) = inbox.read_after(0);
        assert_eq!(shape(&batch), ["1", "2", "3-18", "19", "20", "21", "22"]);
        assert_eq!(cursor, 22);
        check_counters(&inbox);
    }

    #[test]
    fn counters_stay_consistent_through_every_operation() {
        let mut inbox = Inbox::default();
        let limits = Limits {
            events: 4,
            bytes: 40,
            headroom: 2,
        };
        for round in 0..200u64 {
            let _ = inbox.push_signal(signal("abc"), limits);
            inbox.push(membership(), limits);
            if round % 3 == 0 {
                inbox.read_after(inbox.delivered());
            }
            if round % 7 == 0 {
                inbox.acknowledge(inbox.delivered().saturating_sub(1));
            }
            if round % 11 == 0 {
                inbox.read_after(inbox.acked());
            }
            check_counters(&inbox);
            // Undelivered up to the hard bound, and delivered as many.
            assert!(inbox.held_len() <= 2 * limits.hard_events());
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
