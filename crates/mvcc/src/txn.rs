//! Txn: compares, branch choice, request checks and execution in one revision.
//!
//! As etcd does (server/etcdserver/txn), every compare — nested txns' included — is evaluated
//! against the state before the txn, the chosen path's puts and ranges are checked against that
//! state, and only then are the ops executed. Execution therefore cannot fail half-way, and a
//! refused txn changes nothing. Ranges executed inside the txn see the txn's earlier writes.

use std::cmp::Ordering;

use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use etcd_proto::etcdserverpb::{
    Compare, RequestOp, ResponseOp, TxnRequest, TxnResponse, request_op, response_op,
};
use etcd_proto::mvccpb::Event;

use crate::keyspace::{Entry, KeyHistory, histories_in};
use crate::store::{Pending, Store, header};
use crate::validate::{is_read_only_txn, validate_txn};

/// The outcome of a txn's compares: which branch runs, and the same for each nested txn of that
/// branch, in op order.
struct Path {
    succeeded: bool,
    nested: Vec<Path>,
}

fn branch<'t>(request: &'t TxnRequest, path: &Path) -> &'t [RequestOp] {
    if path.succeeded {
        &request.success
    } else {
        &request.failure
    }
}

fn has_put(request: &TxnRequest) -> bool {
    request
        .success
        .iter()
        .chain(&request.failure)
        .any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_)) => true,
            Some(request_op::Request::RequestTxn(nested)) => has_put(nested),
            _ => false,
        })
}

