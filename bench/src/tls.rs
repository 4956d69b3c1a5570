//! The HTTPS peers' side of TLS: how the generator reaches a server over
//! plain TCP, TLS with HTTP/1.1, or TLS with HTTP/2 (`Transport`), and the
//! connection the HTTP/1.1 client and the websocket speak over (`Conn`).
//!
//! The run makes a self-signed certificate for 127.0.0.1 (`bench/run`);
//! the generator trusts exactly that one (`--ca`), as a browser trusts a
//! real one, so the handshake does the same work as in production.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How the generator's connections reach the server.
#[derive(Clone)]
pub enum Transport {
    Plain,
    /// TLS, offering only HTTP/1.1 by ALPN.
    Tls(TlsConnector),
    /// TLS, offering only HTTP/2 by ALPN: one connection per member carries
    /// its inbox and its requests, as a browser's does.
    H2(TlsConnector),
}

impl Transport {
    /// `h2`: whether HTTP/2 is spoken; `ca`: the certificate to trust, or
    /// `None` for cleartext.
    pub fn new(ca: Option<&Path>, h2: bool) -> Result<Self> {
        let Some(ca) = ca else {
            if h2 {
                bail!("HTTP/2 is spoken over TLS only here: give --ca");
            }
            return Ok(Self::Plain);
        };
        let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
        let connector = connector(ca, alpn)?;
        Ok(if h2 {
            Self::H2(connector)
        } else {
            Self::Tls(connector)
        })
    }

    /// The connector, for the TLS transports.
    pub fn tls(&self) -> Option<&TlsConnector> {
        match self {
            Self::Plain => None,
            Self::Tls(connector) | Self::H2(connector) => Some(connector),
        }
    }
}

fn connector(ca: &Path, alpn: &[u8]) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("{}", ca.display()))? {
        roots
            .add(cert.with_context(|| format!("{}", ca.display()))?)
            .context("the certificate to trust")?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A new connection to `addr`, TLS when `tls` is given, with
/// `TCP_NODELAY`: small requests must leave at once, not wait for a
/// delayed ACK.
pub async fn connect(addr: SocketAddr, tls: Option<&TlsConnector>) -> Result<Conn> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let Some(tls) = tls else {
        return Ok(Conn::Plain(stream));
    };
    let name = ServerName::IpAddress(addr.ip().into());
    let stream = tls
        .connect(name, stream)
        .await
        .with_context(|| format!("TLS handshake with {addr}"))?;
    Ok(Conn::Tls(Box::new(stream)))
}

/// A connection, plain or TLS. An enum, not a trait object: the plain
/// peers keep the calls they had.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// The protocol the server chose by ALPN, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(stream) => stream.get_ref().1.alpn_protocol(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
