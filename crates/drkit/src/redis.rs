//! The settings of `redis` and `redis-cluster` components: the
//! `[component.redis]` table — where the server (or the cluster's seeds)
//! is, who to authenticate as, TLS — and how snapshots are taken.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dr_core::ComponentId;
use dr_redis::{RedisServer, SnapshotMode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use toml::Spanned;

use crate::config::{Interval, Parsed, Source};
use crate::error::{Error, Result};
use crate::failover::FailoverSettings;
use crate::secret::SecretSource;

/// How a `redis` or `redis-cluster` component is reached and backed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    component: ComponentId,
    addresses: Vec<String>,
    user: Option<String>,
    password: Option<SecretSource>,
    tls: RedisTls,
    cluster: bool,
    mode: SnapshotMode,
    pause_writes: Option<Duration>,
    from_masters: bool,
    failover: Option<FailoverSettings>,
    archiving: bool,
}

/// TLS to Redis: off, or with the server's certificate checked against a
/// CA and the host (and a client certificate where given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTls {
    /// Plain TCP.
    Disable,
    /// TLS, the certificate checked against `ca_file` and the host.
    VerifyFull {
        /// The PEM file of the certificate authorities.
        ca_file: PathBuf,
        /// The PEM files of a client certificate and its key.
        client_cert: Option<(PathBuf, PathBuf)>,
    },
}

impl RedisSettings {
    /// Whether the component is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// `host:port` of the server, or of each seed of the cluster.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// The ACL user, if not `default`.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Where the password comes from.
    pub fn password(&self) -> Option<&SecretSource> {
        self.password.as_ref()
    }

    /// The TLS settings.
    pub fn tls(&self) -> &RedisTls {
        &self.tls
    }

    /// How a standalone server's snapshots are taken.
    pub fn mode(&self) -> SnapshotMode {
        self.mode
    }

    /// For a cluster: how long writes may be paused for a consistent cut.
    pub fn pause_writes(&self) -> Option<Duration> {
        self.pause_writes
    }

    /// For a cluster: whether shards are fetched from masters rather than
    /// from replicas in sync.
    pub fn from_masters(&self) -> bool {
        self.from_masters
    }

    /// Whether the agent archives the master's replication stream (each
    /// shard's, for a Cluster) continuously (`archiving = true`), for
    /// restores to any point in time.
    pub fn archiving(&self) -> bool {
        self.archiving
    }

    /// For a standalone server: its replication set's `[component.failover]`
    /// table, where it has one.
    pub fn failover(&self) -> Option<&FailoverSettings> {
        self.failover.as_ref()
    }

    /// With the `[component.failover]` table.
    pub(crate) fn with_failover(mut self, failover: Option<FailoverSettings>) -> Self {
        self.failover = failover;
        self
    }

    /// The server at `addr` (`host:port`), reached with these credentials
    /// and TLS settings; the password and certificate files are read now.
    ///
    /// # Errors
    /// [`Error::Secret`] if the password cannot be read, [`Error::Tls`] for
    /// certificate files that do not read.
    pub async fn server(
        &self,
        addr: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<RedisServer> {
        let fail = |reason: String| Error::Tls {
            component: self.component.to_string(),
            reason,
            source: None,
        };
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| {
                Some((
                    h.trim_start_matches('[').trim_end_matches(']'),
                    p.parse().ok()?,
                ))
            })
            .ok_or_else(|| fail(format!("{addr:?} is not host:port")))?;
        let mut server = RedisServer::new(host, port);
        if let Some(source) = &self.password {
            let password = source.resolve(env).await?;
            server = server.auth(self.user.clone(), password.expose());
        }
        if let RedisTls::VerifyFull {
            ca_file,
            client_cert,
        } = &self.tls
        {
            let config = self.client_config(ca_file, client_cert.as_ref()).await?;
            server = server
                .tls(config)
                .map_err(|e| fail(format!("{addr}: {e}")))?;
        }
        Ok(server)
    }

    async fn client_config(
        &self,
        ca_file: &Path,
        client_cert: Option<&(PathBuf, PathBuf)>,
    ) -> Result<Arc<rustls::ClientConfig>> {
        let fail =
            |reason: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| Error::Tls {
                component: self.component.to_string(),
                reason,
                source,
            };
        let read = |path: PathBuf| async move {
            tokio::fs::read(&path)
                .await
                .map_err(|e| fail(format!("reading {}", path.display()), Some(Box::new(e))))
        };
        let certificates = |pem: &[u8], path: &Path| {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| fail(format!("{}: bad PEM", path.display()), Some(Box::new(e))))?;
            if certs.is_empty() {
                return Err(fail(
                    format!("{}: no PEM certificate", path.display()),
                    None,
                ));
            }
            Ok(certs)
        };
        let mut roots = rustls::RootCertStore::empty();
        let pem = read(ca_file.to_owned()).await?;
        for cert in certificates(&pem, ca_file)? {
            roots.add(cert).map_err(|e| {
                fail(
                    format!("{}: not a usable CA certificate", ca_file.display()),
                    Some(Box::new(e)),
                )
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| fail("rustls refused the settings".into(), Some(Box::new(e))))?
            .with_root_certificates(roots);
        let config = match client_cert {
            None => builder.with_no_client_auth(),
            Some((cert_file, key_file)) => {
                let chain = certificates(&read(cert_file.clone()).await?, cert_file)?;
                let key =
                    PrivateKeyDer::from_pem_slice(&read(key_file.clone()).await?).map_err(|e| {
                        fail(
                            format!("{}: no PEM private key", key_file.display()),
                            Some(Box::new(e)),
                        )
                    })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    fail(
                        "rustls refused the client certificate".into(),
                        Some(Box::new(e)),
                    )
                })?
            }
        };
        Ok(Arc::new(config))
    }
}

