//! Measures the mvcc store at scale: apply throughput, memory per key, read and txn latency,
//! compaction, watch replay and snapshot cost, next to a plain `BTreeMap<Vec<u8>, Vec<u8>>` doing
//! the same inserts and gets in the same run (the floor any ordered in-memory keyspace pays).
//!
//! Run: `cargo run --release -p mvcc --example bench [keys]` (default 1,000,000 keys).
//! Memory is the process's resident set growth (Linux /proc/self/statm), so run it alone.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use etcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_proto::etcdserverpb::{
    CompactionRequest, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};
use etcd_proto::raftcmd::{RaftCommand, raft_command::Command};
use mvcc::Store;

const VALUE_SIZE: usize = 100;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn key(index: usize) -> Vec<u8> {
    format!("/registry/pods/ns-{:03}/pod-{:08}", index % 100, index).into_bytes()
}

fn rate(count: usize, elapsed: Duration) -> String {
    format!(
        "{:>10.0}/s  ({:>7.0} ns each)",
        count as f64 / elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / count as f64
    )
}

fn put_command(index: usize, value: &[u8]) -> RaftCommand {
    RaftCommand {
        command: Some(Command::Put(PutRequest {
            key: Bytes::from(key(index)),
            value: Bytes::copy_from_slice(value),
            ..Default::default()
        })),
    }
}

/// Child-process mode: builds one structure in a fresh process and prints its resident growth per key,
/// so freed memory of other phases cannot hide or inflate it.
fn measure_memory(what: &str, keys: usize) {
    let value = vec![b'v'; VALUE_SIZE];
    let before = resident_bytes();
    if what == "store" {
        let mut store = Store::new();
        for index in 0..keys {
            black_box(store.apply(&put_command(index, &value)));
        }
        println!("{}", resident_bytes().saturating_sub(before) / keys as u64);
        black_box(store);
    } else {
        let mut baseline: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for index in 0..keys {
            baseline.insert(key(index), value.clone());
        }
        println!("{}", resident_bytes().saturating_sub(before) / keys as u64);
        black_box(baseline);
    }
}

