//! Membership changes (etcd's Cluster API) over openraft's membership, executed by the leader.
//! A follower forwards the change to the leader over the peer RPC; the leader validates it
//! against the current membership and answers with etcd's catalogue errors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::Member;
use openraft::Instant as _;
use openraft::errors::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::type_config::async_runtime::WatchReceiver;
use openraft::{ChangeMembers, Membership};
use serde::{Deserialize, Serialize};
use storage::MemberNode;
use tokio::time::Instant;

use crate::error::ConsensusError;
use crate::ids;
use crate::network::{from_json, to_json};
use crate::node::{Core, RaftNode};
use crate::pb;
use crate::proposer::never_sent;
use crate::status::members_of;

/// A learner is ready for promotion when it matched at least this share of the leader's log.
const LEARNER_READY_PERCENT: u64 = 90;
/// Pause before retrying a change when no leader is usable yet.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// One membership change, as forwarded to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum MemberChange {
    Add {
        id: u64,
        peer_urls: Vec<String>,
        is_learner: bool,
    },
    Remove {
        id: u64,
    },
    Update {
        id: u64,
        peer_urls: Vec<String>,
    },
    Promote {
        id: u64,
    },
    /// A member records its own name and client URLs (etcd's "publish" after start).
    Publish {
        id: u64,
        name: String,
        client_urls: Vec<String>,
    },
}

/// Peer URLs must be absolute http(s) URLs with a host and a port, as etcd requires.
fn valid_urls(urls: &[String]) -> bool {
    !urls.is_empty()
        && urls.iter().all(|url| {
            let Some(rest) = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
            else {
                return false;
            };
            let authority = rest.split('/').next().unwrap_or("");
            match authority.rsplit_once(':') {
                Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
                None => false,
            }
        })
}

fn members_of_membership(membership: &Membership<u64, MemberNode>) -> Vec<Member> {
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    members_of(
        membership
            .nodes()
            .map(|(id, node)| (*id, node.clone(), !voters.contains(id)))
            .collect(),
    )
}

fn map_write_error(
    error: RaftError<storage::TypeConfig, ClientWriteError<storage::TypeConfig>>,
) -> ConsensusError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
            ConsensusError::Etcd(errors::NOT_LEADER)
        }
        // Another change (often a member publishing itself) is still being committed. Nothing
        // was proposed: answer like "not leader" so `change_member` retries until its deadline.
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(_),
        )) => ConsensusError::Etcd(errors::NOT_LEADER),
        // Another membership entry landed between the two steps of a joint change: retry;
        // the retry completes (flattens) the change.
        RaftError::APIError(ClientWriteError::PreconditionFailed(_)) => {
            ConsensusError::Etcd(errors::NOT_LEADER)
        }
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => {
            ConsensusError::LeaderChanged
        }
        RaftError::APIError(other) => ConsensusError::Internal(other.to_string()),
        RaftError::Fatal(_) => ConsensusError::Stopped,
    }
}

/// Decodes an error sent back by the leader (the Display form of a [`ConsensusError`]).
pub(crate) fn remote_error(message: &str) -> ConsensusError {
    if let Some(etcd) = EtcdError::from_message(message) {
        return ConsensusError::Etcd(etcd);
    }
    match message {
        "no leader" => ConsensusError::NoLeader,
        "leader changed" => ConsensusError::LeaderChanged,
        "request timed out" => ConsensusError::Timeout,
        "server stopped" => ConsensusError::Stopped,
        other => ConsensusError::Internal(other.to_string()),
    }
}

impl Core {
    /// Validates and executes `change`; this member must be the leader
    /// (otherwise `Etcd(NOT_LEADER)`, and nothing changed).
    pub(crate) async fn change_member_as_leader(
        &self,
        change: MemberChange,
    ) -> Result<Vec<Member>, ConsensusError> {
        let deadline = self.request_deadline();
        // One change at a time on this leader: a second change proposed between the two steps
        // of a joint change would make openraft refuse the second step.
        let change = async {
            let _serialized = self.membership_lock.lock().await;
            self.apply_member_change(change).await
        };
        match tokio::time::timeout_at(deadline, change).await {
            Ok(result) => result,
            Err(_) => Err(ConsensusError::Timeout),
        }
    }

