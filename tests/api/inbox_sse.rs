//! `GET .../events`: the SSE stream, its headers, `ready`, queued and live
//! events, keep-alive comments, one live stream per member.

use serde_json::json;

use crate::helpers::{
    Joined, RawLines, TestApp, assert_problem, assert_rfc3339_utc, assert_same_member, send,
    spawn_app, spawn_app_with,
};

#[tokio::test]
async fn events_answers_an_unbuffered_event_stream() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let events = app.open_events(&alice, None).await;

    let header = |name: &str| {
        events
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("the stream has a `{name}` header"))
            .to_str()
            .expect("the header is text")
            .to_owned()
    };
    assert!(
        header("content-type").starts_with("text/event-stream"),
        "content-type: {}",
        header("content-type")
    );
    assert_eq!(header("cache-control"), "no-cache");
    assert_eq!(header("x-accel-buffering"), "no");
}

#[tokio::test]
async fn the_stream_opens_with_a_ready_event_without_an_id() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let mut events = app.open_events(&alice, None).await;

    let ready = events.next_event().await;
    assert_eq!(ready.event, "ready", "the first event is ready: {ready:?}");
    assert_eq!(
        ready.data,
        json!({"member_id": alice.member_id, "last_event_id": 0, "keep_alive": 15.0}),
        "ready names the member, the resume point and the keep-alive interval"
    );
    assert_eq!(ready.id, None, "ready has no id: line");
}

#[tokio::test]
async fn the_stream_opens_with_ready_even_when_events_are_queued() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    app.signal(&bob, Some(&alice), "chat", json!("hi")).await;

    let mut events = app.open_events(&alice, None).await;

    events.expect_ready(&alice, 0).await;
}

#[tokio::test]
async fn events_queued_before_the_stream_opens_arrive_in_order_with_ids_from_1() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    for n in 0..3 {
        app.signal(&bob, Some(&alice), "chat", json!({"n": n}))
            .await;
    }

    let mut events = app.open_events(&alice, None).await;

    events.expect_ready(&alice, 0).await;
    let joined = events.expect("member-joined").await;
    assert_eq!(joined.id, Some(1));
    assert_same_member(&joined.data["member"], &bob.member);
    for n in 0..3 {
        let signal = events.expect_signal().await;
        assert_eq!(signal.id, Some(n + 2));
        assert_eq!(signal.data["payload"], json!({"n": n}));
    }
}

#[tokio::test]
async fn live_events_arrive_on_an_open_stream() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let mut events = app.open_events(&alice, None).await;
    events.expect_ready(&alice, 0).await;

    let bob = app.join("lobby").await;
    let joined = events.expect("member-joined").await;
    assert_eq!(joined.id, Some(1));
    assert_same_member(&joined.data["member"], &bob.member);

    let offer = json!({"type": "offer", "sdp": "v=0\r\n"});
    app.signal(&bob, Some(&alice), "offer", offer.clone()).await;
    let signal = events.expect_signal().await;
    assert_eq!(signal.id, Some(2));
    assert_eq!(signal.data["from"], json!(bob.member_id));
    assert_eq!(signal.data["to"], json!(alice.member_id));
    assert_eq!(signal.data["type"], json!("offer"));
    assert_eq!(signal.data["payload"], offer);
    assert_rfc3339_utc(&signal.data["sent_at"]);
}

#[tokio::test]
async fn the_stream_writes_a_keep_alive_comment_line() {
    let app = spawn_app_with(&["--keep-alive", "0.2"]).await;
    let alice = app.join("lobby").await;

    let mut lines = app.open_raw_events(&alice).await;

    loop {
        let line = lines.next_line().await;
        if line.starts_with(':') {
            assert_eq!(
                line, ": keep-alive",
                "the comment line is exactly `: keep-alive`"
            );
            break;
        }
    }
}

#[tokio::test]
async fn the_stream_repeats_the_keep_alive_comment() {
    let app = spawn_app_with(&["--keep-alive", "0.2"]).await;
    let alice = app.join("lobby").await;

    let mut lines = app.open_raw_events(&alice).await;

    let mut comments = 0;
    while comments < 3 {
        if lines.next_line().await == ": keep-alive" {
            comments += 1;
        }
    }
}

/// Alice's stream with `?keep_alive=` and her bearer token.
fn keep_alive_request(app: &TestApp, member: &Joined, secs: &str) -> reqwest::RequestBuilder {
    app.client
        .get(app.url(&format!("{}?keep_alive={secs}", member.events_url)))
        .bearer_auth(&member.token)
}

#[tokio::test]
async fn a_stream_may_ask_for_keep_alives_sooner_than_the_servers() {
    let app = spawn_app_with(&["--keep-alive", "600"]).await;
    let alice = app.join("lobby").await;

    let request = keep_alive_request(&app, &alice, "1");
    let mut lines = app.open_raw_events_with(request).await;

    assert_eq!(lines.next_line().await, "event: ready");
    let ready: serde_json::Value = serde_json::from_str(
        lines
            .next_line()
            .await
            .strip_prefix("data: ")
            .expect("a data line"),
    )
    .expect("ready's data is JSON");
    assert_eq!(ready["keep_alive"], json!(1.0));
    // Within the helpers' deadline, so long before the server's 600 s.
    while lines.next_line().await != ": keep-alive" {}
}

