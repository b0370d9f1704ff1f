//! Root disk growth: when the system disk was enlarged, its last partition
//! is grown to the end of the disk with `sfdisk` (GPT: the partition named
//! `gandiroot`, keeping its GUIDs, type, attributes and name, the backup
//! header moved to the end, GUIDs randomised on first boot when the disk
//! GUID is zero; MBR too), the kernel is told (`partx --update`), then the
//! filesystem is grown online.

use crate::base::read::read_small;
use crate::base::runner::Run;
use crate::base::settings::Settings;
use crate::disk::fsgrow;
use crate::kernel::device::DevNum;
use crate::kernel::mounts::{parse_mountinfo, root_mount};
use anyhow::{Context, Result};
use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// How long a partitioning tool may run.
const PART_LIMIT: Duration = Duration::from_secs(60);

/// What the growth did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Growth {
    pub changed: bool,
    pub detail: String,
}

/// Grows the partition holding `/`.
pub fn grow_root(settings: &Settings) -> Result<Growth> {
    let mountinfo = fs::read_to_string(settings.paths.proc_dir.join("self/mountinfo"))
        .context("reading the mount table")?;
    let mounts = parse_mountinfo(&mountinfo);
    let root = root_mount(&mounts).context("no root in the mount table")?;
    let devnum = root.block_devnum(&settings.paths.sys_dir);
    let name =
        name_of(settings, devnum).with_context(|| format!("no block device {devnum} for /"))?;
    grow_partition(settings, &name)
}

fn name_of(settings: &Settings, devnum: DevNum) -> Option<String> {
    let link = fs::read_link(settings.paths.sys_dir.join(format!("dev/block/{devnum}"))).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// A version 4 UUID from the kernel's random source.
fn random_uuid() -> Result<String> {
    let mut b = [0u8; 16];
    fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02X}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    ))
}

/// Grows partition `name` (a kernel name such as `vda1`) to the end of its
/// disk when it is the last one, then its filesystem.
pub fn grow_partition(settings: &Settings, name: &str) -> Result<Growth> {
    let class = settings.paths.sys_dir.join("class/block");
    let Some(number) = read_small(&class.join(name).join("partition")) else {
        // A whole-disk root: only the filesystem can follow.
        return grow_fs(settings, name, "no partition".into(), false);
    };
    let number: u32 = number
        .trim()
        .parse()
        .context("reading the partition number")?;
    let link = fs::read_link(class.join(name)).context("reading sysfs")?;
    let disk = link
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .context("finding the disk of the partition")?;
    let disk_dev = settings.paths.dev_dir.join(&disk);
    let part_dev = settings.paths.dev_dir.join(name);
    // At every boot but the first, the partition fills its disk already:
    // sysfs says so without starting a partitioning tool.
    if fills_disk(&class, &disk, name) {
        return grow_fs(settings, name, "the partition fills the disk".into(), false);
    }
    let table: serde_json::Value = serde_json::from_str(
        &Run::new("sfdisk")
            .arg("--json")
            .arg(&disk_dev)
            .limit(PART_LIMIT)
            .output()?,
    )
    .context("reading sfdisk's output")?;
    let t = &table["partitiontable"];
    let label = t["label"].as_str().unwrap_or_default().to_string();
    let sector = t["sectorsize"].as_u64().unwrap_or(512);
    let parts = t["partitions"].as_array().cloned().unwrap_or_default();
    let end =
        |p: &serde_json::Value| p["start"].as_u64().unwrap_or(0) + p["size"].as_u64().unwrap_or(0);
    let last = parts
        .iter()
        .max_by_key(|p| end(p))
        .context("no partitions")?;
    let ours = parts
        .iter()
        .find(|p| partition_number(p, &disk_dev) == Some(number))
        .context("the partition is not in the table")?;
    if end(ours) != end(last) {
        return grow_fs(
            settings,
            name,
            format!("{name} is not the last partition"),
            false,
        );
    }
    if label == "gpt" && ours["name"].as_str() != Some("gandiroot") {
        return grow_fs(
            settings,
            name,
            format!("{name} is not named gandiroot"),
            false,
        );
    }
    let disk_sectors = read_small(&class.join(&disk).join("size"))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .context("reading the disk size")?
        * 512
        / sector;
    // GPT keeps 33 sectors at the end for its backup header and entries.
    let usable_end = if label == "gpt" {
        disk_sectors.saturating_sub(34)
    } else {
        disk_sectors.saturating_sub(1)
    };
    let free = usable_end
        .saturating_sub(end(ours) - 1)
        .saturating_mul(sector);
    if free < fsgrow::MIN_GROWTH {
        return grow_fs(settings, name, "the partition fills the disk".into(), false);
    }
    let mut notes = Vec::new();
    if label == "gpt" {
        // One write of the whole table (new GUIDs on first boot, the backup
        // header at the new end, the partition to the end): GPT keeps two
        // copies, each with its checksum, so a cut during the write leaves
        // the old table or the new one, never a mix.
        let dump = Run::new("sfdisk")
            .arg("--dump")
            .arg(&disk_dev)
            .limit(PART_LIMIT)
            .output()?;
        let node = ours["node"].as_str().unwrap_or_default();
        let zero_id = t["id"]
            .as_str()
            .is_some_and(|id| id.chars().all(|c| c == '0' || c == '-'));
        let mut fresh = Vec::new();
        if zero_id {
            for _ in 0..=parts.len() {
                fresh.push(random_uuid()?);
            }
            notes.push("GUIDs randomised (first boot)".to_string());
        }
        let script = grown_table(&dump, node, &fresh)?;
        log::info!(
            "{}: writing its table with {} grown to the end of the disk",
            disk_dev.display(),
            part_dev.display()
        );
        Run::new("sfdisk")
            .args(["--quiet", "--no-reread", "--no-tell-kernel"])
            .arg(&disk_dev)
            .input(script.into_bytes())
            .limit(PART_LIMIT)
            .output()?;
    } else {
        Run::new("sfdisk")
            .args([
                "--quiet",
                "--no-reread",
                "--no-tell-kernel",
                "-N",
                &number.to_string(),
            ])
            .arg(&disk_dev)
            .input(&b", +\n"[..])
            .limit(PART_LIMIT)
            .output()?;
    }
    Run::new("partx")
        .args(["--update", "--nr", &number.to_string()])
        .arg(&disk_dev)
        .limit(PART_LIMIT)
        .output()?;
    let _ = Run::new("udevadm")
        .args(["settle", "-t", "10"])
        .limit(Duration::from_secs(15))
        .outcome();
    notes.push(format!(
        "{} grown by {} MiB",
        part_dev.display(),
        free >> 20
    ));
    grow_fs(settings, name, notes.join(", "), true)
}

