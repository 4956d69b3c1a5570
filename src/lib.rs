//! signalpost: WebRTC signaling over plain HTTP.
//!
//! The modules, in the order a request flows through them:
//!
//! - `server`: bytes in and out: the accept loop, TLS, HTTP/2 and the
//!   server's own HTTP/1.1 path, the timeouts. Takes the application as
//!   any tower `Service`; imports nothing of it.
//! - `observe`: what operators see: each request's id, time and error
//!   line, the log format, and the metrics every layer records through.
//! - `http`: all that knows axum: the state and router, the handlers of
//!   docs/API.md (`http::api`), extractors, auth, the SSE and long-poll writers,
//!   and the one place where errors become problem+json.
//! - `rate`: per-client and per-member rate limits.
//! - `hub`: the state behind one seam, the `Backend` trait, with its two
//!   backends, memory and Redis, and the open readers of inboxes.
//! - `domain`: the rules and data, free of I/O and HTTP: room rules,
//!   events, one member's inbox, tokens, and `Refusal`, the domain's error.
//! - `model`: the wire types and checked newtypes everyone shares.
//! - `config`: the command line and its environment twins.
//! - `upkeep`: the background chores: reaping idle members, forgetting
//!   quiet clients' rate buckets, folding the metrics.
//! - `webhook`: the application's back end hears of its rooms: the
//!   domain's notices, posted and signed, retried, off the request path.
//!
//! Imports go one way, so that `src/` has no import circle: `http` may use
//! every module but `upkeep`; `upkeep` the hub, `rate` and `observe`;
//! `webhook` the hub, the domain, `model`, `observe` and `config`; `hub` the
//! domain, `model` and `observe`; `domain` only `model` and `observe`;
//! `observe` only `config`; `server`, `rate`, `model` and `config` nothing
//! of the crate. `lib.rs` wires them together. `tests/layers.rs` holds
//! `src/` to this.

pub mod config;
pub mod domain;
pub mod http;
pub mod hub;
pub mod model;
pub mod observe;
pub mod rate;
pub mod server;
pub mod upkeep;
pub mod webhook;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use config::Config;
pub use http::openapi;

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
        (Some(cert), Some(key)) => Some(server::tls::config(cert, key)?),
        _ => None,
    };
    let limits = server::ConnectionLimits {
        tls,
        header_timeout: config.header_timeout,
        write_timeout: config.write_timeout,
        max_header_bytes: config.max_header_bytes as usize,
        max_body: config.payload_limit,
        grace: config.shutdown_grace,
        unreadable: http::error::unreadable,
    };
    observe::metrics::handle();
    let state = http::AppState::new(config, shutdown.clone()).await?;
    if let Some(metrics_addr) = state.config.metrics_listen {
        let listener = TcpListener::bind(metrics_addr).await?;
        info!("metrics on {}", listener.local_addr()?);
        let router = http::metrics_router(state.clone());
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
    let upkeep = tokio::spawn(upkeep::run(
        state.hub.clone(),
        state.limiters.clone(),
        state.config.member_timeout,
        shutdown.clone(),
    ));
    let app = http::router(state);
    info!("listening on {addr}");
    server::serve(listener, app, limits, shutdown).await;
    upkeep.abort();
    info!("stopped");
    Ok(())
}
