//! Rooms: signals into their members' inboxes, looking at and locking a
//! room, and the counts and list of every room, with the room index (the
//! `rooms` hash, room to epoch) that lists them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use ::redis::{AsyncCommands, Value};
use uuid::Uuid;

use super::local::Mark;
use super::script::{RoomFn, actor_arg, into_string, into_u64, parse_views, refusal};
use super::tail::Answered;
use super::{RedisHub, unavailable};
use crate::domain::Refusal;
use crate::domain::event::EventBody;
use crate::domain::room::Actor;
use crate::domain::room::Sender;
use crate::model::{RoomId, RoomSummary, RoomView, Timestamp};

/// Room index entries one reconciliation looks at.
const INDEX_BATCH: usize = 128;

/// Index entries whose room is gone that a node remembers at once; more
/// wait for a later pass.
pub(super) const MISSING_ROOMS_MAX: usize = 4096;

impl RedisHub {
    /// Sends a signal: a member's to one member appended with plain
    /// commands when this node knows the inbox's tail (`tail`), else by
    /// `signal.lua`, which also tells Redis how far the sender's readers
    /// here delivered, and answers the tail.
    pub(super) async fn signal(
        &self,
        room: &RoomId,
        from: Sender,
        to: Option<Uuid>,
        body: Arc<EventBody>,
    ) -> Result<usize, Refusal> {
        let pair = from.member().zip(to);
        // Held until Redis answered, plain append or function: a function
        // beside this node's own append to the inbox would refuse it.
        let mut turn = match pair.and_then(|(_, recipient)| self.inner.tails.turn(room, recipient))
        {
            Some(turn) => Some(turn.lock_owned().await),
            None => None,
        };
        if let Some((sender, recipient)) = pair
            && self
                .append_signal(room, sender, recipient, &body, &mut turn)
                .await
        {
            return Ok(1);
        }
        let epoch = self.inner.tails.epoch();
        let to = to.map(|to| to.to_string()).unwrap_or_default();
        let mark = from.member().and_then(|member| self.mark_of(room, member));
        let [mark_from, mark_to, mark_bytes] = Mark::args(mark);
        let reply = self
            .run_carrying(
                RoomFn::Signal,
                room,
                &[
                    // Empty for the service.
                    &from
                        .member()
                        .map(|member| member.to_string())
                        .unwrap_or_default(),
                    &to,
                    &body.json(),
                    &mark_from,
                    &mark_to,
                    &mark_bytes,
                ],
                Some(&body),
            )
            .await?;
        if let (Some(mark), Some(member)) = (mark, from.member()) {
            self.told(room, member, mark);
        }
        if reply.status != "ok" {
            return Err(refusal(&reply.status));
        }
        if let (Some((sender, recipient)), Some(answered)) =
            (pair, reply.rest.get(1..).and_then(Answered::parse))
        {
            self.inner
                .tails
                .learn(room, sender, recipient, answered, epoch);
        }
        Ok(reply.rest.first().and_then(into_u64).unwrap_or(0) as usize)
    }

    /// Runs `room.lua`: looks at (`view`), `lock`s or `unlock`s the room,
    /// or sets its `password` (the hash; `None` clears it).
    pub(super) async fn room_script(
        &self,
        room_id: &RoomId,
        actor: Actor,
        op: &str,
        password: Option<&str>,
    ) -> Result<RoomView, Refusal> {
        let actor = actor_arg(actor);
        let reply = self
            .run(
                RoomFn::Room,
                room_id,
                &[&actor, op, password.unwrap_or_default()],
            )
            .await?;
        if reply.status != "ok" {
            return Err(refusal(&reply.status));
        }
        let mut rest = reply.rest.into_iter();
        let capacity = rest.next().as_ref().and_then(into_u64).unwrap_or(0) as u32;
        let locked = rest.next().and_then(into_string).as_deref() == Some("1");
        // Nil (none) or an id.
        let owner = rest
            .next()
            .and_then(into_string)
            .and_then(|owner| owner.parse().ok());
        let created_at = rest
            .next()
            .and_then(into_string)
            .and_then(|text| Timestamp::parse(&text))
            .unwrap_or_else(Timestamp::now);
        Ok(RoomView {
            id: room_id.clone(),
            capacity,
            locked,
            owner,
            members: rest.next().map(parse_views).unwrap_or_default(),
            created_at,
        })
    }

