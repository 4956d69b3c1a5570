//! The server's own HTTP/2 (RFC 9113), frame by frame: cleartext with
//! prior knowledge, which is the path HTTPS takes after its handshake.
//! The frames are written and read here by hand, so that what a client
//! may get wrong can be sent, and what the server answers can be seen.

use bytes::{Buf, BufMut, BytesMut};
use loona_hpack::Decoder;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{DEADLINE, Joined, TestApp, spawn_app, spawn_app_with};
use crate::metrics::wait_for_sample;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const INITIAL_WINDOW_SIZE: u16 = 0x4;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const NO_ERROR: u32 = 0x0;
const PROTOCOL_ERROR: u32 = 0x1;
const REFUSED_STREAM: u32 = 0x7;

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().expect("four bytes"))
    }
}

/// A client of frames, over cleartext HTTP/2 with prior knowledge.
struct Raw {
    tcp: TcpStream,
    read: BytesMut,
    decoder: Decoder<'static>,
}

impl Raw {
    /// Connected, preface and empty SETTINGS sent, the server's SETTINGS
    /// and its acknowledgement of ours read.
    async fn connect(app: &TestApp) -> Raw {
        Raw::connect_with(app, &[]).await
    }

    /// Connected as `connect` does, with these SETTINGS of the client's.
    async fn connect_with(app: &TestApp, settings: &[(u16, u32)]) -> Raw {
        let mut raw = Raw::open(app).await;
        raw.write_raw(PREFACE).await;
        let mut payload = Vec::new();
        for (id, value) in settings {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        raw.send(SETTINGS, 0, 0, &payload).await;
        let settings = raw
            .expect(|frame| frame.kind == SETTINGS && frame.flags == 0)
            .await;
        raw.send(SETTINGS, ACK, 0, &[]).await;
        assert_eq!(settings.payload.len() % 6, 0);
        raw.expect(|frame| frame.kind == SETTINGS && frame.flags == ACK)
            .await;
        raw
    }

    async fn open(app: &TestApp) -> Raw {
        Raw {
            tcp: TcpStream::connect(app.addr)
                .await
                .expect("the server accepts"),
            read: BytesMut::new(),
            decoder: Decoder::new(),
        }
    }

    async fn write_raw(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("written");
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut frame = BytesMut::new();
        let len = u32::try_from(payload.len()).expect("a frame's length");
        frame.put_slice(&len.to_be_bytes()[1..]);
        frame.put_u8(kind);
        frame.put_u8(flags);
        frame.put_u32(stream);
        frame.put_slice(payload);
        self.write_raw(&frame).await;
    }

    /// A request's head on `stream`, in one HEADERS frame.
    async fn request(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) {
        let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
        self.send(HEADERS, flags, stream, &block(fields)).await;
    }

    /// The next frame; `None` once the server has closed the connection.
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if self.read.len() >= 9 {
                let len =
                    u32::from_be_bytes([0, self.read[0], self.read[1], self.read[2]]) as usize;
                if self.read.len() >= 9 + len {
                    let head = self.read.split_to(9);
                    let payload = self.read.split_to(len).to_vec();
                    return Some(Frame {
                        kind: head[3],
                        flags: head[4],
                        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]),
                        payload,
                    });
                }
            }
            let read = tokio::time::timeout(DEADLINE, self.tcp.read_buf(&mut self.read))
                .await
                .expect("the server writes or closes within the deadline");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Skips frames until one that `wanted` says is it.
    async fn expect(&mut self, wanted: impl Fn(&Frame) -> bool) -> Frame {
        loop {
            let frame = self.frame().await.expect("the connection stays open");
            if wanted(&frame) {
                return frame;
            }
        }
    }

    /// The answer on `stream`: its head's fields and its body.
    async fn answer(&mut self, stream: u32) -> (Vec<(String, String)>, Vec<u8>) {
        let head = self
            .expect(|frame| frame.stream == stream && frame.kind == HEADERS)
            .await;
        assert_ne!(head.flags & END_HEADERS, 0, "the head fits one frame");
        let fields = self
            .decoder
            .decode(&head.payload)
            .expect("the head decodes")
            .into_iter()
            .map(|(name, value)| {
                (
                    String::from_utf8(name).expect("UTF-8"),
                    String::from_utf8(value).expect("UTF-8"),
                )
            })
            .collect();
        let mut body = Vec::new();
        let mut ended = head.flags & END_STREAM != 0;
        while !ended {
            let frame = self
                .expect(|frame| frame.stream == stream && frame.kind == DATA)
                .await;
            body.extend_from_slice(&frame.payload);
            ended = frame.flags & END_STREAM != 0;
        }
        (fields, body)
    }

    /// Reads until the server closes, and says whether a GOAWAY with
    /// `code` came first.
    async fn expect_goaway_and_close(&mut self, code: u32) {
        let goaway = self.expect(|frame| frame.kind == GOAWAY).await;
        assert_eq!(goaway.code(), code, "GOAWAY's code");
        while let Some(frame) = self.frame().await {
            assert_ne!(frame.kind, HEADERS, "nothing new after GOAWAY: {frame:?}");
        }
    }
}

