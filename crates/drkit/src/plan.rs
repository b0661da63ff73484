//! The resolved plan, as `drkit config check` prints it.

use std::fmt;

use jiff::Timestamp;

use dr_core::Rto;
use dr_storage::Location;

use crate::config::Config;
use crate::schedule::Schedule;

/// A [`Config`] as a plan: the repository, every component with its
/// objectives, retention and schedules, and when each schedule runs next
/// after a given instant. Made by [`Config::plan`]; read it through
/// `Display`.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    config: &'a Config,
    now: Timestamp,
}

impl Config {
    /// The plan, with next runs computed strictly after `now` (the caller's
    /// clock: `jiff::Timestamp::now()` in a binary).
    pub fn plan(&self, now: Timestamp) -> Plan<'_> {
        Plan { config: self, now }
    }
}

impl Plan<'_> {
    fn schedule_line(
        &self,
        f: &mut fmt::Formatter<'_>,
        what: &str,
        schedule: &Schedule,
    ) -> fmt::Result {
        let when = schedule.to_string();
        match schedule.next_after_timestamp(self.now) {
            Some(next) => writeln!(f, "  {what:<11} {when:<30} next {next}"),
            None => writeln!(f, "  {what:<11} {when:<30} never runs"),
        }
    }
}

impl fmt::Display for Plan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.config;
        writeln!(
            f,
            "config {}, next runs after {}",
            config.origin(),
            self.now
        )?;
        let repository = config.repository();
        write!(f, "repository {}", repository.location())?;
        if let (Location::S3(_), Some(s3)) = (repository.location(), repository.s3()) {
            let mut details = Vec::new();
            if let Some(region) = s3.region() {
                details.push(format!("region {region}"));
            }
            if let Some(endpoint) = s3.endpoint() {
                details.push(format!("endpoint {endpoint}"));
            }
            if s3.path_style() {
                details.push("path-style".to_owned());
            }
            if !details.is_empty() {
                write!(f, " ({})", details.join(", "))?;
            }
        }
        writeln!(f)?;
        writeln!(f, "  {:<11} from {}", "password", repository.password())?;
        for component in config.components() {
            writeln!(f, "component {}", component.id())?;
            let objectives = component.objectives();
            writeln!(
                f,
                "  {:<11} RTO {}, RPO {}",
                "objectives", objectives.rto, objectives.rpo
            )?;
            writeln!(f, "  {:<11} {}", "retention", component.retention())?;
            #[cfg(feature = "postgres")]
            if let Some(pg) = component.postgres() {
                let db = pg.dbname().map(|d| format!(" db {d}")).unwrap_or_default();
                writeln!(
                    f,
                    "  {:<11} {}@{} port {}{db}, tls {}, WAL archiving {}",
                    "postgres",
                    pg.user(),
                    pg.hosts().join(","),
                    pg.port(),
                    pg.tls().mode(),
                    if pg.wal_archiving() { "on" } else { "off" },
                )?;
                if let Some(password) = pg.password() {
                    writeln!(f, "  {:<11} from {password}", "password")?;
                }
            }
            #[cfg(feature = "postgres")]
            if let Some(dump) = component.postgres_dump() {
                let pg = dump.connection();
                let databases = match dump.databases() {
                    dr_postgres::Databases::Named(names) => names.join(", "),
                    _ => "every database".to_owned(),
                };
                writeln!(
                    f,
                    "  {:<11} {}@{} port {}, tls {}: pg_dump of {databases}{}",
                    "dump",
                    pg.user(),
                    pg.hosts().join(","),
                    pg.port(),
                    pg.tls().mode(),
                    if dump.globals() {
                        " and the globals"
                    } else {
                        ""
                    },
                )?;
                if let Some(password) = pg.password() {
                    writeln!(f, "  {:<11} from {password}", "password")?;
                }
            }
            #[cfg(feature = "redis")]
            if let Some(redis) = component.redis() {
                let what = if redis.is_cluster() {
                    let pause = redis
                        .pause_writes()
                        .map(|d| format!(", writes paused up to {}s for one cut", d.as_secs()))
                        .unwrap_or_default();
                    format!(
                        "cluster seeds {}, shards from {}{pause}",
                        redis.addresses().join(", "),
                        if redis.from_masters() {
                            "masters"
                        } else {
                            "replicas in sync"
                        }
                    )
                } else {
                    format!(
                        "{}, {} snapshots",
                        redis.addresses().join(", "),
                        match redis.mode() {
                            dr_redis::SnapshotMode::Logical => "logical (SCAN, DUMP)",
                            _ => "replication (PSYNC)",
                        }
                    )
                };
                let tls = match redis.tls() {
                    crate::redis::RedisTls::Disable => "off",
                    _ => "verify-full",
                };
                writeln!(
                    f,
                    "  {:<11} {what}, user {}, tls {tls}",
                    "redis",
                    redis.user().unwrap_or("default"),
                )?;
                if let Some(password) = redis.password() {
                    writeln!(f, "  {:<11} from {password}", "password")?;
                }
            }
            #[cfg(feature = "kubernetes")]
            if let Some(kubernetes) = component.kubernetes() {
                let cluster = match (kubernetes.kubeconfig(), kubernetes.context()) {
                    (Some(path), Some(context)) => {
                        format!("context {context} of {}", path.display())
                    }
                    (Some(path), None) => format!("the current context of {}", path.display()),
                    _ => "the cluster drkit runs in".to_owned(),
                };
                writeln!(f, "  {:<11} {cluster}", "kubernetes")?;
                writeln!(f, "  {:<11} {}", "objects", objects(kubernetes.filter()))?;
            }
            if component.schedules().is_empty() {
                writeln!(f, "  {:<11} none (run by hand)", "schedules")?;
            }
            for job in component.schedules() {
                self.schedule_line(f, job.job().as_str(), job.schedule())?;
            }
        }
        if let Some(agent) = config.agent() {
            writeln!(
                f,
                "agent listening on {} (/metrics, /healthz)",
                agent.listen()
            )?;
            self.schedule_line(f, "prune", agent.prune())?;
            writeln!(
                f,
                "  {:<11} first after {}, doubling; repository read every {}; \
                 {} for a running job on SIGTERM",
                "retry",
                Rto::new(agent.retry()),
                Rto::new(agent.refresh()),
                Rto::new(agent.shutdown_grace())
            )?;
        }
        Ok(())
    }
}

