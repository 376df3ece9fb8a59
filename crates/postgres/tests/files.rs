//! Configuration files land in the data directory atomically, with the right modes, and the
//! original postgresql.conf is kept once as postgresql.base.conf.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Result;
use postgres::RunAs;
use postgres::config::{PgpassEntry, RecoverySettings, ServerSettings};
use postgres::datadir::{write_config, write_pgpass};
use postgres::files::{clear_dir, is_empty_dir, write_atomic};

fn settings(data_dir: &Path, replica: bool) -> ServerSettings {
    ServerSettings {
        listen_addresses: "127.0.0.1".into(),
        port: 5432,
        unix_socket_directory: data_dir.to_owned(),
        cluster_name: "batman".into(),
        dynamic_parameters: BTreeMap::new(),
        local_parameters: BTreeMap::new(),
        synchronous_standby_names: None,
        hba_file: data_dir.join("pg_hba.conf"),
        ident_file: None,
        recovery: replica.then(RecoverySettings::default),
        replica_minimums: BTreeMap::new(),
    }
}

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[test]
fn write_config_keeps_the_original_as_base_and_manages_standby_signal() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path();
    let owner = RunAs::current_user();
    std::fs::write(data.join("postgresql.conf"), "shared_buffers = '1GB'\n")?;
    let hba = vec!["local all all trust".to_owned()];

    write_config(data, &settings(data, true), &hba, &owner)?;
    assert_eq!(
        std::fs::read_to_string(data.join("postgresql.base.conf"))?,
        "shared_buffers = '1GB'\n"
    );
    let conf = std::fs::read_to_string(data.join("postgresql.conf"))?;
    assert!(conf.contains("include_if_exists 'postgresql.base.conf'"));
    assert!(conf.contains("recovery_target_timeline = 'latest'"));
    assert!(data.join("standby.signal").exists());
    assert_eq!(mode(&data.join("postgresql.conf"))?, 0o600);
    assert!(std::fs::read_to_string(data.join("pg_hba.conf"))?.contains("local all all trust"));

    // Promoted: the signal goes, the base file is not touched again.
    std::fs::write(data.join("recovery.signal"), "")?;
    write_config(data, &settings(data, false), &hba, &owner)?;
    assert!(!data.join("standby.signal").exists());
    assert!(!data.join("recovery.signal").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("postgresql.base.conf"))?,
        "shared_buffers = '1GB'\n"
    );
    assert!(!std::fs::read_to_string(data.join("postgresql.conf"))?.contains("recovery"));

    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(data)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().contains("pgwarden-tmp"))
        .collect();
    assert!(leftovers.is_empty());
    Ok(())
}

#[test]
fn write_atomic_replaces_contents_and_sets_the_mode() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("file");
    let owner = RunAs::current_user();
    write_atomic(&path, b"one", 0o644, &owner)?;
    write_atomic(&path, b"two", 0o600, &owner)?;
    assert_eq!(std::fs::read(&path)?, b"two");
    assert_eq!(mode(&path)?, 0o600);
    Ok(())
}

#[test]
fn pgpass_is_private() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pgpass");
    let entries = [PgpassEntry {
        host: None,
        port: None,
        database: None,
        user: "replicator".into(),
        password: "secret".into(),
    }];
    write_pgpass(&path, &entries, &RunAs::current_user())?;
    assert_eq!(std::fs::read_to_string(&path)?, "*:*:*:replicator:secret\n");
    assert_eq!(mode(&path)?, 0o600);
    Ok(())
}

#[test]
fn clear_dir_empties_but_keeps_the_directory() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("base/1"))?;
    std::fs::write(data.join("PG_VERSION"), "15\n")?;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
    assert!(!is_empty_dir(&data)?);
    clear_dir(&data)?;
    assert!(is_empty_dir(&data)?);
    assert_eq!(mode(&data)?, 0o700);
    assert!(is_empty_dir(&dir.path().join("missing"))?);
    clear_dir(&dir.path().join("missing"))?;
    Ok(())
}
