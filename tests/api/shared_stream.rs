//! `POST /streams`: several members' inboxes on one stream, each opened by
//! its own token, each frame's `id:` naming its inbox and its place.

use serde_json::{Value, json};

use crate::helpers::{
    Joined, RawLines, TestApp, assert_problem, assert_same_member, send, spawn_app, spawn_app_with,
    spawn_app_with_a_small_inbox,
};

/// One frame of a shared stream.
#[derive(Debug)]
struct Frame {
    /// The member whose inbox it is, and the place in it.
    inbox: String,
    place: u64,
    event: String,
    data: Value,
}

/// Reads a shared stream frame by frame; comments are skipped.
struct SharedFrames(RawLines);

impl SharedFrames {
    async fn next(&mut self) -> Frame {
        let (mut id, mut event, mut data) = (None, None, None);
        loop {
            let line = self.0.next_line().await;
            if line.is_empty() {
                if let Some(data) = data {
                    let id: String = id.expect("every frame of a shared stream has an id");
                    let (inbox, place) = id.rsplit_once('/').expect("the id is member/place");
                    return Frame {
                        inbox: inbox.to_owned(),
                        place: place.parse().expect("the place is a number"),
                        event: event.expect("every frame names its event"),
                        data,
                    };
                }
                continue;
            }
            if let Some(value) = line.strip_prefix("id: ") {
                id = Some(value.to_owned());
            } else if let Some(value) = line.strip_prefix("event: ") {
                event = Some(value.to_owned());
            } else if let Some(value) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(value).expect("data is JSON"));
            } else {
                assert!(line.starts_with(':'), "an unexpected line {line:?}");
            }
        }
    }

    /// The next frame, which must be `event` of `member`'s inbox.
    async fn expect(&mut self, member: &Joined, event: &str) -> Frame {
        let frame = self.next().await;
        assert_eq!(
            (frame.inbox.as_str(), frame.event.as_str()),
            (member.member_id.as_str(), event),
            "{frame:?}"
        );
        frame
    }
}

fn inbox(member: &Joined, last_event_id: Option<u64>) -> Value {
    json!({
        "room_id": member.room_id,
        "member_id": member.member_id,
        "token": member.token,
        "last_event_id": last_event_id,
    })
}

fn request(app: &TestApp, body: &Value) -> reqwest::RequestBuilder {
    app.client.post(app.url("/streams")).json(body)
}

async fn open(app: &TestApp, body: Value) -> SharedFrames {
    SharedFrames(app.open_raw_events_with(request(app, &body)).await)
}

#[tokio::test]
async fn one_stream_carries_the_inboxes_of_members_of_different_rooms() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let carol = app.join("standup").await;
    let bob = app.join("lobby").await;
    let dave = app.join("standup").await;

    let mut frames = open(
        &app,
        json!({"inboxes": [inbox(&alice, None), inbox(&carol, None)]}),
    )
    .await;

    let ready = frames.expect(&alice, "ready").await;
    assert_eq!(ready.place, 0);
    assert_eq!(ready.data["member_id"], json!(alice.member_id));
    assert_eq!(ready.data["last_event_id"], json!(0));
    assert_eq!(frames.expect(&carol, "ready").await.place, 0);
    // The backlogs: each one's `member-joined`, each in its own inbox.
    let mut joined = vec![frames.next().await, frames.next().await];
    joined.sort_by(|a, b| a.inbox.cmp(&b.inbox));
    for frame in &joined {
        assert_eq!((frame.event.as_str(), frame.place), ("member-joined", 1));
    }
    let of = |member: &Joined| {
        joined
            .iter()
            .find(|f| f.inbox == member.member_id)
            .expect("a frame")
            .data["member"]
            .clone()
    };
    assert_same_member(&of(&alice), &bob.member);
    assert_same_member(&of(&carol), &dave.member);

    app.signal(&dave, Some(&carol), "offer", json!({"n": 1}))
        .await;
    let signal = frames.expect(&carol, "signal").await;
    assert_eq!(
        (signal.place, &signal.data["payload"]),
        (2, &json!({"n": 1}))
    );
    app.signal(&bob, Some(&alice), "offer", json!({"n": 2}))
        .await;
    let signal = frames.expect(&alice, "signal").await;
    assert_eq!(
        (signal.place, &signal.data["from"]),
        (2, &json!(bob.member_id))
    );
}

#[tokio::test]
async fn each_inbox_resumes_after_its_own_id_and_a_lost_stretch_is_a_gap_with_its_place() {
    let app = spawn_app_with_a_small_inbox().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut events = app.open_events(&alice, None).await;
    events.expect_ready(&alice, 0).await;
    events.expect("member-joined").await;
    for n in 0..20 {
        app.signal(&bob, Some(&alice), "chat", json!(n)).await;
        events.expect_signal().await;
    }
    drop(events);
    let mut events = app.open_events(&bob, None).await;
    events.expect_ready(&bob, 0).await;
    drop(events);
    app.signal(&alice, Some(&bob), "chat", json!("one")).await;
    app.signal(&alice, Some(&bob), "chat", json!("two")).await;

    let mut frames = open(
        &app,
        json!({"inboxes": [inbox(&alice, Some(0)), inbox(&bob, Some(1))]}),
    )
    .await;

    frames.expect(&alice, "ready").await;
    assert_eq!(frames.expect(&bob, "ready").await.place, 1);
    // Alice's held events, after her gap, and Bob's two, interleaved.
    let mut rest = Vec::new();
    while !rest.iter().any(|f: &Frame| f.inbox == bob.member_id) {
        assert!(rest.len() < 40, "Bob's signal never came: {rest:?}");
        rest.push(frames.next().await);
    }
    let alices: Vec<_> = rest.iter().filter(|f| f.inbox == alice.member_id).collect();
    let bobs: Vec<_> = rest.iter().filter(|f| f.inbox == bob.member_id).collect();
    assert_eq!(alices[0].event, "gap", "{rest:?}");
    assert_eq!(alices[0].data["from"], json!(1));
    assert_eq!(
        json!(alices[0].place),
        alices[0].data["to"],
        "a gap's place is its `to`"
    );
    assert_eq!(
        bobs.iter()
            .map(|f| (f.place, f.data["payload"].clone()))
            .collect::<Vec<_>>(),
        [(2, json!("two"))],
        "Bob's resume after 1 skipped the one he had seen: {rest:?}"
    );
}

