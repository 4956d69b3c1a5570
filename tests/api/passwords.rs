//! Room passwords: the join that creates a room sets one, later joins must
//! give it, the owner changes or clears it, and it is never shown.

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, Joined, TestApp, assert_problem, spawn_app, spawn_app_with, spawn_one_node_with,
};

async fn patch(app: &TestApp, room: &str, token: &str, body: Value) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/rooms/{room}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the patch is answered")
}

#[tokio::test]
async fn a_room_made_with_a_password_lets_in_only_joins_that_give_it() {
    let app = spawn_app().await;
    let owner = app
        .join_with(
            "secret-room",
            json!({"name": "ada", "password": "open sesame"}),
        )
        .await;
    assert!(owner.owner);
    assert!(
        !owner.body.to_string().contains("open sesame"),
        "the answer never shows the password: {}",
        owner.body
    );

    for body in [
        json!({}),
        json!({"password": "wrong"}),
        json!({"password": "Open sesame"}),
    ] {
        let response = app.post_join("secret-room", Some(body.clone())).await;
        let problem = assert_problem(response, 403, "forbidden").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("password"),
            "{body}: {problem}"
        );
    }
    let room = app.get_room("secret-room", Some(&owner.token)).await;
    let room: Value = room.json().await.expect("a room");
    assert_eq!(
        room["members"].as_array().map(Vec::len),
        Some(1),
        "nobody else got in"
    );
    assert!(!room.to_string().contains("open sesame"));

    let guest = app
        .join_with(
            "secret-room",
            json!({"name": "bob", "password": "open sesame"}),
        )
        .await;
    assert!(!guest.owner);
}

#[tokio::test]
async fn a_password_given_to_a_room_without_one_changes_nothing() {
    let app = spawn_app().await;
    app.join("open-room").await;
    app.join_with("open-room", json!({"password": "too late"}))
        .await;
    // Still open: a join without a password gets in.
    app.join("open-room").await;
}

#[tokio::test]
async fn the_owner_changes_and_clears_the_password_and_others_may_not() {
    let app = spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await;
    let owner = app.join_with("room", json!({"password": "first"})).await;
    let guest = app.join_with("room", json!({"password": "first"})).await;

    let response = patch(&app, "room", &guest.token, json!({"password": "mine now"})).await;
    assert_problem(response, 403, "forbidden").await;
    app.join_with("room", json!({"password": "first"})).await;

    let response = patch(&app, "room", &owner.token, json!({"password": "second"})).await;
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.expect("the room");
    assert!(!view.to_string().contains("second"), "{view}");
    assert_problem(
        app.post_join("room", Some(json!({"password": "first"})))
            .await,
        403,
        "forbidden",
    )
    .await;
    app.join_with("room", json!({"password": "second"})).await;

    // The admin may too; `null` takes it away.
    let response = patch(&app, "room", ADMIN_TOKEN, json!({"password": null})).await;
    assert_eq!(response.status(), 200);
    app.join("room").await;
}

#[tokio::test]
async fn a_patch_of_the_password_leaves_the_lock_alone_and_both_go_together() {
    let app = spawn_app().await;
    let owner = app.join("room").await;
    let response = patch(
        &app,
        "room",
        &owner.token,
        json!({"password": "pw", "locked": true}),
    )
    .await;
    let view: Value = response.json().await.expect("the room");
    assert_eq!(view["locked"], json!(true));
    let response = patch(&app, "room", &owner.token, json!({"password": null})).await;
    let view: Value = response.json().await.expect("the room");
    assert_eq!(view["locked"], json!(true), "the lock stays");
    assert_problem(app.post_join("room", None).await, 423, "room_locked").await;
}

#[tokio::test]
async fn passwords_out_of_bounds_and_empty_patches_answer_400_and_change_nothing() {
    let app = spawn_app().await;
    let long = "x".repeat(257);
    for body in [
        json!({"password": ""}),
        json!({"password": long}),
        json!({"password": 7}),
    ] {
        let response = app.post_join("room", Some(body.clone())).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    let owner = app.join("room").await;
    assert!(owner.owner, "no refused join made the room");
    for body in [
        json!({}),
        json!({"password": ""}),
        json!({"password": long}),
    ] {
        let response = patch(&app, "room", &owner.token, body.clone()).await;
        assert_problem(response, 400, "invalid_request").await;
    }
    app.join("room").await;
}

#[tokio::test]
async fn wrong_passwords_count_against_the_join_rate() {
    // The join rate is each node's own: one node, so that all reach it.
    let app = spawn_one_node_with(&["--join-rate", "3"]).await;
    app.join_with("room", json!({"password": "right"})).await;
    for _ in 0..2 {
        assert_problem(
            app.post_join("room", Some(json!({"password": "wrong"})))
                .await,
            403,
            "forbidden",
        )
        .await;
    }
    let response = app
        .post_join("room", Some(json!({"password": "right"})))
        .await;
    assert_problem(response, 429, "rate_limited").await;
}

#[tokio::test]
async fn a_room_made_anew_after_its_last_member_left_takes_the_new_join_s_password() {
    let app = spawn_app().await;
    let only = app.join_with("room", json!({"password": "old"})).await;
    assert_eq!(app.leave(&only).await.status(), 204);
    let again: Joined = app.join_with("room", json!({"password": "new"})).await;
    assert!(again.owner);
    assert_problem(
        app.post_join("room", Some(json!({"password": "old"})))
            .await,
        403,
        "forbidden",
    )
    .await;
    app.join_with("room", json!({"password": "new"})).await;
}
