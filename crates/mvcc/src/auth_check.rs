//! Permission checks against the replicated auth state, as etcd's `isOpPermitted` and its
//! per-request rules (`server/auth/store.go`, `server/etcdserver/apply_auth.go`).
//!
//! With auth disabled everything is allowed. Otherwise the caller must be a user with a token
//! issued at the current auth revision; a user with the `root` role may do anything; anyone
//! else needs, for every key range a request touches, READ (ranges, compares, `prev_kv`) or
//! WRITE (puts, deletes) coverage by the union of its roles' permissions (READWRITE counts as
//! both). Admin operations need the `root` role.

use etcd_proto::authpb::permission::Type as PermissionType;
use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::request_op::Request as Op;
use etcd_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};

use crate::auth::ROOT_ROLE;
use crate::store::Store;

/// What a request needs permission for.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    Range(&'a RangeRequest),
    /// A put; with a lease, every key already attached to it needs WRITE too (etcd's
    /// `checkLeasePuts`).
    Put(&'a PutRequest),
    DeleteRange(&'a DeleteRangeRequest),
    /// Compares and both branches' operations, nested txns included.
    Txn(&'a TxnRequest),
    /// WRITE on every key attached to the lease.
    LeaseRevoke(i64),
    /// READ on a watched range.
    Watch {
        key: &'a [u8],
        range_end: &'a [u8],
    },
    /// Auth management, cluster membership and the maintenance operations etcd reserves to root.
    Admin,
    /// `UserGet`: root, or the user asking about itself.
    UserGet(&'a str),
    /// `RoleGet`: root, or a user holding the role.
    RoleGet(&'a str),
}

/// Who is asking: a user name and the auth revision its token was issued at.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub user: &'a str,
    pub token_revision: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Read,
    Write,
}

/// A half-open key interval; `end == None` reaches the end of the keyspace.
struct Interval<'a> {
    start: &'a [u8],
    end: Option<Vec<u8>>,
}

/// etcd's key-range conventions: empty `range_end` is the single key, `"\0"` every key from
/// `key` on (an empty key with `"\0"` is the whole keyspace).
fn interval<'a>(key: &'a [u8], range_end: &[u8]) -> Interval<'a> {
    let point_end = || {
        let mut end = key.to_vec();
        end.push(0);
        Some(end)
    };
    let end = if range_end.is_empty() {
        point_end()
    } else if range_end == b"\0" {
        None
    } else if range_end <= key {
        // An empty range names no key; checking the start key alone is the conservative reading.
        point_end()
    } else {
        Some(range_end.to_vec())
    };
    Interval { start: key, end }
}

/// True when the union of `granted` covers all of `wanted`.
fn covers(mut granted: Vec<Interval<'_>>, wanted: &Interval<'_>) -> bool {
    granted.sort_by(|left, right| left.start.cmp(right.start));
    // Everything below `covered_to` (from the wanted start) is covered; `None` = to the end.
    let mut covered_to: Option<Vec<u8>> = Some(wanted.start.to_vec());
    for interval in &granted {
        let Some(reached) = covered_to.as_deref() else {
            return true;
        };
        if interval.start > reached {
            break;
        }
        covered_to = match (&interval.end, reached) {
            (None, _) => None,
            (Some(end), reached) if end.as_slice() > reached => Some(end.clone()),
            _ => covered_to,
        };
    }
    match (&covered_to, &wanted.end) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(reached), Some(end)) => reached >= end,
    }
}

