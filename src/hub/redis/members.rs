//! Members: checking a token against its member, joining (and undoing a
//! join cut short), and removing, whoever asks.
//!
//! Outside its room's keys, a member is one entry of the idle index
//! (`idle`: "room member", scored by when it was last read), and that
//! index is the member count. A join adds the entry before the room script
//! runs, a removal deletes it after; a node that dies between the two
//! leaves an entry that names no member, which the reaper deletes a member
//! timeout later (`reap`). A member's token entry (its selector to the
//! member and the digest of its secret) is among its room's keys, written
//! and deleted by the same scripts as the member.

use std::time::{Duration, Instant};

use ::redis::AsyncCommands;
use dashmap::DashMap;
use subtle::ConstantTimeEq;
use tracing::info;
use uuid::Uuid;

use super::script::{RoomFn, actor_arg, into_string, into_u64, parse_views, refusal};
use super::{RedisHub, unavailable};
use crate::domain::Refusal;
use crate::domain::event::EventBody;
use crate::domain::room::{self, Actor};
use crate::domain::token::{NewToken, Secret, Token};
use crate::hub::drawn::Drawn;
use crate::hub::{JoinSpec, Joined, MemberChange, MemberRef};
use crate::model::{MemberJoinedData, MemberUpdatedData, MemberView, RoomId, Timestamp};

/// How long a token entry looked up in Redis is used again without
/// looking, by the operations that check their caller again in the room's
/// function (`Backend::authenticate_recent`): a member signalling five
/// times a second then costs Redis one lookup in twenty-five.
const TOKEN_CACHE_FOR: Duration = Duration::from_secs(5);

/// How many times a change to a member's view reads it again when the
/// view changed between its read and its change.
const UPDATE_TRIES: usize = 3;

/// Token entries a node keeps; past it, it starts afresh.
const TOKEN_CACHE_MAX: usize = 65_536;

/// Token entries this node looked up lately, by the token's selector.
#[derive(Default)]
pub(super) struct TokenCache {
    entries: DashMap<u64, Cached, Drawn>,
}

/// A token a request proved against its digest in Redis: the secret
/// itself, kept as the memory backend keeps it, so that a request that
/// presents it again is checked with one comparison in constant time and
/// no SHA-256, which was most of what checking a signal's token cost
/// (bench/HISTORY.md, round 17).
struct Cached {
    room: RoomId,
    /// The token's room part as written (`Token::room_fingerprint`): a hit
    /// decodes nothing.
    room_part: u64,
    member: Uuid,
    secret: Secret,
    looked_up: Instant,
}

