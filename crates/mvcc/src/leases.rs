//! Leases as replicated data: grant, revoke, expire; attachments are kept by the key writes.

use std::collections::BTreeSet;

use bytes::Bytes;
use etcd_proto::errors::{self, EtcdError};
use etcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse,
};
use etcd_proto::mvccpb::Event;
use etcd_proto::raftcmd::{LeaseExpire, LeaseExpireResponse};

use crate::store::{Store, header};

/// etcd's `MaxLeaseTTL`: a grant above it is refused with `LEASE_TTL_TOO_LARGE`.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// A lease as replicated data: its granted TTL and the keys currently attached to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lease {
    pub ttl: i64,
    pub keys: BTreeSet<Bytes>,
}

/// What a lease looks like to readers (LeaseTimeToLive, LeaseLeases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub id: i64,
    /// The TTL (seconds) the lease was granted with.
    pub granted_ttl: i64,
    /// Attached keys in ascending order.
    pub keys: Vec<Bytes>,
}

impl Store {
    pub fn lease(&self, id: i64) -> Option<LeaseView> {
        self.leases.get(&id).map(|lease| LeaseView {
            id,
            granted_ttl: lease.ttl,
            keys: lease.keys.iter().cloned().collect(),
        })
    }
    /// Every lease as (ID, granted TTL), sorted by ID.
    pub fn leases(&self) -> Vec<(i64, i64)> {
        self.leases
            .iter()
            .map(|(id, lease)| (*id, lease.ttl))
            .collect()
    }
    pub(crate) fn apply_lease_grant(
        &mut self,
        request: &LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, EtcdError> {
        self.check_alarms(true)?;
        // The proposer picks a non-zero ID; 0 here is what etcd's lessor answers for "no lease".
        if request.id == 0 {
            return Err(errors::LEASE_NOT_FOUND);
        }
        if request.ttl > MAX_LEASE_TTL {
            return Err(errors::LEASE_TTL_TOO_LARGE);
        }
        if self.leases.contains_key(&request.id) {
            return Err(errors::LEASE_EXIST);
        }
        self.leases.insert(
            request.id,
            Lease {
                ttl: request.ttl,
                keys: BTreeSet::new(),
            },
        );
        Ok(LeaseGrantResponse {
            header: header(self.revision),
            id: request.id,
            ttl: request.ttl,
            error: String::new(),
        })
    }
    pub(crate) fn apply_lease_revoke(
        &mut self,
        request: &LeaseRevokeRequest,
        events: &mut Vec<Event>,
    ) -> Result<LeaseRevokeResponse, EtcdError> {
        self.check_alarms(false)?;
        if !self.revoke(request.id, events) {
            return Err(errors::LEASE_NOT_FOUND);
        }
        Ok(LeaseRevokeResponse {
            header: header(self.revision),
        })
    }
    pub(crate) fn apply_lease_expire(
        &mut self,
        request: &LeaseExpire,
        events: &mut Vec<Event>,
    ) -> Result<LeaseExpireResponse, EtcdError> {
        self.check_alarms(false)?;
        let ids = request
            .ids
            .iter()
            .copied()
            .filter(|id| self.revoke(*id, events))
            .collect();
        Ok(LeaseExpireResponse { ids })
    }
    /// Deletes the lease's keys (in key order, one revision if any) and removes the lease.
    /// Returns false when the lease does not exist.
    fn revoke(&mut self, id: i64, events: &mut Vec<Event>) -> bool {
        let Some(lease) = self.leases.remove(&id) else {
            return false;
        };
        let mut pending = self.begin();
        for key in &lease.keys {
            self.write_delete(&mut pending, key);
        }
        self.commit(pending, events);
        true
    }
}
