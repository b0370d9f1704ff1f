//! `gandi-vm config`: per-boot housekeeping, each step gated by its flag in
//! `/etc/default/gandi`, then the admin's plugins and the `post-vm-config`
//! hook. Files we own carry a header saying so; in files we edit only our
//! marked block changes; nothing is written when nothing changes.
//!
//! With `--root DIR` it works offline: what needs the running system (its
//! consoles, the root device, host keys, which must differ per VM, plugins
//! and hooks) is deferred to the tree's first boot.

use crate::base::block::{self, Place};
use crate::base::hooks;
use crate::base::runner::Run;
use crate::base::settings::Settings;
use crate::base::status::Ended;
use crate::base::status::{Done, Recorder};
use crate::base::tree::{Change, Tree, WriteOpts};
use crate::boot::plugins;
use crate::kernel::blkid;
use crate::platform::apply;
use crate::platform::ledger::Ledger;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod cron;
mod sshd_step;
mod timezone;
use cron::cron;
use sshd_step::sshd;
use timezone::timezone;
pub use timezone::{Zone, cmdline_value, zone_for};

pub struct Options {
    pub root: PathBuf,
    /// The kernel command line (default `/proc/cmdline`; none with `--root`).
    pub cmdline: Option<PathBuf>,
}

/// The original's default timezone.
pub const DEFAULT_TIMEZONE: &str = "Europe/Paris";

const OWNED: &str = "# Written by gandi-vm config at each boot; edits are overwritten.\n\
# Turn this step off in /etc/default/gandi instead.\n";

/// The lock the config stage holds for its whole run: postboot (the
/// customer's commands) waits on it, since systemd starts it once `config`
/// says it is ready, before the admin's plugins have run.
pub fn lock_path(settings: &Settings) -> PathBuf {
    settings.paths.run_dir.join("locks/config.lock")
}

/// Runs the stage; returns the exit code (1 when a step failed).
pub fn run(settings: &Settings, opts: &Options) -> Result<Ended> {
    let tree = Tree::open(&opts.root)?;
    let live = opts.root == Path::new("/");
    // Held until the stage ends (or its process dies).
    let _running = if live {
        crate::base::lock::FileLock::take(&lock_path(settings), true)
            .map_err(|e| log::warn!("{e:#}: postboot will not wait for the plugins"))
            .ok()
            .flatten()
    } else {
        None
    };
    let t = &tree;
    let mut rec = Recorder::start(&tree, settings, "config");
    if live && let Some(why) = crate::base::settings::disabled(settings) {
        rec.skip("disabled", &format!("gandi-vm is turned off: {why}"));
        return rec.finish(&tree, settings, "config");
    }
    let offline = |rec: &mut Recorder, name: &str, what: &str| {
        rec.note(
            name,
            Done::deferred(format!("--root: {what} at the first boot")),
        )
    };
    let flag = |on: bool, key: &str, rec: &mut Recorder, name: &str| {
        if !on {
            rec.skip(name, &format!("{key}=0"));
        }
        on
    };
    if flag(settings.console, "CONFIG_CONSOLE", &mut rec, "console") {
        if live {
            rec.step("console", || console(settings, t));
        } else {
            offline(
                &mut rec,
                "console",
                "the running kernel's consoles are read",
            );
        }
    }
    if flag(settings.hostname, "CONFIG_HOSTNAME", &mut rec, "hosts") {
        rec.step("hosts", || hosts(t));
    }
    if live {
        rec.step("fstab", || fstab(settings, t));
    } else {
        offline(&mut rec, "fstab", "the root device's UUID is read");
    }
    if flag(settings.cron, "CONFIG_CRON", &mut rec, "cron") {
        rec.step("cron", || cron(t));
    }
    if flag(settings.timezone, "CONFIG_TIMEZONE", &mut rec, "timezone") {
        let cmdline = match (&opts.cmdline, live) {
            (Some(file), _) => Some(
                fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
            ),
            (None, true) => Some(
                fs::read_to_string(settings.paths.proc_dir.join("cmdline")).unwrap_or_default(),
            ),
            (None, false) => None,
        };
        rec.step("timezone", || timezone(settings, t, cmdline.as_deref()));
    }
    if flag(settings.sshd, "CONFIG_SSHD", &mut rec, "sshd") {
        rec.step("sshd", || sshd(t, live));
    }
    if flag(settings.motd, "CONFIG_MOTD", &mut rec, "motd") {
        rec.step("motd", || motd(settings, t));
    }
    // What sshd and the gettys need is done: they start now (`Type=notify`),
    // and never wait for the admin's plugins (a plugin may restart ssh).
    // Postboot waits for the whole stage through its lock.
    crate::base::notify::ready("running the admin's plugins and the post-vm-config hook");
    if live {
        plugins::run_all(&settings.paths.plugin_dir, &mut rec);
        rec.flush();
        rec.step("hook", || {
            match hooks::run(settings, "post-vm-config", &[], hooks::HOOK_LIMIT) {
                hooks::HookResult::Absent => Ok(Done::skipped("no post-vm-config hook")),
                hooks::HookResult::Ok => Ok(Done::changed("post-vm-config ran")),
                other => Ok(Done::failed(format!("post-vm-config {other}"))),
            }
        });
    } else {
        offline(&mut rec, "plugins", "the admin's plugins run");
        offline(&mut rec, "hook", "post-vm-config runs");
    }
    // A first boot's `tune2fs` of the root (2 s under emulation) concerns
    // no one waiting.
    if live {
        rec.step("mount-count", || mount_count(settings));
    } else {
        offline(&mut rec, "mount-count", "the root device is checked");
    }
    rec.finish(t, settings, "config")
}

