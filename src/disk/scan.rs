//! Disk discovery and exclusion (`Scan`), shared by every command.
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

use crate::base::glob::glob_match;
use crate::base::read::read_small;
use crate::base::settings::Settings;
use crate::disk::index;
use crate::disk::records;
use crate::kernel::blkid::probe;
use crate::kernel::device::{DevNum, Device, Exclusion, FsInfo, MetaSource, sort_kernel_order};
use crate::kernel::mounts::{MountEntry, mounts_of, parse_mountinfo, root_mount};
use crate::kernel::views::{
    list_names, parse_partitions, partition_parent, read_proc, read_swaps, read_u64,
};
use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

mod exclusion;
mod mounted;
mod sparse;
mod udev;
use exclusion::is_released;

/// A block device as the kernel lists it in `/proc/partitions`.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    devnum: DevNum,
    /// Size in KiB, as listed (never 0: devices without a medium are not).
    kib: u64,
    /// For a partition, its whole disk: read from sysfs when first needed.
    parent: OnceCell<Option<String>>,
    /// Its size in bytes, when sysfs was read for it already (the scan of
    /// one key's devices); else read when it is described.
    bytes: Option<u64>,
}

/// The system's view, read once per command: the kernel's list of block
/// devices, then, only when a question needs them, the mounts, the swaps,
/// the root disks and whether udevd runs. For a map lookup that matches
/// nothing (every device recorded), it reads the kernel's list and the
/// records index, lists the released keys, and reads the mount table (a
/// disk detached while mounted under the key).
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
    indexed: RefCell<HashMap<String, index::Indexed>>,
    /// A scan of one key's recorded devices ([`Scan::for_key`]): the index
    /// lines of its key, and the devices they name (the only candidates;
    /// `entries` also holds their whole disks' partitions, for the rules).
    /// `None` for a scan of every block device.
    sparse: Option<(String, HashSet<String>)>,
    /// The whole disks' attach sequence numbers read so far, each read once
    /// for the scan's answers; [`Scan::still_current`] reads them anew.
    seqs: RefCell<HashMap<String, Option<u64>>>,
}

