//! The domain, as plain data and rules: no I/O, no lock, no HTTP. What a
//! room allows (`room`), what an event is (`event`), how one member's inbox
//! orders, bounds and hands out its events (`inbox`), what a token is
//! (`token`), what the application's back end hears of rooms (`notice`),
//! and every way a call is turned down (`Refusal`). The hub and
//! its backends keep these in memory or in Redis; the HTTP layer turns
//! refusals into answers.

pub mod event;
pub mod inbox;
pub mod notice;
mod refusal;
pub mod room;
pub mod token;

pub use self::refusal::Refusal;