#[tokio::test]
async fn a_member_who_leaves_drops_out_after_its_own_member_left_and_the_last_one_ends_the_stream()
{
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut frames = open(
        &app,
        json!({"inboxes": [inbox(&alice, Some(0)), inbox(&bob, Some(0))]}),
    )
    .await;
    frames.expect(&alice, "ready").await;
    frames.expect(&bob, "ready").await;
    frames.expect(&alice, "member-joined").await;

    app.leave(&alice).await;
    // Each inbox hears of it; Bob's may also say he owns the room now.
    let mut lefts = 0;
    while lefts < 2 {
        let frame = frames.next().await;
        if frame.event == "room-updated" {
            assert_eq!(frame.inbox, bob.member_id, "{frame:?}");
            continue;
        }
        assert_eq!(frame.event, "member-left", "{frame:?}");
        assert_eq!(frame.data["member_id"], json!(alice.member_id), "{frame:?}");
        lefts += 1;
    }
    // Bob's inbox reads on.
    let carol = app.join("lobby").await;
    let mut joined = frames.next().await;
    if joined.event == "room-updated" {
        joined = frames.next().await;
    }
    assert_eq!(
        (joined.inbox.as_str(), joined.event.as_str()),
        (bob.member_id.as_str(), "member-joined")
    );
    assert_same_member(&joined.data["member"], &carol.member);

    app.leave(&bob).await;
    frames.expect(&bob, "member-left").await;
    frames.0.expect_end().await;
}

#[tokio::test]
async fn opening_an_inbox_on_a_shared_stream_closes_its_own_stream() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let mut own = app.open_events(&alice, None).await;
    own.expect_ready(&alice, 0).await;

    let mut frames = open(&app, json!({"inboxes": [inbox(&alice, None)]})).await;
    frames.expect(&alice, "ready").await;

    own.expect_end().await;
}

#[tokio::test]
async fn the_shared_stream_carries_keep_alives_at_the_interval_asked() {
    let app = spawn_app_with(&["--keep-alive", "600"]).await;
    let alice = app.join("lobby").await;

    let mut lines = app
        .open_raw_events_with(request(
            &app,
            &json!({"inboxes": [inbox(&alice, None)], "keep_alive": 1}),
        ))
        .await;

    while lines.next_line().await != ": keep-alive" {}
}

#[tokio::test]
async fn a_request_with_any_inbox_refused_opens_none() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut own = app.open_events(&alice, None).await;
    own.expect_ready(&alice, 0).await;
    own.expect("member-joined").await;

    let mut stranger = inbox(&bob, None);
    stranger["token"] = json!("not-a-token-of-anyone");
    let mut borrowed = inbox(&bob, None);
    borrowed["token"] = json!(alice.token);
    let mut bad_room = inbox(&bob, None);
    bad_room["room_id"] = json!("no/such room");
    let too_many: Vec<Value> = (0..33).map(|_| inbox(&bob, None)).collect();
    let cases = [
        (
            json!({"inboxes": [inbox(&alice, None), stranger]}),
            401,
            "unauthorized",
        ),
        (
            json!({"inboxes": [inbox(&alice, None), borrowed]}),
            403,
            "forbidden",
        ),
        (
            json!({"inboxes": [inbox(&alice, None), bad_room]}),
            400,
            "invalid_request",
        ),
        (
            json!({"inboxes": [inbox(&alice, None), inbox(&alice, Some(1))]}),
            400,
            "invalid_request",
        ),
        (json!({"inboxes": []}), 400, "invalid_request"),
        (json!({"inboxes": too_many}), 400, "invalid_request"),
        (
            json!({"inboxes": [inbox(&alice, None)], "keep_alive": 0}),
            400,
            "invalid_request",
        ),
        (json!({"inboxes": "alice"}), 400, "invalid_request"),
    ];
    for (body, status, code) in cases {
        assert_problem(send(request(&app, &body)).await, status, code).await;
    }

    // Alice's own stream was never closed by any of them.
    app.signal(&bob, Some(&alice), "chat", json!("still here"))
        .await;
    let signal = own.expect_signal().await;
    assert_eq!(signal.data["payload"], json!("still here"));
}

#[tokio::test]
async fn a_shared_stream_opened_again_with_one_more_inbox_reads_on_after_the_first_is_dropped() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    let mut first = open(&app, json!({"inboxes": [inbox(&alice, None)]})).await;
    first.expect(&alice, "ready").await;
    first.expect(&alice, "member-joined").await;

    let mut second = open(
        &app,
        json!({"inboxes": [inbox(&alice, Some(1)), inbox(&bob, None)]}),
    )
    .await;
    second.expect(&alice, "ready").await;
    second.expect(&bob, "ready").await;
    drop(first);

    app.signal(&bob, Some(&alice), "chat", json!("after")).await;
    let signal = second.expect(&alice, "signal").await;
    assert_eq!(signal.data["payload"], json!("after"));
    app.signal(&alice, Some(&bob), "chat", json!("back")).await;
    let signal = second.expect(&bob, "signal").await;
    assert_eq!(signal.data["payload"], json!("back"));
}
