//! WHIP and WHEP: an HTTP client that POSTs an SDP offer is a member of
//! the room while its session lasts, and gets a member's answer.

use reqwest::Response;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, EventStream, Joined, ServerProcess, TestApp, assert_problem, json_body, spawn_app,
    spawn_app_with,
};
use crate::metrics::wait_for_sample;

const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendonly\r\n";
const ANSWER: &str = "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=recvonly\r\n";

/// POSTs `sdp` as an offer to `path` (`/rooms/r/whip?...`).
fn offer(app: &TestApp, path: &str, sdp: &str) -> tokio::task::JoinHandle<Response> {
    let request = app
        .client
        .post(app.url(path))
        .header("content-type", "application/sdp")
        .body(sdp.to_owned());
    tokio::spawn(async move { request.send().await.expect("the server answers") })
}

/// Reads the offering member's arrival and its offer from `events`, and
/// answers it as `member`; returns the offering member's view.
async fn answer_the_offer(app: &TestApp, member: &Joined, events: &mut EventStream) -> Value {
    let joined = events.expect("member-joined").await;
    let offer = events.expect_signal().await;
    let offerer = joined.data["member"].clone();
    assert_eq!(offer.data["from"], offerer["id"]);
    assert_eq!(offer.data["type"], json!("offer"));
    assert_eq!(
        offer.data["payload"],
        json!({"type": "offer", "sdp": OFFER})
    );
    let to = offerer["id"].as_str().expect("a member id").to_owned();
    let response = app
        .send(
            &member.token,
            Some(&to),
            "answer",
            json!({"type": "answer", "sdp": ANSWER}),
        )
        .await;
    assert_eq!(response.status(), 202);
    offerer
}

async fn member_ids(app: &TestApp, room: &str, token: &str) -> Vec<Value> {
    let room = json_body(app.get_room(room, Some(token)).await, 200).await;
    room["members"]
        .as_array()
        .expect("a list of members")
        .iter()
        .map(|member| member["id"].clone())
        .collect()
}

