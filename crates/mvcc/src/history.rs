//! History: compaction, watch replay from key histories, and HashKV.

use bytes::Bytes;
use etcd_proto::errors::{self, EtcdError};
use etcd_proto::mvccpb::{Event, event::EventType};

use crate::keyspace::{KeyHistory, histories_in, in_range};
use crate::store::Store;

/// Bytes gathered before each CRC update in [`Store::hash_kv`].
const HASH_CHUNK: usize = 64 * 1024;

impl Store {
    /// Physically removes superseded versions below `revision`: per key the newest version at or
    /// below it survives, unless it is a tombstone, in which case the key's history up to it goes
    /// (and the key itself when nothing newer exists). The caller checked the revision's bounds.
    /// Only keys in the compactable set are visited, so the cost follows the keys written since the
    /// last compaction rather than the size of the keyspace.
    pub(crate) fn compact(&mut self, revision: i64) {
        // Dense candidates are met by one in-order walk of the index; sparse ones by lookups.
        let walk = self.compactable.len().saturating_mul(8) >= self.keys.len();
        self.compact_with(revision, walk);
    }

    /// Compaction with the candidate-visiting strategy chosen by the caller (both give the same
    /// state). Candidates are visited in key order; survivors and emptied keys are collected in
    /// that order, so the new compactable set is bulk-built instead of rebalanced per removal.
    pub(crate) fn compact_with(&mut self, revision: i64, walk: bool) {
        let candidates = std::mem::take(&mut self.compactable);
        let mut still_compactable = Vec::new();
        let mut emptied = Vec::new();
        let mut visit = |key: &Bytes, history: &mut KeyHistory| {
            compact_history(history, revision);
            if history.entries().is_empty() {
                emptied.push(key.clone());
            } else if history.is_compactable() {
                still_compactable.push(key.clone());
            }
        };
        if walk {
            let mut pending = candidates.iter().peekable();
            for (key, history) in self.keys.iter_mut() {
                // Candidates not in the index (none, by the set's invariant) are passed over.
                while pending.next_if(|candidate| *candidate < key).is_some() {}
                match pending.peek() {
                    None => break,
                    Some(candidate) if *candidate == key => {
                        visit(key, history);
                        pending.next();
                    }
                    Some(_) => {}
                }
            }
        } else {
            for key in &candidates {
                if let Some(history) = self.keys.get_mut(key) {
                    visit(key, history);
                }
            }
        }
        for key in &emptied {
            self.keys.remove(key);
        }
        self.compactable = still_compactable.into_iter().collect();
        let replayable = self
            .changes
            .partition_point(|change| change.revision <= revision);
        self.changes.drain(..replayable);
        self.compact_revision = revision;
        // Every window still readable starts above `revision`: the log holds all of it again.
        if self.changes_from <= revision + 1 {
            self.changes_from = 0;
        }
    }

    /// Events with revision in `[from, to]` for keys selected by (`key`, `range_end`) (etcd range
    /// conventions; empty `range_end` = one key), in (revision, sub-revision) order, each with
    /// `prev_kv` when the key had a live version just before (always still in history: compaction
    /// keeps the newest version at or below the compact revision). `from <= 0` means "from the
    /// oldest revision still in history"; `to` beyond the store revision is clamped.
    /// `COMPACTED` when `0 < from <= compact_revision`.
    ///
    /// Cost: one key lookup for a single key; for a range, the cheaper of walking the window's
    /// changes in the revision log (one lookup each) and scanning the range's keys (one binary
    /// search each), chosen by comparing the window's change count with the index size; a window
    /// older than the revision log's newest changes is always a scan.
    pub fn events(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
    ) -> Result<Vec<Event>, EtcdError> {
        if from > 0 && from <= self.compact_revision {
            return Err(errors::COMPACTED);
        }
        let from = from.max(self.compact_revision + 1);
        let to = to.min(self.revision);
        if from > to {
            return Ok(Vec::new());
        }
        let first = self
            .changes
            .partition_point(|change| change.revision < from);
        let last = self.changes.partition_point(|change| change.revision <= to);
        if range_end.is_empty() || from < self.changes_from || last - first > self.keys.len() {
            return Ok(self.events_by_key_scan(key, range_end, from, to));
        }
        Ok(self.events_by_revision_log(key, range_end, first..last))
    }

    /// Replay by walking the revision log entries `window` (already in event order).
    pub(crate) fn events_by_revision_log(
        &self,
        key: &[u8],
        range_end: &[u8],
        window: std::ops::Range<usize>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        for change in self.changes.range(window) {
            if !in_range(key, range_end, &change.key) {
                continue;
            }
            // A change above the compact revision is never removed from its key's history.
            let Some(history) = self.keys.get(&change.key) else {
                continue;
            };
            let wanted = (change.revision, change.sub);
            if let Ok(index) = history
                .entries()
                .binary_search_by(|entry| (entry.revision, entry.sub).cmp(&wanted))
            {
                events.push(event_at(&change.key, history, index));
            }
        }
        events
    }

