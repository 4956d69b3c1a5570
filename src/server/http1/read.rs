//! Reading a request: its head within the header timeout, parsed by
//! httparse; its body by its `Content-Length`; and the refusal of what no
//! server could read.

use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Request, Uri, Version};
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::socket::{Socket, read_some};
use super::write::{answer, send};
use super::{Next, NotRead};
use crate::server::framing::{self, BodyLength};
use crate::server::{ConnectionLimits, Unreadable};

/// The most header lines a request may have, as in hyper.
const MAX_HEADERS: usize = 100;

/// The end of a head: a line feed, then an empty line. Every head ends
/// so, whether its lines end `\r\n` or, typed by hand (`nc`), a bare `\n`
/// (RFC 9112 §2.2 lets a server take either); httparse reads both, as
/// hyper does. The length of the head, blank line included, or `None`.
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    memchr::memchr_iter(b'\n', &bytes[from..]).find_map(|at| {
        let at = from + at;
        match &bytes[at + 1..] {
            [b'\n', ..] => Some(at + 2),
            [b'\r', b'\n', ..] => Some(at + 3),
            _ => None,
        }
    })
}

/// Reads the next request's head, and its body if it has one: the request,
/// and whether the client asked to close the connection after it.
pub(super) async fn read_request<S: Socket>(
    socket: &mut S,
    read: &mut BytesMut,
    peer: SocketAddr,
    limits: &ConnectionLimits,
    shutdown: &CancellationToken,
    mut timer: Pin<&mut Sleep>,
) -> Result<(Request<Body>, bool), NotRead> {
    // The whole head within the header timeout, counted from the end of
    // the last answer: an idle connection is closed after it, as hyper
    // closes its own.
    let deadline = Instant::now() + limits.header_timeout;
    let mut searched = 0;
    let head_len = loop {
        if let Some(end) = head_end(read, searched) {
            break end;
        }
        if read.len() >= limits.max_header_bytes {
            return Err(refuse(socket, head_too_large(limits), limits).await);
        }
        // A blank line may straddle two reads.
        searched = read.len().saturating_sub(3);
        if !fill(socket, read, deadline, timer.as_mut(), Some(shutdown)).await {
            // A connection idle between requests just closes.
            if !read.is_empty() {
                too_slow(socket, deadline, limits).await;
            }
            return Err(NotRead::Gone);
        }
    };
    // One read may bring more than the limit.
    if head_len > limits.max_header_bytes {
        return Err(refuse(socket, head_too_large(limits), limits).await);
    }
    // Everything read so far, as bytes the request's parts can share.
    let bytes = read.split().freeze();
    let head = match take_head(&bytes, peer, limits.max_body) {
        Ok(head) => head,
        Err(NotHead::Hyper) => {
            let mut all = BytesMut::from(&bytes[..]);
            all.extend_from_slice(read);
            *read = all;
            return Err(NotRead::Hyper);
        }
        Err(NotHead::Malformed(httparse::Error::TooManyHeaders)) => {
            return Err(refuse(socket, head_too_large(limits), limits).await);
        }
        Err(NotHead::Malformed(_)) => {
            return Err(refuse(socket, Unreadable::Malformed, limits).await);
        }
        Err(NotHead::Refused(why)) => return Err(refuse(socket, why, limits).await),
    };
    let (mut request, body_len) = (head.request, head.body_len);
    let after = bytes.slice(head.len..);
    if after.len() >= body_len {
        // The usual case: the body came with the head.
        *request.body_mut() = Body::from(after.slice(..body_len));
        read.extend_from_slice(&after[body_len..]);
        return Ok((request, head.close));
    }
    read.extend_from_slice(&after);
    if head.continue_first {
        let sent = send(
            socket,
            &b"HTTP/1.1 100 Continue\r\n\r\n"[..],
            limits.write_timeout,
        )
        .await;
        if !sent {
            return Err(NotRead::Gone);
        }
    }
    // The body gets a header timeout of its own.
    let deadline = Instant::now() + limits.header_timeout;
    while read.len() < body_len {
        if !fill(socket, read, deadline, timer.as_mut(), None).await {
            too_slow(socket, deadline, limits).await;
            return Err(NotRead::Gone);
        }
    }
    *request.body_mut() = Body::from(read.split_to(body_len).freeze());
    Ok((request, head.close))
}

/// Says 408, as hyper does, when a request begun was not finished by
/// `deadline` (rather than cut off by the client); the connection closes
/// after it either way.
async fn too_slow(socket: &mut impl Socket, deadline: Instant, limits: &ConnectionLimits) {
    if Instant::now() >= deadline {
        refuse(socket, Unreadable::TooSlow, limits).await;
    }
}

fn head_too_large(limits: &ConnectionLimits) -> Unreadable {
    Unreadable::HeadTooLarge {
        limit: limits.max_header_bytes,
    }
}

