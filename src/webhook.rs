//! Webhooks: the application's back end hears of its rooms (`Notice`s) by
//! HTTP POSTs to each `--webhook-url`, signed as the Standard Webhooks
//! specification says, so that a receiver checks them with its libraries:
//! `webhook-id` (one per notice, the same on every retry, to deduplicate),
//! `webhook-timestamp` (seconds, of the attempt) and `webhook-signature`
//! (`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the
//! `--webhook-secret`'s key).
//!
//! Never on a request's path, and in the order they happened, so one
//! room's notices arrive in its order. In memory (`Webhooks`), a notice
//! the backend tells is queued (bounded, per URL) and a task per URL posts
//! them; one that stays down fills its own queue, past which notices are
//! dropped. On Redis (`serve_kept`), the notices wait in Redis and the
//! node holding the lease posts them (`hub::redis::notices`). A receiver
//! that fails gets the notice again after 1, 2, 4 … 128 seconds (about
//! four minutes in all), and the notices behind it wait. Every outcome is
//! counted in `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use uuid::Uuid;

use crate::config::Config;
use crate::domain::Refusal;
use crate::domain::notice::{Listener, Notice};
use crate::hub::{NoticedRoom, RedisHub, StoredNotice};
use crate::model::{RoomId, Timestamp};
use crate::observe::metrics;

/// Notices one URL's queue holds at most.
const QUEUE: usize = 10_000;

/// Waits before each retry of a notice a receiver did not take.
const RETRIES: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A notice, as every receiver gets it.
struct Message {
    id: String,
    /// Shared by every attempt and every URL.
    body: Bytes,
}

impl Message {
    /// A notice kept in Redis: its id is its room and its entry in the
    /// room's stream, the same for whichever node posts it.
    fn kept(room: &RoomId, notice: &StoredNotice) -> Self {
        let at = Timestamp(std::time::UNIX_EPOCH + Duration::from_millis(notice.at_ms));
        let data = serde_json::from_str::<serde_json::Value>(&notice.data).unwrap_or_default();
        let body = json!({"type": notice.kind, "timestamp": at, "data": data});
        Self {
            id: format!("msg_{room}_{}", notice.entry),
            body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        }
    }
}

/// The webhook URLs, and how to post to them.
pub struct Posters {
    receivers: Vec<Receiver>,
}

impl Posters {
    /// The posters `config` asks for; `None` without any `--webhook-url`.
    /// Fails, saying why, on a URL or secret it cannot use.
    pub fn from_config(config: &Config) -> Result<Option<Self>, String> {
        if config.webhook_url.is_empty() {
            return Ok(None);
        }
        let key = config
            .webhook_secret
            .as_deref()
            .map(secret_key)
            .ok_or("--webhook-url needs --webhook-secret")??;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|error| format!("the webhook client's TLS roots: {error}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let mut receivers = Vec::new();
        for url in &config.webhook_url {
            let uri: hyper::Uri = url
                .parse()
                .map_err(|error| format!("--webhook-url {url}: {error}"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(format!(
                    "--webhook-url {url}: not an http:// or https:// URL"
                ));
            }
            receivers.push(Receiver {
                url: url.clone(),
                key: key.clone(),
                client: client.clone(),
            });
        }
        Ok(Some(Self { receivers }))
    }

    /// Posts `message` to every URL in turn, each until it takes it or its
    /// retries run out.
    async fn deliver(&self, message: &Message) {
        for receiver in &self.receivers {
            receiver.deliver(message).await;
        }
    }
}

/// The queues of the webhook URLs, for notices heard in this process (the
/// memory backend): the `Listener` the backend tells.
pub struct Webhooks {
    queues: Vec<mpsc::Sender<Arc<Message>>>,
}

impl Webhooks {
    /// A queue and a task for each URL of `posters` (the tasks end with
    /// `shutdown`).
    pub fn start(posters: Posters, shutdown: CancellationToken) -> Arc<Self> {
        let mut queues = Vec::new();
        for receiver in posters.receivers {
            let (queue, notices) = mpsc::channel(QUEUE);
            queues.push(queue);
            tokio::spawn(receiver.serve(notices, shutdown.clone()));
        }
        Arc::new(Self { queues })
    }
}

/// Notices of one room a holder of the Redis lease reads at once.
const BATCH: usize = 16;

/// Rooms with notices a holder of the Redis lease looks at in one round.
const ROOMS: usize = 64;

/// How often a node looks for notices kept in Redis when there were none.
const POLL: Duration = Duration::from_millis(250);

/// Posts the notices the hub keeps (on Redis, for every node), while this
/// node holds the lease on them; every node runs it, one at a time works.
/// Room after room, each room's notices in order; a notice is taken off
/// once posted (or given up on); a holder that dies first leaves it for the
/// next.
pub async fn serve_kept(hub: RedisHub, posters: Posters, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = shutdown.cancelled() => return,
        }
        loop {
            if !hub.hold_notices().await.unwrap_or(false) {
                break;
            }
            let rooms = match hub.noticed_rooms(ROOMS).await {
                Ok(rooms) if !rooms.is_empty() => rooms,
                _ => break,
            };
            // Renewed while posting, which may take minutes of retries; a
            // holder that loses the lease stops.
            let lost = CancellationToken::new();
            let keeper = tokio::spawn(keep_lease(hub.clone(), lost.clone()));
            let posted = tokio::select! {
                posted = post_rooms(&hub, &posters, rooms) => posted,
                () = lost.cancelled() => Ok(()),
                () = shutdown.cancelled() => {
                    keeper.abort();
                    return;
                }
            };
            keeper.abort();
            if posted.is_err() {
                break;
            }
        }
    }
}

