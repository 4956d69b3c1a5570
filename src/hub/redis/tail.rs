//! A member's signal to one member in one round trip of plain commands,
//! no function, once this node knows the tail of the recipient's inbox;
//! on one Redis they go on the node's appends' own connection (`lane`).
//!
//! A function's call costs Redis about five times what the same commands
//! sent plain cost, and a second round trip costs each side as much as the
//! work it carries (bench/HISTORY.md, round 12). So the checks that
//! `signal.lua` makes move here, onto what its answer told this node:
//!
//! - the inbox's tail: its last id and `cum` (the bytes it ever took), and
//!   how many more events and bytes its bounds take (`can_accept`);
//! - the senders known to be members when an entry at or before that tail
//!   went in.
//!
//! The signal goes in with `XADD … NOMKSTREAM 0-<last + 1>`, which Redis
//! takes only if no entry came after that tail: an explicit id must be past
//! the stream's last. Whatever would change the checks' answer puts an
//! entry in this inbox first: a sender's leave or removal its
//! `member-left`, the recipient's its own or the inbox's deletion, any
//! other node's signal its entry. If one did, the append is refused, the
//! tail is forgotten, and `signal.lua` takes the signal and tells the new
//! tail. The bounds cannot be overshot: the tail's allowance only falls as
//! this node appends, while deliveries elsewhere only make room.
//!
//! The appended entry runs ahead of the recipient's counters in Redis; the
//! functions count it in when they next load them (`caught_up` in
//! `prelude.lua`). Delivered events past the window are trimmed by the next
//! function that pushes into the inbox, so an inbox holds at most its
//! allowance more of them in between.
//!
//! One signal per inbox is under way from a node at a time, once the node
//! knows the inbox's tail: the next waits for its turn (`Tail::turn`),
//! whether it is then appended plainly or goes by the function. Under
//! load, when signals to one inbox overlap, a function for each would cost
//! Redis five times what the appends cost, and the node fell off a cliff at
//! the rate where they began to overlap (bench/HISTORY.md, round 15). And
//! a function under way beside a plain append puts its entry first, so
//! the append is refused and the next signals go by the function too
//! (round 16). A failover may bring a
//! primary that lost the tail's last entries, so a new primary, or a
//! subscription lost and made again, forgets every tail (`forget_all`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::io::Write as _;

use ::redis::aio::ConnectionLike as _;
use ::redis::{RedisWrite, ToRedisArgs, Value};
use dashmap::DashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tracing::{debug, warn};
use uuid::Uuid;

use super::lane::{NoAnswer, Reply, Resp};
use super::script::{into_array, into_string, into_u64};
use super::{RedisHub, member_key_parts};
use crate::domain::event::EventBody;
use crate::hub::drawn::{Drawn, MemberKey};
use crate::model::RoomId;

/// Tails a node keeps; past it, it starts afresh.
const TAILS_MAX: usize = 65_536;

/// Senders a tail vouches for; the oldest goes first.
const SENDERS_MAX: usize = 16;

/// Signals to an inbox that go by the function after an append to it was
/// refused: when a member's signals come through several nodes in turn,
/// each node's tail is out of date at every signal, and a refused append
/// is a round trip for nothing.
const SKIP_AFTER_REFUSAL: u32 = 8;

/// What this node knows of an inbox's end.
#[derive(Debug)]
struct Tail {
    last: u64,
    cum: u64,
    /// Events and bytes the inbox's bounds take before a function must
    /// look again.
    events_left: u64,
    bytes_left: u64,
    /// Members when an entry at or before `last` went in, with no entry
    /// since that this node did not append.
    senders: Vec<Uuid>,
    /// The id of this node's append under way, if one is.
    claimed: Option<u64>,
    /// Held by a signal to this inbox until Redis answered its append or
    /// its function: the signals that come meanwhile queue here, in the
    /// order they came. Each waiter is a signal request's own task, so the
    /// queue is no longer than the requests under way.
    turn: Arc<Mutex<()>>,
    /// Signals left to send by the function since an append was refused.
    skip: u32,
    epoch: u64,
}

