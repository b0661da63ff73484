//! Opening a replication connection: the socket, TLS negotiation, the startup
//! message with `replication=true`, and authentication.

#[cfg(unix)]
use std::path::PathBuf;

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::config::{Host, SslMode, SslNegotiation};

use crate::error::{Error, Result};
use crate::replication::conn::{Conn, Transport};
use crate::replication::message::{
    self, AUTHENTICATION, AuthRequest, BACKEND_KEY_DATA, ERROR_RESPONSE, READY_FOR_QUERY,
};
use crate::replication::tls::{Tls, server_name};

/// Where one connection attempt goes.
enum Target {
    Tcp {
        /// What to connect to: a name to resolve or an IP address.
        connect: String,
        /// The name the TLS certificate must carry.
        name: String,
        port: u16,
    },
    #[cfg(unix)]
    Unix(PathBuf),
}

impl Target {
    fn addr(&self) -> String {
        match self {
            Target::Tcp { connect, port, .. } if connect.contains(':') => {
                format!("[{connect}]:{port}")
            }
            Target::Tcp { connect, port, .. } => format!("{connect}:{port}"),
            #[cfg(unix)]
            Target::Unix(path) => path.display().to_string(),
        }
    }
}

/// What a connection is for, as its startup message says.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Session<'a> {
    /// A physical replication connection (`replication=true`).
    Replication,
    /// A plain SQL session on this database.
    Database(&'a str),
}

/// Connects to the first host of `config` that accepts a replication
/// connection, in the order given, as libpq does.
pub(crate) async fn connect(config: &tokio_postgres::Config, tls: &Tls) -> Result<Conn> {
    connect_session(config, tls, Session::Replication).await
}

/// Connects to the first host of `config` that accepts a `session`.
pub(crate) async fn connect_session(
    config: &tokio_postgres::Config,
    tls: &Tls,
    session: Session<'_>,
) -> Result<Conn> {
    let user = config.get_user().ok_or_else(|| Error::Config {
        reason: "no user is set".into(),
    })?;
    if config.get_ssl_negotiation() != SslNegotiation::Postgres {
        return Err(Error::Config {
            reason: "only sslnegotiation=postgres is supported".into(),
        });
    }
    if config.get_channel_binding() == tokio_postgres::config::ChannelBinding::Require {
        return Err(Error::Config {
            reason: "channel_binding=require is not supported".into(),
        });
    }
    let targets = targets(config)?;
    let mut last = None;
    for target in targets {
        let attempt = connect_one(&target, user, config, tls, session);
        let result = match config.get_connect_timeout() {
            Some(&after) => match tokio::time::timeout(after, attempt).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout {
                    operation: format!("connecting to {}", target.addr()),
                    after,
                }),
            },
            None => attempt.await,
        };
        match result {
            Ok(conn) => return Ok(conn),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Config {
        reason: "no host is set".into(),
    }))
}

/// The connection attempts `config` describes, with the same rules as
/// tokio-postgres: `hostaddr` wins over `host` for connecting, `host` names
/// the certificate, one port for all hosts or one per host.
fn targets(config: &tokio_postgres::Config) -> Result<Vec<Target>> {
    let hosts = config.get_hosts();
    let hostaddrs = config.get_hostaddrs();
    let ports = config.get_ports();
    if !hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len() {
        return Err(Error::Config {
            reason: format!("{} hosts but {} hostaddrs", hosts.len(), hostaddrs.len()),
        });
    }
    let count = hosts.len().max(hostaddrs.len());
    if count == 0 {
        return Err(Error::Config {
            reason: "no host is set".into(),
        });
    }
    if ports.len() > 1 && ports.len() != count {
        return Err(Error::Config {
            reason: format!("{count} hosts but {} ports", ports.len()),
        });
    }
    let mut targets = Vec::with_capacity(count);
    for i in 0..count {
        let port = ports
            .get(i)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(5432);
        let target = match (hosts.get(i), hostaddrs.get(i)) {
            (host, Some(ip)) => Target::Tcp {
                connect: ip.to_string(),
                name: match host {
                    Some(Host::Tcp(name)) => name.clone(),
                    _ => ip.to_string(),
                },
                port,
            },
            (Some(Host::Tcp(name)), None) => Target::Tcp {
                connect: name.clone(),
                name: name.clone(),
                port,
            },
            #[cfg(unix)]
            (Some(Host::Unix(dir)), None) => Target::Unix(dir.join(format!(".s.PGSQL.{port}"))),
            // count is the longer of the two lists, so one of them has an entry.
            (None, None) => continue,
        };
        targets.push(target);
    }
    Ok(targets)
}

