//! The device model: what a block device is to us (number, size,
//! filesystem metadata, where it came from, why it is left out), and the
//! kernel's naming order.

use serde::Serialize;
use std::path::PathBuf;

/// A device number, `major:minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    pub fn parse(s: &str) -> Option<DevNum> {
        let (a, b) = s.trim().split_once(':')?;
        Some(DevNum {
            major: a.parse().ok()?,
            minor: b.parse().ok()?,
        })
    }

    pub fn from_rdev(rdev: u64) -> DevNum {
        DevNum {
            major: libc::major(rdev),
            minor: libc::minor(rdev),
        }
    }
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// What is known of a device's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FsInfo {
    /// Filesystem type (`ext4`, `xfs`, `swap`, `LVM2_member`, ...).
    pub fstype: Option<String>,
    /// `filesystem`, `other` (swap), `raid`, `crypto`.
    pub usage: Option<String>,
    pub label: Option<String>,
    pub uuid: Option<String>,
    /// GPT partition name.
    pub part_name: Option<String>,
    /// Partition table type when the device carries one.
    pub part_table: Option<String>,
}

/// Where a device's metadata came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetaSource {
    Record,
    Udev,
    Probe,
    /// Nothing answered (the probe timed out or failed).
    Unknown,
}

/// Why a device is never served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "reason", content = "detail")]
pub enum Exclusion {
    /// The disk holding `/`, or one of its partitions.
    RootDisk,
    /// A swap area (active or not).
    Swap,
    /// The platform's swap/config disk.
    PlatformDisk,
    /// Used by another block device (`dm-0`, `md0`, ...).
    InUse(String),
    /// A whole disk with a partition table: its partitions are the candidates.
    Partitioned,
    /// No filesystem found.
    NoFilesystem,
    /// Content that is not a mountable filesystem (`LVM2_member`, ...).
    NotMountable(String),
    /// The metadata could not be read in time.
    Unreadable,
    /// Released by `gandi-vm disk release`, waiting to be detached.
    Released,
    /// Its filesystem is being grown (an offline resize must not race a
    /// mount).
    Growing,
    /// A check found errors it could not repair (see `fsstate`).
    Damaged(String),
    /// An offline resize was cut short and is not repaired yet.
    Interrupted(String),
    /// No medium (size 0), like a loop device with no file.
    Empty,
    /// Detached (or emptied) while still mounted under the mount root.
    Gone,
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exclusion::RootDisk => write!(f, "holds the root filesystem"),
            Exclusion::Swap => write!(f, "swap area"),
            Exclusion::PlatformDisk => write!(f, "platform swap/config disk"),
            Exclusion::InUse(by) => write!(f, "in use by {by}"),
            Exclusion::Partitioned => write!(f, "partitioned (use its partitions)"),
            Exclusion::NoFilesystem => write!(f, "no filesystem"),
            Exclusion::NotMountable(t) => write!(f, "{t} is not a mountable filesystem"),
            Exclusion::Unreadable => write!(f, "metadata unreadable (probe timed out)"),
            Exclusion::Released => write!(f, "released, waiting to be detached"),
            Exclusion::Empty => write!(f, "empty (no medium)"),
            Exclusion::Gone => write!(
                f,
                "gone: detached while mounted (run `gandi-vm disk release` on its key)"
            ),
            Exclusion::Growing => write!(f, "its filesystem is being grown; try again shortly"),
            Exclusion::Damaged(why) => write!(f, "{why}"),
            Exclusion::Interrupted(why) => write!(f, "{why}"),
        }
    }
}

/// One candidate block device.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub name: String,
    pub devnum: DevNum,
    /// Size in bytes.
    pub size: u64,
    /// The kernel's per-attach sequence number, when it has one.
    pub diskseq: Option<u64>,
    /// The whole disk of a partition.
    pub parent: Option<String>,
    pub partitions: Vec<String>,
    pub holders: Vec<String>,
    #[serde(flatten)]
    pub fs: FsInfo,
    pub source: MetaSource,
    /// Where it is mounted now.
    pub mounts: Vec<PathBuf>,
    /// Its record says it is being grown.
    pub growing: bool,
    /// Its record says its growth is not done while no grower works on it
    /// (they were killed): the next lookup or event starts one.
    pub growth_left: bool,
    pub excluded: Option<Exclusion>,
}

/// Sorts names in kernel order; the kernel lists devices in that order
/// already, most of the time.
pub fn sort_kernel_order(names: &mut [String]) {
    if !names.is_sorted_by(|a, b| kernel_order(a, b).is_le()) {
        names.sort_by(|a, b| kernel_order(a, b));
    }
}

/// Kernel order: shorter names first (`vdz` before `vdaa`, `loop9` before
/// `loop10`), then by name.
pub fn kernel_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A human size: `512M`, `1.5G`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value >= 10.0 || value.fract() == 0.0 {
        format!("{:.0}{}", value, UNITS[unit])
    } else {
        format!("{:.1}{}", value, UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_name_order() {
        let mut v = vec!["vdaa", "vdz", "vdb", "loop10", "loop9", "vdb1"];
        v.sort_by(|a, b| kernel_order(a, b));
        assert_eq!(v, vec!["vdb", "vdz", "vdaa", "vdb1", "loop9", "loop10"]);
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(8 << 20), "8.0M".replace(".0", ""));
        assert_eq!(human_size(1536 << 20), "1.5G");
    }
}
