//! The attach helper: block events of candidate data disks.
//!
//! Run by udev (`gandi-vm disk-event`, reading `ACTION`, `DEVNAME`,
//! `DEVPATH`, ... from the environment) it only records what udev already
//! probed (no disk I/O) and hands the growth to `gandi-disk@NAME.service`
//! (`systemctl --no-block start`), or, where systemd is not the init, to a
//! detached `gandi-vm disk-grow NAME`. The unit runs `gandi-vm disk-grow`:
//! lock, grow, record, `post-disk-attach` hook.
//!
//! By hand, `gandi-vm disk-event add|change|remove DEVICE` does both halves
//! synchronously.

use crate::device::{DevNum, Exclusion, FsInfo};
use crate::fsstate::Marks;
use crate::glob::glob_match;
use crate::grow;
use crate::hooks;
use crate::kernel::unescape_hex;
use crate::map::served_key;
use crate::records::{self, Grow, Record, RecordState};
use crate::scan::Scan;
use crate::settings::Settings;
use crate::util;
use anyhow::{Context, Result, anyhow, bail};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An exclusive lock on one device, held while it is recorded and grown.
pub struct DiskLock(#[allow(dead_code)] util::FileLock);

impl DiskLock {
    fn path(settings: &Settings, name: &str) -> PathBuf {
        settings.run_dir.join("locks").join(format!("{name}.lock"))
    }

    /// Waits for the lock when `wait`, else fails at once when it is held.
    pub fn take(settings: &Settings, name: &str, wait: bool) -> Result<Option<DiskLock>> {
        Ok(util::FileLock::take(&Self::path(settings, name), wait)?.map(DiskLock))
    }

    /// Waits for the lock at most `limit`.
    pub fn take_for(
        settings: &Settings,
        name: &str,
        limit: std::time::Duration,
    ) -> Result<Option<DiskLock>> {
        Ok(util::FileLock::take_for(&Self::path(settings, name), limit)?.map(DiskLock))
    }
}

/// An exclusive lock on one filesystem, by its UUID, held while it is
/// grown: the same filesystem seen through two devices (a disk attached
/// again while its old device lives on, as a detached loop device does
/// while a resize holds it) is grown by one process at a time. `None` for
/// a filesystem without a usable UUID.
fn fs_lock(settings: &Settings, uuid: Option<&str>) -> Result<Option<util::FileLock>> {
    let Some(uuid) = uuid.filter(|u| {
        !u.is_empty() && u.len() <= 64 && u.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    }) else {
        return Ok(None);
    };
    let path = settings
        .run_dir
        .join("locks")
        .join(format!("fs-{}.lock", uuid.to_ascii_lowercase()));
    util::FileLock::take(&path, true)
}

/// Where the ext filesystem of `dev` (`fs`) is mounted through another
/// device, if it is: the superblocks of the mounted ext filesystems are
/// compared by UUID (a read of each, only in the grower, never in the map).
fn mounted_elsewhere(settings: &Settings, dev: &std::path::Path, fs: &FsInfo) -> Option<String> {
    let uuid = fs.uuid.as_deref()?;
    if !matches!(fs.fstype.as_deref(), Some("ext2" | "ext3" | "ext4")) {
        return None;
    }
    let mi = crate::kernel::read_proc(&settings.proc_dir.join("self/mountinfo")).ok()?;
    crate::kernel::parse_mountinfo(&mi)
        .into_iter()
        .filter(|m| matches!(m.fstype.as_str(), "ext2" | "ext3" | "ext4"))
        .filter(|m| m.source.starts_with('/') && std::path::Path::new(&m.source) != dev)
        .find(|m| {
            grow::ExtSuper::read(std::path::Path::new(&m.source))
                .is_ok_and(|sb| sb.uuid.eq_ignore_ascii_case(uuid))
        })
        .map(|m| format!("{} at {}", m.source, m.mount_point.display()))
}

/// Forgets a device on an event that says it is gone: after its grower
/// (if one works on it) has written its last record, waiting at most 10 s
/// (udev does not wait long), so that the record does not come back.
fn forget_on_event(settings: &Settings, name: &str) -> Result<()> {
    let lock = DiskLock::take_for(settings, name, std::time::Duration::from_secs(10))?;
    if lock.is_none() {
        log::warn!("{name}: its grower still works on it: forgotten anyway");
    }
    records::forget(settings, name)
}

/// Whether the candidate globs cover `name`.
fn is_candidate(settings: &Settings, name: &str) -> bool {
    settings.disk_devices.iter().any(|g| glob_match(g, name))
}

/// `gandi-vm disk-event` run by udev: record, hand off. Returns the exit code.
pub fn from_udev(settings: &Settings, env: &HashMap<String, String>) -> Result<i32> {
    let event = udev_event(env).context("reading the udev event")?;
    if !is_candidate(settings, &event.name) {
        log::debug!("{}: not a candidate data disk", event.name);
        return Ok(0);
    }
    if event.action == Action::Remove {
        return forget_on_event(settings, &event.name).map(|()| 0);
    }
    let sys = settings.sys_dir.join("class/block").join(&event.name);
    let size = crate::kernel::read_small(&sys.join("size"))
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .saturating_mul(512);
    if size == 0 {
        // No medium any more (a loop device whose file was detached).
        return forget_on_event(settings, &event.name).map(|()| 0);
    }
    let partitioned = event.fs.part_table.is_some();
    // The device of the filesystem mounted on /: never served nor grown, so
    // no growth service is started for it at every boot.
    let holds_root = crate::kernel::read_proc(&settings.proc_dir.join("self/mountinfo"))
        .ok()
        .and_then(|mi| {
            crate::kernel::root_mount(&crate::kernel::parse_mountinfo(&mi))
                .map(|m| m.block_devnum(&settings.sys_dir))
        })
        == Some(event.devnum);
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
    let record = Record {
        name: event.name.clone(),
        devnum: event.devnum.to_string(),
        diskseq: event.diskseq,
        size,
        fs: event.fs.clone(),
        partitioned,
        state,
        grower: None,
        note: Some(note),
        last_grow: previous.as_ref().and_then(|r| r.last_grow.clone()),
        announced: previous.and_then(|r| r.announced),
        updated: now(),
    };
    // The grower holds the lock while it works: it writes the record itself
    // and checks the device again when done, so skipping here loses nothing.
    match DiskLock::take(settings, &event.name, false)? {
        Some(_lock) => records::write(settings, &record)?,
        None => log::info!("{}: being grown; the grower records it", event.name),
    }
    if serviceable {
        hand_off(settings, &event.name)?;
    }
    Ok(0)
}

/// Escapes a kernel name for a unit instance as `systemd-escape` does
/// (`cciss!c0d0` -> `cciss\x21c0d0`); the unit's `%I` undoes it.
pub fn unit_escape(name: &str) -> String {
    name.chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' || (c == '.' && i > 0) {
                c.to_string()
            } else {
                format!("\\x{:02x}", c as u32)
            }
        })
        .collect()
}

