//! Prometheus metrics: what they are called, the recorder, and the small
//! interface through which the domain and the HTTP layer record them.
//!
//! Counters and histograms are recorded where things happen (the inbox,
//! the readers, the handlers, the error answer) through the functions
//! here; the room and member gauges are set from the state at each scrape
//! (`http::api::metrics`), so every node of a cluster reports the
//! service's.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::Method;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const ROOMS: &str = "signalpost_rooms";
pub const MEMBERS: &str = "signalpost_members";
/// Open readers on this node, by `transport` (`sse`, `poll`).
pub const OPEN_STREAMS: &str = "signalpost_open_streams";
/// Copies of signals put in inboxes.
pub const SIGNALS_RELAYED: &str = "signalpost_signals_relayed_total";
/// Undelivered events an inbox let go past its hard bound (readers get a `gap`).
pub const EVENTS_DROPPED: &str = "signalpost_events_dropped_total";
/// Events one read of an inbox handed out: how far behind its reader was.
pub const INBOX_DEPTH: &str = "signalpost_inbox_depth";
/// Problem answers, by `code`.
pub const REJECTIONS: &str = "signalpost_rejections_total";
/// Webhook deliveries, by `outcome`: `delivered`, `retried` (an attempt
/// the receiver did not take, to be made again), `failed` (given up) or
/// `dropped` (a full queue).
pub const WEBHOOKS: &str = "signalpost_webhooks_total";
/// WHIP and WHEP offers, by `kind` (`whip`, `whep`) and `outcome`
/// (`answered`, or the code of the problem that refused it).
pub const SESSIONS: &str = "signalpost_sessions_total";
/// WHIP and WHEP sessions this node holds, by `kind`.
pub const SESSIONS_OPEN: &str = "signalpost_sessions_open";
/// Seconds from a WHIP or WHEP offer's request to its answer, by `kind`.
pub const ANSWER_TIME: &str = "signalpost_answer_seconds";
/// Time to the response head, by `method` and `route`.
pub const REQUEST_DURATION: &str = "signalpost_request_duration_seconds";

