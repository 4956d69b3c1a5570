//! What this module needs of a connection beyond reading and writing:
//! to wait for the client's next bytes without a buffer to read them into,
//! and to notice that the client has gone while an answer is prepared.
//! A plain TCP socket does both with the kernel's help; a TLS stream over
//! one asks its socket, and rustls for what it already holds.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::server::tls::LeanTls;

/// What a read asks the socket for at least: heads and bodies are mostly
/// well under it, so one read takes a whole request.
const READ_SIZE: usize = 4096;

/// A connection this module serves.
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready when a read would find something (or find the client gone).
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Ready when the client has closed its side of the connection. Bytes
    /// it sends meanwhile are the next request, sent early: they are kept
    /// (in `read`, or in the socket) and the connection is then not
    /// watched until it is read.
    fn closed(&mut self, read: &mut BytesMut) -> impl Future<Output = ()> + Send;
}

impl Socket for TcpStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    async fn closed(&mut self, _read: &mut BytesMut) {
        // A peek leaves the bytes in the kernel, and needs no buffer.
        let mut probe = [0; 1];
        match self.peek(&mut probe).await {
            Ok(0) | Err(_) => {}
            Ok(_) => std::future::pending().await,
        }
    }
}

/// A TLS connection, boxed: rustls's state is over a kilobyte, and the
/// futures that pass the connection on hold it once, not in each of their
/// places for it. This module times its writes itself.
pub type TlsSocket = Box<LeanTls>;

impl Socket for TlsSocket {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        LeanTls::poll_read_ready(self, cx)
    }

    async fn closed(&mut self, read: &mut BytesMut) {
        // Encrypted, the bytes cannot be peeked at: a close is a
        // close_notify or the end of the stream, and anything else is the
        // next request, kept in `read`.
        if read_some(self, read).await {
            std::future::pending::<()>().await;
        }
    }
}

/// Reads what the client sends next into `read`, which gets room only
/// once there is something to read: a connection waiting for its next
/// request holds no buffer. False when the client has gone.
pub(super) async fn read_some(socket: &mut impl Socket, read: &mut BytesMut) -> bool {
    std::future::poll_fn(|cx| poll_read_some(socket, cx, read)).await
}

/// `read_some`, polled: for a connection that waits on more than its
/// socket (`http2`).
pub(in crate::server) fn poll_read_some(
    socket: &mut impl Socket,
    cx: &mut Context<'_>,
    read: &mut BytesMut,
) -> Poll<bool> {
    loop {
        match socket.poll_read_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(false),
            Poll::Pending => return Poll::Pending,
        }
        read.reserve(READ_SIZE);
        // Through `poll_read`, not `try_read`: after a read that did not
        // fill the room, it forgets the socket's readiness, so the wait for
        // the next request goes to epoll rather than to one more read that
        // finds nothing, a system call per request.
        match tokio_util::io::poll_read_buf(Pin::new(&mut *socket), cx, read) {
            Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(false),
            Poll::Ready(Ok(_)) => return Poll::Ready(true),
            // Nothing after all (over TLS: only TLS's own records): wait
            // again, without the room.
            Poll::Pending => {
                if read.is_empty() {
                    *read = BytesMut::new();
                }
            }
        }
    }
}
