//! The member's latest state-machine snapshot, in its own file beside the redb file.
//!
//! Kept out of redb so that writing a snapshot (hundreds of megabytes for a million keys) does
//! not fill redb's page cache with its pages, and so that the redb file only holds the log.
//!
//! Layout of `dir/`[`SNAPSHOT_FILE_NAME`] (integers little-endian):
//! [`SNAPSHOT_FILE_MAGIC`] (8 bytes) · file format version u32 · meta length u32 · meta (serde_json
//! of openraft's `SnapshotMeta`) · CRC-32 of the meta u32 · the state machine's bytes
//! (`mvcc::Store::encode_snapshot`, which carries its own version and checksum) to the end.
//!
//! Crash safety: a snapshot is written to [`SNAPSHOT_TEMP_NAME`], fsynced, renamed over the
//! previous one and the directory fsynced, so the file is always either the old snapshot or the
//! new one, whole. A leftover temp file from a crash is ignored and overwritten.
//!
//! Values in place: [`write`] and [`read_mapped`] also hand back a read-only mapping of the file's
//! state-machine bytes, which the state machine's values are slices of (so they stay in the page
//! cache, not in the member's heap). A file that cannot be mapped (a filesystem without mmap)
//! costs only memory: a warning, and the values stay in the heap. A snapshot file is never
//! written again once renamed into place — a new one is a new file (inode) renamed over it — so
//! a mapping never sees its bytes change or shrink; a replaced file lives on, unnamed, until its
//! last value is dropped.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::error::StorageError;
use crate::state_machine::{Snapshot, SnapshotMeta};

/// Name of the snapshot file inside the member's data dir.
pub const SNAPSHOT_FILE_NAME: &str = "snapshot";
/// Name a new snapshot is written under before it replaces [`SNAPSHOT_FILE_NAME`].
pub const SNAPSHOT_TEMP_NAME: &str = "snapshot.tmp";
/// First bytes of every snapshot file.
pub const SNAPSHOT_FILE_MAGIC: &[u8; 8] = b"PGWSNAP\0";
/// Version of the layout described in this module.
pub const SNAPSHOT_FILE_VERSION: u32 = 1;

/// Bytes before the meta: magic, file format version, meta length.
const HEADER_LEN: usize = SNAPSHOT_FILE_MAGIC.len() + 8;

/// Writes `meta` and `data` as the member's snapshot in `dir`, durably and atomically; returns a
/// read-only mapping of the written file's copy of `data` when the file can be mapped.
pub(crate) fn write(
    dir: &Path,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<Option<Bytes>, StorageError> {
    let temp = dir.join(SNAPSHOT_TEMP_NAME);
    let path = dir.join(SNAPSHOT_FILE_NAME);
    let meta = serde_json::to_vec(meta)
        .map_err(|e| StorageError::Corrupt(format!("encode snapshot meta: {e}")))?;
    let meta_len = u32::try_from(meta.len())
        .map_err(|_| StorageError::Corrupt("snapshot meta longer than 4 GiB".to_string()))?;
    let io_error = |what: &str, path: &Path, source: io::Error| StorageError::SnapshotIo {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| io_error("create", &temp, e))?;
    let mut out = BufWriter::with_capacity(1024 * 1024, file);
    let written = (|| -> io::Result<File> {
        out.write_all(SNAPSHOT_FILE_MAGIC)?;
        out.write_all(&SNAPSHOT_FILE_VERSION.to_le_bytes())?;
        out.write_all(&meta_len.to_le_bytes())?;
        out.write_all(&meta)?;
        out.write_all(&crc32(&meta).to_le_bytes())?;
        out.write_all(data)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file)
    })();
    let file = written.map_err(|e| io_error("write", &temp, e))?;
    std::fs::rename(&temp, &path).map_err(|e| io_error("rename into place", &path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("fsync the directory of", &path, e))?;
    Ok(mapping(&file, HEADER_LEN + meta.len() + 4, &path))
}

/// [`map_data`], or `None` with a warning: the caller then keeps its values in the heap.
fn mapping(file: &File, data_start: usize, path: &Path) -> Option<Bytes> {
    match map_data(file, data_start) {
        Ok(mapped) => Some(mapped),
        Err(error) => {
            tracing::warn!(
                path = %path.display(),
                %error,
                "cannot map the snapshot file; its values stay in memory"
            );
            None
        }
    }
}

/// A read-only mapping of `file` from `data_start` to its end (see the module docs for why the
/// bytes cannot change under it).
#[allow(
    unsafe_code,
    reason = "mapping a file is unsafe only if the file changes; snapshot files never do"
)]
fn map_data(file: &File, data_start: usize) -> io::Result<Bytes> {
    // SAFETY: the file is a renamed-into-place snapshot, which pgwarden never writes, truncates
    // or reopens for writing (module docs); nothing else is meant to write a member's data dir.
    let map = unsafe { memmap2::Mmap::map(file) }?;
    if map.len() < data_start {
        return Err(io::Error::other(
            "the snapshot file is shorter than its header",
        ));
    }
    Ok(Bytes::from_owner(map).slice(data_start..))
}

/// Reads the member's snapshot from `dir`; `None` when there is none yet.
pub(crate) fn read(dir: &Path) -> Result<Option<Snapshot>, StorageError> {
    Ok(load(dir)?.map(|(snapshot, ..)| snapshot))
}

