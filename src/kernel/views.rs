//! The kernel's views of block devices, read without waiting on a disk:
//! the list (`/proc/partitions`), the swaps, sysfs attributes and links.
//! The mount table is `mounts`, udev's database `udev`.

use crate::base::read::read_small;
use crate::base::settings::Settings;
use crate::kernel::device::DevNum;
use crate::kernel::escape::unescape_octal;
use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
    let text = read_proc(&settings.paths.proc_dir.join("swaps")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| fs::metadata(unescape_octal(p)).ok())
        .filter(|m| m.rdev() != 0)
        .map(|m| DevNum::from_rdev(m.rdev()))
        .collect()
}
