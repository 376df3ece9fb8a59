//! The snapshot encoding: the whole store (history since compaction included) as bytes.
//!
//! Layout (all integers little-endian):
//! `MAGIC` (8 bytes) · format version u32 · revision i64 · compact revision i64 ·
//! key count u64 · per key { key length u32, key, version count u32, per version { revision i64,
//! sub u32, create_revision i64, version i64, lease i64, value length u32, value } } ·
//! lease count u64 · per lease { id i64, ttl i64 } · alarm count u64 · per alarm { member u64, alarm i32 } ·
//! (version 2 only) auth { enabled u8, auth revision u64, enabled-at auth revision u64, user count u64, per user { name length
//! u32, name, no_password u8, hash length u32, hash, role count u32, per role { length u32, name } },
//! role count u64, per role { name length u32, name, permission count u32, per permission {
//! type i32, key length u32, key, range_end length u32, range_end } } } ·
//! CRC-32 (IEEE) of everything before it, u32.
//! Version 1 (no auth section) still decodes, with auth disabled at auth revision 1.
//! Lease attachments are not stored: they are rebuilt from each key's current version.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};

use etcd_proto::authpb::Permission;

use crate::auth::User;
use crate::keyspace::{Change, Entry, KeyHistory, KeyIndex};
use crate::leases::Lease;
use crate::store::Store;

/// First bytes of every snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"PGWMVCC\0";
/// The format [`Store::encode_snapshot`] writes; [`Store::decode_snapshot`] also reads version 1.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 2;
/// The oldest format [`Store::decode_snapshot`] still reads (before auth state was stored).
const OLDEST_READABLE_VERSION: u32 = 1;

/// Why snapshot bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not an mvcc snapshot (bad magic)")]
    BadMagic,
    #[error("unsupported mvcc snapshot format version {found} (this build reads {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error(
        "mvcc snapshot checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): corrupted"
    )]
    Checksum { stored: u32, computed: u32 },
    #[error("mvcc snapshot truncated")]
    Truncated,
    #[error("mvcc snapshot malformed: {0}")]
    Malformed(&'static str),
}

struct Reader<'a> {
    bytes: &'a [u8],
    /// Where decoded values go: copied out, or shared from a mapping of the same bytes.
    values: Values<'a>,
}

/// How [`Reader::value`] hands out values.
#[derive(Clone, Copy)]
enum Values<'a> {
    /// Each value is copied into its own buffer.
    Copied,
    /// `mapped` holds the same bytes as `encoded`; a value at `encoded[range]` is `mapped.slice(range)`.
    Shared {
        encoded: &'a [u8],
        mapped: &'a Bytes,
    },
}

/// Position of `part` inside `whole` (`part` is a subslice of it).
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], SnapshotError> {
        if self.bytes.len() < count {
            return Err(SnapshotError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, SnapshotError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }

    fn text(&mut self) -> Result<String, SnapshotError> {
        let length = self.u32()? as usize;
        String::from_utf8(self.take(length)?.to_vec())
            .map_err(|_| SnapshotError::Malformed("auth name or hash is not UTF-8"))
    }

    fn blob(&mut self) -> Result<Bytes, SnapshotError> {
        Ok(Bytes::copy_from_slice(self.slice()?))
    }

    /// A length-prefixed byte string, borrowed.
    fn slice(&mut self) -> Result<&'a [u8], SnapshotError> {
        let length = self.u32()? as usize;
        self.take(length)
    }

    /// A length-prefixed value: copied, or a slice of the mapped bytes.
    fn value(&mut self) -> Result<Bytes, SnapshotError> {
        let value = self.slice()?;
        Ok(match self.values {
            Values::Copied => Bytes::copy_from_slice(value),
            Values::Shared { encoded, mapped } => {
                let start = offset_in(encoded, value);
                mapped.slice(start..start + value.len())
            }
        })
    }

    /// One version's fields after its key: (revision, sub, create_revision, version, lease).
    fn version_fields(&mut self) -> Result<(i64, u32, i64, i64, i64), SnapshotError> {
        Ok((
            self.i64()?,
            self.u32()?,
            self.i64()?,
            self.i64()?,
            self.i64()?,
        ))
    }

    /// A count that cannot exceed what the remaining bytes could hold, so a corrupt count cannot
    /// make decode reserve huge amounts of memory.
    fn count(&mut self, min_item_size: usize) -> Result<usize, SnapshotError> {
        let count = usize::try_from(self.u64()?).map_err(|_| SnapshotError::Truncated)?;
        if count.saturating_mul(min_item_size) > self.bytes.len() {
            return Err(SnapshotError::Truncated);
        }
        Ok(count)
    }
}

