//! `GET /metrics`: the Prometheus metrics, on the API's listener or on
//! `--metrics-listen`'s.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::http::AppState;
use crate::http::error::ApiError;
use crate::observe::metrics;

/// The metrics in Prometheus's text format, with the room and member
/// gauges read from the state now, so that every node of a cluster reports
/// the service's.
pub async fn render_metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (rooms, members) = state.hub.counts().await?;
    metrics::state_counts(rooms, members);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        metrics::render(),
    )
        .into_response())
}
