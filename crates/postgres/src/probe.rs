//! SQL facts about a running server (role, timeline, WAL positions, replication state,
//! version) and the few SQL commands the agent issues (promote, checkpoint, slots, users),
//! over tokio-postgres on the unix socket.

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, Row};

use crate::config::{quote_ident, quote_literal};
use crate::error::{Error, Result};
use crate::lsn::Lsn;
use crate::timeline::{HistoryEntry, parse_timeline_history};

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTarget {
    /// Directory holding the unix socket (`host=` for libpq).
    pub socket_dir: PathBuf,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    /// Per-attempt connect timeout, start-up handshake included.
    pub connect_timeout: Duration,
}

/// An open connection. The connection driver runs on a task that ends by itself once the
/// client is dropped (after sending Terminate, so the server logs no broken connection).
#[derive(Debug)]
pub struct Probe {
    client: Client,
    driver: JoinHandle<()>,
}

impl Probe {
    /// Closes the connection and waits for the driver to finish.
    pub async fn close(self) {
        let Probe { client, driver } = self;
        drop(client);
        let _ = driver.await;
    }
}

/// A row of `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRow {
    pub application_name: String,
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub sync_priority: Option<i32>,
    pub client_addr: Option<String>,
    pub write_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
}

/// `pg_stat_wal_receiver` on a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalReceiver {
    pub status: String,
    pub sender_host: Option<String>,
    pub sender_port: Option<i32>,
    pub slot_name: Option<String>,
    pub received_timeline: Option<u32>,
    pub flushed_lsn: Option<Lsn>,
    pub latest_end_lsn: Option<Lsn>,
}

/// One snapshot of the server's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    pub in_recovery: bool,
    /// `server_version_num`, e.g. 150004.
    pub server_version: u32,
    pub system_identifier: u64,
    /// Primary: from the current WAL file name; replica: the WAL receiver's timeline, else the
    /// last checkpoint's.
    pub timeline: Option<u32>,
    /// Primary only: `pg_current_wal_lsn()` and `pg_current_wal_flush_lsn()`.
    pub write_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    /// Replica only: `pg_last_wal_receive_lsn()`, `pg_last_wal_replay_lsn()`.
    pub received_lsn: Option<Lsn>,
    pub replayed_lsn: Option<Lsn>,
    pub replay_paused: bool,
    pub replication: Vec<ReplicationRow>,
    pub wal_receiver: Option<WalReceiver>,
}

/// A replication slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub physical: bool,
    pub active: bool,
    pub restart_lsn: Option<Lsn>,
}

fn lsn_column(row: &Row, index: usize) -> Result<Option<Lsn>> {
    let text: Option<String> = row.try_get(index)?;
    Ok(text.as_deref().and_then(Lsn::parse))
}

