//! The rules of a room, as pure functions: who may join and what capacity
//! a new room gets, who may remove whom and why it counts as a leave, who
//! may look at and lock a room, who owns it after its owner leaves, who
//! a signal goes to, and when a room without members closes.
//!
//! The memory backend calls them under the room's lock. The Redis backend
//! cannot: a room's change there is one Lua script, atomic inside Redis, so
//! the scripts (`hub/redis/*.lua`) follow the same rules in Lua, each
//! naming the function here it follows. The API tests run against both.

use std::time::Duration;

use uuid::Uuid;

use super::Refusal;
use crate::model::LeaveReason;

/// Who asks for a room-level change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Admin,
    /// A member of the room named in the call.
    Member(Uuid),
}

/// What the rules need to know of a room's members.
pub trait Roster {
    /// `None` when no member may own the room (`owner_after_join`).
    fn owner(&self) -> Option<Uuid>;
    fn has(&self, member: Uuid) -> bool;
}

/// What a join finds of a room that has members.
#[derive(Debug, Clone, Copy)]
pub struct Occupancy {
    pub members: usize,
    pub capacity: u32,
    pub locked: bool,
}

/// How the capacity of a new room is chosen (`--default-capacity`,
/// `--max-capacity`).
#[derive(Debug, Clone, Copy)]
pub struct CapacityBounds {
    pub default: u32,
    pub max: u32,
}

/// How a join enters its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It creates the room, with this capacity, and owns it.
    Create { capacity: u32 },
    /// It joins the members already there.
    Enter,
}

/// Whether a join is let in: a room without members is created (with the
/// capacity asked, which must be within bounds), a locked or full one
/// refuses. `join.lua` follows it.
pub fn admit(
    room: Option<Occupancy>,
    asked: Option<i64>,
    bounds: CapacityBounds,
) -> Result<Admission, Refusal> {
    match room {
        None => new_room_capacity(asked, bounds).map(|capacity| Admission::Create { capacity }),
        Some(room) if room.locked => Err(Refusal::RoomLocked),
        Some(room) if room.members >= room.capacity as usize => Err(Refusal::RoomFull {
            capacity: room.capacity,
        }),
        Some(_) => Ok(Admission::Enter),
    }
}

/// Whether a join may go on with a room's password as it is now. The join
/// checked the password it was given against `checked`, the room's hash
/// when it looked (`None`: the room had none, or was not there), away
/// from the room, since a slow hash must not hold it. Entering, the hash
/// must still be that one; creating, the join must have found none to
/// check, so that a room it makes takes the join's own password. Else the
/// password changed meanwhile, and the join looks again. `join.lua`
/// follows it.
pub fn password_unchanged(
    checked: Option<&str>,
    now: Option<&str>,
    creating: bool,
) -> Result<(), Refusal> {
    let unchanged = if creating {
        checked.is_none()
    } else {
        checked == now
    };
    unchanged.then_some(()).ok_or(Refusal::PasswordChanged)
}

/// The capacity a join gives the room if it creates it: the one asked,
/// from 2 to the maximum, or the default.
pub fn new_room_capacity(asked: Option<i64>, bounds: CapacityBounds) -> Result<u32, Refusal> {
    asked.map_or(Ok(bounds.default), |asked| {
        u32::try_from(asked)
            .ok()
            .filter(|capacity| (2..=bounds.max).contains(capacity))
            .ok_or(Refusal::InvalidCapacity { max: bounds.max })
    })
}

