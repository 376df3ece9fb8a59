//! TLS on the peer transport, driven here rather than by tonic so that each handshake takes
//! the current configuration ([`reloading::Reloading`]): a rotated peer certificate, key or CA
//! is used by the next connection in either direction, without restarting the member.
//!
//! Server side: every accepted connection's handshake runs in a task of its own, bounded by
//! [`HANDSHAKE_TIMEOUT`], so a slow or silent client never holds up the others. Client side:
//! tonic sees a plain `http://` endpoint and gets an already encrypted connection from
//! [`connect`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use reloading::Reloading;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Uri;

/// Longest a peer may take to finish the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The peer listener's connections once their handshake succeeded, until `cancel`.
pub(crate) fn accept(
    listener: TcpListener,
    config: Arc<Reloading<rustls::ServerConfig>>,
    tasks: &TaskTracker,
    cancel: CancellationToken,
) -> ReceiverStream<io::Result<server::TlsStream<TcpStream>>> {
    let (sender, receiver) = mpsc::channel(16);
    tasks.spawn(async move {
        // Owned by this loop: handshakes in progress end with it.
        let mut handshakes = JoinSet::new();
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = sender.closed() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // See the plaintext listener in `node`: replies must not wait for a
                        // delayed ACK.
                        if let Err(error) = stream.set_nodelay(true) {
                            tracing::warn!(%error, "set TCP_NODELAY on a peer connection");
                        }
                        handshakes.spawn(handshake(stream, peer, &config));
                    }
                    Err(error) => {
                        // Out of descriptors and the like: wait a little and go on.
                        tracing::warn!(%error, "peer accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(joined) = handshakes.join_next(), if !handshakes.is_empty() => {
                    if let Ok(Some(stream)) = joined
                        && sender.send(Ok(stream)).await.is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    ReceiverStream::new(receiver)
}

/// The server half of the handshake on an accepted peer connection, with the configuration
/// current now, bounded by [`HANDSHAKE_TIMEOUT`]; a refused or slow client is logged and
/// dropped.
pub(crate) fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    config: &Reloading<rustls::ServerConfig>,
) -> impl Future<Output = Option<server::TlsStream<TcpStream>>> + Send + use<> {
    let acceptor = TlsAcceptor::from(config.current());
    async move {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                tracing::warn!(%peer, %error, "peer TLS handshake refused");
                None
            }
            Err(_) => {
                tracing::warn!(%peer, "peer TLS handshake timed out");
                None
            }
        }
    }
}

/// Dials `uri`'s host and port and runs the client handshake with the current configuration,
/// verifying the peer's certificate for that host. The channel's connect timeout bounds the
/// whole call, handshake included (tonic wraps the connector in it).
pub(crate) async fn connect(
    uri: Uri,
    config: Arc<Reloading<rustls::ClientConfig>>,
) -> io::Result<TokioIo<client::TlsStream<TcpStream>>> {
    let invalid =
        |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} in {uri}"));
    let host = uri
        .host()
        .ok_or_else(|| invalid("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
    let server_name = ServerName::try_from(host.clone()).map_err(|_| invalid("bad host"))?;
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let stream = TlsConnector::from(config.current())
        .connect(server_name, tcp)
        .await?;
    Ok(TokioIo::new(stream))
}
