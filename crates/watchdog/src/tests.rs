use super::*;
use std::io::Read;

fn cfg(margin: Option<f64>) -> WatchdogConfig {
    WatchdogConfig {
        safety_margin: margin,
        ..WatchdogConfig::default()
    }
}

#[test]
fn timeout_table() {
    let s = Duration::from_secs;
    assert_eq!(
        cfg(None).timeout(s(5), s(1)).ok(),
        Some(2),
        "default: ttl/2 rounded down"
    );
    assert_eq!(cfg(Some(-1.0)).timeout(s(30), s(10)).ok(), Some(15));
    assert_eq!(cfg(Some(5.0)).timeout(s(30), s(10)).ok(), Some(25));
    assert!(cfg(Some(5.0)).timeout(s(5), s(1)).is_err(), "nothing left");
    assert!(
        cfg(Some(3.0)).timeout(s(5), s(2)).is_err(),
        "timeout not above loop_wait"
    );
}

#[test]
fn config_is_strict() {
    let c: WatchdogConfig =
        serde_json::from_str(r#"{"mode":"required","device":"/x","safety_margin":2}"#).unwrap();
    assert_eq!(c.mode, Mode::Required);
    assert_eq!(c.device, PathBuf::from("/x"));
    assert!(serde_json::from_str::<WatchdogConfig>(r#"{"mode":"sometimes"}"#).is_err());
    assert!(serde_json::from_str::<WatchdogConfig>(r#"{"modes":"off"}"#).is_err());
    let d: WatchdogConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(d, WatchdogConfig::default());
}

#[test]
fn file_mode_arm_feed_disarm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wd");
    std::fs::write(&path, b"").unwrap();
    let mut wd = Watchdog::arm(&path, 3).unwrap();
    assert_eq!(wd.timeout(), 3);
    wd.keepalive().unwrap();
    wd.keepalive().unwrap();
    wd.disarm().unwrap();
    assert!(wd.keepalive().is_err(), "no keepalive after disarm");
    let mut got = String::new();
    File::open(&path).unwrap().read_to_string(&mut got).unwrap();
    assert_eq!(got, "T3\nkkV");
}

#[test]
fn drop_does_not_disarm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wd");
    std::fs::write(&path, b"").unwrap();
    {
        let mut wd = Watchdog::arm(&path, 2).unwrap();
        wd.keepalive().unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "T2\nk",
        "a crash leaves it armed"
    );
}

#[test]
fn fifo_without_reader_cannot_arm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wd");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert!(matches!(Watchdog::arm(&path, 2), Err(Error::Open { .. })));
    assert!(matches!(
        Watchdog::arm(&dir.path().join("missing"), 2),
        Err(Error::Open { .. })
    ));
}

#[test]
fn probe_arms_and_disarms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wd");
    std::fs::write(&path, b"").unwrap();
    let probe = Watchdog::probe(&path, 4).unwrap();
    assert_eq!(
        probe,
        Probe {
            support: None,
            timeout: 4
        }
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "T4\nV");
    assert!(matches!(
        Watchdog::probe(&dir.path().join("missing"), 4),
        Err(Error::Open { .. })
    ));
}

#[test]
fn new_timeout_on_the_armed_device() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wd");
    std::fs::write(&path, b"").unwrap();
    let mut wd = Watchdog::arm(&path, 3).unwrap();
    wd.set_timeout(7).unwrap();
    assert_eq!(wd.timeout(), 7);
    wd.keepalive().unwrap();
    wd.disarm().unwrap();
    assert!(wd.set_timeout(2).is_err(), "no new timeout after disarm");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "T3\nT7\nkV");
}

#[test]
fn support_bits() {
    let support = |options| Support {
        identity: "Software Watchdog".into(),
        options,
        firmware_version: 0,
    };
    assert!(support(WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE).can_set_timeout());
    assert!(support(WDIOF_SETTIMEOUT | WDIOF_MAGICCLOSE).has_magic_close());
    assert!(!support(WDIOF_MAGICCLOSE).can_set_timeout());
    assert!(!support(WDIOF_SETTIMEOUT).has_magic_close());
}
