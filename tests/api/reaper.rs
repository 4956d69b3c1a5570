//! Liveness: with `--member-timeout 1`, a member whose inbox nobody reads is
//! removed with reason `timeout`; an open stream or a waiting poll keeps it.
//! Every wait here is an awaited event on a live member's stream.

use serde_json::json;

use crate::helpers::{Joined, TestApp, assert_problem, json_body, send, spawn_app_with};

const SHORT_TIMEOUT: [&str; 2] = ["--member-timeout", "1"];

/// The ids of the room's members, as one of them sees it.
async fn member_ids(app: &TestApp, viewer: &Joined) -> Vec<String> {
    let room = json_body(
        app.get_room(&viewer.room_id, Some(&viewer.token)).await,
        200,
    )
    .await;
    room["members"]
        .as_array()
        .expect("members is an array")
        .iter()
        .map(|member| {
            member["id"]
                .as_str()
                .expect("a member has an id")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_member_who_never_reads_its_inbox_is_removed_with_reason_timeout() {
    let app = spawn_app_with(&SHORT_TIMEOUT).await;
    let alice = app.join("lobby").await;
    let mut alice_events = app.open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;

    let bob = app.join("lobby").await;

    alice_events.expect("member-joined").await;
    let left = alice_events.expect("member-left").await;
    assert_eq!(
        left.data,
        json!({"member_id": bob.member_id, "reason": "timeout"})
    );
    let response = app.send(&bob.token, None, "chat", json!(1)).await;
    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_member_with_an_open_stream_is_not_removed() {
    let app = spawn_app_with(&SHORT_TIMEOUT).await;
    // Alice joins first, so her clock would run out no later than bob's.
    let alice = app.join("lobby").await;
    let mut alice_events = app.open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;
    let bob = app.join("lobby").await;
    alice_events.expect("member-joined").await;

    let left = alice_events.expect("member-left").await;

    assert_eq!(left.data["member_id"], json!(bob.member_id));
    assert_eq!(
        member_ids(&app, &alice).await,
        vec![alice.member_id.clone()]
    );
    assert_eq!(app.signal(&alice, None, "chat", json!(1)).await, 0);
}

#[tokio::test]
async fn a_member_is_removed_once_its_stream_has_been_closed_for_the_timeout() {
    let app = spawn_app_with(&SHORT_TIMEOUT).await;
    let alice = app.join("lobby").await;
    let mut alice_events = app.open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;
    let bob = app.join("lobby").await;
    let mut bob_events = app.open_events(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;
    let carol = app.join("lobby").await;
    alice_events.expect("member-joined").await;
    alice_events.expect("member-joined").await;

    // Carol never reads: once she is gone, more than a timeout has passed
    // since bob joined, and his open stream kept him.
    let left = alice_events.expect("member-left").await;
    assert_eq!(
        left.data,
        json!({"member_id": carol.member_id, "reason": "timeout"})
    );
    assert_eq!(
        member_ids(&app, &alice).await,
        vec![alice.member_id.clone(), bob.member_id.clone()]
    );

    drop(bob_events);

    let left = alice_events.expect("member-left").await;
    assert_eq!(
        left.data,
        json!({"member_id": bob.member_id, "reason": "timeout"})
    );
}

#[tokio::test]
async fn a_member_waiting_in_a_long_poll_is_not_removed() {
    let app = spawn_app_with(&SHORT_TIMEOUT).await;
    let alice = app.join("lobby").await;
    let mut alice_events = app.open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;
    // Carol joins before bob, so her clock runs out first unless bob's poll
    // counts as reading. Bob's inbox is empty, so his poll waits until
    // carol's member-left arrives in it.
    let carol = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let poll = app
        .client
        .get(app.url(&format!("{}?timeout=4", bob.poll_url)))
        .bearer_auth(&bob.token);
    let waiting = tokio::spawn(async move { send(poll).await.status().as_u16() });
    alice_events.expect("member-joined").await;
    alice_events.expect("member-joined").await;

    let left = alice_events.expect("member-left").await;

    assert_eq!(
        left.data,
        json!({"member_id": carol.member_id, "reason": "timeout"})
    );
    assert!(
        member_ids(&app, &alice).await.contains(&bob.member_id),
        "bob's waiting poll kept him"
    );
    assert_eq!(waiting.await.expect("the poll task does not panic"), 200);
}

#[tokio::test]
async fn when_the_owner_is_removed_for_silence_the_oldest_remaining_member_becomes_owner() {
    let app = spawn_app_with(&SHORT_TIMEOUT).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut bob_events = app.open_events(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;

    let first = bob_events.next_event().await;
    let second = bob_events.next_event().await;

    let mut got = [first, second];
    got.sort_by(|a, b| a.event.cmp(&b.event));
    assert_eq!(got[0].event, "member-left");
    assert_eq!(
        got[0].data,
        json!({"member_id": alice.member_id, "reason": "timeout"})
    );
    assert_eq!(got[1].event, "room-updated");
    assert_eq!(got[1].data["owner"], json!(bob.member_id));
}
