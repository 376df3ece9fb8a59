//! HTTPS for the REST API (Patroni's `restapi.certfile`, `keyfile`, `cafile`,
//! `verify_client`) and for the members' REST client ([`ClientTls`]).
//!
//! With a certificate the API serves HTTPS only, as Patroni does.
//! `verify_client: required` refuses a client without a certificate signed by the CA at the
//! handshake; `optional` asks for one and verifies it when given.
//! Each accepted connection's handshake runs in a task of its own ([`TlsListener`]), bounded
//! by [`HANDSHAKE_TIMEOUT`], so a slow or silent client never holds up the others; a failed
//! handshake closes only that connection.
//! Whether the connection presented a verified certificate travels to the access check as
//! [`ClientAddress`] (Patroni's 403 `client certificate required` on unsafe methods).
//!
//! This module only takes PEM bytes: reading and checking the files is the caller's (the
//! agent's configuration does it at load, and hands [`ServerTls::reloading`] a configuration
//! that re-reads them when they change). The crypto provider is ring, as everywhere else.

use std::io::{self, Cursor};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use reloading::Reloading;
use rustls::RootCertStore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Longest a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which part of the TLS material is unusable, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("no usable PEM certificate: {0}")]
    Certificate(String),
    #[error("no usable PEM private key: {0}")]
    Key(String),
    #[error("no usable PEM CA certificate: {0}")]
    TrustedCa(String),
}

/// Patroni's `restapi.verify_client`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyClient {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for and verified when given; unsafe methods need one.
    Optional,
    /// The handshake fails without a certificate signed by the CA.
    Required,
}

/// A certificate chain (leaf first) and its unencrypted private key, in PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct PemIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for PemIdentity {
    /// Never prints the key.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PemIdentity")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_reader_iter(&mut Cursor::new(pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Certificate(error.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsError::Certificate(
            "no CERTIFICATE block found".to_owned(),
        ));
    }
    Ok(certificates)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_reader(&mut Cursor::new(pem))
        .map_err(|error| TlsError::Key(error.to_string()))
}

fn roots(ca_pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let certificates =
        certificates(ca_pem).map_err(|error| TlsError::TrustedCa(error.to_string()))?;
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|error| TlsError::TrustedCa(error.to_string()))?;
    }
    Ok(roots)
}

