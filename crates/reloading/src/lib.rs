//! A value built from files and rebuilt when one of them changes.
//!
//! Owns: noticing that files changed (a `stat` of each — modification time, size, device and
//! inode — never a read while nothing changed) and rebuilding the value from them. A rebuild
//! that fails keeps the previous value and is logged once per change of the files, so a
//! half-written or broken file never takes a listener down, and the fixed file is picked up by
//! the next use. Callers ask for [`Reloading::current`] when they use the value: a TLS listener
//! at each handshake (etcd re-reads its certificate files at each handshake too), so a rotated
//! certificate serves the next connection without restarting the member. A file replaced by
//! renaming or by swapping a symbolic link (as orchestrators mount secrets) is a change too:
//! `stat` follows links, and the new file has another inode.
//!
//! Must not know what the files hold: building the value is the caller's closure.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Builds the value from the files (read again by the closure), or says why it cannot.
type Build<T> = dyn Fn() -> Result<T, String> + Send + Sync;

/// A value built from `paths`, rebuilt by [`Reloading::current`] after one of them changed.
pub struct Reloading<T> {
    /// What the value is, for the log ("client port TLS").
    what: String,
    paths: Vec<PathBuf>,
    build: Box<Build<T>>,
    /// One lock: the files' stamps and the value built from them change together.
    state: Mutex<State<T>>,
}

struct State<T> {
    stamps: Vec<Option<Stamp>>,
    value: Arc<T>,
}

/// What `stat` says of one file; `None` in [`State::stamps`] when it could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    device: u64,
    inode: u64,
}

fn stamps(paths: &[PathBuf]) -> Vec<Option<Stamp>> {
    paths
        .iter()
        .map(|path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some(Stamp {
                modified: metadata.modified().ok(),
                len: metadata.len(),
                device: metadata.dev(),
                inode: metadata.ino(),
            })
        })
        .collect()
}

impl<T> Reloading<T> {
    /// Builds the value now (an error here is the caller's start-up error) and watches `paths`.
    /// The files are stamped before they are read, so a change during the first build is
    /// still seen as a change.
    pub fn new(
        what: impl Into<String>,
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Reloading<T>, String> {
        let stamps = stamps(&paths);
        let value = Arc::new(build()?);
        Ok(Reloading {
            what: what.into(),
            paths,
            build: Box::new(build),
            state: Mutex::new(State { stamps, value }),
        })
    }

    /// A value that never changes (material given in memory rather than as files).
    pub fn fixed(what: impl Into<String>, value: T) -> Reloading<T> {
        Reloading {
            what: what.into(),
            paths: Vec::new(),
            build: Box::new(|| Err("no files to read".to_owned())),
            state: Mutex::new(State {
                stamps: Vec::new(),
                value: Arc::new(value),
            }),
        }
    }

    /// The value built from the files as they are now: rebuilt first if one of them changed
    /// since the last look; the previous value when that rebuild fails (logged).
    pub fn current(&self) -> Arc<T> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.paths.is_empty() {
            return state.value.clone();
        }
        let now = stamps(&self.paths);
        if now == state.stamps {
            return state.value.clone();
        }
        // Stamped before the rebuild reads: a write that lands after this look changes the
        // stamps again and is rebuilt at the next look.
        state.stamps = now;
        match (self.build)() {
            Ok(value) => {
                tracing::info!(what = %self.what, files = ?self.paths, "files changed; reloaded");
                state.value = Arc::new(value);
            }
            Err(error) => tracing::warn!(
                what = %self.what,
                files = ?self.paths,
                "files changed but cannot be used, keeping the previous ones: {error}"
            ),
        }
        state.value.clone()
    }
}

impl<T> fmt::Debug for Reloading<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Reloading")
            .field("what", &self.what)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A value that is the file's text; "bad" does not build.
    fn text_of(path: &Path, builds: Arc<AtomicUsize>) -> Reloading<String> {
        let path_owned = path.to_path_buf();
        Reloading::new("test", vec![path.to_path_buf()], move || {
            builds.fetch_add(1, Ordering::SeqCst);
            let text = std::fs::read_to_string(&path_owned).map_err(|e| e.to_string())?;
            if text == "bad" {
                Err("bad text".to_owned())
            } else {
                Ok(text)
            }
        })
        .expect("first build")
    }

    #[test]
    fn rebuilds_only_after_a_change_and_keeps_the_last_good_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("value");
        std::fs::write(&path, "one").expect("write");
        let builds = Arc::new(AtomicUsize::new(0));
        let reloading = text_of(&path, builds.clone());
        assert_eq!(*reloading.current(), "one");
        assert_eq!(*reloading.current(), "one");
        assert_eq!(builds.load(Ordering::SeqCst), 1, "no change, no rebuild");

        // A different size is a change even within one timestamp tick.
        std::fs::write(&path, "second").expect("write");
        assert_eq!(*reloading.current(), "second");
        assert_eq!(builds.load(Ordering::SeqCst), 2);

        // Broken: the previous value stays, and it is not rebuilt again until the next change.
        std::fs::write(&path, "bad").expect("write");
        assert_eq!(*reloading.current(), "second");
        assert_eq!(*reloading.current(), "second");
        assert_eq!(builds.load(Ordering::SeqCst), 3);

        // Removed: still the previous value.
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(*reloading.current(), "second");

        // Replaced by a rename (a new inode), as a rotation tool writes it.
        let staged = dir.path().join("staged");
        std::fs::write(&staged, "third").expect("write");
        std::fs::rename(&staged, &path).expect("rename");
        assert_eq!(*reloading.current(), "third");
    }

    #[test]
    fn a_symbolic_link_swapped_to_another_file_is_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&first, "aaa").expect("write");
        std::fs::write(&second, "bbb").expect("write");
        let link = dir.path().join("current");
        std::os::unix::fs::symlink(&first, &link).expect("symlink");
        let reloading = text_of(&link, Arc::new(AtomicUsize::new(0)));
        assert_eq!(*reloading.current(), "aaa");
        let staged = dir.path().join("staged");
        std::os::unix::fs::symlink(&second, &staged).expect("symlink");
        std::fs::rename(&staged, &link).expect("swap the link");
        assert_eq!(*reloading.current(), "bbb");
    }

    #[test]
    fn a_first_build_that_fails_is_the_callers_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing");
        let built = Reloading::new("test", vec![path.clone()], move || {
            std::fs::read_to_string(&path).map_err(|e| e.to_string())
        });
        assert!(built.is_err());
    }

    #[test]
    fn a_fixed_value_never_reads() {
        let fixed = Reloading::fixed("test", 7_u8);
        assert_eq!(*fixed.current(), 7);
    }
}