/// The tail `signal.lua` answers after putting a member's signal in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answered {
    pub(super) last: u64,
    pub(super) cum: u64,
    pub(super) events_left: u64,
    pub(super) bytes_left: u64,
}

impl Answered {
    /// From the function's answer past its count of recipients: last, cum,
    /// events left, bytes left (0 when the bounds are already passed).
    pub(super) fn parse(rest: &[Value]) -> Option<Self> {
        let [last, cum, events_left, bytes_left] = rest else {
            return None;
        };
        Some(Self {
            last: into_u64(last)?,
            cum: into_u64(cum)?,
            events_left: into_u64(events_left).unwrap_or(0),
            bytes_left: into_u64(bytes_left).unwrap_or(0),
        })
    }
}

/// An append this node may make: the entry's id and `cum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Claim {
    id: u64,
    cum: u64,
    size: u64,
}

/// The tails this node knows, by room and recipient.
#[derive(Default)]
pub(super) struct Tails {
    entries: DashMap<MemberKey, Tail, Drawn>,
    /// Moves on whenever every tail is forgotten: an answer from before
    /// then is not learned.
    epoch: AtomicU64,
}

impl Tails {
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Forgets every tail: Redis may have lost entries they count.
    pub(super) fn forget_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    /// The turn a signal to `to`'s inbox waits for, when this node knows
    /// the inbox's tail, and holds until Redis answered it, plain append
    /// or function.
    pub(super) fn turn(&self, room: &RoomId, to: Uuid) -> Option<Arc<Mutex<()>>> {
        let tail = self.entries.get(&MemberKey::new(room, to))?;
        (tail.epoch == self.epoch()).then(|| tail.turn.clone())
    }

    /// The next append to `to`'s inbox, a signal from `from` of `size`
    /// bytes, when the tail vouches for the sender, the bounds take it and
    /// no other append from here is under way.
    fn claim(&self, room: &RoomId, from: Uuid, to: Uuid, size: u64) -> Option<Claim> {
        let epoch = self.epoch();
        let mut tail = self.entries.get_mut(&MemberKey::new(room, to))?;
        if tail.skip > 0 {
            tail.skip -= 1;
            return None;
        }
        if tail.epoch != epoch
            || tail.claimed.is_some()
            || tail.events_left == 0
            || tail.bytes_left < size
            || !tail.senders.contains(&from)
        {
            return None;
        }
        let claim = Claim {
            id: tail.last + 1,
            cum: tail.cum + size,
            size,
        };
        tail.claimed = Some(claim.id);
        Some(claim)
    }

    /// The append `claim` went in: the tail moves past it.
    fn appended(&self, room: &RoomId, to: Uuid, claim: Claim) {
        if let Some(mut tail) = self.entries.get_mut(&MemberKey::new(room, to))
            && tail.claimed == Some(claim.id)
        {
            tail.last = claim.id;
            tail.cum = claim.cum;
            tail.events_left -= 1;
            tail.bytes_left -= claim.size;
            tail.claimed = None;
        }
    }

    /// The append `claim` was refused: something else entered the inbox,
    /// or it is gone. The tail vouches for nobody until a function answers
    /// again, and the next few signals go by the function.
    fn refused(&self, room: &RoomId, to: Uuid, claim: Claim) {
        if let Some(mut tail) = self.entries.get_mut(&MemberKey::new(room, to))
            && tail.claimed == Some(claim.id)
        {
            tail.senders.clear();
            tail.claimed = None;
            tail.skip = SKIP_AFTER_REFUSAL;
        }
    }

