//! `POST /rooms/{room_id}/join`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;
use crate::http::api::{RoomParam, TAG_ROOMS};
use crate::http::auth::member_cookie;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ClientAddr, JsonBody, RoomPath};
use crate::hub::JoinSpec;
use crate::model::{JoinRequest, JoinResponse, METADATA_MAX, NAME_MAX};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(join_room))
}

/// Join a room, creating it if needed.
///
/// The member who creates a room owns it. Every other member's inbox gets a
/// `member-joined` event. The answer holds the member's token, shown only
/// here: keep it, it opens this member's inbox and sends its signals.
#[utoipa::path(
    post,
    path = "/rooms/{room_id}/join",
    tag = TAG_ROOMS,
    params(RoomParam),
    request_body(content = Option<JoinRequest>, description = "Optional: name, metadata, and the capacity of a room this join creates"),
    responses(
        (status = 201, description = "Joined", body = JoinResponse,
            headers(("Set-Cookie" = String, description = "The token as an `HttpOnly`, `SameSite=Strict` cookie whose `Path` is the member's own `/rooms/{room_id}/members/{member_id}`, so a same-origin `EventSource` or poll needs no `?token=`"))),
        (status = 400, description = "`invalid_room_id` or `invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`room_full`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "`room_locked`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: too many joins from this client address", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "`server_busy`: the server holds as many members as it may", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    )
)]
async fn join_room(
    State(state): State<AppState>,
    RoomPath(room_id): RoomPath,
    ClientAddr(client): ClientAddr,
    JsonBody(body): JsonBody<Option<JoinRequest>>,
) -> Result<Response, ApiError> {
    let spec = validate(body.unwrap_or_default())?;
    if let Some(client) = client {
        state.limiters.check_join(client)?;
    }
    let joined = state.hub.join(room_id, spec).await?;
    let joined = JoinResponse::new(
        joined.room_id,
        joined.member,
        joined.token.reveal(),
        joined.owner,
        joined.capacity,
        joined.members,
    );
    let cookie = member_cookie(
        &joined.room_id,
        joined.member.id,
        Some(&joined.token),
        state.config.tls_cert.is_some(),
    );
    Ok((
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        Json(joined),
    )
        .into_response())
}

fn validate(request: JoinRequest) -> Result<JoinSpec, ApiError> {
    if request
        .name
        .as_ref()
        .is_some_and(|name| name.chars().count() > NAME_MAX)
    {
        return Err(ApiError::InvalidRequest(format!(
            "`name` is at most {NAME_MAX} characters"
        )));
    }
    let metadata = match request.metadata {
        None => RawValue::from_string("{}".into()).expect("{} is JSON"),
        Some(value @ serde_json::Value::Object(_)) => {
            let text = serde_json::to_string(&value).expect("a JSON value serializes");
            if text.len() > METADATA_MAX {
                return Err(ApiError::InvalidRequest(format!(
                    "`metadata` is at most {METADATA_MAX} bytes of JSON"
                )));
            }
            RawValue::from_string(text).expect("serde_json writes valid JSON")
        }
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "`metadata` must be a JSON object".into(),
            ));
        }
    };
    Ok(JoinSpec {
        name: request.name,
        metadata,
        capacity: request.capacity,
    })
}
