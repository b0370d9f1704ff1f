//! The one file lock: exclusive, released when dropped, taken waiting, not
//! waiting, or for a bounded time.

use anyhow::{Context, Result};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// An exclusive lock on a file, released when dropped. Through
/// `std::fs::File::lock` (flock), stable in std: `fs2`, which the design
/// names, has had no release since 2018.
pub struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    /// Locks `path` (created when missing, with its folder). Waits for the
    /// lock when `wait`; otherwise `None` when another process holds it.
    pub fn take(path: &Path, wait: bool) -> Result<Option<FileLock>> {
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
        if wait {
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
            return Ok(Some(FileLock(file)));
        }
        Self::try_until(file, path, std::time::Instant::now())
    }

    /// Like [`FileLock::take`], waiting at most `limit`.
    pub fn take_for(path: &Path, limit: std::time::Duration) -> Result<Option<FileLock>> {
        let Some(held) = Self::take(path, false)? else {
            let file = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            return Self::try_until(file, path, std::time::Instant::now() + limit);
        };
        Ok(Some(held))
    }

    fn try_until(
        file: File,
        path: &Path,
        deadline: std::time::Instant,
    ) -> Result<Option<FileLock>> {
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(FileLock(file))),
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
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