impl Raw {
    /// A `GET /healthz` on `stream`, answered 200: the connection goes on.
    async fn expect_served(&mut self, stream: u32) {
        self.request(stream, &get("/healthz"), true).await;
        let (fields, _) = self.answer(stream).await;
        assert_eq!(status(&fields), "200");
    }

    /// `member`'s inbox stream opened on stream 1, its head read.
    async fn open_inbox(&mut self, member: &Joined) -> Frame {
        let bearer = format!("Bearer {}", member.token);
        let mut fields = get(&member.events_url);
        fields.push(("authorization", &bearer));
        self.request(1, &fields, true).await;
        self.expect(|frame| frame.kind == HEADERS).await
    }

    /// The head of `member`'s `POST /signals` on stream 1, its body to
    /// follow; `extra` fields after the method's and the token's.
    async fn post_signal(&mut self, member: &Joined, extra: &[(&str, &str)]) {
        let bearer = format!("Bearer {}", member.token);
        let mut fields = get("/signals");
        fields[0].1 = "POST";
        fields.push(("authorization", &bearer));
        fields.extend_from_slice(extra);
        self.request(1, &fields, false).await;
    }
}

/// The `status` of a problem+json body.
fn problem_status(body: &[u8]) -> u64 {
    let problem: Value = serde_json::from_slice(body).expect("JSON");
    problem["status"].as_u64().expect("a status")
}

/// A header block of literals, as any HPACK decoder reads them.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, text: &str) {
        let mut len = text.len();
        if len < 127 {
            out.push(len as u8);
        } else {
            out.push(127);
            len -= 127;
            while len >= 128 {
                out.push((len % 128) as u8 | 0x80);
                len /= 128;
            }
            out.push(len as u8);
        }
        out.extend_from_slice(text.as_bytes());
    }
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        string(&mut out, name);
        string(&mut out, value);
    }
    out
}

fn get(path: &str) -> Vec<(&'static str, &str)> {
    vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", path),
    ]
}

fn status(fields: &[(String, String)]) -> &str {
    assert_eq!(fields[0].0, ":status", "the status comes first");
    &fields[0].1
}

fn header<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value.as_str())
}

#[tokio::test]
async fn a_request_is_answered_and_a_ping_acknowledged() {
    let app = spawn_app().await;
    let mut raw = Raw::connect(&app).await;

    raw.send(PING, 0, 0, b"12345678").await;
    let pong = raw.expect(|frame| frame.kind == PING).await;
    assert_eq!((pong.flags, &pong.payload[..]), (ACK, &b"12345678"[..]));

    raw.request(1, &get("/healthz"), true).await;
    let (fields, body) = raw.answer(1).await;
    assert_eq!(status(&fields), "200");
    assert!(header(&fields, "date").is_some_and(|date| date.ends_with("GMT")));
    assert_eq!(
        header(&fields, "content-length"),
        Some(body.len().to_string().as_str())
    );
    assert!(!fields.iter().any(|(name, _)| name == "connection"));

    // A HEAD's answer says the length and carries no body.
    let mut head = get("/healthz");
    head[0].1 = "HEAD";
    raw.request(3, &head, true).await;
    let answer = raw.expect(|frame| frame.stream == 3).await;
    assert_eq!(answer.kind, HEADERS);
    assert_ne!(answer.flags & END_STREAM, 0, "the head ends the stream");
}

#[tokio::test]
async fn a_malformed_request_resets_its_stream_and_the_connection_goes_on() {
    let app = spawn_app().await;
    let mut raw = Raw::connect(&app).await;

    let mut upper = get("/healthz");
    upper.push(("Accept", "*/*"));
    raw.request(1, &upper, true).await;
    let reset = raw.expect(|frame| frame.kind == RST_STREAM).await;
    assert_eq!((reset.stream, reset.code()), (1, PROTOCOL_ERROR));

    let mut hop = get("/healthz");
    hop.push(("connection", "keep-alive"));
    raw.request(3, &hop, true).await;
    let reset = raw.expect(|frame| frame.kind == RST_STREAM).await;
    assert_eq!((reset.stream, reset.code()), (3, PROTOCOL_ERROR));

    raw.expect_served(5).await;
}

