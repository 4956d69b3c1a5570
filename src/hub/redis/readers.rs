//! Readers on this node: opening one (the open script, and this node's
//! entry for its wake-ups), reading an inbox's Redis stream, and closing.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use ::redis::Value;
use serde_json::value::RawValue;
use tracing::warn;

use super::RedisHub;
use super::local::LocalMember;
use super::script::{RoomFn, into_array, into_string, into_u64, refusal};
use crate::domain::Refusal;
use crate::domain::event::{EventBody, SIGNAL};
use crate::domain::inbox::{Batch, Entry, Item};
use crate::hub::drawn::MemberKey;
use crate::hub::wake::Readers;
use crate::hub::{InboxReader, MemberRef, ReaderKind};

impl RedisHub {
    /// Opens a reader, to its end whatever the caller does (`detached`).
    pub(super) async fn open(
        &self,
        member_ref: &MemberRef,
        kind: ReaderKind,
        given: Option<u64>,
    ) -> Result<RedisReader, Refusal> {
        // A reader the task made after its caller left is dropped with the
        // task's output, and closes what the script opened.
        let member_ref = member_ref.clone();
        self.detached(move |hub| async move { hub.open_now(&member_ref, kind, given).await })
            .await
    }

    /// `open`, on the caller's task.
    async fn open_now(
        &self,
        member_ref: &MemberRef,
        kind: ReaderKind,
        given: Option<u64>,
    ) -> Result<RedisReader, Refusal> {
        let shared = &*self.inner;
        let streaming = kind == ReaderKind::Stream;
        let mode = if streaming { "stream" } else { "poll" };
        let key = MemberKey::new(&member_ref.room, member_ref.member);
        // Registered before the script runs, so a wake-up published between
        // the script and the first read is not missed.
        let local = {
            let local = shared.local.entry(key.clone()).or_default();
            let entered =
                local
                    .places
                    .enter(streaming, &shared.readers, shared.settings.max_readers);
            if let Err(refusal) = entered {
                drop(local);
                shared
                    .local
                    .remove_if(&key, |_, local| local.places.open() == 0);
                return Err(refusal);
            }
            Arc::clone(&local)
        };
        let mut reader = RedisReader {
            hub: self.clone(),
            subscribed: false,
            opened: false,
            member: member_ref.clone(),
            generation: None,
            streaming,
            local,
            cursor: 0,
            plain_wakes_seen: None,
            reading: None,
            ended: false,
        };
        if shared.primary.is_cluster() {
            let subscriber = self.subscriber();
            shared
                .shards
                .enter(
                    &member_ref.room,
                    || self.shard_channel(&member_ref.room),
                    &subscriber,
                )
                .await
                .map_err(super::unavailable)?;
            reader.subscribed = true;
        }
        let given = given.map(|id| id.to_string()).unwrap_or_default();
        let reply = self
            .run(
                RoomFn::Open,
                &member_ref.room,
                &[&member_ref.member.to_string(), mode, &given],
            )
            .await?;
        if reply.status != "ok" {
            return Err(refusal(&reply.status));
        }
        reader.opened = true;
        let mut rest = reply.rest.iter();
        reader.cursor = rest.next().and_then(into_u64).unwrap_or(0);
        let generation = rest.next().and_then(into_u64).unwrap_or(0);
        reader.generation = streaming.then_some(generation);
        Ok(reader)
    }
}

/// The kinds an inbox holds, as the `&'static str` the SSE writer takes.
fn event_kind(kind: &str) -> Option<&'static str> {
    [
        "member-joined",
        "member-left",
        "member-updated",
        "room-updated",
        SIGNAL,
    ]
    .into_iter()
    .find(|known| *known == kind)
}

/// One open reader on this node.
pub struct RedisReader {
    hub: RedisHub,
    /// Whether it counts among its room's readers for the room's shard
    /// channel (on a Cluster).
    subscribed: bool,
    /// Whether Redis counts this reader (the open script ran).
    opened: bool,
    member: MemberRef,
    /// The stream generation, for streams; polls never supersede anything.
    generation: Option<u64>,
    /// Whether it is a stream (the generation comes once it is open).
    streaming: bool,
    /// What this node keeps of the member: its readers' places and
    /// wake-ups, and the signals that came with them.
    local: Arc<LocalMember>,
    cursor: u64,
    /// The member's plain wake-ups as of this reader's last read of the
    /// inbox in Redis; `None` before the first. While no other came, the
    /// signals that come with wake-ups are all there is to read.
    plain_wakes_seen: Option<u64>,
    /// A read under way: a round trip, polled to its end before the next,
    /// with the plain wake-ups there had been when it began.
    reading: Option<(Pin<Box<RedisRead>>, u64)>,
    /// Whether it read the last of its member's inbox: the member is gone.
    ended: bool,
}

/// A Redis read: the cursor it moves to, the batch after the old one, and
/// whether that was the last (the member is gone).
type RedisRead = dyn Future<Output = Option<(u64, Batch, bool)>> + Send;