async fn connect_one(
    target: &Target,
    user: &str,
    config: &tokio_postgres::Config,
    tls: &Tls,
    session: Session<'_>,
) -> Result<Conn> {
    let addr = target.addr();
    let connect_error = |source| Error::Connect {
        addr: addr.clone(),
        source,
    };
    let mode = config.get_ssl_mode();
    let transport = match target {
        Target::Tcp {
            connect,
            name,
            port,
        } => {
            let tcp = TcpStream::connect((connect.as_str(), *port))
                .await
                .map_err(connect_error)?;
            // Status updates are small and must not wait for Nagle.
            let _ = tcp.set_nodelay(true);
            negotiate_tls(tcp, name, &addr, mode, tls).await?
        }
        #[cfg(unix)]
        Target::Unix(path) => {
            if mode == SslMode::Require {
                return Err(Error::Tls {
                    addr,
                    reason: "sslmode=require, but PostgreSQL has no TLS over Unix sockets".into(),
                    source: None,
                });
            }
            let unix = tokio::net::UnixStream::connect(path)
                .await
                .map_err(connect_error)?;
            Transport::Unix(unix)
        }
    };
    let is_tls = matches!(transport, Transport::Tls(_));
    let mut conn = Conn::new(transport, addr, is_tls);
    startup(&mut conn, user, config, session).await?;
    Ok(conn)
}

/// SSLRequest and handshake, as `sslmode` and `tls` say.
async fn negotiate_tls(
    mut tcp: TcpStream,
    name: &str,
    addr: &str,
    mode: SslMode,
    tls: &Tls,
) -> Result<Transport> {
    let tls_error = |reason: &str, source| Error::Tls {
        addr: addr.to_owned(),
        reason: reason.to_owned(),
        source,
    };
    let client_config = match (mode, tls.config()) {
        (SslMode::Require, None) => {
            return Err(tls_error(
                "sslmode=require, but no TLS configuration was given (Tls::none)",
                None,
            ));
        }
        (SslMode::Require | SslMode::Prefer, Some(config)) => config.clone(),
        _ => return Ok(Transport::Tcp(tcp)),
    };
    let io_error = |context, source| Error::Io {
        addr: addr.to_owned(),
        context,
        source,
    };
    let mut request = bytes::BytesMut::with_capacity(8);
    frontend::ssl_request(&mut request);
    tcp.write_all(&request)
        .await
        .map_err(|e| io_error("sending SSLRequest", e))?;
    // Exactly one byte: anything after it belongs to the handshake.
    let answer = tcp
        .read_u8()
        .await
        .map_err(|e| io_error("reading the answer to SSLRequest", e))?;
    match answer {
        b'S' => {
            let server_name = server_name(name)?;
            let stream = tokio_rustls::TlsConnector::from(client_config)
                .connect(server_name, tcp)
                .await
                .map_err(|e| tls_error("handshake failed", Some(e)))?;
            Ok(Transport::Tls(Box::new(stream)))
        }
        b'N' if mode == SslMode::Require => Err(tls_error(
            "sslmode=require, but the server does not accept TLS connections",
            None,
        )),
        b'N' => Ok(Transport::Tcp(tcp)),
        other => Err(Error::Protocol {
            addr: addr.to_owned(),
            reason: format!("answer {other:#04x} to SSLRequest, expected S or N"),
        }),
    }
}

