//! The Raft log store: entries, vote, committed id and purge point in the write-ahead log
//! ([`crate::wal`]).
//!
//! `append` puts the entries in memory, where the log reader finds them at once, and queues them
//! for the writer thread ([`crate::log_writer`]), which appends everything queued with one
//! `fdatasync` and only then tells openraft the entries are written. So a leader
//! sends an entry to its followers while its own fsync runs, and appends that queue up behind a
//! running fsync share the next one: the storage half of group commit.
//! Every write (appends, vote, truncation, purge) goes through that one queue, in order; the vote,
//! truncations and purges return once durable.
//! Recent entries stay decoded in memory so that replication reads the tail without decoding;
//! an entry leaves that cache only once it is durable, so memory and disk together always hold
//! the whole log.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::type_config::alias::VoteOf;
use openraft::{OptionalSend, RaftLogReader};
use serde::de::DeserializeOwned;

use crate::codec::{self, Entry, LogId};
use crate::db::Db;
use crate::error::StorageError;
use crate::log_writer::{LogWriter, WriteOp};
use crate::types::TypeConfig;
use crate::wal::{Wal, WalReader};

/// How many of the newest entries stay decoded in memory for replication, at most.
const CACHE_ENTRIES: usize = 8192;
/// How many bytes (in their log encoding) those entries may take, at most: one entry carries a
/// whole group-commit batch, so under load a count alone would hold hundreds of megabytes.
/// Replication reads entries just appended, so a few megabytes serve it; a follower further
/// behind is sent entries read back from the log files. (32 MiB here held ≈ 50 MiB of decoded
/// entries per member under a 1M-key load.)
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// The log store handed to openraft; clones share the same file, cache and writer thread.
#[derive(Clone)]
pub struct LogStore {
    wal: WalReader,
    state: Arc<Mutex<LogMemory>>,
    stats: Arc<LogWriteStats>,
    writer: Arc<LogWriter>,
}

/// Counters of log appends since the store was opened: how well group commit amortizes fsyncs.
#[derive(Debug, Default)]
pub struct LogWriteStats {
    /// Durable writes (each one `fdatasync`) made for `append`.
    pub append_commits: AtomicU64,
    /// Entries written by those commits.
    pub entries: AtomicU64,
    /// Where appends report timings and batch sizes; set once by whoever exports metrics.
    pub histograms: OnceLock<LogHistograms>,
}

/// Histograms an append records into (handles of the `metrics` facade, owned by the member's
/// metrics registry): the redb commit (write-out and fsync), the whole write transaction,
/// and the client commands carried by each appended entry (the group-commit batch size).
#[derive(Debug, Clone)]
pub struct LogHistograms {
    pub commit_seconds: metrics::Histogram,
    pub write_seconds: metrics::Histogram,
    pub commands_per_entry: metrics::Histogram,
}

impl LogWriteStats {
    /// (append commits, entries) so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.append_commits.load(Ordering::Relaxed),
            self.entries.load(Ordering::Relaxed),
        )
    }
}

/// What the log store keeps in memory. Guarded by a std mutex that is never held across `.await`:
/// every critical section is a few map operations. Shared with the writer thread.
pub(crate) struct LogMemory {
    /// The newest entries, contiguous up to `last_log`, each with the sequence number of the
    /// submission that wrote it and its encoded size. At most [`CACHE_ENTRIES`] of them and
    /// [`CACHE_BYTES`], except that entries not yet durable are never dropped.
    cache: BTreeMap<u64, (Entry, u64, usize)>,
    /// Sum of the encoded sizes in `cache`.
    cache_bytes: usize,
    last_log: Option<LogId>,
    last_purged: Option<LogId>,
    vote: Option<VoteOf<TypeConfig>>,
    /// The latest committed id openraft reported (the writer thread stores it).
    pub(crate) committed: Option<LogId>,
    /// Writes handed to the writer thread so far (the last one's sequence number); counted in
    /// the order they enter its queue.
    submitted: u64,
    /// Set by the writer thread: every submission up to this sequence number is durable.
    pub(crate) durable_seq: u64,
}

impl LogMemory {
    /// Drops the oldest cached entries beyond [`CACHE_ENTRIES`] or [`CACHE_BYTES`] that are
    /// durable.
    fn trim_cache(&mut self) {
        while self.cache.len() > CACHE_ENTRIES || self.cache_bytes > CACHE_BYTES {
            match self.cache.first_key_value() {
                Some((_, (_, seq, _))) if *seq <= self.durable_seq => {
                    if let Some((_, (_, _, bytes))) = self.cache.pop_first() {
                        self.cache_bytes -= bytes;
                    }
                }
                _ => break,
            }
        }
    }

