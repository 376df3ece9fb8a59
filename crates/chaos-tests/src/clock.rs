//! A wall clock of a host's own, stepped while its processes run: `pgwarden run` (and the
//! PostgreSQL it starts, which inherits the environment) is loaded with libfaketime reading
//! its offset from a file of the host's. Only CLOCK_REALTIME moves
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`), as an NTP step does; monotonic clocks are untouched.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where Debian's `libfaketime` package puts the library.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// Why a stepped clock cannot be had here, or `None`.
pub fn unsupported_reason() -> Option<String> {
    (!Path::new(LIBFAKETIME).exists())
        .then(|| format!("{LIBFAKETIME} is missing (apt package libfaketime)"))
}

/// One host's offset file.
#[derive(Debug, Clone)]
pub struct FakeClock {
    file: PathBuf,
}

impl FakeClock {
    /// Creates the offset file `file` with no offset.
    pub fn create(file: &Path) -> anyhow::Result<FakeClock> {
        let clock = FakeClock {
            file: file.to_owned(),
        };
        clock.step_to(0)?;
        // PostgreSQL, run as the postgres OS user, reads it too.
        std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .with_context(|| format!("chmod {}", file.display()))?;
        Ok(clock)
    }

    /// The environment that makes a process read its wall clock from this file (re-read at
    /// most once a second).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".to_owned(), LIBFAKETIME.to_owned()),
            (
                "FAKETIME_TIMESTAMP_FILE".to_owned(),
                self.file.to_string_lossy().into_owned(),
            ),
            ("FAKETIME_CACHE_DURATION".to_owned(), "1".to_owned()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
        ]
    }

    /// Sets the host's wall clock to the real one plus `seconds` (negative: behind).
    pub fn step_to(&self, seconds: i64) -> anyhow::Result<()> {
        // Written whole to a temporary file and renamed, so a reader never sees it empty.
        let temporary = self.file.with_extension("new");
        std::fs::write(&temporary, format!("{seconds:+}\n"))
            .with_context(|| format!("write {}", temporary.display()))?;
        std::fs::set_permissions(
            &temporary,
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .with_context(|| format!("chmod {}", temporary.display()))?;
        std::fs::rename(&temporary, &self.file)
            .with_context(|| format!("rename to {}", self.file.display()))?;
        Ok(())
    }
}
