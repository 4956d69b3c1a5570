//! `POST /signals`: directed and broadcast signals, the body rules, the
//! payload limit, full inboxes, waiting and ordering.

use serde_json::{Value, json};

use crate::helpers::{
    DEADLINE, EventStream, Joined, TestApp, assert_problem, assert_rfc3339_utc, cluster_backend,
    eventually, json_body, send, spawn_app, spawn_app_with,
};

/// Sends a marker from `from` to `to` and checks it is `to`'s next event:
/// everything sent to `to` before it has been seen.
async fn expect_marker_next(app: &TestApp, from: &Joined, to: &Joined, events: &mut EventStream) {
    app.signal(from, Some(to), "marker", json!("marker")).await;
    let next = events.next_event().await;
    assert_eq!(
        next.event, "signal",
        "nothing came before the marker: {next:?}"
    );
    assert_eq!(
        next.data["type"],
        json!("marker"),
        "nothing came before the marker: {next:?}"
    );
}

#[tokio::test]
async fn a_directed_signal_reaches_only_its_recipient() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let carol = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 1).await;
    let mut carol_events = app.open_drained(&carol, 0).await;
    let answer = json!({"type": "answer", "sdp": "v=0\r\n"});

    let response = app
        .send(&alice.token, Some(&bob.member_id), "answer", answer.clone())
        .await;

    assert_eq!(json_body(response, 202).await, json!({"recipients": 1}));
    let signal = bob_events.expect_signal().await;
    assert_eq!(signal.data["from"], json!(alice.member_id));
    assert_eq!(signal.data["to"], json!(bob.member_id));
    assert_eq!(signal.data["type"], json!("answer"));
    assert_eq!(signal.data["payload"], answer);
    assert_rfc3339_utc(&signal.data["sent_at"]);
    expect_marker_next(&app, &alice, &carol, &mut carol_events).await;
}

#[tokio::test]
async fn a_signal_without_to_reaches_every_other_member() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let carol = app.join("lobby").await;
    let mut alice_events = app.open_drained(&alice, 2).await;
    let mut bob_events = app.open_drained(&bob, 1).await;
    let mut carol_events = app.open_drained(&carol, 0).await;

    let recipients = app.signal(&alice, None, "chat", json!("hello all")).await;

    assert_eq!(recipients, 2);
    for events in [&mut bob_events, &mut carol_events] {
        let signal = events.expect_signal().await;
        assert_eq!(signal.data["from"], json!(alice.member_id));
        assert_eq!(signal.data["to"], json!(null));
        assert_eq!(signal.data["payload"], json!("hello all"));
    }
    // The sender does not get its own broadcast.
    expect_marker_next(&app, &bob, &alice, &mut alice_events).await;
}

#[tokio::test]
async fn a_signal_with_to_null_reaches_every_other_member() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let carol = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 1).await;
    let mut carol_events = app.open_drained(&carol, 0).await;

    let response = app
        .send_body(
            &alice.token,
            json!({"to": null, "type": "chat", "payload": 1}),
        )
        .await;

    assert_eq!(json_body(response, 202).await, json!({"recipients": 2}));
    for events in [&mut bob_events, &mut carol_events] {
        let signal = events.expect_signal().await;
        assert_eq!(signal.data["to"], json!(null));
    }
}

#[tokio::test]
async fn a_broadcast_in_a_room_of_one_has_0_recipients() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;

    let recipients = app.signal(&alice, None, "chat", json!("anyone?")).await;

    assert_eq!(recipients, 0);
}

