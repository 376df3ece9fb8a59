//! Range: reads of the key index at the current or a past revision.

use std::cmp::Ordering;

use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use etcd_proto::etcdserverpb::{RangeRequest, RangeResponse};
use etcd_proto::mvccpb::KeyValue;

use crate::keyspace::histories_in;
use crate::store::{Store, header};
use crate::validate::validate_range;

impl Store {
    /// Range at the current or a past revision (`request.revision`, 0 = current), as etcd answers it.
    /// `header.revision` is the current store revision even for a past read; the caller fills the
    /// rest of the header.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        validate_range(request)?;
        let read_revision = self.read_revision(request.revision)?;
        Ok(self.range_at(request, read_revision, self.revision))
    }

    /// The revision a read asking for `requested` sees: <= 0 means current; above current is
    /// `FUTURE_REV`; below the compact revision is `COMPACTED` (reading exactly at it is allowed).
    pub(crate) fn read_revision(&self, requested: i64) -> Result<i64, EtcdError> {
        if requested > self.revision {
            return Err(errors::FUTURE_REV);
        }
        if requested <= 0 {
            return Ok(self.revision);
        }
        if requested < self.compact_revision {
            return Err(errors::COMPACTED);
        }
        Ok(requested)
    }

    /// etcd's range pipeline (server/etcdserver/apply Range): count every live key of the range;
    /// fetch (limit + 1 keys, or the whole range when a sort order or a revision filter is given);
    /// prune by the min/max filters; sort (order NONE with a target other than KEY sorts ascending);
    /// cut to `limit` setting `more`; drop values for `keys_only`. Sorting is stable, so ties stay in
    /// key order (etcd's `sort.Sort` leaves tie order unspecified).
    pub(crate) fn range_at(
        &self,
        request: &RangeRequest,
        read_revision: i64,
        header_revision: i64,
    ) -> RangeResponse {
        let requested_order = SortOrder::try_from(request.sort_order).unwrap_or(SortOrder::None);
        let target = SortTarget::try_from(request.sort_target).unwrap_or(SortTarget::Key);
        let filtered = request.min_mod_revision != 0
            || request.max_mod_revision != 0
            || request.min_create_revision != 0
            || request.max_create_revision != 0;
        let fetch_limit = if request.count_only {
            0
        } else if requested_order != SortOrder::None || filtered || request.limit <= 0 {
            usize::MAX
        } else {
            usize::try_from(request.limit)
                .unwrap_or(usize::MAX)
                .saturating_add(1)
        };

        let mut count = 0_i64;
        let mut kvs: Vec<KeyValue> = Vec::new();
        for (key, history) in histories_in(&self.keys, &request.key, &request.range_end) {
            let Some(entry) = history.live_at(read_revision) else {
                continue;
            };
            count += 1;
            if kvs.len() < fetch_limit {
                kvs.push(entry.to_key_value(key));
            }
        }

        if filtered {
            kvs.retain(|kv| {
                (request.max_mod_revision == 0 || kv.mod_revision <= request.max_mod_revision)
                    && (request.min_mod_revision == 0
                        || kv.mod_revision >= request.min_mod_revision)
                    && (request.max_create_revision == 0
                        || kv.create_revision <= request.max_create_revision)
                    && (request.min_create_revision == 0
                        || kv.create_revision >= request.min_create_revision)
            });
        }

        let order = if requested_order == SortOrder::None && target != SortTarget::Key {
            SortOrder::Ascend
        } else {
            requested_order
        };
        if order != SortOrder::None {
            let by_target = |a: &KeyValue, b: &KeyValue| -> Ordering {
                match target {
                    SortTarget::Key => a.key.cmp(&b.key),
                    SortTarget::Version => a.version.cmp(&b.version),
                    SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                    SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                    SortTarget::Value => a.value.cmp(&b.value),
                }
            };
            match order {
                SortOrder::Descend => kvs.sort_by(|a, b| by_target(b, a)),
                _ => {
                    // Already in key order; only non-key targets need sorting.
                    if target != SortTarget::Key {
                        kvs.sort_by(by_target);
                    }
                }
            }
        }

        let mut more = false;
        if let Ok(limit) = usize::try_from(request.limit)
            && limit > 0
            && kvs.len() > limit
        {
            kvs.truncate(limit);
            more = true;
        }
        if request.keys_only {
            for kv in &mut kvs {
                kv.value = bytes::Bytes::new();
            }
        }
        RangeResponse {
            header: header(header_revision),
            kvs,
            more,
            count,
        }
    }
}