/// Where a background growth logs when there is no systemd (and so no
/// journal to keep what it says).
pub fn grow_log(settings: &Settings) -> PathBuf {
    settings.run_dir.join("disk-grow.log")
}

/// Starts the growth outside udev's sandbox.
fn hand_off(settings: &Settings, name: &str) -> Result<()> {
    if settings.systemd_dir.is_dir() {
        let unit = format!("gandi-disk@{}.service", unit_escape(name));
        crate::runner::Run::new("systemctl")
            .args(["--no-block", "start", &unit])
            .limit(std::time::Duration::from_secs(30))
            .output()?;
        log::info!("{name}: started {unit}");
        return Ok(());
    }
    // No systemd: a detached process in its own session, not killed with
    // the udev worker.
    let exe = std::env::current_exe().context("finding our own executable")?;
    let log_path = grow_log(settings);
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(["disk-grow", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // A process group of its own: the udev worker's end does not reach it.
    cmd.process_group(0);
    cmd.spawn()
        .with_context(|| format!("starting {}", crate::runner::describe(&cmd)))?;
    log::info!("{name}: growth started in the background (no systemd)");
    Ok(())
}

/// `gandi-vm disk-event ACTION DEVICE` by hand.
pub fn by_hand(settings: &Settings, action: Action, device: &str) -> Result<i32> {
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
        Action::Remove => forget_on_event(settings, &name).map(|()| 0),
        Action::Add | Action::Change => grow_disk(settings, &name),
    }
}

/// `gandi-vm disk-grow NAME`: what `gandi-disk@NAME.service` runs. Takes
/// the device's lock (waiting for another growth of it), grows, records,
/// runs `post-disk-attach` when the disk became ready for a new attach.
/// Checks the device again afterwards, in case it changed meanwhile.
pub fn grow_disk(settings: &Settings, name: &str) -> Result<i32> {
    let _lock = DiskLock::take(settings, name, true)?;
    let mut code = 0;
    for _ in 0..3 {
        let previous = records::read_or_report(settings, name);
        let scan = Scan::new(settings)?;
        let Some(mut dev) = scan.describe(&[name.to_string()]).pop() else {
            log::info!("{name}: gone");
            records::forget(settings, name)?;
            return Ok(0);
        };
        let dev_path = scan.dev_path(name);
        let mut record = Record {
            name: name.to_string(),
            devnum: dev.devnum.to_string(),
            diskseq: dev.diskseq,
            size: dev.size,
            fs: dev.fs.clone(),
            partitioned: !dev.partitions.is_empty() || dev.fs.part_table.is_some(),
            state: RecordState::Ready,
            grower: None,
            note: None,
            last_grow: previous.as_ref().and_then(|r| r.last_grow.clone()),
            announced: previous.as_ref().and_then(|r| r.announced.clone()),
            updated: now(),
        };
        let fstype = dev.fs.fstype.clone().unwrap_or_default();
        if matches!(
            dev.excluded,
            Some(Exclusion::Growing | Exclusion::Interrupted(_))
        ) {
            // Left by a growth that was interrupted: ours to finish.
            dev.excluded = None;
        }
        match &dev.excluded {
            Some(Exclusion::Partitioned) => {
                record.state = RecordState::NotGrown;
                record.note = Some("partitioned: only whole-disk filesystems are grown".into());
            }
            Some(Exclusion::Damaged(why)) => {
                record.state = RecordState::Damaged;
                record.note = Some(why.clone());
                code = 1;
            }
            Some(why) => {
                record.state = RecordState::Excluded;
                record.note = Some(why.to_string());
            }
            None if dev.parent.is_some() => {
                record.note =
                    Some("a partition: not grown (only whole-disk filesystems are)".into());
            }
            None if !grow::supported(&fstype) => {
                record.note = Some(format!("growing {fstype} is not supported"));
            }
            None => {
                // One grower per filesystem, whatever device shows it: a
                // mark of a resize under way is then never taken for one
                // cut short.
                let _fs_lock = fs_lock(settings, dev.fs.uuid.as_deref())?;
                let marks = Marks::new(settings, dev.fs.uuid.as_deref(), name);
                let mounted_now = dev.mounts.first().map(PathBuf::as_path);
                // Mounted through another device (the same disk attached
                // twice): growing it here would write under that mount.
                if mounted_now.is_none()
                    && let Some(other) = mounted_elsewhere(settings, &dev_path, &dev.fs)
                {
                    record.state = RecordState::NotGrown;
                    record.note = Some(format!(
                        "its filesystem is mounted through {other}: grown once that is unmounted"
                    ));
                    records::write(settings, &record)?;
                    return finish(settings, &scan, &dev, &record, previous.as_ref(), code);
                }
                if !grow::needs_work(&dev_path, &fstype, dev.size, mounted_now, &marks)
                    .unwrap_or(true)
                {
                    // Fits already (an event that changed nothing): the
                    // disk is never marked, so never refused, for it.
                    record.updated = now();
                    records::write(settings, &record)?;
                    return finish(settings, &scan, &dev, &record, previous.as_ref(), code);
                }
                // Marked first: from now on the map refuses the disk, so no
                // mount starts during an offline resize. Then the mounts are
                // read again, after the mark.
                record.state = RecordState::Growing;
                record.grower = Some(std::process::id());
                records::write(settings, &record)?;
                record.grower = None;
                let mounts = Scan::new(settings)?
                    .describe(&[name.to_string()])
                    .pop()
                    .map(|d| d.mounts)
                    .unwrap_or_default();
                let mounted = mounts.first().map(PathBuf::as_path);
                let grown = grow::grow(
                    &dev_path,
                    &fstype,
                    dev.size,
                    mounted,
                    &settings.run_dir,
                    &marks,
                );
                match grown {
                    Ok(grow::Outcome::Fits { .. }) => record.state = RecordState::Ready,
                    Ok(grow::Outcome::Damaged { why }) => {
                        log::error!("{name}: {fstype} is damaged: {why}");
                        record.state = RecordState::Damaged;
                        record.note = Some(why);
                        code = 1;
                    }
                    Ok(grow::Outcome::Grown {
                        before,
                        after,
                        tool,
                    }) => {
                        log::info!(
                            "{name}: {fstype} grown from {before} to {after} bytes ({tool})"
                        );
                        record.state = RecordState::Ready;
                        record.last_grow = Some(Grow {
                            before,
                            after,
                            time: now(),
                            tool,
                        });
                    }
                    Err(e) => {
                        log::error!("{name}: growing {fstype}: {e:#}");
                        record.state = RecordState::GrowFailed;
                        record.note = Some(format!("{e:#}"));
                        code = 1;
                    }
                }
            }
        }
        record.updated = now();
        records::write(settings, &record)?;

        // Changed while we worked (resized again, reattached)? Once more.
        let again = Scan::new(settings)?.describe(&[name.to_string()]).pop();
        if again
            .as_ref()
            .is_some_and(|d| d.size != dev.size || d.diskseq != dev.diskseq)
        {
            log::info!("{name}: changed while being grown; once more");
            continue;
        }

        return finish(settings, &scan, &dev, &record, previous.as_ref(), code);
    }
    Ok(code)
}

/// Runs `post-disk-attach` when the disk is ready and the hook has not run
/// for this attach yet (once per attach: a growth makes udev send a change
/// that records the disk again); returns `code`.
fn finish(
    settings: &Settings,
    scan: &Scan,
    dev: &crate::device::Device,
    record: &Record,
    _previous: Option<&Record>,
    code: i32,
) -> Result<i32> {
    let key = records::attach_key(record);
    let announced = records::read(settings, &dev.name).and_then(|r| r.announced);
    if record.state != RecordState::Ready
        || dev.excluded.is_some()
        || announced.as_deref() == Some(key.as_str())
    {
        return Ok(code);
    }
    let devices = scan.devices();
    let mount_point = served_key(&devices, dev, &settings.disk_root)
        .map(|k| settings.disk_root.join(k))
        .unwrap_or_else(|| settings.disk_root.join(&dev.name));
    let fstype = dev.fs.fstype.clone().unwrap_or_default();
    // Marked first: a hook cut short is not run again for this attach.
    let mut marked = record.clone();
    marked.announced = Some(key);
    records::write(settings, &marked)?;
    hooks::run(
        settings,
        "post-disk-attach",
        &[
            &scan.dev_path(&dev.name).display().to_string(),
            &fstype,
            &mount_point.display().to_string(),
        ],
        hooks::HOOK_LIMIT,
    );
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("ACTION", "add"),
            ("SUBSYSTEM", "block"),
            (
                "DEVPATH",
                "/devices/pci0000:00/0000:00:05.0/virtio3/block/vdb",
            ),
            ("DEVNAME", "/dev/vdb"),
            ("MAJOR", "252"),
            ("MINOR", "16"),
            ("DISKSEQ", "12"),
            ("ID_FS_TYPE", "ext4"),
            ("ID_FS_USAGE", "filesystem"),
            ("ID_FS_LABEL_ENC", "my\\x20data"),
            ("ID_FS_UUID_ENC", "abcd"),
        ]
    }

    #[test]
    fn reads_a_udev_event() {
        let e = udev_event(&env(&good())).unwrap();
        assert_eq!(e.action, Action::Add);
        assert_eq!(e.name, "vdb");
        assert_eq!(
            e.devnum,
            DevNum {
                major: 252,
                minor: 16
            }
        );
        assert_eq!(e.diskseq, Some(12));
        assert_eq!(e.fs.label.as_deref(), Some("my data"));
    }

    #[test]
    fn rejects_malformed_events_naming_the_variable() {
        let cases: [(&str, Option<&str>, &str); 8] = [
            ("ACTION", None, "ACTION is not set"),
            ("ACTION", Some("bind"), "ACTION"),
            ("DEVPATH", None, "DEVPATH is not set"),
            ("DEVPATH", Some("/devices/x/../.."), "DEVPATH"),
            ("DEVNAME", Some("/dev/vdc"), "does not match"),
            ("MAJOR", Some("x"), "MAJOR is not a number"),
            ("MINOR", None, "MINOR is not set"),
            ("SUBSYSTEM", Some("net"), "SUBSYSTEM"),
        ];
        for (key, value, expect) in cases {
            let mut pairs = good();
            pairs.retain(|(k, _)| *k != key);
            if let Some(v) = value {
                pairs.push((key, v));
            }
            let err = format!("{:#}", udev_event(&env(&pairs)).unwrap_err());
            assert!(err.contains(expect), "{key}={value:?}: {err}");
        }
    }

    #[test]
    fn unit_names() {
        assert_eq!(unit_escape("vdb1"), "vdb1");
        assert_eq!(unit_escape("cciss!c0d0"), "cciss\\x21c0d0");
        assert_eq!(unit_escape("dm-0"), "dm\\x2d0");
    }

    #[test]
    fn names() {
        assert!(valid_name("vdb1"));
        assert!(valid_name("cciss!c0d0"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(".."));
        assert!(!valid_name("a b"));
    }
}