/// Answers a request that cannot be read, as problem+json like every
/// error, and closes the connection: what follows the bad bytes cannot be
/// told apart from them.
async fn refuse(socket: &mut impl Socket, why: Unreadable, limits: &ConnectionLimits) -> NotRead {
    let refusal = (limits.unreadable)(why);
    if matches!(
        answer(socket, refusal, true, limits.write_timeout).await,
        Next::Gone
    ) {
        return NotRead::Gone;
    }
    // A socket closed with bytes unread is reset, and the reset can reach
    // the client before it has read the answer: say that nothing more
    // comes, then take in what the client still sends, for a moment.
    let deadline = Instant::now() + LINGER;
    let _ = tokio::time::timeout_at(deadline, socket.shutdown()).await;
    let mut scratch = [0; 4096];
    for _ in 0..LINGER_READS {
        match tokio::time::timeout_at(
            deadline,
            tokio::io::AsyncReadExt::read(socket, &mut scratch),
        )
        .await
        {
            Ok(Ok(read)) if read > 0 => {}
            _ => break,
        }
    }
    NotRead::Gone
}

/// How long, and for how many reads, a refused client's remaining bytes
/// are taken in before its connection closes.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_READS: usize = 64;

/// Reads what the client has sent into `read`; false when it sent nothing
/// more before `deadline`, has gone, or (with `shutdown`, while no request
/// has begun) the server is shutting down.
async fn fill(
    socket: &mut impl Socket,
    read: &mut BytesMut,
    deadline: Instant,
    timer: Pin<&mut Sleep>,
    shutdown: Option<&CancellationToken>,
) -> bool {
    let shutdown = shutdown.filter(|_| read.is_empty());
    tokio::select! {
        biased;
        got = read_some(socket, read) => got,
        () = async {
            match shutdown {
                Some(shutdown) => shutdown.cancelled().await,
                None => std::future::pending().await,
            }
        } => false,
        () = passed(timer, deadline) => false,
    }
}

/// Ready once `deadline` has passed. `timer` is the connection's one timer
/// for it, for all its requests: it is moved only when it fires before the
/// deadline of the request being read. A timer of its own for every
/// request was an insertion into tokio's timer wheel, and a removal, for
/// every request.
async fn passed(mut timer: Pin<&mut Sleep>, deadline: Instant) {
    loop {
        timer.as_mut().await;
        if timer.deadline() >= deadline {
            return;
        }
        timer.as_mut().reset(deadline);
    }
}

/// A request whose head has been read; its body, if it has one, not yet.
struct Head {
    request: Request<Body>,
    /// The head's length, blank line included.
    len: usize,
    body_len: usize,
    /// `Expect: 100-continue`: the client waits for a word before the body.
    continue_first: bool,
    /// `Connection: close`.
    close: bool,
}

/// The request whose head starts `bytes`, with its path and header values
/// sharing them; `None` for anything this module leaves to hyper.
fn take_head(bytes: &Bytes, peer: SocketAddr, max_body: usize) -> Result<Head, NotHead> {
    let mut lines = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(bytes, &mut lines) {
        Ok(httparse::Status::Complete(len)) => len,
        // HTTP/2 with prior knowledge: `serve_http1` hands it to `http2`.
        Err(httparse::Error::Version) if crate::server::http2::is_preface(bytes) => {
            return Err(NotHead::Hyper);
        }
        // hyper's parser, as hyper configures it: what it refuses, hyper
        // would refuse too, with no body to say why.
        Err(error) => return Err(NotHead::Malformed(error)),
        // A blank line came before a whole head only if the head starts
        // with empty lines, which browsers do not send.
        Ok(httparse::Status::Partial) => return Err(NotHead::Hyper),
    };
    head(parsed, len, bytes, peer, max_body)
}

/// Why `take_head` made no request of a head.
enum NotHead {
    /// It is something for hyper.
    Hyper,
    /// No server could read it.
    Malformed(httparse::Error),
    /// It breaks RFC 9112's rules for `Host` or the body's length.
    Refused(Unreadable),
}

