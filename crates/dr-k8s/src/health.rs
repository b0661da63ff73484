//! Health checks a guarded rollout watches: [`HealthCheck`], and
//! [`HttpHealth`], an HTTP GET that wants a 2xx or 3xx answer.

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of an answer read: its status line is all that matters.
const HEAD: usize = 1024;

/// Whether a service is healthy now.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// What is checked, for reports (`GET http://web.shop:8080/healthz`).
    fn describe(&self) -> String;

    /// `Ok` where healthy; why not, otherwise.
    async fn check(&self) -> std::result::Result<(), String>;
}

/// `GET <url>` over plain HTTP/1.1, healthy on a 2xx or 3xx status within
/// its timeout (a probe of a Service's health endpoint from inside the
/// cluster). `https` URLs are refused when made: a check over TLS is a
/// [`HealthCheck`] of the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpHealth {
    url: String,
    authority: String,
    path: String,
    timeout: Duration,
}

impl HttpHealth {
    /// A check of `url` (`http://host[:port][/path]`), with a two-second
    /// timeout.
    ///
    /// # Errors
    /// A URL that is not `http://` with a host, saying why.
    pub fn new(url: &str) -> std::result::Result<Self, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url:?}: only http:// health URLs are checked here (https needs a check of your own)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains(['@', ' ']) {
            return Err(format!("{url:?} names no host"));
        }
        Ok(Self {
            url: url.to_owned(),
            authority: authority.to_owned(),
            path: path.to_owned(),
            timeout: Duration::from_secs(2),
        })
    }

    /// How long one check waits for the answer.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn status(&self) -> std::result::Result<u16, String> {
        let address = if self
            .authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            self.authority.clone()
        } else {
            format!("{}:80", self.authority)
        };
        let mut stream = TcpStream::connect(&address)
            .await
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: drkit\r\nConnection: close\r\n\r\n",
            self.path, self.authority
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        let mut head = Vec::with_capacity(HEAD);
        let mut buffer = [0; HEAD];
        while !head.contains(&b'\n') && head.len() < HEAD {
            let n = stream
                .read(&mut buffer)
                .await
                .map_err(|e| format!("reading the answer: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buffer[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        let line = line.lines().next().unwrap_or_default();
        let mut parts = line.split(' ');
        match (
            parts.next(),
            parts.next().and_then(|c| c.parse::<u16>().ok()),
        ) {
            (Some(version), Some(code)) if version.starts_with("HTTP/") => Ok(code),
            _ => Err(format!("the answer is not HTTP: {line:?}")),
        }
    }
}

#[async_trait]
impl HealthCheck for HttpHealth {
    fn describe(&self) -> String {
        format!("GET {}", self.url)
    }

    async fn check(&self) -> std::result::Result<(), String> {
        match tokio::time::timeout(self.timeout, self.status()).await {
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            Ok(Err(why)) => Err(why),
            Ok(Ok(code)) if (200..400).contains(&code) => Ok(()),
            Ok(Ok(code)) => Err(format!("answered {code}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_with_a_host() {
        let h = HttpHealth::new("http://web.shop:8080/healthz").unwrap();
        assert_eq!(
            (h.authority.as_str(), h.path.as_str()),
            ("web.shop:8080", "/healthz")
        );
        let bare = HttpHealth::new("http://web").unwrap();
        assert_eq!(bare.path, "/");
        assert!(
            HttpHealth::new("https://web/healthz")
                .unwrap_err()
                .contains("https")
        );
        assert!(HttpHealth::new("http:///x").is_err());
        assert!(HttpHealth::new("web:80").is_err());
    }
}
