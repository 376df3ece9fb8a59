//! A recording writer: sequential puts with unique values, each outcome kept, so a later read can
//! check that no acknowledged write was lost.

use std::time::Duration;

use anyhow::Context;
use anyhow::ensure;
use etcd_client::Client;
use etcd_client::GetOptions;

/// How long one put may take before the writer moves on to the next member. Short, so the time to
/// the first acknowledged write after a fault is measured to about this precision.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// The outcome of one put as the client saw it.
#[derive(Debug, Clone)]
pub struct Write {
    pub key: String,
    pub value: String,
    /// `Some(revision)` when acknowledged; `None` when it failed or timed out (outcome unknown).
    pub acknowledged_at: Option<i64>,
}

/// Writes `prefix/<n>` keys in order through whichever of `clients` answers.
pub struct Recorder {
    prefix: String,
    pub history: Vec<Write>,
}

impl Recorder {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            history: Vec::new(),
        }
    }

    /// One put through `client`; the outcome is recorded either way.
    pub async fn put(&mut self, client: &mut Client) -> anyhow::Result<i64> {
        let sequence = self.history.len();
        let key = format!("{}/{sequence:06}", self.prefix);
        let value = format!("value-{sequence}");
        // A put that does not answer in time has an unknown outcome: it may still be applied.
        let outcome = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            client.put(key.clone(), value.clone(), None),
        )
        .await
        .map_err(|_| anyhow::anyhow!("put {key} did not answer within {ATTEMPT_TIMEOUT:?}"))
        .and_then(|outcome| outcome.map_err(anyhow::Error::new));
        let acknowledged_at = match &outcome {
            Ok(response) => Some(response.header().context("put without header")?.revision()),
            Err(_) => None,
        };
        self.history.push(Write {
            key,
            value,
            acknowledged_at,
        });
        Ok(outcome?.header().context("put without header")?.revision())
    }

    /// `count` acknowledged puts, trying the clients in turn after a failure, within `timeout`.
    pub async fn put_many(
        &mut self,
        clients: &mut [Client],
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<i64> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut acknowledged = 0;
        let mut next_client = 0;
        let mut last_revision = 0;
        while acknowledged < count {
            ensure!(
                tokio::time::Instant::now() < deadline,
                "only {acknowledged} of {count} writes acknowledged within {timeout:?}"
            );
            match self.put(&mut clients[next_client]).await {
                Ok(revision) => {
                    acknowledged += 1;
                    last_revision = revision;
                }
                Err(_) => next_client = (next_client + 1) % clients.len(),
            }
        }
        Ok(last_revision)
    }

    pub fn acknowledged(&self) -> usize {
        self.history
            .iter()
            .filter(|write| write.acknowledged_at.is_some())
            .count()
    }

    /// Reads the prefix back (linearizable) and checks every acknowledged write is there with its
    /// value; writes with unknown outcome may or may not be present.
    pub async fn verify_no_acknowledged_write_lost(
        &self,
        client: &mut Client,
    ) -> anyhow::Result<()> {
        let response = client
            .get(
                format!("{}/", self.prefix),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let stored: std::collections::HashMap<&[u8], &[u8]> = response
            .kvs()
            .iter()
            .map(|kv| (kv.key(), kv.value()))
            .collect();
        for write in self.history.iter().filter(|w| w.acknowledged_at.is_some()) {
            let found = stored.get(write.key.as_bytes());
            ensure!(
                found == Some(&write.value.as_bytes()),
                "acknowledged write {write:?} lost: found {found:?}"
            );
        }
        Ok(())
    }
}