/// Splits a partition line's fields at the commas outside quotes.
fn fields(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut from) = (false, 0);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(text[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[from..].trim());
    out.retain(|f| !f.is_empty());
    out
}

/// The `sfdisk` script that writes the table of `dump` (`sfdisk --dump`)
/// again with partition `node` grown to the end of the disk and the
/// backup header at the end; with `fresh` GUIDs (one for the disk, then
/// one per partition line) when given. Fails, changing nothing, on a
/// dump it does not understand.
pub fn grown_table(dump: &str, node: &str, fresh: &[String]) -> Result<String> {
    let mut out = String::new();
    let randomise = !fresh.is_empty();
    let mut fresh = fresh.iter();
    let mut found = false;
    let mut labelled = false;
    for line in dump.lines() {
        if let Some((left, right)) = line.split_once(" : ") {
            let mut kept = Vec::new();
            let is_ours = left.trim() == node;
            found |= is_ours;
            let mut new_uuid = randomise;
            for field in fields(right) {
                let key = field.split('=').next().unwrap_or_default().trim();
                match key {
                    "size" if is_ours => {}
                    "uuid" if new_uuid => {
                        let Some(uuid) = fresh.next() else {
                            anyhow::bail!("more partitions than GUIDs");
                        };
                        kept.push(format!("uuid={uuid}"));
                        new_uuid = false;
                    }
                    "start" | "size" | "type" | "uuid" | "name" | "attrs" => {
                        kept.push(field.to_string())
                    }
                    other => anyhow::bail!("unknown field {other:?} in sfdisk's dump: {line:?}"),
                }
            }
            out.push_str(&format!("{} : {}\n", left.trim(), kept.join(", ")));
            continue;
        }
        match line.split_once(':') {
            Some(("label", v)) => {
                labelled = v.trim() == "gpt";
                out.push_str(line);
                out.push('\n');
            }
            Some(("label-id", _)) if randomise => {
                let Some(id) = fresh.next() else {
                    anyhow::bail!("no GUID for the disk");
                };
                out.push_str(&format!("label-id: {id}\n"));
            }
            // Computed again from the disk's size: the backup header goes
            // to the new end.
            Some(("device", _)) | Some(("last-lba", _)) => {}
            Some(("label-id" | "unit" | "first-lba" | "sector-size" | "table-length", _)) => {
                out.push_str(line);
                out.push('\n');
            }
            None if line.trim().is_empty() => out.push('\n'),
            _ => anyhow::bail!("unknown line in sfdisk's dump: {line:?}"),
        }
    }
    if !labelled {
        anyhow::bail!("sfdisk's dump is not of a GPT");
    }
    if !found {
        anyhow::bail!("{node} is not in sfdisk's dump");
    }
    Ok(out)
}

