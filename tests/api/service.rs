//! The application's back end, with the admin token: rooms made in
//! advance, signals to a room or one member as the service (`"from":
//! null`), and ending a room.

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, DEADLINE, TestApp, assert_problem, eventually, json_body, send, spawn_app_with,
    with_token,
};

async fn admin_app() -> TestApp {
    spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await
}

/// `method path` with `token` as bearer (none if `None`) and a JSON body.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(with_token(request, token)).await
}

async fn service_signal(
    app: &TestApp,
    room: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let path = format!("/rooms/{room}/signals");
    call(app, reqwest::Method::POST, &path, token, Some(body)).await
}

async fn end_room(app: &TestApp, room: &str, token: Option<&str>) -> reqwest::Response {
    let path = format!("/rooms/{room}");
    call(app, reqwest::Method::DELETE, &path, token, None).await
}

async fn make_room(
    app: &TestApp,
    room: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let path = format!("/rooms/{room}");
    call(app, reqwest::Method::PUT, &path, token, Some(body)).await
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

    // Every stream carries the removals of those removed before its own
    // member, then its own, and ends: nothing else.
    for (events, member) in [(&mut alice_events, &alice), (&mut bob_events, &bob)] {
        let events = events.until_end().await;
        for event in &events {
            match event.event.as_str() {
                "member-joined" => {}
                "member-left" => assert_eq!(event.data["reason"], json!("removed")),
                other => panic!("unexpected `{other}`: {event:?}"),
            }
        }
        let last = events.last().expect("the stream carried its end");
        assert_eq!(last.event, "member-left");
        assert_eq!(last.data["member_id"], json!(member.member_id));
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

async fn room_ids(app: &TestApp) -> Vec<Value> {
    let rooms = json_body(app.list_rooms(Some(ADMIN_TOKEN)).await, 200).await;
    rooms["rooms"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|room| json!([room["id"], room["member_count"]]))
        .collect()
}

#[tokio::test]
async fn the_service_makes_a_room_that_waits_for_its_members_with_its_settings() {
    let app = admin_app().await;
    let response = make_room(
        &app,
        "standup",
        Some(ADMIN_TOKEN),
        json!({"capacity": 3, "password": "sesame", "empty_timeout": 600}),
    )
    .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/rooms/standup");
    let room: Value = response.json().await.expect("JSON");
    assert_eq!(room["id"], json!("standup"));
    assert_eq!(room["capacity"], json!(3));
    assert_eq!(room["locked"], json!(false));
    assert_eq!(room["owner"], Value::Null);
    assert_eq!(room["members"], json!([]));
    assert!(room.get("password").is_none(), "never shown: {room}");
    assert_eq!(room_ids(&app).await, vec![json!(["standup", 0])]);

    // It is there: made once.
    assert_problem(
        make_room(&app, "standup", Some(ADMIN_TOKEN), json!({})).await,
        409,
        "room_exists",
    )
    .await;
    // Its password is asked of the first join too, and its capacity holds.
    assert_problem(
        app.post_join("standup", Some(json!({}))).await,
        403,
        "forbidden",
    )
    .await;
    let first = app
        .join_with("standup", json!({"password": "sesame", "capacity": 9}))
        .await;
    assert!(first.owner, "the first member who may own it owns it");
    assert_eq!(first.capacity, 3);
    app.join_with("standup", json!({"password": "sesame"}))
        .await;
    let third = app
        .join_with("standup", json!({"password": "sesame"}))
        .await;
    assert_problem(
        app.post_join("standup", Some(json!({"password": "sesame"})))
            .await,
        409,
        "room_full",
    )
    .await;

    // When they have all gone, it is still there, without an owner.
    for member in [&first, &third] {
        assert_eq!(app.leave(member).await.status(), 204);
    }
    let room = json_body(app.get_room("standup", Some(ADMIN_TOKEN)).await, 200).await;
    let last = room["members"][0]["id"]
        .as_str()
        .expect("one member left")
        .to_owned();
    assert_eq!(
        app.remove("standup", &last, Some(ADMIN_TOKEN))
            .await
            .status(),
        204
    );
    let room = json_body(app.get_room("standup", Some(ADMIN_TOKEN)).await, 200).await;
    assert_eq!(room["members"], json!([]));
    assert_eq!(room["owner"], Value::Null);
    assert_eq!(room_ids(&app).await, vec![json!(["standup", 0])]);
    let again = app
        .join_with("standup", json!({"password": "sesame"}))
        .await;
    assert!(again.owner);
    assert_eq!(again.capacity, 3);
}

#[tokio::test]
async fn a_room_made_locked_takes_nobody_until_it_is_unlocked() {
    let app = admin_app().await;
    let response = make_room(&app, "later", Some(ADMIN_TOKEN), json!({"locked": true})).await;
    assert_eq!(response.status(), 201);
    assert_problem(
        app.post_join("later", Some(json!({}))).await,
        423,
        "room_locked",
    )
    .await;
    let unlocked = app
        .client
        .patch(app.url("/rooms/later"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"locked": false}))
        .send()
        .await
        .expect("the patch is answered");
    assert_eq!(json_body(unlocked, 200).await["locked"], json!(false));
    assert!(app.join("later").await.owner);
}

#[tokio::test]
async fn only_the_admin_makes_a_room_and_only_a_well_formed_one() {
    let app = admin_app().await;
    let member = app.join("elsewhere").await;
    assert_problem(
        make_room(&app, "new", None, json!({})).await,
        401,
        "unauthorized",
    )
    .await;
    assert_problem(
        make_room(&app, "new", Some(&member.token), json!({})).await,
        403,
        "forbidden",
    )
    .await;
    for bad in [
        json!({"capacity": 1}),
        json!({"capacity": 10_000}),
        json!({"empty_timeout": 0}),
        json!({"empty_timeout": 604_801}),
        json!({"empty_timeout": -1}),
        json!({"password": ""}),
        json!({"locked": "yes"}),
        json!([]),
    ] {
        let response = make_room(&app, "new", Some(ADMIN_TOKEN), bad.clone()).await;
        assert_problem(response, 400, "invalid_request").await;
    }
    assert_problem(
        make_room(&app, "no*stars", Some(ADMIN_TOKEN), json!({})).await,
        400,
        "invalid_room_id",
    )
    .await;
    // Nor over a room joins made.
    assert_problem(
        make_room(&app, "elsewhere", Some(ADMIN_TOKEN), json!({})).await,
        409,
        "room_exists",
    )
    .await;
    assert_eq!(room_ids(&app).await, vec![json!(["elsewhere", 1])]);
}

#[tokio::test]
async fn the_rooms_made_in_advance_are_bounded() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN, "--max-kept-rooms", "1"]).await;
    let first = make_room(&app, "one", Some(ADMIN_TOKEN), json!({})).await;
    assert_eq!(first.status(), 201);
    let response = make_room(&app, "two", Some(ADMIN_TOKEN), json!({})).await;
    assert_eq!(response.headers()["retry-after"], "1");
    assert_problem(response, 503, "server_busy").await;
    // Joins make rooms as before.
    app.join("three").await;
    // Ending the first frees its place.
    assert_eq!(end_room(&app, "one", Some(ADMIN_TOKEN)).await.status(), 204);
    assert_eq!(
        make_room(&app, "two", Some(ADMIN_TOKEN), json!({}))
            .await
            .status(),
        201
    );
    assert_eq!(
        room_ids(&app).await,
        vec![json!(["three", 1]), json!(["two", 0])]
    );
}

