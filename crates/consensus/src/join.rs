//! [`InitialClusterState::JoinOrNew`](crate::InitialClusterState::JoinOrNew): a member with an
//! empty data dir asks the other members of its initial cluster whether a group already runs.
//!
//! - No group found (every partner refused the connection, answered without a membership, or
//!   stayed silent for [`PROBE_WINDOW`]): create the initial cluster, as `New` does.
//! - A group lists this member under its derived (initial) member ID: it is one of the initial
//!   members, so it starts as `New` does too (every initial member initializes the same
//!   membership).
//! - A group lists this member's peer URLs under another ID: an earlier join added it; start
//!   with that ID.
//! - A group does not list this member: ask its leader (through any partner) to add it as a
//!   learner, start with the new ID, and promote it to a voter once it has caught up.
//!
//! While it asks, the member answers its own peer port with "no membership yet" (a stand-in
//! peer service, stopped before the real one starts): members started together then learn at
//! once that none of them runs a group, instead of waiting for each other's silence to time out.
//!
//! Why a learner first: while the new member replays the log it could not vote in time, and
//! counting it as a voter at once would make a three-voter group of four need three live
//! voters, so one more failure during the catch-up would stop the store. As a learner it does
//! not count toward the quorum until the leader sees it in sync (the same rule as etcd's
//! MemberPromote); the promotion is then one joint-consensus membership change.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_proto::errors;
use futures::{Stream, StreamExt};
use reloading::Reloading;
use storage::{MemberIdentity, MemberNode};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

use crate::bootstrap::{StartPlan, new_cluster, same_urls};
use crate::config::NodeConfig;
use crate::error::ConsensusError;
use crate::ids;
use crate::membership::{MemberChange, remote_error};
use crate::network::{PeerChannels, from_json, to_json};
use crate::node::Core;
use crate::pb;
use crate::pb::peer_server::{Peer, PeerServer};
use crate::proposer::never_sent;

/// How long one GetMembers or ChangeMember call to a partner may take.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long partners that accept connections but do not answer (hung or overloaded) are asked
/// again before this member concludes that no group runs.
const PROBE_WINDOW: Duration = Duration::from_secs(10);
/// How long the stand-in peer service holds a Raft message before refusing it, so a partner
/// that already runs does not retry in a tight loop while this member starts.
const STAND_IN_REFUSAL_DELAY: Duration = Duration::from_millis(200);
/// How long the stand-in peer service may take to close its connections (GOAWAY, then the
/// peers reconnect to the real service).
const STAND_IN_DRAIN: Duration = Duration::from_secs(2);
/// Pause between two rounds of questions to the partners.
const ROUND_PAUSE: Duration = Duration::from_millis(200);
/// Pause between two promotion attempts of a learner that is not in sync yet.
const PROMOTE_RETRY: Duration = Duration::from_millis(500);
/// A learner still not promoted after this long logs a warning (and keeps trying).
const PROMOTE_WARN_AFTER: Duration = Duration::from_secs(30);

/// A group's member records as GetMembers sends them: (id, record, is_learner).
type Nodes = Vec<(u64, MemberNode, bool)>;

/// What one partner said.
enum Answer {
    /// It runs a group with this membership.
    Group { nodes: Nodes, cluster_id: u64 },
    /// It runs but holds no membership yet (starting, or joining itself).
    Uninitialized,
    /// Nothing listens on its peer address.
    Refused,
    /// It accepted the connection but did not answer in time, or answered garbage.
    Silent,
}

/// Decides this member's identity for `JoinOrNew` (the data dir holds none yet).
pub(crate) async fn plan(
    config: &NodeConfig,
    channels: &PeerChannels,
    peer_listener: &TcpListener,
    peer_tls: Option<&Arc<Reloading<rustls::ServerConfig>>>,
) -> Result<StartPlan, ConsensusError> {
    let partners = partners(config);
    let found =
        answering_not_initialized(peer_listener, peer_tls, find_group(channels, &partners)).await;
    let Some((nodes, cluster_id)) = found else {
        tracing::info!(
            partners = partners.len(),
            "no running Raft group among the partners; creating the initial cluster"
        );
        return new_cluster(config);
    };
    let derived_id = ids::member_id(&config.peer_urls, &config.initial_cluster_token);
    match own_record(&nodes, &config.peer_urls) {
        Some((id, _)) if id == derived_id => {
            tracing::info!("the running Raft group lists this member as an initial member");
            new_cluster(config)
        }
        Some((id, is_learner)) => {
            tracing::info!(
                member_id = %format!("{id:x}"),
                is_learner,
                "the running Raft group already lists this member (an earlier join); rejoining it"
            );
            Ok(StartPlan {
                identity: MemberIdentity {
                    member_id: id,
                    cluster_id,
                },
                initialize: None,
                promote_self: is_learner,
            })
        }
        None => {
            tracing::info!(
                members = nodes.len(),
                "a Raft group runs without this member; asking its leader to add it as a learner"
            );
            let member_id = add_self_as_learner(config, channels, &partners).await?;
            tracing::info!(
                member_id = %format!("{member_id:x}"),
                "added to the running Raft group as a learner"
            );
            Ok(StartPlan {
                identity: MemberIdentity {
                    member_id,
                    cluster_id,
                },
                initialize: None,
                promote_self: true,
            })
        }
    }
}

