//! WHIP ingest (RFC 9725) and WHEP playback: the standard HTTP clients of
//! WebRTC (OBS, ffmpeg, GStreamer, WHEP players) as members of a room.
//!
//! Such a client POSTs an SDP offer and expects the answer in the
//! response, where members trade signals through inboxes. So the server
//! joins the room for it, as a member whose metadata says what it is,
//! hands its offer to one member as an `offer` signal, and answers the
//! POST with that member's `answer`. The session that follows is that
//! member of the room: its URL carries the member's token, so that any
//! node can find it and nobody without the URL can alter or end it;
//! trickled candidates become `candidate` signals, and ending the session
//! takes the member out of the room.
//!
//! While the session lasts, a task of this node holds its inbox open, as
//! a browser's stream would: the member stays in the room however long
//! the stream runs, and leaves by the member timeout if this node dies.

use std::fmt::Write as _;
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_MATCH, LINK, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::Refusal;
use crate::domain::event::SIGNAL;
use crate::domain::inbox::Item;
use crate::domain::room::Actor;
use crate::domain::token::{MemberRef, Token};
use crate::http::AppState;
use crate::http::api::{RoomParam, TAG_ROOMS, join};
use crate::http::auth::bearer;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ClientAddr, QueryParams, RoomPath, SessionPath, read_body};
use crate::hub::Subscription;
use crate::model::{JoinRequest, RoomId, SignalType};
use crate::observe::metrics;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(publish))
        .routes(routes!(play))
        .routes(routes!(trickle, end))
}

const SDP: &str = "application/sdp";
const SDP_FRAGMENT: &str = "application/trickle-ice-sdpfrag";

/// Whether a session sends media into the room (WHIP) or plays a
/// member's (WHEP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Whip,
    Whep,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Whip => "whip",
            Self::Whep => "whep",
        }
    }

    /// What the member's metadata says it is, beside `peer`.
    fn role(self) -> &'static str {
        match self {
            Self::Whip => "publisher",
            Self::Whep => "player",
        }
    }

    fn default_name(self) -> &'static str {
        match self {
            Self::Whip => "WHIP publisher",
            Self::Whep => "WHEP player",
        }
    }
}

/// Who answers, and the name the others see.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct OfferQuery {
    /// The member that answers the offer; without it, the room's owner.
    to: Option<Uuid>,
    /// The name the other members see, at most 64 characters.
    name: Option<String>,
}

/// An SDP offer (`application/sdp`), at most `--payload-limit` bytes.
struct SdpBody(String);

/// A trickle fragment (`application/trickle-ice-sdpfrag`, RFC 8840).
struct FragmentBody(String);

/// The body as text, if it is of `media_type` and within the limit.
async fn text_body(
    request: Request,
    state: &AppState,
    media_type: &'static str,
) -> Result<String, ApiError> {
    let limit = state.config.payload_limit;
    let matches = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(media_type));
    if !matches {
        return Err(ApiError::WrongMediaType(media_type));
    }
    let read = tokio::time::timeout(
        state.config.header_timeout,
        read_body(request.into_body(), limit),
    )
    .await
    .map_err(|_| ApiError::RequestTimeout)?;
    let bytes = read.ok_or(ApiError::PayloadTooLarge { limit })?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::InvalidRequest("the body is not UTF-8 text".into()))
}

impl FromRequest<AppState> for SdpBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let sdp = text_body(request, state, SDP).await?;
        // RFC 8866: a session description starts with its version line.
        if !sdp.starts_with("v=0") {
            return Err(ApiError::InvalidRequest(
                "the body is not an SDP offer: it does not start with `v=0`".into(),
            ));
        }
        Ok(Self(sdp))
    }
}

impl FromRequest<AppState> for FragmentBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        text_body(request, state, SDP_FRAGMENT).await.map(Self)
    }
}

