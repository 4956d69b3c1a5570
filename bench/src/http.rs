//! The generator's HTTP client, as the peer's transport says: HTTP/1.1
//! over TCP or TLS (`http1`), or HTTP/2 over TLS (`http2`).

use std::net::SocketAddr;

use anyhow::Result;

pub use crate::http1::Response;
use crate::tls::Transport;
use crate::{http1, http2};

pub enum Client {
    One(http1::Client),
    Two(http2::Client),
}

impl Client {
    pub fn new(addr: SocketAddr, transport: &Transport) -> Self {
        match transport {
            Transport::Plain => Self::One(http1::Client::new(addr, None)),
            Transport::Tls(tls) => Self::One(http1::Client::new(addr, Some(tls.clone()))),
            Transport::H2(tls) => Self::Two(http2::Client::new(addr, tls.clone())),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::One(client) => client.addr(),
            Self::Two(client) => client.addr(),
        }
    }

    /// One request, its whole answer read.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response> {
        match self {
            Self::One(client) => {
                let request = http1::request(method, path, client.addr(), headers, body);
                client.send(&request).await
            }
            Self::Two(client) => client.send(method, path, headers, body).await,
        }
    }

    /// A `GET` whose answer streams (an SSE inbox), handed to `on_data`
    /// piece by piece until it ends or `on_data` returns false.
    pub async fn stream(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        on_data: impl FnMut(&[u8]) -> bool,
    ) -> Result<()> {
        match self {
            Self::One(client) => {
                let request = http1::request("GET", path, client.addr(), headers, b"");
                client.stream(&request, on_data).await
            }
            Self::Two(client) => client.stream(path, headers, on_data).await,
        }
    }
}