/// What a resource filter takes, in words.
#[cfg(feature = "kubernetes")]
fn objects(filter: &dr_k8s::ResourceFilter) -> String {
    let list = |items: &mut dyn Iterator<Item = &String>| {
        items.map(String::as_str).collect::<Vec<_>>().join(", ")
    };
    let mut parts = vec![if filter.include_namespaces.is_empty() {
        "every namespace".to_owned()
    } else {
        format!("namespaces {}", list(&mut filter.include_namespaces.iter()))
    }];
    if !filter.exclude_namespaces.is_empty() {
        parts.push(format!(
            "not {}",
            list(&mut filter.exclude_namespaces.iter())
        ));
    }
    if !filter.include_kinds.is_empty() {
        parts.push(format!("only {}", list(&mut filter.include_kinds.iter())));
    }
    if !filter.exclude_kinds.is_empty() {
        parts.push(format!("no {}", list(&mut filter.exclude_kinds.iter())));
    }
    if let Some(labels) = &filter.labels {
        parts.push(format!("labels {labels}"));
    }
    for (kind, names) in &filter.only_names {
        parts.push(format!("{kind} {}", list(&mut names.iter())));
    }
    parts.push(format!(
        "cluster-scoped {}",
        match filter.cluster_scoped {
            dr_k8s::ClusterScoped::Include => "included",
            dr_k8s::ClusterScoped::Exclude => "excluded",
            _ => "auto",
        }
    ));
    parts.push(
        if filter.secrets {
            "Secrets taken"
        } else {
            "no Secrets"
        }
        .to_owned(),
    );
    parts.join("; ")
}
