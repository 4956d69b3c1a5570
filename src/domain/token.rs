//! A member's token, the secret that proves a request is that member's,
//! and `MemberRef`, the member it names.

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

const SECRET_BYTES: usize = 32;
const MEMBER_BYTES: usize = 16;
/// The longest token, decoded: the secret, the member id, the room id.
const MAX_BYTES: usize = SECRET_BYTES + MEMBER_BYTES + ROOM_ID_MAX;
/// The longest token as text: base64 without padding.
const MAX_TEXT: usize = (MAX_BYTES * 4).div_ceil(3);

/// A member token: 256 random bits, and the member they open, written as
/// URL-safe base64 (71 characters for a five-letter room). The member it
/// names is where a backend finds what proves it: the token's digest is
/// kept with the member itself, so a token lives and dies with its
/// member, and needs no index of its own that could outlive it. Its first
/// 8 bytes select it in an index that is kept anyway (the memory
/// backend's). Redacted from `Debug`; its secret compared in constant
/// time.
#[derive(Clone)]
pub struct Token {
    secret: [u8; SECRET_BYTES],
    member: MemberRef,
}

impl Token {
    /// A fresh token for `member`.
    pub fn generate(member: MemberRef) -> Self {
        let mut secret = [0; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        Self { secret, member }
    }

    /// The token as a client sent it, if it has a token's shape at all: the
    /// member it names is not yet proven to be its.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_TEXT {
            return None;
        }
        // Room for what base64 may estimate before it knows the padding.
        let mut bytes = [0; MAX_BYTES + 3];
        let written = URL_SAFE_NO_PAD
            .decode_slice(text.as_bytes(), &mut bytes)
            .ok()?;
        if written <= SECRET_BYTES + MEMBER_BYTES || written > MAX_BYTES {
            return None;
        }
        let (secret, rest) = bytes[..written].split_at(SECRET_BYTES);
        let (member, room) = rest.split_at(MEMBER_BYTES);
        let room = RoomId::parse(std::str::from_utf8(room).ok()?).ok()?;
        Some(Self {
            secret: secret.try_into().ok()?,
            member: MemberRef {
                room,
                member: Uuid::from_slice(member).ok()?,
            },
        })
    }

    /// The member this token names.
    pub fn member(&self) -> &MemberRef {
        &self.member
    }

    /// The first 8 bytes of the secret, random: a key for an index.
    pub fn selector(&self) -> u64 {
        let mut head = [0; 8];
        head.copy_from_slice(&self.secret[..8]);
        u64::from_le_bytes(head)
    }

    /// Whether `other` is this token: the same secret, compared in constant
    /// time, for the same member.
    pub fn matches(&self, other: &Token) -> bool {
        bool::from(self.secret.ct_eq(&other.secret)) && self.member == other.member
    }

    /// What a backend keeps to check a token: the SHA-256 of its secret, so
    /// that the state, its dumps and its logs never hold one that opens
    /// anything.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.secret).into()
    }

    /// The text to hand to the member, once, at join.
    pub fn reveal(&self) -> String {
        let room = self.member.room.as_str().as_bytes();
        let mut bytes = Vec::with_capacity(SECRET_BYTES + MEMBER_BYTES + room.len());
        bytes.extend_from_slice(&self.secret);
        bytes.extend_from_slice(self.member.member.as_bytes());
        bytes.extend_from_slice(room);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(room: &str) -> MemberRef {
        MemberRef {
            room: RoomId::parse(room).unwrap(),
            member: Uuid::new_v4(),
        }
    }

    #[test]
    fn tokens_round_trip_and_compare() {
        let token = Token::generate(member("lobby"));
        let text = token.reveal();
        assert_eq!(text.len(), 71);
        let parsed = Token::parse(&text).unwrap();
        assert!(parsed.matches(&token));
        assert_eq!(parsed.member(), token.member());
        assert!(!Token::generate(member("lobby")).matches(&token));
    }

    #[test]
    fn a_token_names_its_member_whatever_the_room_id() {
        for room in ["a", "Room-1_x.y~z", &"x".repeat(ROOM_ID_MAX)] {
            let token = Token::generate(member(room));
            let text = token.reveal();
            assert!(text.len() <= MAX_TEXT, "{room}");
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{text}"
            );
            assert_eq!(Token::parse(&text).unwrap().member(), token.member());
        }
    }

    #[test]
    fn the_same_secret_for_another_member_is_another_token() {
        let token = Token::generate(member("lobby"));
        let mut other = token.clone();
        other.member.member = Uuid::new_v4();
        assert!(!other.matches(&token));
        assert_eq!(other.selector(), token.selector());
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let valid = Token::generate(member("lobby")).reveal();
        let no_room = URL_SAFE_NO_PAD.encode([7; SECRET_BYTES + MEMBER_BYTES]);
        let bad_room = URL_SAFE_NO_PAD.encode([b'/'; SECRET_BYTES + MEMBER_BYTES + 3]);
        let too_long = URL_SAFE_NO_PAD.encode([b'a'; MAX_BYTES + 1]);
        for text in [
            "",
            "short",
            &"A".repeat(43),
            &"!".repeat(71),
            &no_room,
            &bad_room,
            &too_long,
            &format!("{valid}="),
        ] {
            assert!(Token::parse(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let token = Token::generate(member("lobby"));
        assert!(!format!("{token:?}").contains(&token.reveal()));
    }
}
