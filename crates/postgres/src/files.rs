//! Atomic file writes: a reader (PostgreSQL reloading, a crash mid-write) sees the old file or
//! the new one, never a torn one.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Result, io};
use crate::os_user::RunAs;

/// Writes `contents` to `path` by writing a temporary file beside it, fsyncing it, renaming
/// it over `path` and fsyncing the directory. The file gets `mode` and the PostgreSQL owner.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, owner: &RunAs) -> Result<()> {
    let directory = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = directory.join(format!(".{file_name}.pgwarden-tmp"));
    {
        let mut file = std::fs::File::create(&temporary).map_err(io("create", &temporary))?;
        file.write_all(contents).map_err(io("write", &temporary))?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", &temporary))?;
        file.sync_all().map_err(io("fsync", &temporary))?;
    }
    owner.chown(&temporary)?;
    std::fs::rename(&temporary, path).map_err(io("rename", path))?;
    sync_dir(directory)
}

/// fsyncs a directory so a rename or create inside it is durable.
pub fn sync_dir(directory: &Path) -> Result<()> {
    std::fs::File::open(directory)
        .and_then(|dir| dir.sync_all())
        .map_err(io("fsync directory", directory))
}

/// Creates an empty file (e.g. `standby.signal`) if missing, durably.
pub fn touch(path: &Path, owner: &RunAs) -> Result<()> {
    if !path.exists() {
        write_atomic(path, b"", 0o600, owner)?;
    }
    Ok(())
}

/// Removes a file if present, durably.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io("remove", path)(error)),
    }
}

/// Empties a directory but keeps it (and its owner and mode): used before a clone.
pub fn clear_dir(path: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io("read directory", path)(error)),
    };
    for entry in entries {
        let entry = entry.map_err(io("read directory", path))?;
        let entry_path = entry.path();
        let is_dir = entry.file_type().map_err(io("stat", &entry_path))?.is_dir();
        if is_dir {
            std::fs::remove_dir_all(&entry_path).map_err(io("remove", &entry_path))?;
        } else {
            std::fs::remove_file(&entry_path).map_err(io("remove", &entry_path))?;
        }
    }
    Ok(())
}

/// Whether a data directory is missing or empty (bootstrap or clone needed).
pub fn is_empty_dir(path: &Path) -> Result<bool> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(error) => Err(io("read directory", path)(error)),
    }
}
