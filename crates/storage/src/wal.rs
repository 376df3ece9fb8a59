//! The Raft log's write-ahead file: entries, vote, committed id, truncations and the purge point
//! as checksummed records appended to preallocated segment files, one `fdatasync` per group.
//!
//! Why not a redb table: a redb commit rewrites and checksums several B-tree pages and costs
//! 2–4 times a plain `fdatasync` of the same entries on this kind of disk; every Raft append
//! (the leader's and each follower's) waits for one. A segment's blocks are allocated when it is
//! made (`posix_fallocate`), so an append never grows the file; on ext4 its `fdatasync` then
//! costs what one on a zero-filled file does (≈0.13 ms here), without writing 16 MiB of zeros
//! that would stall the log's own `fdatasync`s behind them (p99 of 16-client puts: ~40 ms).
//!
//! Layout of `dir/`[`WAL_DIR`]`/<seq as 16 hex digits>.seg` (integers little-endian):
//! [`SEGMENT_MAGIC`] (8 bytes), then records until the first zero length:
//! length u32 (of kind + body) · CRC-32 of kind + body u32 · kind u8 · body.
//! Kinds: entry (index u64 · the entry's [`crate::codec`] encoding), truncate (first removed
//! index u64), vote, committed and purged (serde_json, as the META keys of format 2 held them).
//!
//! Crash safety: a segment is created as `<name>.tmp`, allocated, fsynced, renamed and the
//! directory fsynced before any record goes to it (unwritten blocks read as zeros). A record is acknowledged only after the
//! `fdatasync` that covers it. On open, a record that is cut short or fails its checksum in the
//! newest segment is a write the crash interrupted (never acknowledged): it and everything after
//! it are zeroed. The same in an older segment is corruption, refused with the file and offset.
//! Every new segment starts by restating the vote, committed id and purge point, so a purge may
//! delete whole older segments (those whose entries are all purged) without losing them.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::StorageError;

/// Directory of the segment files inside the member's data dir.
pub const WAL_DIR: &str = "wal";
/// Size a segment is created with (its blocks allocated). A group of records larger than what is left
/// starts a new segment, sized to hold it if it is larger than this.
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// First bytes of every segment file.
pub const SEGMENT_MAGIC: &[u8; 8] = b"PGWWAL\0\x01";

const HEADER_BYTES: u64 = 8;
const RECORD_HEAD_BYTES: usize = 8;
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_VOTE: u8 = 3;
const KIND_COMMITTED: u8 = 4;
const KIND_PURGED: u8 = 5;

/// One record to append.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Record<'a> {
    Entry {
        index: u64,
        bytes: &'a [u8],
    },
    Truncate {
        from: u64,
    },
    Vote(&'a [u8]),
    Committed(&'a [u8]),
    /// serde_json of the last purged log id, and its index.
    Purged {
        upto: u64,
        bytes: &'a [u8],
    },
}

/// Where one entry's encoding lies.
#[derive(Debug, Clone, Copy)]
struct Position {
    segment: u64,
    offset: u64,
    len: u32,
}

/// The entries' positions and the open segment files: shared by the writer (which updates it
/// once a write is durable) and readers (which copy positions out and read without the lock).
#[derive(Default)]
struct Index {
    entries: BTreeMap<u64, Position>,
    files: BTreeMap<u64, Arc<File>>,
}

/// Reads entries' encodings; cheap to clone, usable from any thread.
#[derive(Clone)]
pub(crate) struct WalReader {
    index: Arc<Mutex<Index>>,
}

/// The metadata replayed at open (serde_json encodings, as written).
#[derive(Debug, Default, Clone)]
pub(crate) struct WalMeta {
    pub(crate) vote: Option<Vec<u8>>,
    pub(crate) committed: Option<Vec<u8>>,
    /// The purge point's index and serde_json.
    pub(crate) purged: Option<(u64, Vec<u8>)>,
}

impl WalMeta {
    /// The records that state this metadata (what every new segment starts with).
    fn records(&self) -> Vec<Record<'_>> {
        let mut records = Vec::with_capacity(3);
        if let Some(vote) = &self.vote {
            records.push(Record::Vote(vote));
        }
        if let Some(committed) = &self.committed {
            records.push(Record::Committed(committed));
        }
        if let Some((upto, json)) = &self.purged {
            records.push(Record::Purged {
                upto: *upto,
                bytes: json,
            });
        }
        records
    }
}

