//! A member's token, the secret that proves a request is that member's,
//! and `MemberRef`, the member it opens.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::model::{ROOM_ID_MAX, RoomId};

/// The member a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    pub room: RoomId,
    pub member: Uuid,
}

/// 264 random bits: a whole number of base64 groups (44 characters), so
/// that the secret and the room are apart in the text too.
const SECRET_BYTES: usize = 33;
const SECRET_TEXT: usize = SECRET_BYTES / 3 * 4;
/// The longest room part as text: base64 of a room id, without padding.
const ROOM_TEXT: usize = (ROOM_ID_MAX * 4).div_ceil(3);

/// A member token as a request presents it: 264 random bits, then the id
/// of the member's room, written as URL-safe base64 (51 characters for a
/// five-letter room). The room says where a backend that shares its state
/// keeps what proves the token (the Redis backend keeps the secret's digest
/// among the room's keys, so a token lives and dies with its member, in its
/// room's slot); the memory backend finds it by its secret's first 8 bytes.
/// Borrowed from the request: reading one copies nothing but the secret.
/// Redacted from `Debug`; its secret compared in constant time.
#[derive(Clone)]
pub struct Token<'a> {
    secret: Secret,
    /// The room part, as the text holds it: decoded only by a backend that
    /// needs it (`room`), so that the memory backend decodes no more of a
    /// token than its secret.
    room: &'a [u8],
}

/// A token made for a new member: its text, handed out once.
// No `Debug`: it is the secret itself.
pub struct NewToken {
    text: String,
}

/// A token's secret: what proves it.
#[derive(Clone)]
pub struct Secret([u8; SECRET_BYTES]);

impl Secret {
    /// Whether `other` is this secret, compared in constant time.
    pub fn matches(&self, other: &Secret) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// Its first 8 bytes, random: a key for an index.
    pub fn selector(&self) -> u64 {
        let mut head = [0; 8];
        head.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(head)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl NewToken {
    /// A fresh token for a member of `room`.
    pub fn generate(room: &RoomId) -> Self {
        let mut secret = [0; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        let mut text = URL_SAFE_NO_PAD.encode(secret);
        URL_SAFE_NO_PAD.encode_string(room.as_str(), &mut text);
        Self { text }
    }

    /// The token as requests will present it.
    pub fn token(&self) -> Token<'_> {
        Token::parse(&self.text).expect("a token made here has a token's shape")
    }

    /// The text to hand to the member, once, at join.
    pub fn reveal(self) -> String {
        self.text
    }
}

impl<'a> Token<'a> {
    /// The token as a client sent it, if it has a token's shape: its
    /// secret, and a room part whose length could be one. What that part
    /// names is read by `room`, and proven by a backend.
    pub fn parse(text: &'a str) -> Option<Self> {
        if text.len() <= SECRET_TEXT || text.len() > SECRET_TEXT + ROOM_TEXT {
            return None;
        }
        let (secret_text, room) = text.as_bytes().split_at(SECRET_TEXT);
        let mut secret = [0; SECRET_BYTES];
        let written = URL_SAFE_NO_PAD
            .decode_slice(secret_text, &mut secret)
            .ok()?;
        (written == SECRET_BYTES).then_some(Self {
            secret: Secret(secret),
            room,
        })
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The room this token names, if its room part is a room id. Not proof
    /// that the token is a member's of it: a backend checks the secret.
    pub fn room(&self) -> Option<RoomId> {
        // Room for what base64 may estimate before it knows the end.
        let mut bytes = [0; ROOM_ID_MAX + 3];
        let written = URL_SAFE_NO_PAD.decode_slice(self.room, &mut bytes).ok()?;
        RoomId::parse(std::str::from_utf8(&bytes[..written]).ok()?).ok()
    }

    /// A fingerprint of the room part as written, for an index that keeps
    /// the room itself: a token whose secret is right but whose room part
    /// was changed is no token this server issued, and the fingerprint
    /// tells so without decoding the part on every request. No secret, and
    /// no proof of anything: the secret is the proof.
    pub fn room_fingerprint(&self) -> u64 {
        // FNV-1a: a few instructions a byte, and room parts are short.
        self.room.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }

    /// What a backend keeps to check a token: the SHA-256 of its secret, so
    /// that the state, its dumps and its logs never hold one that opens
    /// anything.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.secret.0).into()
    }
}

impl fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str) -> RoomId {
        RoomId::parse(id).unwrap()
    }

    #[test]
    fn tokens_round_trip_and_compare() {
        let lobby = room("lobby");
        let new = NewToken::generate(&lobby);
        let token = new.token();
        let text = new.text.clone();
        assert_eq!(text.len(), 51);
        let parsed = Token::parse(&text).unwrap();
        assert!(parsed.secret().matches(token.secret()));
        assert_eq!(parsed.secret().selector(), token.secret().selector());
        assert_eq!(parsed.room(), Some(lobby.clone()));
        assert_eq!(parsed.room_fingerprint(), token.room_fingerprint());
        let other = NewToken::generate(&lobby);
        assert!(!other.token().secret().matches(token.secret()));
        let elsewhere = NewToken::generate(&room("lobby2"));
        assert_ne!(
            elsewhere.token().room_fingerprint(),
            token.room_fingerprint()
        );
        assert_eq!(new.reveal(), text);
    }

    #[test]
    fn a_token_names_its_room_whatever_the_room_id() {
        for id in ["a", "Room-1_x.y~z", &"x".repeat(ROOM_ID_MAX)] {
            let text = NewToken::generate(&room(id)).reveal();
            assert!(text.len() <= SECRET_TEXT + ROOM_TEXT, "{id}");
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{text}"
            );
            assert_eq!(Token::parse(&text).unwrap().room(), Some(room(id)));
        }
    }

    #[test]
    fn malformed_tokens_do_not_parse_or_name_no_room() {
        let valid = NewToken::generate(&room("lobby")).reveal();
        let secret = &valid[..SECRET_TEXT];
        for text in [
            "",
            "short",
            &"A".repeat(43),
            &"!".repeat(51),
            secret,
            &format!("{}{}", "!".repeat(SECRET_TEXT), &valid[SECRET_TEXT..]),
            &format!("{valid}{}", "A".repeat(ROOM_TEXT)),
        ] {
            assert!(Token::parse(text).is_none(), "{text:?}");
        }
        let bad_room = URL_SAFE_NO_PAD.encode("a/b");
        for part in [
            bad_room.as_str(),
            "!!!!",
            &format!("{}=", &valid[SECRET_TEXT..]),
        ] {
            let text = format!("{secret}{part}");
            let token = Token::parse(&text);
            assert!(token.and_then(|token| token.room()).is_none(), "{part:?}");
        }
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let new = NewToken::generate(&room("lobby"));
        let printed = format!("{:?} {:?}", new.token(), new.token().secret());
        assert!(!printed.contains(&new.reveal()[..SECRET_TEXT]));
    }
}
