//! The limits that keep one client from hurting the others: the request
//! head's size and the time to send it, per-client rates, server-wide caps;
//! and the member cookie that keeps tokens out of URLs.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::json;

use crate::helpers::{
    DEADLINE, EventStream, Joined, TestApp, assert_problem, per_node_bound_skipped_on_cluster,
    spawn_app, spawn_app_with, spawn_one_node_with,
};

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
        answer.starts_with("HTTP/1.1 408"),
        "unexpected answer: {answer}"
    );
    assert_problem_text(&answer, 408);
}

/// The problem+json of an answer read off the wire, whole.
fn assert_problem_text(answer: &str, status: u16) {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("a head and a body: {answer:.200}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    let problem: serde_json::Value = serde_json::from_str(body).expect("the body is JSON");
    assert_eq!(problem["status"], json!(status), "{problem}");
    assert_eq!(problem["code"], json!("invalid_request"), "{problem}");
    assert!(problem["detail"].is_string(), "{problem}");
}

#[tokio::test]
async fn a_request_head_no_server_could_read_answers_400_problem_json() {
    let app = spawn_app().await;

    for head in [
        "GET /healthz HTTP/1.1\r\nBad Name: v\r\n\r\n",
        "not http at all\r\n\r\n",
    ] {
        let answer = exchange(app.addr, head.into()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer:.80}");
        assert_problem_text(&answer, 400);
    }
}

/// HTTP/2 with prior knowledge: a preface alone, or a preface and nothing
/// more, holds the connection no longer than the header timeout.
#[tokio::test]
async fn an_http2_client_that_sends_no_request_is_disconnected() {
    let app = spawn_app_with(&["--header-timeout", "0.3"]).await;

    for opening in ["PRI * HTTP/2.0\r\n\r\n", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"] {
        // `exchange` reads until the server closes, or fails at the deadline.
        exchange(app.addr, opening.into()).await;
    }
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
    assert_problem_text(&answer, 431);
}

/// As a request typed by hand into `nc` ends its lines.
#[tokio::test]
async fn a_request_with_bare_line_feeds_is_served() {
    let app = spawn_app().await;

    let answer = exchange(
        app.addr,
        "GET /healthz HTTP/1.1\nHost: x\nConnection: close\n\n".into(),
    )
    .await;

    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.80}");
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

#[tokio::test]
async fn joins_past_the_per_client_rate_answer_429_with_retry_after() {
    if per_node_bound_skipped_on_cluster("--join-rate") {
        return;
    }
    let app = spawn_app_with(&["--join-rate", "2"]).await;
    app.join("lobby").await;
    app.join("lobby").await;

    let third = app.post_join("lobby", None).await;

    let retry_after: u64 = third.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds");
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_problem(third, 429, "rate_limited").await;
}

#[tokio::test]
async fn a_member_over_its_signal_rate_is_refused_and_others_are_not() {
    if per_node_bound_skipped_on_cluster("--signal-rate") {
        return;
    }
    let app = spawn_app_with(&["--signal-rate", "2"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    for n in 0..2 {
        app.signal(&alice, Some(&bob), "chat", json!(n)).await;
    }

    let refused = app
        .send(&alice.token, Some(&bob.member_id), "chat", json!(2))
        .await;
    let other = app
        .send(&bob.token, Some(&alice.member_id), "chat", json!("hi"))
        .await;

    assert!(refused.headers().contains_key("retry-after"));
    assert_problem(refused, 429, "rate_limited").await;
    assert_eq!(other.status().as_u16(), 202);
    // The refused signal was not delivered: the next event bob sees after
    // the two accepted ones is alice leaving.
    let mut bob_events = app.open_events(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;
    for n in 0..2 {
        assert_eq!(bob_events.expect_signal().await.data["payload"], json!(n));
    }
    app.leave(&alice).await;
    assert_eq!(bob_events.next_event().await.event, "member-left");
}

#[tokio::test]
async fn a_join_past_the_server_member_cap_answers_503_and_a_leave_frees_a_place() {
    let app = spawn_app_with(&["--max-members", "2"]).await;
    let alice = app.join("a").await;
    app.join("b").await;

    assert_problem(app.post_join("c", None).await, 503, "server_busy").await;
    app.leave(&alice).await;
    app.join("c").await;
}

#[tokio::test]
async fn a_stream_past_the_server_stream_cap_answers_503_and_a_closed_one_frees_a_place() {
    if per_node_bound_skipped_on_cluster("--max-streams") {
        return;
    }
    let app = spawn_app_with(&["--max-streams", "1"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut alice_events = app.open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;
    alice_events.expect("member-joined").await;

    bob_waits_for_alices_place(&app, &alice, alice_events, &bob).await;
}

/// With the server's one stream place Alice's: Bob's stream is refused
/// until she leaves, which ends her stream and gives its place back.
async fn bob_waits_for_alices_place(
    app: &TestApp,
    alice: &Joined,
    mut alice_events: EventStream,
    bob: &Joined,
) {
    let refused = app
        .events_request(bob, None)
        .send()
        .await
        .expect("ask for a stream");
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_problem(refused, 503, "server_busy").await;

    app.leave(alice).await;
    alice_events.expect_own_leave(alice, "left").await;
    let mut bob_events = app.open_events_when_a_place_is_free(bob, None).await;
    bob_events.expect_ready(bob, 0).await;
}

/// A newer stream replaces the older at once, and the older ends a moment
/// later: the newer takes its place over, so even with every place taken a
/// member can always reopen its own stream.
#[tokio::test]
async fn a_member_reopens_its_own_stream_while_the_server_holds_every_place() {
    let app = spawn_one_node_with(&["--max-streams", "1"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut first = app.open_events(&alice, None).await;
    first.expect_ready(&alice, 0).await;
    first.expect("member-joined").await;

    for _ in 0..3 {
        let mut newer = app.open_events(&alice, Some(1)).await;
        newer.expect_ready(&alice, 1).await;
        first.expect_end().await;
        first = newer;
    }

    // Still one place, Alice's.
    bob_waits_for_alices_place(&app, &alice, first, &bob).await;
}

/// Polls do not replace each other, so one member could otherwise hold
/// every place the server has.
#[tokio::test]
async fn a_member_past_its_waiting_polls_answers_429_and_others_are_served() {
    let app = spawn_one_node_with(&["--max-streams", "5"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let url = app.url(&format!("{}/poll?after=1&timeout=30", alice.path()));
    let mut polls: Vec<_> = (0..5)
        .map(|_| {
            let request = app.client.get(&url).bearer_auth(&alice.token);
            tokio::spawn(async move { request.send().await })
        })
        .collect();

    // Nothing answers a waiting poll before the signal below: the first of
    // the five to end is the one past the four.
    let (first, at, _) =
        tokio::time::timeout(DEADLINE, futures_util::future::select_all(polls.iter_mut()))
            .await
            .expect("the poll past the four is answered at once");
    let refused = first.expect("the task ends").expect("the poll is answered");
    let problem = assert_problem(refused, 429, "rate_limited").await;
    assert!(problem["detail"].is_string());
    let waiting: Vec<_> = polls
        .into_iter()
        .enumerate()
        .filter_map(|(index, poll)| (index != at).then_some(poll))
        .collect();
    // Bob has the fifth place.
    assert!(app.poll_events(&bob, "after=0&timeout=0").await.is_empty());

    app.signal(&bob, Some(&alice), "chat", json!("wake")).await;
    for poll in waiting {
        let response = tokio::time::timeout(DEADLINE, poll)
            .await
            .expect("each waiting poll answers the signal")
            .expect("the task ends")
            .expect("the poll is answered");
        assert_eq!(response.status().as_u16(), 200);
    }
}

#[tokio::test]
async fn join_sets_an_http_only_cookie_scoped_to_the_member() {
    let app = spawn_app().await;

    let response = app.post_join("lobby", None).await;

    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let joined = Joined::from_response(response).await;
    assert!(
        cookie.starts_with(&format!("signalpost_token={};", joined.token)),
        "{cookie}"
    );
    assert!(
        cookie.contains(&format!("Path={};", joined.path())),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
}

#[tokio::test]
async fn the_cookie_alone_opens_the_members_stream_and_poll() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let cookie = format!("signalpost_token={}", alice.token);

    let stream = app
        .client
        .get(app.url(&alice.events_url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let mut events = crate::helpers::EventStream::from_response(stream).await;
    events.expect_ready(&alice, 0).await;
    let poll = app
        .client
        .get(app.url(&format!("{}?timeout=0", alice.poll_url)))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status().as_u16(), 200);
}

#[tokio::test]
async fn one_members_cookie_does_not_open_another_members_inbox() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;

    let response = app
        .client
        .get(app.url(&format!("{}?timeout=0", bob.poll_url)))
        .header("cookie", format!("signalpost_token={}", alice.token))
        .send()
        .await
        .unwrap();

    assert_problem(response, 403, "forbidden").await;
}

#[tokio::test]
async fn leaving_expires_the_cookie() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let response = app.leave(&alice).await;

    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("signalpost_token=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert!(
        cookie.contains(&format!("Path={}", alice.path())),
        "{cookie}"
    );
}