/// The request of a parsed head; `NotHead::Hyper` when hyper is to serve
/// it, `NotHead::Refused` when it breaks RFC 9112 (`framing`), which is
/// judged here for what hyper would serve too.
fn head(
    parsed: httparse::Request<'_, '_>,
    len: usize,
    bytes: &Bytes,
    peer: SocketAddr,
    max_body: usize,
) -> Result<Head, NotHead> {
    let (Some(method), Some(path), Some(1)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(NotHead::Hyper);
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for line in parsed.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes()).map_err(|_| NotHead::Hyper)?;
        let value = HeaderValue::from_maybe_shared(bytes.slice_ref(line.value))
            .map_err(|_| NotHead::Hyper)?;
        headers.append(name, value);
    }
    let body_len = match framing::check(Version::HTTP_11, &headers).map_err(NotHead::Refused)? {
        BodyLength::None => 0,
        BodyLength::Length(len) => usize::try_from(len)
            .ok()
            .filter(|&len| len <= max_body)
            .ok_or(NotHead::Hyper)?,
        BodyLength::Chunked => return Err(NotHead::Hyper),
    };
    let method = Method::from_bytes(method.as_bytes())
        .ok()
        .filter(|method| method != Method::HEAD && method != Method::CONNECT)
        .ok_or(NotHead::Hyper)?;
    if headers.contains_key(header::UPGRADE) {
        return Err(NotHead::Hyper);
    }
    let continue_first = match headers.get(header::EXPECT) {
        Some(value) if value.as_bytes().eq_ignore_ascii_case(b"100-continue") => true,
        Some(_) => return Err(NotHead::Hyper),
        None => false,
    };
    let close = headers.get_all(header::CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&byte| byte == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() =
        Uri::from_maybe_shared(bytes.slice_ref(path.as_bytes())).map_err(|_| NotHead::Hyper)?;
    *request.headers_mut() = headers;
    request.extensions_mut().insert(ConnectInfo(peer));
    Ok(Head {
        request,
        len,
        body_len,
        continue_first: continue_first && body_len > 0,
        close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);

    fn take(bytes: &str) -> Option<Head> {
        take_head(&Bytes::copy_from_slice(bytes.as_bytes()), PEER, 100).ok()
    }

    fn malformed(bytes: &str) -> Option<httparse::Error> {
        match take_head(&Bytes::copy_from_slice(bytes.as_bytes()), PEER, 100) {
            Err(NotHead::Malformed(error)) => Some(error),
            Ok(_) | Err(NotHead::Hyper | NotHead::Refused(_)) => None,
        }
    }

    #[test]
    fn a_head_becomes_the_request_and_what_follows_it_is_not_taken() {
        let text = "POST /rooms/a/join?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nX-Two: a\r\nx-two: b\r\nConnection: keep-alive, Close\r\n\r\n";
        let head = take(&format!("{text}{{}}GET")).expect("a head");
        assert_eq!(head.len, text.len());
        assert_eq!(head.request.method(), Method::POST);
        assert_eq!(head.request.uri().path(), "/rooms/a/join");
        assert_eq!(head.request.uri().query(), Some("x=1"));
        let twos: Vec<_> = head.request.headers().get_all("x-two").iter().collect();
        assert_eq!(twos, ["a", "b"]);
        assert_eq!(head.body_len, 2);
        assert!(head.close);
        assert!(!head.continue_first);
        assert_eq!(
            head.request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
            Some(PEER)
        );
    }

    #[test]
    fn what_this_path_does_not_do_is_left_to_hyper() {
        for head in [
            "GET / HTTP/1.0\r\n\r\n",
            "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
            "CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "\r\n\r\nGET / HTTP/1.1\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nExpect: something-else\r\nContent-Length: 2\r\n\r\n",
        ] {
            assert!(take(head).is_none(), "{head:?}");
            assert!(malformed(head).is_none(), "{head:?}");
        }
    }

    #[test]
    fn what_no_server_could_read_is_malformed() {
        for head in [
            "not http at all\r\n\r\n",
            "GET / HTTP/1.1\r\nX Space: v\r\n\r\n",
            "GET / HTTP/1.1\r\nx-folded: a\r\n b\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
        ] {
            assert!(malformed(head).is_some(), "{head:?}");
        }
        let many: String = (0..=MAX_HEADERS)
            .map(|at| format!("x-{at}: v\r\n"))
            .collect();
        assert_eq!(
            malformed(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Some(httparse::Error::TooManyHeaders)
        );
    }

    #[test]
    fn what_breaks_rfc_9112_is_refused_here_and_never_reaches_hyper() {
        for head in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +2\r\n\r\n{}",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HEAD / HTTP/1.1\r\n\r\n",
        ] {
            let taken = take_head(&Bytes::copy_from_slice(head.as_bytes()), PEER, 100);
            assert!(matches!(taken, Err(NotHead::Refused(_))), "{head:?}");
        }
    }

    #[test]
    fn a_head_ends_at_its_first_empty_line_whatever_ends_its_lines() {
        for (bytes, end) in [
            (&b"GET / HTTP/1.1\r\nHost: h\r\n\r\nnext"[..], Some(27)),
            (b"GET / HTTP/1.1\nHost: h\n\nnext", Some(24)),
            (b"GET / HTTP/1.1\r\nHost: h\n\r\nnext", Some(26)),
            (b"GET / HTTP/1.1\r\nHost: h\r\n\n", Some(26)),
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r", None),
            (b"GET / HTTP/1.1\r\nHost: h\r\n", None),
        ] {
            assert_eq!(
                head_end(bytes, 0),
                end,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn a_client_that_expects_100_continue_gets_it_only_for_a_body() {
        let head =
            take("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n");
        assert!(head.is_some_and(|head| head.continue_first));
        let head =
            take("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n");
        assert!(head.is_some_and(|head| !head.continue_first));
    }
}
