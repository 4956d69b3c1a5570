//! `Refusal`: every way the domain and its backends turn a call down, in
//! the domain's words. The HTTP layer maps each one to its problem+json
//! answer in one place (`http::error`); nothing here knows a status code.

/// Why a call on rooms, members or inboxes did not happen. A refused call
/// changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The caller's own membership is gone (it left, was removed or timed
    /// out), so its token opens nothing any more.
    #[error("the caller is no longer a member of its room")]
    CallerGone,
    /// The caller is known but may not do this: not a member of the room,
    /// not its owner.
    #[error("the caller may not do this")]
    NotAllowed,
    #[error("no room has this id")]
    RoomNotFound,
    /// The service asked to make a room that is there already.
    #[error("a room with this id is there already")]
    RoomExists,
    /// The member a call names is not in the room.
    #[error("no member with this id is in this room")]
    MemberNotFound,
    #[error("the room is full ({capacity} members)")]
    RoomFull { capacity: u32 },
    #[error("the room is locked: it takes no new members")]
    RoomLocked,
    /// A join that would create a room asked for a capacity out of range.
    #[error("`capacity` must be from 2 to {max}")]
    InvalidCapacity { max: u32 },
    /// The room's password changed (or the room came or went) between the
    /// join's check of it and the join: the join looks again.
    #[error("the room's password changed while the join checked it")]
    PasswordChanged,
    /// A recipient's inbox cannot take the signal now; nobody got it.
    #[error("a recipient's inbox is full")]
    InboxFull,
    /// A signal larger than an empty inbox holds: no retry can deliver it.
    #[error("the signal's event is {size} bytes, more than an inbox holds ({limit})")]
    SignalTooLarge { size: usize, limit: usize },
    /// The member already has as many waiting polls as it may.
    #[error("this member has as many polls waiting as it may")]
    TooManyPolls,
    /// The service holds `--max-members` members.
    #[error("the service holds as many members as it may; retry later")]
    TooManyMembers,
    /// The service keeps `--max-kept-rooms` rooms it made in advance.
    #[error("the service keeps as many rooms made in advance as it may")]
    TooManyRooms,
    /// This node holds `--max-streams` open readers.
    #[error("the server holds as many open streams as it may; retry later")]
    TooManyReaders,
    /// The shared state (Redis) cannot be reached just now.
    #[error("the shared state cannot be reached just now; retry later")]
    Unavailable,
    /// A bug or a lost task; the cause is logged where it happens.
    #[error("the server failed to carry out the call")]
    Internal,
}
