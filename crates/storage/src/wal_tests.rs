//! The write-ahead log on its own: an interrupted write at the end is dropped and the log goes
//! on, damage anywhere else is refused by file, and a purge deletes whole segments without
//! losing the vote, committed id or purge point.

use super::*;

fn entry(index: u64, bytes: &[u8]) -> Record<'_> {
    Record::Entry { index, bytes }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(WAL_DIR).join(segment_name(seq))
}

fn all(reader: &WalReader) -> Vec<(u64, Vec<u8>)> {
    reader.read_range(0, u64::MAX).unwrap()
}

#[test]
fn records_survive_reopen_and_truncation_replays() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut wal, reader, meta) = Wal::open(dir.path()).unwrap();
        assert!(meta.vote.is_none());
        wal.write(
            &[Record::Vote(b"v1"), entry(1, b"one"), entry(2, b"two")],
            Flush::Sync,
        )
        .unwrap();
        wal.write(
            &[
                Record::Truncate { from: 2 },
                entry(2, b"TWO"),
                entry(3, b"three"),
            ],
            Flush::Sync,
        )
        .unwrap();
        wal.write(&[Record::Committed(b"c3")], Flush::Sync).unwrap();
        assert_eq!(reader.last_index(), Some(3));
    }
    let (_, reader, meta) = Wal::open(dir.path()).unwrap();
    assert_eq!(
        all(&reader),
        vec![
            (1, b"one".to_vec()),
            (2, b"TWO".to_vec()),
            (3, b"three".to_vec())
        ]
    );
    assert_eq!(meta.vote.as_deref(), Some(b"v1".as_slice()));
    assert_eq!(meta.committed.as_deref(), Some(b"c3".as_slice()));
}

#[test]
fn an_interrupted_write_at_the_end_is_dropped_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let end = {
        let (mut wal, _, _) = Wal::open(dir.path()).unwrap();
        wal.write(&[entry(1, b"one"), entry(2, b"two")], Flush::Sync)
            .unwrap();
        wal.write_offset
    };
    // Half a record: its head promises more bytes than were written before the crash.
    let mut torn = Vec::new();
    let _ = encode(entry(3, b"three, never acknowledged"), &mut torn);
    let file = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), 1))
        .unwrap();
    file.write_all_at(&torn[..torn.len() / 2], end).unwrap();
    drop(file);

    {
        let (mut wal, reader, _) = Wal::open(dir.path()).unwrap();
        assert_eq!(reader.last_index(), Some(2));
        assert_eq!(wal.write_offset, end);
        wal.write(&[entry(3, b"3")], Flush::Sync).unwrap();
    }
    let (_, reader, _) = Wal::open(dir.path()).unwrap();
    assert_eq!(
        all(&reader),
        vec![
            (1, b"one".to_vec()),
            (2, b"two".to_vec()),
            (3, b"3".to_vec())
        ]
    );
}

#[test]
fn a_damaged_record_in_an_older_segment_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![7u8; SEGMENT_BYTES as usize];
    {
        let (mut wal, _, _) = Wal::open(dir.path()).unwrap();
        wal.write(&[entry(1, b"one")], Flush::Sync).unwrap();
        // Does not fit in what is left of segment 1: goes to segment 2.
        wal.write(&[entry(2, &big)], Flush::Sync).unwrap();
    }
    assert!(segment_path(dir.path(), 2).exists());
    let path = segment_path(dir.path(), 1);
    let mut bytes = fs::read(&path).unwrap();
    bytes[HEADER_BYTES as usize + RECORD_HEAD_BYTES + 3] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let error = Wal::open(dir.path()).err().unwrap().to_string();
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("damaged record"), "{error}");
}

#[test]
fn a_purge_deletes_whole_older_segments_and_keeps_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![7u8; SEGMENT_BYTES as usize];
    {
        let (mut wal, reader, _) = Wal::open(dir.path()).unwrap();
        wal.write(
            &[
                Record::Vote(b"v"),
                entry(1, b"one"),
                Record::Committed(b"c1"),
            ],
            Flush::Sync,
        )
        .unwrap();
        wal.write(&[entry(2, &big)], Flush::Sync).unwrap();
        wal.write(&[entry(3, b"three")], Flush::Sync).unwrap();
        wal.write(
            &[Record::Purged {
                upto: 1,
                bytes: b"p1",
            }],
            Flush::Sync,
        )
        .unwrap();
        assert!(!segment_path(dir.path(), 1).exists());
        assert_eq!(reader.read_range(0, 10).unwrap().len(), 2);
    }
    let (_, reader, meta) = Wal::open(dir.path()).unwrap();
    assert_eq!(meta.vote.as_deref(), Some(b"v".as_slice()));
    assert_eq!(meta.committed.as_deref(), Some(b"c1".as_slice()));
    assert_eq!(meta.purged, Some((1, b"p1".to_vec())));
    let entries = all(&reader);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].0, 2);
    assert_eq!(entries[1], (3, b"three".to_vec()));
}

#[test]
fn a_file_that_is_not_a_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Wal::open(dir.path()).unwrap());
    let stray = dir.path().join(WAL_DIR).join("notes.txt");
    fs::write(&stray, b"hello").unwrap();
    let error = Wal::open(dir.path()).err().unwrap().to_string();
    assert!(error.contains(&stray.display().to_string()), "{error}");
    fs::remove_file(&stray).unwrap();
    fs::write(segment_path(dir.path(), 1), b"not a segment").unwrap();
    let error = Wal::open(dir.path()).err().unwrap().to_string();
    assert!(error.contains("bad magic"), "{error}");
}

#[test]
fn groups_cross_into_a_new_segment_and_a_leftover_temp_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mib = vec![1u8; 1024 * 1024];
    {
        let (mut wal, _, _) = Wal::open(dir.path()).unwrap();
        for index in 1..=20 {
            wal.write(&[entry(index, &mib)], Flush::Sync).unwrap();
        }
        assert!(segment_path(dir.path(), 2).exists());
    }
    // A crash while a segment was being made leaves its temporary file.
    fs::write(
        dir.path()
            .join(WAL_DIR)
            .join(format!("{}.tmp", segment_name(9))),
        b"half made",
    )
    .unwrap();
    let (_, reader, _) = Wal::open(dir.path()).unwrap();
    let entries = all(&reader);
    assert_eq!(entries.len(), 20);
    assert!(entries.iter().all(|(_, bytes)| bytes == &mib));
}
