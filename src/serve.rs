//! The accept loop: one task per accepted socket, served by `http1` while
//! it speaks plain HTTP/1.1 and by hyper otherwise (TLS, HTTP/2, the rest
//! of HTTP/1.1), with what `axum::serve` does not offer: a bound on the
//! request head and on the time to send it (slow-loris), a cutoff for
//! clients that stop reading, `TCP_NODELAY`, the peer address for
//! per-client limits, and a graceful shutdown with a hard deadline.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::http1::{self, Ended, Rewind};
use tower::ServiceExt;
use tracing::{debug, warn};

/// How connections are served.
#[derive(Clone)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
    /// The largest request body served outside hyper (`--payload-limit`):
    /// a larger one goes to hyper, through which the router refuses it.
    pub max_body: usize,
    /// How long a write to a client may stay blocked before the connection
    /// is dropped.
    pub write_timeout: Duration,
    /// After shutdown starts, how long open connections get to finish.
    pub grace: Duration,
    /// With `--tls-cert`: every connection is TLS, served by hyper.
    pub tls: Option<TlsAcceptor>,
}

/// Serves `app` on `listener` until `shutdown`; then stops accepting, lets
/// the connections finish (streams end on the same token), and returns
/// after at most `limits.grace`.
pub async fn serve(
    listener: TcpListener,
    app: App,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    // Shared, not cloned into every connection's task: the task of an open
    // stream lives as long as the stream, and a builder is 240 bytes.
    let builder = Arc::new(builder);
    let limits = Arc::new(limits);
    let graceful = GracefulShutdown::new();
    // Every connection's task, so that shutdown waits for those hyper does
    // not know of: the ones served by `http1`.
    let connections = TaskTracker::new();

    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, mostly: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Small SSE writes must leave at once, not wait for the peer's delayed ACK.
        if let Err(error) = socket.set_nodelay(true) {
            debug!(%error, "could not set TCP_NODELAY");
        }
        let app = app.clone();
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let limits = Arc::clone(&limits);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            if let Some(acceptor) = &limits.tls {
                Box::pin(serve_tls(
                    socket, peer, app, &builder, watcher, &limits, acceptor,
                ))
                .await;
                return;
            }
            let mut app = app;
            let ended = Box::pin(http1::serve(socket, peer, &mut app, &limits, &shutdown)).await;
            if let Ended::Hyper(read, socket) = ended {
                let io = Rewind::new(read, timed(socket, &limits));
                Box::pin(serve_io(
                    io,
                    peer,
                    app,
                    &builder,
                    watcher,
                    limits.header_timeout,
                ))
                .await;
            }
        });
    }

    drop(listener);
    connections.close();
    let everything = async {
        graceful.shutdown().await;
        connections.wait().await;
    };
    tokio::select! {
        () = everything => {}
        () = tokio::time::sleep(limits.grace) => warn!("connections still open after the shutdown grace; closing them"),
    }
}

/// A TCP socket that gives up on a write blocked for `write_timeout`.
///
/// A client that stops reading would otherwise hold its connection, and
/// the inbox events written into it, for as long as it likes. The stream's
/// events stay held for a resume; the buffers between it and the client
/// stay bounded by `max_buf_size` and the kernel.
fn timed(socket: TcpStream, limits: &ConnectionLimits) -> Pin<Box<TimeoutStream<TcpStream>>> {
    let mut socket = TimeoutStream::new(socket);
    socket.set_write_timeout(Some(limits.write_timeout));
    Box::pin(socket)
}

/// Serves a TLS connection with hyper, HTTP/2 or HTTP/1.1 as ALPN chose,
/// once the handshake is done within the header timeout.
async fn serve_tls(
    socket: TcpStream,
    peer: SocketAddr,
    app: App,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    limits: &ConnectionLimits,
    acceptor: &TlsAcceptor,
) {
    let handshake = acceptor.accept(timed(socket, limits));
    let stream = match tokio::time::timeout(limits.header_timeout, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return debug!(%error, %peer, "TLS handshake failed"),
        Err(_) => return debug!(%peer, "TLS handshake too slow"),
    };
    serve_io(stream, peer, app, builder, watcher, limits.header_timeout).await;
}

async fn serve_io<IO>(
    io: IO,
    peer: SocketAddr,
    app: App,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
    header_timeout: Duration,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let asked = Arc::new(AtomicBool::new(false));
    let service = app.map_request({
        let asked = Arc::clone(&asked);
        move |mut request: hyper::Request<Incoming>| {
            asked.store(true, Ordering::Relaxed);
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(axum::body::Body::new)
        }
    });
    let connection =
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service));
    // hyper gives an HTTP/2 connection no deadline for its preface or its
    // first request: a client that connects and sends nothing more would
    // hold the connection for good. HTTP/1 has `header_read_timeout`.
    let silent = async {
        tokio::time::sleep(header_timeout).await;
        if asked.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = watcher.watch(connection) => {
            if let Err(error) = result {
                debug!(%error, %peer, "connection ended with an error");
            }
        }
        () = silent => debug!(%peer, "no request within the header timeout; closing"),
    }
}

/// The address of the client that sent a request, as the accept loop saw it.
pub fn peer(request_extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    request_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}
