//! `gandi-vm disk release KEY`: what an admin runs before detaching a disk.
//!
//! Runs the `pre-disk-detach DEV MOUNTPOINT` hook, stops the services named
//! in `MOUNTPOINT/.gandi/services` that use the disk (the file is the
//! disk's own: a name it gives is stopped only when a process of that
//! service holds a file on the disk), marks the disk released (so the map
//! refuses it until it is detached or attached again), then unmounts it.
//! When something still holds the disk, the processes are named, the mark
//! is taken back and nothing else changes; `--force` unmounts lazily instead.

use crate::base::hooks;
use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::base::tree;
use crate::disk::keylinks;
use crate::disk::map;
use crate::disk::records;
use crate::disk::scan::Scan;
use crate::disk::store;
use crate::kernel::device::{Device, Exclusion};
use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the release says each thing it does, as it does it (the verb
/// prints; the library never does).
pub type Say<'a> = &'a mut dyn FnMut(&str);

/// A process that uses a path below a mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
    /// `cwd`, `root`, `exe`, `fd 3`, `mmap`.
    pub how: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({}) by its {}", self.pid, self.command, self.how)
    }
}

/// The processes that use files below `mount_point`, from `/proc`.
pub fn holders(proc_dir: &Path, mount_point: &Path) -> Vec<Holder> {
    let mut found = Vec::new();
    let Ok(rd) = fs::read_dir(proc_dir) else {
        return found;
    };
    let own = std::process::id();
    for entry in rd.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let dir = entry.path();
        let command = fs::read_to_string(dir.join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let under = |p: &Path| p.starts_with(mount_point);
        let mut how = None;
        for link in ["cwd", "root", "exe"] {
            if fs::read_link(dir.join(link)).is_ok_and(|t| under(&t)) {
                how = Some(link.to_string());
                break;
            }
        }
        if how.is_none()
            && let Ok(fds) = fs::read_dir(dir.join("fd"))
        {
            for fd in fds.flatten() {
                if fs::read_link(fd.path()).is_ok_and(|t| under(&t)) {
                    how = Some(format!("fd {}", fd.file_name().to_string_lossy()));
                    break;
                }
            }
        }
        if how.is_none()
            && let Ok(maps) = fs::read_to_string(dir.join("maps"))
            && maps
                .lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .any(|p| under(Path::new(p)))
        {
            how = Some("mmap".into());
        }
        if let Some(how) = how {
            found.push(Holder { pid, command, how });
        }
    }
    found.sort_by_key(|h| h.pid);
    found
}

fn umount(path: &Path, flags: nix::mount::MntFlags) -> std::io::Result<()> {
    nix::mount::umount2(path, flags).map_err(std::io::Error::from)
}

/// Unmounts `mp` lazily (it goes when its last user does) and says who
/// still holds it.
fn umount_lazily(mp: &Path, held: &[Holder], why: &str, say: Say) -> Result<()> {
    umount(mp, nix::mount::MntFlags::MNT_DETACH)
        .with_context(|| format!("unmounting {} lazily", mp.display()))?;
    say(&format!(
        "unmounted {} lazily{why}; still in use by: {}",
        mp.display(),
        list(held)
    ));
    Ok(())
}

/// The services named in `MOUNTPOINT/.gandi/services`, one per line (`#`
/// comments), as `NAME.service` when no type is given. The file is the
/// disk's: read only when it is a regular file of at most 64 KiB, reached
/// without a link, and opened without waiting.
pub fn services(mount_point: &Path) -> Vec<String> {
    let read = tree::Tree::open(mount_point).ok().and_then(|t| {
        match t.read_owned_limited(".gandi/services", 64 << 10) {
            Ok((data, _)) => Some(data),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                log::warn!("{}/.gandi/services: {e}", mount_point.display());
                None
            }
        }
    });
    let Some(data) = read else {
        return Vec::new();
    };
    String::from_utf8_lossy(&data)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| {
            l.len() <= 255
                && !l.starts_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "@._-:\\".contains(c))
        })
        .map(|l| {
            if l.contains('.') && !l.ends_with('.') {
                l.to_string()
            } else {
                format!("{l}.service")
            }
        })
        .collect()
}

