//! `LeanTls`: a TLS server connection on rustls's unbuffered API, whose
//! buffers exist only while they hold bytes.
//!
//! rustls's buffered connection (and tokio-rustls over it) keeps a 4 KiB
//! buffer for incoming records from the first read on, for the life of the
//! connection: on an idle member's stream that was half of what TLS cost.
//! Here the incoming records, the decrypted data not yet read and the
//! records not yet written are each a buffer of their own, freed as soon
//! as it is empty; an idle connection holds rustls's state and its keys.
//! rustls does every part of the protocol; this only moves bytes between
//! it and the socket.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::server::UnbufferedServerConnection;
use tokio_rustls::rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedStatus,
};

/// What a read from the socket asks for at least.
const READ_SIZE: usize = 4096;

/// Application data encrypted at once: records not yet written stay
/// bounded by it, and a writer is held until they are out.
const MAX_WRITE: usize = 64 * 1024;

/// Room for a record's header, tag and content type beyond its data.
const RECORD_OVERHEAD: usize = 5 + 16 + 1;

pub struct LeanTls {
    tcp: TcpStream,
    conn: UnbufferedServerConnection,
    /// Records read and not yet processed: at most part of one, between
    /// reads.
    incoming: BytesMut,
    /// Application data decrypted and not yet read.
    plaintext: BytesMut,
    /// Records encoded and not yet written, in order.
    outgoing: BytesMut,
    handshaken: bool,
    /// The client said close_notify, or its side of the socket ended.
    read_closed: bool,
    /// close_notify is queued: nothing more is encrypted.
    write_closed: bool,
}

/// A TLS error, as the I/O error it ends the connection with.
fn invalid(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// Why rustls wrote nothing into the room it was given.
enum Short {
    /// The room was too small: it needs this much.
    Needs(usize),
    Failed(String),
}

impl From<EncodeError> for Short {
    fn from(error: EncodeError) -> Self {
        match error {
            EncodeError::InsufficientSize(short) => Self::Needs(short.required_size),
            error => Self::Failed(error.to_string()),
        }
    }
}

impl From<EncryptError> for Short {
    fn from(error: EncryptError) -> Self {
        match error {
            EncryptError::InsufficientSize(short) => Self::Needs(short.required_size),
            error => Self::Failed(error.to_string()),
        }
    }
}

/// Appends to `out` what `write` puts into a room at its end, `need` bytes
/// at first and as much as it then says it needs.
fn append(
    out: &mut BytesMut,
    mut need: usize,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, Short>,
) -> io::Result<()> {
    let start = out.len();
    loop {
        out.resize(start + need, 0);
        match write(&mut out[start..]) {
            Ok(written) => {
                out.truncate(start + written);
                return Ok(());
            }
            Err(Short::Needs(more)) if more > need => need = more,
            Err(Short::Needs(_)) => {
                out.truncate(start);
                return Err(invalid("rustls asked for less room than it had"));
            }
            Err(Short::Failed(error)) => {
                out.truncate(start);
                return Err(invalid(error));
            }
        }
    }
}

/// Frees a buffer that holds nothing.
fn release(buffer: &mut BytesMut) {
    if buffer.is_empty() && buffer.capacity() > 0 {
        *buffer = BytesMut::new();
    }
}

impl LeanTls {
    /// Runs the handshake on `tcp` to its end.
    pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
        let mut tls = Self {
            tcp,
            conn,
            incoming: BytesMut::new(),
            plaintext: BytesMut::new(),
            outgoing: BytesMut::new(),
            handshaken: false,
            read_closed: false,
            write_closed: false,
        };
        poll_fn(|cx| tls.poll_handshake(cx)).await?;
        Ok(tls)
    }

    /// The protocol ALPN chose, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            self.process(None)?;
            // Each flight goes out before the next is waited for.
            ready!(self.poll_send(cx))?;
            if self.handshaken {
                return Poll::Ready(Ok(()));
            }
            if self.read_closed {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            ready!(self.poll_receive(cx))?;
        }
    }

    /// Hands rustls the records read, until it needs more: decrypted data
    /// goes to `plaintext`, records to send to `outgoing`. With `write`,
    /// encrypts as much of it as one call may once the handshake is done,
    /// and says how much.
    fn process(&mut self, write: Option<&[u8]>) -> io::Result<Option<usize>> {
        loop {
            let UnbufferedStatus { mut discard, state } =
                self.conn.process_tls_records(&mut self.incoming);
            let mut wrote = None;
            let mut blocked = false;
            match state.map_err(invalid)? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(invalid)?;
                        discard += record.discard;
                        self.plaintext.extend_from_slice(record.payload);
                    }
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    append(&mut self.outgoing, READ_SIZE, |room| {
                        encode.encode(room).map_err(Short::from)
                    })?;
                }
                // Written in order with what follows: `outgoing` is sent
                // before anything is waited for.
                ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                ConnectionState::BlockedHandshake => blocked = true,
                ConnectionState::WriteTraffic(mut traffic) => {
                    self.handshaken = true;
                    blocked = true;
                    if let Some(data) = write.filter(|_| !self.write_closed) {
                        let data = &data[..data.len().min(MAX_WRITE)];
                        let need = data.len() + RECORD_OVERHEAD * (data.len() / 16_384 + 1);
                        append(&mut self.outgoing, need, |room| {
                            traffic.encrypt(data, room).map_err(Short::from)
                        })?;
                        wrote = Some(data.len());
                    }
                }
                ConnectionState::PeerClosed => self.read_closed = true,
                ConnectionState::Closed => {
                    self.read_closed = true;
                    blocked = true;
                }
                // Early data is not enabled; whatever else a later rustls
                // asks for is not done here.
                _ => return Err(invalid("a TLS state this server does not handle")),
            }
            self.incoming.advance(discard);
            if blocked || wrote.is_some() {
                release(&mut self.incoming);
                return Ok(wrote);
            }
        }
    }

    /// Reads more records from the socket: ready once some came, or the
    /// client's side ended.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.incoming.reserve(READ_SIZE);
        let read = tokio_util::io::poll_read_buf(Pin::new(&mut self.tcp), cx, &mut self.incoming);
        if read.is_pending() {
            release(&mut self.incoming);
        }
        if ready!(read)? == 0 {
            self.read_closed = true;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes out the records encoded: ready once all are out.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            match ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                written => self.outgoing.advance(written),
            }
        }
        release(&mut self.outgoing);
        Poll::Ready(Ok(()))
    }

    /// Ready when a read would find something: data, the end, or bytes on
    /// the socket.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.plaintext.is_empty() || self.read_closed {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }
}

