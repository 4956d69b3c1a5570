//! The reader places one member holds, and the server's bound on all of
//! them: a member may always replace its own stream, and holds at most a
//! few waiting polls.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::domain::Refusal;

/// Waiting polls one member may hold at once. A client has one in flight;
/// a few more cover polls whose client went away unseen behind a proxy.
/// Past it a poll is refused: without it one member could hold every
/// place of `max_readers`, and each event to it would wake them all.
pub const POLLS_PER_MEMBER: u32 = 4;

/// The reader places one member holds (on this node, with Redis): its
/// streams, the live one and any still ending, and its waiting polls.
///
/// A newer stream replaces the older at once, but the older ends only when
/// its task next runs: until then both are open. The newer takes the
/// older's place over instead of a new one of the server's, so a member can
/// always replace its own stream, even while the server holds
/// `max_readers`; the older then gives its place to the newer when it
/// ends, not back to the server. Shared with the member's readers, so that
/// it outlives the member.
#[derive(Default)]
pub struct MemberPlaces {
    streams: AtomicU32,
    polls: AtomicU32,
    /// Places of ending streams that newer streams have taken over.
    handed_over: AtomicU32,
}

impl MemberPlaces {
    /// Takes a place for a new stream or poll: one an ending stream hands
    /// over, or one of the server's `max` (`taken` counts those). Called
    /// under the lock that guards the member's readers, as `leave` is.
    pub(super) fn enter(
        &self,
        streaming: bool,
        taken: &AtomicUsize,
        max: usize,
    ) -> Result<(), Refusal> {
        let count = if streaming {
            let streams = self.streams.load(Ordering::Relaxed);
            let took_over = self
                .handed_over
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |handed| {
                    (streams > handed).then_some(handed + 1)
                })
                .is_ok();
            if !took_over {
                server_place(taken, max)?;
            }
            &self.streams
        } else {
            if self.polls.load(Ordering::Relaxed) >= POLLS_PER_MEMBER {
                return Err(Refusal::TooManyPolls);
            }
            server_place(taken, max)?;
            &self.polls
        };
        count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A reader's end: its place goes on to a newer stream that took it
    /// over, or back to the server.
    pub(super) fn leave(&self, streaming: bool, taken: &AtomicUsize) {
        let handed_over = streaming
            && self
                .handed_over
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |handed| {
                    handed.checked_sub(1)
                })
                .is_ok();
        let count = if streaming {
            &self.streams
        } else {
            &self.polls
        };
        count.fetch_sub(1, Ordering::Relaxed);
        if !handed_over {
            taken.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Open streams and polls.
    pub(super) fn open(&self) -> u32 {
        self.streams.load(Ordering::Relaxed) + self.polls.load(Ordering::Relaxed)
    }
}

/// One of the server's `max` reader places, counted in `taken`.
fn server_place(taken: &AtomicUsize, max: usize) -> Result<(), Refusal> {
    Place::take(taken, max)
        .map(Place::keep)
        .ok_or(Refusal::TooManyReaders)
}

/// A place taken under a bound, given back on drop unless kept.
pub(super) struct Place<'a> {
    count: &'a AtomicUsize,
    kept: bool,
}

impl<'a> Place<'a> {
    /// Takes a place if fewer than `max` are taken.
    pub(super) fn take(count: &'a AtomicUsize, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |taken| {
                (taken < max).then_some(taken + 1)
            })
            .ok()
            .map(|_| Self { count, kept: false })
    }

    /// The place now belongs to whatever was made with it.
    pub(super) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_stream_takes_the_older_ones_place_and_every_place_comes_back() {
        let taken = AtomicUsize::new(0);
        let places = MemberPlaces::default();
        places.enter(true, &taken, 1).expect("the first stream");
        // The server is full, yet the member replaces its stream twice
        // before the older ones end.
        places.enter(true, &taken, 1).expect("a newer stream");
        places.enter(true, &taken, 1).expect("a newer one still");
        assert_eq!(taken.load(Ordering::Relaxed), 1);
        assert!(matches!(
            places.enter(false, &taken, 1),
            Err(Refusal::TooManyReaders)
        ));
        for _ in 0..3 {
            places.leave(true, &taken);
        }
        assert_eq!((places.open(), taken.load(Ordering::Relaxed)), (0, 0));
    }

    #[test]
    fn a_member_has_at_most_its_polls_and_a_stream_beside_them() {
        let taken = AtomicUsize::new(0);
        let places = MemberPlaces::default();
        for _ in 0..POLLS_PER_MEMBER {
            places.enter(false, &taken, 100).expect("a poll");
        }
        assert!(matches!(
            places.enter(false, &taken, 100),
            Err(Refusal::TooManyPolls)
        ));
        places.enter(true, &taken, 100).expect("a stream");
        assert_eq!(places.open(), POLLS_PER_MEMBER + 1);
        places.leave(false, &taken);
        places
            .enter(false, &taken, 100)
            .expect("a poll in the place freed");
    }
}
