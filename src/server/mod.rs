//! The connection layer: bytes in, requests to the application, answers
//! out. It knows the application only as a tower `Service` (`App`), and
//! nothing of routes, state or problem+json.
//!
//! The accept loop here gives each accepted socket a task, served by
//! `http1` while it speaks HTTP/1.1 (cleartext, or TLS whose ALPN chose
//! it), by `http2` when it speaks HTTP/2 (TLS whose ALPN chose it, or
//! cleartext with prior knowledge), and by hyper for the rest of HTTP/1.1
//! (`hyper_conn`), with what `axum::serve` does not offer: a bound on the
//! request head and on the time to send it (slow-loris), a cutoff for
//! clients that stop reading, `TCP_NODELAY`, the peer address for
//! per-client limits, and a graceful shutdown with a hard deadline. `tls`
//! makes the rustls configuration.

mod framing;
mod http1;
mod http2;
mod hyper_conn;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use bytes::Bytes;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};
use tokio_io_timeout::TimeoutStream;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;
use tracing::{debug, warn};

use self::http1::{Ended, Rewind, Socket};
use self::hyper_conn::{handshake, serve_io};

/// What the server serves: the application, as a service from a request to
/// its answer that never fails (a failure is an answer too). Cloned for
/// every connection.
pub trait App:
    Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> App for S where
    S: Service<
            Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A request the server cannot read, answered by the server itself: there
/// is no request to route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// The head is not HTTP/1.1 any server could read.
    Malformed,
    /// The head is larger than `--max-header-bytes`.
    HeadTooLarge { limit: usize },
    /// The head or body was not sent within the header timeout.
    TooSlow,
    /// RFC 9112 §3.2: no `Host`, two, or one that names no host.
    BadHost(&'static str),
    /// RFC 9112 §6: no single way to tell where the body ends.
    BadFraming(&'static str),
    /// A transfer coding other than `chunked`, which nothing here undoes
    /// (RFC 9112 §6.1: 501).
    UnknownCoding,
}

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
    pub tls: Option<Arc<ServerConfig>>,
    /// The answer to a request that cannot be read. The application says
    /// how its errors read; this layer only when to say one.
    pub unreadable: fn(Unreadable) -> Response<Body>,
}

/// Serves `app` on `listener` until `shutdown`; then stops accepting, lets
/// the connections finish (streams end on the same token), and returns
/// after at most `limits.grace`.
pub async fn serve(
    listener: TcpListener,
    app: impl App,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let mut builder = Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes);
    // Shared, not cloned into every connection's task: the task of an open
    // stream lives as long as the stream, and a builder is 240 bytes.
    let builder = Arc::new(builder);
    let limits = Arc::new(limits);
    // Every connection's task, so that shutdown waits for them all.
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
        let limits = Arc::clone(&limits);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            match &limits.tls {
                Some(config) => {
                    Box::pin(serve_tls(
                        socket, config, peer, app, &builder, &limits, &shutdown,
                    ))
                    .await;
                }
                None => {
                    Box::pin(serve_http1(socket, peer, app, &builder, &limits, &shutdown)).await;
                }
            }
        });
    }

    drop(listener);
    connections.close();
    tokio::select! {
        () = connections.wait() => {}
        () = tokio::time::sleep(limits.grace) => warn!("connections still open after the shutdown grace; closing them"),
    }
}

/// A TLS connection: HTTP/2 if ALPN chose it; HTTP/1.1 as on cleartext.
/// Either way an idle member over HTTPS costs what it costs in cleartext,
/// and TLS's own state.
async fn serve_tls(
    socket: TcpStream,
    config: &Arc<ServerConfig>,
    peer: SocketAddr,
    app: impl App,
    builder: &Builder,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
) {
    let Some(stream) = Box::pin(handshake(socket, peer, limits, config)).await else {
        return;
    };
    if stream.alpn_protocol() == Some(b"h2") {
        Box::pin(http2::serve(
            stream,
            Bytes::new(),
            peer,
            app,
            limits,
            shutdown,
        ))
        .await;
        return;
    }
    serve_http1(stream, peer, app, builder, limits, shutdown).await;
}

/// An HTTP/1.1 connection, cleartext or TLS: `http1`'s until it needs
/// hyper, then hyper's, with the bytes already read; or `http2`'s, when
/// they are HTTP/2's preface.
async fn serve_http1<S: Socket>(
    socket: S,
    peer: SocketAddr,
    mut app: impl App,
    builder: &Builder,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
) {
    let ended = Box::pin(http1::serve(socket, peer, &mut app, limits, shutdown)).await;
    if let Ended::Hyper(read, socket) = ended {
        if http2::is_preface(&read) {
            Box::pin(http2::serve(socket, read, peer, app, limits, shutdown)).await;
            return;
        }
        let io = Rewind::new(read, timed(socket, limits));
        Box::pin(serve_io(io, peer, app, builder, shutdown, limits)).await;
    }
}

/// A connection for hyper that gives up on a write blocked for
/// `write_timeout`.
///
/// A client that stops reading would otherwise hold its connection, and
/// the inbox events written into it, for as long as it likes. The stream's
/// events stay held for a resume; the buffers between it and the client
/// stay bounded by `max_buf_size` and the kernel.
fn timed<S>(socket: S, limits: &ConnectionLimits) -> Pin<Box<TimeoutStream<S>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let mut socket = TimeoutStream::new(socket);
    socket.set_write_timeout(Some(limits.write_timeout));
    Box::pin(socket)
}