/// A segment as the writer tracks it.
struct Segment {
    seq: u64,
    path: PathBuf,
    /// Highest entry index ever written to it (truncated or not): it may be deleted once the
    /// purge point reaches this.
    max_index: Option<u64>,
}

/// The writer's side; owned by the log writer thread.
pub(crate) struct Wal {
    dir: PathBuf,
    /// Oldest first; the last one is being appended to.
    segments: Vec<Segment>,
    current: Arc<File>,
    write_offset: u64,
    capacity: u64,
    /// Latest metadata, restated at the start of every new segment.
    meta: WalMeta,
    index: Arc<Mutex<Index>>,
    /// Something was written to the current segment since its last `fdatasync`.
    unsynced: bool,
}

/// How far [`Wal::write`] takes its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// To disk (`fdatasync`), with everything written before.
    Sync,
    /// Into the page cache only: they survive the process, and a power cut only until the next
    /// synced write.
    PageCache,
}

/// The index, also after a panic elsewhere while it was held (it holds plain maps).
fn lock(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    index
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl WalReader {
    /// The encodings of the entries in `[start, end)` that the log holds, in index order.
    pub(crate) fn read_range(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let wanted: Vec<(u64, Position, Arc<File>)> = {
            let index = lock(&self.index);
            let mut wanted = Vec::new();
            for (entry, position) in index.entries.range(start..end) {
                let file = index.files.get(&position.segment).ok_or_else(|| {
                    StorageError::Corrupt(format!(
                        "log entry {entry}: segment {} is not open",
                        position.segment
                    ))
                })?;
                wanted.push((*entry, *position, file.clone()));
            }
            wanted
        };
        let mut out = Vec::with_capacity(wanted.len());
        for (entry, position, file) in wanted {
            let mut bytes = vec![0; position.len as usize];
            file.read_exact_at(&mut bytes, position.offset)
                .map_err(|e| {
                    StorageError::Corrupt(format!(
                        "read log entry {entry} from segment {}: {e}",
                        position.segment
                    ))
                })?;
            out.push((entry, bytes));
        }
        Ok(out)
    }

    /// The highest index the log holds.
    pub(crate) fn last_index(&self) -> Option<u64> {
        lock(&self.index)
            .entries
            .last_key_value()
            .map(|(index, _)| *index)
    }

    /// How many entries the log holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.index).entries.len()
    }
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.seg")
}

fn io_error(what: &str, path: &Path, source: io::Error) -> StorageError {
    StorageError::LogIo {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("fsync directory", dir, e))
}

/// Appends `record` in its on-disk form to `out`; returns where it lies there (so a writer
/// need not scan its own buffer again).
pub(crate) fn encode(record: Record<'_>, out: &mut Vec<u8>) -> ReadRecord {
    let (kind, head, body): (u8, Option<u64>, &[u8]) = match record {
        Record::Entry { index, bytes } => (KIND_ENTRY, Some(index), bytes),
        Record::Truncate { from } => (KIND_TRUNCATE, Some(from), &[]),
        Record::Vote(bytes) => (KIND_VOTE, None, bytes),
        Record::Committed(bytes) => (KIND_COMMITTED, None, bytes),
        Record::Purged { upto, bytes } => (KIND_PURGED, Some(upto), bytes),
    };
    let head_len = if head.is_some() { 8 } else { 0 };
    let len = 1 + head_len + body.len();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    if let Some(head) = head {
        out.extend_from_slice(&head.to_le_bytes());
    }
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out[start + RECORD_HEAD_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    ReadRecord {
        kind,
        body: start + RECORD_HEAD_BYTES + 1..out.len(),
    }
}

/// Creates segment `seq` in `dir` of `size` bytes, its blocks allocated (`posix_fallocate`) so
/// that appends never allocate, durable under its final name before it is used.
fn create_segment(dir: &Path, seq: u64, size: u64) -> Result<(PathBuf, File), StorageError> {
    let path = dir.join(segment_name(seq));
    let temp = dir.join(format!("{}.tmp", segment_name(seq)));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)
        .map_err(|e| io_error("create log segment", &temp, e))?;
    let length = i64::try_from(size).map_err(|_| {
        StorageError::Corrupt(format!("{}: segment size {size} too large", temp.display()))
    })?;
    let fill = || -> io::Result<()> {
        nix::fcntl::posix_fallocate(&file, 0, length).map_err(io::Error::from)?;
        file.write_all_at(SEGMENT_MAGIC, 0)?;
        file.sync_all()
    };
    fill().map_err(|e| io_error("allocate log segment", &temp, e))?;
    fs::rename(&temp, &path).map_err(|e| io_error("rename log segment", &temp, e))?;
    sync_dir(dir)?;
    Ok((path, file))
}

