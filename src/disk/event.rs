//! The attach helper's intake: a block event of a candidate data disk.
//!
//! Run by udev (`gandi-vm disk-event`, reading `ACTION`, `DEVNAME`,
//! `DEVPATH`, ... from the environment) it only records what udev already
//! probed (no disk I/O) and hands the growth to `gandi-disk@NAME.service`
//! (`systemctl --no-block start`), or, where systemd is not the init, to a
//! detached `gandi-vm disk-grow NAME` (`handoff`). The unit runs the grow
//! job (`growjob`), watched (`supervise`).
//!
//! By hand, `gandi-vm disk-event add|change|remove DEVICE` does both halves
//! synchronously.

use crate::base::glob::glob_match;
use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::base::status::now;
use crate::disk::disklock::DiskLock;
use crate::disk::growjob::grow_disk;
use crate::disk::handoff::hand_off;
use crate::disk::index;
use crate::disk::records::{self, Record, RecordState};
use crate::disk::store;
use crate::kernel::device::{DevNum, Exclusion, FsInfo};
use crate::kernel::escape::unescape_hex;
use anyhow::{Context, Result, anyhow, bail};
use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::time::SystemTime;

/// A block event's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Change,
    Remove,
}

impl Action {
    pub fn parse(s: &str) -> Result<Action> {
        match s {
            "add" => Ok(Action::Add),
            "change" => Ok(Action::Change),
            "remove" => Ok(Action::Remove),
            other => bail!("unknown action {other:?} (expected add, change or remove)"),
        }
    }
}

/// A block event as udev describes it in the environment of `RUN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdevEvent {
    pub action: Action,
    pub name: String,
    pub devnum: DevNum,
    pub diskseq: Option<u64>,
    pub fs: FsInfo,
}

/// Reads and checks the udev environment. Every problem is an error that
/// names the variable; nothing is done with a malformed event.
pub fn udev_event(env: &HashMap<String, String>) -> Result<UdevEvent> {
    let get = |k: &str| env.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let action = Action::parse(get("ACTION").ok_or_else(|| anyhow!("ACTION is not set"))?)
        .context("ACTION")?;
    if let Some(sub) = get("SUBSYSTEM")
        && sub != "block"
    {
        bail!("SUBSYSTEM is {sub:?}, not \"block\"");
    }
    let devpath = get("DEVPATH").ok_or_else(|| anyhow!("DEVPATH is not set"))?;
    let name = devpath
        .rsplit('/')
        .next()
        .filter(|n| valid_name(n))
        .ok_or_else(|| anyhow!("DEVPATH {devpath:?} does not end with a device name"))?;
    if let Some(devname) = get("DEVNAME") {
        let base = devname.strip_prefix("/dev/").unwrap_or(devname);
        if base.replace('/', "!") != name {
            bail!("DEVNAME {devname:?} does not match DEVPATH {devpath:?}");
        }
    }
    let number = |k: &str| -> Result<u32> {
        get(k)
            .ok_or_else(|| anyhow!("{k} is not set"))?
            .parse()
            .map_err(|_| anyhow!("{k} is not a number"))
    };
    let devnum = DevNum {
        major: number("MAJOR")?,
        minor: number("MINOR")?,
    };
    let diskseq = match get("DISKSEQ") {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| anyhow!("DISKSEQ is not a number"))?),
    };
    let dec = |k: &str| get(k).map(unescape_hex);
    let fs = FsInfo {
        fstype: get("ID_FS_TYPE").map(str::to_string),
        usage: get("ID_FS_USAGE").map(str::to_string),
        label: dec("ID_FS_LABEL_ENC").or_else(|| get("ID_FS_LABEL").map(str::to_string)),
        uuid: dec("ID_FS_UUID_ENC").or_else(|| get("ID_FS_UUID").map(str::to_string)),
        part_name: dec("ID_PART_ENTRY_NAME"),
        part_table: get("ID_PART_TABLE_TYPE").map(str::to_string),
    };
    Ok(UdevEvent {
        action,
        name: name.to_string(),
        devnum,
        diskseq,
        fs,
    })
}

/// A kernel block device name we accept.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.!:+".contains(c))
}

