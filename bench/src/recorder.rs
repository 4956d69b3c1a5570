//! What the receivers saw: one clock for send and receipt, the HDR histogram
//! of a measured window, and a copy count per sequence number so that loss
//! and duplicates are counted, not guessed from totals.

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use memchr::memmem;
use serde::{Deserialize, Serialize};

/// The marker every benchmark payload carries: `"bench":[SEQ,SENT_NS]`.
const MARKER: &[u8] = b"\"bench\":[";

/// Latency in microseconds, 1 µs to 100 s, three significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("the bounds are valid")
}

/// Shared by every sender and receiver of one generator process.
pub struct Recorder {
    /// The process clock: sends stamp `origin.elapsed()`, receipts compare to it.
    origin: Instant,
    /// Copies dispatched and received over the whole process, window or not;
    /// their difference is what is still in flight.
    dispatched: AtomicU64,
    received: AtomicU64,
    failed: AtomicU64,
    window: Mutex<Window>,
}

struct Window {
    seqs: Range<u64>,
    copies_each: u8,
    /// Copies received per sequence number of `seqs`.
    copies: Vec<u8>,
    histogram: Histogram<u64>,
    delivered: u64,
    duplicates: u64,
}

/// A measured window's receipts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Receipts {
    pub delivered: u64,
    pub duplicates: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            dispatched: AtomicU64::new(0),
            received: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            window: Mutex::new(Window {
                seqs: 0..0,
                copies_each: 1,
                copies: Vec::new(),
                histogram: new_histogram(),
                delivered: 0,
                duplicates: 0,
            }),
        }
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Starts counting receipts of `seqs`, each expected `copies_each` times,
    /// and forgets the previous window.
    pub fn open_window(&self, seqs: Range<u64>, copies_each: u8) {
        let mut window = self.window.lock().expect("no panic holds the lock");
        let len = usize::try_from(seqs.end - seqs.start).expect("a window fits in memory");
        *window = Window {
            seqs,
            copies_each,
            copies: vec![0; len],
            histogram: new_histogram(),
            delivered: 0,
            duplicates: 0,
        };
    }

    pub fn receipts(&self) -> Receipts {
        let window = self.window.lock().expect("no panic holds the lock");
        let ms = |us: u64| us as f64 / 1000.0;
        let empty = window.histogram.is_empty();
        Receipts {
            delivered: window.delivered,
            duplicates: window.duplicates,
            p50_ms: if empty {
                0.0
            } else {
                ms(window.histogram.value_at_quantile(0.50))
            },
            p99_ms: if empty {
                0.0
            } else {
                ms(window.histogram.value_at_quantile(0.99))
            },
            max_ms: if empty {
                0.0
            } else {
                ms(window.histogram.max())
            },
        }
    }

    pub fn dispatched(&self, copies: u64) {
        self.dispatched.fetch_add(copies, Ordering::Relaxed);
    }

    /// Copies that will never arrive: the send failed.
    pub fn failed(&self, copies: u64) {
        self.failed.fetch_add(copies, Ordering::Relaxed);
    }

    /// Copies dispatched and neither received nor failed.
    pub fn in_flight(&self) -> u64 {
        self.dispatched.load(Ordering::Relaxed).saturating_sub(
            self.received.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed),
        )
    }

    /// Looks for a benchmark payload in one received message (an SSE `data:`
    /// line, a socket.io packet) and records it. Anything else is ignored.
    pub fn on_message(&self, message: &[u8]) {
        let Some(at) = memmem::find(message, MARKER) else {
            return;
        };
        let Some((seq, sent_ns)) = parse_stamp(&message[at + MARKER.len()..]) else {
            return;
        };
        let latency_us = self.now_ns().saturating_sub(sent_ns) / 1000;
        self.received.fetch_add(1, Ordering::Relaxed);
        let mut window = self.window.lock().expect("no panic holds the lock");
        if !window.seqs.contains(&seq) {
            return;
        }
        let index = usize::try_from(seq - window.seqs.start).expect("inside the window");
        let copies_each = window.copies_each;
        let copies = &mut window.copies[index];
        if *copies >= copies_each {
            window.duplicates += 1;
            return;
        }
        *copies += 1;
        window.delivered += 1;
        window.histogram.saturating_record(latency_us.max(1));
    }
}

/// `SEQ,SENT_NS]` → the two numbers.
fn parse_stamp(text: &[u8]) -> Option<(u64, u64)> {
    let comma = memchr::memchr(b',', text)?;
    let close = comma + 1 + memchr::memchr(b']', &text[comma + 1..])?;
    let number = |digits: &[u8]| std::str::from_utf8(digits).ok()?.trim().parse::<u64>().ok();
    Some((number(&text[..comma])?, number(&text[comma + 1..close])?))
}

/// The payload of signal `seq` stamped `sent_ns`: an ICE candidate of about
/// 500 bytes, as a browser sends after trickling a few server-reflexive and
/// relay candidates with their extension attributes.
pub fn candidate_payload(seq: u64, sent_ns: u64) -> String {
    const CANDIDATE: &str = "candidate:3967830571 1 udp 1686052607 198.51.100.23 61447 typ srflx \
        raddr 10.0.0.17 rport 61447 generation 0 ufrag Xk3b network-id 1 network-cost 10";
    // Filler to the size of a real trickled candidate with its extensions.
    const FILLER: &str = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0";
    format!(
        "{{\"candidate\":\"{CANDIDATE}\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0,\
         \"usernameFragment\":\"Xk3b\",\"x-filler\":\"{FILLER}\",\"bench\":[{seq},{sent_ns}]}}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_about_500_bytes_and_valid_json() {
        let payload = candidate_payload(123_456, 9_876_543_210);
        assert!((450..=560).contains(&payload.len()), "{}", payload.len());
        let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(value["bench"][0], 123_456);
    }

    #[test]
    fn receipts_are_counted_once_per_expected_copy() {
        let recorder = Recorder::new();
        recorder.open_window(10..12, 2);
        let sent = recorder.now_ns();
        let frame = |seq| format!("data: {{\"payload\":{}}}", candidate_payload(seq, sent));
        for seq in [10, 10, 10, 11, 9, 12] {
            recorder.on_message(frame(seq).as_bytes());
        }
        let receipts = recorder.receipts();
        assert_eq!(receipts.delivered, 3);
        assert_eq!(receipts.duplicates, 1);
        assert!(receipts.max_ms >= receipts.p50_ms);
    }

    #[test]
    fn messages_without_a_stamp_are_ignored() {
        let recorder = Recorder::new();
        recorder.open_window(0..1, 1);
        recorder.on_message(b"event: ready");
        recorder.on_message(b"\"bench\":[x,1]");
        assert_eq!(recorder.receipts().delivered, 0);
    }
}
