//! The one file lock: exclusive, released when dropped, taken waiting, not
//! waiting, or for a bounded time.

use anyhow::{Context, Result};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// An exclusive lock on a file, released when dropped. Through
/// `std::fs::File::lock` (flock), stable in std: `fs2`, which the design
/// names, has had no release since 2018.
pub struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    /// Locks `path` (created when missing, with its folder). Waits for the
    /// lock when `wait`; otherwise `None` when another process holds it.
    pub fn take(path: &Path, wait: bool) -> Result<Option<FileLock>> {
        Self::take_within(path, if wait { None } else { Some(Duration::ZERO) })
    }

    /// Like [`FileLock::take`], waiting at most `limit`.
    pub fn take_for(path: &Path, limit: Duration) -> Result<Option<FileLock>> {
        Self::take_within(path, Some(limit))
    }

    fn take_within(path: &Path, limit: Option<Duration>) -> Result<Option<FileLock>> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let held =
            lock_open(&file, limit).with_context(|| format!("locking {}", path.display()))?;
        Ok(held.then_some(FileLock(file)))
    }
}

/// Locks the open `file` (flock, exclusive): waiting as long as it takes
/// (`limit` `None`), or at most `limit`. False when another process held
/// it all that time. The one lock loop: [`FileLock`] and the tree's locks
/// beneath a root (`Tree::lock_for`) both take it.
pub fn lock_open(file: &File, limit: Option<Duration>) -> std::io::Result<bool> {
    let Some(limit) = limit else {
        file.lock()?;
        return Ok(true);
    };
    let deadline = Instant::now() + limit;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks/a.lock");
        let held = FileLock::take(&path, false).unwrap();
        assert!(held.is_some());
        assert!(FileLock::take(&path, false).unwrap().is_none());
        drop(held);
        assert!(FileLock::take(&path, false).unwrap().is_some());
    }
}