/// The peer URLs of every initial-cluster member but this one.
fn partners(config: &NodeConfig) -> Vec<Vec<String>> {
    config
        .initial_cluster
        .iter()
        .filter(|(_, urls)| !same_urls(urls, &config.peer_urls))
        .map(|(_, urls)| urls.clone())
        .collect()
}

/// This member's record in `nodes` (matched by peer URLs): its ID and learner flag.
fn own_record(nodes: &Nodes, peer_urls: &[String]) -> Option<(u64, bool)> {
    nodes
        .iter()
        .find(|(_, node, _)| same_urls(&node.peer_urls, peer_urls))
        .map(|(id, _, is_learner)| (*id, *is_learner))
}

async fn ask(channels: &PeerChannels, peer_urls: &[String]) -> Answer {
    let Ok(mut client) = channels.client(peer_urls) else {
        return Answer::Refused;
    };
    let reply =
        tokio::time::timeout(CALL_TIMEOUT, client.get_members(pb::GetMembersRequest {})).await;
    let reply = match reply {
        Err(_) => return Answer::Silent,
        Ok(Err(status)) if never_sent(&status) => return Answer::Refused,
        Ok(Err(_)) => return Answer::Silent,
        Ok(Ok(reply)) => reply.into_inner(),
    };
    match from_json::<Nodes>(&reply.members_json) {
        Ok(nodes) if nodes.is_empty() => Answer::Uninitialized,
        Ok(nodes) => Answer::Group {
            nodes,
            cluster_id: reply.cluster_id,
        },
        Err(_) => Answer::Silent,
    }
}

