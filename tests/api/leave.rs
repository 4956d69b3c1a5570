//! `DELETE /rooms/{room_id}/members/{member_id}`: leaving, removing, the
//! owner's succession, the room's end.

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, ServerProcess, TestApp, assert_problem, json_body, send, spawn_app, spawn_app_with,
};
use crate::metrics::wait_for_sample;

#[tokio::test]
async fn leave_answers_204_and_the_others_get_member_left_with_reason_left() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let carol = app.join("lobby").await;
    let mut alice_events = app.open_drained(&alice, 2).await;
    let mut carol_events = app.open_drained(&carol, 0).await;

    let response = app.leave(&bob).await;

    assert_eq!(response.status().as_u16(), 204);
    for events in [&mut alice_events, &mut carol_events] {
        let left = events.expect("member-left").await;
        assert_eq!(
            left.data,
            json!({"member_id": bob.member_id, "reason": "left"})
        );
    }
}

#[tokio::test]
async fn the_owner_removing_a_member_sends_reason_removed() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let carol = app.join("lobby").await;
    let mut carol_events = app.open_drained(&carol, 0).await;

    let response = app
        .remove("lobby", &bob.member_id, Some(&alice.token))
        .await;

    assert_eq!(response.status().as_u16(), 204);
    let left = carol_events.expect("member-left").await;
    assert_eq!(
        left.data,
        json!({"member_id": bob.member_id, "reason": "removed"})
    );
}

/// Removed with a stream open, a member reads what its inbox held, then
/// its own `member-left`, and the stream ends: however soon after a signal
/// the removal comes, neither is lost.
#[tokio::test]
async fn a_removed_member_reads_its_inbox_to_the_end_then_its_own_removal() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let carol = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 1).await;

    assert_eq!(app.signal(&carol, Some(&bob), "offer", json!(1)).await, 1);
    let response = app
        .remove("lobby", &bob.member_id, Some(&alice.token))
        .await;
    assert_eq!(response.status().as_u16(), 204);

    let signal = bob_events.expect_signal().await;
    assert_eq!(signal.data["from"], json!(carol.member_id));
    bob_events.expect_own_leave(&bob, "removed").await;
}

