//! The application's back end, with the admin token: signals to a room or
//! one member as the service (`"from": null`), and ending a room.

use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, TestApp, assert_problem, spawn_app_with};

async fn admin_app() -> TestApp {
    spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await
}

async fn service_signal(
    app: &TestApp,
    room: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/rooms/{room}/signals")))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("the signal is answered")
}

async fn end_room(app: &TestApp, room: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.delete(app.url(&format!("/rooms/{room}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("the end is answered")
}

#[tokio::test]
async fn the_service_signals_one_member_or_the_whole_room_from_null() {
    let app = admin_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut alice_events = app.open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;
    alice_events.expect("member-joined").await;
    let mut bob_events = app.open_events(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;

    let response = service_signal(
        &app,
        "lobby",
        Some(ADMIN_TOKEN),
        json!({"to": bob.member_id, "type": "notice", "payload": {"text": "recording starts"}}),
    )
    .await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!({"recipients": 1})
    );
    let signal = bob_events.expect_signal().await;
    assert_eq!(signal.data["from"], Value::Null);
    assert_eq!(signal.data["to"], json!(bob.member_id));
    assert_eq!(signal.data["type"], json!("notice"));
    assert_eq!(signal.data["payload"], json!({"text": "recording starts"}));

    let response = service_signal(
        &app,
        "lobby",
        Some(ADMIN_TOKEN),
        json!({"type": "closing-soon"}),
    )
    .await;
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!({"recipients": 2})
    );
    // Alice's first signal is the broadcast: the one to Bob never reached her.
    for events in [&mut alice_events, &mut bob_events] {
        let signal = events.expect_signal().await;
        assert_eq!(signal.data["type"], json!("closing-soon"));
        assert_eq!(signal.data["from"], Value::Null);
        assert_eq!(signal.data["to"], Value::Null);
        assert_eq!(signal.data["payload"], Value::Null);
    }
}

#[tokio::test]
async fn only_the_admin_signals_as_the_service_and_only_to_what_is_there() {
    let app = admin_app().await;
    let alice = app.join("lobby").await;
    let body = json!({"type": "notice"});
    assert_problem(
        service_signal(&app, "lobby", None, body.clone()).await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        service_signal(&app, "lobby", Some(&alice.token), body.clone()).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        service_signal(&app, "nowhere", Some(ADMIN_TOKEN), body.clone()).await,
        404,
        "room_not_found",
    )
    .await;
    let stranger = json!({"to": "6d87a0ca-b405-4ca0-8bdd-3c30eb2b11cf", "type": "notice"});
    assert_problem(
        service_signal(&app, "lobby", Some(ADMIN_TOKEN), stranger).await,
        404,
        "member_not_found",
    )
    .await;
    for bad in [
        json!({"type": "Not A Type"}),
        json!({"payload": 1}),
        json!({"to": "x", "type": "a"}),
    ] {
        let response = service_signal(&app, "lobby", Some(ADMIN_TOKEN), bad.clone()).await;
        assert_problem(response, 400, "invalid_request").await;
    }
    // Nothing reached the inbox.
    let mut events = app.open_events(&alice, None).await;
    events.expect_ready(&alice, 0).await;
    app.signal(
        &app.join("lobby").await,
        Some(&alice),
        "marker",
        json!(null),
    )
    .await;
    events.expect("member-joined").await;
    let next = events.expect_signal().await;
    assert_eq!(next.data["type"], json!("marker"));
}

#[tokio::test]
async fn ending_a_room_removes_every_member_and_the_room() {
    let app = admin_app().await;
    let alice = app.join("doomed").await;
    let bob = app.join("doomed").await;
    let mut alice_events = app.open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;
    let mut bob_events = app.open_events(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;

    assert_eq!(
        end_room(&app, "doomed", Some(ADMIN_TOKEN)).await.status(),
        204
    );

    // Every stream ends. What a stream carries before its own member goes
    // is the lock and the removals of those removed before: no other
    // reason, no other change.
    for events in [&mut alice_events, &mut bob_events] {
        for event in events.until_end().await {
            match event.event.as_str() {
                "member-joined" => {}
                "room-updated" => assert_eq!(event.data["locked"], json!(true)),
                "member-left" => assert_eq!(event.data["reason"], json!("removed")),
                other => panic!("unexpected `{other}`: {event:?}"),
            }
        }
    }
    assert_problem(
        app.get_room("doomed", Some(ADMIN_TOKEN)).await,
        404,
        "room_not_found",
    )
    .await;
    assert_problem(app.leave(&alice).await, 401, "unauthorized").await;
    let again = app.join("doomed").await;
    assert!(again.owner, "a join makes the room anew, unlocked");
}

#[tokio::test]
async fn only_the_admin_ends_a_room_that_is_there() {
    let app = admin_app().await;
    let owner = app.join("kept").await;
    assert_problem(end_room(&app, "kept", None).await, 401, "unauthorized").await;
    assert_problem(
        end_room(&app, "kept", Some(&owner.token)).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        end_room(&app, "nowhere", Some(ADMIN_TOKEN)).await,
        404,
        "room_not_found",
    )
    .await;
    let room = app.get_room("kept", Some(&owner.token)).await;
    assert_eq!(room.status(), 200);
    let room: Value = room.json().await.expect("JSON");
    assert_eq!(
        room["locked"],
        json!(false),
        "a refused end changed nothing"
    );
}
