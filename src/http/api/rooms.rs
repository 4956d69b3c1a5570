//! `GET` and `PATCH /rooms/{room_id}`, the admin's `PUT` (make it in
//! advance) and `DELETE` (end it), and `DELETE` of a membership.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::room::EmptyTimeout;
use crate::http::AppState;
use crate::http::api::join::{checked_metadata, checked_name, checked_password};
use crate::http::api::{MemberParams, RoomParam, TAG_ADMIN, TAG_ROOMS};
use crate::http::auth::{Caller, Credentials, RecheckedCaller, member_cookie};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{JsonBody, MemberPath, RoomPath};
use crate::hub::{Actor, MemberChange, RoomSpec};
use crate::model::{MemberPatch, MemberView, RoomCreate, RoomId, RoomPatch, RoomView};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_room, patch_room, create_room, end_room))
        .routes(routes!(leave_room, update_member))
}

/// Who acts on `room`: the admin, a member of it, or (403) a stranger.
fn actor(caller: &Caller, room: &RoomId) -> Result<Actor, ApiError> {
    match caller {
        Caller::Admin => Ok(Actor::Admin),
        member => member
            .member_of(room)
            .map(Actor::Member)
            .ok_or(ApiError::Forbidden),
    }
}

/// The room and its members.
///
/// For a member of the room, or the admin.
#[utoipa::path(
    get,
    path = "/rooms/{room_id}",
    tag = TAG_ROOMS,
    params(RoomParam),
    security(("bearer" = []), ("token" = [])),
    responses(
        (status = 200, description = "The room", body = RoomView),
        (status = 400, description = "`invalid_room_id`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not a member of this room", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`room_not_found` (admin only)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_room(
    State(state): State<AppState>,
    RoomPath(room_id): RoomPath,
    caller: Caller,
) -> Result<Json<RoomView>, ApiError> {
    let actor = actor(&caller, &room_id)?;
    Ok(Json(state.hub.room_view(&room_id, actor).await?))
}

/// Lock or unlock the room, or change its password.
///
/// For the room's owner, or the admin. A locked room refuses every join
/// with 423 `room_locked`. Every member gets `room-updated` when the lock
/// changes. A `password` is asked of every later join (403 `forbidden`
/// without it); `null` takes it away. The members hear nothing of it.
#[utoipa::path(
    patch,
    path = "/rooms/{room_id}",
    tag = TAG_ROOMS,
    params(RoomParam),
    request_body = RoomPatch,
    security(("bearer" = []), ("token" = [])),
    responses(
        (status = 200, description = "The room, as it is now", body = RoomView),
        (status = 400, description = "`invalid_room_id` or `invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not the owner", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`room_not_found` (admin only)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn patch_room(
    State(state): State<AppState>,
    RoomPath(room_id): RoomPath,
    caller: Caller,
    JsonBody(patch): JsonBody<RoomPatch>,
) -> Result<Json<RoomView>, ApiError> {
    let actor = actor(&caller, &room_id)?;
    if patch.locked.is_none() && patch.password.is_none() {
        return Err(ApiError::InvalidRequest(
            "a patch changes `locked`, `password` or both".into(),
        ));
    }
    let hash = match patch.password {
        // Hashed before the backend is asked whether the caller may set
        // it: only members of the room get this far.
        Some(Some(password)) => Some(Some(
            state.passwords.hash(checked_password(password)?).await?,
        )),
        Some(None) => Some(None),
        None => None,
    };
    let mut view = None;
    if let Some(hash) = hash {
        view = Some(state.hub.set_password(&room_id, actor, hash).await?);
    }
    if let Some(locked) = patch.locked {
        view = Some(state.hub.set_locked(&room_id, actor, locked).await?);
    }
    view.map(Json).ok_or(ApiError::Internal)
}

/// Make a room before anyone joins it.
///
/// For the admin token. The room has no members and no owner (the first
/// member who may own it becomes its owner); it takes joins with the
/// capacity, lock and password given here. It stays while it has members,
/// and closes once it has had none for `empty_timeout` seconds, counted
/// from now and again each time its last member leaves. The application's
/// back end hears `room-created` now and `room-closed` then.
#[utoipa::path(
    put,
    path = "/rooms/{room_id}",
    tag = TAG_ADMIN,
    params(RoomParam),
    request_body = RoomCreate,
    security(("bearer" = []), ("token" = [])),
    responses(
        (status = 201, description = "The room, made", body = RoomView,
            headers(("Location" = String, description = "The room's path"))),
        (status = 400, description = "`invalid_room_id` or `invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not the admin token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`room_exists`: a room with this id is there", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`server_busy`: as many rooms made in advance as `--max-kept-rooms`, or the shared state cannot be reached", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_room(
    State(state): State<AppState>,
    RoomPath(room_id): RoomPath,
    credentials: Credentials,
    JsonBody(body): JsonBody<RoomCreate>,
) -> Result<Response, ApiError> {
    state.admin_caller(&credentials).await?;
    let empty_timeout = match body.empty_timeout {
        None => EmptyTimeout::DEFAULT,
        Some(secs) => EmptyTimeout::from_secs(secs).ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "`empty_timeout` is from 1 to {} seconds",
                EmptyTimeout::MAX_SECS
            ))
        })?,
    };
    let password_hash = match body.password.map(checked_password).transpose()? {
        Some(password) => Some(state.passwords.hash(password).await?),
        None => None,
    };
    let spec = RoomSpec {
        capacity: body.capacity,
        locked: body.locked.unwrap_or(false),
        password_hash,
        empty_timeout,
    };
    let room = state.hub.create_room(room_id, spec).await?;
    let location = format!("/rooms/{}", room.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(room),
    )
        .into_response())
}

