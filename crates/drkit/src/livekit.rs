//! The settings of `livekit` components: the `[component.livekit]` table —
//! the SFU's API URL, its key and where its secret is read from, a warm
//! standby, and how clients are pointed at it after a failover.

use serde::Deserialize;
use toml::Spanned;

use crate::config::Source;
use crate::error::Result;
use crate::secret::SecretSource;

/// Where a `livekit` component's server is and how to reach its API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveKitSettings {
    url: String,
    api_key: String,
    api_secret: SecretSource,
    standby_url: Option<String>,
    rewire_command: Option<Vec<String>>,
    redis_component: Option<String>,
    concurrency: Option<usize>,
}

impl LiveKitSettings {
    /// The SFU's API URL (`http(s)://` or `ws(s)://`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The API key (not a secret: it names the secret).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Where the API secret is read from.
    pub fn api_secret(&self) -> &SecretSource {
        &self.api_secret
    }

    /// The warm standby's API URL (the same key and secret), if any.
    pub fn standby_url(&self) -> Option<&str> {
        self.standby_url.as_deref()
    }

    /// The command that points clients at the server a failover promoted:
    /// its words, with `{url}` replaced by that server's URL.
    pub fn rewire_command(&self) -> Option<&[String]> {
        self.rewire_command.as_deref()
    }

    /// The `redis` component (in the same config) that is LiveKit's own
    /// Redis, where a multi-node LiveKit keeps its state: its snapshots give
    /// the byte-exact restore of LiveKit's durable keys.
    pub fn redis_component(&self) -> Option<&str> {
        self.redis_component.as_deref()
    }

    /// How many API calls at once when many rooms are read or restored;
    /// `None`: dr-livekit's default.
    pub fn concurrency(&self) -> Option<usize> {
        self.concurrency
    }
}

/// `[component.livekit]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLiveKit {
    url: String,
    api_key: String,
    api_secret: SecretSource,
    standby_url: Option<String>,
    rewire_command: Option<Vec<String>>,
    redis_component: Option<String>,
    concurrency: Option<usize>,
}

/// A URL drkit can reach a LiveKit API at.
fn check_url(url: &str) -> std::result::Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let rest = ["http://", "https://", "ws://", "wss://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(format!(
            "{url:?}; expected the API's URL, such as \"http://livekit.livekit:7880\" \
             (http, https, ws or wss)"
        )),
    }
}

impl LiveKitSettings {
    /// Checks a parsed `[component.livekit]`; `field` is its path.
    pub(crate) fn check(
        raw: Spanned<RawLiveKit>,
        source: &Source<'_>,
        field: &str,
    ) -> Result<Self> {
        let span = raw.span();
        let raw = raw.into_inner();
        let error = |sub: &str, message: &str| {
            source.error(Some(span.clone()), &format!("{field}.{sub}"), message)
        };
        check_url(&raw.url).map_err(|m| error("url", &m))?;
        if let Some(standby) = &raw.standby_url {
            check_url(standby).map_err(|m| error("standby_url", &m))?;
            if standby.trim_end_matches('/') == raw.url.trim_end_matches('/') {
                return Err(error(
                    "standby_url",
                    "the standby is the server itself; expected another server's URL",
                ));
            }
        }
        if raw
            .rewire_command
            .as_ref()
            .is_some_and(|words| words.is_empty() || words[0].is_empty())
        {
            return Err(error(
                "rewire_command",
                "an empty command; expected its words, such as [\"/etc/drkit/point-dns.sh\", \"{url}\"]",
            ));
        }
        if raw.rewire_command.is_some() && raw.standby_url.is_none() {
            return Err(error(
                "rewire_command",
                "a rewire command without a standby_url: there is nothing to fail over to",
            ));
        }
        if raw.api_key.trim().is_empty() {
            return Err(error(
                "api_key",
                "an empty key; expected the API key's name",
            ));
        }
        if raw.concurrency == Some(0) {
            return Err(error("concurrency", "0 calls at once; expected at least 1"));
        }
        Ok(Self {
            url: raw.url,
            api_key: raw.api_key,
            api_secret: raw.api_secret,
            standby_url: raw.standby_url,
            rewire_command: raw.rewire_command,
            redis_component: raw.redis_component,
            concurrency: raw.concurrency,
        })
    }

    /// A client of the server at `url` (the component's or its
    /// standby's), the secret read now with `env`.
    ///
    /// # Errors
    /// The secret cannot be read; dr-livekit refuses the settings.
    pub async fn client_of(
        &self,
        url: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<dr_livekit::LiveKit> {
        let secret = self.api_secret.resolve(env).await?;
        let mut client =
            dr_livekit::LiveKit::new(url, &self.api_key, secret.expose()).map_err(|e| {
                crate::error::Error::Invalid {
                    what: "LiveKit server",
                    input: url.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        if let Some(calls) = self.concurrency {
            client = client.with_concurrency(calls);
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_the_api_s() {
        assert!(check_url("http://livekit.livekit:7880").is_ok());
        assert!(check_url("wss://sfu.example.com").is_ok());
        assert!(check_url("livekit:7880").is_err());
        assert!(check_url("http://").is_err());
    }
}
