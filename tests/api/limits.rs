//! Connection-level limits: the request head's size and the time to send it.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::helpers::{DEADLINE, spawn_app_with};

/// Writes `head` and reads until the server closes the connection.
async fn exchange(addr: std::net::SocketAddr, head: String) -> String {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("the server accepts connections");
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("a read timeout can be set");
        stream
            .write_all(head.as_bytes())
            .expect("the head is written");
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .expect("the server closes the connection before the deadline");
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .expect("the exchange does not panic")
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = spawn_app_with(&["--header-timeout", "0.3"]).await;

    // The head never ends: no blank line follows.
    let answer = exchange(app.addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n".into()).await;

    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "unexpected answer: {answer}"
    );
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_refused() {
    let app = spawn_app_with(&["--max-header-bytes", "8192"]).await;
    let big = "a".repeat(10_000);

    let answer = exchange(
        app.addr,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"),
    )
    .await;

    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "unexpected answer: {answer:.80}"
    );
}

#[tokio::test]
async fn a_request_head_under_the_limit_is_served() {
    let app = spawn_app_with(&["--max-header-bytes", "8192"]).await;
    let fits = "a".repeat(4_000);

    let answer = exchange(
        app.addr,
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fits: {fits}\r\nConnection: close\r\n\r\n"),
    )
    .await;

    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "unexpected answer: {answer:.80}"
    );
}
