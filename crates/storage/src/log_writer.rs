//! The log store's writer thread: every write of the Raft log and vote, in the order submitted,
//! made durable by as few `fdatasync`s as the queue allows.
//!
//! `append` hands its entries here and returns at once (they are already readable from the log
//! store's memory); the writer drains whatever is queued — appends, votes, truncations, purges,
//! barriers —, appends it all to the write-ahead file ([`crate::wal`]) with one `fdatasync`, and
//! only then reports each operation done, in submission order. So a leader replicates an entry
//! while its own fsync runs, and concurrent appends share one fsync, while openraft is told an
//! entry is written only once it is durable.
//!
//! The committed id costs no wake-up of its own: the writer adds the newest one it has seen (when
//! it changed) to the next group it writes, and when the queue stays empty for [`IDLE_FLUSH`] or
//! closes it writes it alone, without an `fdatasync` — that survives the process being killed
//! (the page cache keeps it) and becomes durable against a power cut with the next synced
//! group. So a member restarted after a quiet moment or a clean stop re-applies everything it
//! had applied; one killed in the middle of writes, or a power cut, only makes a restart
//! re-apply fewer entries before the leader repeats the commit index, which is safe.
//!
//! The writer reads the log store's memory only after a group is durable (to record it, and to
//! see the newest committed id for the next group), never on waking: the store queues each
//! write while it holds that memory's lock, so a writer that took the lock on waking would wait
//! for its own waker, two more thread switches before every `fdatasync`.

use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openraft::storage::IOFlushed;
use tokio::sync::oneshot;

use crate::codec::LogId;
use crate::error::StorageError;
use crate::log_store::{LogMemory, LogWriteStats};
use crate::types::TypeConfig;
use crate::wal::{Flush, Record, Wal};

/// Most queued operations written by one `fdatasync`.
const MAX_OPS_PER_COMMIT: usize = 1024;

/// How long the queue stays empty before the writer stores a changed committed id alone.
const IDLE_FLUSH: Duration = Duration::from_millis(20);

