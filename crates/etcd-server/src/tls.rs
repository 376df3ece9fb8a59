//! TLS on the client port: the handshake, the connection type hyper serves, and the name a
//! verified client certificate gives its sender.
//!
//! gRPC and the JSON gateway keep sharing one listener under TLS: the server offers ALPN `h2`
//! and `http/1.1`, and after the handshake the connection goes through the same HTTP server
//! (and the same `:authority` fix) as a plaintext one.
//!
//! With client certificate authentication, a client without a certificate chaining to the
//! trusted CA fails the handshake. With auth enabled, a gRPC request that carries no token is
//! sent by the user named in its certificate's Common Name, as etcd does: the verified name
//! travels from the connection ([`ClientIdentity`]) to the request as the header
//! [`CERT_USER_HEADER`], which [`attach_certificate_user`] always removes from what the
//! client sent and sets only from the handshake.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use consensus::TlsError;
use consensus::TlsFiles;
use reloading::Reloading;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::h2_authority::AuthorityFixListener;

/// Longest a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Request header carrying the Common Name of the connection's verified client certificate
/// (set by the server only; a client's own value is dropped).
pub const CERT_USER_HEADER: &str = "pgwarden-tls-cert-user";

/// The TLS side of a client listener.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<Reloading<tokio_rustls::rustls::ServerConfig>>,
}

impl ClientTls {
    /// A TLS acceptor from etcd's `--cert-file`, `--key-file`, `--trusted-ca-file` and
    /// `--client-cert-auth`: the files are read again at the first handshake after one of
    /// them changed, as etcd does (a rotated certificate needs no restart).
    pub fn new(files: &TlsFiles) -> Result<ClientTls, TlsError> {
        let config = files.watch("client port TLS", TlsFiles::rustls_server_config)?;
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// Runs the server side of the handshake on an accepted connection with the current
    /// configuration, bounded by [`HANDSHAKE_TIMEOUT`].
    pub async fn handshake(&self, stream: TcpStream) -> io::Result<ClientStream> {
        let acceptor = TlsAcceptor::from(self.config.current());
        let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        Ok(ClientStream::Tls(Box::new(accepted)))
    }
}

/// One client connection: plaintext or TLS.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl ClientStream {
    /// The Common Name of the client's certificate, when the connection is TLS and the client
    /// presented one (the handshake only succeeds with a verified certificate when the listener
    /// authenticates clients).
    pub fn certificate_user(&self) -> Option<String> {
        let ClientStream::Tls(stream) = self else {
            return None;
        };
        let (_, connection) = stream.get_ref();
        let leaf = connection.peer_certificates()?.first()?;
        common_name(leaf.as_ref())
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(stream) => stream.is_write_vectored(),
            ClientStream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            ClientStream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Who a connection's client certificate names (axum connect info of the client listener).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The Common Name of the verified client certificate.
    pub certificate_user: Option<String>,
}

impl<L> axum::extract::connect_info::Connected<IncomingStream<'_, AuthorityFixListener<L>>>
    for ClientIdentity
where
    L: axum::serve::Listener<Io = ClientStream>,
{
    fn connect_info(stream: IncomingStream<'_, AuthorityFixListener<L>>) -> Self {
        ClientIdentity {
            certificate_user: stream.io().get_ref().certificate_user(),
        }
    }
}

/// Middleware of the gRPC routes: drops a client-sent [`CERT_USER_HEADER`] and sets it from
/// the connection's verified client certificate, if any.
pub async fn attach_certificate_user(mut request: Request, next: Next) -> Response {
    request.headers_mut().remove(CERT_USER_HEADER);
    let user = request
        .extensions()
        .get::<ConnectInfo<ClientIdentity>>()
        .and_then(|info| info.0.certificate_user.clone());
    if let Some(value) = user.and_then(|user| axum::http::HeaderValue::from_str(&user).ok()) {
        request.headers_mut().insert(CERT_USER_HEADER, value);
    }
    next.run(request).await
}

/// DER tag of a SEQUENCE, a SET, the explicit `[0]` version of a certificate, and an OID.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const VERSION_TAG: u8 = 0xa0;
const OID: u8 = 0x06;
/// The `commonName` attribute type (2.5.4.3), DER-encoded.
const COMMON_NAME_OID: [u8; 3] = [0x55, 0x04, 0x03];

/// The subject Common Name of a DER certificate (the last one, if several), read with a
/// minimal DER walk: Certificate → tbsCertificate → (version, serial, signature, issuer,
/// validity) → subject → RDN sets → attribute (OID, string value).
pub fn common_name(certificate: &[u8]) -> Option<String> {
    let (tag, certificate, _) = read_tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = read_tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, _, rest) = read_tlv(tbs)?;
    if tag == VERSION_TAG {
        tbs = rest;
    }
    // serialNumber, signature, issuer, validity
    for _ in 0..4 {
        let (_, _, rest) = read_tlv(tbs)?;
        tbs = rest;
    }
    let (tag, mut subject, _) = read_tlv(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut found = None;
    while !subject.is_empty() {
        let (tag, mut set, rest) = read_tlv(subject)?;
        subject = rest;
        if tag != SET {
            return None;
        }
        while !set.is_empty() {
            let (_, attribute, rest) = read_tlv(set)?;
            set = rest;
            let (tag, oid, value) = read_tlv(attribute)?;
            if tag == OID && oid == COMMON_NAME_OID {
                let (_, text, _) = read_tlv(value)?;
                found = Some(String::from_utf8_lossy(text).into_owned());
            }
        }
    }
    found
}

/// One DER element: (tag, contents, what follows). Only single-byte tags and definite
/// lengths (all DER allows for the elements read here).
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, tail) = rest.split_at(count);
        rest = tail;
        bytes
            .iter()
            .fold(0usize, |length, byte| (length << 8) | usize::from(*byte))
    };
    if rest.len() < length {
        return None;
    }
    let (contents, tail) = rest.split_at(length);
    Some((tag, contents, tail))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair};

    use super::common_name;

    fn certificate(names: &[(DnType, &str)]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_common_name_is_read_from_the_certificate() {
        let der = certificate(&[
            (DnType::OrganizationName, "pgwarden"),
            (DnType::CommonName, "alice"),
        ]);
        assert_eq!(common_name(&der).as_deref(), Some("alice"));
    }

    #[test]
    fn a_certificate_without_common_name_or_not_der_names_nobody() {
        let der = certificate(&[(DnType::OrganizationName, "pgwarden")]);
        assert_eq!(common_name(&der), None);
        assert_eq!(common_name(b"not a certificate"), None);
        assert_eq!(common_name(&der[..der.len() / 3]), None);
    }
}
