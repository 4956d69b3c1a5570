//! Errors as problem+json: malformed bodies, media types, unknown routes,
//! wrong methods.

use serde_json::json;

use crate::helpers::{assert_problem, send, spawn_app};

#[tokio::test]
async fn malformed_json_on_join_answers_400_invalid_request() {
    let app = spawn_app().await;

    let response = send(
        app.client
            .post(app.url("/rooms/lobby/join"))
            .header("Content-Type", "application/json")
            .body("{\"name\": "),
    )
    .await;

    assert_problem(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_join_body_that_is_not_an_object_answers_400_invalid_request() {
    let app = spawn_app().await;

    for body in [json!([]), json!("lobby"), json!(3)] {
        let response = app.post_join("lobby", Some(body)).await;
        assert_problem(response, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn malformed_json_on_signals_answers_400_invalid_request() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let response = send(
        app.client
            .post(app.url("/signals"))
            .bearer_auth(&alice.token)
            .header("Content-Type", "application/json")
            .body("{\"type\": \"chat\","),
    )
    .await;

    assert_problem(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_wrong_content_type_on_signals_answers_415() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let response = send(
        app.client
            .post(app.url("/signals"))
            .bearer_auth(&alice.token)
            .header("Content-Type", "text/plain")
            .body(json!({"type": "chat"}).to_string()),
    )
    .await;

    assert_problem(response, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn an_unknown_route_answers_404_not_found() {
    let app = spawn_app().await;

    for path in ["/nope", "/rooms/lobby/nope", "/signals/extra"] {
        assert_problem(app.get(path).await, 404, "not_found").await;
    }
}

#[tokio::test]
async fn a_wrong_method_answers_405_method_not_allowed() {
    let app = spawn_app().await;

    let put = send(app.client.put(app.url("/signals")).json(&json!({}))).await;
    let get = app.get("/signals").await;
    let get_join = app.get("/rooms/lobby/join").await;
    let delete_rooms = send(app.client.delete(app.url("/rooms"))).await;

    for response in [put, get, get_join, delete_rooms] {
        assert_problem(response, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn a_json_content_type_with_a_charset_is_accepted_on_signals() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let response = send(
        app.client
            .post(app.url("/signals"))
            .bearer_auth(&alice.token)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(json!({"type": "chat"}).to_string()),
    )
    .await;

    assert_eq!(response.status().as_u16(), 202);
}
