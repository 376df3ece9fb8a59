//! A writer that commits INSERTs on every member that accepts them, recording when and where
//! each commit happened, and the checks run over that record: the longest pause between
//! commits (the write gap) and whether two members accepted writes at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One acknowledged commit: when, and on which member (its PostgreSQL port).
pub type Commit = (Instant, u16);

/// Commits recorded by the writer tasks (aborted when dropped).
#[derive(Debug)]
pub struct Writer {
    commits: Arc<Mutex<Vec<Commit>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writer {
    /// Starts one writer task per port; `table` must exist (one `timestamptz` column).
    pub fn start(ports: &[u16], table: &str) -> Writer {
        let commits = Arc::new(Mutex::new(Vec::new()));
        let tasks = ports
            .iter()
            .map(|port| tokio::spawn(write_loop(*port, table.to_owned(), commits.clone())))
            .collect();
        Writer { commits, tasks }
    }

    /// Every commit so far.
    pub fn commits(&self) -> Vec<Commit> {
        self.commits
            .lock()
            .map(|commits| commits.clone())
            .unwrap_or_default()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn write_loop(port: u16, table: String, commits: Arc<Mutex<Vec<Commit>>>) {
    let insert = format!("INSERT INTO {table} VALUES (now())");
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
            match tokio::time::timeout(Duration::from_millis(500), client.execute(&insert, &[]))
                .await
            {
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

/// The longest pause between commits from `from` until the first commit after `until`.
pub fn longest_gap(commits: &[Commit], from: Instant, until: Instant) -> Duration {
    let mut times: Vec<Instant> = commits
        .iter()
        .map(|(time, _)| *time)
        .filter(|time| *time >= from)
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

/// Whether the member at port `old` committed after another member's first commit since
/// `from`: two members accepting writes at once.
pub fn overlapping(commits: &[Commit], from: Instant, old: u16) -> bool {
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

/// `POST path` with a JSON body to a REST API at `address`: (status code, body).
pub async fn http_post(address: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    http_send("POST", address, path, body).await
}

/// `PATCH path` with a JSON body to a REST API at `address`: (status code, body).
pub async fn http_patch(address: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    http_send("PATCH", address, path, body).await
}

async fn http_send(
    method: &str,
    address: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_and_overlap_from_a_record() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let commits = vec![(at(0), 1), (at(10), 1), (at(300), 2), (at(310), 2)];
        assert_eq!(
            longest_gap(&commits, at(0), at(305)),
            Duration::from_millis(290)
        );
        assert!(!overlapping(&commits, at(0), 1));
        let mut both = commits.clone();
        both.push((at(320), 1));
        assert!(overlapping(&both, at(0), 1));
    }
}