#[tokio::test]
async fn a_signal_to_the_sender_itself_answers_400() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    app.join("lobby").await;

    let response = app
        .send(&alice.token, Some(&alice.member_id), "chat", json!(1))
        .await;

    assert_problem(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_signal_to_something_that_is_not_a_uuid_answers_400() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    app.join("lobby").await;

    for to in [json!("bob"), json!(""), json!(42), json!({"id": "x"})] {
        let response = app
            .send_body(&alice.token, json!({"to": to, "type": "chat"}))
            .await;
        assert_problem(response, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_signal_to_an_unknown_member_answers_404() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let stranger = uuid::Uuid::new_v4().to_string();

    let response = app
        .send(&alice.token, Some(&stranger), "chat", json!(1))
        .await;

    assert_problem(response, 404, "member_not_found").await;
}

#[tokio::test]
async fn a_signal_to_a_member_of_another_room_answers_404() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let elsewhere = app.join("kitchen").await;

    let response = app
        .send(&alice.token, Some(&elsewhere.member_id), "chat", json!(1))
        .await;

    assert_problem(response, 404, "member_not_found").await;
}

#[tokio::test]
async fn a_signal_type_of_1_to_32_lowercase_letters_digits_and_dashes_is_relayed() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 0).await;
    let long = "z".repeat(32);

    for kind in [
        "offer",
        "answer",
        "candidate",
        "a",
        "x-9",
        "chat-line-2",
        &long,
    ] {
        app.signal(&alice, Some(&bob), kind, json!(null)).await;
        let signal = bob_events.expect_signal().await;
        assert_eq!(signal.data["type"], json!(kind));
    }
}

#[tokio::test]
async fn a_signal_type_outside_the_rules_answers_400() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    app.join("lobby").await;
    let long = "z".repeat(33);

    for kind in ["Offer", "", &long, "of fer", "offer!", "of_fer", "é"] {
        let response = app.send(&alice.token, None, kind, json!(1)).await;
        assert_problem(response, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_signal_without_a_type_answers_400() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    app.join("lobby").await;

    let response = app.send_body(&alice.token, json!({"payload": 1})).await;

    assert_problem(response, 400, "invalid_request").await;
    let response = app
        .send_body(&alice.token, json!({"type": 5, "payload": 1}))
        .await;
    assert_problem(response, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_signal_payload_may_be_any_json_value() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 0).await;
    let candidate = json!({"candidate": "candidate:1 1 UDP 1 1.2.3.4 5 typ host", "sdpMid": "0", "sdpMLineIndex": 0});

    for payload in [
        candidate,
        json!(null),
        json!(true),
        json!(-1.5),
        json!("text"),
        json!([1, "two", {"three": 3}]),
        json!({}),
    ] {
        app.signal(&alice, Some(&bob), "candidate", payload.clone())
            .await;
        assert_eq!(bob_events.expect_signal().await.data["payload"], payload);
    }
}

#[tokio::test]
async fn a_type_and_payload_written_with_json_escapes_are_read_as_json_reads_them() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 0).await;
    // `\u0066` is `f`: the type is `offer` once the JSON is read.
    let body = format!(
        r#"{{"to":"{}","type":"of\u0066er","payload":{{"sdp":"v=0\r\na=\"x\"\u00e9"}}}}"#,
        bob.member_id
    );

    let response = send(
        app.client
            .post(app.url("/signals"))
            .bearer_auth(&alice.token)
            .header("content-type", "application/json")
            .body(body),
    )
    .await;

    assert_eq!(json_body(response, 202).await, json!({"recipients": 1}));
    let signal = bob_events.expect_signal().await;
    assert_eq!(signal.data["type"], "offer");
    assert_eq!(signal.data["payload"], json!({"sdp": "v=0\r\na=\"x\"é"}));
}

#[tokio::test]
async fn an_omitted_payload_is_relayed_as_null() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 0).await;

    let response = app
        .send_body(&alice.token, json!({"to": bob.member_id, "type": "bye"}))
        .await;

    assert_eq!(response.status().as_u16(), 202);
    let signal = bob_events.expect_signal().await;
    let data = signal.data.as_object().expect("signal data is an object");
    assert_eq!(
        data.get("payload"),
        Some(&Value::Null),
        "payload is present and null"
    );
}

#[tokio::test]
async fn unknown_signal_fields_are_ignored_and_from_is_always_the_sender() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let carol = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 1).await;

    let response = app
        .send_body(
            &alice.token,
            json!({
                "to": bob.member_id,
                "type": "chat",
                "payload": "hi",
                "from": carol.member_id,
                "sent_at": "1999-01-01T00:00:00Z",
                "priority": "high",
            }),
        )
        .await;

    assert_eq!(json_body(response, 202).await, json!({"recipients": 1}));
    let signal = bob_events.expect_signal().await;
    assert_eq!(signal.data["from"], json!(alice.member_id));
    assert_ne!(signal.data["sent_at"], json!("1999-01-01T00:00:00Z"));
}

