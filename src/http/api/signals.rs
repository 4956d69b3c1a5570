//! `POST /signals`, and the service's `POST /rooms/{room_id}/signals`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;
use crate::http::api::{RoomParam, TAG_ADMIN, TAG_SIGNALS, written_json};
use crate::http::auth::{Caller, Credentials, RecheckedCaller};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{JsonBody, RoomPath};
use crate::model::{SignalAccepted, SignalRequest, SignalType, into_single_line_json};
use crate::observe::metrics;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(send_signal))
        .routes(routes!(send_service_signal))
}

/// Send a signal to one member of your room, or to all the others.
///
/// The sender is always the token's member. `offer`, `answer` (payload an
/// RTCSessionDescriptionInit) and `candidate` (an RTCIceCandidateInit) are the
/// WebRTC types; any other type is relayed as it is. 202 means the signal is
/// in every recipient's inbox; if any recipient's inbox is full, nobody gets it.
#[utoipa::path(
    post,
    path = "/signals",
    tag = TAG_SIGNALS,
    request_body = SignalRequest,
    security(("bearer" = []), ("token" = [])),
    responses(
        (status = 202, description = "In every recipient's inbox", body = SignalAccepted),
        (status = 400, description = "`invalid_request`: bad JSON, bad `type`, `to` not a UUID or the sender itself", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the admin token is no member", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`member_not_found`: `to` is not a member of the sender's room", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`: the body is over the payload limit, or the signal is more than an empty inbox holds", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`inbox_full`: nothing was sent; or `rate_limited` (with `Retry-After`): this member sends too fast", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "With `rate_limited`: seconds to wait"))),
    )
)]
async fn send_signal(
    State(state): State<AppState>,
    RecheckedCaller(caller): RecheckedCaller,
    JsonBody(request): JsonBody<SignalRequest>,
) -> Result<Accepted, ApiError> {
    let Caller::Member(from) = caller else {
        return Err(ApiError::Forbidden);
    };
    state.limiters.check_signal(from.member)?;
    if request.to == Some(from.member) {
        return Err(ApiError::InvalidRequest("`to` is the sender itself".into()));
    }
    let (signal_type, payload) = type_and_payload(request.signal_type, request.payload)?;
    let recipients = state
        .hub
        .send_signal(&from, request.to, &signal_type, payload)
        .await?;
    metrics::signals_relayed(recipients);
    Ok(Accepted(SignalAccepted { recipients }))
}

/// Send a signal to a room as the service.
///
/// For the admin token: the application's back end speaks to one member
/// (`to`) or to every member of the room. The event says `"from": null`;
/// the type is the caller's to choose, as for members. The same bounds
/// hold: a full inbox refuses it (429 `inbox_full`), for all or none.
#[utoipa::path(
    post,
    path = "/rooms/{room_id}/signals",
    tag = TAG_ADMIN,
    params(RoomParam),
    request_body = SignalRequest,
    security(("bearer" = []), ("token" = [])),
    responses(
        (status = 202, description = "In every recipient's inbox", body = SignalAccepted),
        (status = 400, description = "`invalid_room_id` or `invalid_request`: bad JSON, bad `type`, `to` not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not the admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`room_not_found`, or `member_not_found`: `to` is not a member of the room", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`inbox_full`: nothing was sent", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn send_service_signal(
    State(state): State<AppState>,
    RoomPath(room_id): RoomPath,
    credentials: Credentials,
    JsonBody(request): JsonBody<SignalRequest>,
) -> Result<Accepted, ApiError> {
    state.admin_caller(&credentials).await?;
    let (signal_type, payload) = type_and_payload(request.signal_type, request.payload)?;
    let recipients = state
        .hub
        .send_service_signal(&room_id, request.to, &signal_type, payload)
        .await?;
    metrics::signals_relayed(recipients);
    Ok(Accepted(SignalAccepted { recipients }))
}

/// A signal's type, checked, and its payload as relayed: on one line,
/// `null` when none was sent.
fn type_and_payload(
    signal_type: String,
    payload: Option<Box<RawValue>>,
) -> Result<(SignalType, Box<RawValue>), ApiError> {
    let signal_type = SignalType::parse(&signal_type)?;
    let payload = match payload {
        Some(raw) => into_single_line_json(raw),
        None => RawValue::NULL.to_owned(),
    };
    Ok((signal_type, payload))
}

/// The 202 and its `SignalAccepted`, written by hand: it answers every
/// relayed signal, and `Json` serializes through serde into a buffer that
/// grows, for one number.
struct Accepted(SignalAccepted);

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let mut digits = itoa::Buffer::new();
        let recipients = digits.format(self.0.recipients);
        let mut body = Vec::with_capacity(16 + recipients.len());
        body.extend_from_slice(b"{\"recipients\":");
        body.extend_from_slice(recipients.as_bytes());
        body.push(b'}');
        written_json(StatusCode::ACCEPTED, body)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::header::CONTENT_TYPE;

    use super::*;

    #[test]
    fn the_accepted_body_is_what_serde_json_writes() {
        for recipients in [0, 1, 9, 10, 12_345, usize::MAX] {
            let response = Accepted(SignalAccepted { recipients }).into_response();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            let body = futures_util::FutureExt::now_or_never(axum::body::to_bytes(
                response.into_body(),
                usize::MAX,
            ))
            .expect("a body in memory is ready")
            .expect("it reads");
            let expected = serde_json::to_vec(&SignalAccepted { recipients }).expect("serializes");
            assert_eq!(body, expected);
        }
    }
}
