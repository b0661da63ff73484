//! A PostgreSQL component's settings: the connection, its TLS, and what
//! they become: a `tokio_postgres::Config` and a `dr_postgres::Tls`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use dr_core::ComponentId;
use dr_postgres::{ClientCertificate, DEFAULT_SEGMENT_SIZE, ServerCheck, Tls, WalSegmentSize};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_postgres::config::SslMode;
use toml::Spanned;

use crate::config::{FromConfig, Hosts, Parsed, Source};
use crate::error::{Error, Result};
use crate::failover::FailoverSettings;
use crate::secret::{Password, SecretSource};

/// The application name servers see when the file gives none.
const DEFAULT_APPLICATION_NAME: &str = "drkit";

/// A `postgres` component's settings: `wal_archiving` and the
/// `[component.connection]` table.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    component: ComponentId,
    wal_archiving: bool,
    hosts: Vec<String>,
    port: u16,
    user: String,
    dbname: Option<String>,
    password: Option<SecretSource>,
    application_name: String,
    wal_segment_size: WalSegmentSize,
    tls: TlsSettings,
    pg_bin: Option<PathBuf>,
    failover: Option<FailoverSettings>,
}

impl PostgresSettings {
    /// With PostgreSQL's programs in `dir`.
    pub(crate) fn with_pg_bin(mut self, dir: Option<PathBuf>) -> Self {
        self.pg_bin = dir;
        self
    }

    /// With the `[component.failover]` table.
    pub(crate) fn with_failover(mut self, failover: Option<FailoverSettings>) -> Self {
        self.failover = failover;
        self
    }

    /// The cluster's members and how it fails over, if the file says.
    pub fn failover(&self) -> Option<&FailoverSettings> {
        self.failover.as_ref()
    }

    /// Where PostgreSQL's programs are (`pg_bin`; else the `PATH`).
    pub fn pg_tools(&self) -> dr_postgres::PgTools {
        match &self.pg_bin {
            Some(dir) => dr_postgres::PgTools::in_dir(dir),
            None => dr_postgres::PgTools::from_path(),
        }
    }

    /// The directory of PostgreSQL's programs, if the file names one.
    pub fn pg_bin(&self) -> Option<&Path> {
        self.pg_bin.as_deref()
    }

    /// How PostgreSQL's own programs (`pg_dump`, `pg_restore`) check the
    /// server's certificate and present the client's.
    pub fn libpq_tls(&self) -> dr_postgres::LibpqTls {
        let tls = &self.tls;
        let base = match (tls.mode, &tls.ca_file) {
            (TlsMode::Disable, _) => dr_postgres::LibpqTls::disable(),
            (TlsMode::VerifyCa, Some(ca)) => dr_postgres::LibpqTls::verify_ca(ca),
            (TlsMode::VerifyFull, Some(ca)) => dr_postgres::LibpqTls::verify_full(ca),
            _ => dr_postgres::LibpqTls::require(),
        };
        match &tls.client_cert {
            Some((cert, key)) => base.client_certificate(cert, key),
            None => base,
        }
    }
    /// The cluster's WAL segment size (`initdb --wal-segsize`; default
    /// 16MB), which the WAL commands check segments against.
    pub fn wal_segment_size(&self) -> WalSegmentSize {
        self.wal_segment_size
    }

    /// Whether WAL is archived continuously (an RPO of seconds) or only
    /// with each base backup.
    pub fn wal_archiving(&self) -> bool {
        self.wal_archiving
    }