impl Probe {
    /// Connects once (no retry).
    pub async fn connect(target: &ConnectTarget) -> Result<Probe> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&target.socket_dir)
            .port(target.port)
            .user(&target.user)
            .dbname(&target.dbname)
            .application_name("pgwarden")
            .connect_timeout(target.connect_timeout);
        if let Some(password) = &target.password {
            config.password(password);
        }
        // tokio-postgres's connect timeout covers the socket connect only; a stopped
        // postmaster's socket still accepts, and the start-up handshake would wait forever.
        let (client, connection) =
            tokio::time::timeout(target.connect_timeout, config.connect(NoTls))
                .await
                .map_err(|_| Error::Unresponsive(target.connect_timeout))??;
        let driver = tokio::spawn(async move {
            // The connection ends when the client is dropped or the server goes away; the
            // client then reports the error on its next query.
            let _ = connection.await;
        });
        Ok(Probe { client, driver })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reads every fact the agent needs in one round of queries.
    pub async fn facts(&self) -> Result<ServerFacts> {
        let row = self
            .client
            .query_one(
                "SELECT pg_is_in_recovery(), current_setting('server_version_num')::int, \
                 (SELECT system_identifier::text FROM pg_control_system())",
                &[],
            )
            .await?;
        let in_recovery: bool = row.try_get(0)?;
        let server_version = u32::try_from(row.try_get::<_, i32>(1)?)
            .map_err(|_| Error::UnexpectedResult("negative server_version_num".into()))?;
        let system_identifier: String = row.try_get(2)?;
        let system_identifier = system_identifier
            .parse()
            .map_err(|_| Error::UnexpectedResult("system_identifier".into()))?;

        let wal_receiver = self.wal_receiver().await?;
        let mut facts = ServerFacts {
            in_recovery,
            server_version,
            system_identifier,
            timeline: None,
            write_lsn: None,
            flush_lsn: None,
            received_lsn: None,
            replayed_lsn: None,
            replay_paused: false,
            replication: self.replication().await?,
            wal_receiver: None,
        };
        if in_recovery {
            let row = self
                .client
                .query_one(
                    "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
                     pg_is_wal_replay_paused(), (SELECT timeline_id FROM pg_control_checkpoint())",
                    &[],
                )
                .await?;
            facts.received_lsn = lsn_column(&row, 0)?;
            facts.replayed_lsn = lsn_column(&row, 1)?;
            facts.replay_paused = row.try_get(2)?;
            let checkpoint_timeline: Option<i32> = row.try_get(3)?;
            facts.timeline = wal_receiver
                .as_ref()
                .and_then(|receiver| receiver.received_timeline)
                .or_else(|| checkpoint_timeline.and_then(|tl| u32::try_from(tl).ok()));
        } else {
            let row = self
                .client
                .query_one(
                    "SELECT pg_current_wal_lsn()::text, pg_current_wal_flush_lsn()::text, \
                     substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
                    &[],
                )
                .await?;
            facts.write_lsn = lsn_column(&row, 0)?;
            facts.flush_lsn = lsn_column(&row, 1)?;
            let timeline_hex: String = row.try_get(2)?;
            facts.timeline = u32::from_str_radix(&timeline_hex, 16).ok();
        }
        facts.wal_receiver = wal_receiver;
        Ok(facts)
    }

    async fn replication(&self) -> Result<Vec<ReplicationRow>> {
        let rows = self
            .client
            .query(
                "SELECT application_name, state, sync_state, sync_priority, client_addr::text, \
                 write_lsn::text, flush_lsn::text, replay_lsn::text \
                 FROM pg_stat_replication ORDER BY application_name",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ReplicationRow {
                    application_name: row.try_get::<_, Option<String>>(0)?.unwrap_or_default(),
                    state: row.try_get(1)?,
                    sync_state: row.try_get(2)?,
                    sync_priority: row.try_get(3)?,
                    client_addr: row.try_get(4)?,
                    write_lsn: lsn_column(row, 5)?,
                    flush_lsn: lsn_column(row, 6)?,
                    replay_lsn: lsn_column(row, 7)?,
                })
            })
            .collect()
    }

    async fn wal_receiver(&self) -> Result<Option<WalReceiver>> {
        let row = self
            .client
            .query_opt(
                "SELECT status, sender_host, sender_port, slot_name, received_tli, \
                 flushed_lsn::text, latest_end_lsn::text FROM pg_stat_wal_receiver",
                &[],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let received_timeline: Option<i32> = row.try_get(4)?;
        Ok(Some(WalReceiver {
            status: row.try_get(0)?,
            sender_host: row.try_get(1)?,
            sender_port: row.try_get(2)?,
            slot_name: row.try_get(3)?,
            received_timeline: received_timeline.and_then(|tl| u32::try_from(tl).ok()),
            flushed_lsn: lsn_column(&row, 5)?,
            latest_end_lsn: lsn_column(&row, 6)?,
        }))
    }

    /// `pg_promote(wait => true)`: ends recovery; true once the server accepts writes.
    pub async fn promote(&self, wait: Duration) -> Result<bool> {
        let seconds = i32::try_from(wait.as_secs().max(1)).unwrap_or(i32::MAX);
        let row = self
            .client
            .query_one("SELECT pg_promote(true, $1)", &[&seconds])
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The history file of `timeline` (empty for timeline 1, which has none). Needs a role
    /// allowed to call `pg_read_file` (superuser or `pg_read_server_files`).
    pub async fn timeline_history(&self, timeline: u32) -> Result<Vec<HistoryEntry>> {
        if timeline <= 1 {
            return Ok(Vec::new());
        }
        let path = format!("pg_wal/{timeline:08X}.history");
        let row = self
            .client
            .query_one("SELECT pg_read_file($1)", &[&path])
            .await?;
        let text: String = row.try_get(0)?;
        Ok(parse_timeline_history(&text))
    }

    /// Ends recovery and polls every 5 ms until the server accepts writes. `pg_promote(true)`
    /// sleeps in 100 ms steps, so this shaves most of that off a failover.
    pub async fn promote_and_poll(&self, timeout: Duration) -> Result<()> {
        let started = tokio::time::Instant::now();
        let row = self
            .client
            .query_one("SELECT pg_promote(false)", &[])
            .await?;
        if !row.try_get::<_, bool>(0)? {
            return Err(Error::UnexpectedResult("pg_promote refused".into()));
        }
        loop {
            let row = self
                .client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await?;
            if !row.try_get::<_, bool>(0)? {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(Error::UnexpectedResult(format!(
                    "still in recovery {timeout:?} after promote"
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn checkpoint(&self) -> Result<()> {
        self.client.batch_execute("CHECKPOINT").await?;
        Ok(())
    }

    /// Creates (or updates the password of) a role with REPLICATION and LOGIN.
    pub async fn ensure_replication_user(&self, name: &str, password: Option<&str>) -> Result<()> {
        let exists = self
            .client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
            .await?
            .is_some();
        let verb = if exists { "ALTER" } else { "CREATE" };
        let password = password
            .map(|password| format!(" PASSWORD {}", quote_literal(password)))
            .unwrap_or_default();
        self.client
            .batch_execute(&format!(
                "{verb} ROLE {} WITH REPLICATION LOGIN{password}",
                quote_ident(name)
            ))
            .await?;
        Ok(())
    }

    pub async fn slots(&self) -> Result<Vec<Slot>> {
        let rows = self
            .client
            .query(
                "SELECT slot_name::text, slot_type = 'physical', active, restart_lsn::text \
                 FROM pg_replication_slots ORDER BY slot_name",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Slot {
                    name: row.try_get(0)?,
                    physical: row.try_get(1)?,
                    active: row.try_get(2)?,
                    restart_lsn: lsn_column(row, 3)?,
                })
            })
            .collect()
    }

    /// Creates a physical slot reserving WAL now, unless it exists. True if created.
    pub async fn ensure_physical_slot(&self, name: &str) -> Result<bool> {
        let row = self
            .client
            .query_opt(
                "SELECT pg_create_physical_replication_slot($1, true) \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                &[&name],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Drops a slot unless absent or in use. True if dropped.
    pub async fn drop_slot(&self, name: &str) -> Result<bool> {
        let row = self
            .client
            .query_opt(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND NOT active",
                &[&name],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Advances a physical slot (on a replica, from the primary's position). No-op when the
    /// slot is already past `lsn`.
    pub async fn advance_slot(&self, name: &str, lsn: Lsn) -> Result<()> {
        self.client
            .query_opt(
                "SELECT pg_replication_slot_advance(slot_name, $2::text::pg_lsn) \
                 FROM pg_replication_slots WHERE slot_name = $1 \
                 AND (restart_lsn IS NULL OR restart_lsn < $2::text::pg_lsn)",
                &[&name, &lsn.to_string()],
            )
            .await?;
        Ok(())
    }
}
