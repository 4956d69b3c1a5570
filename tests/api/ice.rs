//! `GET /ice-servers`: STUN as configured, TURN credentials minted for the
//! calling member in the TURN REST API scheme, for members only.

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, assert_problem, json_body, send, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_member_gets_stun_and_turn_credentials_of_its_own() {
    let app = spawn_app_with(&[
        "--stun-url",
        "stun:stun.example.com:3478",
        "--turn-uri",
        "turn:turn.example.com:3478?transport=udp",
        "--turn-uri",
        "turns:turn.example.com:5349",
        "--turn-secret",
        "north-wind",
        "--turn-ttl",
        "3600",
    ])
    .await;
    let alice = app.join("lobby").await;
    let asked_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();

    let response = send(
        app.client
            .get(app.url("/ice-servers"))
            .bearer_auth(&alice.token),
    )
    .await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let servers = json_body(response, 200).await;

    assert_eq!(servers[0], json!({"urls": ["stun:stun.example.com:3478"]}));
    let turn = &servers[1];
    assert_eq!(
        turn["urls"],
        json!([
            "turn:turn.example.com:3478?transport=udp",
            "turns:turn.example.com:5349"
        ])
    );
    let username = turn["username"].as_str().expect("a TURN username");
    let (expiry, member) = username.split_once(':').expect("`expiry:member`");
    assert_eq!(member, alice.member_id);
    let expiry: u64 = expiry.parse().expect("expiry in unix seconds");
    assert!(
        (asked_at + 3600..=asked_at + 3600 + 5).contains(&expiry),
        "valid for --turn-ttl from now: {expiry} vs {asked_at}"
    );
    // What coturn computes with `use-auth-secret` to check the password.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"north-wind").expect("any key length");
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn["credential"], expected);
    assert_eq!(servers.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn without_configuration_the_list_is_empty() {
    let app = spawn_app().await;
    let alice = app.join("lobby").await;
    let response = send(
        app.client
            .get(app.url("/ice-servers"))
            .bearer_auth(&alice.token),
    )
    .await;
    assert_eq!(json_body(response, 200).await, json!([]));
}

#[tokio::test]
async fn ice_servers_are_for_members_only() {
    let app = spawn_app_with(&[
        "--admin-token",
        ADMIN_TOKEN,
        "--turn-uri",
        "turn:t",
        "--turn-secret",
        "s",
    ])
    .await;
    assert_problem(
        send(app.client.get(app.url("/ice-servers"))).await,
        401,
        "unauthorized",
    )
    .await;
    let admin = send(
        app.client
            .get(app.url("/ice-servers"))
            .bearer_auth(ADMIN_TOKEN),
    )
    .await;
    assert_problem(admin, 403, "forbidden").await;
}
