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

use crate::base::glob::glob_match;
use crate::base::hooks;
use crate::base::lock;
use crate::base::settings::Settings;
use crate::disk::fsgrow;
use crate::disk::fsstate::Marks;
use crate::disk::index;
use crate::disk::map::served_key;
use crate::disk::records::{self, Grow, Record, RecordState};
use crate::disk::scan::Scan;
use crate::disk::store;
use crate::kernel::device::{DevNum, Exclusion, FsInfo};
use crate::kernel::views::unescape_hex;
use anyhow::{Context, Result, anyhow, bail};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
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
pub struct DiskLock(#[allow(dead_code)] lock::FileLock);

impl DiskLock {
    fn path(settings: &Settings, name: &str) -> PathBuf {
        settings.run_dir.join("locks").join(format!("{name}.lock"))
    }

    /// Waits for the lock when `wait`, else fails at once when it is held.
    pub fn take(settings: &Settings, name: &str, wait: bool) -> Result<Option<DiskLock>> {
        Ok(lock::FileLock::take(&Self::path(settings, name), wait)?.map(DiskLock))
    }

    /// Waits for the lock at most `limit`.
    pub fn take_for(
        settings: &Settings,
        name: &str,
        limit: std::time::Duration,
    ) -> Result<Option<DiskLock>> {
        Ok(lock::FileLock::take_for(&Self::path(settings, name), limit)?.map(DiskLock))
    }
}

/// An exclusive lock on one filesystem, by its UUID, held while it is
/// grown: the same filesystem seen through two devices (a disk attached
/// again while its old device lives on, as a detached loop device does
/// while a resize holds it) is grown by one process at a time. `None` for
/// a filesystem without a usable UUID.
fn fs_lock(settings: &Settings, uuid: Option<&str>) -> Result<Option<lock::FileLock>> {
    let Some(uuid) = uuid.filter(|u| {
        !u.is_empty() && u.len() <= 64 && u.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    }) else {
        return Ok(None);
    };
    let path = settings
        .run_dir
        .join("locks")
        .join(format!("fs-{}.lock", uuid.to_ascii_lowercase()));
    lock::FileLock::take(&path, true)
}

/// Where the ext filesystem of `dev` (`fs`) is mounted through another
/// device, if it is: the superblocks of the mounted ext filesystems are
/// compared by UUID (a read of each, only in the grower, never in the map).
fn mounted_elsewhere(settings: &Settings, dev: &std::path::Path, fs: &FsInfo) -> Option<String> {
    let uuid = fs.uuid.as_deref()?;
    if !matches!(fs.fstype.as_deref(), Some("ext2" | "ext3" | "ext4")) {
        return None;
    }
    let mi = crate::kernel::views::read_proc(&settings.proc_dir.join("self/mountinfo")).ok()?;
    crate::kernel::views::parse_mountinfo(&mi)
        .into_iter()
        .filter(|m| matches!(m.fstype.as_str(), "ext2" | "ext3" | "ext4"))
        .filter(|m| m.source.starts_with('/') && std::path::Path::new(&m.source) != dev)
        .find(|m| {
            fsgrow::ExtSuper::read(std::path::Path::new(&m.source))
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
    store::forget(settings, name)
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
    let size = crate::kernel::views::read_small(&sys.join("size"))
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
    let holds_root = crate::kernel::views::read_proc(&settings.proc_dir.join("self/mountinfo"))
        .ok()
        .and_then(|mi| {
            crate::kernel::views::root_mount(&crate::kernel::views::parse_mountinfo(&mi))
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
    Ok(0)
}

/// Without systemd, the helper of any event also starts again the growths
/// of other disks that their growers left undone (killed). From the index
/// alone: no disk is read in a udev worker; the adopter checks the device.
fn adopt_others(settings: &Settings, name: &str) {
    if settings.systemd_dir.is_dir() {
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

/// Starts the growth outside udev's sandbox; without systemd, returns the
/// watcher's PID.
fn hand_off(settings: &Settings, name: &str) -> Result<Option<u32>> {
    if settings.systemd_dir.is_dir() {
        let unit = format!("gandi-disk@{}.service", unit_escape(name));
        crate::base::runner::Run::new("systemctl")
            .args(["--no-block", "start", &unit])
            .limit(std::time::Duration::from_secs(30))
            .output()?;
        log::info!("{name}: started {unit}");
        return Ok(None);
    }
    // No systemd: a detached process in its own session, not killed with
    // the udev worker.
    let exe = std::env::current_exe().context("finding our own executable")?;
    let log_path = crate::disk::adopt::grow_log(settings);
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
    // A process group of its own (the udev worker's end does not reach
    // it), none of the worker's descriptors.
    crate::base::runner::detach(&mut cmd);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", crate::base::runner::describe(&cmd)))?;
    log::info!("{name}: growth started in the background (no systemd)");
    Ok(Some(child.id()))
}

/// How many times a grower killed (or whose unit ended without growing
/// the disk) is started again for one attach.
const MAX_RESUMES: u32 = 5;

/// What [`mark_resumed`] found.
#[derive(Debug, PartialEq, Eq)]
enum Resume {
    /// Set back to pending: start the work again.
    Again,
    /// Nothing left to do (grown, gone, another grower at work).
    Done,
    /// Started again too many times for this attach: the record says so.
    Spent,
}

/// Under the disk's lock: when the record says the growth is not done and
/// no grower works on it, writes it as pending again, watched by this
/// process, counting the resume.
fn mark_resumed(settings: &Settings, name: &str, why: &str) -> Result<Resume> {
    let Some(mut record) = records::read_or_report(settings, name) else {
        return Ok(Resume::Done);
    };
    let ours = record.watcher == Some(std::process::id());
    let left = match record.state {
        // Its worker is gone; this process watched it.
        RecordState::Growing | RecordState::Pending if ours => {
            !record.grower.is_some_and(crate::base::process::alive_ours)
        }
        _ => record.growth_left(),
    };
    if !left {
        return Ok(Resume::Done);
    }
    record.grower = None;
    record.updated = now();
    if record.resumes >= MAX_RESUMES {
        record.state = RecordState::GrowFailed;
        record.watcher = None;
        record.note = Some(format!(
            "its growth was started again {MAX_RESUMES} times and stopped again ({why}): not \
             started again until its next attach or `gandi-vm disk-event change {name}`"
        ));
        store::write(settings, &record)?;
        log::error!("{name}: its growth was started again {MAX_RESUMES} times: given up");
        return Ok(Resume::Spent);
    }
    record.resumes += 1;
    record.state = RecordState::Pending;
    record.watcher = Some(std::process::id());
    record.note = Some(format!("{why}: growth resumed"));
    store::write(settings, &record)?;
    Ok(Resume::Again)
}

/// `gandi-vm disk-grow NAME`: the grower, watched. The work runs in a
/// child (`disk-grow --worker`, named in the record beside this watcher);
/// when a signal kills it, the record is set back to pending and the work
/// starts again, so the disk ends grown without a new event, with systemd
/// or without. The record never says `growing` once neither process
/// lives. Under systemd the unit's `ExecStopPost=` (`disk-grow --resume`)
/// covers this watcher's own death; without, the next lookup or event
/// does (`disk-grow --adopt`).
pub fn grow_supervised(settings: &Settings, name: &str) -> Result<i32> {
    let exe = std::env::current_exe().context("finding our own executable")?;
    // The tools of a worker that is killed (a resize2fs, an e2fsck) live
    // on, and come to this process: waited for before the work starts
    // again, so that two tools never work on the disk at once.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        log::warn!("{name}: the watcher cannot adopt its worker's tools: {e}");
    }
    let mut again = 0;
    loop {
        let status = Command::new(&exe)
            .args(["disk-grow", "--worker", name])
            .status()
            .with_context(|| format!("starting the grower of {name}"))?;
        use std::os::unix::process::ExitStatusExt;
        let Some(sig) = status.signal() else {
            // An event that came once the worker let the disk go (the
            // change udev sends after a growth, a resize) recorded it as
            // pending, and its start of this unit was merged into this
            // run: its work is done here.
            if again < 3 && pending_since_worker(settings, name) {
                again += 1;
                log::info!("{name}: an event came meanwhile; once more");
                continue;
            }
            return Ok(status.code().unwrap_or(1));
        };
        log::warn!("{name}: its grower was killed (signal {sig})");
        while nix::sys::wait::wait().is_ok() {}
        let _lock = DiskLock::take(settings, name, true)?;
        match mark_resumed(
            settings,
            name,
            &format!("its grower was killed (signal {sig})"),
        )? {
            Resume::Again => log::info!("{name}: growth resumed"),
            Resume::Done => return Ok(0),
            Resume::Spent => return Ok(1),
        }
    }
}

/// Whether the record says pending (an event wrote it) while no worker
/// lives and no other watcher than this process (or a dead one) has it.
fn pending_since_worker(settings: &Settings, name: &str) -> bool {
    let me = std::process::id();
    records::read(settings, name).is_some_and(|r| {
        r.state == RecordState::Pending
            && r.watcher
                .is_none_or(|w| w == me || !crate::base::process::alive_ours(w))
            && !r.grower.is_some_and(crate::base::process::alive_ours)
    })
}

/// `gandi-vm disk-grow --resume NAME`: what `gandi-disk@NAME.service` runs
/// once it stopped (`ExecStopPost=`, also after a kill of the whole unit):
/// when the record says the growth is not done and no grower lives, the
/// unit is started again (bounded). After a run that succeeded, only for
/// an event that came at its very end (its start of the unit was merged
/// into that run).
pub fn resume(settings: &Settings, name: &str) -> Result<i32> {
    // Stopped for the shutdown: the next boot's event grows it.
    let state = crate::base::runner::Run::new("systemctl")
        .arg("is-system-running")
        .limit(std::time::Duration::from_secs(10))
        .outcome()
        .map(|o| o.stdout_text())
        .unwrap_or_default();
    if state.trim() == "stopping" {
        return Ok(0);
    }
    // Stopped on request (`systemctl stop`, an isolate): systemd ended it
    // with SIGTERM (or the admin sent INT or HUP). Only a kill it did not
    // ask for (SIGKILL: the OOM killer, `kill -9`) is resumed.
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("EXIT_CODE") == "killed" && matches!(env("EXIT_STATUS").as_str(), "TERM" | "INT" | "HUP")
    {
        log::info!(
            "{name}: its unit was stopped ({}): not started again",
            env("EXIT_STATUS")
        );
        return Ok(0);
    }
    if env("SERVICE_RESULT") == "success" {
        if pending_since_worker(settings, name) {
            requeue(name)?;
            log::info!("{name}: an event came as its growth ended: started again");
        }
        return Ok(0);
    }
    let Some(_lock) = DiskLock::take_for(settings, name, std::time::Duration::from_secs(5))? else {
        return Ok(0);
    };
    let why = format!("its unit ended ({})", env("SERVICE_RESULT"));
    if mark_resumed(settings, name, &why)? == Resume::Again {
        // The unit's own processes are gone: no watcher of this one.
        if let Some(mut record) = records::read(settings, name) {
            record.watcher = None;
            store::write(settings, &record)?;
        }
        requeue(name)?;
        log::info!("{name}: growth resumed after its unit ended");
    }
    Ok(0)
}

/// Starts `gandi-disk@NAME.service` again once this run of it has ended.
/// Not with `systemctl start` from its own `ExecStopPost=`: systemd merges
/// that into the unit's start job, which is ending (it fails or succeeds
/// with this run), and the start is lost. A transient timer (systemd 218)
/// asks for it two seconds later, as a job of its own.
fn requeue(name: &str) -> Result<()> {
    let unit = format!("gandi-disk@{}.service", unit_escape(name));
    let systemctl =
        crate::base::runner::find_program("systemctl").context("systemctl is not in PATH")?;
    let timer = format!("gandi-disk-again-{}-{}", unit_escape(name), now());
    crate::base::runner::Run::new("systemd-run")
        .args([
            "--no-block",
            "--on-active=2",
            "--timer-property=AccuracySec=100ms",
        ])
        .arg(format!("--unit={timer}"))
        .arg(format!("--description=gandi-vm: start {unit} again"))
        .arg(systemctl)
        .args(["--no-block", "start", &unit])
        .limit(std::time::Duration::from_secs(30))
        .output()?;
    Ok(())
}

/// `gandi-vm disk-grow --adopt NAME`: started by a lookup or by the helper
/// of another event when the record of NAME says its growth is not done
/// and no grower lives (they were killed, without systemd to start them
/// again). Ends at once when a grower holds the disk.
pub fn adopt(settings: &Settings, name: &str) -> Result<i32> {
    {
        let Some(_lock) = DiskLock::take(settings, name, false)? else {
            return Ok(0);
        };
        if mark_resumed(settings, name, "its grower was gone")? != Resume::Again {
            return Ok(0);
        }
        log::info!("{name}: its growth was left undone (its grower is gone): resumed");
    }
    grow_supervised(settings, name)
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
        Action::Add | Action::Change => grow_disk(settings, &name, None),
    }
}

/// `gandi-vm disk-grow NAME`: what `gandi-disk@NAME.service` runs. Takes
/// the device's lock (waiting for another growth of it), grows, records,
/// runs `post-disk-attach` when the disk became ready for a new attach.
/// Checks the device again afterwards, in case it changed meanwhile.
pub fn grow_disk(settings: &Settings, name: &str, watcher: Option<u32>) -> Result<i32> {
    let _lock = DiskLock::take(settings, name, true)?;
    let mut code = 0;
    let mut killed_tools = 0;
    for _ in 0..6 {
        let previous = records::read_or_report(settings, name);
        let scan = Scan::new(settings)?;
        let Some(mut dev) = scan.describe(&[name.to_string()]).pop() else {
            log::info!("{name}: gone");
            store::forget(settings, name)?;
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
            watcher: None,
            note: None,
            last_grow: previous.as_ref().and_then(|r| r.last_grow.clone()),
            announced: previous.as_ref().and_then(|r| r.announced.clone()),
            resumes: previous.as_ref().map_or(0, |r| r.resumes),
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
            None if !fsgrow::supported(&fstype) => {
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
                    store::write(settings, &record)?;
                    return finish(settings, &scan, &dev, &record, previous.as_ref(), code);
                }
                if !fsgrow::needs_work(&dev_path, &fstype, dev.size, mounted_now, &marks)
                    .unwrap_or(true)
                {
                    // Fits already (an event that changed nothing): the
                    // disk is never marked, so never refused, for it.
                    record.updated = now();
                    store::write(settings, &record)?;
                    return finish(settings, &scan, &dev, &record, previous.as_ref(), code);
                }
                // Marked first: from now on the map refuses the disk, so no
                // mount starts during an offline resize. Then the mounts are
                // read again, after the mark.
                record.state = RecordState::Growing;
                record.grower = Some(std::process::id());
                record.watcher = watcher;
                store::write(settings, &record)?;
                record.grower = None;
                let mounts = Scan::new(settings)?
                    .describe(&[name.to_string()])
                    .pop()
                    .map(|d| d.mounts)
                    .unwrap_or_default();
                let mounted = mounts.first().map(PathBuf::as_path);
                let grown = fsgrow::grow(
                    &dev_path,
                    &fstype,
                    dev.size,
                    mounted,
                    &settings.run_dir,
                    &marks,
                );
                match grown {
                    Ok(fsgrow::Outcome::Fits { .. }) => record.state = RecordState::Ready,
                    Ok(fsgrow::Outcome::Damaged { why }) => {
                        log::error!("{name}: {fstype} is damaged: {why}");
                        record.state = RecordState::Damaged;
                        record.note = Some(why);
                        code = 1;
                    }
                    Ok(fsgrow::Outcome::Grown {
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
                    // Its tool was killed (not failed): the growth is not
                    // done; once more (a resize cut short is repaired
                    // first, by its mark).
                    Err(e) if crate::base::runner::killed(&e) && killed_tools < 3 => {
                        killed_tools += 1;
                        log::warn!("{name}: growing {fstype}: {e:#}; once more");
                        record.state = RecordState::Pending;
                        record.grower = Some(std::process::id());
                        record.watcher = watcher;
                        record.note = Some(format!("its tool was killed ({e:#}): growth resumed"));
                        record.updated = now();
                        store::write(settings, &record)?;
                        continue;
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
        if record.state == RecordState::Ready {
            record.resumes = 0;
        }
        record.updated = now();
        store::write(settings, &record)?;

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
    // Every round ended in another one (the device kept changing, its tool
    // kept being killed): said so, never left pending with no one on it.
    if let Some(mut record) = records::read(settings, name)
        && record.state == RecordState::Pending
    {
        record.state = RecordState::GrowFailed;
        record.grower = None;
        record.watcher = None;
        record.note = Some("its growth kept being cut short: given up until its next event".into());
        record.updated = now();
        store::write(settings, &record)?;
        log::error!("{name}: its growth kept being cut short: given up");
    }
    Ok(1)
}

/// Runs `post-disk-attach` when the disk is ready and the hook has not run
/// for this attach yet (once per attach: a growth makes udev send a change
/// that records the disk again); returns `code`.
fn finish(
    settings: &Settings,
    scan: &Scan,
    dev: &crate::kernel::device::Device,
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
    store::write(settings, &marked)?;
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
mod tests;
