//! Everything that knows axum and HTTP's words: the application's state and
//! router (`app`), the handlers of docs/API.md (`api`), the extractors that
//! reject with problem+json (`extract`), who a request is (`auth`), the one
//! place where errors become problem+json (`error`), the event-stream and
//! long-poll writers (`sse`, `poll`), and the built-in web pages (`web`).
//! It calls the hub in the domain's words and answers in HTTP's.

pub mod api;
pub mod app;
pub mod auth;
pub mod error;
pub mod extract;
pub mod grant;
pub mod password;
pub mod poll;
pub mod sse;
pub mod web;

pub use self::app::{App, AppState, metrics_router, openapi, router};
