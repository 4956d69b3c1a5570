//! The soak: for a fixed time, workers churn joins, streams dropped half-read,
//! signals, leaves and members simply abandoned; then every room and member
//! must be gone, no task left behind, and memory back near its baseline.
//!
//! CI runs it small. By hand, larger:
//! `SIGNALPOST_SOAK_SECS=300 SIGNALPOST_SOAK_WORKERS=64 cargo test --release --test api soak -- --nocapture`

use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt};
use reqwest::Client;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::{ADMIN_TOKEN, TestApp, eventually, spawn_app_with};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of this process (server and clients alike), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS is in /proc/self/status")
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// What one worker did, for the closing figures.
#[derive(Default, Debug)]
struct Tally {
    joins: u64,
    refused_joins: u64,
    signals: u64,
    refused_signals: u64,
    streams: u64,
    leaves: u64,
    abandoned: u64,
}

/// One member's life: join, maybe read, signal, then leave or vanish. The
/// `n`th life of a worker picks its ending from `n`, so every ending recurs.
async fn live_once(app: &TestApp, client: &Client, worker: u64, n: u64, tally: &mut Tally) {
    let room = format!("soak-{worker}-{}", n % 3);
    let response = client
        .post(app.url(&format!("/rooms/{room}/join")))
        .json(&json!({"name": format!("w{worker}"), "capacity": 4}))
        .send()
        .await
        .expect("the server answers a join");
    if response.status().as_u16() != 201 {
        assert_eq!(
            response.status().as_u16(),
            409,
            "a join is 201 or room_full"
        );
        tally.refused_joins += 1;
        return;
    }
    tally.joins += 1;
    let joined: Value = response.json().await.expect("a join answer is JSON");
    let token = joined["token"].as_str().expect("token").to_owned();
    let member_path = format!(
        "/rooms/{room}/members/{}",
        joined["member"]["id"].as_str().expect("member id")
    );

    let stream = if n % 4 != 3 {
        let response = client
            .get(app.url(&format!("{member_path}/events")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("the server answers a stream");
        assert_eq!(response.status().as_u16(), 200);
        tally.streams += 1;
        let mut body = response.bytes_stream();
        // Half-read: the first chunk (at least `ready`), then whatever.
        let first = tokio::time::timeout(Duration::from_secs(5), body.next()).await;
        assert!(matches!(first, Ok(Some(Ok(_)))), "the stream starts");
        Some(body)
    } else {
        None
    };

    for seq in 0..(n % 5) {
        let response = client
            .post(app.url("/signals"))
            .bearer_auth(&token)
            .json(&json!({"type": "candidate", "payload": {"seq": seq, "pad": "x".repeat(300)}}))
            .send()
            .await
            .expect("the server answers a signal");
        match response.status().as_u16() {
            202 => tally.signals += 1,
            429 => tally.refused_signals += 1,
            status => panic!("a signal answered {status}"),
        }
    }

    // The stream is dropped here, unread past its first chunk.
    drop(stream);
    if n.is_multiple_of(3) {
        // Vanish: the member timeout must reap it.
        tally.abandoned += 1;
    } else {
        let response = client
            .delete(app.url(&member_path))
            .bearer_auth(&token)
            .send()
            .await
            .expect("the server answers a leave");
        assert_eq!(response.status().as_u16(), 204);
        tally.leaves += 1;
    }
}

/// Churns with `workers` concurrent clients for `for_how_long`.
async fn churn(app: &TestApp, workers: u64, for_how_long: Duration) -> Tally {
    let client = Client::new();
    let until = Instant::now() + for_how_long;
    let tallies = futures_util::future::join_all((0..workers).map(|worker| {
        let client = &client;
        async move {
            let mut tally = Tally::default();
            let mut n = 0;
            while Instant::now() < until {
                live_once(app, client, worker, n, &mut tally).await;
                n += 1;
            }
            tally
        }
    }))
    .await;
    let mut total = Tally::default();
    for tally in tallies {
        total.joins += tally.joins;
        total.refused_joins += tally.refused_joins;
        total.signals += tally.signals;
        total.refused_signals += tally.refused_signals;
        total.streams += tally.streams;
        total.leaves += tally.leaves;
        total.abandoned += tally.abandoned;
    }
    total
}

async fn room_count(app: &TestApp) -> usize {
    let client = Client::new();
    let rooms: Value = client
        .get(app.url("/rooms"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("the server lists its rooms")
        .json()
        .await
        .expect("the room list is JSON");
    rooms["rooms"].as_array().expect("rooms is an array").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_churn_every_room_member_and_task_is_gone_and_memory_is_back() {
    let secs = env_or("SIGNALPOST_SOAK_SECS", 3);
    let workers = env_or("SIGNALPOST_SOAK_WORKERS", 16);
    let app = spawn_app_with(&[
        "--admin-token",
        ADMIN_TOKEN,
        "--member-timeout",
        "0.5",
        "--join-rate",
        "1000000",
        "--signal-rate",
        "1000000",
    ])
    .await;

    // A first round warms the allocator and the runtime, so the baseline
    // is a server that has already worked, not a fresh one.
    churn(&app, workers, Duration::from_millis(500)).await;
    eventually(
        "the warm-up rooms are gone",
        Duration::from_secs(10),
        || room_count(&app).map(|count| count == 0),
    )
    .await;
    let tasks_before = alive_tasks();
    let rss_before = rss_kib();

    let tally = churn(&app, workers, Duration::from_secs(secs)).await;
    assert!(tally.joins > 0 && tally.leaves > 0 && tally.abandoned > 0);

    eventually(
        "every room and member is gone",
        Duration::from_secs(10),
        || room_count(&app).map(|count| count == 0),
    )
    .await;
    eventually(
        "no task is left but the server's own",
        Duration::from_secs(10),
        || async { alive_tasks() <= tasks_before },
    )
    .await;
    let rss_after = rss_kib();
    eprintln!(
        "soak {secs} s, {workers} workers: {tally:?}; tasks {tasks_before} -> {}; RSS {rss_before} KiB -> {rss_after} KiB",
        alive_tasks()
    );
    // The allocator keeps some freed pages; a leak grows with the churn.
    let allowed_kib = 16 * 1024 + rss_before / 4;
    assert!(
        rss_after <= rss_before + allowed_kib,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
}