/// One write, in the order openraft asked for it.
pub(crate) enum WriteOp {
    /// Entries as `(index, encoding)`, contiguous and after every earlier append.
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        done: IOFlushed<TypeConfig>,
    },
    Vote {
        bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Removes every entry from `from` on.
    Truncate {
        from: u64,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Removes every entry up to `upto` and records the purge point.
    Purge {
        upto: u64,
        purged_bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Answers once everything submitted before it is durable.
    Barrier {
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// The handle every log store clone shares: the queue and the thread.
///
/// Dropping the last handle closes the queue and waits for the thread to write what was still
/// queued and exit, so the data file is closed when the storage is dropped (a reopen in the same
/// process then succeeds).
pub(crate) struct LogWriter {
    /// Sends operations to the thread; `None` only while dropping.
    queue: Option<mpsc::Sender<WriteOp>>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the writer thread over `wal`, updating `memory` and `stats` as writes become
    /// durable; `opened_committed` is the committed id the log holds.
    pub(crate) fn start(
        mut wal: Wal,
        opened_committed: Option<LogId>,
        memory: Arc<Mutex<LogMemory>>,
        stats: Arc<LogWriteStats>,
    ) -> Result<LogWriter, StorageError> {
        let (queue, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".to_string())
            .spawn(move || run(&mut wal, opened_committed, &memory, &stats, &receiver))
            .map_err(|e| StorageError::Redb(format!("start the log writer thread: {e}")))?;
        Ok(LogWriter {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues `op`. Fails only when the thread is gone (it stops only when dropped or panicking).
    pub(crate) fn submit(&self, op: WriteOp) -> Result<(), io::Error> {
        let sent = match &self.queue {
            Some(queue) => queue.send(op).map_err(|rejected| rejected.0),
            None => Err(op),
        };
        match sent {
            Ok(()) => Ok(()),
            Err(op) => {
                let error = "the Raft log writer stopped";
                op.finish(Err(error.to_string()));
                Err(io::Error::other(error))
            }
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the Raft log writer thread panicked");
        }
    }
}

impl WriteOp {
    /// Reports the outcome to whoever waits for this write.
    fn finish(self, result: Result<(), String>) {
        match self {
            WriteOp::Append { done, .. } => done.io_completed(result.map_err(io::Error::other)),
            WriteOp::Vote { done, .. }
            | WriteOp::Truncate { done, .. }
            | WriteOp::Purge { done, .. }
            | WriteOp::Barrier { done } => {
                // The waiter may have given up (its request was cancelled): nothing to tell.
                let _ = done.send(result);
            }
        }
    }
}

/// The thread's loop: one durable write per drained group of operations, until the queue
/// closes.
fn run(
    wal: &mut Wal,
    opened_committed: Option<LogId>,
    memory: &Mutex<LogMemory>,
    stats: &LogWriteStats,
    receiver: &mpsc::Receiver<WriteOp>,
) {
    // Operations taken from the queue so far: the queue is FIFO and every submission counts one
    // (see `LogMemory::submitted`), so after a transaction this is the sequence number of the
    // last durable submission.
    let mut processed: u64 = 0;
    let mut written_committed = opened_committed;
    // The newest committed id read from memory (after the last durable group, or when idle).
    let mut seen_committed = opened_committed;
    loop {
        let first = match receiver.recv_timeout(IDLE_FLUSH) {
            Ok(op) => op,
            Err(timeout_or_closed) => {
                seen_committed = committed_now(memory);
                let committed = encode_changed(seen_committed, &written_committed);
                if let Some((value, bytes)) = committed {
                    match wal.write(&[Record::Committed(&bytes)], Flush::PageCache) {
                        Ok(_) => written_committed = value,
                        Err(error) => tracing::error!(%error, "writing the committed id failed"),
                    }
                }
                if timeout_or_closed == mpsc::RecvTimeoutError::Disconnected {
                    return;
                }
                continue;
            }
        };
        let mut ops = vec![first];
        while ops.len() < MAX_OPS_PER_COMMIT {
            match receiver.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        processed += ops.len() as u64;
        let committed = encode_changed(seen_committed, &written_committed);
        let result = write(
            wal,
            &ops,
            committed.as_ref().map(|(_, bytes)| bytes.as_slice()),
            stats,
        );
        let result = match result {
            Ok(entries) => {
                if let Some((value, _)) = committed {
                    written_committed = value;
                }
                seen_committed = after_durable(memory, stats, entries, processed);
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "writing the Raft log failed");
                Err(error.to_string())
            }
        };
        for op in ops {
            op.finish(result.clone());
        }
    }
}

/// The committed id openraft last reported.
fn committed_now(memory: &Mutex<LogMemory>) -> Option<LogId> {
    memory
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .committed
}

/// `now` and its encoding, when it differs from `written`.
fn encode_changed(now: Option<LogId>, written: &Option<LogId>) -> Option<(Option<LogId>, Vec<u8>)> {
    if now == *written {
        return None;
    }
    match serde_json::to_vec(&now) {
        Ok(bytes) => Some((now, bytes)),
        Err(error) => {
            tracing::error!(%error, "encoding the committed id failed");
            None
        }
    }
}

/// Appends `ops` (and `committed`, when it changed) to the log and makes them durable with
/// one `fdatasync`; returns how many entries it appended.
fn write(
    wal: &mut Wal,
    ops: &[WriteOp],
    committed: Option<&[u8]>,
    stats: &LogWriteStats,
) -> Result<u64, StorageError> {
    let started = Instant::now();
    let mut records = Vec::new();
    let mut entries_written = 0;
    for op in ops {
        match op {
            WriteOp::Append { entries, .. } => {
                records.extend(entries.iter().map(|(index, bytes)| Record::Entry {
                    index: *index,
                    bytes,
                }));
                entries_written += entries.len() as u64;
            }
            WriteOp::Vote { bytes, .. } => records.push(Record::Vote(bytes)),
            WriteOp::Truncate { from, .. } => records.push(Record::Truncate { from: *from }),
            WriteOp::Purge {
                upto, purged_bytes, ..
            } => records.push(Record::Purged {
                upto: *upto,
                bytes: purged_bytes,
            }),
            WriteOp::Barrier { .. } => {}
        }
    }
    if let Some(committed) = committed {
        records.push(Record::Committed(committed));
    }
    if records.is_empty() {
        // Only barriers: everything before them is durable already.
        return Ok(0);
    }
    let synced = wal.write(&records, Flush::Sync)?;
    if entries_written > 0
        && let Some(synced) = synced
        && let Some(histograms) = stats.histograms.get()
    {
        histograms.commit_seconds.record(synced);
        histograms.write_seconds.record(started.elapsed());
    }
    Ok(entries_written)
}

/// Records in memory what just became durable: the submissions through `durable_seq`,
/// counters. Returns the committed id openraft reported last.
fn after_durable(
    memory: &Mutex<LogMemory>,
    stats: &LogWriteStats,
    entries: u64,
    durable_seq: u64,
) -> Option<LogId> {
    if entries > 0 {
        stats
            .append_commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats
            .entries
            .fetch_add(entries, std::sync::atomic::Ordering::Relaxed);
    }
    let mut memory = memory
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    memory.durable_seq = durable_seq;
    memory.committed
}
