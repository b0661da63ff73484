//! The config file: parsed with serde (`deny_unknown_fields` everywhere),
//! then checked as a whole. Errors name the origin, the line and column, the
//! field path and what is expected.

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use dr_core::{ComponentId, Objectives, RetentionPolicy, Rpo, Rto};
use dr_storage::Location;
use jiff::tz::TimeZone;
use serde::Deserialize;
#[cfg(any(feature = "postgres", feature = "redis"))]
use serde::de::SeqAccess;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

use crate::error::{Error, Result};
use crate::schedule::{Cron, Schedule};
use crate::secret::SecretSource;

#[cfg(any(feature = "postgres", feature = "redis"))]
use crate::failover::RawFailover;
#[cfg(feature = "postgres")]
use crate::postgres::{DumpSettings, PostgresSettings, RawConnection, RawDatabases};

#[cfg(feature = "redis")]
use crate::redis::{RawRedis, RedisSettings};

#[cfg(feature = "kubernetes")]
use crate::kubernetes::{KubernetesSettings, LeaseSettings, RawKubernetes, RawLease};
#[cfg(feature = "livekit")]
use crate::livekit::{LiveKitSettings, RawLiveKit};

/// The component kinds this build can handle.
const COMPILED_KINDS: &[&str] = &[
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "postgres")]
    "postgres-dump",
    #[cfg(feature = "redis")]
    "redis",
    #[cfg(feature = "redis")]
    "redis-cluster",
    #[cfg(feature = "kubernetes")]
    "kubernetes",
    #[cfg(feature = "livekit")]
    "livekit",
];

/// Every kind drkit has a cargo feature for, compiled in or not.
const FEATURE_KINDS: &[&str] = &[
    "postgres",
    "postgres-dump",
    "redis",
    "redis-cluster",
    "kubernetes",
    "livekit",
];

/// The `drkit` config file, parsed and checked.
///
/// Built by [`Config::load`] (a file) or [`Config::from_toml`] (text and the
/// name of where it came from). Parsing does no I/O beyond reading the file:
/// passwords, certificates and keys are read only when resolved.
#[derive(Debug, Clone)]
pub struct Config {
    origin: String,
    repository: RepositorySettings,
    components: Vec<Component>,
    agent: Option<AgentSettings>,
}

impl Config {
    /// Reads and parses the config file at `path`.
    ///
    /// # Errors
    /// [`Error::Read`] if the file cannot be read, [`Error::Config`] if it
    /// is not a valid config.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses a config from TOML text; `origin` names it in errors (a path,
    /// or something like `<embedded>`).
    ///
    /// # Errors
    /// [`Error::Config`] if the text is not a valid config.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let source = Source { origin, text };
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| source.error(e.span(), "", e.message()))?;
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let field = field_path(e.path());
            let inner = e.into_inner();
            source.error(inner.span(), &field, inner.message())
        })?;
        raw.check(&source)
    }

    /// Where the config came from, as given to [`from_toml`](Self::from_toml)
    /// or the path given to [`load`](Self::load).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The repository.
    pub fn repository(&self) -> &RepositorySettings {
        &self.repository
    }

    /// The components, in the order of the file; at least one, ids unique.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The component with this id.
    pub fn component(&self, id: &ComponentId) -> Option<&Component> {
        self.components.iter().find(|c| c.id() == id)
    }

    /// The agent's settings, if the file has an `[agent]` table.
    pub fn agent(&self) -> Option<&AgentSettings> {
        self.agent.as_ref()
    }
}

/// The `[repository]` table: where backups are stored, how the
/// repository's password is obtained, and where its unlocked key is cached.
#[derive(Debug, Clone)]
pub struct RepositorySettings {
    location: Location,
    password: SecretSource,
    s3: Option<S3Settings>,
    key_cache: KeyCacheSetting,
}

impl RepositorySettings {
    /// Where the repository is: an absolute path (written as such or as a
    /// `file:///` URL) or `s3://bucket/prefix`, as dr-storage reads it.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Where the repository's password comes from.
    pub fn password(&self) -> &SecretSource {
        &self.password
    }

    /// The `[repository.s3]` settings, for an S3 location that has them.
    pub fn s3(&self) -> Option<&S3Settings> {
        self.s3.as_ref()
    }

    /// Where processes that open the repository cache its unlocked key
    /// (`key_cache`).
    pub fn key_cache(&self) -> &KeyCacheSetting {
        &self.key_cache
    }
}

/// The `[repository]` table's `key_cache`: where a process that opens the
/// repository caches its unlocked key, so the next one with the same
/// password skips the key derivation (`dr_storage::KeyCache`, private to the
/// user that runs it). `drkit wal push`, run once per WAL segment, needs it
/// to keep up with a busy server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyCacheSetting {
    /// Not given: the binary's default, `$XDG_CACHE_HOME/drkit/keys` or
    /// `$HOME/.cache/drkit/keys` of the user that runs it.
    Default,
    /// `key_cache = "/absolute/directory"`.
    Dir(PathBuf),
    /// `key_cache = false`: nothing cached; every process derives the key.
    Off,
}