impl RedisReader {
    /// Reads once without waiting: the events after the cursor there are
    /// now, possibly none, the cursor that reading them moves to, and
    /// whether they are the last of a member gone; `None` when the reader
    /// is done. Owns what it needs, so that a reader can hold it while the
    /// round trip lasts.
    fn read(&self) -> impl Future<Output = Option<(u64, Batch, bool)>> + Send + 'static {
        let hub = self.hub.clone();
        let room = self.member.room.clone();
        let member = self.member.member.to_string();
        let generation = self
            .generation
            .map(|generation| generation.to_string())
            .unwrap_or_default();
        let after = self.cursor;
        async move {
            let cursor = after.to_string();
            let reply = hub
                .run(RoomFn::Read, &room, &[&member, &cursor, &generation])
                .await
                .ok()?;
            let ended = match reply.status.as_str() {
                "ok" => false,
                "last" => true,
                _ => return None,
            };
            let mut rest = reply.rest.into_iter();
            let last = rest.next().as_ref().and_then(into_u64).unwrap_or(0);
            let batch = batch_after(after, last, rest.next().map(into_array).unwrap_or_default());
            Some((last, batch, ended))
        }
    }
}

impl RedisReader {
    /// The signals that came with wake-ups since the last read, when they
    /// are all there is to read; `None` when the inbox must be read.
    fn take_carried(&mut self, cx: &mut Context<'_>) -> Option<Batch> {
        if self.plain_wakes_seen != Some(self.local.plain_wakes()) {
            return None;
        }
        let alone = self.local.places.open() == 1;
        let batch = self.local.take_after(self.cursor, alone)?;
        if let Some(Item::Event(last)) = batch.items.last() {
            self.cursor = last.id;
            self.hub
                .flush_if_piled_up(&self.member.room, self.member.member, &self.local, cx);
        }
        Some(batch)
    }
}

impl InboxReader for RedisReader {
    fn cursor(&self) -> u64 {
        self.cursor
    }

    fn readers(&self) -> Arc<Readers> {
        Arc::clone(&self.local.wake)
    }

    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.reading.is_none() {
            if let Some(batch) = self.take_carried(cx) {
                return Poll::Ready(Some(batch));
            }
            self.reading = Some((Box::pin(self.read()), self.local.plain_wakes()));
        }
        let Some((reading, plain_wakes)) = &mut self.reading else {
            return Poll::Ready(None);
        };
        let read = ready!(reading.as_mut().poll(cx));
        self.plain_wakes_seen = Some(*plain_wakes);
        self.reading = None;
        Poll::Ready(read.map(|(cursor, batch, ended)| {
            self.cursor = cursor;
            if ended {
                self.ended = true;
                // Looked at again, to end: nothing else will wake it.
                self.local.wake.wake();
            }
            batch
        }))
    }

    fn is_reading(&self) -> bool {
        self.reading.is_some()
    }
}

/// The events a read returned, with a gap wherever ids after `after` are
/// no longer held: `Inbox::read_after`'s answer.
fn batch_after(after: u64, last: u64, entries: Vec<Value>) -> Batch {
    let after = after.min(last);
    let mut items = Vec::new();
    let mut next = after + 1;
    for entry in entries {
        let mut entry = into_array(entry).into_iter();
        let Some(id) = entry
            .next()
            .and_then(into_string)
            .and_then(|id| id.strip_prefix("0-").and_then(|id| id.parse::<u64>().ok()))
        else {
            continue;
        };
        let fields: Vec<String> = entry
            .next()
            .map(into_array)
            .unwrap_or_default()
            .into_iter()
            .filter_map(into_string)
            .collect();
        // `k <kind> d <data>`, and `c <cum>` after them (`prelude.lua`).
        let [_, kind, _, data, ..] = fields.as_slice() else {
            continue;
        };
        let (Some(kind), Ok(data)) = (event_kind(kind), RawValue::from_string(data.clone())) else {
            warn!(id, "an inbox entry in redis is not an event; skipped");
            continue;
        };
        if id > next {
            items.push(Item::Gap {
                from: next,
                to: id - 1,
            });
        }
        items.push(Item::Event(Entry {
            id,
            body: EventBody::from_json(kind, data),
        }));
        next = id + 1;
    }
    if next <= last {
        items.push(Item::Gap {
            from: next,
            to: last,
        });
    }
    Batch { items }
}

impl Drop for RedisReader {
    fn drop(&mut self) {
        let shared = &self.hub.inner;
        let key = MemberKey::new(&self.member.room, self.member.member);
        let leave = || self.local.places.leave(self.streaming, &shared.readers);
        // Under the entry's lock, under which readers take their places.
        let mut left = false;
        shared.local.remove_if_mut(&key, |_, local| {
            leave();
            left = true;
            local.places.open() == 0
        });
        if !left {
            leave();
        }
        if self.subscribed {
            shared.shards.leave(&self.member.room);
        }
        // The idle clock starts again now, and Redis counts one reader less
        // here; neither can wait for an await.
        if self.opened
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let hub = self.hub.clone();
            let MemberKey { room, member } = key;
            let mark = self.local.mark();
            runtime.spawn(async move {
                let _ = hub.touch(&room, member, "close", mark).await;
            });
        }
    }
}