/// One record found in (or written to) a buffer of records.
pub(crate) struct ReadRecord {
    kind: u8,
    /// Where the body (after the kind byte) lies in the scanned bytes.
    body: std::ops::Range<usize>,
}

/// How a scan of records ended.
struct ScanEnd {
    /// Offset after the last good record.
    offset: usize,
    /// Something other than a clean end (zeros) was found there: a cut or damaged record.
    damaged: bool,
}

/// Reads the records of `bytes` from `start` on, up to the first zero length or the end.
fn scan(bytes: &[u8], start: usize) -> (Vec<ReadRecord>, ScanEnd) {
    let mut records = Vec::new();
    let mut offset = start;
    loop {
        let Some(head) = bytes.get(offset..offset + RECORD_HEAD_BYTES) else {
            // No room for a further record head: a clean end only if nothing but zeros is left.
            let damaged = bytes[offset.min(bytes.len())..].iter().any(|b| *b != 0);
            return (records, ScanEnd { offset, damaged });
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 {
            return (
                records,
                ScanEnd {
                    offset,
                    damaged: crc != 0,
                },
            );
        }
        let body_start = offset + RECORD_HEAD_BYTES;
        let Some(body) = bytes.get(body_start..body_start + len) else {
            return (
                records,
                ScanEnd {
                    offset,
                    damaged: true,
                },
            );
        };
        if crc32fast::hash(body) != crc {
            return (
                records,
                ScanEnd {
                    offset,
                    damaged: true,
                },
            );
        }
        records.push(ReadRecord {
            kind: body[0],
            body: body_start + 1..body_start + len,
        });
        offset = body_start + len;
    }
}

/// A record's body split into its leading u64 and the rest; `None` when it is too short.
fn split_head(body: &[u8]) -> Option<(u64, &[u8])> {
    let head: [u8; 8] = body.get(..8)?.try_into().ok()?;
    Some((u64::from_le_bytes(head), &body[8..]))
}

/// What replaying one record does to the index and the metadata. `base` is the file offset of
/// the scanned bytes' start.
fn replay(
    record: &ReadRecord,
    bytes: &[u8],
    base: u64,
    segment: &mut Segment,
    index: &mut Index,
    meta: &mut WalMeta,
) -> Result<(), String> {
    let body = &bytes[record.body.clone()];
    let headed =
        || split_head(body).ok_or_else(|| format!("record of kind {} is too short", record.kind));
    match record.kind {
        KIND_ENTRY => {
            let (entry, encoding) = headed()?;
            index.entries.insert(
                entry,
                Position {
                    segment: segment.seq,
                    offset: base + record.body.start as u64 + 8,
                    len: encoding.len() as u32,
                },
            );
            segment.max_index = Some(segment.max_index.map_or(entry, |max| max.max(entry)));
        }
        KIND_TRUNCATE => {
            let (from, _) = headed()?;
            drop(index.entries.split_off(&from));
        }
        KIND_VOTE => meta.vote = Some(body.to_vec()),
        KIND_COMMITTED => meta.committed = Some(body.to_vec()),
        KIND_PURGED => {
            let (upto, json) = headed()?;
            index.entries = index.entries.split_off(&upto.saturating_add(1));
            meta.purged = Some((upto, json.to_vec()));
        }
        other => return Err(format!("record of unknown kind {other}")),
    }
    Ok(())
}

impl Wal {
    /// Opens (or creates) the log in `data_dir/wal`, replaying every segment. Returns the writer,
    /// a reader and the replayed metadata.
    pub(crate) fn open(data_dir: &Path) -> Result<(Wal, WalReader, WalMeta), StorageError> {
        let dir = data_dir.join(WAL_DIR);
        fs::create_dir_all(&dir).map_err(|source| StorageError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
        let seqs = list_segments(&dir)?;
        let mut index = Index::default();
        let mut meta = WalMeta::default();
        let mut segments = Vec::new();
        let mut current: Option<(Arc<File>, u64, u64)> = None;
        for (position, seq) in seqs.iter().copied().enumerate() {
            let newest = position + 1 == seqs.len();
            let path = dir.join(segment_name(seq));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_error("open log segment", &path, e))?;
            let mut bytes = Vec::new();
            (&file)
                .read_to_end(&mut bytes)
                .map_err(|e| io_error("read log segment", &path, e))?;
            if bytes.get(..HEADER_BYTES as usize) != Some(SEGMENT_MAGIC.as_slice()) {
                return Err(StorageError::Corrupt(format!(
                    "{}: not a pgwarden log segment (bad magic)",
                    path.display()
                )));
            }
            let (records, end) = scan(&bytes, HEADER_BYTES as usize);
            if end.damaged && !newest {
                return Err(StorageError::Corrupt(format!(
                    "{}: damaged record at offset {} in a segment that is not the newest",
                    path.display(),
                    end.offset
                )));
            }
            let mut segment = Segment {
                seq,
                path: path.clone(),
                max_index: None,
            };
            for record in &records {
                replay(record, &bytes, 0, &mut segment, &mut index, &mut meta).map_err(|what| {
                    StorageError::Corrupt(format!(
                        "{}: offset {}: {what}",
                        path.display(),
                        record.body.start
                    ))
                })?;
            }
            if end.damaged {
                tracing::warn!(path = %path.display(), offset = end.offset, "dropping an interrupted write at the end of the Raft log");
                zero_from(&file, end.offset as u64, bytes.len() as u64)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| io_error("zero the interrupted end", &path, e))?;
            }
            let file = Arc::new(file);
            index.files.insert(seq, file.clone());
            if newest {
                current = Some((file, end.offset as u64, bytes.len() as u64));
            }
            segments.push(segment);
        }
        let (current, write_offset, capacity) = match current {
            Some(current) => current,
            None => {
                let (path, file) = create_segment(&dir, 1, SEGMENT_BYTES)?;
                let file = Arc::new(file);
                index.files.insert(1, file.clone());
                segments.push(Segment {
                    seq: 1,
                    path,
                    max_index: None,
                });
                (file, HEADER_BYTES, SEGMENT_BYTES)
            }
        };
        let index = Arc::new(Mutex::new(index));
        let wal = Wal {
            dir,
            segments,
            current,
            write_offset,
            capacity,
            meta: meta.clone(),
            index: index.clone(),
            unsynced: false,
        };
        Ok((wal, WalReader { index }, meta))
    }

    /// Appends `records` (plus a new segment when the current one is full) and, with
    /// [`Flush::Sync`], makes them and every earlier write durable with one `fdatasync`, whose
    /// duration it returns. Readers see new entries only once this returns `Ok`.
    pub(crate) fn write(
        &mut self,
        records: &[Record<'_>],
        flush: Flush,
    ) -> Result<Option<Duration>, StorageError> {
        let encode_all = |records: &[Record<'_>], buffer: &mut Vec<u8>| -> Vec<ReadRecord> {
            records
                .iter()
                .map(|record| encode(*record, buffer))
                .collect()
        };
        let mut buffer = Vec::new();
        let mut written = encode_all(records, &mut buffer);
        if self.write_offset + buffer.len() as u64 > self.capacity {
            // Only the newest segment may end in a torn record after a power cut.
            self.sync_current()?;
            // The new segment restates the metadata first (encoded again: once per segment).
            let mut restated = self.meta.records();
            restated.extend_from_slice(records);
            buffer.clear();
            written = encode_all(&restated, &mut buffer);
            self.start_segment(buffer.len() as u64)?;
        }
        let base = self.write_offset;
        let path = self.current_path();
        self.current
            .write_all_at(&buffer, base)
            .map_err(|e| io_error("write", &path, e))?;
        self.write_offset += buffer.len() as u64;
        self.unsynced = true;
        let synced = match flush {
            Flush::Sync => {
                let syncing = Instant::now();
                self.sync_current()?;
                Some(syncing.elapsed())
            }
            Flush::PageCache => None,
        };
        self.publish(&buffer, &written, base)?;
        Ok(synced)
    }

    /// `fdatasync`s the current segment if something was written to it since the last one.
    fn sync_current(&mut self) -> Result<(), StorageError> {
        if self.unsynced {
            self.current
                .sync_data()
                .map_err(|e| io_error("fdatasync", &self.current_path(), e))?;
            self.unsynced = false;
        }
        Ok(())
    }

    fn current_path(&self) -> PathBuf {
        self.segments
            .last()
            .map_or_else(|| self.dir.clone(), |segment| segment.path.clone())
    }

    /// Starts a new segment big enough for `needed` bytes of records.
    fn start_segment(&mut self, needed: u64) -> Result<(), StorageError> {
        let seq = self.segments.last().map_or(1, |segment| segment.seq + 1);
        let size = SEGMENT_BYTES.max(HEADER_BYTES + needed + RECORD_HEAD_BYTES as u64);
        let (path, file) = create_segment(&self.dir, seq, size)?;
        let file = Arc::new(file);
        lock(&self.index).files.insert(seq, file.clone());
        self.segments.push(Segment {
            seq,
            path,
            max_index: None,
        });
        self.current = file;
        self.write_offset = HEADER_BYTES;
        self.capacity = size;
        Ok(())
    }

    /// Publishes what `records` of `buffer` (now written at `base` in the current segment)
    /// changed, and deletes the segments a purge in it made useless.
    fn publish(
        &mut self,
        buffer: &[u8],
        records: &[ReadRecord],
        base: u64,
    ) -> Result<(), StorageError> {
        let mut purged = None;
        {
            let mut index = lock(&self.index);
            let Some(segment) = self.segments.last_mut() else {
                return Err(StorageError::Corrupt(
                    "the Raft log has no segment".to_string(),
                ));
            };
            for record in records {
                replay(record, buffer, base, segment, &mut index, &mut self.meta)
                    .map_err(StorageError::Corrupt)?;
                if record.kind == KIND_PURGED {
                    purged = self.meta.purged.as_ref().map(|(upto, _)| *upto);
                }
            }
        }
        if let Some(upto) = purged {
            self.delete_purged_segments(upto)?;
        }
        Ok(())
    }

    /// Deletes the oldest segments (never the current one) whose entries are all at or below
    /// `upto`. Every later segment restates the metadata they held.
    fn delete_purged_segments(&mut self, upto: u64) -> Result<(), StorageError> {
        let deletable = self
            .segments
            .iter()
            .take(self.segments.len().saturating_sub(1))
            .take_while(|segment| segment.max_index.is_none_or(|max| max <= upto))
            .count();
        if deletable == 0 {
            return Ok(());
        }
        let removed: Vec<Segment> = self.segments.drain(..deletable).collect();
        for segment in &removed {
            lock(&self.index).files.remove(&segment.seq);
            fs::remove_file(&segment.path)
                .map_err(|e| io_error("remove purged log segment", &segment.path, e))?;
        }
        sync_dir(&self.dir)
    }
}

/// The segment sequence numbers in `dir`, oldest first; removes segments a crash left half made.
fn list_segments(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let mut seqs = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| io_error("list", dir, e))? {
        let item = item.map_err(|e| io_error("list", dir, e))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            // A segment whose creation a crash interrupted: it never held a record.
            fs::remove_file(item.path()).map_err(|e| io_error("remove", &item.path(), e))?;
            continue;
        }
        let seq = name
            .strip_suffix(".seg")
            .filter(|hex| hex.len() == 16)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| {
                StorageError::Corrupt(format!(
                    "{}: not a log segment name (16 hex digits and .seg)",
                    item.path().display()
                ))
            })?;
        seqs.push(seq);
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Writes zeros over `[from, to)` of `file`.
fn zero_from(file: &File, from: u64, to: u64) -> io::Result<()> {
    let mut offset = from;
    while offset < to {
        let chunk = (to - offset).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..chunk], offset)?;
        offset += chunk as u64;
    }
    Ok(())
}

