//! The HTTP contract of docs/API.md, checked against a real server: one
//! module per area, all sharing `helpers`.

mod helpers;
mod redis_server;

mod admin;
mod auth;
mod cancelled;
mod cluster;
mod concurrency;
mod contract;
mod cors;
mod docs;
mod errors;
mod faults;
mod grants;
mod guide;
mod http1;
mod http2;
mod ice;
mod inbox_sse;
mod join;
mod leave;
mod limits;
mod members;
mod metrics;
mod openapi_file;
mod passwords;
mod poll;
mod readme;
mod reaper;
mod resume;
mod rooms;
mod running;
mod service;
mod shared_stream;
mod shutdown;
mod signals;
mod soak;
mod tls;
mod web;
mod webhooks;
mod whip;
