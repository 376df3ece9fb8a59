//! Errors of opening and using the member's storage.

use std::path::PathBuf;

/// What went wrong with the member's data file.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("create data dir {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("open {path}: {message}")]
    Open { path: PathBuf, message: String },
    /// The file was written by another pgwarden storage format; it is left untouched.
    #[error(
        "{path}: storage format version {found:?} is not the supported version {expected}; \
         refusing to open (upgrade or restore the data dir with a matching pgwarden)"
    )]
    FormatMismatch {
        path: PathBuf,
        found: Option<u32>,
        expected: u32,
    },
    #[error("corrupt data file: {0}")]
    Corrupt(String),
    /// The snapshot file could not be created, written, renamed or read.
    #[error("snapshot file {path}: {what}: {source}")]
    SnapshotIo {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file of the Raft log's write-ahead log could not be created, written, synced, read
    /// or removed (a full or failing disk, permissions).
    #[error("Raft log {path}: {what}: {source}")]
    LogIo {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The snapshot file is not one this build wrote, or is damaged.
    #[error("snapshot file {path} refused: {reason}")]
    SnapshotCorrupt { path: PathBuf, reason: String },
    #[error("redb: {0}")]
    Redb(String),
}

impl StorageError {
    /// The form openraft's storage traits carry.
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(self.to_string())
    }
}

macro_rules! from_redb {
    ($($ty:ty),*) => {
        $(impl From<$ty> for StorageError {
            fn from(error: $ty) -> Self {
                StorageError::Redb(error.to_string())
            }
        })*
    };
}

from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
