//! HTTP/2's frames (RFC 9113 §4, §6): the nine-byte header read, and the
//! frames this server sends written into the connection's outgoing bytes.

use bytes::{BufMut, BytesMut};

/// The connection preface a client opens with (§3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const HEADER_LEN: usize = 9;

/// The largest frame payload either side may send until told otherwise,
/// and the largest this server takes (§4.2).
pub const DEFAULT_MAX_FRAME: usize = 16_384;

/// The largest flow-control window (§6.9.1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

/// The window each side starts a stream and the connection with (§6.9.2).
pub const DEFAULT_WINDOW: i64 = 65_535;

pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// The settings this server reads or sends (§6.5.2).
pub mod setting {
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// Error codes (§7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    NoError = 0x0,
    Protocol = 0x1,
    Internal = 0x2,
    FlowControl = 0x3,
    StreamClosed = 0x5,
    FrameSize = 0x6,
    RefusedStream = 0x7,
    Compression = 0x9,
    EnhanceYourCalm = 0xb,
}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    /// The header at the start of `bytes`, if all nine bytes are there.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let header: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]);
        Some(Self {
            len: len as usize,
            kind: header[3],
            flags: header[4],
            // The reserved bit is ignored on receipt (§4.1).
            stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Writes a frame's header; its payload follows.
pub fn head(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    out.put_slice(&header(len, kind, flags, stream));
}

/// A frame's header, as its nine bytes.
pub fn header(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    debug_assert!(
        len < 1 << 24,
        "frame payloads are bounded by the frame size"
    );
    let [_, len @ ..] = (len as u32).to_be_bytes();
    let [a, b, c, d] = stream.to_be_bytes();
    [len[0], len[1], len[2], kind, flags, a, b, c, d]
}

pub fn settings(out: &mut BytesMut, values: &[(u16, u32)]) {
    head(out, values.len() * 6, kind::SETTINGS, 0, 0);
    for &(id, value) in values {
        out.put_u16(id);
        out.put_u32(value);
    }
}

pub fn settings_ack(out: &mut BytesMut) {
    head(out, 0, kind::SETTINGS, flag::ACK, 0);
}

pub fn ping_ack(out: &mut BytesMut, payload: &[u8]) {
    head(out, payload.len(), kind::PING, flag::ACK, 0);
    out.put_slice(payload);
}

pub fn window_update(out: &mut BytesMut, stream: u32, increment: u32) {
    head(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.put_u32(increment);
}

pub fn rst_stream(out: &mut BytesMut, stream: u32, code: Code) {
    head(out, 4, kind::RST_STREAM, 0, stream);
    out.put_u32(code as u32);
}

pub fn goaway(out: &mut BytesMut, last_stream: u32, code: Code) {
    head(out, 8, kind::GOAWAY, 0, 0);
    out.put_u32(last_stream);
    out.put_u32(code as u32);
}

pub fn data(out: &mut BytesMut, stream: u32, payload: &[u8], end: bool) {
    let flags = if end { flag::END_STREAM } else { 0 };
    head(out, payload.len(), kind::DATA, flags, stream);
    out.put_slice(payload);
}

/// The payload of a frame that may be padded (DATA, HEADERS): without its
/// pad length and padding, or `None` when the padding is longer than the
/// frame (§6.1).
pub fn unpadded(head: &Head, payload: &[u8]) -> Option<(usize, usize)> {
    if !head.has(flag::PADDED) {
        return Some((0, payload.len()));
    }
    let (&pad, rest) = payload.split_first()?;
    let end = rest.len().checked_sub(usize::from(pad))?;
    Some((1, 1 + end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_written_reads_back() {
        let mut out = BytesMut::new();
        head(&mut out, 70_000, kind::HEADERS, flag::END_HEADERS, 7);
        assert_eq!(
            Head::parse(&out),
            Some(Head {
                len: 70_000,
                kind: kind::HEADERS,
                flags: flag::END_HEADERS,
                stream: 7
            })
        );
        assert_eq!(Head::parse(&out[..8]), None);
    }

    #[test]
    fn the_reserved_bit_is_ignored() {
        let header = [0, 0, 4, kind::WINDOW_UPDATE, 0, 0x80, 0, 0, 3];
        assert_eq!(Head::parse(&header).map(|head| head.stream), Some(3));
    }

    #[test]
    fn padding_longer_than_the_frame_is_refused() {
        let padded = Head {
            len: 4,
            kind: kind::DATA,
            flags: flag::PADDED,
            stream: 1,
        };
        assert_eq!(unpadded(&padded, &[2, b'a', 0, 0]), Some((1, 2)));
        assert_eq!(unpadded(&padded, &[4, b'a', 0, 0]), None);
        assert_eq!(unpadded(&padded, &[]), None);
    }
}