impl AsyncRead for LeanTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plaintext.is_empty() {
                let n = this.plaintext.len().min(buf.remaining());
                buf.put_slice(&this.plaintext[..n]);
                this.plaintext.advance(n);
                release(&mut this.plaintext);
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            this.process(None)?;
            // What reading made rustls say (a key update's answer) goes
            // out; a socket that is full now takes it later.
            if let Poll::Ready(Err(error)) = this.poll_send(cx) {
                return Poll::Ready(Err(error));
            }
            if this.plaintext.is_empty() && !this.read_closed {
                ready!(this.poll_receive(cx))?;
            }
        }
    }
}

impl LeanTls {
    /// Encrypts `data` (as much as one call takes) into records that go
    /// out at the next flush, or once they are a write's worth.
    fn poll_encrypt(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.outgoing.len() >= MAX_WRITE {
            ready!(self.poll_send(cx))?;
        }
        match self.process(Some(data))? {
            Some(written) => Poll::Ready(Ok(written)),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }
}

/// Writes are encrypted at once and sent on `poll_flush`: an answer's head
/// and body, or an event's chunk framing and data, then leave in one
/// system call. Vectored writes become one record.
impl AsyncWrite for LeanTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_encrypt(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut pieces = slices.iter().filter(|slice| !slice.is_empty());
        let (Some(first), Some(_)) = (pieces.next(), pieces.next()) else {
            let one = slices.iter().find(|slice| !slice.is_empty());
            return this.poll_encrypt(cx, one.map_or(&[][..], |slice| &slice[..]));
        };
        let total = slices.iter().map(|slice| slice.len()).sum::<usize>();
        let mut joined = Vec::with_capacity(total.min(MAX_WRITE).max(first.len()));
        for slice in slices {
            let take = slice.len().min(MAX_WRITE.saturating_sub(joined.len()));
            joined.extend_from_slice(&slice[..take]);
            if joined.len() >= MAX_WRITE {
                break;
            }
        }
        this.poll_encrypt(cx, &joined)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.write_closed = true;
            let UnbufferedStatus { discard, state } =
                this.conn.process_tls_records(&mut this.incoming);
            if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
                // Without it the client sees the connection end, as it
                // would after a network failure: nothing is lost either way.
                let _ = append(&mut this.outgoing, 64, |room| {
                    traffic.queue_close_notify(room).map_err(Short::from)
                });
            }
            this.incoming.advance(discard);
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}