/// The startup message and the authentication exchange, up to ReadyForQuery.
async fn startup(
    conn: &mut Conn,
    user: &str,
    config: &tokio_postgres::Config,
    session: Session<'_>,
) -> Result<()> {
    let mut params = vec![("user", user), ("client_encoding", "UTF8")];
    match session {
        Session::Replication => params.push(("replication", "true")),
        Session::Database(name) => params.push(("database", name)),
    }
    if let Some(name) = config.get_application_name() {
        params.push(("application_name", name));
    }
    if let Some(options) = config.get_options() {
        params.push(("options", options));
    }
    if params.iter().any(|(_, v)| v.contains('\0')) {
        return Err(Error::Config {
            reason: "a startup parameter contains a NUL byte".into(),
        });
    }
    frontend::startup_message(params, conn.wbuf()).map_err(|e| Error::Config {
        reason: format!("startup message: {e}"),
    })?;
    conn.flush().await?;

    authenticate(conn, user, config.get_password()).await?;

    loop {
        let frame = conn.frame().await?;
        match frame.tag {
            READY_FOR_QUERY => return Ok(()),
            BACKEND_KEY_DATA => {}
            ERROR_RESPONSE => return Err(conn.error_response(frame.body)),
            _ => return Err(conn.unexpected(&frame, "after authentication")),
        }
    }
}

async fn authenticate(conn: &mut Conn, user: &str, password: Option<&[u8]>) -> Result<()> {
    let auth_error = |conn: &Conn, reason: String| Error::Auth {
        addr: conn.addr().to_owned(),
        reason,
    };
    let need_password = |conn: &Conn| {
        password.ok_or_else(|| {
            auth_error(
                conn,
                "the server asks for a password and none is configured".into(),
            )
        })
    };
    let mut scram: Option<ScramSha256> = None;
    loop {
        let frame = conn.frame().await?;
        match frame.tag {
            AUTHENTICATION => {}
            ERROR_RESPONSE => return Err(conn.error_response(frame.body)),
            _ => return Err(conn.unexpected(&frame, "during authentication")),
        }
        let request = message::parse_auth(frame.body).map_err(|m| conn.malformed(m))?;
        match request {
            AuthRequest::Ok => return Ok(()),
            AuthRequest::Cleartext => {
                let password = need_password(conn)?;
                password_message(conn, password)?;
            }
            AuthRequest::Md5 { salt } => {
                let password = need_password(conn)?;
                let hashed = md5_hash(user.as_bytes(), password, salt);
                password_message(conn, hashed.as_bytes())?;
            }
            AuthRequest::Sasl { mechanisms } => {
                if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                    return Err(auth_error(
                        conn,
                        format!(
                            "the server offers SASL mechanisms {mechanisms:?}; this client speaks {SCRAM_SHA_256}"
                        ),
                    ));
                }
                let password = need_password(conn)?;
                // No channel binding: "n" tells the server this client does not
                // support it, which it accepts even when it offers the -PLUS variant.
                let state = ScramSha256::new(password, ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, state.message(), conn.wbuf())
                    .map_err(|e| auth_error(conn, format!("SCRAM: {e}")))?;
                scram = Some(state);
            }
            AuthRequest::SaslContinue(data) => {
                let Some(state) = scram.as_mut() else {
                    return Err(conn.protocol("SASLContinue without SASL"));
                };
                state
                    .update(&data)
                    .map_err(|e| auth_error(conn, format!("bad SCRAM challenge: {e}")))?;
                frontend::sasl_response(state.message(), conn.wbuf())
                    .map_err(|e| auth_error(conn, format!("SCRAM: {e}")))?;
            }
            AuthRequest::SaslFinal(data) => {
                let Some(state) = scram.as_mut() else {
                    return Err(conn.protocol("SASLFinal without SASL"));
                };
                state.finish(&data).map_err(|e| {
                    auth_error(
                        conn,
                        format!("the server did not prove it knows the password: {e}"),
                    )
                })?;
                continue;
            }
            AuthRequest::Other(code) => {
                let method = match code {
                    2 => "Kerberos V5",
                    6 => "SCM credentials",
                    7 | 8 => "GSSAPI",
                    9 => "SSPI",
                    _ => "an unknown method",
                };
                return Err(auth_error(
                    conn,
                    format!(
                        "the server asks for {method} (code {code}); this client speaks trust, password, md5 and SCRAM-SHA-256"
                    ),
                ));
            }
        }
        conn.flush().await?;
    }
}

fn password_message(conn: &mut Conn, password: &[u8]) -> Result<()> {
    if password.contains(&0) {
        return Err(Error::Config {
            reason: "the password contains a NUL byte".into(),
        });
    }
    frontend::password_message(password, conn.wbuf()).map_err(|e| Error::Config {
        reason: format!("password message: {e}"),
    })
}
