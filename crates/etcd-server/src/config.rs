//! Tunables of the etcd API, with etcd's defaults.

use std::time::Duration;

use crate::space::AutoCompaction;

/// The server version reported by `/version` and `Maintenance.Status` (≥ 3.4 so that
/// version-sniffing clients such as Patroni pick the `/v3` gateway prefix).
pub const SERVER_VERSION: &str = "3.5.17";
/// The cluster version reported by `/version` (major.minor.0).
pub const CLUSTER_VERSION: &str = "3.5.0";

/// Limits and timings of the client-facing API.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Most operations per txn branch or compare list (etcd --max-txn-ops).
    pub max_txn_ops: usize,
    /// Largest write request accepted (etcd --max-request-bytes); gRPC itself accepts
    /// 512 KiB more so that the oversize case gets etcd's own error text.
    pub max_request_bytes: usize,
    /// How often a synced watcher that asked for progress notifications gets one
    /// (etcd --experimental-watch-progress-notify-interval).
    pub progress_notify_interval: Duration,
    /// Raft election timeout; the minimum lease TTL is ceil(1.5 × this) seconds.
    pub election_timeout: Duration,
    /// How often the Raft leader's lease keeper looks for expired leases (etcd: 500 ms).
    pub lease_check_interval: Duration,
    /// The backend quota (etcd --quota-backend-bytes; 0 = etcd's default of 2 GiB): past it
    /// the NOSPACE alarm is raised (see [`crate::space`]). Reported as `dbSizeQuota`.
    pub db_size_quota_bytes: i64,
    /// Server-side auto-compaction (etcd --auto-compaction-mode/-retention); `None` is off.
    pub auto_compaction: Option<AutoCompaction>,
    /// How long a follower waits for the leader when forwarding a lease call.
    pub forward_timeout: Duration,
    /// How long a simple auth token stays valid without being used (etcd --auth-token-ttl).
    pub auth_token_ttl: Duration,
    /// bcrypt cost of password hashes (etcd --bcrypt-cost, default 10; 4 is the minimum).
    pub bcrypt_cost: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_txn_ops: 128,
            max_request_bytes: 1536 * 1024,
            progress_notify_interval: Duration::from_secs(600),
            election_timeout: Duration::from_millis(1000),
            lease_check_interval: Duration::from_millis(500),
            db_size_quota_bytes: 2 * 1024 * 1024 * 1024,
            auto_compaction: None,
            forward_timeout: Duration::from_secs(5),
            auth_token_ttl: Duration::from_secs(300),
            bcrypt_cost: 10,
        }
    }
}

impl ServerConfig {
    /// gRPC's decoding limit: the request limit plus etcd's 512 KiB allowance.
    pub fn grpc_max_receive_bytes(&self) -> usize {
        self.max_request_bytes + 512 * 1024
    }

    /// The smallest TTL a lease is granted with, in seconds: ceil(1.5 × election timeout).
    pub fn min_lease_ttl_seconds(&self) -> i64 {
        let millis = self.election_timeout.as_millis().saturating_mul(3) / 2;
        let seconds = millis.div_ceil(1000);
        i64::try_from(seconds).unwrap_or(i64::MAX).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_lease_ttl_is_two_seconds_with_defaults() {
        assert_eq!(ServerConfig::default().min_lease_ttl_seconds(), 2);
        let slow = ServerConfig {
            election_timeout: Duration::from_millis(5000),
            ..ServerConfig::default()
        };
        assert_eq!(slow.min_lease_ttl_seconds(), 8);
    }
}
