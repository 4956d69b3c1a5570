//! Requests whose client hangs up before the answer: the server drops the
//! request then, and whatever state the call changed must be whole, never
//! half-made. On Redis a join or a removal is several round trips, so a
//! hang-up between two of them once left the member count too high, and
//! the service refused every join from then on.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::Value;

use crate::helpers::{
    ADMIN_TOKEN, DEADLINE, Joined, TestApp, assert_problem, eventually, json_body,
    send_and_hang_up, spawn_app_with,
};

/// Members the whole service may hold, in these tests.
const MAX_MEMBERS: usize = 10;

/// Joins the hang-ups make: many times the cap, so that many of them race
/// for it.
const HUNG_UP_JOINS: usize = 60;

/// A server holding at most `MAX_MEMBERS` members, which it removes after
/// `member_timeout` seconds unread, and which lets one client join as
/// often as it likes.
async fn spawn_small_app(member_timeout: &str) -> TestApp {
    let max_members = MAX_MEMBERS.to_string();
    spawn_app_with(&[
        "--max-members",
        &max_members,
        "--member-timeout",
        member_timeout,
        "--join-rate",
        "100000",
        "--admin-token",
        ADMIN_TOKEN,
    ])
    .await
}

fn raw_request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> String {
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{authorization}Content-Length: 0\r\n\r\n")
}

/// The rooms the admin sees, with the members each holds.
async fn member_counts(app: &TestApp) -> Vec<(String, u64)> {
    let body = json_body(app.list_rooms(Some(ADMIN_TOKEN)).await, 200).await;
    body["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("rooms is an array: {body}"))
        .iter()
        .map(|room: &Value| {
            (
                room["id"].as_str().unwrap_or_default().to_owned(),
                room["member_count"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("a room has a member_count: {room}")),
            )
        })
        .collect()
}

/// Waits until the service takes a join again and no room is left, then
/// checks that it takes as many members as it may, and not one more.
async fn assert_every_place_is_free_again(app: &TestApp) {
    // A hung-up call may still be running when its connection closes: a
    // join that takes a place is left at once, so that it waits for those
    // calls without holding a place itself.
    eventually("a join is taken again", DEADLINE * 2, || async move {
        let response = app.post_join("probe", None).await;
        match response.status().as_u16() {
            503 => false,
            _ => {
                let probe = Joined::from_response(response).await;
                assert_eq!(app.leave(&probe).await.status(), 204, "the probe leaves");
                true
            }
        }
    })
    .await;
    eventually("every room is gone", DEADLINE * 2, || async move {
        member_counts(app).await.is_empty()
    })
    .await;
    for n in 0..MAX_MEMBERS {
        let response = app.post_join(&format!("fresh{n}"), None).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(
            status, 201,
            "fresh join {n} of {MAX_MEMBERS} into an empty service answers 201: {text}"
        );
    }
    assert_problem(app.post_join("one-more", None).await, 503, "server_busy").await;
    let counts = member_counts(app).await;
    assert_eq!(
        counts.iter().map(|(_, count)| count).sum::<u64>(),
        MAX_MEMBERS as u64,
        "the rooms hold the fresh members and nobody else: {counts:?}"
    );
}

#[tokio::test]
async fn joins_whose_client_hangs_up_leave_whole_members_that_time_out() {
    let app = spawn_small_app("1").await;
    let addr = app.addr;

    join_all((0..HUNG_UP_JOINS).map(|n| {
        let request = raw_request(addr, "POST", &format!("/rooms/hung{n}/join"), None);
        send_and_hang_up(addr, request, Duration::from_millis(n as u64 % 5))
    }))
    .await;

    // What the hung-up joins left: whole members, no more than the cap,
    // listed in their rooms until they time out unread.
    let counts = member_counts(&app).await;
    assert!(
        counts.iter().map(|(_, count)| count).sum::<u64>() <= MAX_MEMBERS as u64,
        "no more members than the cap: {counts:?}"
    );
    assert_every_place_is_free_again(&app).await;
}

#[tokio::test]
async fn removals_whose_client_hangs_up_free_the_members_places() {
    // The reaper stays out of it: only the removals free places here.
    let app = spawn_small_app("30").await;
    // One removal answered in full first: on Redis the first one also
    // loads its script, and a hang-up then stops it before it changes
    // anything, which tests nothing.
    let first = app.join("first").await;
    assert_eq!(app.leave(&first).await.status(), 204);
    let mut members: Vec<Joined> = Vec::new();
    for n in 0..MAX_MEMBERS {
        members.push(app.join(&format!("gone{}", n / 2)).await);
    }
    let addr = app.addr;

    join_all(members.iter().enumerate().map(|(n, member)| {
        let request = raw_request(addr, "DELETE", &member.path(), Some(ADMIN_TOKEN));
        send_and_hang_up(addr, request, Duration::from_millis(n as u64 % 5))
    }))
    .await;

    // A hung-up removal happened as a whole or not at all: the admin
    // removes whoever is left, and every place is free.
    for member in &members {
        let status = app
            .remove(&member.room_id, &member.member_id, Some(ADMIN_TOKEN))
            .await
            .status()
            .as_u16();
        assert!(
            status == 204 || status == 404,
            "removing {} again answers 204 or 404, not {status}",
            member.member_id
        );
    }
    assert_every_place_is_free_again(&app).await;
}
