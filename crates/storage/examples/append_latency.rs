//! Measures the log store's append latency (one redb commit = one fsync per call) on this disk,
//! for single entries and for batches of 64.
//!
//! Run: `cargo run --release -p storage --example append_latency`

use std::time::Instant;

use etcd_proto::etcdserverpb::PutRequest;
use etcd_proto::raftcmd::{RaftBatch, RaftCommand, raft_command::Command};
use openraft::EntryPayload;
use openraft::storage::{IOFlushed, RaftLogStorage};
use storage::{Entry, RaftRequest, Storage, log_id};

fn entry(index: u64) -> Entry {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(RaftRequest(RaftBatch {
            commands: vec![RaftCommand {
                command: Some(Command::Put(PutRequest {
                    key: format!("key-{index}").into(),
                    value: vec![b'v'; 256].into(),
                    ..Default::default()
                })),
            }],
        })),
    }
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[((samples.len() - 1) as f64 * p) as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut storage = Storage::open(dir.path(), 16)?;
    let mut index = 1;
    for batch in [1u64, 64] {
        let mut samples = Vec::new();
        for _ in 0..500 {
            let entries: Vec<Entry> = (index..index + batch).map(entry).collect();
            index += batch;
            let started = Instant::now();
            storage.log_store.append(entries, IOFlushed::noop()).await?;
            samples.push(started.elapsed().as_secs_f64() * 1e6);
        }
        println!(
            "batch {batch:>3}: append p50 {:.0} µs, p99 {:.0} µs",
            percentile(&mut samples, 0.5),
            percentile(&mut samples, 0.99)
        );
    }
    Ok(())
}