    /// `signal.lua` put `from`'s signal in `to`'s inbox and answered its
    /// tail; `epoch` is the one before the call.
    pub(super) fn learn(
        &self,
        room: &RoomId,
        from: Uuid,
        to: Uuid,
        answered: Answered,
        epoch: u64,
    ) {
        if epoch != self.epoch() {
            return;
        }
        let key = MemberKey::new(room, to);
        if self.entries.len() >= TAILS_MAX && !self.entries.contains_key(&key) {
            self.entries.clear();
        }
        let mut tail = self.entries.entry(key).or_insert_with(|| Tail {
            last: 0,
            cum: 0,
            events_left: 0,
            bytes_left: 0,
            senders: Vec::new(),
            claimed: None,
            turn: Arc::default(),
            skip: 0,
            epoch,
        });
        if tail.epoch == epoch && tail.last >= answered.last {
            // An older answer than what is known.
            return;
        }
        // The senders the tail vouched for still are members only if this
        // signal's entry is the first since it.
        let follows_on = tail.epoch == epoch && tail.last + 1 == answered.last;
        let mut senders = if follows_on {
            std::mem::take(&mut tail.senders)
        } else {
            Vec::new()
        };
        if !senders.contains(&from) {
            if senders.len() >= SENDERS_MAX {
                senders.remove(0);
            }
            senders.push(from);
        }
        *tail = Tail {
            last: answered.last,
            cum: answered.cum,
            events_left: answered.events_left,
            bytes_left: answered.bytes_left,
            senders,
            claimed: None,
            turn: tail.turn.clone(),
            skip: tail.skip,
            epoch,
        };
    }
}

impl RedisHub {
    /// Appends `from`'s signal `body` to `to`'s inbox with plain commands
    /// and wakes its readers, if this node knows the inbox's tail and
    /// nothing came after it; the caller holds the tail's `turn`, which is
    /// let go once the readers here are woken. `false`: it did not;
    /// `signal.lua` takes it, and the turn is still held.
    pub(super) async fn append_signal(
        &self,
        room: &RoomId,
        from: Uuid,
        to: Uuid,
        body: &Arc<EventBody>,
        turn: &mut Option<OwnedMutexGuard<()>>,
    ) -> bool {
        let shared = &*self.inner;
        let Some(claim) = shared.tails.claim(room, from, to, body.size() as u64) else {
            return false;
        };
        let append = Append {
            prefix: &shared.prefix,
            room,
            to,
            claim,
            body,
        };
        let lane = self.lane();
        let sent = match &lane {
            Some(lane) => match lane.call(2, |resp| append.write(resp)).await {
                Ok(replies) => Ok(Appended::from_lane(replies, &shared.node)),
                Err(NoAnswer::Unsent) => self.append_by_crate(&append).await,
                Err(NoAnswer::Lost) => Err("the connection broke".into()),
            },
            None => self.append_by_crate(&append).await,
        };
        let others = match sent {
            Ok(Appended::In(others)) => others,
            Ok(Appended::Refused(refusal)) => {
                // Another entry came first (Redis refuses the id), or no
                // inbox (`nil`): the member is gone.
                debug!(?refusal, "a signal's append was refused");
                shared.tails.refused(room, to, claim);
                return false;
            }
            Err(error) => {
                // Redis is unreachable, which the function will say.
                debug!(%error, "a signal's append was not made");
                shared.tails.refused(room, to, claim);
                return false;
            }
        };
        shared.tails.appended(room, to, claim);
        self.wake_local(room, to, Some((claim.id, body)));
        // The next signal may go: its local wake-up comes after this one.
        turn.take();
        if others.is_empty() {
            return true;
        }
        let message = wake_message(room, to, claim.id, body);
        if let Some(lane) = &lane {
            let wake_prefix = shared.wake_prefix.as_bytes();
            let published = lane
                .call(others.len(), |resp| {
                    for node in &others {
                        resp.start(3);
                        resp.arg(b"PUBLISH");
                        resp.parts(&[wake_prefix, node.as_bytes()]);
                        resp.arg(&message);
                    }
                })
                .await;
            match published {
                Ok(replies) => {
                    if let Some(error) = replies
                        .iter()
                        .find(|reply| matches!(reply, Reply::Error(_)))
                    {
                        warn!(?error, "a signal's wake-up could not be sent");
                    }
                    return true;
                }
                Err(NoAnswer::Lost) => {
                    warn!("a signal's wake-up could not be sent: the connection broke");
                    return true;
                }
                Err(NoAnswer::Unsent) => {}
            }
        }
        let mut wake = ::redis::pipe();
        for node in &others {
            self.publish(&mut wake, room, node, &message);
        }
        if let Err(error) = wake.query_async::<()>(&mut self.connection()).await {
            // The signal is in: a reader there finds it at its next
            // wake-up, or when its node subscribes again.
            warn!(%error, "a signal's wake-up could not be sent");
        }
        true
    }

