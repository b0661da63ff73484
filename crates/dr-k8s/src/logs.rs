//! [`Cluster::logs`]: the logs of a workload's pods, between two times or
//! the last lines, for the RCA report (`kubectl logs -l … --since-time …`).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};

use crate::cluster::Cluster;
use crate::error::Result;

/// Which logs [`Cluster::logs`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    namespace: String,
    labels: Option<String>,
    pod: Option<String>,
    container: Option<String>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    tail: Option<i64>,
    previous: bool,
}

impl LogQuery {
    /// The logs of the pods `labels` selects in `namespace`
    /// (`app=livekit`).
    pub fn labels(namespace: impl Into<String>, labels: impl Into<String>) -> Self {
        Self::new(namespace.into(), Some(labels.into()), None)
    }

    /// The log of the pod `pod` in `namespace`.
    pub fn pod(namespace: impl Into<String>, pod: impl Into<String>) -> Self {
        Self::new(namespace.into(), None, Some(pod.into()))
    }

    fn new(namespace: String, labels: Option<String>, pod: Option<String>) -> Self {
        Self {
            namespace,
            labels,
            pod,
            container: None,
            since: None,
            until: None,
            tail: None,
            previous: false,
        }
    }

    /// Of this container (needed where pods have several).
    #[must_use]
    pub fn container(mut self, container: impl Into<String>) -> Self {
        self.container = Some(container.into());
        self
    }

    /// Lines written at `since` or after, and before `until` (both or
    /// either): the incident's window.
    #[must_use]
    pub fn between(mut self, since: Option<Timestamp>, until: Option<Timestamp>) -> Self {
        self.since = since;
        self.until = until;
        self
    }

    /// Only the last `lines` lines (of the window, where one is set).
    #[must_use]
    pub fn tail(mut self, lines: i64) -> Self {
        self.tail = Some(lines);
        self
    }

    /// The previous container's log: the one that crashed.
    #[must_use]
    pub fn previous(mut self, previous: bool) -> Self {
        self.previous = previous;
        self
    }
}

/// One line of a log, with the time the kubelet gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written.
    pub at: Timestamp,
    /// The line, without its end.
    pub text: String,
}

/// The log of one pod's container.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PodLog {
    /// The pod.
    pub pod: String,
    /// The container, where one was named.
    pub container: Option<String>,
    /// Its lines in the window, oldest first.
    pub lines: Vec<LogLine>,
}

impl Cluster {
    /// The logs `query` asks for, a [`PodLog`] per pod (by name), each
    /// line with its time. The window's start goes to the server
    /// (`sinceTime`, in whole seconds) and is applied here exactly; its end
    /// is applied here (the API has no `untilTime`), by the kubelet's
    /// timestamp of each line, before the tail.
    ///
    /// # Errors
    /// [`Error::Api`](crate::Error::Api) (400 where a pod has several
    /// containers and none is named, or has no previous container; 404
    /// for a pod that does not exist), [`Error::Client`](crate::Error::Client).
    pub async fn logs(&self, query: &LogQuery) -> Result<Vec<PodLog>> {
        let pods: Api<Pod> = Api::namespaced(self.client().clone(), &query.namespace);
        let mut names = match (&query.pod, &query.labels) {
            (Some(pod), _) => vec![pod.clone()],
            (None, labels) => {
                let mut params = ListParams::default();
                if let Some(labels) = labels {
                    params = params.labels(labels);
                }
                pods.list(&params)
                    .await
                    .map_err(|e| {
                        self.failed(format!("listing pods in namespace {}", query.namespace), e)
                    })?
                    .items
                    .into_iter()
                    .filter_map(|p| p.metadata.name)
                    .collect()
            }
        };
        names.sort();
        let params = LogParams {
            container: query.container.clone(),
            previous: query.previous,
            // The server takes whole seconds: the window's exact start is
            // applied here too.
            since_time: query
                .since
                .map(|t| Timestamp::from_second(t.as_second()).unwrap_or(t)),
            // With a window, the tail is taken here, after it.
            tail_lines: query
                .tail
                .filter(|_| query.until.is_none() && query.since.is_none()),
            timestamps: true,
            ..LogParams::default()
        };
        let mut logs = Vec::with_capacity(names.len());
        for pod in names {
            let text = pods.logs(&pod, &params).await.map_err(|e| {
                self.failed(
                    format!(
                        "reading the log of pod {pod} in namespace {}",
                        query.namespace
                    ),
                    e,
                )
            })?;
            let mut lines: Vec<LogLine> = text
                .lines()
                .filter_map(parse_line)
                .filter(|l| query.since.is_none_or(|since| l.at >= since))
                .filter(|l| query.until.is_none_or(|until| l.at < until))
                .collect();
            if let Some(tail) = query
                .tail
                .filter(|_| query.until.is_some() || query.since.is_some())
            {
                let keep = usize::try_from(tail).unwrap_or(0);
                let skip = lines.len().saturating_sub(keep);
                lines.drain(..skip);
            }
            logs.push(PodLog {
                pod,
                container: query.container.clone(),
                lines,
            });
        }
        Ok(logs)
    }
}

/// `<RFC 3339 time> <text>`, as the kubelet writes a line with
/// `timestamps=true`.
fn parse_line(line: &str) -> Option<LogLine> {
    let (at, text) = line.split_once(' ').unwrap_or((line, ""));
    Some(LogLine {
        at: at.parse().ok()?,
        text: text.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_kubelets_time() {
        let line = parse_line("2026-12-07T08:00:01.123456789Z room created: abc").unwrap();
        assert_eq!(line.text, "room created: abc");
        assert_eq!(line.at.to_string(), "2026-12-07T08:00:01.123456789Z");
        assert_eq!(parse_line("2026-12-07T08:00:01Z").unwrap().text, "");
        assert!(parse_line("no time here").is_none());
    }
}