/// Bytes per block that decoded keys are copied into.
const KEY_BLOCK: usize = 4096;

/// Decoded keys, copied into shared blocks of [`KEY_BLOCK`] bytes instead of a heap block (and a
/// reference-count header) each. A block lives while any key in it does; small blocks keep what
/// a few surviving keys pin small.
#[derive(Default)]
struct KeyArena {
    block: BytesMut,
}

impl KeyArena {
    fn copy(&mut self, key: &[u8]) -> Bytes {
        if self.block.capacity() - self.block.len() < key.len() {
            self.block = BytesMut::with_capacity(KEY_BLOCK.max(key.len()));
        }
        self.block.extend_from_slice(key);
        self.block.split().freeze()
    }
}

fn put_blob(out: &mut Vec<u8>, blob: &[u8]) {
    // Keys and values are bounded by the request size limit (far below 4 GiB).
    out.extend_from_slice(&(blob.len() as u32).to_le_bytes());
    out.extend_from_slice(blob);
}

impl Store {
    /// A versioned, self-checking binary encoding of the whole state (see the module docs).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        // Sized before writing: growing a buffer of hundreds of megabytes by doubling would copy
        // it several times and leave the allocator twice its size to give back.
        let keys: usize = self
            .keys
            .iter()
            .map(|(key, history)| {
                8 + key.len()
                    + history
                        .entries()
                        .iter()
                        .map(|entry| 40 + entry.value.len())
                        .sum::<usize>()
            })
            .sum();
        let mut out =
            Vec::with_capacity(keys + 64 * 1024 + self.leases.len() * 16 + self.alarms.len() * 12);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.revision.to_le_bytes());
        out.extend_from_slice(&self.compact_revision.to_le_bytes());
        out.extend_from_slice(&(self.keys.len() as u64).to_le_bytes());
        for (key, history) in &self.keys {
            put_blob(&mut out, key);
            out.extend_from_slice(&(history.entries().len() as u32).to_le_bytes());
            for entry in history.entries() {
                out.extend_from_slice(&entry.revision.to_le_bytes());
                out.extend_from_slice(&entry.sub.to_le_bytes());
                out.extend_from_slice(&entry.create_revision.to_le_bytes());
                out.extend_from_slice(&entry.version.to_le_bytes());
                out.extend_from_slice(&entry.lease.to_le_bytes());
                put_blob(&mut out, &entry.value);
            }
        }
        out.extend_from_slice(&(self.leases.len() as u64).to_le_bytes());
        for (id, lease) in &self.leases {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&lease.ttl.to_le_bytes());
        }
        out.extend_from_slice(&(self.alarms.len() as u64).to_le_bytes());
        for (member, alarm) in &self.alarms {
            out.extend_from_slice(&member.to_le_bytes());
            out.extend_from_slice(&alarm.to_le_bytes());
        }
        self.encode_auth(&mut out);
        let checksum = crc32fast::hash(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    fn encode_auth(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.auth.enabled));
        out.extend_from_slice(&self.auth.revision.to_le_bytes());
        out.extend_from_slice(&self.auth.enabled_revision.to_le_bytes());
        out.extend_from_slice(&(self.auth.users.len() as u64).to_le_bytes());
        for (name, user) in &self.auth.users {
            put_blob(out, name.as_bytes());
            out.push(u8::from(user.no_password));
            put_blob(out, user.password_hash.as_bytes());
            out.extend_from_slice(&(user.roles.len() as u32).to_le_bytes());
            for role in &user.roles {
                put_blob(out, role.as_bytes());
            }
        }
        out.extend_from_slice(&(self.auth.roles.len() as u64).to_le_bytes());
        for (name, permissions) in &self.auth.roles {
            put_blob(out, name.as_bytes());
            out.extend_from_slice(&(permissions.len() as u32).to_le_bytes());
            for permission in permissions {
                out.extend_from_slice(&permission.perm_type.to_le_bytes());
                put_blob(out, &permission.key);
                put_blob(out, &permission.range_end);
            }
        }
    }

    fn decode_auth(&mut self, reader: &mut Reader<'_>) -> Result<(), SnapshotError> {
        self.auth.enabled = match reader.u8()? {
            0 => false,
            1 => true,
            _ => return Err(SnapshotError::Malformed("auth enabled flag")),
        };
        self.auth.revision = reader.u64()?;
        self.auth.enabled_revision = reader.u64()?;
        if self.auth.enabled_revision > self.auth.revision {
            return Err(SnapshotError::Malformed(
                "auth enabled after its own revision",
            ));
        }
        let user_count = reader.count(13)?;
        for _ in 0..user_count {
            let name = reader.text()?;
            let no_password = reader.u8()? != 0;
            let password_hash = reader.text()?;
            let role_count = reader.u32()? as usize;
            let mut roles = BTreeSet::new();
            for _ in 0..role_count {
                roles.insert(reader.text()?);
            }
            let user = User {
                password_hash,
                no_password,
                roles,
            };
            if self.auth.users.insert(name, user).is_some() {
                return Err(SnapshotError::Malformed("duplicate user"));
            }
        }
        let role_count = reader.count(8)?;
        for _ in 0..role_count {
            let name = reader.text()?;
            let permission_count = reader.u32()? as usize;
            if permission_count.saturating_mul(12) > reader.bytes.len() {
                return Err(SnapshotError::Truncated);
            }
            let mut permissions = Vec::with_capacity(permission_count);
            for _ in 0..permission_count {
                permissions.push(Permission {
                    perm_type: reader.i32()?,
                    key: reader.blob()?,
                    range_end: reader.blob()?,
                });
            }
            if self.auth.roles.insert(name, permissions).is_some() {
                return Err(SnapshotError::Malformed("duplicate role"));
            }
        }
        Ok(())
    }

    /// Rebuilds a store from [`Store::encode_snapshot`] bytes; refuses another format version, a
    /// checksum mismatch, truncation, and contents that break the store's invariants.
    /// Every value is copied out of `bytes`.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<Store, SnapshotError> {
        Store::decode(bytes, Values::Copied)
    }

    /// [`Store::decode_snapshot`] whose values are not copied but shared from `mapped`, which holds
    /// the same bytes as `bytes` (typically a read-only mapping of the file they were read from):
    /// the store then keeps only its key index in memory and the values stay in the page cache.
    /// Reading `bytes`, not `mapped`, leaves the mapping's pages untouched until a value is read.
    pub fn decode_snapshot_sharing(bytes: &[u8], mapped: &Bytes) -> Result<Store, SnapshotError> {
        if mapped.len() != bytes.len() {
            return Err(SnapshotError::Malformed(
                "mapped bytes differ in length from the snapshot",
            ));
        }
        Store::decode(
            bytes,
            Values::Shared {
                encoded: bytes,
                mapped,
            },
        )
    }

    fn decode(bytes: &[u8], values: Values<'_>) -> Result<Store, SnapshotError> {
        let (found, body) = checked_body(bytes)?;
        let mut reader = Reader {
            bytes: &body[SNAPSHOT_MAGIC.len() + 4..],
            values,
        };
        let mut store = Store::new();
        store.revision = reader.i64()?;
        store.compact_revision = reader.i64()?;
        if store.revision < 1
            || store.compact_revision < 0
            || store.compact_revision > store.revision
        {
            return Err(SnapshotError::Malformed(
                "revision or compact revision out of range",
            ));
        }

        let key_count = reader.count(8)?;
        // Keys arrive in ascending order (checked below), so the index is bulk-built at the end.
        let mut keys: Vec<(Bytes, KeyHistory)> = Vec::with_capacity(key_count);
        let mut attachments: Vec<(i64, Bytes)> = Vec::new();
        let mut previous_key: Option<Bytes> = None;
        let mut arena = KeyArena::default();
        for _ in 0..key_count {
            let key = arena.copy(reader.slice()?);
            if key.is_empty()
                || previous_key
                    .as_ref()
                    .is_some_and(|previous| *previous >= key)
            {
                return Err(SnapshotError::Malformed(
                    "keys empty or not strictly ascending",
                ));
            }
            let entry_count = reader.u32()? as usize;
            if entry_count == 0 || entry_count.saturating_mul(40) > reader.bytes.len() {
                return Err(SnapshotError::Malformed(
                    "key without versions or bad version count",
                ));
            }
            let mut history = KeyHistory::with_capacity(entry_count);
            for _ in 0..entry_count {
                let (revision, sub, create_revision, version, lease) = reader.version_fields()?;
                let entry = Entry {
                    revision,
                    sub,
                    create_revision,
                    version,
                    lease,
                    value: reader.value()?,
                };
                let ordered = history
                    .entries()
                    .last()
                    .is_none_or(|last| (last.revision, last.sub) < (entry.revision, entry.sub));
                if !ordered || entry.revision > store.revision || entry.revision < 2 {
                    return Err(SnapshotError::Malformed(
                        "versions out of order or out of range",
                    ));
                }
                history.push(entry);
            }
            if let Some(current) = history.latest_live() {
                store.live_keys += 1;
                if current.lease != 0 {
                    attachments.push((current.lease, key.clone()));
                }
            }
            if history.is_compactable() {
                store.compactable.insert(key.clone());
            }
            previous_key = Some(key.clone());
            keys.push((key, history));
        }
        let mut changes: Vec<Change> = keys
            .iter()
            .flat_map(|(key, history)| {
                history
                    .entries()
                    .iter()
                    .filter(|entry| entry.revision > store.compact_revision)
                    .map(|entry| Change {
                        revision: entry.revision,
                        sub: entry.sub,
                        key: key.clone(),
                    })
            })
            .collect();
        changes.sort_by_key(|change| (change.revision, change.sub));
        if changes
            .windows(2)
            .any(|pair| (pair[0].revision, pair[0].sub) == (pair[1].revision, pair[1].sub))
        {
            return Err(SnapshotError::Malformed(
                "two changes share a revision and sub-revision",
            ));
        }
        // The live store's log keeps only its newest changes; so does the decoded one.
        let dropped = changes.len().saturating_sub(store.revision_log_capacity);
        if let Some(last_dropped) = dropped.checked_sub(1).map(|index| &changes[index]) {
            store.changes_from = last_dropped.revision + 1;
        }
        changes.drain(..dropped);
        store.changes = changes.into();
        store.keys = keys.into_iter().collect::<KeyIndex>();

        let lease_count = reader.count(16)?;
        for _ in 0..lease_count {
            let id = reader.i64()?;
            let ttl = reader.i64()?;
            if store
                .leases
                .insert(
                    id,
                    Lease {
                        ttl,
                        keys: BTreeSet::new(),
                    },
                )
                .is_some()
            {
                return Err(SnapshotError::Malformed("duplicate lease"));
            }
        }
        for (id, key) in attachments {
            let lease = store
                .leases
                .get_mut(&id)
                .ok_or(SnapshotError::Malformed("key attached to an unknown lease"))?;
            lease.keys.insert(key);
        }

        let alarm_count = reader.count(12)?;
        for _ in 0..alarm_count {
            let member = reader.u64()?;
            let alarm = reader.i32()?;
            store.alarms.insert((member, alarm));
        }
        if found >= 2 {
            store.decode_auth(&mut reader)?;
        }
        if !reader.bytes.is_empty() {
            return Err(SnapshotError::Malformed("trailing bytes"));
        }
        Ok(store)
    }
}

