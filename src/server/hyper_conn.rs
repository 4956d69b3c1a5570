//! Connections hyper serves: the HTTP/1.1 that `http1` hands over (HTTP/1.0,
//! `HEAD`, upgrades, chunked bodies); and the TLS handshake before any
//! connection. hyper's header timeout runs whenever it waits for a head, so
//! a kept-alive connection with nothing under way is closed after it, as
//! `http1` and `http2` close their own.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::debug;

use super::http1::TlsSocket;
use super::tls::LeanTls;
use super::{App, ConnectionLimits, framing};

/// The TLS handshake, within the header timeout; `None` when it failed.
pub(super) async fn handshake(
    socket: TcpStream,
    peer: SocketAddr,
    limits: &ConnectionLimits,
    config: &Arc<ServerConfig>,
) -> Option<TlsSocket> {
    let handshake = LeanTls::accept(socket, Arc::clone(config));
    match tokio::time::timeout(limits.header_timeout, handshake).await {
        Ok(Ok(stream)) => Some(Box::new(stream)),
        Ok(Err(error)) => {
            debug!(%error, %peer, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(%peer, "TLS handshake too slow");
            None
        }
    }
}

pub(super) async fn serve_io<IO>(
    io: IO,
    peer: SocketAddr,
    app: impl App,
    builder: &http1::Builder,
    shutdown: &CancellationToken,
    limits: &ConnectionLimits,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let unreadable = limits.unreadable;
    // hyper's HTTP/1 parser lets through what RFC 9112 refuses (`chunked`
    // twice, a head without `Host`): such a request is answered as `http1`
    // answers it, and the connection closed after it.
    let checked = tower::service_fn(move |request: Request<Body>| {
        let app = app.clone();
        async move {
            if let Err(why) = framing::check(request.version(), request.headers()) {
                let mut refusal = unreadable(why);
                refusal
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                return Ok(refusal);
            }
            app.oneshot(request).await
        }
    });
    let service = checked.map_request(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.map(Body::new)
    });
    let connection = builder
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return ended(result, peer),
        // Streams and polls end on the same token; the server's grace
        // bounds the rest.
        () = shutdown.cancelled() => {}
    }
    connection.as_mut().graceful_shutdown();
    ended(connection.await, peer);
}

fn ended<E: std::fmt::Display>(result: Result<(), E>, peer: SocketAddr) {
    if let Err(error) = result {
        debug!(%error, %peer, "connection ended with an error");
    }
}
