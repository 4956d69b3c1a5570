//! The two ways a stream is served: on a connection whose first request it
//! is (the server's own lean path), and on a connection that served other
//! requests first (hyper). Both must look the same to a client, byte for
//! byte where HTTP/1.1 fixes it.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{DEADLINE, Joined, TestApp, spawn_app, spawn_app_with};

/// An HTTP/1.1 response read off a raw connection: status, headers, and the
/// body with the chunked framing undone, as far as it has arrived.
struct RawStream {
    socket: TcpStream,
    buffer: Vec<u8>,
    /// Event-stream text taken out of chunks, not yet read as events.
    events: String,
}

impl RawStream {
    async fn connect(app: &TestApp) -> RawStream {
        let socket = TcpStream::connect(app.addr)
            .await
            .expect("the server accepts connections");
        RawStream {
            socket,
            buffer: Vec::new(),
            events: String::new(),
        }
    }

    async fn send(&mut self, request: &str) {
        self.socket
            .write_all(request.as_bytes())
            .await
            .expect("the request is written");
    }

    /// Reads until `done` holds for what has arrived, or the connection ends.
    async fn read_until(&mut self, done: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut chunk = [0; 4096];
        while !done(&self.buffer) {
            let read = tokio::time::timeout_at(deadline, self.socket.read(&mut chunk))
                .await
                .expect("the server answered within the deadline")
                .expect("the connection reads");
            if read == 0 {
                return false;
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
        true
    }

    /// The status and headers (names lowercased) of the response.
    async fn head(&mut self) -> (u16, Vec<(String, String)>) {
        assert!(
            self.read_until(|bytes| find(bytes, b"\r\n\r\n").is_some())
                .await,
            "the response head arrives"
        );
        let end = find(&self.buffer, b"\r\n\r\n").expect("a complete head");
        let head = String::from_utf8(self.buffer[..end].to_vec()).expect("the head is text");
        self.buffer.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.strip_prefix("HTTP/1.1 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("an HTTP/1.1 status line: {head}"));
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').expect("a header line");
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        (status, headers)
    }

    /// The next chunk's data; `None` for the last, empty chunk.
    async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        assert!(
            self.read_until(|bytes| chunk_len(bytes).is_some()).await,
            "a chunk arrives before the connection ends"
        );
        let (size, header_len) = chunk_len(&self.buffer).expect("a chunk size line");
        let total = header_len + size + 2;
        assert!(
            self.read_until(|bytes| bytes.len() >= total).await,
            "the whole chunk arrives"
        );
        assert_eq!(
            &self.buffer[total - 2..total],
            b"\r\n",
            "a chunk ends in CRLF"
        );
        let data = self.buffer[header_len..header_len + size].to_vec();
        self.buffer.drain(..total);
        (size > 0).then_some(data)
    }

    /// Reads SSE events out of chunks until one named `name` is complete.
    async fn expect_event(&mut self, name: &str) -> Value {
        loop {
            while let Some(end) = self.events.find("\n\n") {
                let block: String = self.events.drain(..end + 2).collect();
                let mut event = "message";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event: ") {
                        event = value;
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        data.push_str(value);
                    }
                }
                if event == name {
                    return serde_json::from_str(&data).expect("event data is JSON");
                }
            }
            let chunk = self
                .next_chunk()
                .await
                .unwrap_or_else(|| panic!("the stream ended before `{name}`"));
            self.events
                .push_str(std::str::from_utf8(&chunk).expect("event-stream text"));
        }
    }

    /// The head of an open event stream, then its `ready` for `member`.
    async fn expect_stream_of(&mut self, member: &Joined) {
        let (status, headers) = self.head().await;
        assert_eq!(status, 200, "{headers:?}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/event-stream"),
            "{headers:?}"
        );
        assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
        assert_eq!(header(&headers, "x-accel-buffering"), Some("no"));
        assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
        let ready = self.expect_event("ready").await;
        assert_eq!(ready["member_id"], json!(member.member_id));
    }

    /// Whether the server closes the connection with nothing more to say.
    async fn ends(&mut self) -> bool {
        !self.read_until(|bytes| !bytes.is_empty()).await && self.buffer.is_empty()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The size of the chunk at the front of `bytes` and the length of its
/// size line, once the line has arrived.
fn chunk_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let end = find(bytes, b"\r\n")?;
    let text = std::str::from_utf8(&bytes[..end]).ok()?;
    let size = usize::from_str_radix(text.split(';').next()?.trim(), 16).ok()?;
    Some((size, end + 2))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn stream_request(member: &Joined, token: &str) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: signalpost.test\r\nAccept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n",
        member.events_url
    )
}

