//! The leader's lease deadlines: a pure structure where time is always an argument.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tracked {
    deadline: Instant,
    granted_ttl: Duration,
}

/// Lease deadlines as the Raft leader keeps them.
///
/// `primary_term` is the Raft term in which this member became leader and took over the
/// deadlines; `None` on a follower, which tracks nothing (it keeps leases until told).
#[derive(Debug, Default)]
pub struct LeaseTable {
    primary_term: Option<u64>,
    deadlines: HashMap<i64, Tracked>,
}

fn ttl_duration(ttl_seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl_seconds).unwrap_or(0))
}

impl LeaseTable {
    /// The term in which this member took over lease expiry, if it is the leader's table.
    pub fn primary_term(&self) -> Option<u64> {
        self.primary_term
    }

    /// Leadership gained in `term`: every lease restarts at `now` + its full granted TTL.
    pub fn promote(
        &mut self,
        term: u64,
        now: Instant,
        leases: impl IntoIterator<Item = (i64, i64)>,
    ) {
        self.primary_term = Some(term);
        self.deadlines = leases
            .into_iter()
            .map(|(id, ttl_seconds)| {
                let granted_ttl = ttl_duration(ttl_seconds);
                (
                    id,
                    Tracked {
                        deadline: now + granted_ttl,
                        granted_ttl,
                    },
                )
            })
            .collect();
    }

    /// Leadership lost: forget every deadline; the next leader restarts them.
    pub fn demote(&mut self) {
        self.primary_term = None;
        self.deadlines.clear();
    }

    /// Reconciles with the applied lease set: revoked leases are dropped, leases this table
    /// has not seen (granted through another member's proposal) start at `now` + TTL.
    pub fn sync(&mut self, now: Instant, leases: impl IntoIterator<Item = (i64, i64)>) {
        let mut next = HashMap::new();
        for (id, ttl_seconds) in leases {
            let tracked = self.deadlines.get(&id).copied().unwrap_or_else(|| {
                let granted_ttl = ttl_duration(ttl_seconds);
                Tracked {
                    deadline: now + granted_ttl,
                    granted_ttl,
                }
            });
            next.insert(id, tracked);
        }
        self.deadlines = next;
    }

    /// A lease granted on this member starts at grant time.
    pub fn granted(&mut self, id: i64, ttl_seconds: i64, now: Instant) {
        let granted_ttl = ttl_duration(ttl_seconds);
        self.deadlines.insert(
            id,
            Tracked {
                deadline: now + granted_ttl,
                granted_ttl,
            },
        );
    }

    /// A keepalive: resets the deadline to `now` + granted TTL and answers the TTL in seconds,
    /// or 0 when the lease does not exist in the applied state (`stored_ttl` is `None`) or has
    /// already passed its deadline here. An expired lease is never revived: its revocation may
    /// already be on its way through the log, and a holder told "renewed" would then believe in
    /// a lease that is gone (etcd answers "lease not found" in this window too).
    pub fn keepalive(&mut self, id: i64, stored_ttl: Option<i64>, now: Instant) -> i64 {
        let Some(ttl_seconds) = stored_ttl else {
            self.deadlines.remove(&id);
            return 0;
        };
        if self
            .deadlines
            .get(&id)
            .is_some_and(|tracked| tracked.deadline <= now)
        {
            return 0;
        }
        let granted_ttl = ttl_duration(ttl_seconds);
        self.deadlines.insert(
            id,
            Tracked {
                deadline: now + granted_ttl,
                granted_ttl,
            },
        );
        ttl_seconds
    }

    /// Time left before the lease expires (zero once past its deadline); `None` if untracked.
    pub fn remaining(&self, id: i64, now: Instant) -> Option<Duration> {
        self.deadlines
            .get(&id)
            .map(|tracked| tracked.deadline.saturating_duration_since(now))
    }

    /// Leases whose deadline has passed, in ID order (deterministic proposals).
    pub fn expired(&self, now: Instant) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .deadlines
            .iter()
            .filter(|(_, tracked)| tracked.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Stops tracking leases that were revoked or expired through the log.
    pub fn forget(&mut self, ids: &[i64]) {
        for id in ids {
            self.deadlines.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promote_restarts_every_lease_at_full_ttl() {
        let start = Instant::now();
        let mut table = LeaseTable::default();
        table.promote(3, start, [(1, 5), (2, 10)]);
        assert_eq!(table.primary_term(), Some(3));
        assert!(table.expired(start + Duration::from_secs(4)).is_empty());
        assert_eq!(table.expired(start + Duration::from_secs(5)), vec![1]);
        assert_eq!(table.expired(start + Duration::from_secs(10)), vec![1, 2]);
        let later = start + Duration::from_secs(9);
        table.promote(4, later, [(1, 5), (2, 10)]);
        assert!(table.expired(later + Duration::from_secs(4)).is_empty());
    }

    #[test]
    fn keepalive_extends_and_unknown_lease_answers_zero() {
        let start = Instant::now();
        let mut table = LeaseTable::default();
        table.promote(1, start, [(7, 3)]);
        let renewed_at = start + Duration::from_secs(2);
        assert_eq!(table.keepalive(7, Some(3), renewed_at), 3);
        assert!(table.expired(start + Duration::from_secs(4)).is_empty());
        assert_eq!(table.expired(renewed_at + Duration::from_secs(3)), vec![7]);
        assert_eq!(table.keepalive(8, None, renewed_at), 0);
        let expired_at = renewed_at + Duration::from_secs(3);
        assert_eq!(
            table.keepalive(7, Some(3), expired_at),
            0,
            "an expired lease is not revived"
        );
        assert_eq!(table.expired(expired_at), vec![7]);
        assert_eq!(
            table.remaining(7, renewed_at + Duration::from_secs(1)),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn sync_adds_new_leases_at_now_and_drops_revoked_ones() {
        let start = Instant::now();
        let mut table = LeaseTable::default();
        table.promote(1, start, [(1, 5)]);
        let later = start + Duration::from_secs(3);
        table.sync(later, [(2, 5)]);
        assert_eq!(table.remaining(1, later), None);
        assert_eq!(table.remaining(2, later), Some(Duration::from_secs(5)));
        table.demote();
        assert_eq!(table.primary_term(), None);
        assert!(table.expired(later + Duration::from_secs(60)).is_empty());
    }
}
