//! TLS for replication connections, with rustls.
//!
//! PostgreSQL negotiates TLS in-band: the client sends an SSLRequest, the
//! server answers one byte, `S` (go ahead) or `N` (no TLS here), and the
//! handshake follows on the same socket. The `sslmode` of the
//! `tokio_postgres::Config` decides what happens with each answer; a [`Tls`]
//! decides how the server's certificate is checked.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::error::{Error, Result};

/// How a replication connection sets up TLS when its `sslmode` asks for it.
///
/// - [`Tls::none`]: never; `sslmode=prefer` connects in plain text and
///   `sslmode=require` fails.
/// - [`Tls::with_root_certificates`] / [`Tls::from_client_config`]: the
///   server's certificate must chain to the given roots and name the host
///   (libpq's `sslmode=verify-full`).
/// - [`Tls::dangerous_accept_any_certificate`]: encrypts, but believes any
///   certificate, as libpq's `sslmode=require` does without a root
///   certificate. Anyone on the path can read and change the stream.
#[derive(Clone)]
pub struct Tls {
    config: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.config {
            None => f.write_str("Tls::none"),
            Some(_) => f.write_str("Tls(rustls::ClientConfig)"),
        }
    }
}

impl Tls {
    /// No TLS.
    pub fn none() -> Self {
        Self { config: None }
    }

    /// TLS with the caller's rustls configuration: its roots, its crypto
    /// provider, its client certificate if any.
    pub fn from_client_config(config: Arc<ClientConfig>) -> Self {
        Self {
            config: Some(config),
        }
    }

    /// TLS that checks the server's certificate as `check` says (libpq's
    /// `sslmode`), presenting `client` (a certificate chain and its key) to
    /// a server that asks for one. Uses rustls's aws-lc-rs provider.
    ///
    /// # Errors
    /// [`Error::Config`] if the provider supports no safe protocol version,
    /// the roots are unusable, or rustls refuses the client certificate.
    pub fn new(check: ServerCheck, client: Option<ClientCertificate>) -> Result<Self> {
        let config_error = |what: &str, e: &dyn fmt::Display| Error::Config {
            reason: format!("TLS: {what}: {e}"),
        };
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("protocol versions", &e))?;
        let builder = match check {
            ServerCheck::ChainAndHost(roots) => builder.with_root_certificates(roots),
            ServerCheck::Chain(roots) => {
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| config_error("root certificates", &e))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            }
            ServerCheck::AnyCertificate => {
                let verifier = AcceptAnyCertificate {
                    algorithms: provider.signature_verification_algorithms,
                };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
            }
        };
        let config = match client {
            None => builder.with_no_client_auth(),
            Some(ClientCertificate { chain, key }) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_error("client certificate and key", &e))?,
        };
        Ok(Self::from_client_config(Arc::new(config)))
    }

    /// TLS that trusts certificates chaining to `roots` and checks that the
    /// certificate names the host (a DNS name or an IP address) being
    /// connected to: [`ServerCheck::ChainAndHost`], no client certificate.
    ///
    /// # Errors
    /// As [`Tls::new`].
    pub fn with_root_certificates(roots: RootCertStore) -> Result<Self> {
        Self::new(ServerCheck::ChainAndHost(roots), None)
    }

    /// TLS that accepts **any** server certificate, expired, self-signed or
    /// for another host: the stream is encrypted but the server is not
    /// authenticated, so a machine in the middle can read and alter it. This
    /// is what libpq's `sslmode=require` does when no root certificate is
    /// configured; use it only where the network path is trusted.
    ///
    /// # Errors
    /// [`Error::Config`] if the provider supports no safe protocol version.
    pub fn dangerous_accept_any_certificate() -> Result<Self> {
        Self::new(ServerCheck::AnyCertificate, None)
    }

    pub(crate) fn config(&self) -> Option<&Arc<ClientConfig>> {
        self.config.as_ref()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The name the certificate must carry: the host as configured.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).map_err(|e| Error::Config {
        reason: format!("{host:?} cannot be checked against a TLS certificate: {e}"),
    })
}

/// How the server's certificate is checked, as libpq's `sslmode` names it.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerCheck {
    /// `require` without a root certificate: any certificate is accepted
    /// (see [`Tls::dangerous_accept_any_certificate`]).
    AnyCertificate,
    /// `verify-ca`: the certificate must chain to these roots, whatever
    /// host it names.
    Chain(RootCertStore),
    /// `verify-full`: the certificate must chain to these roots and name the
    /// host connected to.
    ChainAndHost(RootCertStore),
}

/// A client certificate chain and its private key, for a server that asks
/// for one (`ssl_ca_file` on the server side).
#[derive(Debug)]
#[non_exhaustive]
pub struct ClientCertificate {
    /// The certificate, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl ClientCertificate {
    /// A certificate chain and its key.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Self { chain, key }
    }
}

/// libpq's `verify-ca`: the certificate must chain to the roots, whatever
/// host it names. Everything else is webpki's check.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a wrong name means
        // the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Checks the handshake's signatures (so the server holds the key of the
/// certificate it showed) but trusts the certificate itself blindly.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    fn certificates(name: &str) -> Vec<CertificateDer<'static>> {
        let pem = std::fs::read(dr_testkit::tls_fixture(name)).unwrap();
        CertificateDer::pem_slice_iter(&pem)
            .collect::<std::result::Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn verify_ca_checks_the_chain_but_not_the_name() {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in certificates("ca.pem") {
            roots.add(cert).unwrap();
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let server = &certificates("server.pem")[0];
        let other = &certificates("other-ca.pem")[0];
        let right = ServerName::try_from("db.internal").unwrap();
        let wrong = ServerName::try_from("10.0.0.7").unwrap();
        let now = UnixTime::now();

        // verify-full: the name must match.
        assert!(
            webpki
                .verify_server_cert(server, &[], &right, &[], now)
                .is_ok()
        );
        assert!(
            webpki
                .verify_server_cert(server, &[], &wrong, &[], now)
                .is_err()
        );
        // verify-ca: any name, but the chain still counts.
        let chain_only = ChainOnly(webpki);
        assert!(
            chain_only
                .verify_server_cert(server, &[], &right, &[], now)
                .is_ok()
        );
        assert!(
            chain_only
                .verify_server_cert(server, &[], &wrong, &[], now)
                .is_ok()
        );
        assert!(
            chain_only
                .verify_server_cert(other, &[], &right, &[], now)
                .is_err()
        );
    }
}
