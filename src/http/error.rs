//! `ApiError`, one variant per `code` of docs/API.md, and the single place that
//! turns it into an `application/problem+json` response (RFC 9457): the
//! domain's refusals, the rate limits', the checked newtypes' and the
//! connection layer's become answers here, and nowhere else.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Refusal;
use crate::model::{InvalidRoomId, InvalidSignalType};
use crate::observe::{metrics, request};
use crate::rate::RateLimited;
use crate::server::Unreadable;

/// Every way a request can fail. The `Display` text is the problem's `detail`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRoomId(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(
        "a valid member or admin token is required (Authorization: Bearer <token>, or ?token=)"
    )]
    Unauthorized,
    #[error("this token does not open this resource")]
    Forbidden,
    /// A join without the grant this server asks for, or with one that
    /// does not verify; the text says which (`grant.rs`).
    #[error("{0}")]
    GrantRefused(&'static str),
    #[error("the join grant is for another room")]
    GrantForAnotherRoom,
    #[error("this room has a password, and the join gave none or another")]
    WrongPassword,
    #[error("no room has this id")]
    RoomNotFound,
    #[error("no member with this id is in this room")]
    MemberNotFound,
    #[error("a room with this id is there already")]
    RoomExists,
    #[error("the room is full ({capacity} members)")]
    RoomFull { capacity: u32 },
    #[error("the room is locked: it takes no new members")]
    RoomLocked,
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// A signal that would not fit even an empty inbox: `inbox_full` would
    /// tell the sender to retry, and no retry could deliver it.
    #[error(
        "the signal's event is {size} bytes, more than an inbox holds ({limit}); no retry can deliver it"
    )]
    SignalOverInbox { size: usize, limit: usize },
    #[error("a recipient's inbox is full; nothing was sent, retry once it has read its events")]
    InboxFull,
    #[error("too many requests from this client; retry after the time in Retry-After")]
    RateLimited { retry_after: std::time::Duration },
    /// The server cannot take this now; the text says why.
    #[error("{0}")]
    ServerBusy(&'static str),
    /// HTTP-level mistakes that end the connection: the request is not
    /// read, so there is no route, and the code is the generic one.
    #[error("the request head is not valid HTTP/1.1")]
    MalformedHead,
    /// A head that breaks RFC 9112's rules for `Host` or for the body's
    /// length; the text says which. The connection closes after it.
    #[error("the request head breaks RFC 9112: {0}")]
    BadHead(&'static str),
    /// A transfer coding the server does not undo.
    #[error("the only transfer coding a request body may have is `chunked`")]
    UnknownCoding,
    #[error("the request head is larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("the request was not sent within the header timeout")]
    RequestTimeout,
    #[error("no route answers this path")]
    NotFound,
    #[error("this path does not answer this method")]
    MethodNotAllowed,
    #[error("the body must be JSON, sent with Content-Type: application/json")]
    UnsupportedMediaType,
    /// A body that must be of another type than JSON (`application/sdp`).
    #[error("the body must be sent with Content-Type: {0}")]
    WrongMediaType(&'static str),
    /// A WHIP or WHEP offer that got no answer; the text says why.
    #[error("{0}")]
    NoAnswer(&'static str),
    /// A WHIP or WHEP offer that names no member, to a room without an
    /// owner to answer it.
    #[error("the room has no owner to answer, and the request names no member (`?to=`)")]
    NoReceiver,
    #[error("`If-Match` does not name this session's ETag")]
    PreconditionFailed,
    /// A WHIP or WHEP PATCH with `If-Match: *`: an ICE restart, which the
    /// answering browser cannot take without a new offer.
    #[error("this session takes trickled candidates, but no ICE restart (`If-Match: *`)")]
    IceRestartUnsupported,
    /// The cause is logged where it happens; the client learns nothing of it.
    #[error("the server failed to answer this request")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRoomId(_)
            | Self::InvalidRequest(_)
            | Self::MalformedHead
            | Self::BadHead(_) => StatusCode::BAD_REQUEST,
            Self::UnknownCoding => StatusCode::NOT_IMPLEMENTED,
            Self::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized | Self::GrantRefused(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::GrantForAnotherRoom | Self::WrongPassword => {
                StatusCode::FORBIDDEN
            }
            Self::RoomNotFound | Self::MemberNotFound | Self::NotFound => StatusCode::NOT_FOUND,
            Self::RoomFull { .. } | Self::RoomExists | Self::NoReceiver => StatusCode::CONFLICT,
            Self::NoAnswer(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::IceRestartUnsupported => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RoomLocked => StatusCode::LOCKED,
            Self::PayloadTooLarge { .. } | Self::SignalOverInbox { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::InboxFull | Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ServerBusy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType | Self::WrongMediaType(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable word clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRoomId(_) => "invalid_room_id",
            Self::InvalidRequest(_)
            | Self::MalformedHead
            | Self::BadHead(_)
            | Self::HeadTooLarge { .. }
            | Self::RequestTimeout => "invalid_request",
            Self::UnknownCoding => "not_implemented",
            Self::Unauthorized | Self::GrantRefused(_) => "unauthorized",
            Self::Forbidden | Self::GrantForAnotherRoom | Self::WrongPassword => "forbidden",
            Self::RoomNotFound => "room_not_found",
            Self::MemberNotFound => "member_not_found",
            Self::RoomExists => "room_exists",
            Self::RoomFull { .. } => "room_full",
            Self::RoomLocked => "room_locked",
            Self::PayloadTooLarge { .. } | Self::SignalOverInbox { .. } => "payload_too_large",
            Self::InboxFull => "inbox_full",
            Self::RateLimited { .. } => "rate_limited",
            Self::ServerBusy(_) => "server_busy",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UnsupportedMediaType | Self::WrongMediaType(_) => "unsupported_media_type",
            Self::NoAnswer(_) => "no_answer",
            Self::NoReceiver => "no_receiver",
            Self::PreconditionFailed => "precondition_failed",
            Self::IceRestartUnsupported => "ice_restart_unsupported",
            Self::Internal => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::InvalidRoomId(_) => "Invalid room id",
            Self::InvalidRequest(_) | Self::MalformedHead | Self::BadHead(_) => "Invalid request",
            Self::UnknownCoding => "Not implemented",
            Self::HeadTooLarge { .. } => "Request header fields too large",
            Self::RequestTimeout => "Request timeout",
            Self::Unauthorized | Self::GrantRefused(_) => "Unauthorized",
            Self::Forbidden | Self::GrantForAnotherRoom | Self::WrongPassword => "Forbidden",
            Self::RoomNotFound => "Room not found",
            Self::MemberNotFound => "Member not found",
            Self::RoomExists => "Room exists",
            Self::RoomFull { .. } => "Room full",
            Self::RoomLocked => "Room locked",
            Self::PayloadTooLarge { .. } | Self::SignalOverInbox { .. } => "Payload too large",
            Self::InboxFull => "Inbox full",
            Self::RateLimited { .. } => "Rate limited",
            Self::ServerBusy(_) => "Server busy",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::UnsupportedMediaType | Self::WrongMediaType(_) => "Unsupported media type",
            Self::NoAnswer(_) => "No answer",
            Self::NoReceiver => "No receiver",
            Self::PreconditionFailed => "Precondition failed",
            Self::IceRestartUnsupported => "ICE restart unsupported",
            Self::Internal => "Internal server error",
        }
    }
}

/// An `application/problem+json` body (RFC 9457) with the stable `code`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:signalpost:problem:room_full",
    "title": "Room full",
    "status": 409,
    "detail": "the room is full (2 members)",
    "code": "room_full",
    "request_id": "0e6f4f8a-8d1e-4b5e-9a57-3f0c2c1d9b7e"
}))]
pub struct Problem {
    /// `urn:signalpost:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// One stable word to switch on; docs/API.md says when each comes.
    #[schema(value_type = ProblemCode)]
    pub code: String,
    /// The request's id, as in its `X-Request-Id` header and the server's
    /// log lines: quote it when reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

// The schema of `Problem::code`, so that generated clients get an
// enumeration; `the_documented_codes_are_the_codes_given` holds it to the
// codes `ApiError::code` gives.
/// Every `code` a problem may carry; docs/API.md says when each comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    InvalidRoomId,
    InvalidRequest,
    Unauthorized,
    Forbidden,
    RoomNotFound,
    MemberNotFound,
    RoomExists,
    RoomFull,
    RoomLocked,
    PayloadTooLarge,
    InboxFull,
    RateLimited,
    ServerBusy,
    NotFound,
    MethodNotAllowed,
    UnsupportedMediaType,
    NoAnswer,
    NoReceiver,
    PreconditionFailed,
    IceRestartUnsupported,
    NotImplemented,
    InternalError,
}

pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let problem = Problem {
            problem_type: format!("urn:signalpost:problem:{}", self.code()),
            title: self.title().to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code().to_owned(),
            request_id: request::current(),
        };
        metrics::rejection(self.code());
        let body = serde_json::to_vec(&problem).expect("a Problem always serializes");
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if matches!(self, Self::Unauthorized | Self::GrantRefused(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, Self::ServerBusy(_)) {
            // What it waits for (a place, Redis, the restart after a
            // shutdown) takes about that long, not longer.
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::RateLimited { retry_after } = self {
            // Whole seconds, rounded up, so a client that waits this long passes.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::CallerGone => Self::Unauthorized,
            Refusal::NotAllowed => Self::Forbidden,
            Refusal::RoomNotFound => Self::RoomNotFound,
            Refusal::MemberNotFound => Self::MemberNotFound,
            Refusal::RoomExists => Self::RoomExists,
            Refusal::RoomFull { capacity } => Self::RoomFull { capacity },
            Refusal::RoomLocked => Self::RoomLocked,
            Refusal::InvalidCapacity { .. } => Self::InvalidRequest(refusal.to_string()),
            // Only when it changed at every look: as good as wrong.
            Refusal::PasswordChanged => Self::WrongPassword,
            Refusal::InboxFull => Self::InboxFull,
            Refusal::SignalTooLarge { size, limit } => Self::SignalOverInbox { size, limit },
            // One poll in flight is the norm; the others wait a moment.
            Refusal::TooManyPolls => Self::RateLimited {
                retry_after: std::time::Duration::from_secs(1),
            },
            Refusal::TooManyMembers => {
                Self::ServerBusy("the service holds as many members as it may; retry later")
            }
            Refusal::TooManyRooms => Self::ServerBusy(
                "the service keeps as many rooms made in advance as it may (--max-kept-rooms)",
            ),
            Refusal::TooManyReaders => {
                Self::ServerBusy("the server holds as many open streams as it may; retry later")
            }
            Refusal::Unavailable => {
                Self::ServerBusy("the shared state cannot be reached just now; retry later")
            }
            Refusal::Internal => Self::Internal,
        }
    }
}

impl From<RateLimited> for ApiError {
    fn from(limited: RateLimited) -> Self {
        Self::RateLimited {
            retry_after: limited.retry_after,
        }
    }
}

impl From<InvalidRoomId> for ApiError {
    fn from(invalid: InvalidRoomId) -> Self {
        Self::InvalidRoomId(invalid.to_string())
    }
}

impl From<InvalidSignalType> for ApiError {
    fn from(invalid: InvalidSignalType) -> Self {
        Self::InvalidRequest(invalid.to_string())
    }
}

impl From<Unreadable> for ApiError {
    fn from(unreadable: Unreadable) -> Self {
        match unreadable {
            Unreadable::Malformed => Self::MalformedHead,
            Unreadable::HeadTooLarge { limit } => Self::HeadTooLarge { limit },
            Unreadable::TooSlow => Self::RequestTimeout,
            Unreadable::BadHost(why) | Unreadable::BadFraming(why) => Self::BadHead(why),
            Unreadable::UnknownCoding => Self::UnknownCoding,
        }
    }
}

/// The answer to a request the connection layer cannot read.
pub fn unreadable(why: Unreadable) -> Response {
    ApiError::from(why).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_says_when_to_retry_in_whole_seconds() {
        let response = ApiError::RateLimited {
            retry_after: std::time::Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn server_busy_says_when_to_retry() {
        let response = ApiError::ServerBusy("full").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    /// One error of every kind. The match has no wildcard: a new kind
    /// does not compile until it is added here too.
    fn one_of_each() -> Vec<ApiError> {
        let all = vec![
            ApiError::InvalidRoomId(String::new()),
            ApiError::InvalidRequest(String::new()),
            ApiError::Unauthorized,
            ApiError::Forbidden,
            ApiError::GrantRefused(""),
            ApiError::GrantForAnotherRoom,
            ApiError::WrongPassword,
            ApiError::RoomNotFound,
            ApiError::MemberNotFound,
            ApiError::RoomExists,
            ApiError::RoomFull { capacity: 2 },
            ApiError::RoomLocked,
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::SignalOverInbox { size: 2, limit: 1 },
            ApiError::InboxFull,
            ApiError::RateLimited {
                retry_after: std::time::Duration::ZERO,
            },
            ApiError::ServerBusy(""),
            ApiError::MalformedHead,
            ApiError::BadHead(""),
            ApiError::UnknownCoding,
            ApiError::HeadTooLarge { limit: 1 },
            ApiError::RequestTimeout,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::UnsupportedMediaType,
            ApiError::WrongMediaType(""),
            ApiError::NoAnswer(""),
            ApiError::NoReceiver,
            ApiError::PreconditionFailed,
            ApiError::IceRestartUnsupported,
            ApiError::Internal,
        ];
        for error in &all {
            match error {
                ApiError::InvalidRoomId(_)
                | ApiError::InvalidRequest(_)
                | ApiError::Unauthorized
                | ApiError::Forbidden
                | ApiError::GrantRefused(_)
                | ApiError::GrantForAnotherRoom
                | ApiError::WrongPassword
                | ApiError::RoomNotFound
                | ApiError::MemberNotFound
                | ApiError::RoomExists
                | ApiError::RoomFull { .. }
                | ApiError::RoomLocked
                | ApiError::PayloadTooLarge { .. }
                | ApiError::SignalOverInbox { .. }
                | ApiError::InboxFull
                | ApiError::RateLimited { .. }
                | ApiError::ServerBusy(_)
                | ApiError::MalformedHead
                | ApiError::BadHead(_)
                | ApiError::UnknownCoding
                | ApiError::HeadTooLarge { .. }
                | ApiError::RequestTimeout
                | ApiError::NotFound
                | ApiError::MethodNotAllowed
                | ApiError::UnsupportedMediaType
                | ApiError::WrongMediaType(_)
                | ApiError::NoAnswer(_)
                | ApiError::NoReceiver
                | ApiError::PreconditionFailed
                | ApiError::IceRestartUnsupported
                | ApiError::Internal => {}
            }
        }
        all
    }

    #[test]
    fn the_documented_codes_are_the_codes_given() {
        let schema = serde_json::to_value(<ProblemCode as utoipa::PartialSchema>::schema())
            .expect("the schema serializes");
        let documented: std::collections::BTreeSet<String> = schema["enum"]
            .as_array()
            .expect("the codes are an enumeration")
            .iter()
            .filter_map(|code| code.as_str().map(str::to_owned))
            .collect();
        let given: std::collections::BTreeSet<String> = one_of_each()
            .iter()
            .map(|error| error.code().to_owned())
            .collect();
        assert_eq!(documented, given);
    }

    #[test]
    fn every_error_is_problem_json_with_its_code() {
        let response = ApiError::RoomFull { capacity: 2 }.into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