fn memory_in_child(what: &str, keys: usize) -> String {
    std::env::current_exe()
        .and_then(|exe| {
            std::process::Command::new(exe)
                .args(["memory", what, &keys.to_string()])
                .output()
        })
        .map(|output| format!("{} bytes", String::from_utf8_lossy(&output.stdout).trim()))
        .unwrap_or_else(|error| format!("unmeasured: {error}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("memory") {
        let keys = args
            .get(3)
            .and_then(|arg| arg.parse().ok())
            .unwrap_or(1_000_000);
        measure_memory(args.get(2).map(String::as_str).unwrap_or("store"), keys);
        return;
    }
    let keys: usize = args
        .get(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(1_000_000);
    let value = vec![b'v'; VALUE_SIZE];
    println!("mvcc bench: {keys} keys of ~37 bytes, {VALUE_SIZE}-byte values");

    // Baseline: a plain ordered map, same keys and values.
    let started = Instant::now();
    let mut baseline: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for index in 0..keys {
        baseline.insert(key(index), value.clone());
    }
    let baseline_insert = started.elapsed();
    let started = Instant::now();
    for index in (0..keys).step_by(7) {
        black_box(baseline.get(&key(index)));
    }
    let baseline_get = started.elapsed();
    drop(baseline);

    // The store: commands built ahead so only apply is timed.
    let commands: Vec<RaftCommand> = (0..keys).map(|index| put_command(index, &value)).collect();
    let mut store = Store::new();
    let started = Instant::now();
    for command in &commands {
        black_box(store.apply(command));
    }
    let store_insert = started.elapsed();
    drop(commands);

    println!(
        "\n{:<44} {:>34} {:>34}",
        "operation", "mvcc::Store", "BTreeMap<Vec,Vec> baseline"
    );
    println!(
        "{:<44} {:>34} {:>34}",
        "insert new key (put / insert)",
        rate(keys, store_insert),
        rate(keys, baseline_insert)
    );
    let started = Instant::now();
    let mut gets = 0;
    for index in (0..keys).step_by(7) {
        let request = RangeRequest {
            key: Bytes::from(key(index)),
            ..Default::default()
        };
        black_box(store.range(&request).ok());
        gets += 1;
    }
    println!(
        "{:<44} {:>34} {:>34}",
        "get one key (range / get)",
        rate(gets, started.elapsed()),
        rate(gets, baseline_get)
    );
    println!(
        "{:<44} {:>34} {:>34}",
        "resident memory per key (fresh process)",
        memory_in_child("store", keys),
        memory_in_child("baseline", keys)
    );

    // Overwrites: every key a second version (history grows until compaction).
    let overwrites: Vec<RaftCommand> = (0..keys)
        .step_by(2)
        .map(|index| put_command(index, &value))
        .collect();
    let started = Instant::now();
    for command in &overwrites {
        black_box(store.apply(command));
    }
    println!(
        "{:<44} {:>34}",
        "overwrite existing key (put)",
        rate(overwrites.len(), started.elapsed())
    );
    drop(overwrites);

    // Compare-and-swap txns on the mod revision, as Patroni and Kubernetes do.
    let rounds = 100_000.min(keys);
    let started = Instant::now();
    for index in 0..rounds {
        let key = Bytes::from(key(index * (keys / rounds)));
        let current = store
            .range(&RangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .ok();
        let mod_revision = current
            .and_then(|response| response.kvs.first().map(|kv| kv.mod_revision))
            .unwrap_or(0);
        let txn = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                key: key.clone(),
                range_end: Bytes::new(),
                target_union: Some(TargetUnion::ModRevision(mod_revision)),
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key,
                    value: Bytes::from_static(b"cas"),
                    ..Default::default()
                })),
            }],
            failure: vec![],
        };
        black_box(store.apply(&RaftCommand {
            command: Some(Command::Txn(txn)),
        }));
    }
    println!(
        "{:<44} {:>34}",
        "get + txn(mod == r → put)",
        rate(rounds, started.elapsed())
    );

    // A Kubernetes-style paginated list page: prefix, limit 500 (count walks the whole prefix).
    let prefix = b"/registry/pods/ns-042/".to_vec();
    let range_end = mvcc::prefix_range_end(&prefix);
    let pages = 200;
    let started = Instant::now();
    for _ in 0..pages {
        let request = RangeRequest {
            key: Bytes::from(prefix.clone()),
            range_end: Bytes::from(range_end.clone()),
            limit: 500,
            ..Default::default()
        };
        black_box(store.range(&request).ok());
    }
    println!(
        "{:<44} {:>34}",
        format!("list page (limit 500 of {} keys)", keys / 100),
        rate(pages, started.elapsed())
    );
    let started = Instant::now();
    for _ in 0..pages {
        let request = RangeRequest {
            key: Bytes::from(prefix.clone()),
            range_end: Bytes::from(range_end.clone()),
            count_only: true,
            ..Default::default()
        };
        black_box(store.range(&request).ok());
    }
    println!(
        "{:<44} {:>34}",
        "count_only over the same prefix",
        rate(pages, started.elapsed())
    );

    // Watch replay of the last 1000 revisions over one namespace prefix and over everything.
    let from = store.revision() - 1000;
    let started = Instant::now();
    let replayed = store
        .events(&prefix, &range_end, from, store.revision())
        .map(|events| events.len())
        .unwrap_or(0);
    println!(
        "{:<44} {:>34}",
        format!("replay 1000 revisions, one prefix ({replayed} ev)"),
        format!("{:?}", started.elapsed())
    );
    let started = Instant::now();
    let replayed = store
        .events(b"\0", b"\0", from, store.revision())
        .map(|events| events.len())
        .unwrap_or(0);
    println!(
        "{:<44} {:>34}",
        format!("replay 1000 revisions, all keys ({replayed} ev)"),
        format!("{:?}", started.elapsed())
    );

    let started = Instant::now();
    let (hash, _, _) = store.hash_kv(0).unwrap_or_default();
    println!(
        "{:<44} {:>34}",
        format!("hash_kv (crc {hash:08x})"),
        format!("{:?}", started.elapsed())
    );

    let started = Instant::now();
    let snapshot = store.encode_snapshot();
    println!(
        "{:<44} {:>34}",
        format!("encode snapshot ({} MB)", snapshot.len() / 1_000_000),
        format!("{:?}", started.elapsed())
    );
    let started = Instant::now();
    let decoded = Store::decode_snapshot(&snapshot)
        .map(|decoded| decoded.key_count())
        .unwrap_or(0);
    println!(
        "{:<44} {:>34}",
        format!("decode snapshot ({decoded} keys)"),
        format!("{:?}", started.elapsed())
    );

    let started = Instant::now();
    let revision = store.revision();
    black_box(store.apply(&RaftCommand {
        command: Some(Command::Compaction(CompactionRequest {
            revision,
            physical: true,
        })),
    }));
    println!(
        "{:<44} {:>34}",
        "compact at the current revision",
        format!("{:?}", started.elapsed())
    );
}
