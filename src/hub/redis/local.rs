//! What this node keeps of a member it holds readers of: the `Readers` its
//! wake-ups go to, the signals that came with them, and how far its readers
//! here delivered without telling Redis yet.
//!
//! A signal's wake-up carries the signal (`wake` in `prelude.lua`): in the
//! function's answer for readers on the calling node, in the published
//! message for the others. A reader hands out the signals after its cursor
//! from here when they follow on from it, and reads the inbox in Redis only
//! when they do not: its first read, a wake-up that came without an event
//! (a membership event, a newer stream, the member gone, a subscription
//! that was lost), or a signal it missed. Delivering then costs Redis
//! nothing; Redis learns how far the member's readers delivered later, with
//! the member's next signal that a function takes, a reader's close, the
//! heartbeat (`RedisHub::heartbeat`, a quarter of the member timeout
//! apart), or a flush of its own once the marks pile up to a quarter of
//! the inbox's bounds (`RedisHub::flush_if_piled_up`), so that its count of
//! undelivered events, which refuses signals to a full inbox, is never far
//! behind. (Telling them at every upkeep tick cost a function call a
//! second for every member that reads, once signals stopped carrying them:
//! `tail.rs`.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Context;

use uuid::Uuid;

use super::RedisHub;
use crate::domain::event::EventBody;
use crate::domain::inbox::{Batch, Entry, Item};
use crate::hub::drawn::MemberKey;
use crate::hub::places::MemberPlaces;
use crate::hub::wake::Readers;
use crate::model::RoomId;

/// Signals a member's entry keeps, and their bytes: a reader that falls
/// further behind reads the inbox in Redis.
const RECENT_MAX: usize = 16;
const RECENT_BYTES_MAX: usize = 128 * 1024;

#[derive(Default)]
pub(super) struct LocalMember {
    pub(super) wake: Arc<Readers>,
    /// Its readers on this node; the entry goes with the last.
    pub(super) places: Arc<MemberPlaces>,
    recent: Mutex<Recent>,
    /// Counts the wake-ups that came without an event: a reader that has
    /// not seen the latest reads the inbox in Redis.
    plain_wakes: AtomicU64,
    /// The signals readers here delivered from `recent` that Redis has not
    /// been told of.
    untold: Mutex<Mark>,
    /// Whether a flush of this member's marks is under way.
    pub(super) flushing: AtomicBool,
}

/// A run of signals delivered from `recent`: ids `from..=to`, contiguous,
/// with `bytes` of data. Empty when `to < from`. Redis takes it as it is
/// when it follows on from what it counts delivered, and otherwise looks
/// at the held events (`delivered_elsewhere` in `prelude.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) from: u64,
    pub(super) to: u64,
    pub(super) bytes: u64,
}

impl Default for Mark {
    fn default() -> Self {
        Self {
            from: 1,
            to: 0,
            bytes: 0,
        }
    }
}

impl Mark {
    fn is_empty(&self) -> bool {
        self.to < self.from
    }

    fn len(&self) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.to - self.from + 1
        }
    }

    /// The three arguments of a function that takes a mark: from, to and
    /// bytes, or three empty ones.
    pub(super) fn args(mark: Option<Mark>) -> [String; 3] {
        match mark {
            Some(mark) => [
                mark.from.to_string(),
                mark.to.to_string(),
                mark.bytes.to_string(),
            ],
            None => Default::default(),
        }
    }
}

/// Recent signals, ids increasing.
#[derive(Default)]
struct Recent {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl LocalMember {
    fn recent(&self) -> MutexGuard<'_, Recent> {
        // Nothing panics while holding it; a poisoned list is still whole.
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A wake-up without an event: every reader reads the inbox.
    pub(super) fn wake_plain(&self) {
        self.plain_wakes.fetch_add(1, Ordering::AcqRel);
        self.wake.wake();
    }