#[tokio::test]
async fn a_stream_that_opens_a_connection_is_a_chunked_event_stream_that_ends_cleanly() {
    let app = spawn_app().await;
    let alice = app.join("lean").await;
    let bob = app.join("lean").await;
    let mut stream = RawStream::connect(&app).await;
    stream.send(&stream_request(&alice, &alice.token)).await;
    stream.expect_stream_of(&alice).await;
    app.signal(&bob, Some(&alice), "offer", json!({"sdp": "v=0\r\n"}))
        .await;
    let signal = stream.expect_event("signal").await;
    assert_eq!(signal["payload"], json!({"sdp": "v=0\r\n"}));

    // Leaving ends the stream: the last chunk, then the connection closes.
    app.leave(&alice).await;
    while stream.next_chunk().await.is_some() {}
    assert!(
        stream.ends().await,
        "the connection closes after the last chunk"
    );
}

#[tokio::test]
async fn a_refused_stream_that_opens_a_connection_is_a_problem_json_answer() {
    let app = spawn_app().await;
    let alice = app.join("lean").await;
    let mut stream = RawStream::connect(&app).await;
    stream.send(&stream_request(&alice, "not-a-token")).await;
    let (status, headers) = stream.head().await;
    assert_eq!(status, 401);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/problem+json")
    );
    let mut body = Vec::new();
    while let Some(chunk) = stream.next_chunk().await {
        body.extend(chunk);
    }
    let problem: Value = serde_json::from_slice(&body).expect("a problem+json body");
    assert_eq!(problem["code"], json!("unauthorized"));
    assert!(stream.ends().await);
}

#[tokio::test]
async fn a_stream_on_a_connection_that_served_other_requests_looks_the_same() {
    let app = spawn_app().await;
    let alice = app.join("kept").await;
    let mut stream = RawStream::connect(&app).await;
    // One request first, so that hyper keeps the connection.
    stream
        .send(&format!(
            "GET /rooms/kept HTTP/1.1\r\nHost: signalpost.test\r\nAuthorization: Bearer {}\r\n\r\n",
            alice.token
        ))
        .await;
    let (status, headers) = stream.head().await;
    assert_eq!(status, 200);
    let length: usize = header(&headers, "content-length")
        .and_then(|value| value.parse().ok())
        .expect("the room answer has a length");
    assert!(stream.read_until(|bytes| bytes.len() >= length).await);
    stream.buffer.drain(..length);

    stream.send(&stream_request(&alice, &alice.token)).await;
    stream.expect_stream_of(&alice).await;
}

#[tokio::test]
async fn a_client_that_closes_its_stream_connection_gives_its_place_back() {
    let app = spawn_app_with(&["--max-streams", "1"]).await;
    let alice = app.join("lean").await;
    let bob = app.join("lean").await;
    let mut stream = RawStream::connect(&app).await;
    stream.send(&stream_request(&alice, &alice.token)).await;
    stream.expect_stream_of(&alice).await;

    drop(stream);
    let mut bob_events = app.open_events_when_a_place_is_free(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;
}

#[tokio::test]
async fn a_head_that_arrives_in_pieces_is_still_served() {
    let app = spawn_app().await;
    let alice = app.join("lean").await;
    let request = stream_request(&alice, &alice.token);
    let (first, rest) = request.split_at(20);
    let mut stream = RawStream::connect(&app).await;
    stream.send(first).await;
    // Whether the server looks at the first piece alone (and leaves the
    // connection to hyper) depends on scheduling; either way the stream
    // must open. The yield gives the server a chance to look early.
    tokio::task::yield_now().await;
    stream.send(rest).await;
    stream.expect_stream_of(&alice).await;
}
