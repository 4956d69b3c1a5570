//! Members: the token index, joining (and undoing a join cut short), and
//! removing, whoever asks.

use ::redis::AsyncCommands;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::info;
use uuid::Uuid;

use super::script::{into_string, into_u64, parse_views, refusal};
use super::{RedisHub, unavailable};
use crate::domain::Refusal;
use crate::domain::event::EventBody;
use crate::domain::room::{self, Actor};
use crate::domain::token::Token;
use crate::hub::{JoinSpec, Joined, MemberRef};
use crate::model::{MemberJoinedData, RoomId, Timestamp};

impl RedisHub {
    pub(super) async fn member_of_token(
        &self,
        token: &Token,
    ) -> Result<Option<MemberRef>, Refusal> {
        // HGETALL, which no script uses, so that `INFO commandstats` tells
        // the token lookups apart (a test counts them).
        let mut fields: std::collections::HashMap<String, Vec<u8>> = self
            .connection()
            .hgetall(self.token_key(token.selector()))
            .await
            .map_err(unavailable)?;
        let (Some(room), Some(member), Some(digest)) = (
            fields
                .remove("room")
                .and_then(|room| String::from_utf8(room).ok()),
            fields
                .remove("member")
                .and_then(|member| String::from_utf8(member).ok()),
            fields.remove("digest"),
        ) else {
            return Ok(None);
        };
        let presented = token_digest(token);
        if !bool::from(presented.as_slice().ct_eq(&digest)) {
            return Ok(None);
        }
        let (Ok(room), Ok(member)) = (RoomId::parse(&room), member.parse()) else {
            return Ok(None);
        };
        Ok(Some(MemberRef { room, member }))
    }

    /// Counts the member, indexes its token and idle clock, runs the join
    /// script, and indexes a room it creates; or undoes the first step.
    pub(super) async fn add_member(
        &self,
        room_id: RoomId,
        spec: JoinSpec,
    ) -> Result<Joined, Refusal> {
        let settings = &self.inner.settings;

        // `join.lua` asks for it only if the join creates the room.
        let capacity = room::new_room_capacity(spec.capacity, settings.capacity_bounds());
        let view = spec.into_view();
        // Before anything is written: there is nothing to undo if it fails.
        let view_json = serde_json::to_string(&view).map_err(|_| Refusal::Internal)?;
        let token = Token::generate();
        let token_key = self.token_key(token.selector());
        let idle_entry = Self::idle_entry(&room_id, view.id);
        let count_key = self.key("members");
        let idle_key = self.key("idle");

        // The token and the idle index first: should this node die before
        // the room script runs, they point at no member and are cleaned up;
        // should it die after, the member is still reaped.
        let (count,): (u64,) = ::redis::pipe()
            .incr(&count_key, 1)
            .hset_multiple(
                &token_key,
                &[
                    ("room", room_id.as_str().as_bytes()),
                    ("member", view.id.to_string().as_bytes()),
                    ("digest", token_digest(&token).as_slice()),
                ],
            )
            .ignore()
            .zadd(&idle_key, &idle_entry, unix_ms())
            .ignore()
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        let undo = || async {
            let _: Result<(), _> = ::redis::pipe()
                .decr(&count_key, 1)
                .del(&token_key)
                .zrem(&idle_key, &idle_entry)
                .query_async(&mut self.connection())
                .await;
        };
        if count > settings.max_members as u64 {
            undo().await;
            return Err(Refusal::TooManyMembers);
        }

        let joined = EventBody::new("member-joined", &MemberJoinedData { member: &view });
        let capacity_arg = capacity
            .as_ref()
            .map_or_else(|_| "bad".to_owned(), u32::to_string);
        let created_at = serde_json::to_value(Timestamp::now())
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        let epoch = Uuid::new_v4().simple().to_string();
        let member_id = view.id.to_string();
        let selector = format!("{:016x}", token.selector());
        let reply = self
            .run(
                &self.inner.scripts.join,
                &room_id,
                &[
                    &member_id,
                    &view_json,
                    &joined.json(),
                    &capacity_arg,
                    &created_at,
                    &epoch,
                    &selector,
                ],
            )
            .await;
        let reply = match reply {
            Ok(reply) if reply.status == "ok" => reply,
            Ok(reply) => {
                undo().await;
                return Err(match reply.status.as_str() {
                    "invalid_capacity" => capacity.err().unwrap_or(Refusal::Internal),
                    "room_full" => Refusal::RoomFull {
                        capacity: reply.rest.first().and_then(into_u64).unwrap_or(0) as u32,
                    },
                    other => refusal(other),
                });
            }
            Err(error) => {
                undo().await;
                return Err(error);
            }
        };
        let mut rest = reply.rest.into_iter();
        let capacity = rest.next().as_ref().and_then(into_u64).unwrap_or(0) as u32;
        let creating = rest.next().as_ref().and_then(into_u64) == Some(1);
        let epoch = rest.next().and_then(into_string).unwrap_or_default();
        let members = rest.next().map(parse_views).unwrap_or_default();
        if creating {
            let _: () = self
                .connection()
                .hset(self.key("rooms"), room_id.as_str(), &epoch)
                .await
                .map_err(unavailable)?;
        }
        info!(room = %room_id, member = %view.id, created = creating, "member joined");
        Ok(Joined {
            room_id,
            member: view,
            token,
            owner: creating,
            capacity,
            members,
        })
    }

