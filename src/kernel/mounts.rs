//! The mount table: one reader for every caller, the mounts of a device
//! (btrfs's multi-device ones too), the root's.

use crate::base::read::read_small;
use crate::kernel::device::DevNum;
use crate::kernel::escape::unescape_octal;
use crate::kernel::views::list_names;
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone)]
pub struct MountEntry {
    pub devnum: DevNum,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
    pub options: String,
}

impl MountEntry {
    /// Whether only a string says what it mounts (FUSE, network and
    /// virtual filesystems): a user's FUSE mount may name any source.
    pub fn string_source(&self) -> bool {
        self.fstype.starts_with("fuse") || (self.devnum.major == 0 && self.fstype != "btrfs")
    }

    /// The kernel name of a btrfs mount's source (`/dev/loop3`: `loop3`).
    fn btrfs_source(&self) -> Option<String> {
        (self.fstype == "btrfs")
            .then(|| self.source.strip_prefix("/dev/"))
            .flatten()
            .filter(|n| !n.is_empty() && !n.contains(".."))
            .map(|n| n.replace('/', "!"))
    }

    /// The block device's number: btrfs shows an anonymous one in the
    /// mount table, so its source device's is read from sysfs then. No
    /// path a mount names is ever looked at (a user's FUSE server could
    /// stall it).
    pub fn block_devnum(&self, sys_dir: &Path) -> DevNum {
        if self.devnum.major == 0
            && let Some(name) = self.btrfs_source()
            && let Some(n) = read_small(&sys_dir.join("class/block").join(name).join("dev"))
                .and_then(|d| DevNum::parse(&d))
        {
            return n;
        }
        self.devnum
    }
}

/// The mounts of block device `name` (number `devnum`): by device number,
/// and for btrfs (whose mounts show an anonymous number) the mounts whose
/// source is a member of a btrfs filesystem `name` belongs to (sysfs
/// `fs/btrfs/UUID/devices`). A mount that only names its source (FUSE and
/// the like) never counts.
pub fn mounts_of<'m>(
    mounts: &'m [MountEntry],
    devnum: DevNum,
    name: &str,
    sys_dir: &Path,
) -> Vec<&'m MountEntry> {
    let mut found: Vec<&MountEntry> = mounts
        .iter()
        .filter(|m| !m.string_source() && m.devnum == devnum)
        .collect();
    let btrfs: Vec<&MountEntry> = mounts
        .iter()
        .filter(|m| m.devnum.major == 0 && m.fstype == "btrfs")
        .collect();
    if !btrfs.is_empty() {
        let base = sys_dir.join("fs/btrfs");
        let filesystems: Vec<PathBuf> = list_names(&base)
            .into_iter()
            .map(|u| base.join(u).join("devices"))
            .filter(|d| d.join(name).exists())
            .collect();
        for m in btrfs {
            if let Some(src) = m.btrfs_source()
                && filesystems.iter().any(|d| d.join(&src).exists())
            {
                found.push(m);
            }
        }
    }
    found
}

/// The mount of `/` (the last one, when several are stacked).
pub fn root_mount(mounts: &[MountEntry]) -> Option<&MountEntry> {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == Path::new("/"))
}

/// Parses `/proc/self/mountinfo`.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            // id parent maj:min root mount-point options [optional...] -
            // fstype source super-options
            let mut f = line.split(' ');
            let devnum = DevNum::parse(f.nth(2)?)?;
            let mount_point = PathBuf::from(unescape_octal(f.nth(1)?));
            let options = f.next()?;
            f.by_ref().find(|w| *w == "-")?;
            let fstype = f.next()?.to_string();
            let source = unescape_octal(f.next().unwrap_or_default());
            let super_opts = f.next().unwrap_or_default();
            Some(MountEntry {
                devnum,
                mount_point,
                fstype,
                source,
                options: [options, super_opts].join(","),
            })
        })
        .collect()
}
