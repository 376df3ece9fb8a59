//! Binary encoding of Raft log entries as stored in [`crate::schema::LOG`].
//!
//! Layout (all integers big-endian):
//! `[term u64][leader node id u64][index u64][kind u8][payload]`, where kind is
//! 0 = blank (no payload), 1 = normal (payload = prost bytes of `RaftBatch`),
//! 2 = membership (payload = serde_json of openraft's `Membership`; rare, so readability wins).

use etcd_proto::raftcmd::RaftBatch;
use openraft::EntryPayload;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::type_config::alias::{EntryOf, LogIdOf};
use prost::Message;

use crate::types::{RaftRequest, TypeConfig};

/// A log entry of pgwarden's Raft group.
pub type Entry = EntryOf<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = LogIdOf<TypeConfig>;

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;
const HEADER_LEN: usize = 8 * 3 + 1;

/// Entry bytes that cannot be decoded (a corrupt or foreign file).
#[derive(Debug, thiserror::Error)]
#[error("corrupt log entry: {0}")]
pub struct CodecError(pub String);

/// Builds a log id from its parts.
pub fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
    LogId::new(LeaderId { term, node_id }, index)
}

/// Encodes one entry.
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(&entry.log_id.leader_id.term.to_be_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_be_bytes());
    out.extend_from_slice(&entry.log_id.index.to_be_bytes());
    match &entry.payload {
        EntryPayload::Blank => out.push(KIND_BLANK),
        EntryPayload::Normal(request) => {
            out.push(KIND_NORMAL);
            request
                .0
                .encode(&mut out)
                .map_err(|e| CodecError(e.to_string()))?;
        }
        EntryPayload::Membership(membership) => {
            out.push(KIND_MEMBERSHIP);
            serde_json::to_writer(&mut out, &membership).map_err(|e| CodecError(e.to_string()))?;
        }
    }
    Ok(out)
}

/// Decodes one entry written by [`encode_entry`].
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    if bytes.len() < HEADER_LEN {
        return Err(CodecError(format!(
            "{} bytes is shorter than the header",
            bytes.len()
        )));
    }
    let word = |at: usize| {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(&bytes[at..at + 8]);
        u64::from_be_bytes(buf)
    };
    let log_id = log_id(word(0), word(8), word(16));
    let body = &bytes[HEADER_LEN..];
    let payload = match bytes[HEADER_LEN - 1] {
        KIND_BLANK => EntryPayload::Blank,
        KIND_NORMAL => EntryPayload::Normal(RaftRequest(
            RaftBatch::decode(body).map_err(|e| CodecError(e.to_string()))?,
        )),
        KIND_MEMBERSHIP => EntryPayload::Membership(
            serde_json::from_slice(body).map_err(|e| CodecError(e.to_string()))?,
        ),
        other => return Err(CodecError(format!("unknown entry kind {other}"))),
    };
    Ok(Entry { log_id, payload })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use etcd_proto::etcdserverpb::PutRequest;
    use etcd_proto::raftcmd::{RaftCommand, raft_command::Command};
    use openraft::Membership;

    use super::*;
    use crate::types::MemberNode;

    fn round_trip(entry: Entry) {
        let bytes = encode_entry(&entry).unwrap();
        assert_eq!(decode_entry(&bytes).unwrap(), entry);
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(Entry {
            log_id: log_id(3, 7, 42),
            payload: EntryPayload::Blank,
        });
        round_trip(Entry {
            log_id: log_id(3, 7, 43),
            payload: EntryPayload::Normal(RaftRequest(RaftBatch {
                commands: vec![RaftCommand {
                    command: Some(Command::Put(PutRequest {
                        key: "a".into(),
                        value: vec![0u8; 300].into(),
                        ..Default::default()
                    })),
                }],
            })),
        });
        let nodes = BTreeMap::from([(
            9u64,
            MemberNode {
                name: "n9".into(),
                peer_urls: vec!["http://127.0.0.1:1".into()],
                client_urls: vec![],
            },
        )]);
        round_trip(Entry {
            log_id: log_id(4, 9, 44),
            payload: EntryPayload::Membership(Membership::new(vec![[9u64].into()], nodes).unwrap()),
        });
    }

    #[test]
    fn normal_entries_are_compact_binary() {
        let entry = Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Normal(RaftRequest(RaftBatch {
                commands: vec![RaftCommand {
                    command: Some(Command::Put(PutRequest {
                        key: "k".into(),
                        value: "v".into(),
                        ..Default::default()
                    })),
                }],
            })),
        };
        let bytes = encode_entry(&entry).unwrap();
        assert!(bytes.len() < HEADER_LEN + 16, "{} bytes", bytes.len());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(decode_entry(&[1, 2, 3]).is_err());
        let mut bytes = encode_entry(&Entry {
            log_id: log_id(1, 1, 1),
            payload: EntryPayload::Blank,
        })
        .unwrap();
        bytes[HEADER_LEN - 1] = 99;
        assert!(decode_entry(&bytes).is_err());
    }
}
