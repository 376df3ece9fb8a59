//! Callbacks run as the PostgreSQL user with Patroni's arguments; a new one kills the
//! previous one together with the processes it started.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use postgres::RunAs;
use postgres::callbacks::CallbackRunner;

fn alive(pid: u32) -> bool {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    // A zombie still answers signal 0; look at its state instead.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
        && nix::sys::signal::kill(pid, None).is_ok()
}

async fn wait_until(what: &str, timeout: Duration, check: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_new_callback_replaces_the_running_one() -> Result<()> {
    let run_as = RunAs::configured("postgres")?;
    let root = tempfile::Builder::new()
        .prefix("pgwarden-cb-")
        .tempdir_in("/tmp")?;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))?;
    let out_dir = root.path().join("out");
    run_as.prepare_dir(&out_dir, 0o755)?;
    let record = |file: &str| {
        vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            format!(
                "echo \"$@\" > {dir}/{file}; id -un >> {dir}/{file}; sleep 30 & echo $! >> {dir}/{file}; wait",
                dir = out_dir.display()
            ),
            "sh".to_owned(),
        ]
    };

    let mut runner = CallbackRunner::new(run_as.clone());
    runner.fire(&record("first"), "on_start", "replica", "batman")?;
    let first_pid = runner.running_pid().unwrap_or_default();
    let first = out_dir.join("first");
    wait_until(
        "the first callback to write",
        Duration::from_secs(10),
        || std::fs::read_to_string(&first).is_ok_and(|text| text.lines().count() == 3),
    )
    .await?;
    let text = std::fs::read_to_string(&first)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "on_start replica batman");
    let expected_user = if run_as.switches_user() {
        "postgres"
    } else {
        lines[1]
    };
    assert_eq!(lines[1], expected_user);
    let grandchild: u32 = lines[2].parse()?;
    assert!(alive(first_pid) && alive(grandchild));

    runner.fire(&record("second"), "on_role_change", "primary", "batman")?;
    wait_until(
        "the first callback and its child to die",
        Duration::from_secs(5),
        || !alive(first_pid) && !alive(grandchild),
    )
    .await?;
    wait_until(
        "the second callback to write",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(out_dir.join("second"))
                .is_ok_and(|text| text.starts_with("on_role_change primary batman"))
        },
    )
    .await?;
    let second_pid = runner.running_pid().unwrap_or_default();
    drop(runner);
    wait_until(
        "the dropped runner's callback to die",
        Duration::from_secs(5),
        || !alive(second_pid),
    )
    .await?;
    Ok(())
}
