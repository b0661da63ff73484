//! [`CapturedEvents`]: the `tracing` events a test's code emits, as text,
//! to check that a retry, a reconnect or a fallback says so.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Metadata, Subscriber};

/// Collects every event emitted on this thread while its guard lives, as
/// `LEVEL field=value ...` lines (the message is the field `message`).
/// Spans are accepted and not recorded.
///
/// The capture is the thread's default subscriber: on a current-thread
/// runtime (`#[tokio::test]`'s default) it sees the spawned tasks too.
///
/// ```
/// let events = dr_testkit::CapturedEvents::new();
/// let guard = events.capture();
/// tracing::warn!(attempt = 2, "retrying");
/// drop(guard);
/// assert!(events.any(|line| line.starts_with("WARN") && line.contains("attempt=2")));
/// ```
#[derive(Default, Clone)]
pub struct CapturedEvents(Arc<Mutex<Vec<String>>>);

impl CapturedEvents {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Captures this thread's events until the guard is dropped.
    pub fn capture(&self) -> DefaultGuard {
        tracing::subscriber::set_default(self.clone())
    }

    /// The events captured so far.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether any event captured so far matches.
    pub fn any(&self, matches: impl Fn(&str) -> bool) -> bool {
        self.lines().iter().any(|line| matches(line))
    }
}

impl fmt::Debug for CapturedEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.lines()).finish()
    }
}

impl Subscriber for CapturedEvents {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        struct Line<'a>(&'a mut String);
        impl Visit for Line<'_> {
            fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        let mut line = event.metadata().level().to_string();
        event.record(&mut Line(&mut line));
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}
