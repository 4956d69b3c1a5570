//! `GET /rooms`, the admin's view of every room.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;
use crate::http::api::TAG_ADMIN;
use crate::http::auth::Credentials;
use crate::http::error::{ApiError, Problem};
use crate::model::RoomList;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_rooms))
}

/// Every room, with its member count.
///
/// For the admin token (`--admin-token`). With no admin token configured,
/// this answers 401 without a token and 403 with one.
#[utoipa::path(
    get,
    path = "/rooms",
    tag = TAG_ADMIN,
    security(("bearer" = []), ("token" = [])),
    responses(
        (status = 200, description = "Every room, ordered by id", body = RoomList),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not the admin token", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_rooms(
    State(state): State<AppState>,
    credentials: Credentials,
) -> Result<Json<RoomList>, ApiError> {
    state.admin_caller(&credentials).await?;
    Ok(Json(RoomList {
        rooms: state.hub.rooms().await?,
    }))
}
