//! Containers' logs: what a test writes for a pod's container, and the `pods/log` subresource
//! that serves it as the kubelet does.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::Value;

use crate::status::ApiError;

/// One line a container wrote, and when.
#[derive(Debug, Clone)]
struct Line {
    time: Timestamp,
    /// Ends with a newline.
    text: String,
}

/// The logs of one container: the running one's and, after a restart, the one before's.
#[derive(Debug, Default)]
struct ContainerLogs {
    current: Vec<Line>,
    previous: Option<Vec<Line>>,
}

/// Every container's logs, by pod uid and container name.
#[derive(Debug, Default)]
pub(crate) struct Logs {
    containers: BTreeMap<(String, String), ContainerLogs>,
}

impl Logs {
    /// Appends a line (a newline is added if it has none).
    pub(crate) fn append(&mut self, pod_uid: &str, container: &str, time: Timestamp, line: &str) {
        let mut text = line.to_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        self.containers
            .entry((pod_uid.to_owned(), container.to_owned()))
            .or_default()
            .current
            .push(Line { time, text });
    }

    /// A restart: the logs so far become the previous container's, the new one has none.
    pub(crate) fn restart(&mut self, pod_uid: &str, container: &str) {
        let logs = self
            .containers
            .entry((pod_uid.to_owned(), container.to_owned()))
            .or_default();
        logs.previous = Some(std::mem::take(&mut logs.current));
    }

    /// A pod's logs go with it.
    pub(crate) fn forget(&mut self, pod_uid: &str) {
        self.containers.retain(|(uid, _), _| uid != pod_uid);
    }

    fn lines(&self, pod_uid: &str, container: &str, previous: bool) -> Option<&[Line]> {
        let logs = self
            .containers
            .get(&(pod_uid.to_owned(), container.to_owned()));
        if previous {
            logs.and_then(|l| l.previous.as_deref())
        } else {
            Some(logs.map_or(&[][..], |l| &l.current))
        }
    }
}

/// The `PodLogOptions` a `GET .../log` takes from its query.
#[derive(Debug, Default)]
struct LogOptions {
    container: Option<String>,
    previous: bool,
    timestamps: bool,
    tail_lines: Option<usize>,
    since_seconds: Option<i64>,
    since_time: Option<Timestamp>,
    limit_bytes: Option<usize>,
}

fn flag(value: &str) -> bool {
    matches!(value, "1" | "true" | "True")
}

impl LogOptions {
    fn parse(query: &str) -> Result<Self, ApiError> {
        let mut options = LogOptions::default();
        let number = |key: &str, value: &str| {
            value
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("{key} is not an integer: {value:?}")))
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = crate::api::percent_decode(value);
            match key {
                "container" => options.container = Some(value).filter(|c| !c.is_empty()),
                "previous" => options.previous = flag(&value),
                "timestamps" => options.timestamps = flag(&value),
                "tailLines" => {
                    let lines = number(key, &value)?;
                    options.tail_lines = Some(usize::try_from(lines).map_err(|_| {
                        ApiError::bad_request("tailLines: Invalid value: must be >= 0")
                    })?);
                }
                "sinceSeconds" => {
                    let seconds = number(key, &value)?;
                    if seconds < 1 {
                        return Err(ApiError::bad_request(
                            "sinceSeconds: Invalid value: must be greater than 0",
                        ));
                    }
                    options.since_seconds = Some(seconds);
                }
                "sinceTime" => {
                    options.since_time = Some(value.parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "sinceTime is not an RFC 3339 time: {value:?}"
                        ))
                    })?);
                }
                "limitBytes" => {
                    let bytes = number(key, &value)?;
                    if bytes < 1 {
                        return Err(ApiError::bad_request(
                            "limitBytes: Invalid value: must be greater than 0",
                        ));
                    }
                    options.limit_bytes = usize::try_from(bytes).ok();
                }
                // `follow` is answered as without it; the rest are of no concern here.
                _ => {}
            }
        }
        if options.since_seconds.is_some() && options.since_time.is_some() {
            return Err(ApiError::bad_request(
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            ));
        }
        Ok(options)
    }
}

