//! The kernel's views, read without waiting on a disk: the list of block
//! devices (`/proc/partitions`), the mount table (one reader for every
//! caller), the swaps, sysfs attributes and links, udev's database and
//! whether udevd runs.

use crate::base::settings::Settings;
use crate::kernel::device::{DevNum, FsInfo};
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
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

/// `(device number, KiB, kernel name)` of each line of `/proc/partitions`.
/// Names are given as sysfs spells them (`cciss!c0d0`).
pub fn parse_partitions(text: &str) -> Vec<(DevNum, u64, String)> {
    text.lines()
        .filter_map(|line| {
            // Four columns, separated by runs of spaces.
            let mut f = line
                .as_bytes()
                .split(|&b| b == b' ')
                .filter(|w| !w.is_empty());
            let mut num = || -> Option<u64> {
                let w = f.next()?;
                if w.is_empty() || w.len() > 19 || !w.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                Some(w.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
            };
            let major = u32::try_from(num()?).ok()?;
            let minor = u32::try_from(num()?).ok()?;
            let kib = num()?;
            let name = std::str::from_utf8(f.next()?).ok()?;
            let name = if name.contains('/') {
                name.replace('/', "!")
            } else {
                name.to_string()
            };
            Some((DevNum { major, minor }, kib, name))
        })
        .collect()
}

/// Whether udevd answers on its control socket (`DATA_DIR/../control`).
/// A non-blocking connect: refused or missing means not running; a full
/// backlog still means running. Nothing is sent.
pub fn udev_alive(udev_data_dir: &Path) -> bool {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let Some(run) = udev_data_dir.parent() else {
        return false;
    };
    let Ok(addr) = UnixAddr::new(&run.join("control")) else {
        return false;
    };
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    // A listener that answers (or whose queue is full) is alive; a socket
    // file with no listener refuses the connection.
    use std::os::fd::AsRawFd;
    matches!(
        connect(fd.as_raw_fd(), &addr),
        Ok(()) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINPROGRESS)
    )
}

/// For a sysfs link `../../devices/.../block/vda/vda1`, the whole disk
/// (`vda`) when the link names a partition.
pub fn partition_parent(target: &Path, name: &str) -> Option<String> {
    let mut comps = target.components().rev();
    let last = comps.next()?.as_os_str().to_str()?;
    if last != name {
        return None;
    }
    let up = comps.next()?.as_os_str().to_str()?;
    (up != "block").then(|| up.to_string())
}

pub fn read_u64(path: &Path) -> Option<u64> {
    read_small(path)?.trim().parse().ok()
}

pub use crate::base::read::read_small;

/// Reads a procfs file to its end, in large reads: procfs files have no
/// size to ask for (as `fs::read_to_string` does, starting small), and may
/// return less than asked before their end.
pub fn read_proc(path: &Path) -> std::io::Result<String> {
    crate::base::read::read_text(path)
}

