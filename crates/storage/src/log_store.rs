//! The Raft log store: entries, vote, committed id and purge point in redb.
//!
//! `append` encodes the batch openraft hands it, keeps the entries in memory (readable at once)
//! and queues them for the log writer thread ([`crate::log_writer`]), which commits whatever is
//! queued in one redb transaction (one fsync) and only then reports completion to openraft: the
//! storage half of group commit, overlapped with replication. Recent entries stay decoded in
//! memory so that replication reads the tail without decoding; entries not yet durable are
//! always in memory.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::type_config::alias::VoteOf;
use openraft::{OptionalSend, RaftLogReader};
use redb::{ReadableDatabase, ReadableTable};

use crate::codec::{self, Entry, LogId};
use crate::db::Db;
use crate::error::StorageError;
use crate::log_writer::{Job, Writer};
use crate::schema;
use crate::types::TypeConfig;

/// How many of the newest durable entries stay decoded in memory for replication (entries not
/// yet durable are kept in addition).
const CACHE_ENTRIES: usize = 8192;

/// The log store handed to openraft; clones share the same file and cache.
#[derive(Clone)]
pub struct LogStore {
    db: Db,
    state: Arc<Mutex<LogMemory>>,
    stats: Arc<LogWriteStats>,
    /// The log writer thread; it ends when the last clone is dropped.
    writer: Arc<Writer>,
}

/// Counters of log appends since the store was opened: how well group commit amortizes fsyncs.
#[derive(Debug, Default)]
pub struct LogWriteStats {
    /// redb commits (each one fsync) made by `append`.
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
/// every critical section is a few map operations.
pub(crate) struct LogMemory {
    /// The newest entries, contiguous up to `last_log`: every entry after `durable_last` plus
    /// at most [`CACHE_ENTRIES`] durable ones.
    cache: BTreeMap<u64, Entry>,
    /// The last entry handed to `append` (readable, maybe not yet durable).
    last_log: Option<LogId>,
    /// The newest log index known durable: raised by the writer thread after each commit,
    /// lowered by `truncate_after` at once (before its deletion is even queued).
    pub(crate) durable_last: Option<u64>,
    /// Incremented by every `truncate_after`, so a writer commit that began before a
    /// truncation does not raise `durable_last` above it.
    pub(crate) truncations: u64,
    last_purged: Option<LogId>,
    vote: Option<VoteOf<TypeConfig>>,
    /// The latest committed id openraft reported, and whether it is newer than the stored one.
    pub(crate) committed: Option<LogId>,
    pub(crate) committed_unsaved: bool,
}

impl LogMemory {
    /// Records that `written` (what a transaction stored) reached disk, unless a newer
    /// committed id arrived meanwhile.
    pub(crate) fn mark_committed_saved(&mut self, written: Option<Option<LogId>>) {
        if written.is_some() && written == Some(self.committed) {
            self.committed_unsaved = false;
        }
    }

    /// Drops the oldest durable entries beyond [`CACHE_ENTRIES`]; never one not yet durable.
    pub(crate) fn trim_cache(&mut self) {
        while self.cache.len() > CACHE_ENTRIES {
            match self.cache.first_key_value() {
                Some((index, _)) if self.durable_last.is_some_and(|last| *index <= last) => {
                    self.cache.pop_first();
                }
                _ => break,
            }
        }
    }
}

/// Locks the log memory. A panic while holding this lock leaves only plain maps behind:
/// recover the data.
pub(crate) fn lock(memory: &Mutex<LogMemory>) -> MutexGuard<'_, LogMemory> {
    memory
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LogStore {
    pub(crate) fn open(db: Db) -> Result<LogStore, StorageError> {
        let vote = db.read_meta(schema::VOTE_KEY)?;
        let committed: Option<Option<LogId>> = db.read_meta(schema::COMMITTED_KEY)?;
        let last_purged: Option<LogId> = db.read_meta(schema::LAST_PURGED_KEY)?;
        let last_log = {
            let txn = db.database.begin_read()?;
            let log = txn.open_table(schema::LOG)?;
            match log.last()? {
                Some((_, value)) => Some(
                    codec::decode_entry(value.value())
                        .map_err(|e| StorageError::Corrupt(e.to_string()))?
                        .log_id,
                ),
                None => last_purged,
            }
        };
        let state = Arc::new(Mutex::new(LogMemory {
            cache: BTreeMap::new(),
            last_log,
            durable_last: last_log.map(|id| id.index),
            truncations: 0,
            last_purged,
            vote,
            committed: committed.flatten(),
            committed_unsaved: false,
        }));
        let stats = Arc::new(LogWriteStats::default());
        let writer = Arc::new(Writer::start(db.clone(), state.clone(), stats.clone())?);
        Ok(LogStore {
            db,
            state,
            stats,
            writer,
        })
    }

    /// Queues `job` for the writer thread.
    fn submit(&self, job: Job) -> Result<(), io::Error> {
        self.writer.submit(job)
    }

    /// Queues a job that answers on a oneshot and waits for its commit.
    async fn write_and_wait(
        &self,
        job: impl FnOnce(tokio::sync::oneshot::Sender<Result<(), StorageError>>) -> Job,
    ) -> Result<(), io::Error> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.submit(job(done))?;
        wait.await
            .map_err(|_| io::Error::other("log writer thread stopped"))?
            .map_err(StorageError::into_io)
    }

