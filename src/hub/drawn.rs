//! Hashing for maps keyed by what the server drew at random: token
//! selectors and member ids.
//!
//! Such a key is as evenly spread as any hash of it, and a client chooses
//! only which key it asks for, never which ones are in a map, so it cannot
//! crowd one bucket. SipHash, the default, is there for keys a client does
//! choose, such as room ids; on the keys here it was pure cost, on every
//! request (bench/HISTORY.md, rounds 7 and 18).

use std::hash::{BuildHasherDefault, Hash, Hasher};

use uuid::Uuid;

use crate::model::RoomId;

/// The `BuildHasher` of a map keyed by drawn keys.
pub type Drawn = BuildHasherDefault<DrawnHash>;

/// A drawn key's bits, folded into one word.
#[derive(Default)]
pub struct DrawnHash(u64);

impl Hasher for DrawnHash {
    fn finish(&self) -> u64 {
        self.0
    }

    /// A selector is its own hash.
    fn write_u64(&mut self, word: u64) {
        self.0 = self.0.rotate_left(29) ^ word;
    }

    /// A member id's 16 bytes (and the length before them), a word at a
    /// time: its version and variant bits land where random bits of the
    /// other word do.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
}

/// A member's key in a map: its room and its id, hashed by the id alone.
/// The server drew the id, so it names one member of one room; the room
/// is compared all the same. Hashing the room's name too cost SipHash over
/// a text the client chose, at every lookup (bench/HISTORY.md, round 18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberKey {
    pub room: RoomId,
    pub member: Uuid,
}

impl MemberKey {
    pub fn new(room: &RoomId, member: Uuid) -> Self {
        Self {
            room: room.clone(),
            member,
        }
    }
}

impl Hash for MemberKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.member.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn a_selector_is_its_own_hash() {
        assert_eq!(Drawn::default().hash_one(0xdead_beef_u64), 0xdead_beef);
    }

    #[test]
    fn member_ids_spread_over_the_low_bits_a_table_indexes_by() {
        let hashes: HashSet<u64> = (0..4096)
            .map(|_| Drawn::default().hash_one(Uuid::new_v4()) & 0xfff)
            .collect();
        // 4096 draws into 4096 buckets fill about 63 % of them.
        assert!(hashes.len() > 2400, "{} buckets", hashes.len());
    }
}
