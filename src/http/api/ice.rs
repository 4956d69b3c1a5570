//! `GET /ice-servers`: the STUN and TURN servers a member hands to
//! `RTCPeerConnection`, with TURN credentials minted per member in the TURN
//! REST API scheme (what coturn checks with `use-auth-secret`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha1::Sha1;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;
use crate::http::api::TAG_ROOMS;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ice_servers))
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
#[schema(example = json!({"urls": ["turn:turn.example.com:3478"], "username": "1700003600:6f1c2b0e-3a4d-4e5f-9a8b-7c6d5e4f3a2b", "credential": "/8Nq9yWyY2R7sjcf3pW9TJ1o/Mg="}))]
pub struct IceServer {
    pub urls: Vec<String>,
    /// TURN only: `<expiry unix seconds>:<member id>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN only: base64 of HMAC-SHA1(`--turn-secret`, `username`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What the flags configure.
#[derive(Clone, Default)]
pub struct IceConfig {
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    /// Shared with the TURN server; `None` serves no TURN entry.
    pub turn_secret: Option<String>,
    pub turn_ttl: Duration,
}

impl IceConfig {
    /// The list for `member`, with TURN credentials valid until `now + ttl`.
    pub fn servers_for(&self, member: uuid::Uuid, now: SystemTime) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !self.stun_urls.is_empty() {
            servers.push(IceServer {
                urls: self.stun_urls.clone(),
                username: None,
                credential: None,
            });
        }
        if let Some(secret) = &self.turn_secret
            && !self.turn_urls.is_empty()
        {
            let expiry = now
                .checked_add(self.turn_ttl)
                .and_then(|expiry| expiry.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_secs());
            let username = format!("{expiry}:{member}");
            servers.push(IceServer {
                urls: self.turn_urls.clone(),
                credential: Some(turn_credential(secret, &username)),
                username: Some(username),
            });
        }
        servers
    }
}

/// The TURN REST API password: base64 of HMAC-SHA1 keyed by the shared
/// secret over the username.
pub fn turn_credential(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The ICE servers to hand to `RTCPeerConnection`.
///
/// An `RTCIceServer[]`: the configured STUN URLs, and, when the server has a
/// TURN secret, the TURN URLs with a username and credential minted for the
/// calling member, valid for `--turn-ttl` seconds (the TURN REST API scheme
/// that coturn's `use-auth-secret` checks). Fetch it again for a call that
/// starts after the credentials expire. An empty list when nothing is
/// configured: host candidates still connect peers on one network.
#[utoipa::path(
    get,
    path = "/ice-servers",
    tag = TAG_ROOMS,
    security(("bearer" = []), ("token" = [])),
    responses(
        (status = 200, description = "Pass it as `new RTCPeerConnection({iceServers})`", body = Vec<IceServer>,
            headers(("Cache-Control" = String, description = "`no-store`: it may hold credentials"))),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the admin token is no member", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn ice_servers(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    let Caller::Member(me) = caller else {
        return Err(ApiError::Forbidden);
    };
    let servers = state.ice.servers_for(me.member, SystemTime::now());
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(servers),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBER: &str = "6f1c2b0e-3a4d-4e5f-9a8b-7c6d5e4f3a2b";

    #[test]
    fn the_turn_credential_is_the_known_answer() {
        // Python: base64(hmac.new(b"north-wind", b"1700003600:<member>", sha1).digest())
        assert_eq!(
            turn_credential("north-wind", &format!("1700003600:{MEMBER}")),
            "/8Nq9yWyY2R7sjcf3pW9TJ1o/Mg="
        );
    }

    #[test]
    fn turn_entries_expire_after_the_ttl_and_name_the_member() {
        let config = IceConfig {
            stun_urls: vec!["stun:stun.example.com:3478".into()],
            turn_urls: vec!["turn:turn.example.com:3478?transport=udp".into()],
            turn_secret: Some("north-wind".into()),
            turn_ttl: Duration::from_secs(3600),
        };
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let servers = config.servers_for(MEMBER.parse().unwrap(), now);
        assert_eq!(
            servers,
            vec![
                IceServer {
                    urls: vec!["stun:stun.example.com:3478".into()],
                    username: None,
                    credential: None,
                },
                IceServer {
                    urls: vec!["turn:turn.example.com:3478?transport=udp".into()],
                    username: Some(format!("1700003600:{MEMBER}")),
                    credential: Some("/8Nq9yWyY2R7sjcf3pW9TJ1o/Mg=".into()),
                },
            ]
        );
    }

    #[test]
    fn without_a_secret_no_turn_entry_is_served() {
        let config = IceConfig {
            turn_urls: vec!["turn:turn.example.com".into()],
            ..IceConfig::default()
        };
        assert!(
            config
                .servers_for(uuid::Uuid::nil(), SystemTime::now())
                .is_empty()
        );
    }
}
