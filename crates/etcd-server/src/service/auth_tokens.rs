//! etcd's simple tokens: `<16 random letters>.<index>`, valid on the member that issued them
//! until `--auth-token-ttl` passes without a request using them.
//!
//! The clock is injected (the lease keeper's [`Clock`]), so expiry is testable with tokio's
//! paused time. Expired tokens are dropped when next looked up and swept whenever a token is
//! issued, so the table stays bounded by the tokens used within one TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::lease::Clock;

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub user: String,
    /// The auth revision when the token was issued; tokens issued before auth was last
    /// enabled are void.
    pub issued_at_revision: u64,
    /// The password hash the user authenticated against: a password change voids the token.
    pub password_hash: String,
}

struct Issued {
    owner: TokenOwner,
    last_used: Instant,
}

/// The simple tokens this member issued.
pub struct TokenStore {
    ttl: Duration,
    clock: Arc<dyn Clock>,
    /// Token → owner. A std mutex: held only for map operations, never across an await.
    tokens: Mutex<HashMap<String, Issued>>,
}

const TOKEN_LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

impl TokenStore {
    pub fn new(ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        TokenStore {
            ttl,
            clock,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Issued>> {
        // A panic while holding the lock leaves a consistent map (single operations only).
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Issues a new token for `owner`; `index` becomes its suffix (etcd uses the Raft index
    /// of the Authenticate entry; pgwarden the store revision when it was issued).
    pub fn issue(&self, owner: TokenOwner, index: u64) -> String {
        let mut rng = rand::rng();
        let random: String = (0..16)
            .map(|_| char::from(TOKEN_LETTERS[rng.random_range(0..TOKEN_LETTERS.len())]))
            .collect();
        let token = format!("{random}.{index}");
        let now = self.clock.now();
        let mut table = self.table();
        table.retain(|_, issued| now.duration_since(issued.last_used) < self.ttl);
        table.insert(
            token.clone(),
            Issued {
                owner,
                last_used: now,
            },
        );
        token
    }

    /// The owner of a live token, whose inactivity timer restarts; `None` when unknown or
    /// expired (an expired token is forgotten).
    pub fn resolve(&self, token: &str) -> Option<TokenOwner> {
        let now = self.clock.now();
        let mut table = self.table();
        let issued = table.get_mut(token)?;
        if now.duration_since(issued.last_used) >= self.ttl {
            table.remove(token);
            return None;
        }
        issued.last_used = now;
        Some(issued.owner.clone())
    }

    /// Forgets one token (it was found void against the auth state).
    pub fn revoke(&self, token: &str) {
        self.table().remove(token);
    }

    /// Forgets every token of `user` (deleted, or its password changed).
    pub fn revoke_user(&self, user: &str) {
        self.table().retain(|_, issued| issued.owner.user != user);
    }

    /// Forgets every token (auth was disabled).
    pub fn revoke_all(&self) {
        self.table().clear();
    }

    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::TokioClock;

    fn owner(user: &str) -> TokenOwner {
        TokenOwner {
            user: user.to_owned(),
            issued_at_revision: 2,
            password_hash: "hash".to_owned(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_expire_after_ttl_of_inactivity() {
        let store = TokenStore::new(Duration::from_secs(300), Arc::new(TokioClock));
        let token = store.issue(owner("alice"), 7);
        let (random, index) = token.split_once('.').expect("dot");
        assert_eq!(random.len(), 16);
        assert!(random.bytes().all(|letter| letter.is_ascii_alphabetic()));
        assert_eq!(index, "7");
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(store.resolve(&token), Some(owner("alice")));
        // Use restarted the timer.
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(store.resolve(&token).is_some());
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(store.resolve(&token), None);
        assert!(store.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn revoking_a_user_drops_only_its_tokens() {
        let store = TokenStore::new(Duration::from_secs(300), Arc::new(TokioClock));
        let alice = store.issue(owner("alice"), 1);
        let bob = store.issue(owner("bob"), 1);
        assert_ne!(alice, bob);
        store.revoke_user("alice");
        assert_eq!(store.resolve(&alice), None);
        assert!(store.resolve(&bob).is_some());
        store.revoke_all();
        assert!(store.is_empty());
    }
}
