//! Notices: what the application's back end hears of its rooms (by
//! webhook): a room made, a member in, a member out and why, a room
//! closed. A backend raises each one as its change happens, under the
//! room's lock, so that one room's notices come in its own order; who
//! hears them, and how, is not the domain's business (`Listener`).

use uuid::Uuid;

use crate::model::{LeaveReason, MemberView, RoomId};

/// One change to a room, as the back end hears of it.
#[derive(Debug, Clone)]
pub enum Notice {
    RoomCreated {
        room: RoomId,
    },
    MemberJoined {
        room: RoomId,
        member: MemberView,
    },
    MemberLeft {
        room: RoomId,
        member: Uuid,
        reason: LeaveReason,
    },
    RoomClosed {
        room: RoomId,
    },
}

impl Notice {
    /// The notice's name, as the webhook's `type` says it.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::RoomCreated { .. } => "room-created",
            Notice::MemberJoined { .. } => "member-joined",
            Notice::MemberLeft { .. } => "member-left",
            Notice::RoomClosed { .. } => "room-closed",
        }
    }
}

/// Whoever hears the notices. `hear` must not block: the backends call it
/// with a room's lock held.
pub trait Listener: Send + Sync {
    fn hear(&self, notice: Notice);
}