/// Why `target` leaves when `actor` removes it from `room` (`None`: the
/// room has no members): by itself (`left`), or by the owner or the admin
/// (`removed`). A member whose own room is gone is gone too. `remove.lua`
/// follows it.
pub fn removal(
    actor: Actor,
    target: Uuid,
    room: Option<&impl Roster>,
) -> Result<LeaveReason, Refusal> {
    let Some(room) = room else {
        return Err(match actor {
            Actor::Admin => Refusal::RoomNotFound,
            Actor::Member(_) => Refusal::CallerGone,
        });
    };
    let reason = match actor {
        Actor::Member(caller) if caller == target => LeaveReason::Left,
        Actor::Member(caller) if !room.has(caller) => return Err(Refusal::CallerGone),
        Actor::Member(caller) if room.owner() != Some(caller) => {
            return Err(Refusal::NotAllowed);
        }
        Actor::Member(_) | Actor::Admin => LeaveReason::Removed,
    };
    if !room.has(target) {
        return Err(match reason {
            LeaveReason::Left => Refusal::CallerGone,
            _ => Refusal::MemberNotFound,
        });
    }
    Ok(reason)
}

/// Whether `actor` may look at `room`: the admin, or one of its members.
/// `room.lua` follows it.
pub fn may_view<R: Roster>(actor: Actor, room: Option<&R>) -> Result<(), Refusal> {
    may_act(actor, room, |room, caller| room.has(caller))
}

/// Whether `actor` may lock or unlock `room`: the admin, or its owner.
/// `room.lua` follows it.
pub fn may_lock<R: Roster>(actor: Actor, room: Option<&R>) -> Result<(), Refusal> {
    may_act(actor, room, |room, caller| room.owner() == Some(caller))
}

/// Whether `actor` may change what `target` shows the others (its name and
/// metadata): the member itself, or the admin. `update.lua` follows it.
pub fn may_update(actor: Actor, target: Uuid, room: Option<&impl Roster>) -> Result<(), Refusal> {
    match actor {
        Actor::Member(caller) if caller != target => Err(Refusal::NotAllowed),
        Actor::Member(_) => room
            .filter(|room| room.has(target))
            .map(drop)
            .ok_or(Refusal::CallerGone),
        Actor::Admin => match room {
            None => Err(Refusal::RoomNotFound),
            Some(room) if !room.has(target) => Err(Refusal::MemberNotFound),
            Some(_) => Ok(()),
        },
    }
}

/// The admin may act on any room there is; a member, when `allowed` says
/// so. Nobody but the admin learns from a refusal which rooms exist.
fn may_act<R: Roster>(
    actor: Actor,
    room: Option<&R>,
    allowed: impl FnOnce(&R, Uuid) -> bool,
) -> Result<(), Refusal> {
    match (actor, room) {
        (Actor::Admin, Some(_)) => Ok(()),
        (Actor::Admin, None) => Err(Refusal::RoomNotFound),
        (Actor::Member(caller), Some(room)) if allowed(room, caller) => Ok(()),
        (Actor::Member(_), _) => Err(Refusal::NotAllowed),
    }
}

/// The owner once `joiner` has joined: the same, or, in a room without
/// one (its creator's grant said it may not own it, and nobody since
/// could), the joiner if it may own the room. A member may own unless its
/// join grant says `"owner": false`. `join.lua` follows it.
pub fn owner_after_join(owner: Option<Uuid>, joiner: Uuid, may_own: bool) -> Option<Uuid> {
    owner.or(may_own.then_some(joiner))
}

/// The owner once `gone` has left: the same, or, if the owner left, its
/// heir, the oldest remaining member who may own the room (none: the room
/// has no owner until one who may joins). `remove.lua` follows it.
pub fn owner_after_leave(owner: Option<Uuid>, gone: Uuid, heir: Option<Uuid>) -> Option<Uuid> {
    if owner == Some(gone) { heir } else { owner }
}

/// How long a room the service made in advance (`POST /rooms`) may stay
/// without members: from 1 s to a week, 5 minutes unless it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmptyTimeout(Duration);

impl EmptyTimeout {
    pub const DEFAULT: Self = Self(Duration::from_secs(300));
    pub const MAX_SECS: u64 = 7 * 24 * 3600;

