//! Which disk is the platform's swap/config disk.
//!
//! Partition names, labels, serials and content are written by whoever
//! wrote a disk (data disks come from images, snapshots and other VMs);
//! only the place where the platform attaches its disk is the platform's:
//! on Xen the kernel name of the virtual disk (`xvdz`), which the guest
//! cannot choose; on KVM the PCI slot of the virtio disk, read from sysfs
//! as udev's `/dev/disk/by-path` names it (`pci-0000:00:04.0`). The places
//! are `GANDI_PLATFORM_DISK`.
//!
//! The disk chosen is recorded with the instance it was chosen for (the
//! DMI product UUID, else Xen's UUID), and the UUID of its swap area. At
//! the next boot of the same instance, the disk at a platform place with
//! that swap area is the platform's. Otherwise (a first boot, a new
//! instance made from a custom image, the swap disk replaced) a disk is
//! taken only when exactly one disk at the platform's places holds nothing
//! but swap and the archive: a swap area or nothing on the whole disk, or
//! a partition table with one partition that holds a swap area or nothing.
//! When two qualify, none is read, and the status says so.

use crate::base::fingerprint::hex;
use crate::base::read::read_small;
use crate::base::settings::Settings;
use crate::base::tree::{Tree, WriteOpts};
use crate::kernel::views::{list_names, partition_parent};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const RECORD: &str = "platform-disk.json";
pub const FORMAT: &str = "gandi-vm platform disk 1";

/// The platform's disk, as chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformDisk {
    /// The whole disk (`/dev/vdb`).
    pub disk: PathBuf,
    /// Its swap device: the whole disk, or its one partition.
    pub swap: PathBuf,
    /// The place it sits at (`pci-0000:00:04.0`, `xvdz`).
    pub place: String,
    /// Why it is the one.
    pub why: String,
}

/// What the choice found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Found(PlatformDisk),
    /// No disk qualifies (why).
    None(String),
    /// Two or more qualify: none is read (which).
    Ambiguous(String),
}

/// What was recorded of the last choice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub format: String,
    pub instance: Option<String>,
    pub place: String,
    pub swap_uuid: Option<String>,
}

/// This VM's identity: the DMI product UUID (a VM made from another's
/// disk has its own), else Xen's; `None` when neither can be read.
pub fn instance(settings: &Settings) -> Option<String> {
    ["class/dmi/id/product_uuid", "hypervisor/uuid"]
        .iter()
        .filter_map(|p| read_small(&settings.paths.sys_dir.join(p)))
        .map(|v| v.trim().to_ascii_lowercase())
        .find(|v| {
            v.len() >= 8
                && v.len() <= 64
                && v.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
                && v.chars().any(|c| c != '0' && c != '-')
        })
}

/// The places a whole disk sits at: its kernel name for a Xen virtual disk,
/// and `pci-ADDRESS` for a disk alone on its PCI function (virtio-blk).
pub fn places_of(settings: &Settings, name: &str) -> Vec<String> {
    let class = settings.paths.sys_dir.join("class/block");
    let mut out = Vec::new();
    if name.starts_with("xvd") {
        out.push(name.to_string());
    }
    let Ok(target) = fs::read_link(class.join(name)) else {
        return out;
    };
    let comps: Vec<String> = target
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let Some(at) = comps.iter().rposition(|c| pci_address(c)) else {
        return out;
    };
    // Alone on that function: one block disk below it (virtio-blk; a SCSI
    // controller has several, and no place of ours names them).
    let disks = whole_disks(settings)
        .into_iter()
        .filter(|d| {
            fs::read_link(class.join(d)).is_ok_and(|t| {
                let c: Vec<String> = t
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                c.len() > at && c[..=at] == comps[..=at]
            })
        })
        .count();
    if disks == 1 {
        out.push(format!("pci-{}", comps[at]));
    }
    out
}

/// `0000:00:04.0`.
fn pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// The whole disks sysfs lists (no partitions).
fn whole_disks(settings: &Settings) -> Vec<String> {
    let class = settings.paths.sys_dir.join("class/block");
    list_names(&class)
        .into_iter()
        .filter(|n| !class.join(n).join("partition").exists())
        .collect()
}

/// The partitions of a whole disk.
fn partitions(settings: &Settings, disk: &str) -> Vec<String> {
    let class = settings.paths.sys_dir.join("class/block");
    list_names(&class)
        .into_iter()
        .filter(|n| {
            fs::read_link(class.join(n))
                .ok()
                .and_then(|t| partition_parent(&t, n))
                .as_deref()
                == Some(disk)
        })
        .collect()
}

/// The UUID of the swap area at the start of `device`, read from its
/// header.
pub fn swap_uuid(device: &Path) -> Option<String> {
    let head = super::swap::read_head(device, 4096).ok()?;
    if !super::swap::swap_signature(&head) {
        return None;
    }
    let u = head.get(1036..1052)?;
    Some(format!(
        "{}-{}-{}-{}-{}",
        hex(&u[0..4]),
        hex(&u[4..6]),
        hex(&u[6..8]),
        hex(&u[8..10]),
        hex(&u[10..16])
    ))
}