pub fn list_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn read_swaps(settings: &Settings) -> HashSet<DevNum> {
    let text = read_proc(&settings.proc_dir.join("swaps")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| fs::metadata(unescape_octal(p)).ok())
        .filter(|m| m.rdev() != 0)
        .map(|m| DevNum::from_rdev(m.rdev()))
        .collect()
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

/// Undoes the four-byte escapes `\ABC` of `s`: `decode` gives the byte for
/// the three bytes after a backslash, or `None` when they are no escape
/// (then the backslash is kept as it is).
fn unescape4(s: &str, decode: impl Fn(&[u8]) -> Option<u8>) -> String {
    let bytes = s.as_bytes();
    if !bytes.contains(&b'\\') {
        return s.to_string();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(v) = bytes.get(i + 1..i + 4).and_then(&decode)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Undoes the kernel's `\040`-style escapes of mount tables.
pub fn unescape_octal(s: &str) -> String {
    unescape4(s, |d| {
        if !d.iter().all(|b| (b'0'..=b'7').contains(b)) {
            return None;
        }
        u8::try_from(d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'))).ok()
    })
}

/// Undoes udev's `\xNN` escapes (`ID_FS_LABEL_ENC`), also those of our
/// records index.
pub fn unescape_hex(s: &str) -> String {
    unescape4(s, |d| {
        let hex = std::str::from_utf8(d.get(1..3)?).ok()?;
        (d[0] == b'x')
            .then(|| u8::from_str_radix(hex, 16).ok())
            .flatten()
    })
}

/// Parses a udev database entry: the filesystem properties and the attach
/// sequence number udev saw (its `disk/by-diskseq` link).
pub fn parse_udev_entry(text: &str) -> (FsInfo, Option<u64>) {
    let mut fs = FsInfo::default();
    let (mut label, mut label_enc, mut uuid, mut uuid_enc) = (None, None, None, None);
    let mut seq = None;
    let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
    for line in text.lines() {
        if let Some(kv) = line.strip_prefix("E:") {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            match k {
                "ID_FS_TYPE" => fs.fstype = some(v),
                "ID_FS_USAGE" => fs.usage = some(v),
                "ID_FS_LABEL" => label = some(v),
                "ID_FS_LABEL_ENC" => label_enc = some(v).map(|v| unescape_hex(&v)),
                "ID_FS_UUID" => uuid = some(v),
                "ID_FS_UUID_ENC" => uuid_enc = some(v).map(|v| unescape_hex(&v)),
                "ID_PART_ENTRY_NAME" => fs.part_name = some(v).map(|v| unescape_hex(&v)),
                "ID_PART_TABLE_TYPE" => fs.part_table = some(v),
                "DISKSEQ" => seq = seq.or_else(|| v.parse().ok()),
                _ => {}
            }
        } else if let Some(n) = line.strip_prefix("S:disk/by-diskseq/") {
            seq = n.parse().ok();
        }
    }
    fs.label = label_enc.or(label);
    fs.uuid = uuid_enc.or(uuid);
    (fs, seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_parent_from_sysfs_links() {
        let p = |t: &str, n: &str| partition_parent(Path::new(t), n);
        assert_eq!(
            p("../../devices/virtual/block/loop0/loop0p1", "loop0p1"),
            Some("loop0".into())
        );
        assert_eq!(p("../../devices/virtual/block/loop0", "loop0"), None);
        assert_eq!(
            p(
                "../../devices/pci0000:00/0000:00:04.0/virtio2/block/vdb",
                "vdb"
            ),
            None
        );
    }

    #[test]
    fn partitions_parsing() {
        let text = "major minor  #blocks  name\n\n 254        0  268435456 vda\n \
                    254        1     1024 vda1\n 104 0 2048 cciss/c0d0\n junk line\n";
        let parsed = parse_partitions(text);
        assert_eq!(parsed.len(), 3);
        assert_eq!(
            parsed[1],
            (
                DevNum {
                    major: 254,
                    minor: 1
                },
                1024,
                "vda1".to_string()
            )
        );
        // Named as sysfs does.
        assert_eq!(parsed[2].2, "cciss!c0d0");
    }

    #[test]
    fn mountinfo_parsing() {
        let text = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard\n\
                    40 22 0:45 / /mnt/with\\040space rw,nosuid - btrfs /dev/loop3 rw,space_cache\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[0].devnum,
            DevNum {
                major: 254,
                minor: 0
            }
        );
        assert_eq!(m[1].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[1].source, "/dev/loop3");
        assert_eq!(m[1].fstype, "btrfs");
        assert!(m[1].options.contains("nosuid"));
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape_hex("my\\x20disk\\x2fx"), "my disk/x");
        assert_eq!(unescape_hex("bad\\xZZ"), "bad\\xZZ");
        assert_eq!(unescape_octal("a\\040b\\134c"), "a b\\c");
        // Not escapes: over 255, not octal, cut short.
        assert_eq!(unescape_octal("\\777\\9\\04"), "\\777\\9\\04");
        assert_eq!(unescape_hex("\\x4"), "\\x4");
    }

    proptest::proptest! {
        #![proptest_config(crate::testing::proptest_config(512))]

        /// Any text: no panic; without a backslash, unchanged.
        #[test]
        fn unescaping_any_text(s in "[a-z\\\\x0-9 ]{0,24}") {
            let (o, h) = (unescape_octal(&s), unescape_hex(&s));
            if !s.contains('\\') {
                proptest::prop_assert_eq!(&o, &s);
                proptest::prop_assert_eq!(&h, &s);
            }
        }
    }
}
