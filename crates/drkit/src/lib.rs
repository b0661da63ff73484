//! The config file of the `drkit` operator's binary, as a library, so that a
//! service can embed the same config.
//!
//! - [`Config`]: the whole file, from [`Config::load`] (a path) or
//!   [`Config::from_toml`] (text and its origin), parsed with serde
//!   (`deny_unknown_fields` everywhere) and checked as a whole. Its
//!   [`plan`](Config::plan) prints what it resolves to, with each
//!   schedule's next run.
//! - [`RepositorySettings`]: the `dr_storage::Location` (an absolute local path or
//!   `s3://bucket/prefix`), [`S3Settings`], the password's
//!   [`SecretSource`] and the [`KeyCacheSetting`].
//! - [`Component`]: a dr-core `ComponentId`, its `Objectives` and
//!   `RetentionPolicy`, its [`JobSchedule`]s, and for PostgreSQL (cargo
//!   feature `postgres`, on by default) [`PostgresSettings`] with
//!   [`TlsSettings`], which become a `tokio_postgres::Config` and a
//!   `dr_postgres::Tls` (kind `postgres`: physical backups and WAL), or
//!   [`DumpSettings`] (kind `postgres-dump`: logical backups); for Redis
//!   (cargo feature `redis`, on by default) [`RedisSettings`] with
//!   [`RedisTls`], which become a `dr_redis::RedisServer` (kinds `redis`
//!   and `redis-cluster`); for Kubernetes (cargo feature `kubernetes`, on
//!   by default) [`KubernetesSettings`]: a kubeconfig and context (or the
//!   cluster drkit runs in) and a `dr_k8s::ResourceFilter` (kind
//!   `kubernetes`: resource backups); for LiveKit (cargo feature
//!   `livekit`, on by default) [`LiveKitSettings`]: the SFU's API URL, key
//!   and secret, a standby, a rewire command and LiveKit's own Redis
//!   component (kind `livekit`: room state snapshots).
//! - [`Cron`] and [`Schedule`]: five-field cron expressions (six with
//!   seconds) in an IANA time zone (the database is bundled), with [`Schedule::next_after`] across
//!   daylight-saving changes.
//! - [`AgentSettings`]: the long-running form's listen address, prune
//!   schedule, retry backoff, refresh interval, shutdown grace and
//!   [`LeaseSettings`] (a Kubernetes Lease its jobs run under).
//! - [`Error`]: one error type; a config error names the origin, the line
//!   and column, the field (`component[1].objectives.rpo`) and what is
//!   expected.
//!
//! Parsing does no I/O but reading the file; passwords, certificates and
//! keys are read only when resolved ([`SecretSource::resolve`],
//! [`PostgresSettings::resolve`]), and the environment only through the
//! lookup the caller passes.
//!
//! # The file
//!
//! ```toml
//! [repository]
//! # An absolute path, file:///path, or s3://bucket/prefix.
//! location = "s3://gomeet-dr/backups"
//! # Exactly one of file, command (argv, no shell) or env; never the password itself.
//! password = { file = "/etc/drkit/repository.pass" }
//! # Where the user that runs drkit caches the unlocked key (mode 0700), so
//! # that each `wal push` skips the key derivation: an absolute directory, or
//! # false for no cache. Optional; by default $XDG_CACHE_HOME/drkit/keys,
//! # else $HOME/.cache/drkit/keys (DRKIT_KEY_CACHE=off turns it off).
//! key_cache = "/var/lib/postgresql/.cache/drkit/keys"
//!
//! [repository.s3]            # only for an s3:// location; all optional
//! region = "ap-southeast-1"
//! endpoint = "https://s3.ap-southeast-1.amazonaws.com"
//! path_style = false         # credentials come from the standard AWS chain
//!
//! [[component]]
//! id = "postgres/gomeet_primary"
//! kind = "postgres"          # must match the id's first segment
//! objectives = { rto = "30m", rpo = "15m" }   # required, no defaults
//! retention = "daily=30,within=7d"            # required, not empty
//! wal_archiving = true                        # required for postgres
//!
//! [component.connection]
//! host = "postgres-primary.gomeet.svc"        # or a list; "/run/postgresql" for a socket
//! port = 5432                                  # default 5432
//! user = "replicator"
//! dbname = "gomeet"                            # optional
//! password = { env = "GOMEET_PG_PASSWORD" }    # optional, same three forms
//! application_name = "drkit"                   # default "drkit"
//! wal_segment_size = "16MB"                    # initdb --wal-segsize; default 16MB
//!
//! [component.connection.tls]                   # required
//! mode = "verify-full"       # disable | require | verify-ca | verify-full
//! ca_file = "/etc/drkit/pg-ca.pem"             # required by verify-ca and verify-full
//! cert_file = "/etc/drkit/pg-client.pem"       # optional, with key_file
//! key_file = "/etc/drkit/pg-client.key"
//!
//! [[component.schedule]]
//! job = "backup"             # backup | verify
//! cron = "0 2 * * *"
//! timezone = "Asia/Jakarta"  # IANA name, default UTC
//!
//! [[component.schedule]]
//! job = "verify"             # backup | verify | restore-test
//! cron = "0 */6 * * *"
//!
//! [[component]]              # logical backups: pg_dump of these databases
//! id = "postgres-dump/gomeet"
//! kind = "postgres-dump"
//! objectives = { rto = "1h", rpo = "24h" }
//! retention = "within=30d"
//! databases = ["gomeet_primary", "gomeet_shard_1"]   # or "all"
//! globals = true                                     # roles and tablespaces; default true
//! pg_bin = "/usr/lib/postgresql/15/bin"              # optional; else the PATH
//! connection = { host = "10.0.0.5", user = "backup", tls = { mode = "require" } }
//! schedule = [{ job = "restore-test", cron = "0 4 1 * *" }]
//!
//! [[component]]              # a Redis server: RDB snapshots
//! id = "redis/sessions"
//! kind = "redis"
//! objectives = { rto = "5m", rpo = "1m" }
//! retention = "within=7d"
//! schedule = [{ job = "backup", cron = "0 */6 * * *" }]   # backup | verify
//!
//! [component.redis]
//! address = "10.0.0.8:6379"
//! user = "backup"                             # an ACL user; optional
//! password = { env = "REDIS_PASSWORD" }       # optional, same three forms
//! mode = "replication"       # replication (PSYNC, as redis-cli --rdb) | logical (SCAN, DUMP)
//! tls = { mode = "verify-full", ca_file = "/etc/drkit/redis-ca.pem" }   # required; or "disable"
//!
//! [[component]]              # a Redis Cluster: every shard at once
//! id = "redis-cluster/gomeet"
//! kind = "redis-cluster"
//! objectives = { rto = "5m", rpo = "1m" }
//! retention = "within=7d"
//! redis = { seeds = ["10.0.1.10:7000", "10.0.1.11:7000"], pause_writes = "10s", tls = { mode = "disable" } }
//! # pause_writes: CLIENT PAUSE WRITE on every master until each shard forked (one cut);
//! # source = "replicas" (default: a replica in sync, else the master) | "masters"
//!
//! [[component]]              # a cluster's objects: a resource backup, as Velero's
//! id = "kubernetes/livekit"
//! kind = "kubernetes"
//! objectives = { rto = "30m", rpo = "24h" }
//! retention = "daily=14"
//! schedule = [{ job = "backup", cron = "0 1 * * *" }]   # backup | verify
//!
//! [component.kubernetes]
//! kubeconfig = "/etc/drkit/kubeconfig"        # optional; absent: the cluster drkit runs in
//! context = "prod"                            # optional; default the current context
//! namespaces = ["livekit"]                    # default every namespace
//! exclude_namespaces = []
//! kinds = []                                  # resources as kubectl names them; default all
//! exclude_kinds = ["events"]
//! labels = "app.kubernetes.io/part-of=livekit"   # a label selector; optional
//! names = { configmaps = ["livekit-config"] }    # per resource, the only names taken
//! cluster_scoped = "auto"    # auto (as Velero) | include | exclude
//! secrets = false            # Secrets only when true (stored encrypted, as everything)
//!
//! [agent]                    # optional
//! listen = "0.0.0.0:9187"    # /metrics and /healthz
//! prune = { cron = "0 4 * * 0", timezone = "UTC" }
//! retry = "1m"               # first wait after a failed job, doubling; default 1m
//! refresh = "30s"            # how often /metrics reads the repository; default 30s
//! shutdown_grace = "5m"      # on SIGTERM, how long a running job may finish; default 5m
//!
//! [agent.lease]              # optional: jobs run only while this agent holds the Lease
//! namespace = "drkit"
//! name = "drkit-agent"
//! kubeconfig = "/etc/drkit/kubeconfig"        # optional; absent: the cluster drkit runs in
//! context = "prod"                            # optional, with kubeconfig
//! duration = "15s"           # held this long unrenewed, renewed every third of it; default 15s
//! ```
//!
//! # Example
//!
//! ```
//! use drkit::{Config, Job, SecretSource};
//!
//! let config = Config::from_toml(
//!     r#"
//!     [repository]
//!     location = "/var/lib/drkit/repo"
//!     password = { command = ["pass", "show", "drkit/repository"] }
//!
//!     [[component]]
//!     id = "postgres/gomeet_primary"
//!     kind = "postgres"
//!     objectives = { rto = "30m", rpo = "15m" }
//!     retention = "daily=30,within=7d"
//!     wal_archiving = true
//!     connection = { host = "127.0.0.1", user = "replicator", tls = { mode = "disable" } }
//!     schedule = [{ job = "backup", cron = "0 2 * * *", timezone = "Asia/Jakarta" }]
//!     "#,
//!     "<example>",
//! )?;
//!
//! let primary = &config.components()[0];
//! assert_eq!(primary.objectives().rpo.to_string(), "15m");
//! assert_eq!(primary.schedules()[0].job(), Job::Backup);
//! assert!(matches!(config.repository().password(), SecretSource::Command(_)));
//!
//! let now: jiff::Timestamp = "2026-11-21T08:00:00Z".parse().unwrap();
//! let next = primary.schedules()[0].schedule().next_after_timestamp(now).unwrap();
//! assert_eq!(next.to_string(), "2026-11-22T02:00:00+07:00[Asia/Jakarta]");
//! println!("{}", config.plan(now));
//!
//! // Errors say where and what was expected.
//! let err = Config::from_toml("[repository]\nlocation = \"repo\"\n", "drkit.toml").unwrap_err();
//! assert!(err.to_string().starts_with("drkit.toml:2:12: repository.location: "));
//! # Ok::<(), drkit::Error>(())
//! ```