/// Publish into a room with WHIP (RFC 9725).
///
/// The encoder joins the room as a member whose metadata is
/// `{"whip": "publisher", "peer": <the answering member>}`, and its offer
/// goes to one member (`to`, or else the room's owner) as an `offer`
/// signal. That member's `answer` signal to it is the response, with
/// every ICE candidate in it: the encoder receives none trickled. With
/// no answer within `--answer-timeout`, or the member gone, the encoder
/// leaves the room again and gets 504 `no_answer`.
///
/// The bearer token is the join grant where the server asks for one, and
/// otherwise the room's password, if it has one. `Location` is the
/// session: `PATCH` it with trickled candidates, `DELETE` it to leave.
#[utoipa::path(
    post,
    path = "/rooms/{room_id}/whip",
    tag = TAG_ROOMS,
    params(RoomParam, OfferQuery),
    security((), ("grant" = [])),
    request_body(content = String, content_type = "application/sdp", description = "The SDP offer"),
    responses(
        (status = 201, description = "The answering member's SDP answer", body = String, content_type = "application/sdp",
            headers(
                ("Location" = String, description = "The session, `/rooms/{room_id}/sessions/{session}`: secret, as a token is"),
                ("ETag" = String, description = "The session's ICE session, for `If-Match`"),
                ("Link" = String, description = "The STUN and TURN servers, `rel=\"ice-server\"` (RFC 9725 §4.6)"),
            )),
        (status = 400, description = "`invalid_room_id` or `invalid_request`: not an SDP offer, or a bad `to` or `name`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`: this server needs a join grant", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: the grant is for another room, or the password is wrong", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`member_not_found`: `to` is not in the room", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`room_full`, or `no_receiver`: no `to` and no owner", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`: not `application/sdp`", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "`room_locked`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` or `inbox_full`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`server_busy`", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "`no_answer`: the member did not answer in time, or left", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn publish(
    State(state): State<AppState>,
    RoomPath(room_id): RoomPath,
    ClientAddr(client): ClientAddr,
    QueryParams(query): QueryParams<OfferQuery>,
    headers: HeaderMap,
    SdpBody(offer): SdpBody,
) -> Result<Response, ApiError> {
    open_session(state, Kind::Whip, room_id, client, query, &headers, offer).await
}

/// Play a member's media with WHEP.
///
/// The mirror of `POST /rooms/{room_id}/whip`: the player's `recvonly`
/// offer goes to `to` (or else the room's owner), which answers with what
/// it sends. The player is a member of the room while it plays, its
/// metadata `{"whep": "player", "peer": <that member>}`.
#[utoipa::path(
    post,
    path = "/rooms/{room_id}/whep",
    tag = TAG_ROOMS,
    params(RoomParam, OfferQuery),
    security((), ("grant" = [])),
    request_body(content = String, content_type = "application/sdp", description = "The SDP offer, `recvonly`"),
    responses(
        (status = 201, description = "The member's SDP answer", body = String, content_type = "application/sdp",
            headers(
                ("Location" = String, description = "The session, `/rooms/{room_id}/sessions/{session}`"),
                ("ETag" = String, description = "The session's ICE session, for `If-Match`"),
                ("Link" = String, description = "The STUN and TURN servers, `rel=\"ice-server\"`"),
            )),
        (status = 400, description = "`invalid_room_id` or `invalid_request`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`member_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`room_full` or `no_receiver`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 423, description = "`room_locked`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited` or `inbox_full`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`server_busy`", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "`no_answer`", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn play(
    State(state): State<AppState>,
    RoomPath(room_id): RoomPath,
    ClientAddr(client): ClientAddr,
    QueryParams(query): QueryParams<OfferQuery>,
    headers: HeaderMap,
    SdpBody(offer): SdpBody,
) -> Result<Response, ApiError> {
    open_session(state, Kind::Whep, room_id, client, query, &headers, offer).await
}

/// The `{room_id}` and `{session}` of a session's path.
// Only its derive is used: the path is read by `extract::SessionPath`.
#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
struct SessionParams {
    /// The room id.
    room_id: String,
    /// The session, as `Location` named it.
    session: String,
}

/// Send trickled ICE candidates (RFC 8840) to the answering member.
///
/// Each `a=candidate` line of the fragment reaches the member that
/// answered as a `candidate` signal (an RTCIceCandidateInit, with the
/// `a=mid` before it as `sdpMid`). ICE restarts (`If-Match: *`) are not
/// offered: 422 `ice_restart_unsupported`.
#[utoipa::path(
    patch,
    path = "/rooms/{room_id}/sessions/{session}",
    tag = TAG_ROOMS,
    params(SessionParams),
    request_body(content = String, content_type = "application/trickle-ice-sdpfrag"),
    responses(
        (status = 204, description = "Every candidate was sent"),
        (status = 400, description = "`invalid_request`: more candidates than one fragment may hold", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such session", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`precondition_failed`: `If-Match` names another ETag", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`ice_restart_unsupported`: `If-Match: *` asks for an ICE restart", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`inbox_full`: the answering member's inbox is full", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn trickle(
    State(state): State<AppState>,
    SessionPath(room, session): SessionPath,
    headers: HeaderMap,
    FragmentBody(fragment): FragmentBody,
) -> Result<StatusCode, ApiError> {
    let (me, peer) = session_member(&state, &room, &session).await?;
    // RFC 9725 §4.3: `*` asks for an ICE restart, which needs the answering
    // browser to restart its side too; a session that takes trickle and
    // not restarts refuses it 422.
    if let Some(tag) = headers.get(IF_MATCH) {
        if tag.as_bytes() == b"*" {
            return Err(ApiError::IceRestartUnsupported);
        }
        if tag.to_str().ok() != Some(etag(me.member).as_str()) {
            return Err(ApiError::PreconditionFailed);
        }
    }
    let candidates = candidates(&fragment)?;
    if candidates.is_empty() {
        return Ok(StatusCode::NO_CONTENT);
    }
    let candidate = signal_type("candidate");
    for payload in candidates {
        state
            .hub
            .send_signal(&me, Some(peer), &candidate, payload)
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// End the session: its member leaves the room.
#[utoipa::path(
    delete,
    path = "/rooms/{room_id}/sessions/{session}",
    tag = TAG_ROOMS,
    params(SessionParams),
    responses(
        (status = 200, description = "Ended: the member left the room"),
        (status = 404, description = "`not_found`: no such session", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn end(
    State(state): State<AppState>,
    SessionPath(room, session): SessionPath,
) -> Result<StatusCode, ApiError> {
    let (me, _) = session_member(&state, &room, &session).await?;
    // Gone meanwhile is no such session; a state out of reach is a 503.
    state
        .hub
        .remove_member(&me.room, me.member, Actor::Member(me.member))
        .await
        .map_err(|refusal| match refusal {
            Refusal::Unavailable => ApiError::from(refusal),
            _ => ApiError::NotFound,
        })?;
    Ok(StatusCode::OK)
}

/// The member a session's path names (`<token>.<peer>`), and the member
/// that answered it; or `not_found`: a wrong room, a token that is none,
/// and a member gone all look alike.
async fn session_member(
    state: &AppState,
    room: &str,
    session: &str,
) -> Result<(MemberRef, Uuid), ApiError> {
    let (token, peer) = session.rsplit_once('.').ok_or(ApiError::NotFound)?;
    let peer = Uuid::try_parse(peer).map_err(|_| ApiError::NotFound)?;
    let token = Token::parse(token).ok_or(ApiError::NotFound)?;
    let member = state
        .hub
        .authenticate(&token)
        .await?
        .ok_or(ApiError::NotFound)?;
    if member.room.as_str() != room {
        return Err(ApiError::NotFound);
    }
    Ok((member, peer))
}

/// The ETag of a session: one ICE session for its whole life.
fn etag(member: Uuid) -> String {
    format!("\"{}\"", member.simple())
}

/// At most this many candidates in one fragment: an encoder has a few per
/// network interface.
const FRAGMENT_CANDIDATES_MAX: usize = 64;

/// The fragment's candidates, each an RTCIceCandidateInit.
fn candidates(fragment: &str) -> Result<Vec<Box<RawValue>>, ApiError> {
    let mut mid: Option<&str> = None;
    let mut line_index: Option<usize> = None;
    let mut found = Vec::new();
    for line in fragment.lines().map(str::trim_end) {
        if line.starts_with("m=") {
            line_index = Some(line_index.map_or(0, |index| index + 1));
        } else if let Some(value) = line.strip_prefix("a=mid:") {
            mid = Some(value.trim());
        } else if let Some(candidate) = line.strip_prefix("a=") {
            if !candidate.starts_with("candidate:") {
                continue;
            }
            if found.len() == FRAGMENT_CANDIDATES_MAX {
                return Err(ApiError::InvalidRequest(format!(
                    "a fragment holds at most {FRAGMENT_CANDIDATES_MAX} candidates"
                )));
            }
            let init = serde_json::json!({
                "candidate": candidate,
                "sdpMid": mid,
                "sdpMLineIndex": line_index.or(mid.map(|_| 0)),
            });
            found.push(RawValue::from_string(init.to_string()).map_err(|_| ApiError::Internal)?);
        }
    }
    Ok(found)
}

fn signal_type(name: &str) -> SignalType {
    SignalType::parse(name).expect("the WebRTC signal types are valid")
}

/// Joins the room for the client, hands its offer over, and answers with
/// the answer, or leaves again.
///
/// The work runs on a task of its own: a client that hangs up drops the
/// request, and the member must leave all the same. The task hands the
/// answer over, and holds the session's inbox while the member lasts; if
/// nobody takes the answer, the member leaves.
async fn open_session(
    state: AppState,
    kind: Kind,
    room_id: RoomId,
    client: Option<std::net::IpAddr>,
    query: OfferQuery,
    headers: &HeaderMap,
    offer: String,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let name = join::checked_name(Some(
        query.name.unwrap_or_else(|| kind.default_name().into()),
    ))?;
    // Before the room is looked at: a client the join would refuse learns
    // nothing of it.
    let grant = join::gate(&state, &room_id, client, bearer(headers))?;
    let peer = match query.to {
        Some(to) => to,
        None => match state.hub.room_view(&room_id, Actor::Admin).await {
            Ok(room) => room.owner.ok_or(ApiError::NoReceiver)?,
            Err(Refusal::RoomNotFound) => return Err(ApiError::NoReceiver),
            Err(refusal) => return Err(refusal.into()),
        },
    };
    let mut mark = serde_json::Map::new();
    mark.insert(kind.name().into(), kind.role().into());
    mark.insert("peer".into(), peer.to_string().into());
    let joined = join::admit(
        &state,
        room_id,
        grant,
        JoinRequest {
            name,
            metadata: None,
            capacity: None,
            password: if state.grants.is_none() {
                bearer(headers).map(str::to_owned)
            } else {
                None
            },
        },
        Some(mark),
    )
    .await?;
    let me = MemberRef {
        room: joined.room_id.clone(),
        member: joined.member.id,
    };
    let session = format!(
        "/rooms/{}/sessions/{}.{}",
        joined.room_id,
        joined.token.reveal(),
        peer.simple()
    );
    let here = joined.members.iter().any(|member| member.id == peer);
    let (answered, answer) = oneshot::channel();
    let task_state = state.clone();
    tokio::spawn(async move {
        let state = task_state;
        let negotiated = if here {
            negotiate(&state, &me, peer, offer).await
        } else {
            Err(ApiError::MemberNotFound)
        };
        match negotiated {
            Ok((inbox, sdp)) => {
                if answered.send(Ok(sdp)).is_ok() {
                    metrics::session_opened(kind.name());
                    hold(&state, inbox).await;
                    metrics::session_closed(kind.name());
                } else {
                    leave(&state, &me).await;
                }
            }
            Err(error) => {
                leave(&state, &me).await;
                metrics::session_failed(kind.name(), error.code());
                let _ = answered.send(Err(error));
            }
        }
    });
    let sdp = answer.await.map_err(|_| ApiError::Internal)??;
    metrics::answer_time(kind.name(), started.elapsed());
    let mut response = Response::new(Body::from(sdp));
    *response.status_mut() = StatusCode::CREATED;
    let out = response.headers_mut();
    out.insert(CONTENT_TYPE, HeaderValue::from_static(SDP));
    out.insert(
        LOCATION,
        HeaderValue::from_str(&session).map_err(|_| ApiError::Internal)?,
    );
    out.insert(
        ETAG,
        HeaderValue::from_str(&etag(joined.member.id)).map_err(|_| ApiError::Internal)?,
    );
    for link in ice_links(&state, joined.member.id) {
        if let Ok(value) = HeaderValue::from_str(&link) {
            out.append(LINK, value);
        }
    }
    Ok(response.into_response())
}

/// Opens the session's inbox, sends the offer to `peer`, and waits for
/// its answer.
async fn negotiate(
    state: &AppState,
    me: &MemberRef,
    peer: Uuid,
    offer: String,
) -> Result<(Subscription, String), ApiError> {
    // Opened before the offer goes, so that no answer comes before it.
    let mut inbox = state.hub.open_stream(me, None).await?;
    let payload = serde_json::json!({ "type": "offer", "sdp": offer });
    state
        .hub
        .send_signal(
            me,
            Some(peer),
            &signal_type("offer"),
            RawValue::from_string(payload.to_string()).map_err(|_| ApiError::Internal)?,
        )
        .await?;
    let deadline = tokio::time::Instant::now() + state.config.answer_timeout;
    loop {
        let batch = tokio::time::timeout_at(deadline, inbox.next())
            .await
            .map_err(|_| ApiError::NoAnswer("the member did not answer in time"))?
            .ok_or(ApiError::NoAnswer("the session's member was removed"))?;
        for item in batch.items {
            let Item::Event(entry) = item else { continue };
            match read_event(entry.body.kind, &entry.body.json(), peer) {
                Heard::Answer(sdp) => return Ok((inbox, sdp)),
                Heard::PeerLeft => {
                    return Err(ApiError::NoAnswer("the member left before it answered"));
                }
                Heard::Other => {}
            }
        }
    }
}

/// What an event in the session's inbox says to a session waiting for its
/// answer.
#[derive(Debug, PartialEq, Eq)]
enum Heard {
    Answer(String),
    PeerLeft,
    Other,
}

#[derive(Deserialize)]
struct SignalData {
    from: Option<Uuid>,
    #[serde(rename = "type")]
    signal_type: String,
    payload: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct LeftData {
    member_id: Uuid,
}

fn read_event(kind: &str, data: &str, peer: Uuid) -> Heard {
    if kind == SIGNAL {
        let Ok(signal) = serde_json::from_str::<SignalData>(data) else {
            return Heard::Other;
        };
        if signal.from != Some(peer) || signal.signal_type != "answer" {
            return Heard::Other;
        }
        return signal
            .payload
            .as_ref()
            .and_then(|payload| payload.get("sdp"))
            .and_then(|sdp| sdp.as_str())
            .filter(|sdp| sdp.starts_with("v=0"))
            .map_or(Heard::Other, |sdp| Heard::Answer(sdp.to_owned()));
    }
    if kind == "member-left"
        && serde_json::from_str::<LeftData>(data).is_ok_and(|left| left.member_id == peer)
    {
        return Heard::PeerLeft;
    }
    Heard::Other
}

/// Holds the session's inbox open until its member is gone (the session
/// ended, the member removed, the server shutting down), reading what
/// comes: the client cannot take trickled candidates.
async fn hold(state: &AppState, mut inbox: Subscription) {
    loop {
        tokio::select! {
            batch = inbox.next() => if batch.is_none() { break },
            () = state.shutdown.cancelled() => break,
        }
    }
}

async fn leave(state: &AppState, me: &MemberRef) {
    if let Err(error) = state
        .hub
        .remove_member(&me.room, me.member, Actor::Member(me.member))
        .await
    {
        tracing::warn!(
            ?error,
            "a WHIP or WHEP member could not leave; its member timeout will remove it"
        );
    }
}

/// The `Link` headers of RFC 9725 §4.6 for the ICE servers the server
/// hands out, TURN credentials minted for `member`.
fn ice_links(state: &AppState, member: Uuid) -> Vec<String> {
    let mut links = Vec::new();
    for server in state.ice.servers_for(member, SystemTime::now()) {
        for url in &server.urls {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(username), Some(credential)) = (&server.username, &server.credential) {
                let _ = write!(
                    link,
                    "; username=\"{username}\"; credential=\"{credential}\"; credential-type=\"password\""
                );
            }
            links.push(link);
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fragment_s_candidates_carry_their_mid() {
        let fragment = "a=ice-ufrag:abc\r\na=ice-pwd:def\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=candidate:1 1 UDP 2130706431 192.0.2.1 5000 typ host\r\nm=video 9 RTP/AVP 96\r\na=mid:1\r\na=candidate:2 1 UDP 2130706431 192.0.2.1 5002 typ host\r\na=end-of-candidates\r\n";
        let found: Vec<serde_json::Value> = candidates(fragment)
            .unwrap()
            .iter()
            .map(|raw| serde_json::from_str(raw.get()).unwrap())
            .collect();
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0]["candidate"],
            "candidate:1 1 UDP 2130706431 192.0.2.1 5000 typ host"
        );
        assert_eq!(found[0]["sdpMid"], "0");
        assert_eq!(found[1]["sdpMid"], "1");
        assert_eq!(found[1]["sdpMLineIndex"], 1);
    }

    #[test]
    fn too_many_candidates_are_refused() {
        let fragment = "a=candidate:1 1 UDP 1 192.0.2.1 5000 typ host\n".repeat(65);
        assert!(candidates(&fragment).is_err());
    }

    #[test]
    fn only_the_peer_s_answer_with_an_sdp_is_the_answer() {
        let peer = Uuid::new_v4();
        let answer = |from: Uuid, sdp: &str| {
            format!(
                r#"{{"from":"{from}","type":"answer","payload":{{"type":"answer","sdp":"{sdp}"}},"sent_at":"x"}}"#
            )
        };
        assert_eq!(
            read_event(SIGNAL, &answer(peer, "v=0 x"), peer),
            Heard::Answer("v=0 x".into())
        );
        assert_eq!(
            read_event(SIGNAL, &answer(Uuid::new_v4(), "v=0 x"), peer),
            Heard::Other
        );
        assert_eq!(
            read_event(SIGNAL, &answer(peer, "nonsense"), peer),
            Heard::Other
        );
        let left = format!(r#"{{"member_id":"{peer}","reason":"left"}}"#);
        assert_eq!(read_event("member-left", &left, peer), Heard::PeerLeft);
    }
}