    /// The timeout of `secs` seconds, if it is in range.
    pub fn from_secs(secs: u64) -> Option<Self> {
        (1..=Self::MAX_SECS)
            .contains(&secs)
            .then(|| Self(Duration::from_secs(secs)))
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

/// Whether a room without members closes, having had none for
/// `empty_for`: a room joins made closes as its last member leaves; one the
/// service made in advance (`kept`: its empty timeout) waits that long for
/// a join first. `remove.lua` and `close.lua` follow it.
pub fn empty_room_closes(kept: Option<EmptyTimeout>, empty_for: Duration) -> bool {
    kept.is_none_or(|timeout| empty_for >= timeout.get())
}

/// Whether the service may make a room in advance: not over one that is
/// there, and only `within_bound` of `--max-kept-rooms`. `create.lua`
/// follows the first.
pub fn may_create(exists: bool, within_bound: bool) -> Result<(), Refusal> {
    if exists {
        Err(Refusal::RoomExists)
    } else if !within_bound {
        Err(Refusal::TooManyRooms)
    } else {
        Ok(())
    }
}

/// Who sends a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// A member of the room.
    Member(Uuid),
    /// The application's back end, with the admin token: no member, and
    /// its signals say `"from": null`.
    Service,
}

impl Sender {
    pub fn member(self) -> Option<Uuid> {
        match self {
            Sender::Member(member) => Some(member),
            Sender::Service => None,
        }
    }
}

/// Who a signal goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients {
    /// The one member named.
    One(Uuid),
    /// Every member but the sender (all of them for the service).
    AllBut(Option<Uuid>),
}

