//! HPACK decoding (RFC 7541): a request's header block to its fields, and
//! the table the client's encoder indexes into, kept per connection.
//!
//! Written here, not taken from a crate: `h2`'s decoder is not public, and
//! the public ones decode Huffman strings a bit at a time through hash
//! maps built anew for every string (a relayed signal over HTTP/2 took
//! half again the CPU) or index past the end of a truncated block. This
//! one holds nothing between blocks but the client's table, and decodes
//! Huffman strings by the canonical code's first codes per length.

use std::collections::VecDeque;

/// The dynamic table's size until the client's encoder says otherwise,
/// and the most this server lets it grow to: the default of
/// `SETTINGS_HEADER_TABLE_SIZE`, which this server does not change.
pub const TABLE_SIZE: usize = 4096;

/// The block is not HPACK, or breaks its rules: the connection cannot go
/// on, since the two tables may no longer agree (RFC 9113 §4.3).
#[derive(Debug, PartialEq, Eq)]
pub struct Undecodable;

/// A field the client's encoder indexed: its name and value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// The decoding state of one connection: its dynamic table.
#[derive(Default)]
pub struct Decoder {
    /// Newest first, as indices count.
    entries: VecDeque<Entry>,
    /// The entries' size as §4.1 counts it.
    size: usize,
    /// The size the encoder last set (§6.3), at most `TABLE_SIZE`.
    max: Option<usize>,
}

impl Decoder {
    fn max(&self) -> usize {
        self.max.unwrap_or(TABLE_SIZE)
    }

    /// Hands each field of `block` to `field`, in order.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), Undecodable> {
        let mut rest = block;
        // Huffman strings are decoded into these, dropped with the block.
        let (mut name_text, mut value_text) = (Vec::new(), Vec::new());
        let mut first = true;
        while let Some(&lead) = rest.first() {
            if lead & 0x80 != 0 {
                // §6.1: an indexed field.
                let index = integer(&mut rest, 7)?;
                let (name, value) = self.entry(index)?;
                field(name, value);
            } else if lead & 0xe0 == 0x20 {
                // §6.3: a table size update, only before the block's first field.
                if !first {
                    return Err(Undecodable);
                }
                let max = integer(&mut rest, 5)?;
                if max > TABLE_SIZE {
                    return Err(Undecodable);
                }
                self.max = Some(max);
                self.evict(0);
                continue;
            } else {
                // §6.2: a literal; with incremental indexing (01), without
                // (0000) or never indexed (0001).
                let indexing = lead & 0x40 != 0;
                let prefix = if indexing { 6 } else { 4 };
                let index = integer(&mut rest, prefix)?;
                let name = if index == 0 {
                    string(&mut rest, &mut name_text)?
                } else {
                    // Copied: the entry may be evicted by this field's own.
                    name_text.clear();
                    name_text.extend_from_slice(self.entry(index)?.0);
                    None
                };
                let name = name.unwrap_or(&name_text);
                let value = string(&mut rest, &mut value_text)?.unwrap_or(&value_text);
                field(name, value);
                if indexing {
                    let entry = (Box::from(name), Box::from(value));
                    self.insert(entry);
                }
            }
            first = false;
        }
        Ok(())
    }

    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), Undecodable> {
        match index {
            0 => Err(Undecodable),
            1..=61 => {
                let (name, value) = STATIC[index - 1];
                Ok((name.as_bytes(), value.as_bytes()))
            }
            _ => self
                .entries
                .get(index - 62)
                .map(|(name, value)| (&name[..], &value[..]))
                .ok_or(Undecodable),
        }
    }

    /// §4.4: an entry larger than the table empties it and is not kept.
    fn insert(&mut self, entry: Entry) {
        let size = entry.0.len() + entry.1.len() + 32;
        if size > self.max() {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.entries.push_front(entry);
    }

    /// Evicts the oldest entries until `room` more fits.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max() {
            let Some((name, value)) = self.entries.pop_back() else {
                break;
            };
            self.size -= name.len() + value.len() + 32;
        }
        if self.entries.is_empty() {
            // A table emptied gives its room back.
            self.entries = VecDeque::new();
        }
    }
}

/// §5.1: an integer with an `prefix`-bit prefix, at most 2²⁸ or so.
fn integer(rest: &mut &[u8], prefix: u32) -> Result<usize, Undecodable> {
    let (&lead, mut tail) = rest.split_first().ok_or(Undecodable)?;
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(lead) & max;
    if value == max {
        let mut shift = 0;
        loop {
            let (&byte, after) = tail.split_first().ok_or(Undecodable)?;
            tail = after;
            value += usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return Err(Undecodable);
            }
        }
    }
    *rest = tail;
    Ok(value)
}