#[tokio::test]
async fn a_head_over_the_limit_is_answered_431_even_split_in_continuations() {
    let app = spawn_app_with(&["--max-header-bytes", "8192"]).await;
    let mut raw = Raw::connect(&app).await;
    let big = "a".repeat(10_000);
    let mut fields = get("/healthz");
    fields.push(("x-big", &big));
    let whole = block(&fields);
    // The head in three frames: HEADERS and two CONTINUATIONs.
    let third = whole.len() / 3;
    raw.send(HEADERS, END_STREAM, 1, &whole[..third]).await;
    raw.send(CONTINUATION, 0, 1, &whole[third..2 * third]).await;
    raw.send(CONTINUATION, END_HEADERS, 1, &whole[2 * third..])
        .await;

    let (fields, body) = raw.answer(1).await;
    assert_eq!(status(&fields), "431");
    assert_eq!(
        header(&fields, "content-type"),
        Some("application/problem+json")
    );
    assert_eq!(problem_status(&body), 431);

    // The decoder kept step: the next request reads.
    raw.expect_served(3).await;
}

#[tokio::test]
async fn a_body_past_the_payload_limit_is_refused_413_and_the_connection_goes_on() {
    let app = spawn_app_with(&["--payload-limit", "4096"]).await;
    let alice = app.join("h2-body").await;
    let mut raw = Raw::connect(&app).await;
    raw.post_signal(&alice, &[("content-type", "application/json")])
        .await;
    let big = json!({ "payload": "x".repeat(20_000) }).to_string();
    for (at, part) in big.as_bytes().chunks(8_000).enumerate() {
        let last = (at + 1) * 8_000 >= big.len();
        raw.send(DATA, if last { END_STREAM } else { 0 }, 1, part)
            .await;
    }

    let (fields, body) = raw.answer(1).await;
    assert_eq!(status(&fields), "413");
    assert_eq!(problem_status(&body), 413);

    raw.expect_served(3).await;
}

