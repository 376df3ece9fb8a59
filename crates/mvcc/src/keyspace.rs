//! The key index: every key's versions since the compact revision, and etcd's key-range conventions.
//!
//! Memory layout (the hot structure for 1M keys): a `BTreeMap<Bytes, KeyHistory>` where a history
//! holds a key's single version inline (72 bytes, no heap block) and a `Vec` of 72-byte entries
//! in (revision, sub-revision) order only once the key has history. A member rebuilds its index
//! from each snapshot it writes ([`crate::Store::adopt_index`]): bulk-built B-tree nodes (full,
//! where ascending inserts leave them about half full), keys copied into shared 4 KiB blocks, and
//! values as slices of a read-only mapping of the snapshot file, so only what was written since
//! is in its heap. Measured for 1M keys of 15 bytes with 256-byte values
//! (`cargo run --release -p storage --example state_memory`): 548 MiB resident with every value
//! in memory, 146 MiB once the index comes from the snapshot (≈ 140 bytes per key).
//! Every superseded version kept until the next compaction adds ≈ 72 bytes + its value, and a
//! key with history also sits in the compactable set (≈ 45 bytes).
//! Watch replay is reconstructed from these histories; the only second structure is the revision
//! log of the newest changes (48 bytes each, keys shared, no values; at most
//! `REVISION_LOG_CAPACITY`), which lets a replay visit only a window's changes.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::ops::Bound;

use bytes::Bytes;
use etcd_proto::mvccpb::KeyValue;

/// One version of a key: a put (create_revision > 0) or a tombstone (create_revision == 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The value, shared (not copied) with range responses and watch events. Empty for tombstones.
    pub value: Bytes,
    /// Main revision of the write that produced this version.
    pub revision: i64,
    /// Revision of the put that created this incarnation of the key; 0 marks a tombstone.
    pub create_revision: i64,
    /// Puts since creation (1 on create); 0 for tombstones.
    pub version: i64,
    /// Attached lease ID, 0 for none.
    pub lease: i64,
    /// Position of this change inside its main revision (etcd's sub-revision), for event order.
    pub sub: u32,
}

impl Entry {
    pub fn is_tombstone(&self) -> bool {
        self.create_revision == 0
    }

    /// The wire form of this version. For a tombstone: key and mod_revision only (etcd's DELETE event kv).
    pub fn to_key_value(&self, key: &Bytes) -> KeyValue {
        KeyValue {
            key: key.clone(),
            create_revision: self.create_revision,
            mod_revision: self.revision,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }
}

/// A key's versions with revision above the compact revision, plus the newest version at or below it
/// (unless that one is a tombstone). Never empty while stored in the key index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyHistory {
    versions: Versions,
}

/// Most keys have one version: it is held inline (the enum is no larger than an [`Entry`]), and
/// only a key with history pays for a heap block.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Versions {
    One(Entry),
    Many(Vec<Entry>),
}

/// No versions: what compaction leaves of a history whose key then leaves the index.
impl Default for Versions {
    fn default() -> Self {
        Versions::Many(Vec::new())
    }
}

impl KeyHistory {
    /// An empty history with room for `count` versions.
    pub fn with_capacity(count: usize) -> KeyHistory {
        match count {
            0 | 1 => KeyHistory::default(),
            _ => KeyHistory {
                versions: Versions::Many(Vec::with_capacity(count)),
            },
        }
    }

    /// The versions, oldest first.
    pub fn entries(&self) -> &[Entry] {
        match &self.versions {
            Versions::One(entry) => std::slice::from_ref(entry),
            Versions::Many(entries) => entries,
        }
    }

    /// The versions, oldest first, for replacing a value by an equal one held elsewhere.
    pub fn entries_mut(&mut self) -> &mut [Entry] {
        match &mut self.versions {
            Versions::One(entry) => std::slice::from_mut(entry),
            Versions::Many(entries) => entries,
        }
    }

    /// Appends the newest version. Histories grow one slot at a time up to 4 instead of Vec's
    /// default first step of 4 slots (288 bytes): most keys keep one or two versions.
    pub fn push(&mut self, entry: Entry) {
        self.versions = match std::mem::take(&mut self.versions) {
            Versions::One(first) => Versions::Many(vec![first, entry]),
            Versions::Many(entries) if entries.is_empty() && entries.capacity() < 2 => {
                Versions::One(entry)
            }
            Versions::Many(mut entries) => {
                if entries.len() == entries.capacity() && entries.capacity() < 4 {
                    entries.reserve_exact(1);
                }
                entries.push(entry);
                Versions::Many(entries)
            }
        };
    }