fn names(containers: &Value) -> Vec<&str> {
    containers
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The container a request means: the one named (among the containers and init
/// containers), or the only one; else a 400 in the real server's words.
fn container_of<'a>(pod: &'a Value, wanted: Option<&str>) -> Result<&'a str, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let containers = names(&pod["spec"]["containers"]);
    let init = names(&pod["spec"]["initContainers"]);
    match wanted {
        Some(wanted) => containers
            .iter()
            .chain(&init)
            .find(|c| **c == wanted)
            .copied()
            .ok_or_else(|| {
                ApiError::bad_request(format!("container {wanted} is not valid for pod {name}"))
            }),
        None if containers.len() == 1 => Ok(containers[0]),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// Whether the container has started, from the pod's status: the kubelet's refusal if not.
fn check_started(pod: &Value, container: &str) -> Result<(), ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let statuses = ["containerStatuses", "initContainerStatuses"];
    let status = statuses
        .iter()
        .flat_map(|field| pod["status"][field].as_array().into_iter().flatten())
        .find(|s| s["name"] == container);
    let waiting = match status {
        None => Some("ContainerCreating"),
        Some(s) if s["state"].get("waiting").is_some() => Some(
            s["state"]["waiting"]["reason"]
                .as_str()
                .unwrap_or("ContainerCreating"),
        ),
        Some(_) => None,
    };
    match waiting {
        Some(reason) => Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        ))),
        None => Ok(()),
    }
}

/// `GET .../pods/{name}/log`: the container's lines, as text, filtered and shaped by the
/// query (`container`, `previous`, `sinceSeconds` or `sinceTime`, `tailLines`,
/// `timestamps`, `limitBytes`, in the kubelet's order).
pub(crate) fn serve(logs: &Logs, pod: &Value, query: &str) -> Result<Vec<u8>, ApiError> {
    let options = LogOptions::parse(query)?;
    let container = container_of(pod, options.container.as_deref())?;
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    let lines = match logs.lines(uid, container, options.previous) {
        Some(lines) => lines,
        None => {
            return Err(ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            )));
        }
    };
    if !options.previous {
        check_started(pod, container)?;
    }
    let since = match (options.since_time, options.since_seconds) {
        (Some(time), _) => Some(time),
        (None, Some(seconds)) => Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_secs(seconds))
            .ok(),
        (None, None) => None,
    };
    let kept: Vec<&Line> = lines
        .iter()
        .filter(|l| since.is_none_or(|since| l.time >= since))
        .collect();
    let from = options
        .tail_lines
        .map_or(0, |tail| kept.len().saturating_sub(tail));
    let mut text = Vec::new();
    for line in &kept[from..] {
        if options.timestamps {
            // The kubelet's RFC3339NanoFixed: always nine digits.
            let time = line.time.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string();
            text.extend_from_slice(time.as_bytes());
            text.push(b' ');
        }
        text.extend_from_slice(line.text.as_bytes());
    }
    if let Some(limit) = options.limit_bytes {
        // Bytes, as the kubelet counts them, even inside a character.
        text.truncate(limit);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_nine_digits_as_the_kubelet_writes_them() {
        let mut logs = Logs::default();
        let time: Timestamp = "2026-01-02T03:04:05.5Z".parse().unwrap();
        logs.append("uid", "c", time, "hello");
        let pod = serde_json::json!({
            "metadata": {"name": "p", "uid": "uid"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"containerStatuses": [{"name": "c", "state": {"running": {}}}]},
        });
        let text = serve(&logs, &pod, "timestamps=true").unwrap();
        assert_eq!(text, b"2026-01-02T03:04:05.500000000Z hello\n");
        let text = serve(&logs, &pod, "limitBytes=3").unwrap();
        assert_eq!(text, b"hel");
    }
}
