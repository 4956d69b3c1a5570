//! signalpost: WebRTC signaling over plain HTTP.
//!
//! - `config`: the command line and its environment twins.
//! - `app`: the router, shared state, OpenAPI document, Swagger UI, health.
//! - `api`: the handlers of API.md, one module per resource.
//! - `auth`: tokens and who a request is.
//! - `extract`: path, query and body extractors that reject with problem+json.
//! - `error`: `ApiError` and its `application/problem+json` response.
//! - `model`: wire types and validated newtypes.
//! - `hub`: rooms, members and inboxes: the state behind one seam.
//! - `inbox`: one member's ordered events, acknowledgement, bounds, gaps.
//! - `limits`: per-client rate limits.
//! - `metrics`: Prometheus metrics and `/metrics`.
//! - `observe`: every request's id, timing and error log line.
//! - `logging`: text or JSON log lines, each in its request's span.
//! - `serve`: the accept loop: connection limits, graceful shutdown.
//! - `sse`: the event-stream framing and body.
//! - `http1`: cleartext HTTP/1.1 connections, served without hyper while they can be.
//! - `tls`: the rustls configuration of `--tls-cert` and `--tls-key`.
//! - `reaper`: removes members whose inbox nobody reads.
//! - `web`: the pages and client library of `web/`, built in.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod http1;
pub mod hub;
pub mod inbox;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod reaper;
pub mod serve;
pub mod sse;
pub mod tls;
pub mod web;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use app::openapi;
pub use config::Config;

/// Serves the API on `listener` until `shutdown` is cancelled, then ends
/// every stream and poll, lets requests in flight finish (for at most
/// `--shutdown-grace`), and returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let limits = serve::ConnectionLimits {
        tls,
        header_timeout: config.header_timeout,
        write_timeout: config.write_timeout,
        max_header_bytes: config.max_header_bytes as usize,
        max_body: config.payload_limit,
        grace: config.shutdown_grace,
    };
    metrics::handle();
    let state = app::AppState::new(config, shutdown.clone()).await?;
    if let Some(metrics_addr) = state.config.metrics_listen {
        let listener = TcpListener::bind(metrics_addr).await?;
        info!("metrics on {}", listener.local_addr()?);
        let router = app::metrics_router(state.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "the metrics listener failed");
            }
        });
    }
    let reaper = tokio::spawn(reaper::run(
        state.hub.clone(),
        state.limiters.clone(),
        state.config.member_timeout,
        shutdown.clone(),
    ));
    let app = app::router(state);
    info!("listening on {addr}");
    serve::serve(listener, app, limits, shutdown).await;
    reaper.abort();
    info!("stopped");
    Ok(())
}
