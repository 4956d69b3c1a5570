//! The floor of the benchmark: the least a server of signalpost's shape can
//! do. A join hands out a member id (no token, no capacity), an open SSE
//! response is that member's inbox, and `POST /signals` writes one frame
//! into one inbox or into every other inbox of the room. No validation, no
//! bounds, no history, no resume: whatever signalpost spends beyond this is
//! the price of its rules.
//!
//! `floor [--listen 127.0.0.1:0] [--tls-cert PEM --tls-key PEM]`; prints
//! `listening on ADDR` when ready. With a certificate it speaks HTTPS,
//! HTTP/2 or HTTP/1.1 by ALPN, as an axum application on rustls is
//! commonly served: hyper's automatic builder at its defaults on each
//! accepted TLS stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

#[derive(Default)]
struct Floor {
    next_id: u64,
    /// Room id → member ids, in join order.
    rooms: HashMap<String, Vec<u64>>,
    /// Member id → its room and, once its stream is open, the stream's sender.
    members: HashMap<u64, (String, Option<mpsc::UnboundedSender<Bytes>>)>,
}

type Shared = Arc<Mutex<Floor>>;

#[derive(Deserialize)]
struct Signal<'a> {
    from: u64,
    to: Option<u64>,
    #[serde(borrow, rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    payload: &'a RawValue,
}

async fn join(State(floor): State<Shared>, Path(room): Path<String>) -> Response {
    let mut floor = floor.lock().expect("no handler panics with the lock held");
    floor.next_id += 1;
    let id = floor.next_id;
    floor.rooms.entry(room.clone()).or_default().push(id);
    floor.members.insert(id, (room, None));
    (StatusCode::CREATED, format!("{{\"member_id\":{id}}}")).into_response()
}

async fn events(
    State(floor): State<Shared>,
    Path((_room, member)): Path<(String, u64)>,
) -> Response {
    let (sender, receiver) = mpsc::unbounded_channel();
    // The client waits for this before it sends, so the stream is known to flow.
    let _ = sender.send(Bytes::from_static(b"event: ready\ndata: {}\n\n"));
    match floor
        .lock()
        .expect("no handler panics with the lock held")
        .members
        .get_mut(&member)
    {
        Some((_, stream)) => *stream = Some(sender),
        None => return StatusCode::NOT_FOUND.into_response(),
    }
    let body = UnboundedReceiverStream::new(receiver).map(Ok::<_, Infallible>);
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

async fn signal(State(floor): State<Shared>, body: Bytes) -> Response {
    let Ok(signal) = serde_json::from_slice::<Signal>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let to = signal
        .to
        .map_or_else(|| "null".to_owned(), |to| to.to_string());
    let frame = Bytes::from(format!(
        "event: signal\ndata: {{\"from\":{},\"to\":{to},\"type\":\"{}\",\"payload\":{}}}\n\n",
        signal.from,
        signal.kind,
        signal.payload.get()
    ));
    let floor = floor.lock().expect("no handler panics with the lock held");
    let deliver = |member: &u64| {
        if let Some((_, Some(stream))) = floor.members.get(member) {
            let _ = stream.send(frame.clone());
        }
    };
    match signal.to {
        Some(to) => deliver(&to),
        None => {
            let room = floor.members.get(&signal.from).map(|(room, _)| room);
            if let Some(members) = room.and_then(|room| floor.rooms.get(room)) {
                members
                    .iter()
                    .filter(|member| **member != signal.from)
                    .for_each(deliver);
            }
        }
    }
    StatusCode::ACCEPTED.into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = String::from("127.0.0.1:0");
    let (mut cert, mut key) = (None, None);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = addr,
            ("--tls-cert", Some(path)) => cert = Some(path),
            ("--tls-key", Some(path)) => key = Some(path),
            _ => anyhow::bail!("usage: floor [--listen ADDR] [--tls-cert PEM --tls-key PEM]"),
        }
    }
    let app = Router::new()
        .route("/rooms/{room}/join", post(join))
        .route("/rooms/{room}/members/{member}/events", get(events))
        .route("/signals", post(signal))
        .with_state(Shared::default());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    if let (Some(cert), Some(key)) = (cert, key) {
        let acceptor = tls_acceptor(&cert, &key)?;
        println!("listening on {}", listener.local_addr()?);
        return serve_tls(listener, acceptor, app).await;
    }
    println!("listening on {}", listener.local_addr()?);
    // Without it a small SSE write waits for the client's delayed ACK.
    let listener = listener.tap_io(|socket| {
        let _ = socket.set_nodelay(true);
    });
    // No graceful shutdown: the runner ends the floor with SIGTERM, and its
    // streams would never finish by themselves anyway.
    axum::serve(listener, app).await?;
    Ok(())
}

fn tls_acceptor(cert: &str, key: &str) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(socket).await else {
                return;
            };
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
