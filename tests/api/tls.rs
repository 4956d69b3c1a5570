//! HTTPS with `--tls-cert` and `--tls-key`: HTTP/2 by ALPN, so that one
//! connection carries many inboxes (HTTP/1.1 browsers stop at six per
//! origin). The certificate is made by the test, self-signed. And
//! cleartext HTTP/2 (h2c) for proxies that terminate TLS.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::helpers::{DEADLINE, TestApp, spawn_app_with};

const INBOXES: usize = 20;

/// Writes a self-signed certificate for `localhost` and its key as PEM.
fn certificate(dir: &std::path::Path) -> (rcgen::CertifiedKey<rcgen::KeyPair>, String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("a self-signed certificate is made");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("the certificate is written");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("the key is written");
    let path = |path: std::path::PathBuf| path.to_str().expect("a UTF-8 path").to_owned();
    (certified, path(cert), path(key))
}

/// One request on the HTTP/2 connection, to a full URL whose scheme is the
/// connection's (`https` over TLS, `http` for h2c).
async fn request(
    sender: &mut SendRequest<Empty<Bytes>>,
    method: &str,
    url: &str,
    token: Option<&str>,
) -> hyper::Response<hyper::body::Incoming> {
    let mut builder = hyper::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let request = builder.body(Empty::new()).expect("a valid request");
    tokio::time::timeout(DEADLINE, sender.send_request(request))
        .await
        .expect("answered within the deadline")
        .expect("the request is answered")
}

/// HTTP/2 with prior knowledge over `io` (ALPN or h2c), the connection
/// driven in the background.
async fn http2<IO>(io: IO) -> SendRequest<Empty<Bytes>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("the HTTP/2 handshake succeeds");
    tokio::spawn(connection);
    sender
}

/// Joins `room` at `origin` (`https://localhost`, `http://localhost`) and
/// opens the new member's stream, both over HTTP/2. Returns the join's
/// `Set-Cookie` and the open stream.
async fn join_and_stream(
    sender: &mut SendRequest<Empty<Bytes>>,
    origin: &str,
    room: &str,
) -> (String, hyper::Response<hyper::body::Incoming>) {
    let joined = request(sender, "POST", &format!("{origin}/rooms/{room}/join"), None).await;
    assert_eq!(joined.status(), 201);
    assert_eq!(joined.version(), hyper::Version::HTTP_2);
    let cookie = joined.headers()["set-cookie"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let body = joined
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let joined: Value = serde_json::from_slice(&body).expect("JSON");
    let events_url = joined["events_url"].as_str().expect("events_url");
    let token = joined["token"].as_str().expect("a token");
    let stream = request(sender, "GET", &format!("{origin}{events_url}"), Some(token)).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.version(), hyper::Version::HTTP_2);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    (cookie, stream)
}

/// A self-signed certificate for `localhost`, in PEM files that live as
/// long as it does.
pub struct TestCertificate {
    certified: rcgen::CertifiedKey<rcgen::KeyPair>,
    dir: std::path::PathBuf,
    pub cert: String,
    pub key: String,
}

impl TestCertificate {
    pub fn new() -> TestCertificate {
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "signalpost-tls-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let (certified, cert, key) = certificate(&dir);
        TestCertificate {
            certified,
            dir,
            cert,
            key,
        }
    }

    /// The server flags that present it.
    pub fn flags(&self) -> [&str; 4] {
        ["--tls-cert", &self.cert, "--tls-key", &self.key]
    }

    /// A connector that trusts it and offers `alpn`.
    pub fn connector(&self, alpn: &[u8]) -> TlsConnector {
        self.connector_for(alpn, tokio_rustls::rustls::DEFAULT_VERSIONS)
    }

    /// The same, speaking only the TLS `versions` given.
    pub fn connector_for(
        &self,
        alpn: &[u8],
        versions: &[&'static tokio_rustls::rustls::SupportedProtocolVersion],
    ) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.certified.cert.der().clone())
            .expect("the test's certificate is a root");
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions the provider speaks")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for TestCertificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A server speaking HTTPS with a certificate made for the test, started
/// with `args` besides; a connector that trusts it and offers `alpn`; and
/// the certificate, whose files must outlive the server's start.
pub async fn spawn_https(args: &[&str], alpn: &[u8]) -> (TestApp, TlsConnector, TestCertificate) {
    let certificate = TestCertificate::new();
    let mut all = certificate.flags().to_vec();
    all.extend_from_slice(args);
    let app = spawn_app_with(&all).await;
    let connector = certificate.connector(alpn);
    (app, connector, certificate)
}

/// A TLS connection to `app`, through `connector`.
pub async fn connect_tls(
    app: &TestApp,
    connector: &TlsConnector,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("the server accepts");
    connector
        .connect(ServerName::try_from("localhost").expect("a name"), tcp)
        .await
        .expect("the TLS handshake succeeds with the test's root")
}

#[tokio::test]
async fn an_http2_client_holds_twenty_inboxes_on_one_tls_connection() {
    let (app, connector, _certificate) = spawn_https(&[], b"h2").await;
    let tls = connect_tls(&app, &connector).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN chose HTTP/2"
    );

