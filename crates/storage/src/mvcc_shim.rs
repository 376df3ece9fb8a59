//! TEMPORARY stand-in for `mvcc::Store` while the mvcc crate is being written in parallel.
//! Same names as the agreed mvcc API (`new`, `apply`, `encode_snapshot`, `decode_snapshot`,
//! `revision`); it only understands Put (enough for the Raft tests). Removed once mvcc lands.

use std::collections::BTreeMap;

use etcd_proto::etcdserverpb::{PutResponse, ResponseHeader};
use etcd_proto::mvccpb::{Event, KeyValue, event::EventType};
use etcd_proto::raftcmd::{
    RaftCommand, RaftResponse, raft_command::Command, raft_response::Response,
};

type SnapshotForm = (i64, Vec<(Vec<u8>, Vec<u8>)>);

/// What applying one command produced.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub response: RaftResponse,
    pub events: Vec<Event>,
    pub revision: i64,
}

/// A snapshot could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("bad snapshot: {0}")]
pub struct SnapshotError(String);

/// The keyspace (puts only).
#[derive(Debug, Clone, Default)]
pub struct Store {
    revision: i64,
    keys: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Value of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.keys.get(key).cloned()
    }

    pub fn apply(&mut self, command: &RaftCommand) -> Applied {
        match &command.command {
            Some(Command::Put(put)) => {
                self.revision += 1;
                self.keys.insert(put.key.to_vec(), put.value.to_vec());
                let kv = KeyValue {
                    key: put.key.clone(),
                    value: put.value.clone(),
                    mod_revision: self.revision,
                    ..Default::default()
                };
                Applied {
                    response: RaftResponse {
                        response: Some(Response::Put(PutResponse {
                            header: Some(ResponseHeader {
                                revision: self.revision,
                                ..Default::default()
                            }),
                            prev_kv: None,
                        })),
                    },
                    events: vec![Event {
                        r#type: EventType::Put as i32,
                        kv: Some(kv),
                        prev_kv: None,
                    }],
                    revision: self.revision,
                }
            }
            _ => Applied {
                revision: self.revision,
                ..Default::default()
            },
        }
    }

    pub fn encode_snapshot(&self) -> Vec<u8> {
        let pairs: Vec<(&Vec<u8>, &Vec<u8>)> = self.keys.iter().collect();
        serde_json::to_vec(&(self.revision, pairs)).unwrap_or_default()
    }

    pub fn decode_snapshot(bytes: &[u8]) -> Result<Store, SnapshotError> {
        let (revision, pairs): SnapshotForm =
            serde_json::from_slice(bytes).map_err(|e| SnapshotError(e.to_string()))?;
        Ok(Store {
            revision,
            keys: pairs.into_iter().collect(),
        })
    }
}
