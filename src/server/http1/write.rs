//! Writing an answer: its head (status, headers, `Date`, framing) and a
//! body of known length, vectored, with a timeout on each write.

use std::cell::RefCell;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, HttpBody};
use axum::http::header::{self};
use axum::http::response::Parts;
use axum::http::{Response, StatusCode};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use tokio_util::io::poll_write_buf;

use super::Next;
use super::socket::Socket;

/// Writes `response`'s head, and its body when its length is known; says
/// what comes next.
pub(super) async fn answer(
    socket: &mut impl Socket,
    response: Response<Body>,
    close: bool,
    write_timeout: Duration,
) -> Next {
    let (parts, body) = response.into_parts();
    let close = close
        || parts
            .headers
            .get(header::CONNECTION)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
    let (length, data) = if parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED
    {
        (Length::None, Bytes::new())
    } else if body.size_hint().exact().is_none() {
        // A stream: chunked, and the connection's last answer.
        let head = write_head(&parts, Length::Chunked, true);
        return if send(socket, &head[..], write_timeout).await {
            Next::Stream(body)
        } else {
            Next::Gone
        };
    } else {
        match whole(body).await {
            // The length said is the length written, whatever the hint was.
            Some(data) => (Length::Known(data.len() as u64), data),
            None => return Next::Gone,
        }
    };
    let head = write_head(&parts, length, close);
    match (
        send(socket, Buf::chain(&head[..], data), write_timeout).await,
        close,
    ) {
        (false, _) => Next::Gone,
        (true, true) => Next::Close,
        (true, false) => Next::KeepAlive,
    }
}

/// The whole of a body known to end soon; `None` if it fails.
async fn whole(body: Body) -> Option<Bytes> {
    let mut data = body.into_data_stream();
    let Some(first) = data.next().await else {
        return Some(Bytes::new());
    };
    let first = first.ok()?;
    let Some(second) = data.next().await else {
        // The usual case: one piece, not copied.
        return Some(first);
    };
    let mut joined = BytesMut::from(&first[..]);
    joined.extend_from_slice(&second.ok()?);
    while let Some(more) = data.next().await {
        joined.extend_from_slice(&more.ok()?);
    }
    Some(joined.freeze())
}

/// How an answer's body is delimited.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Length {
    /// No body (204, 304).
    None,
    Known(u64),
    Chunked,
}

