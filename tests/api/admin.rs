//! The admin token: `GET /rooms`, and the admin's reach over any room; and
//! the server without an admin token.

use serde_json::json;

use crate::helpers::{
    ADMIN_TOKEN, assert_problem, assert_rfc3339_utc, json_body, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn get_rooms_answers_every_room_with_its_member_count_to_the_admin() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;
    app.join_with("lobby", json!({"capacity": 4})).await;
    app.join("lobby").await;
    app.join("kitchen").await;

    let body = json_body(app.list_rooms(Some(ADMIN_TOKEN)).await, 200).await;

    let mut rooms = body["rooms"].as_array().expect("rooms is an array").clone();
    rooms.sort_by_key(|room| room["id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(rooms.len(), 2);
    for room in &rooms {
        assert_rfc3339_utc(&room["created_at"]);
    }
    assert_eq!(rooms[0]["id"], json!("kitchen"));
    assert_eq!(rooms[0]["member_count"], json!(1));
    assert_eq!(rooms[0]["capacity"], json!(10));
    assert_eq!(rooms[0]["locked"], json!(false));
    assert_eq!(rooms[1]["id"], json!("lobby"));
    assert_eq!(rooms[1]["member_count"], json!(2));
    assert_eq!(rooms[1]["capacity"], json!(4));
    assert_eq!(rooms[1]["locked"], json!(false));
}

#[tokio::test]
async fn get_rooms_answers_401_without_a_token() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;

    let response = app.list_rooms(None).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn get_rooms_answers_401_with_a_wrong_token() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;

    let response = app.list_rooms(Some("admintokeN")).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn get_rooms_answers_403_to_a_member() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;
    let alice = app.join("lobby").await;

    let response = app.list_rooms(Some(&alice.token)).await;

    assert_problem(response, 403, "forbidden").await;
}

#[tokio::test]
async fn without_an_admin_token_configured_admin_calls_answer_401_without_a_token() {
    let app = spawn_app().await;

    let response = app.list_rooms(None).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn without_an_admin_token_configured_admin_calls_answer_403_with_a_token() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let member = app.list_rooms(Some(&alice.token)).await;
    let guess = app.list_rooms(Some(ADMIN_TOKEN)).await;

    assert_problem(member, 403, "forbidden").await;
    assert_problem(guess, 403, "forbidden").await;
}

#[tokio::test]
async fn the_admin_can_get_any_room() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;
    let alice = app.join("lobby").await;

    let room = json_body(app.get_room("lobby", Some(ADMIN_TOKEN)).await, 200).await;

    assert_eq!(room["id"], json!("lobby"));
    assert_eq!(room["owner"], json!(alice.member_id));
}

#[tokio::test]
async fn the_admin_getting_an_unknown_room_answers_404() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;

    let response = app.get_room("nowhere", Some(ADMIN_TOKEN)).await;

    assert_problem(response, 404, "room_not_found").await;
}

#[tokio::test]
async fn the_admin_can_lock_any_room() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;
    let alice = app.join("lobby").await;
    let mut alice_events = app.open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;

    let response = app.patch_room("lobby", Some(ADMIN_TOKEN), true).await;

    assert_eq!(json_body(response, 200).await["locked"], json!(true));
    let updated = alice_events.expect("room-updated").await;
    assert_eq!(updated.data["locked"], json!(true));
    assert_problem(app.post_join("lobby", None).await, 423, "room_locked").await;
}

#[tokio::test]
async fn the_admin_cannot_read_a_member_inbox() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;
    let alice = app.join("lobby").await;

    let events = crate::helpers::send(
        app.client
            .get(app.url(&alice.events_url))
            .bearer_auth(ADMIN_TOKEN),
    )
    .await;
    let poll = crate::helpers::send(
        app.client
            .get(app.url(&format!("{}?timeout=0", alice.poll_url)))
            .bearer_auth(ADMIN_TOKEN),
    )
    .await;

    assert_problem(events, 403, "forbidden").await;
    assert_problem(poll, 403, "forbidden").await;
}

#[tokio::test]
async fn the_admin_cannot_send_a_signal() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;
    app.join("lobby").await;

    let response = app.send(ADMIN_TOKEN, None, "chat", json!(1)).await;

    assert_problem(response, 403, "forbidden").await;
}
