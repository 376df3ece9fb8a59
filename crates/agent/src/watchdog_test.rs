#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use super::*;

fn node(mode: Mode, device: &std::path::Path) -> NodeWatchdog {
    NodeWatchdog::new(WatchdogConfig {
        mode,
        device: device.to_owned(),
        safety_margin: None,
    })
}

const TTL: Duration = Duration::from_secs(5);
const LOOP: Duration = Duration::from_secs(1);

fn device_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wd");
    std::fs::write(&path, b"").unwrap();
    (dir, path)
}

#[test]
fn required_unusable_refuses_and_reports() {
    let missing = std::path::Path::new("/nonexistent/pgwarden-watchdog");
    let mut wd = node(Mode::Required, missing);
    assert!(wd.arm(TTL, LOOP).is_err());
    assert!(wd.failed());
    let mut wd = node(Mode::Automatic, missing);
    assert!(wd.arm(TTL, LOOP).is_ok(), "automatic promotes without it");
    assert!(!wd.failed());
    let mut wd = node(Mode::Off, missing);
    assert!(wd.arm(TTL, LOOP).is_ok());
}

#[test]
fn start_up_check_by_mode() {
    let missing = std::path::Path::new("/nonexistent/pgwarden-watchdog");
    let mut wd = node(Mode::Required, missing);
    wd.check(TTL, LOOP);
    assert!(wd.failed(), "required + missing device: reported failed");
    let mut wd = node(Mode::Automatic, missing);
    wd.check(TTL, LOOP);
    assert!(!wd.failed(), "automatic + missing device: a warning only");
    let mut wd = node(Mode::Off, missing);
    wd.check(TTL, LOOP);
    assert!(!wd.failed());

    let (_dir, path) = device_file();
    let mut wd = node(Mode::Required, &path);
    wd.check(TTL, LOOP);
    assert!(!wd.failed());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "T2\nV",
        "the check arms and disarms (magic close)"
    );
}

#[test]
fn a_device_that_appears_later_clears_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wd");
    let mut wd = node(Mode::Required, &path);
    wd.check(TTL, LOOP);
    assert!(wd.failed());
    std::fs::write(&path, b"").unwrap();
    wd.recheck_if_failed(TTL, LOOP);
    assert!(!wd.failed());
}

#[test]
fn arm_feed_disarm_in_file_mode() {
    let (_dir, path) = device_file();
    let mut wd = node(Mode::Required, &path);
    wd.arm(TTL, LOOP).unwrap();
    wd.arm(TTL, LOOP).unwrap(); // already armed: no second open
    wd.feed();
    wd.disarm();
    wd.feed(); // disarmed: nothing written
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "T2\nkV");
    assert!(!wd.failed());
}

#[test]
fn changed_ttl_retimes_the_armed_device() {
    let (_dir, path) = device_file();
    let mut wd = node(Mode::Required, &path);
    wd.keep_armed(TTL, LOOP); // arms with ttl/2 = 2 s
    wd.keep_armed(TTL, LOOP); // same config: feed only
    wd.keep_armed(Duration::from_secs(10), LOOP); // new ttl: 5 s, then feed
    wd.disarm();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "T2\nkT5\nkV");
    assert!(!wd.failed());
}

#[test]
fn a_config_without_slack_fails_required_only() {
    let (_dir, path) = device_file();
    let mut wd = node(Mode::Required, &path);
    wd.keep_armed(TTL, LOOP);
    // ttl 5 s with loop_wait 3 s: timeout 2 s is not above loop_wait.
    wd.keep_armed(TTL, Duration::from_secs(3));
    assert!(wd.failed(), "required: decide gives up the key");
    let (_dir, path) = device_file();
    let mut wd = node(Mode::Automatic, &path);
    wd.keep_armed(TTL, LOOP);
    wd.keep_armed(TTL, Duration::from_secs(3));
    assert!(
        !wd.failed(),
        "automatic: keeps the old timeout, with a warning"
    );
}
