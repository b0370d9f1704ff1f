//! Where a scan's devices are mounted: the mount table, or, for a scan
//! of one key's devices, sysfs where it can say that nothing is.

use super::*;

impl Scan<'_> {
    /// Sets each device's mounts: from the mount table, unless this scan is
    /// of one key's devices and sysfs shows the driver that would mount it
    /// holds nothing on it (a lookup that reads no mount table).
    pub(super) fn fill_mounts(&self, devices: &mut [Device]) {
        for dev in devices {
            if dev.size > 0 && (self.is_complete() || !self.unmounted_per_sysfs(dev)) {
                dev.mounts = mounts_of(
                    self.mounts(),
                    dev.devnum,
                    &dev.name,
                    &self.settings.paths.sys_dir,
                )
                .into_iter()
                .map(|m| m.mount_point.clone())
                .collect();
            }
        }
    }

    /// Whether sysfs shows that the filesystem driver the map would mount
    /// `dev` with holds no filesystem on it (ext3 and ext4: the ext4
    /// driver's `/sys/fs/ext4/NAME`; XFS: `/sys/fs/xfs/NAME`, present from
    /// a mount's start until its end, in any mount namespace). Another
    /// driver's mount of the device does not count: the kernel refuses it
    /// to a second driver (busy), so the map's mount fails and serves
    /// nothing. `false` where sysfs cannot say (another filesystem type,
    /// the driver's folder absent, an odd name): the mount table decides.
    fn unmounted_per_sysfs(&self, dev: &Device) -> bool {
        let driver = match dev.fs.fstype.as_deref() {
            Some("ext3" | "ext4") => "ext4",
            Some("xfs") => "xfs",
            _ => return false,
        };
        if dev.name.is_empty() || dev.name.contains(['/', '!']) || dev.name.starts_with('.') {
            return false;
        }
        let dir = self.settings.paths.sys_dir.join("fs").join(driver);
        matches!(fs::symlink_metadata(dir.join(&dev.name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound)
            && fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir())
    }
}