/// §5.2: a string literal: raw, or `None` once Huffman decoded into `text`.
fn string<'a>(rest: &mut &'a [u8], text: &mut Vec<u8>) -> Result<Option<&'a [u8]>, Undecodable> {
    let huffman = rest.first().is_some_and(|lead| lead & 0x80 != 0);
    let len = integer(rest, 7)?;
    if len > rest.len() {
        return Err(Undecodable);
    }
    let (raw, after) = rest.split_at(len);
    *rest = after;
    if !huffman {
        return Ok(Some(raw));
    }
    text.clear();
    huffman_decode(raw, text)?;
    Ok(None)
}

/// The Huffman code's bit length of each symbol, 256 being EOS (RFC 7541
/// Appendix B). The code is canonical: codes of one length are consecutive
/// in the order of their symbols, and follow on from the shorter ones, so
/// the lengths are the whole code.
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, //
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, //
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, //
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, //
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, //
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, //
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, //
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, //
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, //
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, //
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, //
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, //
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, //
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, //
    30,
];

const LONGEST: usize = 30;
const EOS: u16 = 256;

/// The canonical code laid out for decoding: for each length, its first
/// code, how many codes it has, and where its symbols start in `symbols`.
struct Canonical {
    first: [u32; LONGEST + 1],
    count: [u32; LONGEST + 1],
    start: [usize; LONGEST + 1],
    /// The symbols by length, then by value.
    symbols: [u16; 257],
}

const CODE: Canonical = canonical();

const fn canonical() -> Canonical {
    let mut code = Canonical {
        first: [0; LONGEST + 1],
        count: [0; LONGEST + 1],
        start: [0; LONGEST + 1],
        symbols: [0; 257],
    };
    let mut next = 0;
    let mut first = 0;
    let mut len = 1;
    while len <= LONGEST {
        code.first[len] = first;
        code.start[len] = next;
        let mut symbol = 0;
        while symbol < 257 {
            if LENGTHS[symbol] as usize == len {
                code.symbols[next] = symbol as u16;
                next += 1;
                code.count[len] += 1;
            }
            symbol += 1;
        }
        first = (first + code.count[len]) << 1;
        len += 1;
    }
    code
}

/// Decodes Huffman-coded `raw` onto `out` (§5.2): EOS inside the string,
/// or padding that is longer than seven bits or not EOS's first bits, is
/// an error.
fn huffman_decode(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Undecodable> {
    let mut code = 0u32;
    let mut len = 0;
    for &byte in raw {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            let at = code.wrapping_sub(CODE.first[len]);
            if at < CODE.count[len] {
                let symbol = CODE.symbols[CODE.start[len] + at as usize];
                if symbol == EOS {
                    return Err(Undecodable);
                }
                out.push(symbol as u8);
                code = 0;
                len = 0;
            } else if len == LONGEST {
                return Err(Undecodable);
            }
        }
    }
    if len > 7 || code != (1 << len) - 1 {
        return Err(Undecodable);
    }
    Ok(())
}

/// The static table's index of a field named `name`, if it has one.
pub fn static_name(name: &[u8]) -> Option<usize> {
    // Past the pseudo-headers: answers name no others.
    let regular = STATIC.iter().enumerate().skip(14);
    regular
        .into_iter()
        .find(|(_, (entry, _))| entry.as_bytes() == name)
        .map(|(at, _)| at + 1)
}