/// A poll waiting when its member is removed answers with the removal.
#[tokio::test]
async fn a_waiting_poll_of_a_removed_member_answers_with_its_removal() {
    // A process of its own: its poll gauge moves for this test alone.
    let server = ServerProcess::start(&[], &[]).await;
    let app = TestApp::at(server.addr);
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let url = app.url(&format!("{}/poll?after=0&timeout=30", bob.path()));
    let poll = tokio::spawn(app.client.get(url).bearer_auth(&bob.token).send());
    wait_for_sample(&app, "signalpost_open_streams{transport=\"poll\"}", 1.0).await;
    let response = app
        .remove("lobby", &bob.member_id, Some(&alice.token))
        .await;
    assert_eq!(response.status().as_u16(), 204);
    let answer = poll
        .await
        .expect("the poll task ends")
        .expect("the poll is answered");
    let events = json_body(answer, 200).await;
    let events = events["events"].as_array().expect("events").clone();
    let last = events.last().expect("the poll carries the removal");
    assert_eq!(last["event"], json!("member-left"));
    assert_eq!(
        last["data"],
        json!({"member_id": bob.member_id, "reason": "removed"})
    );
    assert_problem(
        app.poll(&bob, "after=0&timeout=0").await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn the_admin_removing_a_member_sends_reason_removed() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut alice_events = app.open_drained(&alice, 1).await;

    let response = app.remove("lobby", &bob.member_id, Some(ADMIN_TOKEN)).await;

    assert_eq!(response.status().as_u16(), 204);
    let left = alice_events.expect("member-left").await;
    assert_eq!(
        left.data,
        json!({"member_id": bob.member_id, "reason": "removed"})
    );
}

#[tokio::test]
async fn a_member_who_is_not_the_owner_cannot_remove_another_member() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let carol = app.join("lobby").await;

    let response = app
        .remove("lobby", &carol.member_id, Some(&bob.token))
        .await;

    assert_problem(response, 403, "forbidden").await;
    let room = json_body(app.get_room("lobby", Some(&alice.token)).await, 200).await;
    assert_eq!(room["members"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn the_owner_of_another_room_cannot_remove_a_member() {
    let app = spawn_app().await;
    app.join("lobby").await;
    let bob = app.join("lobby").await;
    let other_owner = app.join("kitchen").await;

    let response = app
        .remove("lobby", &bob.member_id, Some(&other_owner.token))
        .await;

    assert_problem(response, 403, "forbidden").await;
}

#[tokio::test]
async fn after_leaving_the_token_answers_401() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    assert_eq!(app.leave(&bob).await.status().as_u16(), 204);

    let signal = app.send(&bob.token, None, "chat", json!(1)).await;
    let poll = app.poll(&bob, "timeout=0").await;
    let events = send(app.events_request(&bob, None)).await;
    let room = app.get_room("lobby", Some(&bob.token)).await;
    let again = app.leave(&bob).await;

    for response in [signal, poll, events, room, again] {
        assert_problem(response, 401, "unauthorized").await;
    }
    assert_eq!(app.signal(&alice, None, "chat", json!(1)).await, 0);
}

#[tokio::test]
async fn a_removed_member_token_answers_401() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let response = app
        .remove("lobby", &bob.member_id, Some(&alice.token))
        .await;
    assert_eq!(response.status().as_u16(), 204);

    let response = app.send(&bob.token, None, "chat", json!(1)).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn the_last_leave_removes_the_room() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;
    let alice = app.join_with("lobby", json!({"capacity": 3})).await;
    let bob = app.join("lobby").await;
    app.leave(&alice).await;
    app.leave(&bob).await;

    let room = app.get_room("lobby", Some(ADMIN_TOKEN)).await;
    assert_problem(room, 404, "room_not_found").await;
    let rooms = json_body(app.list_rooms(Some(ADMIN_TOKEN)).await, 200).await;
    assert_eq!(rooms, json!({"rooms": []}));
    let again = app.join("lobby").await;
    assert!(again.owner, "the join made a new room");
    assert_eq!(again.capacity, 10, "the new room has the default capacity");
}

#[tokio::test]
async fn when_the_owner_leaves_the_oldest_remaining_member_becomes_owner() {
    let app = spawn_app().await;
    let alice = app.join_with("lobby", json!({"capacity": 5})).await;
    let bob = app.join("lobby").await;
    let carol = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 1).await;
    let mut carol_events = app.open_drained(&carol, 0).await;

    assert_eq!(app.leave(&alice).await.status().as_u16(), 204);

    for events in [&mut bob_events, &mut carol_events] {
        let mut got: Vec<(String, Value)> = Vec::new();
        for _ in 0..2 {
            let event = events.next_event().await;
            got.push((event.event, event.data));
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                (
                    "member-left".to_owned(),
                    json!({"member_id": alice.member_id, "reason": "left"})
                ),
                (
                    "room-updated".to_owned(),
                    json!({"room_id": "lobby", "locked": false, "capacity": 5, "owner": bob.member_id})
                ),
            ]
        );
    }
    let room = json_body(app.get_room("lobby", Some(&carol.token)).await, 200).await;
    assert_eq!(room["owner"], json!(bob.member_id));
    let response = app.patch_room("lobby", Some(&bob.token), true).await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "the new owner can lock the room"
    );
}

#[tokio::test]
async fn a_member_removed_by_its_own_token_is_reported_as_left() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 0).await;

    let response = app
        .remove("lobby", &alice.member_id, Some(&alice.token))
        .await;

    assert_eq!(response.status().as_u16(), 204);
    // The owner left, so a room-updated comes too, in either order.
    let first = bob_events.next_event().await;
    let second = bob_events.next_event().await;
    let left = [first, second]
        .into_iter()
        .find(|event| event.event == "member-left")
        .expect("bob gets member-left");
    assert_eq!(
        left.data["reason"],
        json!("left"),
        "the owner leaving is `left`"
    );
}

#[tokio::test]
async fn the_admin_removing_an_unknown_member_answers_404() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;
    app.join("lobby").await;
    let stranger = uuid::Uuid::new_v4();

    let response = app
        .remove("lobby", &stranger.to_string(), Some(ADMIN_TOKEN))
        .await;

    assert_problem(response, 404, "member_not_found").await;
}
