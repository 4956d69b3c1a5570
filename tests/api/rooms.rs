//! `GET /rooms/{room_id}` and `PATCH /rooms/{room_id}`: the room, locking.

use serde_json::json;

use crate::helpers::{
    assert_problem, assert_rfc3339_utc, assert_same_member, json_body, send, spawn_app,
};

#[tokio::test]
async fn get_room_answers_the_room_to_its_members() {
    let app = spawn_app().await;
    let alice = app.join_with("lobby", json!({"capacity": 4})).await;
    let bob = app.join_with("lobby", json!({"name": "bob"})).await;

    let room = json_body(app.get_room("lobby", Some(&bob.token)).await, 200).await;

    assert_eq!(room["id"], json!("lobby"));
    assert_eq!(room["capacity"], json!(4));
    assert_eq!(room["locked"], json!(false));
    assert_eq!(room["owner"], json!(alice.member_id));
    let members = room["members"].as_array().expect("members is an array");
    assert_eq!(members.len(), 2, "every member, oldest first: {members:?}");
    assert_same_member(&members[0], &alice.member);
    assert_same_member(&members[1], &bob.member);
    assert_rfc3339_utc(&room["created_at"]);
}

#[tokio::test]
async fn get_room_answers_403_to_a_member_of_another_room() {
    let app = spawn_app().await;
    app.join("lobby").await;
    let elsewhere = app.join("kitchen").await;

    let response = app.get_room("lobby", Some(&elsewhere.token)).await;

    assert_problem(response, 403, "forbidden").await;
}

#[tokio::test]
async fn get_room_answers_401_without_a_token() {
    let app = spawn_app().await;
    app.join("lobby").await;

    let response = app.get_room("lobby", None).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn get_room_answers_400_for_an_invalid_room_id() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let response = app.get_room("lob%20by", Some(&alice.token)).await;

    assert_problem(response, 400, "invalid_room_id").await;
}

#[tokio::test]
async fn patch_room_by_the_owner_locks_it_and_tells_every_member() {
    let app = spawn_app().await;
    let alice = app.join_with("lobby", json!({"capacity": 3})).await;
    let bob = app.join("lobby").await;
    let mut alice_events = app.open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;
    alice_events.expect("member-joined").await;
    let mut bob_events = app.open_events(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;

    let response = app.patch_room("lobby", Some(&alice.token), true).await;

    let room = json_body(response, 200).await;
    assert_eq!(room["id"], json!("lobby"));
    assert_eq!(room["locked"], json!(true));
    assert_eq!(room["owner"], json!(alice.member_id));
    assert_eq!(room["capacity"], json!(3));
    assert_eq!(room["members"].as_array().map(Vec::len), Some(2));
    assert_rfc3339_utc(&room["created_at"]);
    let expected =
        json!({"room_id": "lobby", "locked": true, "capacity": 3, "owner": alice.member_id});
    for events in [&mut alice_events, &mut bob_events] {
        let updated = events.expect("room-updated").await;
        assert_eq!(updated.data, expected);
    }
}

#[tokio::test]
async fn patch_room_by_a_member_who_is_not_the_owner_answers_403() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;

    let response = app.patch_room("lobby", Some(&bob.token), true).await;

    assert_problem(response, 403, "forbidden").await;
    let room = json_body(app.get_room("lobby", Some(&alice.token)).await, 200).await;
    assert_eq!(room["locked"], json!(false));
}

#[tokio::test]
async fn patch_room_answers_401_without_a_token() {
    let app = spawn_app().await;
    app.join("lobby").await;

    let response = app.patch_room("lobby", None, true).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn patch_room_answers_400_when_locked_is_not_a_bool() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    for body in [json!({"locked": "yes"}), json!({"locked": 1}), json!([])] {
        let request = app
            .client
            .patch(app.url("/rooms/lobby"))
            .bearer_auth(&alice.token)
            .json(&body);
        assert_problem(send(request).await, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_locked_room_answers_423_to_a_new_join() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    assert_eq!(
        app.patch_room("lobby", Some(&alice.token), true)
            .await
            .status()
            .as_u16(),
        200
    );

    let response = app.post_join("lobby", Some(json!({}))).await;

    assert_problem(response, 423, "room_locked").await;
}

#[tokio::test]
async fn an_unlocked_room_accepts_joins_again() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    app.patch_room("lobby", Some(&alice.token), true).await;
    let mut alice_events = app.open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;
    assert_eq!(
        alice_events.expect("room-updated").await.data["locked"],
        json!(true)
    );

    let response = app.patch_room("lobby", Some(&alice.token), false).await;

    assert_eq!(json_body(response, 200).await["locked"], json!(false));
    assert_eq!(
        alice_events.expect("room-updated").await.data["locked"],
        json!(false)
    );
    let bob = app.join("lobby").await;
    assert!(!bob.owner);
}