    let mut sender = http2(tls).await;

    let mut streams = Vec::new();
    for n in 0..INBOXES {
        let (cookie, stream) =
            join_and_stream(&mut sender, "https://localhost", &format!("tls-{n}")).await;
        assert!(
            cookie.contains("; Secure"),
            "over HTTPS the cookie is Secure: {cookie}"
        );
        streams.push(stream.into_body());
    }
    // All twenty open at once on the one connection, each with its `ready`.
    for (n, body) in streams.iter_mut().enumerate() {
        let mut text = String::new();
        while !text.contains("event: ready") {
            let frame = tokio::time::timeout(DEADLINE, body.frame())
                .await
                .unwrap_or_else(|_| panic!("inbox {n} says ready within the deadline"))
                .expect("the stream stays open")
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
    assert_eq!(streams.len(), INBOXES);
}

#[test]
fn tls_needs_both_a_certificate_and_a_key() {
    assert!(signalpost::Config::from_args(["--tls-cert", "cert.pem"]).is_err());
    assert!(signalpost::Config::from_args(["--tls-key", "key.pem"]).is_err());
}

#[tokio::test]
async fn cleartext_http2_is_served_for_proxies_that_speak_it() {
    let app = crate::helpers::spawn_app().await;
    let tcp = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("the server accepts");
    let mut sender = http2(tcp).await;
    let (cookie, _stream) = join_and_stream(&mut sender, "http://localhost", "h2c").await;
    assert!(
        !cookie.contains("Secure"),
        "no Secure cookie over plain HTTP: {cookie}"
    );
}

/// hyper keeps an HTTP/2 connection open as long as the client likes; the
/// server closes one that has had nothing under way for the header
/// timeout, as it closes an idle HTTP/1.1 connection. An open stream is
/// something under way.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_and_one_with_a_stream_is_kept() {
    let app = crate::helpers::spawn_app_with(&["--header-timeout", "0.3"]).await;

    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(app.addr)
            .await
            .expect("the server accepts");
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("the HTTP/2 handshake succeeds")
    };

    // One request, then nothing: the connection ends, from the server.
    let (mut sender, connection) = connect().await;
    let connection = tokio::spawn(connection);
    let health = request(&mut sender, "GET", "http://localhost/healthz", None).await;
    assert_eq!(health.status(), 200);
    drop(health);
    tokio::time::timeout(DEADLINE, connection)
        .await
        .expect("the server closes the idle connection")
        .expect("the connection task ends")
        .expect("the connection ends cleanly");

    // A stream held open for longer than the timeout keeps its connection:
    // a signal sent after it still arrives.
    let (mut sender, connection) = connect().await;
    let connection = tokio::spawn(connection);
    let (_, stream) = join_and_stream(&mut sender, "http://localhost", "idle").await;
    let mut body = stream.into_body();
    let mut seen = String::new();
    while !seen.contains("event: ready") {
        let frame = tokio::time::timeout(DEADLINE, body.frame())
            .await
            .expect("the stream sends ready")
            .expect("the stream is open")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    // Three header timeouts with nothing but the stream under way: the
    // connection must not end within them.
    let mut connection = connection;
    let ended = tokio::time::timeout(std::time::Duration::from_millis(900), &mut connection).await;
    assert!(ended.is_err(), "the connection with a stream is kept");
    let health = request(&mut sender, "GET", "http://localhost/healthz", None).await;
    assert_eq!(health.status(), 200);
}

/// TLS 1.2 clients are served as TLS 1.3 ones are, on either protocol.
#[tokio::test]
async fn tls_1_2_clients_are_served_over_http_1_1_and_http_2() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certificate = TestCertificate::new();
    let app = spawn_app_with(&certificate.flags()).await;
    let tls12 = [&tokio_rustls::rustls::version::TLS12];

    let mut tls = connect_tls(&app, &certificate.connector_for(b"http/1.1", &tls12)).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(tokio_rustls::rustls::ProtocolVersion::TLSv1_2)
    );
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("the request is written");
    tls.flush().await.expect("the request is sent");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, tls.read_to_end(&mut answer))
        .await
        .expect("answered within the deadline")
        .expect("the answer is read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");

    let tls = connect_tls(&app, &certificate.connector_for(b"h2", &tls12)).await;
    let mut sender = http2(tls).await;
    let health = request(&mut sender, "GET", "https://localhost/healthz", None).await;
    assert_eq!(health.status(), 200);
}

/// A client that opens a connection and never finishes its handshake, or
/// sends something that is not TLS, holds it no longer than the header
/// timeout.
#[tokio::test]
async fn a_handshake_never_finished_or_not_tls_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certificate = TestCertificate::new();
    let mut flags = certificate.flags().to_vec();
    flags.extend_from_slice(&["--header-timeout", "0.3"]);
    let app = spawn_app_with(&flags).await;
    for hello in [
        &b""[..],
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(app.addr)
            .await
            .expect("the server accepts");
        tcp.write_all(hello).await.expect("written");
        let mut rest = Vec::new();
        let ended = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut rest)).await;
        assert!(
            ended.is_ok(),
            "the server closes the connection within the deadline"
        );
    }
}