    /// Sends `append` through the crate's connection: on a Cluster, or
    /// while the lane is not connected.
    async fn append_by_crate(&self, append: &Append<'_>) -> Result<Appended, String> {
        // Sized for its arguments at once: growing them by pushes cost
        // more than writing them (bench/HISTORY.md, round 17).
        let inbox = self.member_key(append.room, "i", append.to);
        let readers = self.member_key(append.room, "n", append.to);
        let size = append.body.size();
        let mut xadd = ::redis::Cmd::with_capacity(10, inbox.len() + size + 64);
        xadd.arg("XADD")
            .arg(inbox)
            .arg("NOMKSTREAM")
            .arg(EntryId(append.claim.id))
            .arg("k")
            .arg("signal")
            .arg("d")
            .arg(JsonArg(append.body))
            .arg("c")
            .arg(append.claim.cum);
        let mut pipeline = ::redis::Pipeline::with_capacity(2);
        pipeline.add_command(xadd);
        let mut hkeys = ::redis::Cmd::with_capacity(2, "HKEYS".len() + readers.len());
        hkeys.arg("HKEYS").arg(readers);
        pipeline.add_command(hkeys);
        // The replies as they came, not through `query_async`, which made
        // them into a new array and looked for errors in it again.
        let replies = self
            .connection()
            .req_packed_commands(&pipeline, 0, 2)
            .await
            .map_err(|error| error.to_string())?;
        let mut replies = replies.into_iter();
        match replies.next() {
            Some(Value::BulkString(_) | Value::SimpleString(_)) => {}
            refusal => return Ok(Appended::Refused(format!("{refusal:?}"))),
        }
        let node = self.inner.node.as_bytes();
        Ok(Appended::In(
            replies
                .next()
                .map(into_array)
                .unwrap_or_default()
                .into_iter()
                .filter(|other| !matches!(other, Value::BulkString(other) if other == node))
                .filter_map(into_string)
                .collect(),
        ))
    }

    /// Adds to `pipe` the wake-up of `node` with `message`, on its channel
    /// as `prelude.lua`'s `publish` sends it.
    fn publish(&self, pipe: &mut ::redis::Pipeline, room: &RoomId, node: &str, message: &[u8]) {
        let wake_prefix = &self.inner.wake_prefix;
        if wake_prefix.is_empty() {
            pipe.cmd("SPUBLISH")
                .arg(self.shard_channel_of(room, node))
                .arg(message)
                .ignore();
        } else {
            pipe.cmd("PUBLISH")
                .arg(format!("{wake_prefix}{node}"))
                .arg(message)
                .ignore();
        }
    }
}

/// A signal's append to an inbox: the entry, then the lookup of the nodes
/// that hold the inbox's readers, which come after the entry: a reader
/// that opens later reads the inbox, this entry in it.
struct Append<'a> {
    prefix: &'a str,
    room: &'a RoomId,
    to: Uuid,
    claim: Claim,
    body: &'a EventBody,
}

