//! Switchover benchmark: `cargo run -p ha-cluster-tests --example switchover_bench [N]`.
//!
//! One three-member cluster (default settings, loopback) and a writer that keeps one
//! connection per member and commits an INSERT every few milliseconds wherever it can. N times
//! (default 5), `POST /switchover` to the primary's REST API names the next replica; the write
//! gap is the longest pause between two commits from just before the request until the new
//! primary has committed. Prints each switchover and the median and worst gap.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ha_cluster_tests::Cluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Commit times and the member (its PostgreSQL port) that committed, shared by the writers.
type Commits = Arc<Mutex<Vec<(Instant, u16)>>>;

/// Commits INSERTs on the member at `port` whenever it accepts them, until the process ends.
async fn writer(port: u16, commits: Commits) {
    loop {
        let connect = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(port)
            .user("postgres")
            .password("secret")
            .dbname("postgres")
            .connect_timeout(Duration::from_millis(200))
            .connect(tokio_postgres::NoTls)
            .await;
        let Ok((client, connection)) = connect else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(connection);
        loop {
            let insert = client.execute("INSERT INTO bench_writes VALUES (now())", &[]);
            match tokio::time::timeout(Duration::from_millis(500), insert).await {
                Ok(Ok(_)) => {
                    if let Ok(mut commits) = commits.lock() {
                        commits.push((Instant::now(), port));
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                // A replica refuses (read-only): try again shortly; a broken connection: reconnect.
                Ok(Err(error)) if !client.is_closed() && error.code().is_some() => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                _ => break,
            }
        }
    }
}

/// `POST path` with a JSON body; the status code and body.
async fn post(address: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Whether the old primary (`old` port) committed after the first commit elsewhere: two
/// members accepting writes.
fn overlapping(commits: &[(Instant, u16)], from: Instant, old: u16) -> bool {
    let first_elsewhere = commits
        .iter()
        .filter(|(time, port)| *time >= from && *port != old)
        .map(|(time, _)| *time)
        .min();
    first_elsewhere.is_some_and(|first| {
        commits
            .iter()
            .any(|(time, port)| *port == old && *time > first)
    })
}

fn longest_gap(commits: &[(Instant, u16)], from: Instant, until: Instant) -> Duration {
    let mut times: Vec<Instant> = commits
        .iter()
        .map(|(time, _)| *time)
        .filter(|t| *t >= from)
        .collect();
    times.sort();
    let mut previous = from;
    let mut longest = Duration::ZERO;
    for time in times {
        longest = longest.max(time.saturating_duration_since(previous));
        previous = time;
        if time > until {
            break;
        }
    }
    longest
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(5);
    let cluster = Cluster::start(3)?;
    let mut primary = cluster.wait_healthy(2, Duration::from_secs(120)).await?;
    cluster.nodes[primary]
        .query("CREATE TABLE bench_writes (at timestamptz)")
        .await?;
    let commits: Commits = Arc::new(Mutex::new(Vec::new()));
    for node in &cluster.nodes {
        tokio::spawn(writer(node.spec.pg_port, commits.clone()));
    }
    let mut gaps = Vec::new();
    for round in 1..=rounds {
        cluster.wait_healthy(2, Duration::from_secs(60)).await?;
        // Let the writer run on the settled cluster first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let leader = cluster.nodes[primary].spec.name.clone();
        let candidate_index = (primary + 1) % cluster.nodes.len();
        let candidate = cluster.nodes[candidate_index].spec.name.clone();
        let asked = Instant::now();
        let (status, body) = post(
            &cluster.nodes[primary].rest_address(),
            "/switchover",
            &format!(r#"{{"leader": "{leader}", "candidate": "{candidate}"}}"#),
        )
        .await?;
        let answered = asked.elapsed();
        anyhow::ensure!(status == 200, "switchover answered {status}: {body}");
        let new_primary = cluster.wait_writable(primary, Duration::from_secs(30)).await?;
        // A commit on the new primary closes the gap; give the writer a moment to make it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (gap, overlap) = {
            let commits = commits.lock().map_err(|_| anyhow::anyhow!("writer lock"))?;
            let from = asked - Duration::from_millis(200);
            (
                longest_gap(&commits, from, Instant::now()),
                overlapping(&commits, from, cluster.nodes[primary].spec.pg_port),
            )
        };
        anyhow::ensure!(!overlap, "the old primary committed after the new one did");
        println!(
            "switchover {round}: {leader} -> {} (asked {candidate}), write gap {gap:.2?}, API answered after {answered:.2?}",
            cluster.nodes[new_primary].spec.name
        );
        gaps.push(gap);
        primary = new_primary;
    }
    gaps.sort();
    println!(
        "write gap: median {:.2?}, worst {:.2?} over {} switchovers",
        gaps[gaps.len() / 2],
        gaps[gaps.len() - 1],
        gaps.len()
    );
    Ok(())
}
