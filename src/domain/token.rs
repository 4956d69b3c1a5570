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

/// 264 random bits: a whole number of base64 groups (44 characters), so
/// that the secret and the member it opens are apart in the text too.
const SECRET_BYTES: usize = 33;
const SECRET_TEXT: usize = SECRET_BYTES / 3 * 4;
const MEMBER_BYTES: usize = 16;
/// The longest member part, decoded: the member id, the room id.
const NAMED_BYTES: usize = MEMBER_BYTES + ROOM_ID_MAX;
/// The longest member part as text: base64 without padding.
const NAMED_TEXT: usize = (NAMED_BYTES * 4).div_ceil(3);

/// A member token: 264 random bits, then the member they open, written as
/// URL-safe base64 (72 characters for a five-letter room). The member it
/// names is where a backend that keeps no index finds what proves it (the
/// Redis backend keeps the secret's digest with the member itself, so a
/// token lives and dies with its member); the memory backend finds it by
/// its secret's first 8 bytes. Redacted from `Debug`; its secret compared
/// in constant time.
#[derive(Clone)]
pub struct Token {
    secret: Secret,
    /// The member part, as the text of the token holds it: read only by a
    /// backend that needs it (`member`), so that the memory backend decodes
    /// no more of a token than its secret.
    named: [u8; NAMED_TEXT],
    named_len: usize,
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

impl Token {
    /// A fresh token for `member`.
    pub fn generate(member: &MemberRef) -> Self {
        let mut secret = [0; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        let mut bytes = Vec::with_capacity(NAMED_BYTES);
        bytes.extend_from_slice(member.member.as_bytes());
        bytes.extend_from_slice(member.room.as_str().as_bytes());
        let mut named = [0; NAMED_TEXT];
        let named_len = URL_SAFE_NO_PAD
            .encode_slice(&bytes, &mut named)
            .expect("a member part fits its room");
        Self {
            secret: Secret(secret),
            named,
            named_len,
        }
    }

    /// The token as a client sent it, if it has a token's shape: its
    /// secret, and a member part whose length could be one. What that part
    /// names is read by `member`, and proven by a backend.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() <= SECRET_TEXT || text.len() > SECRET_TEXT + NAMED_TEXT {
            return None;
        }
        let (secret_text, named_text) = text.as_bytes().split_at(SECRET_TEXT);
        let mut secret = [0; SECRET_BYTES];
        let written = URL_SAFE_NO_PAD
            .decode_slice(secret_text, &mut secret)
            .ok()?;
        if written != SECRET_BYTES {
            return None;
        }
        let mut named = [0; NAMED_TEXT];
        named[..named_text.len()].copy_from_slice(named_text);
        Some(Self {
            secret: Secret(secret),
            named,
            named_len: named_text.len(),
        })
    }

    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// The member this token names, if its member part is one. Not proof
    /// that the token is that member's: a backend checks the secret.
    pub fn member(&self) -> Option<MemberRef> {
        let mut bytes = [0; NAMED_BYTES + 3];
        let (member, room) = self.decode_named(&mut bytes)?;
        Some(MemberRef {
            room: RoomId::parse(std::str::from_utf8(room).ok()?).ok()?,
            member: Uuid::from_slice(member).ok()?,
        })
    }

    /// A fingerprint of the member part as written, for an index that
    /// keeps the member itself: a token whose secret is right but whose
    /// member part was changed is no token this server issued, and the
    /// fingerprint tells so without decoding the part on every request.
    /// Not a secret, nor proof of anything: the secret is the proof.
    pub fn named_fingerprint(&self) -> u64 {
        // FNV-1a: a few instructions a byte, and parts are short.
        self.named[..self.named_len]
            .iter()
            .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
            })
    }

    /// The member part, decoded into `bytes`: the member id's bytes and the
    /// room id's.
    fn decode_named<'a>(
        &self,
        bytes: &'a mut [u8; NAMED_BYTES + 3],
    ) -> Option<(&'a [u8], &'a [u8])> {
        // Room for what base64 may estimate before it knows the end.
        let written = URL_SAFE_NO_PAD
            .decode_slice(&self.named[..self.named_len], bytes)
            .ok()?;
        if written <= MEMBER_BYTES || written > NAMED_BYTES {
            return None;
        }
        Some(bytes[..written].split_at(MEMBER_BYTES))
    }

    /// What a backend keeps to check a token: the SHA-256 of its secret, so
    /// that the state, its dumps and its logs never hold one that opens
    /// anything.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.secret.0).into()
    }

    /// The text to hand to the member, once, at join.
    pub fn reveal(&self) -> String {
        let mut text = URL_SAFE_NO_PAD.encode(self.secret.0);
        text.push_str(
            std::str::from_utf8(&self.named[..self.named_len])
                .expect("base64 is ASCII, and parse kept only what fits a member part"),
        );
        text
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
        let lobby = member("lobby");
        let token = Token::generate(&lobby);
        let text = token.reveal();
        assert_eq!(text.len(), 72);
        let parsed = Token::parse(&text).unwrap();
        assert!(parsed.secret().matches(token.secret()));
        assert_eq!(parsed.member(), Some(lobby.clone()));
        assert_eq!(parsed.named_fingerprint(), token.named_fingerprint());
        let other = Token::generate(&member("lobby"));
        assert_ne!(other.named_fingerprint(), token.named_fingerprint());
        assert_eq!(parsed.secret().selector(), token.secret().selector());
        assert!(!Token::generate(&lobby).secret().matches(token.secret()));
    }

    #[test]
    fn a_token_names_its_member_whatever_the_room_id() {
        for room in ["a", "Room-1_x.y~z", &"x".repeat(ROOM_ID_MAX)] {
            let named = member(room);
            let text = Token::generate(&named).reveal();
            assert!(text.len() <= SECRET_TEXT + NAMED_TEXT, "{room}");
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{text}"
            );
            assert_eq!(Token::parse(&text).unwrap().member(), Some(named));
        }
    }

    #[test]
    fn malformed_tokens_do_not_parse_or_name_no_member() {
        let valid = Token::generate(&member("lobby")).reveal();
        let secret = &valid[..SECRET_TEXT];
        for text in [
            "",
            "short",
            &"A".repeat(43),
            &"!".repeat(72),
            secret,
            &format!("{}{}", "!".repeat(SECRET_TEXT), &valid[SECRET_TEXT..]),
            &format!("{valid}{}", "A".repeat(NAMED_TEXT)),
        ] {
            assert!(Token::parse(text).is_none(), "{text:?}");
        }
        let no_room = URL_SAFE_NO_PAD.encode([7; MEMBER_BYTES]);
        let bad_room = URL_SAFE_NO_PAD.encode([b'/'; MEMBER_BYTES + 3]);
        for named in [
            no_room.as_str(),
            &bad_room,
            "!!!!",
            &format!("{}=", &valid[SECRET_TEXT..]),
        ] {
            let token = Token::parse(&format!("{secret}{named}"));
            assert!(
                token.and_then(|token| token.member()).is_none(),
                "{named:?}"
            );
        }
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let token = Token::generate(&member("lobby"));
        let printed = format!("{token:?} {:?}", token.secret());
        assert!(!printed.contains(&token.reveal()[..SECRET_TEXT]));
    }
}
