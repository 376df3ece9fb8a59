//! Deciding who this member is at start: reuse the data dir's identity, create a new cluster's
//! member, or discover the ID a MemberAdd gave us by asking the existing members.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reloading::Reloading;
use storage::{Db, MemberIdentity, MemberNode};
use tokio::time::Instant;

use crate::config::{InitialClusterState, NodeConfig};
use crate::error::ConsensusError;
use crate::ids;
use crate::network::{PeerChannels, from_json};
use crate::node::InitialMembers;
use crate::pb;

/// What start must do.
pub(crate) struct StartPlan {
    pub(crate) identity: MemberIdentity,
    /// Set when this start creates the cluster: the membership to initialize openraft with.
    pub(crate) initialize: Option<InitialMembers>,
    /// Set when this member joined a running group as a learner: promote it once in sync.
    pub(crate) promote_self: bool,
}

pub(crate) fn same_urls(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// Decides the member's identity and whether to initialize a new cluster.
/// An existing data dir wins over every initial-cluster flag, as in etcd.
pub(crate) async fn plan(
    config: &NodeConfig,
    db: &Db,
    channels: &PeerChannels,
    peer_listener: &tokio::net::TcpListener,
    peer_tls: Option<&Arc<Reloading<rustls::ServerConfig>>>,
) -> Result<StartPlan, ConsensusError> {
    if let Some(identity) = db
        .identity()
        .map_err(|e| ConsensusError::Internal(e.to_string()))?
    {
        tracing::info!(member_id = %format!("{:x}", identity.member_id), "restarting member from its data dir");
        // A learner that restarts before its promotion keeps asking to be promoted.
        let promote_self = matches!(config.initial_cluster_state, InitialClusterState::JoinOrNew);
        return Ok(StartPlan {
            identity,
            initialize: None,
            promote_self,
        });
    }
    let plan = match config.initial_cluster_state {
        InitialClusterState::New => new_cluster(config)?,
        InitialClusterState::Existing => StartPlan {
            identity: discover(config, channels).await?,
            initialize: None,
            promote_self: false,
        },
        InitialClusterState::JoinOrNew => {
            crate::join::plan(config, channels, peer_listener, peer_tls).await?
        }
    };
    db.save_identity(&plan.identity)
        .map_err(|e| ConsensusError::Internal(e.to_string()))?;
    Ok(plan)
}

pub(crate) fn new_cluster(config: &NodeConfig) -> Result<StartPlan, ConsensusError> {
    let token = &config.initial_cluster_token;
    let ours = config
        .initial_cluster
        .iter()
        .find(|(name, urls)| name == &config.name && same_urls(urls, &config.peer_urls));
    if ours.is_none() {
        return Err(ConsensusError::Internal(format!(
            "member {} with peer URLs {:?} is not in the initial cluster",
            config.name, config.peer_urls
        )));
    }
    let mut members = BTreeMap::new();
    for (name, peer_urls) in &config.initial_cluster {
        let id = ids::member_id(peer_urls, token);
        let node = MemberNode {
            name: name.clone(),
            peer_urls: peer_urls.clone(),
            client_urls: Vec::new(),
        };
        if members.insert(id, node).is_some() {
            return Err(ConsensusError::Internal(format!(
                "initial cluster lists peer URLs {peer_urls:?} twice"
            )));
        }
    }
    let member_ids: Vec<u64> = members.keys().copied().collect();
    Ok(StartPlan {
        identity: MemberIdentity {
            member_id: ids::member_id(&config.peer_urls, token),
            cluster_id: ids::cluster_id(&member_ids, token),
        },
        initialize: Some(members),
        promote_self: false,
    })
}

/// Asks the members listed in the initial cluster for the membership and finds the record whose
/// peer URLs are ours (added before by MemberAdd).
async fn discover(
    config: &NodeConfig,
    channels: &PeerChannels,
) -> Result<MemberIdentity, ConsensusError> {
    let deadline = Instant::now() + config.request_timeout * 6;
    let mut answered_without_us = false;
    loop {
        for (_, peer_urls) in &config.initial_cluster {
            if same_urls(peer_urls, &config.peer_urls) {
                continue;
            }
            let Ok(mut client) = channels.client(peer_urls) else {
                continue;
            };
            let reply = tokio::time::timeout(
                config.request_timeout,
                client.get_members(pb::GetMembersRequest {}),
            )
            .await;
            let Ok(Ok(reply)) = reply else {
                continue;
            };
            let reply = reply.into_inner();
            let Ok(nodes) = from_json::<Vec<(u64, MemberNode, bool)>>(&reply.members_json) else {
                continue;
            };
            if let Some((id, _, _)) = nodes
                .iter()
                .find(|(_, node, _)| same_urls(&node.peer_urls, &config.peer_urls))
            {
                tracing::info!(member_id = %format!("{id:x}"), "joined existing cluster");
                return Ok(MemberIdentity {
                    member_id: *id,
                    cluster_id: reply.cluster_id,
                });
            }
            // This member may not have received the membership with our MemberAdd yet:
            // ask again until the deadline.
            answered_without_us = true;
        }
        if Instant::now() >= deadline {
            return Err(if answered_without_us {
                ConsensusError::Etcd(etcd_proto::errors::MEMBER_NOT_FOUND)
            } else {
                ConsensusError::Internal(
                    "no member of the initial cluster answered with the membership".to_string(),
                )
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
