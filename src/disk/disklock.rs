//! The locks of a disk: one per device name, and one per filesystem UUID (a
//! copy of the same filesystem on two devices is grown by one of them only).

use crate::base::lock;
use crate::base::settings::Settings;
use anyhow::Result;
use std::path::PathBuf;

/// An exclusive lock on one device, held while it is recorded and grown.
pub struct DiskLock(#[allow(dead_code)] lock::FileLock);

impl DiskLock {
    fn path(settings: &Settings, name: &str) -> PathBuf {
        settings
            .paths
            .run_dir
            .join("locks")
            .join(format!("{name}.lock"))
    }

    /// Waits for the lock when `wait`, else fails at once when it is held.
    pub fn take(settings: &Settings, name: &str, wait: bool) -> Result<Option<DiskLock>> {
        Ok(lock::FileLock::take(&Self::path(settings, name), wait)?.map(DiskLock))
    }

    /// Waits for the lock at most `limit`.
    pub fn take_for(
        settings: &Settings,
        name: &str,
        limit: std::time::Duration,
    ) -> Result<Option<DiskLock>> {
        Ok(lock::FileLock::take_for(&Self::path(settings, name), limit)?.map(DiskLock))
    }
}

/// An exclusive lock on one filesystem, by its UUID, held while it is
/// grown: the same filesystem seen through two devices (a disk attached
/// again while its old device lives on, as a detached loop device does
/// while a resize holds it) is grown by one process at a time. `None` for
/// a filesystem without a usable UUID.
pub fn fs_lock(settings: &Settings, uuid: Option<&str>) -> Result<Option<lock::FileLock>> {
    let Some(uuid) = uuid.filter(|u| {
        !u.is_empty() && u.len() <= 64 && u.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    }) else {
        return Ok(None);
    };
    let path = settings
        .paths
        .run_dir
        .join("locks")
        .join(format!("fs-{}.lock", uuid.to_ascii_lowercase()));
    lock::FileLock::take(&path, true)
}