    /// A wake-up with event `id`, a signal: kept for the readers, who are
    /// woken. Wake-ups from this node and from others may come out of
    /// order, so it goes in its place.
    pub(super) fn wake_with(&self, id: u64, body: Arc<EventBody>) {
        {
            let mut recent = self.recent();
            let at = recent.entries.partition_point(|entry| entry.id < id);
            if recent.entries.get(at).is_none_or(|entry| entry.id != id) {
                recent.bytes += body.size();
                recent.entries.insert(at, Entry { id, body });
                while recent.entries.len() > RECENT_MAX
                    || (recent.bytes > RECENT_BYTES_MAX && recent.entries.len() > 1)
                {
                    if let Some(oldest) = recent.entries.pop_front() {
                        recent.bytes -= oldest.body.size();
                    }
                }
            }
        }
        self.wake.wake();
    }

    /// Which plain wake-ups a reader has seen: read before a read of the
    /// inbox, so that one that comes during it is not taken as seen.
    pub(super) fn plain_wakes(&self) -> u64 {
        self.plain_wakes.load(Ordering::Acquire)
    }

    /// The signals after `cursor`, when they follow on from it: `Some` of
    /// an empty batch when none came after it, `None` when the reader must
    /// read the inbox in Redis (one is missing). `alone`: the reader is the
    /// member's only one here, so what it passed is dropped.
    pub(super) fn take_after(&self, cursor: u64, alone: bool) -> Option<Batch> {
        let mut recent = self.recent();
        let start = recent.entries.partition_point(|entry| entry.id <= cursor);
        let items: Vec<Item> = (cursor + 1..)
            .zip(recent.entries.range(start..))
            .take_while(|(next, entry)| entry.id == *next)
            .map(|(_, entry)| {
                Item::Event(Entry {
                    id: entry.id,
                    body: Arc::clone(&entry.body),
                })
            })
            .collect();
        if items.is_empty() && start < recent.entries.len() {
            return None;
        }
        if alone {
            let passed = start + items.len();
            let Recent { entries, bytes } = &mut *recent;
            for entry in entries.drain(..passed) {
                *bytes -= entry.body.size();
            }
        }
        drop(recent);
        self.delivered(&items);
        Some(Batch { items })
    }

    fn untold(&self) -> MutexGuard<'_, Mark> {
        // Nothing panics while holding it; a poisoned mark is still whole.
        self.untold.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds the signals a reader hands out, contiguous, to the untold run.
    /// Another reader of the member may have handed out some already;
    /// after a read of the inbox in Redis (which Redis counts delivered)
    /// the run starts again.
    fn delivered(&self, items: &[Item]) {
        let mut untold = self.untold();
        let last = untold.to;
        let mut fresh = items.iter().filter_map(|item| match item {
            Item::Event(entry) if entry.id > last => Some(entry),
            _ => None,
        });
        let Some(first) = fresh.next() else {
            return;
        };
        if untold.is_empty() || first.id != last + 1 {
            *untold = Mark {
                from: first.id,
                to: first.id - 1,
                bytes: 0,
            };
        }
        for entry in std::iter::once(first).chain(fresh) {
            untold.to = entry.id;
            untold.bytes += entry.body.size() as u64;
        }
    }

    /// The run Redis has not been told of, if any.
    pub(super) fn mark(&self) -> Option<Mark> {
        let untold = *self.untold();
        (!untold.is_empty()).then_some(untold)
    }

    /// Whether the run not yet told to Redis reaches a quarter of the
    /// inbox's limits (`events`, `bytes`).
    pub(super) fn piled_up(&self, events: usize, bytes: usize) -> bool {
        let untold = *self.untold();
        !untold.is_empty()
            && (untold.len() >= (events as u64 / 4).max(1)
                || untold.bytes >= (bytes as u64 / 4).max(1))
    }

    /// Redis has been told of `mark`: what the run holds past it stays.
    pub(super) fn told(&self, mark: Mark) {
        let mut untold = self.untold();
        if untold.from == mark.from && untold.to >= mark.to {
            untold.from = mark.to + 1;
            untold.bytes = untold.bytes.saturating_sub(mark.bytes);
        }
    }
}

impl RedisHub {
    /// The run of signals the member's readers here delivered, if Redis has
    /// not been told of it.
    pub(super) fn mark_of(&self, room: &RoomId, member: Uuid) -> Option<Mark> {
        self.inner
            .local
            .get(&MemberKey::new(room, member))
            .and_then(|local| local.mark())
    }

