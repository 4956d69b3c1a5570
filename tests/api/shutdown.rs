//! Shutdown with a stream open: cancelling `run`'s token, SIGTERM and Ctrl-C
//! (SIGINT) to the real binary; every one ends the streams and finishes
//! cleanly.

use std::net::SocketAddr;

use serde_json::json;

use crate::helpers::{
    DEADLINE, EventStream, Joined, ServerProcess, json_body, listening_address, send, spawn_app,
};

#[tokio::test]
async fn cancelling_the_shutdown_token_ends_open_streams_and_run_returns_ok() {
    let mut app = spawn_app().await;
    let alice = app.join("lobby").await;
    let mut events = app.open_events(&alice, None).await;
    events.expect_ready(&alice, 0).await;

    app.shutdown.cancel();

    events.expect_end().await;
    app.expect_run_to_return_ok().await;
}

#[tokio::test]
async fn cancelling_the_shutdown_token_ends_a_waiting_poll() {
    let mut app = spawn_app().await;
    let alice = app.join("lobby").await;
    let poll = app
        .client
        .get(app.url(&format!("{}?timeout=60", alice.poll_url)))
        .bearer_auth(&alice.token);
    let waiting = tokio::spawn(async move { send(poll).await });
    // Once the stream is open the server is serving; the poll sent before it
    // is very likely waiting, and if not it is refused or answered at once.
    let mut events = app.open_events(&alice, None).await;
    events.expect("ready").await;

    app.shutdown.cancel();

    let answer = waiting.await.expect("the poll task does not panic");
    let status = answer.status().as_u16();
    assert!(
        status == 200 || status >= 500,
        "a poll cut by shutdown answers, status {status}"
    );
    app.expect_run_to_return_ok().await;
}

/// Starts the binary, opens a stream, sends `signal`, and checks that the
/// stream ends and the binary exits 0.
async fn signal_ends_streams_and_the_binary_exits_0(signal: &str) {
    let mut server = ServerProcess::start(&[], &[]).await;
    let client = reqwest::Client::new();
    let response = send(
        client
            .post(server.url("/rooms/lobby/join"))
            .json(&json!({})),
    )
    .await;
    let alice = Joined::from_response(response).await;
    let response = tokio::time::timeout(
        DEADLINE,
        client
            .get(server.url(&alice.events_url))
            .bearer_auth(&alice.token)
            .send(),
    )
    .await
    .expect("the stream answers within the deadline")
    .expect("the stream request is sent");
    let mut events = EventStream::from_response(response).await;
    events.expect_ready(&alice, 0).await;

    server.kill(signal);

    events.expect_end().await;
    let status = server.wait_exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "the binary exits 0 on SIG{signal}: {status:?}"
    );
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_the_binary_exits_0() {
    signal_ends_streams_and_the_binary_exits_0("TERM").await;
}

#[tokio::test]
async fn ctrl_c_ends_open_streams_and_the_binary_exits_0() {
    signal_ends_streams_and_the_binary_exits_0("INT").await;
}

#[tokio::test]
async fn the_binary_serves_until_it_is_stopped() {
    let mut server = ServerProcess::start(&[], &[]).await;
    let client = reqwest::Client::new();

    let health = send(client.get(server.url("/healthz"))).await;
    let join = send(client.post(server.url("/rooms/lobby/join"))).await;

    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(json_body(join, 201).await["room_id"], json!("lobby"));
    server.kill("TERM");
    assert_eq!(server.wait_exit().await.code(), Some(0));
}

#[test]
fn the_listening_address_is_found_in_common_log_formats() {
    let expected: SocketAddr = "127.0.0.1:41234".parse().expect("an address");
    for line in [
        "2025-01-01T00:00:00Z  INFO signalpost: listening on 127.0.0.1:41234",
        "INFO signalpost: listening on addr=127.0.0.1:41234",
        "\u{1b}[32m INFO\u{1b}[0m listening on \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:41234",
        "{\"message\":\"listening on 127.0.0.1:41234\"}",
    ] {
        assert_eq!(listening_address(line), Some(expected), "{line}");
    }
    assert_eq!(listening_address("starting up"), None);
}
