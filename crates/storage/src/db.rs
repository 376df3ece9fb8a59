//! Opening the member's redb file: format-version check, identity, and small META helpers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::StorageError;
use crate::schema;
use crate::types::MemberIdentity;

/// The opened redb file, shared by the log store and the state machine.
#[derive(Clone)]
pub struct Db {
    pub(crate) database: Arc<Database>,
    path: PathBuf,
}

impl Db {
    /// Opens (or creates) `dir/member.redb`, creating every table, and refuses a file written
    /// with another [`schema::FORMAT_VERSION`].
    pub fn open(dir: &Path) -> Result<Db, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(schema::DB_FILE_NAME);
        let database = Database::create(&path).map_err(|e| StorageError::Open {
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
        })
    }

    /// Path of the redb file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes of the redb file.
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
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

fn decode_version(bytes: &[u8]) -> Option<u32> {
    let array: [u8; 4] = bytes.try_into().ok()?;
    Some(u32::from_be_bytes(array))
}
