//! A small HTTP/1.1 client over TCP or TLS (`tls::Conn`): keep-alive connections
//! in a free list, one request at a time per connection (as a browser
//! does, no pipelining), `Content-Length` and chunked bodies, and open
//! streams read chunk by chunk.
//!
//! hyper's pooled client came first: with a connection task, a body
//! channel and a pool checkout per request, the generator fell behind its
//! schedule at 6 750 signals/s, before the servers did. This does one
//! write and, mostly, one read per request.

use std::net::SocketAddr;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::tls::{self, Conn};

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

pub struct Client {
    addr: SocketAddr,
    tls: Option<TlsConnector>,
    idle: Mutex<Vec<Conn>>,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// An HTTP request as the bytes that go on the wire.
pub fn request(
    method: &str,
    path: &str,
    addr: SocketAddr,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\n").as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !body.is_empty() || method == "POST" {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// How a response body is delimited.
enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// A response head: the status, the framing, and whether the connection may be reused.
struct Head {
    status: u16,
    framing: Framing,
    keep_alive: bool,
}

fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(length) =
        response.parse(buf).context("a malformed response head")?
    else {
        if buf.len() > MAX_HEAD {
            bail!("a response head over {MAX_HEAD} bytes");
        }
        return Ok(None);
    };
    let status = response.code.context("a response without a status")?;
    let mut framing = Framing::Close;
    let mut keep_alive = response.version == Some(1);
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            framing = Framing::Length(value.parse().context("a bad Content-Length")?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding")
            && value.eq_ignore_ascii_case("chunked")
        {
            framing = Framing::Chunked;
        } else if header.name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    if matches!(framing, Framing::Close) {
        keep_alive = false;
    }
    Ok(Some((
        Head {
            status,
            framing,
            keep_alive,
        },
        length,
    )))
}

/// Reads from `stream` into `buf` until a whole response head is there.
async fn read_head(stream: &mut Conn, buf: &mut Vec<u8>) -> Result<Option<(Head, usize)>> {
    loop {
        if let Some(parsed) = parse_head(buf)? {
            return Ok(Some(parsed));
        }
        buf.reserve(READ_CHUNK);
        if stream.read_buf(buf).await? == 0 {
            if buf.is_empty() {
                // Closed before a byte of the answer: a keep-alive
                // connection the server had already given up on.
                return Ok(None);
            }
            bail!("the connection closed inside a response head");
        }
    }
}

impl Client {
    /// `tls`: HTTPS, offering HTTP/1.1 only.
    pub fn new(addr: SocketAddr, tls: Option<TlsConnector>) -> Self {
        Self {
            addr,
            tls,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn connect(&self) -> Result<Conn> {
        tls::connect(self.addr, self.tls.as_ref()).await
    }

    /// Sends `request` on an idle connection or a new one, and reads the answer.
    pub async fn send(&self, request: &[u8]) -> Result<Response> {
        let reused = self.idle.lock().expect("no panic holds the lock").pop();
        if let Some(stream) = reused
            && let Some(response) = self.exchange(stream, request).await?
        {
            return Ok(response);
        }
        let stream = self.connect().await?;
        self.exchange(stream, request)
            .await?
            .context("the server closed a new connection without answering")
    }

    /// One request and its answer on `stream`; `None` if the connection
    /// turned out closed before the answer began (only then is a retry safe).
    async fn exchange(&self, mut stream: Conn, request: &[u8]) -> Result<Option<Response>> {
        if write(&mut stream, request).await.is_err() {
            return Ok(None);
        }
        let mut buf = Vec::with_capacity(1024);
        let Some((head, head_len)) = read_head(&mut stream, &mut buf).await? else {
            return Ok(None);
        };
        let mut rest = buf.split_off(head_len);
        let body = match head.framing {
            Framing::Length(length) => {
                while rest.len() < length {
                    rest.reserve(length - rest.len());
                    if stream.read_buf(&mut rest).await? == 0 {
                        bail!("the connection closed inside a response body");
                    }
                }
                rest.truncate(length);
                rest
            }
            Framing::Chunked => {
                let mut body = Vec::new();
                let mut chunks = Dechunker::default();
                let mut input = rest;
                while !chunks.feed(&input, &mut body)? {
                    input.clear();
                    input.reserve(READ_CHUNK);
                    if stream.read_buf(&mut input).await? == 0 {
                        bail!("the connection closed inside a chunked body");
                    }
                }
                body
            }
            Framing::Close => {
                stream.read_to_end(&mut rest).await?;
                rest
            }
        };
        if head.keep_alive {
            self.idle
                .lock()
                .expect("no panic holds the lock")
                .push(stream);
        }
        Ok(Some(Response {
            status: head.status,
            body,
        }))
    }

    /// Opens a streamed response (an SSE inbox) and hands its body to
    /// `on_data`, piece by piece, until it ends or `on_data` returns false.
    /// A status other than 200 is an error. Like a browser's `EventSource`,
    /// it takes an idle connection of the pool when there is one: mostly
    /// the one that carried the member's join.
    pub async fn stream(
        &self,
        request: &[u8],
        mut on_data: impl FnMut(&[u8]) -> bool,
    ) -> Result<()> {
        let reused = self.idle.lock().expect("no panic holds the lock").pop();
        let mut buf = Vec::with_capacity(READ_CHUNK);
        let mut opened = None;
        if let Some(mut stream) = reused
            && write(&mut stream, request).await.is_ok()
            && let Some(head) = read_head(&mut stream, &mut buf).await?
        {
            opened = Some((stream, head));
        }
        let (mut stream, (head, head_len)) = match opened {
            Some(opened) => opened,
            None => {
                // No idle connection, or one the server had closed.
                buf.clear();
                let mut stream = self.connect().await?;
                write(&mut stream, request).await?;
                let head = read_head(&mut stream, &mut buf)
                    .await?
                    .context("the server closed the stream without answering")?;
                (stream, head)
            }
        };
        if head.status != 200 {
            bail!("the stream answered {}", head.status);
        }
        let chunked = matches!(head.framing, Framing::Chunked);
        let mut chunks = Dechunker::default();
        let mut data = Vec::with_capacity(READ_CHUNK);
        let mut input = buf.split_off(head_len);
        loop {
            let finished = if chunked {
                data.clear();
                let finished = chunks.feed(&input, &mut data)?;
                finished || (!data.is_empty() && !on_data(&data))
            } else {
                !input.is_empty() && !on_data(&input)
            };
            if finished {
                return Ok(());
            }
            input.clear();
            input.reserve(READ_CHUNK);
            if stream.read_buf(&mut input).await? == 0 {
                return Ok(());
            }
        }
    }
}

/// Writes a whole request; over TLS, flushed out of the TLS session too.
async fn write(stream: &mut Conn, request: &[u8]) -> std::io::Result<()> {
    stream.write_all(request).await?;
    stream.flush().await
}

/// Undoes `Transfer-Encoding: chunked` across reads of any size.
#[derive(Default)]
struct Dechunker {
    state: ChunkState,
    size: usize,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size line.
    #[default]
    Size,
    /// Skipping an extension after `;` up to the line's end.
    Extension,
    /// Copying `size` more bytes of data.
    Data,
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the zero-size chunk: trailers up to an empty line.
    Trailer {
        line_empty: bool,
    },
    Done,
}

impl Dechunker {
    /// Appends the data in `input` to `out`; true once the last chunk ended.
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        while !input.is_empty() {
            match self.state {
                ChunkState::Data => {
                    let take = self.size.min(input.len());
                    out.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    self.size -= take;
                    if self.size == 0 {
                        self.state = ChunkState::DataEnd;
                    }
                    continue;
                }
                ChunkState::Done => return Ok(true),
                _ => {}
            }
            let byte = input[0];
            input = &input[1..];
            self.state = match (self.state, byte) {
                (ChunkState::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let digit = (byte as char).to_digit(16).expect("a hex digit") as usize;
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|size| size.checked_add(digit))
                        .context("a chunk size too large")?;
                    ChunkState::Size
                }
                (ChunkState::Size, b';') => ChunkState::Extension,
                (ChunkState::Size | ChunkState::Extension, b'\r') => self.state,
                (ChunkState::Extension, b'\n') | (ChunkState::Size, b'\n') if self.size == 0 => {
                    ChunkState::Trailer { line_empty: true }
                }
                (ChunkState::Extension, b'\n') | (ChunkState::Size, b'\n') => ChunkState::Data,
                (ChunkState::Extension, _) => ChunkState::Extension,
                (ChunkState::DataEnd, b'\r') => ChunkState::DataEnd,
                (ChunkState::DataEnd, b'\n') => ChunkState::Size,
                (ChunkState::Trailer { line_empty: true }, b'\n') => ChunkState::Done,
                (ChunkState::Trailer { .. }, b'\n') => ChunkState::Trailer { line_empty: true },
                (ChunkState::Trailer { line_empty }, b'\r') => ChunkState::Trailer { line_empty },
                (ChunkState::Trailer { .. }, _) => ChunkState::Trailer { line_empty: false },
                _ => bail!("malformed chunked encoding"),
            };
        }
        Ok(self.state == ChunkState::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for split in 0..wire.len() {
            let mut chunks = Dechunker::default();
            let mut out = Vec::new();
            let first = chunks.feed(&wire[..split], &mut out).unwrap();
            let done = chunks.feed(&wire[split..], &mut out).unwrap();
            assert!(!first || split == wire.len());
            assert!(done);
            assert_eq!(out, b"hello, world");
        }
    }

    #[test]
    fn a_head_gives_status_framing_and_reuse() {
        let (head, length) = parse_head(b"HTTP/1.1 202 Accepted\r\ncontent-length: 17\r\n\r\n{")
            .unwrap()
            .unwrap();
        assert_eq!((head.status, length), (202, 45));
        assert!(matches!(head.framing, Framing::Length(17)) && head.keep_alive);
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn requests_carry_length_and_host() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let wire = request(
            "POST",
            "/signals",
            addr,
            &[("authorization", "Bearer x")],
            b"{}",
        );
        let text = String::from_utf8(wire).unwrap();
        assert!(text.starts_with("POST /signals HTTP/1.1\r\nhost: 127.0.0.1:9\r\n"));
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"));
    }
}
