//! User hooks, run as Patroni runs them (patroni.md §6).
//!
//! * Callbacks (`postgresql.callbacks.<event>`): the command line split like a POSIX shell
//!   would ([`split_command`]) + `<event> <role> <scope>`, asynchronously, at most one at a time
//!   per runner: firing a new callback kills the previous one and its children first. The exit
//!   code is ignored. `on_reload` gets its own runner.
//! * Synchronous hooks (`pre_promote`, `before_stop`): the command line alone, waited for up to
//!   a bound ([`run_hook`]); on timeout the hook and its children are killed.
//!
//! Every line a hook writes to stdout or stderr goes to pgwarden's log with the hook's name.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;

use crate::error::{Error, Result};
use crate::os_user::RunAs;

/// Splits a command line into words like a POSIX shell (without expansions): blanks separate
/// words; `'...'` is literal; inside `"..."` a backslash escapes only `\ " $` and a backquote;
/// outside quotes a backslash escapes any character. An unterminated quote or a trailing
/// backslash is an error naming the command.
pub fn split_command(command: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated ' in {command:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('\\' | '"' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unterminated \" in {command:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unterminated \" in {command:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err(format!("trailing backslash in {command:?}")),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// The argv of a callback: `command... event role scope`.
pub fn callback_argv(command: &[String], event: &str, role: &str, scope: &str) -> Vec<String> {
    let mut argv = command.to_vec();
    argv.extend([event.to_owned(), role.to_owned(), scope.to_owned()]);
    argv
}

/// Starts `argv` in its own process group with stdin closed and its output logged line by
/// line under `name`.
fn spawn_logged(run_as: &RunAs, argv: &[String], name: &str) -> Result<Option<Child>> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(None);
    };
    let mut process = run_as.command(program);
    process
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let mut child = process.spawn().map_err(|source| Error::Spawn {
        program: program.clone(),
        source,
    })?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(log_lines(stdout, name.to_owned(), "stdout"));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(log_lines(stderr, name.to_owned(), "stderr"));
    }
    Ok(Some(child))
}

async fn log_lines(stream: impl AsyncRead + Unpin, hook: String, stream_name: &'static str) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(hook = %hook, stream = stream_name, "{line}");
    }
}

/// Kills `child`'s whole process group (a shell hook's children die with it) if it runs.
fn kill_group(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None))
        && let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok())
    {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = child.start_kill();
    }
}

/// Runs a synchronous hook (`pre_promote`, `before_stop`): `argv` alone, waited for up to
/// `timeout`. `Ok(Some(status))` when it finished, `Ok(None)` when it ran out of time (it
/// and its process group are then killed), `Err` when it could not start.
pub async fn run_hook(
    run_as: &RunAs,
    argv: &[String],
    name: &str,
    timeout: Duration,
) -> Result<Option<ExitStatus>> {
    let Some(mut child) = spawn_logged(run_as, argv, name)? else {
        return Ok(None);
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => Ok(Some(status)),
        Ok(Err(source)) => Err(Error::Spawn {
            program: argv.first().cloned().unwrap_or_default(),
            source,
        }),
        Err(_) => {
            kill_group(&mut child);
            let _ = child.wait().await;
            Ok(None)
        }
    }
}

/// Runs callbacks one at a time, each in its own process group so a replaced callback is
/// killed with everything it started; `on_reload` has a slot of its own, so a reload never
/// kills a running `on_role_change`. Dropping the runner kills the callbacks still running.
#[derive(Debug)]
pub struct CallbackRunner {
    run_as: RunAs,
    current: Option<Child>,
    reload: Option<Child>,
}

impl CallbackRunner {
    pub fn new(run_as: RunAs) -> Self {
        Self {
            run_as,
            current: None,
            reload: None,
        }
    }

    /// The OS identity hooks run as.
    pub fn run_as(&self) -> &RunAs {
        &self.run_as
    }

