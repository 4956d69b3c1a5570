//! Join grants. With `--join-secret` or `--join-key`, a join must carry a
//! JWT that the application's back end signed: it names the room (or a
//! prefix of room ids), when it expires, and who joins. This module owns
//! the keys and the check of a grant; `api/join.rs` applies what a grant
//! says. The JWT itself is read and verified by `jsonwebtoken`, never by
//! code of ours.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tracing::warn;

use crate::config::Config;
use crate::http::error::ApiError;
use crate::model::RoomId;

/// Seconds a grant's `exp` and `nbf` may be off, for clocks that differ a
/// little between the back end and this server.
const LEEWAY_SECS: u64 = 5;

/// The keys grants are checked with.
pub struct Grants {
    keys: Vec<GrantKey>,
}

struct GrantKey {
    /// The JWKS `kid`; `None` for `--join-secret` and a PEM key.
    id: Option<String>,
    key: DecodingKey,
    /// The only algorithm a grant checked with this key may name, so that
    /// no grant picks how it is checked (`alg: none`, or HS256 with a
    /// public key as its secret).
    algorithm: Algorithm,
}

/// What a grant says beyond the room it opens. Claims that are absent
/// leave the join's body to say it.
#[derive(Debug, Default)]
pub struct Grant {
    /// The application's id for the user (`sub`), shown to the others.
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub capacity: Option<i64>,
    /// Whether the member may own the room; absent: it may.
    pub owner: Option<bool>,
}

#[derive(Deserialize)]
struct Claims {
    room: Option<String>,
    sub: Option<String>,
    name: Option<String>,
    metadata: Option<serde_json::Value>,
    capacity: Option<i64>,
    owner: Option<bool>,
}

impl Grants {
    /// The grant keys the configuration names, if any. Fails, saying why,
    /// when a key cannot be used: the server must not start open when it
    /// was told to ask for grants.
    pub fn from_config(config: &Config) -> Result<Option<Self>, String> {
        match (&config.join_secret, &config.join_key) {
            (Some(secret), _) => Ok(Some(Self::from_secret(secret))),
            (None, Some(path)) => Self::from_file(path).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// `Config::check` has seen that it is long enough.
    fn from_secret(secret: &str) -> Self {
        Self {
            keys: vec![GrantKey {
                id: None,
                key: DecodingKey::from_secret(secret.as_bytes()),
                algorithm: Algorithm::HS256,
            }],
        }
    }

    fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("--join-key {}: {error}", path.display()))?;
        let keys = if text.trim_start().starts_with('{') {
            from_jwks(&text)
        } else {
            from_pem(text.as_bytes()).map(|key| vec![key])
        };
        keys.map(|keys| Self { keys })
            .map_err(|problem| format!("--join-key {}: {problem}", path.display()))
    }

