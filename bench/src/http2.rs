//! A small HTTP/2 client over TLS on the `h2` crate: one connection per
//! client, made at its first request, every request a stream of it. A
//! member with a client of its own holds its inbox and sends its signals
//! on one connection, as a browser does over HTTPS.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use h2::RecvStream;
use h2::client::SendRequest;
use tokio_rustls::TlsConnector;

use crate::http1::Response;
use crate::tls;

pub struct Client {
    addr: SocketAddr,
    tls: TlsConnector,
    /// The connection's handle, once made; `None` again after it failed.
    sender: tokio::sync::Mutex<Option<SendRequest<Bytes>>>,
}

impl Client {
    pub fn new(addr: SocketAddr, tls: TlsConnector) -> Self {
        Self {
            addr,
            tls,
            sender: tokio::sync::Mutex::new(None),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn sender(&self) -> Result<SendRequest<Bytes>> {
        let mut held = self.sender.lock().await;
        if let Some(sender) = held.as_ref() {
            return Ok(sender.clone());
        }
        let conn = tls::connect(self.addr, Some(&self.tls)).await?;
        if conn.alpn() != Some(b"h2") {
            bail!("the server did not choose HTTP/2 by ALPN");
        }
        let (sender, connection) = h2::client::handshake(conn)
            .await
            .context("HTTP/2 handshake")?;
        // The connection's frames are read and written by this task; it
        // ends when the connection does.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        *held = Some(sender.clone());
        Ok(sender)
    }

    /// Sends a request and waits for its answer's head.
    async fn open(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, RecvStream)> {
        let sender = self.sender().await?;
        let mut sender = match sender.ready().await {
            Ok(sender) => sender,
            Err(error) => {
                *self.sender.lock().await = None;
                return Err(error).context("the HTTP/2 connection failed");
            }
        };
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(()).context("a request")?;
        let (answer, mut stream) = sender.send_request(request, body.is_empty())?;
        if !body.is_empty() {
            stream.send_data(Bytes::copy_from_slice(body), true)?;
        }
        let answer = answer.await.context("an HTTP/2 answer")?;
        Ok((answer.status().as_u16(), answer.into_body()))
    }

    /// One request, its whole answer read.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        let (status, mut stream) = self.open(method, path, headers, body).await?;
        let mut body = Vec::new();
        while let Some(data) = stream.data().await {
            let data = data?;
            // The server may send more only once this is given back.
            let _ = stream.flow_control().release_capacity(data.len());
            body.extend_from_slice(&data);
        }
        Ok(Response { status, body })
    }

    /// Opens a streamed answer (an SSE inbox) and hands its body to
    /// `on_data`, piece by piece, until it ends or `on_data` returns false.
    /// A status other than 200 is an error.
    pub async fn stream(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        mut on_data: impl FnMut(&[u8]) -> bool,
    ) -> Result<()> {
        let (status, mut stream) = self.open("GET", path, headers, b"").await?;
        if status != 200 {
            bail!("the stream answered {status}");
        }
        while let Some(data) = stream.data().await {
            let data = data?;
            let _ = stream.flow_control().release_capacity(data.len());
            if !on_data(&data) {
                break;
            }
        }
        Ok(())
    }
}