    /// Kills the running callback of the same slot (if any), then starts
    /// `command event role scope`.
    pub fn fire(&mut self, command: &[String], event: &str, role: &str, scope: &str) -> Result<()> {
        let slot = if event == "on_reload" {
            &mut self.reload
        } else {
            &mut self.current
        };
        if let Some(mut child) = slot.take() {
            kill_group(&mut child);
        }
        let argv = callback_argv(command, event, role, scope);
        *slot = spawn_logged(&self.run_as, &argv, event)?;
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

    fn kill_all(&mut self) {
        for slot in [&mut self.current, &mut self.reload] {
            if let Some(mut child) = slot.take() {
                kill_group(&mut child);
            }
        }
    }
}

impl Drop for CallbackRunner {
    fn drop(&mut self) {
        self.kill_all();
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

    #[test]
    fn command_lines_split_like_a_shell() {
        let rows: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   ", &[]),
            ("/bin/cb.sh", &["/bin/cb.sh"]),
            ("  /bin/cb.sh  -v\t--x=1 ", &["/bin/cb.sh", "-v", "--x=1"]),
            ("'/opt/my hooks/cb.sh' a", &["/opt/my hooks/cb.sh", "a"]),
            ("\"/opt/my hooks/cb.sh\" a", &["/opt/my hooks/cb.sh", "a"]),
            ("/opt/my\\ hooks/cb.sh", &["/opt/my hooks/cb.sh"]),
            ("echo 'it''s'", &["echo", "its"]),
            ("echo \"it's\"", &["echo", "it's"]),
            ("echo 'a \\ b'", &["echo", "a \\ b"]),
            ("echo \"a \\\" \\$ \\n\"", &["echo", "a \" $ \\n"]),
            ("echo ''", &["echo", ""]),
            ("echo a'b c'd", &["echo", "ab cd"]),
            (
                "sh -c 'echo $1 >> /tmp/x'",
                &["sh", "-c", "echo $1 >> /tmp/x"],
            ),
        ];
        for (command, expected) in rows {
            let expected: Vec<String> = expected.iter().map(|word| (*word).to_owned()).collect();
            assert_eq!(split_command(command), Ok(expected), "{command:?}");
        }
        for broken in ["echo 'a", "echo \"a", "echo a\\"] {
            assert!(split_command(broken).is_err(), "{broken:?}");
        }
    }

    #[tokio::test]
    async fn a_reload_does_not_replace_a_running_role_change() {
        let mut runner = CallbackRunner::new(RunAs::current_user());
        // The callback arguments land in `$0 $1 $2`, which `sleep` would refuse.
        let sleep = ["sh".to_owned(), "-c".to_owned(), "sleep 30".to_owned()];
        assert!(
            runner
                .fire(&sleep, "on_role_change", "primary", "b")
                .is_ok()
        );
        let role_change = runner.running_pid();
        assert!(role_change.is_some());
        assert!(runner.fire(&sleep, "on_reload", "primary", "b").is_ok());
        assert_eq!(runner.running_pid(), role_change);
        assert!(runner.fire(&sleep, "on_start", "replica", "b").is_ok());
        assert_ne!(runner.running_pid(), role_change);
    }

    #[tokio::test]
    async fn hooks_report_exit_and_time_out() {
        let run_as = RunAs::current_user();
        let sh = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let ok = run_hook(&run_as, &sh("echo hi"), "t", Duration::from_secs(30)).await;
        assert!(matches!(ok, Ok(Some(status)) if status.success()));
        let failed = run_hook(&run_as, &sh("exit 3"), "t", Duration::from_secs(30)).await;
        assert!(matches!(failed, Ok(Some(status)) if status.code() == Some(3)));
        let slow = run_hook(&run_as, &sh("sleep 30"), "t", Duration::from_millis(200)).await;
        assert!(matches!(slow, Ok(None)));
        assert!(
            run_hook(&run_as, &[], "t", Duration::from_secs(1))
                .await
                .is_ok()
        );
    }
}
