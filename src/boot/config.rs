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
use crate::base::status::{Done, Recorder};
use crate::base::tree::{Change, Tree, WriteOpts};
use crate::boot::plugins;
use crate::kernel::{blkid, views as kernel};
use crate::platform::apply;
use crate::platform::ledger::Ledger;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    settings.run_dir.join("locks/config.lock")
}

/// Runs the stage; returns the exit code (1 when a step failed).
pub fn run(settings: &Settings, opts: &Options) -> Result<i32> {
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
            (None, true) => {
                Some(fs::read_to_string(settings.proc_dir.join("cmdline")).unwrap_or_default())
            }
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
        plugins::run_all(&settings.plugin_dir, &mut rec);
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
    if settings.sys_dir.join("class/tty/hvc0").exists() {
        ttys.push("hvc0");
    }
    let consoles = fs::read_to_string(settings.proc_dir.join("consoles")).unwrap_or_default();
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

/// A number derived from the machine id: the same at every boot of one
/// machine, different between machines.
fn machine_number(t: &Tree) -> Result<u64> {
    let id = t.read_string("/etc/machine-id").unwrap_or_default();
    let id = id.trim();
    if id.is_empty() {
        bail!("/etc/machine-id is empty: the spread would be the same on every VM");
    }
    Ok(crate::base::fingerprint::fnv1a(id.as_bytes()))
}

/// A `run-parts` job of the system crontab, as the distribution ships it.
struct CronJob {
    name: &'static str,
    minute: &'static str,
    hour: &'static str,
    /// Day of month, month, day of week.
    days: [&'static str; 3],
}

/// Debian's and Ubuntu's four jobs, with their stock times.
const CRON_JOBS: [CronJob; 4] = [
    CronJob {
        name: "hourly",
        minute: "17",
        hour: "*",
        days: ["*", "*", "*"],
    },
    CronJob {
        name: "daily",
        minute: "25",
        hour: "6",
        days: ["*", "*", "*"],
    },
    CronJob {
        name: "weekly",
        minute: "47",
        hour: "6",
        days: ["*", "*", "7"],
    },
    CronJob {
        name: "monthly",
        minute: "52",
        hour: "6",
        days: ["1", "*", "*"],
    },
];

/// The commands of a stock job line, byte for byte.
fn cron_commands(job: &str) -> [String; 3] {
    let run = format!("cd / && run-parts --report /etc/cron.{job}");
    [
        run.clone(),
        format!("test -x /usr/sbin/anacron || ( {run} )"),
        format!("test -x /usr/sbin/anacron || {{ {run}; }}"),
    ]
}

/// The minute and hour we give `job` on a machine numbered `n`.
fn cron_spread(job: &CronJob, n: u64) -> (String, String) {
    let minute = n % 60;
    let hour = (1 + (n / 60) % 6).to_string();
    match job.name {
        "hourly" => (minute.to_string(), job.hour.to_string()),
        "daily" => (((minute + 8) % 60).to_string(), hour),
        "weekly" => (((minute + 30) % 60).to_string(), hour),
        _ => (((minute + 45) % 60).to_string(), hour),
    }
}

/// The fields of a crontab line with their byte ranges: six fields, then
/// the command (to the end of the line, a `\r` left out).
fn cron_fields(line: &str) -> Option<([std::ops::Range<usize>; 6], &str)> {
    let body = line.strip_suffix('\r').unwrap_or(line);
    let mut ranges: [std::ops::Range<usize>; 6] = Default::default();
    let mut at = 0;
    for r in &mut ranges {
        let start = at + body[at..].find(|c: char| c != ' ' && c != '\t')?;
        let end = start + body[start..].find([' ', '\t'])?;
        *r = start..end;
        at = end;
    }
    let command = body[at..].trim_start_matches([' ', '\t']);
    (!command.is_empty()).then_some((ranges, command))
}

/// The line with the job's time spread over the night, when it is one of
/// ours: a stock `run-parts` job line of the system crontab (as the
/// distribution ships it, user `root`), whose time is the stock one or the
/// one we gave it. Anything else (a comment, `MAILTO=`, an admin's job, a
/// stock line whose time the admin changed) is `None`: left byte for byte.
fn cron_line(line: &str, n: u64) -> Option<String> {
    if line.trim_start().starts_with('#') {
        return None;
    }
    let (f, command) = cron_fields(line)?;
    let field = |i: usize| &line[f[i].clone()];
    if field(5) != "root" {
        return None;
    }
    let job = CRON_JOBS.iter().find(|j| {
        [field(2), field(3), field(4)] == j.days
            && cron_commands(j.name).iter().any(|c| c == command)
    })?;
    let (minute, hour) = cron_spread(job, n);
    let now = (field(0), field(1));
    if now != (job.minute, job.hour) && now != (minute.as_str(), hour.as_str()) {
        return None;
    }
    Some(format!(
        "{}{minute}{}{hour}{}",
        &line[..f[0].start],
        &line[f[0].end..f[1].start],
        &line[f[1].end..]
    ))
}

/// Spreads the system crontab's stock `run-parts` jobs over the night,
/// per machine: minutes for hourly, minutes and hours (1 to 6) for the
/// others. Only those lines change, and only their two time fields; every
/// other byte (comments, `MAILTO`, the admin's jobs, CRLF line ends) stays.
fn cron(t: &Tree) -> Result<Done> {
    let Ok(text) = t.read_string("/etc/crontab") else {
        return Ok(Done::skipped("no /etc/crontab"));
    };
    let n = machine_number(t)?;
    let mut out = String::with_capacity(text.len());
    let mut ours = 0;
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        match cron_line(body, n) {
            Some(new) => {
                ours += 1;
                out.push_str(&new);
                out.push_str(end);
            }
            None => out.push_str(line),
        }
    }
    let c = t.write_if_changed("/etc/crontab", out.as_bytes(), WriteOpts::keep(0o644))?;
    let (minute, hour) = (n % 60, 1 + (n / 60) % 6);
    Ok(Done::of(
        c,
        format!("{ours} stock jobs at minute {minute}, hour {hour}"),
    ))
}

/// The value of `gandi=` on the kernel command line (the first one), with
/// dashes read as blanks, as the original read it.
pub fn cmdline_value(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("gandi="))
        .map(|v| v.replace('-', " "))
}

