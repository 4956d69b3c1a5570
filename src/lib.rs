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
//! - `sse`: the event-stream framing and body.
//! - `reaper`: removes members whose inbox nobody reads.

pub mod api;
pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
pub mod hub;
pub mod inbox;
pub mod model;
pub mod reaper;
pub mod sse;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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
    let grace = config.shutdown_grace;
    let state = app::AppState::new(config, shutdown.clone());
    let reaper = tokio::spawn(reaper::run(
        state.hub.clone(),
        state.config.member_timeout,
        shutdown.clone(),
    ));
    let app = app::router(state);
    // Small SSE writes must leave at once, not wait for the peer's delayed ACK.
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            warn!(%error, "could not set TCP_NODELAY");
        }
    });
    info!("listening on {addr}");
    let serve =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = serve => result?,
        () = deadline => warn!("connections still open after the shutdown grace; closing them"),
    }
    reaper.abort();
    info!("stopped");
    Ok(())
}