#[tokio::test]
async fn a_keep_alive_asked_for_above_the_servers_is_the_servers() {
    let app = spawn_app_with(&["--keep-alive", "2"]).await;
    let alice = app.join("lobby").await;

    let request = keep_alive_request(&app, &alice, "3600");
    let mut events = app.open_events_with(request).await;

    let ready = events.expect("ready").await;
    assert_eq!(ready.data["keep_alive"], json!(2.0));
}

#[tokio::test]
async fn a_keep_alive_of_zero_or_not_a_number_is_refused_and_opens_nothing() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let mut open = app.open_events(&alice, None).await;
    open.expect_ready(&alice, 0).await;

    for bad in ["0", "-1", "1.5", "soon"] {
        let request = keep_alive_request(&app, &alice, bad);
        let problem = assert_problem(send(request).await, 400, "invalid_request").await;
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("keep_alive")),
            "{bad}: {problem}"
        );
    }
    // The refused requests did not replace the open stream.
    let bob = app.join("lobby").await;
    let joined = open.expect("member-joined").await;
    assert_same_member(&joined.data["member"], &bob.member);
}

#[tokio::test]
async fn opening_a_second_stream_closes_the_first() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let mut first = app.open_events(&alice, None).await;
    first.expect_ready(&alice, 0).await;

    let mut second = app.open_events(&alice, None).await;

    second.next_event().await;
    first.expect_end().await;
    let bob = app.join("lobby").await;
    let joined = second.expect("member-joined").await;
    assert_same_member(&joined.data["member"], &bob.member);
}

#[tokio::test]
async fn delivered_events_are_not_sent_again_to_a_new_stream() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut first = app.open_events(&alice, None).await;
    first.expect_ready(&alice, 0).await;
    first.expect("member-joined").await;
    app.signal(&bob, Some(&alice), "chat", json!(1)).await;
    assert_eq!(first.expect_signal().await.id, Some(2));
    drop(first);

    let mut second = app.open_events(&alice, None).await;
    let ready = second.expect("ready").await;
    assert_eq!(ready.id, None);
    app.signal(&bob, Some(&alice), "chat", json!(2)).await;

    let next = second.expect_signal().await;
    assert_eq!(next.id, Some(3), "events 1 and 2 were delivered already");
    assert_eq!(next.data["payload"], json!(2));
}

#[tokio::test]
async fn the_token_query_parameter_opens_the_stream() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let url = app.url(&format!("{}?token={}", alice.events_url, alice.token));

    let mut events = app.open_events_with(app.client.get(url)).await;

    events.expect_ready(&alice, 0).await;
}

#[tokio::test]
async fn the_bearer_header_opens_the_stream() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let request = app
        .client
        .get(app.url(&alice.events_url))
        .header("Authorization", format!("Bearer {}", alice.token));

    let mut events = app.open_events_with(request).await;

    events.expect_ready(&alice, 0).await;
}

/// Reads raw lines up to the blank line that ends the next event.
async fn next_raw_event(lines: &mut RawLines) -> Vec<String> {
    let mut event = Vec::new();
    loop {
        let line = lines.next_line().await;
        if line.is_empty() {
            if !event.is_empty() {
                return event;
            }
        } else if !line.starts_with(':') {
            event.push(line);
        }
    }
}

#[tokio::test]
async fn events_are_framed_with_id_event_and_data_lines_and_ready_has_no_id_line() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    app.signal(&bob, Some(&alice), "chat", json!({"n": 1}))
        .await;

    let mut lines = app.open_raw_events(&alice).await;

    let ready = next_raw_event(&mut lines).await;
    assert!(ready.contains(&"event: ready".to_owned()), "{ready:?}");
    assert!(
        !ready.iter().any(|line| line.starts_with("id:")),
        "ready has no id: {ready:?}"
    );
    let joined = next_raw_event(&mut lines).await;
    assert!(joined.contains(&"id: 1".to_owned()), "{joined:?}");
    assert!(
        joined.contains(&"event: member-joined".to_owned()),
        "{joined:?}"
    );
    let signal = next_raw_event(&mut lines).await;
    assert!(signal.contains(&"id: 2".to_owned()), "{signal:?}");
    assert!(signal.contains(&"event: signal".to_owned()), "{signal:?}");
    let data: Vec<&String> = signal
        .iter()
        .filter(|line| line.starts_with("data: "))
        .collect();
    assert_eq!(data.len(), 1, "one data: line: {signal:?}");
    let data: serde_json::Value =
        serde_json::from_str(&data[0]["data: ".len()..]).expect("the data line is JSON");
    assert_eq!(data["payload"], json!({"n": 1}));
}

/// HEAD answers what a GET would, headers only, and opens nothing: the
/// member's live stream goes on.
#[tokio::test]
async fn head_on_the_stream_answers_its_headers_and_leaves_the_live_stream_open() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut events = app.open_events(&alice, None).await;
    events.expect_ready(&alice, 0).await;
    events.expect("member-joined").await;

    let head = app
        .client
        .head(app.url(&alice.events_url))
        .bearer_auth(&alice.token)
        .send()
        .await
        .expect("HEAD is answered");
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["content-type"], "text/event-stream");
    assert_eq!(head.headers()["cache-control"], "no-cache");

    app.signal(&bob, Some(&alice), "chat", json!("still here"))
        .await;
    let signal = events.expect_signal().await;
    assert_eq!(signal.data["payload"], json!("still here"));
}