    /// Redis has been told of the member's `mark`.
    pub(super) fn told(&self, room: &RoomId, member: Uuid, mark: Mark) {
        if let Some(local) = self.inner.local.get(&MemberKey::new(room, member)) {
            local.told(mark);
        }
    }

    /// Tells Redis the marks of the member behind `local` once they reach
    /// a quarter of the inbox's limits: past that, Redis would soon refuse
    /// signals to an inbox that is not full. The call is on its way before
    /// this returns (polled once with `cx`, then left to a task of its
    /// own), so that a signal this node sends after the reader hands its
    /// events out reaches Redis after it.
    pub(super) fn flush_if_piled_up(
        &self,
        room: &RoomId,
        member: Uuid,
        local: &LocalMember,
        cx: &mut Context<'_>,
    ) {
        let limits = self.inner.settings.limits;
        if !local.piled_up(limits.events, limits.bytes)
            || local.flushing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let (hub, room, mark) = (self.clone(), room.clone(), local.mark());
        let mut flush = Box::pin(async move {
            let _ = hub.touch(&room, member, "keep", mark).await;
            if let Some(local) = hub.inner.local.get(&MemberKey { room, member }) {
                local.flushing.store(false, Ordering::Release);
            }
        });
        if flush.as_mut().poll(cx).is_pending() {
            tokio::spawn(flush);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;
    use crate::domain::event::SIGNAL;

    fn signal(text: &str) -> Arc<EventBody> {
        EventBody::from_json(SIGNAL, RawValue::from_string(text.to_owned()).unwrap())
    }

    fn ids(batch: &Batch) -> Vec<u64> {
        batch
            .items
            .iter()
            .map(|item| match item {
                Item::Event(entry) => entry.id,
                Item::Gap { .. } => panic!("no gaps come from wake-ups"),
            })
            .collect()
    }

    #[test]
    fn signals_that_follow_on_from_the_cursor_are_handed_out_in_order() {
        let member = LocalMember::default();
        member.wake_with(6, signal("6"));
        member.wake_with(5, signal("5"));
        let batch = member.take_after(4, true).unwrap();
        assert_eq!(ids(&batch), [5, 6]);
        let mark = Mark {
            from: 5,
            to: 6,
            bytes: 2,
        };
        assert_eq!(member.mark(), Some(mark));
        assert!(member.take_after(6, true).unwrap().is_empty());
        member.told(mark);
        assert_eq!(member.mark(), None);
    }

    #[test]
    fn a_missing_signal_sends_the_reader_to_redis() {
        let member = LocalMember::default();
        member.wake_with(7, signal("7"));
        assert!(member.take_after(5, true).is_none());
        assert_eq!(member.mark(), None, "nothing was delivered from here");
    }

    #[test]
    fn the_list_is_bounded_and_loses_its_oldest() {
        let member = LocalMember::default();
        for id in 1..=(RECENT_MAX as u64 + 4) {
            member.wake_with(id, signal("1"));
        }
        assert!(member.take_after(0, false).is_none(), "1 to 4 were let go");
        let batch = member.take_after(4, false).unwrap();
        assert_eq!(batch.items.len(), RECENT_MAX);
    }

    #[test]
    fn the_run_grows_while_told_and_starts_again_after_a_read_of_the_inbox() {
        let member = LocalMember::default();
        for id in 1..=3 {
            member.wake_with(id, signal("12"));
        }
        member.take_after(0, false).unwrap();
        let told = member.mark().unwrap();
        member.wake_with(4, signal("123"));
        member.take_after(3, false).unwrap();
        member.told(told);
        assert_eq!(
            member.mark(),
            Some(Mark {
                from: 4,
                to: 4,
                bytes: 3
            }),
            "what came after the mark told stays untold"
        );
        // A read of the inbox in Redis took 5 to 8; 9 comes with its wake-up.
        member.wake_with(9, signal("1"));
        member.take_after(8, false).unwrap();
        assert_eq!(
            member.mark(),
            Some(Mark {
                from: 9,
                to: 9,
                bytes: 1
            })
        );
    }
}