    /// The rooms in the room index, and the members in the idle index:
    /// one entry each.
    pub(super) async fn count_all(&self) -> Result<(usize, usize), Refusal> {
        ::redis::pipe()
            .hlen(self.key("rooms"))
            .zcard(self.key("idle"))
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)
    }

    /// Drops `room` from the room index if its entry is still `epoch`'s.
    pub(super) async fn forget_room(&self, room: &RoomId, epoch: &str) -> Result<(), Refusal> {
        // Alone, not in a pipeline: `invoke_async` loads the script when
        // Redis does not know it yet (a pipeline would not).
        self.inner
            .scripts
            .forget_room
            .key(self.key("rooms"))
            .arg(room.as_str())
            .arg(epoch)
            .invoke_async::<i64>(&mut self.connection())
            .await
            .map(drop)
            .map_err(unavailable)
    }

    /// Looks at the next batch of the room index and mends what a node
    /// that died between a room script and the index left: an entry whose
    /// room is gone is dropped once it has been seen so for a member
    /// timeout (a join under way indexes its room before it makes it); an
    /// entry that names another epoch than its room's is pointed at it.
    pub(super) async fn reconcile_rooms(&self) -> Result<(), Refusal> {
        let shared = &*self.inner;
        let mut connection = self.connection();
        let cursor = shared.index_cursor.load(Ordering::Relaxed);
        let (next, pairs): (u64, Vec<String>) = ::redis::cmd("HSCAN")
            .arg(self.key("rooms"))
            .arg(cursor)
            .arg("COUNT")
            .arg(INDEX_BATCH)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        shared.index_cursor.store(next, Ordering::Relaxed);
        let entries: Vec<(RoomId, &str)> = pairs
            .chunks_exact(2)
            .filter_map(|pair| Some((RoomId::parse(&pair[0]).ok()?, pair[1].as_str())))
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        // One command a room, not a pipeline: on a Cluster the rooms are
        // in different slots. The connection pipelines them anyway.
        let actual: Vec<(Option<String>, Option<String>)> =
            futures_util::future::try_join_all(entries.iter().map(|(room, _)| {
                let mut connection = connection.clone();
                let key = self.room_key(room, "room");
                async move { connection.hmget(key, &["epoch", "keep"]).await }
            }))
            .await
            .map_err(unavailable)?;
        for ((room, indexed), (actual, keep)) in entries.into_iter().zip(actual) {
            if keep.is_some() {
                // A kept room whose maker died before indexing it, or whose
                // entry the reaper deleted as its maker was under way: the
                // reaper looks at it now.
                let _: () = ::redis::cmd("ZADD")
                    .arg(self.kept_key())
                    .arg("NX")
                    .arg(super::members::unix_ms())
                    .arg(room.as_str())
                    .query_async(&mut connection)
                    .await
                    .map_err(unavailable)?;
            }
            match actual {
                Some(actual) if actual == indexed => {
                    shared.missing_rooms().remove(&room);
                }
                Some(actual) => {
                    let _: i64 = shared
                        .scripts
                        .reindex_room
                        .key(self.key("rooms"))
                        .arg(room.as_str())
                        .arg(indexed)
                        .arg(&actual)
                        .invoke_async(&mut connection)
                        .await
                        .map_err(unavailable)?;
                }
                None => {
                    let due = {
                        let mut missing = shared.missing_rooms();
                        match missing.get(&room) {
                            Some((epoch, since)) if epoch == indexed => {
                                since.elapsed() >= shared.settings.member_timeout
                            }
                            _ => {
                                if missing.len() < MISSING_ROOMS_MAX {
                                    missing
                                        .insert(room.clone(), (indexed.to_owned(), Instant::now()));
                                }
                                false
                            }
                        }
                    };
                    if due {
                        self.forget_room(&room, indexed).await?;
                        shared.missing_rooms().remove(&room);
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) async fn list_rooms(&self) -> Result<Vec<RoomSummary>, Refusal> {
        let mut connection = self.connection();
        let ids: Vec<String> = connection
            .hkeys(self.key("rooms"))
            .await
            .map_err(unavailable)?;
        let ids: Vec<RoomId> = ids.iter().filter_map(|id| RoomId::parse(id).ok()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // A pipeline a room (its keys share its slot), not one for all.
        let answers: Vec<(RoomFields, usize)> =
            futures_util::future::try_join_all(ids.iter().map(|id| {
                let mut connection = connection.clone();
                let room = format!("{}:{{{id}}}:", self.inner.prefix);
                async move {
                    ::redis::pipe()
                        .hmget(
                            format!("{room}room"),
                            &["capacity", "locked", "created_at", "keep"],
                        )
                        .zcard(format!("{room}members"))
                        .query_async::<Vec<Value>>(&mut connection)
                        .await
                }
            }))
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|pair| {
                (
                    pair.first()
                        .and_then(|value| ::redis::from_redis_value_ref(value).ok())
                        .unwrap_or((None, None, None, None)),
                    pair.get(1)
                        .and_then(|value| ::redis::from_redis_value_ref(value).ok())
                        .unwrap_or(0),
                )
            })
            .collect();
        let mut rooms: Vec<RoomSummary> = ids
            .into_iter()
            .zip(answers)
            // A room the service keeps is listed without members too.
            .filter(|(_, ((.., keep), members))| *members > 0 || keep.is_some())
            .map(
                |(id, ((capacity, locked, created_at, _), member_count))| RoomSummary {
                    id,
                    capacity: capacity.unwrap_or(0),
                    locked: locked.as_deref() == Some("1"),
                    member_count,
                    created_at: created_at
                        .as_deref()
                        .and_then(Timestamp::parse)
                        .unwrap_or_else(Timestamp::now),
                },
            )
            .collect();
        rooms.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(rooms)
    }
}

/// A room hash's capacity, lock and creation time, as `GET /rooms` lists
/// them, and its keep (only a kept room has one).
type RoomFields = (Option<u32>, Option<String>, Option<String>, Option<String>);
