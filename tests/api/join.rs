//! `POST /rooms/{room_id}/join`: the answer, the body rules, capacity, room ids.

use serde_json::json;

use crate::helpers::{
    ADMIN_TOKEN, Joined, assert_problem, assert_raw_problem, assert_rfc3339_utc,
    assert_same_member, assert_uuid_v4, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn join_answers_201_with_the_member_its_token_and_its_urls() {
    let app = spawn_app().await;

    let joined = app.join("lobby").await;

    let body = &joined.body;
    assert_eq!(body["room_id"], json!("lobby"));
    assert_uuid_v4(&body["member"]["id"]);
    assert_eq!(
        body["member"]["name"],
        json!(null),
        "an omitted name is null"
    );
    assert_eq!(
        body["member"]["metadata"],
        json!({}),
        "an omitted metadata is {{}}"
    );
    assert_rfc3339_utc(&body["member"]["joined_at"]);
    assert!(body["owner"].is_boolean());
    assert!(body["capacity"].is_u64());
    assert_eq!(body["members"], json!([]));
    assert_eq!(
        joined.events_url,
        format!("/rooms/lobby/members/{}/events", joined.member_id)
    );
    assert_eq!(
        joined.poll_url,
        format!("/rooms/lobby/members/{}/poll", joined.member_id)
    );
    for url in [&joined.events_url, &joined.poll_url] {
        assert!(
            !url.contains(&joined.token),
            "the URLs carry no token: {url}"
        );
        assert!(!url.contains("token"), "the URLs carry no token: {url}");
    }
}

#[tokio::test]
async fn join_answers_a_token_of_at_least_128_bits_unique_to_each_member() {
    let app = spawn_app().await;

    let first = app.join("lobby").await;
    let second = app.join("lobby").await;

    // 128 bits need at least 20 characters even in the densest printable
    // ASCII encoding (94 symbols, 6.55 bits each).
    assert!(
        first.token.len() >= 20,
        "token `{}` is too short",
        first.token
    );
    assert_ne!(first.token, second.token);
    assert_ne!(first.member_id, second.member_id);
    assert_ne!(first.token, first.member_id);
}

#[tokio::test]
async fn the_polling_url_answered_by_join_serves_the_inbox() {
    let app = spawn_app().await;
    let joined = app.join("lobby").await;

    let response = crate::helpers::send(
        app.client
            .get(app.url(&format!("{}?timeout=0", joined.poll_url)))
            .bearer_auth(&joined.token),
    )
    .await;

    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn the_first_joiner_is_the_owner_and_later_joiners_are_not() {
    let app = spawn_app().await;

    let first = app.join("lobby").await;
    let second = app.join("lobby").await;

    assert!(first.owner);
    assert!(!second.owner);
}

#[tokio::test]
async fn join_lists_the_other_members_oldest_first() {
    let app = spawn_app().await;
    let alice = app.join_with("lobby", json!({"name": "alice"})).await;
    let bob = app.join_with("lobby", json!({"name": "bob"})).await;

    let carol = app.join_with("lobby", json!({"name": "carol"})).await;

    assert_eq!(
        carol.members.len(),
        2,
        "members excludes the joiner: {:?}",
        carol.members
    );
    assert_same_member(&carol.members[0], &alice.member);
    assert_same_member(&carol.members[1], &bob.member);
    assert_eq!(bob.members.len(), 1);
    assert_same_member(&bob.members[0], &alice.member);
}

#[tokio::test]
async fn join_accepts_a_request_without_a_body() {
    let app = spawn_app().await;

    let joined = Joined::from_response(app.post_join("lobby", None).await).await;

    assert_eq!(joined.member["name"], json!(null));
    assert_eq!(joined.member["metadata"], json!({}));
}

#[tokio::test]
async fn join_keeps_the_given_name_and_metadata() {
    let app = spawn_app().await;
    let metadata = json!({"avatar": "cat.png", "tags": ["a", "b"], "level": 3});

    let joined = app
        .join_with("lobby", json!({"name": "Zoë", "metadata": metadata}))
        .await;

    assert_eq!(joined.member["name"], json!("Zoë"));
    assert_eq!(joined.member["metadata"], metadata);
}

#[tokio::test]
async fn join_accepts_a_name_of_64_multibyte_characters() {
    let app = spawn_app().await;
    let name = "é".repeat(64);
    assert_eq!(name.len(), 128, "the name is 128 bytes");

    let joined = app.join_with("lobby", json!({"name": name})).await;

    assert_eq!(joined.member["name"], json!(name));
    let emoji = "😀".repeat(64);
    let joined = app.join_with("lobby", json!({"name": emoji})).await;
    assert_eq!(joined.member["name"], json!(emoji));
}

#[tokio::test]
async fn join_answers_400_when_the_name_is_65_characters() {
    let app = spawn_app().await;

    let response = app
        .post_join("lobby", Some(json!({"name": "a".repeat(65)})))
        .await;

    assert_problem(response, 400, "invalid_request").await;
    let response = app
        .post_join("lobby", Some(json!({"name": "é".repeat(65)})))
        .await;
    assert_problem(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn join_answers_400_when_the_name_is_not_a_string() {
    let app = spawn_app().await;

    let response = app.post_join("lobby", Some(json!({"name": 7}))).await;

    assert_problem(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn join_answers_400_when_metadata_is_not_an_object() {
    let app = spawn_app().await;

    for metadata in [json!([1, 2]), json!("text"), json!(5), json!(true)] {
        let response = app
            .post_join("lobby", Some(json!({"metadata": metadata})))
            .await;
        assert_problem(response, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn join_accepts_metadata_of_exactly_4_kib_and_refuses_one_byte_more() {
    let app = spawn_app().await;
    // `{"k":"…"}` is 8 bytes around the string.
    let fits = json!({"k": "a".repeat(4096 - 8)});
    assert_eq!(fits.to_string().len(), 4096);
    let too_big = json!({"k": "a".repeat(4096 - 7)});

    app.join_with("lobby", json!({"metadata": fits})).await;
    let response = app
        .post_join("lobby", Some(json!({"metadata": too_big})))
        .await;

    assert_problem(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn join_answers_400_when_metadata_is_far_over_4_kib() {
    let app = spawn_app().await;
    let big = json!({"blob": "x".repeat(10_000)});

    let response = app.post_join("lobby", Some(json!({"metadata": big}))).await;

    assert_problem(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn join_uses_the_requested_capacity_from_2_to_the_maximum() {
    let app = spawn_app_with(&["--default-capacity", "5", "--max-capacity", "7"]).await;

    let small = app.join_with("small", json!({"capacity": 2})).await;
    let large = app.join_with("large", json!({"capacity": 7})).await;

    assert_eq!(small.capacity, 2);
    assert_eq!(large.capacity, 7);
}

#[tokio::test]
async fn join_answers_400_when_capacity_is_out_of_range_and_creates_no_room() {
    let app = spawn_app_with(&[
        "--admin-token",
        ADMIN_TOKEN,
        "--default-capacity",
        "5",
        "--max-capacity",
        "7",
    ])
    .await;

    for capacity in [
        json!(1),
        json!(0),
        json!(-3),
        json!(8),
        json!(1000),
        json!("4"),
    ] {
        let response = app
            .post_join("lobby", Some(json!({"capacity": capacity})))
            .await;
        assert_problem(response, 400, "invalid_request").await;
    }

    let response = app.get_room("lobby", Some(ADMIN_TOKEN)).await;
    assert_problem(response, 404, "room_not_found").await;
    let joined = app.join("lobby").await;
    assert!(joined.owner, "the room did not exist before this join");
    assert!(joined.members.is_empty());
    assert_eq!(joined.capacity, 5, "the room has the default capacity");
}

#[tokio::test]
async fn join_uses_the_default_capacity_when_none_is_asked() {
    let app = spawn_app().await;
    let joined = app.join("lobby").await;
    assert_eq!(joined.capacity, 10, "the default --default-capacity is 10");

    let app = spawn_app_with(&["--default-capacity", "3"]).await;
    let joined = app.join("lobby").await;
    assert_eq!(joined.capacity, 3);
    app.join("lobby").await;
    app.join("lobby").await;
    let response = app.post_join("lobby", Some(json!({}))).await;
    assert_problem(response, 409, "room_full").await;
}

#[tokio::test]
async fn join_ignores_capacity_when_the_room_already_exists() {
    let app = spawn_app().await;
    app.join_with("lobby", json!({"capacity": 3})).await;

    let second = app.join_with("lobby", json!({"capacity": 40})).await;

    assert_eq!(second.capacity, 3);
}

#[tokio::test]
async fn join_ignores_an_out_of_range_capacity_when_the_room_already_exists() {
    let app = spawn_app().await;
    app.join_with("lobby", json!({"capacity": 3})).await;

    let second = app.join_with("lobby", json!({"capacity": 1})).await;

    assert_eq!(second.capacity, 3);
}

#[tokio::test]
async fn join_answers_409_when_the_room_is_full() {
    let app = spawn_app().await;
    app.join_with("lobby", json!({"capacity": 2})).await;
    app.join("lobby").await;

    let response = app.post_join("lobby", Some(json!({}))).await;

    assert_problem(response, 409, "room_full").await;
}

#[tokio::test]
async fn join_sends_member_joined_to_every_other_member_and_not_to_the_joiner() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut alice_events = app.open_events(&alice, None).await;
    alice_events.expect_ready(&alice, 0).await;
    let bob_joined = alice_events.expect("member-joined").await;
    assert_same_member(&bob_joined.data["member"], &bob.member);
    let mut bob_events = app.open_events(&bob, None).await;
    bob_events.expect_ready(&bob, 0).await;

    let carol = app
        .join_with("lobby", json!({"name": "carol", "metadata": {"x": 1}}))
        .await;

    for events in [&mut alice_events, &mut bob_events] {
        let event = events.expect("member-joined").await;
        assert_same_member(&event.data["member"], &carol.member);
    }
    app.signal(&alice, Some(&carol), "marker", json!(null))
        .await;
    let mut carol_events = app.open_events(&carol, None).await;
    carol_events.expect_ready(&carol, 0).await;
    let first = carol_events.next_event().await;
    assert_eq!(
        first.event, "signal",
        "the joiner gets no member-joined about itself"
    );
    assert_eq!(first.id, Some(1));
}

#[tokio::test]
async fn join_accepts_every_allowed_room_id_character() {
    let app = spawn_app().await;

    let joined = app.join("AZaz09._~-").await;

    assert_eq!(joined.room_id, "AZaz09._~-");
}

#[tokio::test]
async fn join_accepts_a_64_character_room_id() {
    let app = spawn_app().await;
    let room = "r".repeat(64);

    let joined = app.join(&room).await;

    assert_eq!(joined.room_id, room);
}

#[tokio::test]
async fn join_answers_400_invalid_room_id_for_a_65_character_room_id() {
    let app = spawn_app().await;

    let response = app.post_join(&"r".repeat(65), Some(json!({}))).await;

    assert_problem(response, 400, "invalid_room_id").await;
}

#[tokio::test]
async fn join_answers_400_invalid_room_id_for_dot_and_dot_dot() {
    let app = spawn_app().await;

    for path in [
        "/rooms/./join",
        "/rooms/../join",
        "/rooms/%2E/join",
        "/rooms/%2e%2E/join",
    ] {
        let response = app.raw_request("POST", path, Some("{}")).await;
        assert_raw_problem(&response, 400, "invalid_room_id");
    }
}

#[tokio::test]
async fn join_accepts_dots_inside_a_room_id() {
    let app = spawn_app().await;

    let joined = app.join("...").await;

    assert_eq!(joined.room_id, "...");
}

#[tokio::test]
async fn join_answers_400_invalid_room_id_for_an_empty_room_id() {
    let app = spawn_app().await;

    let response = app.raw_request("POST", "/rooms//join", Some("{}")).await;

    assert_raw_problem(&response, 400, "invalid_room_id");
}

#[tokio::test]
async fn join_answers_400_invalid_room_id_for_characters_outside_the_set() {
    let app = spawn_app().await;

    for room in [
        "a%20b",
        "a%2Fb",
        "caf%C3%A9",
        "a%25b",
        "a+b",
        "a@b",
        "a!b",
        "a,b",
        "a%00b",
    ] {
        let response = app.post_join(room, Some(json!({}))).await;
        assert_problem(response, 400, "invalid_room_id").await;
    }
}

#[tokio::test]
async fn join_percent_decodes_the_room_id() {
    let app = spawn_app().await;

    let encoded = app.join("%41bc").await;
    let plain = app.join("Abc").await;

    assert_eq!(encoded.room_id, "Abc");
    assert!(!plain.owner, "`%41bc` and `Abc` name the same room");
}

#[tokio::test]
async fn room_ids_are_case_sensitive() {
    let app = spawn_app().await;

    let upper = app.join("Room").await;
    let lower = app.join("room").await;

    assert!(upper.owner);
    assert!(lower.owner, "`room` is a different room from `Room`");
    assert_eq!(upper.room_id, "Room");
    assert_eq!(lower.room_id, "room");
}