impl Append<'_> {
    /// Its two commands in RESP, for the lane: the arguments that never
    /// change written at once, the keys from their parts (`member_key`'s).
    fn write(&self, resp: &mut Resp<'_>) {
        let mut uuid = Uuid::encode_buffer();
        let member = self.to.hyphenated().encode_lower(&mut uuid);
        let key = |kind| member_key_parts(self.prefix, self.room, kind, member).map(str::as_bytes);
        let mut digits = itoa::Buffer::new();
        resp.raw(b"*10\r\n$4\r\nXADD\r\n");
        resp.parts(&key("i"));
        resp.raw(b"$10\r\nNOMKSTREAM\r\n");
        resp.parts(&[b"0-", digits.format(self.claim.id).as_bytes()]);
        resp.raw(b"$1\r\nk\r\n$6\r\nsignal\r\n$1\r\nd\r\n");
        let [first, second, third] = self.body.json_parts();
        resp.parts(&[first.as_bytes(), second.as_bytes(), third.as_bytes()]);
        resp.raw(b"$1\r\nc\r\n");
        resp.arg(digits.format(self.claim.cum).as_bytes());
        resp.raw(b"*2\r\n$5\r\nHKEYS\r\n");
        resp.parts(&key("n"));
    }
}

/// What Redis answered an append.
#[derive(Debug, PartialEq, Eq)]
enum Appended {
    /// Not taken: the reply, for the log.
    Refused(String),
    /// Taken; the other nodes that hold a reader of the inbox.
    In(Vec<String>),
}

impl Appended {
    /// From the lane's replies to `Append::write`'s commands; `node` is
    /// this node's id.
    fn from_lane(replies: Vec<Reply>, node: &str) -> Self {
        let mut replies = replies.into_iter();
        match replies.next() {
            Some(Reply::Bulk(_) | Reply::Status) => {}
            refusal => return Self::Refused(format!("{refusal:?}")),
        }
        let nodes = match replies.next() {
            Some(Reply::Array(nodes)) => nodes,
            _ => Vec::new(),
        };
        Self::In(
            nodes
                .into_iter()
                .filter_map(|other| match other {
                    Reply::Bulk(other) if other != node.as_bytes() => String::from_utf8(other).ok(),
                    _ => None,
                })
                .collect(),
        )
    }
}

/// An entry's id, `0-<id>`, as an argument.
struct EntryId(u64);

impl ToRedisArgs for EntryId {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(self.0).as_bytes();
        let mut id = [0; 2 + 20];
        id[..2].copy_from_slice(b"0-");
        id[2..2 + digits.len()].copy_from_slice(digits);
        out.write_arg(&id[..2 + digits.len()]);
    }
}

/// An event's data as one argument, written from the parts it is kept in.
struct JsonArg<'a>(&'a EventBody);

impl ToRedisArgs for JsonArg<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        for part in self.0.json_parts() {
            // Into the command's own buffer, which cannot fail.
            let _ = arg.write_all(part.as_bytes());
        }
    }
}

