//! Connections hyper serves: the HTTP/1.1 that `http1` hands over (HTTP/1.0,
//! `HEAD`, upgrades, chunked bodies); and the TLS handshake before any
//! connection. A connection with nothing under way for the header timeout
//! is closed (`Activity`), as `http1` and `http2` close their own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Request};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
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
    let header_timeout = limits.header_timeout;
    let activity = Arc::new(Activity::new());
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
    let service = checked
        .map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(Body::new)
        })
        .map_future({
            let activity = Arc::clone(&activity);
            move |answering| {
                let busy = Busy::new(&activity);
                async move {
                    let response = answering.await?;
                    // Busy until the answer's body is written or dropped:
                    // an open stream or a waiting poll keeps its
                    // connection.
                    Ok::<_, Infallible>(
                        response.map(|body| Body::new(Tracked { body, _busy: busy })),
                    )
                }
            }
        });
    let connection = builder
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let idle = activity.idle_for(header_timeout);
    let stopping = shutdown.cancelled();
    // Either asks the connection to finish what is under way and close.
    let close = tokio::select! {
        result = connection.as_mut() => return ended(result, peer),
        () = idle => {
            debug!(%peer, "nothing under way for the header timeout; closing");
            // Nothing is under way: what is left to write gets no more
            // than this.
            Some(header_timeout)
        }
        // Streams and polls end on the same token; the server's grace
        // bounds the rest.
        () = stopping => None,
    };
    connection.as_mut().graceful_shutdown();
    match close {
        Some(cutoff) => {
            if let Ok(result) = tokio::time::timeout(cutoff, connection).await {
                ended(result, peer);
            }
        }
        None => ended(connection.await, peer),
    }
}

fn ended<E: std::fmt::Display>(result: Result<(), E>, peer: SocketAddr) {
    if let Err(error) = result {
        debug!(%error, %peer, "connection ended with an error");
    }
}

/// The requests under way on one connection that hyper serves, and since
/// when it has had none.
///
/// hyper's header timeout bounds a head once it has begun; a kept-alive
/// connection waiting for its next request is held by this instead: idle
/// for the header timeout, it is closed, as `http1` closes its own.
struct Activity {
    busy: AtomicUsize,
    /// When a request last ended (so, when `busy` is 0, since when it has
    /// been), as time since `start`.
    idle_since: AtomicU64,
    start: Instant,
    /// Told when `busy` falls to 0.
    ended: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            start: Instant::now(),
            ended: Notify::new(),
        }
    }

    fn idle_since(&self) -> Instant {
        self.start + Duration::from_micros(self.idle_since.load(Ordering::Relaxed))
    }

    /// Ready once nothing has been under way for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            if self.busy.load(Ordering::Acquire) > 0 {
                // A permit is kept if the last one ends before this waits.
                self.ended.notified().await;
                continue;
            }
            let due = self.idle_since() + timeout;
            if Instant::now() >= due {
                return;
            }
            // A request that comes and ends meanwhile moves `idle_since`.
            tokio::time::sleep_until(due).await;
        }
    }
}

/// One request under way, from its call until its answer's body is done.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        // The time first, so that whoever sees `busy` at 0 sees it too.
        let now = u64::try_from(activity.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        activity.idle_since.store(now, Ordering::Relaxed);
        if activity.busy.fetch_sub(1, Ordering::Release) == 1 {
            activity.ended.notify_one();
        }
    }
}

/// An answer's body, and its request's place among the busy ones.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