/// What `blkid -p` finds on one device (bounded): `Ok(None)` for nothing,
/// `Err` when it cannot tell (ambivalent, failed, timed out).
fn signature(device: &Path) -> Result<Option<crate::kernel::device::FsInfo>, String> {
    let out = crate::base::runner::Run::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(device)
        .limit(Duration::from_secs(10))
        .outcome()
        .map_err(|e| format!("{e:#}"))?;
    match out.code() {
        Some(0) => Ok(crate::kernel::blkid::parse_blkid_export(&out.stdout_text())
            .into_values()
            .next()),
        Some(2) => Ok(None),
        Some(8) => Err(format!("{}: more than one signature", device.display())),
        _ => Err(out.summary("failed", &out.stderr_text())),
    }
}

/// The swap device of a disk that holds nothing but swap and the archive,
/// else why it does not qualify.
fn qualifies(settings: &Settings, disk: &str) -> Result<PathBuf, String> {
    let whole = settings.paths.dev_dir.join(disk);
    let found = signature(&whole)?;
    match found {
        None => Ok(whole),
        Some(fs) if fs.fstype.as_deref() == Some("swap") => Ok(whole),
        Some(fs) if fs.fstype.is_some() => Err(format!(
            "{} holds {}",
            whole.display(),
            fs.fstype.unwrap_or_default()
        )),
        Some(fs) if fs.part_table.is_some() => {
            let parts = partitions(settings, disk);
            let [part] = parts.as_slice() else {
                return Err(format!(
                    "{} has {} partitions (the platform's has one)",
                    whole.display(),
                    parts.len()
                ));
            };
            let path = settings.paths.dev_dir.join(part);
            match signature(&path)? {
                None => Ok(path),
                Some(fs) if fs.fstype.as_deref() == Some("swap") || fs.fstype.is_none() => Ok(path),
                Some(fs) => Err(format!(
                    "{} holds {}",
                    path.display(),
                    fs.fstype.unwrap_or_default()
                )),
            }
        }
        Some(_) => Ok(whole),
    }
}

/// Reads the record of the last choice; a damaged one is reported (the
/// second value) and not used.
pub fn load(tree: &Tree, settings: &Settings) -> (Option<Record>, Option<String>) {
    let path = settings.paths.state_dir.join(RECORD);
    match tree.read_owned_limited(&path, 4096) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => (None, Some(format!("{}: {e}", tree.shown(&path).display()))),
        Ok((data, _)) => match serde_json::from_slice::<Record>(&data) {
            Ok(r) if r.format == FORMAT => (Some(r), None),
            _ => (
                None,
                Some(format!(
                    "{} is damaged: the disk is chosen again",
                    tree.shown(&path).display()
                )),
            ),
        },
    }
}

/// Records the choice (root-only, in the state folder).
pub fn save(tree: &Tree, settings: &Settings, record: &Record) -> anyhow::Result<()> {
    tree.create_dirs(&settings.paths.state_dir, 0o700)?;
    let mut text = serde_json::to_vec_pretty(record)?;
    text.push(b'\n');
    tree.write_if_changed(
        settings.paths.state_dir.join(RECORD),
        &text,
        WriteOpts::mode(0o600),
    )?;
    Ok(())
}

/// Chooses the platform's disk among the disks at the platform's places
/// (see the module's doc). `record` is the last choice, if any.
pub fn choose(settings: &Settings, record: Option<&Record>, instance: Option<&str>) -> Choice {
    let wanted = &settings.platform_disk;
    let at_places: Vec<(String, String)> = whole_disks(settings)
        .into_iter()
        .filter_map(|d| {
            let place = places_of(settings, &d)
                .into_iter()
                .find(|p| wanted.iter().any(|w| w == p))?;
            Some((d, place))
        })
        .collect();
    if at_places.is_empty() {
        return Choice::None(format!("no disk at {}", wanted.join(" or ")));
    }
    // The disk recorded for this instance, by its swap area.
    if let Some(r) = record.filter(|r| r.instance.as_deref() == instance)
        && let Some(uuid) = &r.swap_uuid
    {
        for (disk, place) in &at_places {
            if place != &r.place {
                continue;
            }
            let mut devices = vec![settings.paths.dev_dir.join(disk)];
            devices.extend(
                partitions(settings, disk)
                    .iter()
                    .map(|p| settings.paths.dev_dir.join(p)),
            );
            if let Some(swap) = devices
                .into_iter()
                .find(|d| swap_uuid(d).as_deref() == Some(uuid.as_str()))
            {
                return Choice::Found(PlatformDisk {
                    disk: settings.paths.dev_dir.join(disk),
                    swap,
                    place: place.clone(),
                    why: format!("the disk at {place} with the swap area recorded"),
                });
            }
        }
    }
    let mut good = Vec::new();
    let mut refused = Vec::new();
    for (disk, place) in &at_places {
        match qualifies(settings, disk) {
            Ok(swap) => good.push(PlatformDisk {
                disk: settings.paths.dev_dir.join(disk),
                swap,
                place: place.clone(),
                why: format!("the one disk at {place} holding only swap and the archive"),
            }),
            Err(why) => refused.push(why),
        }
    }
    match good.len() {
        1 => Choice::Found(good.remove(0)),
        0 => Choice::None(format!(
            "no disk at {} holds only swap and the archive: {}",
            wanted.join(" or "),
            refused.join("; ")
        )),
        _ => Choice::Ambiguous(format!(
            "{} disks qualify ({}): none is read",
            good.len(),
            good.iter()
                .map(|d| format!("{} at {}", d.disk.display(), d.place))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert!(pci_address("0000:00:04.0"));
        assert!(pci_address("0000:0a:1f.7"));
        assert!(!pci_address("pci0000:00"));
        assert!(!pci_address("virtio2"));
        assert!(!pci_address("0000:00:04"));
    }
}