/// A zone name under zoneinfo: `Area/City`, no `..`.
fn valid_zone(z: &str) -> bool {
    !z.is_empty()
        && !z.starts_with('/')
        && z.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
        && z.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
}

/// What the zone should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// This zone.
    Set(String),
    /// Europe/Paris, unless a zone is already set.
    Default,
}

/// The zone for the value of `gandi=` (`None`: absent), as the original
/// decides it, with one extension first: a value holding `/` that names a
/// zone file (`exists`) is used as given.
pub fn zone_for(value: Option<&str>, exists: impl Fn(&str) -> bool) -> Zone {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Zone::Default;
    };
    // The dashes were read as blanks: a zone name has them back.
    let as_zone = v.replace(' ', "-");
    if as_zone.contains('/') && valid_zone(&as_zone) && exists(&as_zone) {
        return Zone::Set(as_zone);
    }
    let leading = v
        .to_ascii_lowercase()
        .chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .count();
    if leading >= 3 {
        if v == "cet" {
            Zone::Set(DEFAULT_TIMEZONE.into())
        } else {
            Zone::Set("Etc/UTC".into())
        }
    } else {
        // The original left the zone empty here (a bug): read as absent.
        Zone::Default
    }
}

/// Timezone from `gandi=` on the kernel command line (see [`zone_for`]).
/// `/etc/timezone` is written even when the zone file is missing;
/// `/etc/localtime` only when it exists (a link, or a copy when the admin
/// keeps a copy). A zone is applied when it is new: an admin's change
/// stays until the platform gives another zone.
fn timezone(settings: &Settings, t: &Tree, cmdline: Option<&str>) -> Result<Done> {
    let value = cmdline.and_then(cmdline_value);
    let zoneinfo = Path::new("/usr/share/zoneinfo");
    let exists = |z: &str| t.is_file(zoneinfo.join(z));
    let zone = match zone_for(value.as_deref(), exists) {
        Zone::Set(z) => z,
        Zone::Default if t.lstat("/etc/localtime").is_ok() || t.lstat("/etc/timezone").is_ok() => {
            return Ok(Done::unchanged("set already; no zone on the command line"));
        }
        Zone::Default => DEFAULT_TIMEZONE.to_string(),
    };
    let mut ledger = Ledger::load(t, &settings.state_dir);
    if !ledger.is_new("timezone", zone.as_bytes()) {
        return Ok(Done::kept(format!(
            "{zone} was applied before; left as the admin has it"
        )));
    }
    let mut change = t.write_if_changed(
        "/etc/timezone",
        format!("{zone}\n").as_bytes(),
        WriteOpts::keep(0o644),
    )?;
    let file = zoneinfo.join(&zone);
    let mut detail = zone.clone();
    if t.is_file(&file) {
        let localtime = "/etc/localtime";
        let copy = t.lstat(localtime).is_ok_and(|m| m.is_file());
        change = change.or(if copy {
            let data = t.read(&file)?;
            t.write_if_changed(localtime, &data, WriteOpts::keep(0o644))?
        } else {
            t.set_link(localtime, &file)?
        });
    } else {
        detail.push_str(&format!(
            " ({} is missing: /etc/localtime left)",
            file.display()
        ));
    }
    ledger.set("timezone", zone.as_bytes());
    ledger.save(t)?;
    Ok(Done::of(change, detail))
}