/// Asks every partner at once, in rounds, until one reports a group, all of them settled
/// (refused or answered without one), or [`PROBE_WINDOW`] passed.
async fn find_group(channels: &PeerChannels, partners: &[Vec<String>]) -> Option<(Nodes, u64)> {
    let deadline = Instant::now() + PROBE_WINDOW;
    loop {
        let answers =
            futures::future::join_all(partners.iter().map(|urls| ask(channels, urls))).await;
        let mut settled = true;
        for answer in answers {
            match answer {
                Answer::Group { nodes, cluster_id } => return Some((nodes, cluster_id)),
                Answer::Silent => settled = false,
                Answer::Refused | Answer::Uninitialized => {}
            }
        }
        if settled || Instant::now() + ROUND_PAUSE >= deadline {
            return None;
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    }
}

/// Sends MemberAdd (learner) to each partner in turn until the leader accepts it, up to six
/// request timeouts. The ID stays the same across retries, so a retry of an add that was
/// committed but not answered completes instead of adding a second record.
async fn add_self_as_learner(
    config: &NodeConfig,
    channels: &PeerChannels,
    partners: &[Vec<String>],
) -> Result<u64, ConsensusError> {
    let salt = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let id = ids::added_member_id(&config.peer_urls, &config.initial_cluster_token, salt);
    let change = MemberChange::Add {
        id,
        peer_urls: config.peer_urls.clone(),
        is_learner: true,
    };
    let timeout = config.request_timeout * 6;
    let deadline = Instant::now() + timeout;
    let mut last_error = String::from("no partner answered");
    loop {
        for urls in partners {
            match send_change(channels, urls, &change, config.request_timeout).await {
                Ok(()) => return Ok(id),
                Err(ConsensusError::Etcd(error)) if error == errors::PEER_URL_EXIST => {
                    // A concurrent attempt of ours won: use the ID it registered.
                    if let Answer::Group { nodes, .. } = ask(channels, urls).await
                        && let Some((existing, _)) = own_record(&nodes, &config.peer_urls)
                    {
                        return Ok(existing);
                    }
                    last_error = error.to_string();
                }
                Err(ConsensusError::Etcd(error)) if error != errors::NOT_LEADER => {
                    return Err(ConsensusError::Internal(format!(
                        "the Raft leader refused to add this member ({:?}): {error}",
                        config.peer_urls
                    )));
                }
                Err(error) => last_error = format!("{}: {error}", urls.join(",")),
            }
        }
        if Instant::now() + ROUND_PAUSE >= deadline {
            return Err(ConsensusError::Internal(format!(
                "could not join the running Raft group within {timeout:?}: no partner's leader accepted the member add (last error: {last_error})"
            )));
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    }
}

/// One ChangeMember call to `peer_urls`; `NOT_LEADER` when it is not the leader.
async fn send_change(
    channels: &PeerChannels,
    peer_urls: &[String],
    change: &MemberChange,
    timeout: Duration,
) -> Result<(), ConsensusError> {
    let mut client = channels.client(peer_urls)?;
    let request = pb::JsonMessage {
        json: to_json(change).into(),
        error: String::new(),
    };
    match tokio::time::timeout(timeout, client.change_member(request)).await {
        Err(_) => Err(ConsensusError::Timeout),
        Ok(Err(status)) => Err(ConsensusError::Internal(status.message().to_string())),
        Ok(Ok(reply)) => {
            let reply = reply.into_inner();
            if reply.error.is_empty() {
                Ok(())
            } else {
                Err(remote_error(&reply.error))
            }
        }
    }
}

/// Promotes this learner to a voter once the leader finds it in sync; runs until it is a voter,
/// it was removed, or the member stops.
pub(crate) async fn promote_self(core: Arc<Core>) {
    let started = Instant::now();
    let mut warned = false;
    let mut attempted = false;
    loop {
        let nodes = core.membership_nodes();
        let voters: BTreeSet<u64> = nodes
            .iter()
            .filter(|(_, _, is_learner)| !is_learner)
            .map(|(id, _, _)| *id)
            .collect();
        if voters.contains(&core.member_id) {
            if attempted {
                tracing::info!("this member is a voter of the Raft group");
            }
            return;
        }
        let listed = nodes.iter().any(|(id, _, _)| *id == core.member_id);
        if listed && core.current_leader().is_some() {
            attempted = true;
            match core
                .change_member(MemberChange::Promote { id: core.member_id })
                .await
            {
                Ok(_) => {
                    tracing::info!("promoted from learner to voter of the Raft group");
                    return;
                }
                Err(ConsensusError::Etcd(error)) if error == errors::MEMBER_NOT_LEARNER => return,
                Err(ConsensusError::Etcd(error)) if error == errors::MEMBER_NOT_FOUND => {
                    tracing::warn!("this learner was removed from the Raft group; not promoting");
                    return;
                }
                Err(error) => tracing::debug!(%error, "promoting this learner; will retry"),
            }
        }
        if !warned && started.elapsed() > PROMOTE_WARN_AFTER {
            warned = true;
            tracing::warn!(
                "this learner is still not promoted after {PROMOTE_WARN_AFTER:?} (not in sync with the leader yet?); still trying"
            );
        }
        tokio::select! {
            () = core.cancel.cancelled() => return,
            () = tokio::time::sleep(PROMOTE_RETRY) => {}
        }
    }
}

/// Connections the stand-in accepts in parallel while their TLS handshakes run.
const STAND_IN_HANDSHAKES: usize = 16;

/// Runs `work` while a stand-in peer service on `listener` answers GetMembers with an empty
/// membership (and every other call with UNAVAILABLE), over TLS when the peer port serves TLS
/// (`tls`), so partners probing this member get an answer rather than a failed handshake; then
/// closes the stand-in's connections so the partners reconnect to the real peer service.
async fn answering_not_initialized<T>(
    listener: &TcpListener,
    tls: Option<&Arc<Reloading<rustls::ServerConfig>>>,
    work: impl std::future::Future<Output = T>,
) -> T {
    let accepted = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, peer)| {
            // Best effort: a stream without TCP_NODELAY only answers a little later.
            let _ = stream.set_nodelay(true);
            (stream, peer)
        });
        Some((accepted, listener))
    });
    match tls {
        None => {
            serve_stand_in(
                accepted.map(|accepted| accepted.map(|(stream, _)| stream)),
                work,
            )
            .await
        }
        Some(config) => {
            let config = config.clone();
            let incoming = accepted
                .map(move |accepted| {
                    let handshake = accepted.map(|(stream, peer)| {
                        crate::tls_transport::handshake(stream, peer, &config)
                    });
                    async move {
                        match handshake {
                            Ok(handshake) => handshake.await.map(Ok),
                            Err(error) => Some(Err(error)),
                        }
                    }
                })
                .buffer_unordered(STAND_IN_HANDSHAKES)
                .filter_map(std::future::ready);
            serve_stand_in(incoming, work).await
        }
    }
}