/// Checks magic, format version and checksum of [`Store::encode_snapshot`] bytes; returns the
/// format version and the bytes before the checksum.
fn checked_body(bytes: &[u8]) -> Result<(u32, &[u8]), SnapshotError> {
    if bytes.len() < SNAPSHOT_MAGIC.len() || &bytes[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let mut header = Reader {
        bytes: &bytes[SNAPSHOT_MAGIC.len()..],
        values: Values::Copied,
    };
    let found = header.u32()?;
    if !(OLDEST_READABLE_VERSION..=SNAPSHOT_FORMAT_VERSION).contains(&found) {
        return Err(SnapshotError::UnsupportedVersion {
            found,
            supported: SNAPSHOT_FORMAT_VERSION,
        });
    }
    if bytes.len() < SNAPSHOT_MAGIC.len() + 8 {
        return Err(SnapshotError::Truncated);
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 4);
    let mut stored = [0u8; 4];
    stored.copy_from_slice(trailer);
    let stored = u32::from_le_bytes(stored);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    Ok((found, body))
}

/// Where one stored version's value sits in snapshot bytes, as listed by [`SnapshotValues`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotValue<'a> {
    pub key: &'a [u8],
    pub revision: i64,
    pub sub: u32,
    /// The value's byte range in the snapshot bytes.
    pub value: std::ops::Range<usize>,
}

