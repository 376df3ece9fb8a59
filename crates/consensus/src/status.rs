//! The member's status (leader, term, indexes, members) from openraft metrics, and the task that
//! publishes it when leader, term or membership change.

use std::sync::Arc;

use etcd_proto::etcdserverpb::Member;
use openraft::type_config::async_runtime::WatchReceiver;
use storage::MemberNode;

use crate::config::RaftStatus;
use crate::node::Core;

/// etcd Member messages from membership records, sorted by ID.
pub(crate) fn members_of(nodes: Vec<(u64, MemberNode, bool)>) -> Vec<Member> {
    let mut members: Vec<Member> = nodes
        .into_iter()
        .map(|(id, node, is_learner)| Member {
            id,
            name: node.name,
            peer_ur_ls: node.peer_urls,
            client_ur_ls: node.client_urls,
            is_learner,
        })
        .collect();
    members.sort_by_key(|m| m.id);
    members
}

/// The status right now. Copies what it needs out of the metrics borrow before returning.
pub(crate) fn current(core: &Core) -> RaftStatus {
    let (leader, term, commit_index, nodes) = {
        let metrics = core.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let nodes: Vec<(u64, MemberNode, bool)> = membership
            .nodes()
            .map(|(id, node)| (*id, node.clone(), !voters.contains(id)))
            .collect();
        (
            metrics.current_leader,
            metrics.current_term,
            metrics
                .local_committed
                .as_ref()
                .map(|id| id.index)
                .unwrap_or(0),
            nodes,
        )
    };
    let applied_index = *core.shared.watch_applied_index().borrow();
    let members = members_of(nodes);
    let is_learner = members
        .iter()
        .any(|m| m.id == core.member_id && m.is_learner);
    RaftStatus {
        member_id: core.member_id,
        cluster_id: core.cluster_id,
        leader,
        term,
        commit_index: commit_index.max(applied_index),
        applied_index,
        is_learner,
        members,
    }
}

/// Publishes the status whenever leader, term, learner flag or membership change.
pub(crate) async fn run(core: Arc<Core>) {
    let mut metrics = core.raft.metrics();
    loop {
        let fresh = current(&core);
        core.status.send_if_modified(|published| {
            let changed = published.leader != fresh.leader
                || published.term != fresh.term
                || published.is_learner != fresh.is_learner
                || published.members != fresh.members
                || published.member_id != fresh.member_id;
            if changed {
                *published = fresh;
            }
            changed
        });
        tokio::select! {
            _ = core.cancel.cancelled() => break,
            changed = metrics.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
}