    /// Drops the `count` oldest versions (all of them leaves the history empty).
    pub fn drop_oldest(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        self.versions = match std::mem::take(&mut self.versions) {
            Versions::One(_) => Versions::default(),
            Versions::Many(mut entries) => {
                entries.drain(..count.min(entries.len()));
                if entries.len() == 1
                    && let Some(last) = entries.pop()
                {
                    Versions::One(last)
                } else {
                    if entries.capacity() > 2 * entries.len() + 2 {
                        entries.shrink_to_fit();
                    }
                    Versions::Many(entries)
                }
            }
        };
    }

    /// The newest version with revision <= `revision` (tombstones included).
    pub fn at(&self, revision: i64) -> Option<&Entry> {
        match self.entries().last() {
            Some(last) if last.revision <= revision => Some(last),
            _ => {
                let index = self
                    .entries()
                    .partition_point(|entry| entry.revision <= revision);
                index.checked_sub(1).map(|index| &self.entries()[index])
            }
        }
    }

    /// The key's value as of `revision`, if it was live then.
    pub fn live_at(&self, revision: i64) -> Option<&Entry> {
        self.at(revision).filter(|entry| !entry.is_tombstone())
    }

    /// Whether compaction may have work here: more than one version, or a tombstone as newest.
    pub fn is_compactable(&self) -> bool {
        self.entries().len() > 1 || self.entries().last().is_some_and(Entry::is_tombstone)
    }

    /// The key's current value, if live.
    pub fn latest_live(&self) -> Option<&Entry> {
        self.entries().last().filter(|entry| !entry.is_tombstone())
    }
}

/// One change in the revision log: which key changed at (revision, sub-revision).
/// The log holds every change above the compact revision, in order, and lets watch replay visit
/// only the changes of a revision window instead of every key of a wide range. It stores keys
/// (shared with the index), not values: events are rebuilt from the key's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub revision: i64,
    pub sub: u32,
    pub key: Bytes,
}

/// The key index type.
pub(crate) type KeyIndex = BTreeMap<Bytes, KeyHistory>;

/// The histories of keys selected by etcd's (key, range_end) convention, in key order.
pub(crate) enum Selection<'index> {
    /// A single key: found with one lookup (`get`), not a two-bound range search.
    One(Option<(&'index Bytes, &'index KeyHistory)>),
    Span(btree_map::Range<'index, Bytes, KeyHistory>),
}

impl<'index> Iterator for Selection<'index> {
    type Item = (&'index Bytes, &'index KeyHistory);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Selection::One(found) => found.take(),
            Selection::Span(range) => range.next(),
        }
    }
}

/// Iterates the histories of keys selected by etcd's (key, range_end) convention:
/// empty `range_end` = the single key; `"\0"` = every key >= `key`; otherwise `[key, range_end)`
/// (empty when `range_end <= key`).
pub(crate) fn histories_in<'index>(
    index: &'index KeyIndex,
    key: &[u8],
    range_end: &[u8],
) -> Selection<'index> {
    let bounds: (Bound<&[u8]>, Bound<&[u8]>) = if range_end.is_empty() {
        return Selection::One(index.get_key_value(key));
    } else if range_end == b"\0" {
        (Bound::Included(key), Bound::Unbounded)
    } else if range_end <= key {
        // BTreeMap::range panics on an inverted range; [key, key) is the empty range.
        (Bound::Included(key), Bound::Excluded(key))
    } else {
        (Bound::Included(key), Bound::Excluded(range_end))
    };
    Selection::Span(index.range::<[u8], _>(bounds))
}

/// Whether `candidate` lies in the (key, range_end) selection, with the same conventions as [`histories_in`].
pub(crate) fn in_range(key: &[u8], range_end: &[u8], candidate: &[u8]) -> bool {
    if range_end.is_empty() {
        candidate == key
    } else if range_end == b"\0" {
        candidate >= key
    } else {
        candidate >= key && candidate < range_end
    }
}

/// The `range_end` that selects every key with prefix `key` (Go clientv3 `GetPrefixRangeEnd`):
/// the key with trailing 0xff bytes dropped and its last byte incremented; `"\0"` (to the end)
/// when the key is empty or all 0xff.
pub fn prefix_range_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
