//! A member's inbox: the SSE stream and the long-poll.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;
use crate::http::api::{MemberParams, TAG_INBOX, written_json};
use crate::http::auth::{Credentials, RecheckedCaller};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::JsonBody;
use crate::http::extract::{MemberPath, QueryParams};
use crate::http::{poll, sse};
use crate::model::{KeepAlive, PollResponse, ReadyData, RoomId, SharedStreamRequest};

/// Longest long-poll wait, in seconds.
const POLL_TIMEOUT_MAX: u64 = 60;
const POLL_TIMEOUT_DEFAULT: u64 = 25;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stream_events))
        .routes(routes!(stream_shared))
        .routes(routes!(poll_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Resume after this event id, as the `Last-Event-ID` header does (the header wins).
    last_event_id: Option<u64>,
    /// The member token, where no `Authorization` header can be set (`EventSource`).
    #[allow(dead_code)]
    token: Option<String>,
    /// Seconds between keep-alive comments on this stream, 1 up to the
    /// server's `--keep-alive` (its `ready` says which): for a client whose
    /// proxy cuts responses idle for less than that.
    #[param(value_type = Option<u64>, minimum = 1)]
    keep_alive: Option<KeepAlive>,
}

const STREAM_EXAMPLE: &str = "event: ready\ndata: {\"member_id\":\"6f1c2b0e-3a4d-4e5f-9a8b-7c6d5e4f3a2b\",\"last_event_id\":0,\"keep_alive\":15.0}\n\n\
id: 1\nevent: member-joined\ndata: {\"member\":{\"id\":\"0b7e…\",\"name\":\"bob\",\"user_id\":null,\"metadata\":{},\"joined_at\":\"2026-11-23T10:00:00.000Z\"}}\n\n\
id: 2\nevent: signal\ndata: {\"from\":\"0b7e…\",\"to\":\"6f1c…\",\"type\":\"offer\",\"payload\":{\"type\":\"offer\",\"sdp\":\"v=0…\"},\"sent_at\":\"2026-11-23T10:00:01.000Z\"}\n\n\
: keep-alive\n\n";

/// Open the member's inbox as a Server-Sent-Events stream.
///
/// The stream opens with `ready` (`ReadyData`, no `id:`), then every event
/// not yet delivered, then live events, each written as `id: N`,
/// `event: <kind>`, `data: <JSON>`. Kinds: `member-joined`
/// (`MemberJoinedData`), `member-left` (`MemberLeftData`),
/// `member-updated` (`MemberUpdatedData`), `signal` (`SignalData`),
/// `room-updated` (`RoomUpdatedData`), and `gap`
/// (`GapData`, no `id:`) when events after the resume point are no longer
/// held: each one the `InboxEvent` of its kind (`SignalEvent` for
/// `signal`, and so on), its three fields written as three lines (OpenAPI
/// 3.1, which this document is, has no way to say so of a stream's items;
/// 3.2's `itemSchema` would). Reconnect with `Last-Event-ID: N` (or `?last_event_id=N`) to get
/// every held event after N, which also acknowledges every event up to N.
/// An idle stream carries a `: keep-alive` comment every `--keep-alive`
/// seconds (its `ready` says how many), or every `keep_alive` seconds when
/// the query asks for fewer: a client whose streams are cut after some
/// seconds of silence asks for comments inside that limit. Opening a second stream for the member closes the first.
#[utoipa::path(
    get,
    path = "/rooms/{room_id}/members/{member_id}/events",
    tag = TAG_INBOX,
    params(
        MemberParams,
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "Resume after this event id"),
        StreamQuery,
    ),
    security(("bearer" = []), ("token" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The inbox as an event stream", content_type = "text/event-stream", body = String,
            headers(
                ("Cache-Control" = String, description = "`no-cache`"),
                ("X-Accel-Buffering" = String, description = "`no`: proxies must not buffer the stream"),
            ),
            example = json!(STREAM_EXAMPLE)),
        (status = 400, description = "`invalid_room_id` or `invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: another member's inbox", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`server_busy`: the server holds as many open streams as it may", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    )
)]
async fn stream_events(
    State(state): State<AppState>,
    MemberPath(room_id, member_id): MemberPath,
    QueryParams(query): QueryParams<StreamQuery>,
    method: Method,
    headers: HeaderMap,
    RecheckedCaller(caller): RecheckedCaller,
) -> Result<Response, ApiError> {
    let header_id = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::InvalidRequest("`Last-Event-ID` must be an event id".into())
                })?,
        ),
    };
    let me = caller.into_member(&room_id, member_id)?;
    // HEAD asks what a GET would answer without its body; the GET opens a
    // stream, which would end the member's live one.
    if method == Method::HEAD {
        return Ok((stream_headers(), Body::empty()).into_response());
    }
    let subscription = state
        .hub
        .open_stream(&me, header_id.or(query.last_event_id))
        .await?;
    let keep_alive = KeepAlive::interval(query.keep_alive, state.config.keep_alive);
    let first = sse::ready_frame(&ReadyData {
        member_id,
        last_event_id: subscription.cursor(),
        keep_alive: keep_alive.as_secs_f64(),
    });
    let body = sse::EventStream::new(first, subscription, keep_alive, state.shutdown.clone());
    Ok((stream_headers(), Body::new(body)).into_response())
}

