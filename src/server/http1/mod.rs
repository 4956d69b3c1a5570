//! Cleartext HTTP/1.1 connections, served without hyper for as long as
//! they ask only for what this module does.
//!
//! An open stream or a waiting poll is most of what a busy server holds:
//! one per member, idle for minutes. hyper keeps a read and a write buffer
//! of 8 KiB each for the life of every HTTP/1 connection, more than
//! everything else an idle member costs put together, and a browser opens
//! a member's stream on the connection that carried its join. So every
//! cleartext connection starts here, and each request on it goes the same
//! way: the head is parsed by `httparse` (hyper's own parser), a body is
//! read by its `Content-Length`, the request goes through the same router
//! as every other, and the answer is written straight to the socket. A
//! connection waiting for its next request, or for the answer to a poll,
//! holds no buffer at all. An answer of unknown length (an inbox stream) is
//! written chunked and is the connection's last.
//!
//! Whatever else HTTP/1.1 allows goes to hyper, with the rest of the
//! connection and the bytes already read: HTTP/2 and HTTP/1.0, `HEAD`,
//! `CONNECT`, upgrades, chunked request bodies, an `Expect` other than
//! `100-continue`, a body over the payload limit (the router's 413 then
//! comes through hyper). Once there, the connection stays hyper's. A head
//! over `--max-header-bytes`, one that no server could parse, or one not
//! sent in time is answered here, as problem+json like every error, and
//! the connection closed.

mod read;
mod rewind;
mod socket;
mod stream;
mod write;

use std::net::SocketAddr;
use std::pin::Pin;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use self::read::read_request;
pub use self::rewind::Rewind;
pub(super) use self::socket::poll_read_some;
pub use self::socket::{Socket, TlsSocket};
use self::stream::StreamBody;
use self::write::answer;
pub(super) use self::write::date;
use super::{App, ConnectionLimits};

/// How a connection served here ended.
pub enum Ended<S> {
    /// It is closed, or the client went away.
    Closed,
    /// It needs hyper from here on: the socket, with what was read from it
    /// and not used.
    Hyper(Bytes, S),
}

/// Serves requests on `socket` until it closes, a stream takes it over, or
/// a request needs hyper.
pub async fn serve<S: Socket>(
    mut socket: S,
    peer: SocketAddr,
    app: &mut impl App,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
) -> Ended<S> {
    let mut read = BytesMut::new();
    // Boxed, once for all the connection's requests, and gone before a
    // stream starts: what this future holds lives as long as the member's
    // stream, so it is only the socket and what the stream's loop needs.
    let last = Box::pin(async {
        let mut timer = std::pin::pin!(tokio::time::sleep(limits.header_timeout));
        loop {
            let timer = timer.as_mut();
            match exchange(&mut socket, &mut read, peer, app, limits, shutdown, timer).await {
                Next::KeepAlive => {}
                last => return last,
            }
        }
    })
    .await;
    let body = match last {
        // The loop above ends on anything but `KeepAlive`.
        Next::KeepAlive | Next::Gone => return Ended::Closed,
        Next::Close => {
            // A shutdown of a TCP socket does not wait; TLS's close_notify
            // waits no longer than a write may.
            let _ = tokio::time::timeout(limits.write_timeout, socket.shutdown()).await;
            return Ended::Closed;
        }
        Next::Hyper => return Ended::Hyper(read.freeze(), socket),
        Next::Stream(body) => body,
    };
    StreamBody::new(socket, body, limits.write_timeout).await;
    Ended::Closed
}

/// What is next for a connection after one request.
enum Next {
    /// Its next request.
    KeepAlive,
    /// Closing: the answer said so, or the server is shutting down.
    Close,
    /// The client went away, or did not send its request in time (and
    /// was told so).
    Gone,
    /// hyper, for what this module does not do.
    Hyper,
    /// The answer's body, to be streamed as chunks until it ends.
    Stream(Body),
}

/// Reads one request, answers it, and says what comes next.
async fn exchange<S: Socket>(
    socket: &mut S,
    read: &mut BytesMut,
    peer: SocketAddr,
    app: &mut impl App,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
    timer: Pin<&mut Sleep>,
) -> Next {
    let (request, close) = match read_request(socket, read, peer, limits, shutdown, timer).await {
        Ok(read) => read,
        Err(NotRead::Gone) => return Next::Gone,
        Err(NotRead::Hyper) => return Next::Hyper,
    };
    // Nothing more of this connection is needed until the answer: holding
    // no buffer while a poll waits is most of what this module is for.
    if read.is_empty() {
        *read = BytesMut::new();
    }
    let answering = match app.ready().await {
        Ok(app) => app.call(request),
        Err(never) => match never {},
    };
    let response = tokio::select! {
        biased;
        response = answering => match response {
            Ok(response) => response,
            Err(never) => match never {},
        },
        // A poll may wait for a minute; the client may not.
        () = socket.closed(read) => return Next::Gone,
    };
    answer(
        socket,
        response,
        close || shutdown.is_cancelled(),
        limits.write_timeout,
    )
    .await
}

/// Why no request was read.
enum NotRead {
    /// The client went away, or sent too little too slowly.
    Gone,
    /// It sent something for hyper, all of it still in `read`.
    Hyper,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// A client reading 4 KiB every half second, until the end: all it got.
    pub(super) async fn read_slowly(mut client: tokio::io::DuplexStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut piece = [0; 4096];
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match client.read(&mut piece).await {
                Ok(0) | Err(_) => return got,
                Ok(n) => got.extend_from_slice(&piece[..n]),
            }
        }
    }
}
