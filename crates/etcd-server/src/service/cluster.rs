//! Cluster membership and Maintenance (status, alarms, hashes, snapshot, leader transfer).

use etcd_proto::errors;
use etcd_proto::etcdserverpb::alarm_request::AlarmAction;
use etcd_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentResponse, DowngradeInfo, HashKvRequest,
    HashKvResponse, HashResponse, MemberAddRequest, MemberAddResponse, MemberListRequest,
    MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotResponse, StatusResponse,
};
use etcd_proto::raftcmd::raft_command::Command;
use etcd_proto::raftcmd::raft_response::Response;
use sha2::{Digest, Sha256};

use super::{Service, unexpected};
use crate::backend::{Backend, StatusExt};
use crate::config::SERVER_VERSION;
use crate::error::ServiceError;

/// Snapshot blob size, as etcd streams it.
const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;
/// Snapshot data is padded to a multiple of this so `etcdctl snapshot save` accepts the file
/// (it checks `size % 512 == 32`: data plus the SHA-256 trailer).
const SNAPSHOT_ALIGN_BYTES: usize = 512;

/// Splits snapshot bytes as etcd streams them: data zero-padded to a multiple of 512 in 32 KiB
/// blobs with `remaining_bytes` counting down, then one blob holding the SHA-256 of all data.
pub fn snapshot_chunks(mut data: Vec<u8>) -> Vec<SnapshotResponse> {
    let padded_len = data.len().div_ceil(SNAPSHOT_ALIGN_BYTES) * SNAPSHOT_ALIGN_BYTES;
    data.resize(padded_len, 0);
    let digest = Sha256::digest(&data);
    let total = data.len();
    let mut sent = 0usize;
    let mut chunks = Vec::with_capacity(total / SNAPSHOT_CHUNK_BYTES + 2);
    for blob in data.chunks(SNAPSHOT_CHUNK_BYTES) {
        sent += blob.len();
        chunks.push(SnapshotResponse {
            remaining_bytes: u64::try_from(total - sent).unwrap_or(0),
            blob: bytes::Bytes::copy_from_slice(blob),
            ..SnapshotResponse::default()
        });
    }
    chunks.push(SnapshotResponse {
        remaining_bytes: 0,
        blob: bytes::Bytes::copy_from_slice(digest.as_slice()),
        ..SnapshotResponse::default()
    });
    chunks
}

impl<B: Backend> Service<B> {
    pub async fn member_list(
        &self,
        request: MemberListRequest,
    ) -> Result<MemberListResponse, ServiceError> {
        if request.linearizable {
            self.node.linearizable_read().await?;
        }
        let members = self.node.status().members;
        Ok(MemberListResponse {
            header: Some(self.current_header()),
            members,
        })
    }

    pub async fn member_add(
        &self,
        request: MemberAddRequest,
    ) -> Result<MemberAddResponse, ServiceError> {
        self.check(mvcc::Access::Admin)?;
        if request.peer_ur_ls.is_empty() {
            return Err(errors::MEMBER_BAD_URLS.into());
        }
        let (member, members) = self
            .node
            .member_add(request.peer_ur_ls, request.is_learner)
            .await?;
        Ok(MemberAddResponse {
            header: Some(self.current_header()),
            member: Some(member),
            members,
        })
    }

    pub async fn member_remove(
        &self,
        request: MemberRemoveRequest,
    ) -> Result<MemberRemoveResponse, ServiceError> {
        self.check(mvcc::Access::Admin)?;
        let members = self.node.member_remove(request.id).await?;
        Ok(MemberRemoveResponse {
            header: Some(self.current_header()),
            members,
        })
    }

    pub async fn member_update(
        &self,
        request: MemberUpdateRequest,
    ) -> Result<MemberUpdateResponse, ServiceError> {
        self.check(mvcc::Access::Admin)?;
        if request.peer_ur_ls.is_empty() {
            return Err(errors::MEMBER_BAD_URLS.into());
        }
        let members = self
            .node
            .member_update(request.id, request.peer_ur_ls)
            .await?;
        Ok(MemberUpdateResponse {
            header: Some(self.current_header()),
            members,
        })
    }

    pub async fn member_promote(
        &self,
        request: MemberPromoteRequest,
    ) -> Result<MemberPromoteResponse, ServiceError> {
        self.check(mvcc::Access::Admin)?;
        let members = self.node.member_promote(request.id).await?;
        Ok(MemberPromoteResponse {
            header: Some(self.current_header()),
            members,
        })
    }