/// Whether partition `name` of `disk` ends within a growth's worth of the
/// disk's end (GPT's 33 sectors of backup kept), by sysfs alone (sizes
/// in 512-byte sectors whatever the disk's sector size). `false` when
/// sysfs does not tell: the partition table is then read.
fn fills_disk(class: &Path, disk: &str, name: &str) -> bool {
    let sectors = |p: std::path::PathBuf| read_small(&p).and_then(|s| s.trim().parse::<u64>().ok());
    let disk_dir = class.join(disk);
    let (Some(start), Some(size), Some(disk_size)) = (
        sectors(disk_dir.join(name).join("start")),
        sectors(disk_dir.join(name).join("size")),
        sectors(disk_dir.join("size")),
    ) else {
        return false;
    };
    (start + size + 34) * 512 + fsgrow::MIN_GROWTH > disk_size * 512
}

fn partition_number(p: &serde_json::Value, disk_dev: &Path) -> Option<u32> {
    let node = p["node"].as_str()?;
    let disk = disk_dev.to_string_lossy();
    let rest = node.strip_prefix(disk.as_ref())?;
    rest.trim_start_matches('p').parse().ok()
}

/// Grows the filesystem on partition `name`: online when it is mounted (a
/// root is), else as a data disk is grown.
fn grow_fs(settings: &Settings, name: &str, note: String, changed: bool) -> Result<Growth> {
    let mountinfo =
        fs::read_to_string(settings.paths.proc_dir.join("self/mountinfo")).unwrap_or_default();
    let class = settings.paths.sys_dir.join("class/block").join(name);
    let devnum = read_small(&class.join("dev"))
        .and_then(|s| DevNum::parse(&s))
        .context("reading the device number")?;
    let dev = settings.paths.dev_dir.join(name);
    let mounts = parse_mountinfo(&mountinfo);
    let mounted = crate::kernel::mounts::mounts_of(&mounts, devnum, name, &settings.paths.sys_dir)
        .into_iter()
        .next()
        .cloned();
    let fstype = match &mounted {
        Some(m) => m.fstype.clone(),
        None => crate::kernel::blkid::probe(std::slice::from_ref(&dev), Duration::from_secs(10))
            .and_then(|m| m.get(&dev).and_then(|f| f.fstype.clone()))
            .unwrap_or_default(),
    };
    if !fsgrow::supported(&fstype) {
        return Ok(Growth {
            changed,
            detail: format!("{note}; no filesystem we grow ({fstype:?})"),
        });
    }
    let size = read_small(&class.join("size"))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 512;
    let mount_point = mounted.as_ref().map(|m| m.mount_point.as_path());
    Ok(
        match fsgrow::grow(
            &dev,
            &fstype,
            size,
            mount_point,
            &settings.paths.run_dir,
            &crate::disk::fsstate::Marks::new(settings, None, name),
        )? {
            fsgrow::Outcome::Fits { .. } => Growth {
                changed,
                detail: format!("{note}; filesystem fits"),
            },
            fsgrow::Outcome::Grown {
                before,
                after,
                tool,
            } => Growth {
                changed: true,
                detail: format!("{note}; {fstype} grown from {before} to {after} bytes ({tool})"),
            },
            fsgrow::Outcome::Damaged { why } => {
                anyhow::bail!("{note}; {fstype} left as it is: {why}")
            }
        },
    )
}

#[cfg(test)]
mod tests;
