//! `GET /healthz` and `GET /readyz`, for orchestrators and load balancers.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;
use crate::http::error::{ApiError, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[derive(Serialize, ToSchema)]
struct Health {
    /// `ok` from `/healthz`, `ready` from `/readyz`.
    status: &'static str,
}

/// 503 once shutdown has begun, for both health calls.
fn not_shutting_down(state: &AppState) -> Result<(), ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::ServerBusy("the server is shutting down"));
    }
    Ok(())
}

/// Whether the server can serve.
///
/// 200 while it can; 503 `server_busy` once it is shutting down.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "server",
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "`server_busy`: shutting down", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    )
)]
async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    not_shutting_down(&state)?;
    Ok(Json(Health { status: "ok" }))
}

/// Whether this node can serve requests now.
///
/// 200 when the state can be reached (always, in memory; Redis answers,
/// with `--redis-url`); 503 `server_busy` when it cannot or the server is
/// shutting down. For load balancers: take a node out while it answers 503.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "server",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "`server_busy`: the state cannot be reached, or shutting down", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    not_shutting_down(&state)?;
    state.hub.ready().await?;
    Ok(Json(Health { status: "ready" }))
}