#[tokio::test]
async fn a_whip_publisher_gets_the_owner_s_answer_trickles_and_leaves_by_delete() {
    let app = spawn_app().await;
    let alice = app.join("studio").await;
    let mut events = app.open_drained(&alice, 0).await;

    let pending = offer(&app, "/rooms/studio/whip?name=OBS", OFFER);
    let publisher = answer_the_offer(&app, &alice, &mut events).await;
    let response = pending.await.unwrap();

    assert_eq!(response.status(), 201);
    assert_eq!(publisher["name"], json!("OBS"));
    assert_eq!(
        publisher["metadata"],
        json!({"whip": "publisher", "peer": alice.member_id})
    );
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/sdp"));
    let location = header("location").expect("a Location");
    assert!(
        location.starts_with("/rooms/studio/sessions/"),
        "{location}"
    );
    let etag = header("etag").expect("an ETag");
    assert_eq!(response.text().await.unwrap(), ANSWER);

    let fragment = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=candidate:1 1 UDP 2130706431 192.0.2.1 5000 typ host\r\n";
    let patch = |if_match: &str| {
        app.client
            .patch(app.url(&location))
            .header("content-type", "application/trickle-ice-sdpfrag")
            .header("if-match", if_match)
            .body(fragment)
    };
    assert_eq!(patch(&etag).send().await.unwrap().status(), 204);
    let candidate = events.expect_signal().await;
    assert_eq!(candidate.data["from"], publisher["id"]);
    assert_eq!(candidate.data["type"], json!("candidate"));
    assert_eq!(
        candidate.data["payload"],
        json!({"candidate": "candidate:1 1 UDP 2130706431 192.0.2.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0})
    );
    assert_problem(
        patch("\"another\"").send().await.unwrap(),
        412,
        "precondition_failed",
    )
    .await;
    assert_problem(
        patch("*").send().await.unwrap(),
        422,
        "ice_restart_unsupported",
    )
    .await;

    let ended = app.client.delete(app.url(&location)).send().await.unwrap();
    assert_eq!(ended.status(), 200);
    let left = events.expect("member-left").await;
    assert_eq!(left.data["member_id"], publisher["id"]);
    assert_eq!(
        member_ids(&app, "studio", &alice.token).await,
        [json!(alice.member_id)]
    );
    let again = app.client.delete(app.url(&location)).send().await.unwrap();
    assert_problem(again, 404, "not_found").await;
}

#[tokio::test]
async fn a_whep_player_gets_the_named_member_s_answer() {
    let app = spawn_app().await;
    let alice = app.join("studio").await;
    let bob = app.join("studio").await;
    let mut events = app.open_drained(&bob, 0).await;

    let pending = offer(
        &app,
        &format!("/rooms/studio/whep?to={}", bob.member_id),
        OFFER,
    );
    let player = answer_the_offer(&app, &bob, &mut events).await;
    let response = pending.await.unwrap();

    assert_eq!(response.status(), 201);
    assert_eq!(player["name"], json!("WHEP player"));
    assert_eq!(
        player["metadata"],
        json!({"whep": "player", "peer": bob.member_id})
    );
    assert_eq!(response.text().await.unwrap(), ANSWER);
    assert_eq!(member_ids(&app, "studio", &alice.token).await.len(), 3);
}

#[tokio::test]
async fn an_offer_nobody_answers_is_refused_and_its_member_leaves() {
    let app = spawn_app_with(&["--answer-timeout", "1"]).await;
    let alice = app.join("studio").await;
    let mut events = app.open_drained(&alice, 0).await;

    let response = offer(&app, "/rooms/studio/whip", OFFER).await.unwrap();

    assert_problem(response, 504, "no_answer").await;
    let joined = events.expect("member-joined").await;
    events.expect_signal().await;
    let left = events.expect("member-left").await;
    assert_eq!(left.data["member_id"], joined.data["member"]["id"]);
    assert_eq!(
        member_ids(&app, "studio", &alice.token).await,
        [json!(alice.member_id)]
    );
}

#[tokio::test]
async fn an_offer_whose_member_leaves_is_refused_at_once() {
    let app = spawn_app().await;
    let alice = app.join("studio").await;
    let bob = app.join("studio").await;
    let mut events = app.open_drained(&bob, 0).await;

    let pending = offer(
        &app,
        &format!("/rooms/studio/whep?to={}", bob.member_id),
        OFFER,
    );
    events.expect("member-joined").await;
    events.expect_signal().await;
    assert_eq!(app.leave(&bob).await.status(), 204);

    assert_problem(pending.await.unwrap(), 504, "no_answer").await;
    assert_eq!(
        member_ids(&app, "studio", &alice.token).await,
        [json!(alice.member_id)]
    );
}

#[tokio::test]
async fn bad_offers_are_refused_and_leave_nothing_in_the_room() {
    let app = spawn_app_with(&["--payload-limit", "2048", "--admin-token", ADMIN_TOKEN]).await;
    let alice = app.join("studio").await;
    let post = |path: &str, content_type: &str, body: String| {
        app.client
            .post(app.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
    };

    let cases = [
        (
            post("/rooms/studio/whip", "application/json", OFFER.into())
                .await
                .unwrap(),
            415,
            "unsupported_media_type",
        ),
        (
            post("/rooms/studio/whip", "application/sdp", "hello".into())
                .await
                .unwrap(),
            400,
            "invalid_request",
        ),
        (
            post(
                "/rooms/studio/whip",
                "application/sdp",
                format!("{OFFER}{}", "a=x\r\n".repeat(500)),
            )
            .await
            .unwrap(),
            413,
            "payload_too_large",
        ),
        (
            post(
                &format!("/rooms/studio/whip?to={}", uuid::Uuid::new_v4()),
                "application/sdp",
                OFFER.into(),
            )
            .await
            .unwrap(),
            404,
            "member_not_found",
        ),
        (
            post(
                "/rooms/studio/whip?to=nobody",
                "application/sdp",
                OFFER.into(),
            )
            .await
            .unwrap(),
            400,
            "invalid_request",
        ),
        (
            post("/rooms/empty/whip", "application/sdp", OFFER.into())
                .await
                .unwrap(),
            409,
            "no_receiver",
        ),
    ];
    for (response, status, code) in cases {
        assert_problem(response, status, code).await;
    }
    assert_eq!(
        member_ids(&app, "studio", &alice.token).await,
        [json!(alice.member_id)]
    );
    let rooms = json_body(app.list_rooms(Some(ADMIN_TOKEN)).await, 200).await;
    assert!(
        !rooms.to_string().contains("\"empty\""),
        "no room stays behind: {rooms}"
    );

    assert_eq!(
        app.patch_room("studio", Some(&alice.token), true)
            .await
            .status(),
        200
    );
    let locked = post("/rooms/studio/whip", "application/sdp", OFFER.into())
        .await
        .unwrap();
    assert_problem(locked, 423, "room_locked").await;
}

#[tokio::test]
async fn a_full_room_takes_no_publisher() {
    let app = spawn_app().await;
    let alice = app.join_with("small", json!({"capacity": 2})).await;
    app.join("small").await;

    let response = offer(&app, "/rooms/small/whip", OFFER).await.unwrap();

    assert_problem(response, 409, "room_full").await;
    assert_eq!(member_ids(&app, "small", &alice.token).await.len(), 2);
}

#[tokio::test]
async fn a_session_is_found_only_by_its_own_path() {
    let app = spawn_app().await;
    let alice = app.join("studio").await;
    let other = app.join("elsewhere").await;
    let session = format!("{}.{}", other.token, uuid::Uuid::new_v4().simple());

    for path in [
        "/rooms/studio/sessions/nonsense".to_owned(),
        format!("/rooms/studio/sessions/{session}"),
        format!("/rooms/studio/sessions/{}", alice.token),
    ] {
        let response = app.client.delete(app.url(&path)).send().await.unwrap();
        assert_problem(response, 404, "not_found").await;
    }
    assert_eq!(
        member_ids(&app, "studio", &alice.token).await,
        [json!(alice.member_id)]
    );
    assert_eq!(
        member_ids(&app, "elsewhere", &other.token).await,
        [json!(other.member_id)]
    );
}

#[tokio::test]
async fn the_bearer_token_is_the_room_s_password_and_a_wrong_one_leaves_nothing() {
    let app = spawn_app().await;
    let alice = app
        .join_with("studio", json!({"password": "opensesame"}))
        .await;
    let mut events = app.open_drained(&alice, 0).await;
    let with_bearer = |token: &str| {
        let request = app
            .client
            .post(app.url("/rooms/studio/whip"))
            .header("content-type", "application/sdp")
            .header("authorization", format!("Bearer {token}"))
            .body(OFFER);
        tokio::spawn(async move { request.send().await.expect("the server answers") })
    };

    assert_problem(with_bearer("guess").await.unwrap(), 403, "forbidden").await;
    let pending = with_bearer("opensesame");
    answer_the_offer(&app, &alice, &mut events).await;

    assert_eq!(pending.await.unwrap().status(), 201);
}

#[tokio::test]
async fn a_trickle_must_be_an_sdp_fragment() {
    let app = spawn_app().await;
    let alice = app.join("studio").await;
    let mut events = app.open_drained(&alice, 0).await;
    let pending = offer(&app, "/rooms/studio/whip", OFFER);
    answer_the_offer(&app, &alice, &mut events).await;
    let response = pending.await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();

    let wrong = app
        .client
        .patch(app.url(&location))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();

    assert_problem(wrong, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn sessions_answers_and_refusals_are_counted() {
    let server = ServerProcess::start(&["--answer-timeout", "0.5"], &[]).await;
    let app = TestApp::at(server.addr);
    let alice = app.join("studio").await;
    let mut events = app.open_drained(&alice, 0).await;

    let unanswered = offer(&app, "/rooms/studio/whip", OFFER);
    assert_problem(unanswered.await.unwrap(), 504, "no_answer").await;
    events.expect("member-joined").await;
    events.expect_signal().await;
    events.expect("member-left").await;
    let pending = offer(&app, "/rooms/studio/whip", OFFER);
    answer_the_offer(&app, &alice, &mut events).await;
    let response = pending.await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();

    wait_for_sample(
        &app,
        r#"signalpost_sessions_total{kind="whip",outcome="answered"}"#,
        1.0,
    )
    .await;
    wait_for_sample(
        &app,
        r#"signalpost_sessions_total{kind="whip",outcome="no_answer"}"#,
        1.0,
    )
    .await;
    wait_for_sample(&app, r#"signalpost_sessions_open{kind="whip"}"#, 1.0).await;
    wait_for_sample(&app, r#"signalpost_answer_seconds_count{kind="whip"}"#, 1.0).await;
    assert_eq!(
        app.client
            .delete(app.url(&location))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    wait_for_sample(&app, r#"signalpost_sessions_open{kind="whip"}"#, 0.0).await;
}

#[tokio::test]
async fn the_answer_names_the_ice_servers_in_link_headers() {
    let app = spawn_app_with(&[
        "--stun-url",
        "stun:stun.example.com:3478",
        "--turn-uri",
        "turn:turn.example.com:3478?transport=udp",
        "--turn-secret",
        "north-wind",
    ])
    .await;
    let alice = app.join("studio").await;
    let mut events = app.open_drained(&alice, 0).await;

    let pending = offer(&app, "/rooms/studio/whip", OFFER);
    answer_the_offer(&app, &alice, &mut events).await;
    let response = pending.await.unwrap();

    let links: Vec<&str> = response
        .headers()
        .get_all("link")
        .iter()
        .map(|value| value.to_str().expect("ASCII"))
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    assert_eq!(
        links[0],
        r#"<stun:stun.example.com:3478>; rel="ice-server""#
    );
    assert!(
        links[1].starts_with(
            r#"<turn:turn.example.com:3478?transport=udp>; rel="ice-server"; username=""#
        ),
        "{}",
        links[1]
    );
    assert!(
        links[1].contains(r#"credential-type="password""#),
        "{}",
        links[1]
    );
}
