//! A host's PostgreSQL data directory on a small loop-mounted ext4 of its own, so that a
//! scenario can fill it (ENOSPC) or freeze it (`fsfreeze`: writes hang) without touching any
//! other filesystem. The image is a sparse file in the host's directory; the mount is torn
//! down (thawed, unmounted, the loop device detached) when dropped, also on panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Name of the files [`LoopDisk::fill`] creates at the root of the filesystem.
const FILLER: &str = "chaos-filler";

/// One loop-mounted ext4.
#[derive(Debug)]
pub struct LoopDisk {
    image: PathBuf,
    mount: PathBuf,
    device: Option<String>,
    mounted: bool,
}

/// Runs `program ARGS`, failing with its stderr; its stdout.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {program} {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

impl LoopDisk {
    /// Creates a sparse `size_mib` MiB image `image`, formats it ext4 without reserved blocks
    /// (so PostgreSQL, not root, is the one that runs out), attaches it to a free loop device
    /// and mounts it on `mount` (created if missing).
    pub fn create(image: &Path, mount: &Path, size_mib: u64) -> anyhow::Result<LoopDisk> {
        let mut disk = LoopDisk {
            image: image.to_owned(),
            mount: mount.to_owned(),
            device: None,
            mounted: false,
        };
        let file = std::fs::File::create(image)
            .with_context(|| format!("create disk image {}", image.display()))?;
        file.set_len(size_mib << 20)
            .with_context(|| format!("size disk image {}", image.display()))?;
        drop(file);
        run("mkfs.ext4", &["-q", "-F", "-m", "0", path_str(image)?])?;
        let device = run("losetup", &["-f", "--show", path_str(image)?])?;
        disk.device = Some(device.clone());
        std::fs::create_dir_all(mount).with_context(|| format!("create {}", mount.display()))?;
        run("mount", &[&device, path_str(mount)?])?;
        disk.mounted = true;
        Ok(disk)
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// Takes every free block of the filesystem with filler files (an `fallocate` of what
    /// `df` reports free, then small writes until ENOSPC); the bytes taken.
    pub fn fill(&self) -> anyhow::Result<u64> {
        let mount = path_str(&self.mount)?;
        let free = free_bytes(mount)?;
        let big = self.mount.join(format!("{FILLER}-0"));
        // Leave a little for the writes below; fallocate is all or nothing.
        let len = free.saturating_sub(1 << 20);
        if len > 0 {
            run("fallocate", &["-l", &len.to_string(), path_str(&big)?])?;
        }
        // What is left (also blocks freed meanwhile) in 4 KiB writes until ENOSPC.
        let rest = self.mount.join(format!("{FILLER}-1"));
        let output = Command::new("dd")
            .args(["if=/dev/zero", &format!("of={}", path_str(&rest)?), "bs=4k"])
            .stdin(Stdio::null())
            .output()
            .context("run dd to fill the disk")?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.contains("No space left") {
            bail!(
                "dd filling {mount} did not end with ENOSPC: {}",
                stderr.trim()
            );
        }
        Ok(free)
    }

    /// Removes the filler files (space is free again).
    pub fn free(&self) -> anyhow::Result<()> {
        for index in 0..2 {
            let path = self.mount.join(format!("{FILLER}-{index}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(error).with_context(|| format!("remove {}", path.display()));
                }
            }
        }
        Ok(())
    }

    /// Freezes the filesystem (`fsfreeze -f`): every write to it hangs in D state until it is
    /// thawed. A detached `sleep; fsfreeze -u` thaws it after `at_most` even if this process
    /// dies first, so a killed test cannot leave writers hanging.
    pub fn freeze(&self, at_most: Duration) -> anyhow::Result<()> {
        let mount = path_str(&self.mount)?;
        Command::new("sh")
            .args([
                "-c",
                &format!(
                    "sleep {}; fsfreeze -u '{mount}' 2>/dev/null",
                    at_most.as_secs().max(1)
                ),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("schedule the thaw")?;
        run("fsfreeze", &["-f", mount])?;
        Ok(())
    }

    /// Thaws the filesystem (`fsfreeze -u`); a filesystem that is not frozen is fine.
    pub fn thaw(&self) -> anyhow::Result<()> {
        let mount = path_str(&self.mount)?;
        match run("fsfreeze", &["-u", mount]) {
            Ok(_) => Ok(()),
            Err(error) if format!("{error:#}").contains("Invalid argument") => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Free bytes of the filesystem at `mount` for an unprivileged user, per `df`.
fn free_bytes(mount: &str) -> anyhow::Result<u64> {
    let output = run("df", &["--output=avail", "-B1", mount])?;
    output
        .lines()
        .last()
        .and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("df of {mount}: {output:?}"))
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        // Writers hang on a frozen filesystem, so thaw before anything else.
        let _ = self.thaw();
        if self.mounted {
            // The host's processes were SIGKILLed before (field order of the cluster); give
            // them a moment to exit, then detach lazily rather than leak the mount.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mount = self.mount.to_string_lossy().into_owned();
            while run("umount", &[&mount]).is_err() {
                if Instant::now() > deadline {
                    let _ = run("umount", &["-l", &mount]);
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if let Some(device) = &self.device {
            let _ = run("losetup", &["-d", device]);
        }
        let _ = std::fs::remove_file(&self.image);
    }
}
