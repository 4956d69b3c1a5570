//! The HTTP calls of docs/API.md, one module per resource. Each module's
//! `router()` registers its handlers once, with the OpenAPI documentation
//! written beside them.

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use utoipa::IntoParams;

pub mod admin;
pub mod events;
pub mod health;
pub mod ice;
pub mod inbox;
pub mod join;
pub mod metrics;
pub mod rooms;
pub mod signals;
pub mod whip;

pub(crate) const TAG_ROOMS: &str = "rooms";
pub(crate) const TAG_INBOX: &str = "inbox";
pub(crate) const TAG_SIGNALS: &str = "signals";
pub(crate) const TAG_ADMIN: &str = "admin";

/// The `{room_id}` of a path, as the OpenAPI document describes it for
/// every call: the pattern is the rule `RoomId::parse` checks.
// Only its derive is used: the path is read by `extract::RoomPath`.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct RoomParam {
    /// The room id: 1 to 64 characters of `A-Z a-z 0-9 . _ ~ -`, not `.` or `..`; case-sensitive.
    #[param(
        pattern = r"^(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,63}|\.[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,62}|\.\.[A-Za-z0-9._~-]{1,62})$"
    )]
    room_id: String,
}

/// The `{room_id}` and `{member_id}` of a path, as `RoomParam`.
// Only its derive is used: the path is read by `extract::MemberPath`.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct MemberParams {
    /// The room id: 1 to 64 characters of `A-Z a-z 0-9 . _ ~ -`, not `.` or `..`; case-sensitive.
    #[param(
        pattern = r"^(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,63}|\.[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,62}|\.\.[A-Za-z0-9._~-]{1,62})$"
    )]
    room_id: String,
    /// The member's id, as its join answered it.
    member_id: uuid::Uuid,
}

/// A JSON answer whose bytes the handler wrote itself, for the answers
/// that `Json` would send through serde on every signal or poll. Made
/// whole: the `(StatusCode, Vec<u8>)` tuple's `IntoResponse` sets
/// `application/octet-stream` and the content type is then replaced.
pub(crate) fn written_json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