/// The static table (RFC 7541 Appendix A), index 1 first.
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| {
                u8::from_str_radix(std::str::from_utf8(pair).expect("hex"), 16).expect("hex")
            })
            .collect()
    }

    fn fields(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, Undecodable> {
        let mut fields = Vec::new();
        decoder.decode(block, |name, value| {
            fields.push((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        })?;
        Ok(fields)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// The Huffman code written from the lengths, as an encoder would.
    fn encode(text: &[u8]) -> Vec<u8> {
        let mut codes = [0u32; 257];
        for len in 1..=LONGEST {
            for at in 0..CODE.count[len] {
                let symbol = CODE.symbols[CODE.start[len] + at as usize];
                codes[usize::from(symbol)] = CODE.first[len] + at;
            }
        }
        let mut out = Vec::new();
        let (mut bits, mut held) = (0u64, 0);
        for &byte in text {
            let len = u32::from(LENGTHS[usize::from(byte)]);
            bits = (bits << len) | u64::from(codes[usize::from(byte)]);
            held += len;
            while held >= 8 {
                held -= 8;
                out.push((bits >> held) as u8);
            }
        }
        if held > 0 {
            out.push(((bits << (8 - held)) as u8) | (0xff >> held));
        }
        out
    }

    #[test]
    fn the_rfc_s_requests_with_huffman_decode_in_turn() {
        // RFC 7541 C.4: three requests on one connection.
        let mut decoder = Decoder::default();
        let first = hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff");
        assert_eq!(
            fields(&mut decoder, &first),
            Ok(pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ]))
        );
        let second = hex("8286 84be 5886 a8eb 1064 9cbf");
        assert_eq!(
            fields(&mut decoder, &second),
            Ok(pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ]))
        );
        let third = hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf");
        assert_eq!(
            fields(&mut decoder, &third),
            Ok(pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ]))
        );
        assert_eq!(decoder.size, 164);
    }

    #[test]
    fn every_byte_decodes_as_the_reference_decoder_reads_it() {
        let all: Vec<u8> = (0..=255).collect();
        let coded = encode(&all);
        let mut ours = Vec::new();
        huffman_decode(&coded, &mut ours).expect("decodes");
        assert_eq!(ours, all);
        let theirs = loona_hpack::huffman::HuffmanDecoder::new()
            .decode(&coded)
            .expect("the reference decodes it");
        assert_eq!(theirs, all);
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        let mut out = Vec::new();
        // 'a' (00011) then three bits of padding that are not ones.
        assert_eq!(huffman_decode(&[0b0001_1000], &mut out), Err(Undecodable));
        // EOS's thirty ones, then two more.
        assert_eq!(huffman_decode(&[0xff; 4], &mut out), Err(Undecodable));
        // A whole byte of padding.
        assert_eq!(huffman_decode(&[0x1f, 0xff], &mut out), Err(Undecodable));
        out.clear();
        assert_eq!(huffman_decode(&[0x1f], &mut out), Ok(()));
        assert_eq!(out, b"a");
    }

    #[test]
    fn truncated_or_out_of_range_blocks_are_refused() {
        let mut decoder = Decoder::default();
        for block in [
            &[0x80][..],                           // index 0
            &[0xbf],                               // index 62, an empty table
            &[0xff],                               // an integer cut short
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], // an integer too large
            &[0x00, 0x05, b'a'],                   // a name cut short
            &[0x40, 0x01, b'a', 0x85],             // a value cut short
            &[0x82, 0x3f, 0xe1, 0x1f],             // a size update after a field
            &[0x3f, 0xe2, 0x1f],                   // a size past the setting
        ] {
            assert_eq!(fields(&mut decoder, block), Err(Undecodable), "{block:?}");
        }
        assert_eq!(
            fields(&mut decoder, &[0x3f, 0xe1, 0x1f, 0x82]),
            Ok(pairs(&[(":method", "GET")]))
        );
    }

    #[test]
    fn the_table_evicts_the_oldest_and_a_size_update_shrinks_it() {
        let mut decoder = Decoder::default();
        let mut block = Vec::new();
        for n in 0..100 {
            let name = format!("x-{n:03}");
            block.push(0x40);
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(20);
            block.extend_from_slice(&[b'v'; 20]);
        }
        fields(&mut decoder, &block).expect("decodes");
        // Each entry is 5 + 20 + 32 = 57: 71 fit in 4096.
        assert_eq!(decoder.entries.len(), 71);
        assert_eq!(
            fields(&mut decoder, &[0xbe]),
            Ok(pairs(&[("x-099", &"v".repeat(20))]))
        );
        fields(&mut decoder, &[0x20]).expect("a size update to 0");
        assert_eq!(decoder.entries.len(), 0);
        assert_eq!(fields(&mut decoder, &[0xbe]), Err(Undecodable));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused(block in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut decoder = Decoder::default();
            let _ = fields(&mut decoder, &block);
            proptest::prop_assert!(decoder.size <= TABLE_SIZE);
        }

        #[test]
        fn any_text_huffman_coded_decodes_back(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut out = Vec::new();
            proptest::prop_assert_eq!(huffman_decode(&encode(&text), &mut out), Ok(()));
            proptest::prop_assert_eq!(out, text);
        }
    }

    #[test]
    fn the_static_table_is_the_rfc_s() {
        let mut reference = loona_hpack::Decoder::new();
        for index in 1..=61u8 {
            let theirs = reference
                .decode(&[0x80 | index])
                .expect("the reference decodes it");
            let ours = fields(&mut Decoder::default(), &[0x80 | index]).expect("decodes");
            assert_eq!(ours[0].0.as_bytes(), &theirs[0].0[..], "name {index}");
            assert_eq!(ours[0].1.as_bytes(), &theirs[0].1[..], "value {index}");
        }
    }
}