/// End the room: every member is removed, then the room is gone.
///
/// For the admin token. In one step: each member is removed as by
/// `DELETE /rooms/{room_id}/members/{member_id}` (reason `removed`), the
/// members still there hearing of each, and each member's stream, after
/// what its inbox held, ends; then the room closes, made in advance or
/// not.
#[utoipa::path(
    delete,
    path = "/rooms/{room_id}",
    tag = TAG_ADMIN,
    params(RoomParam),
    security(("bearer" = []), ("token" = [])),
    responses(
        (status = 204, description = "The room is gone"),
        (status = 400, description = "`invalid_room_id`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not the admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`room_not_found`", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn end_room(
    State(state): State<AppState>,
    RoomPath(room_id): RoomPath,
    credentials: Credentials,
) -> Result<StatusCode, ApiError> {
    state.admin_caller(&credentials).await?;
    state.hub.end_room(&room_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Leave the room, or remove a member from it.
///
/// A member may remove itself (the others get `member-left` with reason
/// `left`); the room's owner and the admin may remove anyone (reason
/// `removed`). When the owner leaves, the oldest remaining member becomes
/// owner. The last leave closes the room, unless the service made it in
/// advance (`PUT /rooms/{room_id}`).
#[utoipa::path(
    delete,
    path = "/rooms/{room_id}/members/{member_id}",
    tag = TAG_ROOMS,
    params(
        MemberParams,
    ),
    security(("bearer" = []), ("token" = []), ("cookie" = [])),
    responses(
        (status = 204, description = "The member is gone",
            headers(("Set-Cookie" = String, description = "Expires the member's token cookie"))),
        (status = 400, description = "`invalid_room_id` or `invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: neither that member, the owner, nor the admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`room_not_found` or `member_not_found`", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn leave_room(
    State(state): State<AppState>,
    MemberPath(room_id, member_id): MemberPath,
    RecheckedCaller(caller): RecheckedCaller,
) -> Result<Response, ApiError> {
    let actor = actor(&caller, &room_id)?;
    state.hub.remove_member(&room_id, member_id, actor).await?;
    // The cookie's token is dead now; let the browser drop it.
    let expired = member_cookie(&room_id, member_id, None, state.config.tls_cert.is_some());
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired)]).into_response())
}

/// Change what a member shows the others: its name or its metadata.
///
/// For the member itself, or the admin. Every other member gets
/// `member-updated` with the member as it is now, and whoever joins later
/// sees it so, in the join's answer and in the room: the place for state
/// the others must see whenever they come, such as whether a microphone
/// is on. A member's changes count against its `--signal-rate`.
#[utoipa::path(
    patch,
    path = "/rooms/{room_id}/members/{member_id}",
    tag = TAG_ROOMS,
    params(MemberParams),
    request_body = MemberPatch,
    security(("bearer" = []), ("token" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "The member, as it is now", body = MemberView),
        (status = 400, description = "`invalid_room_id` or `invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: neither that member nor the admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`room_not_found` or `member_not_found` (admin only)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`: this member changes or sends too fast", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
async fn update_member(
    State(state): State<AppState>,
    MemberPath(room_id, member_id): MemberPath,
    RecheckedCaller(caller): RecheckedCaller,
    JsonBody(patch): JsonBody<MemberPatch>,
) -> Result<Json<MemberView>, ApiError> {
    let actor = actor(&caller, &room_id)?;
    if let Actor::Member(member) = actor {
        state.limiters.check_signal(member)?;
    }
    if patch.name.is_none() && patch.metadata.is_none() {
        return Err(ApiError::InvalidRequest(
            "a patch changes `name`, `metadata` or both".into(),
        ));
    }
    let change = MemberChange {
        name: patch.name.map(checked_name).transpose()?,
        metadata: patch.metadata.map(checked_metadata).transpose()?,
    };
    let view = state
        .hub
        .update_member(&room_id, member_id, actor, change)
        .await?;
    Ok(Json(view))
}
