//! Disk discovery, shared by every command.
//!
//! The candidates are the block devices (whole disks and partitions) whose
//! kernel names match `CONFIG_DISK_DEVICES`. Their metadata comes from
//! sources that never wait on a disk: the attach helper's records, then
//! udev's database. A device that neither knows is probed with `blkid` in a
//! child process, bounded in time, as a last resort.
//!
//! Excluded, by detection and never by name: the disks that hold `/` (and
//! their partitions), swap areas, the platform's swap/config disk, devices
//! used by another block device (LVM, RAID, dm-crypt), whole disks that
//! carry a partition table, and devices without a mountable filesystem.

use crate::records;
use crate::settings::Settings;
use serde::Serialize;
use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    pub excluded: Option<Exclusion>,
}

/// Shell-style glob match of a kernel name, as `fnmatch(3)` with no flags
/// does it (`*`, `?`, `[a-z]`, `[!...]`, `\\` escapes), byte by byte and
/// without allocating: the map matches every block device against it.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // Where to resume after the last `*`: pattern index, name index.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi + 1, ni));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(pi + 1),
            Some(b'[') => match class_match(p, pi, n[ni]) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                // No closing bracket: a literal `[`.
                None => (n[ni] == b'[').then_some(pi + 1),
            },
            Some(b'\\') if pi + 1 < p.len() => (n[ni] == p[pi + 1]).then_some(pi + 2),
            Some(&c) => (n[ni] == c).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                // Let the last `*` take one more byte.
                pi = sp;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Matches byte `c` against the bracket expression at `p[start]`: whether
/// it matched and the index after the `]`; `None` when there is no `]`.
fn class_match(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let mut lo = *p.get(i)?;
        if lo == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if lo == b'\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&h| h != b']') {
            let mut hi_at = i + 2;
            if p[hi_at] == b'\\' {
                hi_at += 1;
            }
            let hi = *p.get(hi_at)?;
            hit |= lo <= c && c <= hi;
            i = hi_at + 1;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
}

/// A block device as the kernel lists it in `/proc/partitions`.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    devnum: DevNum,
    /// Size in KiB, as listed (never 0: devices without a medium are not).
    kib: u64,
    /// For a partition, its whole disk: read from sysfs when first needed.
    parent: OnceCell<Option<String>>,
}

/// The system's view, read once per command: the kernel's list of block
/// devices, then, only when a question needs them, the mounts, the swaps,
/// the root disks and whether udevd runs. A map lookup that matches nothing
/// reads two files.
pub struct Scan<'a> {
    settings: &'a Settings,
    entries: Vec<Entry>,
    mounts: OnceCell<Vec<MountEntry>>,
    swaps: OnceCell<HashSet<DevNum>>,
    root_disks: OnceCell<HashSet<String>>,
    /// udev's entries are only up to date while udevd runs; without it they
    /// may describe an earlier attach or content, so they are not used.
    udev_alive: OnceCell<bool>,
    /// Index entries kept by `quick_match` for the devices it returned.
    indexed: RefCell<HashMap<String, records::Indexed>>,
}

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

