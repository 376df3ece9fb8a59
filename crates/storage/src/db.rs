//! Opening the member's redb file: format-version check (and the upgrade from the previous
//! version), identity, and small META helpers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StorageError;
use crate::schema;
use crate::types::MemberIdentity;

/// redb's page cache. redb keeps every page it writes in this cache until the cache is full, so
/// its size is memory the member holds for good once enough was written. The file holds only the
/// Raft log (snapshots have their own file); recent entries are served from the log store's own
/// cache, so redb needs the tree's upper pages plus the pages a purge reads.
pub const REDB_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The opened redb file, shared by the log store and the state machine.
#[derive(Clone)]
pub struct Db {
    pub(crate) database: Arc<Database>,
    path: PathBuf,
    dir: PathBuf,
}

impl Db {
    /// Opens (or creates) `dir/member.redb`, creating every table, and refuses a file written
    /// with another [`schema::FORMAT_VERSION`] — except [`schema::PREVIOUS_FORMAT_VERSIONS`]:
    /// a version 1 snapshot is moved from redb into the snapshot file, and a version 1 or 2 log
    /// (entries, vote, committed id, purge point) into the write-ahead log, each durably before
    /// the version change commits (a crash in between repeats or finishes the move on the next
    /// open).
    pub fn open(dir: &Path) -> Result<Db, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(schema::DB_FILE_NAME);
        let database = redb::Builder::new()
            .set_cache_size(REDB_CACHE_BYTES)
            .create(&path)
            .map_err(|e| StorageError::Open {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let txn = database.begin_write()?;
        {
            let mut meta = txn.open_table(schema::META)?;
            let found = meta
                .get(schema::FORMAT_VERSION_KEY)?
                .map(|value| decode_version(value.value()));
            match found {
                None => {
                    meta.insert(
                        schema::FORMAT_VERSION_KEY,
                        schema::FORMAT_VERSION.to_be_bytes().as_slice(),
                    )?;
                }
                Some(Some(version)) if version == schema::FORMAT_VERSION => {}
                Some(Some(version)) if schema::PREVIOUS_FORMAT_VERSIONS.contains(&version) => {
                    if version == 1 {
                        move_snapshot_out(&txn, dir)?;
                    }
                    move_log_out(&txn, &mut meta, dir)?;
                    meta.insert(
                        schema::FORMAT_VERSION_KEY,
                        schema::FORMAT_VERSION.to_be_bytes().as_slice(),
                    )?;
                    tracing::info!(path = %path.display(), from = version, to = schema::FORMAT_VERSION, "upgraded the storage format");
                }
                Some(version) => {
                    return Err(StorageError::FormatMismatch {
                        path,
                        found: version,
                        expected: schema::FORMAT_VERSION,
                    });
                }
            }
            txn.open_table(schema::LOG)?;
            txn.open_table(schema::SNAPSHOT)?;
        }
        txn.commit()?;
        Ok(Db {
            database: Arc::new(database),
            path,
            dir: dir.to_path_buf(),
        })
    }

    /// The member's data dir (where the snapshot file lives).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the redb file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes of the member's storage files: the redb file and the log segments.
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0) + crate::wal::size(&self.dir)
    }

    /// The identity saved by [`Db::save_identity`], if this data dir already holds a member.
    pub fn identity(&self) -> Result<Option<MemberIdentity>, StorageError> {
        self.read_meta(schema::IDENTITY_KEY)
    }

    /// Records this member's identity durably. Called once, when the member is created.
    pub fn save_identity(&self, identity: &MemberIdentity) -> Result<(), StorageError> {
        self.write_meta(schema::IDENTITY_KEY, identity, redb::Durability::Immediate)
    }

    pub(crate) fn read_meta<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let txn = self.database.begin_read()?;
        let meta = txn.open_table(schema::META)?;
        match meta.get(key)? {
            None => Ok(None),
            Some(value) => serde_json::from_slice(value.value())
                .map(Some)
                .map_err(|e| StorageError::Corrupt(format!("meta key {key}: {e}"))),
        }
    }

    pub(crate) fn write_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        durability: redb::Durability,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let mut txn = self.database.begin_write()?;
        txn.set_durability(durability)
            .map_err(|e| StorageError::Redb(e.to_string()))?;
        {
            let mut meta = txn.open_table(schema::META)?;
            meta.insert(key, bytes.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// Format version 1 kept the snapshot in the SNAPSHOT table: writes it to the snapshot file and
/// empties the table within `txn`.
fn move_snapshot_out(txn: &redb::WriteTransaction, dir: &Path) -> Result<(), StorageError> {
    let mut table = txn.open_table(schema::SNAPSHOT)?;
    let found = match (
        table.get(schema::SNAPSHOT_META_KEY)?,
        table.get(schema::SNAPSHOT_DATA_KEY)?,
    ) {
        (Some(meta), Some(data)) => {
            let meta: crate::SnapshotMeta = serde_json::from_slice(meta.value())
                .map_err(|e| StorageError::Corrupt(format!("version 1 snapshot meta: {e}")))?;
            crate::snapshot_file::write(dir, &meta, data.value())?;
            true
        }
        _ => false,
    };
    if found {
        table.remove(schema::SNAPSHOT_META_KEY)?;
        table.remove(schema::SNAPSHOT_DATA_KEY)?;
    }
    Ok(())
}

/// Format versions 1 and 2 kept the log in the LOG table and its vote, committed id and purge
/// point in META: writes them as the write-ahead log and removes them within `txn`.
fn move_log_out(
    txn: &redb::WriteTransaction,
    meta: &mut redb::Table<'_, &str, &[u8]>,
    dir: &Path,
) -> Result<(), StorageError> {
    let read = |key: &str| -> Result<Option<Vec<u8>>, StorageError> {
        Ok(meta.get(key)?.map(|value| value.value().to_vec()))
    };
    let purged = match read(schema::LAST_PURGED_KEY)? {
        Some(json) => {
            let id: crate::LogId = serde_json::from_slice(&json)
                .map_err(|e| StorageError::Corrupt(format!("version 2 purge point: {e}")))?;
            Some((id.index, json))
        }
        None => None,
    };
    let wal_meta = crate::wal::WalMeta {
        vote: read(schema::VOTE_KEY)?,
        committed: read(schema::COMMITTED_KEY)?,
        purged,
    };
    let mut log = txn.open_table(schema::LOG)?;
    let mut entries = Vec::new();
    for item in log.iter()? {
        let (key, value) = item?;
        entries.push((schema::log_index(key.value()), value.value().to_vec()));
    }
    crate::wal::import(dir, &wal_meta, &entries)?;
    log.retain(|_, _| false)?;
    for key in [
        schema::VOTE_KEY,
        schema::COMMITTED_KEY,
        schema::LAST_PURGED_KEY,
    ] {
        meta.remove(key)?;
    }
    Ok(())
}

fn decode_version(bytes: &[u8]) -> Option<u32> {
    let array: [u8; 4] = bytes.try_into().ok()?;
    Some(u32::from_be_bytes(array))
}
