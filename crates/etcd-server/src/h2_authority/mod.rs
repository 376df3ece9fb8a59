//! Accepting the URL-form HTTP/2 `:authority` that etcdctl 3.4 sends on the client port.
//!
//! etcdctl 3.4 (the Go gRPC of its era), given URL endpoints (`--endpoints=http://h:2379`),
//! dials `endpoint status`, `endpoint hashkv`, `move-leader` and the `--cluster` forms with
//! the endpoint URL itself as `:authority` (`http://h:2379`). etcd's Go server accepts that;
//! hyper's HTTP/2 server refuses the stream as malformed (RST_STREAM PROTOCOL_ERROR).
//!
//! [`AuthorityFixStream`] wraps every accepted connection before hyper sees it and hands
//! hyper the same bytes, except that such a header block gets the bare authority (`h:2379`):
//!
//! - HTTP/1.x connections (the JSON gateway, `/version`, `/health`, `/metrics`) are told
//!   apart by the missing HTTP/2 client preface and passed through untouched.
//! - HTTP/2 frames other than header blocks (DATA above all) go through as they are; only
//!   their 9-byte frame headers are read. Bytes are copied once, from this layer's read
//!   buffer into hyper's.
//! - Header blocks (HEADERS + CONTINUATION) are HPACK-decoded by a per-connection
//!   decoder that mirrors the client's encoder, and forwarded unchanged unless their
//!   `:authority` contains "://". The first block with a bare `:authority` ends the
//!   inspection: a gRPC client (etcdctl's included) sends the same `:authority` on every
//!   stream of a connection, so the rest of it goes to hyper without being decoded. Such a block is re-encoded with literals that never touch
//!   hyper's dynamic table. From then on the client's dynamic table (which the rewritten
//!   block may have added to) and hyper's differ, so every later block of the connection is
//!   re-encoded the same way.
//! - A block this layer cannot follow (malformed, over [`frames::MAX_HEADER_BLOCK`], an HPACK
//!   error) before any rewrite ends the inspection: hyper gets the bytes as they are and
//!   judges them. After a rewrite the connection fails instead, since hyper's HPACK state
//!   depends on this layer.
//!
//! The server→client direction is untouched.

mod block;
mod frames;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use frames::AuthorityRewriteError;

/// Bytes asked of the socket per read when this layer buffers (HTTP/2 connections).
const READ_CHUNK: usize = 16 * 1024;

/// A listener whose connections are [`AuthorityFixStream`]s.
#[derive(Debug)]
pub struct AuthorityFixListener<L> {
    inner: L,
}

impl<L> AuthorityFixListener<L> {
    pub fn new(inner: L) -> Self {
        AuthorityFixListener { inner }
    }
}

impl<L: axum::serve::Listener> axum::serve::Listener for AuthorityFixListener<L> {
    type Io = AuthorityFixStream<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        (AuthorityFixStream::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One client connection as hyper reads it: the client's bytes, with URL-form HTTP/2
/// `:authority` values made bare (see the module docs). Writes go to the socket unchanged.
pub struct AuthorityFixStream<S> {
    inner: S,
    frames: frames::ClientFrames,
    /// Bytes read from `inner` and not yet handed to the reader; the first `ready` of them
    /// are final, the rest wait for the end of their frame header or header block.
    pending: BytesMut,
    ready: usize,
    /// `inner` reached end of file; whatever is pending is handed over as it is.
    eof: bool,
}

impl<S> AuthorityFixStream<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFixStream {
            inner,
            frames: frames::ClientFrames::default(),
            pending: BytesMut::new(),
            ready: 0,
            eof: false,
        }
    }

    /// True once some `:authority` on this connection was rewritten.
    pub fn rewrote(&self) -> bool {
        self.frames.rewrote()
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFixStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready > 0 {
                let count = this.ready.min(buf.remaining());
                buf.put_slice(&this.pending[..count]);
                this.pending.advance(count);
                this.ready -= count;
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.pending.is_empty() && this.frames.is_passthrough() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            this.pending.reserve(READ_CHUNK);
            let read = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.inner),
                cx,
                &mut this.pending
            ))?;
            if read == 0 {
                // A truncated frame goes to hyper as it is, followed by the end of file.
                this.eof = true;
                this.ready = this.pending.len();
                continue;
            }
            this.ready = this
                .frames
                .scan(&mut this.pending)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFixStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
mod stream_test;
