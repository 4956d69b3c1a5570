//! `Subscription`: one open reader of an inbox (a stream, or a poll while
//! it waits), whichever backend holds the inbox. It waits for a change,
//! reads through its backend's `InboxReader`, and counts itself among the
//! open streams in the metrics.

use std::sync::Arc;
use std::task::{Context, Poll, ready};

use super::memory::MemoryReader;
use super::redis::RedisReader;
use super::wake::{ReaderWake, Readers};
use crate::domain::inbox::Batch;
use crate::observe::metrics;

/// What a backend keeps of one open reader: where it reads from, and how.
pub trait InboxReader: Send + 'static {
    /// The id this reader reads after.
    fn cursor(&self) -> u64;

    /// The readers of the inbox, to be woken when it changes.
    fn readers(&self) -> Arc<Readers>;

    /// Reads once, without waiting for events: the events there are now,
    /// possibly none, and `None` when the reader is done (the member is
    /// gone, a newer stream replaced this one, or the state cannot be
    /// reached). `Pending` only while a read that is a round trip is under
    /// way; the cursor moves only as its batch is returned.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Batch>>;

    /// Whether a read has begun and not yet returned.
    fn is_reading(&self) -> bool;
}

/// Whether a reader is the member's stream (one at a time, the newest
/// wins) or one of its polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReaderKind {
    Stream,
    Poll,
}

impl ReaderKind {
    /// The `transport` label of the open-streams metric.
    fn transport(self) -> &'static str {
        match self {
            Self::Stream => "sse",
            Self::Poll => "poll",
        }
    }
}

/// The reader of whichever backend serves: an enum rather than a boxed
/// trait object, so that the read of every event is a direct call.
pub(super) enum AnyReader {
    Memory(MemoryReader),
    Redis(RedisReader),
}

macro_rules! each_reader {
    ($reader:expr, $inner:ident => $call:expr) => {
        match $reader {
            AnyReader::Memory($inner) => $call,
            AnyReader::Redis($inner) => $call,
        }
    };
}

impl InboxReader for AnyReader {
    fn cursor(&self) -> u64 {
        each_reader!(self, reader => reader.cursor())
    }

    fn readers(&self) -> Arc<Readers> {
        each_reader!(self, reader => reader.readers())
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        each_reader!(self, reader => reader.poll_read(cx))
    }

    fn is_reading(&self) -> bool {
        each_reader!(self, reader => reader.is_reading())
    }
}

/// One open reader of an inbox (a stream, or a poll while it waits). While
/// it exists, the member is not reaped.
///
/// Polled by hand (`poll_next`), not an async fn: an open stream waits here
/// for all of its life, and the async fn made its futures again for every
/// event.
pub struct Subscription {
    reader: AnyReader,
    /// Says whether the inbox changed since the last read (a new reader's
    /// has), and wakes the task when it does: a stream polls once more
    /// after every batch, and reads again only if something came.
    wake: ReaderWake,
    _open: metrics::OpenStream,
}

impl Subscription {
    pub(super) fn new(reader: AnyReader, kind: ReaderKind) -> Self {
        let wake = ReaderWake::join(reader.readers());
        Self {
            reader,
            wake,
            _open: metrics::OpenStream::new(kind.transport()),
        }
    }

    /// The id this reader reads after.
    pub fn cursor(&self) -> u64 {
        self.reader.cursor()
    }

    /// Reads once without waiting: the events there are now, possibly
    /// none. `None` when the reader is done, as for `next`.
    pub async fn read_now(&mut self) -> Option<Batch> {
        std::future::poll_fn(|cx| self.poll_read(cx)).await
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        let batch = ready!(self.reader.poll_read(cx));
        if let Some(batch) = &batch
            && !batch.is_empty()
        {
            metrics::inbox_depth(batch.items.len());
        }
        Poll::Ready(batch)
    }

    /// The next events, once there are any. `None` when the reader is done:
    /// the member is gone, a newer stream replaced this one, or (Redis) the
    /// state cannot be reached. Returns `Pending` with `cx` woken by the next
    /// event, as a `Stream` does.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        loop {
            // A read under way is finished first: it may have begun before
            // the change, so the change is looked at only after it.
            if !self.reader.is_reading() && !self.wake.changed(cx) {
                return Poll::Pending;
            }
            let Some(batch) = ready!(self.poll_read(cx)) else {
                return Poll::Ready(None);
            };
            if !batch.is_empty() {
                return Poll::Ready(Some(batch));
            }
        }
    }

    /// `poll_next` as a future. Cancel-safe: the cursor moves only together
    /// with a returned batch.
    pub async fn next(&mut self) -> Option<Batch> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}