#[tokio::test]
async fn a_body_that_is_not_its_content_length_resets_its_stream() {
    let app = spawn_app().await;
    let alice = app.join("h2-length").await;
    let mut raw = Raw::connect(&app).await;
    let extra = [
        ("content-type", "application/json"),
        ("content-length", "100"),
    ];
    raw.post_signal(&alice, &extra).await;
    raw.send(DATA, END_STREAM, 1, br#"{"payload":1}"#).await;

    let reset = raw.expect(|frame| frame.kind == RST_STREAM).await;
    assert_eq!((reset.stream, reset.code()), (1, PROTOCOL_ERROR));
}

#[tokio::test]
async fn a_body_not_sent_within_the_header_timeout_is_answered_408() {
    let app = spawn_app_with(&["--header-timeout", "0.3"]).await;
    let alice = app.join("h2-slow").await;
    let mut raw = Raw::connect(&app).await;
    raw.post_signal(&alice, &[]).await;
    raw.send(DATA, 0, 1, b"{").await;

    let (fields, body) = raw.answer(1).await;
    assert_eq!(status(&fields), "408");
    assert_eq!(problem_status(&body), 408);
    let reset = raw.expect(|frame| frame.kind == RST_STREAM).await;
    assert_eq!((reset.stream, reset.code()), (1, NO_ERROR));
}

/// Requests whose bodies have not come hold their streams: the 201st at
/// once is refused, and a place freed is taken again.
#[tokio::test]
async fn past_200_streams_at_once_a_new_one_is_refused() {
    let app = spawn_app().await;
    let mut raw = Raw::connect(&app).await;
    let mut post = get("/signals");
    post[0].1 = "POST";
    for n in 0..201 {
        raw.request(1 + 2 * n, &post, false).await;
    }
    let refused = raw.expect(|frame| frame.kind == RST_STREAM).await;
    assert_eq!((refused.stream, refused.code()), (401, REFUSED_STREAM));

    raw.send(RST_STREAM, 0, 1, &0x8u32.to_be_bytes()).await;
    raw.expect_served(403).await;
}

#[tokio::test]
async fn what_breaks_the_protocol_ends_the_connection_with_goaway() {
    let app = spawn_app().await;

    // A request on an even stream, which only a server may open.
    let mut raw = Raw::connect(&app).await;
    raw.request(2, &get("/healthz"), true).await;
    raw.expect_goaway_and_close(PROTOCOL_ERROR).await;

    // DATA on the connection's own stream.
    let mut raw = Raw::connect(&app).await;
    raw.send(DATA, 0, 0, b"x").await;
    raw.expect_goaway_and_close(PROTOCOL_ERROR).await;

    // A frame before the client's SETTINGS.
    let mut raw = Raw::open(&app).await;
    raw.write_raw(PREFACE).await;
    raw.send(PING, 0, 0, b"12345678").await;
    raw.expect_goaway_and_close(PROTOCOL_ERROR).await;

    // A header block interrupted by another frame.
    let mut raw = Raw::connect(&app).await;
    let whole = block(&get("/healthz"));
    raw.send(HEADERS, END_STREAM, 1, &whole[..4]).await;
    raw.send(PING, 0, 0, b"12345678").await;
    raw.expect_goaway_and_close(PROTOCOL_ERROR).await;
}

/// An event larger than what the client lets the server send waits for
/// the client's WINDOW_UPDATE, and arrives whole.
#[tokio::test]
async fn an_inbox_stream_waits_for_the_client_s_window_and_loses_nothing() {
    const WINDOW: u32 = 100;
    let app = spawn_app().await;
    let alice = app.join("h2-window").await;
    let bob = app.join("h2-window").await;
    let mut raw = Raw::connect_with(&app, &[(INITIAL_WINDOW_SIZE, WINDOW)]).await;
    raw.open_inbox(&bob).await;
    let payload = "p".repeat(3_000);
    let recipients = app
        .signal(&alice, Some(&bob), "offer", json!(payload))
        .await;
    assert_eq!(recipients, 1);

    // The window fills, and no more comes: every DATA frame the server
    // wrote before its answer to a PING is in, and they hold the window.
    let mut text = Vec::new();
    while text.len() < WINDOW as usize {
        let data = raw.expect(|frame| frame.kind == DATA).await;
        text.extend_from_slice(&data.payload);
    }
    raw.send(PING, 0, 0, b"barrier!").await;
    loop {
        let frame = raw.frame().await.expect("the connection stays open");
        match frame.kind {
            DATA => text.extend_from_slice(&frame.payload),
            PING if frame.flags == ACK => break,
            _ => {}
        }
    }
    assert_eq!(text.len(), WINDOW as usize, "no more than the window");

    raw.send(WINDOW_UPDATE, 0, 1, &100_000u32.to_be_bytes())
        .await;
    while !String::from_utf8_lossy(&text).contains(&payload) {
        let data = raw.expect(|frame| frame.kind == DATA).await;
        text.extend_from_slice(&data.payload);
    }
}

#[tokio::test]
async fn a_stream_the_client_resets_ends_its_reader() {
    let app = spawn_app().await;
    let alice = app.join("h2-reset").await;
    let mut raw = Raw::connect(&app).await;
    let head = raw.open_inbox(&alice).await;
    assert_eq!(head.flags & END_STREAM, 0, "the stream stays open");
    wait_for_sample(&app, "signalpost_open_streams{transport=\"sse\"}", 1.0).await;

    raw.send(RST_STREAM, 0, 1, &0x8u32.to_be_bytes()).await;
    wait_for_sample(&app, "signalpost_open_streams{transport=\"sse\"}", 0.0).await;
}

#[tokio::test]
async fn shutdown_says_goaway_and_ends_the_open_streams() {
    let mut app = spawn_app().await;
    let alice = app.join("h2-shutdown").await;
    let mut raw = Raw::connect(&app).await;
    raw.open_inbox(&alice).await;

    app.shutdown.cancel();

    // The stream ends on the same token as the connection: either may
    // come first.
    let mut goaway = None;
    let mut ended = false;
    while let Some(frame) = raw.frame().await {
        if frame.kind == GOAWAY {
            goaway = Some(frame);
        } else if frame.stream == 1 && frame.flags & END_STREAM != 0 {
            ended = true;
        }
    }
    let goaway = goaway.expect("GOAWAY before the server closes");
    assert_eq!(goaway.code(), NO_ERROR);
    assert_eq!(
        (&goaway.payload[..4]).get_u32(),
        1,
        "the last stream served is the open one"
    );
    assert!(ended, "the open stream ends before the connection closes");
    app.expect_run_to_return_ok().await;
}

#[tokio::test]
async fn a_window_update_of_zero_resets_the_stream() {
    let app = spawn_app().await;
    let alice = app.join("h2-zero").await;
    let mut raw = Raw::connect(&app).await;
    raw.open_inbox(&alice).await;

    raw.send(WINDOW_UPDATE, 0, 1, &0u32.to_be_bytes()).await;
    let reset = raw.expect(|frame| frame.kind == RST_STREAM).await;
    assert_eq!((reset.stream, reset.code()), (1, PROTOCOL_ERROR));
}