/// Posts every notice the rooms hold, room after room.
async fn post_rooms(
    hub: &RedisHub,
    posters: &Posters,
    rooms: Vec<NoticedRoom>,
) -> Result<(), Refusal> {
    for noticed in rooms {
        let mut posted = false;
        loop {
            let notices = hub.room_notices(&noticed.room, BATCH).await?;
            let more = notices.len() == BATCH;
            for notice in notices {
                posters
                    .deliver(&Message::kept(&noticed.room, &notice))
                    .await;
                hub.notice_posted(&noticed.room, &notice.entry).await?;
                posted = true;
            }
            if !more {
                break;
            }
        }
        hub.settle_noticed(&noticed, posted).await?;
    }
    Ok(())
}

/// Renews the lease every two seconds; cancels `lost` when it is gone.
async fn keep_lease(hub: RedisHub, lost: CancellationToken) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !hub.hold_notices().await.unwrap_or(false) {
            lost.cancel();
            return;
        }
    }
}

/// The key of a `whsec_<base64>` secret, checked: 24 to 64 bytes, as the
/// specification asks.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|key| STANDARD.decode(key).ok())
        .ok_or("--webhook-secret is `whsec_` and a base64 key")?;
    if !(24..=64).contains(&key.len()) {
        return Err("--webhook-secret's key is 24 to 64 bytes".into());
    }
    Ok(key)
}

impl Listener for Webhooks {
    fn hear(&self, notice: Notice) {
        let message = Arc::new(Message {
            id: format!("msg_{}", Uuid::new_v4().simple()),
            body: body(&notice),
        });
        for queue in &self.queues {
            if queue.try_send(Arc::clone(&message)).is_err() {
                metrics::webhook("dropped");
            }
        }
    }
}

/// The JSON a receiver gets: the notice's `type`, when it happened, and
/// its `data`.
fn body(notice: &Notice) -> Bytes {
    let data = match notice {
        Notice::RoomCreated { room } | Notice::RoomClosed { room } => json!({"room_id": room}),
        Notice::MemberJoined { room, member } => json!({"room_id": room, "member": member}),
        Notice::MemberLeft {
            room,
            member,
            reason,
        } => json!({"room_id": room, "member_id": member, "reason": reason}),
    };
    let body = json!({"type": notice.kind(), "timestamp": Timestamp::now(), "data": data});
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// One webhook URL, and how to sign for it.
struct Receiver {
    url: String,
    key: Vec<u8>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Receiver {
    async fn serve(self, mut notices: mpsc::Receiver<Arc<Message>>, shutdown: CancellationToken) {
        loop {
            let message = tokio::select! {
                message = notices.recv() => message,
                () = shutdown.cancelled() => None,
            };
            let Some(message) = message else { return };
            tokio::select! {
                () = self.deliver(&message) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Posts `message` until the receiver takes it or the retries run out.
    async fn deliver(&self, message: &Message) {
        for wait in std::iter::once(0).chain(RETRIES) {
            if wait > 0 {
                metrics::webhook("retried");
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            match self.attempt(message).await {
                Ok(()) => {
                    metrics::webhook("delivered");
                    return;
                }
                Err(problem) => {
                    warn!(url = %self.url, id = %message.id, %problem, "a webhook was not taken")
                }
            }
        }
        metrics::webhook("failed");
    }

    async fn attempt(&self, message: &Message) -> Result<(), String> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
            .to_string();
        let signature = sign(&self.key, &message.id, &timestamp, &message.body);
        let request = hyper::Request::post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &message.id)
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", signature)
            .body(Full::new(message.body.clone()))
            .map_err(|error| error.to_string())?;
        let response = tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("no answer within {ATTEMPT_TIMEOUT:?}"))?
            .map_err(|error| error.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", response.status()))
        }
    }
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
fn sign(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        // HMAC takes a key of any length.
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference
    /// libraries: this key, id, timestamp and body sign to this.
    #[test]
    fn a_signature_is_the_specification_s() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("the example key");
        let signature = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_secret_is_whsec_and_a_base64_key_of_24_to_64_bytes() {
        assert!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(secret_key("whsec_not base64!").is_err());
        assert!(secret_key(&format!("whsec_{}", STANDARD.encode([7; 16]))).is_err());
        assert!(secret_key(&format!("whsec_{}", STANDARD.encode([7; 32]))).is_ok());
    }
}