    pub(super) async fn remove_by(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
    ) -> Result<(), Refusal> {
        let actor = match actor {
            Actor::Admin => "admin".to_owned(),
            Actor::Member(caller) => format!("member:{caller}"),
        };
        match self.remove(room_id, target, &actor).await?.as_str() {
            "ok" => Ok(()),
            other => Err(refusal(other)),
        }
    }

    /// Runs the remove script and, when it removed, lets go of what the
    /// member held outside its room. Returns the script's status.
    pub(super) async fn remove(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: &str,
    ) -> Result<String, Refusal> {
        let (room_id, actor) = (room_id.clone(), actor.to_owned());
        self.detached(|hub| async move { hub.remove_now(&room_id, target, &actor).await })
            .await
    }

    /// `remove`, on the caller's task.
    pub(super) async fn remove_now(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: &str,
    ) -> Result<String, Refusal> {
        let timeout_ms = self.inner.settings.member_timeout.as_millis().to_string();
        let reply = self
            .run(
                &self.inner.scripts.remove,
                room_id,
                &[&target.to_string(), actor, &timeout_ms],
            )
            .await?;
        if reply.status == "busy" {
            // Read since it was indexed: index it at its last read.
            if let Some(seen) = reply.rest.first().and_then(into_u64) {
                let _: Result<(), _> = self
                    .connection()
                    .zadd(self.key("idle"), Self::idle_entry(room_id, target), seen)
                    .await;
            }
            return Ok(reply.status);
        }
        if reply.status == "gone" {
            let _: Result<(), _> = self
                .connection()
                .zrem(self.key("idle"), Self::idle_entry(room_id, target))
                .await;
            return Ok(reply.status);
        }
        if reply.status != "ok" {
            return Ok(reply.status);
        }
        let mut rest = reply.rest.into_iter();
        let selector = rest.next().and_then(into_string).unwrap_or_default();
        let epoch = rest.next().and_then(into_string).unwrap_or_default();
        let reason = rest.next().and_then(into_string).unwrap_or_default();
        let mut pipe = ::redis::pipe();
        pipe.del(self.key(&format!("token:{selector}")))
            .ignore()
            .zrem(self.key("idle"), Self::idle_entry(room_id, target))
            .ignore()
            .decr(self.key("members"), 1)
            .ignore();
        let _: () = pipe
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        if !epoch.is_empty() {
            // Alone, not in the pipeline: `invoke_async` loads the script
            // when Redis does not know it yet (a pipeline would not).
            let _: i64 = self
                .inner
                .scripts
                .forget_room
                .key(self.key("rooms"))
                .arg(room_id.as_str())
                .arg(&epoch)
                .invoke_async(&mut self.connection())
                .await
                .map_err(unavailable)?;
        }
        info!(room = %room_id, member = %target, reason, "member left");
        Ok(reply.status)
    }
}

/// What Redis keeps of a token: its SHA-256, so that Redis's data, dumps
/// and `MONITOR` never hold one that opens anything.
fn token_digest(token: &Token) -> [u8; 32] {
    Sha256::digest(token.reveal().as_bytes()).into()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}