/// Most inboxes one shared stream may read: a browser's tabs of one origin.
const SHARED_INBOXES_MAX: usize = 32;

const SHARED_STREAM_EXAMPLE: &str = "id: 6f1c2b0e-3a4d-4e5f-9a8b-7c6d5e4f3a2b/0\nevent: ready\ndata: {\"member_id\":\"6f1c2b0e-3a4d-4e5f-9a8b-7c6d5e4f3a2b\",\"last_event_id\":0,\"keep_alive\":15.0}\n\n\
id: 0b7e5d2a-1c3f-4a6b-8d9e-2f4a6c8e0b1d/12\nevent: ready\ndata: {\"member_id\":\"0b7e5d2a-1c3f-4a6b-8d9e-2f4a6c8e0b1d\",\"last_event_id\":12,\"keep_alive\":15.0}\n\n\
id: 6f1c2b0e-3a4d-4e5f-9a8b-7c6d5e4f3a2b/1\nevent: signal\ndata: {\"from\":\"9a8b…\",\"to\":\"6f1c…\",\"type\":\"offer\",\"payload\":{\"type\":\"offer\",\"sdp\":\"v=0…\"},\"sent_at\":\"2026-11-23T10:00:01.000Z\"}\n\n\
id: 0b7e5d2a-1c3f-4a6b-8d9e-2f4a6c8e0b1d/20\nevent: gap\ndata: {\"from\":13,\"to\":20}\n\n\
: keep-alive\n\n";

/// Read several members' inboxes on one stream.
///
/// For a browser whose tabs each hold a membership: over HTTP/1.1 it
/// allows six connections per origin, and one stream per tab would take
/// them all. The body names each inbox with its member's token and the id
/// to resume after. The answer is one Server-Sent-Events stream carrying
/// what each inbox's own stream would (`ready` first, then its backlog and
/// live events, and `gap` where events are no longer held), every frame
/// with `id: <member_id>/<place>`: the event's id, the gap's `to`, or the
/// resume point of `ready`. To add or drop an inbox, open a new stream
/// with the new list, each inbox resuming after the last place seen:
/// opening an inbox here closes any other stream of it, as a second
/// stream of one inbox does. An inbox whose member is gone carries its own
/// `member-left` last, then drops out; the stream ends with its last
/// inbox. The whole request is refused, opening nothing, when any inbox
/// is: 401 when a token opens no member, 403 when it opens another
/// member than the one named.
#[utoipa::path(
    post,
    path = "/streams",
    tag = TAG_INBOX,
    request_body = SharedStreamRequest,
    responses(
        (status = 200, description = "The inboxes as one event stream", content_type = "text/event-stream", body = String,
            headers(
                ("Cache-Control" = String, description = "`no-cache`"),
                ("X-Accel-Buffering" = String, description = "`no`: proxies must not buffer the stream"),
            ),
            example = json!(SHARED_STREAM_EXAMPLE)),
        (status = 400, description = "`invalid_request`: no inbox, more than 32, one named twice, a room id or `keep_alive` out of its rules", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: a token that opens no member", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: a token of another member than the one named", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: the body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`server_busy`: the server holds as many open streams as it may", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    )
)]
async fn stream_shared(
    State(state): State<AppState>,
    JsonBody(SharedStreamRequest {
        inboxes,
        keep_alive,
    }): JsonBody<SharedStreamRequest>,
) -> Result<Response, ApiError> {
    if inboxes.is_empty() || inboxes.len() > SHARED_INBOXES_MAX {
        return Err(ApiError::InvalidRequest(format!(
            "`inboxes` lists 1 to {SHARED_INBOXES_MAX} inboxes"
        )));
    }
    let keep_alive = KeepAlive::interval(keep_alive, state.config.keep_alive);
    let mut rooms = Vec::with_capacity(inboxes.len());
    for (at, inbox) in inboxes.iter().enumerate() {
        rooms.push(RoomId::parse(&inbox.room_id).map_err(|_| {
            ApiError::InvalidRequest(format!("`inboxes[{at}].room_id` is not a room id"))
        })?);
        if inboxes[..at]
            .iter()
            .any(|earlier| earlier.member_id == inbox.member_id)
        {
            return Err(ApiError::InvalidRequest(format!(
                "`inboxes[{at}]` names a member already listed"
            )));
        }
    }
    // Every token is checked before any inbox is opened: opening one
    // closes its other reader, and a refused request must change nothing.
    let mut members = Vec::with_capacity(inboxes.len());
    for (room, inbox) in rooms.into_iter().zip(inboxes) {
        let caller = state.recent_caller(&Credentials::of(inbox.token)).await?;
        members.push((
            caller.into_member(&room, inbox.member_id)?,
            inbox.last_event_id,
        ));
    }
    let mut first = Vec::new();
    let mut inboxes = Vec::with_capacity(members.len());
    for (me, last_event_id) in members {
        let subscription = state.hub.open_stream(&me, last_event_id).await?;
        sse::write_shared_ready(
            &mut first,
            &ReadyData {
                member_id: me.member,
                last_event_id: subscription.cursor(),
                keep_alive: keep_alive.as_secs_f64(),
            },
        );
        inboxes.push((me.member, subscription));
    }
    let body = sse::SharedStream::new(first, inboxes, keep_alive, state.shutdown.clone());
    Ok((stream_headers(), Body::new(body)).into_response())
}

