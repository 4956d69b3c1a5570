//! The HTTP calls of API.md, one module per resource. Each module's
//! `router()` registers its handlers once, with the OpenAPI documentation
//! written beside them.

pub mod admin;
pub mod ice;
pub mod inbox;
pub mod join;
pub mod rooms;
pub mod signals;

pub(crate) const TAG_ROOMS: &str = "rooms";
pub(crate) const TAG_INBOX: &str = "inbox";
pub(crate) const TAG_SIGNALS: &str = "signals";
pub(crate) const TAG_ADMIN: &str = "admin";
