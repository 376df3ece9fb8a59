//! Leader-only calls of the layer above the store, carried from a follower to the leader over
//! the peer transport (`Peer.Forward`).
//!
//! The store does not know what the calls mean: a method name and encoded bytes go in, encoded
//! bytes or a gRPC status come out. Carrying them here rather than over the leader's client URL
//! means a follower needs nothing it does not already have: the peer channel is already open,
//! and with peer TLS it is authenticated by the member's peer certificate (a client port with
//! `client_cert_auth` would want a client certificate no member holds).

use std::sync::Weak;

use bytes::Bytes;
use futures::future::BoxFuture;
use tonic::Status;

use crate::node::Core;
use crate::pb;

/// Answers the calls forwarded to this member (the layer above registers one with
/// [`crate::RaftNode::serve_forwarded`]). A handler answers as a member that received the call
/// already forwarded once: when it does not lead (any more), it refuses rather than forwarding
/// again, so a stale view of the leader cannot bounce a call between members.
pub trait ForwardHandler: Send + Sync + 'static {
    fn handle(&self, method: String, body: Bytes) -> BoxFuture<'static, Result<Bytes, Status>>;
}

fn no_leader() -> Status {
    Status::unavailable("no leader")
}

/// The handler registered on this member, while its owner keeps it alive.
fn handler(core: &Core) -> Result<std::sync::Arc<dyn ForwardHandler>, Status> {
    core.forward_handler
        .get()
        .and_then(Weak::upgrade)
        .ok_or_else(|| Status::unavailable("this member serves no forwarded calls"))
}

/// Hands `method` to the member this one believes leads: its own handler when that is this
/// member, the leader's over the peer transport otherwise. Connection failures answer
/// `Unavailable`; the caller bounds the time.
pub(crate) async fn to_leader(core: &Core, method: &str, body: Bytes) -> Result<Bytes, Status> {
    let leader = core.current_leader().ok_or_else(no_leader)?;
    if leader == core.member_id {
        return handler(core)?.handle(method.to_owned(), body).await;
    }
    let peer_urls = core.peer_urls_of(leader).ok_or_else(no_leader)?;
    let mut client = core
        .channels
        .client(&peer_urls)
        .map_err(|error| Status::unavailable(error.to_string()))?;
    let request = pb::ForwardRequest {
        method: method.to_owned(),
        body,
    };
    Ok(client.forward(request).await?.into_inner().body)
}

/// The leader's half: answers a call a follower forwarded.
pub(crate) async fn serve(core: &Core, request: pb::ForwardRequest) -> Result<Bytes, Status> {
    handler(core)?.handle(request.method, request.body).await
}