impl Store {
    /// Checks `access` for `caller` (`None`: a request without a token) against the applied
    /// auth state. Errors are etcd's: `USER_EMPTY` without a user, `AUTH_OLD_REVISION` for a
    /// token issued before the last auth change, `PERMISSION_DENIED` otherwise.
    pub fn authorize(
        &self,
        caller: Option<Caller<'_>>,
        access: Access<'_>,
    ) -> Result<(), EtcdError> {
        if !self.auth.enabled {
            return Ok(());
        }
        let caller = caller.ok_or(errors::USER_EMPTY)?;
        if caller.user.is_empty() || caller.token_revision == 0 {
            return Err(errors::USER_EMPTY);
        }
        if caller.token_revision < self.auth.revision {
            return Err(errors::AUTH_OLD_REVISION);
        }
        let user = self
            .auth
            .users
            .get(caller.user)
            .ok_or(errors::PERMISSION_DENIED)?;
        if user.roles.contains(ROOT_ROLE) {
            return Ok(());
        }
        let allowed = match access {
            Access::Admin => false,
            Access::UserGet(name) => name == caller.user,
            Access::RoleGet(role) => user.roles.contains(role),
            Access::Range(range) => {
                self.permits(caller.user, Need::Read, &range.key, &range.range_end)
            }
            Access::Put(put) => self.put_permitted(caller.user, put),
            Access::DeleteRange(delete) => self.delete_permitted(caller.user, delete),
            Access::Txn(txn) => self.txn_permitted(caller.user, txn),
            Access::LeaseRevoke(id) => self.lease_keys_writable(caller.user, id),
            Access::Watch { key, range_end } => {
                self.permits(caller.user, Need::Read, key, range_end)
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(errors::PERMISSION_DENIED)
        }
    }

    fn put_permitted(&self, user: &str, put: &PutRequest) -> bool {
        self.permits(user, Need::Write, &put.key, &[])
            && (!put.prev_kv || self.permits(user, Need::Read, &put.key, &[]))
            && (put.lease == 0 || self.lease_keys_writable(user, put.lease))
    }

    fn delete_permitted(&self, user: &str, delete: &DeleteRangeRequest) -> bool {
        self.permits(user, Need::Write, &delete.key, &delete.range_end)
            && (!delete.prev_kv || self.permits(user, Need::Read, &delete.key, &delete.range_end))
    }

    fn txn_permitted(&self, user: &str, txn: &TxnRequest) -> bool {
        txn.compare
            .iter()
            .all(|compare| self.permits(user, Need::Read, &compare.key, &compare.range_end))
            && txn
                .success
                .iter()
                .chain(&txn.failure)
                .all(|op| match &op.request {
                    Some(Op::RequestRange(range)) => {
                        self.permits(user, Need::Read, &range.key, &range.range_end)
                    }
                    Some(Op::RequestPut(put)) => self.put_permitted(user, put),
                    Some(Op::RequestDeleteRange(delete)) => self.delete_permitted(user, delete),
                    Some(Op::RequestTxn(nested)) => self.txn_permitted(user, nested),
                    None => true,
                })
    }

    /// WRITE on every key attached to the lease; an unknown lease has none (apply answers it).
    fn lease_keys_writable(&self, user: &str, id: i64) -> bool {
        self.leases.get(&id).is_none_or(|lease| {
            lease
                .keys
                .iter()
                .all(|key| self.permits(user, Need::Write, key, &[]))
        })
    }

    /// True when the union of the user's roles' permissions of kind `need` covers the range.
    fn permits(&self, user: &str, need: Need, key: &[u8], range_end: &[u8]) -> bool {
        let Some(user) = self.auth.users.get(user) else {
            return false;
        };
        let granted: Vec<Interval<'_>> = user
            .roles
            .iter()
            .filter_map(|role| self.auth.roles.get(role))
            .flatten()
            .filter(|permission| {
                let kind = PermissionType::try_from(permission.perm_type);
                matches!(
                    (need, kind),
                    (_, Ok(PermissionType::Readwrite))
                        | (Need::Read, Ok(PermissionType::Read))
                        | (Need::Write, Ok(PermissionType::Write))
                )
            })
            .map(|permission| interval(&permission.key, &permission.range_end))
            .collect();
        covers(granted, &interval(key, range_end))
    }
}
