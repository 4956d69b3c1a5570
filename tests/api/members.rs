//! `PATCH /rooms/{room_id}/members/{member_id}`: what a member shows the
//! others (its name and metadata), changed, heard by them as
//! `member-updated`, and seen so by whoever joins later.

use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, Joined, TestApp, assert_problem, json_body, send, spawn_app_with,
    spawn_one_node_with, with_token,
};

async fn patch(
    app: &TestApp,
    member: &Joined,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let request = app.client.patch(app.url(&member.path())).json(&body);
    send(with_token(request, token)).await
}

async fn admin_app() -> TestApp {
    spawn_app_with(&["--admin-token", ADMIN_TOKEN]).await
}

#[tokio::test]
async fn a_member_changes_what_it_shows_and_the_others_see_it_now_and_later() {
    let app = admin_app().await;
    let alice = app
        .join_with(
            "lobby",
            json!({"name": "alice", "metadata": {"audio": true}}),
        )
        .await;
    let bob = app.join("lobby").await;
    let mut alice_events = app.open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;
    alice_events.expect("member-joined").await;
    let mut bob_events = app.open_events(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;

    let changed = json!({"audio": false, "video": true});
    let view = json_body(
        patch(
            &app,
            &alice,
            Some(&alice.token),
            json!({"metadata": changed}),
        )
        .await,
        200,
    )
    .await;
    let mut expected = alice.member.clone();
    expected["metadata"] = changed.clone();
    assert_eq!(view, expected, "only the metadata changed");

    let updated = bob_events.expect("member-updated").await;
    assert_eq!(updated.data, json!({"member": expected}));
    // Alice hears nothing of her own change: her next event is Bob's signal.
    app.signal(&bob, Some(&alice), "marker", json!(null)).await;
    assert_eq!(
        alice_events.expect_signal().await.data["type"],
        json!("marker")
    );

    // Whoever comes later sees it, in the join's answer and in the room.
    let carol = app.join("lobby").await;
    assert_eq!(carol.members[0], expected);
    let room = json_body(app.get_room("lobby", Some(&carol.token)).await, 200).await;
    assert_eq!(room["members"][0], expected);
}

#[tokio::test]
async fn a_name_left_out_stays_and_null_takes_it_away() {
    let app = admin_app().await;
    let alice = app
        .join_with("lobby", json!({"name": "alice", "metadata": {"a": 1}}))
        .await;
    let renamed = json_body(
        patch(
            &app,
            &alice,
            Some(&alice.token),
            json!({"name": "Alice L."}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(renamed["name"], json!("Alice L."));
    assert_eq!(renamed["metadata"], json!({"a": 1}));
    let nameless = json_body(
        patch(
            &app,
            &alice,
            Some(&alice.token),
            json!({"name": null, "metadata": {}}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(nameless["name"], Value::Null);
    assert_eq!(nameless["metadata"], json!({}));
}

#[tokio::test]
async fn only_the_member_itself_or_the_admin_changes_it_and_only_with_a_well_formed_patch() {
    let app = admin_app().await;
    let alice = app.join_with("lobby", json!({"name": "alice"})).await;
    let bob = app.join("lobby").await;
    let body = json!({"name": "mallory"});
    assert_problem(
        patch(&app, &alice, None, body.clone()).await,
        401,
        "unauthorized",
    )
    .await;
    // Not even the owner changes another's.
    assert_problem(
        patch(&app, &bob, Some(&alice.token), body.clone()).await,
        403,
        "forbidden",
    )
    .await;
    let elsewhere = app.join("elsewhere").await;
    assert_problem(
        patch(&app, &alice, Some(&elsewhere.token), body.clone()).await,
        403,
        "forbidden",
    )
    .await;
    for bad in [
        json!({}),
        json!({"name": "x".repeat(65)}),
        json!({"name": 1}),
        json!({"metadata": []}),
        json!({"metadata": "muted"}),
        json!({"metadata": {"blob": "x".repeat(5000)}}),
    ] {
        assert_problem(
            patch(&app, &alice, Some(&alice.token), bad.clone()).await,
            400,
            "invalid_request",
        )
        .await;
    }
    let room = json_body(app.get_room("lobby", Some(ADMIN_TOKEN)).await, 200).await;
    assert_eq!(room["members"][0], alice.member, "nothing changed");

    // The admin may, and learns which rooms and members there are.
    let by_admin = json_body(
        patch(&app, &alice, Some(ADMIN_TOKEN), body.clone()).await,
        200,
    )
    .await;
    assert_eq!(by_admin["name"], json!("mallory"));
    let mut gone = bob.clone();
    gone.member_id = "6d87a0ca-b405-4ca0-8bdd-3c30eb2b11cf".into();
    assert_problem(
        patch(&app, &gone, Some(ADMIN_TOKEN), body.clone()).await,
        404,
        "member_not_found",
    )
    .await;
    gone.room_id = "nowhere".into();
    assert_problem(
        patch(&app, &gone, Some(ADMIN_TOKEN), body.clone()).await,
        404,
        "room_not_found",
    )
    .await;
    // A member that left changes nothing.
    assert_eq!(app.leave(&bob).await.status(), 204);
    assert_problem(
        patch(&app, &bob, Some(&bob.token), body).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn a_member_s_changes_count_against_its_signal_rate() {
    // One node: each node keeps its own rate limits.
    let app = spawn_one_node_with(&["--signal-rate", "1"]).await;
    let alice = app.join("lobby").await;
    let body = json!({"metadata": {"audio": false}});
    assert_eq!(
        patch(&app, &alice, Some(&alice.token), body.clone())
            .await
            .status(),
        200
    );
    let limited = patch(&app, &alice, Some(&alice.token), body).await;
    assert!(limited.headers().contains_key("retry-after"));
    assert_problem(limited, 429, "rate_limited").await;
}