    /// The hosts, tried in order: names, addresses, or (starting with `/`)
    /// Unix socket directories.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The port (default 5432).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user to connect as; it needs the `REPLICATION` attribute.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The database for control connections, if given (the server's
    /// default is the user's name).
    pub fn dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
    }

    /// Where the password comes from, if the server asks for one.
    pub fn password(&self) -> Option<&SecretSource> {
        self.password.as_ref()
    }

    /// The application name the server shows in `pg_stat_activity`
    /// (default `drkit`).
    pub fn application_name(&self) -> &str {
        &self.application_name
    }

    /// The TLS settings.
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// The connection settings with `password`, if any: hosts, port, user,
    /// database, application name, and `sslmode` `disable` or `require` as
    /// the TLS mode says (how the certificate is checked is the
    /// [`Tls`]'s business, from [`load_tls`](Self::load_tls)).
    pub fn pg_config(&self, password: Option<&Password>) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        for host in &self.hosts {
            config.host(host);
        }
        config
            .port(self.port)
            .user(&self.user)
            .application_name(&self.application_name)
            .ssl_mode(match self.tls.mode {
                TlsMode::Disable => SslMode::Disable,
                TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
            });
        if let Some(dbname) = &self.dbname {
            config.dbname(dbname);
        }
        if let Some(password) = password {
            config.password(password.expose());
        }
        config
    }

    /// The [`Tls`] the TLS settings describe, reading the CA, certificate and
    /// key files now.
    ///
    /// # Errors
    /// [`Error::Tls`] if a file cannot be read or holds no PEM certificate or
    /// key, or rustls refuses them.
    pub async fn load_tls(&self) -> Result<Tls> {
        self.tls.load(&self.component).await
    }

    /// Both at once: the password resolved (see [`SecretSource::resolve`]
    /// for `env`), the TLS files read.
    ///
    /// # Errors
    /// [`Error::Secret`] if the password cannot be obtained, [`Error::Tls`]
    /// as [`load_tls`](Self::load_tls).
    pub async fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(tokio_postgres::Config, Tls)> {
        let password = match &self.password {
            Some(source) => Some(source.resolve(env).await?),
            None => None,
        };
        let tls = self.load_tls().await?;
        Ok((self.pg_config(password.as_ref()), tls))
    }
}

/// How a connection uses TLS, as libpq's `sslmode` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsMode {
    /// No TLS.
    Disable,
    /// Encrypt, without checking the server's certificate, unless `ca_file`
    /// is given: then as [`VerifyCa`](Self::VerifyCa) (libpq does the same).
    Require,
    /// Encrypt; the certificate must chain to `ca_file`.
    VerifyCa,
    /// Encrypt; the certificate must chain to `ca_file` and name the host.
    VerifyFull,
}

impl TlsMode {
    /// Every mode, weakest first.
    pub const ALL: [TlsMode; 4] = [
        TlsMode::Disable,
        TlsMode::Require,
        TlsMode::VerifyCa,
        TlsMode::VerifyFull,
    ];

    /// The name as written in the file.
    pub const fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TlsMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        TlsMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| Error::Invalid {
                what: "TLS mode",
                input: s.to_owned(),
                reason: "expected disable, require, verify-ca or verify-full".to_owned(),
            })
    }
}

impl FromConfig for TlsMode {
    const EXPECTED: &'static str =
        "a TLS mode: \"disable\", \"require\", \"verify-ca\" or \"verify-full\"";

    fn from_config(text: &str) -> std::result::Result<Self, String> {
        text.parse()
            .map_err(|_| format!("unknown TLS mode {text:?}"))
    }
}

