//! etcd v3 wire types.
//!
//! Owns: the prost/tonic code generated from `proto/` (packages `etcdserverpb`, `mvccpb`, `authpb`,
//! `v3lockpb`, `v3electionpb`, and pgwarden's own `pgwarden.raftcmd` log payload), their proto3 JSON
//! mapping (pbjson, proto field names, as etcd's gateway emits them), and the catalogue of etcd's
//! errors with their exact gRPC codes and messages.
//!
//! Must not know: anything of pgwarden's behaviour — no storage, no Raft, no HA.

#![allow(clippy::all, missing_docs)]

pub mod errors;

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// pgwarden's own messages (package `pgwarden.*`), nested as the package path requires.
pub mod pgwarden {
    /// The replicated log's payload: `RaftBatch` in, `RaftBatchResponse` out.
    pub mod raftcmd {
        tonic::include_proto!("pgwarden.raftcmd");
    }
}

pub use pgwarden::raftcmd;
