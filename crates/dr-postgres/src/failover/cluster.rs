//! The servers of one PostgreSQL cluster, as a failover knows them: each
//! with a name, how to reach it, and whether and how much it may be
//! promoted.

use std::time::Duration;

use dr_core::ComponentId;

use crate::replication::Tls;

/// One server of the cluster: the primary now, or a streaming replica.
#[derive(Debug, Clone)]
pub struct PgMember {
    pub(crate) name: String,
    pub(crate) config: tokio_postgres::Config,
    pub(crate) priority: i32,
    pub(crate) never_promote: bool,
}

impl PgMember {
    /// The server `config` points at (a superuser: assessing reads
    /// `pg_stat_replication` and the replicas' settings, promoting and
    /// rewiring change them), known as `name` in reports and in its
    /// replication connection's `application_name`.
    pub fn new(name: impl Into<String>, config: tokio_postgres::Config) -> Self {
        Self {
            name: name.into(),
            config,
            priority: 0,
            never_promote: false,
        }
    }

    /// Preference among replicas that are equally advanced, higher first
    /// (default 0).
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Never promote this server (a reporting replica, a delayed one).
    #[must_use]
    pub fn never_promote(mut self) -> Self {
        self.never_promote = true;
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How to reach it.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// `host:port` of its first host, for people.
    pub(crate) fn address(&self) -> String {
        use tokio_postgres::config::Host;
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            #[cfg(unix)]
            Some(Host::Unix(dir)) => dir.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }
}

/// A PostgreSQL cluster: a primary and its streaming replicas, reached
/// with the same TLS settings.
#[derive(Debug, Clone)]
pub struct PgCluster {
    pub(crate) component: ComponentId,
    pub(crate) members: Vec<PgMember>,
    pub(crate) tls: Tls,
    pub(crate) probe_timeout: Duration,
}

impl PgCluster {
    /// The cluster of `component`, its members to be added with
    /// [`PgCluster::member`].
    pub fn new(component: ComponentId, tls: Tls) -> Self {
        Self {
            component,
            members: Vec::new(),
            tls,
            probe_timeout: Duration::from_secs(5),
        }
    }

    /// Adds a member; names must be unique.
    #[must_use]
    pub fn member(mut self, member: PgMember) -> Self {
        self.members.push(member);
        self
    }

    /// How long one member may take to answer an assessment before it
    /// counts as unreachable (default 5 s).
    #[must_use]
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout;
        self
    }

    /// The component.
    pub fn component(&self) -> &ComponentId {
        &self.component
    }

    /// The members, in the order added.
    pub fn members(&self) -> &[PgMember] {
        &self.members
    }

    /// The member named `name`.
    pub fn get(&self, name: &str) -> Option<&PgMember> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Fails on a cluster that cannot be failed over: no members, or two
    /// with one name.
    pub(crate) fn check(&self) -> dr_core::Result<()> {
        if self.members.is_empty() {
            return Err(dr_core::Error::invalid(
                "cluster",
                format!("{} has no members", self.component),
            ));
        }
        for (i, member) in self.members.iter().enumerate() {
            if self.members[..i].iter().any(|m| m.name == member.name) {
                return Err(dr_core::Error::invalid(
                    "cluster",
                    format!(
                        "two members of {} are named {:?}",
                        self.component, member.name
                    ),
                ));
            }
        }
        Ok(())
    }
}