    /// Both replay strategies for the same (already bounds-checked) window; they must agree.
    #[cfg(test)]
    pub(crate) fn events_both_ways(
        &self,
        key: &[u8],
        range_end: &[u8],
        from: i64,
        to: i64,
    ) -> (Vec<Event>, Vec<Event>) {
        let from = from.max(self.compact_revision + 1);
        let to = to.min(self.revision);
        let first = self
            .changes
            .partition_point(|change| change.revision < from);
        let last = self
            .changes
            .partition_point(|change| change.revision <= to)
            .max(first);
        (
            self.events_by_key_scan(key, range_end, from, to),
            self.events_by_revision_log(key, range_end, first..last),
        )
    }

    /// Replay by scanning every key of the selection.
    fn events_by_key_scan(&self, key: &[u8], range_end: &[u8], from: i64, to: i64) -> Vec<Event> {
        let mut found: Vec<(i64, u32, Event)> = Vec::new();
        for (stored_key, history) in histories_in(&self.keys, key, range_end) {
            let first = history
                .entries()
                .partition_point(|entry| entry.revision < from);
            for index in first..history.entries().len() {
                let entry = &history.entries()[index];
                if entry.revision > to {
                    break;
                }
                found.push((
                    entry.revision,
                    entry.sub,
                    event_at(stored_key, history, index),
                ));
            }
        }
        found.sort_by_key(|(revision, sub, _)| (*revision, *sub));
        found.into_iter().map(|(_, _, event)| event).collect()
    }

    /// etcd HashKV: a CRC-32 of every stored version with revision <= `revision` (0 = current), key by
    /// key in order. Members that applied the same log (compactions included) agree.
    /// Returns (hash, compact revision, the revision hashed).
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64), EtcdError> {
        let revision = if revision <= 0 {
            self.revision
        } else {
            revision
        };
        if revision > self.revision {
            return Err(errors::FUTURE_REV);
        }
        if revision < self.compact_revision {
            return Err(errors::COMPACTED);
        }
        let mut hasher = crc32fast::Hasher::new();
        // Fields are gathered into a buffer and hashed in large chunks: crc32fast is fast on long
        // inputs and slow on many tiny updates.
        let mut chunk: Vec<u8> = Vec::with_capacity(HASH_CHUNK + 1024);
        for (key, history) in &self.keys {
            let upto = history
                .entries()
                .partition_point(|entry| entry.revision <= revision);
            if upto == 0 {
                continue;
            }
            chunk.extend_from_slice(&(key.len() as u64).to_le_bytes());
            chunk.extend_from_slice(key);
            for entry in &history.entries()[..upto] {
                chunk.extend_from_slice(&entry.revision.to_le_bytes());
                chunk.extend_from_slice(&entry.sub.to_le_bytes());
                chunk.extend_from_slice(&entry.create_revision.to_le_bytes());
                chunk.extend_from_slice(&entry.version.to_le_bytes());
                chunk.extend_from_slice(&entry.lease.to_le_bytes());
                chunk.extend_from_slice(&(entry.value.len() as u64).to_le_bytes());
                chunk.extend_from_slice(&entry.value);
            }
            if chunk.len() >= HASH_CHUNK {
                hasher.update(&chunk);
                chunk.clear();
            }
        }
        hasher.update(&chunk);
        Ok((hasher.finalize(), self.compact_revision, revision))
    }
}

/// The watch event for `history.entries()[index]`: PUT with the full KeyValue or DELETE with key and
/// mod_revision, and `prev_kv` = the version just before it when that one is live.
fn event_at(key: &bytes::Bytes, history: &KeyHistory, index: usize) -> Event {
    let entry = &history.entries()[index];
    let prev_kv = index
        .checked_sub(1)
        .map(|previous| &history.entries()[previous])
        .filter(|previous| !previous.is_tombstone())
        .map(|previous| previous.to_key_value(key));
    let event_type = if entry.is_tombstone() {
        EventType::Delete
    } else {
        EventType::Put
    };
    Event {
        r#type: event_type as i32,
        kv: Some(entry.to_key_value(key)),
        prev_kv,
    }
}

/// Drops a key's versions superseded at `revision`: keeps the newest version at or below it
/// unless that is a tombstone, and everything above it.
fn compact_history(history: &mut KeyHistory, revision: i64) {
    let at_or_below = history
        .entries()
        .partition_point(|entry| entry.revision <= revision);
    if at_or_below == 0 {
        return;
    }
    let drop = if history.entries()[at_or_below - 1].is_tombstone() {
        at_or_below
    } else {
        at_or_below - 1
    };
    history.drop_oldest(drop);
}