#[tokio::test]
async fn a_signal_body_over_the_payload_limit_answers_413() {
    let app = spawn_app_with(&["--payload-limit", "1024"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;

    let small = app
        .send(
            &alice.token,
            Some(&bob.member_id),
            "chat",
            json!("a".repeat(900)),
        )
        .await;
    let big = app
        .send(
            &alice.token,
            Some(&bob.member_id),
            "chat",
            json!("a".repeat(1100)),
        )
        .await;

    assert_eq!(small.status().as_u16(), 202);
    assert_problem(big, 413, "payload_too_large").await;
}

/// `POST /signals` with a body sent in `pieces`, chunked: the client says
/// no length up front.
async fn send_in_pieces(app: &TestApp, token: &str, pieces: Vec<String>) -> reqwest::Response {
    let chunks = pieces
        .into_iter()
        .map(|piece| Ok::<_, std::io::Error>(piece.into_bytes()));
    send(
        app.client
            .post(app.url("/signals"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            ))),
    )
    .await
}

#[tokio::test]
async fn a_body_in_pieces_is_read_whole_and_bounded_all_the_same() {
    let app = spawn_app_with(&["--payload-limit", "1024"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 0).await;
    let pieces = |text: &str| {
        let body = json!({"to": bob.member_id, "type": "chat", "payload": text}).to_string();
        let (head, tail) = body.split_at(body.len() / 2);
        let (middle, tail) = tail.split_at(tail.len() / 2);
        vec![head.to_owned(), middle.to_owned(), tail.to_owned()]
    };

    let small = send_in_pieces(&app, &alice.token, pieces(&"a".repeat(900))).await;
    assert_eq!(json_body(small, 202).await, json!({"recipients": 1}));
    let signal = bob_events.expect_signal().await;
    assert_eq!(signal.data["payload"], json!("a".repeat(900)));

    let big = send_in_pieces(&app, &alice.token, pieces(&"a".repeat(1100))).await;
    assert_problem(big, 413, "payload_too_large").await;
}

#[tokio::test]
async fn the_default_payload_limit_is_64_kib() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;

    let fits = app
        .send(
            &alice.token,
            Some(&bob.member_id),
            "chat",
            json!("a".repeat(60_000)),
        )
        .await;
    let big = app
        .send(
            &alice.token,
            Some(&bob.member_id),
            "chat",
            json!("a".repeat(70_000)),
        )
        .await;

    assert_eq!(fits.status().as_u16(), 202);
    assert_problem(big, 413, "payload_too_large").await;
}

#[tokio::test]
async fn a_signal_to_a_full_inbox_answers_429() {
    let app = spawn_app_with(&["--inbox-limit", "2"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    app.signal(&alice, Some(&bob), "chat", json!(1)).await;
    app.signal(&alice, Some(&bob), "chat", json!(2)).await;

    let response = app
        .send(&alice.token, Some(&bob.member_id), "chat", json!(3))
        .await;

    assert_problem(response, 429, "inbox_full").await;
    let mut bob_events = app.open_drained(&bob, 0).await;
    for n in [1, 2] {
        assert_eq!(bob_events.expect_signal().await.data["payload"], json!(n));
    }
    expect_marker_next(&app, &alice, &bob, &mut bob_events).await;
}

#[tokio::test]
async fn a_broadcast_refused_for_one_full_inbox_reaches_no_one() {
    let app = spawn_app_with(&["--inbox-limit", "2"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let carol = app.join("lobby").await;
    // Bob's member-joined about carol is delivered, so his inbox holds
    // nothing undelivered before alice fills it.
    drop(app.open_drained(&bob, 1).await);
    app.signal(&alice, Some(&bob), "chat", json!(1)).await;
    app.signal(&alice, Some(&bob), "chat", json!(2)).await;

    let response = app.send(&alice.token, None, "chat", json!("all")).await;

    assert_problem(response, 429, "inbox_full").await;
    let mut carol_events = app.open_drained(&carol, 0).await;
    expect_marker_next(&app, &alice, &carol, &mut carol_events).await;
    // Resuming after the member-joined he read: the signals are there even if
    // the server wrote them to his closed stream before it noticed the close.
    let mut bob_events = app.open_events(&bob, Some(1)).await;
    bob_events.expect_ready(&bob, 1).await;
    for n in [1, 2] {
        assert_eq!(bob_events.expect_signal().await.data["payload"], json!(n));
    }
    expect_marker_next(&app, &alice, &bob, &mut bob_events).await;
}

#[tokio::test]
async fn delivered_events_make_room_for_new_signals() {
    let app = spawn_app_with(&["--inbox-limit", "2"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 0).await;

    for n in 0..10 {
        app.signal(&alice, Some(&bob), "chat", json!(n)).await;
        assert_eq!(bob_events.expect_signal().await.data["payload"], json!(n));
    }
}

#[tokio::test]
async fn a_signal_that_would_pass_the_inbox_bytes_limit_answers_429() {
    let app = spawn_app_with(&["--inbox-bytes", "1000"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;

    let first = app
        .send(
            &alice.token,
            Some(&bob.member_id),
            "chat",
            json!("a".repeat(600)),
        )
        .await;
    let second = app
        .send(
            &alice.token,
            Some(&bob.member_id),
            "chat",
            json!("b".repeat(600)),
        )
        .await;

    assert_eq!(first.status().as_u16(), 202);
    assert_problem(second, 429, "inbox_full").await;
    let mut bob_events = app.open_drained(&bob, 0).await;
    assert_eq!(
        bob_events.expect_signal().await.data["payload"],
        json!("a".repeat(600))
    );
    expect_marker_next(&app, &alice, &bob, &mut bob_events).await;
}

/// `inbox_full` says "retry later"; a signal that no inbox could hold,
/// even an empty one, is refused as too large instead.
#[tokio::test]
async fn a_signal_larger_than_an_empty_inbox_holds_answers_413_and_changes_nothing() {
    let app = spawn_app_with(&["--inbox-bytes", "1000"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;

    for to in [Some(bob.member_id.as_str()), None] {
        let response = app
            .send(&alice.token, to, "chat", json!("a".repeat(1000)))
            .await;
        let problem = assert_problem(response, 413, "payload_too_large").await;
        let detail = problem["detail"].as_str().expect("a detail");
        assert!(
            detail.contains("1000") && detail.contains("no retry"),
            "{detail}"
        );
    }

    let mut bob_events = app.open_drained(&bob, 0).await;
    expect_marker_next(&app, &alice, &bob, &mut bob_events).await;
}

#[tokio::test]
async fn member_events_are_never_refused_by_a_full_inbox() {
    let app = spawn_app_with(&["--inbox-limit", "2"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    app.signal(&alice, Some(&bob), "chat", json!(1)).await;
    app.signal(&alice, Some(&bob), "chat", json!(2)).await;

    let carol = app.join("lobby").await;
    assert_eq!(app.leave(&carol).await.status().as_u16(), 204);

    let mut bob_events = app.open_drained(&bob, 0).await;
    bob_events.expect_signal().await;
    bob_events.expect_signal().await;
    bob_events.expect("member-joined").await;
    let left = bob_events.expect("member-left").await;
    assert_eq!(
        left.data,
        json!({"member_id": carol.member_id, "reason": "left"})
    );
}

#[tokio::test]
async fn member_events_past_a_full_inbox_do_not_push_out_undelivered_signals() {
    let app = spawn_app_with(&["--inbox-limit", "2"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    app.signal(&alice, Some(&bob), "chat", json!(1)).await;
    app.signal(&alice, Some(&bob), "chat", json!(2)).await;

    // Both signals were answered 202: they are held until bob reads them,
    // however many never-refused events come after them.
    for _ in 0..3 {
        let guest = app.join("lobby").await;
        assert_eq!(app.leave(&guest).await.status().as_u16(), 204);
    }
    let locked = app.patch_room("lobby", Some(&alice.token), true).await;
    assert_eq!(locked.status().as_u16(), 200);

    let mut bob_events = app.open_drained(&bob, 0).await;
    for n in [1, 2] {
        let signal = bob_events.next_event().await;
        assert_eq!(
            (signal.event.as_str(), &signal.data["payload"]),
            ("signal", &json!(n)),
            "the undelivered signal {n} is still held: {signal:?}"
        );
    }
    for _ in 0..3 {
        bob_events.expect("member-joined").await;
        bob_events.expect("member-left").await;
    }
    let updated = bob_events.expect("room-updated").await;
    assert_eq!(updated.data["locked"], json!(true));
}

#[tokio::test]
async fn a_signal_to_a_member_who_left_answers_404() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    assert_eq!(app.leave(&bob).await.status().as_u16(), 204);

    let response = app
        .send(&alice.token, Some(&bob.member_id), "chat", json!(1))
        .await;

    assert_problem(response, 404, "member_not_found").await;
}

#[tokio::test]
async fn a_202_means_the_signal_is_already_in_the_inbox() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;

    app.signal(&alice, Some(&bob), "offer", json!({"sdp": "x"}))
        .await;
    let events = app.poll_events(&bob, "timeout=0").await;

    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["data"]["payload"], json!({"sdp": "x"}));
}

#[tokio::test]
async fn a_signal_sent_before_the_recipient_opens_its_stream_waits_in_the_inbox() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;

    app.signal(&alice, Some(&bob), "offer", json!({"sdp": "early"}))
        .await;
    let mut bob_events = app.open_drained(&bob, 0).await;

    let signal = bob_events.expect_signal().await;
    assert_eq!(signal.id, Some(1));
    assert_eq!(signal.data["payload"], json!({"sdp": "early"}));
}

#[tokio::test]
async fn signals_from_one_sender_to_one_recipient_keep_their_order() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 0).await;

    for n in 0..50 {
        app.signal(&alice, Some(&bob), "candidate", json!(n)).await;
    }

    for n in 0..50 {
        let signal = bob_events.expect_signal().await;
        assert_eq!(signal.data["payload"], json!(n));
        assert_eq!(signal.id, Some(n + 1));
    }
}

#[tokio::test]
async fn delivered_events_make_room_under_the_byte_limit_too() {
    let app = spawn_app_with(&["--inbox-bytes", "1000"]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut bob_events = app.open_drained(&bob, 0).await;

    for n in 0..10 {
        let payload = json!(format!("{n}{}", "a".repeat(600)));
        // On Redis behind two nodes, the node that delivered the last one
        // tells Redis so on a connection of its own, which may land after
        // this signal does: `inbox_full` until then, as the README says.
        eventually("the delivered signal makes room", DEADLINE, || {
            let payload = payload.clone();
            let app = &app;
            let (alice, bob) = (&alice, &bob);
            async move {
                let response = app
                    .send(&alice.token, Some(&bob.member_id), "chat", payload)
                    .await;
                match response.status().as_u16() {
                    202 => true,
                    429 if cluster_backend() => false,
                    status => panic!("a signal to an inbox that has room answered {status}"),
                }
            }
        })
        .await;
        assert_eq!(bob_events.expect_signal().await.data["payload"], payload);
    }
}

#[tokio::test]
async fn a_404_does_not_tell_whether_the_member_exists_in_another_room() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let elsewhere = app.join("kitchen").await;
    let stranger = uuid::Uuid::new_v4().to_string();

    let existing = app
        .send(&alice.token, Some(&elsewhere.member_id), "chat", json!(1))
        .await;
    let unknown = app
        .send(&alice.token, Some(&stranger), "chat", json!(1))
        .await;

    let existing = assert_problem(existing, 404, "member_not_found").await;
    let unknown = assert_problem(unknown, 404, "member_not_found").await;
    // The same answer but for the request's own id, which every answer has.
    let anonymous = |mut problem: Value, id: &str| -> Value {
        problem
            .as_object_mut()
            .and_then(|fields| fields.remove("request_id"))
            .expect("a problem names its request id");
        serde_json::from_str(&problem.to_string().replace(id, "<id>")).expect("still JSON")
    };
    assert_eq!(
        anonymous(existing, &elsewhere.member_id),
        anonymous(unknown, &stranger)
    );
}
