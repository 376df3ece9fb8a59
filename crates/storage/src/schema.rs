//! The on-disk schema: every redb table and key encoding of a member's data file, in one place.
//!
//! One redb file (`member.redb` in the data dir) holds the member's identity and the format
//! version. The latest state-machine snapshot is a file of its own beside it
//! (`crate::snapshot_file`) since format version 2; the Raft log, vote, committed log id and
//! purge point are in the write-ahead log (`crate::wal`, the `wal/` directory) since version 3.
//! The file carries a format version under [`FORMAT_VERSION_KEY`]; opening a file with another
//! version is refused, never silently reinterpreted.

use redb::TableDefinition;

/// Name of the redb file inside the member's data dir.
pub const DB_FILE_NAME: &str = "member.redb";

/// Version of the layout described in this module.
/// Bump it whenever a table, a key or a value encoding changes, and add an upgrade path.
/// Version 2 moved the snapshot out of [`SNAPSHOT`] into its own file; version 3 moved the log
/// and its metadata out of [`LOG`] and [`META`] into the write-ahead log. Opening a version 1 or
/// 2 file makes those moves ([`crate::Db::open`]) and stores version 3.
pub const FORMAT_VERSION: u32 = 3;
/// The previous versions [`crate::Db::open`] upgrades from.
pub const PREVIOUS_FORMAT_VERSIONS: [u32; 2] = [1, 2];

/// Format versions 1 and 2 only: Raft log entries. Emptied by the upgrade to version 3.
/// Key: the log index as 8 big-endian bytes, so lexical order is numeric order.
/// Value: an entry in the compact binary encoding of [`crate::codec`] (prost payload, never JSON
/// for normal entries).
pub const LOG: TableDefinition<[u8; 8], &[u8]> = TableDefinition::new("raft_log");

/// Small singletons, keyed by the `*_KEY` constants below.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Format version 1 only: the latest state-machine snapshot, keyed by [`SNAPSHOT_META_KEY`] and
/// [`SNAPSHOT_DATA_KEY`]. Emptied by the upgrade to version 2; never written since.
pub const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

/// `META`: the format version, a big-endian u32.
pub const FORMAT_VERSION_KEY: &str = "format_version";
/// `META` (versions 1 and 2): the persisted Raft vote, serde_json of openraft's `Vote`.
pub const VOTE_KEY: &str = "vote";
/// `META` (versions 1 and 2): the last committed log id openraft told us about, serde_json of
/// `Option<LogId>`.
pub const COMMITTED_KEY: &str = "committed";
/// `META` (versions 1 and 2): the last purged log id, serde_json of `LogId`.
pub const LAST_PURGED_KEY: &str = "last_purged";
/// `META`: this member's identity, serde_json of [`crate::MemberIdentity`].
pub const IDENTITY_KEY: &str = "identity";

/// `SNAPSHOT`: serde_json of openraft's `SnapshotMeta` (last included log id and membership).
pub const SNAPSHOT_META_KEY: &str = "meta";
/// `SNAPSHOT`: the state machine's bytes (`mvcc::Store::encode_snapshot`).
pub const SNAPSHOT_DATA_KEY: &str = "data";

/// Encodes a log index as a [`LOG`] key.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Decodes a [`LOG`] key.
pub fn log_index(key: [u8; 8]) -> u64 {
    u64::from_be_bytes(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_numerically() {
        let mut keys: Vec<[u8; 8]> = [300u64, 2, 1 << 40, 0, 256]
            .iter()
            .map(|i| log_key(*i))
            .collect();
        keys.sort();
        let indexes: Vec<u64> = keys.into_iter().map(log_index).collect();
        assert_eq!(indexes, vec![0, 2, 256, 300, 1 << 40]);
    }
}
