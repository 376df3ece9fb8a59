//! The Raft log store: entries, vote, committed id and purge point in redb.
//!
//! `append` writes the whole batch openraft hands it in one redb transaction (one fsync) and
//! reports completion only after the commit returned: that is the storage half of group commit.
//! Recent entries are also kept in memory so that replication reads the tail without decoding.

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
use crate::schema;
use crate::types::TypeConfig;

/// How many of the newest entries stay decoded in memory for replication.
const CACHE_ENTRIES: usize = 8192;

/// The log store handed to openraft; clones share the same file and cache.
#[derive(Clone)]
pub struct LogStore {
    db: Db,
    state: Arc<Mutex<LogMemory>>,
    stats: Arc<LogWriteStats>,
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
struct LogMemory {
    /// The newest entries (at most [`CACHE_ENTRIES`]), contiguous up to `last_log`.
    cache: BTreeMap<u64, Entry>,
    last_log: Option<LogId>,
    last_purged: Option<LogId>,
    vote: Option<VoteOf<TypeConfig>>,
    /// The latest committed id openraft reported, and whether it is newer than the stored one.
    committed: Option<LogId>,
    committed_unsaved: bool,
}

impl LogMemory {
    /// Records that `written` (what a transaction stored) reached disk, unless a newer
    /// committed id arrived meanwhile.
    fn mark_committed_saved(&mut self, written: Option<Option<LogId>>) {
        if written == Some(self.committed) {
            self.committed_unsaved = false;
        }
    }
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
        Ok(LogStore {
            db,
            state: Arc::new(Mutex::new(LogMemory {
                cache: BTreeMap::new(),
                last_log,
                last_purged,
                vote,
                committed: committed.flatten(),
                committed_unsaved: false,
            })),
            stats: Arc::new(LogWriteStats::default()),
        })
    }

    /// The committed id not yet written, with its encoding, for the next write transaction.
    #[allow(clippy::type_complexity)]
    fn unsaved_committed(&self) -> Result<(Option<Option<LogId>>, Option<Vec<u8>>), io::Error> {
        let memory = self.memory();
        if !memory.committed_unsaved {
            return Ok((None, None));
        }
        let bytes = serde_json::to_vec(&memory.committed).map_err(io::Error::other)?;
        Ok((Some(memory.committed), Some(bytes)))
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
        {
            let memory = self.memory();
            if let Some((first, _)) = memory.cache.first_key_value()
                && *first <= start
            {
                return Ok(memory
                    .cache
                    .range(start..end)
                    .map(|(_, e)| e.clone())
                    .collect());
            }
        }
        self.blocking(move |db| LogStore::read_range_from_disk(db, start, end))
            .await
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
        let vote_bytes = serde_json::to_vec(vote).map_err(io::Error::other)?;
        let (committed, committed_bytes) = self.unsaved_committed()?;
        self.blocking(move |db| {
            let txn = db.database.begin_write()?;
            {
                let mut meta = txn.open_table(schema::META)?;
                meta.insert(schema::VOTE_KEY, vote_bytes.as_slice())?;
                if let Some(bytes) = &committed_bytes {
                    meta.insert(schema::COMMITTED_KEY, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await?;
        let mut memory = self.memory();
        memory.vote = Some(*vote);
        memory.mark_committed_saved(committed);
        Ok(())
    }

    /// The committed id costs no I/O of its own: it is written by the next `append`
    /// transaction (and so becomes durable with the next log fsync). Losing the newest value in
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
        let (committed, committed_bytes) = self.unsaved_committed()?;
        let histograms = self.stats.histograms.get().cloned();
        let result = self
            .blocking(move |db| {
                let started = std::time::Instant::now();
                let txn = db.database.begin_write()?;
                {
                    let mut log = txn.open_table(schema::LOG)?;
                    for (index, bytes) in &encoded {
                        log.insert(schema::log_key(*index), bytes.as_slice())?;
                    }
                    if let Some(bytes) = &committed_bytes {
                        let mut meta = txn.open_table(schema::META)?;
                        meta.insert(schema::COMMITTED_KEY, bytes.as_slice())?;
                    }
                }
                let committing = std::time::Instant::now();
                txn.commit()?;
                if let Some(histograms) = histograms {
                    histograms.commit_seconds.record(committing.elapsed());
                    histograms.write_seconds.record(started.elapsed());
                }
                Ok(())
            })
            .await;
        if let Err(error) = result {
            let message = error.to_string();
            callback.io_completed(Err(error));
            return Err(io::Error::other(message));
        }
        self.stats.append_commits.fetch_add(1, Ordering::Relaxed);
        self.stats
            .entries
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        {
            let mut memory = self.memory();
            memory.mark_committed_saved(committed);
            for entry in entries {
                memory.cache.insert(entry.log_id.index, entry);
            }
            while memory.cache.len() > CACHE_ENTRIES {
                memory.cache.pop_first();
            }
            memory.last_log = Some(last);
        }
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.as_ref().map(|id| id.index + 1).unwrap_or(0);
        self.blocking(move |db| {
            let txn = db.database.begin_write()?;
            {
                let mut log = txn.open_table(schema::LOG)?;
                log.retain_in(schema::log_key(from).., |_, _| false)?;
            }
            txn.commit()?;
            Ok(())
        })
        .await?;
        let mut memory = self.memory();
        memory.cache.retain(|index, _| *index < from);
        memory.last_log = last_log_id.or_else(|| memory.last_purged);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let upto = log_id.index;
        let purged = log_id;
        self.blocking(move |db| {
            let bytes =
                serde_json::to_vec(&purged).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            let txn = db.database.begin_write()?;
            {
                let mut meta = txn.open_table(schema::META)?;
                meta.insert(schema::LAST_PURGED_KEY, bytes.as_slice())?;
                let mut log = txn.open_table(schema::LOG)?;
                log.retain_in(..=schema::log_key(upto), |_, _| false)?;
            }
            txn.commit()?;
            Ok(())
        })
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