/// Bytes in the segment files under `data_dir`.
pub(crate) fn size(data_dir: &Path) -> u64 {
    let Ok(items) = fs::read_dir(data_dir.join(WAL_DIR)) else {
        return 0;
    };
    items
        .filter_map(|item| item.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// Writes a log held elsewhere (format 2's redb table) as the WAL of `data_dir`, atomically:
/// built under a temporary directory, fsynced, then renamed into place. Does nothing when
/// `data_dir` already has a WAL (an import that completed before a crash).
pub(crate) fn import(
    data_dir: &Path,
    meta: &WalMeta,
    entries: &[(u64, Vec<u8>)],
) -> Result<(), StorageError> {
    let target = data_dir.join(WAL_DIR);
    if target.exists() {
        return Ok(());
    }
    let staging = data_dir.join("wal-import");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io_error("remove", &staging, e))?;
    }
    {
        let (mut wal, _, _) = Wal::open(&staging)?;
        let mut records = meta.records();
        records.extend(entries.iter().map(|(index, bytes)| Record::Entry {
            index: *index,
            bytes,
        }));
        wal.write(&records, Flush::Sync)?;
    }
    fs::rename(staging.join(WAL_DIR), &target)
        .map_err(|e| io_error("move the imported log here", &target, e))?;
    sync_dir(data_dir)?;
    fs::remove_dir_all(&staging).map_err(|e| io_error("remove", &staging, e))?;
    Ok(())
}

#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
