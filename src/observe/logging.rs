//! How the server's log lines are written: text for people or JSON, filtered
//! by `RUST_LOG`, and every line written while a request is being handled
//! inside a `request` span that names the request's id (`request_id=…` in
//! text, `span.request_id` in JSON).
//!
//! The span is opened when a line is written, not when a request starts.
//! Most requests write no line (no relayed signal does), and a span opened
//! for every request, with its id formatted into it, cost a tenth of a
//! relayed signal's instructions. A line knows its request through
//! `observe::request`'s task-local id, which is in scope for as long as a request is
//! handled; so a line from any crate gets its span, as before.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt;

use super::request;
use crate::config::LogFormat;

/// Starts logging to standard output in `format`, at `RUST_LOG`'s levels
/// (default `info`). Once per process; a second call does nothing.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // `try_init`: a second call leaves the first subscriber in place
    // instead of panicking.
    let _ = match format {
        // Colours only for a person at a terminal: escape codes in a log
        // file or a journal are noise (and `NO_COLOR` turns them off too).
        LogFormat::Text => InRequest(
            tracing_subscriber::fmt()
                .with_ansi(
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                )
                .with_env_filter(filter)
                .finish(),
        )
        .try_init(),
        LogFormat::Json => InRequest(
            tracing_subscriber::fmt()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_env_filter(filter)
                .finish(),
        )
        .try_init(),
    };
}

/// The subscriber it wraps, except that an event written while a request
/// is handled is written inside that request's span.
struct InRequest<S>(S);

impl<S: Subscriber> Subscriber for InRequest<S> {
    fn event(&self, event: &Event<'_>) {
        // Opened through the global dispatcher, which is this subscriber:
        // the span is the inner one's like any other, then closed when
        // dropped after the event.
        let span = request::with_current_id(|id| tracing::info_span!("request", request_id = %id));
        match span {
            Some(span) if !span.is_disabled() => span.in_scope(|| self.0.event(event)),
            _ => self.0.event(event),
        }
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.0.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn event_enabled(&self, event: &Event<'_>) -> bool {
        self.0.event_enabled(event)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.0.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.0.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.0.record_follows_from(span, follows);
    }

    fn enter(&self, span: &Id) {
        self.0.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.0.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.0.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.0.try_close(id)
    }

    fn current_span(&self) -> Current {
        self.0.current_span()
    }
}