impl<'a> Scan<'a> {
    /// Reads the kernel's list of block devices (one file: name, number and
    /// size of every device that has a medium).
    pub fn new(settings: &'a Settings) -> anyhow::Result<Scan<'a>> {
        use anyhow::Context;
        let path = settings.proc_dir.join("partitions");
        let text = read_proc(&path).with_context(|| format!("reading {}", path.display()))?;
        let entries: Vec<Entry> = parse_partitions(&text)
            .into_iter()
            .filter(|(_, kib, _)| *kib > 0)
            .map(|(devnum, kib, name)| Entry {
                name,
                devnum,
                kib,
                parent: OnceCell::new(),
            })
            .collect();
        Ok(Scan {
            settings,
            entries,
            mounts: OnceCell::new(),
            swaps: OnceCell::new(),
            root_disks: OnceCell::new(),
            udev_alive: OnceCell::new(),
            indexed: RefCell::new(HashMap::new()),
        })
    }

    fn mounts(&self) -> &[MountEntry] {
        self.mounts.get_or_init(|| {
            let path = self.settings.proc_dir.join("self/mountinfo");
            parse_mountinfo(&read_proc(&path).unwrap_or_default())
        })
    }

    fn swaps(&self) -> &HashSet<DevNum> {
        self.swaps.get_or_init(|| read_swaps(self.settings))
    }

    fn root_disks(&self) -> &HashSet<String> {
        self.root_disks.get_or_init(|| self.find_root_disks())
    }

    fn udev_alive(&self) -> bool {
        *self
            .udev_alive
            .get_or_init(|| udev_alive(&self.settings.udev_data_dir))
    }

    /// The whole disk of a partition (one readlink, then remembered).
    fn parent(&self, entry: &Entry) -> Option<String> {
        entry
            .parent
            .get_or_init(|| {
                let link = self.settings.sys_dir.join("class/block").join(&entry.name);
                let target = fs::read_link(link).ok()?;
                partition_parent(&target, &entry.name)
            })
            .clone()
    }

    /// The partitions of a whole disk: their names start with the disk's.
    fn partitions_of(&self, disk: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| {
                e.name.len() > disk.len()
                    && e.name.starts_with(disk)
                    && self.parent(e).as_deref() == Some(disk)
            })
            .map(|e| e.name.clone())
            .collect()
    }

