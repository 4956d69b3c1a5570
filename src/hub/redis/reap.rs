//! Reaping: every node removes the members nobody has read for the member
//! timeout (and idle entries that name no member), keeps the members it
//! holds readers of from being reaped, closes the kept rooms empty for
//! their timeout (`kept`), and mends the room index.

use std::time::Instant;

use ::redis::AsyncCommands;
use futures_util::StreamExt;
use uuid::Uuid;

use super::local::Mark;
use super::script::RoomFn;
use super::{RedisHub, unavailable};
use crate::domain::Refusal;
use crate::hub::drawn::MemberKey;
use crate::model::RoomId;

/// Members the reaper looks at in one round trip, and the most round
/// trips it makes in one tick.
const REAP_BATCH: usize = 256;
const REAP_BATCHES: usize = 16;

impl RedisHub {
    /// Removes the members nobody has read for longer than the member
    /// timeout. Every node runs it; the script removes each member once.
    pub(super) async fn reap_idle(&self) -> Result<usize, Refusal> {
        // First, so that after a failover every node is on the new primary
        // within a tick, and after an outage the subscription is back within
        // a tick even on a node nobody sends requests to.
        self.follow_primary().await?;
        self.ping().await?;
        let mut connection = self.connection();
        let (secs, micros): (u64, u64) = ::redis::cmd("TIME")
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let now = secs * 1000 + micros / 1000;
        let timeout = self.inner.settings.member_timeout.as_millis() as u64;
        let mut reaped = 0;
        // Batch after batch while they come full and are reaped: members
        // whose inbox nobody reads may time out faster than one batch a
        // tick, and would pile up to `--max-members`. Bounded, so that a
        // tick ends.
        for _ in 0..REAP_BATCHES {
            let candidates: Vec<String> = connection
                .zrangebyscore_limit(
                    self.key("idle"),
                    "-inf",
                    now.saturating_sub(timeout),
                    0,
                    REAP_BATCH as isize,
                )
                .await
                .map_err(unavailable)?;
            let full = candidates.len() == REAP_BATCH;
            let before = reaped;
            for candidate in candidates {
                let Some((room, member)) = candidate.split_once(' ') else {
                    continue;
                };
                let (Ok(room), Ok(member)) = (RoomId::parse(room), member.parse()) else {
                    let _: Result<(), _> = connection.zrem(self.key("idle"), &candidate).await;
                    continue;
                };
                if self.remove(&room, member, "timeout").await? == "ok" {
                    reaped += 1;
                }
            }
            // A batch that reaped nothing would come back the same.
            if !full || reaped == before {
                break;
            }
        }
        // A quarter of the timeout apart: a reader's member is renewed three
        // times before anyone may reap it.
        let due = {
            let mut last = self
                .inner
                .last_heartbeat
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let due =
                last.is_none_or(|last| last.elapsed() >= self.inner.settings.member_timeout / 4);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            self.heartbeat().await;
        }
        self.close_idle_rooms(now).await?;
        self.reconcile_rooms().await?;
        if self.inner.primary.is_cluster() {
            let subscriber = self.subscriber();
            self.inner
                .shards
                .drop_idle(|room| self.shard_channel(room), &subscriber)
                .await
                .map_err(super::unavailable)?;
        }
        Ok(reaped)
    }

    /// Resets the idle clock of every member with a reader on this node, so
    /// that no node reaps it; a node that dies stops doing so, and its
    /// members are reaped a member timeout later.
    pub(super) async fn heartbeat(&self) {
        let members: Vec<MemberKey> = self
            .inner
            .local
            .iter()
            .map(|entry| entry.key().clone())
            .collect();
        futures_util::stream::iter(members)
            .for_each_concurrent(16, |MemberKey { room, member }| async move {
                let mark = self.mark_of(&room, member);
                let _ = self.touch(&room, member, "keep", mark).await;
            })
            .await;
    }

    /// Runs `touch.lua`: a reader here is still open (`keep`) or one closed
    /// (`close`), and its member's readers here delivered the run `mark`,
    /// which is then told.
    pub(super) async fn touch(
        &self,
        room: &RoomId,
        member: Uuid,
        how: &str,
        mark: Option<Mark>,
    ) -> Result<(), Refusal> {
        let [from, to, bytes] = Mark::args(mark);
        self.run(
            RoomFn::Touch,
            room,
            &[&member.to_string(), how, &from, &to, &bytes],
        )
        .await?;
        if let Some(mark) = mark {
            self.told(room, member, mark);
        }
        Ok(())
    }
}