    /// This member's view, without a Raft round trip.
    pub async fn status(&self) -> Result<StatusResponse, ServiceError> {
        let status = self.node.status();
        let (revision, alarms) = self.node.read(|store| (store.revision(), store.alarms()));
        let mut problems = Vec::new();
        if status.leader.is_none() {
            problems.push(errors::NO_LEADER.message.to_owned());
        }
        for alarm in &alarms {
            let name = AlarmType::try_from(alarm.alarm)
                .map(|kind| kind.as_str_name())
                .unwrap_or("UNKNOWN");
            problems.push(format!("memberID:{} alarm:{}", alarm.member_id, name));
        }
        let db_size = i64::try_from(self.node.db_size()).unwrap_or(i64::MAX);
        Ok(StatusResponse {
            header: Some(self.header(revision)),
            version: SERVER_VERSION.to_owned(),
            db_size,
            leader: status.leader.unwrap_or(0),
            raft_index: status.commit_index,
            raft_term: status.term,
            raft_applied_index: status.applied_index,
            errors: problems,
            // The keyspace's logical size, the figure the quota is checked against.
            db_size_in_use: i64::try_from(self.space().logical_size(&self.node))
                .unwrap_or(i64::MAX),
            is_learner: status.is_learner,
            storage_version: String::new(),
            db_size_quota: i64::try_from(self.space().quota_bytes()).unwrap_or(i64::MAX),
            downgrade_info: Some(DowngradeInfo {
                enabled: false,
                target_version: String::new(),
            }),
        })
    }

    /// GET answers the local alarm list (filtered by member and type when given);
    /// ACTIVATE and DEACTIVATE go through the log.
    pub async fn alarm(&self, request: AlarmRequest) -> Result<AlarmResponse, ServiceError> {
        if request.action == AlarmAction::Get as i32 {
            let (revision, alarms) = self.node.read(|store| (store.revision(), store.alarms()));
            let alarms = alarms
                .into_iter()
                .filter(|alarm| request.member_id == 0 || alarm.member_id == request.member_id)
                .filter(|alarm| {
                    request.alarm == AlarmType::None as i32 || alarm.alarm == request.alarm
                })
                .collect();
            return Ok(AlarmResponse {
                header: Some(self.header(revision)),
                alarms,
            });
        }
        match self.propose(Command::Alarm(request)).await? {
            Response::Alarm(mut response) => {
                response.header = Some(self.member_header(response.header));
                Ok(response)
            }
            _ => Err(unexpected("alarm")),
        }
    }

    /// Defragment has nothing to reclaim in pgwarden's storage; it answers success.
    pub async fn defragment(&self) -> Result<DefragmentResponse, ServiceError> {
        self.check(mvcc::Access::Admin)?;
        Ok(DefragmentResponse {
            header: Some(self.current_header()),
        })
    }

    /// Hash of the whole keyspace at the current revision (equal across members at one revision).
    pub async fn hash(&self) -> Result<HashResponse, ServiceError> {
        self.check(mvcc::Access::Admin)?;
        let (revision, result) = self.node.read(|store| (store.revision(), store.hash_kv(0)));
        let (hash, _, _) = result?;
        Ok(HashResponse {
            header: Some(self.header(revision)),
            hash,
        })
    }

    pub async fn hash_kv(&self, request: HashKvRequest) -> Result<HashKvResponse, ServiceError> {
        self.check(mvcc::Access::Admin)?;
        let (revision, result) = self
            .node
            .read(|store| (store.revision(), store.hash_kv(request.revision)));
        let (hash, compact_revision, hash_revision) = result?;
        Ok(HashKvResponse {
            header: Some(self.header(revision)),
            hash,
            compact_revision,
            hash_revision,
        })
    }

    /// The member's state machine as snapshot stream messages (see [`snapshot_chunks`]).
    pub async fn snapshot(&self) -> Result<Vec<SnapshotResponse>, ServiceError> {
        self.check(mvcc::Access::Admin)?;
        let data = self.node.snapshot_bytes().await?;
        let header = self.current_header();
        let mut chunks = snapshot_chunks(data);
        for chunk in &mut chunks {
            chunk.header = Some(header);
            chunk.version = SERVER_VERSION.to_owned();
        }
        Ok(chunks)
    }

    /// Leader transfer; only the leader may be asked. etcd answers with no header at all.
    pub async fn move_leader(
        &self,
        request: MoveLeaderRequest,
    ) -> Result<MoveLeaderResponse, ServiceError> {
        self.check(mvcc::Access::Admin)?;
        if !self.node.status().is_leader() {
            return Err(errors::NOT_LEADER.into());
        }
        self.node.move_leader(request.target_id).await?;
        Ok(MoveLeaderResponse { header: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_padded_and_ends_with_its_digest() {
        let chunks = snapshot_chunks(vec![7u8; 70_000]);
        let total: usize = chunks.iter().map(|chunk| chunk.blob.len()).sum();
        assert_eq!(total % 512, 32);
        let data: Vec<u8> = chunks[..chunks.len() - 1]
            .iter()
            .flat_map(|chunk| chunk.blob.iter().copied())
            .collect();
        assert_eq!(data.len(), 70_144);
        let last = chunks
            .last()
            .map(|chunk| chunk.blob.to_vec())
            .unwrap_or_default();
        assert_eq!(last, Sha256::digest(&data).to_vec());
        assert_eq!(chunks[0].remaining_bytes, 70_144 - 32_768);
        assert_eq!(chunks[chunks.len() - 2].remaining_bytes, 0);
        assert!(chunks.iter().all(|chunk| chunk.blob.len() <= 32 * 1024));
    }
}