impl RedisHub {
    /// The member `token` opens, if it is still there: its room's token
    /// entry, found by the token's selector, holds the member and the
    /// digest of its secret. `cached`: an entry looked up in the last
    /// `TOKEN_CACHE_FOR` will do.
    pub(super) async fn member_of_token(
        &self,
        token: &Token<'_>,
        cached: bool,
    ) -> Result<Option<MemberRef>, Refusal> {
        let selector = token.secret().selector();
        let cache = &self.inner.tokens.entries;
        if cached
            && let Some(entry) = cache.get(&selector)
            && entry.room_part == token.room_fingerprint()
            && entry.looked_up.elapsed() < TOKEN_CACHE_FOR
        {
            return Ok(entry.secret.matches(token.secret()).then(|| MemberRef {
                room: entry.room.clone(),
                member: entry.member,
            }));
        }
        let Some(room) = token.room() else {
            return Ok(None);
        };
        // GET, which no script uses, so that `INFO commandstats` tells the
        // token lookups apart (a test counts them).
        let kept: Option<String> = self
            .connection()
            .get(self.token_key(&room, token))
            .await
            .map_err(unavailable)?;
        let Some((member, digest)) = kept.as_deref().and_then(|kept| kept.split_once(' ')) else {
            cache.remove(&selector);
            return Ok(None);
        };
        let (Ok(member), Ok(digest)) = (
            member.parse::<Uuid>(),
            <[u8; 64]>::try_from(digest.as_bytes()),
        ) else {
            return Ok(None);
        };
        if !bool::from(digest.ct_eq(&hex(&token.digest()))) {
            return Ok(None);
        }
        if cache.len() >= TOKEN_CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            selector,
            Cached {
                room: room.clone(),
                room_part: token.room_fingerprint(),
                member,
                secret: token.secret().clone(),
                looked_up: Instant::now(),
            },
        );
        Ok(Some(MemberRef { room, member }))
    }

    /// Counts the member in the idle index and indexes its room, runs the
    /// join script, and indexes a room it created; or undoes the first
    /// step.
    pub(super) async fn add_member(
        &self,
        room_id: RoomId,
        spec: JoinSpec,
    ) -> Result<Joined, Refusal> {
        let settings = &self.inner.settings;

        // `join.lua` asks for it only if the join creates the room.
        let capacity = room::new_room_capacity(spec.capacity, settings.capacity_bounds());
        let (spec_checked, spec_hash) = (spec.password_checked.clone(), spec.password_hash.clone());
        let may_own = spec.may_own;
        let view = spec.into_view();
        // Before anything is written: there is nothing to undo if it fails.
        let view_json = serde_json::to_string(&view).map_err(|_| Refusal::Internal)?;
        let new = NewToken::generate(&room_id);
        let token = new.token();
        let idle_entry = Self::idle_entry(&room_id, view.id);
        let idle_key = self.key("idle");
        let epoch = Uuid::new_v4().simple().to_string();

        // The idle entry and the room index first: should this node die
        // before the room script runs, they name no member and no room, and
        // the reaper deletes them; should it die after, the member is still
        // reaped, and the room still listed.
        let (count, _): (u64, bool) = ::redis::pipe()
            .zadd(&idle_key, &idle_entry, unix_ms())
            .ignore()
            .zcard(&idle_key)
            .hset_nx(self.key("rooms"), room_id.as_str(), &epoch)
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        let undo = |forget_room: bool| {
            let (idle_key, idle_entry, room_id, epoch) = (&idle_key, &idle_entry, &room_id, &epoch);
            async move {
                let _: Result<(), _> = self.connection().zrem(idle_key, idle_entry).await;
                if forget_room {
                    let _ = self.forget_room(room_id, epoch).await;
                }
            }
        };
        if count > settings.max_members as u64 {
            // The room was indexed only if it had no entry: it may be this
            // join's alone.
            undo(true).await;
            return Err(Refusal::TooManyMembers);
        }

        let joined = EventBody::new("member-joined", &MemberJoinedData { member: &view });
        let capacity_arg = capacity
            .as_ref()
            .map_or_else(|_| "bad".to_owned(), u32::to_string);
        let created_at = Timestamp::now().to_string();
        let member_id = view.id.to_string();
        let selector = format!("{:016x}", token.secret().selector());
        let digest = hex(&token.digest());
        let reply = self
            .run(
                RoomFn::Join,
                &room_id,
                &[
                    &member_id,
                    &view_json,
                    &joined.json(),
                    &capacity_arg,
                    &created_at,
                    &epoch,
                    &selector,
                    std::str::from_utf8(&digest).unwrap_or_default(),
                    spec_checked.as_deref().unwrap_or_default(),
                    spec_hash.as_deref().unwrap_or_default(),
                    if may_own { "1" } else { "0" },
                ],
            )
            .await;
        let reply = match reply {
            Ok(reply) if reply.status == "ok" => reply,
            Ok(reply) => {
                // Only a join that would have created the room indexed it
                // (`forget_room` leaves another join's entry alone).
                undo(matches!(
                    reply.status.as_str(),
                    "invalid_capacity" | "password_changed"
                ))
                .await;
                return Err(match reply.status.as_str() {
                    "invalid_capacity" => capacity.err().unwrap_or(Refusal::Internal),
                    // Two tokens of one room drew the same 64 bits.
                    "token_taken" => Refusal::Internal,
                    "room_full" => Refusal::RoomFull {
                        capacity: reply.rest.first().and_then(into_u64).unwrap_or(0) as u32,
                    },
                    other => refusal(other),
                });
            }
            // Whether the script ran is unknown: the entry stays, and names
            // a member to reap or nothing, for the reaper to delete.
            Err(error) => return Err(error),
        };
        let mut rest = reply.rest.into_iter();
        let capacity = rest.next().as_ref().and_then(into_u64).unwrap_or(0) as u32;
        let creating = rest.next().as_ref().and_then(into_u64) == Some(1);
        let epoch = rest.next().and_then(into_string).unwrap_or_default();
        let members = rest.next().map(parse_views).unwrap_or_default();
        let owns = rest.next().as_ref().and_then(into_u64) == Some(1);
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
            token: new,
            owner: owns,
            capacity,
            members,
        })
    }

    /// Reads the member's view, makes the change, and has `update.lua`
    /// write it if the view is still the one read.
    pub(super) async fn update(
        &self,
        room_id: &RoomId,
        target: Uuid,
        actor: Actor,
        change: &MemberChange,
    ) -> Result<MemberView, Refusal> {
        let actor = actor_arg(actor);
        let key = self.member_key(room_id, "m", target);
        for _ in 0..UPDATE_TRIES {
            let stored: Option<String> = self
                .connection()
                .hget(&key, "view")
                .await
                .map_err(unavailable)?;
            let Some(stored) = stored else {
                // No such member: the function says why in the rule's words.
                let reply = self
                    .run(
                        RoomFn::Update,
                        room_id,
                        &[&target.to_string(), &actor, "", "", ""],
                    )
                    .await?;
                if reply.status == "changed" {
                    continue;
                }
                return Err(refusal(&reply.status));
            };
            let mut view: MemberView =
                serde_json::from_str(&stored).map_err(|_| Refusal::Internal)?;
            change.apply(&mut view);
            let view_json = serde_json::to_string(&view).map_err(|_| Refusal::Internal)?;
            let data = serde_json::to_string(&MemberUpdatedData { member: &view })
                .map_err(|_| Refusal::Internal)?;
            let reply = self
                .run(
                    RoomFn::Update,
                    room_id,
                    &[&target.to_string(), &actor, &stored, &view_json, &data],
                )
                .await?;
            match reply.status.as_str() {
                "ok" => return Ok(view),
                "changed" => continue,
                other => return Err(refusal(other)),
            }
        }
        // Changed at every read: another change of it is under way.
        Err(Refusal::Unavailable)
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
                RoomFn::Remove,
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
        let epoch = rest.next().and_then(into_string).unwrap_or_default();
        let reason = rest.next().and_then(into_string).unwrap_or_default();
        let kept_due = rest.next().as_ref().and_then(into_u64);
        // Should this node die before either, the reaper deletes the entry
        // and the room's index entry.
        let _: () = self
            .connection()
            .zrem(self.key("idle"), Self::idle_entry(room_id, target))
            .await
            .map_err(unavailable)?;
        if !epoch.is_empty() {
            self.forget_room(room_id, &epoch).await?;
        }
        if let Some(due) = kept_due {
            self.kept_emptied(room_id, due).await?;
        }
        info!(room = %room_id, member = %target, reason, "member left");
        Ok(reply.status)
    }
}

/// `bytes` in lower-case hex, as the scripts take and keep a digest.
fn hex(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0; 64];
    for (at, byte) in bytes.iter().enumerate() {
        text[2 * at] = DIGITS[usize::from(byte >> 4)];
        text[2 * at + 1] = DIGITS[usize::from(byte & 0xf)];
    }
    text
}

pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_written_as_lower_case_hex() {
        let mut bytes = [0; 32];
        bytes[0] = 0xab;
        bytes[31] = 0x0f;
        let text = hex(&bytes);
        let expected: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(std::str::from_utf8(&text), Ok(expected.as_str()));
    }
}