    /// Checks `token` as a grant to join `room`.
    pub fn check(&self, token: Option<&str>, room: &RoomId) -> Result<Grant, ApiError> {
        let token = token.ok_or(ApiError::GrantRefused(
            "this server lets in only joins with a grant from the application: Authorization: Bearer <JWT>",
        ))?;
        let header = decode_header(token)
            .map_err(|_| ApiError::GrantRefused("the join grant is not a JWT"))?;
        let key = match &header.kid {
            Some(id) => self
                .keys
                .iter()
                .find(|key| key.id.as_deref() == Some(id.as_str()))
                // A single key without an id (a secret, a PEM file) checks
                // every grant, whatever key id the back end writes.
                .or_else(|| self.only_key_without_id()),
            None => match self.keys.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
        .ok_or(ApiError::GrantRefused(
            "the join grant's key id (kid) names no key of this server",
        ))?;
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        validation.validate_aud = false;
        let claims = decode::<Claims>(token, &key.key, &validation)
            .map_err(|error| ApiError::GrantRefused(refusal(error.kind())))?
            .claims;
        if !claims
            .room
            .as_deref()
            .is_some_and(|granted| opens(granted, room))
        {
            return Err(ApiError::GrantForAnotherRoom);
        }
        Ok(Grant {
            user_id: claims.sub,
            name: claims.name,
            metadata: claims.metadata,
            capacity: claims.capacity,
            owner: claims.owner,
        })
    }

    fn only_key_without_id(&self) -> Option<&GrantKey> {
        match self.keys.as_slice() {
            [only] if only.id.is_none() => Some(only),
            _ => None,
        }
    }
}

/// Whether a grant's `room` claim opens `room`: the same id, or a prefix
/// ending in `*` (`*` alone opens every room).
fn opens(granted: &str, room: &RoomId) -> bool {
    match granted.strip_suffix('*') {
        Some(prefix) => room.as_str().starts_with(prefix),
        None => granted == room.as_str(),
    }
}

/// Why a grant did not verify, in words for the client: enough for the
/// application's developers to find their mistake, nothing of the key.
fn refusal(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => "the join grant has expired (exp)",
        ErrorKind::ImmatureSignature => "the join grant is not valid yet (nbf)",
        ErrorKind::MissingRequiredClaim(_) => "the join grant has no expiry (exp)",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "the join grant is signed with another algorithm than this server's key"
        }
        ErrorKind::InvalidSignature => "the join grant's signature does not verify",
        ErrorKind::Json(_) => "the join grant's claims are not what a grant holds",
        _ => "the join grant is not a valid JWT",
    }
}

/// A PEM public key: its type decides the algorithm.
fn from_pem(pem: &[u8]) -> Result<GrantKey, String> {
    let (key, algorithm) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        (key, Algorithm::RS256)
    } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        (key, Algorithm::ES256)
    } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        (key, Algorithm::EdDSA)
    } else {
        return Err("not a PEM public key of RSA, P-256 or Ed25519, nor a JWKS".into());
    };
    Ok(GrantKey {
        id: None,
        key,
        algorithm,
    })
}

/// A JWKS: every key of RS256, ES256 or EdDSA with a `kid`. Others (for
/// encryption, or of algorithms this server does not check) are passed
/// over with a warning, since an identity provider's set may hold them.
fn from_jwks(text: &str) -> Result<Vec<GrantKey>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|error| format!("not a JWKS: {error}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let id = jwk.common.key_id.clone();
        match jwk_algorithm(jwk).and_then(|algorithm| {
            let key = DecodingKey::from_jwk(jwk).map_err(|error| error.to_string())?;
            Ok((key, algorithm))
        }) {
            Ok((key, algorithm)) if id.is_some() || set.keys.len() == 1 => {
                keys.push(GrantKey { id, key, algorithm })
            }
            Ok(_) => warn!("--join-key: a key of the JWKS without a kid is not used"),
            Err(problem) => warn!(kid = ?id, %problem, "--join-key: a key of the JWKS is not used"),
        }
    }
    if keys.is_empty() {
        return Err("the JWKS holds no key this server can check grants with".into());
    }
    Ok(keys)
}

fn jwk_algorithm(jwk: &Jwk) -> Result<Algorithm, String> {
    let from_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("a secret key has no place in a public key set".into());
        }
        _ => return Err("a curve other than P-256 and Ed25519".into()),
    };
    match jwk.common.key_algorithm {
        None => Ok(from_type),
        Some(KeyAlgorithm::RS256) if from_type == Algorithm::RS256 => Ok(from_type),
        Some(KeyAlgorithm::ES256) if from_type == Algorithm::ES256 => Ok(from_type),
        Some(KeyAlgorithm::EdDSA) if from_type == Algorithm::EdDSA => Ok(from_type),
        Some(other) => Err(format!(
            "its alg {other:?} is not RS256, ES256 or EdDSA for its key"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_opens_its_room_or_the_rooms_its_prefix_begins() {
        let room = |id: &str| RoomId::parse(id).expect("a valid room id");
        assert!(opens("team-a", &room("team-a")));
        assert!(!opens("team-a", &room("team-ab")));
        assert!(opens("team-*", &room("team-ab")));
        assert!(!opens("team-*", &room("other")));
        assert!(opens("*", &room("anything")));
    }
}
