//! `[component.failover]`, for `postgres` and `redis` components: the
//! members (each reached like the component's own server, with its
//! credentials and TLS, at its own host and port), what a failover may
//! lose, how an unreachable member is fenced, how clients are pointed at
//! the new primary, and whether the agent fails over by itself.

use serde::Deserialize;

use crate::config::{Hosts, Interval, Parsed};

/// A component's `[component.failover]` table: the members (each reached
/// like the component's server, at its own host and port), what a failover
/// may lose, and how an unreachable member is fenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverSettings {
    pub(crate) members: Vec<MemberSettings>,
    loss_limit: LossLimitSetting,
    fence_command: Option<Vec<String>>,
    rewire_command: Option<Vec<String>>,
    automatic: Option<AutomaticFailover>,
}

/// `automatic = { interval, timeout, failures }`: the agent's monitor
/// probes every `interval`, a probe failing after `timeout`, and fails
/// over after `failures` in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutomaticFailover {
    /// Time between probes.
    pub interval: std::time::Duration,
    /// How long a probe may take.
    pub timeout: std::time::Duration,
    /// Failed probes in a row before failing over.
    pub failures: u32,
}

/// One member of `[component.failover]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSettings {
    name: String,
    pub(crate) hosts: Vec<String>,
    pub(crate) port: u16,
    pub(crate) priority: i32,
    pub(crate) never_promote: bool,
}

/// `loss_limit`: bytes of changes (WAL, a replication stream), or the
/// component's RPO objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossLimitSetting {
    /// At most this many bytes of changes.
    Bytes(u64),
    /// At most the RPO objective's window of changes.
    Rpo,
}

impl FailoverSettings {
    /// The members, in the file's order.
    pub fn members(&self) -> &[MemberSettings] {
        &self.members
    }

    /// What a failover may lose.
    pub fn loss_limit(&self) -> LossLimitSetting {
        self.loss_limit
    }

    /// The command that fences a member that does not answer: its words,
    /// with `{member}` and `{address}` replaced. None: such a member cannot
    /// be fenced, and a failover needs `--known-dead`.
    pub fn fence_command(&self) -> Option<&[String]> {
        self.fence_command.as_deref()
    }

    /// The command that points clients at the new primary once it is
    /// promoted (a DNS record, a proxy's backend, a service's selector):
    /// its words, with `{member}` and `{address}` the new primary's. None:
    /// clients find it themselves (a multi-host connection string).
    pub fn rewire_command(&self) -> Option<&[String]> {
        self.rewire_command.as_deref()
    }

    /// Whether, and how, the agent fails the cluster over by itself.
    pub fn automatic(&self) -> Option<AutomaticFailover> {
        self.automatic
    }
}

impl MemberSettings {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `host:port`, for the fence command.
    pub fn address(&self) -> String {
        format!("{}:{}", self.hosts.join(","), self.port)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFailover {
    members: Vec<RawMember>,
    loss_limit: String,
    fence_command: Option<Vec<String>>,
    rewire_command: Option<Vec<String>>,
    automatic: Option<RawAutomatic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAutomatic {
    interval: Parsed<Interval>,
    timeout: Parsed<Interval>,
    failures: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    name: String,
    host: Hosts,
    port: Option<u16>,
    priority: Option<i32>,
    never_promote: Option<bool>,
}

impl RawFailover {
    /// Checks the table; the error says what is wrong.
    /// `changes` names what the loss limit counts (`WAL`, `replication
    /// stream`); a member without a port has `default_port`; a Redis member
    /// (`single_host`) has one host.
    pub(crate) fn check(
        self,
        default_port: u16,
        changes: &str,
        single_host: bool,
    ) -> std::result::Result<FailoverSettings, String> {
        if self.members.len() < 2 {
            return Err(format!(
                "{} member(s); expected the primary and at least one replica",
                self.members.len()
            ));
        }
        let mut members: Vec<MemberSettings> = Vec::with_capacity(self.members.len());
        for raw in self.members {
            if raw.name.is_empty() {
                return Err("a member with an empty name; expected a name for each".into());
            }
            if members.iter().any(|m| m.name == raw.name) {
                return Err(format!(
                    "two members are named {:?}; expected unique names",
                    raw.name
                ));
            }
            if single_host && raw.host.0.len() > 1 {
                return Err(format!(
                    "member {:?} has {} hosts; expected one host for each",
                    raw.name,
                    raw.host.0.len()
                ));
            }
            members.push(MemberSettings {
                name: raw.name,
                hosts: raw.host.0,
                port: raw.port.unwrap_or(default_port),
                priority: raw.priority.unwrap_or(0),
                never_promote: raw.never_promote.unwrap_or(false),
            });
        }
        let loss_limit = match self.loss_limit.as_str() {
            "rpo" => LossLimitSetting::Rpo,
            text => LossLimitSetting::Bytes(parse_size(text).ok_or_else(|| {
                format!(
                    "loss_limit {text:?}; expected \"rpo\" (the RPO objective) or a size of \
                     {changes} such as \"0\", \"64kB\" or \"1MB\""
                )
            })?),
        };
        for (name, command, example) in [
            (
                "fence_command",
                &self.fence_command,
                "/usr/local/sbin/fence",
            ),
            (
                "rewire_command",
                &self.rewire_command,
                "/usr/local/sbin/repoint",
            ),
        ] {
            if let Some(command) = command
                && command.first().is_none_or(String::is_empty)
            {
                return Err(format!(
                    "an empty {name}; expected a program and its arguments, such as \
                     [\"{example}\", \"{{member}}\", \"{{address}}\"]"
                ));
            }
        }
        let automatic = match self.automatic {
            None => None,
            Some(_) if self.fence_command.is_none() => {
                return Err(
                    "automatic failover without a fence_command: the primary it fails over does \
                     not answer, so only a fence that works without it can make sure it takes no \
                     more writes; expected a fence_command"
                        .into(),
                );
            }
            Some(raw) if raw.failures == 0 => {
                return Err("automatic.failures = 0; expected at least 1".into());
            }
            Some(raw) => Some(AutomaticFailover {
                interval: raw.interval.0.get(),
                timeout: raw.timeout.0.get(),
                failures: raw.failures,
            }),
        };
        Ok(FailoverSettings {
            members,
            loss_limit,
            fence_command: self.fence_command,
            rewire_command: self.rewire_command,
            automatic,
        })
    }
}

/// `0`, `512`, `64kB`, `16MB`, `1GB` (powers of 1024, as PostgreSQL reads
/// sizes; Redis offsets count bytes too).
fn parse_size(text: &str) -> Option<u64> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let n: u64 = digits.trim().parse().ok()?;
    let scale: u64 = match unit {
        "" | "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}
