//! Rooms: signals into their members' inboxes, looking at and locking a
//! room, and the counts and list of every room.

use ::redis::{AsyncCommands, Value};
use std::sync::Arc;
use uuid::Uuid;

use super::script::{into_string, into_u64, parse_views, refusal};
use super::{RedisHub, unavailable};
use crate::domain::Refusal;
use crate::domain::event::EventBody;
use crate::domain::room::Actor;
use crate::hub::MemberRef;
use crate::model::{RoomId, RoomSummary, RoomView, Timestamp};

impl RedisHub {
    /// Runs `signal.lua`.
    pub(super) async fn signal(
        &self,
        from: &MemberRef,
        to: Option<Uuid>,
        body: Arc<EventBody>,
    ) -> Result<usize, Refusal> {
        let to = to.map(|to| to.to_string()).unwrap_or_default();
        let reply = self
            .run(
                &self.inner.scripts.signal,
                &from.room,
                &[&from.member.to_string(), &to, &body.json()],
            )
            .await?;
        match reply.status.as_str() {
            "ok" => Ok(reply.rest.first().and_then(into_u64).unwrap_or(0) as usize),
            other => Err(refusal(other)),
        }
    }

    /// Runs `room.lua`: looks at (`view`), `lock`s or `unlock`s the room.
    pub(super) async fn room_script(
        &self,
        room_id: &RoomId,
        actor: Actor,
        op: &str,
    ) -> Result<RoomView, Refusal> {
        let actor = match actor {
            Actor::Admin => "admin".to_owned(),
            Actor::Member(caller) => caller.to_string(),
        };
        let reply = self
            .run(&self.inner.scripts.room, room_id, &[&actor, op])
            .await?;
        if reply.status != "ok" {
            return Err(refusal(&reply.status));
        }
        let mut rest = reply.rest.into_iter();
        let capacity = rest.next().as_ref().and_then(into_u64).unwrap_or(0) as u32;
        let locked = rest.next().and_then(into_string).as_deref() == Some("1");
        let owner = rest
            .next()
            .and_then(into_string)
            .and_then(|owner| owner.parse().ok())
            .unwrap_or_default();
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

    pub(super) async fn count_all(&self) -> Result<(usize, usize), Refusal> {
        let (rooms, members): (usize, Option<i64>) = ::redis::pipe()
            .hlen(self.key("rooms"))
            .get(self.key("members"))
            .query_async(&mut self.connection())
            .await
            .map_err(unavailable)?;
        Ok((rooms, members.map_or(0, |count| count.max(0) as usize)))
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
        let mut pipe = ::redis::pipe();
        for id in &ids {
            let room = format!("{}:{{{id}}}:", self.inner.prefix);
            pipe.hmget(format!("{room}room"), &["capacity", "locked", "created_at"])
                .zcard(format!("{room}members"));
        }
        let answers: Vec<(RoomFields, usize)> = pipe
            .query_async::<Vec<Value>>(&mut connection)
            .await
            .map_err(unavailable)?
            .chunks(2)
            .map(|pair| {
                (
                    ::redis::from_redis_value_ref(&pair[0]).unwrap_or((None, None, None)),
                    ::redis::from_redis_value_ref(&pair[1]).unwrap_or(0),
                )
            })
            .collect();
        let mut rooms: Vec<RoomSummary> = ids
            .into_iter()
            .zip(answers)
            .filter(|(_, (_, members))| *members > 0)
            .map(
                |(id, ((capacity, locked, created_at), member_count))| RoomSummary {
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

/// A room hash's capacity, lock and creation time, as `GET /rooms` lists them.
type RoomFields = (Option<u32>, Option<String>, Option<String>);