/// Enables systemd's serial getty on the consoles that exist: `hvc0` (Xen)
/// when the kernel has it, `ttyS0` when it is a kernel console.
pub fn console(settings: &Settings, t: &Tree) -> Result<Done> {
    let mut ttys = Vec::new();
    if settings.paths.sys_dir.join("class/tty/hvc0").exists() {
        ttys.push("hvc0");
    }
    let consoles = fs::read_to_string(settings.paths.proc_dir.join("consoles")).unwrap_or_default();
    if consoles
        .lines()
        .any(|l| l.split_whitespace().next() == Some("ttyS0"))
    {
        ttys.push("ttyS0");
    }
    if ttys.is_empty() {
        return Ok(Done::skipped("no hvc0 or ttyS0 console"));
    }
    let unit = [
        "/lib/systemd/system/serial-getty@.service",
        "/usr/lib/systemd/system/serial-getty@.service",
    ]
    .into_iter()
    .find(|p| t.exists(p))
    .unwrap_or("/lib/systemd/system/serial-getty@.service");
    let wants = Path::new("etc/systemd/system/getty.target.wants");
    let mut change = Change::Unchanged;
    for tty in &ttys {
        let link = wants.join(format!("serial-getty@{tty}.service"));
        if t.lstat(&link).is_ok() {
            continue; // enabled already, or masked/changed by the admin
        }
        t.create_dirs(wants, 0o755)?;
        t.symlink_new(Path::new(unit), &link)?;
        change = Change::Changed;
    }
    Ok(Done::of(change, ttys.join(" ")))
}

/// `/etc/hosts` when missing.
fn hosts(t: &Tree) -> Result<Done> {
    if t.lstat("/etc/hosts").is_ok() {
        return Ok(Done::unchanged("present"));
    }
    let hostname = t.read_string("/etc/hostname").unwrap_or_default();
    let hostname = hostname.trim();
    let mut text = apply::default_hosts();
    if !hostname.is_empty() {
        text = apply::hosts_text(&text, hostname, None).map_err(anyhow::Error::msg)?;
    }
    t.write_if_changed("/etc/hosts", text.as_bytes(), WriteOpts::mode(0o644))?;
    Ok(Done::changed("created"))
}

/// The fstab line of `/`: (index, fields).
fn root_line(text: &str) -> Option<(usize, Vec<String>)> {
    text.lines().enumerate().find_map(|(i, l)| {
        let t = l.trim_start();
        if t.starts_with('#') {
            return None;
        }
        let f: Vec<String> = t.split_whitespace().map(str::to_string).collect();
        (f.len() >= 2 && f[1] == "/").then_some((i, f))
    })
}

