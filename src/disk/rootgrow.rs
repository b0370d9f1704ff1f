//! Root disk growth: when the system disk was enlarged, its last partition
//! is grown to the end of the disk with `sfdisk` (GPT: the partition named
//! `gandiroot`, keeping its GUIDs, type, attributes and name, the backup
//! header moved to the end, GUIDs randomised on first boot when the disk
//! GUID is zero; MBR too), the kernel is told (`partx --update`), then the
//! filesystem is grown online.

use crate::base::runner::Run;
use crate::base::settings::Settings;
use crate::disk::fsgrow;
use crate::kernel::device::DevNum;
use crate::kernel::views::{parse_mountinfo, read_small, root_mount};
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
    let mountinfo = fs::read_to_string(settings.proc_dir.join("self/mountinfo"))
        .context("reading the mount table")?;
    let mounts = parse_mountinfo(&mountinfo);
    let root = root_mount(&mounts).context("no root in the mount table")?;
    let devnum = root.block_devnum(&settings.sys_dir);
    let name =
        name_of(settings, devnum).with_context(|| format!("no block device {devnum} for /"))?;
    grow_partition(settings, &name)
}

fn name_of(settings: &Settings, devnum: DevNum) -> Option<String> {
    let link = fs::read_link(settings.sys_dir.join(format!("dev/block/{devnum}"))).ok()?;
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
    let class = settings.sys_dir.join("class/block");
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
    let disk_dev = settings.dev_dir.join(&disk);
    let part_dev = settings.dev_dir.join(name);
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
        fs::read_to_string(settings.proc_dir.join("self/mountinfo")).unwrap_or_default();
    let class = settings.sys_dir.join("class/block").join(name);
    let devnum = read_small(&class.join("dev"))
        .and_then(|s| DevNum::parse(&s))
        .context("reading the device number")?;
    let dev = settings.dev_dir.join(name);
    let mounts = parse_mountinfo(&mountinfo);
    let mounted = crate::kernel::views::mounts_of(&mounts, devnum, name, &settings.sys_dir)
        .into_iter()
        .next()
        .cloned();
    let fstype = match &mounted {
        Some(m) => m.fstype.clone(),
        None => crate::kernel::blkid::probe(
            std::slice::from_ref(&dev),
            std::time::Duration::from_secs(10),
        )
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
            &settings.run_dir,
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
mod tests {
    use super::*;

    const DUMP: &str = "label: gpt
label-id: 00000000-0000-0000-0000-000000000000
device: /dev/vda
unit: sectors
first-lba: 2048
last-lba: 204766
sector-size: 512

/dev/vda1 : start=        2048, size=      100000, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=E3394D72-C9C0-5B43-BBA0-939E8CD0CCC3, name=\"gandiroot\"
";

    #[test]
    fn the_table_is_written_again_grown_with_fresh_guids() {
        let fresh = ["D1SK".to_string(), "PART".to_string()];
        let script = grown_table(DUMP, "/dev/vda1", &fresh).unwrap();
        assert!(script.contains("label-id: D1SK\n"), "{script}");
        assert!(!script.contains("last-lba") && !script.contains("device:"));
        assert!(script.contains(
            "/dev/vda1 : start=        2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=PART, name=\"gandiroot\"\n"
        ), "{script}");
        // Without fresh GUIDs the old ones stay.
        let script = grown_table(DUMP, "/dev/vda1", &[]).unwrap();
        assert!(script.contains("label-id: 00000000-0000-0000-0000-000000000000"));
        assert!(script.contains("uuid=E3394D72-C9C0-5B43-BBA0-939E8CD0CCC3"));
    }

    #[test]
    fn a_dump_it_does_not_understand_changes_nothing() {
        assert!(grown_table(DUMP, "/dev/vda2", &[]).is_err());
        assert!(grown_table(&DUMP.replace("label: gpt", "label: dos"), "/dev/vda1", &[]).is_err());
        assert!(grown_table(&format!("{DUMP}grain: 1M\n"), "/dev/vda1", &[]).is_err());
        assert!(grown_table(&DUMP.replace("name=", "bootable, name="), "/dev/vda1", &[]).is_err());
        assert!(grown_table("", "/dev/vda1", &[]).is_err());
    }

    proptest::proptest! {
        #![proptest_config(crate::testing::proptest_config(256))]

        /// Names with commas, quotes and blanks, several partitions: every
        /// field but our partition's size is kept, in order.
        #[test]
        fn every_other_field_is_kept(
            names in proptest::collection::vec("[a-z ,]{0,10}", 1..5),
            ours in 0usize..5,
        ) {
            let mut dump = DUMP.lines().take(8).collect::<Vec<_>>().join("\n");
            dump.push('\n');
            for (i, name) in names.iter().enumerate() {
                dump.push_str(&format!(
                    "/dev/vda{n} : start= {s}, size= 100, type=T, uuid=U{n}, name=\"{name}\"\n",
                    n = i + 1,
                    s = 2048 + i * 100
                ));
            }
            let ours = ours % names.len() + 1;
            let script = grown_table(&dump, &format!("/dev/vda{ours}"), &[]).unwrap();
            for (i, name) in names.iter().enumerate() {
                let n = i + 1;
                let line = script
                    .lines()
                    .find(|l| l.starts_with(&format!("/dev/vda{n} :")))
                    .unwrap();
                let size = if n == ours { "" } else { ", size= 100" };
                proptest::prop_assert_eq!(
                    line,
                    format!(
                        "/dev/vda{n} : start= {}{size}, type=T, uuid=U{n}, name=\"{name}\"",
                        2048 + i * 100
                    )
                );
            }
        }
    }

    /// The script through the real sfdisk on an image file: the partition
    /// ends at the (aligned) end of the enlarged disk, the backup header at
    /// the end, name, type and GUIDs as asked.
    #[test]
    fn sfdisk_writes_the_grown_table() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let file = fs::File::create(&img).unwrap();
        file.set_len(100 << 20).unwrap();
        let sh = |args: &[&str], input: &str| {
            Run::new("sfdisk")
                .args(args)
                .arg(&img)
                .input(input.as_bytes().to_vec())
                .output()
                .unwrap()
        };
        sh(
            &["--quiet"],
            "label: gpt\nstart=2048, size=100000, name=gandiroot\n",
        );
        file.set_len(200 << 20).unwrap();
        let dump = sh(&["--dump"], "");
        let node = format!("{}1", img.display());
        let fresh = [
            "11111111-2222-4333-8444-555555555555".to_string(),
            "AAAAAAAA-2222-4333-8444-555555555555".to_string(),
        ];
        let script = grown_table(&dump, &node, &fresh).unwrap();
        sh(&["--quiet", "--no-reread", "--no-tell-kernel"], &script);
        sh(&["--verify"], "");
        let table: serde_json::Value = serde_json::from_str(&sh(&["--json"], "")).unwrap();
        let t = &table["partitiontable"];
        assert_eq!(t["id"], "11111111-2222-4333-8444-555555555555");
        assert_eq!(t["lastlba"], 409566, "{t}");
        let p = &t["partitions"][0];
        assert_eq!(p["name"], "gandiroot");
        assert_eq!(p["uuid"], "AAAAAAAA-2222-4333-8444-555555555555");
        let end = p["start"].as_u64().unwrap() + p["size"].as_u64().unwrap();
        assert!(end > 409566 - 2048, "{p}");
    }
}