const SSHD_SETTINGS: &[&str] = &[
    "PermitRootLogin prohibit-password",
    "PermitEmptyPasswords no",
    "ListenAddress ::",
    "ListenAddress 0.0.0.0",
];

/// SSH host keys when missing (not with `--root`: they must differ per
/// VM); our settings, for the keys the admin set nowhere (see `sshd`), as
/// a drop-in when sshd reads `sshd_config.d` in its global section, else
/// as a marked block at the top of `sshd_config`.
fn sshd(t: &Tree, live: bool) -> Result<Done> {
    let config = "/etc/ssh/sshd_config";
    if t.lstat(config).is_err() {
        return Ok(Done::skipped(
            "no sshd_config (openssh-server not installed)",
        ));
    }
    let mut change = Change::Unchanged;
    let mut notes = Vec::new();
    // ssh-keygen -A makes the rsa, ecdsa and ed25519 keys: started only when
    // one is missing (it costs a process at every boot otherwise).
    // A pair cut short (ssh-keygen killed half-way) is made again.
    let mut complete = true;
    for k in ["rsa", "ecdsa", "ed25519"] {
        let key = format!("/etc/ssh/ssh_host_{k}_key");
        let whole = |p: &str| t.lstat(p).is_ok_and(|m| m.is_file() && m.len() > 0);
        if whole(&key) && whole(&format!("{key}.pub")) {
            continue;
        }
        complete = false;
        if live {
            t.remove_file(&key)?;
            t.remove_file(format!("{key}.pub"))?;
        }
    }
    if !complete {
        if live {
            Run::new("ssh-keygen")
                .arg("-A")
                .limit(Duration::from_secs(120))
                .output()?;
            change = Change::Changed;
            notes.push("host keys made".to_string());
        } else {
            notes.push("host keys deferred to the first boot".to_string());
        }
    }
    let admin = crate::boot::sshd::admin_settings(t);
    let (body, theirs) = crate::boot::sshd::left_to_us(&admin, SSHD_SETTINGS);
    let body: Vec<String> = body.iter().map(|s| s.to_string()).collect();
    if !theirs.is_empty() {
        notes.push(format!("the admin sets {}", theirs.join(", ")));
    }
    for file in &admin.unread {
        notes.push(format!("not read: {file}"));
    }
    let dropin = crate::boot::sshd::DROPIN;
    if admin.includes_dropins {
        if body.is_empty() {
            // Nothing left to us: a drop-in of ours goes.
            if t.read_string(dropin).is_ok_and(|d| d.starts_with(OWNED)) {
                t.remove_file(dropin)?;
                change = Change::Changed;
            }
        } else {
            let text = format!("{OWNED}{}\n", body.join("\n"));
            change =
                change.or(t.write_if_changed(dropin, text.as_bytes(), WriteOpts::mode(0o644))?);
            notes.push(dropin.to_string());
        }
        // A block of ours from before sshd read drop-ins goes.
        if t.read_string(config)
            .is_ok_and(|c| matches!(block::find(&c, &block::SSHD), block::Block::Intact { .. }))
        {
            change = change.or(apply::edit_block(t, config, &block::SSHD, &[], Place::Top)?);
        }
    } else {
        // No drop-in folder read in sshd's global section: our block goes
        // first in sshd_config, before any `Match`.
        change = change.or(apply::edit_block(
            t,
            config,
            &block::SSHD,
            &body,
            Place::Top,
        )?);
        if !body.is_empty() {
            notes.push("our block of sshd_config".to_string());
        }
    }
    Ok(Done::of(change, notes.join(", ")))
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
    let mi = fs::read_to_string(settings.proc_dir.join("self/mountinfo")).unwrap_or_default();
    let mounts = kernel::parse_mountinfo(&mi);
    let dev = kernel::root_mount(&mounts)
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
