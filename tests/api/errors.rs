//! Errors as problem+json: malformed bodies, media types, unknown routes,
//! wrong methods.

use serde_json::json;

use crate::helpers::{assert_problem, json_body, send, spawn_app};

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

#[tokio::test]
async fn a_problem_names_the_request_id_of_its_response() {
    let app = spawn_app().await;
    let response = send(app.client.post(app.url("/signals"))).await;
    let header = response.headers()["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    uuid::Uuid::parse_str(&header).expect("a generated id is a UUID");
    let problem = assert_problem(response, 401, "unauthorized").await;
    assert_eq!(problem["request_id"], header);
}

#[tokio::test]
async fn a_plain_request_id_from_a_proxy_is_kept_and_any_other_replaced() {
    let app = spawn_app().await;
    let kept = send(
        app.client
            .get(app.url("/nowhere"))
            .header("x-request-id", "edge-7:abc.1"),
    )
    .await;
    assert_eq!(kept.headers()["x-request-id"], "edge-7:abc.1");
    assert_eq!(
        assert_problem(kept, 404, "not_found").await["request_id"],
        "edge-7:abc.1"
    );

    for unfit in ["a b", "{\"x\":1}", &"x".repeat(65)] {
        let replaced = send(
            app.client
                .get(app.url("/nowhere"))
                .header("x-request-id", unfit),
        )
        .await;
        let id = replaced.headers()["x-request-id"].to_str().expect("ASCII");
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "{unfit:?} is replaced by a UUID, not {id}"
        );
    }
}

/// serde would read an array as the fields in order; the API's bodies are
/// objects, and such a body changes nothing.
#[tokio::test]
async fn a_body_that_is_an_array_of_the_fields_answers_400_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;

    let response = app
        .send_body(
            &alice.token,
            json!([bob.member_id, "offer", {"sdp": "v=0"}]),
        )
        .await;
    assert_problem(response, 400, "invalid_request").await;
    assert!(app.poll_events(&bob, "after=1&timeout=0").await.is_empty());

    let request = app
        .client
        .patch(app.url("/rooms/lobby"))
        .bearer_auth(&alice.token)
        .json(&json!([true]));
    assert_problem(send(request).await, 400, "invalid_request").await;
    let room = json_body(app.get_room("lobby", Some(&alice.token)).await, 200).await;
    assert_eq!(room["locked"], json!(false));

    let response = app
        .post_join("elsewhere", Some(json!(["carol", {}, 3])))
        .await;
    assert_problem(response, 400, "invalid_request").await;
    let carol = app.join("elsewhere").await;
    assert!(carol.owner && carol.members.is_empty(), "no room was made");
}
