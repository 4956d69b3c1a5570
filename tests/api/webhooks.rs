//! Webhooks (`--webhook-url`, `--webhook-secret`): a receiver in the test
//! hears of rooms made and closed and members in and out, in each room's
//! order, every POST signed as Standard Webhooks says, each once however
//! many nodes there are; one that fails gets the same message again. On a
//! Redis Cluster the server refuses webhooks so far: there these run on a
//! memory node.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Mutex, mpsc};

use crate::helpers::{ADMIN_TOKEN, ServerProcess, TestApp, spawn_app_with};
use crate::redis_server::{RedisCluster, RedisServer};

const KEY: [u8; 32] = [42; 32];
const DEADLINE: Duration = Duration::from_secs(10);

fn secret() -> String {
    format!("whsec_{}", STANDARD.encode(KEY))
}

/// What the receiver got: the three headers and the body.
#[derive(Debug)]
struct Delivery {
    id: String,
    timestamp: String,
    signature: String,
    body: Value,
}

/// A receiver on a free loopback port that answers the first `refuse`
/// POSTs 500, the rest 204, and hands every POST it gets to the test.
struct Receiver {
    url: String,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
    refuse: Arc<Mutex<usize>>,
}

#[derive(Clone)]
struct ReceiverState {
    refuse: Arc<Mutex<usize>>,
    deliveries: mpsc::UnboundedSender<Delivery>,
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let delivery = Delivery {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    // Checked here on the raw bytes, as a receiver's library does.
    let mut mac = Hmac::<Sha256>::new_from_slice(&KEY).expect("any key length");
    mac.update(format!("{}.{}.", delivery.id, delivery.timestamp).as_bytes());
    mac.update(&body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(
        delivery.signature, expected,
        "the signature of {delivery:?}"
    );
    let _ = state.deliveries.send(delivery);
    let mut refuse = state.refuse.lock().await;
    if *refuse > 0 {
        *refuse -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::NO_CONTENT
}

impl Receiver {
    async fn start(refuse: usize) -> Self {
        let (sender, deliveries) = mpsc::unbounded_channel();
        let refuse = Arc::new(Mutex::new(refuse));
        let state = ReceiverState {
            refuse: Arc::clone(&refuse),
            deliveries: sender,
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("127.0.0.1:0 can be bound");
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("a bound address")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            deliveries,
            refuse,
        }
    }

    /// From now on, takes every POST.
    async fn take_all(&self) {
        *self.refuse.lock().await = 0;
    }

    async fn next(&mut self) -> Delivery {
        tokio::time::timeout(DEADLINE, self.deliveries.recv())
            .await
            .expect("a webhook within the deadline")
            .expect("the receiver runs")
    }

    async fn app(&self, more: &[&str]) -> TestApp {
        let secret = secret();
        let mut args = vec!["--webhook-url", &self.url, "--webhook-secret", &secret];
        args.extend_from_slice(more);
        spawn_app_with(&args).await
    }
}

#[tokio::test]
async fn the_back_end_hears_of_a_room_s_life_in_its_order_signed() {
    let mut receiver = Receiver::start(0).await;
    let app = receiver.app(&[]).await;
    let alice = app.join("lobby").await;
    let bob = app.join("lobby").await;
    assert_eq!(app.leave(&bob).await.status(), 204);
    assert_eq!(app.leave(&alice).await.status(), 204);

    let expected = [
        ("room-created", json!({"room_id": "lobby"})),
        (
            "member-joined",
            json!({"room_id": "lobby", "member": alice.member}),
        ),
        (
            "member-joined",
            json!({"room_id": "lobby", "member": bob.member}),
        ),
        (
            "member-left",
            json!({"room_id": "lobby", "member_id": bob.member_id, "reason": "left"}),
        ),
        (
            "member-left",
            json!({"room_id": "lobby", "member_id": alice.member_id, "reason": "left"}),
        ),
        ("room-closed", json!({"room_id": "lobby"})),
    ];
    let mut ids = HashSet::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    for (kind, data) in expected {
        let delivery = receiver.next().await;
        assert_eq!(delivery.body["type"], json!(kind), "{delivery:?}");
        assert_eq!(delivery.body["data"], data, "{delivery:?}");
        assert!(delivery.body["timestamp"].is_string());
        assert!(delivery.id.starts_with("msg_"), "{delivery:?}");
        assert!(
            ids.insert(delivery.id.clone()),
            "ids are unique: {delivery:?}"
        );
        let timestamp: u64 = delivery.timestamp.parse().expect("whole seconds");
        assert!(timestamp.abs_diff(now) < 60, "{delivery:?}");
    }
    // Nothing twice (two nodes share Redis on that backend): the next
    // notice is the next room's.
    app.join("next").await;
    assert_eq!(
        receiver.next().await.body["data"],
        json!({"room_id": "next"})
    );
}

#[tokio::test]
async fn a_member_timed_out_is_heard_of_with_its_reason() {
    let mut receiver = Receiver::start(0).await;
    let app = receiver.app(&["--member-timeout", "0.5"]).await;
    let idle = app.join("quiet").await;
    for kind in ["room-created", "member-joined"] {
        assert_eq!(receiver.next().await.body["type"], json!(kind));
    }
    let left = receiver.next().await;
    assert_eq!(
        left.body["data"],
        json!({"room_id": "quiet", "member_id": idle.member_id, "reason": "timeout"})
    );
    assert_eq!(receiver.next().await.body["type"], json!("room-closed"));
}

/// A room the service makes is heard of when it is made, not at its first
/// join; when the service ends it, each member's removal, then its close.
/// One it made and left empty closes at its timeout.
#[tokio::test]
async fn the_back_end_hears_of_the_rooms_it_makes_and_ends() {
    let mut receiver = Receiver::start(0).await;
    let app = receiver.app(&["--admin-token", ADMIN_TOKEN]).await;
    let make = |room: &str, body: Value| {
        app.client
            .put(app.url(&format!("/rooms/{room}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let made = make("standup", json!({})).await.expect("answered");
    assert_eq!(made.status(), 201);
    let alice = app.join("standup").await;
    let ended = app
        .client
        .delete(app.url("/rooms/standup"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("answered");
    assert_eq!(ended.status(), 204);
    let expected = [
        ("room-created", json!({"room_id": "standup"})),
        (
            "member-joined",
            json!({"room_id": "standup", "member": alice.member}),
        ),
        (
            "member-left",
            json!({"room_id": "standup", "member_id": alice.member_id, "reason": "removed"}),
        ),
        ("room-closed", json!({"room_id": "standup"})),
    ];
    for (kind, data) in expected {
        let delivery = receiver.next().await;
        assert_eq!(delivery.body["type"], json!(kind), "{delivery:?}");
        assert_eq!(delivery.body["data"], data, "{delivery:?}");
    }

    let made = make("unused", json!({"empty_timeout": 1}))
        .await
        .expect("answered");
    assert_eq!(made.status(), 201);
    for kind in ["room-created", "room-closed"] {
        let delivery = receiver.next().await;
        assert_eq!(delivery.body["type"], json!(kind), "{delivery:?}");
        assert_eq!(delivery.body["data"], json!({"room_id": "unused"}));
    }
}

#[tokio::test]
async fn a_receiver_that_fails_gets_the_same_message_again_and_the_rest_after_it() {
    let mut receiver = Receiver::start(1).await;
    let app = receiver.app(&[]).await;
    app.join("retry").await;
    let refused = receiver.next().await;
    let again = receiver.next().await;
    assert_eq!(refused.body["type"], json!("room-created"));
    assert_eq!(
        again.id, refused.id,
        "a retry keeps its id, for deduplication"
    );
    assert_eq!(again.body, refused.body);
    assert_eq!(receiver.next().await.body["type"], json!("member-joined"));
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"signalpost_webhooks_total{outcome="retried"}"#),
        "{metrics}"
    );
}

/// On one Redis: the node posting the notices dies with SIGKILL while the
/// receiver refuses them; another node posts them, with the same ids,
/// once the dead one's lease runs out. Real processes, a real redis-server.
#[tokio::test]
async fn a_notice_pending_when_its_node_is_killed_is_posted_by_another() {
    let redis = RedisServer::start().await;
    killed_while_posting(&["--redis-url", &redis.url()]).await;
}

/// The same on a Redis Cluster, where each room's notices are in its slot.
#[tokio::test]
async fn on_a_cluster_a_notice_pending_when_its_node_is_killed_is_posted_by_another() {
    let cluster = RedisCluster::start().await;
    killed_while_posting(&["--redis-url", &cluster.urls(), "--redis-cluster"]).await;
}

async fn killed_while_posting(redis: &[&str]) {
    let mut receiver = Receiver::start(usize::MAX).await;
    let secret = secret();
    let hook = receiver.url.clone();
    let mut args = vec!["--webhook-url", &hook, "--webhook-secret", &secret];
    args.extend_from_slice(redis);
    // The first node alone takes the lease, and keeps trying the notices.
    let mut first = ServerProcess::start(&args, &[]).await;
    let node = TestApp::at(first.addr);
    let member = node.join("kept").await;
    let tried = receiver.next().await;
    assert_eq!(tried.body["type"], json!("room-created"));
    let second = ServerProcess::start(&args, &[]).await;
    first.kill("KILL");
    first.wait_exit().await;
    receiver.take_all().await;

    // Some attempts of the dead node may still arrive; what counts is what
    // the receiver took, and that the live node brought it.
    let mut taken = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while taken.len() < 2 {
        let delivery = tokio::time::timeout_at(deadline, receiver.deliveries.recv())
            .await
            .expect("the live node posts the notices after the lease runs out")
            .expect("the receiver runs");
        if taken
            .iter()
            .all(|(id, _): &(String, Value)| *id != delivery.id)
        {
            taken.push((delivery.id, delivery.body));
        }
    }
    assert_eq!(taken[0].0, tried.id, "the notice keeps its id");
    assert_eq!(taken[0].1["type"], json!("room-created"));
    assert_eq!(taken[1].1["type"], json!("member-joined"));
    assert_eq!(taken[1].1["data"]["member"]["id"], json!(member.member_id));
    drop(second);
}

#[test]
fn the_server_does_not_start_with_a_webhook_secret_it_cannot_use() {
    for args in [
        vec!["--webhook-url", "http://127.0.0.1:9/hook"],
        vec![
            "--webhook-url",
            "ftp://127.0.0.1:9/hook",
            "--webhook-secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ],
        vec![
            "--webhook-url",
            "http://127.0.0.1:9/hook",
            "--webhook-secret",
            "not-whsec",
        ],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_signalpost"))
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .expect("signalpost runs");
        assert!(!output.status.success(), "{args:?} starts");
        let said = String::from_utf8_lossy(&[output.stderr, output.stdout].concat()).into_owned();
        assert!(said.contains("webhook"), "{args:?}: {said}");
    }
}
