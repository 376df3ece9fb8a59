//! Member and cluster IDs, derived as etcd derives them: a hash of the peer URLs (members) or of
//! the initial member IDs (cluster), mixed with the cluster token. Both are persisted when the
//! data dir is created, so they never change across restarts.

use sha2::{Digest, Sha256};

/// First 8 bytes of a SHA-256 digest as a big-endian u64, never zero (0 means "none" in etcd).
fn digest_to_id(digest: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    match u64::from_be_bytes(first) {
        0 => 1,
        id => id,
    }
}

/// A member's ID: SHA-256 over its sorted peer URLs and the cluster token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut hasher = Sha256::new();
    for url in urls {
        hasher.update(url.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(token.as_bytes());
    digest_to_id(&hasher.finalize())
}

/// An ID for a member added later with MemberAdd: its peer URLs plus a salt (the time of the
/// request, as etcd does), so a re-added member never reuses a removed member's ID.
pub fn added_member_id(peer_urls: &[String], token: &str, salt: u128) -> u64 {
    member_id(peer_urls, &format!("{token}/{salt}"))
}

/// The cluster ID: SHA-256 over the sorted initial member IDs and the cluster token.
pub fn cluster_id(initial_member_ids: &[u64], token: &str) -> u64 {
    let mut ids = initial_member_ids.to_vec();
    ids.sort_unstable();
    let mut hasher = Sha256::new();
    for id in ids {
        hasher.update(id.to_be_bytes());
    }
    hasher.update(token.as_bytes());
    digest_to_id(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_ignores_url_order_and_depends_on_token() {
        let a = vec!["http://a:2380".to_string(), "http://b:2380".to_string()];
        let b = vec!["http://b:2380".to_string(), "http://a:2380".to_string()];
        assert_eq!(member_id(&a, "t"), member_id(&b, "t"));
        assert_ne!(member_id(&a, "t"), member_id(&a, "u"));
        assert_ne!(member_id(&a, "t"), 0);
    }

    #[test]
    fn cluster_id_ignores_member_order() {
        assert_eq!(cluster_id(&[3, 1, 2], "t"), cluster_id(&[1, 2, 3], "t"));
        assert_ne!(cluster_id(&[1, 2, 3], "t"), cluster_id(&[1, 2], "t"));
    }

    #[test]
    fn added_ids_differ_by_salt() {
        let urls = vec!["http://a:2380".to_string()];
        assert_ne!(
            added_member_id(&urls, "t", 1),
            added_member_id(&urls, "t", 2)
        );
    }
}
