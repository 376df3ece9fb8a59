//! The FIFO stand-in kills the listed processes when keepalives stop without a magic close,
//! and leaves them alone after a magic close. Exercises `Watchdog`'s file mode end to end.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use watchdog::Watchdog;

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path) -> (Kill, Kill) {
    let victim = Kill(Command::new("sleep").arg("120").spawn().unwrap());
    std::fs::write(dir.join("pids"), format!("{}\n", victim.0.id())).unwrap();
    let fake = Kill(
        Command::new(env!("CARGO_BIN_EXE_pgwarden-fake-watchdog"))
            .arg(dir.join("wd"))
            .args(["--pid-file".as_ref(), dir.join("pids").as_os_str()])
            .args(["--log".as_ref(), dir.join("log").as_os_str()])
            .spawn()
            .unwrap(),
    );
    let log = dir.join("log");
    wait_for("the stand-in to listen", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("listening"))
    });
    (victim, fake)
}

#[test]
fn missed_keepalive_kills_and_magic_close_spares() {
    let dir = tempfile::tempdir().unwrap();
    let (mut victim, _fake) = start(dir.path());
    let log = dir.path().join("log");
    // Magic close: disarmed, the victim lives.
    let mut wd = Watchdog::arm(&dir.path().join("wd"), 1).unwrap();
    wd.keepalive().unwrap();
    wd.disarm().unwrap();
    wait_for("magic close", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("disarmed"))
    });
    assert!(
        victim.0.try_wait().unwrap().is_none(),
        "victim must survive a magic close"
    );
    // Crash (drop without 'V'): the stand-in fires and kills the victim.
    let mut wd = Watchdog::arm(&dir.path().join("wd"), 1).unwrap();
    wd.keepalive().unwrap();
    drop(wd);
    wait_for("the victim to be killed", Duration::from_secs(10), || {
        victim.0.try_wait().unwrap().is_some()
    });
    assert!(std::fs::read_to_string(&log).unwrap().contains("FIRED"));
}