pub(crate) mod config;
pub(crate) mod error;
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) mod failover;
#[cfg(feature = "kubernetes")]
pub(crate) mod kubernetes;
#[cfg(feature = "livekit")]
pub(crate) mod livekit;
pub(crate) mod plan;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "redis")]
pub(crate) mod redis;
pub(crate) mod schedule;
pub(crate) mod secret;

#[cfg(any(feature = "postgres", feature = "redis"))]
pub use crate::failover::{AutomaticFailover, FailoverSettings, LossLimitSetting, MemberSettings};
#[cfg(feature = "kubernetes")]
pub use crate::kubernetes::{KubernetesSettings, LeaseSettings};
#[cfg(feature = "livekit")]
pub use crate::livekit::LiveKitSettings;
#[cfg(feature = "postgres")]
pub use crate::postgres::{DumpSettings, PostgresSettings, TlsMode, TlsSettings};
#[cfg(feature = "redis")]
pub use crate::redis::{RedisSettings, RedisTls};
pub use crate::{
    config::{
        AgentSettings, Component, Config, Job, JobSchedule, KeyCacheSetting, RepositorySettings,
        S3Settings,
    },
    error::{Error, ErrorKind, Result},
    plan::Plan,
    schedule::{Cron, Schedule},
    secret::{Password, SecretSource},
};
