//! Which OS user PostgreSQL's programs run as. PostgreSQL refuses to run as root, so when the
//! agent is root every PostgreSQL binary runs as a configured unprivileged user (switching
//! uid/gid in the child with std's `CommandExt::uid/gid`, which also drops supplementary
//! groups), and the directories it owns are chowned to that user. When the agent is not root
//! everything runs as the current user.
//!
//! pgwarden turns transparent huge pages off for its own process (see the binary's `main`); the
//! flag is inherited across fork and exec, so every command made here puts back the setting
//! pgwarden itself was started with ([`set_children_thp_disabled`]): PostgreSQL and callbacks
//! follow the machine's policy, not pgwarden's.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};

use nix::unistd::{Uid, User};

use crate::error::{Error, Result, io};

/// The transparent-huge-page flag children get: the one pgwarden was started with.
static CHILDREN_THP_DISABLED: AtomicBool = AtomicBool::new(false);

/// Records the transparent-huge-page flag pgwarden was started with, before it changed its own,
/// so that PostgreSQL's programs and callbacks get that one back.
pub fn set_children_thp_disabled(disabled: bool) {
    CHILDREN_THP_DISABLED.store(disabled, Ordering::Relaxed);
}

/// The identity PostgreSQL processes get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// `Some` when the agent is root and must switch: (uid, gid, home).
    switch_to: Option<(u32, u32, PathBuf)>,
}

impl RunAs {
    /// Run as whoever the agent is.
    pub fn current_user() -> Self {
        Self { switch_to: None }
    }

    /// Run as `name` when the agent is root; as the current user otherwise.
    pub fn configured(name: &str) -> Result<Self> {
        if !Uid::effective().is_root() {
            return Ok(Self::current_user());
        }
        let user = User::from_name(name)
            .map_err(|source| Error::UserLookup {
                name: name.to_owned(),
                source,
            })?
            .ok_or_else(|| Error::UserNotFound(name.to_owned()))?;
        Ok(Self {
            switch_to: Some((user.uid.as_raw(), user.gid.as_raw(), user.dir)),
        })
    }

    /// Whether children switch to another user.
    pub fn switches_user(&self) -> bool {
        self.switch_to.is_some()
    }

    /// A command for a PostgreSQL program with the identity applied and the working directory
    /// at `/` (the agent's may be unreadable for that user). The environment, locale included,
    /// is inherited: initdb takes the cluster's default locale from it.
    pub fn command(&self, program: impl AsRef<Path>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program.as_ref());
        command.current_dir("/");
        if let Some((uid, gid, home)) = &self.switch_to {
            command.uid(*uid).gid(*gid).env("HOME", home);
        }
        let thp_disabled = CHILDREN_THP_DISABLED.load(Ordering::Relaxed);
        #[allow(
            unsafe_code,
            reason = "pre_exec runs in the forked child; prctl is async-signal-safe and allocates nothing"
        )]
        // SAFETY: the closure only makes one prctl system call, which is safe between fork and exec.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_thp_disable(thp_disabled).map_err(std::io::Error::from)
            });
        }
        command
    }

    /// Hands `path` to the PostgreSQL user (no-op when not switching).
    pub fn chown(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid, _)) = &self.switch_to {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid)).map_err(io("chown", path))?;
        }
        Ok(())
    }

    /// Creates `path` if missing, hands it to the PostgreSQL user and sets `mode`
    /// (0700 for a data directory: PostgreSQL refuses anything looser).
    pub fn prepare_dir(&self, path: &Path, mode: u32) -> Result<()> {
        std::fs::create_dir_all(path).map_err(io("create directory", path))?;
        self.chown(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `THP_enabled` line of a child's /proc status, as made by [`RunAs::command`].
    async fn child_thp_enabled() -> String {
        let output = RunAs::current_user()
            .command("cat")
            .arg("/proc/self/status")
            .output()
            .await
            .expect("run cat");
        let status = String::from_utf8(output.stdout).expect("utf-8 status");
        status
            .lines()
            .find(|line| line.starts_with("THP_enabled:"))
            .expect("THP_enabled line")
            .to_owned()
    }

    #[tokio::test]
    async fn children_get_back_the_huge_page_flag_pgwarden_was_started_with() {
        let started_with = nix::sys::prctl::get_thp_disable().expect("read flag");
        set_children_thp_disabled(started_with);
        nix::sys::prctl::set_thp_disable(true).expect("turn huge pages off here");
        let expected = if started_with { "0" } else { "1" };
        assert_eq!(
            child_thp_enabled().await,
            format!("THP_enabled:\t{expected}")
        );
        set_children_thp_disabled(true);
        assert_eq!(child_thp_enabled().await, "THP_enabled:\t0");
    }
}