/// Lists where every version's value sits in [`Store::encode_snapshot`] bytes, in key order, so
/// the caller can point the store's values at a mapping of those bytes with
/// [`Store::share_value`], a batch at a time. Stops at the first malformed record.
pub struct SnapshotValues<'a> {
    encoded: &'a [u8],
    reader: Reader<'a>,
    keys_left: usize,
    key: &'a [u8],
    versions_left: usize,
}

impl<'a> SnapshotValues<'a> {
    /// Checks `bytes` whole (magic, version, checksum) and positions before the first key.
    pub fn new(bytes: &'a [u8]) -> Result<SnapshotValues<'a>, SnapshotError> {
        let (_, body) = checked_body(bytes)?;
        let mut reader = Reader {
            bytes: &body[SNAPSHOT_MAGIC.len() + 4..],
            values: Values::Copied,
        };
        reader.i64()?;
        reader.i64()?;
        let keys_left = reader.count(8)?;
        Ok(SnapshotValues {
            encoded: bytes,
            reader,
            keys_left,
            key: &[],
            versions_left: 0,
        })
    }

    fn step(&mut self) -> Result<Option<SnapshotValue<'a>>, SnapshotError> {
        while self.versions_left == 0 {
            if self.keys_left == 0 {
                return Ok(None);
            }
            self.keys_left -= 1;
            self.key = self.reader.slice()?;
            self.versions_left = self.reader.u32()? as usize;
        }
        self.versions_left -= 1;
        let (revision, sub, ..) = self.reader.version_fields()?;
        let value = self.reader.slice()?;
        let start = offset_in(self.encoded, value);
        Ok(Some(SnapshotValue {
            key: self.key,
            revision,
            sub,
            value: start..start + value.len(),
        }))
    }
}

impl<'a> Iterator for SnapshotValues<'a> {
    type Item = Result<SnapshotValue<'a>, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        let step = self.step();
        if step.is_err() {
            self.keys_left = 0;
            self.versions_left = 0;
        }
        step.transpose()
    }
}

impl Store {
    /// Replaces the value of `key`'s version at (`revision`, `sub`) with `value`, an equal copy
    /// held elsewhere (a slice of a snapshot file's mapping, see [`SnapshotValues`]), so the
    /// store's own copy can be freed. A version never changes once written, so the same
    /// (key, revision, sub) always names the same value; a version no longer stored (compacted,
    /// or the store replaced) or of another length is left alone. Returns whether it was replaced.
    pub fn share_value(&mut self, key: &[u8], revision: i64, sub: u32, value: Bytes) -> bool {
        let Some(history) = self.keys.get_mut(key) else {
            return false;
        };
        let Ok(index) = history
            .entries()
            .binary_search_by(|entry| (entry.revision, entry.sub).cmp(&(revision, sub)))
        else {
            return false;
        };
        let entry = &mut history.entries_mut()[index];
        if entry.value.len() != value.len() {
            return false;
        }
        debug_assert!(entry.value == value, "a stored version changed");
        entry.value = value;
        true
    }
}
