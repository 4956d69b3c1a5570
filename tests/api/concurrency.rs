//! Many rooms and members at once: nothing lost, per-sender order kept, ids
//! contiguous; concurrent joins never overfill a room.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{Joined, spawn_app};

const ROOMS: usize = 20;
const MEMBERS: usize = 4;
const SIGNALS_PER_PEER: u64 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_signals_in_many_rooms_all_arrive_in_order_with_contiguous_ids() {
    let app = Arc::new(spawn_app().await);
    let mut rooms: Vec<Vec<Joined>> = Vec::new();
    for room in 0..ROOMS {
        let mut members = Vec::new();
        for _ in 0..MEMBERS {
            members.push(app.join(&format!("room-{room}")).await);
        }
        rooms.push(members);
    }

    // Every member reads its stream until it holds every signal meant for it.
    let mut readers = Vec::new();
    for members in &rooms {
        for (index, member) in members.iter().enumerate() {
            let mut events = app.open_events(member, None).await;
            events.expect_ready(member, 0).await;
            let member = member.clone();
            let member_joined = MEMBERS - 1 - index;
            readers.push(tokio::spawn(async move {
                let expected_signals = (MEMBERS as u64 - 1) * SIGNALS_PER_PEER;
                let mut ids = Vec::new();
                let mut by_sender: HashMap<String, Vec<u64>> = HashMap::new();
                let mut joined = 0;
                while (by_sender.values().map(Vec::len).sum::<usize>() as u64) < expected_signals {
                    let event = events.next_event().await;
                    ids.push(event.id.expect("inbox events have ids"));
                    match event.event.as_str() {
                        "member-joined" => joined += 1,
                        "signal" => {
                            assert_eq!(event.data["to"], json!(member.member_id));
                            let from = event.data["from"]
                                .as_str()
                                .expect("from is an id")
                                .to_owned();
                            let n = event.data["payload"]["n"].as_u64().expect("payload.n");
                            by_sender.entry(from).or_default().push(n);
                        }
                        other => panic!("unexpected event `{other}`: {event:?}"),
                    }
                }
                (member, member_joined, joined, ids, by_sender)
            }));
        }
    }

    let mut senders = Vec::new();
    for members in &rooms {
        for sender in members {
            let app = Arc::clone(&app);
            let sender = sender.clone();
            let peers: Vec<Joined> = members
                .iter()
                .filter(|peer| peer.member_id != sender.member_id)
                .cloned()
                .collect();
            senders.push(tokio::spawn(async move {
                for n in 0..SIGNALS_PER_PEER {
                    for peer in &peers {
                        let recipients = app
                            .signal(&sender, Some(peer), "candidate", json!({"n": n}))
                            .await;
                        assert_eq!(recipients, 1);
                    }
                }
            }));
        }
    }
    for sender in join_all(senders).await {
        sender.expect("a sender does not panic");
    }

    for reader in join_all(readers).await {
        let (member, member_joined, joined, ids, by_sender) =
            reader.expect("a reader does not panic");
        assert_eq!(
            joined, member_joined,
            "member-joined events of {}",
            member.member_id
        );
        let contiguous: Vec<u64> = (1..=ids.len() as u64).collect();
        assert_eq!(ids, contiguous, "ids of {} are 1, 2, 3…", member.member_id);
        assert_eq!(by_sender.len(), MEMBERS - 1, "signals from every peer");
        let in_order: Vec<u64> = (0..SIGNALS_PER_PEER).collect();
        for (from, received) in by_sender {
            assert_eq!(
                received, in_order,
                "signals from {from} to {}",
                member.member_id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_never_overfill_a_room_and_make_exactly_one_owner() {
    let app = Arc::new(spawn_app().await);
    // The room is created by the first join to land; ask every joiner for
    // the same capacity so the outcome does not depend on which one it is.
    let joins = (0..12).map(|_| {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let response = app.post_join("crowded", Some(json!({"capacity": 5}))).await;
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("a JSON answer");
            (status, body)
        })
    });

    let answers: Vec<_> = join_all(joins)
        .await
        .into_iter()
        .map(|answer| answer.expect("a join task does not panic"))
        .collect();

    let joined: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .collect();
    let full = answers
        .iter()
        .filter(|(status, body)| *status == 409 && body["code"] == "room_full");
    assert_eq!(joined.len(), 5, "{answers:?}");
    assert_eq!(full.count(), 7, "{answers:?}");
    let owners = joined
        .iter()
        .filter(|(_, body)| body["owner"] == json!(true))
        .count();
    assert_eq!(owners, 1);
    let mut sizes: Vec<usize> = joined
        .iter()
        .map(|(_, body)| body["members"].as_array().map_or(usize::MAX, Vec::len))
        .collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        vec![0, 1, 2, 3, 4],
        "each join saw the ones before it"
    );
}

/// Signals sent at the same moment, some of them refused, are each answered
/// for themselves (on Redis, their calls share one connection), and only
/// the accepted ones arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signals_sent_at_once_are_each_answered_for_themselves() {
    const EACH: u64 = 8;
    let app = Arc::new(spawn_app().await);
    let sender = app.join("mixed").await;
    let recipient = app.join("mixed").await;
    let elsewhere = app.join("another-room").await;
    let gone = app.join("mixed").await;
    assert_eq!(app.leave(&gone).await.status(), 204);
    let mut events = app.open_events(&recipient, None).await;
    events.expect_ready(&recipient, 0).await;

    let sends = (0..EACH).flat_map(|n| {
        [
            (sender.token.clone(), recipient.member_id.clone(), 202, n),
            (sender.token.clone(), elsewhere.member_id.clone(), 404, n),
            (sender.token.clone(), gone.member_id.clone(), 404, n),
            (gone.token.clone(), recipient.member_id.clone(), 401, n),
        ]
    });
    let answers = join_all(sends.map(|(token, to, expected, n)| {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let response = app
                .send(&token, Some(&to), "candidate", json!({"n": n}))
                .await;
            (response.status().as_u16(), expected)
        })
    }))
    .await;
    for answer in answers {
        let (status, expected) = answer.expect("a send does not panic");
        assert_eq!(status, expected);
    }

    let mut received = Vec::new();
    while received.len() < EACH as usize {
        let event = events.next_event().await;
        if event.event == "signal" {
            assert_eq!(event.data["from"], json!(sender.member_id));
            received.push(event.data["payload"]["n"].as_u64().expect("payload.n"));
        }
    }
    received.sort_unstable();
    assert_eq!(received, (0..EACH).collect::<Vec<_>>());
    // Nothing else was put in the inbox: a marker sent last is next.
    app.signal(&sender, Some(&recipient), "marker", json!(null))
        .await;
    let next = events.next_event().await;
    assert_eq!(next.data["type"], json!("marker"), "{next:?}");
}
