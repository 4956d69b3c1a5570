//! `GET .../poll`: at once when events are held, waiting otherwise, the same
//! events as SSE, `after` and `timeout` rules, acknowledgement.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{assert_problem, assert_same_member, spawn_app, spawn_app_with_a_small_inbox};

fn ids(events: &[Value]) -> Vec<Value> {
    events.iter().map(|event| event["id"].clone()).collect()
}

#[tokio::test]
async fn poll_answers_at_once_with_the_held_events() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    app.signal(&bob, Some(&alice), "chat", json!("one")).await;
    app.signal(&bob, Some(&alice), "chat", json!("two")).await;

    // With events held, a 60 s poll answers before the 5 s deadline.
    let events = app.poll_events(&alice, "after=0&timeout=60").await;

    assert_eq!(ids(&events), vec![json!(1), json!(2), json!(3)]);
    assert_eq!(events[0]["event"], json!("member-joined"));
    assert_same_member(&events[0]["data"]["member"], &bob.member);
    for (event, payload) in events[1..].iter().zip(["one", "two"]) {
        assert_eq!(event["event"], json!("signal"));
        assert_eq!(event["data"]["from"], json!(bob.member_id));
        assert_eq!(event["data"]["payload"], json!(payload));
    }
}

#[tokio::test]
async fn poll_answers_events_shaped_id_event_data() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    app.join("lobby").await;

    let events = app.poll_events(&alice, "timeout=0").await;

    assert_eq!(events.len(), 1);
    let event = events[0].as_object().expect("an event is an object");
    let mut keys: Vec<&str> = event.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["data", "event", "id"]);
}

#[tokio::test]
async fn poll_carries_the_same_events_with_the_same_ids_as_the_stream() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    app.signal(
        &bob,
        Some(&alice),
        "offer",
        json!({"type": "offer", "sdp": "x"}),
    )
    .await;
    app.signal(&bob, None, "chat", json!([1, 2, 3])).await;

    let polled = app.poll_events(&alice, "after=0&timeout=0").await;
    let mut events = app.open_events(&alice, Some(0)).await;

    events.expect_ready(&alice, 0).await;
    assert_eq!(polled.len(), 3);
    for expected in &polled {
        let event = events.next_event().await;
        assert_eq!(Some(expected["id"].clone()), event.id.map(|id| json!(id)));
        assert_eq!(expected["event"], json!(event.event));
        assert_eq!(expected["data"], event.data);
    }
}

#[tokio::test]
async fn poll_waits_and_answers_an_empty_list_when_the_timeout_runs_out() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let started = Instant::now();

    let events = app.poll_events(&alice, "timeout=1").await;

    assert_eq!(events, Vec::<Value>::new());
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the poll waited for its timeout, not {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn poll_with_timeout_0_answers_at_once() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let events = app.poll_events(&alice, "timeout=0").await;

    assert!(events.is_empty());
}

#[tokio::test]
async fn poll_wakes_when_an_event_arrives_while_it_waits() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let acknowledged = app.poll_events(&alice, "after=1&timeout=0").await;
    assert!(acknowledged.is_empty());

    let waiting = {
        let request = app
            .client
            .get(app.url(&format!("{}/poll?after=1&timeout=60", alice.path())))
            .bearer_auth(&alice.token);
        tokio::spawn(async move {
            crate::helpers::json_body(crate::helpers::send(request).await, 200).await
        })
    };
    app.signal(&bob, Some(&alice), "chat", json!("wake up"))
        .await;

    let body = waiting.await.expect("the poll task does not panic");
    let events = body["events"].as_array().expect("events is an array");
    assert_eq!(ids(events), vec![json!(2)]);
    assert_eq!(events[0]["data"]["payload"], json!("wake up"));
}

