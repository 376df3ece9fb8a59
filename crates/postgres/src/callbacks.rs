//! User callbacks (`postgresql.callbacks.<event>`), run as Patroni runs them
//! (patroni.md §6.1): the configured command + `<event> <role> <scope>`, asynchronously,
//! at most one at a time per runner: firing a new callback kills the previous one and its
//! children first. The exit code is ignored. `on_reload` gets its own runner.

use std::process::ExitStatus;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;

use crate::error::{Error, Result};
use crate::os_user::RunAs;

/// The argv of a callback: `command... event role scope`.
pub fn callback_argv(command: &[String], event: &str, role: &str, scope: &str) -> Vec<String> {
    let mut argv = command.to_vec();
    argv.extend([event.to_owned(), role.to_owned(), scope.to_owned()]);
    argv
}

/// Runs callbacks one at a time, each in its own process group so a replaced callback is
/// killed with everything it started. Dropping the runner kills a callback still running.
#[derive(Debug)]
pub struct CallbackRunner {
    run_as: RunAs,
    current: Option<Child>,
}

impl CallbackRunner {
    pub fn new(run_as: RunAs) -> Self {
        Self {
            run_as,
            current: None,
        }
    }

    /// Kills the running callback (if any), then starts `command event role scope`.
    pub fn fire(&mut self, command: &[String], event: &str, role: &str, scope: &str) -> Result<()> {
        self.kill_current();
        let argv = callback_argv(command, event, role, scope);
        let Some((program, args)) = argv.split_first() else {
            return Ok(());
        };
        let mut process = self.run_as.command(program);
        process
            .args(args)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(false);
        let child = process.spawn().map_err(|source| Error::Spawn {
            program: program.clone(),
            source,
        })?;
        self.current = Some(child);
        Ok(())
    }

    /// Waits for the running callback to finish; `None` when nothing runs.
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        let status = self.current.as_mut()?.wait().await.ok();
        self.current = None;
        status
    }

    /// The process group ID (= PID) of the running callback.
    pub fn running_pid(&mut self) -> Option<u32> {
        let child = self.current.as_mut()?;
        match child.try_wait() {
            Ok(None) => child.id(),
            _ => None,
        }
    }

    fn kill_current(&mut self) {
        if let Some(mut child) = self.current.take()
            && matches!(child.try_wait(), Ok(None))
            && let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok())
        {
            // The whole group: a shell callback's children die with it.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            // Reap it; it cannot outlive SIGKILL for long.
            let _ = child.start_kill();
        }
    }
}

impl Drop for CallbackRunner {
    fn drop(&mut self) {
        self.kill_current();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_appends_event_role_scope() {
        assert_eq!(
            callback_argv(
                &["/usr/local/bin/cb.sh".into(), "--verbose".into()],
                "on_role_change",
                "primary",
                "batman"
            ),
            [
                "/usr/local/bin/cb.sh",
                "--verbose",
                "on_role_change",
                "primary",
                "batman"
            ]
        );
    }
}
