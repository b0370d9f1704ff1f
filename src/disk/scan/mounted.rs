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
    /// `dev` with holds no filesystem on it: ext4's `/sys/fs/ext4/NAME`,
    /// XFS's `/sys/fs/xfs/NAME`, there while the driver holds a filesystem
    /// of that device (from partway through its mount to past its end), in
    /// any mount namespace. Another driver's mount of the device does not
    /// count: the kernel gives the device to one driver at a time (busy),
    /// so the map answers and autofs's mount fails. `false` where sysfs
    /// cannot say, and the mount table decides: another type (ext3 too,
    /// which kernels before 4.3 may mount with a driver of its own, unseen
    /// there), the driver's folder absent, a name sysfs would write
    /// otherwise (`!`, a leading dot) or cut (the kernel keeps 31 bytes).
    fn unmounted_per_sysfs(&self, dev: &Device) -> bool {
        let driver = match dev.fs.fstype.as_deref() {
            Some("ext4") => "ext4",
            Some("xfs") => "xfs",
            _ => return false,
        };
        if dev.name.is_empty()
            || dev.name.len() > 31
            || dev.name.contains(['/', '!'])
            || dev.name.starts_with('.')
        {
            return false;
        }
        let dir = self.settings.paths.sys_dir.join("fs").join(driver);
        matches!(fs::symlink_metadata(dir.join(&dev.name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound)
            && fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir())
    }
}