// ---- Parsing -------------------------------------------------------------

/// `[component.redis]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    address: Option<String>,
    seeds: Option<Vec<String>>,
    user: Option<String>,
    password: Option<SecretSource>,
    tls: Spanned<RawRedisTls>,
    mode: Option<String>,
    pause_writes: Option<Parsed<Interval>>,
    source: Option<String>,
    archiving: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedisTls {
    mode: String,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// `host:port` with a port.
fn check_address(addr: &str) -> std::result::Result<(), String> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!(
            "{addr:?}; expected host:port, such as \"10.0.0.8:6379\""
        )),
    }
}

impl RedisSettings {
    /// Checks a parsed `[component.redis]` of a component of kind `redis`
    /// (`cluster` false) or `redis-cluster`; `field` is its path.
    pub(crate) fn check(
        raw: Spanned<RawRedis>,
        cluster: bool,
        component: &ComponentId,
        source: &Source<'_>,
        field: &str,
    ) -> Result<Self> {
        let span = raw.span();
        let raw = raw.into_inner();
        let error = |sub: &str, message: &str| {
            source.error(Some(span.clone()), &format!("{field}.{sub}"), message)
        };
        let addresses = match (cluster, raw.address, raw.seeds) {
            (false, Some(address), None) => vec![address],
            (false, _, Some(_)) => {
                return Err(error(
                    "seeds",
                    "`seeds` is for redis-cluster components; expected `address`",
                ));
            }
            (false, None, None) => {
                return Err(error(
                    "address",
                    "missing field `address`; expected the server's host:port",
                ));
            }
            (true, None, Some(seeds)) if !seeds.is_empty() => seeds,
            (true, Some(_), _) => {
                return Err(error(
                    "address",
                    "`address` is for redis components; expected `seeds`, a list of \
                     cluster nodes' host:port",
                ));
            }
            (true, None, _) => {
                return Err(error(
                    "seeds",
                    "missing field `seeds`; expected a list of cluster nodes' host:port",
                ));
            }
        };
        for address in &addresses {
            check_address(address)
                .map_err(|m| error(if cluster { "seeds" } else { "address" }, &m))?;
        }
        let archiving = raw.archiving.unwrap_or(false);
        let mode = match (cluster, raw.mode.as_deref()) {
            (_, None | Some("replication")) => SnapshotMode::Replication,
            (false, Some("logical")) => SnapshotMode::Logical,
            (true, Some(_)) => {
                return Err(error(
                    "mode",
                    "a cluster's shards are fetched over the replication protocol; \
                     `mode` is for redis components",
                ));
            }
            (false, Some(other)) => {
                return Err(error(
                    "mode",
                    &format!("{other:?}; expected \"replication\" or \"logical\""),
                ));
            }
        };
        if !cluster && raw.pause_writes.is_some() {
            return Err(error(
                "pause_writes",
                "`pause_writes` is for redis-cluster components",
            ));
        }
        let from_masters = match (cluster, raw.source.as_deref()) {
            (_, None) => false,
            (true, Some("replicas")) => false,
            (true, Some("masters")) => true,
            (true, Some(other)) => {
                return Err(error(
                    "source",
                    &format!("{other:?}; expected \"replicas\" or \"masters\""),
                ));
            }
            (false, Some(_)) => {
                return Err(error("source", "`source` is for redis-cluster components"));
            }
        };
        let tls_span = raw.tls.span();
        let tls = raw.tls.into_inner();
        let tls_error =
            |message: &str| source.error(Some(tls_span.clone()), &format!("{field}.tls"), message);
        let client_cert = match (tls.cert_file, tls.key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(tls_error(
                    "cert_file without key_file or key_file without cert_file; \
                     expected both or neither",
                ));
            }
        };
        let tls = match (tls.mode.as_str(), tls.ca_file) {
            ("disable", None) if client_cert.is_none() => RedisTls::Disable,
            ("disable", _) => {
                return Err(tls_error(
                    "certificate files with mode \"disable\"; expected mode \"verify-full\" \
                     or no files",
                ));
            }
            ("verify-full", Some(ca_file)) => RedisTls::VerifyFull {
                ca_file,
                client_cert,
            },
            ("verify-full", None) => {
                return Err(tls_error(
                    "mode \"verify-full\" checks the server's certificate against ca_file; \
                     expected ca_file",
                ));
            }
            (other, _) => {
                return Err(tls_error(&format!(
                    "mode {other:?}; expected \"disable\" or \"verify-full\""
                )));
            }
        };
        Ok(Self {
            component: component.clone(),
            addresses,
            user: raw.user,
            password: raw.password,
            tls,
            cluster,
            mode,
            pause_writes: raw.pause_writes.map(|p| p.0.get()),
            from_masters,
            failover: None,
            archiving,
        })
    }
}
