//! The HTTP calls of API.md, one module per resource. Each module's
//! `router()` registers its handlers once, with the OpenAPI documentation
//! written beside them.

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

pub mod admin;
pub mod health;
pub mod ice;
pub mod inbox;
pub mod join;
pub mod metrics;
pub mod rooms;
pub mod signals;

pub(crate) const TAG_ROOMS: &str = "rooms";
pub(crate) const TAG_INBOX: &str = "inbox";
pub(crate) const TAG_SIGNALS: &str = "signals";
pub(crate) const TAG_ADMIN: &str = "admin";

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
