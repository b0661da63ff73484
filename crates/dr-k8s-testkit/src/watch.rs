//! Watch: the store's changes as events, filtered for one watcher, streamed as
//! newline-delimited JSON over a chunked response that stays open.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change in the store, at one resourceVersion.
#[derive(Debug)]
pub(crate) struct Event {
    /// The resourceVersion the change made.
    pub(crate) revision: u64,
    pub(crate) kind: EventType,
    pub(crate) group: &'static str,
    pub(crate) plural: &'static str,
    /// `""` for a cluster-scoped object.
    pub(crate) namespace: String,
    /// The object after the change; for a deletion, as it was, with the deletion's
    /// resourceVersion.
    pub(crate) object: Value,
    /// For a modification, the object before it: a watcher whose selector the object enters
    /// or leaves sees it ADDED or DELETED.
    pub(crate) previous: Option<Value>,
}

/// Which changes one watcher sees: one resource, maybe one namespace, the selectors.
#[derive(Debug)]
pub(crate) struct WatchFilter {
    pub(crate) kind: &'static ResourceType,
    pub(crate) namespace: Option<String>,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl WatchFilter {
    /// Whether an object of the watched resource passes the namespace and the selectors.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("");
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.labels.matches(object["metadata"].get("labels"))
            && self.fields.matches(object)
    }

    /// The event this watcher is sent for a change, if any.
    pub(crate) fn translate(&self, event: &Event) -> Option<Value> {
        if event.group != self.kind.group || event.plural != self.kind.plural {
            return None;
        }
        if self
            .namespace
            .as_deref()
            .is_some_and(|ns| ns != event.namespace)
        {
            return None;
        }
        let now = self.matches(&event.object);
        let before = event.previous.as_ref().is_some_and(|p| self.matches(p));
        let kind = match event.kind {
            EventType::Added if now => "ADDED",
            EventType::Deleted if now => "DELETED",
            EventType::Modified if now && before => "MODIFIED",
            EventType::Modified if now => "ADDED",
            EventType::Modified if before => "DELETED",
            _ => return None,
        };
        Some(Self::event(kind, &event.object))
    }

    /// `{"type": kind, "object": object}`.
    pub(crate) fn event(kind: &str, object: &Value) -> Value {
        json!({"type": kind, "object": object})
    }

    /// A BOOKMARK: an object of the watched kind carrying only its resourceVersion (and, at
    /// the end of the initial events of `sendInitialEvents`, the annotation that says so).
    pub(crate) fn bookmark(&self, revision: u64, initial_events_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        Self::event(
            "BOOKMARK",
            &json!({
                "kind": self.kind.kind,
                "apiVersion": self.kind.api_version(),
                "metadata": metadata,
            }),
        )
    }

    /// The ERROR event for a resourceVersion older than the history: a `Status`, 410 Expired.
    pub(crate) fn expired(from: u64, oldest: u64) -> Value {
        Self::event(
            "ERROR",
            &json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": format!("too old resource version: {from} ({oldest})"),
                "reason": "Expired",
                "code": 410,
            }),
        )
    }
}

/// What a watch sends before the changes to come.
#[derive(Debug)]
pub(crate) struct WatchStart {
    /// Events to send at once.
    pub(crate) initial: Vec<Value>,
    /// The store's resourceVersion when the watch started.
    pub(crate) revision: u64,
}

/// A watch as the store starts it.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) start: WatchStart,
    /// The changes to come; `None` when the watch ends after its first events (410).
    pub(crate) receiver: Option<broadcast::Receiver<Arc<Event>>>,
    pub(crate) filter: WatchFilter,
    /// Whether the client asked for BOOKMARK events (`allowWatchBookmarks=true`).
    pub(crate) bookmarks: bool,
}

/// How a watch is paced: how often bookmarks go out, when the watch ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacing {
    pub(crate) bookmark_interval: Duration,
    /// `timeoutSeconds`.
    pub(crate) timeout: Option<Duration>,
}

/// The body of a response: one JSON document, or a watch's events as they come.
#[derive(Debug)]
pub(crate) enum ResponseBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ResponseBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream(receiver) => receiver
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResponseBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            // An exact size makes hyper send Content-Length; a stream goes chunked.
            ResponseBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// Streams a watch: its first events, then each change that passes its filter, bookmarks
/// now and then when asked for, until the timeout, the client going away, or the watcher
/// falling too far behind (then an ERROR event, 410 Expired, as a real server's cache sends).
pub(crate) fn stream(watch: Watch, pacing: Pacing) -> ResponseBody {
    let (sender, receiver) = mpsc::channel(64);
    // The task ends when the body is dropped (the connection closed or aborted with the
    // server), at the timeout, or when the store is gone.
    tokio::spawn(forward(watch, pacing, sender));
    ResponseBody::Stream(receiver)
}

fn line(event: &Value) -> Bytes {
    let mut text = serde_json::to_vec(event).expect("a JSON value serializes");
    text.push(b'\n');
    Bytes::from(text)
}

async fn forward(watch: Watch, pacing: Pacing, sender: mpsc::Sender<Bytes>) {
    let Watch {
        start,
        receiver,
        filter,
        bookmarks,
    } = watch;
    for event in &start.initial {
        if sender.send(line(event)).await.is_err() {
            return;
        }
    }
    let Some(mut receiver) = receiver else {
        return;
    };
    let mut revision = start.revision;
    let deadline = pacing.timeout.map(|t| Instant::now() + t);
    let timeout = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    let mut ticker = tokio::time::interval_at(
        Instant::now() + pacing.bookmark_interval,
        pacing.bookmark_interval,
    );
    loop {
        let event = tokio::select! {
            () = sender.closed() => return,
            () = &mut timeout => return,
            _ = ticker.tick(), if bookmarks => Some(filter.bookmark(revision, false)),
            received = receiver.recv() => match received {
                Ok(change) => {
                    revision = change.revision;
                    filter.translate(&change)
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = sender.send(line(&WatchFilter::expired(revision, revision))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if let Some(event) = event
            && sender.send(line(&event)).await.is_err()
        {
            return;
        }
    }
}