/// Forgets a device on an event that says it is gone: after its grower
/// (if one works on it) has written its last record, waiting at most 10 s
/// (udev does not wait long), so that the record does not come back.
fn forget_on_event(settings: &Settings, name: &str) -> Result<()> {
    let lock = DiskLock::take_for(settings, name, std::time::Duration::from_secs(10))?;
    if lock.is_none() {
        log::warn!("{name}: its grower still works on it: forgotten anyway");
    }
    store::forget(settings, name)
}

/// Whether the candidate globs cover `name`.
fn is_candidate(settings: &Settings, name: &str) -> bool {
    settings.disk_devices.iter().any(|g| glob_match(g, name))
}

/// `gandi-vm disk-event` run by udev: record, hand off. Returns the exit code.
pub fn from_udev(settings: &Settings, env: &HashMap<String, String>) -> Result<Ended> {
    let event = udev_event(env).context("reading the udev event")?;
    record_event(settings, &event)
}

/// The event udev would give for a device present now, from sysfs and
/// udev's database entry: for the boot's replay, which records the disks
/// of the coldplug in one process. `None` when udev has no entry for the
/// device, one written at `before` or later (udev handles its event with
/// the helper), or one of an earlier attach (its event is still to come).
pub fn present_event(settings: &Settings, name: &str, before: SystemTime) -> Option<UdevEvent> {
    let dir = settings.paths.sys_dir.join("class/block").join(name);
    let devnum = DevNum::parse(&crate::base::read::read_small(&dir.join("dev"))?)?;
    // The kernel gives a disk's attach sequence number in its events, not
    // a partition's.
    let diskseq = crate::kernel::views::read_u64(&dir.join("diskseq"));
    let entry = settings.paths.udev_data_dir.join(format!("b{devnum}"));
    let text = crate::base::read::read_small(&entry)?;
    // Its time read after its content: an entry udev rewrote meanwhile is
    // not taken for an older one.
    let written = std::fs::symlink_metadata(&entry).ok()?.modified().ok()?;
    if written >= before {
        return None;
    }
    let (fs, seen) = crate::kernel::udev::parse_udev_entry(&text);
    if let (Some(now), Some(then)) = (diskseq, seen)
        && now != then
    {
        return None;
    }
    Some(UdevEvent {
        action: Action::Add,
        name: name.to_string(),
        devnum,
        diskseq,
        fs,
    })
}

/// Records a block event's device and hands its growth off (what the
/// helper does for udev, and the boot's replay for the coldplug's disks).
pub fn record_event(settings: &Settings, event: &UdevEvent) -> Result<Ended> {
    if !is_candidate(settings, &event.name) {
        log::debug!("{}: not a candidate data disk", event.name);
        return Ok(Ended::Ok);
    }
    if event.action == Action::Remove {
        return forget_on_event(settings, &event.name).map(|()| Ended::Ok);
    }
    let sys = settings.paths.sys_dir.join("class/block").join(&event.name);
    let size = crate::base::read::read_small(&sys.join("size"))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .saturating_mul(512);
    if size == 0 {
        // No medium any more (a loop device whose file was detached).
        return forget_on_event(settings, &event.name).map(|()| Ended::Ok);
    }
    let partitioned = event.fs.part_table.is_some();
    // The device of the filesystem mounted on /: never served nor grown, so
    // no growth service is started for it at every boot.
    let holds_root =
        crate::kernel::views::read_proc(&settings.paths.proc_dir.join("self/mountinfo"))
            .ok()
            .and_then(|mi| {
                crate::kernel::mounts::root_mount(&crate::kernel::mounts::parse_mountinfo(&mi))
                    .map(|m| m.block_devnum(&settings.paths.sys_dir))
            })
            == Some(event.devnum);
    if holds_root {
        quiet_root(settings, &event.name);
    }
    let serviceable = event.fs.usage.as_deref() == Some("filesystem") && !holds_root;
    let (state, note) = if holds_root {
        (RecordState::Excluded, Exclusion::RootDisk.to_string())
    } else if serviceable {
        (
            RecordState::Pending,
            "recorded by udev; growth handed to gandi-disk@ service".to_string(),
        )
    } else if partitioned && event.fs.fstype.is_none() {
        (
            RecordState::NotGrown,
            "partitioned: only whole-disk filesystems are grown".to_string(),
        )
    } else {
        let what = event.fs.fstype.as_deref().unwrap_or("no filesystem");
        (
            RecordState::Excluded,
            format!("{what}: not a mountable filesystem"),
        )
    };
    let previous = records::read_or_report(settings, &event.name);
    let mut record = Record {
        name: event.name.clone(),
        devnum: event.devnum.to_string(),
        diskseq: event.diskseq,
        size,
        fs: event.fs.clone(),
        partitioned,
        state,
        grower: None,
        watcher: None,
        note: Some(note),
        last_grow: previous.as_ref().and_then(|r| r.last_grow.clone()),
        resumes: 0,
        announced: previous.as_ref().and_then(|r| r.announced.clone()),
        updated: now(),
    };
    if let Some(p) = &previous {
        // The same attach at the same size (the change udev sends after a
        // growth, or after a killed tool closed the device): the resumes
        // of this attach still count, so a grower killed again and again
        // stops being started. A new attach or size starts them anew.
        if records::attach_key(p) == records::attach_key(&record) && p.size == size {
            record.resumes = p.resumes;
        }
        // A watcher between two of its workers (it lets the lock go then)
        // keeps the disk.
        record.watcher = p.watcher.filter(|w| crate::base::process::alive_ours(*w));
    }
    // The grower holds the lock while it works: it writes the record itself
    // and checks the device again when done, so skipping here loses nothing.
    match DiskLock::take(settings, &event.name, false)? {
        Some(_lock) => {
            // Handed off first, the record then names the process that
            // will grow it: it never reads as left undone meanwhile.
            if serviceable && let Some(pid) = hand_off(settings, &event.name)? {
                record.watcher = Some(pid);
            }
            store::write(settings, &record)?;
        }
        None => {
            log::info!("{}: being grown; the grower records it", event.name);
            if serviceable {
                hand_off(settings, &event.name)?;
            }
        }
    }
    adopt_others(settings, &event.name);
    Ok(Ended::Ok)
}

