//! Why a device is not served: the root's disks, the platform's disk, a
//! swap, a release, a filesystem type the map does not mount, a mark left
//! by a growth.

use super::*;

impl Scan<'_> {
    pub(super) fn find_root_disks(&self) -> HashSet<String> {
        let mut disks = HashSet::new();
        let sys = &self.settings.paths.sys_dir;
        let devnum = match self.root_devnum_quick() {
            Some(devnum) => devnum,
            None => match root_mount(self.mounts()) {
                Some(root) => root.block_devnum(sys),
                None => return disks,
            },
        };
        // A scan of one key's devices has not the root's entry: its name
        // (and whole disk) from sysfs (`/sys/dev/block/MAJ:MIN`).
        let mut linked: Option<(String, Option<String>)> = None;
        let Some(name) = self
            .entries
            .iter()
            .find(|e| e.devnum == devnum)
            .map(|e| e.name.clone())
            .or_else(|| {
                let link = fs::read_link(sys.join(format!("dev/block/{devnum}"))).ok()?;
                let name = link.file_name()?.to_str()?.to_string();
                linked = Some((name.clone(), partition_parent(&link, &name)));
                Some(name)
            })
        else {
            return disks;
        };
        let mut todo = vec![name];
        while let Some(name) = todo.pop() {
            let whole = match (self.entry(&name), &linked) {
                (Some(e), _) => self.parent(e),
                (None, Some((n, parent))) if *n == name => parent.clone(),
                (None, _) => fs::read_link(sys.join("class/block").join(&name))
                    .ok()
                    .and_then(|t| partition_parent(&t, &name)),
            }
            .unwrap_or_else(|| name.clone());
            if disks.insert(whole.clone()) {
                let class = self.settings.paths.sys_dir.join("class/block");
                todo.extend(list_names(&class.join(&name).join("slaves")));
                if whole != name {
                    todo.extend(list_names(&class.join(&whole).join("slaves")));
                }
            }
        }
        disks
    }

    /// The device number of the root filesystem, from the process's root
    /// (`/proc/self/root`, the mount that `/` of the mount table names),
    /// without reading the mount table; `None` where it cannot say: no such
    /// link (a tree of fixtures), or an anonymous number (btrfs, whose
    /// source device the mount table names).
    fn root_devnum_quick(&self) -> Option<DevNum> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(self.settings.paths.proc_dir.join("self/root")).ok()?;
        let devnum = DevNum::from_rdev(meta.dev());
        (devnum.major != 0).then_some(devnum)
    }

    /// Whole disks that carry the platform's swap/config area: a partition
    /// named `gandiswap`, or a swap area labelled `swap` on a partition.
    pub(super) fn platform_disks(&self, devices: &[Device]) -> HashSet<String> {
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
    pub(super) fn platform_partition(&self, entry: &Entry) -> bool {
        let uevent = self
            .settings
            .paths
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

    pub(super) fn exclusion(
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
        if is_released(released, dev) {
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
                crate::disk::fsstate::Marks::new(self.settings, dev.fs.uuid.as_deref(), &dev.name);
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

/// Whether `dev` is released: a release mark of its name, for this attach
/// (or of an unknown one). A disk attached again under the name is not.
pub(super) fn is_released(released: &HashMap<String, Option<u64>>, dev: &Device) -> bool {
    released
        .get(&dev.name)
        .is_some_and(|seq| seq.is_none() || *seq == dev.diskseq)
}

/// Whether what was seen at the attach sequence number `then` is of the
/// attach `now`: an unknown number (an older kernel or udev) does not make
/// it stale.
pub(super) fn same_attach(now: Option<u64>, then: Option<u64>) -> bool {
    match (now, then) {
        (Some(now), Some(then)) => now == then,
        _ => true,
    }
}

/// A filesystem type we can hand to autofs as `-fstype=`.
pub(super) fn safe_fstype(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 32
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}
