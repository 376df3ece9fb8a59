//! The openraft type configuration: what a log entry carries, what applying it answers, and what
//! a member record in the Raft membership holds.

use std::fmt;

use etcd_proto::raftcmd::{RaftBatch, RaftBatchResponse};
use prost::Message;
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// pgwarden's Raft types: member IDs are etcd member IDs (u64), entries carry a `RaftBatch`.
    pub TypeConfig:
        D = RaftRequest,
        R = RaftReply,
        NodeId = u64,
        Node = MemberNode,
);

/// One log entry's payload: the commands proposed together (group commit).
/// Serialized as the prost bytes of the `RaftBatch` (openraft's serde needs only bytes).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RaftRequest(pub RaftBatch);

/// What applying one [`RaftRequest`] answered: one response per command, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RaftReply(pub RaftBatchResponse);

/// A member as recorded in the Raft membership (etcd's Member without the ID, which is the key).
/// A member added with MemberAdd but not yet started has an empty name and no client URLs;
/// it fills them in when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemberNode {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// This member's identity, decided once when its data dir is created and kept for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberIdentity {
    pub member_id: u64,
    pub cluster_id: u64,
}

/// One applied command's watch events, published in log order by every member.
#[derive(Debug, Clone)]
pub struct AppliedEvents {
    /// The store revision after the command was applied.
    pub revision: i64,
    /// Events in (revision, sub-revision) order; PUT kvs are full, DELETE kvs carry key + mod_revision.
    /// `prev_kv` is filled when a previous version existed (watchers that did not ask drop it).
    pub events: Vec<etcd_proto::mvccpb::Event>,
}

impl fmt::Display for RaftRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RaftBatch({} commands)", self.0.commands.len())
    }
}

impl fmt::Display for MemberNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{:?}", self.name, self.peer_urls)
    }
}

impl Serialize for RaftRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0.encode_to_vec())
    }
}

impl<'de> Deserialize<'de> for RaftRequest {
    fn deserialize<De: serde::Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        let bytes = serde_bytes_buf(deserializer)?;
        RaftBatch::decode(bytes.as_slice())
            .map(RaftRequest)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for RaftReply {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0.encode_to_vec())
    }
}

impl<'de> Deserialize<'de> for RaftReply {
    fn deserialize<De: serde::Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        let bytes = serde_bytes_buf(deserializer)?;
        RaftBatchResponse::decode(bytes.as_slice())
            .map(RaftReply)
            .map_err(serde::de::Error::custom)
    }
}

/// Reads a byte string from any serde format: a byte buffer, or a sequence of u8 (serde_json).
fn serde_bytes_buf<'de, De: serde::Deserializer<'de>>(
    deserializer: De,
) -> Result<Vec<u8>, De::Error> {
    struct BytesVisitor;
    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("protobuf bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(byte) = seq.next_element::<u8>()? {
                out.push(byte);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_byte_buf(BytesVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_proto::etcdserverpb::PutRequest;
    use etcd_proto::raftcmd::{RaftCommand, raft_command::Command};

    #[test]
    fn request_round_trips_through_serde_as_protobuf_bytes() {
        let request = RaftRequest(RaftBatch {
            commands: vec![RaftCommand {
                command: Some(Command::Put(PutRequest {
                    key: "k".into(),
                    value: "v".into(),
                    ..Default::default()
                })),
            }],
        });
        let json = serde_json::to_string(&request).unwrap();
        let back: RaftRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, request);
    }
}
