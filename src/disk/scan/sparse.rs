//! The scan of one key's recorded devices ([`Scan::for_key`]): what a map
//! lookup the index by key can answer reads, however many disks the
//! machine has (the key's file of the index, then sysfs for its disks).

use super::exclusion::same_attach;
use super::{Entry, Scan};
use crate::base::glob::glob_match;
use crate::base::read::read_small;
use crate::base::settings::Settings;
use crate::disk::index;
use crate::kernel::device::DevNum;
use crate::kernel::views::{list_names, read_u64};
use std::cell::OnceCell;
use std::collections::HashSet;

impl<'a> Scan<'a> {
    /// A scan of the recorded devices that answer to `key` and nothing
    /// else, read from the index by key and sysfs for those devices only
    /// (not `/proc/partitions`): what a lookup that the index can answer
    /// needs, however many disks the machine has. `None` when the index
    /// cannot answer: no index by key, no record that answers to the key,
    /// or one the kernel does not confirm as current (its device number,
    /// size and attach sequence number, read for that disk). Devices not
    /// recorded yet are not seen: the caller scans every device when this
    /// scan serves nothing. `answers` tells whether a device (its name,
    /// label and UUID) answers to the key.
    pub fn for_key(
        settings: &'a Settings,
        key: &str,
        answers: impl Fn(&str, Option<&str>, Option<&str>) -> bool,
    ) -> Option<Scan<'a>> {
        let text = read_small(&index::key_index_file(settings, key))?;
        let lines = index::index_lines(&text)?;
        let class = settings.paths.sys_dir.join("class/block");
        let sysfs_entry = |name: &str| -> Option<Entry> {
            let dir = class.join(name);
            let devnum = DevNum::parse(&read_small(&dir.join("dev"))?)?;
            let sectors = read_u64(&dir.join("size"))?;
            Some(Entry {
                name: name.to_string(),
                devnum,
                kib: sectors / 2,
                parent: OnceCell::new(),
                bytes: Some(sectors.saturating_mul(512)),
            })
        };
        let mut entries: Vec<Entry> = Vec::new();
        let mut wanted = HashSet::new();
        let globs = &settings.disk_devices;
        for (name, line) in &lines {
            let r = index::IndexEntry::parse(line)?;
            if r.name != *name
                || !answers(name, r.label.as_deref(), r.uuid.as_deref())
                || !globs.iter().any(|g| glob_match(g, name))
            {
                continue;
            }
            let entry = sysfs_entry(name)?;
            if entry.kib == 0
                || r.size / 1024 != entry.kib
                || DevNum::parse(&r.devnum) != Some(entry.devnum)
            {
                return None;
            }
            wanted.insert(name.to_string());
            entries.push(entry);
        }
        if wanted.is_empty() {
            return None;
        }
        let mut scan = Scan::of(settings, entries);
        // The attach: a disk detached and another attached under its
        // number and size since it was recorded is not the record's.
        for name in &wanted {
            let r = lines
                .get(name.as_str())
                .and_then(|l| index::IndexEntry::parse(l))?;
            let entry = scan.entry(name)?;
            let whole = scan.parent(entry).unwrap_or_else(|| name.clone());
            let now = scan.diskseq(&whole);
            // A number recorded and none to read now: the disk went
            // (detached mid-lookup), not an older kernel.
            if !same_attach(now, r.diskseq) || (r.diskseq.is_some() && now.is_none()) {
                return None;
            }
        }
        // The whole disks' partitions (a partitioned disk is not served, a
        // sibling may be the platform's), from the disk's sysfs folder.
        let mut disks: Vec<String> = Vec::new();
        for name in &wanted {
            let entry = scan.entry(name)?;
            let whole = scan.parent(entry).unwrap_or_else(|| name.clone());
            if !disks.contains(&whole) {
                disks.push(whole);
            }
        }
        for disk in &disks {
            if !wanted.contains(disk)
                && let Some(e) = sysfs_entry(disk)
            {
                scan.entries.push(e);
            }
            for part in list_names(&class.join(disk)) {
                if part.len() > disk.len()
                    && part.starts_with(disk.as_str())
                    && !wanted.contains(&part)
                    && class.join(disk).join(&part).join("partition").exists()
                    && let Some(e) = sysfs_entry(&part)
                    && e.kib > 0
                {
                    scan.entries.push(e);
                }
            }
        }
        scan.sparse = Some((text.clone(), wanted));
        Some(scan)
    }
}