/// etcd's `compareKV`: the value of the target field actually set is read according to `target`
/// (unset → 0 / empty); an unknown target compares equal; an unknown result holds.
fn compare_entry(compare: &Compare, entry: Option<&Entry>) -> bool {
    let union = compare.target_union.as_ref();
    let ordering = match CompareTarget::try_from(compare.target) {
        Ok(CompareTarget::Value) => {
            let wanted: &[u8] = match union {
                Some(TargetUnion::Value(value)) => value,
                _ => &[],
            };
            entry.map_or(&[][..], |entry| &entry.value[..]).cmp(wanted)
        }
        Ok(CompareTarget::Create) => {
            let wanted = match union {
                Some(TargetUnion::CreateRevision(revision)) => *revision,
                _ => 0,
            };
            entry.map_or(0, |entry| entry.create_revision).cmp(&wanted)
        }
        Ok(CompareTarget::Mod) => {
            let wanted = match union {
                Some(TargetUnion::ModRevision(revision)) => *revision,
                _ => 0,
            };
            entry.map_or(0, |entry| entry.revision).cmp(&wanted)
        }
        Ok(CompareTarget::Version) => {
            let wanted = match union {
                Some(TargetUnion::Version(version)) => *version,
                _ => 0,
            };
            entry.map_or(0, |entry| entry.version).cmp(&wanted)
        }
        Ok(CompareTarget::Lease) => {
            let wanted = match union {
                Some(TargetUnion::Lease(lease)) => *lease,
                _ => 0,
            };
            entry.map_or(0, |entry| entry.lease).cmp(&wanted)
        }
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(compare.result) {
        Ok(CompareResult::Equal) => ordering == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ordering != Ordering::Equal,
        Ok(CompareResult::Greater) => ordering == Ordering::Greater,
        Ok(CompareResult::Less) => ordering == Ordering::Less,
        Err(_) => true,
    }
}

impl Store {
    /// One compare against the current state: every live key of the range must satisfy it; an empty
    /// selection compares as a zero KeyValue, except that a VALUE compare is then always false.
    fn compare_holds(&self, compare: &Compare) -> bool {
        let mut live = histories_in(&self.keys, &compare.key, &compare.range_end)
            .filter_map(|(_, history)| history.latest_live())
            .peekable();
        if live.peek().is_none() {
            return compare.target != CompareTarget::Value as i32 && compare_entry(compare, None);
        }
        live.all(|entry| compare_entry(compare, Some(entry)))
    }

    fn compare_path(&self, request: &TxnRequest) -> Path {
        let succeeded = request
            .compare
            .iter()
            .all(|compare| self.compare_holds(compare));
        let ops = if succeeded {
            &request.success
        } else {
            &request.failure
        };
        let nested = ops
            .iter()
            .filter_map(|op| match &op.request {
                Some(request_op::Request::RequestTxn(nested)) => Some(self.compare_path(nested)),
                _ => None,
            })
            .collect();
        Path { succeeded, nested }
    }

    /// etcd's `checkRequestPut` over the chosen path: ignore_value/ignore_lease need the key to exist,
    /// a non-zero lease must exist.
    fn check_puts(&self, request: &TxnRequest, path: &Path) -> Result<(), EtcdError> {
        let mut nested_paths = path.nested.iter();
        for op in branch(request, path) {
            match &op.request {
                Some(request_op::Request::RequestPut(put)) => {
                    if (put.ignore_value || put.ignore_lease)
                        && self
                            .keys
                            .get(&put.key[..])
                            .and_then(KeyHistory::latest_live)
                            .is_none()
                    {
                        return Err(errors::KEY_NOT_FOUND);
                    }
                    if put.lease != 0 && !self.leases.contains_key(&put.lease) {
                        return Err(errors::LEASE_NOT_FOUND);
                    }
                }
                Some(request_op::Request::RequestTxn(nested)) => {
                    if let Some(nested_path) = nested_paths.next() {
                        self.check_puts(nested, nested_path)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// etcd's `checkRequestRange` over the chosen path: an explicit revision must be readable.
    fn check_ranges(&self, request: &TxnRequest, path: &Path) -> Result<(), EtcdError> {
        let mut nested_paths = path.nested.iter();
        for op in branch(request, path) {
            match &op.request {
                Some(request_op::Request::RequestRange(range)) => {
                    if range.revision > self.revision {
                        return Err(errors::FUTURE_REV);
                    }
                    // etcd compares with its compactMainRev, which is -1 until the first
                    // compaction: so a negative revision is refused as compacted (except -1 on a
                    // never-compacted store), while 0 always means "current".
                    let first_revision = if self.compact_revision == 0 {
                        -1
                    } else {
                        self.compact_revision
                    };
                    if range.revision != 0 && range.revision < first_revision {
                        return Err(errors::COMPACTED);
                    }
                }
                Some(request_op::Request::RequestTxn(nested)) => {
                    if let Some(nested_path) = nested_paths.next() {
                        self.check_ranges(nested, nested_path)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(crate) fn apply_txn(
        &mut self,
        request: &TxnRequest,
        events: &mut Vec<Event>,
    ) -> Result<TxnResponse, EtcdError> {
        validate_txn(request, usize::MAX)?;
        self.check_alarms(has_put(request))?;
        let path = self.compare_path(request);
        if !is_read_only_txn(request) {
            self.check_puts(request, &path)?;
        }
        self.check_ranges(request, &path)?;
        let mut pending = self.begin();
        let mut response = self.execute(&mut pending, request, &path);
        self.commit(pending, events);
        response.header = header(self.revision);
        Ok(response)
    }

    /// Runs the chosen branch. Response headers inside carry only a revision, as etcd's do: a range
    /// the revision it read as of, a put the new revision, a delete the new revision if anything
    /// changed so far; a nested txn's own header is left zero (etcd fills only the outer one).
    fn execute(&mut self, pending: &mut Pending, request: &TxnRequest, path: &Path) -> TxnResponse {
        let mut nested_paths = path.nested.iter();
        let mut responses = Vec::new();
        for op in branch(request, path) {
            let response = match &op.request {
                Some(request_op::Request::RequestRange(range)) => {
                    let now = if pending.changed() {
                        pending.main
                    } else {
                        self.revision
                    };
                    let read_revision = if range.revision > 0 {
                        range.revision
                    } else {
                        now
                    };
                    response_op::Response::ResponseRange(self.range_at(range, read_revision, now))
                }
                Some(request_op::Request::RequestPut(put)) => {
                    response_op::Response::ResponsePut(self.put_checked(pending, put))
                }
                Some(request_op::Request::RequestDeleteRange(delete)) => {
                    response_op::Response::ResponseDeleteRange(
                        self.delete_range_checked(pending, delete),
                    )
                }
                Some(request_op::Request::RequestTxn(nested)) => {
                    // compare_path made one nested path per nested txn of this branch.
                    let Some(nested_path) = nested_paths.next() else {
                        continue;
                    };
                    let mut nested_response = self.execute(pending, nested, nested_path);
                    nested_response.header = Some(Default::default());
                    response_op::Response::ResponseTxn(nested_response)
                }
                // Validation refuses empty ops before execution.
                None => continue,
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        TxnResponse {
            header: None,
            succeeded: path.succeeded,
            responses,
        }
    }

    /// A txn evaluated locally without the log, answering exactly what apply would. Only read-only
    /// txns (see [`crate::is_read_only_txn`]) can be served here; any other is refused with
    /// `NOT_CAPABLE` and must be proposed.
    pub fn txn_read_only(&self, request: &TxnRequest) -> Result<TxnResponse, EtcdError> {
        validate_txn(request, usize::MAX)?;
        if !is_read_only_txn(request) {
            return Err(errors::NOT_CAPABLE);
        }
        let path = self.compare_path(request);
        self.check_ranges(request, &path)?;
        let mut response = self.execute_read_only(request, &path);
        response.header = header(self.revision);
        Ok(response)
    }

    fn execute_read_only(&self, request: &TxnRequest, path: &Path) -> TxnResponse {
        let mut nested_paths = path.nested.iter();
        let mut responses = Vec::new();
        for op in branch(request, path) {
            let response = match &op.request {
                Some(request_op::Request::RequestRange(range)) => {
                    let read_revision = if range.revision > 0 {
                        range.revision
                    } else {
                        self.revision
                    };
                    response_op::Response::ResponseRange(self.range_at(
                        range,
                        read_revision,
                        self.revision,
                    ))
                }
                Some(request_op::Request::RequestTxn(nested)) => {
                    let Some(nested_path) = nested_paths.next() else {
                        continue;
                    };
                    let mut nested_response = self.execute_read_only(nested, nested_path);
                    nested_response.header = Some(Default::default());
                    response_op::Response::ResponseTxn(nested_response)
                }
                // is_read_only_txn excluded writes and validation excluded empty ops.
                _ => continue,
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        TxnResponse {
            header: None,
            succeeded: path.succeeded,
            responses,
        }
    }
}