/// `key_cache` as written: an absolute directory, or `false`.
struct RawKeyCache(KeyCacheSetting);

impl<'de> Deserialize<'de> for RawKeyCache {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct KeyCacheVisitor;

        const EXPECTED: &str =
            "an absolute directory such as \"/var/lib/postgresql/.cache/drkit/keys\", or false";

        impl Visitor<'_> for KeyCacheVisitor {
            type Value = RawKeyCache;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<RawKeyCache, E> {
                // Relative to what? The binary runs from PostgreSQL's data
                // directory as archive_command, from anywhere by hand.
                if !Path::new(text).is_absolute() {
                    return Err(E::custom(format!(
                        "{text:?} is relative; expected {EXPECTED}"
                    )));
                }
                Ok(RawKeyCache(KeyCacheSetting::Dir(PathBuf::from(text))))
            }

            fn visit_bool<E: de::Error>(self, on: bool) -> std::result::Result<RawKeyCache, E> {
                if on {
                    return Err(E::custom(format!(
                        "true is the default (leave key_cache out); expected {EXPECTED}"
                    )));
                }
                Ok(RawKeyCache(KeyCacheSetting::Off))
            }
        }

        deserializer.deserialize_any(KeyCacheVisitor)
    }
}

/// The `[repository.s3]` table. Bucket and prefix come from the location;
/// credentials from the standard AWS chain (environment, profile, web
/// identity, instance metadata), never from this file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    region: Option<String>,
    endpoint: Option<String>,
    #[serde(default)]
    path_style: bool,
}

impl S3Settings {
    /// The region; when absent, the standard chain's.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// An endpoint other than AWS's (`https://minio.internal:9000`).
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// Whether buckets are addressed by path (`endpoint/bucket/key`) rather
    /// than by host name; many S3-compatible stores need it. Default false.
    pub fn path_style(&self) -> bool {
        self.path_style
    }
}

/// One `[[component]]`: a system to back up, its objectives, retention and
/// schedules, and how to reach it.
#[derive(Debug, Clone)]
pub struct Component {
    id: ComponentId,
    objectives: Objectives,
    retention: RetentionPolicy,
    schedules: Vec<JobSchedule>,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    settings: Settings,
}

/// The kind-specific part of a component.
#[derive(Debug, Clone)]
enum Settings {
    #[cfg(feature = "postgres")]
    Postgres(PostgresSettings),
    #[cfg(feature = "postgres")]
    PostgresDump(DumpSettings),
    /// `redis` and `redis-cluster`.
    #[cfg(feature = "redis")]
    Redis(RedisSettings),
    #[cfg(feature = "kubernetes")]
    Kubernetes(KubernetesSettings),
    #[cfg(feature = "livekit")]
    LiveKit(LiveKitSettings),
}

impl Component {
    /// The component's id, such as `postgres/gomeet_primary`.
    pub fn id(&self) -> &ComponentId {
        &self.id
    }

    /// The kind of system, the id's first segment: `postgres`.
    pub fn kind(&self) -> &str {
        self.id.kind()
    }

    /// The recovery objectives.
    pub fn objectives(&self) -> Objectives {
        self.objectives
    }

    /// Which snapshots to keep; never empty.
    pub fn retention(&self) -> &RetentionPolicy {
        &self.retention
    }

    /// When jobs run, in the order of the file.
    pub fn schedules(&self) -> &[JobSchedule] {
        &self.schedules
    }

    /// The PostgreSQL settings of a `postgres` component (physical backups
    /// and WAL).
    #[cfg(feature = "postgres")]
    pub fn postgres(&self) -> Option<&PostgresSettings> {
        match &self.settings {
            Settings::Postgres(settings) => Some(settings),
            _ => None,
        }
    }

    /// The settings of a `postgres-dump` component (logical backups).
    #[cfg(feature = "postgres")]
    pub fn postgres_dump(&self) -> Option<&DumpSettings> {
        match &self.settings {
            Settings::PostgresDump(settings) => Some(settings),
            _ => None,
        }
    }