impl<'a> Scan<'a> {
    /// Reads the kernel's list of block devices (one file: name, number and
    /// size of every device that has a medium).
    pub fn new(settings: &'a Settings) -> anyhow::Result<Scan<'a>> {
        use anyhow::Context;
        let path = settings.paths.proc_dir.join("partitions");
        let text = read_proc(&path).with_context(|| format!("reading {}", path.display()))?;
        let entries: Vec<Entry> = parse_partitions(&text)
            .into_iter()
            .filter(|(_, kib, _)| *kib > 0)
            .map(|(devnum, kib, name)| Entry {
                name,
                devnum,
                kib,
                parent: OnceCell::new(),
                bytes: None,
            })
            .collect();
        Ok(Scan::of(settings, entries))
    }

    /// A scan of these entries: nothing else read yet.
    fn of(settings: &'a Settings, entries: Vec<Entry>) -> Scan<'a> {
        Scan {
            settings,
            entries,
            mounts: OnceCell::new(),
            swaps: OnceCell::new(),
            root_disks: OnceCell::new(),
            udev_alive: OnceCell::new(),
            indexed: RefCell::new(HashMap::new()),
            sparse: None,
            seqs: RefCell::new(HashMap::new()),
        }
    }

    /// Whether this scan saw every block device (not only a key's).
    pub fn is_complete(&self) -> bool {
        self.sparse.is_none()
    }

    fn mounts(&self) -> &[MountEntry] {
        self.mounts.get_or_init(|| {
            let path = self.settings.paths.proc_dir.join("self/mountinfo");
            parse_mountinfo(&read_proc(&path).unwrap_or_default())
        })
    }

    /// Where `dev` is mounted now: the mount table read again, not the
    /// one this scan read first (a mount may have landed since).
    pub fn mounts_now(&self, dev: &Device) -> Vec<PathBuf> {
        let path = self.settings.paths.proc_dir.join("self/mountinfo");
        let now = parse_mountinfo(&read_proc(&path).unwrap_or_default());
        mounts_of(&now, dev.devnum, &dev.name, &self.settings.paths.sys_dir)
            .into_iter()
            .map(|m| m.mount_point.clone())
            .collect()
    }

    fn swaps(&self) -> &HashSet<DevNum> {
        self.swaps.get_or_init(|| read_swaps(self.settings))
    }

    fn root_disks(&self) -> &HashSet<String> {
        self.root_disks.get_or_init(|| self.find_root_disks())
    }

    /// The whole disk of a partition (one readlink, then remembered).
    fn parent(&self, entry: &Entry) -> Option<String> {
        entry
            .parent
            .get_or_init(|| {
                let link = self
                    .settings
                    .paths
                    .sys_dir
                    .join("class/block")
                    .join(&entry.name);
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
        if let Some(seq) = self.seqs.borrow().get(disk) {
            return *seq;
        }
        let seq = self.diskseq_now(disk);
        self.seqs.borrow_mut().insert(disk.to_string(), seq);
        seq
    }

    /// The disk's attach sequence number as sysfs has it now.
    fn diskseq_now(&self, disk: &str) -> Option<u64> {
        read_u64(
            &self
                .settings
                .paths
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
    /// udev's entry (one read, only while udevd runs, and only when it is of
    /// the disk's current attach: a disk attached under a device number that
    /// udev has not handled yet still has the entry of the earlier one). The
    /// index entries of the devices returned are kept for `describe`, which
    /// checks them in full.
    pub fn quick_match(
        &self,
        wanted: impl Fn(&str, Option<&str>, Option<&str>) -> bool,
    ) -> Vec<String> {
        let text = match &self.sparse {
            Some((text, _)) => std::borrow::Cow::Borrowed(text.as_str()),
            None => std::borrow::Cow::Owned(index::read_index(self.settings).unwrap_or_default()),
        };
        let lines = index::index_lines(&text).unwrap_or_default();
        let mut kept = self.indexed.borrow_mut();
        let mut found: Vec<String> = self
            .candidates()
            .filter(|entry| {
                let name = entry.name.as_str();
                // Parsed one at a time: nothing kept but what matched.
                let indexed = lines
                    .get(name)
                    .and_then(|line| index::IndexEntry::parse(line))
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
                        Some((fs, seq)) if self.udev_current(entry, seq) => {
                            wanted(name, fs.label.as_deref(), fs.uuid.as_deref())
                        }
                        // No entry, or one left from an earlier attach
                        // (udev has not handled this one yet): as a device
                        // nothing knows, probed by `describe`.
                        _ => true,
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
        let only = self.sparse.as_ref().map(|(_, names)| names);
        self.entries
            .iter()
            .filter(move |e| only.is_none_or(|names| names.contains(&e.name)))
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
                dev.growth_left = kept.growth_left;
            } else if let Some(record) = records::lookup(self.settings, dev) {
                dev.growing = record.growing();
                dev.growth_left = record.growth_left();
                dev.fs = record.fs;
                dev.source = MetaSource::Record;
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
        self.fill_mounts(&mut devices);
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
        let dev_dir = self.settings.paths.dev_dir.display().to_string();
        let sys = &self.settings.paths.sys_dir;
        let mut gone: Vec<Device> = self
            .mounts()
            .iter()
            .filter(|m| {
                !m.string_source()
                    && m.mount_point.starts_with(&self.settings.disk_root)
                    && m.mount_point != self.settings.disk_root
            })
            .filter(|m| {
                let devnum = m.block_devnum(sys);
                // A btrfs source's name, when sysfs no longer has it.
                let by_name = (m.fstype == "btrfs")
                    .then(|| m.source.strip_prefix(&dev_dir))
                    .flatten()
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
                devnum: m.block_devnum(sys),
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
                growth_left: false,
                excluded: Some(Exclusion::Gone),
            })
            .collect();
        gone.sort_by(|a, b| a.mounts.cmp(&b.mounts));
        gone
    }

    /// Whether `dev`, as described, is still what its device holds and not
    /// released: its attach sequence number read again, and the release
    /// marks. For the map's last look, after its key link is made.
    pub fn still_current(&self, dev: &Device) -> bool {
        let whole = dev.parent.as_deref().unwrap_or(&dev.name);
        let released = is_released(&records::released(self.settings), dev);
        // Gone (no number to read) counts as changed; so does a number
        // where there was none.
        let same = match (dev.diskseq, self.diskseq_now(whole)) {
            (Some(then), Some(now)) => then == now,
            (Some(_), None) | (None, Some(_)) => false,
            (None, None) => true,
        };
        // Its size read anew: a device emptied since (a loop device
        // detached keeps its number, its size drops to 0) or gone.
        let size = read_u64(
            &self
                .settings
                .paths
                .sys_dir
                .join("class/block")
                .join(&dev.name)
                .join("size"),
        )
        .map(|s| s.saturating_mul(512));
        !released && same && size == Some(dev.size)
    }

    /// `/dev/NAME` (kernel names use `!` where the device path has `/`).
    pub fn dev_path(&self, name: &str) -> PathBuf {
        self.settings.paths.dev_dir.join(name.replace('!', "/"))
    }

    /// What sysfs tells of one device (its mounts are set by `describe`,
    /// once its content is known).
    fn basic(&self, name: &str) -> Option<Device> {
        let entry = self.entry(name)?;
        let class = self.settings.paths.sys_dir.join("class/block");
        let dir = class.join(name);
        let devnum = entry.devnum;
        let size = entry
            .bytes
            .unwrap_or_else(|| read_u64(&dir.join("size")).unwrap_or(0).saturating_mul(512));
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
                growth_left: false,
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
        // The mounts, once the content is known (`describe`).
        let mounts = Vec::new();
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
            growth_left: false,
            excluded: None,
        })
    }
}