/// The answer's head: its status line, the router's headers, `Date`, the
/// framing, and `Connection: close` when this answer is the last.
fn write_head(parts: &Parts, length: Length, close: bool) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if [
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
            header::CONNECTION,
            header::DATE,
        ]
        .contains(name)
        {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"date: ");
    DATE.with_borrow_mut(|date| head.extend_from_slice(date.now()));
    head.extend_from_slice(b"\r\n");
    match length {
        Length::None => {}
        Length::Known(length) => {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        Length::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if close {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Hands `with` the `Date` of an answer written now.
pub(in crate::server) fn date<R>(with: impl FnOnce(&[u8]) -> R) -> R {
    DATE.with_borrow_mut(|date| with(date.now()))
}

thread_local! {
    /// Formatting a date costs more than the rest of a head; it changes
    /// once a second.
    static DATE: RefCell<CachedDate> = const { RefCell::new(CachedDate { second: u64::MAX, text: [0; 29] }) };
}

/// The `Date` of answers written in `second`.
struct CachedDate {
    second: u64,
    text: [u8; 29],
}

impl CachedDate {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if second != self.second {
            let text = httpdate::fmt_http_date(now);
            if text.len() == self.text.len() {
                self.text.copy_from_slice(text.as_bytes());
                self.second = second;
            }
        }
        &self.text
    }
}

/// Writes all of `bytes`, vectored; false when the client is gone or has
/// read nothing for `write_timeout`. The timeout is for each write, not
/// the whole: a slow client that keeps reading gets a large answer whole.
pub(super) async fn send(
    writer: &mut (impl tokio::io::AsyncWrite + Unpin),
    mut bytes: impl Buf,
    write_timeout: Duration,
) -> bool {
    while bytes.has_remaining() {
        let write =
            std::future::poll_fn(|cx| poll_write_buf(Pin::new(&mut *writer), cx, &mut bytes));
        match tokio::time::timeout(write_timeout, write).await {
            Ok(Ok(written)) if written > 0 => {}
            _ => return false,
        }
    }
    // TLS takes what it cannot send at once into records of its own: out
    // with them too. A TCP socket holds nothing back, and its flush needs
    // no timer.
    let mut flush = std::pin::pin!(tokio::io::AsyncWriteExt::flush(writer));
    if let Some(flushed) = flush.as_mut().now_or_never() {
        return flushed.is_ok();
    }
    matches!(tokio::time::timeout(write_timeout, flush).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::http1::tests::read_slowly;
    use tokio::time::Instant;

    fn head_text(response: Response<Body>, length: Length, close: bool) -> String {
        let (parts, _) = response.into_parts();
        String::from_utf8(write_head(&parts, length, close)).expect("a head is text")
    }

    #[test]
    fn an_answer_head_frames_the_body_and_names_the_date() {
        let response = Response::builder()
            .status(StatusCode::ACCEPTED)
            .header("content-type", "application/json")
            .header("content-length", "999")
            .header("connection", "keep-alive")
            .body(Body::empty())
            .expect("a response");
        let text = head_text(response, Length::Known(12), false);
        let date = httpdate::fmt_http_date(SystemTime::now());
        assert!(
            text.starts_with("HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ndate: "),
            "{text}"
        );
        assert!(text.ends_with("\r\ncontent-length: 12\r\n\r\n"), "{text}");
        assert_eq!(text.matches("content-length").count(), 1, "{text}");
        assert!(!text.contains("keep-alive"), "{text}");
        // The date is this second's, or the next one's.
        let said = text
            .split("date: ")
            .nth(1)
            .and_then(|rest| rest.split("\r\n").next());
        let said = said.and_then(|said| httpdate::parse_http_date(said).ok());
        let now = httpdate::parse_http_date(&date).expect("a date");
        assert!(
            said.is_some_and(|said| said >= now && said <= now + Duration::from_secs(1)),
            "{text}"
        );
    }

    #[test]
    fn a_streamed_or_last_answer_says_so() {
        let response = || Response::new(Body::empty());
        let text = head_text(response(), Length::Chunked, true);
        assert!(
            text.ends_with("transfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
            "{text}"
        );
        let text = head_text(response(), Length::None, false);
        assert!(
            !text.contains("content-length") && !text.contains("transfer-encoding"),
            "{text}"
        );
    }

    /// What the writer holds back (TLS's records, here a `BufWriter`) goes
    /// out with the answer.
    #[tokio::test]
    async fn what_the_writer_holds_back_goes_out_with_the_answer() {
        use tokio::io::AsyncReadExt;
        let (server, mut client) = tokio::io::duplex(4096);
        let mut writer = tokio::io::BufWriter::new(server);
        assert!(
            send(
                &mut writer,
                &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
                Duration::from_secs(1)
            )
            .await
        );
        let mut got = [0; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut got))
            .await
            .expect("the answer went out")
            .expect("the client reads");
        assert_eq!(&got[..read], b"HTTP/1.1 204 No Content\r\n\r\n");
    }

    /// A slow reader is never stalled for the write timeout, though the
    /// whole answer takes far longer.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_gets_the_whole_answer() {
        let (mut server, client) = tokio::io::duplex(4096);
        let answer = vec![b'x'; 64 * 1024];
        let reader = tokio::spawn(read_slowly(client));
        let started = Instant::now();
        let sent = send(
            &mut server,
            Bytes::from(answer.clone()),
            Duration::from_secs(1),
        )
        .await;
        assert!(sent, "the answer is written");
        assert!(started.elapsed() > Duration::from_secs(5));
        drop(server);
        assert_eq!(reader.await.expect("the reader ends"), answer);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_is_cut_off_after_the_write_timeout() {
        let (mut server, _client) = tokio::io::duplex(4096);
        let sent = send(
            &mut server,
            Bytes::from(vec![b'x'; 64 * 1024]),
            Duration::from_secs(1),
        )
        .await;
        assert!(!sent);
    }
}
