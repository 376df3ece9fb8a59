//! The three watchdog ioctls pgwarden issues on a real character device.
//!
//! `unsafe` is allowed in this module only (see `lib.rs`): an ioctl hands the kernel a raw pointer
//! to an `int`, which Rust cannot check. Each call passes a pointer to a live local `c_int` on a
//! file descriptor borrowed from an open `File`, so the pointer is valid for the whole call.

use std::os::fd::AsRawFd;
use std::os::raw::c_int;

nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, c_int);
nix::ioctl_read!(wdioc_gettimeout, b'W', 7, c_int);
nix::ioctl_read!(wdioc_keepalive, b'W', 5, c_int);

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