/// The process's recorder, installed once: every server of a process (the
/// tests start many) records into it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(REQUEST_DURATION.into()),
                &[
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5,
                ],
            )
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full(INBOX_DEPTH.into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                )
            })
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full(ANSWER_TIME.into()),
                    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0],
                )
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may own the process already (an embedding
        // program); then this one only renders what is recorded into it.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// How often `upkeep` runs.
pub const UPKEEP: Duration = Duration::from_secs(5);

/// Folds the values the histograms recorded since the last time into their
/// buckets. Until then the recorder holds every value in a list of its
/// own (16 bytes each, two for a relayed signal), and only a scrape of
/// `/metrics` emptied it: a server nobody scraped grew by about 80 KB a
/// second at 2 000 signals a second, without bound. `upkeep` calls it
/// every `UPKEEP`, as the exporter's own upkeep task would.
pub fn upkeep() {
    handle().run_upkeep();
}

/// Counts `copies` of a signal put in inboxes.
pub fn signals_relayed(copies: usize) {
    /// Looked up in the recorder once: a lookup builds and hashes the
    /// metric's key, on every signal.
    static COUNTER: OnceLock<Counter> = OnceLock::new();
    COUNTER
        .get_or_init(|| {
            // The recorder first, or the handle would record into nothing.
            handle();
            metrics::counter!(SIGNALS_RELAYED)
        })
        .increment(copies as u64);
}

/// Records how many items one read of an inbox handed out.
pub fn inbox_depth(items: usize) {
    /// Looked up once, as in `signals_relayed`.
    static HISTOGRAM: OnceLock<Histogram> = OnceLock::new();
    HISTOGRAM
        .get_or_init(|| {
            handle();
            metrics::histogram!(INBOX_DEPTH)
        })
        .record(items as f64);
}

/// Counts undelivered events an inbox let go past its hard bound.
pub fn events_dropped(events: u64) {
    metrics::counter!(EVENTS_DROPPED).increment(events);
}

/// Counts a webhook delivery's `outcome`.
pub fn webhook(outcome: &'static str) {
    metrics::counter!(WEBHOOKS, "outcome" => outcome).increment(1);
}

/// Counts a WHIP or WHEP session (`kind`) that got its answer.
pub fn session_opened(kind: &'static str) {
    metrics::counter!(SESSIONS, "kind" => kind, "outcome" => "answered").increment(1);
    metrics::gauge!(SESSIONS_OPEN, "kind" => kind).increment(1.0);
}

/// Counts a WHIP or WHEP offer that got no session, by the problem's code.
pub fn session_failed(kind: &'static str, code: &'static str) {
    metrics::counter!(SESSIONS, "kind" => kind, "outcome" => code).increment(1);
}

/// A session this node held ended (`kind`).
pub fn session_closed(kind: &'static str) {
    metrics::gauge!(SESSIONS_OPEN, "kind" => kind).decrement(1.0);
}

/// Records how long an answered offer took, from its request to its answer.
pub fn answer_time(kind: &'static str, elapsed: Duration) {
    metrics::histogram!(ANSWER_TIME, "kind" => kind).record(elapsed.as_secs_f64());
}

/// Counts a problem answer with its `code`.
pub fn rejection(code: &'static str) {
    metrics::counter!(REJECTIONS, "code" => code).increment(1);
}

/// Sets the room and member gauges to what the state holds.
pub fn state_counts(rooms: usize, members: usize) {
    metrics::gauge!(ROOMS).set(rooms as f64);
    metrics::gauge!(MEMBERS).set(members as f64);
}

/// The metrics in Prometheus's text format.
pub fn render() -> String {
    handle().render()
}

/// Counts a reader as open until dropped.
pub struct OpenStream(&'static str);

impl OpenStream {
    pub fn new(transport: &'static str) -> Self {
        metrics::gauge!(OPEN_STREAMS, "transport" => transport).increment(1.0);
        Self(transport)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!(OPEN_STREAMS, "transport" => self.0).decrement(1.0);
    }
}

/// The `method` labels: named methods only, since a label taken from
/// whatever a client sends would grow without bound.
const METHODS: [&str; 8] = [
    "GET", "POST", "PATCH", "DELETE", "OPTIONS", "HEAD", "PUT", "other",
];

/// A request method, as one of `METHODS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodLabel(usize);

impl MethodLabel {
    pub fn of(method: &Method) -> Self {
        let named = METHODS[..METHODS.len() - 1]
            .iter()
            .position(|name| *name == method.as_str());
        Self(named.unwrap_or(METHODS.len() - 1))
    }

    pub fn as_str(self) -> &'static str {
        METHODS[self.0]
    }
}

/// The request times of one route template, a histogram per method, each
/// looked up in the recorder the first time and kept: the recorder's own
/// lookup builds and hashes a labelled key, with the route copied into it,
/// for every request. The routes are those of the router, so the pairs are
/// bounded.
#[derive(Debug)]
pub struct RouteTimes {
    route: Box<str>,
    by_method: [OnceLock<Histogram>; METHODS.len()],
}

impl RouteTimes {
    pub fn new(route: &str) -> Self {
        Self {
            route: route.into(),
            by_method: Default::default(),
        }
    }

    pub fn route(&self) -> &str {
        &self.route
    }

    /// Records a request's time to its response head.
    pub fn record(&self, method: MethodLabel, elapsed: Duration) {
        self.by_method[method.0]
            .get_or_init(|| {
                metrics::histogram!(
                    REQUEST_DURATION,
                    "method" => method.as_str(),
                    "route" => self.route.to_string()
                )
            })
            .record(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_methods_are_their_own_label_and_the_rest_are_other() {
        for name in ["GET", "POST", "PATCH", "DELETE", "OPTIONS", "HEAD", "PUT"] {
            let method = Method::from_bytes(name.as_bytes()).expect("a method");
            assert_eq!(MethodLabel::of(&method).as_str(), name);
        }
        for name in ["TRACE", "CONNECT", "PROPFIND", "get"] {
            let method = Method::from_bytes(name.as_bytes()).expect("a method");
            assert_eq!(MethodLabel::of(&method).as_str(), "other", "{name}");
        }
    }
}
