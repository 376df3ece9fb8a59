//! TLS material of a member: a certificate and key in PEM, the CA that peers (or clients) must be
//! signed by, and whether the other side must present a certificate.
//!
//! [`TlsFiles::check`] parses everything up front, so a bad file is refused at start with an
//! error that says which part is at fault ([`TlsError`]), never at the first connection.
//! The same material builds the peer transport's tonic configurations ([`PeerTls`]) and a
//! rustls server configuration for other listeners ([`TlsFiles::rustls_server_config`]).
//! The crypto provider is always ring: one provider for the whole process.

use std::io::Cursor;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Which part of the TLS material is unusable, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The certificate PEM holds no certificate or does not parse.
    #[error("no usable PEM certificate: {0}")]
    Certificate(String),
    /// The key PEM holds no private key or does not parse, or the key does not match the certificate.
    #[error("no usable PEM private key: {0}")]
    Key(String),
    /// The trusted CA PEM holds no certificate usable as a trust anchor.
    #[error("no usable PEM CA certificate: {0}")]
    TrustedCa(String),
}

/// PEM contents of one side's TLS setup (etcd's `--cert-file`, `--key-file`, `--trusted-ca-file`,
/// `--client-cert-auth`, or their `--peer-` forms).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This member's certificate chain, leaf first.
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// CA certificates the other side's certificate must chain to.
    pub trusted_ca_pem: Option<Vec<u8>>,
    /// The other side must present a certificate signed by `trusted_ca_pem` (refused at the handshake otherwise).
    pub client_cert_auth: bool,
}

impl std::fmt::Debug for TlsFiles {
    /// Never prints the key.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TlsFiles")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .field("trusted_ca", &self.trusted_ca_pem.is_some())
            .field("client_cert_auth", &self.client_cert_auth)
            .finish_non_exhaustive()
    }
}

/// ALPN protocols a TLS listener offers: gRPC needs `h2`; the JSON gateway also speaks HTTP/1.1.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsFiles {
    /// Parses every part and checks that the key belongs to the certificate.
    pub fn check(&self) -> Result<(), TlsError> {
        self.rustls_server_config().map(|_| ())
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certificates = CertificateDer::pem_reader_iter(&mut Cursor::new(&self.cert_pem))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TlsError::Certificate(error.to_string()))?;
        if certificates.is_empty() {
            return Err(TlsError::Certificate(
                "no CERTIFICATE block found".to_owned(),
            ));
        }
        Ok(certificates)
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_reader(&mut Cursor::new(&self.key_pem))
            .map_err(|error| TlsError::Key(error.to_string()))
    }

    /// The trust anchors of `trusted_ca_pem`; `None` when no CA was given.
    fn trusted_roots(&self) -> Result<Option<RootCertStore>, TlsError> {
        let Some(pem) = &self.trusted_ca_pem else {
            return Ok(None);
        };
        let certificates = CertificateDer::pem_reader_iter(&mut Cursor::new(pem))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| TlsError::TrustedCa(error.to_string()))?;
        if certificates.is_empty() {
            return Err(TlsError::TrustedCa("no CERTIFICATE block found".to_owned()));
        }
        let mut roots = RootCertStore::empty();
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|error| TlsError::TrustedCa(error.to_string()))?;
        }
        Ok(Some(roots))
    }

    /// A rustls server configuration offering `h2` and `http/1.1`; with `client_cert_auth` a
    /// client without a certificate chaining to `trusted_ca_pem` fails the handshake.
    pub fn rustls_server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let certificates = self.certificates()?;
        let key = self.key()?;
        let roots = self.trusted_roots()?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Certificate(error.to_string()))?;
        let builder = if self.client_cert_auth {
            let roots = roots.ok_or_else(|| {
                TlsError::TrustedCa("client certificate authentication needs a CA".to_owned())
            })?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|error| TlsError::TrustedCa(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(certificates, key)
            .map_err(|error| TlsError::Key(error.to_string()))?;
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// TLS of the peer transport: how this member's peer server accepts connections and how its
/// peer clients dial `https://` peer URLs. The default is plaintext both ways.
#[derive(Debug, Clone, Default)]
pub struct PeerTls {
    /// Serve peers over TLS (etcd's `--peer-cert-file`/`--peer-key-file` with an https listen URL).
    pub server: Option<TlsFiles>,
    /// Dial `https://` peers with this: the peer's certificate is verified against
    /// `trusted_ca_pem`, and this member's certificate is presented as its client certificate.
    pub client: Option<TlsFiles>,
}

impl PeerTls {
    /// The peer server's tonic TLS configuration, if it serves TLS.
    pub(crate) fn server_config(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        let Some(files) = &self.server else {
            return Ok(None);
        };
        files.check()?;
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
            files.cert_pem.clone(),
            files.key_pem.clone(),
        ));
        if files.client_cert_auth {
            let ca = files.trusted_ca_pem.clone().ok_or_else(|| {
                TlsError::TrustedCa("peer client certificate authentication needs a CA".to_owned())
            })?;
            config = config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(false);
        }
        Ok(Some(config))
    }

    /// The tonic TLS configuration for dialing `https://` peers, if this member has one.
    pub(crate) fn client_config(&self) -> Option<ClientTlsConfig> {
        let files = self.client.as_ref()?;
        let mut config = ClientTlsConfig::new().identity(Identity::from_pem(
            files.cert_pem.clone(),
            files.key_pem.clone(),
        ));
        if let Some(ca) = &files.trusted_ca_pem {
            config = config.ca_certificate(Certificate::from_pem(ca.clone()));
        }
        Some(config)
    }
}
