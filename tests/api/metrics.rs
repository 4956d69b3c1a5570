//! `GET /metrics`: Prometheus text with the gauges, counters and histograms
//! an operator watches; on its own address with `--metrics-listen`. Each
//! test runs the binary, so the counts are its alone.

use std::net::SocketAddr;

use serde_json::json;

use crate::helpers::{DEADLINE, ServerProcess, TestApp, eventually, send};

/// The value of the sample `name` (labels included, as written) in `text`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

/// A node's `/metrics`.
async fn metrics_text(node: &TestApp) -> String {
    node.get("/metrics")
        .await
        .text()
        .await
        .expect("a text body")
}

/// Reads `/metrics` until the sample `name` has `value`: a gauge
/// announces nothing when it moves.
pub async fn wait_for_sample(node: &TestApp, name: &str, value: f64) {
    eventually(&format!("{name} reaches {value}"), DEADLINE, || async {
        let text = metrics_text(node).await;
        sample(&text, name) == Some(value)
    })
    .await;
}

#[tokio::test]
async fn metrics_count_rooms_members_streams_signals_rejections_and_requests() {
    let server = ServerProcess::start(&[], &[]).await;
    let app = TestApp::at(server.addr);
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut stream = app.open_events(&alice, None).await;
    stream.expect_ready(&alice, 0).await;
    stream.expect("member-joined").await;
    for n in 0..3 {
        app.signal(&bob, Some(&alice), "chat", json!(n)).await;
        stream.expect_signal().await;
    }
    assert_eq!(app.get("/nowhere").await.status(), 404);
    assert_eq!(app.get("/docs/").await.status(), 200);

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ASCII")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.expect("a text body");
    assert_eq!(sample(&text, "signalpost_rooms"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "signalpost_members"), Some(2.0));
    assert_eq!(
        sample(&text, "signalpost_open_streams{transport=\"sse\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "signalpost_signals_relayed_total"), Some(3.0));
    assert_eq!(
        sample(&text, "signalpost_rejections_total{code=\"not_found\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "signalpost_request_duration_seconds_count{method=\"POST\",route=\"/signals\"}"
        ),
        Some(3.0)
    );
    assert!(text.contains("signalpost_request_duration_seconds_bucket{method=\"POST\",route=\"/signals\",le=\"0.001\"}"));
    // Paths are counted under their route, so the labels stay few.
    assert_eq!(
        sample(
            &text,
            "signalpost_request_duration_seconds_count{method=\"POST\",route=\"/rooms/{room_id}/join\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "signalpost_request_duration_seconds_count{method=\"GET\",route=\"/docs/\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "signalpost_request_duration_seconds_count{method=\"GET\",route=\"<no route>\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // The member-joined, then one signal per read.
    assert_eq!(sample(&text, "signalpost_inbox_depth_count"), Some(4.0));
}

#[tokio::test]
async fn metrics_listen_moves_metrics_off_the_api_address() {
    let server = ServerProcess::start(&["--metrics-listen", "127.0.0.1:0"], &[]).await;
    let metrics_addr: SocketAddr = server
        .output
        .iter()
        .find_map(|line| line.split("metrics on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("the binary logs `metrics on ADDR`: {:?}", server.output));
    let client = reqwest::Client::new();
    let api = send(client.get(server.url("/metrics"))).await;
    assert_eq!(api.status(), 404, "no metrics on the API's address");
    let metrics = send(client.get(format!("http://{metrics_addr}/metrics"))).await;
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("a text body");
    assert_eq!(sample(&text, "signalpost_members"), Some(0.0), "{text}");
}

/// Rooms of two and inboxes of one: a hard bound of 1 + 2·2 + 2 = 7
/// undelivered events, which `churn_past_the_hard_bound` passes.
pub const CHURN_FLAGS: [&str; 6] = [
    "--inbox-limit",
    "1",
    "--max-capacity",
    "2",
    "--default-capacity",
    "2",
];

/// Churns a second member in and out of alice's room of two until her
/// unread inbox lets membership events go past its hard bound.
pub async fn churn_past_the_hard_bound(nodes: &[TestApp], alice: &crate::helpers::Joined) {
    // With `CHURN_FLAGS`, 5 joins and 5 leaves make 10 events past 7.
    for n in 0..5 {
        let node = &nodes[n % nodes.len()];
        let churner = node.join(&alice.room_id).await;
        assert_eq!(node.leave(&churner).await.status(), 204);
    }
    let events = nodes[0].poll_events(alice, "after=0&timeout=0").await;
    assert_eq!(
        events[0]["event"], "gap",
        "the oldest events are gone: {events:?}"
    );
}

/// `signalpost_events_dropped_total` of one node.
pub async fn events_dropped(node: &TestApp) -> f64 {
    sample(&metrics_text(node).await, "signalpost_events_dropped_total").unwrap_or(0.0)
}

#[tokio::test]
async fn events_an_inbox_lets_go_are_counted() {
    let server = ServerProcess::start(&CHURN_FLAGS, &[]).await;
    let app = TestApp::at(server.addr);
    let alice = app.join("churn").await;
    churn_past_the_hard_bound(std::slice::from_ref(&app), &alice).await;
    assert_eq!(events_dropped(&app).await, 3.0);
}