    /// Drops the cached entries for which `drop` holds, keeping `cache_bytes` right.
    fn remove_cached(&mut self, remove: impl Fn(u64) -> bool) {
        let mut removed = 0;
        self.cache.retain(|index, (_, _, bytes)| {
            if remove(*index) {
                removed += *bytes;
                false
            } else {
                true
            }
        });
        self.cache_bytes -= removed;
    }
}

impl LogStore {
    pub(crate) fn open(db: &Db) -> Result<LogStore, StorageError> {
        let (wal, reader, meta) = Wal::open(db.dir())?;
        let vote = decode_meta(meta.vote.as_deref(), "vote")?;
        let committed: Option<Option<LogId>> =
            decode_meta(meta.committed.as_deref(), "committed id")?;
        let last_purged: Option<LogId> = decode_meta(
            meta.purged.as_ref().map(|(_, json)| json.as_slice()),
            "purge point",
        )?;
        let last_log = match reader.last_index() {
            Some(index) => {
                let found = reader.read_range(index, index + 1)?;
                let (_, bytes) = found.first().ok_or_else(|| {
                    StorageError::Corrupt(format!("log entry {index} vanished while opening"))
                })?;
                Some(
                    codec::decode_entry(bytes)
                        .map_err(|e| StorageError::Corrupt(format!("log entry {index}: {e}")))?
                        .log_id,
                )
            }
            None => last_purged,
        };
        let state = Arc::new(Mutex::new(LogMemory {
            cache: BTreeMap::new(),
            cache_bytes: 0,
            last_log,
            last_purged,
            vote,
            committed: committed.flatten(),
            submitted: 0,
            durable_seq: 0,
        }));
        let stats = Arc::new(LogWriteStats::default());
        let writer = LogWriter::start(wal, committed.flatten(), state.clone(), stats.clone())?;
        Ok(LogStore {
            wal: reader,
            state,
            stats,
            writer: Arc::new(writer),
        })
    }

    /// Hands `op` to the writer thread, counting it in the same critical section as its
    /// queueing so that sequence numbers follow the queue's order.
    fn submit(&self, memory: &mut LogMemory, op: WriteOp) -> Result<(), io::Error> {
        memory.submitted += 1;
        self.writer.submit(op)
    }

    /// Queues `make(done)` and waits until it is durable.
    async fn submit_and_wait(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<(), String>>) -> WriteOp,
    ) -> Result<(), io::Error> {
        let (done, finished) = tokio::sync::oneshot::channel();
        {
            let mut memory = self.memory();
            self.submit(&mut memory, make(done))?;
        }
        match finished.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(io::Error::other(message)),
            Err(_) => Err(io::Error::other(
                "the Raft log writer stopped before the write",
            )),
        }
    }

    /// Waits until every write submitted so far is durable.
    pub async fn flush(&self) -> Result<(), io::Error> {
        self.submit_and_wait(|done| WriteOp::Barrier { done }).await
    }

    /// Append counters, shared by every clone of this store.
    pub fn write_stats(&self) -> Arc<LogWriteStats> {
        self.stats.clone()
    }

    fn memory(&self) -> MutexGuard<'_, LogMemory> {
        // A panic while holding this lock leaves only plain maps behind: recover the data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs blocking log reads off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&WalReader) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, io::Error> {
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || work(&wal))
            .await
            .map_err(|e| io::Error::other(format!("storage task failed: {e}")))?
            .map_err(StorageError::into_io)
    }

    fn read_range_from_disk(
        wal: &WalReader,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        wal.read_range(start, end)?
            .into_iter()
            .map(|(index, bytes)| {
                codec::decode_entry(&bytes)
                    .map_err(|e| StorageError::Corrupt(format!("log entry {index}: {e}")))
            })
            .collect()
    }

    /// How many entries the write-ahead log holds (durable ones).
    #[cfg(test)]
    pub(crate) fn entries_on_disk(&self) -> usize {
        self.wal.len()
    }
}

/// Decodes a metadata record's serde_json, naming `what` when it is damaged.
fn decode_meta<T: DeserializeOwned>(
    bytes: Option<&[u8]>,
    what: &str,
) -> Result<Option<T>, StorageError> {
    bytes
        .map(|bytes| {
            serde_json::from_slice(bytes)
                .map_err(|e| StorageError::Corrupt(format!("the Raft log's {what}: {e}")))
        })
        .transpose()
}

