//! A member's token: the secret that proves a request is that member's.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use subtle::ConstantTimeEq;

const TOKEN_BYTES: usize = 32;

/// A member token: 256 random bits, written as 43 characters of URL-safe
/// base64. Its first 8 bytes select the member in the index; the whole
/// token is what proves it. Redacted from `Debug`, compared in constant
/// time.
#[derive(Clone)]
pub struct Token([u8; TOKEN_BYTES]);

impl Token {
    pub fn generate() -> Self {
        let mut bytes = [0; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The token as a client sent it, if it has a token's shape at all.
    pub fn parse(text: &str) -> Option<Self> {
        let mut bytes = [0; TOKEN_BYTES];
        let written = URL_SAFE_NO_PAD
            .decode_slice(text.as_bytes(), &mut bytes)
            .ok()?;
        (written == TOKEN_BYTES).then_some(Self(bytes))
    }

    pub fn selector(&self) -> u64 {
        let mut head = [0; 8];
        head.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(head)
    }

    pub fn matches(&self, other: &Token) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The text to hand to the member, once, at join.
    pub fn reveal(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
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

    #[test]
    fn tokens_round_trip_and_compare() {
        let token = Token::generate();
        let text = token.reveal();
        assert_eq!(text.len(), 43);
        let parsed = Token::parse(&text).unwrap();
        assert!(parsed.matches(&token));
        assert!(!Token::generate().matches(&token));
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        assert!(Token::parse("").is_none());
        assert!(Token::parse("short").is_none());
        assert!(Token::parse(&"A".repeat(44)).is_none());
        assert!(Token::parse(&"!".repeat(43)).is_none());
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let token = Token::generate();
        assert!(!format!("{token:?}").contains(&token.reveal()));
    }
}