/// The system service a process runs in, from `/proc/PID/cgroup`: the
/// unit right below `/system.slice` (a user's own manager runs units of
/// any name below `user.slice`: those are never a system service).
pub fn unit_of(proc_dir: &Path, pid: u32) -> Option<String> {
    let text = crate::base::read::read_small(&proc_dir.join(pid.to_string()).join("cgroup"))?;
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .find_map(|path| {
            let unit = path.strip_prefix("/system.slice/")?.split('/').next()?;
            [".service", ".scope", ".socket", ".mount", ".swap"]
                .iter()
                .any(|t| unit.ends_with(t))
                .then(|| unit.to_string())
        })
}

/// Runs `pre-disk-detach DEV MOUNTPOINT` and says how it went.
fn pre_detach_hook(
    settings: &Settings,
    dev: &Path,
    mount_point: &Path,
    say: Say,
) -> hooks::HookResult {
    let hook = hooks::run(
        settings,
        "pre-disk-detach",
        &[
            &dev.display().to_string(),
            &mount_point.display().to_string(),
        ],
        hooks::HOOK_LIMIT,
    );
    if hook != hooks::HookResult::Absent {
        say(&format!("pre-disk-detach hook: {hook}"));
    }
    hook
}

/// `systemctl VERB SERVICE`; the reason when it failed.
fn systemctl(verb: &str, service: &str) -> Result<(), String> {
    match crate::base::runner::Run::new("systemctl")
        .args([verb, service])
        .limit(Duration::from_secs(90))
        .outcome()
    {
        Ok(o) if o.success() => Ok(()),
        Ok(o) => Err(o.stderr_text().trim().to_string()),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Stops the services named by each mount point that use it (a process
/// of theirs holds a file there); a service named but not using it is
/// left running, and said so. Returns those stopped.
fn stop_services(proc_dir: &Path, mounts: &[PathBuf], say: Say) -> Vec<String> {
    let mut stopped = Vec::new();
    for mp in mounts {
        let listed = services(mp);
        if listed.is_empty() {
            continue;
        }
        let using: Vec<String> = holders(proc_dir, mp)
            .iter()
            .filter_map(|h| unit_of(proc_dir, h.pid))
            .collect();
        for service in listed {
            if !using.contains(&service) {
                say(&format!(
                    "{service} not stopped: it does not use {}",
                    mp.display()
                ));
                continue;
            }
            if stopped.contains(&service) {
                continue;
            }
            match systemctl("stop", &service) {
                Ok(()) => {
                    say(&format!("stopped {service}"));
                    stopped.push(service);
                }
                Err(why) => log::warn!("could not stop {service}: {why}"),
            }
        }
    }
    stopped
}

/// Starts again the services a refused release stopped; says what became
/// of each.
fn start_again(stopped: &[String]) -> Vec<String> {
    stopped
        .iter()
        .map(|service| match systemctl("start", service) {
            Ok(()) => format!("started {service} again"),
            Err(why) => format!("could not start {service} again: {why}"),
        })
        .collect()
}

/// `gandi-vm disk release KEY [--force]`. Prints what it did.
pub fn release(settings: &Settings, key: &str, force: bool, say: Say) -> Result<Ended> {
    map::check_key(OsStr::new(key))?;
    let scan = Scan::new(settings)?;
    let devices = scan.devices();
    let root = settings.disk_root.display().to_string();
    // choose() leaves excluded devices out; a released one is ours.
    let dev = match map::find_for_admin(&devices, key, &root, |d| {
        d.excluded == Some(Exclusion::Released)
    }) {
        Ok(dev) => dev,
        Err(err) => {
            let at = settings.disk_root.join(key);
            return match scan
                .gone()
                .into_iter()
                .find(|d| d.mounts.contains(&at) || d.name == key)
            {
                Some(gone) => release_gone(settings, &scan, &gone, say),
                None => Err(err.into()),
            };
        }
    };
    let dev_path = scan.dev_path(&dev.name);
    let mark = records::released_dir(settings).join(&dev.name);
    if dev.excluded == Some(Exclusion::Released) && dev.mounts.is_empty() {
        say(&format!(
            "{} is already released: it can be detached",
            dev.name
        ));
        return Ok(Ended::Ok);
    }
    let mount_point: PathBuf = dev
        .mounts
        .iter()
        .find(|m| m.starts_with(&settings.disk_root))
        .or(dev.mounts.first())
        .cloned()
        .unwrap_or_else(|| settings.disk_root.join(key));

    let hook = pre_detach_hook(settings, &dev_path, &mount_point, say);
    let stopped = stop_services(&settings.paths.proc_dir, &dev.mounts, say);

    // Mark first, so no lookup mounts it again between unmount and detach;
    // and drop the key links autofs may have kept answers for.
    fs::create_dir_all(mark.parent().unwrap_or(Path::new("/")))
        .with_context(|| format!("creating {}", records::released_dir(settings).display()))?;
    let seq = dev.diskseq.map(|s| s.to_string()).unwrap_or_default();
    tree::write_atomic(&mark, format!("{seq}\n").as_bytes(), 0o644)?;
    let dropped = keylinks::drop_key_links(settings, &dev_path);
    // What a refusal takes back, and says it did.
    let undo = |why: String| -> anyhow::Error {
        let _ = fs::remove_file(&mark);
        keylinks::restore_key_links(&dropped, &dev_path);
        let mut undone = vec!["took back the release mark".to_string()];
        undone.extend(start_again(&stopped));
        let hook_note = match &hook {
            hooks::HookResult::Absent => String::new(),
            h => format!("; the pre-disk-detach hook {h} and is not undone"),
        };
        anyhow::anyhow!(
            "{why}; the disk stays mounted and served: {}{hook_note}",
            undone.join(", ")
        )
    };

    let mut mounts = dev.mounts.clone();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for mp in &mounts {
        match umount(mp, nix::mount::MntFlags::empty()) {
            Ok(()) => say(&format!("unmounted {}", mp.display())),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let held = holders(&settings.paths.proc_dir, mp);
                if force {
                    umount_lazily(mp, &held, " (--force)", say)?;
                } else {
                    return Err(undo(format!(
                        "{} is busy: in use by {}; stop them and try again, or use --force",
                        mp.display(),
                        list(&held)
                    )));
                }
            }
            Err(e) => return Err(undo(format!("unmounting {}: {e}", mp.display()))),
        }
    }
    say(&format!(
        "released {} ({}): it can be detached; the map refuses it until then",
        dev.name,
        crate::base::out::printable(dev.fs.label.as_deref().unwrap_or("no label"))
    ));
    Ok(Ended::Ok)
}

/// Releases what is left of a disk detached while mounted: runs the hook,
/// unmounts (lazily: its device no longer answers), drops its key links and
/// its record.
fn release_gone(settings: &Settings, scan: &Scan, gone: &Device, say: Say) -> Result<Ended> {
    let dev_path = scan.dev_path(&gone.name);
    let Some(mount_point) = gone.mounts.first() else {
        bail!("{}: nothing to release", gone.name);
    };
    say(&format!(
        "{}: its disk is gone (detached while mounted at {})",
        gone.name,
        mount_point.display()
    ));
    pre_detach_hook(settings, &dev_path, mount_point, say);
    match umount(mount_point, nix::mount::MntFlags::empty()) {
        Ok(()) => say(&format!("unmounted {}", mount_point.display())),
        Err(_) => umount_lazily(
            mount_point,
            &holders(&settings.paths.proc_dir, mount_point),
            "",
            say,
        )?,
    }
    // Its key links, and its record when it describes the disk that is no
    // more (udev's remove event may have dropped it already).
    keylinks::drop_key_links(settings, &dev_path);
    if records::read(settings, &gone.name)
        .is_some_and(|r| crate::kernel::device::DevNum::parse(&r.devnum) == Some(gone.devnum))
    {
        store::forget(settings, &gone.name)?;
    }
    say(&format!("released {}: nothing of it is left", gone.name));
    Ok(Ended::Ok)
}

fn list(held: &[Holder]) -> String {
    if held.is_empty() {
        "unknown processes (kernel users, or other mount namespaces)".into()
    } else {
        held.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