    /// The attach sequence number of a whole disk.
    fn diskseq(&self, disk: &str) -> Option<u64> {
        read_u64(
            &self
                .settings
                .sys_dir
                .join("class/block")
                .join(disk)
                .join("diskseq"),
        )
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The candidates whose cheap metadata `wanted` accepts (called with
    /// the name, label and UUID), and those nothing knows yet, in kernel
    /// order. The metadata is the records' index (one file for all devices)
    /// when its entry's number and size agree with the kernel's list, else
    /// udev's entry (one read, only while udevd runs). The index entries of
    /// the devices returned are kept for `describe`, which checks them in
    /// full.
    pub fn quick_match(
        &self,
        wanted: impl Fn(&str, Option<&str>, Option<&str>) -> bool,
    ) -> Vec<String> {
        let text = records::read_index(self.settings).unwrap_or_default();
        let lines = records::index_lines(&text).unwrap_or_default();
        let mut kept = self.indexed.borrow_mut();
        let mut found: Vec<String> = self
            .candidates()
            .filter(|entry| {
                let name = entry.name.as_str();
                // Parsed one at a time: nothing kept but what matched.
                let indexed = lines
                    .get(name)
                    .and_then(|line| records::IndexEntry::parse(line))
                    .filter(|r| {
                        r.name == name
                            && r.size / 1024 == entry.kib
                            && DevNum::parse(&r.devnum) == Some(entry.devnum)
                    });
                match indexed {
                    Some(r) => {
                        let hit = wanted(name, r.label.as_deref(), r.uuid.as_deref());
                        if hit {
                            kept.insert(name.to_string(), r.fs_and_check());
                        }
                        hit
                    }
                    None if self.udev_alive() => match self.udev_entry(entry.devnum) {
                        Some((fs, _)) => wanted(name, fs.label.as_deref(), fs.uuid.as_deref()),
                        None => true,
                    },
                    None => true,
                }
            })
            .map(|e| e.name.clone())
            .collect();
        sort_kernel_order(&mut found);
        found
    }

    /// The entries whose names match `CONFIG_DISK_DEVICES`.
    fn candidates(&self) -> impl Iterator<Item = &Entry> {
        let globs = &self.settings.disk_devices;
        self.entries
            .iter()
            .filter(|e| globs.iter().any(|g| glob_match(g, &e.name)))
    }

    /// Kernel names that match `CONFIG_DISK_DEVICES`, in kernel order.
    pub fn candidate_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.candidates().map(|e| e.name.clone()).collect();
        sort_kernel_order(&mut names);
        names
    }

    /// Every candidate device with its metadata and exclusion.
    pub fn devices(&self) -> Vec<Device> {
        let names = self.candidate_names();
        self.describe(&names)
    }

    /// The candidate devices named, with their metadata and exclusion.
    /// Devices that vanish while being read are left out.
    pub fn describe(&self, names: &[String]) -> Vec<Device> {
        let mut devices: Vec<Device> = names.iter().filter_map(|n| self.basic(n)).collect();
        // Metadata: records, then udev, then one bounded probe for the rest.
        let mut unknown = Vec::new();
        for (i, dev) in devices.iter_mut().enumerate() {
            if dev.size == 0 {
                continue;
            } else if let Some(kept) = self
                .indexed
                .borrow()
                .get(&dev.name)
                .filter(|k| k.describes(dev))
            {
                dev.fs = kept.fs.clone();
                dev.source = MetaSource::Record;
                dev.growing = kept.growing;
            } else if let Some(record) = records::lookup(self.settings, dev) {
                dev.fs = record.fs;
                dev.source = MetaSource::Record;
                dev.growing = record.state == records::RecordState::Growing
                    && record.grower.is_none_or(records::alive);
            } else if let Some(fs) = self.udev_fs(dev) {
                dev.fs = fs;
                dev.source = MetaSource::Udev;
            } else if dev.size > 0
                && !self
                    .root_disks()
                    .contains(dev.parent.as_deref().unwrap_or(&dev.name))
            {
                // Empty devices (a loop device with no file) and the system
                // disk are never served: no need to probe them.
                unknown.push(i);
            }
        }
        if !unknown.is_empty() {
            let paths: Vec<PathBuf> = unknown
                .iter()
                .map(|&i| self.dev_path(&devices[i].name))
                .collect();
            let probed = probe(
                &paths,
                Duration::from_millis(self.settings.probe_timeout_ms),
            );
            for (&i, path) in unknown.iter().zip(&paths) {
                match &probed {
                    Some(found) => {
                        devices[i].fs = found.get(path).cloned().unwrap_or_default();
                        devices[i].source = MetaSource::Probe;
                    }
                    None => devices[i].source = MetaSource::Unknown,
                }
            }
        }
        let released = records::released(self.settings);
        let platform_disks = self.platform_disks(&devices);
        for dev in &mut devices {
            dev.excluded = self.exclusion(dev, &platform_disks, &released);
        }
        devices
    }

    /// The mounts under the mount root whose block device is gone (detached
    /// or emptied while mounted), as devices excluded as [`Exclusion::Gone`]
    /// and named after the mount's source (`loop3`).
    pub fn gone(&self) -> Vec<Device> {
        let dev_dir = self.settings.dev_dir.display().to_string();
        let mut gone: Vec<Device> = self
            .mounts()
            .iter()
            .filter(|m| {
                m.fstype != "autofs"
                    && m.mount_point.starts_with(&self.settings.disk_root)
                    && m.mount_point != self.settings.disk_root
                    && (m.devnum.major != 0 || m.source.starts_with(&dev_dir))
            })
            .filter(|m| {
                let devnum = m.block_devnum();
                let by_name = m
                    .source
                    .strip_prefix(&dev_dir)
                    .map(|n| n.trim_start_matches('/').replace('/', "!"));
                !self
                    .entries
                    .iter()
                    .any(|e| e.devnum == devnum || by_name.as_deref() == Some(e.name.as_str()))
            })
            .map(|m| Device {
                name: m
                    .source
                    .strip_prefix(&dev_dir)
                    .map(|n| n.trim_start_matches('/').replace('/', "!"))
                    .unwrap_or_else(|| m.devnum.to_string()),
                devnum: m.block_devnum(),
                size: 0,
                diskseq: None,
                parent: None,
                partitions: Vec::new(),
                holders: Vec::new(),
                fs: FsInfo {
                    fstype: Some(m.fstype.clone()),
                    ..FsInfo::default()
                },
                source: MetaSource::Unknown,
                mounts: vec![m.mount_point.clone()],
                growing: false,
                excluded: Some(Exclusion::Gone),
            })
            .collect();
        gone.sort_by(|a, b| a.mounts.cmp(&b.mounts));
        gone
    }

    /// `/dev/NAME` (kernel names use `!` where the device path has `/`).
    pub fn dev_path(&self, name: &str) -> PathBuf {
        self.settings.dev_dir.join(name.replace('!', "/"))
    }

    /// What sysfs and the mount table tell of one device.
    fn basic(&self, name: &str) -> Option<Device> {
        let entry = self.entry(name)?;
        let class = self.settings.sys_dir.join("class/block");
        let dir = class.join(name);
        let devnum = entry.devnum;
        let size = read_u64(&dir.join("size")).unwrap_or(0).saturating_mul(512);
        let parent = self.parent(entry);
        if size == 0 {
            // No medium: nothing more to read.
            return Some(Device {
                name: name.to_string(),
                devnum,
                size,
                diskseq: None,
                parent,
                partitions: Vec::new(),
                holders: Vec::new(),
                fs: FsInfo::default(),
                source: MetaSource::Unknown,
                mounts: Vec::new(),
                growing: false,
                excluded: None,
            });
        }
        let whole = parent.as_deref().unwrap_or(name);
        let diskseq = self.diskseq(whole);
        let partitions = if parent.is_none() {
            self.partitions_of(name)
        } else {
            Vec::new()
        };
        let holders = list_names(&dir.join("holders"));
        let dev_source = format!("{}", self.dev_path(name).display());
        let mounts = self
            .mounts()
            .iter()
            .filter(|m| m.devnum == devnum || m.source == dev_source)
            .map(|m| m.mount_point.clone())
            .collect();
        Some(Device {
            name: name.to_string(),
            devnum,
            size,
            diskseq,
            parent,
            partitions,
            holders,
            fs: FsInfo::default(),
            source: MetaSource::Unknown,
            mounts,
            growing: false,
            excluded: None,
        })
    }

    /// udev's database entry: the metadata and the attach sequence number
    /// udev saw (kept as the `disk/by-diskseq` link).
    fn udev_entry(&self, devnum: DevNum) -> Option<(FsInfo, Option<u64>)> {
        let path = self.settings.udev_data_dir.join(format!("b{devnum}"));
        let text = read_small(&path)?;
        Some(parse_udev_entry(&text))
    }

    /// udev's metadata for the device, unless the entry is left from an
    /// earlier attach under the same device number (udev stopped since):
    /// its attach sequence number must be the current one.
    fn udev_fs(&self, dev: &Device) -> Option<FsInfo> {
        if !self.udev_alive() {
            return None;
        }
        let (fs, db_seq) = self.udev_entry(dev.devnum)?;
        if let (Some(seq), Some(db)) = (dev.diskseq, db_seq)
            && db != seq
        {
            return None;
        }
        Some(fs)
    }

    fn find_root_disks(&self) -> HashSet<String> {
        let mut disks = HashSet::new();
        let Some(root) = root_mount(self.mounts()) else {
            return disks;
        };
        let devnum = root.block_devnum();
        let Some(name) = self
            .entries
            .iter()
            .find(|e| e.devnum == devnum)
            .map(|e| e.name.clone())
        else {
            return disks;
        };
        let mut todo = vec![name];
        while let Some(name) = todo.pop() {
            let whole = self
                .entry(&name)
                .and_then(|e| self.parent(e))
                .unwrap_or_else(|| name.clone());
            if disks.insert(whole.clone()) {
                let class = self.settings.sys_dir.join("class/block");
                todo.extend(list_names(&class.join(&name).join("slaves")));
                if whole != name {
                    todo.extend(list_names(&class.join(&whole).join("slaves")));
                }
            }
        }
        disks
    }

    /// Whole disks that carry the platform's swap/config area: a partition
    /// named `gandiswap`, or a swap area labelled `swap` on a partition.
    fn platform_disks(&self, devices: &[Device]) -> HashSet<String> {
        let mut set = HashSet::new();
        for dev in devices {
            let platform_part = dev.fs.part_name.as_deref() == Some("gandiswap")
                || (dev.fs.fstype.as_deref() == Some("swap")
                    && dev.fs.label.as_deref() == Some("swap"));
            if platform_part && let Some(parent) = &dev.parent {
                set.insert(parent.clone());
            }
        }
        // Sibling partitions that were not described: the kernel's uevent
        // names GPT partitions; udev's entry has the rest.
        let described: HashSet<&str> = devices.iter().map(|d| d.name.as_str()).collect();
        let disks: HashSet<&str> = devices
            .iter()
            .map(|d| d.parent.as_deref().unwrap_or(&d.name))
            .collect();
        for disk in disks {
            for part in self.partitions_of(disk) {
                if described.contains(part.as_str()) {
                    continue;
                }
                let Some(entry) = self.entry(&part) else {
                    continue;
                };
                if self.platform_partition(entry) {
                    set.insert(disk.to_string());
                }
            }
        }
        set
    }

    /// Whether an undescribed partition is the platform's swap/config one.
    fn platform_partition(&self, entry: &Entry) -> bool {
        let uevent = self
            .settings
            .sys_dir
            .join("class/block")
            .join(&entry.name)
            .join("uevent");
        read_small(&uevent).is_some_and(|u| u.lines().any(|l| l == "PARTNAME=gandiswap"))
            || self.udev_entry(entry.devnum).is_some_and(|(fs, _)| {
                fs.part_name.as_deref() == Some("gandiswap")
                    || (fs.fstype.as_deref() == Some("swap") && fs.label.as_deref() == Some("swap"))
            })
    }

    fn exclusion(
        &self,
        dev: &Device,
        platform_disks: &HashSet<String>,
        released: &HashMap<String, Option<u64>>,
    ) -> Option<Exclusion> {
        let whole = dev.parent.as_deref().unwrap_or(&dev.name);
        if self.root_disks().contains(whole) {
            return Some(Exclusion::RootDisk);
        }
        if self.swaps().contains(&dev.devnum) || dev.fs.fstype.as_deref() == Some("swap") {
            return Some(Exclusion::Swap);
        }
        if platform_disks.contains(whole) || dev.fs.part_name.as_deref() == Some("gandiswap") {
            return Some(Exclusion::PlatformDisk);
        }
        if let Some(seq) = released.get(&dev.name)
            && (seq.is_none() || *seq == dev.diskseq)
        {
            return Some(Exclusion::Released);
        }
        if dev.size == 0 {
            return Some(Exclusion::Empty);
        }
        if dev.growing {
            return Some(Exclusion::Growing);
        }
        if dev.fs.fstype.is_some() {
            let marks =
                crate::fsstate::Marks::new(self.settings, dev.fs.uuid.as_deref(), &dev.name);
            if let Some(why) = marks.damaged() {
                return Some(Exclusion::Damaged(format!(
                    "damaged: {why}; `gandi-vm disk check` repairs it"
                )));
            }
            if let Some(what) = marks.interrupted() {
                return Some(Exclusion::Interrupted(format!(
                    "an offline resize was cut short ({what}); its next growth repairs it"
                )));
            }
        }
        if let Some(holder) = dev.holders.first() {
            return Some(Exclusion::InUse(holder.clone()));
        }
        if !dev.partitions.is_empty() || dev.fs.part_table.is_some() && dev.fs.fstype.is_none() {
            return Some(Exclusion::Partitioned);
        }
        if dev.source == MetaSource::Unknown {
            return Some(Exclusion::Unreadable);
        }
        match (&dev.fs.fstype, dev.fs.usage.as_deref()) {
            (None, _) => Some(Exclusion::NoFilesystem),
            (Some(t), Some(u)) if u != "filesystem" => Some(Exclusion::NotMountable(t.clone())),
            (Some(t), _) if !safe_fstype(t) => Some(Exclusion::NotMountable(t.clone())),
            _ => None,
        }
    }
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

/// A filesystem type we can hand to autofs as `-fstype=`.
fn safe_fstype(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 32
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// For a sysfs link `../../devices/.../block/vda/vda1`, the whole disk
/// (`vda`) when the link names a partition.
fn partition_parent(target: &Path, name: &str) -> Option<String> {
    let mut comps = target.components().rev();
    let last = comps.next()?.as_os_str().to_str()?;
    if last != name {
        return None;
    }
    let up = comps.next()?.as_os_str().to_str()?;
    (up != "block").then(|| up.to_string())
}

/// Sorts names in kernel order; the kernel lists devices in that order
/// already, most of the time.
fn sort_kernel_order(names: &mut [String]) {
    if !names.is_sorted_by(|a, b| kernel_order(a, b).is_le()) {
        names.sort_by(|a, b| kernel_order(a, b));
    }
}

/// Kernel order: shorter names first (`vdz` before `vdaa`, `loop9` before
/// `loop10`), then by name.
pub fn kernel_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn read_u64(path: &Path) -> Option<u64> {
    read_small(path)?.trim().parse().ok()
}

/// Reads a small file (sysfs attribute, udev entry, tmpfs file) with one
/// open and, for most files, one read: no size query as
/// `fs::read_to_string` makes, no zeroing of the buffer, at most 1 MiB.
/// Not for procfs, which may return less than asked before the end.
pub fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut file = fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        let n = file.read(&mut buf[len..]).ok()?;
        len += n;
        // sysfs and tmpfs fill the buffer unless at the end: a short read
        // saves the extra call that would return 0.
        if n == 0 || len < buf.len() {
            break;
        }
        if buf.len() >= 1 << 20 {
            return None;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(len);
    String::from_utf8(buf).ok()
}

/// Reads a procfs file to its end, in large reads: procfs files have no
/// size to ask for (as `fs::read_to_string` does, starting small), and may
/// return less than asked before their end.
pub fn read_proc(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf: Vec<u8> = Vec::with_capacity(16 << 10);
    // read_to_end reads into the spare capacity (no zeroing) until a read
    // returns 0.
    fs::File::open(path)?.read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn list_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn read_swaps(settings: &Settings) -> HashSet<DevNum> {
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
    /// The block device's number: btrfs and others show an anonymous one
    /// in the mount table, so the source's is taken then.
    pub fn block_devnum(&self) -> DevNum {
        if self.devnum.major == 0
            && self.source.starts_with('/')
            && let Ok(meta) = fs::metadata(&self.source)
            && meta.rdev() != 0
        {
            return DevNum::from_rdev(meta.rdev());
        }
        self.devnum
    }
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

/// Undoes the kernel's `\040`-style escapes of mount tables.
pub fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    if !bytes.contains(&b'\\') {
        return s.to_string();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Undoes udev's `\xNN` escapes (`ID_FS_LABEL_ENC`).
pub fn unescape_hex(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && bytes.get(i + 1) == Some(&b'x')
            && let Some(hex) = s.get(i + 2..i + 4)
            && let Ok(v) = u8::from_str_radix(hex, 16)
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

/// Probes devices with `blkid -p` in one child process, for at most
/// `limit`. `None` when the probe failed or timed out.
pub fn probe(paths: &[PathBuf], limit: Duration) -> Option<HashMap<PathBuf, FsInfo>> {
    let outcome = match crate::runner::Run::new("blkid")
        .args(["-p", "-o", "export"])
        .args(paths)
        .limit(limit)
        .outcome()
    {
        Ok(o) => o,
        Err(e) => {
            log::warn!("{e:#}");
            return None;
        }
    };
    match outcome.code() {
        // 2: nothing found on some device; 8: ambivalent result.
        Some(0 | 2 | 8) => Some(parse_blkid_export(&outcome.stdout_text())),
        _ => {
            log::warn!(
                "{} did not answer ({}): {}",
                outcome.command,
                outcome.ended(),
                outcome.stderr_text()
            );
            None
        }
    }
}

/// Parses `blkid -o export` output for several devices.
pub fn parse_blkid_export(text: &str) -> HashMap<PathBuf, FsInfo> {
    let mut found = HashMap::new();
    for block in text.split("\n\n") {
        let mut props: BTreeMap<&str, String> = BTreeMap::new();
        for line in block.lines() {
            if let Some((k, v)) = line.split_once('=') {
                props.insert(k, unescape_backslash(v));
            }
        }
        let Some(dev) = props.get("DEVNAME") else {
            continue;
        };
        let get = |k: &str| props.get(k).filter(|v| !v.is_empty()).cloned();
        found.insert(
            PathBuf::from(dev),
            FsInfo {
                fstype: get("TYPE"),
                usage: get("USAGE"),
                label: get("LABEL"),
                uuid: get("UUID"),
                part_name: get("PART_ENTRY_NAME"),
                part_table: get("PTTYPE"),
            },
        );
    }
    found
}

fn unescape_backslash(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
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
    use std::ffi::CString;

    #[test]
    fn globs() {
        assert!(glob_match("vd*", "vdb"));
        assert!(glob_match("vd*", "vdb1"));
        assert!(glob_match("xvd[b-y]*", "xvdc"));
        assert!(!glob_match("xvd[b-y]*", "xvdz"));
        assert!(glob_match("nvme*n*", "nvme0n1p2"));
        assert!(!glob_match("sd*", "vda"));
    }

    /// The same answers as the C library's `fnmatch(3)`.
    #[test]
    fn globs_agree_with_fnmatch() {
        let patterns = [
            "vd*",
            "*",
            "",
            "?",
            "xvd[b-y]*",
            "xvd[!b-y]",
            "nvme*n*",
            "sd?",
            "loop*p*",
            "[]a]*",
            "[!]]x",
            "a\\*b",
            "a[",
            "*[0-9]",
            "**a",
            "*a*b*c",
            "cciss!c0d*",
            "[a-]x",
            "[\\]]",
            "v?[a-c][^d]",
        ];
        let names = [
            "",
            "vd",
            "vda",
            "vdb1",
            "xvdc",
            "xvdz",
            "nvme0n1p2",
            "sda",
            "sda1",
            "loop3p1",
            "]b",
            "x",
            "a*b",
            "ab",
            "a[",
            "a",
            "disk9",
            "aXbYc",
            "cciss!c0d0",
            "-x",
            "]",
            "vdaz",
            "vxcd",
        ];
        for pat in patterns {
            for name in names {
                let (cp, cn) = (CString::new(pat).unwrap(), CString::new(name).unwrap());
                // SAFETY: the test compares with the C library's own
                // fnmatch(3), which no safe crate wraps; both arguments are
                // valid NUL-terminated strings that outlive the call.
                let libc = unsafe { libc::fnmatch(cp.as_ptr(), cn.as_ptr(), 0) == 0 };
                assert_eq!(glob_match(pat, name), libc, "{pat:?} against {name:?}");
            }
        }
    }

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
    fn kernel_name_order() {
        let mut v = vec!["vdaa", "vdz", "vdb", "loop10", "loop9", "vdb1"];
        v.sort_by(|a, b| kernel_order(a, b));
        assert_eq!(v, vec!["vdb", "vdz", "vdaa", "vdb1", "loop9", "loop10"]);
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
    fn blkid_export_parsing() {
        let text = "DEVNAME=/dev/loop0\nLABEL=my\\ disk\nUUID=abc\nTYPE=ext4\nUSAGE=filesystem\n\n\
                    DEVNAME=/dev/loop1\nPTTYPE=gpt\n";
        let found = parse_blkid_export(text);
        let a = &found[Path::new("/dev/loop0")];
        assert_eq!(a.label.as_deref(), Some("my disk"));
        assert_eq!(a.fstype.as_deref(), Some("ext4"));
        let b = &found[Path::new("/dev/loop1")];
        assert_eq!(b.part_table.as_deref(), Some("gpt"));
        assert_eq!(b.fstype, None);
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape_hex("my\\x20disk\\x2fx"), "my disk/x");
        assert_eq!(unescape_hex("bad\\xZZ"), "bad\\xZZ");
        assert_eq!(unescape_octal("a\\040b\\134c"), "a b\\c");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(8 << 20), "8.0M".replace(".0", ""));
        assert_eq!(human_size(1536 << 20), "1.5G");
    }
}