    /// Append counters, shared by every clone of this store.
    pub fn write_stats(&self) -> Arc<LogWriteStats> {
        self.stats.clone()
    }

    fn memory(&self) -> MutexGuard<'_, LogMemory> {
        lock(&self.state)
    }

    /// Runs blocking redb work off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Db) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, io::Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| io::Error::other(format!("storage task failed: {e}")))?
            .map_err(StorageError::into_io)
    }

    fn read_range_from_disk(db: &Db, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        let txn = db.database.begin_read()?;
        let log = txn.open_table(schema::LOG)?;
        let mut entries = Vec::new();
        for item in log.range(schema::log_key(start)..schema::log_key(end))? {
            let (_, value) = item?;
            entries.push(
                codec::decode_entry(value.value())
                    .map_err(|e| StorageError::Corrupt(e.to_string()))?,
            );
        }
        Ok(entries)
    }
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
        // Entries from the cache's first index on are served from memory (and only there are
        // the ones not yet durable); older ones come from disk, where they are durable.
        let cache_first = {
            let memory = self.memory();
            match memory.cache.first_key_value() {
                Some((first, _)) if *first <= start => {
                    return Ok(memory
                        .cache
                        .range(start..end)
                        .map(|(_, e)| e.clone())
                        .collect());
                }
                Some((first, _)) => Some(*first),
                None => None,
            }
        };
        let disk_end = cache_first.map_or(end, |first| end.min(first));
        let mut entries = self
            .blocking(move |db| LogStore::read_range_from_disk(db, start, disk_end))
            .await?;
        if let Some(first) = cache_first
            && end > first
        {
            let memory = self.memory();
            entries.extend(memory.cache.range(first..end).map(|(_, e)| e.clone()));
        }
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

    /// Durable before returning (one fsync); also stores an unsaved committed id.
    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        let bytes = serde_json::to_vec(vote).map_err(io::Error::other)?;
        self.write_and_wait(|done| Job::Vote { bytes, done })
            .await?;
        self.memory().vote = Some(*vote);
        Ok(())
    }

    /// The committed id costs no I/O of its own: it is written by the next log writer
    /// transaction that makes the entry it points to durable (and so becomes durable with the next log fsync). Losing the newest value in
    /// a crash only makes a restart re-apply fewer entries before the leader tells the member
    /// the commit index again, which is safe.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let mut memory = self.memory();
        if memory.committed != committed {
            memory.committed = committed;
            memory.committed_unsaved = true;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.memory().committed)
    }

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
        // Readable from memory before returning; durable (and reported) by the writer thread.
        {
            let mut memory = self.memory();
            for entry in entries {
                memory.cache.insert(entry.log_id.index, entry);
            }
            memory.last_log = Some(last);
            memory.trim_cache();
        }
        self.submit(Job::Append {
            entries: encoded,
            last,
            callback,
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.as_ref().map(|id| id.index + 1).unwrap_or(0);
        {
            let mut memory = self.memory();
            memory.cache.retain(|index, _| *index < from);
            memory.last_log = last_log_id.or_else(|| memory.last_purged);
            memory.durable_last = match (memory.durable_last, from.checked_sub(1)) {
                (Some(durable), Some(kept)) => Some(durable.min(kept)),
                _ => None,
            };
            memory.truncations += 1;
        }
        self.write_and_wait(|done| Job::Truncate { from, done })
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let upto = log_id.index;
        let purged = serde_json::to_vec(&log_id).map_err(io::Error::other)?;
        self.write_and_wait(|done| Job::Purge { upto, purged, done })
            .await?;
        let mut memory = self.memory();
        memory.cache.retain(|index, _| *index > upto);
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
