//! A bare TLS client for the cases that look below etcd's clients: HTTP/1.0 JSON requests to the
//! gateway over https, and handshakes that must be refused.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pgwarden_tests::tls::CertifiedKey;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Bound on one request, handshake included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn connector(ca_pem: &str, identity: Option<&CertifiedKey>) -> anyhow::Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.context("parse the CA PEM")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(identity) => {
            let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .context("parse the client certificate")?;
            let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
                .context("parse the client key")?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn connect(
    port: u16,
    ca_pem: &str,
    identity: Option<&CertifiedKey>,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connect to 127.0.0.1:{port}"))?;
    let name = ServerName::try_from("127.0.0.1")?;
    Ok(connector(ca_pem, identity)?.connect(name, tcp).await?)
}

/// POSTs `body` to `path` over https and returns (HTTP status, parsed JSON body).
pub async fn post(
    port: u16,
    ca_pem: &str,
    identity: Option<&CertifiedKey>,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut stream = connect(port, ca_pem, identity).await?;
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await?;
        let response = read_until_closed(&mut stream).await?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .with_context(|| format!("no end of headers in {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .with_context(|| format!("no status in {head:?}"))?;
        let json = serde_json::from_str(body).with_context(|| format!("JSON body of {text:?}"))?;
        Ok((status, json))
    })
    .await
    .context("https request timed out")?
}

/// Everything the server sends until it closes; a close without TLS close_notify after some
/// data counts as the end (HTTP/1.0 delimits the body by the close).
async fn read_until_closed(stream: &mut TlsStream<TcpStream>) -> anyhow::Result<Vec<u8>> {
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => return Ok(response),
            Ok(read) => response.extend_from_slice(&chunk[..read]),
            Err(error)
                if error.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() =>
            {
                return Ok(response);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Ok when the server refuses this client: the handshake fails, or (TLS 1.3, where the server
/// judges the client certificate after the client finished) the first read fails or finds
/// the connection closed without an answer.
pub async fn expect_refused(
    port: u16,
    ca_pem: &str,
    identity: Option<&CertifiedKey>,
) -> anyhow::Result<String> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut stream = match connect(port, ca_pem, identity).await {
            Ok(stream) => stream,
            Err(error) => return Ok(format!("handshake failed: {error:#}")),
        };
        let request = "GET /version HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if let Err(error) = stream.write_all(request.as_bytes()).await {
            return Ok(format!("write failed: {error}"));
        }
        let _ = stream.flush().await;
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer).await {
            Err(error) => Ok(format!("read failed: {error}")),
            Ok(_) if answer.is_empty() => Ok("closed without an answer".to_owned()),
            Ok(_) => anyhow::bail!(
                "port {port} answered a refused client: {}",
                String::from_utf8_lossy(&answer)
            ),
        }
    })
    .await
    .context("the refusal did not come in time")?
}

/// The leaf certificate (DER) the server on `port` presents to this client.
pub async fn presented_certificate(
    port: u16,
    ca_pem: &str,
    identity: Option<&CertifiedKey>,
) -> anyhow::Result<Vec<u8>> {
    tokio::time::timeout(REQUEST_TIMEOUT, async {
        let stream = connect(port, ca_pem, identity).await?;
        let (_, connection) = stream.get_ref();
        let leaf = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .context("the server presented no certificate")?;
        Ok(leaf.as_ref().to_vec())
    })
    .await
    .context("handshake timed out")?
}

/// The first certificate of a PEM, as DER.
pub fn der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let certificate = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .context("no certificate in the PEM")??;
    Ok(certificate.as_ref().to_vec())
}