/// Points the root line of `/etc/fstab` at the filesystem's UUID when it
/// names a device path (`/dev/vda1`), keeping a backup; other lines kept.
pub fn fstab(settings: &Settings, t: &Tree) -> Result<Done> {
    let Ok(text) = t.read_string("/etc/fstab") else {
        return Ok(Done::skipped("no /etc/fstab"));
    };
    let Some((index, fields)) = root_line(&text) else {
        return Ok(Done::skipped("no root line"));
    };
    if !fields[0].starts_with("/dev/") {
        return Ok(Done::unchanged(format!("root is {}", fields[0])));
    }
    let dev = PathBuf::from(&fields[0]);
    // ext2/3/4: the superblock read directly (no blkid started); others
    // probed, bounded.
    let uuid = match crate::disk::fsgrow::ExtSuper::read(&dev) {
        Ok(sb) => sb.uuid,
        Err(_) => blkid::probe(
            std::slice::from_ref(&dev),
            Duration::from_millis(settings.probe_timeout_ms),
        )
        .and_then(|m| m.get(&dev).and_then(|f| f.uuid.clone()))
        .with_context(|| format!("no filesystem UUID found on {}", dev.display()))?,
    };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let old_line = lines[index].clone();
    // Keep the line's layout: replace the first field only.
    let start = old_line.find(&fields[0]).unwrap_or(0);
    lines[index] = format!(
        "{}UUID={uuid}{}",
        &old_line[..start],
        &old_line[start + fields[0].len()..]
    );
    let backup = "/etc/fstab.gandi-vm.bak";
    t.write_atomic(backup, text.as_bytes(), WriteOpts::mode(0o644))?;
    let mode = crate::base::tree::mode_of(&t.lstat("/etc/fstab")?);
    t.write_if_changed(
        "/etc/fstab",
        (lines.join("\n") + "\n").as_bytes(),
        WriteOpts::mode(mode),
    )?;
    Ok(Done::changed(format!(
        "{} -> UUID={uuid} (backup {backup})",
        fields[0]
    )))
}

/// A message of the day pointing to the docs and to our settings.
fn motd(settings: &Settings, t: &Tree) -> Result<Done> {
    let text = format!(
        "{OWNED}\nThis VM is set up by gandi-vm. Data disks appear on demand under\n\
         {}/LABEL (`gandi-vm disks` lists them; `gandi-vm disk release KEY`\n\
         before detaching one). Settings: {}. Help: man gandi-vm,\n\
         https://docs.gandi.net/\n",
        settings.disk_root.display(),
        crate::base::settings::DEFAULT_LOCATIONS
            .iter()
            .find(|p| t.exists(p))
            .unwrap_or(&crate::base::settings::DEFAULT_LOCATIONS[0]),
    );
    let c = t.write_if_changed("/etc/motd.d/gandi", text.as_bytes(), WriteOpts::mode(0o644))?;
    Ok(Done::of(c, ""))
}

/// An ext3/4 root with an unlimited mount count gets a check every 42
/// mounts or 2 months, as the original set (live system only).
pub fn mount_count(settings: &Settings) -> Result<Done> {
    let mi = fs::read_to_string(settings.paths.proc_dir.join("self/mountinfo")).unwrap_or_default();
    let mounts = crate::kernel::mounts::parse_mountinfo(&mi);
    let dev = crate::kernel::mounts::root_mount(&mounts)
        .filter(|m| m.fstype == "ext3" || m.fstype == "ext4")
        .map(|m| PathBuf::from(&m.source));
    let Some(dev) = dev.filter(|d| d.exists()) else {
        return Ok(Done::skipped("root is not ext3/ext4 on a known device"));
    };
    // The superblock read directly: no tool started at each boot.
    let max = crate::disk::fsgrow::ExtSuper::read(&dev)?.max_mount_count;
    if max > 0 {
        return Ok(Done::unchanged(format!(
            "{} checked every {max} mounts",
            dev.display()
        )));
    }
    Run::new("tune2fs")
        .args(["-c", "42", "-i", "2m"])
        .arg(&dev)
        .limit(Duration::from_secs(60))
        .output()?;
    Ok(Done::changed(format!(
        "{}: 42 mounts / 2 months",
        dev.display()
    )))
}

#[cfg(test)]
mod tests;
