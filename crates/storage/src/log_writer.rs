//! The log writer: one dedicated thread that performs every write of the Raft log store, in
//! submission order, coalescing whatever is queued into one redb transaction (one fsync).
//!
//! Why a thread of its own: openraft's core awaits `append` inside its event loop, so an
//! `append` that waited for the fsync would stall the whole core (replication responses, new
//! proposals, heartbeats) for the length of the commit. `append` therefore only queues the
//! encoded entries and returns; the writer commits them and only then calls openraft's
//! `IOFlushed` callback. That is the contract of `RaftLogStorage::append` (entries readable on
//! return, callback once durable) and it keeps acknowledgement safe:
//! - on the leader, openraft counts its own log toward the commit quorum only from the flush
//!   notification (`handle_local_io` → `update_local_progress`), never from submission;
//! - on a follower, the append-entries response is held until `Condition::IOFlushed`.
//!
//! So a write is still acknowledged only once it is durable on a majority, while the leader
//! replicates an entry to its followers during its own fsync, as etcd's leader does.
//!
//! Ordering: jobs run strictly in the order they were queued, and a coalesced group is applied
//! in that order inside one transaction, so a truncate or purge queued after an append sees it.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::storage::IOFlushed;
use tokio::sync::oneshot;

use crate::codec::LogId;
use crate::db::Db;
use crate::error::StorageError;
use crate::log_store::{LogMemory, LogWriteStats, lock};
use crate::schema;
use crate::types::TypeConfig;

/// Most jobs coalesced into one transaction.
const MAX_JOBS_PER_COMMIT: usize = 256;

/// One write for the writer thread.
pub(crate) enum Job {
    /// Encoded entries `(index, bytes)`, contiguous and ending at `last`.
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        last: LogId,
        callback: IOFlushed<TypeConfig>,
    },
    /// The vote, JSON encoded.
    Vote {
        bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), StorageError>>,
    },
    /// Delete every entry from index `from` on.
    Truncate {
        from: u64,
        done: oneshot::Sender<Result<(), StorageError>>,
    },
    /// Delete every entry up to `upto` (inclusive) and record the purge point (JSON).
    Purge {
        upto: u64,
        purged: Vec<u8>,
        done: oneshot::Sender<Result<(), StorageError>>,
    },
}