/// The folder of the marks of the devices that hold `/` in this boot:
/// udev's rule runs no helper for their `change` events (a tool that
/// wrote to the root's device, such as `tune2fs`): a device holding `/`
/// stays what it is until the next boot, when `/run` is new.
pub fn root_marks_dir(settings: &Settings) -> std::path::PathBuf {
    settings.paths.run_dir.join("root-device")
}

fn quiet_root(settings: &Settings, name: &str) {
    let dir = root_marks_dir(settings);
    let made = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .mode(0o644)
            .open(dir.join(name))
            .map(drop)
    });
    if let Err(e) = made {
        log::debug!("{name}: the root's mark: {e}");
    }
}

/// Without systemd, the helper of any event also starts again the growths
/// of other disks that their growers left undone (killed). From the index
/// alone: no disk is read in a udev worker; the adopter checks the device.
fn adopt_others(settings: &Settings, name: &str) {
    if settings.paths.systemd_dir.is_dir() {
        return;
    }
    let Some(text) = index::read_index(settings) else {
        return;
    };
    let Some(lines) = index::index_lines(&text) else {
        return;
    };
    let mut left: Vec<&str> = lines
        .iter()
        .filter(|(n, _)| **n != name)
        .filter_map(|(n, line)| {
            let entry = index::IndexEntry::parse(line)?;
            entry.fs_and_check().growth_left.then_some(*n)
        })
        .collect();
    left.sort_unstable();
    for other in left.into_iter().take(8) {
        crate::disk::adopt::start_adopter(settings, other);
    }
}

/// `gandi-vm disk-event ACTION DEVICE` by hand.
pub fn by_hand(settings: &Settings, action: Action, device: &str) -> Result<Ended> {
    let name = device
        .strip_prefix("/dev/")
        .unwrap_or(device)
        .replace('/', "!");
    if !valid_name(&name) {
        bail!("{device:?} is not a block device name");
    }
    if !is_candidate(settings, &name) {
        bail!(
            "{name} does not match CONFIG_DISK_DEVICES (\"{}\")",
            settings.disk_devices.join(" ")
        );
    }
    match action {
        Action::Remove => forget_on_event(settings, &name).map(|()| Ended::Ok),
        Action::Add | Action::Change => grow_disk(settings, &name, None),
    }
}

#[cfg(test)]
mod tests;
