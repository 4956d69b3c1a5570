//! Webhooks: the application's back end hears of its rooms (`Notice`s) by
//! HTTP POSTs to each `--webhook-url`, signed as the Standard Webhooks
//! specification says, so that a receiver checks them with its libraries:
//! `webhook-id` (one per notice, the same on every retry, to deduplicate),
//! `webhook-timestamp` (seconds, of the attempt) and `webhook-signature`
//! (`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under the
//! `--webhook-secret`'s key).
//!
//! Never on a request's path: a notice is queued (bounded, per URL) and a
//! task per URL posts them one after another, in the order they were
//! heard, so one room's notices arrive in its order. A receiver that fails
//! gets the notice again after 1, 2, 4 … 128 seconds (about four minutes
//! in all), and the notices behind it wait; one that stays down fills its
//! own queue, past which notices are dropped and counted. Every outcome is
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
use crate::domain::notice::{Listener, Notice};
use crate::model::Timestamp;
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
    body: Vec<u8>,
}

/// The queues of the webhook URLs: the `Listener` the backend tells.
pub struct Webhooks {
    queues: Vec<mpsc::Sender<Arc<Message>>>,
}

impl Webhooks {
    /// The webhooks `config` asks for, their tasks started (they end with
    /// `shutdown`); `None` without any `--webhook-url`.
    pub fn start(
        config: &Config,
        shutdown: CancellationToken,
    ) -> Result<Option<Arc<Self>>, String> {
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
        let mut queues = Vec::new();
        for url in &config.webhook_url {
            let uri: hyper::Uri = url
                .parse()
                .map_err(|error| format!("--webhook-url {url}: {error}"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(format!(
                    "--webhook-url {url}: not an http:// or https:// URL"
                ));
            }
            let (queue, notices) = mpsc::channel(QUEUE);
            queues.push(queue);
            let receiver = Receiver {
                url: url.clone(),
                key: key.clone(),
                client: client.clone(),
            };
            tokio::spawn(receiver.serve(notices, shutdown.clone()));
        }
        Ok(Some(Arc::new(Self { queues })))
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
fn body(notice: &Notice) -> Vec<u8> {
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
    serde_json::to_vec(&body).unwrap_or_default()
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
            .body(Full::new(Bytes::from(message.body.clone())))
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
