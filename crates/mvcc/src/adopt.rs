//! Adopting the key index of a snapshot taken earlier from the same store.
//!
//! A live index grows one write at a time: every key is its own heap block, every history its
//! own, and B-tree nodes filled by ascending inserts stay about half full. A decoded snapshot has
//! none of that: its index is bulk-built, its keys share a few large blocks and its values can be
//! slices of the snapshot file's mapping ([`Store::decode_snapshot_sharing`]). A member that has
//! just written a snapshot decodes it and hands the result to [`Store::adopt_index`], which swaps
//! that index in after bringing it up to date with the changes applied since — the same state,
//! in a fraction of the memory.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::keyspace::{Entry, KeyHistory, KeyIndex};
use crate::store::Store;

/// The index [`Store::adopt_index`] replaced. Dropping it frees up to one heap block per key and
/// version: the caller does that after letting go of any lock around the store.
#[must_use = "dropping the replaced index is the expensive part: do it outside the store's lock"]
pub struct ReplacedIndex {
    _keys: KeyIndex,
    _compactable: BTreeSet<Bytes>,
}

/// Why [`Store::adopt_index`] left the store's index in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdoptRefused {
    #[error("the snapshot is not an earlier state of this store")]
    NotEarlier,
    #[error("a compaction since the snapshot passed its revision")]
    CompactedPast,
    #[error("the revision log no longer holds every change since the snapshot")]
    LogTooShort,
}

impl Store {
    /// Replaces this store's key index with `snapshot`'s, where `snapshot` was decoded from an
    /// encoding of this same store at an earlier (or the current) revision: compactions applied
    /// since are applied to it, and every key the revision log names as changed since takes this
    /// store's history (with the snapshot's copies of the versions the snapshot holds). The
    /// store's state and answers stay exactly the same; leases, alarms, auth and the revision log
    /// are kept as they are. Refused, changing nothing, when the snapshot is newer than the store,
    /// a compaction since passed the snapshot's revision (its changes left the log), or the
    /// bounded revision log dropped changes made since the snapshot.
    ///
    /// Cost: the compaction (if any) plus a few lookups per key changed since the snapshot; the replaced
    /// index is handed back to be dropped by the caller.
    pub fn adopt_index(&mut self, mut snapshot: Store) -> Result<ReplacedIndex, AdoptRefused> {
        let taken_at = snapshot.revision;
        if taken_at > self.revision || snapshot.compact_revision > self.compact_revision {
            return Err(AdoptRefused::NotEarlier);
        }
        if self.compact_revision > taken_at {
            return Err(AdoptRefused::CompactedPast);
        }
        if self.changes_from > taken_at + 1 {
            return Err(AdoptRefused::LogTooShort);
        }
        if self.compact_revision > snapshot.compact_revision {
            snapshot.compact(self.compact_revision);
        }
        let mut keys = std::mem::take(&mut snapshot.keys);
        let mut compactable = std::mem::take(&mut snapshot.compactable);
        let since = self
            .changes
            .partition_point(|change| change.revision <= taken_at);
        // Each changed key once: a key written many times since would otherwise have its whole
        // history copied once per write.
        let changed: BTreeSet<&Bytes> = self
            .changes
            .range(since..)
            .map(|change| &change.key)
            .collect();
        for changed in changed {
            let Some(current) = self.keys.get(changed) else {
                // Deleted and compacted away since.
                keys.remove(changed);
                compactable.remove(changed);
                continue;
            };
            let (key, history) = match keys.get_key_value(changed) {
                Some((key, older)) => (key.clone(), with_values_of(current, older)),
                None => (changed.clone(), current.clone()),
            };
            if history.is_compactable() {
                compactable.insert(key.clone());
            } else {
                compactable.remove(&key);
            }
            keys.insert(key, history);
        }
        Ok(ReplacedIndex {
            _keys: std::mem::replace(&mut self.keys, keys),
            _compactable: std::mem::replace(&mut self.compactable, compactable),
        })
    }
}

/// `current` with each version that `older` also holds taking `older`'s copy of its value (equal
/// bytes, held where `older`'s are: typically the snapshot file's mapping).
fn with_values_of(current: &KeyHistory, older: &KeyHistory) -> KeyHistory {
    let mut merged = current.clone();
    let mut older_entries = older.entries().iter().peekable();
    for entry in merged.entries_mut() {
        let position = (entry.revision, entry.sub);
        while older_entries
            .next_if(|older: &&Entry| (older.revision, older.sub) < position)
            .is_some()
        {}
        if let Some(older) = older_entries.next_if(|older| (older.revision, older.sub) == position)
            && older.value.len() == entry.value.len()
        {
            entry.value = older.value.clone();
        }
    }
    merged
}
