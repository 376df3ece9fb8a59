//! Writing the rendered configuration into a data directory: postgresql.conf (the original
//! kept once as postgresql.base.conf), pg_hba.conf, and `standby.signal` on replicas.

use std::path::Path;

use crate::config::{
    BASE_CONF, PgpassEntry, ServerSettings, render_pg_hba, render_pgpass, render_postgresql_conf,
};
use crate::error::{Result, io};
use crate::files::{remove_if_exists, touch, write_atomic};
use crate::os_user::RunAs;

/// Writes every configuration file for `settings` into `data_dir`. Idempotent.
pub fn write_config(
    data_dir: &Path,
    settings: &ServerSettings,
    hba_lines: &[String],
    owner: &RunAs,
) -> Result<()> {
    let conf = data_dir.join("postgresql.conf");
    let base = data_dir.join(BASE_CONF);
    if !base.exists() && conf.exists() {
        // The first time only: keep initdb's (or the clone source's) file as the base.
        std::fs::rename(&conf, &base).map_err(io("rename", &conf))?;
    }
    if !base.exists() {
        write_atomic(&base, b"", 0o600, owner)?;
    }
    write_atomic(
        &settings.hba_file,
        render_pg_hba(hba_lines).as_bytes(),
        0o600,
        owner,
    )?;
    write_atomic(
        &conf,
        render_postgresql_conf(settings).as_bytes(),
        0o600,
        owner,
    )?;
    let signal = data_dir.join("standby.signal");
    if settings.recovery.is_some() {
        touch(&signal, owner)?;
    } else {
        remove_if_exists(&signal)?;
    }
    remove_if_exists(&data_dir.join("recovery.signal"))
}

/// Writes a pgpass file (mode 0600, owned by the PostgreSQL user: libpq ignores a pgpass
/// readable by others).
pub fn write_pgpass(path: &Path, entries: &[PgpassEntry], owner: &RunAs) -> Result<()> {
    write_atomic(path, render_pgpass(entries).as_bytes(), 0o600, owner)
}
