//! The watchdog ioctls pgwarden issues on a real character device.
//!
//! `unsafe` is allowed in this module only (see `lib.rs`): an ioctl hands the kernel a raw pointer
//! to an `int` (or to a `struct watchdog_info`), which Rust cannot check. Each call passes a
//! pointer to a live local value on a file descriptor borrowed from an open `File`, so the pointer
//! is valid for the whole call.

use std::os::fd::AsRawFd;
use std::os::raw::c_int;

/// The kernel's `struct watchdog_info`, filled by `WDIOC_GETSUPPORT`: the `WDIOF_*` option bits
/// the driver supports, its firmware version, and its NUL-padded identity string.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WatchdogInfo {
    pub options: u32,
    pub firmware_version: u32,
    pub identity: [u8; 32],
}

nix::ioctl_read!(wdioc_getsupport, b'W', 0, WatchdogInfo);
nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, c_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, c_int);
nix::ioctl_read!(wdioc_keepalive, b'W', 5, c_int);

/// `WDIOC_GETSUPPORT`: what the driver can do (`WDIOF_SETTIMEOUT`, `WDIOF_MAGICCLOSE`, ...).
pub(crate) fn get_support(file: &std::fs::File) -> nix::Result<WatchdogInfo> {
    let mut info = WatchdogInfo::default();
    // SAFETY: `info` is a live, correctly laid out `watchdog_info` for the duration of the call.
    unsafe { wdioc_getsupport(file.as_raw_fd(), &mut info) }?;
    Ok(info)
}

/// `WDIOC_SETTIMEOUT`: asks for `secs`, returns what the driver wrote back (it may round up).
pub(crate) fn set_timeout(file: &std::fs::File, secs: u32) -> nix::Result<u32> {
    let mut value = c_int::try_from(secs).map_err(|_| nix::errno::Errno::EINVAL)?;
    // SAFETY: `value` is a live c_int for the duration of the call; the fd is open.
    unsafe { wdioc_settimeout(file.as_raw_fd(), &mut value) }?;
    u32::try_from(value).map_err(|_| nix::errno::Errno::EINVAL)
}

/// `WDIOC_GETTIMEOUT`: the timeout the device is really using, in seconds.
pub(crate) fn get_timeout(file: &std::fs::File) -> nix::Result<u32> {
    let mut value: c_int = 0;
    // SAFETY: as above.
    unsafe { wdioc_gettimeout(file.as_raw_fd(), &mut value) }?;
    u32::try_from(value).map_err(|_| nix::errno::Errno::EINVAL)
}

/// `WDIOC_KEEPALIVE` (the argument is ignored by the kernel).
pub(crate) fn keepalive(file: &std::fs::File) -> nix::Result<()> {
    let mut ignored: c_int = 0;
    // SAFETY: as above.
    unsafe { wdioc_keepalive(file.as_raw_fd(), &mut ignored) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The request numbers match the kernel's `_IOC` encoding (include/uapi/linux/watchdog.h).
    #[test]
    fn request_numbers() {
        assert_eq!(std::mem::size_of::<super::WatchdogInfo>(), 40);
        assert_eq!(nix::request_code_read!(b'W', 0, 40), 0x8028_5700);
        assert_eq!(
            nix::request_code_readwrite!(b'W', 6, std::mem::size_of::<i32>()),
            0xC004_5706
        );
        assert_eq!(
            nix::request_code_read!(b'W', 7, std::mem::size_of::<i32>()),
            0x8004_5707
        );
    }
}
