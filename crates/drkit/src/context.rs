//! What every command starts from: the config file, the repository it
//! names, and the components' connections, each resolved when a command
//! needs it.

use std::path::{Path, PathBuf};

use dr_core::ComponentId;
use dr_storage::{
    InitOptions, KeyCache, Location, LocationOptions, OpenOptions, Repository, Secret,
};
use drkit::{Component, Config, ErrorKind, KeyCacheSetting, SecretSource};

use crate::failure::Failure;
use crate::output::Output;

/// The loaded config and how to print.
pub(crate) struct Context {
    pub(crate) config: Config,
    pub(crate) out: Output,
}

/// How a command opens the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Backups, forget, prune, `wal push`.
    ReadWrite,
    /// Restores, listings, `wal fetch`: nothing written, not even the
    /// open's probe, so credentials that may only read suffice.
    ReadOnly,
}

/// The environment, as the config's `env` password sources read it.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Context {
    /// Loads the config file: a missing file or a wrong one is exit 2.
    pub(crate) fn load(path: &Path, out: Output) -> Result<Self, Failure> {
        let config = Config::load(path).map_err(|e| match e.kind() {
            ErrorKind::Read => Failure::Usage(format!(
                "{}: {}",
                failure_text(&e),
                "pass --config or set DRKIT_CONFIG to name the config file"
            )),
            _ => Failure::Usage(failure_text(&e)),
        })?;
        Ok(Self { config, out })
    }

    /// The component the config names `id`; an unknown one is exit 2.
    pub(crate) fn component(&self, id: &str) -> Result<&Component, Failure> {
        let parsed: ComponentId = id
            .parse()
            .map_err(|e| Failure::Usage(format!("{id:?} is not a component id: {e}")))?;
        self.config.component(&parsed).ok_or_else(|| {
            let known: Vec<String> = self
                .config
                .components()
                .iter()
                .map(|c| c.id().to_string())
                .collect();
            Failure::Usage(format!(
                "{} names no component {id}; it has {}",
                self.config.origin(),
                known.join(", ")
            ))
        })
    }

    /// The PostgreSQL component `id`, or the config's only one.
    pub(crate) fn postgres_component(&self, id: Option<&str>) -> Result<&Component, Failure> {
        if let Some(id) = id {
            let component = self.component(id)?;
            component
                .postgres()
                .ok_or_else(|| Failure::Usage(format!("{id} is not a PostgreSQL component")))?;
            return Ok(component);
        }
        let mut postgres = self
            .config
            .components()
            .iter()
            .filter(|c| c.postgres().is_some());
        match (postgres.next(), postgres.next()) {
            (Some(only), None) => Ok(only),
            (None, _) => Err(Failure::Usage(format!(
                "{} has no PostgreSQL component",
                self.config.origin()
            ))),
            (Some(_), Some(_)) => Err(Failure::Usage(format!(
                "{} has several PostgreSQL components: name one with --component",
                self.config.origin()
            ))),
        }
    }

    /// The repository's password.
    pub(crate) async fn secret(&self) -> Result<Secret, Failure> {
        let source: &SecretSource = self.config.repository().password();
        let password = source
            .resolve(env)
            .await
            .map_err(|e| Failure::Usage(failure_text(&e)))?;
        Ok(Secret::password(password.expose()))
    }

    /// Where the repository is, as the config names it.
    pub(crate) fn location(&self) -> &Location {
        self.config.repository().location()
    }

    /// How to reach the repository's store: the `[repository.s3]` settings.
    fn location_options(&self) -> LocationOptions {
        let mut options = LocationOptions::default();
        if let Some(s3) = self.config.repository().s3() {
            if let Some(region) = s3.region() {
                options = options.region(region);
            }
            if let Some(endpoint) = s3.endpoint() {
                options = options.endpoint(endpoint);
            }
            options = options.path_style(s3.path_style());
        }
        options
    }

    /// Creates the repository, encrypted with the config's password.
    pub(crate) async fn init_repository(&self) -> Result<Repository, Failure> {
        let secret = self.secret().await?;
        let location = self.location();
        Repository::init_at(
            location,
            &self.location_options(),
            InitOptions::encrypted(secret),
        )
        .await
        .map_err(|e| match e.kind() {
            dr_core::ErrorKind::AlreadyExists => Failure::Failed(format!(
                "there is a repository at {location} already; nothing was changed"
            )),
            _ => Failure::of(format_args!("creating the repository at {location}"), &e),
        })
    }

    /// Where this user caches the repository's unlocked key, so that the
    /// next process (the next `wal push`) skips the key derivation: the
    /// config's `key_cache`, else `$XDG_CACHE_HOME/drkit/keys` or
    /// `$HOME/.cache/drkit/keys`; none with `key_cache = false`,
    /// `DRKIT_KEY_CACHE=off`, or no absolute home.
    fn key_cache(&self) -> Result<Option<KeyCache>, Failure> {
        match env("DRKIT_KEY_CACHE").as_deref() {
            None | Some("") => {}
            Some("off") => return Ok(None),
            Some(other) => {
                return Err(Failure::Usage(format!(
                    "DRKIT_KEY_CACHE={other:?}: expected off (no key cache), or not set"
                )));
            }
        }
        let dir = match self.config.repository().key_cache() {
            KeyCacheSetting::Off => return Ok(None),
            KeyCacheSetting::Dir(dir) => dir.clone(),
            _ => {
                // As the XDG base directory specification says: a relative
                // $XDG_CACHE_HOME is ignored.
                let absolute = |name| {
                    std::env::var_os(name)
                        .map(PathBuf::from)
                        .filter(|p| p.is_absolute())
                };
                let Some(base) = absolute("XDG_CACHE_HOME")
                    .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
                else {
                    return Ok(None);
                };
                base.join("drkit").join("keys")
            }
        };
        Ok(KeyCache::new(dir).ok())
    }

    /// Opens the repository, through the key cache.
    pub(crate) async fn repository(&self, access: Access) -> Result<Repository, Failure> {
        let mut open = OpenOptions::new().secret(self.secret().await?);
        if let Some(cache) = self.key_cache()? {
            open = open.key_cache(cache);
        }
        let location = self.location();
        let options = self.location_options();
        let opened = match access {
            Access::ReadWrite => Repository::open_at_with(location, &options, open).await,
            Access::ReadOnly => Repository::open_read_only_at_with(location, &options, open).await,
        };
        opened.map_err(|e| match e.kind() {
            dr_core::ErrorKind::NotFound => Failure::Failed(format!(
                "there is no drkit repository at {location} ({e}; create it with drkit init)"
            )),
            _ => Failure::of(format_args!("opening the repository at {location}"), &e),
        })
    }

    /// The connection settings and TLS of a PostgreSQL component (either kind).
    pub(crate) async fn postgres(
        &self,
        component: &Component,
    ) -> Result<(tokio_postgres::Config, dr_postgres::Tls), Failure> {
        component
            .connection()
            .ok_or_else(|| {
                Failure::Usage(format!("{} is not a PostgreSQL component", component.id()))
            })?
            .resolve(env)
            .await
            .map_err(|e| Failure::Failed(failure_text(&e)))
    }

    /// A Redis component's settings.
    pub(crate) fn redis<'c>(
        &self,
        component: &'c Component,
    ) -> Result<&'c drkit::RedisSettings, Failure> {
        component
            .redis()
            .ok_or_else(|| Failure::Usage(format!("{} is not a Redis component", component.id())))
    }

    /// The server at `addr` (`host:port`), reached with Redis component
    /// `component`'s credentials and TLS.
    pub(crate) async fn redis_server(
        &self,
        component: &Component,
        addr: &str,
    ) -> Result<dr_redis::RedisServer, Failure> {
        self.redis(component)?
            .server(addr, env)
            .await
            .map_err(|e| Failure::Failed(failure_text(&e)))
    }

    /// The server of a `redis` component, or the first seed of a
    /// `redis-cluster` component that answers (else the first).
    pub(crate) async fn redis_seed(
        &self,
        component: &Component,
    ) -> Result<dr_redis::RedisServer, Failure> {
        let settings = self.redis(component)?;
        let mut first = None;
        for addr in settings.addresses() {
            let server = self.redis_server(component, addr).await?;
            if settings.addresses().len() == 1 || server.probe().await.is_ok() {
                return Ok(server);
            }
            first.get_or_insert(server);
        }
        first.ok_or_else(|| Failure::Usage(format!("{} names no server", component.id())))
    }

    /// The cluster a `kubernetes` component backs up: its kubeconfig and
    /// context, or the cluster drkit runs in.
    pub(crate) async fn kubernetes_cluster(
        &self,
        component: &Component,
    ) -> Result<dr_k8s::Cluster, Failure> {
        let settings = component.kubernetes().ok_or_else(|| {
            Failure::Usage(format!("{} is not a kubernetes component", component.id()))
        })?;
        crate::cluster::connect(settings.kubeconfig(), settings.context()).await
    }

    /// A client of a `livekit` component's server, or (`standby`) of its
    /// standby; the secret read now.
    pub(crate) async fn livekit(
        &self,
        component: &Component,
        standby: bool,
    ) -> Result<dr_livekit::LiveKit, Failure> {
        let settings = component.livekit().ok_or_else(|| {
            Failure::Usage(format!("{} is not a livekit component", component.id()))
        })?;
        let url = if standby {
            settings.standby_url().ok_or_else(|| {
                Failure::Usage(format!(
                    "{} has no standby: set standby_url in its [component.livekit]",
                    component.id()
                ))
            })?
        } else {
            settings.url()
        };
        settings
            .client_of(url, env)
            .await
            .map_err(|e| Failure::Failed(failure_text(&e)))
    }

    /// The OS user a PostgreSQL this process starts runs as: none when not
    /// root; as root, the `postgres` user, which PostgreSQL's packages create.
    pub(crate) fn postgres_os_user(&self) -> Result<Option<(u32, u32)>, Failure> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        match nix::unistd::User::from_name("postgres") {
            Ok(Some(user)) => Ok(Some((user.uid.as_raw(), user.gid.as_raw()))),
            _ => Err(Failure::Usage(
                "running as root, drkit starts PostgreSQL as the postgres OS user, and there is \
                 none: create it (Debian's postgresql package does), or run drkit as the user \
                 PostgreSQL should run as"
                    .to_owned(),
            )),
        }
    }
}

/// An error and its causes.
fn failure_text(error: &(dyn std::error::Error + 'static)) -> String {
    crate::failure::chain(error)
}
