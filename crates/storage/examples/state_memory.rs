//! Resident memory of a member's state machine holding N keys: after applying them, and after a
//! snapshot moved their values to the snapshot file. Same allocator as `pgwarden`.
//!
//! Run: `cargo run --release -p storage --example state_memory -- 1000000`

use etcd_proto::etcdserverpb::PutRequest;
use etcd_proto::raftcmd::{RaftBatch, RaftCommand, raft_command::Command};
use openraft::EntryPayload;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use storage::{Entry, RaftRequest, Storage, log_id};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Puts per log entry, as the proposer's group commit batches them under load.
const PUTS_PER_ENTRY: usize = 16;

fn resident_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("RssAnon:"), field("RssFile:"))
}

/// As `pgwarden` does after a snapshot.
#[allow(unsafe_code, reason = "a call into mimalloc")]
fn release_freed_memory() {
    // SAFETY: mi_collect takes no pointers and may be called from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    storage::on_memory_freed(release_freed_memory);
    let keys: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let mut storage = Storage::open(dir.path(), storage::DEFAULT_EVENT_CAPACITY)?;
    let (anon, file) = resident_mib();
    println!("empty: anonymous {anon} MiB, file {file} MiB");
    let value = vec![b'v'; 256];
    let mut index = 1;
    for chunk in (0..keys).collect::<Vec<_>>().chunks(PUTS_PER_ENTRY * 1024) {
        let entries: Vec<_> = chunk
            .chunks(PUTS_PER_ENTRY)
            .map(|puts| {
                index += 1;
                let commands = puts
                    .iter()
                    .map(|n| RaftCommand {
                        command: Some(Command::Put(PutRequest {
                            key: format!("fill/{n:010}").into(),
                            value: value.clone().into(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                let entry = Entry {
                    log_id: log_id(1, 1, index),
                    payload: EntryPayload::Normal(RaftRequest(RaftBatch { commands })),
                };
                Ok((entry, None))
            })
            .collect();
        storage
            .state_machine
            .apply(futures::stream::iter(entries))
            .await?;
    }
    let (anon, file) = resident_mib();
    println!("{keys} keys applied: anonymous {anon} MiB, file {file} MiB");
    let started = std::time::Instant::now();
    let encoded = storage.shared.read().store.encode_snapshot().len();
    println!(
        "encoded {} MiB in {:.0} ms",
        encoded >> 20,
        started.elapsed().as_secs_f64() * 1000.0
    );
    let started = std::time::Instant::now();
    storage.state_machine.build_snapshot().await?;
    println!(
        "snapshot built and values moved to its file in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let (anon, file) = resident_mib();
    println!("after the snapshot: anonymous {anon} MiB, file {file} MiB");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (anon, file) = resident_mib();
    println!("2 s later: anonymous {anon} MiB, file {file} MiB");
    Ok(())
}