/// Who a signal from `from` to `to` (`None`: the whole room) reaches in
/// `room`. A member sending must still be one; the service needs the room
/// to be there; a named recipient must be a member. `signal.lua` follows
/// it.
pub fn recipients(
    from: Sender,
    to: Option<Uuid>,
    room: Option<&impl Roster>,
) -> Result<Recipients, Refusal> {
    let room = match from {
        Sender::Member(member) => room
            .filter(|room| room.has(member))
            .ok_or(Refusal::CallerGone)?,
        Sender::Service => room.ok_or(Refusal::RoomNotFound)?,
    };
    match to {
        Some(to) if room.has(to) => Ok(Recipients::One(to)),
        Some(_) => Err(Refusal::MemberNotFound),
        None => Ok(Recipients::AllBut(from.member())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A room of members, the first of them the owner.
    struct Members(Vec<Uuid>);

    impl Roster for Members {
        fn owner(&self) -> Option<Uuid> {
            self.0.first().copied()
        }

        fn has(&self, member: Uuid) -> bool {
            self.0.contains(&member)
        }
    }

    const BOUNDS: CapacityBounds = CapacityBounds { default: 2, max: 8 };

    #[test]
    fn an_empty_room_closes_at_once_unless_the_service_keeps_it_for_its_timeout() {
        let minute = EmptyTimeout::from_secs(60);
        assert!(empty_room_closes(None, Duration::ZERO));
        assert!(!empty_room_closes(minute, Duration::ZERO));
        assert!(!empty_room_closes(minute, Duration::from_secs(59)));
        assert!(empty_room_closes(minute, Duration::from_secs(60)));
        assert_eq!(EmptyTimeout::from_secs(0), None);
        assert_eq!(EmptyTimeout::from_secs(EmptyTimeout::MAX_SECS + 1), None);
        assert!(EmptyTimeout::from_secs(EmptyTimeout::MAX_SECS).is_some());
    }

    #[test]
    fn the_service_makes_a_room_that_is_not_there_within_its_bound() {
        assert_eq!(may_create(false, true), Ok(()));
        assert_eq!(may_create(true, true), Err(Refusal::RoomExists));
        assert_eq!(may_create(false, false), Err(Refusal::TooManyRooms));
        // One that is there is named before the bound.
        assert_eq!(may_create(true, false), Err(Refusal::RoomExists));
    }

    #[test]
    fn a_member_changes_what_it_shows_and_the_admin_any_member_s() {
        let (members, [owner, alice, _]) = three();
        let room = Some(&members);
        assert_eq!(may_update(Actor::Member(alice), alice, room), Ok(()));
        assert_eq!(may_update(Actor::Admin, alice, room), Ok(()));
        // Not even the owner changes another's.
        assert_eq!(
            may_update(Actor::Member(owner), alice, room),
            Err(Refusal::NotAllowed)
        );
        let stranger = Uuid::new_v4();
        assert_eq!(
            may_update(Actor::Member(stranger), stranger, room),
            Err(Refusal::CallerGone)
        );
        assert_eq!(
            may_update(Actor::Admin, stranger, room),
            Err(Refusal::MemberNotFound)
        );
        assert_eq!(
            may_update(Actor::Admin, alice, None::<&Members>),
            Err(Refusal::RoomNotFound)
        );
    }

    #[test]
    fn a_join_goes_on_only_with_the_password_it_checked() {
        let (old, new) = (Some("hash-1"), Some("hash-2"));
        assert_eq!(password_unchanged(old, old, false), Ok(()));
        assert_eq!(password_unchanged(None, None, false), Ok(()));
        for (checked, now) in [(old, new), (None, new), (old, None)] {
            assert_eq!(
                password_unchanged(checked, now, false),
                Err(Refusal::PasswordChanged)
            );
        }
        // A room made anew takes the join's own password, not one checked
        // against a room that has since closed.
        assert_eq!(password_unchanged(None, None, true), Ok(()));
        assert_eq!(
            password_unchanged(old, None, true),
            Err(Refusal::PasswordChanged)
        );
    }

    fn room(members: usize, capacity: u32, locked: bool) -> Option<Occupancy> {
        Some(Occupancy {
            members,
            capacity,
            locked,
        })
    }

    fn three() -> (Members, [Uuid; 3]) {
        let ids = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
        (Members(ids.to_vec()), ids)
    }

    #[test]
    fn a_join_creates_an_empty_room_with_the_capacity_asked_or_the_default() {
        assert_eq!(
            admit(None, None, BOUNDS),
            Ok(Admission::Create { capacity: 2 })
        );
        assert_eq!(
            admit(None, Some(8), BOUNDS),
            Ok(Admission::Create { capacity: 8 })
        );
        for bad in [1, 9, -1, i64::MAX] {
            assert_eq!(
                admit(None, Some(bad), BOUNDS),
                Err(Refusal::InvalidCapacity { max: 8 }),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_join_enters_a_room_with_room_and_the_capacity_asked_counts_for_nothing() {
        assert_eq!(
            admit(room(1, 2, false), Some(99), BOUNDS),
            Ok(Admission::Enter)
        );
    }

    #[test]
    fn a_full_room_refuses_with_its_capacity_and_a_locked_one_first() {
        assert_eq!(
            admit(room(2, 2, false), None, BOUNDS),
            Err(Refusal::RoomFull { capacity: 2 })
        );
        assert_eq!(
            admit(room(2, 2, true), None, BOUNDS),
            Err(Refusal::RoomLocked)
        );
        assert_eq!(
            admit(room(1, 2, true), None, BOUNDS),
            Err(Refusal::RoomLocked)
        );
    }

    #[test]
    fn a_member_leaves_by_itself_and_the_owner_or_admin_removes() {
        let (members, [owner, alice, bob]) = three();
        let room = Some(&members);
        assert_eq!(
            removal(Actor::Member(alice), alice, room),
            Ok(LeaveReason::Left)
        );
        assert_eq!(
            removal(Actor::Member(owner), bob, room),
            Ok(LeaveReason::Removed)
        );
        assert_eq!(removal(Actor::Admin, owner, room), Ok(LeaveReason::Removed));
        assert_eq!(
            removal(Actor::Member(alice), bob, room),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn a_removal_by_someone_gone_or_of_someone_absent_is_refused() {
        let (members, [owner, ..]) = three();
        let (stranger, absent) = (Uuid::new_v4(), Uuid::new_v4());
        let room = Some(&members);
        assert_eq!(
            removal(Actor::Member(stranger), owner, room),
            Err(Refusal::CallerGone)
        );
        assert_eq!(
            removal(Actor::Member(stranger), stranger, room),
            Err(Refusal::CallerGone),
            "leaving twice: the caller is gone already"
        );
        assert_eq!(
            removal(Actor::Member(owner), absent, room),
            Err(Refusal::MemberNotFound)
        );
        assert_eq!(
            removal(Actor::Admin, absent, room),
            Err(Refusal::MemberNotFound)
        );
        let none: Option<&Members> = None;
        assert_eq!(
            removal(Actor::Admin, owner, none),
            Err(Refusal::RoomNotFound)
        );
        assert_eq!(
            removal(Actor::Member(owner), owner, none),
            Err(Refusal::CallerGone)
        );
    }

    #[test]
    fn members_may_look_only_the_owner_may_lock_and_the_admin_may_both() {
        let (members, [owner, alice, _]) = three();
        let (room, none) = (Some(&members), None::<&Members>);
        let stranger = Actor::Member(Uuid::new_v4());
        assert_eq!(may_view(Actor::Member(alice), room), Ok(()));
        assert_eq!(may_view(stranger, room), Err(Refusal::NotAllowed));
        assert_eq!(may_lock(Actor::Member(owner), room), Ok(()));
        assert_eq!(
            may_lock(Actor::Member(alice), room),
            Err(Refusal::NotAllowed)
        );
        for rule in [may_view::<Members>, may_lock::<Members>] {
            assert_eq!(rule(Actor::Admin, room), Ok(()));
            assert_eq!(rule(Actor::Admin, none), Err(Refusal::RoomNotFound));
            // A member learns nothing of which rooms exist.
            assert_eq!(rule(stranger, none), Err(Refusal::NotAllowed));
        }
    }

    #[test]
    fn the_heir_owns_the_room_its_owner_left() {
        let [owner, alice, bob] = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
        assert_eq!(
            owner_after_leave(Some(owner), owner, Some(alice)),
            Some(alice)
        );
        assert_eq!(
            owner_after_leave(Some(owner), bob, Some(alice)),
            Some(owner)
        );
        assert_eq!(owner_after_leave(Some(owner), owner, None), None);
        assert_eq!(owner_after_leave(None, bob, Some(alice)), None);
    }

    #[test]
    fn a_room_without_an_owner_takes_the_first_joiner_who_may_own_it() {
        let [owner, alice] = [Uuid::new_v4(), Uuid::new_v4()];
        assert_eq!(owner_after_join(None, alice, false), None);
        assert_eq!(owner_after_join(None, alice, true), Some(alice));
        assert_eq!(owner_after_join(Some(owner), alice, true), Some(owner));
    }

    #[test]
    fn a_signal_reaches_the_member_named_or_everyone_but_the_sender() {
        let (members, [owner, alice_id, _]) = three();
        let alice = Sender::Member(alice_id);
        let room = Some(&members);
        assert_eq!(
            recipients(alice, Some(owner), room),
            Ok(Recipients::One(owner))
        );
        assert_eq!(
            recipients(alice, None, room),
            Ok(Recipients::AllBut(Some(alice_id)))
        );
        assert_eq!(
            recipients(alice, Some(Uuid::new_v4()), room),
            Err(Refusal::MemberNotFound)
        );
        assert_eq!(
            recipients(Sender::Member(Uuid::new_v4()), Some(owner), room),
            Err(Refusal::CallerGone)
        );
        assert_eq!(
            recipients(alice, None, None::<&Members>),
            Err(Refusal::CallerGone)
        );
    }

    #[test]
    fn the_service_reaches_the_member_named_or_everyone_of_a_room_there_is() {
        let (members, [owner, _, _]) = three();
        let room = Some(&members);
        assert_eq!(
            recipients(Sender::Service, Some(owner), room),
            Ok(Recipients::One(owner))
        );
        assert_eq!(
            recipients(Sender::Service, None, room),
            Ok(Recipients::AllBut(None))
        );
        assert_eq!(
            recipients(Sender::Service, Some(Uuid::new_v4()), room),
            Err(Refusal::MemberNotFound)
        );
        assert_eq!(
            recipients(Sender::Service, None, None::<&Members>),
            Err(Refusal::RoomNotFound)
        );
    }
}