/// Serves [`StandIn`] on `incoming` until `work` finishes, then drains it.
async fn serve_stand_in<T, IO>(
    incoming: impl Stream<Item = std::io::Result<IO>> + Send,
    work: impl std::future::Future<Output = T>,
) -> T
where
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
{
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let serve = tonic::transport::Server::builder()
        .add_service(PeerServer::new(StandIn))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stop_rx.await;
        });
    let mut serve = std::pin::pin!(serve);
    let mut work = std::pin::pin!(work);
    let result = tokio::select! {
        result = &mut work => result,
        served = &mut serve => {
            if let Err(error) = served {
                tracing::debug!(%error, "the stand-in peer service stopped");
            }
            work.await
        }
    };
    let _ = stop_tx.send(());
    if tokio::time::timeout(STAND_IN_DRAIN, serve).await.is_err() {
        tracing::debug!("the stand-in peer service's connections did not close in time");
    }
    result
}

/// The peer service of a member that has no membership yet.
struct StandIn;

fn not_started() -> Status {
    Status::unavailable("member starting: no membership yet")
}

/// [`not_started`] after [`STAND_IN_REFUSAL_DELAY`].
async fn not_started_yet<T>() -> Result<T, Status> {
    tokio::time::sleep(STAND_IN_REFUSAL_DELAY).await;
    Err(not_started())
}

#[tonic::async_trait]
impl Peer for StandIn {
    async fn append_entries(
        &self,
        _request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::JsonMessage>, Status> {
        not_started_yet().await
    }

    type AppendStreamStream = futures::stream::BoxStream<'static, Result<pb::JsonMessage, Status>>;

    async fn append_stream(
        &self,
        _request: Request<Streaming<pb::AppendEntriesRequest>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        not_started_yet().await
    }

    async fn vote(
        &self,
        _request: Request<pb::JsonMessage>,
    ) -> Result<Response<pb::JsonMessage>, Status> {
        not_started_yet().await
    }

    async fn pre_vote(
        &self,
        _request: Request<pb::JsonMessage>,
    ) -> Result<Response<pb::JsonMessage>, Status> {
        not_started_yet().await
    }

    async fn transfer_leader(
        &self,
        _request: Request<pb::JsonMessage>,
    ) -> Result<Response<pb::JsonMessage>, Status> {
        not_started_yet().await
    }

    async fn install_snapshot(
        &self,
        _request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::JsonMessage>, Status> {
        not_started_yet().await
    }

    async fn propose(
        &self,
        _request: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::ProposeResponse>, Status> {
        not_started_yet().await
    }

    async fn read_index(
        &self,
        _request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        not_started_yet().await
    }

    async fn get_members(
        &self,
        _request: Request<pb::GetMembersRequest>,
    ) -> Result<Response<pb::GetMembersResponse>, Status> {
        Ok(Response::new(pb::GetMembersResponse {
            members_json: to_json(&Nodes::new()).into(),
            cluster_id: 0,
        }))
    }

    async fn change_member(
        &self,
        _request: Request<pb::JsonMessage>,
    ) -> Result<Response<pb::JsonMessage>, Status> {
        not_started_yet().await
    }

    async fn forward(
        &self,
        _request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        not_started_yet().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::TlsFiles;

    /// One self-signed certificate for 127.0.0.1, serving as both sides' identity and CA.
    fn loopback_tls() -> TlsFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        TlsFiles {
            cert_pem: certificate.pem().into_bytes(),
            key_pem: key.serialize_pem().into_bytes(),
            trusted_ca_pem: Some(certificate.pem().into_bytes()),
            client_cert_auth: true,
            sources: None,
        }
    }

    /// With TLS on the peer port, a partner probing a member that is still looking for a
    /// group gets its stand-in's answer (no membership yet) over TLS, not a failed handshake
    /// (which would read as a silent partner and hold both starts for the probe window).
    #[tokio::test]
    async fn the_stand_in_answers_probes_over_peer_tls() {
        let tls = loopback_tls();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let server = Arc::new(
            tls.watch("peer port TLS", TlsFiles::rustls_server_config)
                .unwrap(),
        );
        let client = tls
            .watch("peer client TLS", TlsFiles::rustls_client_config)
            .unwrap();
        let channels = PeerChannels::new(Duration::from_secs(2)).with_tls(Some(client));
        let answer =
            answering_not_initialized(&listener, Some(&server), ask(&channels, &[url])).await;
        assert!(
            matches!(answer, Answer::Uninitialized),
            "{}",
            describe(&answer)
        );
    }

    fn describe(answer: &Answer) -> &'static str {
        match answer {
            Answer::Group { .. } => "a group",
            Answer::Uninitialized => "uninitialized",
            Answer::Refused => "refused",
            Answer::Silent => "silent",
        }
    }
}