#[tokio::test]
async fn a_room_made_in_advance_closes_once_empty_for_its_timeout() {
    let app = admin_app().await;
    for room in ["unused", "used"] {
        let response = make_room(&app, room, Some(ADMIN_TOKEN), json!({"empty_timeout": 1})).await;
        assert_eq!(response.status(), 201);
    }
    // One has a member for a while; the timeout counts again from its
    // leaving.
    let member = app.join("used").await;
    eventually("the unused room closes", 2 * DEADLINE, || async {
        room_ids(&app).await == vec![json!(["used", 1])]
    })
    .await;
    assert_eq!(app.leave(&member).await.status(), 204);
    assert_eq!(room_ids(&app).await, vec![json!(["used", 0])]);
    eventually("the emptied room closes", 2 * DEADLINE, || async {
        room_ids(&app).await.is_empty()
    })
    .await;
    assert_problem(
        app.get_room("used", Some(ADMIN_TOKEN)).await,
        404,
        "room_not_found",
    )
    .await;
    // The id is free: a join makes a room of its own, closed by its last leave.
    let joined = app.join("used").await;
    assert_eq!(app.leave(&joined).await.status(), 204);
    assert!(room_ids(&app).await.is_empty());
}

#[tokio::test]
async fn ending_a_room_made_in_advance_closes_it_with_or_without_members() {
    let app = admin_app().await;
    assert_eq!(
        make_room(&app, "empty", Some(ADMIN_TOKEN), json!({}))
            .await
            .status(),
        201
    );
    assert_eq!(
        end_room(&app, "empty", Some(ADMIN_TOKEN)).await.status(),
        204
    );
    assert_problem(
        end_room(&app, "empty", Some(ADMIN_TOKEN)).await,
        404,
        "room_not_found",
    )
    .await;

    assert_eq!(
        make_room(&app, "full", Some(ADMIN_TOKEN), json!({}))
            .await
            .status(),
        201
    );
    let alice = app.join("full").await;
    let mut events = app.open_events(&alice, None).await;
    events.expect_ready(&alice, 0).await;
    assert_eq!(
        end_room(&app, "full", Some(ADMIN_TOKEN)).await.status(),
        204
    );
    let left = events.expect("member-left").await;
    assert_eq!(
        left.data,
        json!({"member_id": alice.member_id, "reason": "removed"})
    );
    assert!(events.until_end().await.is_empty());
    assert!(room_ids(&app).await.is_empty());
    assert_problem(app.leave(&alice).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn the_service_signals_a_room_it_made_before_anyone_is_in_it() {
    let app = admin_app().await;
    assert_eq!(
        make_room(&app, "early", Some(ADMIN_TOKEN), json!({}))
            .await
            .status(),
        201
    );
    let response =
        service_signal(&app, "early", Some(ADMIN_TOKEN), json!({"type": "notice"})).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.expect("JSON"),
        json!({"recipients": 0})
    );
}
