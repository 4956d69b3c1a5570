//! Rooms the service makes in advance (`POST /rooms`), which stay without
//! members until their empty timeout, and ending a room for the service.
//!
//! Outside its room's keys, a kept room is one entry of the kept index
//! (`kept`: room id, scored by when to look at it next), and that index is
//! the count `--max-kept-rooms` bounds. Making a room adds the entry before
//! the room's function runs; the reaper looks at each entry when it is
//! due (`close.lua`): it closes the room if it has been empty for its
//! timeout, scores the entry for the next look if not, and deletes an
//! entry that names no kept room (its room ended, or its maker died
//! before the function). The room index's reconciliation adds back the
//! entry of a kept room that has none, so no kept room outlives its
//! timeout by more than a pass of it.

use ::redis::AsyncCommands;
use tracing::info;
use uuid::Uuid;

use super::members::unix_ms;
use super::script::{RoomFn, into_array, into_string, into_u64, refusal};
use super::{RedisHub, unavailable};
use crate::domain::Refusal;
use crate::domain::room;
use crate::hub::RoomSpec;
use crate::model::{RoomId, RoomView, Timestamp};

/// Kept rooms the reaper looks at in one tick.
const CLOSE_BATCH: isize = 64;

impl RedisHub {
    pub(super) fn kept_key(&self) -> String {
        self.key("kept")
    }

    /// Counts the room among the kept ones and indexes it, runs the create
    /// function, and indexes the room it made; or undoes the first step.
    pub(super) async fn create(
        &self,
        room_id: RoomId,
        spec: RoomSpec,
    ) -> Result<RoomView, Refusal> {
        let settings = &self.inner.settings;
        let capacity = room::new_room_capacity(spec.capacity, settings.capacity_bounds())?;
        let keep_ms = spec.empty_timeout.get().as_millis() as u64;
        let epoch = Uuid::new_v4().simple().to_string();
        let kept_key = self.kept_key();
        // `LT`: an entry there already (a kept room's, or one left by a
        // maker that died) is looked at no later than it was.
        let (added, count, _): (u64, u64, bool) = ::redis::pipe()
            .cmd("ZADD")
            .arg(&kept_key)
            .arg("LT")
            .arg(unix_ms() + keep_ms)
            .arg(room_id.as_str())
            .zcard(&kept_key)
            .hset_nx(self.key("rooms"), room_id.as_str(), &epoch)
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        let undo = || async {
            if added == 1 {
                let _: Result<(), _> = self.connection().zrem(&kept_key, room_id.as_str()).await;
            }
            let _ = self.forget_room(&room_id, &epoch).await;
        };
        if count > settings.max_kept_rooms as u64 && added == 1 {
            undo().await;
            return Err(Refusal::TooManyRooms);
        }
        let created_at = Timestamp::now();
        let reply = self
            .run(
                RoomFn::Create,
                &room_id,
                &[
                    &capacity.to_string(),
                    if spec.locked { "1" } else { "0" },
                    &created_at.to_string(),
                    &epoch,
                    &keep_ms.to_string(),
                    spec.password_hash.as_deref().unwrap_or_default(),
                ],
            )
            .await;
        match reply {
            Ok(reply) if reply.status == "ok" => {}
            Ok(reply) => {
                undo().await;
                return Err(refusal(&reply.status));
            }
            // Whether it ran is unknown: the reaper and the reconciliation
            // look at what is there.
            Err(refused) => return Err(refused),
        }
        let _: () = self
            .connection()
            .hset(self.key("rooms"), room_id.as_str(), &epoch)
            .await
            .map_err(unavailable)?;
        info!(room = %room_id, "room made in advance");
        Ok(RoomView {
            id: room_id,
            capacity,
            locked: spec.locked,
            owner: None,
            members: Vec::new(),
            created_at,
        })
    }

    /// Ends the room: removes every member and closes it in one call, then
    /// lets go of what they and it held outside the room's keys.
    pub(super) async fn end(&self, room_id: &RoomId) -> Result<(), Refusal> {
        let room_id = room_id.clone();
        self.detached(|hub| async move {
            let reply = hub.run(RoomFn::Close, &room_id, &["end"]).await?;
            if reply.status != "ok" {
                return Err(refusal(&reply.status));
            }
            let mut rest = reply.rest.into_iter();
            let epoch = rest.next().and_then(into_string).unwrap_or_default();
            let gone: Vec<Uuid> = rest
                .next()
                .map(into_array)
                .unwrap_or_default()
                .into_iter()
                .filter_map(into_string)
                .filter_map(|member| member.parse().ok())
                .collect();
            hub.closed(&room_id, &epoch, &gone).await?;
            info!(room = %room_id, removed = gone.len(), "room ended");
            Ok(())
        })
        .await
    }

    /// Lets go of a closed room's entries outside its keys: its members'
    /// idle entries, its kept entry, its index entry. Should this node die
    /// first, the reaper and the reconciliation delete them.
    async fn closed(&self, room_id: &RoomId, epoch: &str, gone: &[Uuid]) -> Result<(), Refusal> {
        let mut pipe = ::redis::pipe();
        pipe.zrem(self.kept_key(), room_id.as_str()).ignore();
        if !gone.is_empty() {
            let entries: Vec<String> = gone
                .iter()
                .map(|member| Self::idle_entry(room_id, *member))
                .collect();
            pipe.zrem(self.key("idle"), entries).ignore();
        }
        let _: () = pipe
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        if !epoch.is_empty() {
            self.forget_room(room_id, epoch).await?;
        }
        Ok(())
    }

    /// Looks at the kept rooms that are due: closes those empty for their
    /// timeout. Returns how many it closed.
    pub(super) async fn close_idle_rooms(&self, now: u64) -> Result<usize, Refusal> {
        let kept_key = self.kept_key();
        let due: Vec<String> = self
            .connection()
            .zrangebyscore_limit(&kept_key, "-inf", now, 0, CLOSE_BATCH)
            .await
            .map_err(unavailable)?;
        let mut closed = 0;
        for room in due {
            let Ok(room_id) = RoomId::parse(&room) else {
                let _: Result<(), _> = self.connection().zrem(&kept_key, &room).await;
                continue;
            };
            let reply = self.run(RoomFn::Close, &room_id, &["idle"]).await?;
            let mut rest = reply.rest.into_iter();
            match reply.status.as_str() {
                "ok" => {
                    let epoch = rest.next().and_then(into_string).unwrap_or_default();
                    self.closed(&room_id, &epoch, &[]).await?;
                    info!(room = %room_id, "kept room closed, empty for its timeout");
                    closed += 1;
                }
                "wait" => {
                    let next = rest.next().as_ref().and_then(into_u64).unwrap_or(now);
                    let _: () = self
                        .connection()
                        .zadd(&kept_key, room_id.as_str(), next)
                        .await
                        .map_err(unavailable)?;
                }
                _ => {
                    let _: () = self
                        .connection()
                        .zrem(&kept_key, room_id.as_str())
                        .await
                        .map_err(unavailable)?;
                }
            }
        }
        Ok(closed)
    }

    /// Indexes a kept room to be looked at by `due`: its last member left.
    pub(super) async fn kept_emptied(&self, room_id: &RoomId, due: u64) -> Result<(), Refusal> {
        self.connection()
            .zadd(self.kept_key(), room_id.as_str(), due)
            .await
            .map_err(unavailable)
    }
}