#[tokio::test]
async fn poll_answers_400_for_a_timeout_outside_0_to_60_seconds() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    for timeout in ["61", "-1", "abc", "1.5", ""] {
        let response = app.poll(&alice, &format!("timeout={timeout}")).await;
        assert_problem(response, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn poll_accepts_a_timeout_of_60_seconds() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    app.join("lobby").await;

    let events = app.poll_events(&alice, "timeout=60").await;

    assert_eq!(ids(&events), vec![json!(1)]);
}

#[tokio::test]
async fn poll_answers_400_for_an_after_that_is_negative_or_not_an_integer() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    for after in ["-1", "x", "1.5", ""] {
        let response = app.poll(&alice, &format!("after={after}&timeout=0")).await;
        assert_problem(response, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn poll_after_n_answers_only_later_events() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    for n in 0..3 {
        app.signal(&bob, Some(&alice), "chat", json!(n)).await;
    }

    let events = app.poll_events(&alice, "after=2&timeout=0").await;

    assert_eq!(ids(&events), vec![json!(3), json!(4)]);
    assert_eq!(events[0]["data"]["payload"], json!(1));
}

#[tokio::test]
async fn poll_without_after_starts_at_the_first_event_of_a_new_member() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    app.signal(&bob, Some(&alice), "chat", json!(0)).await;

    let events = app.poll_events(&alice, "timeout=0").await;

    assert_eq!(ids(&events), vec![json!(1), json!(2)]);
}

#[tokio::test]
async fn poll_after_n_acknowledges_every_event_up_to_n() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    for n in 0..3 {
        app.signal(&bob, Some(&alice), "chat", json!(n)).await;
    }
    app.poll_events(&alice, "after=2&timeout=0").await;

    // Without `after`, the poll starts after the last acknowledged id.
    let events = app.poll_events(&alice, "timeout=0").await;

    assert_eq!(ids(&events), vec![json!(3), json!(4)]);
}

#[tokio::test]
async fn poll_past_the_newest_event_waits_for_the_next_one() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    app.join("lobby").await;

    let events = app.poll_events(&alice, "after=1&timeout=0").await;

    assert!(
        events.is_empty(),
        "nothing after the newest event: {events:?}"
    );
}

#[tokio::test]
async fn poll_after_events_no_longer_held_starts_with_a_gap() {
    let app = spawn_app_with_a_small_inbox().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut last = json!(0);
    for n in 0..20 {
        app.signal(&bob, Some(&alice), "chat", json!(n)).await;
        let events = app
            .poll_events(&alice, &format!("after={last}&timeout=0"))
            .await;
        last = events.last().expect("the signal just sent")["id"].clone();
    }
    assert_eq!(last, json!(21));

    let events = app.poll_events(&alice, "after=0&timeout=0").await;

    let gap = &events[0];
    assert_eq!(gap["event"], json!("gap"), "{events:?}");
    assert_eq!(gap["data"]["from"], json!(1), "the loss starts after 0");
    let to = gap["data"]["to"].as_u64().expect("gap.to is an id");
    assert!((1..21).contains(&to), "some events are still held: {gap}");
    assert_eq!(gap["id"], json!(to), "a gap's id is its `to`");
    let held: Vec<u64> = (to + 1..=21).collect();
    assert_eq!(
        ids(&events[1..]),
        held.iter().map(|id| json!(id)).collect::<Vec<_>>()
    );
    for (event, id) in events[1..].iter().zip(held) {
        assert_eq!(event["event"], json!("signal"));
        // Event 2 is the first signal (0); event 1 was bob's join.
        assert_eq!(event["data"]["payload"], json!(id - 2));
    }
}

/// A GET with `after` acknowledges; HEAD asks the same and changes nothing.
#[tokio::test]
async fn head_on_the_poll_acknowledges_nothing() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    app.signal(&bob, Some(&alice), "chat", json!("one")).await;

    let url = app.url(&format!("{}/poll?after=2&timeout=0", alice.path()));
    let head = app
        .client
        .head(url)
        .bearer_auth(&alice.token)
        .send()
        .await
        .expect("HEAD is answered");
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["content-type"], "application/json");

    let events = app.poll_events(&alice, "timeout=0").await;
    assert_eq!(ids(&events), vec![json!(1), json!(2)]);
}
