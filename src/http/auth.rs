//! Who a request is: the `Credentials` extractor that finds a token in
//! `Authorization: Bearer`, `?token=` or the member cookie, the admin
//! token, and `Caller`, the member or admin the token opens.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::token::Token;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::hub::MemberRef;
use crate::model::RoomId;

/// Name of the cookie join sets, scoped to the member's own path.
pub const TOKEN_COOKIE: &str = "signalpost_token";

/// The `Set-Cookie` value that hands a member its token for its own path
/// only (so several memberships in one browser never collide), or, without
/// a token, expires it. `Secure` when the server speaks HTTPS, so the
/// browser never sends it in clear.
pub fn member_cookie(
    room: &RoomId,
    member: uuid::Uuid,
    token: Option<&str>,
    secure: bool,
) -> String {
    let path = format!("/rooms/{room}/members/{member}");
    let secure = if secure { "; Secure" } else { "" };
    match token {
        Some(token) => {
            format!("{TOKEN_COOKIE}={token}; Path={path}; HttpOnly; SameSite=Strict{secure}")
        }
        None => {
            format!("{TOKEN_COOKIE}=; Path={path}; HttpOnly; SameSite=Strict{secure}; Max-Age=0")
        }
    }
}

/// The token of an `Authorization: Bearer` header, if the request has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The secret a request presents, if any: the `Authorization: Bearer`
/// header, else the `token` query parameter (for `EventSource` on another
/// origin, and curl), else the member cookie that join set.
pub struct Credentials(Option<String>);

impl Credentials {
    /// A token presented in a request's body rather than its head.
    pub fn of(token: String) -> Self {
        Self(Some(token))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Credentials {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let header = bearer(&parts.headers).map(str::to_owned);
        let query = || {
            let query = parts.uri.query()?;
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "token")
                .map(|(_, value)| value.into_owned())
        };
        let cookie = || {
            // `Cookie: a=1; b=2`; our value is URL-safe base64, never quoted.
            parts
                .headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(';'))
                .find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    (name == TOKEN_COOKIE && !value.is_empty()).then(|| value.to_owned())
                })
        };
        Ok(Self(header.or_else(query).or_else(cookie)))
    }
}

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Member(MemberRef),
}

impl Caller {
    /// This caller if it is exactly this member; 403 for anyone else (the
    /// admin included).
    pub fn into_member(self, room: &RoomId, member: uuid::Uuid) -> Result<MemberRef, ApiError> {
        match self {
            Self::Member(me) if me.room == *room && me.member == member => Ok(me),
            _ => Err(ApiError::Forbidden),
        }
    }

    /// The member this caller is, if it is one of `room`.
    pub fn member_of(&self, room: &RoomId) -> Option<uuid::Uuid> {
        match self {
            Self::Member(member) if &member.room == room => Some(member.member),
            _ => None,
        }
    }
}

/// The admin token, kept as its SHA-256 digest: digests have one length,
/// so comparing them in constant time tells a guesser nothing, not even
/// how long the token is, where comparing the texts would stop at the
/// first difference in length.
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl AdminToken {
    pub fn new(text: &str) -> Self {
        Self(Sha256::digest(text.as_bytes()).into())
    }

    /// Whether `text` is the admin token.
    pub fn is(&self, text: &str) -> bool {
        bool::from(Self::new(text).0.ct_eq(&self.0))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

/// Runs after the path and query extractors and before the body's, so
/// malformed parameters answer 400 before any token is looked at, and a
/// stranger learns nothing from how its body would have been judged.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ok(credentials) = Credentials::from_request_parts(parts, state).await;
        state.caller(&credentials).await
    }
}

/// The caller of an operation that checks it again as it runs (a signal,
/// opening a reader, leaving or removing): see `Backend::authenticate_recent`.
/// Extracted as `Caller` is.
pub struct RecheckedCaller(pub Caller);

impl FromRequestParts<AppState> for RecheckedCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ok(credentials) = Credentials::from_request_parts(parts, state).await;
        state.recent_caller(&credentials).await.map(Self)
    }
}

impl AppState {
    /// Resolves credentials to a caller, or 401.
    pub async fn caller(&self, credentials: &Credentials) -> Result<Caller, ApiError> {
        self.resolve(credentials, false).await
    }

    /// `caller`, for an operation that checks its caller again as it runs
    /// (`Backend::authenticate_recent`).
    pub async fn recent_caller(&self, credentials: &Credentials) -> Result<Caller, ApiError> {
        self.resolve(credentials, true).await
    }

    async fn resolve(&self, credentials: &Credentials, recent: bool) -> Result<Caller, ApiError> {
        let text = credentials.0.as_deref().ok_or(ApiError::Unauthorized)?;
        if let Some(admin) = &self.admin_token
            && admin.is(text)
        {
            return Ok(Caller::Admin);
        }
        let token = Token::parse(text).ok_or(ApiError::Unauthorized)?;
        let member = if recent {
            self.hub.authenticate_recent(&token).await?
        } else {
            self.hub.authenticate(&token).await?
        };
        member.map(Caller::Member).ok_or(ApiError::Unauthorized)
    }

    /// The caller, who must be the admin.
    pub async fn admin_caller(&self, credentials: &Credentials) -> Result<(), ApiError> {
        if self.admin_token.is_none() {
            // No admin is configured: nobody can be one.
            return match credentials.0 {
                None => Err(ApiError::Unauthorized),
                Some(_) => Err(ApiError::Forbidden),
            };
        }
        match self.caller(credentials).await? {
            Caller::Admin => Ok(()),
            Caller::Member(_) => Err(ApiError::Forbidden),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_is_only_itself_and_never_shows() {
        let admin = AdminToken::new("correct horse battery");
        assert!(admin.is("correct horse battery"));
        for other in [
            "",
            "correct horse",
            "correct horse battery ",
            "Correct horse battery",
        ] {
            assert!(!admin.is(other), "{other:?}");
        }
        assert!(!format!("{admin:?}").contains("horse"));
    }
}