    async fn apply_member_change(
        &self,
        change: MemberChange,
    ) -> Result<Vec<Member>, ConsensusError> {
        if self.current_leader() != Some(self.member_id) {
            return Err(ConsensusError::Etcd(errors::NOT_LEADER));
        }
        let nodes = self.membership_nodes();
        let find = |id: u64| nodes.iter().find(|(node_id, _, _)| *node_id == id).cloned();
        let url_taken = |urls: &[String], except: Option<u64>| {
            nodes
                .iter()
                .filter(|(id, _, _)| Some(*id) != except)
                .any(|(_, node, _)| node.peer_urls.iter().any(|url| urls.contains(url)))
        };
        let raft = &self.raft;
        let response = match change {
            MemberChange::Add {
                id,
                peer_urls,
                is_learner,
            } => {
                if !valid_urls(&peer_urls) {
                    return Err(ConsensusError::Etcd(errors::MEMBER_BAD_URLS));
                }
                // The ID is new for every MemberAdd request, so finding it with the same URLs
                // means this request is being retried: finish it instead of refusing it.
                let retried = match find(id) {
                    Some((_, node, _)) if node.peer_urls == peer_urls => true,
                    Some(_) => return Err(ConsensusError::Etcd(errors::MEMBER_EXIST)),
                    None => false,
                };
                if !retried && url_taken(&peer_urls, None) {
                    return Err(ConsensusError::Etcd(errors::PEER_URL_EXIST));
                }
                let added = if retried {
                    None
                } else {
                    let node = MemberNode {
                        name: String::new(),
                        peer_urls,
                        client_urls: Vec::new(),
                    };
                    Some(
                        raft.add_learner(id, node, false)
                            .await
                            .map_err(map_write_error)?,
                    )
                };
                match added {
                    Some(added) if is_learner => added,
                    _ if is_learner => {
                        return Ok(self.members());
                    }
                    _ => raft
                        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                        .await
                        .map_err(map_write_error)?,
                }
            }
            MemberChange::Remove { id } => {
                let Some((_, _, is_learner)) = find(id) else {
                    return Err(ConsensusError::Etcd(errors::MEMBER_NOT_FOUND));
                };
                if is_learner {
                    raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                        .await
                        .map_err(map_write_error)?
                } else {
                    let remaining: Vec<u64> = nodes
                        .iter()
                        .filter(|(node_id, _, learner)| !learner && *node_id != id)
                        .map(|(node_id, _, _)| *node_id)
                        .collect();
                    let reachable = self.reachable_voters(&remaining);
                    if remaining.is_empty() || reachable < remaining.len() / 2 + 1 {
                        return Err(ConsensusError::Etcd(errors::UNHEALTHY_CLUSTER));
                    }
                    raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                        .await
                        .map_err(map_write_error)?
                }
            }
            MemberChange::Update { id, peer_urls } => {
                let Some((_, node, _)) = find(id) else {
                    return Err(ConsensusError::Etcd(errors::MEMBER_NOT_FOUND));
                };
                if !valid_urls(&peer_urls) {
                    return Err(ConsensusError::Etcd(errors::MEMBER_BAD_URLS));
                }
                if url_taken(&peer_urls, Some(id)) {
                    return Err(ConsensusError::Etcd(errors::PEER_URL_EXIST));
                }
                let node = MemberNode { peer_urls, ..node };
                raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), true)
                    .await
                    .map_err(map_write_error)?
            }
            MemberChange::Promote { id } => {
                let Some((_, _, is_learner)) = find(id) else {
                    return Err(ConsensusError::Etcd(errors::MEMBER_NOT_FOUND));
                };
                if !is_learner {
                    return Err(ConsensusError::Etcd(errors::MEMBER_NOT_LEARNER));
                }
                if !self.learner_ready(id) {
                    return Err(ConsensusError::Etcd(errors::LEARNER_NOT_READY));
                }
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                    .await
                    .map_err(map_write_error)?
            }
            MemberChange::Publish {
                id,
                name,
                client_urls,
            } => {
                let Some((_, node, _)) = find(id) else {
                    return Err(ConsensusError::Etcd(errors::MEMBER_NOT_FOUND));
                };
                let node = MemberNode {
                    name,
                    client_urls,
                    ..node
                };
                raft.change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), true)
                    .await
                    .map_err(map_write_error)?
            }
        };
        Ok(match &response.membership {
            Some(membership) => members_of_membership(membership),
            None => self.members(),
        })
    }

    /// How many of `voters` answered the leader recently (the leader itself counts).
    fn reachable_voters(&self, voters: &[u64]) -> usize {
        let recent = self.config.election_timeout * 2;
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        voters
            .iter()
            .filter(|id| {
                **id == self.member_id
                    || metrics
                        .heartbeat
                        .as_ref()
                        .and_then(|acks| acks.get(id).cloned().flatten())
                        .is_some_and(|acked| acked.elapsed() < recent)
            })
            .count()
    }

    /// Whether learner `id` replicated most of the leader's log (etcd refuses to promote a
    /// learner that is far behind).
    fn learner_ready(&self, id: u64) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let leader_last = metrics.last_log_index.unwrap_or(0);
        let matched = metrics
            .replication
            .as_ref()
            .and_then(|replication| replication.get(&id).cloned().flatten())
            .map(|log_id| log_id.index)
            .unwrap_or(0);
        matched * 100 >= leader_last * LEARNER_READY_PERCENT
    }

    /// Runs `change` on the leader: locally, or forwarded over the peer RPC. Retries only while
    /// the change cannot have been started (not leader, no leader, connection refused).
    pub(crate) async fn change_member(
        &self,
        change: MemberChange,
    ) -> Result<Vec<Member>, ConsensusError> {
        let deadline = self.request_deadline();
        loop {
            let leader = self.wait_for_leader(deadline).await?;
            let result = if leader == self.member_id {
                self.change_member_as_leader(change.clone()).await
            } else {
                self.forward_change(leader, &change, deadline).await
            };
            match result {
                Err(ConsensusError::Etcd(e)) if e == errors::NOT_LEADER => {}
                Err(ConsensusError::NoLeader) => {}
                other => return other,
            }
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(ConsensusError::Timeout);
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn forward_change(
        &self,
        leader: u64,
        change: &MemberChange,
        deadline: Instant,
    ) -> Result<Vec<Member>, ConsensusError> {
        let Some(peer_urls) = self.peer_urls_of(leader) else {
            return Err(ConsensusError::NoLeader);
        };
        let mut client = self.channels.client(&peer_urls)?;
        let request = pb::JsonMessage {
            json: to_json(change).into(),
            error: String::new(),
        };
        let reply = match tokio::time::timeout_at(deadline, client.change_member(request)).await {
            Err(_) => return Err(ConsensusError::Timeout),
            Ok(Err(status)) if never_sent(&status) => return Err(ConsensusError::NoLeader),
            Ok(Err(_)) => return Err(ConsensusError::LeaderChanged),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        if !reply.error.is_empty() {
            return Err(remote_error(&reply.error));
        }
        from_json(&reply.json).map_err(ConsensusError::Internal)
    }
}

impl RaftNode {
    /// etcd MemberAdd: a voter is added as a learner, then promoted at once (like etcd, it counts
    /// toward the quorum from then on, started or not); a learner is only added.
    /// Returns the new member and the full list after the change.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), ConsensusError> {
        let core = self.core();
        let salt = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let id = ids::added_member_id(&peer_urls, &core.config.initial_cluster_token, salt);
        let members = core
            .change_member(MemberChange::Add {
                id,
                peer_urls: peer_urls.clone(),
                is_learner,
            })
            .await?;
        let member = members
            .iter()
            .find(|m| m.id == id)
            .cloned()
            .unwrap_or(Member {
                id,
                name: String::new(),
                peer_ur_ls: peer_urls,
                client_ur_ls: Vec::new(),
                is_learner,
            });
        Ok((member, members))
    }

    /// etcd MemberRemove. Refused with `UNHEALTHY_CLUSTER` when the remaining voters that
    /// recently answered the leader would not form a quorum.
    pub async fn member_remove(&self, id: u64) -> Result<Vec<Member>, ConsensusError> {
        self.core().change_member(MemberChange::Remove { id }).await
    }

    /// etcd MemberUpdate: replaces a member's peer URLs.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, ConsensusError> {
        self.core()
            .change_member(MemberChange::Update { id, peer_urls })
            .await
    }

    /// etcd MemberPromote: learner → voter (`MEMBER_NOT_LEARNER` for a voter,
    /// `LEARNER_NOT_READY` for a learner far behind the leader).
    pub async fn member_promote(&self, id: u64) -> Result<Vec<Member>, ConsensusError> {
        self.core()
            .change_member(MemberChange::Promote { id })
            .await
    }

    /// Leader transfer (etcd MoveLeader). Must be called on the leader; returns once `target`
    /// leads, or `Timeout`.
    pub async fn move_leader(&self, target: u64) -> Result<(), ConsensusError> {
        let core = self.core();
        if core.current_leader() != Some(core.member_id) {
            return Err(ConsensusError::Etcd(errors::NOT_LEADER));
        }
        let is_voter = core
            .membership_nodes()
            .iter()
            .any(|(id, _, is_learner)| *id == target && !is_learner);
        if !is_voter {
            return Err(ConsensusError::Etcd(errors::BAD_LEADER_TRANSFEREE));
        }
        if target == core.member_id {
            return Ok(());
        }
        core.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|_| ConsensusError::Stopped)?;
        let deadline = core.request_deadline();
        let mut metrics = core.raft.metrics();
        loop {
            let leader = metrics.borrow_and_update().current_leader;
            if leader == Some(target) {
                return Ok(());
            }
            tokio::select! {
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return Err(ConsensusError::Stopped);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Err(ConsensusError::Timeout),
            }
        }
    }

    /// The current member list (etcd MemberList, serializable).
    pub fn members(&self) -> Vec<Member> {
        self.core().members()
    }
}

/// Publishes this member's name and client URLs into its membership record once it appears and
/// differs (an added member starts with an empty name and no client URLs, as etcd shows it).
pub(crate) async fn publish_self(core: Arc<Core>) {
    let mut metrics = core.raft.metrics();
    loop {
        let record = core
            .membership_nodes()
            .into_iter()
            .find(|(id, _, _)| *id == core.member_id)
            .map(|(_, node, _)| node);
        match record {
            Some(node)
                if node.name == core.config.name && node.client_urls == core.config.client_urls =>
            {
                return;
            }
            Some(_) if core.current_leader().is_some() => {
                let change = MemberChange::Publish {
                    id: core.member_id,
                    name: core.config.name.clone(),
                    client_urls: core.config.client_urls.clone(),
                };
                match core.change_member(change).await {
                    Ok(_) => {
                        tracing::info!(name = %core.config.name, "published member attributes");
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "publishing member attributes; will retry")
                    }
                }
            }
            _ => {}
        }
        tokio::select! {
            _ = core.cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