/// The writer thread's queue. Dropping the handle (with the last log store clone) closes the
/// queue and waits for the thread to finish what was queued, so the redb file is released when
/// the log store is gone (a member can be reopened in the same process).
pub(crate) struct Writer {
    sender: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread.
    pub(crate) fn start(
        db: Db,
        memory: Arc<Mutex<LogMemory>>,
        stats: Arc<LogWriteStats>,
    ) -> Result<Writer, StorageError> {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("pgwarden-log-writer".to_string())
            .spawn(move || run(&db, &memory, &stats, &receiver))
            .map_err(|e| StorageError::Redb(format!("start log writer thread: {e}")))?;
        Ok(Writer {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Queues `job`; fails only when the thread is gone.
    pub(crate) fn submit(&self, job: Job) -> Result<(), std::io::Error> {
        self.sender
            .as_ref()
            .and_then(|sender| sender.send(job).ok())
            .ok_or_else(|| std::io::Error::other("log writer thread stopped"))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            // Waits at most for the commit in progress; a panicked thread has nothing to keep.
            let _ = thread.join();
        }
    }
}

fn run(db: &Db, memory: &Mutex<LogMemory>, stats: &LogWriteStats, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_JOBS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let result = commit_group(db, memory, stats, &group);
        finish(group, result, memory, stats);
    }
}

/// What a committed group changed, for the in-memory view.
struct Written {
    /// The committed id stored by this transaction, if one was.
    committed: Option<Option<LogId>>,
    /// The newest durable log index after this transaction.
    durable_last: Option<u64>,
    /// `LogMemory::truncations` when the transaction began.
    truncations: u64,
    appended_entries: u64,
}

/// Writes every job of `group` in one transaction and commits it (one fsync).
fn commit_group(
    db: &Db,
    memory: &Mutex<LogMemory>,
    stats: &LogWriteStats,
    group: &[Job],
) -> Result<Written, StorageError> {
    let started = Instant::now();
    let (mut durable_last, committed, truncations) = {
        let memory = lock(memory);
        (
            memory.durable_last,
            memory.committed_unsaved.then_some(memory.committed),
            memory.truncations,
        )
    };
    let histograms = stats.histograms.get();
    let mut appended_entries = 0u64;
    let txn = db.database.begin_write()?;
    {
        let mut log = txn.open_table(schema::LOG)?;
        let mut meta = txn.open_table(schema::META)?;
        for job in group {
            match job {
                Job::Append { entries, last, .. } => {
                    for (index, bytes) in entries {
                        log.insert(schema::log_key(*index), bytes.as_slice())?;
                    }
                    appended_entries += entries.len() as u64;
                    durable_last = Some(last.index);
                }
                Job::Vote { bytes, .. } => {
                    meta.insert(schema::VOTE_KEY, bytes.as_slice())?;
                }
                Job::Truncate { from, .. } => {
                    log.retain_in(schema::log_key(*from).., |_, _| false)?;
                    durable_last = durable_last.map(|last| last.min(from.saturating_sub(1)));
                    if *from == 0 {
                        durable_last = None;
                    }
                }
                Job::Purge { upto, purged, .. } => {
                    meta.insert(schema::LAST_PURGED_KEY, purged.as_slice())?;
                    log.retain_in(..=schema::log_key(*upto), |_, _| false)?;
                    if durable_last.is_none_or(|last| last < *upto) {
                        durable_last = Some(*upto);
                    }
                }
            }
        }
        // The committed id rides along, but only once the log it points into is durable here:
        // a restart replays the log up to it.
        let committed = committed.filter(|committed| match committed {
            None => true,
            Some(id) => durable_last.is_some_and(|last| id.index <= last),
        });
        if let Some(committed) = &committed {
            let bytes = serde_json::to_vec(committed)
                .map_err(|e| StorageError::Corrupt(format!("encode committed id: {e}")))?;
            meta.insert(schema::COMMITTED_KEY, bytes.as_slice())?;
        }
        drop(log);
        drop(meta);
        let committing = Instant::now();
        txn.commit()?;
        if let Some(histograms) = histograms {
            histograms.commit_seconds.record(committing.elapsed());
            histograms.write_seconds.record(started.elapsed());
        }
        Ok(Written {
            committed,
            durable_last,
            truncations,
            appended_entries,
        })
    }
}

/// Updates the in-memory view and answers every job of the group with the commit's outcome.
fn finish(
    group: Vec<Job>,
    result: Result<Written, StorageError>,
    memory: &Mutex<LogMemory>,
    stats: &LogWriteStats,
) {
    if let Ok(written) = &result {
        if written.appended_entries > 0 {
            stats.append_commits.fetch_add(1, Ordering::Relaxed);
            stats
                .entries
                .fetch_add(written.appended_entries, Ordering::Relaxed);
        }
        let mut memory = lock(memory);
        memory.mark_committed_saved(written.committed);
        memory.durable_last = if memory.truncations == written.truncations {
            written.durable_last
        } else {
            // Truncated meanwhile: what this commit wrote past the truncation is being deleted.
            match (memory.durable_last, written.durable_last) {
                (Some(now), Some(written)) => Some(now.min(written)),
                _ => None,
            }
        };
        memory.trim_cache();
    }
    let failure = result.as_ref().err().map(|error| error.to_string());
    for job in group {
        let outcome = match &failure {
            None => Ok(()),
            Some(message) => Err(StorageError::Redb(message.clone())),
        };
        match job {
            Job::Append { callback, .. } => {
                callback.io_completed(outcome.map_err(StorageError::into_io));
            }
            Job::Vote { done, .. } | Job::Truncate { done, .. } | Job::Purge { done, .. } => {
                let _ = done.send(outcome);
            }
        }
    }
}
