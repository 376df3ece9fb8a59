//! Closed-loop load: N clients, each sending its next request when the previous one answered.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use etcd_client::Client;
use etcd_client::ConnectOptions;

/// Requests are spread over this many clients per connection at most (etcd's benchmark uses many clients per conn).
const CLIENTS_PER_CONNECTION: usize = 16;
/// Ops that start during the warm-up are not measured.
const WARM_UP: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    Put { clients: usize },
    LinearizableGet { clients: usize },
}

impl Workload {
    pub fn clients(self) -> usize {
        match self {
            Workload::Put { clients } | Workload::LinearizableGet { clients } => clients,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workload::Put { clients } => write!(formatter, "put, {clients} clients"),
            Workload::LinearizableGet { clients } => {
                write!(formatter, "linearizable get, {clients} clients")
            }
        }
    }
}

/// What one workload run measured.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    /// Latency of every successful measured op, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
    pub errors: usize,
    pub elapsed: Duration,
}

impl Sample {
    pub fn ops_per_second(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    pub fn percentile_ms(&self, quantile: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((self.latencies_us.len() - 1) as f64 * quantile).round() as usize;
        f64::from(self.latencies_us[rank]) / 1000.0
    }
}

async fn connections(endpoint: &str, clients: usize) -> anyhow::Result<Vec<Client>> {
    let count = clients.div_ceil(CLIENTS_PER_CONNECTION).max(1);
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        let options = ConnectOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(REQUEST_TIMEOUT);
        let client = Client::connect([endpoint], Some(options))
            .await
            .with_context(|| format!("connect to {endpoint}"))?;
        connections.push(client);
    }
    Ok(connections)
}

/// Runs `workload` for a warm-up plus `duration` and returns the measured part.
pub async fn run(
    endpoint: &str,
    workload: Workload,
    duration: Duration,
    value_size: usize,
) -> anyhow::Result<Sample> {
    let connections = connections(endpoint, workload.clients()).await?;
    let value = vec![b'v'; value_size];
    if let Workload::LinearizableGet { .. } = workload {
        let mut client = connections[0].clone();
        client
            .put("bench/get", value.clone(), None)
            .await
            .context("seed the get key")?;
    }
    let start = Instant::now();
    let measure_from = start + WARM_UP;
    let end = measure_from + duration;
    let mut tasks = Vec::with_capacity(workload.clients());
    for client_index in 0..workload.clients() {
        let mut client = connections[client_index % connections.len()].clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut sample = Sample::default();
            let mut sequence: u64 = 0;
            loop {
                let began = Instant::now();
                if began >= end {
                    break;
                }
                let result = match workload {
                    Workload::Put { .. } => {
                        sequence += 1;
                        let key = format!("bench/{client_index}/{sequence}");
                        client.put(key, value.clone(), None).await.map(|_| ())
                    }
                    Workload::LinearizableGet { .. } => {
                        client.get("bench/get", None).await.map(|_| ())
                    }
                };
                if began < measure_from {
                    continue;
                }
                match result {
                    Ok(()) => sample
                        .latencies_us
                        .push(u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX)),
                    Err(_) => sample.errors += 1,
                }
            }
            sample
        }));
    }
    let mut total = Sample::default();
    for task in tasks {
        let sample = task.await.context("a load client panicked")?;
        total.latencies_us.extend(sample.latencies_us);
        total.errors += sample.errors;
    }
    total.elapsed = duration;
    total.latencies_us.sort_unstable();
    Ok(total)
}

/// Attempts per fill key: a put that failed (e.g. timed out while the store took a snapshot) is
/// sent again, which is harmless for a fill (same key, same value).
const FILL_ATTEMPTS: usize = 20;
/// Pause before sending a failed fill put again.
const FILL_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Writes `keys` distinct keys of `value_size` bytes with 256 concurrent clients; returns how
/// many puts failed and were sent again.
pub async fn fill(endpoint: &str, keys: usize, value_size: usize) -> anyhow::Result<usize> {
    const CLIENTS: usize = 256;
    let connections = connections(endpoint, CLIENTS).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let value = vec![b'f'; value_size];
    let mut tasks = Vec::with_capacity(CLIENTS);
    for client_index in 0..CLIENTS {
        let mut client = connections[client_index % connections.len()].clone();
        let next = Arc::clone(&next);
        let retries = Arc::clone(&retries);
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= keys {
                    return Ok::<(), anyhow::Error>(());
                }
                let key = format!("fill/{index:010}");
                let mut attempt = 1;
                loop {
                    match client.put(key.clone(), value.clone(), None).await {
                        Ok(_) => break,
                        Err(error) if attempt < FILL_ATTEMPTS => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            eprintln!("  fill key {index}: {error}; sending it again");
                            attempt += 1;
                            tokio::time::sleep(FILL_RETRY_PAUSE).await;
                        }
                        Err(error) => {
                            return Err(error).with_context(|| {
                                format!("put fill key {index} ({attempt} attempts)")
                            });
                        }
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.context("a fill client panicked")??;
    }
    Ok(retries.load(Ordering::Relaxed))
}