fn stream_headers() -> [(header::HeaderName, HeaderValue); 3] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        ),
    ]
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PollQuery {
    /// Return events after this id, and acknowledge every event up to it.
    /// Defaults to the last acknowledged id.
    #[param(minimum = 0)]
    after: Option<u64>,
    /// Seconds to wait for an event when none is there, 0 to 60 (default 25).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 60)]
    timeout: Option<PollTimeout>,
    /// The member token, where no `Authorization` header can be set.
    #[allow(dead_code)]
    token: Option<String>,
}

/// A long-poll wait in whole seconds, checked while the query is parsed so
/// that an out-of-range value answers 400 before any token is looked at.
#[derive(Debug)]
struct PollTimeout(u64);

impl<'de> Deserialize<'de> for PollTimeout {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let secs = u64::deserialize(deserializer)?;
        if secs > POLL_TIMEOUT_MAX {
            return Err(serde::de::Error::custom(format!(
                "`timeout` is 0 to {POLL_TIMEOUT_MAX} seconds"
            )));
        }
        Ok(Self(secs))
    }
}

/// Read the member's inbox by long-poll.
///
/// Answers at once when the inbox holds events after `after`; otherwise
/// waits until one arrives or `timeout` runs out, then answers with what it
/// has (possibly nothing). Asking for events after N acknowledges every
/// event up to N. The events and ids are those the SSE stream carries; a
/// `gap` (events no longer held) stands where they were, with the id of the
/// last lost event, so `after` = the last id seen stays right.
#[utoipa::path(
    get,
    path = "/rooms/{room_id}/members/{member_id}/poll",
    tag = TAG_INBOX,
    params(
        MemberParams,
        PollQuery,
    ),
    security(("bearer" = []), ("token" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The events after `after`, oldest first", body = PollResponse),
        (status = 400, description = "`invalid_room_id` or `invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: another member's inbox", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` (with `Retry-After`): this member already has 4 polls waiting", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`server_busy`: the server holds as many open streams as it may", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    )
)]
async fn poll_events(
    State(state): State<AppState>,
    MemberPath(room_id, member_id): MemberPath,
    QueryParams(query): QueryParams<PollQuery>,
    method: Method,
    RecheckedCaller(caller): RecheckedCaller,
) -> Result<Response, ApiError> {
    let timeout = query
        .timeout
        .map_or(POLL_TIMEOUT_DEFAULT, |PollTimeout(secs)| secs);
    let me = caller.into_member(&room_id, member_id)?;
    // A GET acknowledges events up to `after`; HEAD changes nothing.
    if method == Method::HEAD {
        return Ok(written_json(StatusCode::OK, Vec::new()));
    }
    let mut subscription = state.hub.open_poll(&me, query.after).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    // Events already there are answered whatever the timeout, 0 included,
    // even when reading them takes a round trip to a shared backend.
    let batch = match subscription.read_now().await {
        Some(batch) if batch.is_empty() => tokio::select! {
            batch = subscription.next() => batch,
            () = tokio::time::sleep_until(deadline) => None,
            () = state.shutdown.cancelled() => None,
        },
        batch => batch,
    };
    let items = batch.as_ref().map_or(&[][..], |batch| &batch.items);
    let mut body = Vec::new();
    poll::write_answer(&mut body, items);
    Ok(written_json(StatusCode::OK, body))
}