/// The server configuration presenting `identity`; with `verify_client` optional or required,
/// client certificates are verified against `ca_pem` (which must be given then).
pub fn server_config(
    identity: &PemIdentity,
    ca_pem: Option<&[u8]>,
    verify_client: VerifyClient,
) -> Result<rustls::ServerConfig, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Certificate(error.to_string()))?;
    let builder = if verify_client == VerifyClient::None {
        builder.with_no_client_auth()
    } else {
        let ca_pem = ca_pem.ok_or_else(|| {
            TlsError::TrustedCa("verifying client certificates needs a CA".to_owned())
        })?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider());
        let verifier = if verify_client == VerifyClient::Optional {
            verifier.allow_unauthenticated()
        } else {
            verifier
        };
        let verifier = verifier
            .build()
            .map_err(|error| TlsError::TrustedCa(error.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(
            certificates(&identity.cert_pem)?,
            private_key(&identity.key_pem)?,
        )
        .map_err(|error| TlsError::Key(error.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The server side: the API's certificate and how clients are verified.
#[derive(Clone)]
pub struct ServerTls {
    /// Taken at each handshake: the caller may have it re-read files that changed.
    config: Arc<Reloading<rustls::ServerConfig>>,
    verify_client: VerifyClient,
}

impl ServerTls {
    /// A fixed configuration from [`server_config`].
    pub fn new(
        identity: &PemIdentity,
        ca_pem: Option<&[u8]>,
        verify_client: VerifyClient,
    ) -> Result<ServerTls, TlsError> {
        let config = server_config(identity, ca_pem, verify_client)?;
        Ok(ServerTls::reloading(
            Reloading::fixed("REST API TLS", config),
            verify_client,
        ))
    }

    /// TLS whose configuration (built with `verify_client`) is taken from `config` at each
    /// handshake, so files re-read there serve the next connection.
    pub fn reloading(
        config: Reloading<rustls::ServerConfig>,
        verify_client: VerifyClient,
    ) -> ServerTls {
        ServerTls {
            config: Arc::new(config),
            verify_client,
        }
    }

    /// Whether unsafe methods need a verified client certificate (`optional` or `required`).
    pub fn asks_client_certificate(&self) -> bool {
        self.verify_client != VerifyClient::None
    }
}

/// Where an HTTPS request came from, and whether its connection presented a client
/// certificate that the handshake verified (axum connect info of [`TlsListener`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress {
    pub address: SocketAddr,
    pub verified_certificate: bool,
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientAddress {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        *stream.remote_addr()
    }
}

type Handshake = Option<(tokio_rustls::server::TlsStream<TcpStream>, ClientAddress)>;

/// A TCP listener whose connections are handed to the HTTP server once their TLS handshake,
/// run in its own task, succeeded.
pub struct TlsListener {
    tcp: TcpListener,
    tls: ServerTls,
    /// Handshakes in progress; owned here, so dropping the listener (server stopped) aborts them.
    handshakes: JoinSet<Handshake>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, tls: ServerTls) -> TlsListener {
        TlsListener {
            tcp,
            tls,
            handshakes: JoinSet::new(),
        }
    }
}

async fn handshake(acceptor: TlsAcceptor, stream: TcpStream, peer: SocketAddr) -> Handshake {
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
    match accepted {
        Ok(Ok(stream)) => {
            let verified_certificate = stream.get_ref().1.peer_certificates().is_some();
            Some((
                stream,
                ClientAddress {
                    address: peer,
                    verified_certificate,
                },
            ))
        }
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "REST API TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "REST API TLS handshake timed out");
            None
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = ClientAddress;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let acceptor = TlsAcceptor::from(self.tls.config.current());
                        self.handshakes.spawn(handshake(acceptor, stream, peer));
                    }
                    Err(error) => {
                        // As axum's own listener: out of descriptors and the like pass.
                        tracing::debug!(%error, "REST API accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(joined) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = joined {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(ClientAddress {
            address: self.tcp.local_addr()?,
            verified_certificate: false,
        })
    }
}

/// The client side, for `https://` members: what their certificates are verified against and
/// the certificate presented to them.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

/// How a member's certificate is checked.
#[derive(Debug, Clone, Copy)]
pub enum ServerVerification<'a> {
    /// Against these CA certificates (PEM) only.
    TrustedCa(&'a [u8]),
    /// Not at all (Patroni's `ctl.insecure: true`): the connection is encrypted, nothing more.
    Insecure,
}

impl ClientTls {
    /// A client verifying members per `verification` and presenting `identity`, if given.
    pub fn new(
        verification: ServerVerification<'_>,
        identity: Option<&PemIdentity>,
    ) -> Result<ClientTls, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Certificate(error.to_string()))?;
        let builder = match verification {
            ServerVerification::TrustedCa(ca_pem) => builder.with_root_certificates(roots(ca_pem)?),
            ServerVerification::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider()))),
        };
        let config = match identity {
            Some(identity) => builder
                .with_client_auth_cert(
                    certificates(&identity.cert_pem)?,
                    private_key(&identity.key_pem)?,
                )
                .map_err(|error| TlsError::Key(error.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Connects over TLS to `host` (a DNS name or an address, checked against the
    /// certificate unless insecure) on an established TCP stream.
    pub async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        self.connector.connect(name, stream).await
    }
}

/// Accepts every server certificate, still checking the handshake signatures (so the peer
/// holds the key of the certificate it sent): `ctl.insecure`.
#[derive(Debug)]
struct AnyServerCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