/// The `[component.connection.tls]` table. It is required: whether a
/// connection is encrypted is the operator's choice, not a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    mode: TlsMode,
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsSettings {
    /// The mode.
    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// The PEM file of the certificate authorities the server's certificate
    /// must chain to.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The PEM files of the client certificate (with its chain) and its key.
    pub fn client_cert(&self) -> Option<(&Path, &Path)> {
        self.client_cert
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()))
    }

    async fn load(&self, component: &ComponentId) -> Result<Tls> {
        let fail =
            |reason: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| Error::Tls {
                component: component.to_string(),
                reason,
                source,
            };
        let check = match &self.ca_file {
            // Checked when parsing: only `require` comes here, without a client certificate.
            None if self.mode == TlsMode::Disable => return Ok(Tls::none()),
            None => ServerCheck::AnyCertificate,
            Some(ca_file) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certificates(ca_file, component).await? {
                    roots.add(cert).map_err(|e| {
                        fail(
                            format!("{}: not a usable CA certificate", ca_file.display()),
                            Some(Box::new(e)),
                        )
                    })?;
                }
                if self.mode == TlsMode::VerifyFull {
                    ServerCheck::ChainAndHost(roots)
                } else {
                    ServerCheck::Chain(roots)
                }
            }
        };
        let client = match &self.client_cert {
            None => None,
            Some((cert_file, key_file)) => {
                let chain = read_certificates(cert_file, component).await?;
                let pem = read(key_file, component).await?;
                let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                    fail(
                        format!("{}: no PEM private key", key_file.display()),
                        Some(Box::new(e)),
                    )
                })?;
                Some(ClientCertificate::new(chain, key))
            }
        };
        Tls::new(check, client)
            .map_err(|e| fail("rustls refused the settings".into(), Some(Box::new(e))))
    }
}

async fn read(path: &Path, component: &ComponentId) -> Result<Vec<u8>> {
    tokio::fs::read(path).await.map_err(|e| Error::Tls {
        component: component.to_string(),
        reason: format!("reading {}", path.display()),
        source: Some(Box::new(e)),
    })
}

async fn read_certificates(
    path: &Path,
    component: &ComponentId,
) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, component).await?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls {
            component: component.to_string(),
            reason: format!("{}: bad PEM", path.display()),
            source: Some(Box::new(e)),
        })?;
    if certs.is_empty() {
        return Err(Error::Tls {
            component: component.to_string(),
            reason: format!("{}: no PEM certificate", path.display()),
            source: None,
        });
    }
    Ok(certs)
}

// ---- Parsing -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnection {
    host: Hosts,
    port: Option<u16>,
    user: String,
    dbname: Option<String>,
    password: Option<SecretSource>,
    application_name: Option<String>,
    wal_segment_size: Option<Parsed<WalSegmentSize>>,
    tls: Spanned<RawTls>,
}

impl FromConfig for WalSegmentSize {
    const EXPECTED: &'static str =
        "a WAL segment size such as \"16MB\" (a power of two from 1MB to 1GB)";

