//! TLS for replication connections, with rustls.
//!
//! PostgreSQL negotiates TLS in-band: the client sends an SSLRequest, the
//! server answers one byte, `S` (go ahead) or `N` (no TLS here), and the
//! handshake follows on the same socket. The `sslmode` of the
//! `tokio_postgres::Config` decides what happens with each answer; a [`Tls`]
//! decides how the server's certificate is checked.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

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

    /// TLS that trusts certificates chaining to `roots` and checks that the
    /// certificate names the host (a DNS name or an IP address) being
    /// connected to. Uses rustls's aws-lc-rs provider.
    ///
    /// # Errors
    /// [`Error::Config`] if the provider supports no safe protocol version.
    pub fn with_root_certificates(roots: RootCertStore) -> Result<Self> {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config {
                reason: format!("TLS: {e}"),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::from_client_config(Arc::new(config)))
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
        let provider = provider();
        let verifier = AcceptAnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config {
                reason: format!("TLS: {e}"),
            })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Self::from_client_config(Arc::new(config)))
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
