//! Request extractors whose every rejection is an `ApiError`, so that a bad
//! path, query or body answers `application/problem+json` like everything
//! else: path parameters (`RoomPath`, `MemberPath`), the query (`QueryParams`)
//! and the JSON body (`JsonBody`).

use std::net::SocketAddr;
use std::task::Poll;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, RawPathParams, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use bytes::BytesMut;
use futures_util::StreamExt;
use hyper::body::Body as _;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::http::AppState;
use crate::http::error::ApiError;
use crate::model::RoomId;

/// The `{room_id}` of a path, validated.
pub struct RoomPath(pub RoomId);

/// The `{room_id}` and `{member_id}` of a path, validated in that order.
pub struct MemberPath(pub RoomId, pub Uuid);

async fn path_params<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<RawPathParams, ApiError> {
    RawPathParams::from_request_parts(parts, state)
        .await
        .map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))
}

fn param<'a>(params: &'a RawPathParams, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn room_param(params: &RawPathParams) -> Result<RoomId, ApiError> {
    Ok(RoomId::parse(param(params, "room_id").unwrap_or_default())?)
}

impl<S: Send + Sync> FromRequestParts<S> for RoomPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = path_params(parts, state).await?;
        Ok(Self(room_param(&params)?))
    }
}

/// The `{room_id}` and `{session}` of a WHIP or WHEP session's path,
/// taken as they come: a session that is none is `not_found`, as one
/// that ended is.
pub struct SessionPath(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for SessionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = path_params(parts, state).await?;
        let room = param(&params, "room_id").unwrap_or_default().to_owned();
        let session = param(&params, "session").unwrap_or_default().to_owned();
        Ok(Self(room, session))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MemberPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = path_params(parts, state).await?;
        let room = room_param(&params)?;
        let member = param(&params, "member_id")
            .and_then(|text| Uuid::try_parse(text).ok())
            .ok_or_else(|| ApiError::InvalidRequest("`member_id` must be a UUID".into()))?;
        Ok(Self(room, member))
    }
}

/// The address of the client, as the accept loop saw it; `None` when the
/// app is driven without one (in-process tests).
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(Self(peer.map(|ConnectInfo(addr)| addr.ip())))
    }
}

/// The query string, deserialized; unknown parameters (such as `token`)
/// are ignored.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(value)| Self(value))
            .map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))
    }
}

/// A JSON body of at most `--payload-limit` bytes. An empty body reads as
/// JSON `null`, so `JsonBody<Option<T>>` makes the body optional.
pub struct JsonBody<T>(pub T);

fn is_json(content_type: &str) -> bool {
    // What nearly every client sends, without taking it apart.
    if content_type.eq_ignore_ascii_case("application/json") {
        return true;
    }
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let suffix = subtype
        .len()
        .checked_sub(5)
        .and_then(|at| subtype.get(at..));
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || suffix.is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json")))
}

/// The whole body, or `None` past `limit` bytes or when it breaks off.
///
/// Not axum's `to_bytes`: its `Limited` and `Collect` layers and their
/// buffer list cost a few per cent of a relayed signal, whose body nearly
/// always comes in one piece, which is kept as it is.
pub(crate) async fn read_body(body: Body, limit: usize) -> Option<Bytes> {
    if usize::try_from(body.size_hint().lower()).map_or(true, |declared| declared > limit) {
        return None;
    }
    let mut chunks = body.into_data_stream();
    let Some(first) = chunks.next().await else {
        return Some(Bytes::new());
    };
    let first = first.ok().filter(|first| first.len() <= limit)?;
    let Some(second) = chunks.next().await else {
        return Some(first);
    };
    let mut whole = BytesMut::from(first);
    let mut next = Some(second);
    while let Some(chunk) = next {
        let chunk = chunk.ok()?;
        if whole.len() + chunk.len() > limit {
            return None;
        }
        whole.extend_from_slice(&chunk);
        next = chunks.next().await;
    }
    Some(whole.freeze())
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.payload_limit;
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| value.to_str().map(is_json).unwrap_or(false));
        let mut reading = std::pin::pin!(read_body(request.into_body(), limit));
        let read = match futures_util::poll!(reading.as_mut()) {
            // A body the server read itself is all there: no timer (and
            // no clock read) for it, on every signal.
            Poll::Ready(read) => read,
            // A body that hyper reads (chunked, or on TLS or HTTP/2) comes
            // as slowly as the client likes: it gets a header timeout of
            // its own, as one the server reads itself does.
            Poll::Pending => tokio::time::timeout(state.config.header_timeout, reading)
                .await
                .map_err(|_| ApiError::RequestTimeout)?,
        };
        let bytes = read.ok_or(ApiError::PayloadTooLarge { limit })?;
        if bytes.is_empty() {
            return serde_json::from_str("null")
                .map(Self)
                .map_err(|_| ApiError::InvalidRequest("this call needs a JSON body".into()));
        }
        if content_type != Some(true) {
            return Err(ApiError::UnsupportedMediaType);
        }
        // serde's derived structs also take an array of their fields in
        // order; every body of this API is an object.
        if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::InvalidRequest(
                "the body must be a JSON object".into(),
            ));
        }
        serde_json::from_slice(&bytes).map(Self).map_err(|error| {
            ApiError::InvalidRequest(format!("the body is not valid here: {error}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("Application/JSON"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("json"));
        assert!(is_json("application/vnd.api+JSON"));
        assert!(!is_json("application/+jsoné"));
        assert!(!is_json("application/éjson"));
    }
}