    /// The PostgreSQL connection of either PostgreSQL kind; `None` for
    /// other kinds.
    #[cfg(feature = "postgres")]
    pub fn connection(&self) -> Option<&PostgresSettings> {
        match &self.settings {
            Settings::Postgres(settings) => Some(settings),
            Settings::PostgresDump(settings) => Some(settings.connection()),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The settings of a `redis` or `redis-cluster` component.
    #[cfg(feature = "redis")]
    pub fn redis(&self) -> Option<&RedisSettings> {
        match &self.settings {
            Settings::Redis(settings) => Some(settings),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The settings of a `livekit` component: the SFU's API, its standby.
    #[cfg(feature = "livekit")]
    pub fn livekit(&self) -> Option<&LiveKitSettings> {
        match &self.settings {
            Settings::LiveKit(settings) => Some(settings),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The settings of a `kubernetes` component: which cluster, which
    /// objects.
    #[cfg(feature = "kubernetes")]
    pub fn kubernetes(&self) -> Option<&KubernetesSettings> {
        match &self.settings {
            Settings::Kubernetes(settings) => Some(settings),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

/// A scheduled job of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Job {
    /// Take a backup.
    Backup,
    /// Verify the latest backup against its manifest.
    Verify,
    /// Restore the latest backup into a scratch server, check it, time it
    /// against the RTO, and remove the server.
    RestoreTest,
}

impl Job {
    /// Every job, in the order a config lists them.
    pub const ALL: [Job; 3] = [Job::Backup, Job::Verify, Job::RestoreTest];

    /// The name as written in the file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Job::Backup => "backup",
            Job::Verify => "verify",
            Job::RestoreTest => "restore-test",
        }
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Job {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Job::ALL
            .into_iter()
            .find(|job| job.as_str() == s)
            .ok_or_else(|| Error::Invalid {
                what: "job",
                input: s.to_owned(),
                reason: "expected backup, verify or restore-test".to_owned(),
            })
    }
}

/// One `[[component.schedule]]` entry: a job and when it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSchedule {
    job: Job,
    schedule: Schedule,
}

impl JobSchedule {
    /// The job.
    pub fn job(&self) -> Job {
        self.job
    }

    /// When it runs.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

/// The `[agent]` table: the long-running form's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSettings {
    listen: SocketAddr,
    prune: Schedule,
    retry: Duration,
    refresh: Duration,
    shutdown_grace: Duration,
    #[cfg(feature = "kubernetes")]
    lease: Option<LeaseSettings>,
}

impl AgentSettings {
    /// The defaults of the optional settings, with this address and prune
    /// schedule.
    pub fn new(listen: SocketAddr, prune: Schedule) -> Self {
        Self {
            listen,
            prune,
            retry: DEFAULT_RETRY,
            refresh: DEFAULT_REFRESH,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            #[cfg(feature = "kubernetes")]
            lease: None,
        }
    }

    /// `[agent.lease]`: the Kubernetes Lease the agent must hold to run
    /// its jobs; `None`: it runs them without one.
    #[cfg(feature = "kubernetes")]
    pub fn lease(&self) -> Option<&LeaseSettings> {
        self.lease.as_ref()
    }

    /// Where `/metrics` and `/healthz` are served.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// When the repository is pruned: the data no snapshot needs removed.
    /// (Each component's retention is applied after each of its backups.)
    pub fn prune(&self) -> &Schedule {
        &self.prune
    }

    /// The first wait before a failed job runs again; it doubles after each
    /// failure in a row, up to an hour, and never delays the job's next
    /// scheduled run. Default one minute.
    pub fn retry(&self) -> Duration {
        self.retry
    }

    /// How often the repository figures behind `/metrics` are read anew
    /// (snapshots, stored bytes, how far the archived WAL reaches). Default
    /// 30 seconds.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    /// On SIGTERM, how long a running job may take to finish before it is
    /// aborted (an aborted backup leaves no snapshot). Default five minutes.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }
}

const DEFAULT_RETRY: Duration = Duration::from_secs(60);
const DEFAULT_REFRESH: Duration = Duration::from_secs(30);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5 * 60);

// ---- Parsing -------------------------------------------------------------

/// The text being parsed and its name, for errors.
pub(crate) struct Source<'a> {
    pub(crate) origin: &'a str,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    /// A config error at `span` (a byte range of the text).
    pub(crate) fn error(&self, span: Option<Range<usize>>, field: &str, message: &str) -> Error {
        let offset = span.map_or(0, |s| s.start);
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Error::Config {
            origin: self.origin.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// The path serde took to a failing value, as `component[1].objectives.rpo`,
/// without the keys toml's `Spanned` reads internally.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key.starts_with("$__serde_spanned") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// A value written as a string and parsed, with what was expected.
pub(crate) trait FromConfig: Sized {
    /// What a valid value looks like, for errors: "a duration such as \"15m\"".
    const EXPECTED: &'static str;

    fn from_config(text: &str) -> std::result::Result<Self, String>;
}

/// A [`FromConfig`] value, deserialized from a string.
pub(crate) struct Parsed<T>(pub(crate) T);

impl<'de, T: FromConfig> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_str(ParsedVisitor(PhantomData))
    }
}

struct ParsedVisitor<T>(PhantomData<T>);

impl<T: FromConfig> Visitor<'_> for ParsedVisitor<T> {
    type Value = Parsed<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> std::result::Result<Parsed<T>, E> {
        T::from_config(text)
            .map(Parsed)
            .map_err(|reason| E::custom(format!("{reason}; expected {}", T::EXPECTED)))
    }
}

macro_rules! from_str_config {
    ($type:ty, $expected:literal) => {
        impl FromConfig for $type {
            const EXPECTED: &'static str = $expected;

            fn from_config(text: &str) -> std::result::Result<Self, String> {
                text.parse().map_err(|e| format!("{e}"))
            }
        }
    };
}

from_str_config!(
    ComponentId,
    "a component id such as \"postgres/gomeet_primary\""
);
from_str_config!(Rto, "a duration such as \"30m\" or \"1h30m\"");
from_str_config!(Rpo, "a duration such as \"15m\" or \"1h\"");
impl FromConfig for Location {
    const EXPECTED: &'static str =
        "an absolute path, a file:///absolute/path URL or s3://bucket/prefix";

    fn from_config(text: &str) -> std::result::Result<Self, String> {
        let location: Location = text.parse().map_err(|e| format!("{e}"))?;
        // Relative to what? The config is read from several places (the
        // agent's working directory, PostgreSQL's archive_command).
        if let Location::Local(path) = &location
            && !path.as_path().is_absolute()
        {
            return Err(format!(
                "{text:?} is relative; a local path must be absolute"
            ));
        }
        Ok(location)
    }
}

impl FromConfig for Job {
    const EXPECTED: &'static str = "a job name: \"backup\", \"verify\" or \"restore-test\"";

    fn from_config(text: &str) -> std::result::Result<Self, String> {
        text.parse().map_err(|_| format!("unknown job {text:?}"))
    }
}
from_str_config!(
    SocketAddr,
    "an address and port such as \"0.0.0.0:9187\" or \"[::1]:9187\""
);

impl FromConfig for RetentionPolicy {
    const EXPECTED: &'static str = "a retention policy such as \"daily=30,within=7d\" (keys last, hourly, daily, weekly, monthly, yearly, within)";

    fn from_config(text: &str) -> std::result::Result<Self, String> {
        let policy: RetentionPolicy = text.parse().map_err(|e| format!("{e}"))?;
        if policy.is_empty() {
            return Err("an empty policy would keep every snapshot forever".to_owned());
        }
        Ok(policy)
    }
}

/// A time zone with the name it was given by.
pub(crate) struct Zone {
    pub(crate) name: String,
    pub(crate) zone: TimeZone,
}

impl FromConfig for Zone {
    const EXPECTED: &'static str = "an IANA time zone such as \"UTC\" or \"Europe/Berlin\"";

    fn from_config(text: &str) -> std::result::Result<Self, String> {
        let zone = TimeZone::get(text).map_err(|_| format!("unknown time zone {text:?}"))?;
        Ok(Zone {
            name: text.to_owned(),
            zone,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    repository: RawRepository,
    #[serde(default)]
    component: Vec<Spanned<RawComponent>>,
    agent: Option<RawAgent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    location: Parsed<Location>,
    password: SecretSource,
    s3: Option<Spanned<S3Settings>>,
    key_cache: Option<RawKeyCache>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    id: Spanned<Parsed<ComponentId>>,
    kind: Spanned<String>,
    objectives: RawObjectives,
    retention: Parsed<RetentionPolicy>,
    #[serde(default)]
    schedule: Vec<RawSchedule>,
    #[cfg(feature = "postgres")]
    wal_archiving: Option<bool>,
    #[cfg(feature = "postgres")]
    connection: Option<Spanned<RawConnection>>,
    #[cfg(feature = "postgres")]
    databases: Option<Spanned<RawDatabases>>,
    #[cfg(feature = "postgres")]
    globals: Option<Spanned<bool>>,
    #[cfg(feature = "postgres")]
    pg_bin: Option<Spanned<std::path::PathBuf>>,
    #[cfg(any(feature = "postgres", feature = "redis"))]
    failover: Option<Spanned<RawFailover>>,
    #[cfg(feature = "redis")]
    redis: Option<Spanned<RawRedis>>,
    #[cfg(not(feature = "redis"))]
    #[allow(dead_code)]
    redis: Option<de::IgnoredAny>,
    #[cfg(feature = "kubernetes")]
    kubernetes: Option<Spanned<RawKubernetes>>,
    #[cfg(not(feature = "kubernetes"))]
    #[allow(dead_code)]
    kubernetes: Option<de::IgnoredAny>,
    #[cfg(feature = "livekit")]
    livekit: Option<Spanned<RawLiveKit>>,
    #[cfg(not(feature = "livekit"))]
    #[allow(dead_code)]
    livekit: Option<de::IgnoredAny>,
    #[cfg(not(any(feature = "postgres", feature = "redis")))]
    #[allow(dead_code)]
    failover: Option<de::IgnoredAny>,
    // Without the feature, a `postgres` component is refused by its kind.
    #[cfg(not(feature = "postgres"))]
    #[allow(dead_code)]
    wal_archiving: Option<de::IgnoredAny>,
    #[cfg(not(feature = "postgres"))]
    #[allow(dead_code)]
    connection: Option<de::IgnoredAny>,
    #[cfg(not(feature = "postgres"))]
    #[allow(dead_code)]
    databases: Option<de::IgnoredAny>,
    #[cfg(not(feature = "postgres"))]
    #[allow(dead_code)]
    globals: Option<de::IgnoredAny>,
    #[cfg(not(feature = "postgres"))]
    #[allow(dead_code)]
    pg_bin: Option<de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObjectives {
    rto: Parsed<Rto>,
    rpo: Parsed<Rpo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    job: Parsed<Job>,
    cron: Cron,
    timezone: Option<Parsed<Zone>>,
}

/// A cron expression in its time zone, UTC unless given.
fn schedule(cron: Cron, timezone: Option<Parsed<Zone>>) -> Schedule {
    match timezone {
        Some(Parsed(zone)) => Schedule::from_parts(cron, zone.zone, zone.name),
        None => Schedule::utc(cron),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    listen: Parsed<SocketAddr>,
    prune: RawPrune,
    retry: Option<Parsed<Interval>>,
    refresh: Option<Parsed<Interval>>,
    shutdown_grace: Option<Parsed<Interval>>,
    #[cfg(feature = "kubernetes")]
    lease: Option<Spanned<RawLease>>,
    #[cfg(not(feature = "kubernetes"))]
    lease: Option<Spanned<de::IgnoredAny>>,
}

/// A positive duration of the agent's settings.
pub(crate) struct Interval(Duration);

impl Interval {
    /// The duration.
    #[cfg_attr(not(any(feature = "redis", feature = "kubernetes")), allow(dead_code))]
    pub(crate) fn get(&self) -> Duration {
        self.0
    }
}

impl FromConfig for Interval {
    const EXPECTED: &'static str = "a duration such as \"30s\", \"5m\" or \"1h\"";

    fn from_config(text: &str) -> std::result::Result<Self, String> {
        let duration = text
            .parse::<Rto>()
            .map_err(|_| format!("{text:?} is not a duration"))?
            .as_duration();
        if duration.is_zero() {
            return Err(format!("{text:?} is zero"));
        }
        Ok(Interval(duration))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrune {
    cron: Cron,
    timezone: Option<Parsed<Zone>>,
}

impl RawConfig {
    fn check(self, source: &Source<'_>) -> Result<Config> {
        let repository = self.repository.check(source)?;
        if self.component.is_empty() {
            return Err(source.error(
                None,
                "component",
                "no components; expected at least one [[component]] table",
            ));
        }
        let mut components: Vec<Component> = Vec::with_capacity(self.component.len());
        for (index, raw) in self.component.into_iter().enumerate() {
            let span = raw.span();
            let raw = raw.into_inner();
            let id_span = raw.id.span();
            let component = raw.check(source, index, span)?;
            if let Some(first) = components.iter().position(|c| c.id == component.id) {
                return Err(source.error(
                    Some(id_span),
                    &format!("component[{index}].id"),
                    &format!(
                        "duplicate component id \"{}\", also component[{first}]; \
                         expected every id once",
                        component.id
                    ),
                ));
            }
            components.push(component);
        }
        #[cfg(feature = "livekit")]
        for (index, component) in components.iter().enumerate() {
            let Some(redis) = component
                .livekit()
                .and_then(LiveKitSettings::redis_component)
            else {
                continue;
            };
            let kind = components
                .iter()
                .find(|c| c.id.as_str() == redis)
                .map(Component::kind);
            if kind != Some("redis") {
                return Err(source.error(
                    None,
                    &format!("component[{index}].livekit.redis_component"),
                    &format!(
                        "\"{redis}\" is {}; expected the id of the redis component that is \
                         LiveKit's Redis",
                        match kind {
                            Some(kind) => format!("a {kind} component"),
                            None => "no component of this config".to_owned(),
                        }
                    ),
                ));
            }
        }
        let agent = match self.agent {
            #[cfg(not(feature = "kubernetes"))]
            Some(RawAgent {
                lease: Some(lease), ..
            }) => {
                return Err(source.error(
                    Some(lease.span()),
                    "agent.lease",
                    "a Kubernetes Lease needs a build with the cargo feature \"kubernetes\"",
                ));
            }
            Some(agent) => Some(AgentSettings {
                #[cfg(feature = "kubernetes")]
                lease: agent
                    .lease
                    .map(|lease| LeaseSettings::check(lease, source, "agent.lease"))
                    .transpose()?,
                listen: agent.listen.0,
                prune: schedule(agent.prune.cron, agent.prune.timezone),
                retry: agent.retry.map_or(DEFAULT_RETRY, |i| i.0.0),
                refresh: agent.refresh.map_or(DEFAULT_REFRESH, |i| i.0.0),
                shutdown_grace: agent
                    .shutdown_grace
                    .map_or(DEFAULT_SHUTDOWN_GRACE, |i| i.0.0),
            }),
            None => None,
        };
        Ok(Config {
            origin: source.origin.to_owned(),
            repository,
            components,
            agent,
        })
    }
}

impl RawRepository {
    fn check(self, source: &Source<'_>) -> Result<RepositorySettings> {
        let location = self.location.0;
        let s3 = match self.s3 {
            None => None,
            Some(s3) => {
                let span = s3.span();
                if !matches!(location, Location::S3(_)) {
                    return Err(source.error(
                        Some(span),
                        "repository.s3",
                        &format!(
                            "S3 settings for the location \"{location}\"; \
                             expected them only with an s3:// location"
                        ),
                    ));
                }
                let s3 = s3.into_inner();
                if let Some(endpoint) = &s3.endpoint
                    && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
                {
                    return Err(source.error(
                        Some(span),
                        "repository.s3.endpoint",
                        &format!(
                            "endpoint {endpoint:?}; expected a URL such as \"https://s3.example.com\""
                        ),
                    ));
                }
                Some(s3)
            }
        };
        Ok(RepositorySettings {
            location,
            password: self.password,
            s3,
            key_cache: self.key_cache.map_or(KeyCacheSetting::Default, |raw| raw.0),
        })
    }
}

impl RawComponent {
    // A build without any kind refuses every component before its settings.
    #[cfg_attr(not(feature = "postgres"), allow(unreachable_code, unused_variables))]
    fn check(self, source: &Source<'_>, index: usize, span: Range<usize>) -> Result<Component> {
        let at = |field: &str| format!("component[{index}].{field}");
        let id = self.id.into_inner().0;
        let kind_span = self.kind.span();
        let kind = self.kind.into_inner();
        if !COMPILED_KINDS.contains(&kind.as_str()) {
            let message = if FEATURE_KINDS.contains(&kind.as_str()) {
                format!(
                    "component kind \"{kind}\" is not compiled into this build; \
                     expected one of [{}] or a build with the cargo feature \"{kind}\"",
                    COMPILED_KINDS.join(", ")
                )
            } else {
                format!(
                    "unknown component kind \"{kind}\"; expected one of [{}]",
                    COMPILED_KINDS.join(", ")
                )
            };
            return Err(source.error(Some(kind_span), &at("kind"), &message));
        }
        if id.kind() != kind {
            return Err(source.error(
                Some(kind_span),
                &at("kind"),
                &format!(
                    "kind \"{kind}\" but the id \"{id}\" is of kind \"{}\"; \
                     expected the id to start with \"{kind}/\"",
                    id.kind()
                ),
            ));
        }
        let schedules: Vec<JobSchedule> = self
            .schedule
            .into_iter()
            .map(|s| JobSchedule {
                job: s.job.0,
                schedule: schedule(s.cron, s.timezone),
            })
            .collect();
        #[cfg(feature = "postgres")]
        let pg_bin = match self.pg_bin {
            Some(path) if !path.get_ref().is_absolute() => {
                return Err(source.error(
                    Some(path.span()),
                    &at("pg_bin"),
                    "a relative path; expected the absolute directory of PostgreSQL's programs \
                     (pg_config --bindir)",
                ));
            }
            other => other.map(Spanned::into_inner),
        };
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis
            && !kind.starts_with("redis")
        {
            return Err(source.error(
                Some(redis.span()),
                &at("redis"),
                &format!("`redis` is for redis and redis-cluster components, not {kind}"),
            ));
        }
        #[cfg(feature = "kubernetes")]
        if let Some(kubernetes) = &self.kubernetes
            && kind != "kubernetes"
        {
            return Err(source.error(
                Some(kubernetes.span()),
                &at("kubernetes"),
                &format!("`kubernetes` is for kubernetes components, not {kind}"),
            ));
        }
        #[cfg(all(
            feature = "postgres",
            any(feature = "redis", feature = "kubernetes", feature = "livekit")
        ))]
        let postgres_fields = || PostgresFields {
            connection: &self.connection,
            databases: &self.databases,
            globals: &self.globals,
            pg_bin: pg_bin.is_some(),
            wal_archiving: self.wal_archiving.is_some(),
        };
        let settings = match kind.as_str() {
            #[cfg(feature = "postgres")]
            "postgres" => {
                for (present, field) in [
                    (self.databases.as_ref().map(Spanned::span), "databases"),
                    (self.globals.as_ref().map(Spanned::span), "globals"),
                ] {
                    if let Some(span) = present {
                        return Err(source.error(
                            Some(span),
                            &at(field),
                            &format!(
                                "`{field}` is for postgres-dump components (logical backups); \
                                 expected it only there"
                            ),
                        ));
                    }
                }
                let Some(wal_archiving) = self.wal_archiving else {
                    return Err(source.error(
                        Some(span),
                        &at("wal_archiving"),
                        "missing field `wal_archiving`; expected true or false",
                    ));
                };
                let connection = required_connection(self.connection, source, &span, &at)?;
                let failover = match self.failover {
                    Some(raw) => {
                        let failover_span = raw.span();
                        Some(
                            raw.into_inner()
                                .check(5432, "WAL", false)
                                .map_err(|message| {
                                    source.error(Some(failover_span), &at("failover"), &message)
                                })?,
                        )
                    }
                    None => None,
                };
                Settings::Postgres(
                    PostgresSettings::check(
                        connection,
                        wal_archiving,
                        &id,
                        source,
                        &at("connection"),
                    )?
                    .with_pg_bin(pg_bin)
                    .with_failover(failover),
                )
            }
            #[cfg(feature = "postgres")]
            "postgres-dump" => {
                if self.wal_archiving.is_some() {
                    return Err(source.error(
                        Some(span),
                        &at("wal_archiving"),
                        "`wal_archiving` is for postgres components; a dump archives no WAL",
                    ));
                }
                if let Some(failover) = &self.failover {
                    return Err(source.error(
                        Some(failover.span()),
                        &at("failover"),
                        "`failover` is for postgres components, the servers themselves; \
                         expected it there",
                    ));
                }
                let connection = required_connection(self.connection, source, &span, &at)?;
                let Some(databases) = self.databases else {
                    return Err(source.error(
                        Some(span),
                        &at("databases"),
                        "missing field `databases`; expected \"all\" or a list of database names",
                    ));
                };
                let databases = databases.into_inner().check().map_err(|message| {
                    source.error(Some(span.clone()), &at("databases"), &message)
                })?;
                let connection =
                    PostgresSettings::check(connection, false, &id, source, &at("connection"))?
                        .with_pg_bin(pg_bin);
                Settings::PostgresDump(DumpSettings::new(
                    connection,
                    databases,
                    self.globals.is_none_or(Spanned::into_inner),
                ))
            }
            #[cfg(feature = "redis")]
            "redis" | "redis-cluster" => {
                #[cfg(feature = "postgres")]
                postgres_fields().refuse(&kind, "redis", source, &span, &at)?;
                refuse_restore_test(&schedules, source, &span, &at)?;
                let Some(redis) = self.redis else {
                    return Err(source.error(
                        Some(span),
                        &at("redis"),
                        "missing table `redis`; expected where the server is \
                         (address, or seeds for a cluster), credentials and tls",
                    ));
                };
                let failover = match self.failover {
                    Some(raw) if kind == "redis-cluster" => {
                        return Err(source.error(
                            Some(raw.span()),
                            &at("failover"),
                            "`failover` is for redis components (a master and its replicas); a \
                             Redis Cluster's shards are failed over by the cluster itself, or one \
                             shard at a time with dr-redis's ClusterFailover",
                        ));
                    }
                    Some(raw) => {
                        let failover_span = raw.span();
                        Some(
                            raw.into_inner()
                                .check(6379, "replication stream", true)
                                .map_err(|message| {
                                    source.error(Some(failover_span), &at("failover"), &message)
                                })?,
                        )
                    }
                    None => None,
                };
                Settings::Redis(
                    RedisSettings::check(
                        redis,
                        kind == "redis-cluster",
                        &id,
                        source,
                        &at("redis"),
                    )?
                    .with_failover(failover),
                )
            }
            #[cfg(feature = "kubernetes")]
            "kubernetes" => {
                #[cfg(feature = "postgres")]
                postgres_fields().refuse(&kind, "kubernetes", source, &span, &at)?;
                #[cfg(any(feature = "postgres", feature = "redis"))]
                if let Some(failover) = &self.failover {
                    return Err(source.error(
                        Some(failover.span()),
                        &at("failover"),
                        "`failover` is for postgres and redis components; a kubernetes \
                         component's objects are restored, not failed over",
                    ));
                }
                refuse_restore_test(&schedules, source, &span, &at)?;
                let Some(kubernetes) = self.kubernetes else {
                    return Err(source.error(
                        Some(span),
                        &at("kubernetes"),
                        "missing table `kubernetes`; expected which cluster (kubeconfig and \
                         context, or none for the cluster drkit runs in) and which objects",
                    ));
                };
                Settings::Kubernetes(KubernetesSettings::check(
                    kubernetes,
                    source,
                    &at("kubernetes"),
                )?)
            }
            #[cfg(feature = "livekit")]
            "livekit" => {
                #[cfg(feature = "postgres")]
                postgres_fields().refuse(&kind, "livekit", source, &span, &at)?;
                #[cfg(any(feature = "postgres", feature = "redis"))]
                if let Some(failover) = &self.failover {
                    return Err(source.error(
                        Some(failover.span()),
                        &at("failover"),
                        "`failover` is for postgres and redis components; a livekit \
                         component's standby is `standby_url` in [component.livekit]",
                    ));
                }
                refuse_restore_test(&schedules, source, &span, &at)?;
                let Some(livekit) = self.livekit else {
                    return Err(source.error(
                        Some(span),
                        &at("livekit"),
                        "missing table `livekit`; expected the SFU's url, api_key and \
                         api_secret (a file, command or env), and optionally standby_url \
                         and metrics_url",
                    ));
                };
                Settings::LiveKit(LiveKitSettings::check(livekit, source, &at("livekit"))?)
            }
            _ => {
                let _ = span;
                return Err(source.error(
                    Some(kind_span),
                    &at("kind"),
                    &format!("component kind \"{kind}\" is not compiled into this build"),
                ));
            }
        };
        Ok(Component {
            id,
            objectives: Objectives::new(self.objectives.rto.0, self.objectives.rpo.0),
            retention: self.retention.0,
            schedules,
            settings,
        })
    }
}

/// The first field of PostgreSQL components given to a component of
/// another kind, refused: its own settings are in `[component.<table>]`.
#[cfg(all(
    feature = "postgres",
    any(feature = "redis", feature = "kubernetes", feature = "livekit")
))]
struct PostgresFields<'r> {
    connection: &'r Option<Spanned<RawConnection>>,
    databases: &'r Option<Spanned<RawDatabases>>,
    globals: &'r Option<Spanned<bool>>,
    pg_bin: bool,
    wal_archiving: bool,
}

#[cfg(all(
    feature = "postgres",
    any(feature = "redis", feature = "kubernetes", feature = "livekit")
))]
impl PostgresFields<'_> {
    fn refuse(
        &self,
        kind: &str,
        table: &str,
        source: &Source<'_>,
        span: &Range<usize>,
        at: &dyn Fn(&str) -> String,
    ) -> Result<()> {
        let given = [
            (self.connection.as_ref().map(Spanned::span), "connection"),
            (self.databases.as_ref().map(Spanned::span), "databases"),
            (self.globals.as_ref().map(Spanned::span), "globals"),
            (self.pg_bin.then(|| span.clone()), "pg_bin"),
            (self.wal_archiving.then(|| span.clone()), "wal_archiving"),
        ];
        match given.into_iter().find(|(present, _)| present.is_some()) {
            Some((present, field)) => Err(source.error(
                present,
                &at(field),
                &format!(
                    "`{field}` is for PostgreSQL components; a {kind} component \
                     has [component.{table}]"
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Refuses a restore-test schedule of a kind that has no scratch server.
#[cfg(any(feature = "redis", feature = "kubernetes"))]
fn refuse_restore_test(
    schedules: &[JobSchedule],
    source: &Source<'_>,
    span: &Range<usize>,
    at: &dyn Fn(&str) -> String,
) -> Result<()> {
    match schedules.iter().find(|s| s.job == Job::RestoreTest) {
        Some(job) => Err(source.error(
            Some(span.clone()),
            &at("schedule"),
            &format!(
                "job \"{}\": restore tests into a scratch server are for PostgreSQL \
                 components; expected backup or verify",
                job.job
            ),
        )),
        None => Ok(()),
    }
}

/// A PostgreSQL component's `[component.connection]`, which it must have.
#[cfg(feature = "postgres")]
fn required_connection(
    connection: Option<Spanned<RawConnection>>,
    source: &Source<'_>,
    span: &Range<usize>,
    at: &dyn Fn(&str) -> String,
) -> Result<Spanned<RawConnection>> {
    connection.ok_or_else(|| {
        source.error(
            Some(span.clone()),
            &at("connection"),
            "missing table `connection`; expected the PostgreSQL connection \
             (host, port, user, tls)",
        )
    })
}

/// `host = "db1"` or `host = ["db1", "db2"]`.
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) struct Hosts(pub(crate) Vec<String>);

#[cfg(any(feature = "postgres", feature = "redis"))]
impl<'de> Deserialize<'de> for Hosts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(HostsVisitor)
    }
}

#[cfg(any(feature = "postgres", feature = "redis"))]
struct HostsVisitor;

#[cfg(any(feature = "postgres", feature = "redis"))]
const HOST_EXPECTED: &str = "a host name, address or socket directory, or a list of them, such as \"db1\" or [\"db1\", \"db2\"]";

#[cfg(any(feature = "postgres", feature = "redis"))]
impl<'de> Visitor<'de> for HostsVisitor {
    type Value = Hosts;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HOST_EXPECTED)
    }

    fn visit_str<E: de::Error>(self, host: &str) -> std::result::Result<Hosts, E> {
        if host.is_empty() {
            return Err(E::custom(format!("empty host; expected {HOST_EXPECTED}")));
        }
        Ok(Hosts(vec![host.to_owned()]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Hosts, A::Error> {
        let mut hosts = Vec::new();
        while let Some(host) = seq.next_element::<String>()? {
            if host.is_empty() {
                return Err(de::Error::custom(format!(
                    "empty host; expected {HOST_EXPECTED}"
                )));
            }
            hosts.push(host);
        }
        if hosts.is_empty() {
            return Err(de::Error::custom(format!(
                "no hosts; expected {HOST_EXPECTED}"
            )));
        }
        Ok(Hosts(hosts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_parse_and_print() {
        for job in Job::ALL {
            assert_eq!(job.to_string().parse::<Job>().unwrap(), job);
        }
        assert!("prune".parse::<Job>().is_err());
    }

    /// Only a build without the `postgres` feature runs this
    /// (`cargo test -p drkit --no-default-features`).
    #[cfg(not(feature = "postgres"))]
    #[test]
    fn a_kind_not_compiled_in_is_refused() {
        let text = "[repository]\nlocation = \"/srv/drkit\"\npassword = { env = \"P\" }\n\
                    [[component]]\nid = \"postgres/main\"\nkind = \"postgres\"\n\
                    objectives = { rto = \"1h\", rpo = \"5m\" }\nretention = \"daily=7\"\n\
                    wal_archiving = true\nconnection = { host = \"db\" }\n";
        let err = Config::from_toml(text, "x.toml").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "x.toml:6:8: component[0].kind: component kind \"postgres\" is not compiled"
            ),
            "{err}"
        );
        assert!(err.contains("cargo feature \"postgres\""), "{err}");
    }

    #[test]
    fn line_and_column_count_characters() {
        let source = Source {
            origin: "x.toml",
            text: "a = 1\nbé = \"x\"\n",
        };
        let Error::Config { line, column, .. } = source.error(Some(11..14), "", "m") else {
            unreachable!()
        };
        assert_eq!((line, column), (2, 5));
    }
}
