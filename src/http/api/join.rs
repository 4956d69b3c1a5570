//! `POST /rooms/{room_id}/join`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::value::RawValue;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::Refusal;
use crate::http::AppState;
use crate::http::api::{RoomParam, TAG_ROOMS};
use crate::http::auth::{bearer, member_cookie};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ClientAddr, JsonBody, RoomPath};
use crate::http::grant::Grant;
use crate::http::password::PASSWORD_MAX;
use crate::hub::JoinSpec;
use crate::hub::Joined;
use crate::model::RoomId;
use crate::model::{JoinRequest, JoinResponse, METADATA_MAX, NAME_MAX, USER_ID_MAX};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(join_room))
}

/// Join a room, creating it if needed.
///
/// The member who creates a room owns it. Every other member's inbox gets a
/// `member-joined` event. The answer holds the member's token, shown only
/// here: keep it, it opens this member's inbox and sends its signals.
///
/// A server started with `--join-secret` or `--join-key` lets in only
/// joins with a grant: `Authorization: Bearer <JWT>`, signed by the
/// application's back end, with the claims `room` (this room's id, or a
/// prefix ending in `*`) and `exp`, and optionally `nbf`, `sub` (shown to
/// the others as `user_id`), `name`, `metadata` and `capacity`, which
/// take the place of the body's, and `owner`: `false` keeps the member
/// from owning the room (the owner is the oldest member who may; a room
/// made by one who may not has none until one who may joins).
///
/// A join that creates a room may give it a `password`; a later join must
/// give the same one, or is refused 403 `forbidden` (and counts against
/// the join rate all the same). The owner changes or clears it with
/// `PATCH /rooms/{room_id}`.
#[utoipa::path(
    post,
    path = "/rooms/{room_id}/join",
    tag = TAG_ROOMS,
    params(RoomParam),
    security((), ("grant" = [])),
    request_body(content = Option<JoinRequest>, description = "Optional: name, metadata, and the capacity of a room this join creates"),
    responses(
        (status = 201, description = "Joined", body = JoinResponse,
            headers(("Set-Cookie" = String, description = "The token as an `HttpOnly`, `SameSite=Strict` cookie whose `Path` is the member's own `/rooms/{room_id}/members/{member_id}`, so a same-origin `EventSource` or poll needs no `?token=`"))),
        (status = 400, description = "`invalid_room_id` or `invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: this server needs a join grant, and the request has none or one that does not verify (signature, algorithm, key id, `exp`, `nbf`)", body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 403, description = "`forbidden`: the join grant is for another room, or the room has a password and the join gave none or another", body = Problem, content_type = "application/problem+json"),
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
    headers: HeaderMap,
    JsonBody(body): JsonBody<Option<JoinRequest>>,
) -> Result<Response, ApiError> {
    let request: JoinRequest = body.unwrap_or_default();
    let grant = gate(&state, &room_id, client, bearer(&headers))?;
    let joined = admit(&state, room_id, grant, request, None).await?;
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

/// The first of a join's rules, before anything of the room is looked
/// at: the join rate of `client`, then the join grant in `bearer` where
/// the server asks for one.
pub(crate) fn gate(
    state: &AppState,
    room_id: &RoomId,
    client: Option<std::net::IpAddr>,
    bearer: Option<&str>,
) -> Result<Option<Grant>, ApiError> {
    // Before the grant is checked, so that failed grants count too.
    if let Some(client) = client {
        state.limiters.check_join(client)?;
    }
    state
        .grants
        .as_ref()
        .map(|grants| grants.check(bearer, room_id))
        .transpose()
}

/// Joins `room_id` by the rest of the join's rules, past the `gate`: the
/// grant's claims in place of the request's, the room's password,
/// capacity and lock. `mark` goes into the metadata over whatever the
/// request or grant put there: what the server says the member is (a
/// WHIP publisher).
pub(crate) async fn admit(
    state: &AppState,
    room_id: RoomId,
    grant: Option<Grant>,
    mut request: JoinRequest,
    mark: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<Joined, ApiError> {
    let mut user_id = None;
    let mut may_own = true;
    if let Some(grant) = grant {
        may_own = grant.owner.unwrap_or(true);
        user_id = granted(&mut request, grant)?;
    }
    if let Some(mark) = mark {
        let mut metadata = match request.metadata.take() {
            Some(serde_json::Value::Object(object)) => object,
            _ => serde_json::Map::new(),
        };
        metadata.extend(mark);
        request.metadata = Some(serde_json::Value::Object(metadata));
    }
    let password = request.password.take().map(checked_password).transpose()?;
    let mut spec = validate(request)?;
    spec.user_id = user_id;
    spec.may_own = may_own;
    join_with_password(state, room_id, spec, password).await
}

/// A password, if it is one a room may have: 1 to `PASSWORD_MAX` bytes.
pub fn checked_password(password: String) -> Result<String, ApiError> {
    if (1..=PASSWORD_MAX).contains(&password.len()) {
        Ok(password)
    } else {
        Err(ApiError::InvalidRequest(format!(
            "`password` is 1 to {PASSWORD_MAX} bytes"
        )))
    }
}

/// How many times a join looks at a room's password before it gives up on
/// one that keeps changing under it.
const PASSWORD_LOOKS: usize = 3;

/// Joins with the room's password checked, away from the room: the hash
/// is slow, so the join checks the password against the hash it finds,
/// then joins on the condition that the hash is still that one
/// (`room::password_unchanged`), and looks again if it changed. A join
/// that gives no password does not look first: it goes as to a room
/// without one, which the join itself refuses if the room has one, so
/// that joins where nobody uses passwords cost no extra round trip.
async fn join_with_password(
    state: &AppState,
    room_id: RoomId,
    mut spec: JoinSpec,
    password: Option<String>,
) -> Result<Joined, ApiError> {
    let mut look = password.is_some();
    for _ in 0..PASSWORD_LOOKS {
        let stored = if look {
            state.hub.room_password(&room_id).await?
        } else {
            None
        };
        match &stored {
            Some(hash) => {
                spec.password_hash = None;
                if !state
                    .passwords
                    .matches(password.clone(), hash.clone())
                    .await?
                {
                    return Err(ApiError::WrongPassword);
                }
            }
            // The hash for the room this join may create, made once.
            None => {
                if let (Some(password), None) = (&password, &spec.password_hash) {
                    spec.password_hash = Some(state.passwords.hash(password.clone()).await?);
                }
            }
        }
        spec.password_checked = stored;
        match state.hub.join(room_id.clone(), spec.clone()).await {
            Err(Refusal::PasswordChanged) => look = true,
            joined => return joined.map_err(ApiError::from),
        }
    }
    Err(ApiError::WrongPassword)
}

/// Puts what `grant` says in place of what the body asked, and answers
/// the user id it names.
fn granted(request: &mut JoinRequest, grant: Grant) -> Result<Option<String>, ApiError> {
    if grant
        .user_id
        .as_ref()
        .is_some_and(|user| user.chars().count() > USER_ID_MAX)
    {
        return Err(ApiError::InvalidRequest(format!(
            "the join grant's `sub` is at most {USER_ID_MAX} characters"
        )));
    }
    if grant.name.is_some() {
        request.name = grant.name;
    }
    if grant.metadata.is_some() {
        request.metadata = grant.metadata;
    }
    if grant.capacity.is_some() {
        request.capacity = grant.capacity;
    }
    Ok(grant.user_id)
}

/// A member's name, if it is one: at most `NAME_MAX` characters.
pub fn checked_name(name: Option<String>) -> Result<Option<String>, ApiError> {
    if name
        .as_ref()
        .is_some_and(|name| name.chars().count() > NAME_MAX)
    {
        return Err(ApiError::InvalidRequest(format!(
            "`name` is at most {NAME_MAX} characters"
        )));
    }
    Ok(name)
}

/// A member's metadata as it is kept: a JSON object of at most
/// `METADATA_MAX` bytes.
pub fn checked_metadata(value: serde_json::Value) -> Result<Box<RawValue>, ApiError> {
    if !value.is_object() {
        return Err(ApiError::InvalidRequest(
            "`metadata` must be a JSON object".into(),
        ));
    }
    let text = serde_json::to_string(&value).map_err(|_| ApiError::Internal)?;
    if text.len() > METADATA_MAX {
        return Err(ApiError::InvalidRequest(format!(
            "`metadata` is at most {METADATA_MAX} bytes of JSON"
        )));
    }
    RawValue::from_string(text).map_err(|_| ApiError::Internal)
}

fn validate(request: JoinRequest) -> Result<JoinSpec, ApiError> {
    let metadata = match request.metadata {
        None => RawValue::from_string("{}".into()).expect("{} is JSON"),
        Some(value) => checked_metadata(value)?,
    };
    Ok(JoinSpec {
        name: checked_name(request.name)?,
        user_id: None,
        password_checked: None,
        password_hash: None,
        may_own: true,
        metadata,
        capacity: request.capacity,
    })
}
