//! Tokens: 401 for none or unknown, 403 for someone else's resource, the
//! `token` query parameter, and validation before any token is looked at.

use serde_json::json;

use crate::helpers::{assert_problem, json_body, send, spawn_app};

#[tokio::test]
async fn events_without_a_token_answer_401() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let response = send(app.client.get(app.url(&alice.events_url))).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_token_in_another_scheme_than_bearer_answers_401() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let response = send(
        app.client
            .get(app.url(&alice.events_url))
            .header("Authorization", format!("Basic {}", alice.token)),
    )
    .await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn events_with_an_unknown_token_answer_401() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let forged = format!("{}x", alice.token);

    let response = send(
        app.client
            .get(app.url(&alice.events_url))
            .bearer_auth(forged),
    )
    .await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn an_unknown_token_in_the_query_answers_401() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let url = app.url(&format!("{}?token=nonsense", alice.events_url));
    let response = send(app.client.get(url)).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn events_with_another_members_token_answer_403() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;

    let response = send(
        app.client
            .get(app.url(&alice.events_url))
            .bearer_auth(&bob.token),
    )
    .await;

    assert_problem(response, 403, "forbidden").await;
}

#[tokio::test]
async fn poll_with_another_members_token_answers_403() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let stranger = app.join("kitchen").await;

    let url = app.url(&format!("{}?timeout=0", alice.poll_url));
    let response = send(app.client.get(url).bearer_auth(&stranger.token)).await;

    assert_problem(response, 403, "forbidden").await;
}

#[tokio::test]
async fn signals_without_a_token_answer_401() {
    let app = spawn_app().await;
    app.join("lobby").await;

    let response = send(
        app.client
            .post(app.url("/signals"))
            .json(&json!({"type": "chat"})),
    )
    .await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn signals_with_an_unknown_token_answer_401() {
    let app = spawn_app().await;
    app.join("lobby").await;

    let response = app.send("not-a-token", None, "chat", json!(1)).await;

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_member_id_that_is_not_a_uuid_answers_400_before_the_token_is_looked_at() {
    let app = spawn_app().await;
    app.join("lobby").await;

    for (method, path) in [
        ("GET", "/rooms/lobby/members/not-a-uuid/events"),
        ("GET", "/rooms/lobby/members/not-a-uuid/poll"),
        ("DELETE", "/rooms/lobby/members/not-a-uuid"),
        ("GET", "/rooms/lobby/members/1234/events"),
    ] {
        let request = match method {
            "GET" => app.client.get(app.url(path)),
            _ => app.client.delete(app.url(path)),
        };
        assert_problem(send(request).await, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_malformed_poll_query_answers_400_before_the_token_is_looked_at() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    for query in ["after=x", "after=-1", "timeout=abc"] {
        let url = app.url(&format!("{}?{query}", alice.poll_url));
        let response = send(app.client.get(url)).await;
        assert_eq!(
            response.status().as_u16(),
            400,
            "poll?{query} without a token"
        );
        assert_problem(response, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn an_invalid_room_id_answers_400_before_the_token_is_looked_at() {
    let app = spawn_app().await;
    let member = uuid::Uuid::new_v4();

    let url = app.url(&format!("/rooms/a%20b/members/{member}/events"));
    let response = send(app.client.get(url)).await;

    assert_problem(response, 400, "invalid_room_id").await;
}

#[tokio::test]
async fn the_token_query_parameter_is_accepted_on_every_member_call() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let with_token = |path: &str, token: &str| {
        let separator = if path.contains('?') { '&' } else { '?' };
        app.url(&format!("{path}{separator}token={token}"))
    };

    let poll = send(app.client.get(with_token(
        &format!("{}?timeout=0", alice.poll_url),
        &alice.token,
    )))
    .await;
    assert_eq!(
        json_body(poll, 200).await["events"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let signal = send(
        app.client
            .post(with_token("/signals", &alice.token))
            .json(&json!({"to": bob.member_id, "type": "chat"})),
    )
    .await;
    assert_eq!(json_body(signal, 202).await, json!({"recipients": 1}));
    let room = send(app.client.get(with_token("/rooms/lobby", &bob.token))).await;
    assert_eq!(json_body(room, 200).await["id"], json!("lobby"));
    let patch = send(
        app.client
            .patch(with_token("/rooms/lobby", &alice.token))
            .json(&json!({"locked": false})),
    )
    .await;
    assert_eq!(json_body(patch, 200).await["locked"], json!(false));
    let leave = send(app.client.delete(with_token(&bob.path(), &bob.token))).await;
    assert_eq!(leave.status().as_u16(), 204);
}

#[tokio::test]
async fn a_member_token_opens_nothing_of_another_room() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let stranger = app.join("kitchen").await;

    let remove = app
        .remove("lobby", &alice.member_id, Some(&stranger.token))
        .await;
    let patch = app.patch_room("lobby", Some(&stranger.token), true).await;

    assert_problem(remove, 403, "forbidden").await;
    assert_problem(patch, 403, "forbidden").await;
}

#[tokio::test]
async fn a_secret_that_differs_past_its_first_bytes_opens_nothing_just_after_the_real_one() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    // The real token first, so that a node that keeps tokens it looked up
    // has this one, found by the secret's first bytes.
    let sent = app
        .send(&alice.token, Some(&bob.member_id), "chat", json!(1))
        .await;
    assert_eq!(sent.status().as_u16(), 202);

    // The secret is the first 44 characters; its first 8 bytes (11
    // characters) are what a lookup finds it by, and stay as they were.
    let mut forged = alice.token.clone().into_bytes();
    forged[40] = if forged[40] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("base64 is ASCII");
    let response = app
        .send(&forged, Some(&bob.member_id), "chat", json!(2))
        .await;

    assert_problem(response, 401, "unauthorized").await;
    let events = send(
        app.client
            .get(app.url(&alice.events_url))
            .bearer_auth(&forged),
    )
    .await;
    assert_problem(events, 401, "unauthorized").await;
}