    fn from_config(text: &str) -> std::result::Result<Self, String> {
        text.parse().map_err(|e| format!("{e}"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    mode: Parsed<TlsMode>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

impl PostgresSettings {
    /// Checks a parsed connection table; `field` is its path.
    pub(crate) fn check(
        connection: Spanned<RawConnection>,
        wal_archiving: bool,
        component: &ComponentId,
        source: &Source<'_>,
        field: &str,
    ) -> Result<Self> {
        let span = connection.span();
        let raw = connection.into_inner();
        if raw.user.is_empty() {
            return Err(source.error(
                Some(span),
                &format!("{field}.user"),
                "empty user; expected the role to connect as",
            ));
        }
        let tls_span = raw.tls.span();
        let tls_field = format!("{field}.tls");
        let tls_error = |message: &str| source.error(Some(tls_span.clone()), &tls_field, message);
        let tls = raw.tls.into_inner();
        let mode = tls.mode.0;
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
        match mode {
            TlsMode::Disable if tls.ca_file.is_some() || client_cert.is_some() => {
                return Err(tls_error(
                    "certificate files with mode \"disable\"; expected a mode that uses them \
                     (\"verify-full\") or no files",
                ));
            }
            TlsMode::VerifyCa | TlsMode::VerifyFull if tls.ca_file.is_none() => {
                return Err(tls_error(&format!(
                    "mode \"{mode}\" checks the server's certificate against ca_file; \
                     expected ca_file"
                )));
            }
            TlsMode::Require if tls.ca_file.is_none() && client_cert.is_some() => {
                return Err(tls_error(
                    "a client certificate for a server whose certificate is not checked; \
                     expected ca_file (or mode \"verify-full\") too",
                ));
            }
            _ => {}
        }
        if mode != TlsMode::Disable && raw.host.0.iter().any(|h| h.starts_with('/')) {
            return Err(tls_error(&format!(
                "mode \"{mode}\" with a Unix socket host, where PostgreSQL offers no TLS; \
                 expected mode \"disable\" for socket directories"
            )));
        }
        Ok(PostgresSettings {
            component: component.clone(),
            wal_archiving,
            hosts: raw.host.0,
            port: raw.port.unwrap_or(5432),
            user: raw.user,
            dbname: raw.dbname,
            password: raw.password,
            application_name: raw
                .application_name
                .unwrap_or_else(|| DEFAULT_APPLICATION_NAME.to_owned()),
            wal_segment_size: raw
                .wal_segment_size
                .map_or(DEFAULT_SEGMENT_SIZE, |size| size.0),
            tls: TlsSettings {
                mode,
                ca_file: tls.ca_file,
                client_cert,
            },
            pg_bin: None,
            failover: None,
        })
    }
}

/// A `postgres-dump` component's settings: the connection, which databases,
/// and whether the globals (roles, tablespaces) are dumped too.
#[derive(Debug, Clone)]
pub struct DumpSettings {
    connection: PostgresSettings,
    databases: dr_postgres::Databases,
    globals: bool,
}

impl DumpSettings {
    pub(crate) fn new(
        connection: PostgresSettings,
        databases: dr_postgres::Databases,
        globals: bool,
    ) -> Self {
        Self {
            connection,
            databases,
            globals,
        }
    }

    /// The server's connection settings.
    pub fn connection(&self) -> &PostgresSettings {
        &self.connection
    }

    /// Which databases are dumped.
    pub fn databases(&self) -> &dr_postgres::Databases {
        &self.databases
    }

    /// Whether the globals are dumped too (default true).
    pub fn globals(&self) -> bool {
        self.globals
    }
}

/// `databases = "all"` or a list of names.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDatabases {
    Word(String),
    Names(Vec<String>),
}

impl RawDatabases {
    pub(crate) fn check(self) -> std::result::Result<dr_postgres::Databases, String> {
        match self {
            RawDatabases::Word(word) if word == "all" => Ok(dr_postgres::Databases::All),
            RawDatabases::Word(word) => Err(format!(
                "{word:?}; expected \"all\" or a list of database names such as [\"{word}\"]"
            )),
            RawDatabases::Names(names) if names.is_empty() => {
                Err("an empty list; expected \"all\" or at least one database name".to_owned())
            }
            RawDatabases::Names(names) => {
                if let Some(empty) = names.iter().position(String::is_empty) {
                    return Err(format!("name {empty} is empty; expected database names"));
                }
                Ok(dr_postgres::Databases::Named(names))
            }
        }
    }
}

// ---- Failover --------------------------------------------------------------

impl FailoverSettings {
    /// The cluster, each member connecting as `connection` (user, password,
    /// TLS, database) does, at its own hosts and port.
    pub fn cluster(
        &self,
        component: &ComponentId,
        connection: &tokio_postgres::Config,
        tls: Tls,
    ) -> dr_postgres::PgCluster {
        self.members.iter().fold(
            dr_postgres::PgCluster::new(component.clone(), tls),
            |cluster, member| {
                // tokio-postgres appends hosts and ports: start from none.
                let mut config = tokio_postgres::Config::new();
                if let Some(user) = connection.get_user() {
                    config.user(user);
                }
                if let Some(password) = connection.get_password() {
                    config.password(password);
                }
                if let Some(dbname) = connection.get_dbname() {
                    config.dbname(dbname);
                }
                if let Some(name) = connection.get_application_name() {
                    config.application_name(name);
                }
                config.ssl_mode(connection.get_ssl_mode());
                for host in &member.hosts {
                    config.host(host);
                }
                config.port(member.port);
                let mut pg =
                    dr_postgres::PgMember::new(member.name(), config).priority(member.priority);
                if member.never_promote {
                    pg = pg.never_promote();
                }
                cluster.member(pg)
            },
        )
    }
}
