//! The lease keeper: the imperative shell around [`LeaseTable`] on every member; it acts only
//! while this member is the Raft leader.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use etcd_proto::raftcmd::raft_command::Command;
use etcd_proto::raftcmd::{LeaseExpire, RaftCommand};
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::table::LeaseTable;
use crate::backend::{Backend, StatusExt};

/// Most leases expired by one `LeaseExpire` command; with the default 500 ms round that is
/// up to 2000 revokes a second, etcd's order of magnitude (1000/s).
pub const MAX_EXPIRED_PER_ROUND: usize = 1000;

/// What `LeaseTimeToLive` answers for one lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeToLive {
    /// Remaining seconds (truncated), or -1 when the lease does not exist.
    pub ttl: i64,
    pub granted_ttl: i64,
    pub keys: Vec<bytes::Bytes>,
}

/// Shared by the lease RPC handlers (keepalive, time-to-live, grant, revoke) and the expiry loop.
///
/// The table sits behind a std `Mutex`: critical sections are a few map operations and are
/// never held across an `.await`.
#[derive(Clone)]
pub struct LeaseKeeper<B: Backend> {
    node: B,
    clock: Arc<dyn Clock>,
    table: Arc<Mutex<LeaseTable>>,
}

fn stored_leases(store: &mvcc::Store) -> Vec<(i64, i64)> {
    store.leases()
}

impl<B: Backend> LeaseKeeper<B> {
    pub fn new(node: B, clock: Arc<dyn Clock>) -> Self {
        LeaseKeeper {
            node,
            clock,
            table: Arc::new(Mutex::new(LeaseTable::default())),
        }
    }

    fn table(&self) -> MutexGuard<'_, LeaseTable> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters (each operation is a single insert/remove/replace), so keep serving.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes sure the table belongs to the current leader term (restarting every lease at a
    /// full TTL when it does not) before a leader-only answer is computed from it.
    fn ensure_primary(&self) {
        let status = self.node.status();
        if !status.is_leader() {
            return;
        }
        if self.table().primary_term() != Some(status.term) {
            let leases = self.node.read(stored_leases);
            let now = self.clock.now();
            self.table().promote(status.term, now, leases);
        }
    }

    /// Answers a keepalive on the leader: the granted TTL after resetting the deadline, or 0
    /// when the lease is unknown or already gone.
    pub fn keepalive(&self, id: i64) -> i64 {
        self.ensure_primary();
        let stored = self
            .node
            .read(|store| store.lease(id))
            .map(|lease| lease.granted_ttl);
        let now = self.clock.now();
        self.table().keepalive(id, stored, now)
    }

    /// Answers `LeaseTimeToLive` on the leader.
    pub fn time_to_live(&self, id: i64, with_keys: bool) -> TimeToLive {
        self.ensure_primary();
        let Some(mvcc::LeaseView {
            granted_ttl, keys, ..
        }) = self.node.read(|store| store.lease(id))
        else {
            return TimeToLive {
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            };
        };
        let now = self.clock.now();
        let remaining = self
            .table()
            .remaining(id, now)
            .map(|left| i64::try_from(left.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(granted_ttl);
        TimeToLive {
            ttl: remaining,
            granted_ttl,
            keys: if with_keys { keys } else { Vec::new() },
        }
    }

    /// A lease granted through this member starts now (if this member leads).
    pub fn granted(&self, id: i64, ttl_seconds: i64) {
        if self.node.status().is_leader() {
            let now = self.clock.now();
            self.table().granted(id, ttl_seconds, now);
        }
    }

    /// A lease revoked through the log is no longer tracked.
    pub fn forget(&self, id: i64) {
        self.table().forget(&[id]);
    }

    /// One round: follow leadership, reconcile with the applied leases, and propose the
    /// expired ones as one `LeaseExpire` command. Returns the IDs proposed.
    pub async fn tick(&self) -> Vec<i64> {
        let status = self.node.status();
        if !status.is_leader() {
            if self.table().primary_term().is_some() {
                self.table().demote();
            }
            return Vec::new();
        }
        let leases = self.node.read(stored_leases);
        let now = self.clock.now();
        let expired = {
            let mut table = self.table();
            if table.primary_term() == Some(status.term) {
                table.sync(now, leases);
            } else {
                table.promote(status.term, now, leases);
            }
            let mut expired = table.expired(now);
            // Bound one log entry; the rest go in the next rounds (etcd rate-limits revokes too).
            expired.truncate(MAX_EXPIRED_PER_ROUND);
            expired
        };
        if expired.is_empty() {
            return expired;
        }
        let command = RaftCommand {
            command: Some(Command::LeaseExpire(LeaseExpire {
                ids: expired.clone(),
            })),
        };
        // Leader-only: a member partitioned away while leading must not hand its stale
        // verdict (it saw no keepalives) to the next leader once it rejoins.
        match self.node.propose_as_leader(command).await {
            Ok(_) => {
                self.table().forget(&expired);
                tracing::debug!(leases = ?expired, "expired leases revoked");
            }
            Err(error) => {
                tracing::warn!(%error, leases = ?expired, "proposing lease expiry failed; retrying next round");
            }
        }
        expired
    }

    /// Runs [`Self::tick`] every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {
                    self.tick().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use etcd_proto::raftcmd::raft_command::Command;

    use super::*;
    use crate::lease::TokioClock;
    use crate::testing::FakeNode;

    fn expiries(node: &FakeNode) -> Vec<Vec<i64>> {
        node.proposals()
            .into_iter()
            .filter_map(|proposal| match proposal.command {
                Some(Command::LeaseExpire(expire)) => Some(expire.ids),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_leader_expires_leases() {
        let node = FakeNode::leader(16);
        node.set_status(|status| status.leader = Some(2));
        node.grant(10, 5);
        let keeper = LeaseKeeper::new(node.clone(), Arc::new(TokioClock));
        keeper.tick().await;
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(
            keeper.tick().await.is_empty(),
            "a follower never expires leases"
        );
        node.set_status(|status| status.leader = Some(1));
        // Becoming leader restarts the lease at a full TTL from now.
        assert!(keeper.tick().await.is_empty());
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(keeper.tick().await.is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(keeper.tick().await, vec![10]);
        assert_eq!(expiries(&node), vec![vec![10]]);
        assert!(node.read(|store| store.leases()).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn keepalive_extends_and_new_term_resets() {
        let node = FakeNode::leader(16);
        node.grant(7, 3);
        let keeper = LeaseKeeper::new(node.clone(), Arc::new(TokioClock));
        keeper.tick().await;
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(keeper.keepalive(7), 3);
        assert_eq!(keeper.keepalive(8), 0, "unknown lease answers TTL 0");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            keeper.tick().await.is_empty(),
            "the keepalive moved the deadline"
        );
        assert_eq!(keeper.time_to_live(7, false).ttl, 1);
        assert_eq!(keeper.time_to_live(99, false).ttl, -1);
        // Leadership lost and regained in a later term: a full TTL again.
        node.set_status(|status| status.term = 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(keeper.tick().await.is_empty());
        assert_eq!(keeper.time_to_live(7, false).ttl, 3);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(keeper.tick().await, vec![7]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_expiry_loop_runs_until_shutdown() {
        let node = FakeNode::leader(16);
        node.grant(5, 2);
        let keeper = LeaseKeeper::new(node.clone(), Arc::new(TokioClock));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(keeper.run(Duration::from_millis(500), shutdown.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while expiries(&node).is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "lease 5 never expired"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(expiries(&node), vec![vec![5]]);
        shutdown.cancel();
        assert!(task.await.is_ok());
    }
}