/// The entry decoded back from its log encoding, for the cache. An entry proposed on this member
/// carries its keys and values as slices of the client requests' receive buffers (several KiB
/// each for a 256-byte value); cached as is, the cache's megabytes of entries would keep hundreds of
/// megabytes of those buffers alive on the leader. The decoded copy owns exactly its bytes.
fn owned_copy(encoded: &[u8]) -> Result<Entry, io::Error> {
    codec::decode_entry(encoded).map_err(|e| io::Error::other(e.to_string()))
}

/// Turns any range of indexes into `[start, end)`.
fn half_open<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(i) => i.saturating_add(1),
        Bound::Excluded(i) => *i,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = half_open(&range);
        if start >= end {
            return Ok(Vec::new());
        }
        // Entries below the cache are durable (only durable entries leave it), so the disk
        // holds them; the cache holds the rest, durable or not.
        let (disk_end, cached) = {
            let memory = self.memory();
            let cache_start = memory
                .cache
                .first_key_value()
                .map(|(index, _)| *index)
                .unwrap_or(u64::MAX);
            let cached_start = start.max(cache_start);
            let cached: Vec<Entry> = if cached_start < end {
                memory
                    .cache
                    .range(cached_start..end)
                    .map(|(_, (entry, _, _))| entry.clone())
                    .collect()
            } else {
                Vec::new()
            };
            (end.min(cache_start), cached)
        };
        if start >= disk_end {
            return Ok(cached);
        }
        let mut entries = self
            .blocking(move |wal| LogStore::read_range_from_disk(wal, start, disk_end))
            .await?;
        entries.extend(cached);
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        Ok(self.memory().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let memory = self.memory();
        Ok(LogState {
            last_purged_log_id: memory.last_purged,
            last_log_id: memory.last_log,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Durable before returning (after every earlier write).
    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        let bytes = serde_json::to_vec(vote).map_err(io::Error::other)?;
        self.submit_and_wait(|done| WriteOp::Vote { bytes, done })
            .await?;
        self.memory().vote = Some(*vote);
        Ok(())
    }

    /// Costs no I/O here: the writer thread stores the newest committed id with its next write,
    /// or alone once it is idle or closing (see [`crate::log_writer`]).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        self.memory().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.memory().committed)
    }

    /// Returns once the entries are readable (in memory) and queued for the writer thread, which
    /// calls `callback` once they are durable.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            callback.io_completed(Ok(()));
            return Ok(());
        };
        let mut encoded = Vec::with_capacity(entries.len());
        for entry in &entries {
            let bytes = codec::encode_entry(entry).map_err(|e| io::Error::other(e.to_string()))?;
            encoded.push((entry.log_id.index, bytes));
        }
        if let Some(histograms) = self.stats.histograms.get() {
            for entry in &entries {
                if let openraft::EntryPayload::Normal(request) = &entry.payload {
                    histograms
                        .commands_per_entry
                        .record(request.0.commands.len() as f64);
                }
            }
        }
        drop(entries);
        let mut memory = self.memory();
        let seq = memory.submitted + 1;
        for (_, bytes) in &encoded {
            let entry = owned_copy(bytes)?;
            memory.cache_bytes += bytes.len();
            if let Some((_, _, replaced)) = memory
                .cache
                .insert(entry.log_id.index, (entry, seq, bytes.len()))
            {
                memory.cache_bytes -= replaced;
            }
        }
        memory.last_log = Some(last);
        memory.trim_cache();
        self.submit(
            &mut memory,
            WriteOp::Append {
                entries: encoded,
                done: callback,
            },
        )
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.as_ref().map(|id| id.index + 1).unwrap_or(0);
        {
            let mut memory = self.memory();
            memory.remove_cached(|index| index >= from);
            memory.last_log = last_log_id.or_else(|| memory.last_purged);
        }
        self.submit_and_wait(|done| WriteOp::Truncate { from, done })
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let upto = log_id.index;
        let purged_bytes = serde_json::to_vec(&log_id).map_err(io::Error::other)?;
        self.submit_and_wait(|done| WriteOp::Purge {
            upto,
            purged_bytes,
            done,
        })
        .await?;
        let mut memory = self.memory();
        memory.remove_cached(|index| index <= upto);
        if memory
            .last_log
            .as_ref()
            .is_none_or(|last| last.index < upto)
        {
            memory.last_log = Some(log_id);
        }
        memory.last_purged = Some(log_id);
        Ok(())
    }
}