/// The wake-up another node's readers get for an appended signal:
/// `<room> <member> <id> <data>`, as `wake_from_message` (`link.rs`)
/// reads it and `prelude.lua`'s `wake` writes it.
fn wake_message(room: &RoomId, to: Uuid, id: u64, body: &EventBody) -> Vec<u8> {
    let mut uuid = Uuid::encode_buffer();
    let mut digits = itoa::Buffer::new();
    let head = [
        room.as_str(),
        " ",
        to.hyphenated().encode_lower(&mut uuid),
        " ",
        digits.format(id),
        " ",
    ];
    let size = head.iter().map(|part| part.len()).sum::<usize>() + body.size();
    let mut message = Vec::with_capacity(size);
    for part in head.into_iter().chain(body.json_parts()) {
        message.extend_from_slice(part.as_bytes());
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId::parse("lobby").expect("a room id")
    }

    fn answered(last: u64, events_left: u64) -> Answered {
        Answered {
            last,
            cum: last * 10,
            events_left,
            bytes_left: 1000,
        }
    }

    #[test]
    fn a_tail_vouches_only_for_the_senders_a_function_checked() {
        let tails = Tails::default();
        let (alice, bob, carol) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(tails.claim(&room(), alice, bob, 10), None);
        tails.learn(&room(), alice, bob, answered(4, 8), tails.epoch());
        assert_eq!(tails.claim(&room(), carol, bob, 10), None);
        let claim = tails
            .claim(&room(), alice, bob, 10)
            .expect("alice is known");
        assert_eq!((claim.id, claim.cum), (5, 50));
    }

    #[test]
    fn a_tail_is_of_one_room() {
        let tails = Tails::default();
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let elsewhere = RoomId::parse("elsewhere").expect("a room id");
        tails.learn(&room(), alice, bob, answered(4, 8), tails.epoch());
        assert!(tails.turn(&elsewhere, bob).is_none());
        assert_eq!(tails.claim(&elsewhere, alice, bob, 1), None);
        tails.learn(&elsewhere, alice, bob, answered(2, 8), tails.epoch());
        let claim = tails.claim(&elsewhere, alice, bob, 1).expect("a claim");
        assert_eq!(claim.id, 3);
        // The first room's tail is its own.
        let claim = tails.claim(&room(), alice, bob, 1).expect("a claim");
        assert_eq!(claim.id, 5);
    }

    #[test]
    fn one_append_at_a_time_and_the_tail_moves_past_it() {
        let tails = Tails::default();
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        tails.learn(&room(), alice, bob, answered(4, 2), tails.epoch());
        let claim = tails.claim(&room(), alice, bob, 7).expect("a claim");
        assert_eq!(tails.claim(&room(), alice, bob, 7), None);
        tails.appended(&room(), bob, claim);
        let next = tails.claim(&room(), alice, bob, 7).expect("the next");
        assert_eq!((next.id, next.cum), (6, 54));
        tails.appended(&room(), bob, next);
        // The allowance of two events is spent.
        assert_eq!(tails.claim(&room(), alice, bob, 7), None);
    }

    #[test]
    fn every_signal_to_a_known_tail_takes_the_one_turn() {
        let tails = Tails::default();
        let (alice, bob, carol) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert!(tails.turn(&room(), bob).is_none(), "no tail, no turn");
        tails.learn(&room(), alice, bob, answered(4, 8), tails.epoch());
        let turn = tails.turn(&room(), bob).expect("the tail is known");
        // A function's answer keeps the queue the waiting signals are in,
        // and so does a refusal: the signals that go by the function after
        // it take their turns too.
        tails.learn(&room(), carol, bob, answered(5, 8), tails.epoch());
        let claim = tails.claim(&room(), alice, bob, 1).expect("a claim");
        tails.refused(&room(), bob, claim);
        let again = tails.turn(&room(), bob).expect("still known");
        assert!(Arc::ptr_eq(&turn, &again));
        tails.forget_all();
        assert!(tails.turn(&room(), bob).is_none(), "forgotten");
    }

    #[test]
    fn the_bytes_allowance_holds() {
        let tails = Tails::default();
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        tails.learn(&room(), alice, bob, answered(1, 100), tails.epoch());
        assert_eq!(tails.claim(&room(), alice, bob, 1001), None);
        assert!(tails.claim(&room(), alice, bob, 1000).is_some());
    }

    #[test]
    fn after_a_refused_append_a_few_signals_go_by_the_function() {
        let tails = Tails::default();
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        tails.learn(&room(), alice, bob, answered(4, 8), tails.epoch());
        let claim = tails.claim(&room(), alice, bob, 1).expect("a claim");
        tails.refused(&room(), bob, claim);
        // The tail is out of date: it vouches for nobody.
        assert_eq!(tails.claim(&room(), alice, bob, 1), None);
        let mut last = 6;
        for _ in 1..SKIP_AFTER_REFUSAL {
            tails.learn(&room(), alice, bob, answered(last, 8), tails.epoch());
            assert_eq!(tails.claim(&room(), alice, bob, 1), None);
            last += 1;
        }
        tails.learn(&room(), alice, bob, answered(last, 8), tails.epoch());
        assert!(tails.claim(&room(), alice, bob, 1).is_some());
    }

    #[test]
    fn senders_carry_over_only_when_the_answer_follows_on_from_the_tail() {
        let tails = Tails::default();
        let (alice, bob, carol) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        tails.learn(&room(), alice, bob, answered(4, 8), tails.epoch());
        // Carol's signal is the next entry: alice is still vouched for.
        tails.learn(&room(), carol, bob, answered(5, 8), tails.epoch());
        assert!(tails.claim(&room(), alice, bob, 1).is_some());
        let tails = Tails::default();
        tails.learn(&room(), alice, bob, answered(4, 8), tails.epoch());
        // Something came between (a leave, maybe alice's): only carol.
        tails.learn(&room(), carol, bob, answered(7, 8), tails.epoch());
        assert_eq!(tails.claim(&room(), alice, bob, 1), None);
        assert!(tails.claim(&room(), carol, bob, 1).is_some());
    }

    #[test]
    fn an_older_answer_or_one_from_before_forgetting_is_not_learned() {
        let tails = Tails::default();
        let (alice, bob, carol) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        tails.learn(&room(), alice, bob, answered(6, 8), tails.epoch());
        tails.learn(&room(), carol, bob, answered(5, 8), tails.epoch());
        assert_eq!(tails.claim(&room(), carol, bob, 1), None);
        let before = tails.epoch();
        tails.forget_all();
        assert_eq!(tails.claim(&room(), alice, bob, 1), None);
        tails.learn(&room(), alice, bob, answered(9, 8), before);
        assert_eq!(tails.claim(&room(), alice, bob, 1), None);
    }

    #[test]
    fn the_lane_s_append_is_the_commands_the_crate_s_connection_sends() {
        let to = Uuid::new_v4();
        let body = EventBody::from_json(
            crate::domain::event::SIGNAL,
            serde_json::value::RawValue::from_string(r#"{"sdp":"v=0"}"#.to_owned()).expect("JSON"),
        );
        let append = Append {
            prefix: "sp",
            room: &room(),
            to,
            claim: Claim {
                id: 12,
                cum: 3456,
                size: body.size() as u64,
            },
            body: &body,
        };
        let mut lane = Vec::new();
        append.write(&mut Resp::new(&mut lane));
        let inbox = super::super::member_key("sp", &room(), "i", to);
        let readers = super::super::member_key("sp", &room(), "n", to);
        let mut pipeline = ::redis::pipe();
        pipeline
            .cmd("XADD")
            .arg(inbox)
            .arg("NOMKSTREAM")
            .arg("0-12")
            .arg("k")
            .arg("signal")
            .arg("d")
            .arg(body.json())
            .arg("c")
            .arg(3456)
            .cmd("HKEYS")
            .arg(readers);
        assert_eq!(
            String::from_utf8_lossy(&lane),
            String::from_utf8_lossy(&pipeline.get_packed_pipeline())
        );
    }

    #[test]
    fn the_lane_s_replies_say_whether_the_append_went_in_and_which_nodes_to_wake() {
        let node = "a1";
        let nodes = |names: &[&str]| {
            Reply::Array(
                names
                    .iter()
                    .map(|name| Reply::Bulk(name.as_bytes().to_vec()))
                    .collect(),
            )
        };
        assert_eq!(
            Appended::from_lane(
                vec![Reply::Bulk(b"0-12".to_vec()), nodes(&["a1", "b2"])],
                node
            ),
            Appended::In(vec!["b2".to_owned()]),
            "this node's readers are woken here, the others by a message"
        );
        assert_eq!(
            Appended::from_lane(vec![Reply::Bulk(b"0-12".to_vec()), nodes(&[])], node),
            Appended::In(Vec::new())
        );
        for refusal in [
            Reply::Error("ERR The ID specified in XADD is equal or smaller".to_owned()),
            Reply::Nil,
        ] {
            assert!(matches!(
                Appended::from_lane(vec![refusal, nodes(&["b2"])], node),
                Appended::Refused(_)
            ));
        }
    }

    #[test]
    fn the_answer_is_read_as_signal_lua_gives_it() {
        let answer = [
            Value::Int(12),
            Value::Int(3400),
            Value::Int(250),
            Value::Int(-5),
        ];
        assert_eq!(
            Answered::parse(&answer),
            Some(Answered {
                last: 12,
                cum: 3400,
                events_left: 250,
                bytes_left: 0
            })
        );
        assert_eq!(Answered::parse(&answer[..2]), None);
    }
}