/// [`read`], plus a read-only mapping of the file's state-machine bytes (equal to the snapshot's)
/// when the file can be mapped.
pub(crate) fn read_mapped(dir: &Path) -> Result<Option<(Snapshot, Option<Bytes>)>, StorageError> {
    let Some((snapshot, file, data_start)) = load(dir)? else {
        return Ok(None);
    };
    let mapped = mapping(&file, data_start, &dir.join(SNAPSHOT_FILE_NAME))
        .filter(|mapped| mapped.len() == snapshot.snapshot.len());
    Ok(Some((snapshot, mapped)))
}

/// The snapshot in `dir`, its open file and where its state-machine bytes start in it, checked
/// (see [`decode`]).
fn load(dir: &Path) -> Result<Option<(Snapshot, File, usize)>, StorageError> {
    let path = dir.join(SNAPSHOT_FILE_NAME);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StorageError::SnapshotIo {
                what: "open".to_string(),
                path,
                source,
            });
        }
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| StorageError::SnapshotIo {
            what: "read".to_string(),
            path: path.clone(),
            source,
        })?;
    let file_len = bytes.len();
    let snapshot =
        decode(bytes).map_err(|reason| StorageError::SnapshotCorrupt { path, reason })?;
    let data_start = file_len - snapshot.snapshot.len();
    Ok(Some((snapshot, file, data_start)))
}

/// Splits a snapshot file's bytes into meta and state-machine bytes (reusing the buffer for the
/// latter), checking magic, version and the meta's checksum.
fn decode(mut bytes: Vec<u8>) -> Result<Snapshot, String> {
    let header = HEADER_LEN;
    if bytes.len() < header || &bytes[..SNAPSHOT_FILE_MAGIC.len()] != SNAPSHOT_FILE_MAGIC {
        return Err("not a pgwarden snapshot file (bad magic or shorter than its header)".into());
    }
    let word = |at: usize| {
        let mut word = [0u8; 4];
        word.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(word)
    };
    let version = word(SNAPSHOT_FILE_MAGIC.len());
    if version != SNAPSHOT_FILE_VERSION {
        return Err(format!(
            "snapshot file format version {version} is not the supported version {SNAPSHOT_FILE_VERSION}"
        ));
    }
    let meta_len = word(SNAPSHOT_FILE_MAGIC.len() + 4) as usize;
    let data_start = header
        .checked_add(meta_len)
        .and_then(|end| end.checked_add(4))
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| "truncated: shorter than its meta".to_string())?;
    let meta_bytes = &bytes[header..header + meta_len];
    let stored = word(header + meta_len);
    let computed = crc32(meta_bytes);
    if stored != computed {
        return Err(format!(
            "meta checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let meta: SnapshotMeta =
        serde_json::from_slice(meta_bytes).map_err(|e| format!("meta does not decode: {e}"))?;
    bytes.drain(..data_start);
    Ok(Snapshot {
        meta,
        snapshot: bytes,
    })
}

/// Removes a temp file left by a write that crashed; a missing one is fine.
pub(crate) fn remove_leftover(dir: &Path) -> Result<(), StorageError> {
    let temp: PathBuf = dir.join(SNAPSHOT_TEMP_NAME);
    match std::fs::remove_file(&temp) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StorageError::SnapshotIo {
            what: "remove leftover".to_string(),
            path: temp,
            source,
        }),
    }
}

/// CRC-32 (IEEE), bitwise: only ever run over the small meta.
fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::StoredMembership;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(crate::codec::log_id(2, 1, 42)),
            last_membership: StoredMembership::default(),
        }
    }

    #[test]
    fn crc32_matches_the_ieee_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn written_snapshot_reads_back_and_replaces_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        write(dir.path(), &meta(), b"first").unwrap();
        write(dir.path(), &meta(), b"second state").unwrap();
        let (snapshot, mapped) = read_mapped(dir.path()).unwrap().unwrap();
        let mapped = mapped.unwrap();
        assert_eq!(snapshot.meta.last_log_id, meta().last_log_id);
        assert_eq!(snapshot.snapshot, b"second state");
        assert_eq!(mapped, b"second state".as_slice());
        // The mapping of a replaced file keeps its bytes.
        let third = write(dir.path(), &meta(), b"third").unwrap().unwrap();
        assert_eq!(mapped, b"second state".as_slice());
        assert_eq!(third, b"third".as_slice());
        assert!(!dir.path().join(SNAPSHOT_TEMP_NAME).exists());
    }

    #[test]
    fn damaged_snapshot_file_is_refused_naming_its_path() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &meta(), b"state").unwrap();
        let path = dir.path().join(SNAPSHOT_FILE_NAME);
        let good = std::fs::read(&path).unwrap();

        let mut flipped = good.clone();
        flipped[SNAPSHOT_FILE_MAGIC.len() + 10] ^= 0x01;
        std::fs::write(&path, &flipped).unwrap();
        let error = read(dir.path()).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("checksum"), "{error}");

        let mut other_version = good.clone();
        other_version[SNAPSHOT_FILE_MAGIC.len()] = 9;
        std::fs::write(&path, &other_version).unwrap();
        let error = read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("format version 9"), "{error}");

        std::fs::write(&path, &good[..10]).unwrap();
        let error = read(dir.path()).unwrap_err().to_string();
        assert!(error.contains("bad magic"), "{error}");
    }
}
